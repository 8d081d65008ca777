"""In-plane upscaling of every XY plane of a (C, Z, Y, X) volume (2D super-resolution).

The 2D counterpart of :mod:`volsr.volume`: XY planes are batched through an engine that
declares ``capabilities.upscale`` and written slab by slab into ``out`` (NumPy by default,
or any array-like such as zarr). The output grid is :class:`volsr.sampling.VolumeGrid`
with ``yx_scale``; each slab gets its own seed (:func:`volsr.volume.slab_seed`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .engines.base import Engine, RestoreOptions, make_options
from .errors import Cancelled, InputError
from .sampling import VolumeGrid
from .volume import VolumeResult, slab_seed

__all__ = ["upscale_volume"]


def upscale_volume(volume, scale: int, engine: Engine, *, options: RestoreOptions | None = None,
                   batch_size: int | None = None, seed: int = 0, out=None,
                   progress: Callable[[str, int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> VolumeResult:
    """Upscale every XY plane of a normalised (C, Z, Y, X) volume by an integer ``scale``.

    Returns a :class:`volsr.volume.VolumeResult` with ``data`` (C, Z, Y*scale, X*scale).
    The engine sees (N, C, Y, X) batches of planes; known rows do not apply.
    """
    if getattr(volume, "ndim", None) != 4:
        raise InputError(f"volume must be (C, Z, Y, X), got shape {getattr(volume, 'shape', None)}")
    c, nz, ny, nx = volume.shape
    grid = VolumeGrid((nz, ny, nx), yx_scale=scale)
    shape = (c, *grid.shape_out)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}, the upscaling needs {shape}")
    opts = make_options(options)
    per = int(batch_size or max(1, (1 << 22) // max(1, c * ny * nx * grid.yx_scale**2)))
    if progress is not None:
        progress("upscale", 0, nz)
    for z0 in range(0, nz, per):
        if cancel is not None and cancel():
            raise Cancelled("upscaling cancelled")
        sl = slice(z0, min(nz, z0 + per))
        planes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(volume[:, sl], np.float32), 1, 0)))
        with torch.no_grad():
            res = engine.upscale(planes.to(engine.device), grid.yx_scale, opts.replace(seed=slab_seed(seed, "xy", z0)),
                                 cancel=cancel)
        out[:, sl] = np.moveaxis(res.float().cpu().numpy(), 0, 1)
        if progress is not None:
            progress("upscale", sl.stop, nz)
    return VolumeResult(out)
