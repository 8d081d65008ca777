"""The :class:`Stack` every reader returns and every writer takes, and the file types volsr handles.

A :class:`Stack` carries the array in the file's own axis order and dtype together with the axes
string, the voxel spacing (z, y, x) and its unit, so the rest of volsr can work in canonical
(C, Z, Y, X) and hand back the caller's layout.

Formats: TIFF, OME-TIFF and ImageJ hyperstacks (tifffile, :mod:`volsr.io.tiff`), NumPy ``.npy``,
NIfTI (``.nii`` / ``.nii.gz``, nibabel, :mod:`volsr.io.nifti`); :mod:`volsr.io.reading` reads
them and :mod:`volsr.io.writing` writes them. This module sits below those: it holds what they
all share (the extension table, the array and measured-plane checks) and no format of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import canonical_shape, from_canonical, parse_axes, to_canonical
from .units import _check_spacing_arg, normalize_unit

__all__ = ["Stack", "check_measured_planes", "SUPPORTED_EXTENSIONS"]

TIFF_EXTENSIONS = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
NUMPY_EXTENSIONS = (".npy",)
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NIFTI_EXTENSIONS + NUMPY_EXTENSIONS
"""File name endings volsr reads and writes (matched case-insensitively, longest first)."""


def _check_array(data, what: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{what} has dtype {arr.dtype}, which volsr cannot restore; use integer or floating-point voxels"
        )
    if arr.size == 0:
        raise InputError(f"{what} is empty (shape {arr.shape})")
    return arr


def check_measured_planes(planes, n_planes: int | None = None) -> tuple[int, ...]:
    """Validate measured-plane z indices: ints, strictly increasing, >= 0 and < ``n_planes``.

    Accepts a sequence of integers or a comma-separated string (``"0,4,8"``, the stored
    form). Returns a tuple of ints.
    """
    if isinstance(planes, str):
        items = [t.strip() for t in planes.split(",") if t.strip()]
    else:
        items = list(np.asarray(planes).ravel().tolist())
    try:
        vals = [int(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"measured planes must be integer z indices, e.g. 0,4,8; got {planes!r}") from None
    if any(float(a) != b for a, b in zip(items, vals) if not isinstance(a, str)):
        raise InputError(f"measured planes must be integer z indices, got {planes!r}")
    if not vals:
        raise InputError("measured planes: give at least one z index")
    if vals[0] < 0 or any(b <= a for a, b in zip(vals, vals[1:])):
        raise InputError(f"measured planes must be increasing z indices >= 0, got {planes!r}")
    if n_planes is not None and vals[-1] >= int(n_planes):
        raise InputError(f"measured plane {vals[-1]} is outside a stack of {n_planes} z planes")
    return tuple(vals)


@dataclass(repr=False)
class Stack:
    """A z-stack as read from a file: array, axes, voxel spacing and unit.

    Parameters
    ----------
    data : numpy.ndarray
        The voxels in ``axes`` order and the file's dtype.
    axes : str
        One letter per dimension from T C Z Y X S (see :mod:`volsr.io`).
    spacing : tuple of 3 (float or None)
        Voxel size (z, y, x) in ``unit``; None where the file does not say.
    unit : str or None
        Length unit of ``spacing`` (e.g. 'µm'); None when unknown.
    path : pathlib.Path or None
        The file it came from, if any.
    measured_planes : tuple of int or None
        For a restored stack written by volsr: the z indices (output grid) of the measured
        planes, as recorded by ``write_stack(..., measured_planes=...)``; None when the file
        does not say (any other file).
    """

    data: np.ndarray
    axes: str
    spacing: tuple = (None, None, None)
    unit: str | None = None
    path: Path | None = None
    measured_planes: tuple | None = None

    def __post_init__(self):
        self.data = _check_array(self.data, "the stack")
        self.axes = parse_axes(self.axes, self.data.shape)
        self.spacing = _check_spacing_arg(self.spacing)
        self.unit = normalize_unit(self.unit)
        if self.path is not None:
            self.path = Path(self.path)
        if self.measured_planes is not None:
            self.measured_planes = check_measured_planes(self.measured_planes, self.shape_czyx[1])

    def canonical(self) -> np.ndarray:
        """The data as (C, Z, Y, X) (a view when possible); raises InputError for T > 1."""
        return to_canonical(self.data, self.axes)

    def from_canonical(self, czyx: np.ndarray) -> np.ndarray:
        """Put a (C, Z, Y, X) array (e.g. a restored volume) back into this stack's axes order."""
        return from_canonical(czyx, self.axes, shape=self.data.shape)

    @property
    def shape_czyx(self) -> tuple[int, int, int, int]:
        """(C, Z, Y, X) sizes without touching the data."""
        return canonical_shape(self.data.shape, self.axes)

    @property
    def z_factor(self) -> float | None:
        """z spacing / x spacing (y when x is unknown): the anisotropy to undo; None if unknown.

        When y and x spacing differ, x is used: planes are restored to the x pixel size.
        """
        z, y, x = self.spacing
        lateral = x if x is not None else y
        if z is None or lateral is None:
            return None
        return z / lateral

    def __repr__(self) -> str:
        sp = tuple(self.spacing)
        return (
            f"Stack(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, axes={self.axes!r}, "
            f"spacing={sp}, unit={self.unit!r}, path={str(self.path) if self.path else None!r})"
        )


def _extension(path: Path) -> str | None:
    name = path.name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".strip().rstrip(":")
