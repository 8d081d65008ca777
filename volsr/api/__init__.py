"""The public entry points: :func:`restore` (z-stacks to isotropic volumes), :func:`restore_plane` (one
XZ/YZ plane of that restoration: a preview), :func:`upscale` (2D images and in-plane upscaling) and
:func:`fit_on_input`. The CLI, the napari plugin and the notebooks use
only these.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_ENGINE": "restoring",
    "DEFAULT_FIT_MINUTES": "restoring",
    "PlaneResult": "restoring",
    "RestoreResult": "restoring",
    "as_stack": "restoring",
    "axial_degradation": "restoring",
    "check_fit_budget": "restoring",
    "fit_on_input": "restoring",
    "prepare_engine": "restoring",
    "resolve_factor": "restoring",
    "restore": "restoring",
    "restore_plane": "restoring",
    "DEFAULT_SCALE": "upscaling",
    "PLAIN_SUFFIXES": "upscaling",
    "UpscaleResult": "upscaling",
    "fit_zero_shot": "upscaling",
    "model_scale": "upscaling",
    "read_image": "upscaling",
    "upscale": "upscaling",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
