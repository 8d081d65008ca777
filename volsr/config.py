"""Typed, frozen engine configs: validated once, overridden with :meth:`EngineConfig.replace`.

Why one class per engine instead of dicts: a dict can be mutated after validation, silently
takes misspelt keys and is checked in several places with different idioms. A frozen
dataclass is checked in one place (``validate``), refuses unknown keys with the list of
accepted ones, and a per-call override is ``cfg.replace(key=value)``, which validates again.

Every config problem raises :class:`ConfigError` (a :class:`volsr.errors.VolsrError`), so the
CLI reports it as one line.

Configs are stored in model files as JSON (:meth:`EngineConfig.to_dict`) and read back with
:meth:`EngineConfig.from_dict`; tuples become lists in JSON and tuples again on reading.
Read-only mapping access (``cfg["crop"]``, ``cfg.get("crop")``) is kept for scripts written
against the dict configs of volsr 0.1.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from .errors import VolsrError

__all__ = ["ConfigError", "EngineConfig", "check_choice", "check_number", "check_int"]

C = TypeVar("C", bound="EngineConfig")


class ConfigError(VolsrError):
    """An engine config key has a value outside its accepted range, or is unknown."""


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"config '{name}' = {value!r} is invalid; accepted: {', '.join(map(str, choices))}")


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """``lo <= value <= hi`` (or open bounds) for a finite real number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo:g}, {'inf' if hi is None else hi:g}{right}"
        raise ConfigError(f"config '{name}' = {value!r} is invalid; accepted: a number in {rng}")


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"config '{name}' = {value!r} is invalid; accepted: an integer {bounds}")


def _to_json(value: Any) -> Any:
    if isinstance(value, EngineConfig):
        return value.to_dict()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Base of every engine config. Subclasses add fields and override :meth:`validate`."""

    #: Keys that older model files may hold and that are dropped on reading (renamed or removed).
    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # JSON gives lists: store tuples (hashable, immutable)
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        self._coerce()
        self.validate()

    def _coerce(self) -> None:
        """Turn JSON forms of nested values into objects (subclasses)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a bad value (subclasses)."""

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def _unknown(cls, keys: Iterable[str]) -> list[str]:
        names = set(cls.field_names())
        return sorted(k for k in keys if k not in names)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, strict: bool = True) -> C:
        """Build from a (partial) dict; missing keys take defaults.

        ``strict=False`` (model files) drops unknown keys with a warning instead of refusing
        them, so a model written by another volsr version still loads.
        """
        data = {k: v for k, v in dict(data or {}).items() if k != "engine"}
        data = {k: v for k, v in data.items() if k not in cls.LEGACY_KEYS}
        unknown = cls._unknown(data)
        if unknown:
            if strict:
                raise ConfigError(
                    f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                    f"accepted: {', '.join(cls.field_names())}"
                )
            warnings.warn(f"ignoring unknown config key(s) {', '.join(unknown)} in a model file", stacklevel=2)
            data = {k: v for k, v in data.items() if k not in unknown}
        return cls(**data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (``None`` values are ignored), validated again."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = self._unknown(changes)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {type(self).__name__}; "
                f"accepted: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what model files store)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # -- read-only mapping access (compatibility with dict configs) ---------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(key)
        return _to_json(getattr(self, key)) if isinstance(getattr(self, key), tuple) else getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.field_names() else default

    def __contains__(self, key: object) -> bool:
        return key in self.field_names()

    def keys(self):
        return self.field_names()
