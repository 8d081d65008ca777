"""Run independent sampling chunks side by side on the CPU, one intra-op thread each.

Why: the MSDSR denoiser is a UNet with 16-64 channels; its convolutions are small GEMMs and a
quarter of its time is memory-bound group norm / SiLU / adds. Splitting *one* call over two
cores (torch's intra-op threads) leaves a lot idle, while two calls on one core each keep both
busy: on 2 CPU cores, two 2-plane bfloat16 calls side by side ran 1.2-1.4x faster than the same
calls one after the other on two threads (``benchmarks/results/results_speed.md``).

Results do not change: each chunk keeps the noise it would have drawn in turn from the one
generator (:meth:`volsr.diffusion.sampler.MaskedSliceSampler` replays the generator's state per chunk),
and under bfloat16 autocast a plane's network output does not depend on the thread count or on
the other planes of its call (checked in the tests). float32 kernels do round differently on one
thread than on two (1e-7), so the ``float32`` precision - the bit-exact mode - runs chunks one at
a time, exactly as before (:func:`volsr.runtime.precision.exact_arithmetic`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from .precision import exact_arithmetic

T = TypeVar("T")

__all__ = ["chunk_workers", "split_side_by_side", "run_side_by_side"]

#: More workers than this are not used: measured only on 2 cores; beyond 8 a chunk's own
#: intra-op threads (the cores left per worker) are the better use of a large machine.
MAX_WORKERS = 8


def chunk_workers(device: str | torch.device, n_chunks: int, threads: int | None = None) -> int:
    """How many chunks to run at once: one per intra-op thread on a CPU, else 1.

    1 on GPUs (one call already fills them), in the bit-exact ``float32`` mode, with a single
    thread or chunk.
    """
    if torch.device(device).type != "cpu" or exact_arithmetic():
        return 1
    threads = torch.get_num_threads() if threads is None else int(threads)
    return max(1, min(int(n_chunks), threads, MAX_WORKERS))


def split_side_by_side(device: str | torch.device, n_planes: int, per_call: int) -> tuple[int, int]:
    """(planes per call, calls at once) for ``n_planes`` planes that one at a time would go
    ``per_call`` to a call: the same memory shared by :func:`chunk_workers` calls, and 1 call at
    once when the planes still fit in one."""
    workers = chunk_workers(device, n_planes)
    per = max(1, int(per_call) // workers)
    return per, min(workers, math.ceil(int(n_planes) / per))


def _caller_state(device_type: str) -> dict[str, Any]:
    """The thread-local torch modes of the calling thread (worker threads start without them)."""
    return {"inference": torch.is_inference_mode_enabled(), "grad": torch.is_grad_enabled(),
            "autocast": torch.is_autocast_enabled(device_type),
            "dtype": torch.get_autocast_dtype(device_type), "device_type": device_type}


@contextlib.contextmanager
def _same_state(state: dict[str, Any]):
    with contextlib.ExitStack() as stack:
        if state["inference"]:
            stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.set_grad_enabled(state["grad"]))
        if state["autocast"]:
            stack.enter_context(torch.autocast(device_type=state["device_type"], dtype=state["dtype"]))
        yield


def run_side_by_side(fn: Callable[[T], Any], items: Sequence[T], workers: int, device_type: str = "cpu") -> list:
    """``[fn(item) for item in items]`` with ``workers`` running at once, results in order.

    Each worker thread gets ``threads // workers`` intra-op threads (OpenMP's count is per
    thread, so the caller's stays as it is) and enters the caller's inference-mode / grad /
    autocast state (also per thread). The first exception (e.g.
    :class:`volsr.errors.Cancelled`) is raised after the running items finish.
    """
    workers = max(1, min(int(workers), len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    state = _caller_state(device_type)
    per_worker = max(1, torch.get_num_threads() // workers)

    def run(item):
        torch.set_num_threads(per_worker)  # OpenMP's thread count is per thread: a new one starts at the default
        with _same_state(state):
            return fn(item)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="volsr-chunk") as pool:
        futures = [pool.submit(run, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()  # items not started yet are dropped
            raise
