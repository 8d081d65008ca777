"""Where measured planes sit on the output grid, and the row masks derived from it.

Convention (DESIGN.md section 3): ``Z`` input planes with factor ``f`` (z spacing / xy
spacing, ``f >= 1``, non-integer allowed) give ``round((Z - 1) * f) + 1`` output planes,
and measured plane ``i`` sits at output row ``round(i * f)``. Every 2D plane handed to an
engine has this sparse axis as its rows.

The *training* row masks (random subsets as in the paper, regular strides with random phase
and factor as at inference) live in :mod:`volsr.training.masks`. This module sits at the bottom
of the package (it imports only :mod:`volsr.errors`) because the pipeline, the engines, the
evaluation and the napari plugin all place planes by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError


def check_factor(z_factor) -> float:
    """Validate a z factor and return it as float; raise a clear error otherwise."""
    try:
        f = float(z_factor)
    except (TypeError, ValueError):
        raise InputError(f"z factor must be a number >= 1, got {z_factor!r}") from None
    if not math.isfinite(f):
        raise InputError(f"z factor must be a finite number >= 1, got {z_factor!r}")
    if f < 1:
        raise InputError(
            f"z factor {f:g} < 1: volsr only adds planes (z spacing must be >= xy spacing); "
            "pass --z-factor >= 1"
        )
    return f


@dataclass(frozen=True)
class OutputGrid:
    """The output z grid of a restoration.

    Parameters
    ----------
    n_in : int
        Number of measured planes (>= 2).
    factor : float
        z spacing / xy spacing of the input (>= 1).

    Examples
    --------
    >>> g = OutputGrid(4, 2.5)
    >>> g.n_out, g.positions.tolist()
    (9, [0, 2, 5, 8])
    """

    n_in: int
    factor: float

    def __post_init__(self):
        if int(self.n_in) < 2:
            raise InputError(
                f"need at least 2 z planes to restore between them, got {self.n_in}; "
                "is this a 2D image, or are the axes wrong (see --axes)?"
            )
        object.__setattr__(self, "n_in", int(self.n_in))
        object.__setattr__(self, "factor", check_factor(self.factor))

    @property
    def n_out(self) -> int:
        """Number of output planes: ``round((n_in - 1) * factor) + 1``."""
        return int(round((self.n_in - 1) * self.factor)) + 1

    @property
    def positions(self) -> np.ndarray:
        """Output row of each measured plane: ``round(i * factor)`` (int64, strictly increasing)."""
        return np.round(np.arange(self.n_in) * self.factor).astype(np.int64)

    @property
    def known_mask(self) -> np.ndarray:
        """Boolean mask over output rows, True where a measured plane sits."""
        mask = np.zeros(self.n_out, dtype=bool)
        mask[self.positions] = True
        return mask

    @property
    def out_spacing_factor(self) -> float:
        """Output z spacing in units of the xy spacing (exactly 1 only for integer factors)."""
        return (self.n_in - 1) * self.factor / (self.n_out - 1)

    def place(self, planes: np.ndarray, axis: int = 0, fill: float = 0.0) -> np.ndarray:
        """Lay measured planes (``n_in`` along ``axis``) on the output grid, unknown rows = ``fill``."""
        planes = np.asarray(planes)
        if planes.shape[axis] != self.n_in:
            raise InputError(f"expected {self.n_in} planes along axis {axis}, got {planes.shape[axis]}")
        shape = list(planes.shape)
        shape[axis] = self.n_out
        out = np.full(shape, fill, dtype=planes.dtype)
        index = [slice(None)] * planes.ndim
        index[axis] = self.positions
        out[tuple(index)] = planes
        return out


@dataclass(frozen=True)
class VolumeGrid:
    """The output grid of a (C, Z, Y, X) volume: any axis may change.

    z follows :class:`OutputGrid` (point samples: measured planes stay on the grid); y and x
    are upscaled in-plane by an integer ``yx_scale`` (pixel areas: ``n`` pixels become
    ``n * scale``, as image super-resolution does). Used by the API, the napari layer scale
    and ``volsr info``, so every caller agrees on shapes and spacing.

    Examples
    --------
    >>> g = VolumeGrid((4, 10, 12), z=OutputGrid(4, 2.5))
    >>> g.shape_out, g.spacing_out((1.0, 0.4, 0.4))
    ((9, 10, 12), (0.375, 0.4, 0.4))
    >>> VolumeGrid((3, 10, 12), yx_scale=2).shape_out
    (3, 20, 24)
    """

    shape_in: tuple[int, int, int]
    z: OutputGrid | None = None
    yx_scale: int = 1

    def __post_init__(self):
        object.__setattr__(self, "shape_in", tuple(int(v) for v in self.shape_in))
        if len(self.shape_in) != 3:
            raise InputError(f"a volume grid needs (Z, Y, X), got {self.shape_in}")
        if self.z is not None and self.z.n_in != self.shape_in[0]:
            raise InputError(f"the z grid expects {self.z.n_in} planes but the volume has {self.shape_in[0]}")
        if isinstance(self.yx_scale, bool) or int(self.yx_scale) != self.yx_scale or int(self.yx_scale) < 1:
            raise InputError(f"the in-plane scale must be a whole number >= 1, got {self.yx_scale!r}")
        object.__setattr__(self, "yx_scale", int(self.yx_scale))

    @property
    def shape_out(self) -> tuple[int, int, int]:
        z, y, x = self.shape_in
        return (self.z.n_out if self.z else z, y * self.yx_scale, x * self.yx_scale)

    def spacing_factors(self) -> tuple[float, float, float]:
        """Output spacing / input spacing per axis."""
        fz = 1.0
        if self.z is not None:
            fz = (self.z.n_in - 1) / (self.z.n_out - 1) if self.z.n_out > 1 else 1.0
        return (fz, 1.0 / self.yx_scale, 1.0 / self.yx_scale)

    def spacing_out(self, spacing_in) -> tuple:
        """New (z, y, x) spacing; ``None`` entries stay ``None``."""
        return tuple(None if s is None else float(s) * f for s, f in zip(spacing_in, self.spacing_factors()))


def measured_positions(n_out: int, factor) -> np.ndarray:
    """Output rows ``round(i * factor)`` of the measured planes of a restored stack of ``n_out`` planes.

    The inverse view of :class:`OutputGrid`: given only the restored stack and its factor,
    where did the measured planes go? All ``i`` with ``round(i * factor) < n_out``.

    Examples
    --------
    >>> measured_positions(9, 2.5).tolist()
    [0, 2, 5, 8]
    """
    f = check_factor(factor)
    n_out = int(n_out)
    if n_out < 1:
        raise InputError(f"a stack needs at least 1 plane, got {n_out}")
    n_in = int(math.floor((n_out - 1) / f)) + 2  # one beyond the last candidate
    pos = np.round(np.arange(n_in) * f).astype(np.int64)
    return np.unique(pos[pos < n_out])

