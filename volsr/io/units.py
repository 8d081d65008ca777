"""Length units and voxel spacing: one spelling per unit, one check for every spacing volsr is given.

Files spell the same unit many ways ('um', 'micron', ImageJ's literal ``\\u00B5m``); every reader
and writer goes through :func:`normalize_unit`, so a stack's unit compares equal whatever its file
said, and OME sizes given in mixed units can be converted to one.
"""

from __future__ import annotations

import math

from ..errors import InputError

__all__ = ["normalize_unit"]

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
