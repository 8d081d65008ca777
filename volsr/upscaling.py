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

from .engines import Engine, create_engine, load_engine, resolve_device
from .errors import InputError
from .inplane import upscale_volume
from .normalize import PercentileNormalizer
from .runtime import configure_threads
from .sampling import VolumeGrid

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

    def save(self, path, overwrite: bool = False) -> Path:
        from .io import write_stack

        return write_stack(path, self.data, self.axes, spacing=self.spacing, unit=self.unit, overwrite=overwrite)


def _read_plain(path: Path):
    import skimage.io

    from .io import Stack

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


def _read_level(path: Path, level: int):
    import tifffile

    from .io import Stack

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            levels = series.levels
            if not 0 <= int(level) < len(levels):
                raise InputError(f"{path.name} has {len(levels)} resolution level(s) (0..{len(levels) - 1}); "
                                 f"--level {level} does not exist")
            lv = levels[int(level)]
            arr, axes = lv.asarray(), lv.axes.replace("I", "Z").replace("Q", "Z")
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read level {level} of {path}: {err}") from None
    return Stack(data=arr, axes=axes, spacing=(None, None, None), unit=None, path=path)


def read_image(path, axes: str | None = None, level: int | None = None):
    """A 2D image, a whole-slide level or a stack as a :class:`volsr.io.Stack`."""
    from .io import read_stack

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file; check the path")
    if p.suffix.lower() in PLAIN_SUFFIXES:
        return _read_plain(p)
    if level is not None:
        return _read_level(p, level)
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
    from .engines import get_engine_class, list_engines

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
    from .checkpoint import read_model_info
    from .degrade import degradation_from_dict
    from .engines import get_engine_class

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
    from .api import check_fit_budget, fit_on_input
    from .degrade import IsotropicDegradation

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
            fit_minutes: float | None = None,
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

    Returns an :class:`UpscaleResult` (pixel size divided by the scale, the input's dtype and layout).

    Examples
    --------
    >>> import numpy as np, volsr.upscaling as up
    >>> up.upscale(np.zeros((8, 6), np.uint8), 2).data.shape
    (16, 12)
    """
    from .api import as_stack, check_finite, to_dtype

    t0 = time.perf_counter()
    configure_threads()
    if output_dtype not in ("same", "float32"):
        raise InputError(f"output_dtype must be 'same' or 'float32', got {output_dtype!r}")
    stack = read_image(source, axes, level) if isinstance(source, (str, Path)) else as_stack(source, axes=axes)
    czyx = stack.canonical()
    if min(czyx.shape[-2:]) < 2:
        raise InputError(f"the image is {czyx.shape[-2]}x{czyx.shape[-1]} pixels; upscaling needs at least 2x2")
    check_finite(czyx)
    eng = _engine_for(engine, model, device)
    s = _check_scale(scale, eng)
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
    return UpscaleResult(data=data, axes=stack.axes, spacing=spacing, unit=stack.unit, scale=s, engine=eng,
                         timings={"upscale_s": time.perf_counter() - t0})
