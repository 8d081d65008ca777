"""The denoising network of MSDSR: MONAI's 2D ``DiffusionModelUNet`` in named size presets.

The network is only the function ``(x_t [, mask], t) -> prediction``; the noise schedule and
the sampling loop live in :mod:`volsr.diffusion.schedule` and :mod:`volsr.diffusion.sampler` (the
diffusers split: scheduler, model, pipeline).

Presets
-------
``tiny``
    For tests: a few tens of thousands of parameters, milliseconds per call.
``small``
    The default: trains usefully on 2 CPU cores within minutes and restores a 256x256x61
    volume in a few minutes (sizes chosen by measurement, see ``benchmarks/bench_msdsr.py``).
``paper``
    The paper's 274M-parameter UNet (channels 224/448/672/896, 2 residual blocks per level,
    self-attention at the three lowest levels, 32 channels per head) for users with GPUs.

Input and output
----------------
``in_channels = C`` (the paper) ``+ 1`` when the engine feeds the known-row mask as an
extra channel ``+ C`` when it feeds the linear interpolation of the known rows as a
condition (volsr's defaults); ``out_channels = C``. Plane height and
width must be multiples of :func:`size_multiple` (the sampler pads to it).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        channels=(8, 16), attention_levels=(False, False), num_res_blocks=1,
        norm_num_groups=4, num_head_channels=8,
    ),
    "small": dict(
        channels=(16, 32, 64, 64), attention_levels=(False, False, False, False), num_res_blocks=1,
        norm_num_groups=8, num_head_channels=16,
    ),
    "paper": dict(
        channels=(224, 448, 672, 896), attention_levels=(False, True, True, True), num_res_blocks=2,
        norm_num_groups=32, num_head_channels=32,
    ),
}
"""Architecture of each preset (keyword arguments of ``DiffusionModelUNet``)."""

PAPER_PARAMETERS = 274_000_000
"""Parameter count the paper reports for its UNet (Sec. 4.2)."""


def preset_names() -> list[str]:
    """Names accepted by :func:`build_diffusion_unet`."""
    return list(PRESETS)


def preset_spec(preset: str) -> dict[str, Any]:
    """The ``DiffusionModelUNet`` keyword arguments of ``preset`` (a copy).

    Raises
    ------
    ValueError
        If ``preset`` is not one of :func:`preset_names`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown network preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def size_multiple(preset: str) -> int:
    """Plane height/width must be multiples of this: 2**(levels - 1) (one halving per level)."""
    return 2 ** (len(preset_spec(preset)["channels"]) - 1)


def build_diffusion_unet(
    preset: str = "small", *, channels: int = 1, mask_channel: bool = True, condition_channels: int = 0,
    device: str | torch.device | None = None,
) -> torch.nn.Module:
    """A fresh MONAI ``DiffusionModelUNet`` (2D) for ``channels``-channel planes.

    Parameters
    ----------
    preset : {'tiny', 'small', 'paper'}
        Network size, see the module docstring.
    channels : int
        Image channels C (>= 1); the network outputs C channels.
    mask_channel : bool
        Add one input channel carrying the known-row mask (1 on measured rows). Without it
        (the paper) the network has to infer which rows are clean from the image itself.
    condition_channels : int
        Extra conditioning input channels (volsr: ``C`` channels holding the linear
        interpolation of the known rows, SR3-style; 0 in the paper).
    device : str or torch.device, optional
        Where to allocate the weights; ``'meta'`` builds the architecture without memory
        (used to count the ``paper`` preset's parameters cheaply).

    Examples
    --------
    >>> net = build_diffusion_unet("tiny", channels=1)
    >>> out = net(torch.zeros(2, 2, 16, 16), timesteps=torch.tensor([0, 999]))
    >>> tuple(out.shape)
    (2, 1, 16, 16)
    """
    from monai.networks.nets import DiffusionModelUNet

    spec = preset_spec(preset)
    if int(channels) < 1:
        raise ValueError(f"channels must be >= 1, got {channels!r}")
    if int(condition_channels) < 0:
        raise ValueError(f"condition_channels must be >= 0, got {condition_channels!r}")
    in_ch = int(channels) + (1 if mask_channel else 0) + int(condition_channels)
    # attention through PyTorch's fused scaled_dot_product_attention (same weights, less memory)
    spec["use_flash_attention"] = any(spec["attention_levels"])
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return DiffusionModelUNet(spatial_dims=2, in_channels=in_ch, out_channels=int(channels), **spec)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (works for ``meta``-device modules)."""
    return sum(p.numel() for p in module.parameters())
