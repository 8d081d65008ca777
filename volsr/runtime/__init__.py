"""How work meets the hardware: device, CPU threads, memory-bounded batches, precision, side-by-side calls.

Nothing here changes a result's random draws; it only decides where and how fast the
arithmetic runs (see :mod:`volsr.runtime.hardware`, :mod:`volsr.runtime.precision`,
:mod:`volsr.runtime.concurrency`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "MAX_WORKERS": "concurrency",
    "chunk_workers": "concurrency",
    "run_side_by_side": "concurrency",
    "split_side_by_side": "concurrency",
    "ATTENTION_BYTES": "hardware",
    "CGROUP": "hardware",
    "CONV_BYTES": "hardware",
    "MEMORY_FRACTION": "hardware",
    "OOM_ERRORS": "hardware",
    "THREAD_ENV": "hardware",
    "available_memory": "hardware",
    "choose_batch_size": "hardware",
    "configure_threads": "hardware",
    "format_bytes": "hardware",
    "free_cached_memory": "hardware",
    "halving_batches": "hardware",
    "host_available_memory": "hardware",
    "is_out_of_memory": "hardware",
    "log_run": "hardware",
    "memory_budget": "hardware",
    "planes_text": "hardware",
    "read_cpu_quota": "hardware",
    "run_summary": "hardware",
    "to_device": "hardware",
    "unet_bytes_per_pixel": "hardware",
    "usable_cpus": "hardware",
    "FUSED_MIN_TOKENS": "precision",
    "PRECISIONS": "precision",
    "channels_last": "precision",
    "check_precision": "precision",
    "compute_dtype_name": "precision",
    "cpu_has_native_bf16": "precision",
    "exact_arithmetic": "precision",
    "fused_attention": "precision",
    "inference_context": "precision",
    "resolve_precision": "precision",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
