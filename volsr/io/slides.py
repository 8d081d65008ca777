"""Levels of pyramidal (whole-slide) TIFFs, opened lazily through tifffile's zarr store.

A whole-slide level can be far larger than memory (level 0 of a slide: 40000 x 30000 RGB), so a
level is *opened*, not read: :class:`TiffLevel` hands out (C, 1, Y, X) blocks and strided
subsamples and decodes only the TIFF tiles (or strips) they touch. The pixel size of a level is
the base level's (OME metadata, Aperio ``MPP``, or the resolution tags) times its downsampling.
The in-memory reader :func:`read_level` goes through the same object, so both agree on axes and
pixel size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError, VolsrError
from .axes import canonical_shape, parse_axes, to_canonical

__all__ = ["TiffLevel", "open_level", "read_level"]

_UM_PER_UNIT = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}  # TIFF ResolutionUnit -> µm


def _tag_spacing(page) -> tuple[float | None, float | None]:
    """(y, x) pixel size in µm from the resolution tags, when they carry a length unit.

    Inch resolutions coarser than 1000 dpi (25.4 µm) are the screen/print defaults many writers
    put in (72, 96, 300 dpi), not a measured pixel size, and are ignored.
    """
    code = int(page.tags.valueof(296, default=2))
    if code not in _UM_PER_UNIT or 282 not in page.tags or 283 not in page.tags:
        return None, None
    limit = 25.4 if code == 2 else math.inf
    return tuple(_UM_PER_UNIT[code] / r if r and _UM_PER_UNIT[code] / r < limit else None
                 for r in reversed(page.get_resolution()))


def _base_spacing(tif, base) -> tuple[tuple, str | None]:
    """(z, y, x) and unit of the full-resolution level."""
    from .tiff import _imagej_spacing, _ome_metadata

    if tif.is_ome and tif.ome_metadata:
        spacing, unit, _, _ = _ome_metadata(tif.ome_metadata)
        return spacing, unit
    if tif.is_imagej:
        return _imagej_spacing(tif.imagej_metadata or {}, base.keyframe)
    page = base.keyframe
    if page.is_svs:
        from tifffile.tifffile import svs_description_metadata

        mpp = svs_description_metadata(page.description).get("MPP")
        return ((None, float(mpp), float(mpp)), "µm") if mpp else ((None, None, None), None)
    y, x = _tag_spacing(page)
    return ((None, y, x), "µm") if (y or x) else ((None, None, None), None)


def _level_spacing(tif, series, index: int, axes: str) -> tuple[tuple, str | None]:
    """The base spacing times this level's downsampling (levels' own tags are often copies of the base's)."""
    lv, base = series.levels[index], series.levels[0]
    (z, y, x), unit = _base_spacing(tif, base)
    fy = base.shape[axes.index("Y")] / lv.shape[axes.index("Y")]
    fx = base.shape[axes.index("X")] / lv.shape[axes.index("X")]
    return (z, y * fy if y else None, x * fx if x else None), unit


class TiffLevel:
    """One resolution level of a TIFF, readable block by block.

    Parameters
    ----------
    path : str or Path
    level : int
        0 = full resolution; a plain (non-pyramidal) TIFF has only level 0.
    axes : str, optional
        Override the file's axes (one letter per dimension from T C Z Y X S).

    Attributes
    ----------
    axes, shape, dtype, spacing (z, y, x), unit, shape_czyx
    """

    def __init__(self, path, level: int = 0, axes: str | None = None):
        import tifffile

        self.path = Path(path)
        self._tif = None
        try:
            self._tif = tifffile.TiffFile(str(self.path))
            self._open(int(level), axes)
        except BaseException as err:
            self.close()
            if isinstance(err, VolsrError):
                raise
            if isinstance(err, Exception):
                raise InputError(f"cannot read level {level} of {self.path.name}: {err}") from None
            raise

    def _open(self, level: int, axes: str | None) -> None:
        import zarr

        from .tiff import _check_complete

        series = self._tif.series[0]
        n = len(series.levels)
        if not 0 <= level < n:
            raise InputError(f"{self.path.name} has {n} resolution level(s) (0..{n - 1}); --level {level} does "
                             "not exist")
        lv = series.levels[level]
        _check_complete(self.path, lv)
        self.level = level
        self._lv = lv
        self.shape, self.dtype = tuple(lv.shape), np.dtype(lv.dtype)
        self.axes = parse_axes(axes, self.shape) if axes else lv.axes.replace("I", "Z").replace("Q", "Z")
        self.shape_czyx = canonical_shape(self.shape, self.axes)
        self.spacing, self.unit = _level_spacing(self._tif, series, level, self.axes)
        self._array = zarr.open_array(series.aszarr(level=level), mode="r")

    def _select(self, ys: slice, xs: slice) -> tuple:
        return tuple(ys if a == "Y" else xs if a == "X" else slice(None) for a in self.axes)

    def read(self, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
        """Input pixels ``[y0, y1) x [x0, x1)`` as (C, Z, h, w), decoding only the tiles they touch."""
        return self._get(self._select(slice(*ys), slice(*xs)))

    def subsample(self, max_pixels: int) -> np.ndarray:
        """A strided (C, Z, h, w) subsample of at most about ``max_pixels`` pixels per channel and plane."""
        _, _, ny, nx = self.shape_czyx
        k = max(1, math.ceil(math.sqrt(ny * nx / max(1, int(max_pixels)))))
        return self._get(self._select(slice(None, None, k), slice(None, None, k)))

    def asarray(self) -> np.ndarray:
        """The whole level in the file's axes order (in memory)."""
        return self._get(None, canonical=False)

    def _get(self, sel, canonical: bool = True) -> np.ndarray:
        try:
            arr = self._lv.asarray() if sel is None else np.asarray(self._array[sel])
        except Exception as err:
            raise InputError(f"cannot read level {self.level} of {self.path.name} ({str(err)[:160]}); the file "
                             "may be truncated or corrupt") from None
        return to_canonical(arr, self.axes) if canonical else arr

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def __enter__(self) -> TiffLevel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_level(path, level: int = 0, axes: str | None = None) -> TiffLevel:
    """Open one level of a (pyramidal) TIFF lazily; a one-line :class:`InputError` if it cannot be read."""
    return TiffLevel(path, level, axes)


def read_level(path, level: int, axes: str | None = None):
    """One level of a pyramidal TIFF in memory, as a :class:`volsr.io.Stack` with its pixel size."""
    from .stacks import Stack

    with open_level(path, level, axes) as lv:
        return Stack(data=lv.asarray(), axes=lv.axes, spacing=lv.spacing, unit=lv.unit, path=lv.path)
