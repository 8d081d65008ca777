"""The ``volsr`` command: a thin shell over :mod:`volsr.api`.

Every user error (:class:`volsr.errors.VolsrError`) becomes one line on stderr and exit
code 2, and so does running out of memory (the line names ``--batch-size``); Ctrl-C exits
130. Outputs are written atomically, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path

from ..errors import Cancelled, OutputError, VolsrError
from .progress import ProgressReporter

SUBCOMMAND_MODULES = ("volsr.cli.train", "volsr.cli.evaluate", "volsr.cli.upscale", "volsr.cli.score2d",
                      "volsr.cli.doctor")


class StderrLog(logging.Handler):
    """The ``volsr`` logger's INFO lines (device, dtype, batch) as ``volsr: ...`` on stderr.

    Looks ``sys.stderr`` up at every line, so it follows redirections made after it was added.
    """

    def emit(self, record: logging.LogRecord) -> None:
        print(f"volsr: {record.getMessage()}", file=sys.stderr)


def show_log() -> None:
    """Route the library's INFO log lines to the terminal (once per process)."""
    log = logging.getLogger("volsr")
    if not any(isinstance(h, StderrLog) for h in log.handlers):
        log.addHandler(StderrLog(logging.INFO))
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)


def default_output(input_path: str | None) -> Path:
    p = Path(input_path or "sample.tif")
    name = p.name
    for suffix in (".ome.tiff", ".ome.tif", ".nii.gz"):
        if name.lower().endswith(suffix):
            return p.with_name(name[: -len(suffix)] + "_volsr" + (".tif" if "ome" in suffix else suffix))
    stem, ext = p.stem, p.suffix.lower()
    if ext not in (".tif", ".tiff", ".npy", ".nii"):
        ext = ".tif"
    return p.with_name(stem + "_volsr" + ext)


def check_output(path: Path, overwrite: bool, what: str = "stack") -> None:
    """Fail before any work when the output (a stack, or a ``what='model'`` file) cannot be written."""
    from ..io.stacks import SUPPORTED_EXTENSIONS, _extension

    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist; create it or choose another -o path")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name such as {path / 'stack_volsr.tif'}")
    if what == "stack" and _extension(path) is None:
        raise OutputError(f"{path.name}: unsupported output type; write one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it or choose another -o path")


# -- info -------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from ..io import read_stack

    stack = read_stack(args.input, axes=args.axes)
    c, z, y, x = stack.canonical().shape
    print(f"file:      {args.input}")
    print(f"axes:      {stack.axes}  shape {tuple(stack.data.shape)}  dtype {stack.data.dtype}")
    print(f"canonical: C={c} Z={z} Y={y} X={x}")
    unit = stack.unit or ""
    sp = ", ".join("?" if s is None else f"{s:g}" for s in stack.spacing)
    print(f"spacing:   (z, y, x) = ({sp}) {unit}")
    f = stack.z_factor
    if f is None:
        print("z factor:  unknown (no spacing in the file): pass --z-factor to infer")
    elif z >= 2 and f >= 1:
        from ..grid import OutputGrid, VolumeGrid

        grid = VolumeGrid((z, y, x), z=OutputGrid(z, f))
        print(f"z factor:  {f:g}  -> {grid.shape_out[0]} output planes")
    else:
        print(f"z factor:  {f:g}  (volsr infer needs >= 2 planes and a factor >= 1)")
    if stack.measured_planes is not None:
        print(f"measured:  {len(stack.measured_planes)} planes recorded by volsr (the others were restored)")
    if args.damaged_planes is not None:
        _print_damaged(args.damaged_planes, z, f)
    if args.check_planes:
        _print_plane_check(args.input, stack.canonical(), f)
    return 0


def _print_damaged(text: str, n_planes: int, factor) -> None:
    """Where ``--damaged-planes`` fall on the output grid, checked as ``volsr infer`` checks them."""
    from ..grid import OutputGrid, format_ranges, parse_plane_list

    damaged = parse_plane_list(text, n_planes)
    print(f"damaged:   planes {format_ranges(damaged)} ({len(damaged)} of {n_planes}) restored as unmeasured rows", end="")
    if factor is None or factor < 1:
        print("; output rows need the z factor (--z-factor)")
        return
    grid = OutputGrid(n_planes, factor, damaged=damaged)
    print(f" at output rows {', '.join(map(str, grid.damaged_positions))}")


def _print_plane_check(path, czyx, factor) -> None:
    """``volsr info --check-planes``: planes whose statistics are outliers against their neighbours."""
    from ..grid import format_ranges
    from ..metrics.plane_outliers import MIN_PLANES, check_planes

    z = czyx.shape[1]
    if z < MIN_PLANES:
        print(f"planes:    too few planes to check (need >= {MIN_PLANES})")
        return
    flags = check_planes(czyx)
    print(f"planes:    checked {z}; {len(flags)} look damaged")
    rows = factor is not None and factor >= 1
    for flag in flags:
        where = f"  (output row {round(flag.index * factor)})" if rows else ""
        print(f"  plane {flag.index}: {'; '.join(flag.reasons)}{where}")
    if flags:
        print(f"restore them as unmeasured rows: volsr infer {path} "
              f"--damaged-planes {format_ranges(f.index for f in flags)}")


# -- infer ------------------------------------------------------------------------------
def cmd_infer(args) -> int:
    from ..api import DEFAULT_FIT_MINUTES, check_fit_budget, restore
    from ..io import write_stack
    from ..runtime.hardware import resolve_device

    if args.input is None and not args.sample:
        raise VolsrError("give a stack to restore (volsr infer stack.tif) or --sample for the bundled sample")
    if args.sample:
        from ..samples import sample_stack

        source = sample_stack()
        out = Path(args.output or "sample_volsr.tif")
    else:
        source = args.input
        if not Path(args.input).exists():
            raise VolsrError(f"{args.input} does not exist")
        out = Path(args.output) if args.output else default_output(args.input)
    check_output(out, args.overwrite)
    std_out = out.with_name(out.name.replace("_volsr", "_volsr_std")) if args.n_samples > 1 else None
    if std_out == out:
        std_out = out.with_name("std_" + out.name)
    if std_out is not None:
        check_output(std_out, args.overwrite)

    from ..grid import parse_plane_list

    damaged = parse_plane_list(args.damaged_planes)  # a malformed list: one line before any work
    check_fit_budget(args.fit_steps, args.fit_minutes)  # before the 'fitting ...' notice, not after it
    resolve_device(args.device)  # --device cuda without a GPU: one error line before any notice or work

    model = args.model
    if args.init_model is not None and model is not None:
        raise VolsrError("--model restores with a finished model, --init-model fine-tunes one: give only one")
    if args.sample and model is None and args.engine == "msdsr" and not args.fit and args.init_model is None:
        model = "sample_model"  # the bundled model (`volsr models`): instant results on the bundled sample
    model_out = None
    from ..engines import get_engine_class

    learned = get_engine_class(args.engine).capabilities.learned
    if learned and model is None:
        model_out = Path(args.save_model) if args.save_model else out.with_suffix(".volsr")
        check_output(model_out, args.overwrite, what="model")  # before a fit of minutes, not after it
        budget = f"{args.fit_steps} steps" if args.fit_steps else f"{args.fit_minutes or DEFAULT_FIT_MINUTES:g} min"
        start = f"starting from {args.init_model}" if args.init_model else "from scratch"
        print(f"volsr: no --model given: fitting a '{args.engine}' model on the stack's own XY planes, {start} "
              f"(budget {budget}); it will be saved to {model_out}", file=sys.stderr)
    progress = ProgressReporter(enabled=not args.quiet)
    t0 = time.perf_counter()
    try:
        res = restore(
            source, engine=args.engine, model=model, z_factor=args.z_factor, axes=args.axes, planes=args.planes,
            fusion=args.fusion, blur_sigma=args.blur, device=args.device, batch_size=args.batch_size,
            fit_steps=args.fit_steps, fit_minutes=args.fit_minutes, model_out=model_out, seed=args.seed,
            init_model=args.init_model,
            n_samples=args.n_samples, sampling_steps=args.steps, sampler=args.sampler, noise_match=args.noise_match,
            realism=args.realism, psf_sigma_z=args.psf_sigma_z, psf_file=args.psf_file, precision=args.precision,
            damaged=damaged, output_dtype="float32" if args.float32 else "same", progress=progress,
        )
    finally:
        progress.close()
    g = res.grid
    # the good measured planes' output rows go into the file (damaged ones were restored):
    # `volsr score` takes its XY reference from them
    write_stack(out, res.data, res.axes, spacing=res.spacing, unit=res.unit, overwrite=args.overwrite,
                measured_planes=g.good_positions)
    if std_out is not None and res.std is not None:
        write_stack(std_out, res.std, res.axes, spacing=res.spacing, unit=res.unit, overwrite=args.overwrite,
                    measured_planes=g.good_positions)
    restored = f", {len(g.damaged)} damaged plane(s) restored" if g.damaged else ""
    print(f"volsr: {g.n_in} -> {g.n_out} z planes (factor {res.z_factor:g}, engine {res.engine.name}{restored}) "
          f"in {time.perf_counter() - t0:.1f} s; wrote {out}" + (f" and {std_out}" if std_out else ""),
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="volsr", description="Isotropic restoration of anisotropic z-stacks (masked-slice diffusion).")
    parser.add_argument("--version", action="version", version=f"volsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="shape, axes, voxel spacing and z factor of a stack")
    p.add_argument("input")
    p.add_argument("--axes", help="override the axes string (e.g. ZYX, CZYX, ZCYX)")
    p.add_argument("--check-planes", action="store_true",
                   help="list z planes whose mean, contrast, fine detail, correlation or alignment break "
                        "with their neighbours (folds, lost sections, dropped or shifted frames); reports only")
    p.add_argument("--damaged-planes", metavar="LIST",
                   help="show where these input planes (e.g. 12,37-39) fall on the output grid of volsr infer")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("infer", help="restore a z-stack to isotropic sampling")
    p.add_argument("input", nargs="?", help="TIFF / OME-TIFF / ImageJ TIFF, .npy or NIfTI stack")
    p.add_argument("-o", "--output", help="output path (default: <input>_volsr.tif, OME-TIFF)")
    p.add_argument("--sample", action="store_true", help="restore the bundled sample stack")
    p.add_argument("--engine", default="msdsr", help="msdsr (default), msunet, e2e-unet, brainsr, nearest, linear, cubic")
    p.add_argument("--model", help="a .volsr model file or bundled model name (see `volsr models`)")
    p.add_argument("--fit", action="store_true", help="with --sample: fit on the sample instead of the bundled model")
    p.add_argument("--init-model", metavar="MODEL",
                   help="start the self-supervised fit from this model (fine-tune) instead of from scratch")
    p.add_argument("--fit-steps", type=int, help="self-supervised fit budget in steps")
    p.add_argument("--fit-minutes", type=float, help="self-supervised fit budget in minutes")
    p.add_argument("--save-model", help="where to save a fitted model (default: next to the output)")
    p.add_argument("--z-factor", type=float, help="z spacing / xy spacing (default: from the file's spacing)")
    p.add_argument("--axes", help="axes string of the input (e.g. ZYX, CZYX, ZCYX, TZCYX, ZYXS)")
    p.add_argument("--planes", default="both", choices=["both", "xz", "yz"])
    p.add_argument("--fusion", default="mean", choices=["mean", "geometric", "xz", "yz"])
    p.add_argument("--blur", type=float, metavar="SIGMA", help="3D Gaussian post-blur sigma (paper: 0.5)")
    p.add_argument("--steps", type=int, help="sampling steps for diffusion engines (default: the model's; "
                   "new MSDSR models: 4)")
    p.add_argument("--sampler", choices=["ddim", "ddpm", "one-step"],
                   help="msdsr sampler (default: the model's); one-step needs a model from `volsr distil`")
    p.add_argument("--noise-match", type=float, metavar="S",
                   help="diffusion engines: noise added to generated planes to match the measured planes' "
                        "noise (default: the model's, 1; 0 = smooth)")
    p.add_argument("--realism", type=float, metavar="R",
                   help="two-stage diffusion models: 0 = the regression estimate (best PSNR/SSIM, for measurement "
                        "and segmentation) .. 1 = a full diffusion sample (realistic texture, for looking); "
                        "default: the model's (new MSDSR models: 0.53)")
    p.add_argument("--psf-sigma-z", metavar="SIGMA",
                   help="axial PSF for the self-supervised fit: extra z blur beyond the lateral, as a Gaussian "
                        "sigma in output pixels (e.g. 2) or a length (e.g. 0.8um); default none")
    p.add_argument("--psf-file", metavar="TIFF",
                   help="measured PSF stack (ZYX, same spacing as the input) whose z profile is the axial PSF")
    p.add_argument("--damaged-planes", metavar="LIST",
                   help="input planes to restore instead of keep (folds, lost sections, dropped frames): 0-based "
                        "z indices and ranges, e.g. 12,37-39; restored from the good planes around them and left "
                        "out of the self-supervised fit")
    p.add_argument("--n-samples", type=int, default=1, help=">1: also write a per-voxel std (uncertainty) map")
    p.add_argument("--batch-size", type=int, help="planes per engine call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--float32", action="store_true", help="write float32 instead of the input dtype")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="network arithmetic: auto (default: bfloat16 autocast + channels-last where the CPU/GPU "
                        "computes bfloat16 natively, else float32), float32 (bit-reproducible, the exact arithmetic "
                        "of earlier versions) or bfloat16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_infer)

    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        mod.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_log()
    try:
        return int(args.func(args) or 0)
    except VolsrError as err:
        print(f"volsr: error: {err}", file=sys.stderr)
        return 2
    except Cancelled:
        print("volsr: cancelled; nothing written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("volsr: interrupted; nothing written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `volsr doctor --json | head`: the reader left; no traceback
        _silence_stdout()
        return 141
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        print(f"volsr: error: {OUT_OF_MEMORY} ({_first_line(err)})", file=sys.stderr)
        return 2


#: The one line an allocation failure becomes (torch's CUDA / MPS out-of-memory errors, Python's MemoryError).
OUT_OF_MEMORY = ("out of memory; pass a smaller --batch-size (planes per network call; upscale: a smaller --tile "
                 "or --block), restore a crop of the stack, or free memory used by other programs")


def _out_of_memory(err: BaseException) -> bool:
    from ..runtime.hardware import is_out_of_memory

    return isinstance(err, MemoryError) or is_out_of_memory(err)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush into a closed pipe stays quiet."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed
        pass


if __name__ == "__main__":
    sys.exit(main())
