"""Diagnostics of the XZ radial-spectrum error (issue: learned engines vs interpolation).

Not a test. Fits (fixed STEP budget, so CPU contention does not change the result; models
are cached in ``--cache``) and restores a small synthetic stack, then prints per engine:

* the mean log10 radial spectrum of XZ tiles per frequency bin minus the ground truth's,
* per row phase (z mod factor; phase 0 = measured rows) the mean intensity offset against
  the ground truth and the std of a high-pass (Laplacian) of the result vs the ground truth,
  i.e. whether known and generated rows differ in brightness or in noise/texture level,
* PSNR/SSIM on restored XZ planes and the RMS spectrum error, as in bench_msdsr.py.

Usage::

    python benchmarks/diag_spectrum.py --kind cells --steps 400
    python benchmarks/diag_spectrum.py --kind cells --steps 400 --variant 'eta0={"eta": 0.0}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch


def load_or_fit(name, x, steps, seed, cache, options):
    from volsr.engines import create_engine

    os.makedirs(cache, exist_ok=True)
    train_keys = {k: v for k, v in options.items() if k in ("prediction_type", "mask_channel", "condition",
                                                               "residual", "loss", "data_range", "preset")}
    tag = "_".join(f"{k}-{v}" for k, v in sorted(train_keys.items()))
    path = os.path.join(cache, f"{name}_{steps}_{seed}_{tag}.volsr")
    eng_cls = type(create_engine(name, device="cpu", **train_keys))
    if os.path.exists(path):
        eng = eng_cls.load(path)
    else:
        eng = create_engine(name, device="cpu", **train_keys)
        t0 = time.perf_counter()
        eng.fit(x, steps=steps, seed=seed)
        print(f"# fitted {name} {steps} steps in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        eng.save(path)
    extra = {k: v for k, v in options.items() if k not in train_keys}
    if extra:
        eng.cfg = eng.cfg.replace(**extra)  # restore-time settings; the typed config re-validates
    return eng


def row_stats(out, truth, known_mask, factor):
    """Per z-phase: mean offset (out - gt), and std of the second difference along x (within rows:
    noise/texture level of each row, not mixed with its z neighbours) of out and of gt."""
    o, g = out[0], truth[0]
    lo = o[:, :, 2:] - 2 * o[:, :, 1:-1] + o[:, :, :-2]
    lg = g[:, :, 2:] - 2 * g[:, :, 1:-1] + g[:, :, :-2]
    idx = np.flatnonzero(known_mask)
    first = idx[0]
    res = []
    for ph in range(factor):
        zs = np.arange(first + ph, o.shape[0] - 1, factor)
        zs = zs[(zs > 0)]
        res.append({"phase": ph, "offset": float((o[zs] - g[zs]).mean()),
                    "hp_std_out": float(lo[zs].std()), "hp_std_gt": float(lg[zs].std())})
    return res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="cells")
    ap.add_argument("--shape", default="64,128,128")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--cache", default="/tmp/volsr_diag_models")
    ap.add_argument("--engines", default="nearest,linear,cubic,msunet,msdsr")
    ap.add_argument("--variant", action="append", default=[], metavar='LABEL={"key": value}',
                    help="extra msdsr configurations (sampling keys need no refit)")
    ap.add_argument("--bins", action="store_true", help="print per-bin spectra")
    ap.add_argument("--tile", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from volsr.engines import create_engine
    from volsr.grid import OutputGrid
    from volsr.metrics import axis_spectra, paired_metrics
    from volsr.normalize import PercentileNormalizer
    from volsr.pipeline.volume import restore_volume
    from volsr.samples import isotropic_volume, subsample_z

    shape = tuple(int(v) for v in args.shape.split(","))
    gt = isotropic_volume(shape, seed=args.seed, kind=args.kind)
    low = subsample_z(gt, args.factor)
    grid = OutputGrid(low.shape[0], args.factor)
    gt = gt[: grid.n_out]
    norm = PercentileNormalizer().fit(low[None])
    x = norm.forward(low[None]).astype(np.float32)
    truth = norm.forward(gt[None]).astype(np.float32)
    tile = min(args.tile, grid.n_out - grid.n_out % 2)
    s_gt = axis_spectra(truth, tile=tile)

    runs = [(e, e, {}) for e in args.engines.split(",") if e]
    for spec in args.variant:
        label, _, js = spec.partition("=")
        opts = json.loads(js or "{}")
        runs.append((label, opts.pop("engine", "msdsr"), opts))
    fusions = {label: opts.pop("fusion", "mean") for label, _, opts in runs}
    rows, spectra = [], {"gt": s_gt.log_power["xz"]}
    for label, name, opts in runs:
        eng = create_engine(name, device="cpu") if name in ("nearest", "linear", "cubic") else \
            load_or_fit(name, x, args.steps, args.seed, args.cache, opts)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = restore_volume(x, grid, eng, fusion=fusions[label], seed=args.seed,
                                 planes="both" if fusions[label] in ("mean", "geometric") else fusions[label]).data
        dt = time.perf_counter() - t0
        r = {"engine": label, "restore_s": dt}
        for m in paired_metrics(out, truth, grid.known_mask, data_range=1.0, axes=("xz",)):
            if m["rows"] == "restored":
                r["psnr"], r["ssim"] = float(m["psnr"]), float(m["ssim"])
        s = axis_spectra(out, tile=tile)
        d = s.log_power["xz"] - s_gt.log_power["xz"]
        r["spec_err"] = float(np.sqrt(np.mean(d**2)))
        r["spec_err_lo"] = float(np.sqrt(np.mean(d[: len(d) // 2] ** 2)))
        r["spec_err_hi"] = float(np.sqrt(np.mean(d[len(d) // 2:] ** 2)))
        r["xy_vs_gt"] = float(np.sqrt(np.mean((s.log_power["xy"] - s_gt.log_power["xy"]) ** 2)))
        r["rows"] = row_stats(out, truth, grid.known_mask, args.factor)
        spectra[label] = s.log_power["xz"]
        rows.append(r)
        print(f"{label:>12s} psnr {r['psnr']:.2f} ssim {r['ssim']:.3f} spec {r['spec_err']:.3f} "
              f"(lo {r['spec_err_lo']:.3f} hi {r['spec_err_hi']:.3f}) restore {dt:.0f}s | phase offset/hp-std(out/gt): "
              + " ".join(f"{p['phase']}:{p['offset']:+.3f}/{p['hp_std_out']:.3f}/{p['hp_std_gt']:.3f}" for p in r["rows"]),
              flush=True)
    if args.bins:
        freq = s_gt.frequency
        print("freq   " + " ".join(f"{k:>8s}" for k in spectra))
        for i, f in enumerate(freq):
            print(f"{f:.3f} " + " ".join(
                f"{spectra[k][i]:8.3f}" if k == "gt" else f"{spectra[k][i] - spectra['gt'][i]:+8.3f}" for k in spectra))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows, "freq": s_gt.frequency.tolist(),
                       "spectra": {k: v.tolist() for k, v in spectra.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
