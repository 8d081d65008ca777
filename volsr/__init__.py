"""volsr: isotropic restoration of anisotropic microscopy z-stacks (masked-slice diffusion).

Three lines from a file to an isotropic stack::

    import volsr
    result = volsr.restore("stack.tif", engine="linear")      # or the default, engine="msdsr"
    result.save("stack_volsr.tif")
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while waiting make torch many times slower on a shared or busy CPU
# (measured 15x on 2 cores under load); passive waiting costs nothing when the CPU is idle.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .api import RestoreResult, restore  # noqa: E402
from .engines import create_engine, list_engines, load_engine  # noqa: E402
from .errors import Cancelled, InputError, ModelFileError, OutputError, VolsrError  # noqa: E402
from .grid import OutputGrid  # noqa: E402

__all__ = [
    "Cancelled",
    "InputError",
    "ModelFileError",
    "OutputError",
    "OutputGrid",
    "RestoreResult",
    "UpscaleResult",
    "Stack",
    "VolsrError",
    "__version__",
    "create_engine",
    "list_engines",
    "load_engine",
    "read_stack",
    "restore",
    "upscale",
    "write_stack",
]


_SUBMODULES = (
    "api", "checkpoint", "cli", "config", "diffusion", "engines", "evaluation", "grid", "io", "metrics", "models",
    "normalize", "pipeline", "runtime", "samples", "training",
)


def __getattr__(name):
    # I/O is imported on first use so `import volsr` stays light and never fails on optional readers.
    if name in ("Stack", "read_stack", "write_stack"):
        from . import io

        return getattr(io, name)
    if name in ("UpscaleResult", "upscale"):  # the 2D path (in-plane pipeline) loads when first used
        from . import api

        return getattr(api, name)
    if name in _SUBMODULES:  # `volsr.samples.sample_stack()` etc. work after a bare `import volsr`
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'volsr' has no attribute {name!r}")
