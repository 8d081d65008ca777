"""What every diffusion engine shares: the masked-slice sampling loop and the noise schedules.

:mod:`volsr.diffusion.sampler` is the reverse chain that keeps measured rows clean at every
step; :mod:`volsr.diffusion.schedule` builds MONAI's DDPM/DDIM schedulers and the respaced
timesteps. Networks live in :mod:`volsr.models`.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_CHUNK_PIXELS": "sampler",
    "MODES": "sampler",
    "DenoiserInput": "sampler",
    "MaskedSliceSampler": "sampler",
    "match_noise": "sampler",
    "row_noise_std": "sampler",
    "sub_batch_planes": "sampler",
    "PREDICTION_TYPES": "schedule",
    "SAMPLERS": "schedule",
    "SCHEDULES": "schedule",
    "SPACINGS": "schedule",
    "one_step_scheduler": "schedule",
    "sampling_scheduler": "schedule",
    "sampling_timesteps": "schedule",
    "training_scheduler": "schedule",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
