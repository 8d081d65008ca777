"""One model file (``.volsr``): safetensors weights + a JSON description in its metadata.

Layout: a standard safetensors file whose tensors are the EMA state dict of the engine's
network, and whose string metadata holds one key, ``"volsr"``, with a JSON object::

    {"format": "volsr-model", "format_version": 1, "volsr_version": "0.1.0",
     "engine": "msdsr", "config": {...}, "provenance": {...}}

Why safetensors: loading is a bounded header parse plus a memory copy — nothing is ever
unpickled, so a model file from a stranger cannot run code. The header (engine, config,
provenance) can be read without touching the weights (:func:`read_model_info`), which is
what ``volsr models`` and engine dispatch need.

Bundled models live in ``volsr/data/*.volsr`` and are addressed by their file stem
(:func:`resolve_model_path`, :func:`list_bundled_models`).
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import torch

from .errors import ModelFileError, OutputError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "save_model",
    "load_model",
    "read_model_info",
    "resolve_model_path",
    "list_bundled_models",
    "bundled_models_dir",
    "save_training_checkpoint",
    "load_training_checkpoint",
]

FORMAT = "volsr-model"
FORMAT_VERSION = 1
META_KEY = "volsr"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def _volsr_version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partial installs
        try:
            from importlib.metadata import version

            return version("volsr")
        except Exception:
            return "unknown"


def bundled_models_dir() -> Path:
    """The folder of bundled ``.volsr`` files (``volsr/data``)."""
    return Path(__file__).resolve().parent / "data"


def _jsonable(obj: Any, where: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{where} must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None


# -- writing --------------------------------------------------------------------------------
def save_model(path: str | Path, *, engine: str, config: dict, state_dict: dict, provenance: dict | None = None,
               overwrite: bool = True) -> Path:
    """Write a ``.volsr`` model file atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : path
        Destination (any suffix; ``.volsr`` is conventional).
    engine : str
        Registered engine name (``msdsr``, ``msunet``, ...).
    config : dict
        The engine config (JSON types only) — enough to rebuild the network.
    state_dict : dict[str, torch.Tensor]
        Weights to store (the EMA weights for learned engines).
    provenance : dict, optional
        Training provenance: data names, steps, seed, date, what it was trained on.
    overwrite : bool
        If False an existing file is an :class:`volsr.errors.OutputError`.

    Returns
    -------
    pathlib.Path of the written file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; choose another name or allow overwriting")
    if not path.parent.exists():
        raise OutputError(f"folder {path.parent} does not exist; create it first or choose another path")
    if not isinstance(engine, str) or not engine:
        raise ModelFileError(f"engine must be a non-empty name, got {engine!r}")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "volsr_version": _volsr_version(),
        "engine": engine,
        "config": config,
        "provenance": provenance or {},
    }
    meta = {META_KEY: _jsonable(header, "model config and provenance")}
    tensors = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise ModelFileError(f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
        tensors[k] = v.detach().to("cpu").contiguous().clone()  # clone: no shared storage
    return _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _atomic_write(path: Path, write) -> Path:
    """``write(tmp)`` to a temporary name in the same folder, set the umask's mode, rename."""
    tmp = _temporary_name(path)
    try:
        write(tmp)
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _temporary_name(path: Path) -> str:
    """A hidden sibling name for the atomic write (the writer decides the file's mode; see :func:`_default_mode`)."""
    return str(path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"))


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


def _default_mode(tmp: str) -> None:
    """Give a freshly written file the mode a plain ``open(path, 'w')`` would: ``0o666 & ~umask``.

    safetensors' writer creates its file like ``mkstemp`` (0600), so model files came out
    private while TIFF outputs next to them were 0644. On Windows chmod only toggles
    read-only; nothing to do there.
    """
    if os.name == "nt":
        return
    os.chmod(tmp, 0o666 & ~_current_umask())


# -- reading --------------------------------------------------------------------------------
def _read_header(path: Path) -> tuple[dict, dict]:
    """Parse and validate the safetensors header; return (tensor table, volsr info)."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; check the path (or see `volsr models`)")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} is not a volsr model file (only {size} bytes; truncated or empty)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or n < 2:
            raise ModelFileError(f"{path} is not a volsr model file (no safetensors header)")
        if 8 + n > size:
            raise ModelFileError(f"{path} is truncated (header needs {8 + n} bytes, file has {size}); re-copy or re-train it")
        raw = fh.read(n)
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path} is not a volsr model file (unreadable header)") from None
    if not isinstance(table, dict):
        raise ModelFileError(f"{path} is not a volsr model file (unexpected header)")
    meta = table.pop("__metadata__", None) or {}
    if META_KEY not in meta:
        raise ModelFileError(
            f"{path} is a safetensors file but not a volsr model (no volsr metadata); "
            "volsr only loads files written by `volsr train` or Engine.save"
        )
    try:
        info = json.loads(meta[META_KEY])
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: the volsr metadata is corrupt (invalid JSON)") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a volsr model file (format {info.get('format')!r} if any)")
    version = info.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: the volsr metadata has no valid format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by volsr {info.get('volsr_version', '?')} in model format version {version}; "
            f"this volsr ({_volsr_version()}) reads up to version {FORMAT_VERSION} — upgrade volsr"
        )
    for key in ("engine", "config"):
        if key not in info:
            raise ModelFileError(f"{path}: the volsr metadata lacks '{key}'")
    end = 0
    for name, entry in table.items():
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise ModelFileError(f"{path}: tensor {name!r} has a corrupt header entry") from None
    if 8 + n + end > size:
        raise ModelFileError(
            f"{path} is truncated ({size} bytes, the weights need {8 + n + end}); re-copy or re-train it"
        )
    info.setdefault("provenance", {})
    return table, info


def read_model_info(path: str | Path) -> dict:
    """The JSON description of a model file (engine, config, provenance), without the weights.

    Raises :class:`volsr.errors.ModelFileError` for a missing, truncated, non-volsr or
    newer-format file.
    """
    path = resolve_model_path(path)
    table, info = _read_header(path)
    info = dict(info)
    info["path"] = str(path)
    info["size_bytes"] = path.stat().st_size
    info["n_parameters"] = int(sum(_numel(e.get("shape", [])) for e in table.values()))
    return info


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def load_model(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model file: ``(info, state_dict)``. Never unpickles.

    Raises :class:`volsr.errors.ModelFileError` for a missing, truncated, non-volsr or
    newer-format file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(path)
    info = read_model_info(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: the weights cannot be read ({err}); the file is damaged") from None
    return info, state


# -- bundled models --------------------------------------------------------------------------
def _bundled() -> dict[str, Path]:
    folder = bundled_models_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.volsr"))}


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A model file path, or the file of a bundled model given by name (see ``volsr models``)."""
    if path_or_name is None or str(path_or_name) == "":
        raise ModelFileError("no model given; pass a .volsr file or a bundled model name (see `volsr models`)")
    p = Path(path_or_name).expanduser()
    if p.exists():
        return p
    bundled = _bundled()
    key = p.name[: -len(".volsr")] if p.name.endswith(".volsr") else p.name
    if str(path_or_name) == p.name and key in bundled:
        return bundled[key]
    names = ", ".join(sorted(bundled)) or "none installed"
    if str(path_or_name) != p.name or p.suffix:
        raise ModelFileError(
            f"model file {p} does not exist; check the path (bundled models: {names}; see `volsr models`)"
        )
    raise ModelFileError(
        f"model {str(path_or_name)!r} is neither an existing file nor a bundled model ({names}); "
        "pass the path of a .volsr file, or run `volsr models` to list bundled models"
    )


def list_bundled_models() -> list[dict]:
    """One dict per bundled model: name, engine, trained_on, path, size_bytes, n_parameters, ..."""
    out = []
    for name, path in _bundled().items():
        try:
            info = read_model_info(path)
        except ModelFileError as err:
            out.append({"name": name, "engine": "?", "trained_on": f"unreadable: {err}", "path": str(path),
                        "size_bytes": path.stat().st_size, "n_parameters": 0})
            continue
        prov = info.get("provenance", {})
        out.append({
            "name": name,
            "engine": info["engine"],
            "trained_on": prov.get("trained_on", "not recorded"),
            "steps": prov.get("steps"),
            "channels": info["config"].get("channels"),
            "volsr_version": info.get("volsr_version"),
            "path": str(path),
            "size_bytes": info["size_bytes"],
            "n_parameters": info["n_parameters"],
        })
    return out


# -- training checkpoints (resume) ----------------------------------------------------------
CHECKPOINT_FORMAT = "volsr-training-checkpoint"


def save_training_checkpoint(path: str | Path, state: dict) -> Path:
    """Write a resumable training state atomically with ``torch.save``.

    ``state`` must hold only tensors, numbers, strings, bools, None, and lists/tuples/dicts
    of those (network, EMA and optimizer state dicts qualify), so that
    :func:`load_training_checkpoint` can read it with ``torch.load(weights_only=True)`` —
    never arbitrary unpickling.
    """
    path = Path(path)
    if not path.parent.exists():
        raise OutputError(f"checkpoint folder {path.parent} does not exist; create it or choose another path")
    payload = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "volsr_version": _volsr_version(),
               **state}
    return _atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_training_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a training checkpoint written by :func:`save_training_checkpoint` (weights-only unpickler)."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"training checkpoint {path} does not exist; train without --resume to start one")
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{path} is not a readable volsr training checkpoint ({str(err).splitlines()[0][:200]}); "
            "it may be truncated — train without --resume to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a volsr training checkpoint")
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer volsr ({state.get('volsr_version')}); upgrade volsr to resume from it"
        )
    return state
