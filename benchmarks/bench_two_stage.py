"""Two-stage MSDSR vs its peers, one fit per learned engine, the realism control swept on that fit.

Protocol as ``bench_quality.py`` (keep every 4th plane of a generated isotropic volume, score the
restored planes), but each learned model is fitted once and restored with several settings, so the
realism / noise-matching sweep costs restorations only. Writes Markdown + JSON.

    python benchmarks/bench_two_stage.py --kinds fluo,em,cells --shape 32,128,128 --fit-minutes 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import FACTOR, _json_safe, score  # noqa: E402

import volsr  # noqa: E402
from volsr.grid import OutputGrid  # noqa: E402
from volsr.metrics import reference_stats  # noqa: E402
from volsr.samples import isotropic_volume, subsample_z  # noqa: E402

SWEEP = {  # label -> restore options on the two-stage model
    "2stage realism 0": {"realism": 0.0},
    "2stage realism 0.5": {"realism": 0.5},
    "2stage realism 1": {"realism": 1.0},
    "2stage realism 1, noise_match 0": {"realism": 1.0, "noise_match": 0.0},
}


def run_kind(kind, args, tmp: Path) -> list[dict]:
    gt = isotropic_volume(tuple(args.shape), seed=args.seed, kind=kind, dtype="float32")
    low = subsample_z(gt, FACTOR)
    grid = OutputGrid(low.shape[0], FACTOR)
    truth = gt[: grid.n_out]
    known = np.asarray(grid.known_mask, dtype=bool)
    lo, hi = float(truth.min()), float(truth.max())
    crop = min(48, grid.n_out, args.shape[1], args.shape[2])
    ref = reference_stats(list(truth), extractor="lowlevel", crop=crop, n_crops=args.n_crops, seed=args.seed,
                          intensity=(lo, hi)) if crop >= 24 else None
    kw = dict(data_range=hi - lo, ref=ref, n_crops=args.n_crops, seed=args.seed)
    rows = []

    def run(label, **call):
        t0 = time.perf_counter()
        res = volsr.restore(low, z_factor=FACTOR, seed=args.seed, output_dtype="float32", **call)
        rows.append({"kind": kind, "engine": label, **score(res.data, truth, known, **kw),
                     "fit_s": res.timings["fit_s"], "restore_s": res.timings["restore_s"],
                     "wall_s": time.perf_counter() - t0})
        print(json.dumps(_json_safe(rows[-1])), file=sys.stderr, flush=True)

    for name in ("linear", "cubic"):
        run(name, engine=name)
    run("msunet", engine="msunet", fit_minutes=args.fit_minutes)
    run("msdsr (linear condition)", engine="msdsr", fit_minutes=args.fit_minutes)
    model = tmp / f"{kind}_2stage.volsr"
    run("2stage (default realism)", engine="msdsr", fit_minutes=args.fit_minutes, model_out=model,
        engine_options={"condition": "regression"})
    for label, opts in SWEEP.items():
        run(label, model=model, **opts)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default="fluo,em,cells")
    p.add_argument("--shape", default="32,128,128")
    p.add_argument("--fit-minutes", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-crops", type=int, default=64)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "results_two_stage.md"))
    args = p.parse_args(argv)
    args.shape = [int(v) for v in args.shape.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            rows += run_kind(kind, args, Path(tmp))
    cmd = "python benchmarks/bench_two_stage.py " + " ".join(argv or sys.argv[1:])
    lines = [f"`{cmd}`", "", "| kind | engine | PSNR | SSIM xz | spectrum err | SliceFID | fit s | restore s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fid = r.get("slice_fid")
        lines.append(f"| {r['kind']} | {r['engine']} | {r['psnr']:.2f} | {r['ssim_xz']:.3f} | "
                     f"{r['spectrum_error_xz']:.3f} | {'n/a' if fid is None else f'{fid:.2f}'} | "
                     f"{r['fit_s']:.0f} | {r['restore_s']:.0f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(_json_safe(rows), indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
