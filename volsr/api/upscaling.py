"""The 2D path: in-plane super-resolution of images and of every XY plane of a stack.

Data flow, as for z restoration: file -> Stack (axes, pixel size) -> normalised (C, Z, Y, X) ->
planes -> a 2D engine (``capabilities.upscale``) in overlapping tiles -> inverse
normalisation -> the input's dtype and axes, pixel size divided by the scale -> file.
Grayscale and RGB TIFF/PNG/JPEG, a chosen level of a pyramidal whole-slide TIFF (e.g. Aperio
SVS, read with tifffile), or a stack (every plane).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engines import Engine, create_engine, load_engine
from ..errors import InputError
from ..grid import VolumeGrid
from ..normalize import PercentileNormalizer, check_finite, to_dtype
from ..pipeline.inplane import upscale_volume
from ..runtime.hardware import configure_threads, resolve_device

__all__ = ["upscale", "UpscaleResult", "model_scale", "read_image"]

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_SCALE = 4


@dataclass
class UpscaleResult:
    """What :func:`upscale` returns; :meth:`save` writes it with the new pixel size."""

    data: np.ndarray
    axes: str
    spacing: tuple
    unit: str | None
    scale: int
    engine: Engine
    timings: dict = field(default_factory=dict)
    path: Path | None = None
    """The output file of a streamed result, whose ``data`` is a lazy zarr view of it; else None."""

    def save(self, path, overwrite: bool = False) -> Path:
        from ..io import copy_tiff, write_stack

        if self.path is not None:  # streamed: already on disk
            same = Path(path).exists() and Path(path).samefile(self.path)
            return self.path if same else copy_tiff(self.path, path, overwrite=overwrite)
        return write_stack(path, self.data, self.axes, spacing=self.spacing, unit=self.unit, overwrite=overwrite)


def _read_plain(path: Path):
    import skimage.io

    from ..io import Stack

    try:
        arr = np.asarray(skimage.io.imread(str(path)))
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]  # one line: no backend advice lists
        raise InputError(f"cannot read image {path}: {first}; is it a valid PNG/JPEG/BMP file?") from None
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]  # alpha is transparency, not signal (the rule of volsr.io.read_image_2d)
    axes = {2: "YX", 3: "YXS"}.get(arr.ndim)
    if axes is None:
        raise InputError(f"{path} has shape {arr.shape}; expected a 2D grayscale or RGB image")
    return Stack(data=arr, axes=axes, spacing=(None, None, None), unit=None, path=path)


def read_image(path, axes: str | None = None, level: int | None = None):
    """A 2D image, a whole-slide level or a stack as a :class:`volsr.io.Stack`."""
    from ..io import read_stack

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file; check the path")
    if p.suffix.lower() in PLAIN_SUFFIXES:
        return _read_plain(p)
    if level is not None:
        from ..io import read_level

        return read_level(p, level, axes)
    return read_stack(p, axes=axes)


DEFAULT_FIT_MINUTES = 2.0
"""Zero-shot fit budget of a learned 2D engine without a model."""


def _engine_for(engine, model, device) -> Engine:
    dev = resolve_device(device)
    eng = load_engine(model, device=dev) if model is not None else (
        engine.to(dev) if isinstance(engine, Engine) else create_engine(engine, device=dev))
    if not eng.capabilities.upscale:
        raise _z_only(eng.name)
    return eng


def _z_only(name: str) -> InputError:
    """The refusal of an engine that restores z but cannot upscale in-plane (one message everywhere)."""
    from ..engines import get_engine_class, list_engines

    two_d = [n for n in list_engines() if get_engine_class(n).capabilities.upscale]
    return InputError(f"engine '{name}' restores z, it does not upscale images in-plane; "
                      f"choose one of: {', '.join(two_d)}")


def model_scale(model) -> int | None:
    """The scale a model file was trained to upscale by, read from its header (no weights loaded).

    Lets a front end show a model's scale before running it. Returns None for a model of a 2D
    engine trained for z restoration (``upscale`` then uses the default scale); raises
    :class:`InputError` for a model of a z-only engine and :class:`volsr.errors.ModelFileError`
    for an unreadable file.

    Examples
    --------
    >>> model_scale("sample_model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    volsr.errors.InputError: engine 'msdsr' restores z, it does not upscale images in-plane; ...
    """
    from ..checkpoint import read_model_info
    from ..engines import get_engine_class
    from ..training.degrade import degradation_from_dict

    info = read_model_info(model)
    if not get_engine_class(info["engine"]).capabilities.upscale:
        raise _z_only(info["engine"])
    deg = degradation_from_dict(info["config"].get("degradation"))
    return int(deg.scale) if deg.kind == "isotropic" else None


def fit_zero_shot(eng: Engine, czyx: np.ndarray, scale: int, *, fit_steps=None, fit_minutes=None, seed=0,
                  progress=None, cancel=None) -> Engine:
    """Internal learning: fit an untrained 2D engine on the image itself, degraded further by ``scale``.

    The image plays the high-resolution role; its own ``scale``-times downsampled crops are the
    inputs. What the model learns is how this image's structure looks one scale down, applied
    one scale up ("zero-shot" super-resolution).
    """
    from ..training.degrade import IsotropicDegradation
    from .restoring import check_fit_budget, fit_on_input

    check_fit_budget(fit_steps, fit_minutes)  # before the size check: both are the user's input
    side = min(czyx.shape[-2:])
    if side < 4 * scale or side < 16:
        raise InputError(f"a {czyx.shape[-2]}x{czyx.shape[-1]} image is too small to fit on itself at {scale}x; "
                         "pass a trained model (--model)")
    eng = create_engine(eng.name, device=eng.device, degradation=IsotropicDegradation(scale=scale))
    eng.fit_crop_to(side)
    fit_on_input(eng, czyx, how=f"zero-shot: on the input image itself, pairs degraded {scale}x further",
                 fit_steps=fit_steps, fit_minutes=fit_minutes, default_minutes=DEFAULT_FIT_MINUTES, seed=seed,
                 progress=progress, cancel=cancel)
    return eng


def _check_scale(scale, eng: Engine) -> int:
    if scale is None:  # a 2D model knows its scale
        trained_2d = eng.learned and eng.trained and eng.cfg.degradation.kind == "isotropic"
        scale = eng.cfg.degradation.scale if trained_2d else DEFAULT_SCALE
    if isinstance(scale, bool) or not float(scale).is_integer() or int(scale) < 1:
        raise InputError(f"--scale must be a whole number >= 1, got {scale!r}")
    return int(scale)


def upscale(source, scale: int | None = None, *, engine: str | Engine = "bicubic", model=None,
            axes: str | None = None, level: int | None = None, device: str = "auto", tile: int = 512,
            overlap: float = 0.125, seed: int = 0, output_dtype: str = "same", fit_steps: int | None = None,
            fit_minutes: float | None = None, out=None, overwrite: bool = False, stream: bool | None = None,
            block: int | None = None,
            progress: Callable | None = None, cancel: Callable[[], bool] | None = None) -> UpscaleResult:
    """In-plane super-resolution of a 2D image or of every XY plane of a stack.

    Parameters
    ----------
    source : path, numpy.ndarray or Stack
        TIFF/PNG/JPEG (grayscale or RGB), a whole-slide TIFF (``level``), or a stack.
    scale : int, optional
        Upscaling factor (default: a model's own, else 4).
    engine, model
        A 2D engine name (``bicubic``) or instance, or a model file of a 2D engine.
    level : int, optional
        Resolution level of a pyramidal TIFF (0 = full resolution).
    tile, overlap
        Input tile side and overlap fraction of the blended tiles.
    fit_steps, fit_minutes
        A learned engine given by name (no model) is first fitted on the image itself
        (:func:`fit_zero_shot`; default 2 minutes).
    output_dtype : {'same', 'float32'}
    out : path, optional
        Also write the result there (``overwrite`` to replace a file); large images need it.
    stream : bool, optional
        Large images (below) are streamed automatically (None); True forces it, False never.
    block : int, optional
        Kept block side of a streamed image in input pixels (default: 2048, less at high scales).

    Returns an :class:`UpscaleResult` (pixel size divided by the scale, the input's dtype and layout).

    Large images
    ------------
    A single-plane grayscale or RGB TIFF (a whole-slide level, or any TIFF, read as level 0)
    whose output would have more than :data:`volsr.pipeline.streaming.STREAM_SAMPLES` samples
    (C * Y * X * scale**2 > 128 Mi, i.e. 512 MiB as float32) is *streamed* when ``out`` is a
    ``.tif`` path: read lazily block by block (only the TIFF tiles a block touches), each block
    through the same MONAI sliding window as a whole image, placed on the whole image's window
    grid (so the result equals the in-memory one, without block seams), and written tile by tile
    to a tiled OME BigTIFF (temporary name, then renamed; nothing is left on error or cancel).
    Memory is bounded by the block, whatever the image size: about
    ``12 * C * ((block + tile) * scale)**2`` bytes, at most ~1.5 GiB with the default ``block``
    (2048 input pixels, less at high scales or many channels). One row of blocks of the output is
    spooled to an unnamed temporary file next to ``out``. The percentile normaliser is fitted on
    a strided subsample of the level itself (about 1 M pixels); a zero-shot fit uses its central
    ``block`` x ``block`` crop. The result's ``data`` is a lazy zarr view of ``out`` and
    ``result.path`` is set. Stacks, other layouts and calls without ``out`` go through memory.

    Examples
    --------
    >>> import numpy as np, volsr.api as up
    >>> up.upscale(np.zeros((8, 6), np.uint8), 2).data.shape
    (16, 12)
    """
    from ..io.writing import _check_target
    from ..pipeline.streaming import open_streamable

    t0 = time.perf_counter()
    configure_threads()
    if output_dtype not in ("same", "float32"):
        raise InputError(f"output_dtype must be 'same' or 'float32', got {output_dtype!r}")
    if out is not None:
        _check_target(out, overwrite)  # before any fit or block: a clash is known now
    eng = _engine_for(engine, model, device)
    s = _check_scale(scale, eng)
    fit = {"fit_steps": fit_steps, "fit_minutes": fit_minutes, "seed": seed, "progress": progress, "cancel": cancel}
    lazy = open_streamable(source, axes=axes, level=level, out=out, stream=stream, scale=s)
    if lazy is not None:
        with lazy:
            res = _upscale_streamed(lazy, Path(out), s, eng, tile=tile, overlap=overlap, block=block,
                                    output_dtype=output_dtype, overwrite=overwrite, **fit)
    else:
        res = _upscale_in_memory(source, axes, level, s, eng, tile=tile, overlap=overlap,
                                 output_dtype=output_dtype, **fit)
        if out is not None:
            res.save(out, overwrite=overwrite)
    res.timings["upscale_s"] = time.perf_counter() - t0
    return res


def _upscale_in_memory(source, axes, level, s: int, eng: Engine, *, tile, overlap, output_dtype, fit_steps,
                       fit_minutes, seed, progress, cancel) -> UpscaleResult:
    from .restoring import as_stack

    stack = read_image(source, axes, level) if isinstance(source, (str, Path)) else as_stack(source, axes=axes)
    czyx = stack.canonical()
    if min(czyx.shape[-2:]) < 2:
        raise InputError(f"the image is {czyx.shape[-2]}x{czyx.shape[-1]} pixels; upscaling needs at least 2x2")
    check_finite(czyx)
    if eng.learned and not eng.trained:
        eng = fit_zero_shot(eng, czyx, s, fit_steps=fit_steps, fit_minutes=fit_minutes, seed=seed,
                            progress=progress, cancel=cancel)
    norm = (eng.cfg.normalizer() if eng.learned else PercentileNormalizer()).fit(czyx)
    res = upscale_volume(norm.forward(czyx), s, eng, seed=seed, tile=tile, overlap=overlap,
                         progress=progress, cancel=cancel)
    out = norm.inverse(res.data)
    dtype = np.float32 if output_dtype == "float32" else stack.data.dtype
    data = stack.from_canonical(to_dtype(out, dtype))
    spacing = VolumeGrid(czyx.shape[1:], yx_scale=s).spacing_out(stack.spacing)
    return UpscaleResult(data=data, axes=stack.axes, spacing=spacing, unit=stack.unit, scale=s, engine=eng)


def _upscale_streamed(lv, out: Path, s: int, eng: Engine, *, tile, overlap, block, output_dtype, overwrite,
                      fit_steps, fit_minutes, seed, progress, cancel) -> UpscaleResult:
    """The streaming path (:mod:`volsr.pipeline.streaming`): fits on a subsample / a crop, then block by block."""
    from ..pipeline.streaming import NORM_SAMPLE_PIXELS, default_block, open_result, stream_upscale

    _, _, ny, nx = lv.shape_czyx
    if min(ny, nx) < 2:
        raise InputError(f"the image is {ny}x{nx} pixels; upscaling needs at least 2x2")
    if eng.learned and not eng.trained:
        side = min(ny, nx, int(block or default_block(lv.shape_czyx[0], s, tile)))
        y0, x0 = (ny - side) // 2, (nx - side) // 2
        eng = fit_zero_shot(eng, lv.read((y0, y0 + side), (x0, x0 + side)), s, fit_steps=fit_steps,
                            fit_minutes=fit_minutes, seed=seed, progress=progress, cancel=cancel)
    norm = (eng.cfg.normalizer() if eng.learned else PercentileNormalizer()).fit(lv.subsample(NORM_SAMPLE_PIXELS))
    dtype = np.float32 if output_dtype == "float32" else lv.dtype
    spacing = VolumeGrid(lv.shape_czyx[1:], yx_scale=s).spacing_out(lv.spacing)
    path = stream_upscale(lv, out, s, eng, norm, dtype=dtype, tile=tile, overlap=overlap, block=block, seed=seed,
                          spacing=spacing, unit=lv.unit, overwrite=overwrite, progress=progress, cancel=cancel)
    return UpscaleResult(data=open_result(path), axes=lv.axes, spacing=spacing, unit=lv.unit, scale=s, engine=eng,
                         path=path)
