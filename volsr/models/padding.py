"""The one padding helper: run a fully convolutional network on planes of any size.

UNets need sides that are multiples of ``2**(levels-1)``; planes (an XZ plane of 61 x 256,
a 2D image of any size) are padded at the bottom/right by reflection (replication when the
plane is smaller than the pad) and the output is cropped back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..runtime.concurrency import run_side_by_side, split_side_by_side

__all__ = ["padded_side", "pad_to_multiple", "run_padded"]


def padded_side(n: int, multiple: int, min_side: int = 0) -> int:
    """``n`` rounded up to a multiple of ``multiple`` and at least ``min_side``."""
    return max(-(-int(n) // int(multiple)) * int(multiple), int(min_side))


def _pad_mode(size: int, pad: int) -> str:
    return "reflect" if pad < size else "replicate"


def pad_to_multiple(x: torch.Tensor, multiple: int, min_side: int = 0) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to :func:`padded_side` in both axes."""
    h, w = x.shape[-2:]
    ph, pw = padded_side(h, multiple, min_side) - h, padded_side(w, multiple, min_side) - w
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode=_pad_mode(h, ph))
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode=_pad_mode(w, pw))
    return x


def run_padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int, *,
               min_side: int = 0, chunk_pixels: int | None = None, side_by_side: bool = False) -> torch.Tensor:
    """``fn`` on padded (N, C, H, W) input, cropped back to (H, W).

    With ``chunk_pixels`` the batch is split so that each call holds at most that many
    (padded) pixels per channel, and at least one plane. ``side_by_side`` (only for an ``fn``
    that draws no random numbers: concurrent draws from one generator would come in any order):
    on a CPU outside the bit-exact mode those calls run side by side, one thread each, with the
    pixels shared between them (:mod:`volsr.runtime.concurrency`).
    """
    n, _, h, w = x.shape
    xp = pad_to_multiple(x, multiple, min_side)
    if chunk_pixels is None:
        out = fn(xp)
    else:
        per, workers = max(1, int(chunk_pixels) // (xp.shape[-2] * xp.shape[-1])), 1
        if side_by_side:  # the same memory, held by `workers` calls at once
            per, workers = split_side_by_side(x.device, n, per)
        out = torch.cat(run_side_by_side(fn, [xp[i:i + per] for i in range(0, n, per)], workers, x.device.type))
    return out[:, :, :h, :w]
