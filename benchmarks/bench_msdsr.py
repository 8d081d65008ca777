"""Benchmark: every engine on a 4x-subsampled synthetic isotropic stack (issue 3, item 8).

Not a test. For each engine, in its own process (so peak RSS is per engine): fit time
(learned engines fit self-supervised on the input's XY planes, as ``volsr infer`` does by
default), restore time through the real pipeline (:func:`volsr.pipeline.volume.restore_volume`,
both directions, mean fusion), peak RSS, PSNR/SSIM of XZ and YZ planes against the ground
truth on the unknown (restored) planes, and the radial-spectrum error of XZ planes: the RMS
difference (decades of power) between the mean log radial spectra of XZ tiles of the result
and of the ground truth (:func:`volsr.metrics.axis_spectra`). Also the time of one UNet call
at 48x48, batch 64, for the ``small`` and ``paper`` presets.

Usage::

    python benchmarks/bench_msdsr.py --out bench.json
    python benchmarks/bench_msdsr.py --engines linear,cubic,msdsr --kinds cells,texture --fit-minutes 4

Markdown goes to stdout, JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

ALL_ENGINES = ("nearest", "linear", "cubic", "msunet", "msdsr", "e2e-unet")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_engine(name: str, kind: str, shape, factor: int, seed: int, fit_minutes: float,
               sampling_steps: int | None, device: str, options: dict | None = None, label: str | None = None) -> dict:
    """Fit (if learned) and restore one engine; return its row (runs in a worker process)."""
    import numpy as np

    from volsr.engines import create_engine
    from volsr.grid import OutputGrid
    from volsr.normalize import PercentileNormalizer
    from volsr.samples import isotropic_volume, subsample_z

    gt = isotropic_volume(tuple(shape), seed=seed, kind=kind)
    low = subsample_z(gt, factor)
    grid = OutputGrid(low.shape[0], factor)
    gt = gt[: grid.n_out]
    norm = PercentileNormalizer().fit(low[None])
    x = norm.forward(low[None]).astype(np.float32)
    truth = norm.forward(gt[None]).astype(np.float32)

    row = {"engine": label or name, "kind": kind, "input_shape": list(low.shape), "output_shape": [grid.n_out, *gt.shape[1:]]}
    opts = dict(options or {})
    sampling_variants = opts.pop("sampling_variants", {})
    if name == "msdsr" and sampling_steps is not None:
        opts["sampling_steps"] = int(sampling_steps)
    eng = create_engine(name, device=device, **opts)
    t0 = time.perf_counter()
    if eng.learned:
        rep = eng.fit(x, minutes=fit_minutes, seed=seed)
        row["fit_steps"] = int(rep.get("steps", 0))
        row["final_loss"] = float(rep.get("final_loss", float("nan")))
    row["fit_s"] = time.perf_counter() - t0
    extra_rows = []
    for vlabel, vopts in sampling_variants.items():  # sampling-time variants of the same fitted model
        vrow = {k: v for k, v in row.items() if k in ("kind", "input_shape", "output_shape", "fit_steps",
                                                     "final_loss", "fit_s")}
        vrow["engine"] = vlabel
        saved = dict(eng.cfg)
        eng.cfg.update(vopts)
        _restore_and_score(eng, x, truth, grid, seed, vrow)
        eng.cfg.clear()
        eng.cfg.update(saved)
        extra_rows.append(vrow)
    _restore_and_score(eng, x, truth, grid, seed, row)
    if extra_rows:
        return {"rows": [row, *extra_rows]}
    return row


def _restore_and_score(eng, x, truth, grid, seed, row) -> None:
    import torch

    from volsr.metrics import paired_metrics, spectrum_error
    from volsr.pipeline.volume import restore_volume

    t0 = time.perf_counter()
    with torch.no_grad():
        out = restore_volume(x, grid, eng, seed=seed).data
    row["restore_s"] = time.perf_counter() - t0
    row["total_s"] = row["fit_s"] + row["restore_s"]
    if eng.capabilities.learned:
        row["config"] = {k: eng.cfg[k] for k in ("preset", "prediction_type", "sampling_steps", "sampler", "eta",
                                                   "timestep_spacing", "noise_match", "crop", "features")
                         if k in eng.cfg}
    for r in paired_metrics(out, truth, grid.known_mask, data_range=1.0, axes=("xz", "yz")):
        if r["rows"] == "restored":
            row[f"psnr_{r['axis']}"] = float(r["psnr"])
            row[f"ssim_{r['axis']}"] = float(r["ssim"])
    row["spectrum_error_xz"] = spectrum_error(out, truth, axis="xz")
    row["peak_rss_mib"] = _peak_rss_mib()


def unet_call_time(preset: str, batch: int = 64, size: int = 48, repeats: int = 1) -> dict:
    """Seconds per forward call (no grad) of the MSDSR UNet at ``size`` x ``size``, batch ``batch``."""
    import torch

    from volsr.models import build_diffusion_unet, count_parameters

    torch.manual_seed(0)
    net = build_diffusion_unet(preset, channels=1, mask_channel=True).eval()
    x = torch.randn(batch, 2, size, size)
    t = torch.full((batch,), 500, dtype=torch.long)
    with torch.no_grad():
        net(x[:2], timesteps=t[:2])  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x, timesteps=t)
        dt = (time.perf_counter() - t0) / repeats
    return {"preset": preset, "parameters": count_parameters(net), "batch": batch, "size": size,
            "seconds_per_call": dt, "peak_rss_mib": _peak_rss_mib()}


def _worker(args) -> None:
    if args.worker == "unet":
        res = unet_call_time(args.preset)
    else:
        res = run_engine(args.worker, args.kind, [int(v) for v in args.shape.split(",")], args.factor, args.seed,
                         args.fit_minutes, args.sampling_steps, args.device,
                         json.loads(args.options) if args.options else None, args.label)
    print("RESULT " + json.dumps(res), flush=True)


def _spawn(extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def _fmt(v, digits=3):
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict], unet: list[dict]) -> str:
    cols = ["kind", "engine", "fit_s", "restore_s", "total_s", "peak_rss_mib", "psnr_xz", "ssim_xz", "psnr_yz",
            "ssim_yz", "spectrum_error_xz"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r.get('kind', '')} | {r.get('engine', '')} | error: {r['error']} |")
            continue
        lines.append("| " + " | ".join(_fmt(r.get(c, ""), 1 if c.endswith(("_s", "mib")) else 3) for c in cols) + " |")
    if unet:
        lines += ["", "| UNet preset | parameters | batch x size | s / call | peak RSS MiB |", "|---|---|---|---|---|"]
        for u in unet:
            if "error" in u:
                lines.append(f"| {u.get('preset', '')} | error: {u['error']} |")
                continue
            lines.append(f"| {u['preset']} | {u['parameters'] / 1e6:.1f} M | {u['batch']} x {u['size']}^2 | "
                         f"{u['seconds_per_call']:.2f} | {u['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default=",".join(ALL_ENGINES))
    ap.add_argument("--kinds", default="cells", help="synthetic kinds, comma-separated (cells, fibers, texture)")
    ap.add_argument("--shape", default="64,256,256", help="ground-truth Z,Y,X")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-minutes", type=float, default=None, help="default: volsr.api.DEFAULT_FIT_MINUTES")
    ap.add_argument("--sampling-steps", type=int, default=None, help="MSDSR steps (default: the engine's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--unet-presets", default="small,paper", help="presets to time (empty for none)")
    ap.add_argument("--out", default=None, help="JSON output path")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=ENGINE:JSON",
                    help='extra engine configurations, e.g. msdsr-v=msdsr:{"prediction_type": "v_prediction"}; '
                         'a "sampling_variants" key ({label: {config overrides}}) also restores with each '
                         'sampling-time override from the same fit')
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--options", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--label", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="cells", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fit_minutes is None:
        from volsr.api import DEFAULT_FIT_MINUTES

        args.fit_minutes = DEFAULT_FIT_MINUTES
    if args.worker:
        _worker(args)
        return 0
    common = ["--shape", args.shape, "--factor", str(args.factor), "--seed", str(args.seed),
              "--fit-minutes", str(args.fit_minutes), "--device", args.device]
    if args.sampling_steps is not None:
        common += ["--sampling-steps", str(args.sampling_steps)]
    rows = []
    for kind in [k for k in args.kinds.split(",") if k]:
        for name in [e for e in args.engines.split(",") if e]:
            print(f"# {kind}: {name} ...", file=sys.stderr, flush=True)
            r = _spawn(["--worker", name, "--kind", kind, *common])
            r.setdefault("engine", name)
            r.setdefault("kind", kind)
            rows.extend(r["rows"] if "rows" in r else [r])
        for spec in args.variant:
            label, _, rest = spec.partition("=")
            name, _, options = rest.partition(":")
            print(f"# {kind}: {label} ...", file=sys.stderr, flush=True)
            r = _spawn(["--worker", name, "--kind", kind, "--label", label, "--options", options or "{}", *common])
            r.setdefault("engine", label)
            r.setdefault("kind", kind)
            rows.extend(r["rows"] if "rows" in r else [r])
    unet = []
    for preset in [p for p in args.unet_presets.split(",") if p]:
        print(f"# UNet call time: {preset} ...", file=sys.stderr, flush=True)
        u = _spawn(["--worker", "unet", "--preset", preset])
        u.setdefault("preset", preset)
        unet.append(u)
    print(markdown(rows, unet))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"settings": vars(args), "engines": rows, "unet_calls": unet}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
