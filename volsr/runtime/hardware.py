"""How inference uses the hardware: CPU threads, memory-bounded batches, host-device copies, one log line.

Why a module of its own: the number of threads, the planes per network call and how tensors
reach a GPU depend on the machine, not on the method. Keeping these decisions here (and out
of the engines' arithmetic) lets the pipeline stay reproducible: nothing decided here changes
a result's random draws (see :func:`choose_batch_size`).

- **Threads** (:func:`configure_threads`): torch's default intra-op pool is sized by the
  machine's cores, but containers and batch schedulers often grant fewer (CPU affinity,
  cgroup CPU quota); oversubscribed threads then fight over the granted CPUs. The pool is set
  once per process to :func:`usable_cpus`, unless ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` say
  otherwise.
- **Memory** (:func:`available_memory`, :func:`choose_batch_size`): planes per network call
  from free memory on the device and an engine's activation estimate
  (:meth:`volsr.engines.base.Engine.bytes_per_pixel`, :func:`unet_bytes_per_pixel`).
- **Out of memory** (:func:`halving_batches`): a batch that does not fit on the device is retried
  at half the size, from the same item, and the smaller batch kept.
- **Copies** (:func:`to_device`): pinned host memory and asynchronous copies to CUDA.
- **Log line** (:func:`log_run`): device, threads, dtype and batch, on the ``volsr`` logger.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from ..errors import InputError, VolsrError

__all__ = ["usable_cpus", "read_cpu_quota", "configure_threads", "available_memory", "memory_budget",
           "host_available_memory", "choose_batch_size", "unet_bytes_per_pixel", "to_device", "run_summary",
           "log_run", "planes_text", "format_bytes", "THREAD_ENV", "MEMORY_FRACTION", "OOM_ERRORS",
           "is_out_of_memory", "free_cached_memory", "halving_batches"]

logger = logging.getLogger("volsr")

#: Environment variables through which a user sets the thread count themselves.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

CGROUP = Path("/sys/fs/cgroup")
#: Share of the free memory one network call may take (the rest: the volume, the result,
#: other programs, allocator slack).
MEMORY_FRACTION = 0.5
_threads_configured = False
T = TypeVar("T")


# -- threads --------------------------------------------------------------------------------------
def _quota_cpus(text: str) -> float | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` text ("quota period"); None for "max" or no limit."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = float(parts[0])
        period = float(parts[1]) if len(parts) > 1 else 100000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_cpu_quota(root: Path = CGROUP) -> str:
    """This cgroup's CPU quota as cgroup v2 ``cpu.max`` text ("quota period", "max"; "" if unknown).

    cgroup v2 reads ``cpu.max``; cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota
    -1 = no limit) are translated to the same form.
    """
    v2 = _read_text(root / "cpu.max")
    if v2 is not None:
        return v2
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read_text(root / sub / "cpu.cfs_quota_us"), _read_text(root / sub / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return "max" if quota.startswith("-") else f"{quota} {period}"
    return ""


def usable_cpus(affinity: Iterable[int] | None = None, cgroup_text: str | None = None) -> int:
    """CPUs this process may actually use: its CPU affinity, capped by the cgroup CPU quota.

    Parameters
    ----------
    affinity : iterable of int, optional
        CPU ids the process may run on (default ``os.sched_getaffinity(0)``, or all CPUs where
        that does not exist).
    cgroup_text : str, optional
        The CPU quota in cgroup v2 ``cpu.max`` form: ``"150000 100000"`` (1.5 CPUs) or
        ``"max"`` (no limit); ``""`` for none. Default: read from the system (:func:`read_cpu_quota`).

    Returns
    -------
    int
        ``min(len(affinity), floor(quota / period))``, at least 1.

    Examples
    --------
    >>> usable_cpus(affinity={0, 1, 2, 3}, cgroup_text="150000 100000")
    1
    >>> usable_cpus(affinity={0, 1, 2, 3}, cgroup_text="max")
    4
    """
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    n = len(set(affinity))
    quota = _quota_cpus(read_cpu_quota() if cgroup_text is None else cgroup_text)
    if quota is not None:
        n = min(n, int(quota))
    return max(1, n)


def configure_threads(env: Mapping[str, str] | None = None) -> int:
    """Size torch's intra-op thread pool to the CPUs this process may use, once per process.

    The pool becomes ``min(torch's default, usable_cpus())``: torch's default is the machine's
    physical core count (hyper-threads do not speed up matrix products), and CPU affinity or a
    cgroup quota (containers, batch schedulers) can only lower it. Does nothing when
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set (the user decided), and nothing after the
    first call (a later ``torch.set_num_threads`` of the user's stands). Called by the API entry
    points (restore, upscale, fit), never at import.

    Returns
    -------
    int
        The intra-op thread count in effect.
    """
    global _threads_configured
    env = os.environ if env is None else env
    if not _threads_configured:
        _threads_configured = True
        if not any(env.get(k) for k in THREAD_ENV):
            n = min(torch.get_num_threads(), usable_cpus())
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
    return torch.get_num_threads()


# -- memory ---------------------------------------------------------------------------------------
def _meminfo_available(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_memory_headroom(root: Path = CGROUP) -> int | None:
    """Limit minus usage of this cgroup (v2 ``memory.max``/``memory.current``, v1 equivalents); None if unlimited.

    v1's usage counts page cache too, so the headroom is an underestimate there (safe).
    """
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_text(root / limit_file), _read_text(root / usage_file)
        if limit is None or usage is None:
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:  # v1 "unlimited" is ~2**63
            return None
        return max(0, int(limit) - int(usage))
    return None


def host_available_memory(meminfo: str | None = None, cgroup_headroom: int | None = -1) -> int:
    """Bytes of host memory a new allocation can take without swapping.

    ``MemAvailable`` of ``/proc/meminfo`` (or ``meminfo`` text), capped by the cgroup's limit
    minus its usage (``cgroup_headroom``; -1 = read it, None = no limit). Without
    ``/proc/meminfo``: psutil when installed, else a conservative 4 GiB.
    """
    if meminfo is None:
        meminfo = _read_text(Path("/proc/meminfo"))
    avail = _meminfo_available(meminfo) if meminfo else None
    if avail is None:
        try:
            import psutil

            avail = int(psutil.virtual_memory().available)
        except ImportError:
            avail = 4 << 30
    headroom = _cgroup_memory_headroom() if cgroup_headroom == -1 else cgroup_headroom
    return avail if headroom is None else min(avail, headroom)


def available_memory(device: str | torch.device) -> int:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on CUDA, host memory otherwise (MPS shares it)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available_memory()


def memory_budget(device: str | torch.device, fraction: float = MEMORY_FRACTION) -> int:
    """Bytes one network call may take on ``device``: ``fraction`` of :func:`available_memory`."""
    return int(float(fraction) * max(0, available_memory(device)))


def choose_batch_size(bytes_per_item: float, device: str | torch.device = "cpu", *, fraction: float = MEMORY_FRACTION,
                      cap: int | None = None, available: int | None = None) -> int:
    """Items (planes) per call such that their memory stays within ``fraction`` of free memory.

    Why only a *cap*: the caller's default (measured fastest, e.g. 4 planes per diffusion call on
    a CPU) is ``cap``; free memory only lowers it, so a run with enough memory does exactly what
    it did before and the result does not depend on how much memory happened to be free.

    Parameters
    ----------
    bytes_per_item : float
        Peak memory of one item in one call (e.g. activation bytes per pixel x pixels).
    device : str or torch.device
        Where the call runs (:func:`available_memory`).
    fraction : float in (0, 1]
        Share of the free memory one call may take (:data:`MEMORY_FRACTION`).
    cap : int, optional
        Upper bound (>= 1); default none.
    available : int, optional
        Free bytes (default: :func:`available_memory` of ``device``); for tests and callers that
        already know.

    Returns
    -------
    int
        ``floor(fraction * available / bytes_per_item)`` capped by ``cap``, at least 1 (one
        item is attempted even when it alone exceeds the budget). ``bytes_per_item`` 0 gives
        ``cap`` (or 1).

    Examples
    --------
    >>> choose_batch_size(100.0, available=1000)
    5
    >>> choose_batch_size(100.0, available=1000, cap=3)
    3
    >>> choose_batch_size(5000.0, available=1000)
    1
    """
    if not 0 < float(fraction) <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    if not float(bytes_per_item) >= 0:
        raise InputError(f"bytes_per_item must be >= 0, got {bytes_per_item!r}")
    if cap is not None and int(cap) < 1:
        raise InputError(f"cap must be >= 1, got {cap!r}")
    if float(bytes_per_item) == 0:
        return int(cap) if cap is not None else 1
    budget = memory_budget(device, fraction) if available is None else int(float(fraction) * max(0, int(available)))
    n = int(budget // float(bytes_per_item))
    if cap is not None:
        n = min(n, int(cap))
    return max(1, n)


#: Bytes held per (channel x pixel at that level) in one float32 CPU forward of a UNet with one
#: block per level. Measured (``benchmarks/results/results_memory.md``, peak RSS growth): 26-33 for
#: MONAI BasicUNet and ~20 for DiffusionModelUNet on 256x256 planes, up to ~47 on 64x64 planes
#: (fixed scratch space weighs more); 48 covers all of them.
CONV_BYTES = 48.0
#: Bytes per attention-matrix entry and head: the scores and their softmax (float32 each).
ATTENTION_BYTES = 8.0


def unet_bytes_per_pixel(widths: Sequence[int], *, blocks: int = 1, attention: Iterable[tuple[int, int]] = (),
                         height: int = 0, width: int = 0) -> float:
    """Activation memory of one UNet forward per input pixel, from its channel widths (an estimate).

    Convolutions: ``CONV_BYTES * (1 + blocks) / 2 * sum(widths[l] / 4**l)`` (level ``l`` runs at
    ``1 / 2**l`` of the resolution; skip connections grow with the blocks per level).
    Self-attention that materialises its (tokens x tokens) matrix adds, for the largest such
    block (they run one after another), ``ATTENTION_BYTES * heads * tokens / 4**l`` with
    ``tokens = height * width / 4**l``: quadratic in the plane size, and the dominant term for
    big planes (MONAI's DiffusionModelUNet always has one in its middle block). Measured within
    1.0-1.9x of the true peak (``benchmarks/bench_memory.py``), never below it.

    Parameters
    ----------
    widths : sequence of int
        Channels per resolution level, full resolution first.
    blocks : int
        Residual / conv blocks per level.
    attention : iterable of (level, heads)
        Self-attention blocks that build the full attention matrix (not flash / SDPA).
    height, width : int
        The (padded) plane size the network runs on (needed for the attention term only).
    """
    conv = CONV_BYTES * (1 + int(blocks)) / 2 * sum(float(w) / 4**lvl for lvl, w in enumerate(widths))
    pixels = float(height) * float(width)
    attn = max((ATTENTION_BYTES * heads * (pixels / 4**lvl) / 4**lvl for lvl, heads in attention), default=0.0)
    return conv + attn


# -- out of memory: halve the batch and go on ------------------------------------------------------
#: What a device that ran out of memory raises: ``torch.cuda.OutOfMemoryError`` (torch >= 1.13, also
#: in CPU builds), else a RuntimeError whose message says "out of memory" (MPS, ROCm, older torch).
OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "OutOfMemoryError", None)) if e)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device's out-of-memory error (see :data:`OOM_ERRORS`)."""
    return isinstance(exc, OOM_ERRORS) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def free_cached_memory(device: str | torch.device) -> None:
    """Give the caching allocator's unused blocks back (CUDA, MPS), so a smaller retry finds them."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def halving_batches(n: int, batch_size: int, device: str | torch.device, compute: Callable[[int, int], T],
                    noun: str = "plane") -> Iterator[tuple[int, int, T]]:
    """``(start, stop, compute(start, stop))`` for consecutive batches of ``batch_size`` items of ``range(n)``;
    a batch that runs out of device memory is retried, halved, at the same ``start``.

    On an out-of-memory error (:func:`is_out_of_memory`) the allocator's cache is freed, one
    WARNING line goes to the ``volsr`` logger ("GPU out of memory at 16 planes per call; retrying
    with 8") and the same items are tried again with the batch halved (halved again until it is
    smaller than the batch that failed, for a short last batch); the smaller batch stays for the
    rest of the items. A single item that does not fit raises :class:`~volsr.errors.VolsrError`
    naming the fixes. Only ``compute`` is retried: what the caller does with a yielded result
    (writing it into an output) runs once, after its batch succeeded, so nothing is half-written.

    Seeds: with batches numbered by their ``start`` (:func:`volsr.pipeline.volume.slab_seed`), the
    batches after a halving start at ``s, s + b, s + 2b, ...`` (``s`` where the failed batch began,
    ``b`` the new size): the starts of a run with ``batch_size=b`` from the beginning whenever ``b``
    divides ``s``: always when the first batch fails (``s = 0``), and for later failures when every
    halving was exact (a power-of-two batch).
    """
    batch, start = max(1, int(batch_size)), 0
    device = torch.device(device)
    while start < n:
        stop = min(n, start + batch)
        try:
            result = compute(start, stop)
        except Exception as exc:  # anything but running out of memory goes straight up
            if not is_out_of_memory(exc):
                raise
            if stop - start == 1:
                free_cached_memory(device)
                raise VolsrError(_oom_message(device, noun)) from exc
        else:
            yield start, stop, result
            start = stop
            continue
        free_cached_memory(device)  # after the except block: the traceback's tensors are released by now
        tried, batch = stop - start, batch // 2
        while batch > 1 and batch >= tried:
            batch //= 2
        logger.warning("%s out of memory at %s per call; retrying with %d", _device_word(device),
                       planes_text(tried, noun), batch)


def _device_word(device: torch.device) -> str:
    return "GPU" if device.type in ("cuda", "mps") else device.type.upper()


def _oom_message(device: torch.device, noun: str) -> str:
    fixes = ("use --device cpu, a smaller --tile or model preset, or free GPU memory (other programs on it)"
             if device.type != "cpu" else "use a smaller --tile or model preset, or free memory")
    return f"{_device_word(device)} out of memory ({device}) even at 1 {noun} per call (--batch-size 1 does not fit): {fixes}"


# -- copies ---------------------------------------------------------------------------------------
def to_device(tensor: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to CUDA through pinned host memory with an asynchronous copy.

    Pinned (page-locked) memory lets the copy run by DMA without a staging buffer; torch's
    pinned-memory allocator keeps the buffer alive until the copy is done, and kernels queued
    on the same stream afterwards see the data. Other devices: a plain ``.to``.
    """
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


# -- the log line ---------------------------------------------------------------------------------
def format_bytes(n: float) -> str:
    """1.5 GiB-style size."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"  # pragma: no cover


def planes_text(n: int, noun: str = "plane") -> str:
    """``"1 plane"``, ``"4 planes"`` (or another ``noun``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def run_summary(action: str, device: str | torch.device, dtype: str, detail: str | None = None,
                budget: int | None = None) -> str:
    """``"restoring on cpu (2 threads), float32, batch 4 planes (memory budget 5.1 GiB)"``.

    ``detail`` is the batching in words (``"batch 4 planes"``); ``budget`` the memory one
    network call may take (:data:`MEMORY_FRACTION` of the free memory).
    """
    device = torch.device(device)
    where = f"{device.type} ({planes_text(torch.get_num_threads(), 'thread')})" if device.type == "cpu" else str(device)
    msg = f"{action} on {where}, {dtype}"
    if detail:
        msg += f", {detail}"
    if budget is not None:
        msg += f" (memory budget {format_bytes(budget)})"
    return msg


def log_run(action: str, device: str | torch.device, dtype: str, detail: str | None = None,
            budget: int | None = None) -> str:
    """Log :func:`run_summary` on the ``volsr`` logger at INFO (the CLI prints it) and return it."""
    msg = run_summary(action, device, dtype, detail, budget)
    logger.info(msg)
    return msg


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else MPS when available, else CPU.

    An explicit ``cuda`` or ``mps`` that this machine does not have is a
    :class:`~volsr.errors.VolsrError` (one line from the CLI), not torch's traceback later.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {str(device)!r}; use auto, cpu, cuda (cuda:N) or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VolsrError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise VolsrError(f"--device {dev} was asked for but this machine has {planes_text(n, 'CUDA GPU')} "
                         f"(cuda:0..cuda:{n - 1}); use --device cuda or one of those")
    if dev.type == "mps" and not _mps_available():
        raise VolsrError("--device mps was asked for but no Apple MPS GPU is available; use --device auto or cpu")
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
