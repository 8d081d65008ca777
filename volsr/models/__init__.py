"""Networks and noise schedules (MONAI). The sampling loop is in :mod:`volsr.diffusion.sampler`."""

from .diffusion_unet import PRESETS, build_diffusion_unet, count_parameters, preset_names, size_multiple

__all__ = ["PRESETS", "build_diffusion_unet", "count_parameters", "preset_names", "size_multiple"]
