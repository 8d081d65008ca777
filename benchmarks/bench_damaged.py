"""Benchmark: damaged planes restored as unmeasured rows (``volsr.restore(..., damaged=...)``).

Not a test. For each kind, generate an isotropic float32 volume (``--shape``, seed 0), keep every
4th plane, and spoil three measured planes that are neither adjacent nor at the ends: one set to
zeros, one to uniform noise over the stack's range, one replaced by its neighbour shifted 4 px
along x. Then restore at 4x

* ``msdsr (marked)``: the default engine, a self-supervised fit on the input (``--fit-minutes``;
  the CLI default is 4) with ``damaged=`` the spoiled planes;
* ``linear (marked)``: linear interpolation across the 2f gap, the baseline;
* ``msdsr (unmarked)``: the same fitted model (saved by the first run) without ``damaged=``, to
  show how far an unmarked damaged plane spreads into its neighbours' restored rows.

Scores against the truth: PSNR (data range = truth max - min) and mean XY SSIM on the spoiled
planes' output rows; PSNR on the restored rows next to them (between a spoiled plane and its
good neighbours); whether every good measured plane comes back bit-exact.

Gap size (``--gap-kind``, default cells; ``none`` to skip): 1, 2 and 3 consecutive damaged
planes (input 8; 7-8; 7-9: gaps of 2f, 3f, 4f between good planes), set to zeros and marked;
msdsr (one fit with planes 7-9 dropped, reused for the smaller gaps: it never saw any of them)
vs linear, PSNR on the damaged planes' rows and on every restored row of the gap.

Usage::

    python benchmarks/bench_damaged.py --kinds cells,fluo,em --fit-minutes 1
    python benchmarks/bench_damaged.py --kinds none --gap-kind cells --out /tmp/gaps.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("cells", "fibers", "texture", "fluo", "mri", "em")
FACTOR = 4
SPOILED = (4, 8, 12)


def spoil(stack, rng):
    import numpy as np

    out = stack.copy()
    lo, hi = float(stack.min()), float(stack.max())
    out[SPOILED[0]] = 0
    out[SPOILED[1]] = rng.uniform(lo, hi, size=stack.shape[1:]).astype(stack.dtype)
    out[SPOILED[2]] = np.roll(stack[SPOILED[2] + 1], 4, axis=1)
    return out


def scores(res, truth, rows, near, data_range) -> dict:
    import numpy as np
    from skimage.metrics import structural_similarity

    from volsr.metrics import psnr

    mask = np.zeros(truth.shape[0], bool)
    mask[rows] = True
    near_mask = np.zeros(truth.shape[0], bool)
    near_mask[near] = True
    ssim = float(np.mean([structural_similarity(res[r], truth[r], data_range=data_range) for r in rows]))
    return {"psnr": psnr(res, truth, data_range=data_range, mask=mask[:, None, None]), "ssim": ssim,
            "psnr_near": psnr(res, truth, data_range=data_range, mask=near_mask[:, None, None])}


def run_kind(kind: str, args, tmp: Path) -> dict:
    import numpy as np

    import volsr
    from volsr.samples import isotropic_volume, subsample_z

    truth = isotropic_volume(tuple(args.shape), seed=0, kind=kind).astype(np.float32)
    clean = subsample_z(truth, FACTOR)
    truth = truth[: (clean.shape[0] - 1) * FACTOR + 1]
    stack = spoil(clean, np.random.default_rng(0))
    rows = [FACTOR * i for i in SPOILED]
    near = [r + k for r in rows for k in range(-FACTOR + 1, FACTOR) if k]
    good = [i for i in range(clean.shape[0]) if i not in SPOILED]
    dr = float(truth.max() - truth.min())
    model = tmp / f"{kind}.volsr"
    out = {"kind": kind}
    for name, kw in (("msdsr (marked)", {"fit_minutes": args.fit_minutes, "model_out": model, "damaged": SPOILED}),
                     ("linear (marked)", {"engine": "linear", "damaged": SPOILED}),
                     ("msdsr (unmarked)", {"model": model})):
        t0 = time.perf_counter()
        res = volsr.restore(stack, z_factor=FACTOR, seed=0, output_dtype="float32", **kw)
        row = scores(res.data, truth, rows, near, dr)
        row["seconds"] = time.perf_counter() - t0
        row["good_bit_exact"] = bool(np.array_equal(res.data[[FACTOR * i for i in good]], stack[good]))
        out[name] = row
        print(kind, name, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return out


GAPS = ((8,), (7, 8), (7, 8, 9))


def run_gaps(kind: str, args, tmp: Path) -> dict:
    import numpy as np

    import volsr
    from volsr.metrics import psnr
    from volsr.samples import isotropic_volume, subsample_z

    truth = isotropic_volume(tuple(args.shape), seed=0, kind=kind).astype(np.float32)
    clean = subsample_z(truth, FACTOR)
    truth = truth[: (clean.shape[0] - 1) * FACTOR + 1]
    dr = float(truth.max() - truth.min())
    model = tmp / f"gap-{kind}.volsr"
    out = {"kind": kind, "gaps": []}
    for planes in sorted(GAPS, key=len, reverse=True):  # the largest first: its fit serves all
        stack = clean.copy()
        stack[list(planes)] = 0
        rows = np.zeros(truth.shape[0], bool)
        rows[[FACTOR * i for i in planes]] = True
        gap = np.zeros(truth.shape[0], bool)
        gap[FACTOR * (planes[0] - 1) + 1: FACTOR * (planes[-1] + 1)] = True
        row = {"planes": list(planes), "gap_rows": (len(planes) + 1) * FACTOR}
        for name, kw in (("msdsr", {"model": model} if model.exists() else
                          {"fit_minutes": args.fit_minutes, "model_out": model}), ("linear", {"engine": "linear"})):
            res = volsr.restore(stack, z_factor=FACTOR, seed=0, output_dtype="float32", damaged=planes, **kw)
            row[name] = {"psnr_damaged_rows": psnr(res.data, truth, data_range=dr, mask=rows[:, None, None]),
                         "psnr_gap": psnr(res.data, truth, data_range=dr, mask=gap[:, None, None]),
                         "fit_s": float(res.timings.get("fit_s", 0.0)),
                         "restore_s": float(res.timings.get("restore_s", 0.0))}
        print(kind, "gap", planes, row, flush=True)
        out["gaps"].append(row)
    out["gaps"].sort(key=lambda r: len(r["planes"]))
    return out


def markdown(results: list[dict], command: str, args, gaps: dict | None = None) -> str:
    lines = ["# Damaged planes: `volsr.restore(..., damaged=...)`", "", "```", command, "```", "",
             f"Truth {'x'.join(map(str, args.shape))} (seed 0), every {FACTOR}th plane kept; input planes "
             f"{SPOILED} spoiled (zeros, uniform noise over the stack's range, the next plane shifted 4 px along x); "
             f"msdsr fitted {args.fit_minutes:g} min on the input (the CLI default is 4), `seed=0`, "
             "`output_dtype='float32'`. *msdsr unmarked* reuses the marked run's fitted model (no second fit: "
             "time), restored without `damaged=`. PSNR (data range = truth max - min) and mean XY SSIM on the "
             "spoiled planes' output rows; *near*: PSNR on the restored rows strictly between a spoiled plane and "
             "its good neighbours. Seconds: marked msdsr = fit + restore, the others restore only.", ""]
    if results:
        lines += ["| kind | msdsr marked PSNR / SSIM | linear marked PSNR / SSIM | msdsr unmarked PSNR / SSIM "
                  "| target (msdsr >= linear + 0.5 dB, SSIM >= linear) | near PSNR: marked / unmarked "
                  "| good planes bit-exact | s: msdsr marked / linear / unmarked |",
                  "|---|---:|---:|---:|---|---:|---|---:|"]
    for r in results:
        m, lin, u = r["msdsr (marked)"], r["linear (marked)"], r["msdsr (unmarked)"]
        met = m["psnr"] >= lin["psnr"] + 0.5 and m["ssim"] >= lin["ssim"]
        exact = m["good_bit_exact"] and lin["good_bit_exact"] and u["good_bit_exact"]
        lines.append(f"| {r['kind']} | {m['psnr']:.2f} / {m['ssim']:.3f} | {lin['psnr']:.2f} / {lin['ssim']:.3f} | "
                     f"{u['psnr']:.2f} / {u['ssim']:.3f} | {'met' if met else 'missed'} "
                     f"({m['psnr'] - lin['psnr']:+.2f} dB) | {m['psnr_near']:.2f} / {u['psnr_near']:.2f} | "
                     f"{exact} | {m['seconds']:.1f} / {lin['seconds']:.2f} / {u['seconds']:.1f} |")
    if gaps:
        lines += ["", f"## Gap size ({gaps['kind']}, consecutive damaged planes set to zeros, marked)", "",
                  "| damaged input planes | gap (output rows between good planes) | msdsr PSNR damaged rows / whole gap "
                  "| linear PSNR damaged rows / whole gap | msdsr - linear (damaged rows) |",
                  "|---|---|---:|---:|---:|"]
        for g in gaps["gaps"]:
            m, lin = g["msdsr"], g["linear"]
            lines.append(f"| {', '.join(map(str, g['planes']))} | {g['gap_rows']} ({len(g['planes']) + 1}f) | "
                         f"{m['psnr_damaged_rows']:.2f} / {m['psnr_gap']:.2f} | {lin['psnr_damaged_rows']:.2f} / "
                         f"{lin['psnr_gap']:.2f} | {m['psnr_damaged_rows'] - lin['psnr_damaged_rows']:+.2f} dB |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--shape", type=lambda s: [int(v) for v in s.split(",")], default=[61, 128, 128])
    ap.add_argument("--fit-minutes", type=float, default=2.0, help="msdsr fit budget (the CLI default is 4)")
    ap.add_argument("--gap-kind", default="cells", help="kind for the gap-size measurement, or none")
    ap.add_argument("--out", default=str(HERE / "results" / "results_damaged.md"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        kinds = [k for k in args.kinds.split(",") if k and k != "none"]
        results = [run_kind(k, args, Path(tmp)) for k in kinds]
        gaps = run_gaps(args.gap_kind, args, Path(tmp)) if args.gap_kind != "none" else None
    command = "python benchmarks/bench_damaged.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.write_text(markdown(results, command, args, gaps))
    out.with_suffix(".json").write_text(json.dumps({"command": command, "settings": vars(args), "kinds": results,
                                                    "gaps": gaps}, indent=1))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
