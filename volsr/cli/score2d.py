"""``volsr score2d``: PSNR/SSIM (Y channel) and spectrum error of a 2D SR result against its HR reference.

A thin shell over :mod:`volsr.evaluation` (conventions there). Integer images are scaled to
[0, 1] by their dtype's maximum (uint8 / 255), float images are taken as they are; a stack is
scored plane by plane (mean over planes). With ``--lr`` the LR image's bicubic upsampling is
scored too (the baseline, in the LR file's dtype as ``volsr upscale`` would write it: 8-bit
rounding adds high-frequency power the spectrum error sees) and the LR curve joins the radial
power spectra in the JSON file.

With ``--model`` (a model file or bundled name, of an engine that declares
``capabilities.autoencoder``, e.g. ``brainsr``) the HR image is passed through that model's
latent autoencoder (:func:`volsr.evaluation.autoencoded`): the best a latent-diffusion model
can give back. It adds the row "HR-latent" (the autoencoder's PSNR/SSIM (Y) and spectrum error
against HR), the SR result's spectrum error against it (column "vs HR-latent", JSON
``spectrum_error_vs_latent``) and the "HR-latent" RPS curve. A model without an autoencoder, or
trained for other channels than the reference, is refused before anything is computed or written.

Wire into the main parser with ``add_parsers(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["add_parsers", "run_score2d"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score2d", help="PSNR/SSIM (Y channel) and spectrum error of a 2D SR image against its HR reference",
        description="Score a super-resolved 2D image (or every plane of a stack) against its high-resolution "
                    "reference: PSNR and SSIM on the BT.601 Y channel for RGB (grey values as they are) and the "
                    "radial-power-spectrum error, as in the SR papers. With --model (a latent engine such as "
                    "brainsr) the reference through the model's autoencoder is scored too (HR-latent: the best a "
                    "latent model can give back) and SR's spectrum error against it.")
    p.add_argument("input", help="the SR result (TIFF / PNG / JPEG, grey or RGB, or a stack)")
    p.add_argument("--reference", required=True, help="the HR image, the same size and channels as the SR result")
    p.add_argument("--lr", help="the LR input: adds the bicubic baseline and the LR spectrum (sides = HR // scale)")
    p.add_argument("--crop-border", type=int, default=0, metavar="N",
                   help="pixels cut from every side before scoring (default 0; papers shave the scale)")
    p.add_argument("--model", metavar="MODEL.volsr",
                   help="a model (file or bundled name) of a latent engine such as brainsr: adds the HR-latent "
                        "curve (HR through its autoencoder), the autoencoder's PSNR/SSIM against HR and SR's "
                        "spectrum error against HR-latent")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where --model's autoencoder runs (default auto)")
    p.add_argument("--data-range", type=float, default=1.0,
                   help="intensity range for PSNR/SSIM after integer images are scaled to [0, 1] (default 1)")
    p.add_argument("--json", metavar="OUT.json", help="also write every number and the RPS curves to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run_score2d)


def _read(path: str, what: str) -> tuple[np.ndarray, np.dtype]:
    """A file as a (N, C, H, W) batch in [0, 1] (integer dtypes / their maximum) and its dtype."""
    from ..api import read_image
    from ..errors import InputError
    from ..evaluation import unit_range

    stack = read_image(path)
    czyx = stack.canonical()
    if czyx.shape[0] not in (1, 3):
        raise InputError(f"{what} {path} has {czyx.shape[0]} channels; score2d scores grey (1) or RGB (3) images")
    return np.moveaxis(unit_range(czyx), 1, 0), czyx.dtype


def _as_written(up: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The bicubic baseline as ``volsr upscale`` writes it for an input of ``dtype`` (integers: rounded)."""
    if not np.issubdtype(dtype, np.integer):
        return up
    top = float(np.iinfo(dtype).max)
    return np.round(np.clip(up, 0.0, 1.0) * top) / top


def _check_latent_model(model: str) -> dict:
    """The model's header (no weights), refused when its engine has no latent autoencoder."""
    from ..checkpoint import read_model_info
    from ..engines import get_engine_class, list_engines
    from ..errors import InputError

    info = read_model_info(model)
    if not get_engine_class(info["engine"]).capabilities.autoencoder:
        latent = [n for n in list_engines() if get_engine_class(n).capabilities.autoencoder]
        raise InputError(f"model {model} is a '{info['engine']}' model, which has no latent autoencoder; --model "
                         f"needs an engine with one, such as {' or '.join(latent) or 'brainsr'}")
    return info


def _check_model_channels(info: dict, model: str, reference: str, channels: int) -> None:
    from ..errors import InputError

    want = int(info["config"].get("channels", 1))
    if want != channels:
        raise InputError(f"model {model} was trained for {want} channel(s) but the reference {reference} has "
                         f"{channels}; use a '{info['engine']}' model trained on {channels}-channel images")


def _check_json(path: Path, overwrite: bool) -> None:
    from ..errors import OutputError

    if not path.parent.exists():
        raise OutputError(f"folder {path.parent} of --json does not exist; create it or choose another path")
    if path.is_dir():
        raise OutputError(f"--json {path} is a folder; give a file name such as {path / 'scores.json'}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it or choose another --json path")


def _write_json(path: Path, payload: dict) -> None:
    from ..checkpoint import _atomic_write

    text = json.dumps(payload, indent=2, allow_nan=False)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def _finite(v: float) -> float | None:
    return v if np.isfinite(v) else None  # strict JSON has no inf (a perfect match's PSNR)


def run_score2d(args: argparse.Namespace) -> int:
    from ..engines import load_engine
    from ..errors import InputError
    from ..evaluation import autoencoded, rps_curves, score_2d, upsample_lr
    from ..runtime.hardware import resolve_device

    out = Path(args.json) if args.json else None
    if out is not None:
        _check_json(out, args.overwrite)
    if not (np.isfinite(args.data_range) and args.data_range > 0):
        raise InputError(f"--data-range must be a positive number, got {args.data_range:g}")
    info = _check_latent_model(args.model) if args.model else None  # model and device: refused before any work
    device = resolve_device(args.device) if info is not None else None
    sr, hr = _read(args.input, "SR image")[0], _read(args.reference, "reference")[0]
    if sr.shape != hr.shape:
        raise InputError(f"{args.input} is {_size(sr)} but the reference {args.reference} is {_size(hr)}: the SR "
                         "result and its HR reference must be the same size (upscale to the reference's size)")
    if info is not None:
        _check_model_channels(info, args.model, args.reference, hr.shape[1])
    kw = dict(data_range=args.data_range, crop_border=args.crop_border)
    scores = {"SR": score_2d(sr, hr, **kw)}
    lr, scale = None, None
    if args.lr:
        lr, lr_dtype = _read(args.lr, "LR image")
        if lr.shape[:2] != hr.shape[:2]:
            raise InputError(f"the LR image {args.lr} is {_size(lr)} but the reference is {_size(hr)}: "
                             "they need the same planes and channels")
        up, scale = upsample_lr(lr, hr.shape[-2:])
        scores["bicubic (LR)"] = score_2d(_as_written(up, lr_dtype), hr, **kw)
    named = {"SR": sr}
    if info is not None:
        latent = autoencoded(load_engine(args.model, device=device), hr)
        scores["HR-latent"] = score_2d(latent, hr, **kw)  # its PSNR: the autoencoder's, against HR
        named["HR-latent"] = latent
    curves = rps_curves(hr, sr=named, lr=lr, crop_border=args.crop_border)
    if info is not None:
        scores["SR"]["spectrum_error_vs_latent"] = curves.error("SR", "HR-latent")
    _print_table(args, scores, hr, scale)
    if out is not None:
        payload = {"input": args.input, "reference": args.reference, "lr": args.lr, "scale": scale,
                   "model": None if info is None else {"path": args.model, "engine": info["engine"]},
                   "data_range": args.data_range,
                   "scores": {k: {**v, "psnr": _finite(v["psnr"])} for k, v in scores.items()},
                   "rps": curves.to_dict()}
        _write_json(out, payload)
        print(f"volsr: wrote {out}")
    return 0


def _size(a: np.ndarray) -> str:
    n, c, h, w = a.shape
    return f"{h}x{w} px with {c} channel{'s' if c > 1 else ''}" + (f" ({n} planes)" if n > 1 else "")


def _print_table(args, scores: dict, hr: np.ndarray, scale) -> None:
    channel = "Y channel of RGB" if hr.shape[1] == 3 else "grey values"
    extra = f", scale {scale}" if scale else ""
    print(f"{args.input} vs {args.reference}: {_size(hr)}, {channel}, border {args.crop_border} px{extra}")
    latent = "HR-latent" in scores
    print(f"  {'':<14}{'PSNR dB':>9}{'SSIM':>9}{'spectrum err':>14}" + (f"{'vs HR-latent':>14}" if latent else ""))
    for name, s in scores.items():
        vs = s.get("spectrum_error_vs_latent")
        print(f"  {name:<14}{s['psnr']:>9.2f}{s['ssim']:>9.4f}{s['spectrum_error']:>14.4f}"
              + (f"{vs:>14.4f}" if vs is not None else ""))
    print("  (spectrum error: RMS difference of log10 radial power spectra vs the reference, decades; 0 = same)")
    if latent:
        print(f"  (HR-latent: the reference through {args.model}'s autoencoder, the best a latent model gives back; "
              "its PSNR/SSIM are the autoencoder's)")
