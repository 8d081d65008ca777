"""NIfTI (``.nii`` / ``.nii.gz``, nibabel): read and write, with the voxel spacing in ``pixdim``.

NIfTI stores X fastest, so a stack reads back with the axes ``X Y Z (C)`` of that storage order
and is written from canonical (C, Z, Y, X); the default pixdim of 1 without a unit is read as
"spacing unknown", not as 1 µm voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, VolsrError
from .axes import to_canonical
from .stacks import _short
from .units import _clean_spacing

_NIFTI_UNITS = {"micron": "µm", "mm": "mm", "meter": "m"}


def _read_nifti(p: Path):
    try:
        import nibabel as nib

        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms())
        space_unit = img.header.get_xyzt_units()[0]
    except VolsrError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read {p.name} as NIfTI ({_short(exc)}); the file may be truncated or corrupt") from exc
    data = np.asarray(data)
    # NIfTI stores X fastest: nibabel's array is (X, Y, Z, T, ...). A 4th dimension is read as
    # channels (volsr restores one stack at a time; a time series must be split first anyway).
    axes_by_ndim = {2: "XY", 3: "XYZ", 4: "XYZC", 5: "XYZTC"}
    if data.ndim not in axes_by_ndim:
        raise InputError(f"{p.name} has {data.ndim} dimensions (shape {data.shape}); volsr reads 2-5 dimensional NIfTI")
    axes = axes_by_ndim[data.ndim]
    zooms = zooms + (1.0,) * (3 - len(zooms))
    unit = _NIFTI_UNITS.get(space_unit)
    x, y, z = (_clean_spacing(v) for v in zooms[:3])
    if data.ndim == 2:
        z = None
    if unit is None and all(v in (None, 1.0) for v in (x, y, z)):
        # pixdim defaults to 1 with no unit: that says nothing about the real voxel size.
        x = y = z = None
    return data, axes, (z, y, x), unit


def _write_nifti(tmp: Path, arr: np.ndarray, ax: str, sp, unit) -> None:
    import nibabel as nib

    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    czyx = to_canonical(arr, ax)
    xyz = np.transpose(czyx, (3, 2, 1, 0))  # (X, Y, Z, C)
    if xyz.shape[3] == 1:
        xyz = xyz[..., 0]
    z, y, x = sp
    zooms = [v if v is not None else 1.0 for v in (x, y, z)]
    affine = np.diag(zooms + [1.0])
    try:
        img = nib.Nifti1Image(np.ascontiguousarray(xyz), affine)
    except Exception as exc:
        raise OutputError(f"NIfTI cannot store this array ({_short(exc)}); write .tif or .npy instead") from exc
    if xyz.ndim == 4:
        img.header.set_zooms(tuple(zooms) + (1.0,))
    else:
        img.header.set_zooms(tuple(zooms))
    space = {"µm": "micron", "mm": "mm", "m": "meter"}.get(unit or "", "unknown")
    if all(v is None for v in sp):
        space = "unknown"  # pixdim 1 without a unit: read back as "spacing unknown"
    img.header.set_xyzt_units(xyz=space)
    nib.save(img, str(tmp))
