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


def format_ranges(indices) -> str:
    """``[12, 37, 38, 39]`` -> ``'12,37-39'`` (the ``--damaged-planes`` syntax; :func:`parse_plane_list` reads it back)."""
    idx = sorted({int(i) for i in indices})
    parts, start = [], None
    for k, i in enumerate(idx):
        if start is None:
            start = i
        if k + 1 == len(idx) or idx[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ",".join(parts)


def parse_plane_list(text, n_in: int | None = None) -> tuple[int, ...]:
    """Parse ``"12,37-39"`` (0-based input plane indices, inclusive ranges) into sorted unique ints.

    The one parser of ``--damaged-planes`` and the napari *damaged planes* field. Empty text
    (or None) gives ``()``. With ``n_in`` the indices are also checked against the stack
    (:func:`check_damaged`).

    Examples
    --------
    >>> parse_plane_list("12,37-39")
    (12, 37, 38, 39)
    >>> parse_plane_list(" 3, 1 ,3 ")
    (1, 3)
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        return check_damaged(text, n_in)
    fix = "give 0-based plane indices and ranges separated by commas, e.g. 12,37-39"
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep and not lo:  # "-3": a negative number
            raise InputError(f"damaged plane {part!r} is negative; planes are numbered from 0 — {fix}")
        if not all(v.isascii() and v.isdigit() for v in ((lo, hi) if sep else (lo,))):
            raise InputError(f"damaged plane {part!r} is not a plane number or a range; {fix}")
        a = int(lo)
        b = int(hi) if sep else a
        if b < a:
            raise InputError(f"damaged plane range {part!r} runs backwards; write it low-high, e.g. {b}-{a}")
        out.extend(range(a, b + 1))
    planes = tuple(sorted(set(out)))
    return check_damaged(planes, n_in) if n_in is not None else planes


def check_damaged(damaged, n_in: int | None) -> tuple[int, ...]:
    """Validate damaged plane indices: whole numbers in [0, n_in), >= 2 good planes left; sorted unique."""
    if damaged is None:
        return ()
    if isinstance(damaged, str):
        return parse_plane_list(damaged, n_in)
    if isinstance(damaged, (int, np.integer)):
        damaged = [damaged]
    items = list(damaged.ravel().tolist()) if isinstance(damaged, np.ndarray) else list(damaged)
    planes = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"damaged plane {v!r} is not a whole number; give 0-based plane indices, e.g. 12,37-39")
        planes.append(int(v))
    planes = sorted(set(planes))
    if planes and planes[0] < 0:
        raise InputError(f"damaged plane {planes[0]} is negative; planes are numbered from 0")
    if n_in is not None and planes:
        n_in = int(n_in)
        if planes[-1] >= n_in:
            raise InputError(f"damaged plane {planes[-1]} is outside the stack, which has planes 0 to {n_in - 1}; "
                             "planes are numbered from 0")
        good = n_in - len(planes)
        if good < 2:
            what = "every plane" if good == 0 else f"{len(planes)} of {n_in} planes"
            raise InputError(f"{what} marked damaged leaves {good} good plane{'s' if good != 1 else ''}; at least 2 "
                             "good planes are needed to restore between them — mark fewer damaged planes")
    return tuple(planes)


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
    damaged : tuple of int, optional
        Input planes (0-based) that are measured but unusable (a fold, a lost section, a
        dropped frame): they keep their output row (:attr:`positions` lists every input
        plane), but their rows are not known (:attr:`known_mask`), so engines restore them
        like any row between measured planes. At least 2 good planes must remain.

    Examples
    --------
    >>> g = OutputGrid(4, 2.5)
    >>> g.n_out, g.positions.tolist()
    (9, [0, 2, 5, 8])
    >>> g = OutputGrid(4, 2.5, damaged=(1,))
    >>> g.good_positions.tolist(), g.known_mask.nonzero()[0].tolist()
    ([0, 5, 8], [0, 5, 8])
    """

    n_in: int
    factor: float
    damaged: tuple[int, ...] = ()

    def __post_init__(self):
        if int(self.n_in) < 2:
            raise InputError(
                f"need at least 2 z planes to restore between them, got {self.n_in}; "
                "is this a 2D image, or are the axes wrong (see --axes)?"
                + (" (damaged planes can only be marked in a z-stack)" if self.damaged else "")
            )
        object.__setattr__(self, "n_in", int(self.n_in))
        object.__setattr__(self, "factor", check_factor(self.factor))
        object.__setattr__(self, "damaged", check_damaged(self.damaged, self.n_in))

    @property
    def n_out(self) -> int:
        """Number of output planes: ``round((n_in - 1) * factor) + 1``."""
        return int(round((self.n_in - 1) * self.factor)) + 1

    @property
    def positions(self) -> np.ndarray:
        """Output row of each measured plane: ``round(i * factor)`` (int64, strictly increasing)."""
        return np.round(np.arange(self.n_in) * self.factor).astype(np.int64)

    @property
    def good(self) -> np.ndarray:
        """Bool (n_in,): True for the input planes that are not damaged."""
        good = np.ones(self.n_in, dtype=bool)
        good[list(self.damaged)] = False
        return good

    @property
    def good_positions(self) -> np.ndarray:
        """Output rows of the good (not damaged) measured planes; :attr:`positions` without the damaged ones."""
        return self.positions[self.good]

    @property
    def damaged_positions(self) -> np.ndarray:
        """Output rows of the damaged planes (restored like unmeasured rows)."""
        return self.positions[list(self.damaged)]

    @property
    def known_mask(self) -> np.ndarray:
        """Boolean mask over output rows, True where a good (not damaged) measured plane sits."""
        mask = np.zeros(self.n_out, dtype=bool)
        mask[self.good_positions] = True
        return mask

    @property
    def out_spacing_factor(self) -> float:
        """Output z spacing in units of the xy spacing (exactly 1 only for integer factors)."""
        return (self.n_in - 1) * self.factor / (self.n_out - 1)

    def place(self, planes: np.ndarray, axis: int = 0, fill: float = 0.0) -> np.ndarray:
        """Lay measured planes (``n_in`` along ``axis``) on the output grid, unknown rows = ``fill``.

        Every input plane is placed, damaged ones too (their rows are not in :attr:`known_mask`,
        so an engine treats them as unknown; it must not read values from unknown rows).
        """
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

