"""``volsr doctor``: one screen of what a user needs to know before a long run.

Versions, the device ``--device auto`` picks and what it computes in, CPU threads and free
memory, the bundled models, the FID weights and the napari GUI, then one summary line:
``ready: ...`` or ``warnings: ...`` (what will make a run slow or fail).

:func:`gather` collects the facts as :class:`Check` records (label, value, warning) without
printing; ``--json`` prints them for bug reports. Every query that can fail (a CUDA call, an
import, a model header) is caught and shown as ``unavailable (reason)``: the doctor itself
never crashes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

__all__ = ["add_parsers", "run_doctor", "gather", "summary", "Check"]

#: The README's Performance figure for a CPU-only run (2 cores with native bfloat16).
CPU_TIMING = ("a 64x512x512 stack with every default took 12.5-13.1 min (fit + restore) on 2 cores "
              "with native bfloat16 (README, Performance)")
#: The README's peak RSS of that run.
PEAK_RSS_GIB = 2.6


@dataclass
class Check:
    """One line of the doctor: ``label: value``; ``warning`` says what will make a run slow or fail."""

    label: str
    value: str
    warning: str | None = None


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="versions, device, precision, memory, models, FID weights, napari: is this machine ready?",
        description="Print what a run on this machine will use (versions, the device --device auto picks, "
                    "precision, threads, free memory, bundled models, FID weights, napari) and end with "
                    "'ready: ...' or 'warnings: ...'.")
    p.add_argument("--json", action="store_true", help="print the records as JSON (for bug reports)")
    p.set_defaults(func=run_doctor)


# -- helpers --------------------------------------------------------------------------------------
def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:197] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _attempt(label: str, query: Callable[[], tuple[str, str | None]], failure: str | None = None) -> Check:
    """``Check(label, *query())``; a query that raises gives ``unavailable (reason)`` (and ``failure`` as warning)."""
    try:
        value, warning = query()
    except Exception as err:  # the doctor reports, it never crashes
        reason = _reason(err)
        return Check(label, f"unavailable ({reason})", f"{failure}: {reason}" if failure else None)
    return Check(label, value, warning)


def _bytes(n: float) -> str:
    from ..runtime.hardware import format_bytes

    return format_bytes(n)


def _optional_version(name: str) -> str:
    try:
        mod = importlib.import_module(name)
    except ImportError:
        return "not installed"
    version = getattr(mod, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(name)
    return str(version)


# -- the facts ------------------------------------------------------------------------------------
def _versions() -> list[Check]:
    def volsr_version():
        from .. import __version__

        return str(__version__), None

    def python_version():
        return f"{platform.python_version()} ({sys.executable})", None

    def required(name):
        return lambda: (str(importlib.import_module(name).__version__), None)

    checks = [_attempt("volsr", volsr_version), _attempt("Python", python_version),
              _attempt("torch", required("torch")), _attempt("MONAI", required("monai")),
              _attempt("numpy", required("numpy"))]
    for name in ("torchvision", "napari", "dask"):
        checks.append(_attempt(name, lambda name=name: (_optional_version(name), None)))
    return checks


def _cuda(torch) -> tuple[list[Check], bool]:
    """The CUDA line, one line per GPU (name, memory, compute capability, bfloat16) and whether CUDA is usable."""

    def available():
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"available: {_plural(n, 'GPU')} (CUDA {torch.version.cuda})", None
        build = torch.version.cuda
        why = f"torch built with CUDA {build}, no GPU visible" if build else "this torch is a CPU-only build"
        return f"not available ({why})", None

    line = _attempt("CUDA", available, failure="CUDA query failed")
    if not line.value.startswith("available"):
        return [line], False
    checks = [line]
    try:
        n = torch.cuda.device_count()
    except Exception as err:
        checks.append(Check("GPUs", f"unavailable ({_reason(err)})", f"CUDA query failed: {_reason(err)}"))
        return checks, True
    for i in range(n):
        def gpu(i=i):
            name = torch.cuda.get_device_name(i)
            total = torch.cuda.get_device_properties(i).total_memory
            major, minor = torch.cuda.get_device_capability(i)
            with torch.cuda.device(i):
                bf16 = torch.cuda.is_bf16_supported()
                try:
                    native = torch.cuda.is_bf16_supported(including_emulation=False)
                except TypeError:  # older torch: no emulation flag
                    native = (major, minor) >= (8, 0)
            if native:
                how, warning = "bfloat16 native", None
            elif bf16:
                how = "bfloat16 emulated"
                warning = f"GPU {i} only emulates bfloat16: --precision float32 may be faster"
            else:
                how, warning = "no bfloat16 (float16 autocast)", None
            return f"{name}, {_bytes(total)}, compute capability {major}.{minor}, {how}", warning

        checks.append(_attempt(f"GPU {i}", gpu, failure=f"GPU {i} query failed"))
    return checks, True


def _cpu(torch, env: Mapping[str, str]) -> tuple[list[Check], dict]:
    """The CPU lines and their facts (``usable``, ``threads``, ``bf16``; missing where a query failed)."""
    from ..runtime.hardware import THREAD_ENV, usable_cpus
    from ..runtime.precision import cpu_has_native_bf16

    facts: dict = {}

    def cores():
        usable = usable_cpus()
        set_by = [f"{k}={env[k]}" for k in THREAD_ENV if env.get(k)]
        # what configure_threads (run by every API entry point) leaves in effect
        threads = torch.get_num_threads() if set_by else min(torch.get_num_threads(), usable)
        facts.update(usable=usable, threads=threads)
        why = f" (set by {', '.join(set_by)})" if set_by else ""
        return f"{_plural(usable, 'usable core')}, volsr uses {_plural(threads, 'thread')}{why}", None

    def bf16():
        facts["bf16"] = bool(cpu_has_native_bf16())
        if facts["bf16"]:
            return "native (avx512_bf16 / amx_bf16)", None
        return "not native (--precision auto computes float32 on this CPU)", None

    return [_attempt("CPU", cores), _attempt("CPU bfloat16", bf16)], facts


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _memory(torch, gpus: bool) -> list[Check]:
    from ..runtime.hardware import host_available_memory

    def host():
        avail = host_available_memory()
        warning = None
        if avail < PEAK_RSS_GIB * (1 << 30):
            warning = (f"only {_bytes(avail)} of host memory free, less than the {PEAK_RSS_GIB} GiB peak of a "
                       "64x512x512 restore (README, Performance): close other programs or restore a crop")
        return f"{_bytes(avail)} available (host)", warning

    checks = [_attempt("memory", host)]
    if gpus:
        try:
            n = torch.cuda.device_count()
        except Exception:
            n = 0
        for i in range(n):
            def free(i=i):
                f, t = torch.cuda.mem_get_info(i)
                return f"{_bytes(f)} free of {_bytes(t)}", None

            checks.append(_attempt(f"GPU {i} memory", free))
    return checks


def _models() -> list[Check]:
    from ..checkpoint import bundled_models_dir, list_bundled_models, read_model_info

    try:
        models = list_bundled_models()
    except Exception as err:
        return [Check("models", f"unavailable ({_reason(err)})", f"bundled models unreadable: {_reason(err)}")]
    if not models:
        return [Check("models", f"none installed (looked in {bundled_models_dir()})",
                      "no bundled models: `volsr infer --sample` and `--model sample_model` will fail; "
                      "reinstall volsr")]
    checks = []
    for m in models:
        def describe(m=m):
            text = f"{m['name']}: {m['engine']}, {m['size_bytes'] / 1e6:.1f} MB"
            if m.get("n_parameters"):
                text += f", {m['n_parameters'] / 1e6:.2f} M parameters"
            try:
                config = read_model_info(m["path"]).get("config", {})
            except Exception:
                config = {}
            facts = []
            if config.get("sampler"):
                facts.append(f"sampler {config['sampler']}")
            if config.get("sampling_steps") is not None:
                facts.append(f"{config['sampling_steps']} steps")
            for key, word in (("inference_mode", "inference"), ("realism", "realism"),
                              ("noise_match", "noise match")):
                if config.get(key) is not None:
                    facts.append(f"{word} {config[key]}")
            if facts:
                text += "; " + ", ".join(facts)
            return text, None

        checks.append(_attempt("model", describe))
    return checks


def _fid_weights() -> Check:
    from ..metrics import features

    def lookup():
        path = features.find_inception_weights()
        torchvision = _optional_version("torchvision") != "not installed"
        tv_fix = "; torchvision is not installed: pip install 'volsr[metrics]'" if not torchvision else ""
        if path is None:
            fix = str(features._missing_weights_error())
            return f"missing: {fix}{tv_fix}", ("no Inception weights: `volsr score` / `volsr eval` with the "
                                               "default inception features will stop (see the FID weights line)")
        if not torchvision:
            return f"found: {path}{tv_fix}", "torchvision is not installed: the inception features will stop"
        return f"found: {path}", None

    return _attempt("FID weights", lookup, failure="Inception weights")


def _gui(env: Mapping[str, str]) -> Check:
    def probe():
        try:
            import napari
        except ImportError as err:
            return f"napari not installed ({_reason(err)}): pip install 'volsr[napari]'", None
        try:
            import qtpy

            qt = f"Qt binding {qtpy.API_NAME} {qtpy.QT_VERSION}"
        except Exception as err:  # qtpy raises its own error when no binding is installed
            return (f"napari {napari.__version__} imports, but no Qt binding ({_reason(err)}): pip install PyQt6",
                    None)
        text = f"napari {napari.__version__} and {qt} import"
        if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            text += "; no display: run napari under `xvfb-run -a napari` (the command line needs none)"
        else:
            text += f"; display {env.get('DISPLAY') or env.get('WAYLAND_DISPLAY') or 'native'}"
        return text, None

    return _attempt("napari GUI", probe)


def gather(env: Mapping[str, str] | None = None) -> list[Check]:
    """Every fact of ``volsr doctor`` as :class:`Check` records, in print order; never raises."""
    env = os.environ if env is None else env
    checks = _versions()
    try:
        import torch
    except Exception as err:  # pragma: no cover - volsr itself needs torch
        return checks + [Check("device (auto)", f"unavailable ({_reason(err)})", f"torch: {_reason(err)}")]
    from ..runtime.hardware import resolve_device
    from ..runtime.precision import compute_dtype_name, resolve_precision

    device = [None]

    def auto():
        device[0] = resolve_device("auto")
        return str(device[0]), None

    checks.append(_attempt("device (auto)", auto, failure="device"))
    cuda, gpus = _cuda(torch)
    checks += cuda
    cpu, cpu_facts = _cpu(torch, env)
    checks += cpu
    checks += _memory(torch, gpus)
    dev = device[0] if device[0] is not None else torch.device("cpu")
    checks.append(_attempt("precision (auto)", lambda: (resolve_precision("auto", dev), None)))
    checks.append(_attempt("compute dtype", lambda: (compute_dtype_name(dev, "auto"), None)))
    if dev.type == "cpu":
        line = next(c for c in checks if c.label == "device (auto)")
        where = [_plural(cpu_facts["usable"], "core")] if "usable" in cpu_facts else []
        if cpu_facts.get("bf16") is False:
            where.append("no native bfloat16")
        how = f" ({', '.join(where)})" if where else ""
        line.warning = line.warning or f"CPU only{how}: {CPU_TIMING}"
    checks += _models()
    checks.append(_fid_weights())
    checks.append(_gui(env))
    return checks


def summary(checks: list[Check]) -> str:
    """``"warnings: a; b"`` when any record warns, else ``"ready: <device> (<dtype>), ..."``."""
    warnings = [c.warning for c in checks if c.warning]
    if warnings:
        return "warnings: " + "; ".join(warnings)
    values = {c.label: c.value for c in checks}
    n = sum(c.label == "model" for c in checks)
    return (f"ready: {values.get('device (auto)', '?')} ({values.get('compute dtype', '?')}), "
            f"{_plural(n, 'bundled model')}, FID weights found")


def run_doctor(args: argparse.Namespace) -> int:
    """Handler of ``volsr doctor``: the records, aligned like ``volsr info``, then the summary line."""
    checks = gather()
    line = summary(checks)
    if args.json:
        print(json.dumps({"records": [asdict(c) for c in checks], "summary": line}, indent=2))
        return 0
    width = max(len(c.label) for c in checks) + 2
    for c in checks:
        print(f"{c.label + ':':<{width}}{c.value}")
    print(line)
    return 0
