"""Benchmark: 2D super-resolution at 4x, bicubic vs Brain-SR vs its L2-only ablation (issue 12).

Not a test. For each kind of 2D data, train every learned engine on high-resolution (HR) training
images through the public API (``volsr.create_engine(name, degradation=IsotropicDegradation(scale=4))``
+ ``engine.fit(..., minutes=M)``), make the LR test images with the *same* degradation object
(Gaussian blur sigma 1.5, keep every 4th pixel), upscale each whole LR test image with
:func:`volsr.api.upscale` as a user would (``output_dtype='float32'``, clipped to [0, 1]; one
call per image, so its intensity normalisation sees the whole image, not a 32-px tile), cut the
result and the HR image into the same ``tile`` x ``tile`` tiles and score them with
:mod:`volsr.evaluation`.

Kinds (all obtainable offline; scikit-image's ``skin`` and ``brain`` need a download, so they are
not used):

``ihc``
    Real histology: ``skimage.data.immunohistochemistry()`` (512x512 RGB, IHC-stained colon).
    Split by columns: training on columns ``[0, 512 - tile - 64)``; the test image is the strip of
    the last ``tile`` columns (its tiles stacked down the image); a 64-px gap, so no test pixel is
    within 64 px of a training pixel (the Gaussian blur reaches 7 px).
``he``
    Synthetic H&E-like RGB: hematoxylin from the nuclei of ``volsr.samples`` 'cells' planes and
    eosin from its 'texture' planes, mixed to RGB with ``skimage.color.hed2rgb``.
``mri``
    MRI-like T1 head phantom planes (``volsr.samples`` 'mri': folded cortex, ventricles, skull,
    Rician noise).
    For ``he`` and ``mri`` training uses the 16 XY planes (``size`` x ``size``) of a volume drawn
    with ``--seed``; the test images are planes 0, 5, 10, 15 of another volume (seed + 1), a
    different specimen: train and test share no pixel.

Engines (``--engines``): ``bicubic`` (the 2D baseline); ``brainsr`` (default config: the paper's
final NP losses, FFT patch loss 0.4 with patches (4, 2), the decoder-feature perceptual term 0.7 in
place of LPIPS, no L2); ``brainsr-l2`` (the paper's b1-like row: ``lambda_l2=1``, no FFT, no
perceptual term). As in the paper, whose ablation rows all sit on the same frozen SD-Turbo VAE and
UNet, ``--ablation shared`` (default) gives ``brainsr-l2`` Brain-SR's fitted autoencoder and latent
denoiser, frozen, and trains only its noise predictor, for the share of the budget Brain-SR's NP
stage had (0.3 of ``--minutes``): the two rows then differ only in the NP losses, not in two
autoencoders fitted from different random draws (whose own spectrum errors differed by up to 0.15
in the ``separate`` runs). ``msunet`` (regression UNet, isotropic degradation, L1). ``--preset`` goes to the
learned engines (default: their config defaults, sized for ~15 CPU minutes).

Scores: PSNR and SSIM on the Y channel (RGB) or grey values, spectrum error (RMS of the log10
radial-power-spectrum difference to HR, z-scored images, Hann window, orthonormal FFT), all after
shaving 4 px (the scale) from every tile border, averaged over the test tiles; for engines with a
latent autoencoder also the spectrum error against "HR-latent" (the HR tiles through the engine's
own autoencoder: the best a latent model can give back, the paper's reference) and that
autoencoder's PSNR. **s / 512 tile**: wall seconds for ``volsr.api.upscale`` to turn one
128x128 LR input into a 512x512 output (normalisation, padding, the engine; one warm-up call, then
the median of ``--timing-repeats``).

Targets (issue 12), per kind: brainsr spectrum error below bicubic's and below brainsr-l2's; brainsr
PSNR within 1 dB of bicubic or better.

Usage::

    python benchmarks/bench_2d.py                                   # ihc + mri, 15 min per learned engine
    python benchmarks/bench_2d.py --kinds ihc,he,mri --engines bicubic,brainsr,brainsr-l2,msunet
    python benchmarks/bench_2d.py --preset tiny --steps 3 --tile 64 --size 128 --out /tmp/b2d.md   # smoke test

Writes ``--out`` (Markdown, default ``benchmarks/results/results_2d_shared.md``), the same name with ``.json``
(every number and the RPS curves) and ``.png`` (RPS curves per kind).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCALE = 4
GAP = 64
KINDS = ("ihc", "he", "mri")
DEFAULT_KINDS = "ihc,mri"
TRAIN_PLANES = 16
TEST_PLANES = (0, 5, 10, 15)
VARIANTS = {  # label -> (engine name, config overrides)
    "bicubic": ("bicubic", {}),
    "brainsr": ("brainsr", {}),
    "brainsr-l2": ("brainsr", {"lambda_l2": 1.0, "lambda_fft": 0.0, "lambda_perceptual": 0.0}),
    "msunet": ("msunet", {}),
}
DEFAULT_ENGINES = "bicubic,brainsr,brainsr-l2"


@dataclass
class KindData:
    """Training sources (C, Z, Y, X arrays in [0, 1]), HR test images (N, C, H, W) and how they were split."""

    train: list
    test: np.ndarray
    split: str


def _tiles(planes: np.ndarray, tile: int) -> np.ndarray:
    """Non-overlapping ``tile`` x ``tile`` tiles of (N, C, H, W) planes, row by row."""
    _, _, h, w = planes.shape
    return np.stack([p[:, r:r + tile, c:c + tile] for p in planes
                     for r in range(0, h - tile + 1, tile) for c in range(0, w - tile + 1, tile)])


def ihc_data(tile: int, size: int, seed: int) -> KindData:
    import skimage.data

    chw = np.moveaxis(skimage.data.immunohistochemistry(), -1, 0).astype(np.float32) / 255.0
    h, w = chw.shape[1:]
    test0 = w - tile
    train_end = test0 - GAP
    if train_end < 64:
        raise SystemExit(f"--tile {tile} leaves only {train_end} training columns of the 512-px IHC image")
    split = (f"`skimage.data.immunohistochemistry()` 512x512 RGB: training on columns 0-{train_end - 1}, "
             f"the test image is columns {test0}-{w - 1} ({GAP}-px gap)")
    return KindData([chw[:, None, :, :train_end]], chw[None, :, :, test0:], split)


def _he_planes(seed: int, size: int) -> np.ndarray:
    from skimage.color import hed2rgb

    from volsr.samples import isotropic_volume

    shape = (TRAIN_PLANES, size, size)
    nuclei = isotropic_volume(shape, seed=seed, kind="cells")
    stroma = isotropic_volume(shape, seed=seed, kind="texture")
    hed = np.stack([0.005 + 0.25 * nuclei, 0.02 + 0.09 * stroma, np.zeros_like(nuclei)], axis=-1)
    return np.moveaxis(np.clip(hed2rgb(hed), 0, 1), -1, 1).astype(np.float32)  # (Z, 3, Y, X)


def _mri_planes(seed: int, size: int) -> np.ndarray:
    from volsr.samples import isotropic_volume

    return isotropic_volume((TRAIN_PLANES, size, size), seed=seed, kind="mri")[:, None]


def synthetic_data(kind: str, tile: int, size: int, seed: int) -> KindData:
    make = {"he": _he_planes, "mri": _mri_planes}[kind]
    train, test = make(seed, size), make(seed + 1, size)[list(TEST_PLANES)]
    what = {"he": "synthetic H&E (hed2rgb of volsr.samples 'cells' + 'texture')",
            "mri": "volsr.samples 'mri' head phantom"}[kind]
    split = (f"{what}: training on the {TRAIN_PLANES} XY planes ({size}x{size}) of a volume with seed {seed}; "
             f"the test images are planes {', '.join(map(str, TEST_PLANES))} of another volume "
             f"(seed {seed + 1})")
    return KindData([np.moveaxis(train, 1, 0)], test, split)


def kind_data(kind: str, args) -> KindData:
    if kind == "ihc":
        return ihc_data(args.tile, args.size, args.seed)
    return synthetic_data(kind, args.tile, args.size, args.seed)


def build(label: str, data: KindData, args, prior=None) -> tuple:
    """A fresh engine for ``label``, trained on ``data.train`` when it learns; (engine, fit report or None).

    ``prior``: a fitted ``brainsr`` engine whose autoencoder and latent denoiser ``brainsr-l2``
    takes over frozen (``--ablation shared``, the paper's ablation: every row on the same frozen
    prior); its noise predictor then trains for the share of the budget Brain-SR's NP stage had.
    """
    import volsr
    from volsr.engines import get_engine_class
    from volsr.training.degrade import IsotropicDegradation

    name, overrides = VARIANTS[label]
    if name == "brainsr":
        overrides = {**dict(args.brainsr_set), **overrides}
    if not get_engine_class(name).capabilities.learned:
        return volsr.create_engine(name, device=args.device), None
    kw = {"preset": args.preset} if args.preset else {}
    if prior is not None:
        from volsr.engines.brainsr import BrainSREngine

        settings = {k: v for k, v in prior.cfg.to_dict().items() if k != "freeze"}
        settings.update(overrides, latent_scale=1.0 / float(prior.ema["autoencoder"].latent_std))
        eng = BrainSREngine.from_pretrained_parts(prior.ema["autoencoder"], prior.ema["denoiser"],
                                                  device=args.device, config=settings)
        share = 1.0 - float(prior.cfg.stages[-1]) if prior.cfg.stages else 1.0
        budget = {"steps": max(1, round(args.steps * share))} if args.steps else {"minutes": args.minutes * share}
    else:
        eng = volsr.create_engine(name, device=args.device, degradation=IsotropicDegradation(scale=SCALE),
                                  **kw, **overrides)
        budget = {"steps": args.steps} if args.steps else {"minutes": args.minutes}
    fit = {"seed": args.seed, **budget, **({"batch_size": args.batch_size} if args.batch_size else {})}
    report = eng.fit(data.train, **fit)
    return eng, {k: report.get(k) for k in ("steps", "minutes", "final_loss", "batch_size")}


def _to_file_layout(chw: np.ndarray) -> tuple[np.ndarray, str]:
    return (chw[0], "YX") if chw.shape[0] == 1 else (np.moveaxis(chw, 0, -1), "YXS")


def upscale_images(eng, lr: np.ndarray, args) -> np.ndarray:
    """Every LR image (N, C, h, w) through ``volsr.api.upscale``, clipped to [0, 1]."""
    from volsr.api import upscale

    out = []
    for chw in lr:
        arr, axes = _to_file_layout(chw)
        res = upscale(arr, SCALE, engine=eng, axes=axes, device=args.device, seed=args.seed, output_dtype="float32")
        out.append(np.moveaxis(res.data, -1, 0) if axes == "YXS" else res.data[None])
    return np.clip(np.stack(out), 0.0, 1.0)


def seconds_per_tile(eng, channels: int, args) -> float:
    """Median wall seconds of ``upscale`` from a 128x128 LR input to a 512x512 output (after one warm-up)."""
    from volsr.api import upscale

    lr = np.random.default_rng(args.seed).random((channels, 128, 128)).astype(np.float32)
    arr, axes = _to_file_layout(lr)
    times = []
    for _ in range(1 + args.timing_repeats):
        t0 = time.perf_counter()
        upscale(arr, SCALE, engine=eng, axes=axes, device=args.device, seed=args.seed, output_dtype="float32")
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def run_kind(kind: str, labels: list[str], args) -> dict:
    import torch

    from volsr.evaluation import autoencoded, psnr_y, rps, rps_curves, score_2d, spectrum_error_2d
    from volsr.training.degrade import IsotropicDegradation

    data = kind_data(kind, args)
    lr_images = IsotropicDegradation(scale=SCALE)(torch.from_numpy(data.test)).numpy()
    t = args.tile
    hr, lr = _tiles(data.test, t), _tiles(lr_images, t // SCALE)
    rows, srs, latents, fitted = [], {}, {}, {}
    for label in labels:
        print(f"# {kind}: {label} ...", file=sys.stderr, flush=True)
        prior = fitted.get("brainsr") if label == "brainsr-l2" and args.ablation == "shared" else None
        eng, report = build(label, data, args, prior)
        if label == "brainsr":
            fitted[label] = eng
        srs[label] = _tiles(upscale_images(eng, lr_images, args), t)
        row = {"engine": label, **score_2d(srs[label], hr, crop_border=SCALE),
               "train_minutes": None if report is None else report["minutes"],
               "train_steps": None if report is None else report["steps"],
               "final_loss": None if report is None else report["final_loss"],
               "s_per_512_tile": seconds_per_tile(eng, hr.shape[1], args)}
        if eng.capabilities.autoencoder:
            lat = _tiles(autoencoded(eng, data.test), t)
            latents[label] = rps(lat, crop_border=SCALE)[1]
            row["hr_latent_psnr"] = psnr_y(lat, hr, crop_border=SCALE)
            row["hr_latent_spectrum_error"] = spectrum_error_2d(lat, hr, crop_border=SCALE)
        rows.append(row)
        print("  " + json.dumps(_json_safe(row)), file=sys.stderr, flush=True)
    # the LR curve is that of the bicubic-upsampled LR tiles: the bicubic engine's own curve when it ran
    curves = rps_curves(hr, lr=None if "bicubic" in srs else lr, sr=srs, crop_border=SCALE)
    for label, lp in latents.items():
        curves.log_power[f"HR-latent ({label})"] = lp
    for row in rows:
        if row["engine"] in latents:
            row["spectrum_error_vs_latent"] = curves.error(row["engine"], f"HR-latent ({row['engine']})")
    return {"kind": kind, "split": data.split, "n_test_tiles": int(len(hr)), "tile": int(hr.shape[-1]),
            "channels": int(hr.shape[1]), "rows": rows, "targets": targets(rows), "curves": curves}


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets for this kind: met / missed (only those whose engines ran)."""
    by = {r["engine"]: r for r in rows}
    b, bic, l2 = by.get("brainsr"), by.get("bicubic"), by.get("brainsr-l2")
    out = []
    if b and bic:
        out.append({"target": "brainsr spectrum error < bicubic's",
                    "values": f"{b['spectrum_error']:.3f} vs {bic['spectrum_error']:.3f}",
                    "met": b["spectrum_error"] < bic["spectrum_error"]})
    if b and l2:
        out.append({"target": "brainsr spectrum error < brainsr-l2's (L2-only)",
                    "values": f"{b['spectrum_error']:.3f} vs {l2['spectrum_error']:.3f}",
                    "met": b["spectrum_error"] < l2["spectrum_error"]})
    if b and bic:
        out.append({"target": "brainsr PSNR >= bicubic PSNR - 1 dB",
                    "values": f"{b['psnr']:.2f} vs {bic['psnr']:.2f} dB",
                    "met": b["psnr"] >= bic["psnr"] - 1.0})
    return out


def _json_safe(obj):
    """inf / NaN -> None (strict JSON); numpy scalars -> Python."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _fmt(v, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.{digits}f}"
    return str(v)


def markdown(results: list[dict], command: str, args, env: dict, figure: str) -> str:
    lines = ["# 2D super-resolution at 4x: bicubic vs Brain-SR (issue 12)", "", "```", command, "```", "",
             f"{env['machine']}; torch {env['torch']} with {env['threads']} threads"
             + (f" in each of {env['jobs']} parallel processes (one per kind)" if env.get("jobs", 1) > 1 else "")
             + f"; total {env['minutes']:.1f} min. "
             f"Learned engines: {'a budget of ' + str(args.steps) + ' steps' if args.steps else f'{args.minutes:g} min'}"
             f" of training each, preset {args.preset or 'default (config defaults)'}. "
             + ("Ablation `shared`: brainsr-l2 sits on brainsr's fitted autoencoder and latent denoiser (frozen) and "
                "trains only its noise predictor, for brainsr's NP-stage share of the budget (its train min and steps "
                "are that NP's). " if getattr(args, "ablation", "separate") == "shared" else
                "Ablation `separate`: every learned engine is a whole fit of its own. ")
             + "See the docstring of `benchmarks/bench_2d.py` for the data, engines and definitions.", "",
             "Scores on the Y channel (RGB; grey values for MRI), 4 px shaved from every tile border, mean over the "
             "test tiles. Spectrum error: RMS difference of the log10 radial power spectra (z-scored tiles, Hann "
             "window, orthonormal FFT) to HR, in decades (0 = the HR texture). *vs HR-latent*: the same against "
             "the HR tiles passed through the engine's own autoencoder, which Brain-SR can at best reproduce; "
             "*AE PSNR*, *AE spectrum error*: that autoencoder's PSNR and spectrum error against HR. *s / 512 tile*: seconds for `volsr.api.upscale` to make one "
             "512x512 output from a 128x128 input (median after a warm-up).", ""]
    cols = [("psnr", 2), ("ssim", 4), ("spectrum_error", 3), ("spectrum_error_vs_latent", 3), ("hr_latent_psnr", 2),
            ("hr_latent_spectrum_error", 3), ("train_minutes", 1), ("train_steps", 0), ("s_per_512_tile", 2)]
    for res in results:
        lines += [f"## {res['kind']}", "", f"{res['split']}; scored on {res['n_test_tiles']} {res['tile']}x{res['tile']} HR tiles, "
                  f"{res['tile'] // SCALE}x{res['tile'] // SCALE} LR.", "",
                  "| engine | PSNR dB | SSIM | spectrum error | vs HR-latent | AE PSNR | AE spectrum error | train min "
                  "| steps | s / 512 tile |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            lines.append(f"| {r['engine']} | " + " | ".join(_fmt(r.get(c), d) for c, d in cols) + " |")
        lines += ["", "| target | values | |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['values']} | {'met' if t['met'] else 'missed'} |" for t in res["targets"]]
        lines.append("")
    lines += [f"![RPS curves per kind]({figure})", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volsr.evaluation import plot_rps

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        plot_rps(res["curves"], ax=ax, title=f"{res['kind']} ({res['n_test_tiles']} test tiles)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=DEFAULT_KINDS, help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per learned engine (default 15)")
    ap.add_argument("--steps", type=int, help="a step budget instead of --minutes (smoke tests)")
    ap.add_argument("--preset", help="preset of the learned engines (e.g. tiny, small, paper)")
    ap.add_argument("--batch-size", type=int, help="training batch size (default: volsr's, 16)")
    ap.add_argument("--tile", type=int, default=128, help="HR test tile side, a multiple of 4 (default 128)")
    ap.add_argument("--size", type=int, default=256, help="plane side of the synthetic kinds (default 256)")
    ap.add_argument("--timing-repeats", type=int, default=3, help="timed upscales per engine after a warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="kinds run in parallel processes, the CPU threads split between them (default 1)")
    ap.add_argument("--ablation", choices=("shared", "separate"), default="shared",
                    help="brainsr-l2 on brainsr's frozen autoencoder + denoiser, training only its noise predictor "
                         "for brainsr's NP-stage share of the budget (shared, the paper's ablation; default), or "
                         "a whole fit of its own (separate)")
    ap.add_argument("--brainsr-set", action="append", default=[], type=_setting, metavar="KEY=VALUE",
                    help="a config setting for the brainsr rows (repeatable; JSON values), e.g. lambda_ae_adv=0.1")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "results_2d_shared.md"),
                    help="Markdown output; .json and .png go next to it")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    labels = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        ap.error(f"--kinds {args.kinds!r}: choose from {', '.join(KINDS)}")
    if not labels or any(e not in VARIANTS for e in labels):
        ap.error(f"--engines {args.engines!r}: choose from {', '.join(VARIANTS)}")
    if args.ablation == "shared" and "brainsr-l2" in labels and (
            "brainsr" not in labels or labels.index("brainsr") > labels.index("brainsr-l2")):
        ap.error("--ablation shared trains brainsr-l2 on brainsr's prior: list brainsr before brainsr-l2 "
                 "(or use --ablation separate)")
    if args.tile % SCALE or not 32 <= args.tile <= min(args.size, 256):
        ap.error(f"--tile must be a multiple of {SCALE} in [32, min(--size, 256)], got {args.tile}")
    if not args.minutes > 0 or (args.steps is not None and args.steps < 1) or args.timing_repeats < 1 or args.jobs < 1:
        ap.error("--minutes, --steps, --timing-repeats and --jobs must be positive")
    if not Path(args.out).parent.is_dir():
        ap.error(f"--out: folder {Path(args.out).parent} does not exist")
    return args, kinds, labels


def _worker_threads(n: int) -> None:
    """A worker's thread count; volsr's fit honours OMP_NUM_THREADS (:func:`volsr.runtime.hardware.configure_threads`)."""
    import os

    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, kinds, labels = parse_args(argv)
    import torch

    t0 = time.perf_counter()
    command = "python benchmarks/bench_2d.py" + ("" if not argv else " " + shlex.join(argv))
    jobs = min(args.jobs, len(kinds))
    if jobs > 1:  # one process per kind, each with its share of the threads
        import concurrent.futures as cf
        import multiprocessing as mp

        threads = max(1, torch.get_num_threads() // jobs)
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_threads,
                                    initargs=(threads,)) as pool:
            results = list(pool.map(run_kind, kinds, [labels] * len(kinds), [args] * len(kinds)))
    else:
        threads = torch.get_num_threads()
        results = [run_kind(kind, labels, args) for kind in kinds]
    out_md = Path(args.out)
    figure = out_md.with_suffix(".png")
    plot(results, figure)
    env = {"machine": f"{platform.machine()} {platform.processor() or platform.system()}",
           "torch": torch.__version__, "threads": threads, "jobs": jobs,
           "minutes": (time.perf_counter() - t0) / 60.0}
    text = markdown(results, command, args, env, figure.name)
    print(text)
    out_md.write_text(text)
    payload = {"command": command, "settings": vars(args), "scale": SCALE, "environment": env,
               "kinds": [{**{k: v for k, v in r.items() if k != "curves"}, "rps": r["curves"].to_dict()}
                         for r in results]}
    out_md.with_suffix(".json").write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
