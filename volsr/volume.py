"""Engine-agnostic sliced restoration of a volume.

The (C, Z, Y, X) volume is cut into XZ planes (one per y: rows = Z, cols = X) and YZ planes
(one per x: rows = Z, cols = Y), laid on the output z grid with the measured planes as
known rows, restored batch by batch through ``engine.restore`` and written back. The two
directions are fused in place, so peak memory stays near one output volume plus one batch
(and the input may be any array that supports slicing, e.g. a zarr or dask chunk).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from einops import rearrange
from scipy.ndimage import gaussian_filter

from .engines.base import Engine
from .errors import Cancelled, InputError
from .sampling import OutputGrid

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
    """Planes per engine call: ~4 Mpixel batches for cheap engines, fewer for learned ones."""
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


def blur_volume(volume: np.ndarray, sigma: float) -> np.ndarray:
    """3D Gaussian blur per channel, in place. Kernel radius max(1, ceil(2*sigma)): sigma 0.5 -> 3x3x3 (paper)."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise InputError(f"blur sigma must be a positive number, got {sigma!r}")
    radius = max(1, math.ceil(2 * sigma))
    for c in range(volume.shape[0]):
        volume[c] = gaussian_filter(volume[c], sigma=sigma, radius=radius, mode="reflect")
    return volume


def _batch_progress(progress: ProgressFn, axis: str, start: int, size: int, n: int) -> ProgressFn:
    """Map an engine's (step done, steps total) inside one batch onto planes done along ``axis``."""

    def report(stage: str, done: int, total: int, **info) -> None:
        progress(axis, start + (size * done) // max(1, total), n)

    return report


def _run_direction(
    volume, grid: OutputGrid, engine: Engine, axis: str, batch_size: int, n_samples: int,
    write: Callable[[slice, np.ndarray, np.ndarray | None], None],
    progress: ProgressFn | None, cancel: Callable[[], bool] | None, restore_kwargs: dict,
) -> None:
    """Restore all planes along one direction; ``write(sl, planes, std)`` stores each batch."""
    c, _, ny, nx = volume.shape
    n = ny if axis == "xz" else nx
    known = torch.from_numpy(grid.known_mask).to(engine.device)
    done = 0
    if progress is not None:
        progress(axis, 0, n)
    for start in range(0, n, batch_size):
        if cancel is not None and cancel():
            raise Cancelled("restoration cancelled")
        sl = slice(start, min(n, start + batch_size))
        if axis == "xz":  # fixed y: rows = Z, cols = X
            slab = rearrange(np.asarray(volume[:, :, sl, :]), "c z b x -> b c z x")
        else:  # fixed x: rows = Z, cols = Y
            slab = rearrange(np.asarray(volume[:, :, :, sl]), "c z y b -> b c z y")
        planes = torch.from_numpy(np.ascontiguousarray(grid.place(slab.astype(np.float32), axis=2))).to(engine.device)
        kwargs = restore_kwargs
        if progress is not None and engine.learned:  # diffusion batches take minutes: report inside them too
            kwargs = {**restore_kwargs, "progress": _batch_progress(progress, axis, start, sl.stop - start, n)}
        with torch.no_grad():
            if n_samples > 1:
                mean, std = engine.restore_with_std(planes, known, n_samples, **kwargs)
                write(sl, mean.float().cpu().numpy(), std.float().cpu().numpy())
            else:
                write(sl, engine.restore(planes, known, **kwargs).float().cpu().numpy(), None)
        done = sl.stop
        if progress is not None:
            progress(axis, done, n)


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
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    **restore_kwargs: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Restore a normalised (C, Z, Y, X) volume onto ``grid``'s output z grid.

    Parameters
    ----------
    volume : array-like (C, Z, Y, X)
        Normalised intensities (float); anything that supports NumPy slicing.
    grid : OutputGrid
        Must have ``grid.n_in == Z``.
    engine : Engine
        Any registered engine; engines that define ``restore_volume`` (volumetric baselines
        such as ``e2e-unet``) get the whole volume instead of planes.
    planes : {'both', 'xz', 'yz'}
        Directions to restore. ``both`` is the paper's method.
    fusion : {'mean', 'geometric', 'xz', 'yz'}
        How the XZ and YZ results are combined (``xz``/``yz`` keep one direction only).
    blur_sigma : float, optional
        3D Gaussian post-blur (paper ablation: 3x3x3 kernel, sigma 0.5).
    keep_measured : bool
        Paste the measured planes back after fusion/blur so they come back unchanged.
    batch_size : int, optional
        Planes per engine call; default from :func:`default_batch_size`.
    n_samples : int
        >1 asks a stochastic engine for several samples; returns ``(mean, std)``. The fused
        std is the root-mean-square of the two directions' std maps.
    progress : callable(stage, done, total), optional
    cancel : callable() -> bool, optional
        Checked between batches; True raises :class:`volsr.errors.Cancelled`.

    Returns
    -------
    numpy.ndarray (C, grid.n_out, Y, X) float32, or ``(restored, std)`` when ``n_samples > 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from volsr.engines import create_engine
    >>> vol = np.stack([np.full((8, 8), z, np.float32) for z in range(3)])[None]
    >>> out = restore_volume(vol, OutputGrid(3, 2), create_engine("linear"))
    >>> out[0, :, 0, 0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    planes, fusion = check_options(planes, fusion)
    if getattr(volume, "ndim", None) != 4:
        raise InputError(f"volume must be (C, Z, Y, X), got shape {getattr(volume, 'shape', None)}")
    c, z, ny, nx = volume.shape
    if z != grid.n_in:
        raise InputError(f"volume has {z} z planes but the grid expects {grid.n_in}")
    if n_samples < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")

    if cancel is not None and engine.learned:  # learned engines also poll it between denoising steps
        restore_kwargs.setdefault("cancel", cancel)
    hook = getattr(engine, "restore_volume", None)
    if callable(hook):  # volumetric engines (e.g. e2e-unet) work on the whole stack
        out = np.asarray(hook(np.asarray(volume, dtype=np.float32), grid, progress=progress, cancel=cancel), dtype=np.float32)
        std = np.zeros_like(out) if n_samples > 1 else None
    else:
        out = np.empty((c, grid.n_out, ny, nx), dtype=np.float32)
        std = np.zeros_like(out) if n_samples > 1 else None
        first = "xz" if planes in ("both", "xz") else "yz"

        def write_xz(sl, res, sd):
            out[:, :, sl, :] = rearrange(res, "b c z x -> c z b x")
            if std is not None:
                std[:, :, sl, :] = rearrange(sd, "b c z x -> c z b x")

        def write_yz(sl, res, sd):
            res = rearrange(res, "b c z y -> c z y b")
            if first == "xz":
                out[..., sl] = fuse(out[..., sl], res, fusion)
                if std is not None:
                    sd = rearrange(sd, "b c z y -> c z y b")
                    std[..., sl] = np.sqrt(0.5 * (std[..., sl] ** 2 + sd**2))
            else:
                out[..., sl] = res
                if std is not None:
                    std[..., sl] = rearrange(sd, "b c z y -> c z y b")

        if planes in ("both", "xz"):
            bs = batch_size or default_batch_size(engine, c, grid.n_out, nx)
            _run_direction(volume, grid, engine, "xz", bs, n_samples, write_xz, progress, cancel, restore_kwargs)
        if planes in ("both", "yz"):
            bs = batch_size or default_batch_size(engine, c, grid.n_out, ny)
            _run_direction(volume, grid, engine, "yz", bs, n_samples, write_yz, progress, cancel, restore_kwargs)

    if blur_sigma:
        if progress is not None:
            progress("blur", 0, 1)
        blur_volume(out, float(blur_sigma))
        if progress is not None:
            progress("blur", 1, 1)
    if keep_measured:
        out[:, grid.positions] = np.asarray(volume[:, :], dtype=np.float32)
        if std is not None:
            std[:, grid.positions] = 0.0
    return (out, std) if std is not None else out
