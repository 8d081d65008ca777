"""The Python API: one call from a stack (path, array or :class:`Stack`) to an isotropic one.

Data flow (one way): file -> Stack (axes, spacing, array) -> normalised (C, Z, Y, X) ->
planes -> engine -> fused volume -> inverse normalisation -> array in the input's axes
order and dtype. The CLI, the napari widget and the notebooks all call :func:`restore`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import resolve_model_path
from ..engines import Engine, create_engine, load_engine
from ..engines.base import RestoreOptions, check_batch_size, make_options
from ..engines.base import check_options as check_engine_options
from ..errors import InputError, OutputError, VolsrError
from ..grid import OutputGrid, VolumeGrid, check_factor, parse_plane_list
from ..normalize import PercentileNormalizer, check_finite, to_dtype
from ..pipeline.volume import check_options, restore_volume
from ..runtime.hardware import configure_threads, resolve_device
from ..runtime.precision import check_precision
from ..training.budget import check_budget

DEFAULT_ENGINE = "msdsr"
DEFAULT_FIT_MINUTES = 4.0
"""Self-supervised fit budget when neither fit_steps nor fit_minutes is given."""


@dataclass
class RestoreResult:
    """What :func:`restore` returns: the restored array plus everything needed to save it."""

    data: np.ndarray
    axes: str
    spacing: tuple[float, float, float]
    unit: str | None
    z_factor: float
    grid: OutputGrid
    engine: Engine
    std: np.ndarray | None = None
    model_path: Path | None = None
    timings: dict = field(default_factory=dict)

    @property
    def damaged(self) -> tuple[int, ...]:
        """Input planes marked damaged (0-based): restored like unmeasured rows, not kept."""
        return self.grid.damaged

    def save(self, path, overwrite: bool = False) -> Path:
        """Write :attr:`data` with the new spacing and the good measured planes' output rows (OME-TIFF); atomic.

        Damaged planes' rows are not recorded as measured: a reader sees they were restored.
        """
        from ..io import write_stack

        return write_stack(path, self.data, self.axes, spacing=self.spacing, unit=self.unit, overwrite=overwrite,
                           measured_planes=self.grid.good_positions)


def as_stack(source, axes: str | None = None, spacing=None):
    """Path / ndarray / Stack -> Stack (axes given here override the file's)."""
    from ..io import Stack, default_axes, read_stack

    if isinstance(source, (str, Path)):
        source = read_stack(source, axes=axes)
        axes = None
    if isinstance(source, Stack):
        if (axes is not None and axes.upper() != source.axes) or spacing is not None:
            # axes / spacing given here override the file's (or the Stack's)
            return Stack(data=source.data, axes=(axes or source.axes).upper(),
                         spacing=tuple(spacing) if spacing is not None else source.spacing,
                         unit=source.unit, path=source.path)
        return source
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        arr = np.asarray(source)
        ax = (axes or default_axes(arr.ndim)).upper()
        sp = tuple(spacing) if spacing is not None else (None, None, None)
        return Stack(data=arr, axes=ax, spacing=sp, unit=None, path=None)
    raise InputError(f"cannot restore a {type(source).__name__}; pass a file path, a NumPy array or a volsr Stack")


def resolve_factor(z_factor, stack) -> float:
    if z_factor is not None:
        return check_factor(z_factor)
    f = stack.z_factor
    if f is None:
        raise InputError(
            "the file has no z/xy voxel spacing, so the z factor is unknown; pass --z-factor F "
            "(z spacing / xy spacing, e.g. 4)"
        )
    if not np.isfinite(f) or f < 1:
        raise InputError(
            f"the spacing in the file gives z factor {f:g} (z spacing / xy spacing); it must be >= 1 — "
            "check the metadata or pass --z-factor"
        )
    return float(f)


def check_fit_budget(fit_steps, fit_minutes) -> None:
    """Refuse a fit budget that would train nothing (checked before any fit starts)."""
    if fit_steps is None and fit_minutes is None:
        return
    try:
        check_budget(fit_steps, fit_minutes)
    except VolsrError as err:
        raise VolsrError(f"bad fit budget (--fit-steps / --fit-minutes): {err}") from None


def fit_on_input(eng: Engine, data, *, how: str, fit_steps, fit_minutes, default_minutes: float, seed: int,
                 progress=None, cancel=None, damaged=()) -> dict:
    """Fit a learned engine on the user's own input (z-stack or image); provenance says ``how``.

    The one place for the budget check, the default budget and the fit's provenance, shared
    by ``volsr infer`` and the zero-shot fit of ``volsr upscale``. ``damaged`` (z indices of a
    (C, Z, Y, X) ``data``) are dropped from the training data: no XY crop comes from them.
    """
    check_fit_budget(fit_steps, fit_minutes)
    if fit_steps is None and fit_minutes is None:
        fit_minutes = default_minutes
    if damaged:
        data = np.delete(np.asarray(data), list(damaged), axis=1)
        how += f", without the {len(damaged)} damaged plane{'s' if len(damaged) > 1 else ''}"
    report = eng.fit(data, steps=fit_steps, minutes=fit_minutes, seed=seed, progress=progress, cancel=cancel)
    eng.provenance.update({"fit": how, "fit_report": {
        k: v for k, v in report.items() if isinstance(v, (int, float, str))}})
    return report


def _load_for(engine, path, device, what: str) -> Engine:
    """Load a model file (or bundled name) and check it is the engine asked for."""
    eng = load_engine(path, device=device)
    if isinstance(engine, str) and engine not in (eng.name, DEFAULT_ENGINE):
        raise VolsrError(f"--engine {engine} was asked for but {what} is a '{eng.name}' model")
    return eng


def _initial_engine(engine, model, init_model, dev, engine_options) -> tuple[Engine, Path | None, bool]:
    """The engine before any fit (given, loaded from a model file, a starting model, or fresh),
    its model path, and whether it must be fitted on the input."""
    if isinstance(engine, Engine) and model is None:
        eng = engine.to(dev)
        if eng.learned and not eng.trained:
            raise VolsrError(f"engine '{eng.name}' is untrained; fit it first or pass a model file")
        return eng, None, False
    if model is not None:
        return _load_for(engine, model, dev, "the model file"), resolve_model_path(model), False
    if init_model is not None:
        eng = _load_for(engine, init_model, dev, "the starting model")
        if not eng.learned:
            raise VolsrError(f"the starting model is a '{eng.name}' engine, which has nothing to fine-tune")
        return eng, None, True
    eng = create_engine(engine, device=dev, **engine_options)
    return eng, None, eng.learned


def prepare_engine(
    engine, model, device, volume_czyx: np.ndarray, *, fit_steps, fit_minutes, model_out, seed, progress,
    engine_options: dict, cancel=None, init_model=None, options: RestoreOptions | None = None,
    degradation=None, damaged=(),
) -> tuple[Engine, Path | None]:
    """Engine instance ready to restore: given, loaded from a model file, or fitted on the stack.

    With ``init_model`` the fit starts from that model's weights (fine-tuning) instead of
    from scratch. ``options`` (this call's restore options) are checked against the engine
    before any fit starts. ``degradation`` (:mod:`volsr.training.degrade`) replaces the engine's
    training degradation for the fit (e.g. with the axial PSF). ``damaged`` z planes of
    ``volume_czyx`` are left out of the fit (:func:`fit_on_input`).
    """
    dev = resolve_device(device)
    if model_out is not None and model is None and not Path(model_out).parent.exists():
        # fail before a fit of minutes, not after it
        raise OutputError(f"folder {Path(model_out).parent} does not exist; create it or choose another model path")
    eng, path, fits = _initial_engine(engine, model, init_model, dev, engine_options)
    _check_engine_options(eng, options or RestoreOptions())
    if degradation is not None and not fits:
        raise VolsrError("an axial PSF (--psf-sigma-z / --psf-file) shapes the self-supervised fit; "
                         f"'{eng.name}' is not fitted here (learned engines without --model are; "
                         "use --init-model to fine-tune a model with the PSF)")
    if not fits:
        return eng, path
    if degradation is not None:
        eng.cfg = eng.cfg.replace(degradation=degradation)  # no effect on weight shapes: safe for fine-tuning
    if init_model is None and "crop" not in engine_options:
        eng.fit_crop_to(min(volume_czyx.shape[-2:]))
    how = "self-supervised on the XY planes of the input stack"
    if init_model is not None:
        how += f", fine-tuned from {init_model}"
    fit_on_input(eng, volume_czyx, how=how, fit_steps=fit_steps, fit_minutes=fit_minutes,
                 default_minutes=DEFAULT_FIT_MINUTES, seed=seed, progress=progress, cancel=cancel, damaged=damaged)
    saved = None
    if model_out is not None:
        saved = eng.save(model_out, overwrite=True)
    return eng, saved


def axial_degradation(stack, factor: float, psf_sigma_z=None, psf_file=None):
    """The row degradation for ``--psf-sigma-z`` / ``--psf-file`` (None when neither is given)."""
    from ..training.degrade import RowDegradation, profile_from_psf_file, psf_sigma_rows

    if psf_sigma_z is not None and psf_file is not None:
        raise InputError("give the axial PSF either as --psf-sigma-z or as --psf-file, not both")
    xy = stack.spacing[2]
    if psf_sigma_z is not None:
        return RowDegradation(psf_sigma=psf_sigma_rows(psf_sigma_z, xy))
    if psf_file is not None:
        # the PSF stack has the input's spacing: z planes factor output rows apart
        return RowDegradation(psf_profile=profile_from_psf_file(psf_file, z_spacing=float(factor), xy_spacing=1.0))
    return None


def _check_call(batch_size, output_dtype) -> None:
    check_batch_size(batch_size)
    if output_dtype not in ("same", "float32"):
        raise InputError(f"output_dtype must be 'same' or 'float32', got {output_dtype!r}")


def _canonical_zstack(stack, damaged=None) -> np.ndarray:
    """(C, Z, Y, X) of a stack with >= 2 finite z planes."""
    czyx = stack.canonical()
    if czyx.shape[1] < 2:
        raise InputError(
            f"the input has a single z plane (axes {stack.axes}, shape {stack.data.shape}); "
            "volsr needs a z-stack with at least 2 planes — check --axes"
            + ("; damaged planes (--damaged-planes) can only be marked in a z-stack" if damaged else "")
        )
    check_finite(czyx)
    return czyx


def _options(sampling_steps, noise_match, realism, sampler=None) -> RestoreOptions:
    return make_options(sampling_steps=None if sampling_steps is None else int(sampling_steps), sampler=sampler,
                        noise_match=None if noise_match is None else float(noise_match),
                        realism=None if realism is None else float(realism))


def _check_engine_options(eng: Engine, options: RestoreOptions) -> None:
    """Options the engine does not take, or values its config refuses, fail before any work."""
    try:
        check_engine_options(eng.name, eng.capabilities, options)
    except VolsrError as err:
        raise InputError(str(err)) from None
    if eng.learned:
        eng.call_config(options)


def _new_spacing(stack, grid: OutputGrid, factor: float):
    """(z, y, x) spacing of the output and its unit: z from the factor, y/x kept."""
    zs, ys, xs = stack.spacing
    if xs is None:
        return VolumeGrid((grid.n_in, 1, 1), z=grid).spacing_out((factor, 1.0, 1.0)), "pixel"
    ys = ys if ys is not None else xs
    return VolumeGrid((grid.n_in, 1, 1), z=grid).spacing_out((float(xs) * factor, float(ys), float(xs))), stack.unit


def restore(
    source,
    *,
    engine: str | Engine = DEFAULT_ENGINE,
    model: str | Path | None = None,
    z_factor: float | None = None,
    axes: str | None = None,
    spacing=None,
    planes: str = "both",
    fusion: str = "mean",
    blur_sigma: float | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    fit_steps: int | None = None,
    fit_minutes: float | None = None,
    model_out: str | Path | None = None,
    init_model: str | Path | None = None,
    seed: int = 0,
    n_samples: int = 1,
    sampling_steps: int | None = None,
    sampler: str | None = None,
    noise_match: float | None = None,
    realism: float | None = None,
    psf_sigma_z: float | str | None = None,
    psf_file: str | Path | None = None,
    damaged=None,
    output_dtype: str = "same",
    precision: str = "auto",
    progress: Callable[..., None] | None = None,
    cancel: Callable[[], bool] | None = None,
    engine_options: dict | None = None,
) -> RestoreResult:
    """Restore an anisotropic z-stack to (near) isotropic z sampling.

    Parameters
    ----------
    source : str, Path, numpy.ndarray or Stack
        The stack. Arrays without ``axes`` are read as YX / ZYX / CZYX by dimension.
    engine : str or Engine
        ``msdsr`` (default), ``msunet``, ``e2e-unet``, ``nearest``, ``linear``, ``cubic``, or
        an engine instance. A learned engine with no ``model`` is fitted on the stack's own
        XY planes first (self-supervised), within ``fit_steps`` / ``fit_minutes``.
    model : path or bundled model name, optional
        A ``.volsr`` model file (its engine is used).
    z_factor : float, optional
        z spacing / xy spacing (>= 1). Default: from the file's voxel spacing.
    axes, spacing : str, (z, y, x), optional
        Override the file's axes string (e.g. ``'ZCYX'``) and voxel spacing.
    planes, fusion, blur_sigma, batch_size, n_samples
        See :func:`volsr.pipeline.volume.restore_volume`.
    device : {'auto', 'cpu', 'cuda'}
    init_model, model_out : path, optional
        Start the fit from this model (fine-tuning); where to save a model fitted here.
    sampling_steps : int, optional
        Denoising steps for diffusion engines (default: the model's).
    sampler : {'ddim', 'ddpm', 'one-step'}, optional
        MSDSR's sampler (default: the model's). ``'one-step'``: one denoiser call from a
        learned noise map; needs a model trained with :meth:`MSDSREngine.distil` (``volsr distil``).
    noise_match : float, optional
        Diffusion engines: scale of the noise added to generated planes so they carry the
        measured planes' noise level (default: the model's, 1.0; 0 = a smooth, denoised look).
    realism : float in [0, 1], optional
        Two-stage MSDSR: 0 = regression estimate (PSNR/SSIM; measurement), 1 = diffusion sample.
    psf_sigma_z, psf_file : optional
        Axial PSF for the fit (:func:`axial_degradation`): sigma in output px or ``'0.8um'``; a PSF TIFF.
    damaged : sequence of int or str, optional
        Input planes (0-based z indices, or text such as ``"12,37-39"``) that are damaged (a fold,
        a lost section, a dropped frame): they are restored like unmeasured rows from the good
        planes around them, left out of a fit on the input, and not recorded as measured in the
        saved file. The output grid (plane count, spacing) is unchanged; the other measured
        planes come back bit-identical. At least 2 good planes must remain.
    precision : {'auto', 'float32', 'bfloat16'}
        Network arithmetic (:mod:`volsr.runtime.precision`): ``auto`` = bfloat16 autocast and
        channels-last where the hardware computes bfloat16 natively, else float32; ``float32``
        is bit-reproducible for a seed and the exact arithmetic of earlier versions.
    output_dtype : {'same', 'float32'}: round/clip to the input dtype, or keep float32.
    progress : callable(stage, done, total, **info); cancel : callable() -> bool, optional
        Polled between batches; True raises :class:`volsr.errors.Cancelled`.
        Returns a :class:`RestoreResult`.

    Examples
    --------
    >>> import numpy as np, volsr
    >>> stack = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    >>> res = volsr.restore(stack, engine="linear", z_factor=2)
    >>> res.data.shape, res.axes
    ((9, 16, 16), 'ZYX')
    """
    return _restore(dict(locals()))  # the first statement: locals() holds exactly the parameters, by name


def _restore(kw: dict, plane: tuple[str, int] | None = None) -> RestoreResult:
    """:func:`restore`'s one path; ``kw`` holds its arguments by name.

    With ``plane=(axis, index)`` (:func:`restore_plane`) only the planes along ``axis`` at
    ``index`` (plus the 3D blur's halo) are restored, from the same whole-stack normaliser,
    engine and options; an engine that would have to be fitted first is refused.
    """
    t0 = time.perf_counter()
    configure_threads()
    planes, fusion = check_options(kw["planes"], kw["fusion"])
    _check_call(kw["batch_size"], kw["output_dtype"])
    check_precision(kw["precision"])
    options = _options(kw["sampling_steps"], kw["noise_match"], kw["realism"], kw["sampler"])
    stack = as_stack(kw["source"], axes=kw["axes"], spacing=kw["spacing"])
    czyx = _canonical_zstack(stack, kw["damaged"])
    damaged = parse_plane_list(kw["damaged"], czyx.shape[1])
    window = None
    if plane is not None:
        planes, fusion = plane[0], "mean"
        window = _plane_window(czyx.shape, plane[0], plane[1], kw["blur_sigma"])
        _refuse_fit(kw["engine"], kw["model"], kw["init_model"])
    factor = resolve_factor(kw["z_factor"], stack)
    grid = OutputGrid(czyx.shape[1], factor, damaged=damaged)
    degradation = axial_degradation(stack, factor, kw["psf_sigma_z"], kw["psf_file"])
    eng, model_path = prepare_engine(
        kw["engine"], kw["model"], kw["device"], czyx, fit_steps=kw["fit_steps"], fit_minutes=kw["fit_minutes"],
        model_out=kw["model_out"], seed=kw["seed"], progress=kw["progress"],
        engine_options=dict(kw["engine_options"] or {}), cancel=kw["cancel"], init_model=kw["init_model"],
        options=options, degradation=degradation, damaged=damaged,
    )
    if plane is not None and eng.capabilities.volume:
        raise InputError(f"'{eng.name}' restores the whole volume at once, so it has no single-plane preview; "
                         "run restore() and look at the plane there, or preview with a plane engine")
    if eng.learned:
        eng.check_channels(czyx.shape[0])
    # percentiles of the WHOLE stack, also for a single plane: a preview has the full restore's intensities
    normalizer = (eng.cfg.normalizer() if eng.learned else PercentileNormalizer()).fit(czyx)
    volume = czyx if window is None else _crop(czyx, planes, window)
    t1 = time.perf_counter()
    result = restore_volume(
        normalizer.forward(volume), grid, eng, planes=planes, fusion=fusion, blur_sigma=kw["blur_sigma"],
        batch_size=kw["batch_size"], n_samples=kw["n_samples"], seed=kw["seed"], options=options,
        progress=kw["progress"], cancel=kw["cancel"], precision=kw["precision"],
    )
    return _result(result, normalizer, volume, stack, grid, factor, eng, model_path, kw["output_dtype"],
                   {"fit_s": t1 - t0, "restore_s": time.perf_counter() - t1})


def _result(result, normalizer, czyx, stack, grid, factor, eng, model_path, output_dtype, timings) -> RestoreResult:
    """Back to the input's units, dtype and axes; measured planes bit-identical; new spacing."""
    restored = normalizer.inverse(result.data)
    good = np.flatnonzero(grid.good)  # damaged planes' rows keep the restoration
    restored[:, grid.good_positions] = czyx[:, good]  # good measured planes back bit-identical in input units
    dtype = np.float32 if output_dtype == "float32" else stack.data.dtype
    data = stack.from_canonical(to_dtype(restored, dtype))
    std = None
    if result.std is not None:
        std = stack.from_canonical((result.std * normalizer.scale.reshape(-1, 1, 1, 1)).astype(np.float32))
    new_spacing, unit = _new_spacing(stack, grid, factor)
    return RestoreResult(
        data=data, axes=stack.axes, spacing=new_spacing, unit=unit, z_factor=factor, grid=grid, engine=eng,
        std=std, model_path=model_path, timings=timings,
    )


# -- one plane: the preview of a restoration ------------------------------------------------------
PLANE_AXES = ("xz", "yz")


@dataclass
class PlaneResult:
    """What :func:`restore_plane` returns: one restored XZ or YZ plane and what is needed to show it."""

    data: np.ndarray
    """The restored plane: the input's axes without Y (``xz``) or X (``yz``), e.g. (Z_out, X) for a ZYX stack."""
    axes: str
    axis: str
    index: int
    measured_rows: np.ndarray
    """Output-grid rows (along Z of :attr:`data`) holding the good measured planes, bit-identical to the input
    (damaged planes' rows are restored, so not among them)."""
    measured: np.ndarray
    """The input's own plane at ``index`` (the measured rows only, input dtype), for comparison."""
    spacing: tuple[float, float]
    """(z, lateral) spacing of :attr:`data`: the restored z spacing and x (``xz``) or y (``yz``)."""
    unit: str | None
    z_factor: float
    grid: OutputGrid
    engine: Engine
    std: np.ndarray | None = None
    model_path: Path | None = None
    timings: dict = field(default_factory=dict)


def restore_plane(source, *, axis: str = "xz", index: int, **restore_kwargs) -> PlaneResult:
    """Restore one XZ plane (fixed y = ``index``) or YZ plane (fixed x = ``index``): a preview in seconds.

    Takes :func:`restore`'s keyword arguments (``engine``, ``model``, ``z_factor``, ``axes``,
    ``spacing``, ``sampling_steps``, ``realism``, ``blur_sigma``, ``n_samples``, ``seed``,
    ``precision``, ``progress``, ``cancel``, ...) and runs :func:`restore`'s own path on the
    stack cropped to that one plane (``volume[:, :, index:index+1, :]`` for XZ), restoring it
    with ``planes=axis``: the same engine, options and normalisation — percentiles of the
    *whole* stack, so intensities match the full restore's. With ``blur_sigma`` the crop keeps
    the blur kernel's halo of neighbouring planes, so the 3D blur is the full one too.
    ``planes`` and ``fusion`` are checked and then superseded by ``axis``: the preview is the
    one direction's estimate (``restore(..., planes=axis)``), not the XZ/YZ fusion.

    For a deterministic engine the plane is ``restore(source, planes=axis, **same).data`` at
    ``index`` (y for XZ, x for YZ): bit for bit for interpolation engines; for network engines
    (MS-UNet) up to float32 rounding, as the network sees one plane here and a batch in the full
    run (a convolution may round the last bit differently for one image than for several).
    A stochastic engine (MSDSR) draws its noise from :func:`volsr.pipeline.volume.slab_seed`
    ``(seed, axis, 0)``, the seed of the cropped stack's (first) slab, while the full restore
    seeds the slab of planes that contains ``index`` (``slab_seed(seed, axis, start)``) and
    draws that slab's noise for all its planes at once: the preview is then a sample of the
    same model and settings, reproducible for a seed, not the full restore's sample of that plane.

    An engine that would first be fitted on the stack (a learned engine without ``model``, or
    with ``init_model``) is refused: that fit takes minutes; load or fit a model first.
    Engines that restore the whole volume at once (``e2e-unet``) have no plane preview.

    Parameters
    ----------
    source : str, Path, numpy.ndarray or Stack
        The z-stack, as for :func:`restore`.
    axis : {'xz', 'yz'}
        The plane: XZ (rows = Z, columns = X) at y = ``index``, or YZ (columns = Y) at x = ``index``.
    index : int
        The y (``xz``) or x (``yz``) index in the input, 0 <= index < its size.

    Returns
    -------
    PlaneResult
        ``data`` (the plane, input dtype unless ``output_dtype='float32'``), ``measured_rows``,
        ``measured`` (the input's plane), ``spacing`` (z, lateral), ``std`` with ``n_samples > 1``.

    Examples
    --------
    >>> import numpy as np, volsr
    >>> stack = np.random.default_rng(0).random((5, 16, 12)).astype(np.float32)
    >>> res = volsr.api.restore_plane(stack, axis="xz", index=3, engine="linear", z_factor=2)
    >>> res.data.shape, res.axes, res.measured_rows.tolist()
    ((9, 12), 'ZX', [0, 2, 4, 6, 8])
    """
    import inspect

    axis = _check_plane_axis(axis)
    index = _check_plane_index(index)
    bound = inspect.signature(restore).bind(source, **restore_kwargs)  # TypeError on a misspelt keyword
    bound.apply_defaults()
    kw = dict(bound.arguments)
    stack = as_stack(source, axes=kw["axes"], spacing=kw["spacing"])  # read once; _restore takes the Stack as is
    kw.update(source=stack, axes=None, spacing=None)
    full = _restore(kw, plane=(axis, index))
    drop = "Y" if axis == "xz" else "X"
    start = _plane_window(stack.shape_czyx, axis, index, kw["blur_sigma"]).start
    where = full.axes.index(drop)
    plane = np.take(full.data, index - start, axis=where)
    std = None if full.std is None else np.take(full.std, index - start, axis=where)
    measured = np.take(np.asarray(stack.data), index, axis=stack.axes.index(drop))
    zs, ys, xs = full.spacing
    return PlaneResult(
        data=plane, axes=full.axes.replace(drop, ""), axis=axis, index=index,
        measured_rows=full.grid.good_positions.copy(), measured=measured,
        spacing=(zs, xs if axis == "xz" else ys), unit=full.unit, z_factor=full.z_factor, grid=full.grid,
        engine=full.engine, std=std, model_path=full.model_path, timings=full.timings,
    )


def _check_plane_axis(axis) -> str:
    name = str(axis).lower() if isinstance(axis, str) else None
    if name not in PLANE_AXES:
        raise InputError(f"axis must be 'xz' (a plane at fixed y) or 'yz' (a plane at fixed x), got {axis!r}")
    return name


def _check_plane_index(index) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InputError(f"index must be a whole number (the y index for 'xz', the x index for 'yz'), got {index!r}")
    return int(index)


def _plane_window(shape_czyx, axis: str, index: int, blur_sigma) -> slice:
    """The planes along ``axis`` a preview of plane ``index`` restores: it and the 3D blur's halo."""
    n = int(shape_czyx[2] if axis == "xz" else shape_czyx[3])
    what = "y" if axis == "xz" else "x"
    if not 0 <= index < n:
        raise InputError(f"{axis.upper()} plane index {index} is outside the stack's {n} {what} positions; "
                         f"choose an index from 0 to {n - 1}")
    halo = 0
    if blur_sigma and math.isfinite(float(blur_sigma)) and float(blur_sigma) > 0:
        halo = max(1, math.ceil(2 * float(blur_sigma)))  # blur_volume's kernel radius: the plane sees no further
    return slice(max(0, index - halo), min(n, index + halo + 1))


def _crop(czyx: np.ndarray, axis: str, window: slice) -> np.ndarray:
    return czyx[:, :, window, :] if axis == "xz" else czyx[:, :, :, window]


def _refuse_fit(engine, model, init_model) -> None:
    """A preview takes seconds: refuse an engine that :func:`prepare_engine` would fit on the stack first."""
    fix = ("load a trained model (model=... / a bundled or saved model) or fit one first "
           "(restore(..., model_out=...) or the Train widget), then preview with it")
    if model is not None:
        return
    if init_model is not None:
        raise InputError(f"a preview does not fine-tune (init_model takes a fit of minutes); {fix}")
    if isinstance(engine, Engine):
        learned, trained, name = engine.learned, getattr(engine, "trained", True), engine.name
    else:
        from ..engines import get_engine_class

        learned, trained, name = get_engine_class(str(engine)).capabilities.learned, False, engine
    if learned and not trained:
        raise InputError(f"engine '{name}' has no trained model and would be fitted on the stack first "
                         f"(minutes); {fix}")
