"""What every diffusion engine shares: the masked-slice sampling loop and the noise schedules.

:mod:`volsr.diffusion.sampler` is the reverse chain that keeps measured rows clean at every
step; :mod:`volsr.diffusion.schedule` builds MONAI's DDPM/DDIM schedulers and the respaced
timesteps. Networks live in :mod:`volsr.models`.
"""


from .sampler import (  # noqa: F401
    DEFAULT_CHUNK_PIXELS,
    MODES,
    DenoiserInput,
    MaskedSliceSampler,
    match_noise,
    row_noise_std,
    sub_batch_planes,
)
from .schedule import (  # noqa: F401
    PREDICTION_TYPES,
    SAMPLERS,
    SCHEDULES,
    SPACINGS,
    one_step_scheduler,
    sampling_scheduler,
    sampling_timesteps,
    training_scheduler,
)

__all__ = [
    "DEFAULT_CHUNK_PIXELS",
    "DenoiserInput",
    "MODES",
    "MaskedSliceSampler",
    "PREDICTION_TYPES",
    "SAMPLERS",
    "SCHEDULES",
    "SPACINGS",
    "match_noise",
    "one_step_scheduler",
    "row_noise_std",
    "sampling_scheduler",
    "sampling_timesteps",
    "sub_batch_planes",
    "training_scheduler",
]
