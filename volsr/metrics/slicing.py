"""Slices of a volume along the three axes, seeded square crops, and intensity windows.

Conventions (DESIGN.md section 3): volumes are ``(C, Z, Y, X)`` (a ``(Z, Y, X)`` array is
read as one channel). An XY slice at fixed ``z`` is ``vol[:, z]`` (rows = Y, cols = X); an
XZ slice at fixed ``y`` is ``vol[:, :, y, :]`` (rows = Z, cols = X); a YZ slice at fixed
``x`` is ``vol[:, :, :, x]`` (rows = Z, cols = Y). Z is always the row axis of XZ/YZ.

Every metric that compares slice sets (FID, spectra) draws square ``size x size`` crops so
that all sets — reference images and XY/XZ/YZ slices — are compared at the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, VolsrError

__all__ = [
    "AXES",
    "as_czyx",
    "as_image_list",
    "axis_slices",
    "sample_volume_crops",
    "sample_image_crops",
    "IntensityWindow",
]

AXES = ("xy", "xz", "yz")


def as_czyx(volume, name: str = "volume") -> np.ndarray:
    """Return a (C, Z, Y, X) view of a (Z, Y, X) or (C, Z, Y, X) array."""
    v = np.asarray(volume)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4:
        raise InputError(f"{name} must be a (Z, Y, X) or (C, Z, Y, X) array, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise InputError(f"{name} must hold real numbers, got dtype {v.dtype}")
    return v


def as_image_list(images, name: str = "reference") -> list[np.ndarray]:
    """Normalise a set of 2D images to a list of (C, H, W) arrays.

    Accepts a list/tuple of (H, W) or (C, H, W) arrays, a (N, H, W) array (e.g. the XY
    planes of a ZYX stack) or a (N, C, H, W) array. A (C, Z, Y, X) *volume* is not accepted
    here because it is indistinguishable from (N, C, H, W); pass ``np.moveaxis(vol, 1, 0)``
    (its XY planes as (Z, C, Y, X)) instead.
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [im[None] for im in images]
        if images.ndim == 4:
            return list(images)
        raise InputError(f"{name} array must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise InputError(f"{name} image {i} must be (H, W) or (C, H, W), got shape {a.shape}")
        out.append(a)
    if not out:
        raise InputError(f"{name} holds no images")
    c = {a.shape[0] for a in out}
    if len(c) != 1:
        raise InputError(f"{name} images have different channel counts {sorted(c)}; use images of one kind")
    return out


def axis_slices(volume_czyx: np.ndarray, axis: str) -> np.ndarray:
    """All slices along ``axis`` as (N, C, rows, cols), following the module conventions."""
    v = as_czyx(volume_czyx)
    if axis == "xy":
        return np.moveaxis(v, 1, 0)  # (Z, C, Y, X)
    if axis == "xz":
        return np.moveaxis(v, 2, 0)  # (Y, C, Z, X)
    if axis == "yz":
        return np.moveaxis(v, 3, 0)  # (X, C, Z, Y)
    raise VolsrError(f"axis must be one of {AXES}, got {axis!r}")


def _check_size(size: int, rows: int, cols: int, what: str) -> int:
    size = int(size)
    if size < 1:
        raise VolsrError(f"crop size must be >= 1, got {size}")
    if size > rows or size > cols:
        raise InputError(
            f"crop size {size} does not fit {what} of {rows}x{cols} px; use a crop <= {min(rows, cols)} "
            "(XZ/YZ slices have as many rows as the volume has z planes)"
        )
    return size


def sample_volume_crops(
    volume_czyx: np.ndarray, axis: str, size: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` random square crops of slices along ``axis``: (n, C, size, size) float32.

    Slice index and crop position are uniform; for XZ/YZ the crop rows are z.
    """
    v = as_czyx(volume_czyx)
    _, z, y, x = v.shape
    if axis not in AXES:
        raise VolsrError(f"axis must be one of {AXES}, got {axis!r}")
    rows, cols, depth = {"xy": (y, x, z), "xz": (z, x, y), "yz": (z, y, x)}[axis]
    size = _check_size(size, rows, cols, f"{axis.upper()} slices")
    n = int(n)
    k = rng.integers(0, depth, n)
    r0 = rng.integers(0, rows - size + 1, n)
    c0 = rng.integers(0, cols - size + 1, n)
    out = np.empty((n, v.shape[0], size, size), dtype=np.float32)
    for i in range(n):
        if axis == "xy":
            out[i] = v[:, k[i], r0[i] : r0[i] + size, c0[i] : c0[i] + size]
        elif axis == "xz":
            out[i] = v[:, r0[i] : r0[i] + size, k[i], c0[i] : c0[i] + size]
        else:
            out[i] = v[:, r0[i] : r0[i] + size, c0[i] : c0[i] + size, k[i]]
    return out


def sample_image_crops(images: list[np.ndarray], size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random square crops from a list of (C, H, W) images (image chosen uniformly)."""
    images = as_image_list(images)
    for i, im in enumerate(images):
        _check_size(size, im.shape[1], im.shape[2], f"reference image {i}")
    n = int(n)
    which = rng.integers(0, len(images), n)
    out = np.empty((n, images[0].shape[0], size, size), dtype=np.float32)
    for i, j in enumerate(which):
        im = images[j]
        r0 = rng.integers(0, im.shape[1] - size + 1)
        c0 = rng.integers(0, im.shape[2] - size + 1)
        out[i] = im[:, r0 : r0 + size, c0 : c0 + size]
    return out


@dataclass(frozen=True)
class IntensityWindow:
    """Per-channel linear map ``[low, high] -> [0, 1]`` followed by clipping to [0, 1].

    Float throughout: no uint8 conversion, so nothing wraps around (the official MSDSR
    paired-FID code fed uint8 into a path expecting floats). Clipping is what the feature
    extractors expect (images in [0, 1]).
    """

    low: tuple
    high: tuple

    @classmethod
    def from_arrays(
        cls, arrays, *, pmin: float = 0.1, pmax: float = 99.9, sample_limit: int = 2_000_000, seed: int = 0
    ) -> IntensityWindow:
        """Percentile window over a list of (C, ...) arrays (pixels subsampled when many)."""
        if not (0 <= pmin < pmax <= 100):
            raise VolsrError(f"percentiles must satisfy 0 <= pmin < pmax <= 100, got {pmin}, {pmax}")
        arrays = list(arrays)
        c = arrays[0].shape[0]
        flat = np.concatenate([np.asarray(a).reshape(c, -1) for a in arrays], axis=1)
        if flat.shape[1] > sample_limit:
            idx = np.random.default_rng(seed).choice(flat.shape[1], sample_limit, replace=False)
            flat = flat[:, idx]
        lo, hi = np.percentile(flat.astype(np.float64), [pmin, pmax], axis=1)
        return cls(tuple(float(v) for v in lo), tuple(float(v) for v in hi))

    @classmethod
    def fixed(cls, low: float, high: float, n_channels: int = 1) -> IntensityWindow:
        if not high > low:
            raise VolsrError(f"intensity window needs high > low, got ({low}, {high})")
        return cls((float(low),) * n_channels, (float(high),) * n_channels)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map (N, C, H, W) to [0, 1] float32 (channels must match the window)."""
        x = np.asarray(x, dtype=np.float64)
        c = x.shape[1]
        if len(self.low) == 1 and c > 1:
            lo, hi = np.full(c, self.low[0]), np.full(c, self.high[0])
        elif len(self.low) == c:
            lo, hi = np.asarray(self.low), np.asarray(self.high)
        else:
            raise InputError(f"intensity window has {len(self.low)} channels, images have {c}")
        scale = np.maximum(hi - lo, 1e-12)
        y = (x - lo[None, :, None, None]) / scale[None, :, None, None]
        return np.clip(y, 0.0, 1.0).astype(np.float32)


def per_image_window(x: np.ndarray, *, pmin: float = 0.1, pmax: float = 99.9) -> np.ndarray:
    """Map every (C, H, W) image of (N, C, H, W) by its own per-channel percentiles."""
    x = np.asarray(x, dtype=np.float64)
    lo = np.percentile(x, pmin, axis=(2, 3), keepdims=True)
    hi = np.percentile(x, pmax, axis=(2, 3), keepdims=True)
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
