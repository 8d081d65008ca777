"""Sample data: a small anisotropic z-stack so a new user can try the plugin in two clicks.

File > Open Sample > volsr > *Anisotropic z-stack* opens :func:`volsr.samples.sample_stack`
with its voxel spacing as the layer ``scale`` — the Restore widget then pre-fills the z
factor from it.
"""

from __future__ import annotations

__all__ = ["make_sample_data"]

SAMPLE_NAME = "volsr sample (anisotropic)"


def _scale(spacing) -> tuple[float, float, float]:
    """Layer scale from a (z, y, x) spacing with possibly missing entries (1.0 = unknown)."""
    sz, sy, sx = (None, None, None) if spacing is None else tuple(spacing)
    sx = float(sx) if sx else 1.0
    sy = float(sy) if sy else sx
    sz = float(sz) if sz else sx
    return sz, sy, sx


def make_sample_data():
    """napari sample-data contribution: ``[(data, layer_kwargs, 'image')]``."""
    from volsr.samples import sample_stack

    stack = sample_stack()
    data = stack.data
    kwargs = {
        "name": SAMPLE_NAME,
        "scale": _scale(stack.spacing),
        "colormap": "gray",
        "metadata": {"volsr": {"sample": True, "axes": getattr(stack, "axes", "ZYX"),
                               "unit": getattr(stack, "unit", None)}},
    }
    return [(data, kwargs, "image")]
