"""Engines: everything that can fill unknown rows of a plane. See :mod:`volsr.engines.base`."""

from ..runtime.hardware import resolve_device
from .base import Engine, paste_known
from .registry import create_engine, get_engine_class, list_engines, load_engine, register_engine

__all__ = [
    "Engine",
    "create_engine",
    "get_engine_class",
    "list_engines",
    "load_engine",
    "paste_known",
    "register_engine",
    "resolve_device",
]
