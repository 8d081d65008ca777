"""Volume restoration from planes: XZ/YZ slicing and fusion, the optional 3D blur, in-plane upscaling,
and blockwise streaming of images larger than memory.

The pipeline hands 2D planes (sparse axis as rows, see :mod:`volsr.grid`) to any
:class:`volsr.engines.Engine` and puts the results back into a volume; it never branches on
the engine's kind.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "BlockPlan": "blocks",
    "Span": "blocks",
    "plan_blocks": "blocks",
    "window_side": "blocks",
    "upscale_volume": "inplane",
    "BLOCK_SAMPLES": "streaming",
    "DEFAULT_BLOCK": "streaming",
    "NORM_SAMPLE_PIXELS": "streaming",
    "STREAM_SAMPLES": "streaming",
    "default_block": "streaming",
    "open_result": "streaming",
    "open_streamable": "streaming",
    "stream_upscale": "streaming",
    "FUSIONS": "volume",
    "PLANES": "volume",
    "VolumeResult": "volume",
    "blur_volume": "volume",
    "check_options": "volume",
    "default_batch_size": "volume",
    "fuse": "volume",
    "restore_volume": "volume",
    "slab_seed": "volume",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
