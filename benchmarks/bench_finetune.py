"""Benchmark: self-supervised MSDSR fit from scratch vs fine-tuned from the bundled model.

Not a test. For each synthetic kind (an unseen seed), the 4x-subsampled stack is restored
with ``volsr.restore(engine="msdsr", fit_steps=N)`` once from scratch and once with
``init_model="sample_model"``, same steps, same seed; linear interpolation and the bundled
model without any fit are the references. Reports PSNR/SSIM on restored XZ planes and the
XZ radial-spectrum error (RMS difference of mean log10 radial spectra vs ground truth).

Fixed step budgets (not minutes) so a busy CPU changes the time, not the result.

Usage::

    python benchmarks/bench_finetune.py --steps 300 --kinds cells,fibers,texture
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def score(restored: np.ndarray, truth: np.ndarray, known: np.ndarray) -> dict:
    from volsr.metrics import paired_metrics, spectrum_error

    row = {}
    for r in paired_metrics(restored[None], truth[None], known, data_range=1.0, axes=("xz",)):
        if r["rows"] == "restored":
            row["psnr_xz"], row["ssim_xz"] = float(r["psnr"]), float(r["ssim"])
    row["spectrum_error_xz"] = spectrum_error(restored, truth, axis="xz")
    return row


def run(kind: str, shape, steps: int, seed: int) -> list[dict]:
    import volsr
    from volsr.samples import isotropic_volume, subsample_z

    gt = isotropic_volume(tuple(shape), seed=seed, kind=kind)
    low = subsample_z(gt, 4)
    lo, hi = np.percentile(low, (0.1, 99.9))
    scale = lambda v: (np.asarray(v, np.float32) - lo) / (hi - lo)  # noqa: E731 - one window for all methods
    rows = []
    cases = {
        "linear": dict(engine="linear"),
        "bundled (no fit)": dict(model="sample_model"),
        f"scratch {steps} steps": dict(engine="msdsr", fit_steps=steps),
        f"fine-tune {steps} steps": dict(engine="msdsr", fit_steps=steps, init_model="sample_model"),
    }
    for label, kw in cases.items():
        t0 = time.perf_counter()
        res = volsr.restore(low, z_factor=4, seed=seed, output_dtype="float32", **kw)
        truth = gt[: res.grid.n_out]
        row = {"kind": kind, "method": label, "seconds": time.perf_counter() - t0,
               **score(scale(res.data), scale(truth), res.grid.known_mask)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="cells,fibers,texture")
    ap.add_argument("--shape", default="64,128,128")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11, help="volume seed (the bundled model used 7001, 7002)")
    ap.add_argument("--out", help="JSON output path")
    args = ap.parse_args(argv)
    rows = []
    for kind in args.kinds.split(","):
        rows += run(kind, [int(v) for v in args.shape.split(",")], args.steps, args.seed)
    print("\n| kind | method | PSNR XZ | SSIM XZ | spectrum error XZ | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['method']} | {r['psnr_xz']:.2f} | {r['ssim_xz']:.3f} | "
              f"{r['spectrum_error_xz']:.3f} | {r['seconds']:.0f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
