"""Subpackage exports imported on first use (PEP 562), so importing a package costs only what is used.

Why: ``import volsr`` and ``volsr --help`` must stay fast and must not pull in MONAI, tifffile or
the training code just because a subpackage's ``__init__`` names them. Each ``__init__`` lists
its public names and the module that defines each; :func:`lazy_exports` gives it the module-level
``__getattr__`` and ``__dir__`` that import the defining module when a name is first asked for
(``from volsr.io import read_stack`` works as with an eager import).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``name`` lives in ``.exports[name]``."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
