"""The public entry points: :func:`restore` (z-stacks to isotropic volumes), :func:`upscale` (2D images
and in-plane upscaling) and :func:`fit_on_input`. The CLI, the napari plugin and the notebooks use
only these.
"""


from .restoring import (  # noqa: F401
    DEFAULT_ENGINE,
    DEFAULT_FIT_MINUTES,
    RestoreResult,
    as_stack,
    axial_degradation,
    check_fit_budget,
    fit_on_input,
    prepare_engine,
    resolve_factor,
    restore,
)
from .upscaling import (  # noqa: F401
    DEFAULT_SCALE,
    PLAIN_SUFFIXES,
    UpscaleResult,
    fit_zero_shot,
    model_scale,
    read_image,
    upscale,
)

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_FIT_MINUTES",
    "DEFAULT_SCALE",
    "PLAIN_SUFFIXES",
    "RestoreResult",
    "UpscaleResult",
    "as_stack",
    "axial_degradation",
    "check_fit_budget",
    "fit_on_input",
    "fit_zero_shot",
    "model_scale",
    "prepare_engine",
    "read_image",
    "resolve_factor",
    "restore",
    "upscale",
]
