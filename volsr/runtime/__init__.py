"""How work meets the hardware: device, CPU threads, memory-bounded batches, precision, side-by-side calls.

Nothing here changes a result's random draws; it only decides where and how fast the
arithmetic runs (see :mod:`volsr.runtime.hardware`, :mod:`volsr.runtime.precision`,
:mod:`volsr.runtime.concurrency`).
"""


from .concurrency import (  # noqa: F401
    MAX_WORKERS,
    chunk_workers,
    run_side_by_side,
    split_side_by_side,
)
from .hardware import (  # noqa: F401
    ATTENTION_BYTES,
    CGROUP,
    CONV_BYTES,
    MEMORY_FRACTION,
    THREAD_ENV,
    available_memory,
    choose_batch_size,
    configure_threads,
    format_bytes,
    host_available_memory,
    log_run,
    memory_budget,
    planes_text,
    read_cpu_quota,
    run_summary,
    to_device,
    unet_bytes_per_pixel,
    usable_cpus,
)
from .precision import (  # noqa: F401
    FUSED_MIN_TOKENS,
    PRECISIONS,
    channels_last,
    check_precision,
    compute_dtype_name,
    cpu_has_native_bf16,
    exact_arithmetic,
    fused_attention,
    inference_context,
    resolve_precision,
)

__all__ = [
    "ATTENTION_BYTES",
    "CGROUP",
    "CONV_BYTES",
    "FUSED_MIN_TOKENS",
    "MAX_WORKERS",
    "MEMORY_FRACTION",
    "PRECISIONS",
    "THREAD_ENV",
    "available_memory",
    "channels_last",
    "check_precision",
    "choose_batch_size",
    "chunk_workers",
    "compute_dtype_name",
    "configure_threads",
    "cpu_has_native_bf16",
    "exact_arithmetic",
    "format_bytes",
    "fused_attention",
    "host_available_memory",
    "inference_context",
    "log_run",
    "memory_budget",
    "planes_text",
    "read_cpu_quota",
    "resolve_precision",
    "run_side_by_side",
    "run_summary",
    "split_side_by_side",
    "to_device",
    "unet_bytes_per_pixel",
    "usable_cpus",
]
