"""What the two UNet regression baselines (MS-UNet, E2E-UNet) share: config, presets, network.

The network is MONAI's :class:`monai.networks.nets.BasicUNet` (2D, four 2x downsamplings,
instance norm).
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import check_choice
from ..errors import VolsrError
from ..models.padding import run_padded
from ..runtime.concurrency import split_side_by_side
from ..runtime.hardware import choose_batch_size, unet_bytes_per_pixel
from .learned import TrainableConfig

__all__ = ["UNetConfig", "UNET_PRESETS", "NET_MULTIPLE", "PIXELS_PER_CHUNK", "build_basic_unet", "forward_padded",
           "padded_size", "unet_presets", "basic_unet_bytes_per_pixel", "regression_planes", "BasicUNetMemory"]

#: BasicUNet widths (6 numbers: 5 encoder levels + the last decoder level).
UNET_PRESETS: dict[str, dict] = {
    # tests and smoke runs
    "tiny": {"features": [8, 8, 16, 16, 32, 8]},
    # ~0.5 M parameters: ~20 steps/s at batch 16, crop 48 on 2 CPU cores
    "small": {"features": [16, 16, 32, 64, 128, 16]},
    # MONAI BasicUNet defaults (~2 M parameters); the paper does not give its UNet's widths
    "paper": {"features": [32, 32, 64, 128, 256, 32]},
}

#: Every BasicUNet input side must be a multiple of 2**4.
NET_MULTIPLE = 16
#: Pixels per forward chunk at inference (bounds memory for wide planes).
PIXELS_PER_CHUNK = 1 << 19


@dataclasses.dataclass(frozen=True)
class UNetConfig(TrainableConfig):
    """BasicUNet widths and layers, and whether the net predicts a correction (``residual``)."""

    features: tuple[int, ...] = tuple(UNET_PRESETS["small"]["features"])
    norm: str = "instance"
    upsample: str = "deconv"
    residual: bool = True

    def validate(self) -> None:
        super().validate()
        if len(self.features) != 6 or not all(isinstance(f, int) and f >= 1 for f in self.features):
            raise VolsrError(f"features must be 6 positive widths (BasicUNet), got {list(self.features)!r}")
        check_choice("norm", self.norm, ("instance", "batch", "none"))
        check_choice("upsample", self.upsample, ("deconv", "pixelshuffle", "nontrainable"))
        if not isinstance(self.residual, bool):
            raise VolsrError(f"config 'residual' must be true or false, got {self.residual!r}")


def build_basic_unet(in_channels: int, out_channels: int, features, norm: str = "instance",
                     upsample: str = "deconv", zero_last: bool = False) -> torch.nn.Module:
    """A 2D MONAI BasicUNet.

    ``zero_last`` zero-initialises the final 1x1 convolution: a residual model then starts as
    exactly its base prediction (linear interpolation / the mean of two planes) and training
    can only move away from it where that lowers the loss — short CPU fits never start worse
    than the interpolation they correct.
    """
    from monai.networks.nets import BasicUNet

    features = [int(f) for f in features]
    if len(features) != 6 or min(features) < 1:
        raise VolsrError(f"features must be 6 positive widths (BasicUNet), got {features!r}")
    norm_arg = ("instance", {"affine": True}) if norm == "instance" else norm
    net = BasicUNet(spatial_dims=2, in_channels=int(in_channels), out_channels=int(out_channels),
                    features=tuple(features), norm=norm_arg, upsample=upsample)
    if zero_last:
        torch.nn.init.zeros_(net.final_conv.weight)
        torch.nn.init.zeros_(net.final_conv.bias)
    return net


def padded_size(n: int) -> int:
    """Side after padding for BasicUNet: a multiple of 16 and >= 32 (instance norm needs > 1 px at the bottom)."""
    from ..models.padding import padded_side

    return padded_side(n, NET_MULTIPLE, 2 * NET_MULTIPLE)


def forward_padded(net: torch.nn.Module, x: torch.Tensor, chunk_pixels: int | None = None) -> torch.Tensor:
    """BasicUNet on (N, C, H, W) of any H, W (padded, optionally chunked - side by side on a CPU -, cropped back)."""
    return run_padded(net, x, NET_MULTIPLE, min_side=2 * NET_MULTIPLE, chunk_pixels=chunk_pixels, side_by_side=True)


def basic_unet_bytes_per_pixel(features) -> float:
    """Activation bytes per input pixel of one BasicUNet forward (its five encoder widths; no attention)."""
    return unet_bytes_per_pixel([int(f) for f in list(features)[:5]], blocks=1)


def regression_planes(device, features, height: int, width: int, default_pixels: int = PIXELS_PER_CHUNK) -> int:
    """Planes per BasicUNet call for planes of ``height`` x ``width``.

    ``default_pixels`` (padded) per call as before, fewer only when free memory on ``device``
    is short (:func:`volsr.runtime.hardware.choose_batch_size`).
    """
    hp, wp = padded_size(height), padded_size(width)
    return choose_batch_size(basic_unet_bytes_per_pixel(features) * hp * wp, device,
                             cap=max(1, int(default_pixels) // (hp * wp)))


class BasicUNetMemory:
    """Mixin for the engines whose network is one BasicUNet (``cfg.features``): its memory plan."""

    def bytes_per_pixel(self, height: int, width: int) -> float:
        return basic_unet_bytes_per_pixel(self.cfg.features)

    def planes_per_call(self, height: int, width: int, options=None, workers: int = 1) -> int:
        """Planes per network call: the user's ``batch_size``, else :func:`regression_planes`; shared
        by ``workers`` calls running at once (what :func:`forward_padded` does with them)."""
        if options is not None and options.batch_size is not None:
            planes = int(options.batch_size)
        else:
            planes = regression_planes(self.device, self.cfg.features, height, width)
        return max(1, planes // max(1, int(workers)))

    def chunks_side_by_side(self, height: int, width: int, n_planes: int, options=None) -> int:
        """Calls at once for ``n_planes`` planes, as :func:`forward_padded` splits them
        (:func:`volsr.runtime.concurrency.split_side_by_side`)."""
        return split_side_by_side(self.device, int(n_planes), self.planes_per_call(height, width, options))[1]


def unet_presets(paper_setting: dict) -> dict[str, dict]:
    """The BasicUNet width presets; ``paper`` also selects an engine's paper setting."""
    return {k: ({**v, **paper_setting} if k == "paper" else dict(v)) for k, v in UNET_PRESETS.items()}
