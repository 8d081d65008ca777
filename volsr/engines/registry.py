"""Engines by name.

Built-in engines are listed as import paths so ``volsr --help`` stays fast (torch networks
are only imported when used). Third-party engines register with :func:`register_engine`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import VolsrError
from .base import Engine

_BUILTIN: dict[str, str] = {
    "nearest": "volsr.engines.interpolation:NearestEngine",
    "linear": "volsr.engines.interpolation:LinearEngine",
    "cubic": "volsr.engines.interpolation:CubicEngine",
    "bicubic": "volsr.engines.interpolation:BicubicEngine",
    "msdsr": "volsr.engines.msdsr:MSDSREngine",
    "msunet": "volsr.engines.msunet:MSUNetEngine",
    "e2e-unet": "volsr.engines.e2e_unet:E2EUNetEngine",
    "brainsr": "volsr.engines.brainsr:BrainSREngine",
}
_REGISTERED: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTERED[cls.name] = cls
    return cls


def list_engines() -> list[str]:
    """Names of all engines whose module can be imported."""
    names = []
    for name in sorted(set(_BUILTIN) | set(_REGISTERED)):
        try:
            get_engine_class(name)
        except VolsrError:
            continue
        names.append(name)
    return names


def get_engine_class(name: str) -> type[Engine]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        known = ", ".join(sorted(set(_BUILTIN) | set(_REGISTERED)))
        raise VolsrError(f"unknown engine '{name}'; choose one of: {known}")
    module, cls = _BUILTIN[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise VolsrError(f"engine '{name}' is not available in this installation ({err})") from None
    return getattr(mod, cls)


def create_engine(name: str, device="cpu", **options) -> Engine:
    """A fresh engine (learned engines start untrained; use ``fit`` or :func:`load_engine`)."""
    return get_engine_class(name)(device=device, **options)


def load_engine(path: str | Path, device="cpu") -> Engine:
    """Load a model file (or a bundled model name) into the engine it was trained for."""
    from ..checkpoint import read_model_info, resolve_model_path

    path = resolve_model_path(path)
    info = read_model_info(path)
    cls = get_engine_class(info["engine"])
    return cls.load(path, device=device)
