"""Read and write z-stacks with their axes and voxel spacing.

Formats: TIFF, OME-TIFF and ImageJ hyperstacks (tifffile), NumPy ``.npy``, NIfTI
(``.nii`` / ``.nii.gz``, nibabel). A :class:`Stack` carries the array in the file's own axis
order and dtype together with the axes string, the voxel spacing (z, y, x) and its unit, so the
rest of volsr can work in canonical (C, Z, Y, X) and hand back the caller's layout.

Why the care about writing: a restored stack can take minutes to hours to compute, and a
half-written file that looks valid is worse than none. Every write goes to a hidden temporary
file in the target folder and is renamed into place only when complete; an existing file is
never replaced unless ``overwrite=True``.

Examples
--------
>>> import numpy as np, volsr
>>> volsr.write_stack("a.tif", np.zeros((4, 8, 8), np.uint16), "ZYX", spacing=(2.0, 0.5, 0.5))  # doctest: +SKIP
>>> volsr.read_stack("a.tif").spacing  # doctest: +SKIP
(2.0, 0.5, 0.5)
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError, VolsrError
from .axes import canonical_shape, default_axes, from_canonical, parse_axes, to_canonical

__all__ = [
    "Stack", "read_stack", "write_stack", "read_image_2d", "check_measured_planes", "SUPPORTED_EXTENSIONS", "IMAGE_SUFFIXES",
    "normalize_unit", "from_canonical", "to_canonical",
]

TIFF_EXTENSIONS = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
NUMPY_EXTENSIONS = (".npy",)
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NIFTI_EXTENSIONS + NUMPY_EXTENSIONS
"""File name endings volsr reads and writes (matched case-insensitively, longest first)."""

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
"""File name endings of 2D images (:func:`read_image_2d`; folders of training/reference images)."""
PLAIN_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""2D image formats whose 2nd/4th channel is alpha (LA / RGBA), which :func:`read_image_2d` drops."""

AXES_ANNOTATION_KEY = "volsr_axes"
"""OME MapAnnotation key under which :func:`write_stack` records the full axes string.

OME readers squeeze size-1 axes; the annotation lets volsr give back exactly the axes a file
was written with (e.g. ``TZCYX`` with T=1), while other software still sees plain OME."""

MEASURED_PLANES_KEY = "volsr_measured_planes"
"""OME MapAnnotation key under which :func:`write_stack` records, for a restored stack, the
output z indices of the measured planes (comma-separated, e.g. ``0,4,8``). No-reference
scores (``volsr score``'s isotropy gap) take their XY reference from these planes only."""

# Length units, in metres, for OME PhysicalSize*Unit conversion.
_UNIT_METRES = {
    "pm": 1e-12,
    "Å": 1e-10,
    "nm": 1e-9,
    "µm": 1e-6,
    "mm": 1e-3,
    "cm": 1e-2,
    "dm": 1e-1,
    "m": 1.0,
}
_UNIT_ALIASES = {
    "um": "µm",
    "μm": "µm",  # Greek mu
    "\\u00b5m": "µm",  # ImageJ writes the escape literally
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "nanometer": "nm",
    "nanometre": "nm",
    "millimeter": "mm",
    "millimetre": "mm",
    "meter": "m",
    "metre": "m",
    "angstrom": "Å",
    "a": "Å",
    "pixels": "pixel",
    "px": "pixel",
}


def normalize_unit(unit: str | None) -> str | None:
    """Canonical spelling of a length unit ('um', 'micron', '\\u00B5m' -> 'µm'); None stays None."""
    if unit is None:
        return None
    u = str(unit).strip()
    if not u:
        return None
    key = u.lower()
    if key in _UNIT_ALIASES:
        return _UNIT_ALIASES[key]
    for canon in _UNIT_METRES:
        if key == canon.lower():
            return canon
    return u


def _clean_spacing(value) -> float | None:
    """A spacing entry as a positive finite float, or None when unknown or meaningless."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _check_spacing_arg(spacing, name: str = "spacing") -> tuple[float | None, float | None, float | None]:
    """Validate a user-given (z, y, x) spacing: three positive numbers or None entries."""
    if spacing is None:
        return (None, None, None)
    try:
        items = list(spacing)
    except TypeError:
        raise InputError(f"{name} must be a (z, y, x) tuple of voxel sizes, got {spacing!r}") from None
    if len(items) != 3:
        raise InputError(f"{name} must have 3 entries (z, y, x), got {len(items)}: {spacing!r}")
    out = []
    for axis, v in zip("zyx", items):
        if v is None:
            out.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InputError(f"{name} {axis} must be a number, got {v!r}") from None
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"{name} {axis} must be a positive finite voxel size, got {v!r}")
        out.append(f)
    return tuple(out)  # type: ignore[return-value]


def _check_array(data, what: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{what} has dtype {arr.dtype}, which volsr cannot restore; use integer or floating-point voxels"
        )
    if arr.size == 0:
        raise InputError(f"{what} is empty (shape {arr.shape})")
    return arr


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


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _extension(path: Path) -> str | None:
    name = path.name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


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


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".strip().rstrip(":")


# -- NIfTI ------------------------------------------------------------------------------------
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


# -- TIFF -------------------------------------------------------------------------------------
class _LogCollector(logging.Handler):
    """Collect tifffile's warnings: it logs (not raises) when an IFD chain or tag is broken."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


_CORRUPT = re.compile(r"invalid (page|value|tag|ifd|offset)|corrupt|truncat|EOF", re.IGNORECASE)


def _read_tiff(p: Path):
    import tifffile

    logger = logging.getLogger("tifffile")
    collector = _LogCollector()
    logger.addHandler(collector)
    try:
        with tifffile.TiffFile(p) as tf:
            if not tf.series:
                raise InputError(f"{p.name} contains no image; check the file")
            series = tf.series[0]
            _check_complete(p, series)
            data = series.asarray()
            file_axes = series.axes
            spacing, unit, written_axes, measured = (None, None, None), None, None, None
            if tf.is_ome and tf.ome_metadata:
                spacing, unit, written_axes, measured = _ome_metadata(tf.ome_metadata)
            elif tf.is_imagej:
                spacing, unit = _imagej_spacing(tf.imagej_metadata or {}, series.pages[0])
    except VolsrError:
        raise
    except Exception as exc:
        raise InputError(
            f"cannot read {p.name} as TIFF ({_short(exc)}); the file may be truncated, corrupt or not a TIFF"
        ) from exc
    finally:
        logger.removeHandler(collector)
    broken = [m for m in collector.messages if _CORRUPT.search(m)]
    if broken:
        raise InputError(
            f"{p.name} looks truncated or corrupt (tifffile: {broken[0].splitlines()[0][:160]}); "
            "copy or export the file again"
        )
    data, file_axes = _restore_written_axes(data, file_axes, written_axes)
    data, file_axes = _resolve_tiff_axes(p, data, file_axes)
    return data, file_axes, spacing, unit, measured


def _check_complete(p: Path, series) -> None:
    """Refuse files whose image data run past the end (truncated copies, interrupted writes).

    tifffile reads what it can and does not always raise, so compare every known data offset
    with the file size.
    """
    size = p.stat().st_size
    end = 0
    offset = getattr(series, "dataoffset", None)
    if offset is not None:
        end = int(offset) + int(series.nbytes)
    for page in series.pages:
        if page is None:
            continue
        offsets = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        for o, c in zip(offsets, counts):
            if c:
                end = max(end, int(o) + int(c))
    if end > size:
        raise InputError(
            f"{p.name} is truncated: its image data need {end} bytes but the file has {size}; "
            "copy or export the file again"
        )


def _restore_written_axes(data: np.ndarray, file_axes: str, written: str | None):
    """Reinsert the size-1 axes tifffile squeezed, when volsr recorded the full axes string."""
    if not written:
        return data, file_axes
    try:
        written = written.upper()
        kept = [a for a in written if a in file_axes]
        if "".join(kept) != file_axes or len(set(written)) != len(written):
            return data, file_axes
        shape = []
        for a in written:
            shape.append(data.shape[file_axes.index(a)] if a in file_axes else 1)
        return data.reshape(shape), written
    except Exception:
        return data, file_axes


_GENERIC = "QI"  # tifffile's letters for "unknown" / "image sequence" axes


def _resolve_tiff_axes(p: Path, data: np.ndarray, file_axes: str):
    """Map tifffile axes onto volsr's letters.

    Size-1 axes with letters volsr does not use are dropped. Generic axes (``Q`` other, ``I``
    page sequence: plain multi-page TIFFs and arrays saved without metadata) are read as Z,
    then C — the same guess as :func:`volsr.io.default_axes`. Anything else with more than one
    element needs an explicit ``--axes``.
    """
    if all(a in "TCZYXS" for a in file_axes) and len(set(file_axes)) == len(file_axes):
        return data, file_axes
    keep = [i for i, a in enumerate(file_axes) if a in "TCZYXS" or a in _GENERIC or data.shape[i] > 1]
    if len(keep) != len(file_axes):
        data = data.reshape([data.shape[i] for i in keep])
        file_axes = "".join(file_axes[i] for i in keep)
    letters = list(file_axes)
    free = [a for a in "ZC" if a not in letters]
    for i in range(len(letters) - 1, -1, -1):
        if letters[i] in _GENERIC:
            if not free:
                raise InputError(
                    f"{p.name} has axes {file_axes!r} (shape {data.shape}) that volsr cannot map to T C Z Y X S; "
                    "pass --axes with one letter per dimension"
                )
            letters[i] = free.pop(0)
    unknown = sorted({a for a in letters if a not in "TCZYXS"})
    if unknown:
        raise InputError(
            f"{p.name} has axes {file_axes!r} (shape {data.shape}); the {', '.join(unknown)} axis is not one volsr "
            "handles — export a single z-stack, or pass --axes with one letter per dimension from T C Z Y X S"
        )
    return data, "".join(letters)


def _ome_metadata(xml: str):
    """(spacing (z, y, x), unit, volsr axes annotation, measured-planes text) from OME-XML; first Image only."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputError(f"the OME-XML metadata is not valid XML ({exc}); the file may be corrupt") from exc
    pixels = None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            pixels = el
            break
    written_axes = measured = None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "M":
            if el.get("K") == AXES_ANNOTATION_KEY and written_axes is None:
                written_axes = (el.text or "").strip() or None
            elif el.get("K") == MEASURED_PLANES_KEY and measured is None:
                measured = (el.text or "").strip() or None
    if pixels is None:
        return (None, None, None), None, written_axes, measured
    values, units = {}, {}
    for a in "XYZ":
        values[a] = _clean_spacing(pixels.get(f"PhysicalSize{a}"))
        units[a] = normalize_unit(pixels.get(f"PhysicalSize{a}Unit", "µm"))  # OME default unit
    ref = units["X"] if values["X"] is not None else units["Y"] if values["Y"] is not None else units["Z"]
    for a in "XYZ":
        if values[a] is None or units[a] == ref:
            continue
        if units[a] in _UNIT_METRES and ref in _UNIT_METRES:
            values[a] = values[a] * _UNIT_METRES[units[a]] / _UNIT_METRES[ref]
        else:
            values[a] = None  # e.g. 'pixel' vs µm: not comparable
    if all(v is None for v in values.values()):
        ref = None
    return (values["Z"], values["Y"], values["X"]), ref, written_axes, measured


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


def _imagej_spacing(meta: dict, page):
    """ImageJ hyperstack calibration: z from ``spacing``, x/y from the resolution tags."""
    unit = normalize_unit(meta.get("unit"))
    z = _clean_spacing(meta.get("spacing"))
    x = y = None
    tags = page.tags
    for name, setter in (("XResolution", "x"), ("YResolution", "y")):
        tag = tags.get(name)
        if tag is None:
            continue
        value = tag.value
        try:
            res = value[0] / value[1] if isinstance(value, tuple) else float(value)
        except (TypeError, ZeroDivisionError, IndexError):
            continue
        if res > 0:
            if setter == "x":
                x = _clean_spacing(1.0 / res)
            else:
                y = _clean_spacing(1.0 / res)
    if unit in (None, "pixel") and all(v in (None, 1.0) for v in (x, y, z)):
        # An uncalibrated ImageJ image (1 pixel per pixel): the real voxel size is unknown.
        return (None, None, None), None
    return (z, y, x), unit


# ---------------------------------------------------------------------------------------------
# 2D images
# ---------------------------------------------------------------------------------------------
def read_image_2d(path) -> np.ndarray:
    """Read one 2D image (TIFF/PNG/JPEG/BMP) as a (C, H, W) float32 array.

    The one 2D image reader of volsr (training folders, FID reference folders, napari).

    Rules
    -----
    * (H, W) -> (1, H, W). Size-1 axes are squeezed first.
    * Channels-last arrays with 2-4 channels and both sides > 4 px (RGB/RGBA PNGs, RGB
      TIFFs) are moved to the front.
    * Alpha: for PNG/JPEG/BMP files a 2-channel (LA) or 4-channel (RGBA) image loses its
      last channel (transparency, not signal) -> 1 or 3 channels. TIFF channels are all
      kept (a 4-channel TIFF is usually 4 fluorescence channels, not RGBA).
    * A (C, H, W) TIFF with ``C <= 8 < min(H, W)`` is kept as is; other 3D shapes and
      anything with more dimensions are refused (read stacks with :func:`read_stack`).

    Raises
    ------
    InputError
        Unreadable file, or a shape that is not a 2D image.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(str(path))
        else:
            import skimage.io

            arr = skimage.io.imread(str(path))
    except Exception as err:  # unreadable image: name the file and the fix
        raise InputError(f"cannot read image {path}: {err}; is it a valid TIFF/PNG/JPEG file?") from None
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[-1] <= 4 and min(arr.shape[:2]) > 4:
            arr = np.moveaxis(arr, -1, 0)
            if suffix in PLAIN_2D_SUFFIXES and arr.shape[0] in (2, 4):
                arr = arr[:-1]  # drop alpha (LA / RGBA)
        elif not (arr.shape[0] <= 8 < min(arr.shape[1:])):
            raise InputError(
                f"{path} has shape {arr.shape}, which is not a 2D image (H, W), (H, W, C) or (C, H, W); "
                "pass volumes as stack files, not as 2D images"
            )
    else:
        raise InputError(f"{path} has shape {arr.shape}; expected a 2D image (stacks go in stack files)")
    if np.iscomplexobj(arr) or arr.dtype == bool:
        arr = arr.astype(np.float32)
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
_OME_UNITS = set(_UNIT_METRES) | {"pixel", "reference frame"}


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


def _tiff_order(ax: str) -> str:
    """An OME-compatible order: the other axes in their given order, then Y, X, then S."""
    lead = [a for a in ax if a not in "YXS"]
    return "".join(lead) + "YX" + ("S" if "S" in ax else "")


def _ome_tiff_arguments(order: str, dtype, sizes: dict, sp, unit, metadata, measured=None):
    """(stored axes, OME metadata, tifffile keywords) shared by whole-array and tile-by-tile writes.

    ``order`` is the OME-compatible axes order (:func:`_tiff_order`), recorded in full in the
    axes annotation; a size-1 ``S`` is not stored.
    """
    if np.dtype(dtype).name not in ("bool", "int8", "int16", "int32", "uint8", "uint16", "uint32", "float32",
                                    "float64"):
        raise OutputError(
            f"OME-TIFF cannot store dtype {np.dtype(dtype)}; convert (e.g. to float32 or uint16) or write .npy instead"
        )
    if unit is not None and unit not in _OME_UNITS:
        raise OutputError(f"unit {unit!r} is not an OME length unit; use one of {', '.join(sorted(_OME_UNITS))}")
    full, samples = order, sizes.get("S")
    if samples is not None and samples == 1:
        # TIFF cannot store one contiguous sample as a separate axis: drop it, the annotation keeps it.
        order = order[:-1]
    meta: dict[str, Any] = dict(metadata or {})
    meta["axes"] = order
    z, y, x = sp
    for letter, value in (("X", x), ("Y", y), ("Z", z)):
        if value is not None:
            meta[f"PhysicalSize{letter}"] = float(value)
            if unit is not None:
                meta[f"PhysicalSize{letter}Unit"] = unit
    annotation = dict(meta.get("MapAnnotation") or {})
    annotation[AXES_ANNOTATION_KEY] = full
    if measured is not None:
        annotation[MEASURED_PLANES_KEY] = ",".join(str(i) for i in measured)
    meta["MapAnnotation"] = annotation
    kwargs: dict[str, Any] = {"photometric": "rgb" if samples in (3, 4) else "minisblack"}
    if samples is not None and samples > 1:
        kwargs["planarconfig"] = "contig"
    return order, meta, kwargs


def _write_ome_tiff(tmp: Path, arr: np.ndarray, ax: str, sp, unit, metadata, measured=None) -> None:
    import tifffile

    order = _tiff_order(ax)
    if order != ax:
        arr = np.transpose(arr, [ax.index(a) for a in order])
    stored, meta, kwargs = _ome_tiff_arguments(order, arr.dtype, dict(zip(order, arr.shape)), sp, unit, metadata,
                                               measured)
    if stored != order:
        arr = arr[..., 0]
    tifffile.imwrite(tmp, arr, ome=True, metadata=meta, **kwargs)


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

