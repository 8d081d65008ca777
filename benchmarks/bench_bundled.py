"""Benchmark: the bundled model against the one it replaces (speed and PSNR on 16x256x256 at 4x).

Not a test. For each kind (default: all six of :mod:`volsr.samples`), generate a 61x256x256
isotropic volume (``--seed``), keep every 4th plane (16x256x256, :func:`volsr.samples.subsample_z`)
and restore it with each model file through the public API (``volsr.restore(stack, model=...,
z_factor=4, output_dtype='float32')``, every other setting the model's own default, as the
README's first command uses it), alternating the models ``--repeats`` times on the first kind
and ``--repeats-rest`` times on the others. Reported per model:
the median restore wall time, PSNR over the restored planes only (:func:`volsr.metrics.psnr`,
data range = truth max - min) and the machine's float32 matmul rate measured between the runs
(1024^2, as ``bench_speed.py``), so a time can be compared across machines:
``time x matmul rate`` is the restore's cost in GFLOP-equivalents of this machine.

The issue-24 target is checked on the first kind (``cells``): the new model's median time
<= 176.7 s x (188.4 GFLOP/s / matmul rate) / 5 (the old bundled model's time on 2026-11-29,
scaled to this machine), and its PSNR >= the old model's PSNR on the same stack.

Usage::

    python benchmarks/bench_bundled.py --old OLD.volsr --new volsr/data/sample_model.volsr
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_speed import matmul_gflops  # noqa: E402

KINDS = ("cells", "fibers", "texture", "fluo", "mri", "em")
FACTOR = 4
REFERENCE_S, REFERENCE_GFLOPS, SPEED_TARGET = 176.7, 188.4, 5.0


def run_kind(kind: str, models: dict[str, Path], args, repeats: int) -> dict:
    import numpy as np
    import torch

    import volsr
    from volsr.metrics import psnr
    from volsr.samples import isotropic_volume, subsample_z

    truth = isotropic_volume((61, 256, 256), seed=args.seed, kind=kind).astype(np.float32)
    stack = subsample_z(truth, FACTOR)
    known = np.zeros(truth.shape[0], dtype=bool)
    known[::FACTOR] = True
    data_range = float(truth[~known].max() - truth[~known].min())
    times = {name: [] for name in models}
    rates, scores = [], {}
    for rep in range(repeats):
        order = list(models) if rep % 2 == 0 else list(reversed(models))
        for name in order:
            rates.append(matmul_gflops(torch.float32))
            t0 = time.perf_counter()
            res = volsr.restore(stack, model=models[name], z_factor=FACTOR, seed=0, output_dtype="float32",
                                device=args.device)
            times[name].append(time.perf_counter() - t0)
            scores[name] = psnr(res.data, truth, data_range=data_range, mask=~known[:, None, None])
            print(f"{kind} {name} run {rep + 1}: {times[name][-1]:.1f} s, PSNR {scores[name]:.2f} dB", flush=True)
    rate = statistics.median(rates)
    out = {"kind": kind, "matmul_gflops_fp32": rate, "models": {}}
    for name in models:
        t = statistics.median(times[name])
        out["models"][name] = {"median_s": t, "runs_s": times[name], "psnr": scores[name], "gflop_equiv": t * rate}
    return out


def markdown(results: list[dict], args, command: str) -> str:
    names = list(results[0]["models"])
    lines = [f"`{command}`", "",
             f"{args.repeats} alternating runs per model on the first kind, {args.repeats_rest} on the others "
             f"(median time); 61x256x256 truth (seed {args.seed}), every {FACTOR}th "
             "plane kept (16x256x256), `volsr.restore(stack, model=..., z_factor=4, output_dtype='float32')` "
             "with each model's own settings; PSNR over restored planes only.", "",
             "| kind | matmul fp32 GFLOP/s | " + " | ".join(f"{n} s | {n} PSNR" for n in names) + " | speed-up |",
             "|---|---:|" + "---:|---:|" * len(names) + "---:|"]
    for r in results:
        m = r["models"]
        cells = " | ".join(f"{m[n]['median_s']:.1f} | {m[n]['psnr']:.2f}" for n in names)
        speedup = m[names[0]]["median_s"] / m[names[-1]]["median_s"]
        lines.append(f"| {r['kind']} | {r['matmul_gflops_fp32']:.1f} | {cells} | {speedup:.2f}x |")
    first = results[0]
    new, old = first["models"][names[-1]], first["models"][names[0]]
    budget = REFERENCE_S * (REFERENCE_GFLOPS / first["matmul_gflops_fp32"]) / SPEED_TARGET
    lines += ["", f"Target on `{first['kind']}`: new median {new['median_s']:.1f} s <= {REFERENCE_S} s x "
              f"({REFERENCE_GFLOPS} / {first['matmul_gflops_fp32']:.1f}) / {SPEED_TARGET:g} = {budget:.1f} s: "
              f"**{'met' if new['median_s'] <= budget else 'missed'}**; PSNR {new['psnr']:.2f} dB vs the old "
              f"model's {old['psnr']:.2f} dB: **{'met' if new['psnr'] >= old['psnr'] else 'missed'}**."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the model file being replaced")
    ap.add_argument("--new", default=None, help="default: the bundled sample_model")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--repeats", type=int, default=3, help="runs per model on the first kind (the target)")
    ap.add_argument("--repeats-rest", type=int, default=1, help="runs per model on the other kinds")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(HERE / "results" / "results_bundled.md"))
    args = ap.parse_args(argv)
    from volsr.checkpoint import resolve_model_path

    models = {"old": Path(args.old), "new": resolve_model_path(args.new or "sample_model")}
    kinds = args.kinds.split(",")
    results = [run_kind(k, models, args, args.repeats if i == 0 else args.repeats_rest) for i, k in enumerate(kinds)]
    command = "python benchmarks/bench_bundled.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.write_text(markdown(results, args, command))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
