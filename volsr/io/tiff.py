"""TIFF, OME-TIFF and ImageJ hyperstacks (tifffile): axes, spacing and volsr's own OME records, in and out.

Reading: tifffile reads what it can of a damaged file and only logs the damage, so the reader
collects those logs and compares the data offsets with the file size, refusing a truncated copy
instead of returning part of a stack; tifffile's axes letters (``Q``, ``I``, squeezed size-1
axes) are mapped back onto volsr's T C Z Y X S. Writing: the OME metadata and tifffile keywords
shared by :func:`volsr.io.write_stack` and :func:`volsr.io.write_tiled_tiff` (the atomic file
handling is :mod:`volsr.io.writing`'s). :mod:`volsr.io.slides` reuses the metadata readers for
the levels of pyramidal slides.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError, VolsrError
from .stacks import _short
from .units import _UNIT_METRES, _clean_spacing, normalize_unit

__all__ = ["AXES_ANNOTATION_KEY", "MEASURED_PLANES_KEY"]

AXES_ANNOTATION_KEY = "volsr_axes"
"""OME MapAnnotation key under which :func:`write_stack` records the full axes string.

OME readers squeeze size-1 axes; the annotation lets volsr give back exactly the axes a file
was written with (e.g. ``TZCYX`` with T=1), while other software still sees plain OME."""

MEASURED_PLANES_KEY = "volsr_measured_planes"
"""OME MapAnnotation key under which :func:`write_stack` records, for a restored stack, the
output z indices of the measured planes (comma-separated, e.g. ``0,4,8``). No-reference
scores (``volsr score``'s isotropy gap) take their XY reference from these planes only."""


# -- reading ----------------------------------------------------------------------------------
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


# -- writing ----------------------------------------------------------------------------------
_OME_UNITS = set(_UNIT_METRES) | {"pixel", "reference frame"}


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
