"""``volsr score`` and ``volsr eval``: thin command-line shells over :mod:`volsr.evaluation`.

``volsr score restored.tif --reference refs/``
    SliceFID (FID of XY, XZ, YZ slices against reference HR 2D images, and their mean) and
    the spectral isotropy gap of any (restored) stack. The gap's XY reference is the
    *measured* planes when their positions are known (recorded by ``volsr infer``, or
    ``--factor`` / ``--measured-planes``); otherwise all planes, with a warning.
``volsr eval hr_volume.tif --factors 2 4 8 --engines nearest linear cubic --out results/``
    The paper's paired-2D and 3D protocols on an isotropic HR volume; writes
    ``results.csv`` (every number, long format), ``spectra.csv``, ``tables.md`` and PNG
    figures. Same numbers as :func:`volsr.evaluation.evaluate` with the same arguments.

FID features default to ``inception`` (needs the FID weight file; see
:mod:`volsr.metrics.features`). ``--features lowlevel`` works offline but its numbers are
not comparable with published FID — it is never chosen silently.

Wire into the main parser with ``add_parsers(subparsers)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError, VolsrError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


# ----------------------------------------------------------------------------- inputs
def _read_image_file(path: Path) -> list[np.ndarray]:
    """One file -> list of (C, H, W) images: a 2D (grey or RGB) image, or the XY planes of a stack.

    2D images go through :func:`volsr.io.read_image_2d` (its alpha rule: dropped for
    PNG/JPEG/BMP, kept for TIFF); TIFFs with more than a 2D image, ``.npy`` and NIfTI files
    are read as stacks.
    """
    from ..io import read_image_2d, read_stack

    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        try:
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tf.series[0].shape
        except Exception as err:  # noqa: BLE001
            raise InputError(f"cannot read reference image {path}: {err}") from None
        if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4)):
            return [read_image_2d(path)]
    elif not name.endswith((".npy", ".nii", ".nii.gz")):
        return [read_image_2d(path)]
    czyx = read_stack(path).canonical()
    return [np.asarray(p) for p in np.moveaxis(czyx, 1, 0)]


def load_reference(path) -> list[np.ndarray]:
    """Reference HR 2D images from a folder of images/stacks or from one file.

    A folder: every ``.tif/.tiff/.png/.jpg/.jpeg/.bmp`` file in it (sorted; 2D and RGB
    images as they are, 3D stacks contribute their XY planes). A file: a 2D image, or a
    stack whose XY planes are the references.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise InputError(f"reference folder {p} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        images = [im for f in files for im in _read_image_file(f)]
    elif p.is_file():
        images = _read_image_file(p)
    else:
        raise InputError(f"reference {p} does not exist; give a folder of HR 2D images or a stack")
    channels = {im.shape[0] for im in images}
    if len(channels) != 1:
        raise InputError(f"reference images have different channel counts {sorted(channels)}; use images of one kind")
    return images


def _read_volume(path, axes, *, with_stack: bool = False):
    from ..io import read_stack

    if not Path(path).exists():
        raise InputError(f"{path} does not exist")
    stack = read_stack(path, axes=axes)
    if with_stack:
        return stack.canonical(), stack
    f = stack.z_factor
    if f is not None and abs(f - 1.0) > 0.05:  # (score: see _score_volume)
        print(f"volsr: warning: {path} has z spacing {f:g}x its xy spacing; these metrics assume an isotropic "
              "grid (score a restored stack, or evaluate an isotropic HR volume)", file=sys.stderr)
    return stack.canonical()


def _features_note(desc: dict) -> str:
    if desc.get("comparable_to_published"):
        return f"{desc['features']} features, comparable with published FID"
    return f"{desc['features']} features, NOT comparable with published FID"


# ----------------------------------------------------------------------------- score
def cmd_score(args) -> int:
    """Print SliceFID (XY, XZ, YZ, mean) against ``--reference`` and the isotropy gap."""
    from ..metrics import axis_spectra, get_extractor, reference_stats, slice_fid

    vol, stack = _read_volume(args.input, args.axes, with_stack=True)
    measured, source = _measured_planes(args, stack, vol.shape[1])
    if measured is None:
        print(f"volsr: warning: the measured planes of {args.input} are unknown (no volsr record in the file, "
              "no --factor / --measured-planes): the isotropy gap takes its XY reference from ALL planes, "
              "generated ones included, so an engine that smooths also smooths its own reference",
              file=sys.stderr)
    result = {}
    if args.reference:
        refs = load_reference(args.reference)
        if refs[0].shape[0] != vol.shape[0]:
            raise InputError(
                f"{args.input} has {vol.shape[0]} channel(s) but the reference images have {refs[0].shape[0]}"
            )
        ex = get_extractor(args.features, device=args.device, weights=args.inception_weights,
                           n_channels=3 if vol.shape[0] == 3 else 1)
        ref = reference_stats(refs, extractor=ex, crop=args.crop, n_crops=args.n_crops, seed=args.seed,
                              intensity=args.intensity)
        r = slice_fid(vol, ref, n_crops=args.n_crops, seed=args.seed)
        result.update(r.as_dict())
        result["features"] = ex.describe()
    sp = axis_spectra(vol, tile=args.tile, n_tiles=args.n_tiles, seed=args.seed, measured_planes=measured)
    result["isotropy_gap"] = sp.gap
    result["isotropy_reference"] = f"{sp.reference}, {source}" if measured is not None else sp.reference
    result["measured_planes"] = None if measured is None else list(measured)
    result.update(crop=args.crop, n_crops=args.n_crops, seed=args.seed, intensity=args.intensity)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.reference:
        print(f"SliceFID of {args.input} vs {args.reference} ({_features_note(result['features'])}; "
              f"crop {args.crop} px, {args.n_crops} crops per set, intensity '{args.intensity}', seed {args.seed})")
        for key, label in (("fid_xy", "FID XY"), ("fid_xz", "FID XZ"), ("fid_yz", "FID YZ"), ("slice_fid", "SliceFID")):
            print(f"  {label:<9} {result[key]:10.4f}")
    else:
        print(f"{args.input}: no --reference given, so no SliceFID (pass a folder of HR 2D images)")
    print(f"isotropy gap {result['isotropy_gap']:.4f} (decades of power, XZ/YZ vs XY; 0 = isotropic; "
          f"XY reference: {result['isotropy_reference']})")
    return 0


def _measured_planes(args, stack, n_planes: int):
    """(z indices of the measured planes or None, where they came from) for ``volsr score``.

    Order: ``--measured-planes``, then ``--factor`` (planes ``round(i * F)``), then the
    ``volsr_measured_planes`` record a volsr output carries; None when none says.
    """
    from ..grid import measured_positions
    from ..io import check_measured_planes

    given, factor = args.measured_planes, args.factor
    if given is not None and factor is not None:
        raise VolsrError("give --measured-planes or --factor, not both")
    if given is not None:
        try:
            return check_measured_planes(given, n_planes), "from --measured-planes"
        except InputError as err:
            raise InputError(f"--measured-planes: {err}") from None
    if factor is not None:
        planes = tuple(int(i) for i in measured_positions(n_planes, factor))
        if len(planes) < 2:
            raise InputError(f"--factor {factor:g} leaves fewer than 2 measured planes in {n_planes} z planes")
        return planes, f"from --factor {factor:g}"
    if stack.measured_planes is not None:
        return stack.measured_planes, "recorded in the file"
    return None, None


# ----------------------------------------------------------------------------- eval
def _engine_from_spec(spec: str, device: str):
    """``name`` -> fresh engine; ``name=model.volsr`` or ``model.volsr`` -> loaded model."""
    from ..engines import create_engine, load_engine

    if "=" in spec:
        name, path = spec.split("=", 1)
        eng = load_engine(path, device=device)
        if eng.name != name:
            raise VolsrError(f"model {path} is a '{eng.name}' model, not '{name}'; write {eng.name}={path}")
        return eng
    if spec.endswith(".volsr"):
        return load_engine(spec, device=device)
    return create_engine(spec, device=device)


def _fit_settings(engines, args) -> dict | None:
    """``Engine.fit`` keyword arguments for learned engines given without a model, or refuse.

    The fits themselves run inside :func:`volsr.evaluation.evaluate`, without leakage: per
    factor on the simulated low-res stack's XY planes (3D), on held-out training planes (2D).
    """
    from ..evaluation import needs_fit

    fresh = [eng.name for eng in engines if needs_fit(eng)]
    if not fresh:
        return None
    if args.fit_minutes is None and args.fit_steps is None:
        name = fresh[0]
        raise VolsrError(
            f"engine '{name}' has no model: give {name}=model.volsr (see `volsr train`), "
            "or --fit-minutes M / --fit-steps N to fit it here (per factor on the simulated low-res stack)"
        )
    if args.fit_steps is not None and int(args.fit_steps) <= 0:
        raise VolsrError(f"--fit-steps must be a positive number of steps, got {args.fit_steps}")
    if args.fit_minutes is not None and not float(args.fit_minutes) > 0:
        raise VolsrError(f"--fit-minutes must be a positive number of minutes, got {args.fit_minutes:g}")
    return {"steps": args.fit_steps, "minutes": args.fit_minutes, "seed": args.seed}


def cmd_eval(args) -> int:
    """Run the paired-2D and 3D protocols and write CSV, Markdown and PNG files.

    Everything that can be checked from the inputs (shape vs factors and crop, reference
    images, FID weights, output folder, fit budget) is checked before any fit or restoration.
    """
    from ..evaluation import (
        check_extractor,
        check_report_destination,
        check_settings,
        evaluate,
        markdown_table,
        needs_fit,
        paper_tables,
        write_report,
    )
    from ..metrics import get_extractor

    out = Path(args.out)
    check_report_destination(out, has_3d="3d" in args.protocols, overwrite=args.overwrite,
                             figures=not args.no_figures)
    vol = _read_volume(args.input, args.axes)
    engines = [_engine_from_spec(s, args.device) for s in args.engines]
    fit = _fit_settings(engines, args)
    reference = load_reference(args.reference) if args.reference else None
    check_settings(vol.shape, args.factors, protocols=args.protocols, variants=args.variants,
                   blur_sigma=args.blur_sigma, crop=args.crop, reference=reference, engines=engines, fit=fit)
    # the FID weights, before minutes of fitting (evaluate() builds the same extractor again; it is cheap)
    check_extractor(get_extractor(args.features, device=args.device, weights=args.inception_weights,
                                  n_channels=3 if vol.shape[0] == 3 else 1), args.crop)
    if fit is not None:
        names = ", ".join(e.name for e in engines if needs_fit(e))
        n_fits = len(args.factors) * ("3d" in args.protocols) + ("2d" in args.protocols)
        budget = f"{args.fit_steps} steps" if args.fit_steps else f"{args.fit_minutes:g} min"
        print(f"volsr: fitting {names} without leakage: {n_fits} fit(s) of {budget} each — per factor on the "
              "XY planes of the simulated low-res stack (3D), on held-out training planes (2D)", file=sys.stderr)
    from .progress import ProgressReporter

    progress = ProgressReporter(enabled=not args.quiet)
    try:
        result = evaluate(
            vol, engines, args.factors, protocols=args.protocols, variants=args.variants,
            features=args.features, inception_weights=args.inception_weights, crop=args.crop,
            n_crops=args.n_crops, seed=args.seed, device=args.device, progress=progress,
            blur_sigma=args.blur_sigma, axial_sigma=args.axial_sigma, reference=reference,
            batch_size=args.batch_size, sampling_steps=args.steps, fit=fit,
        )
    finally:
        progress.close()
    paths = write_report(result, out, overwrite=args.overwrite, figures=not args.no_figures)
    if not args.quiet:
        tables = paper_tables(result.table)
        for key in ("paired_2d", "fid_3d"):
            if key in tables:
                print(markdown_table(tables[key], digits=3))
    print("volsr: wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- parsers
def _common(p) -> None:
    p.add_argument("--axes", help="axes string of the input (e.g. ZYX, CZYX)")
    p.add_argument("--features", default="inception", choices=["inception", "lowlevel"],
                   help="FID features (default inception; lowlevel is offline but NOT comparable with published FID)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid); default $VOLSR_INCEPTION_WEIGHTS or the torch hub cache")
    p.add_argument("--crop", type=int, default=48, help="square crop size (px) for every FID set (default 48)")
    p.add_argument("--n-crops", type=int, default=1000, help="random crops per set (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for crops (results are reproducible)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def add_parsers(subparsers) -> None:
    """Add ``score`` and ``eval`` to an argparse subparsers object."""
    p = subparsers.add_parser("score", help="SliceFID and spectral isotropy gap of a (restored) stack")
    p.add_argument("input", help="the stack to score (isotropic grid, e.g. a volsr output)")
    p.add_argument("--reference", help="folder of HR 2D images, or a stack whose XY planes are the reference")
    _common(p)
    p.add_argument("--intensity", default="reference", choices=["reference", "per-set", "per-image"],
                   help="intensity window: from the reference set for both (default), per set, or per crop")
    p.add_argument("--tile", type=int, default=32, help="tile size (px) for the radial spectra (default 32)")
    p.add_argument("--n-tiles", type=int, default=256, help="tiles per axis for the spectra (default 256)")
    p.add_argument("--factor", type=float, metavar="F",
                   help="the stack is a restoration at factor F: measured planes at round(i*F) are the XY "
                        "reference of the isotropy gap (default: the planes recorded by `volsr infer`)")
    p.add_argument("--measured-planes", metavar="I,J,...",
                   help="z indices of the measured planes (e.g. 0,4,8,...), the XY reference of the isotropy gap")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=cmd_score)

    p = subparsers.add_parser("eval", help="paper protocols (paired 2D, 3D SliceFID) on an isotropic HR volume")
    p.add_argument("input", help="isotropic high-resolution volume")
    p.add_argument("--factors", type=int, nargs="+", default=[2, 4, 8], help="z factors to simulate (default 2 4 8)")
    p.add_argument("--engines", nargs="+", default=["nearest", "linear", "cubic"],
                   help="engine names, or name=model.volsr for trained models (default nearest linear cubic)")
    p.add_argument("--variants", nargs="+", default=["both"],
                   help="3D plane/fusion variants: both, xz, yz, each optionally +blur (default both)")
    p.add_argument("--protocols", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    p.add_argument("--blur-sigma", type=float, default=0.5, help="sigma of the +blur variants (paper 0.5)")
    p.add_argument("--axial-sigma", type=float, help="blur along z (HR planes) before subsampling")
    p.add_argument("--reference", help="FID reference images (default: XY planes of the HR volume)")
    _common(p)
    p.add_argument("--batch-size", type=int, help="planes per engine call")
    p.add_argument("--steps", type=int, help="sampling steps for diffusion engines (default: the model's)")
    p.add_argument("--fit-minutes", type=float,
                   help="fit learned engines given without a model for M minutes per fit (one fit per factor on "
                        "the simulated low-res stack, one on held-out planes for the 2D protocol)")
    p.add_argument("--fit-steps", type=int, help="like --fit-minutes, a budget of N steps per fit")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no tables on stdout")
    p.set_defaults(func=cmd_eval)
