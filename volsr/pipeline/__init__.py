"""Volume restoration from planes: XZ/YZ slicing and fusion, the optional 3D blur, in-plane upscaling,
and blockwise streaming of images larger than memory.

The pipeline hands 2D planes (sparse axis as rows, see :mod:`volsr.grid`) to any
:class:`volsr.engines.Engine` and puts the results back into a volume; it never branches on
the engine's kind.
"""


from .blocks import (  # noqa: F401
    BlockPlan,
    Span,
    plan_blocks,
    window_side,
)
from .inplane import (  # noqa: F401
    upscale_volume,
)
from .streaming import (  # noqa: F401
    BLOCK_SAMPLES,
    DEFAULT_BLOCK,
    NORM_SAMPLE_PIXELS,
    STREAM_SAMPLES,
    default_block,
    open_result,
    open_streamable,
    stream_upscale,
)
from .volume import (  # noqa: F401
    FUSIONS,
    PLANES,
    VolumeResult,
    blur_volume,
    check_options,
    default_batch_size,
    fuse,
    restore_volume,
    slab_seed,
)

__all__ = [
    "BLOCK_SAMPLES",
    "BlockPlan",
    "DEFAULT_BLOCK",
    "FUSIONS",
    "NORM_SAMPLE_PIXELS",
    "PLANES",
    "STREAM_SAMPLES",
    "Span",
    "VolumeResult",
    "blur_volume",
    "check_options",
    "default_batch_size",
    "default_block",
    "fuse",
    "open_result",
    "open_streamable",
    "plan_blocks",
    "restore_volume",
    "slab_seed",
    "stream_upscale",
    "upscale_volume",
    "window_side",
]
