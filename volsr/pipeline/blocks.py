"""Blocks of a large image, placed on the sliding-window grid so that block seams cannot appear.

A large image is upscaled block by block (memory bounded by the block), each block through the
same MONAI sliding-window inference as a whole image (:func:`volsr.pipeline.inplane.upscale_volume`).
Where a block's windows differ from the whole image's, its blended result differs too, and a
seam shows where two blocks meet. So blocks are placed on the window grid: a block starts on a
multiple of the window stride, reaches one window past the part it keeps, and the windows MONAI
lays over the block are then exactly the whole image's windows there, in the same order. The
kept part of each block equals the whole image's result up to float rounding — by construction,
not by tolerance. The price is one window row/column computed twice per block boundary. A block
reads its kept side plus less than one window before it and one window after it (less than two
for the last block, which keeps everything up to the image end).

MONAI's grid (``monai.inferers.utils._get_scan_interval``, ``monai.data.utils.dense_patch_slices``):
window starts ``k * stride`` while the window ends inside the image, then one last window flush
with the image end; ``stride = int(side * (1 - overlap))``, or ``side`` on an axis the window spans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Span", "BlockPlan", "window_side", "plan_blocks"]


def window_side(shape_yx: tuple[int, int], tile: int | None) -> int | None:
    """The sliding-window side for planes of ``shape_yx``, or None when a plane goes to the engine whole."""
    if tile is None or max(shape_yx) <= int(tile):
        return None
    return min(int(tile), *(int(n) for n in shape_yx))


def _stride(n: int, side: int, overlap: float) -> int:
    """MONAI's scan interval along an axis of ``n`` pixels."""
    return side if n == side else max(1, int(side * (1 - float(overlap))))


@dataclass(frozen=True)
class Span:
    """One block along one axis: the input pixels ``read`` and the part of them the block ``keep``s.

    Both are (start, stop) in image coordinates; the ``keep`` spans of an axis tile it exactly.
    """

    read: tuple[int, int]
    keep: tuple[int, int]

    def kept_in_block(self, scale: int = 1) -> slice:
        """The kept part in the block's own (optionally upscaled) coordinates."""
        return slice((self.keep[0] - self.read[0]) * scale, (self.keep[1] - self.read[0]) * scale)


@dataclass(frozen=True)
class BlockPlan:
    """Blocks as rows x columns of :class:`Span`; ``window`` is the shared sliding-window side."""

    rows: tuple[Span, ...]
    cols: tuple[Span, ...]
    window: int | None
    step: tuple[int, int]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def _plan_axis(n: int, side: int | None, stride: int, step: int) -> tuple[Span, ...]:
    if side is None or n <= side:
        return (Span((0, n), (0, n)),)
    last_start = ((n - side) // stride) * stride  # the last window start on the grid
    spans = []
    for s in range(0, n, step):
        e = min(s + step, n)
        lo = max(0, min(s - stride * ((side - 1) // stride), last_start))  # first window reaching past s
        if n - side <= e - 1:  # the image's flush last window reaches in: read to the end, keep it all
            spans.append(Span((lo, n), (s, n)))
            break
        q = ((e - 1) // stride) * stride  # the last grid window starting inside the kept part
        spans.append(Span((lo, q + side), (s, e)))
    return tuple(spans)


def plan_blocks(shape_yx: tuple[int, int], tile: int | None, overlap: float, block: int,
                align: int = 1) -> BlockPlan:
    """Cut an image into blocks of about ``block`` kept input pixels per side, on the window grid.

    Parameters
    ----------
    shape_yx : (int, int)
        Image size in input pixels.
    tile, overlap
        The sliding-window tile side and overlap fraction, as given to
        :func:`volsr.pipeline.inplane.upscale_volume`.
    block : int
        Wanted kept block side in input pixels; rounded to a whole number of window strides
        (and of ``align``).
    align : int
        The kept block side is also a multiple of this (e.g. so that output TIFF tiles line up).

    Returns
    -------
    BlockPlan

    Examples
    --------
    >>> p = plan_blocks((1000, 300), tile=128, overlap=0.125, block=256)
    >>> p.window, len(p.rows), len(p.cols), p.rows[1]
    (128, 4, 1, Span(read=(112, 464), keep=(224, 448)))
    """
    ny, nx = (int(n) for n in shape_yx)
    side = window_side((ny, nx), tile)
    steps, axes = [], []
    for n in (ny, nx):
        stride = _stride(n, side, overlap) if side is not None else n
        unit = math.lcm(stride, int(align))
        step = max(1, round(int(block) / unit)) * unit
        steps.append(step)
        axes.append(_plan_axis(n, side, stride, step))
    return BlockPlan(rows=axes[0], cols=axes[1], window=side, step=(steps[0], steps[1]))
