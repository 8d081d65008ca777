"""``volsr upscale``: in-plane super-resolution of an image or of every plane of a stack."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_parsers", "run_upscale"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "upscale", help="in-plane super-resolution of a 2D image (or every plane of a stack)",
        description="Upscale an image in-plane (grayscale or RGB TIFF/PNG/JPEG, a whole-slide level, or every "
                    "XY plane of a stack); the pixel size in the output is divided by the scale.")
    p.add_argument("input", help="TIFF / OME-TIFF / PNG / JPEG image, a pyramidal TIFF (see --level) or a stack")
    p.add_argument("-o", "--output", help="output OME-TIFF (default: <input>_x<scale>.tif)")
    p.add_argument("--scale", type=float, help="upscaling factor, a whole number (default: the model's, else 4)")
    p.add_argument("--engine", default="bicubic", help="2D engine (default bicubic)")
    p.add_argument("--model", help="a .volsr model of a 2D engine")
    p.add_argument("--level", type=int, help="resolution level of a pyramidal / whole-slide TIFF (0 = full)")
    p.add_argument("--axes", help="axes string of the input (e.g. YX, YXS, ZYX, CYX)")
    p.add_argument("--tile", type=int, default=512, help="tile side in input pixels (default 512)")
    p.add_argument("--block", type=int,
                   help="large images are streamed block by block: kept block side in input pixels (default 2048, "
                        "less at high scales; memory grows with its square)")
    p.add_argument("--fit-minutes", type=float,
                   help="learned engine without --model: zero-shot fit on the image itself (default 2 min)")
    p.add_argument("--fit-steps", type=int, help="zero-shot fit budget in steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--float32", action="store_true", help="write float32 instead of the input dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_upscale)


def _default_output(path: Path, scale) -> Path:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + f"_x{scale}.tif")
    return path.with_name(f"{path.stem}_x{scale}.tif")


def run_upscale(args: argparse.Namespace) -> int:
    from ..api import DEFAULT_SCALE, upscale
    from ..errors import InputError
    from .app import check_output
    from .progress import ProgressReporter

    src = Path(args.input)
    if not src.is_file():
        raise InputError(f"{src} does not exist or is not a file; check the path")
    if args.scale is not None and (not float(args.scale).is_integer() or args.scale < 1):
        raise InputError(f"--scale must be a whole number >= 1, got {args.scale:g}")
    scale = None if args.scale is None else int(args.scale)
    out = Path(args.output) if args.output else _default_output(src, scale or DEFAULT_SCALE)
    check_output(out, args.overwrite)
    from ..api import check_fit_budget
    from ..engines import get_engine_class
    from ..runtime.hardware import resolve_device

    check_fit_budget(args.fit_steps, args.fit_minutes)
    resolve_device(args.device)  # --device cuda without a GPU: one error line before the fit notice
    if args.model is None and get_engine_class(args.engine).capabilities.learned:
        print(f"volsr: no --model given: zero-shot fit of '{args.engine}' on {src.name} itself (pairs made by "
              f"downsampling it further), then upscaling", file=sys.stderr)
    progress = ProgressReporter(enabled=not args.quiet)
    t0 = time.perf_counter()
    try:
        res = upscale(src, scale, engine=args.engine, model=args.model, axes=args.axes, level=args.level,
                      device=args.device, tile=args.tile, seed=args.seed, fit_steps=args.fit_steps,
                      fit_minutes=args.fit_minutes, block=args.block, out=out, overwrite=args.overwrite,
                      output_dtype="float32" if args.float32 else "same", progress=progress)
    finally:
        progress.close()
    how = " (streamed block by block)" if res.path is not None else ""
    print(f"volsr: upscaled {src.name} {res.scale}x with '{res.engine.name}' -> {tuple(res.data.shape)}{how} "
          f"in {time.perf_counter() - t0:.1f} s; wrote {out}", file=sys.stderr)
    return 0
