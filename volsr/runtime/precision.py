"""Arithmetic precision of network inference: float32 (bit-reproducible) or bfloat16 autocast.

bfloat16 halves memory traffic and, on CPUs with AVX-512 BF16 / AMX and on recent GPUs, runs
matrix products about twice as fast; autocast keeps reductions and the sampler's arithmetic in
float32. GPUs without bfloat16 use float16. ``float32`` runs exactly as before.

``auto`` (the default of :func:`volsr.restore`) picks bfloat16 where the hardware computes it
natively (a CUDA device; a CPU whose flags include ``avx512_bf16`` or ``amx_bf16``) and float32
elsewhere (on CPUs that only *emulate* bfloat16 it is slower than float32, not faster), and in
both cases holds the engine's convolution-heavy network (:attr:`Engine.channels_last_network`)
channels-last: the MSDSR denoiser ran 1.44x faster in float32 and 1.29x in bfloat16 that way,
while the BasicUNets did not gain (``benchmarks/results/results_speed.md``). They also run its
self-attention through PyTorch's fused ``scaled_dot_product_attention`` (:func:`fused_attention`).
``float32`` is the exact arithmetic of earlier versions.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import torch

from ..errors import InputError

PRECISIONS = ("auto", "float32", "bfloat16")

__all__ = ["PRECISIONS", "inference_context", "fused_attention", "check_precision", "resolve_precision",
           "compute_dtype_name", "exact_arithmetic"]

#: The precision of the innermost :func:`inference_context` of this thread (None outside one).
_ACTIVE: contextvars.ContextVar[str | None] = contextvars.ContextVar("volsr_precision", default=None)


def exact_arithmetic() -> bool:
    """Whether this thread must compute bit-exactly: inside ``inference_context(precision='float32')``
    or outside any inference context (a direct engine call keeps its earlier arithmetic)."""
    return _ACTIVE.get() in (None, "float32")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 dot products in hardware (Linux CPU flags)."""
    try:
        with open(cpuinfo) as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:  # not Linux: be conservative
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bfloat16`` where the device computes it natively, else ``float32``."""
    check_precision(precision)
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16"  # float16 on GPUs without bfloat16 (see _low_dtype)
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"


def _low_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def channels_last(network: torch.nn.Module | None):
    """Hold ``network``'s weights channels-last inside the block (convolutions pick that layout up).

    oneDNN and cuDNN run 2D convolutions 1.2-2x faster in NHWC (``benchmarks/results/results_speed.md``);
    the block restores the contiguous layout, so training and saving see the usual tensors.
    """
    if network is None:
        yield
        return
    network.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        network.to(memory_format=torch.contiguous_format)


#: Fewest tokens per plane for which :func:`fused_attention` uses the fused kernel.
FUSED_MIN_TOKENS = 1024


def _choose_kernel(block: torch.nn.Module, args) -> None:
    """Forward pre-hook: fused attention for ``(batch, tokens, channels)`` inputs with many tokens."""
    block.use_flash_attention = args[0].shape[1] >= FUSED_MIN_TOKENS


@contextlib.contextmanager
def fused_attention(network: torch.nn.Module | None):
    """Run ``network``'s MONAI self-attention through ``scaled_dot_product_attention`` inside the
    block, for planes with at least :data:`FUSED_MIN_TOKENS` tokens.

    MONAI builds the DiffusionModelUNet's middle-block attention with the explicit
    (tokens x tokens) matrix unless asked otherwise; on real-sized planes (253x512: 2,048 tokens
    at the bottom of the small preset) einsum, scaling and softmax over that matrix took a fifth
    of a denoiser call, and the fused kernel made the call 1.2x faster in bfloat16; at 1,024
    tokens 1.1x, at 256-384 tokens no faster (``benchmarks/results/results_speed.md``). Same weights;
    it changes the rounding, so the bit-exact ``float32`` mode keeps the blocks as built.
    """
    blocks = [m for m in (network.modules() if network is not None else ()) if hasattr(m, "use_flash_attention")]
    before = [m.use_flash_attention for m in blocks]
    hooks = [m.register_forward_pre_hook(_choose_kernel) for m in blocks]
    try:
        yield
    finally:
        for m, flag, hook in zip(blocks, before, hooks):
            hook.remove()
            m.use_flash_attention = flag


def inference_context(device: torch.device, precision: str = "float32", network: torch.nn.Module | None = None):
    """``torch.inference_mode``; ``bfloat16`` (or ``auto`` resolving to it) adds autocast on ``device``;
    ``auto`` and ``bfloat16`` hold ``network`` channels-last, its attention fused. ``float32`` leaves
    the arithmetic exactly as it was (bit-reproducible, the same numbers as earlier versions)."""
    device = torch.device(device)
    usable = device.type in ("cpu", "cuda")
    autocast = usable and resolve_precision(precision, device) == "bfloat16"
    stack = contextlib.ExitStack()
    token = _ACTIVE.set(precision)
    stack.callback(_ACTIVE.reset, token)
    if usable and precision != "float32":  # outside inference mode: re-laid weights stay ordinary tensors
        stack.enter_context(channels_last(network))
        stack.enter_context(fused_attention(network))
    stack.enter_context(torch.inference_mode())
    if autocast:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=_low_dtype(device)))
    return stack


def compute_dtype_name(device: torch.device, precision: str = "float32", channels_last: bool = True) -> str:
    """What :func:`inference_context` makes the network compute in, for log lines."""
    device = torch.device(device)
    if device.type not in ("cpu", "cuda") or precision == "float32":
        return "float32"
    layout = ", channels-last" if channels_last else ""
    if resolve_precision(precision, device) == "float32":
        return "float32" + layout
    return f"{str(_low_dtype(device)).removeprefix('torch.')} autocast" + layout
