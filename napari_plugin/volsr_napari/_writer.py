"""Writer: save an image layer as OME-TIFF *with its voxel spacing* (napari's built-in TIFF writer drops it).

The layer ``scale`` is the voxel spacing (z, y, x) — for a volsr result the isotropic one —
and is written through :func:`volsr.write_stack`, so ``volsr.read_stack`` and Fiji see the
right spacing when the file is opened again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_image"]

_AXES = {2: "YX", 3: "ZYX", 4: "CZYX"}


def write_image(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer for image layers; returns the written path(s).

    Errors (unsupported dimensionality, RGB, unwritable path) are raised as
    :class:`volsr.errors.VolsrError` with the fix in the message; napari shows them as a
    notification.
    """
    from volsr import write_stack
    from volsr.errors import InputError

    arr = np.asarray(data)
    if meta.get("rgb"):
        axes = "YXS" if arr.ndim == 3 else "ZYXS"
    else:
        axes = _AXES.get(arr.ndim)
    if axes is None or len(axes) != arr.ndim:
        raise InputError(f"cannot write a {arr.ndim}D layer as a stack; volsr writes 2D, 3D (ZYX) or 4D (CZYX) layers")
    scale = [float(s) for s in (meta.get("scale") or [1.0] * arr.ndim)]
    spatial = scale[-2:] if axes.endswith("YX") else scale[-3:-1]
    if "Z" in axes:
        zi = axes.index("Z")
        spacing = (scale[zi], spatial[0], spatial[1])
    else:
        spacing = (None, spatial[0], spatial[1])
    out = write_stack(Path(path), arr, axes, spacing=spacing, overwrite=True,
                      metadata={"Name": str(meta.get("name", "volsr"))})
    return [str(out)]
