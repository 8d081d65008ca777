"""Write stacks and images atomically: every file volsr writes goes through here.

Why the care about writing: a restored stack can take minutes to hours to compute, and a
half-written file that looks valid is worse than none. Every write goes to a hidden temporary
file in the target folder and is renamed into place only when complete; an existing file is
never replaced unless ``overwrite=True``. The formats' own details live in :mod:`volsr.io.tiff`
and :mod:`volsr.io.nifti`; ``.npy`` is written here with :func:`numpy.save`.

Examples
--------
>>> import numpy as np, volsr
>>> volsr.write_stack("a.tif", np.zeros((4, 8, 8), np.uint16), "ZYX", spacing=(2.0, 0.5, 0.5))  # doctest: +SKIP
>>> volsr.read_stack("a.tif").spacing  # doctest: +SKIP
(2.0, 0.5, 0.5)
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .axes import canonical_shape, parse_axes
from .nifti import _write_nifti
from .stacks import (
    NIFTI_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    _extension,
    _short,
    check_measured_planes,
)
from .tiff import _ome_tiff_arguments, _write_ome_tiff
from .units import _check_spacing_arg, normalize_unit

__all__ = ["write_stack", "write_tiled_tiff", "copy_tiff"]


def write_stack(
    path,
    data: np.ndarray,
    axes: str,
    spacing: Sequence[float | None] | None = None,
    unit: str | None = "µm",
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    measured_planes: Sequence[int] | None = None,
) -> Path:
    """Write a stack atomically, with its axes and voxel spacing.

    Parameters
    ----------
    path : str or Path
        Output file: ``.tif``/``.tiff``/``.ome.tif`` (written as OME-TIFF), ``.npy`` or
        ``.nii``/``.nii.gz``.
    data : numpy.ndarray
        The voxels, in ``axes`` order. The dtype is kept.
    axes : str
        One letter per dimension of ``data`` from T C Z Y X S.
    spacing : (z, y, x), optional
        Voxel size in ``unit``; None entries are left out of the metadata. ``.npy`` stores no
        spacing.
    unit : str, optional
        Length unit of ``spacing`` (default 'µm'; 'um'/'micron' accepted).
    overwrite : bool
        Replace an existing file. Without it an existing file is an error.
    metadata : dict, optional
        Extra OME Image/Pixels metadata passed to tifffile (e.g. ``{"Name": "restored"}``);
        TIFF only.
    measured_planes : sequence of int, optional
        For a restored stack: the z indices of ``data`` that are measured planes (the rest
        were generated), e.g. ``OutputGrid.positions``. Stored in an OME MapAnnotation
        (key ``volsr_measured_planes``) and returned as :attr:`Stack.measured_planes` by
        :func:`read_stack`; honest no-reference scores use them as their XY reference.
        TIFF only: ``.npy`` and NIfTI cannot hold it (a warning says so).

    Returns
    -------
    Path
        The written file.

    Notes
    -----
    OME-TIFF keeps the given axes order when Y and X (and S) are the last axes, which OME
    requires; other orders (e.g. NIfTI's ``XYZ``) are stored with the other axes first in their
    given order, then ``YX(S)``, and read back in that stored order. Axes ending in ``S`` with
    3 or 4 samples are written as RGB(A). The full axes string, size-1 axes included, is
    recorded in an OME MapAnnotation so :func:`read_stack` returns it unchanged. NIfTI stores
    ``X Y Z (C)`` and reads back with those axes.

    Raises
    ------
    OutputError
        Existing file without ``overwrite``, missing folder, unsupported extension or dtype,
        or an OS error while writing (nothing is left behind).
    InputError
        ``axes`` or ``spacing`` that do not fit ``data``.
    """
    p, ext = _check_target(path, overwrite)
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise OutputError(f"cannot write dtype {arr.dtype}; convert to an integer or float type first")
    ax = parse_axes(axes, arr.shape)
    sp = _check_spacing_arg(spacing)
    u = normalize_unit(unit)
    measured = None
    if measured_planes is not None:
        measured = check_measured_planes(measured_planes, canonical_shape(arr.shape, ax)[1])
        if ext not in TIFF_EXTENSIONS:
            warnings.warn(f"{p.name}: {ext} files cannot record the measured planes; write .tif to keep them",
                          stacklevel=2)

    if ext in TIFF_EXTENSIONS:
        def writer(tmp: Path) -> None:
            _write_ome_tiff(tmp, arr, ax, sp, u, metadata, measured)
    elif ext in NIFTI_EXTENSIONS:
        def writer(tmp: Path) -> None:
            _write_nifti(tmp, arr, ax, sp, u)
    else:
        def writer(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

    return _atomic_write(p, ext, writer)


def _check_target(path, overwrite: bool) -> tuple[Path, str]:
    """The output path and its extension, or an OutputError before any work is done."""
    p = Path(path)
    ext = _extension(p)
    if ext is None:
        raise OutputError(f"{p.name}: unsupported output type; write one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if not p.parent.exists():
        raise OutputError(f"output folder {p.parent} does not exist; create it or choose another output path")
    if p.is_dir():
        raise OutputError(f"{p} is a folder; give a file name such as {p / 'stack_volsr.tif'}")
    if p.exists() and not overwrite:
        raise OutputError(f"{p} exists; pass --overwrite to replace it (or choose another output path)")
    return p, ext


def _atomic_write(p: Path, ext: str, writer) -> Path:
    """Run ``writer(tmp)`` on a hidden temporary file next to ``p``, then rename it into place.

    The temporary name starts with '.' (hidden in file browsers) and ends with
    ``.partial<ext>`` so format writers that look at the suffix still pick the right format.
    Any failure (including Ctrl-C) removes the temporary file; the target is untouched.
    """
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.partial{ext}")
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename, so a crash cannot leave a hollow file
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"could not write {p} ({_short(exc)}); nothing was written") from exc
        raise
    return p


def write_tiled_tiff(path, tiles, shape: Sequence[int], dtype, axes: str, *, tile: tuple[int, int],
                     spacing=None, unit: str | None = "µm", overwrite: bool = False) -> Path:
    """Write a 2D image that never exists in memory whole: a tiled OME BigTIFF fed tile by tile.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff``/``.ome.tif`` file; written atomically like :func:`write_stack`.
    tiles : iterator of numpy.ndarray
        The image's tiles in raster order (rows of tiles top to bottom, each left to right), each
        ``tile`` sized with the samples last (edge tiles may be smaller); consumed while writing,
        so they can be computed on the fly. An exception raised by the iterator aborts the write
        and leaves nothing behind.
    shape, dtype, axes
        The whole image: ``axes`` is ``'YX'`` or ``'YXS'`` (samples contiguous, RGB when 3 or 4).
    tile : (int, int)
        Tile height and width, multiples of 16.
    spacing, unit, overwrite
        As in :func:`write_stack`.

    Returns
    -------
    Path
    """
    import tifffile

    p, ext = _check_target(path, overwrite)
    if ext not in TIFF_EXTENSIONS:
        raise OutputError(f"{p.name}: a tiled image is written as TIFF; give a .tif output path")
    ax = parse_axes(axes, shape)
    if ax not in ("YX", "YXS") or (ax == "YXS" and shape[-1] < 2):
        raise OutputError(f"tile-by-tile writing stores YX images or YXS with several samples, not {ax} {shape}")
    _, meta, kwargs = _ome_tiff_arguments(ax, dtype, dict(zip(ax, shape)), _check_spacing_arg(spacing),
                                          normalize_unit(unit), None)

    def writer(tmp: Path) -> None:
        tifffile.imwrite(tmp, tiles, shape=tuple(shape), dtype=np.dtype(dtype), tile=tuple(tile), bigtiff=True,
                         ome=True, metadata=meta, **kwargs)

    return _atomic_write(p, ext, writer)


def copy_tiff(src, path, overwrite: bool = False) -> Path:
    """Copy a TIFF volsr wrote (a streamed result) to another ``.tif`` path, atomically, with the checks
    of :func:`write_stack`."""
    import shutil

    p, ext = _check_target(path, overwrite)
    if ext not in TIFF_EXTENSIONS:
        raise OutputError(f"{p.name}: this result is a TIFF file on disk; save it as .tif")
    return _atomic_write(p, ext, lambda tmp: shutil.copyfile(src, tmp))
