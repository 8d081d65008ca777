"""Streaming in-plane upscaling: an image larger than memory, block by block into a tiled BigTIFF.

The in-memory path holds the image, its normalised copy and the whole float output; a
whole-slide level 0 upscaled 4x (40000 x 30000 RGB -> 160000 x 120000 x 3) cannot work that
way. Here nothing whole-image-sized is ever in memory:

* the input is a lazily opened TIFF level (:class:`volsr.io.TiffLevel`); each block reads
  only the TIFF tiles it touches;
* blocks (:func:`volsr.pipeline.blocks.plan_blocks`) sit on the sliding-window grid, so each goes through
  the one pipeline (:func:`volsr.pipeline.inplane.upscale_volume`, MONAI windows + Gaussian blending)
  and its kept part equals the whole-image result: no seams;
* the kept part, back in the output dtype, goes into a *band* (one row of blocks) in a
  memory-mapped temporary file next to the output (the OS pages it to disk), because TIFF tiles
  must be written in raster order across the full width; the band's tiles are then handed to
  tifffile (:func:`volsr.io.write_tiled_tiff`) as the band completes.

Memory is bounded by the block, whatever the image size: a block reads about ``block + tile``
input pixels per side, and its float32 output (MONAI's sum, its weights and the copy
:func:`~volsr.pipeline.inplane.upscale_volume` returns) costs about 12 bytes per output sample:
``12 * C * ((block + tile) * scale)**2`` bytes, at most ~1.5 GiB with the default block
(:func:`default_block`). Temporary disk: one band, ``block * scale`` rows of the output width.
The percentile normaliser is fitted on a strided subsample of the level (every k-th row and
column, about 1 M pixels): the same statistics the in-memory fit sees, at bounded cost, and
unlike a lower pyramid level not smoothed by the pyramid's downsampling.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..engines.base import Engine
from ..errors import Cancelled, InputError, VolsrError
from ..io import TiffLevel, open_level
from .blocks import BlockPlan, Span, plan_blocks
from .inplane import upscale_volume

__all__ = ["STREAM_SAMPLES", "DEFAULT_BLOCK", "BLOCK_SAMPLES", "default_block", "open_streamable", "stream_upscale"]

STREAM_SAMPLES = 1 << 27
"""Outputs with more samples than this (C * Y * X * scale**2; 128 Mi, 512 MiB as float32) are streamed."""

DEFAULT_BLOCK = 2048
"""Kept block side in input pixels (rounded to the window stride), unless :data:`BLOCK_SAMPLES` asks for less."""

BLOCK_SAMPLES = 1 << 27
"""The default block is shrunk until its output (halo included) has at most this many samples (~1.5 GiB peak)."""

NORM_SAMPLE_PIXELS = 1 << 20
"""The percentile normaliser of a streamed image is fitted on a strided subsample of this many pixels."""


def open_streamable(source, *, axes: str | None, level: int | None, out, stream: bool | None,
                    scale: int) -> TiffLevel | None:
    """The TIFF level to stream, or None when the image goes through memory.

    ``stream=None`` streams single-plane TIFF images (``YX`` or ``YXS``) whose output would exceed
    :data:`STREAM_SAMPLES`, when ``out`` is a TIFF path; ``True`` streams or says why it cannot;
    ``False`` never streams.
    """
    from ..io.stacks import TIFF_EXTENSIONS, _extension

    if stream is False:
        return None
    why = None
    if not isinstance(source, (str, Path)):
        why = "only image files are streamed; pass the path of a TIFF"
    elif level is None and _extension(Path(source)) not in TIFF_EXTENSIONS:
        why = f"{Path(source).name} is not a TIFF (PNG/JPEG files cannot be read in parts)"
    elif out is None:
        why = "a streamed result is written to a file as it is computed; pass out='result.tif'"
    elif _extension(Path(out)) not in TIFF_EXTENSIONS:
        why = f"a streamed result is written as a tiled TIFF; {Path(out).name} is not a .tif path"
    if why is not None:
        if stream:
            raise InputError(f"cannot stream: {why}")
        return None
    try:
        lv = open_level(source, level or 0, axes)
    except VolsrError:
        if level is None and not stream:
            return None  # the in-memory reader knows more layouts and says what is wrong
        raise
    c, nz, ny, nx = lv.shape_czyx
    layout_ok = nz == 1 and (lv.axes == "YX" or (lv.axes == "YXS" and c > 1))
    if layout_ok and (stream or c * ny * nx * scale**2 > STREAM_SAMPLES):
        return lv
    lv.close()
    if stream:
        raise InputError(f"cannot stream {Path(source).name}: axes {lv.axes} {lv.shape}; single-plane grayscale "
                         "(YX) or RGB (YXS) images are streamed, others go through memory (stream=False)")
    return None


def default_block(channels: int, scale: int, tile: int | None) -> int:
    """:data:`DEFAULT_BLOCK`, or less when a block's output with its halo would exceed :data:`BLOCK_SAMPLES`.

    A block reads about ``block + tile`` input pixels per side; its float output holds
    ``channels * ((block + tile) * scale)**2`` samples.
    """
    side = math.isqrt(BLOCK_SAMPLES // max(1, channels)) // max(1, scale) - int(tile or 0)
    return max(1, min(DEFAULT_BLOCK, side))


def _tiff_tile(rows: int) -> int:
    """The output TIFF tile side: 256 (the whole-slide convention) or the largest power of 2 dividing ``rows``.

    ``rows`` (a band's height) is a multiple of 16 (``plan_blocks(align=...)``), so a band is
    always whole rows of tiles and no tile straddles two bands.
    """
    return next(t for t in (256, 128, 64, 32, 16) if rows % t == 0)


def _write_block(level: TiffLevel, ys: Span, xs: Span, band, scale: int, engine: Engine, norm, dtype,
                 plan: BlockPlan, *, tile, overlap, seed, rows_per_write: int, cancel) -> None:
    """Upscale one block and put its kept part, in the output dtype, into the band."""
    from ..normalize import check_finite, to_dtype

    x = level.read(ys.read, xs.read)
    check_finite(x)
    up = upscale_volume(norm.forward(x), scale, engine, seed=seed, tile=tile, overlap=overlap,
                        window=plan.window, cancel=cancel).data[:, 0]
    del x
    kept = up[:, ys.kept_in_block(scale), xs.kept_in_block(scale)]
    x0, width = xs.keep[0] * scale, kept.shape[2]
    for r in range(0, kept.shape[1], rows_per_write):  # the float64 inverse a few rows at a time
        part = to_dtype(norm.inverse(kept[:, r:r + rows_per_write]), dtype)
        band[r:r + part.shape[1], x0:x0 + width] = np.moveaxis(part, 0, -1)


def _tiles(level: TiffLevel, plan: BlockPlan, band, scale: int, t: int, run_block: Callable, progress, cancel):
    """Run the blocks band by band and yield the output TIFF tiles in raster order."""
    total, done = len(plan), 0
    if progress is not None:
        progress("upscale", 0, total)
    for ys in plan.rows:
        for xs in plan.cols:
            if cancel is not None and cancel():
                raise Cancelled("upscaling cancelled")
            run_block(ys, xs)
            done += 1
            if progress is not None:
                progress("upscale", done, total)
        rows = (ys.keep[1] - ys.keep[0]) * scale
        for y0 in range(0, rows, t):
            for x0 in range(0, band.shape[1], t):
                tile = np.array(band[y0:min(rows, y0 + t), x0:x0 + t])  # a copy: no view outlives the band
                yield tile if level.axes == "YXS" else tile[..., 0]


def stream_upscale(level: TiffLevel, path, scale: int, engine: Engine, norm, *, dtype, tile: int | None = 512,
                   overlap: float = 0.125, block: int | None = None, seed: int = 0, spacing=(None, None, None),
                   unit: str | None = None, overwrite: bool = False, progress=None, cancel=None) -> Path:
    """Upscale a TIFF level block by block into a tiled OME BigTIFF at ``path``; nothing is left on failure.

    Parameters
    ----------
    level : TiffLevel
        A single-plane ``YX`` or ``YXS`` level (:func:`open_streamable`).
    path : Path
        The output ``.tif``.
    scale, engine
        Integer scale and a 2D engine.
    norm : PercentileNormalizer
        Already fitted (e.g. on ``level.subsample(...)``).
    dtype : numpy dtype
        Output dtype.
    tile, overlap
        The sliding-window tile and overlap inside each block.
    block : int, optional
        Kept block side in input pixels (default :func:`default_block`), rounded to the window stride.
    seed, spacing, unit, overwrite, progress, cancel
        ``progress("upscale", blocks_done, blocks_total)``; spacing (z, y, x) of the *output*.

    Returns
    -------
    Path
    """
    from ..io import write_tiled_tiff

    path = Path(path)
    c, _, ny, nx = level.shape_czyx
    block = default_block(c, scale, tile) if block is None else int(block)
    if block < 1:
        raise InputError(f"block must be a positive number of pixels, got {block}")
    plan = plan_blocks((ny, nx), tile, overlap, block, align=16 // math.gcd(16, scale))
    band_rows = max(s.keep[1] - s.keep[0] for s in plan.rows) * scale  # the last band can be the tallest
    t = _tiff_tile(plan.step[0] * scale) if len(plan.rows) > 1 else 256  # every other band: whole tile rows
    shape = (ny * scale, nx * scale) + ((c,) if level.axes == "YXS" else ())
    dtype = np.dtype(dtype)
    with tempfile.TemporaryFile(prefix=f".{path.name}.band-", dir=path.parent) as fh:
        # the band lives in a file the OS pages out, not in RAM; unnamed, so it vanishes with the process
        band = np.memmap(fh, dtype=dtype, mode="w+", shape=(band_rows, nx * scale, c))

        def run_block(ys: Span, xs: Span) -> None:
            # the whole image's seed in every block: engines seed each window call from it, so even a
            # stochastic engine gives every window the noise it gets in the in-memory path
            _write_block(level, ys, xs, band, scale, engine, norm, dtype, plan, tile=tile, overlap=overlap,
                         seed=seed, rows_per_write=t, cancel=cancel)

        tiles = _tiles(level, plan, band, scale, t, run_block, progress, cancel)
        return write_tiled_tiff(path, tiles, shape, dtype, level.axes, tile=(t, t), spacing=spacing, unit=unit,
                                overwrite=overwrite)


def open_result(path) -> object:
    """A streamed result as a lazy, read-only zarr array (only the tiles sliced are read)."""
    import tifffile
    import zarr

    return zarr.open_array(tifffile.imread(str(path), aszarr=True), mode="r")
