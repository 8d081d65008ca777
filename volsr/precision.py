"""Arithmetic precision of network inference: float32 (bit-reproducible) or bfloat16 autocast.

bfloat16 halves memory traffic and, on CPUs with AVX-512 BF16 / AMX and on recent GPUs, runs
matrix products about twice as fast; autocast keeps reductions and the sampler's arithmetic in
float32. GPUs without bfloat16 use float16. ``float32`` runs exactly as before.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import InputError

PRECISIONS = ("float32", "bfloat16")

__all__ = ["PRECISIONS", "inference_context", "check_precision", "compute_dtype_name"]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _low_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def inference_context(device: torch.device, precision: str = "float32"):
    """``torch.inference_mode`` plus, for ``bfloat16``, autocast on ``device``."""
    check_precision(precision)
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if precision != "float32" and device.type in ("cpu", "cuda"):
        stack.enter_context(torch.autocast(device_type=device.type, dtype=_low_dtype(device)))
    return stack


def compute_dtype_name(device: torch.device, precision: str = "float32") -> str:
    """What :func:`inference_context` makes the network compute in, for log lines."""
    check_precision(precision)
    if precision == "float32" or torch.device(device).type not in ("cpu", "cuda"):
        return "float32"
    return f"{str(_low_dtype(torch.device(device))).removeprefix('torch.')} autocast"
