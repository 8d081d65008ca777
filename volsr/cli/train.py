"""``volsr train``, ``volsr distil`` and ``volsr models``: the training side of the command line.

Thin over :func:`volsr.training.loop.fit_engine` and :mod:`volsr.checkpoint`; the main ``volsr``
parser (:mod:`volsr.cli`) wires these in with :func:`add_parsers`. Each sub-parser sets
``func`` to its handler, ``handler(args) -> int`` (exit code). User errors are raised as
:class:`volsr.errors.VolsrError` for the main CLI to print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import Cancelled, OutputError, VolsrError

__all__ = ["add_parsers", "run_train", "run_distil", "run_models", "learned_engines"]


def learned_engines() -> list[str]:
    """Registered engines that declare they learn (so third-party engines appear too)."""
    from ..engines import get_engine_class, list_engines

    return [n for n in list_engines() if get_engine_class(n).capabilities.learned]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``models`` sub-commands to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train a model on stacks and/or folders of 2D images",
        description=(
            "Train a learned engine on the XY planes of z-stacks and/or on folders of 2D images "
            "(TIFF/PNG) and save one .volsr model file. Interrupt with Ctrl-C and continue with --resume."
        ),
    )
    p.add_argument("paths", nargs="+", help="stack files and/or folders of 2D images")
    p.add_argument("-o", "--output", required=True, help="model file to write (e.g. model.volsr)")
    p.add_argument("--engine", default="msdsr", help="learned engine to train (default msdsr; also msunet, e2e-unet, brainsr)")
    p.add_argument("--steps", type=int, default=None, help="total training steps")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget; with --steps, stops at whichever comes first")
    p.add_argument("--crop", type=int, default=None, help="training crop size in pixels (default: the engine's)")
    p.add_argument("--task", default="rows", choices=["rows", "upscale"],
                   help="rows: z restoration (default); upscale: in-plane super-resolution by --scale")
    p.add_argument("--scale", type=int, default=4, help="with --task upscale: the upscaling factor (default 4)")
    p.add_argument("--psf-sigma-z", type=float, metavar="SIGMA",
                   help="with --task rows: axial PSF (extra z blur, Gaussian sigma in output pixels)")
    p.add_argument("--batch-size", type=int, default=16, help="planes per step (default 16)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the engine's)")
    p.add_argument("--preset", default="small", help="network size preset: small (CPU, default) or paper")
    p.add_argument("--checkpoint", default=None,
                   help="resumable checkpoint file (default: OUTPUT.ckpt next to the model)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint if it exists")
    p.add_argument("--seed", type=int, default=0, help="random seed for crops, masks and noise (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(func=run_train)

    d = subparsers.add_parser(
        "distil", help="train the one-step sampler of a fitted MSDSR model",
        description=("Train the learned noise map of one-step sampling (Brain-SR's scheme) on a fitted two-stage "
                     "MSDSR model, its regressor and denoiser frozen; restore with --sampler one-step. Use the "
                     "data the model was fitted on."),
    )
    d.add_argument("model", help="fitted msdsr model file (.volsr)")
    d.add_argument("paths", nargs="+", help="stack files and/or folders of 2D images")
    d.add_argument("-o", "--output", required=True, help="model file to write (the model plus its noise map)")
    d.add_argument("--steps", type=int, default=None, help="training steps")
    d.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget; with --steps, stops at whichever comes first")
    d.add_argument("--batch-size", type=int, default=16, help="planes per step (default 16)")
    d.add_argument("--seed", type=int, default=0, help="random seed for crops, masks and noise (default 0)")
    d.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    d.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    d.set_defaults(func=run_distil)

    m = subparsers.add_parser("models", help="list the bundled models",
                              description="List the models shipped with volsr (usable as --model NAME).")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.set_defaults(func=run_models)


def _degradation(args):
    """The training degradation for --task / --scale / --psf-sigma-z (checked before any data are read)."""
    from ..engines import get_engine_class
    from ..training.degrade import IsotropicDegradation, RowDegradation

    if args.task == "upscale":
        if not get_engine_class(args.engine).capabilities.upscale:
            raise VolsrError(f"engine '{args.engine}' cannot be trained to upscale images; "
                             f"2D engines: {', '.join(n for n in learned_engines() if _upscales(n))}")
        if args.psf_sigma_z is not None:
            raise VolsrError("--psf-sigma-z is the axial PSF of z restoration (--task rows), not of --task upscale")
        return IsotropicDegradation(scale=args.scale)
    return RowDegradation(psf_sigma=args.psf_sigma_z or 0.0)


def _upscales(name: str) -> bool:
    from ..engines import get_engine_class

    return get_engine_class(name).capabilities.upscale


def _checkpoint_path(args) -> Path:
    return Path(args.checkpoint) if args.checkpoint else Path(str(args.output) + ".ckpt")


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``volsr train``."""
    from ..engines import create_engine
    from ..training.budget import check_budget

    out = Path(args.output)
    if args.engine not in learned_engines():  # checked here, not as parser choices: --help stays light
        raise VolsrError(f"engine '{args.engine}' cannot be trained; learned engines: {', '.join(learned_engines())}")
    try:
        check_budget(args.steps, args.minutes)
    except VolsrError as err:
        raise VolsrError(f"bad training budget (--steps / --minutes): {err}") from None
    _check_output(out, args.overwrite)
    ckpt = _checkpoint_path(args)

    opts = {"preset": args.preset, "degradation": _degradation(args)}
    if args.crop is not None:
        opts["crop"] = args.crop
    engine = create_engine(args.engine, device=args.device, **opts)
    data = engine.training_data(args.paths, crop=args.crop)
    budget = " and ".join(x for x in (f"{args.steps} steps" if args.steps else "",
                                       f"{args.minutes:g} min" if args.minutes else "") if x)
    print(f"volsr train: engine {engine.name} ({args.preset}) on {engine.device}; data: {data.describe()}; "
          f"budget {budget}; checkpoints -> {ckpt}", file=sys.stderr)

    progress = _reporter(f"train {engine.name}")
    try:
        report = engine.fit(
            data, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            progress=progress, checkpoint_path=ckpt, checkpoint_every=args.checkpoint_every, resume=args.resume,
        )
    except (KeyboardInterrupt, Cancelled):
        progress.close()
        print(f"\ninterrupted; the last state is in {ckpt} — run the same command with --resume to continue",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    engine.provenance["command"] = "volsr train " + " ".join(str(p) for p in args.paths)
    saved = engine.save(out, overwrite=True)
    size = saved.stat().st_size / 1e6
    resumed = f", resumed from step {report['resumed_from']}" if report["resumed_from"] is not None else ""
    est = " (step count estimated from speed)" if report["estimated_total"] else ""
    print(f"trained {report['steps']} steps{est}{resumed} in {report['minutes']:.1f} min, "
          f"final loss {report['final_loss']:.4f}; model saved to {saved} ({size:.1f} MB)", file=sys.stderr)
    return 0


def _reporter(label: str):
    """The fit ``progress`` callback: the CLI's one reporter, its fit stage shown as ``label``."""
    from .progress import ProgressReporter

    return ProgressReporter(labels={"fit": label})


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it or choose another -o")
    if not out.parent.exists():
        raise OutputError(f"folder {out.parent} does not exist; create it first")


def run_distil(args: argparse.Namespace) -> int:
    """Handler of ``volsr distil``: load, train the noise map, save (atomically) to ``-o``."""
    from ..engines.registry import load_engine
    from ..training.budget import check_budget

    out = Path(args.output)
    try:
        check_budget(args.steps, args.minutes)
    except VolsrError as err:
        raise VolsrError(f"bad training budget (--steps / --minutes): {err}") from None
    _check_output(out, args.overwrite)
    engine = load_engine(args.model, device=args.device)
    if not engine.capabilities.distil:
        raise VolsrError(f"{args.model} is a '{engine.name}' model; volsr distil trains the one-step sampler of "
                         "msdsr models")
    progress = _reporter("distil one-step")
    try:
        report = engine.distil(args.paths, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                               seed=args.seed, progress=progress)
    except (KeyboardInterrupt, Cancelled):
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        progress.close()
    engine.provenance["command"] = f"volsr distil {args.model} " + " ".join(str(p) for p in args.paths)
    saved = engine.save(out, overwrite=True)
    print(f"trained the noise map {report['steps']} steps in {report['minutes']:.1f} min, final loss "
          f"{report['final_loss']:.4f}; model saved to {saved} — restore with --sampler one-step", file=sys.stderr)
    return 0


def run_models(args: argparse.Namespace) -> int:
    """Handler of ``volsr models``."""
    import json

    from ..checkpoint import bundled_models_dir, list_bundled_models

    models = list_bundled_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print(f"no bundled models installed (looked in {bundled_models_dir()})")
        return 0
    rows = [("NAME", "ENGINE", "SIZE", "TRAINED ON")]
    for m in models:
        rows.append((m["name"], m["engine"], f"{m['size_bytes'] / 1e6:.1f} MB", str(m["trained_on"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return 0
