"""Interpolation engines: nearest, linear and cubic along the rows, per column.

These are the paper's non-learned baselines and the reference every learned engine must
beat. They interpolate between the known rows of each plane (scipy); outside the first/last
known row they hold the nearest known value.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import interp1d, make_interp_spline

from .base import Capabilities, Engine
from .registry import register_engine


def interpolate_rows(planes: np.ndarray, known: np.ndarray, kind: str) -> np.ndarray:
    """Fill unknown rows of (N, C, H, W) ``planes`` from rows where ``known`` (H,) is True."""
    rows = np.flatnonzero(known)
    h = planes.shape[2]
    values = planes[:, :, rows, :]
    if rows.size == 1:
        return np.repeat(values, h, axis=2)
    target = np.arange(h)
    inside = np.clip(target, rows[0], rows[-1])  # hold the edge value outside the known range
    if kind == "nearest":
        f = interp1d(rows, values, kind="nearest", axis=2, assume_sorted=True)
        return f(inside).astype(planes.dtype, copy=False)
    k = 1 if kind == "linear" else min(3, rows.size - 1)
    spline = make_interp_spline(rows, values, k=k, axis=2)
    return spline(inside).astype(planes.dtype, copy=False)


class _InterpolationEngine(Engine):
    kind = "linear"

    def _restore(self, planes: torch.Tensor, known: torch.Tensor, options, **run) -> torch.Tensor:
        arr = planes.detach().to("cpu", torch.float32).numpy()
        known_np = known.detach().cpu().numpy()
        if known_np.ndim == 1:
            out = interpolate_rows(arr, known_np, self.kind)
        else:  # per-plane masks: group planes that share a mask
            out = np.empty_like(arr)
            patterns, inverse = np.unique(known_np, axis=0, return_inverse=True)
            for p, pattern in enumerate(patterns):
                sel = np.flatnonzero(inverse.ravel() == p)
                out[sel] = interpolate_rows(arr[sel], pattern, self.kind)
        return torch.from_numpy(out).to(planes.device)


@register_engine
class NearestEngine(_InterpolationEngine):
    """Nearest known row (ties go to the lower row)."""

    name = "nearest"
    kind = "nearest"
    description = "nearest-neighbour along z (baseline)"


@register_engine
class LinearEngine(_InterpolationEngine):
    """Linear interpolation between the two neighbouring known rows."""

    name = "linear"
    kind = "linear"
    description = "linear interpolation along z (baseline)"


@register_engine
class CubicEngine(_InterpolationEngine):
    """Not-a-knot cubic spline through the known rows (quadratic/linear when fewer than 4)."""

    name = "cubic"
    kind = "cubic"
    description = "cubic spline interpolation along z (baseline)"


@register_engine
class BicubicEngine(Engine):
    """Bicubic in-plane upscaling (PyTorch, a = -0.75, pixel-area grid): the 2D baseline."""

    name = "bicubic"
    description = "bicubic in-plane upscaling (2D baseline)"
    capabilities = Capabilities(rows=False, upscale=True)

    def _upscale(self, images, scale, options, **run):
        return F.interpolate(images.float(), scale_factor=scale, mode="bicubic", align_corners=False).to(images.dtype)
