"""In-plane upscaling of every XY plane of a (C, Z, Y, X) volume (2D super-resolution).

The 2D counterpart of :mod:`volsr.pipeline.volume`: XY planes are batched through an engine that
declares ``capabilities.upscale`` and written slab by slab into ``out`` (NumPy by default,
or any array-like such as zarr). The output grid is :class:`volsr.grid.VolumeGrid`
with ``yx_scale``; each slab gets its own seed (:func:`volsr.pipeline.volume.slab_seed`). A slab that
runs out of device memory is retried at half the size, as in the volume pipeline
(:func:`volsr.runtime.hardware.halving_batches`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..engines.base import Engine, RestoreOptions, make_options
from ..errors import Cancelled, InputError
from ..grid import VolumeGrid
from ..runtime.hardware import configure_threads, halving_batches, log_run, planes_text, to_device
from .blocks import window_side
from .volume import VolumeResult, slab_seed

__all__ = ["upscale_volume"]


def _upscale_planes(engine: Engine, planes: torch.Tensor, scale: int, opts: RestoreOptions, side: int | None,
                    overlap: float, cancel) -> torch.Tensor:
    """One batch of planes, whole (``side`` None) or through overlapping ``side``-pixel windows, blended."""
    if side is None:
        return engine.upscale(planes, scale, opts, cancel=cancel)
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(  # MONAI scales the window grid by the output/input size ratio
        planes, roi_size=(side, side), sw_batch_size=1, overlap=float(overlap), mode="gaussian",
        padding_mode="reflect", predictor=lambda z: engine.upscale(z, scale, opts, cancel=cancel))


def upscale_volume(volume, scale: int, engine: Engine, *, options: RestoreOptions | None = None,
                   batch_size: int | None = None, seed: int = 0, out=None, tile: int | None = 512,
                   overlap: float = 0.125, window: int | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> VolumeResult:
    """Upscale every XY plane of a normalised (C, Z, Y, X) volume by an integer ``scale``.

    Returns a :class:`volsr.pipeline.volume.VolumeResult` with ``data`` (C, Z, Y*scale, X*scale).
    The engine sees (N, C, Y, X) batches of planes; planes wider than ``tile`` (input pixels)
    are cut into overlapping tiles blended with Gaussian weights (MONAI sliding-window
    inference), so the engine's memory is bounded by the tile; the output plane is held whole.
    ``window`` fixes the window side instead of deriving it from the plane size and ``tile``:
    blocks of a larger image (:mod:`volsr.pipeline.blocks`) must use the whole image's windows.
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
    if tile is not None and (int(tile) < 8 or not 0 <= float(overlap) < 1):
        raise InputError(f"tile must be >= 8 pixels and overlap in [0, 1), got tile={tile}, overlap={overlap}")
    side = window if window is not None else window_side((ny, nx), tile)
    # planes per slab carry the seeds: a fixed pixel budget, never free memory (see volsr.pipeline.volume)
    per = int(batch_size or max(1, (1 << 22) // max(1, c * ny * nx * grid.yx_scale**2)))
    configure_threads()
    log_run("upscaling", engine.device, "float32", f"batch {planes_text(min(per, nz))}" + (
        f", tiles of {tile} px" if tile is not None and max(ny, nx) > tile else ""))
    if progress is not None:
        progress("upscale", 0, nz)

    def compute(z0: int, z1: int) -> np.ndarray:
        if cancel is not None and cancel():
            raise Cancelled("upscaling cancelled")
        planes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(volume[:, z0:z1], np.float32), 1, 0)))
        with torch.no_grad():
            res = _upscale_planes(engine, to_device(planes, engine.device), grid.yx_scale,
                                  opts.replace(seed=slab_seed(seed, "xy", z0)), side, overlap, cancel)
        return res.float().cpu().numpy()

    # a batch out of device memory: retried halved from the same plane (the volume pipeline's rule)
    for z0, z1, res in halving_batches(nz, per, engine.device, compute):
        out[:, z0:z1] = np.moveaxis(res, 0, 1)
        if progress is not None:
            progress("upscale", z1, nz)
    return VolumeResult(out)
