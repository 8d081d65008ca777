"""Axes strings ('ZYX', 'CZYX', 'ZCYX', 'TZCYX', 'YXS', ...) to canonical (C, Z, Y, X) and back.

Every stack enters volsr in whatever axis order its file or its caller uses and leaves in the
same order. Inside, everything works on one layout, (C, Z, Y, X), so the volume pipeline never
branches on axis order. This module is the only place that knows how to get there and back,
and the round trip is exact: ``from_canonical(to_canonical(a, axes), axes, shape=a.shape)``
returns ``a`` for every supported axes string.

Letters
-------
``T`` time (must have size 1: volsr restores one z-stack at a time), ``C`` channel,
``Z`` depth (the sparse axis), ``Y`` rows, ``X`` columns, ``S`` samples of an RGB(A) pixel
(treated as the channel axis). ``Y`` and ``X`` are required; ``C``, ``Z``, ``T`` and ``S`` are
optional and become size-1 axes in the canonical layout when missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import numpy as np

from ..errors import InputError

SUPPORTED_LETTERS = "TCZYXS"
"""Axis letters volsr understands (tifffile's names: time, channel, depth, rows, cols, samples)."""

_NAMES = {"T": "time", "C": "channel", "Z": "depth", "Y": "rows", "X": "columns", "S": "RGB samples"}


def default_axes(ndim: int) -> str:
    """Guess the axes of an array that came without any.

    A guess, used only when neither the file nor the caller says: 2D arrays are one plane
    (``YX``), 3D arrays a z-stack (``ZYX``, the common case for microscopy), 4D arrays a
    multi-channel z-stack with channels first (``CZYX``, the layout of ImageJ/Fiji and napari).

    Parameters
    ----------
    ndim : int
        Number of array dimensions, 2, 3 or 4.

    Returns
    -------
    str

    Examples
    --------
    >>> default_axes(3)
    'ZYX'
    """
    guesses = {2: "YX", 3: "ZYX", 4: "CZYX"}
    if ndim not in guesses:
        raise InputError(
            f"cannot guess the axes of a {ndim}-dimensional array; pass --axes with one letter per "
            "dimension from T C Z Y X S, e.g. TZCYX"
        )
    return guesses[ndim]


def parse_axes(axes: str, shape: Sequence[int]) -> str:
    """Validate an axes string against an array shape and return it in upper case.

    Parameters
    ----------
    axes : str
        One letter per dimension from ``T C Z Y X S`` (case-insensitive), each at most once,
        containing ``Y`` and ``X``.
    shape : sequence of int
        Shape of the array the axes describe.

    Returns
    -------
    str
        The upper-case axes string.

    Raises
    ------
    InputError
        Wrong type, unknown or repeated letters, missing Y/X, or a length that differs from
        the number of dimensions.

    Examples
    --------
    >>> parse_axes("zyx", (10, 64, 64))
    'ZYX'
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(axes, str) or not axes:
        raise InputError(
            f"axes must be a non-empty string such as 'ZYX' or 'CZYX', got {axes!r}; "
            "pass --axes with one letter per dimension"
        )
    ax = axes.strip().upper()
    bad = sorted({a for a in ax if a not in SUPPORTED_LETTERS})
    if bad:
        raise InputError(
            f"axes {axes!r} contains unsupported letter(s) {', '.join(bad)}; use one letter per dimension "
            "from T (time), C (channel), Z (depth), Y, X, S (RGB samples), e.g. CZYX"
        )
    dup = sorted({a for a in ax if ax.count(a) > 1})
    if dup:
        raise InputError(f"axes {axes!r} repeats {', '.join(dup)}; each letter may appear once, e.g. CZYX")
    if len(ax) != len(shape):
        raise InputError(
            f"axes {ax!r} has {len(ax)} letters but the array has {len(shape)} dimensions (shape {shape}); "
            f"pass --axes with one letter per dimension, e.g. {_example(len(shape))}"
        )
    missing = [a for a in "YX" if a not in ax]
    if missing:
        raise InputError(
            f"axes {ax!r} has no {' or '.join(missing)}; every stack needs Y and X (the image plane), "
            f"e.g. {_example(len(shape))}"
        )
    return ax


def _example(ndim: int) -> str:
    return {1: "X", 2: "YX", 3: "ZYX", 4: "CZYX", 5: "TZCYX", 6: "TZCYXS"}.get(ndim, "CZYX")


def _channel_letters(ax: str) -> list[str]:
    """Axes merged into the canonical channel axis, in their array order (T must be size 1)."""
    return [a for a in ax if a in "TCS"]


def to_canonical(data: np.ndarray, axes: str) -> np.ndarray:
    """Rearrange ``data`` from ``axes`` order to (C, Z, Y, X).

    Missing ``C`` or ``Z`` become size-1 axes; ``S`` (RGB samples) is the channel axis; a size-1
    ``T`` is dropped. The result is a view whenever NumPy can make one.

    Parameters
    ----------
    data : numpy.ndarray
        The stack in ``axes`` order.
    axes : str
        Its axes string (see :func:`parse_axes`).

    Returns
    -------
    numpy.ndarray
        Shape (C, Z, Y, X), same dtype.

    Raises
    ------
    InputError
        Axes that do not match the array, more than one time point, or both ``C`` and ``S``
        with more than one element (volsr would not know which is the channel axis).

    Examples
    --------
    >>> import numpy as np
    >>> to_canonical(np.zeros((5, 2, 32, 32)), "ZCYX").shape
    (2, 5, 32, 32)
    >>> to_canonical(np.zeros((32, 32, 3)), "YXS").shape
    (3, 1, 32, 32)
    """
    data = np.asarray(data)
    ax = parse_axes(axes, data.shape)
    _check_sizes(ax, dict(zip(ax, data.shape)))
    chan = _channel_letters(ax)
    left = " ".join(a.lower() for a in ax)
    right_c = "(" + " ".join(a.lower() for a in chan) + ")" if chan else "1"
    right_z = "z" if "Z" in ax else "1"
    return einops.rearrange(data, f"{left} -> {right_c} {right_z} y x")


def _check_sizes(ax: str, sizes: dict) -> None:
    """Refuse layouts with no single (C, Z, Y, X) reading: several time points, C and S both > 1."""
    if sizes.get("T", 1) != 1:
        raise InputError(
            f"more than one time point (T={sizes['T']}); volsr restores one z-stack at a time: "
            "select a time point first (e.g. data[t] with axes without T)"
        )
    if sizes.get("C", 1) > 1 and sizes.get("S", 1) > 1:
        raise InputError(
            f"the stack has both channels (C={sizes['C']}) and RGB samples (S={sizes['S']}); "
            "volsr takes one channel axis: split the channels or convert RGB to separate channels first"
        )


def from_canonical(czyx: np.ndarray, axes: str, *, shape: Sequence[int] | None = None) -> np.ndarray:
    """Rearrange a (C, Z, Y, X) array back to ``axes`` order (inverse of :func:`to_canonical`).

    Sizes come from ``czyx``, so Z (and Y/X) may differ from the original stack — this is how
    a restored volume with more planes goes back to the caller's layout. Axes of size 1 that
    ``to_canonical`` added or dropped (T, missing C/Z) are restored.

    Parameters
    ----------
    czyx : numpy.ndarray
        Shape (C, Z, Y, X).
    axes : str
        The target axes string.
    shape : sequence of int, optional
        Shape of the original array. Only needed when ``axes`` contains both ``C`` and ``S``:
        it tells which of the two holds the channels. Without it, the channels go to ``S`` when
        there are 3 or 4 of them (RGB/RGBA) and to ``C`` otherwise.

    Returns
    -------
    numpy.ndarray
        The array in ``axes`` order, same dtype.

    Raises
    ------
    InputError
        When ``axes`` has no room for the data: no ``Z`` but more than one plane, or no
        ``C``/``S`` but more than one channel.

    Examples
    --------
    >>> import numpy as np
    >>> from_canonical(np.zeros((2, 9, 32, 32)), "ZCYX").shape
    (9, 2, 32, 32)
    """
    czyx = np.asarray(czyx)
    if czyx.ndim != 4:
        raise InputError(f"expected a (C, Z, Y, X) array, got shape {czyx.shape}")
    n_c, n_z = czyx.shape[:2]
    if not isinstance(axes, str) or not axes:
        raise InputError(f"axes must be a non-empty string such as 'ZYX', got {axes!r}")
    ax = axes.strip().upper()
    # Validate letters with a shape of the right length (sizes are checked below).
    parse_axes(ax, (1,) * len(ax))
    if "Z" not in ax and n_z != 1:
        raise InputError(f"axes {ax!r} have no Z but the volume has {n_z} planes; use axes with Z, e.g. Z{ax}")
    chan = _channel_letters(ax)
    carriers = [a for a in chan if a != "T"]
    if not carriers and n_c != 1:
        raise InputError(f"axes {ax!r} have no C but the volume has {n_c} channels; use axes with C, e.g. C{ax}")
    if len(carriers) == 2:  # both C and S: decide which one holds the channels
        carrier = None
        if shape is not None:
            orig = dict(zip(ax, (int(s) for s in shape)))
            if orig.get("C", 1) > 1:
                carrier = "C"
            elif orig.get("S", 1) > 1:
                carrier = "S"
        if carrier is None:
            carrier = "S" if n_c in (3, 4) else "C"
    else:
        carrier = carriers[0] if carriers else None
    sizes = {a: 1 for a in chan}
    if carrier is not None:
        sizes[carrier] = n_c
    left_c = "(" + " ".join(a.lower() for a in chan) + ")" if chan else "1"
    left_z = "z" if "Z" in ax else "1"
    right = " ".join(a.lower() for a in ax)
    return einops.rearrange(czyx, f"{left_c} {left_z} y x -> {right}", **{a.lower(): n for a, n in sizes.items()})


def canonical_shape(shape: Sequence[int], axes: str) -> tuple[int, int, int, int]:
    """(C, Z, Y, X) sizes of an array with ``shape`` and ``axes``, without touching any data."""
    ax = parse_axes(axes, shape)
    sizes = dict(zip(ax, (int(s) for s in shape)))
    _check_sizes(ax, sizes)
    c = sizes.get("C", 1) * sizes.get("S", 1)
    return (c, sizes.get("Z", 1), sizes["Y"], sizes["X"])
