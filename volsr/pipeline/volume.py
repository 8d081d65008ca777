"""Engine-agnostic sliced restoration of a volume.

The (C, Z, Y, X) volume is cut into XZ planes (one per y: rows = Z, cols = X) and YZ planes
(one per x: rows = Z, cols = Y), laid on the output z grid with the measured planes as
known rows, restored batch by batch through ``engine.restore`` and written back. The two
directions are fused in place, slab by slab, into ``out`` (a NumPy array by default, or any
array-like that supports slice assignment, e.g. a zarr array), so peak memory stays near one
batch plus whatever ``out`` keeps in memory; the input may be any sliceable array.

Every slab gets its own seed, derived from the call's seed, the direction and the slab's
first index (:func:`slab_seed`), so a result does not depend on the order slabs are run in.
Engines that declare ``capabilities.volume`` (E2E-UNet) get the whole volume instead.

Two batch sizes, on purpose: the *slab* (planes per engine call, :func:`default_batch_size`)
decides the seeds and therefore never depends on the machine; the planes per *network call*
inside a slab are the engine's (:meth:`Engine.planes_per_call`), capped by free memory on the
device (:mod:`volsr.runtime.hardware`). One INFO line on the ``volsr`` logger says what was used.

The one exception: a slab that runs out of device memory (a GPU shared with other work, an
estimate that was short) is retried at half the size from the same plane, and the smaller slab
kept for the rest of that direction, instead of failing the restore
(:func:`volsr.runtime.hardware.halving_batches`; a WARNING line says so). Slabs are seeded by
their first plane only, so when the first slab of a direction fails (the usual case: all slabs
but the last have the same size) the direction is exactly the run with the smaller
``batch_size`` from the start, stochastic engines included. After a later failure at plane ``s``
the planes before ``s`` are those of the larger slab; from ``s`` on, slabs start at ``s``,
``s + b``, ... (``b`` the halved size), which are the smaller run's slabs when ``b`` divides
``s`` (always for power-of-two slabs). Deterministic engines give the same planes either way, as
far as their kernels give the same numbers for any batch size (the interpolation engines do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from einops import rearrange
from scipy.ndimage import gaussian_filter

from ..engines.base import Engine, RestoreOptions, check_batch_size, make_options
from ..errors import Cancelled, InputError
from ..grid import OutputGrid
from ..runtime.hardware import (
    configure_threads,
    halving_batches,
    log_run,
    memory_budget,
    planes_text,
    to_device,
)
from ..runtime.precision import check_precision, compute_dtype_name, inference_context

PLANES = ("both", "xz", "yz")
FUSIONS = ("mean", "geometric", "xz", "yz")

ProgressFn = Callable[[str, int, int], None]


def check_options(planes: str, fusion: str) -> tuple[str, str]:
    """Validate ``planes``/``fusion`` and reconcile them (a single-plane fusion implies that plane)."""
    if planes not in PLANES:
        raise InputError(f"planes must be one of {', '.join(PLANES)}, got {planes!r}")
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if fusion in ("xz", "yz"):
        if planes not in ("both", fusion):
            raise InputError(f"fusion={fusion!r} contradicts planes={planes!r}")
        planes = fusion
    return planes, fusion


def default_batch_size(engine: Engine, channels: int, rows: int, cols: int) -> int:
    """Planes per slab (engine call): ~4 Mpixel for cheap engines, ~1 Mpixel for learned ones.

    Deliberately independent of free memory: slabs carry the seeds (:func:`slab_seed`) and,
    for stochastic engines, the noise, so a memory-sized slab would make a result depend on
    what else the machine was doing. Memory bounds the network calls inside a slab instead
    (:meth:`Engine.planes_per_call`); a slab's own arrays are a few MB.
    """
    budget = 2**20 if engine.learned else 2**22
    return max(1, budget // max(1, channels * rows * cols))


def fuse(a: np.ndarray, b: np.ndarray, fusion: str) -> np.ndarray:
    """Combine the XZ-derived (``a``) and YZ-derived (``b``) estimates of the same voxels.

    ``mean`` is the paper's choice. ``geometric`` (CARE's choice) is sqrt(a*b) on the
    non-negative part; it suppresses structure that only one direction hallucinates but
    is only meaningful for non-negative intensities.
    """
    if fusion == "mean":
        return 0.5 * (a + b)
    if fusion == "geometric":
        return np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None))
    raise ValueError(fusion)


def blur_volume(volume, sigma: float, slab: int = 64) -> Any:
    """3D Gaussian blur per channel, in place, in y slabs (the result equals a whole-volume blur).

    Kernel radius max(1, ceil(2*sigma)): sigma 0.5 -> 3x3x3 (paper). Each slab is blurred with
    a halo of unblurred rows from its neighbours, so ``volume`` may be an on-disk array.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise InputError(f"blur sigma must be a positive number, got {sigma!r}")
    radius = max(1, math.ceil(2 * sigma))
    ny = volume.shape[2]
    tail = None  # unblurred rows just above the current slab
    for y0 in range(0, ny, slab):
        y1 = min(ny, y0 + slab)
        below = np.array(volume[:, :, y0:min(ny, y1 + radius), :], dtype=np.float32)  # a copy, never a view
        block = below if tail is None else np.concatenate([tail, below], axis=2)
        top = 0 if tail is None else tail.shape[2]
        tail = block[:, :, top + (y1 - y0) - min(radius, y1 - y0 + top):top + (y1 - y0)].copy()
        for c in range(block.shape[0]):
            block[c] = gaussian_filter(block[c], sigma=sigma, radius=radius, mode="reflect")
        volume[:, :, y0:y1, :] = block[:, :, top:top + (y1 - y0)]
    return volume


def slab_seed(seed: int, axis: str, start: int) -> int:
    """The seed of the slab of planes starting at ``start`` along ``axis`` (order-independent)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, ("xz", "yz", "xy").index(axis), int(start)])
    return int(ss.generate_state(1)[0])


@dataclass
class VolumeResult:
    """What :func:`restore_volume` returns: the restored volume and, with ``n_samples > 1``, a std map."""

    data: Any
    std: Any = None


def _batch_progress(progress: ProgressFn, axis: str, start: int, size: int, n: int) -> ProgressFn:
    """Map an engine's (step done, steps total) inside one batch onto planes done along ``axis``."""

    def report(stage: str, done: int, total: int, **info) -> None:
        progress(axis, start + (size * done) // max(1, total), n)

    return report


def _run_direction(
    volume, grid: OutputGrid, engine: Engine, axis: str, batch_size: int, n_samples: int,
    write: Callable[[slice, np.ndarray, np.ndarray | None], None],
    progress: ProgressFn | None, cancel: Callable[[], bool] | None, options: RestoreOptions, seed: int,
    precision: str = "float32",
) -> None:
    """Restore all planes along one direction; ``write(sl, planes, std)`` stores each batch.

    A batch that runs out of device memory is retried at half the size from the same plane, and the
    smaller batch kept for the rest of the direction (:func:`volsr.runtime.hardware.halving_batches`);
    each batch is seeded by its first plane (:func:`slab_seed`), so once halved the batches are
    those of a run with the smaller ``batch_size`` (see there for when exactly).
    """
    c, _, ny, nx = volume.shape
    n = ny if axis == "xz" else nx
    known = to_device(torch.from_numpy(grid.known_mask), engine.device)
    if progress is not None:
        furthest = [0]

        def forward(stage: str, done: int, total: int) -> None:  # a retried batch does not move the bar back
            if done >= furthest[0]:
                furthest[0] = done
                progress(stage, done, total)

        forward(axis, 0, n)

    def compute(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        if cancel is not None and cancel():
            raise Cancelled("restoration cancelled")
        sl = slice(start, stop)
        if axis == "xz":  # fixed y: rows = Z, cols = X
            slab = rearrange(np.asarray(volume[:, :, sl, :]), "c z b x -> b c z x")
        else:  # fixed x: rows = Z, cols = Y
            slab = rearrange(np.asarray(volume[:, :, :, sl]), "c z y b -> b c z y")
        placed = grid.place(slab.astype(np.float32), axis=2)
        if grid.damaged:  # damaged planes are unknown rows: the engine sees what it sees between measured planes
            placed[:, :, grid.damaged_positions] = 0.0
        planes = to_device(torch.from_numpy(np.ascontiguousarray(placed)), engine.device)
        opts = options.replace(seed=slab_seed(seed, axis, start))
        run = {"cancel": cancel, "progress": None}
        if progress is not None and engine.learned:  # diffusion batches take minutes: report inside them too
            run["progress"] = _batch_progress(forward, axis, start, stop - start, n)
        with inference_context(engine.device, precision, engine.channels_last_network):
            if n_samples > 1:
                mean, std = engine.restore_with_std(planes, known, n_samples, opts, **run)
                return mean.float().cpu().numpy(), std.float().cpu().numpy()
            return engine.restore(planes, known, opts, **run).float().cpu().numpy(), None

    for start, stop, (res, std) in halving_batches(n, batch_size, engine.device, compute):
        write(slice(start, stop), res, std)  # once per batch, after it succeeded: never half a batch
        if progress is not None:
            forward(axis, stop, n)


def _check_out(arr, shape, what: str):
    if arr is None:
        return np.empty(shape, dtype=np.float32)
    if tuple(arr.shape) != tuple(shape):
        raise InputError(f"{what} has shape {tuple(arr.shape)}, the restoration needs {tuple(shape)}")
    return arr


def _fuse_writers(out, std, first: str, fusion: str):
    """The write callbacks of the two directions (XZ stores, YZ fuses into what XZ stored)."""

    def write_xz(sl, res, sd):
        out[:, :, sl, :] = rearrange(res, "b c z x -> c z b x")
        if std is not None:
            std[:, :, sl, :] = rearrange(sd, "b c z x -> c z b x")

    def write_yz(sl, res, sd):
        res = rearrange(res, "b c z y -> c z y b")
        sd = None if sd is None else rearrange(sd, "b c z y -> c z y b")
        if first == "xz":
            out[..., sl] = fuse(np.asarray(out[..., sl]), res, fusion)
            if std is not None:
                std[..., sl] = np.sqrt(0.5 * (np.asarray(std[..., sl]) ** 2 + sd**2))
        else:
            out[..., sl] = res
            if std is not None:
                std[..., sl] = sd

    return write_xz, write_yz


def _paste_measured(out, std, volume, grid: OutputGrid, slab: int = 64) -> None:
    """Good measured planes back, unchanged, slab by slab along y (damaged planes keep their restoration)."""
    ny = volume.shape[2]
    good = np.flatnonzero(grid.good)
    rows = grid.good_positions
    for y0 in range(0, ny, slab):
        sl = slice(y0, min(ny, y0 + slab))
        block = np.asarray(out[:, :, sl, :])
        block[:, rows] = np.asarray(volume[:, :, sl, :], dtype=np.float32)[:, good]
        out[:, :, sl, :] = block
        if std is not None:
            sblock = np.asarray(std[:, :, sl, :])
            sblock[:, rows] = 0.0
            std[:, :, sl, :] = sblock


def _log_batches(engine: Engine, grid: OutputGrid, sizes: dict[str, tuple[int, int, int]], opts: RestoreOptions,
                 precision: str) -> str:
    """The one log line: device, threads, dtype, planes per network call and per slab, memory budget.

    ``sizes``: direction -> (plane width, planes per slab, planes along the direction).
    """
    texts, network = {}, False
    for axis, (cols, slab, n) in sizes.items():
        slab = min(slab, n)
        with inference_context(engine.device, precision):  # side by side only outside the bit-exact mode
            workers = engine.chunks_side_by_side(grid.n_out, cols, slab, opts)
        call = engine.planes_per_call(grid.n_out, cols, opts, workers=workers)
        network = network or call is not None
        each = max(1, torch.get_num_threads() // workers)
        side = f" ({workers} at once, {each} thread{'s' if each > 1 else ''} each)" if workers > 1 else ""
        texts[axis] = (planes_text(slab) if call is None
                       else f"{min(call, slab)} per network call{side}, slabs of {planes_text(slab)}")
    batch = next(iter(texts.values())) if len(set(texts.values())) == 1 else \
        "; ".join(f"{axis.upper()} {text}" for axis, text in texts.items())
    budget = memory_budget(engine.device) if network else None
    dtype = compute_dtype_name(engine.device, precision, engine.channels_last_network is not None) \
        if network else "float32"  # no network: no autocast
    return log_run("restoring", engine.device, dtype, f"batch {batch}", budget)


def _run_planes(volume, grid, engine, out, std, planes, fusion, batch_size, n_samples, progress, cancel, opts,
                seed, precision) -> None:
    """Both directions (or one), each written or fused into ``out``."""
    c, _, ny, nx = volume.shape
    first = "xz" if planes in ("both", "xz") else "yz"
    write_xz, write_yz = _fuse_writers(out, std, first, fusion)
    # direction, writer, plane width (cols), number of planes
    runs = [run for run in (("xz", write_xz, nx, ny), ("yz", write_yz, ny, nx)) if planes in ("both", run[0])]
    sizes = {axis: (cols, int(batch_size or default_batch_size(engine, c, grid.n_out, cols)), n)
             for axis, _, cols, n in runs}
    _log_batches(engine, grid, sizes, opts, precision)
    for axis, write, _cols, _n in runs:
        _run_direction(volume, grid, engine, axis, sizes[axis][1], n_samples, write, progress, cancel, opts, seed,
                       precision)


def _check_volume(volume, grid: OutputGrid, n_samples: int) -> tuple[int, int, int, int]:
    """The (C, Z, Y, X) shape of a volume that fits ``grid``; one-line errors otherwise."""
    if getattr(volume, "ndim", None) != 4:
        raise InputError(f"volume must be (C, Z, Y, X), got shape {getattr(volume, 'shape', None)}")
    if volume.shape[1] != grid.n_in:
        raise InputError(f"volume has {volume.shape[1]} z planes but the grid expects {grid.n_in}")
    if n_samples < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")
    return tuple(volume.shape)


def restore_volume(
    volume,
    grid: OutputGrid,
    engine: Engine,
    *,
    planes: str = "both",
    fusion: str = "mean",
    blur_sigma: float | None = None,
    keep_measured: bool = True,
    batch_size: int | None = None,
    n_samples: int = 1,
    seed: int = 0,
    options: RestoreOptions | None = None,
    out=None,
    std_out=None,
    precision: str = "float32",
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    **option_kwargs: Any,
) -> VolumeResult:
    """Restore a normalised (C, Z, Y, X) volume onto ``grid``'s output z grid.

    Parameters
    ----------
    volume : array-like (C, Z, Y, X)
        Normalised intensities (float); anything that supports NumPy slicing.
    grid : OutputGrid
        Must have ``grid.n_in == Z``.
    engine : Engine
        Any registered engine; engines with ``capabilities.volume`` (``e2e-unet``) get the
        whole volume instead of planes.
    planes : {'both', 'xz', 'yz'}
        Directions to restore. ``both`` is the paper's method.
    fusion : {'mean', 'geometric', 'xz', 'yz'}
        How the XZ and YZ results are combined (``xz``/``yz`` keep one direction only).
    blur_sigma : float, optional
        3D Gaussian post-blur (paper ablation: 3x3x3 kernel, sigma 0.5).
    keep_measured : bool: paste the measured planes back after fusion/blur (unchanged); the planes
        in ``grid.damaged`` are unknown rows for the engine and keep their restoration.
    batch_size : int, optional
        Planes per engine call (a slab); default from :func:`default_batch_size`.
        ``options.batch_size`` separately caps planes per network call inside the engine.
    n_samples : int
        >1 asks a stochastic engine for several samples; the result then has ``std`` (the
        root-mean-square of the two directions' std maps).
    seed : int
        Root of the per-slab seeds (:func:`slab_seed`).
    options : RestoreOptions, optional
        Per-call engine options (or as keywords, e.g. ``sampling_steps=5``).
    out, std_out : array-like (C, grid.n_out, Y, X), optional
        Where to write (e.g. a zarr array); default new float32 NumPy arrays.
    precision : {'auto', 'float32', 'bfloat16'}: network arithmetic (:mod:`volsr.runtime.precision`).
    progress : callable(stage, done, total); cancel : callable() -> bool, optional
        Cancel is checked between batches (learned engines: between steps) and raises Cancelled.

    Returns
    -------
    VolumeResult
        ``data`` (C, grid.n_out, Y, X) float32 (``out`` when given), ``std`` or None.

    Examples
    --------
    >>> import numpy as np
    >>> from volsr.engines import create_engine
    >>> vol = np.stack([np.full((8, 8), z, np.float32) for z in range(3)])[None]
    >>> res = restore_volume(vol, OutputGrid(3, 2), create_engine("linear"))
    >>> res.data[0, :, 0, 0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    planes, fusion = check_options(planes, fusion)
    c, _, ny, nx = _check_volume(volume, grid, n_samples)
    opts = make_options(options, **option_kwargs)
    check_precision(precision)
    check_batch_size(batch_size)
    configure_threads()
    shape = (c, grid.n_out, ny, nx)
    out = _check_out(out, shape, "out")
    std = _check_out(std_out, shape, "std_out") if n_samples > 1 else None
    if std is not None:
        std[...] = 0.0
    if engine.capabilities.volume:  # volumetric engines (e.g. e2e-unet) work on the whole stack
        log_run("restoring", engine.device, "float32", f"the whole volume at once ({engine.name})")
        out[...] = np.asarray(engine.restore_volume(np.asarray(volume, dtype=np.float32), grid, opts,
                                                    progress=progress, cancel=cancel), dtype=np.float32)
    else:
        _run_planes(volume, grid, engine, out, std, planes, fusion, batch_size, n_samples, progress, cancel, opts,
                    seed, precision)
    if blur_sigma:
        if progress is not None:
            progress("blur", 0, 1)
        blur_volume(out, float(blur_sigma))
        if progress is not None:
            progress("blur", 1, 1)
    if keep_measured:
        _paste_measured(out, std, volume, grid)
    return VolumeResult(out, std)
