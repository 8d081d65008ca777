"""Percentile normalisation with an exact inverse.

Engines work on intensities where the low percentile maps to 0 and the high percentile to 1
(what the paper's models saw: data in [0, 1]). Values outside are *not* clipped on the way
in, so the inverse is exact up to float rounding and no information is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass
class PercentileNormalizer:
    """Map ``[percentile(pmin), percentile(pmax)]`` to ``[0, 1]`` per channel.

    Parameters
    ----------
    pmin, pmax : float
        Percentiles in [0, 100] with ``pmin < pmax``. Defaults 0.1 / 99.9 hold across
        fluorescence (sparse bright), EM and MRI (dense) without being set by a few hot pixels.
    eps : float
        Guards constant channels: their scale becomes ``eps`` instead of zero.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    >>> n = PercentileNormalizer(0, 100).fit(x)
    >>> float(n.forward(x).min()), float(n.forward(x).max())
    (0.0, 1.0)
    >>> bool(np.allclose(n.inverse(n.forward(x)), x))
    True
    """

    pmin: float = 0.1
    pmax: float = 99.9
    eps: float = 1e-8
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def __post_init__(self):
        if not (0 <= self.pmin < self.pmax <= 100):
            raise InputError(
                f"percentiles must satisfy 0 <= pmin < pmax <= 100, got pmin={self.pmin}, pmax={self.pmax}"
            )

    def fit(self, volume_czyx: np.ndarray, sample_limit: int = 4_000_000) -> PercentileNormalizer:
        """Compute per-channel percentiles of a (C, ...) array (subsampled when very large)."""
        c = volume_czyx.shape[0]
        flat = np.asarray(volume_czyx).reshape(c, -1)
        if flat.shape[1] > sample_limit:
            step = int(np.ceil(flat.shape[1] / sample_limit))
            flat = flat[:, ::step]
        lo, hi = np.percentile(flat.astype(np.float64), [self.pmin, self.pmax], axis=1)
        self.low = lo.astype(np.float64)
        self.high = hi.astype(np.float64)
        return self

    def _shape(self, a: np.ndarray, ndim: int) -> np.ndarray:
        return a.reshape((-1,) + (1,) * (ndim - 1))

    @property
    def scale(self) -> np.ndarray:
        if self.low is None:
            raise RuntimeError("PercentileNormalizer used before fit()")
        return np.maximum(self.high - self.low, self.eps)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise a (C, ...) array to float32."""
        lo = self._shape(self.low, x.ndim)
        sc = self._shape(self.scale, x.ndim)
        return ((x.astype(np.float64, copy=False) - lo) / sc).astype(np.float32)

    def inverse(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Undo :meth:`forward` (float64 arithmetic, float32 result unless ``out`` is given)."""
        lo = self._shape(self.low, y.ndim)
        sc = self._shape(self.scale, y.ndim)
        res = y.astype(np.float64, copy=False) * sc + lo
        if out is not None:
            out[...] = res
            return out
        return res.astype(np.float32)

    def to_dict(self) -> dict:
        return {"pmin": self.pmin, "pmax": self.pmax}


def check_finite(volume: np.ndarray) -> None:
    """Refuse NaN/Inf voxels: they would spread through normalisation and every engine."""
    if np.issubdtype(volume.dtype, np.floating):
        bad = ~np.isfinite(volume)
        if bad.any():
            raise InputError(
                f"the stack has {int(bad.sum())} NaN/Inf voxels; replace them first (e.g. np.nan_to_num) and retry"
            )


def to_dtype(volume: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast to the input dtype: round and clip integers to their range, keep floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(volume), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return volume >= 0.5
    return volume.astype(dtype, copy=False)
