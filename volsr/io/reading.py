"""Read a z-stack with its axes and voxel spacing: the one entry point, dispatching by extension.

Formats: TIFF, OME-TIFF and ImageJ hyperstacks (tifffile, :mod:`volsr.io.tiff`), NumPy ``.npy``
(read here: the file holds one array and nothing else), NIfTI (``.nii`` / ``.nii.gz``, nibabel,
:mod:`volsr.io.nifti`). Whatever the format, :func:`read_stack` applies the same checks (an
existing file, a numeric non-empty array in native byte order, axes that fit it) and returns a
:class:`~volsr.io.stacks.Stack`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import default_axes, parse_axes
from .nifti import _read_nifti
from .stacks import (
    NIFTI_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    Stack,
    _check_array,
    _extension,
    _short,
    check_measured_planes,
)
from .tiff import _read_tiff

__all__ = ["read_stack"]


def read_stack(path, axes: str | None = None) -> Stack:
    """Read a z-stack with its axes and voxel spacing.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (plain, ImageJ or OME), ``.npy`` or ``.nii``/``.nii.gz``.
    axes : str, optional
        Override the file's axes (one letter per dimension of the stored array, from
        T C Z Y X S). Needed when a file has no axes metadata and the guess is wrong.
        Files with several series/images (e.g. multi-position OME) give their first one.

    Returns
    -------
    Stack
        Data in the file's axis order and dtype. Where the axes come from: OME/ImageJ metadata
        (via tifffile) for TIFF; ``X Y Z (C)`` for NIfTI (its storage order); for ``.npy`` and
        TIFFs without axes, a guess by dimension (``YX``, ``ZYX``, ``CZYX``). Spacing: OME
        ``PhysicalSize*``; ImageJ ``spacing`` + resolution tags; NIfTI ``pixdim``; else None.

    Raises
    ------
    InputError
        Missing, unreadable, truncated or non-image file; unsupported extension; axes that do
        not match the array.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a stack file; give a .tif, .npy or .nii(.gz) file")
    ext = _extension(p)
    if ext is None:
        raise InputError(
            f"{p.name}: unsupported file type; volsr reads {', '.join(SUPPORTED_EXTENSIONS)} — "
            "convert the stack to TIFF (e.g. File > Save As > Tiff in Fiji)"
        )
    measured = None
    if ext in TIFF_EXTENSIONS:
        data, file_axes, spacing, unit, measured = _read_tiff(p)
    elif ext in NIFTI_EXTENSIONS:
        data, file_axes, spacing, unit = _read_nifti(p)
    else:
        data, file_axes, spacing, unit = _read_npy(p)
    data = _check_array(data, str(p))
    if not data.dtype.isnative:
        # Big-endian files (common in NIfTI, some TIFFs): torch and most tools want native order.
        data = data.astype(data.dtype.newbyteorder("="))
    if axes is not None:
        file_axes = parse_axes(axes, data.shape)
    elif file_axes is None:
        file_axes = default_axes(data.ndim) if 2 <= data.ndim <= 4 else None
        if file_axes is None:
            raise InputError(
                f"{p.name} holds a {data.ndim}-dimensional array (shape {data.shape}) without axes; "
                "pass --axes with one letter per dimension, e.g. TZCYX"
            )
    stack = Stack(data=data, axes=file_axes, spacing=spacing, unit=unit, path=p)
    if measured is not None:
        try:  # a stale or damaged record (e.g. the file was cropped elsewhere) is dropped, not fatal
            stack.measured_planes = check_measured_planes(measured, stack.shape_czyx[1])
        except (InputError, ValueError):
            logging.getLogger(__name__).warning("%s: ignoring an invalid measured-planes record", p.name)
    return stack


def _read_npy(p: Path):
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled/bad header), EOFError/OSError (truncated)
        raise InputError(f"cannot read {p.name} as a NumPy .npy array ({_short(exc)}); the file may be truncated or not a .npy file") from exc
    if not isinstance(data, np.ndarray):
        raise InputError(f"{p.name} is not a single NumPy array; save one array with np.save")
    return data, None, (None, None, None), None
