"""MS-UNet: the paper's masked-slice regression baseline (one UNet pass, L1).

The MSDSR paper (Sec. 4, "MS-UNet baseline") trains a UNet on the same masked input as
the diffusion model — high-resolution planes "interlaced with random noise rows" — with an
L1 loss to the full high-resolution plane, learning rate 1e-3. It is one forward pass, so
it is fast and its result is the conditional *mean* (sharp where the known rows decide,
smooth elsewhere), the paper's "perceptually blurry" comparison row. The same network is
the first stage of two-stage MSDSR (:mod:`volsr.engines.msdsr`).

Configurable departures from the paper, each a config key:

* ``fill``: what the unknown rows hold at the input — ``'noise'`` (paper: uniform [0, 1)
  noise, the range of normalised data), ``'zeros'``, or ``'linear'`` (linear interpolation
  between the nearest known rows; default). With ``'linear'`` and ``residual=True`` the
  network learns a correction to linear interpolation, which a short CPU fit reaches much
  sooner than learning the whole plane from noise.
* ``mask_channel``: an extra input channel that is 1 on known rows (default True; the
  paper's network had none — noise rows were its only cue).
* ``loss_rows``: ``'all'`` (paper: L1 over the full plane) or ``'unknown'``.

``preset='paper'`` restores the paper's setting (noise fill, no residual, no mask channel,
the paper's random masks, BasicUNet's default widths 32-256).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..config import check_choice
from ..errors import VolsrError
from ..training.masks import linear_fill, row_mask
from .base import Capabilities, RestoreOptions
from .learned import LearnedEngine
from .unet_common import (
    BasicUNetMemory,
    UNetConfig,
    build_basic_unet,
    forward_padded,
    padded_size,
    unet_presets,
)

__all__ = ["MSUNetEngine", "MSUNetConfig", "RowRegressor"]


@dataclasses.dataclass(frozen=True)
class MSUNetConfig(UNetConfig):
    fill: str = "linear"
    mask_channel: bool = True
    loss_rows: str = "all"

    def validate(self) -> None:
        super().validate()
        check_choice("fill", self.fill, ("noise", "zeros", "linear"))
        check_choice("loss_rows", self.loss_rows, ("all", "unknown"))
        if self.residual and self.fill != "linear":
            raise VolsrError("residual=True adds the network output to the linear fill; use fill='linear'")


@dataclasses.dataclass(frozen=True)
class RowRegressor:
    """The masked-row regression: input construction and one forward pass.

    Shared by MS-UNet and by the first stage of two-stage MSDSR, so both build their
    network input the same way in training and at inference.
    """

    channels: int
    fill: str = "linear"
    mask_channel: bool = True
    residual: bool = True

    @property
    def in_channels(self) -> int:
        return self.channels + (1 if self.mask_channel else 0)

    def build(self, features, norm: str = "instance", upsample: str = "deconv") -> torch.nn.Module:
        return build_basic_unet(self.in_channels, self.channels, features, norm, upsample, zero_last=self.residual)

    def inputs(self, planes: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Planes with unknown rows filled (+ mask channel): (N, C[+1], H, W)."""
        n, _, h, w = planes.shape
        m = row_mask(known, n, h, planes.device)
        if self.fill == "linear":
            x = linear_fill(planes, m[:, 0, :, 0])
        elif self.fill == "zeros":
            x = torch.where(m, planes, torch.zeros((), dtype=planes.dtype, device=planes.device))
        else:
            noise = torch.rand(planes.shape, generator=generator, device=planes.device, dtype=planes.dtype)
            x = torch.where(m, planes, noise)
        if self.mask_channel:
            x = torch.cat([x, m.to(planes.dtype).expand(n, 1, h, w)], dim=1)
        return x

    def __call__(self, net: torch.nn.Module, planes: torch.Tensor, known: torch.Tensor,
                 generator: torch.Generator | None = None, chunk_pixels: int | None = None) -> torch.Tensor:
        x = self.inputs(planes, known, generator)
        out = forward_padded(net, x, chunk_pixels=chunk_pixels)
        return out + x[:, : self.channels] if self.residual else out

    def upscale(self, net: torch.nn.Module, images: torch.Tensor, scale: int,
                chunk_pixels: int | None = None) -> torch.Tensor:
        """In-plane task: the bicubic upsampling is the input (no row is known: mask channel 0)."""
        up = F.interpolate(images, scale_factor=int(scale), mode="bicubic", align_corners=False)
        x = up
        if self.mask_channel:
            x = torch.cat([up, torch.zeros_like(up[:, :1])], dim=1)
        out = forward_padded(net, x, chunk_pixels=chunk_pixels)
        return out + up if self.residual else out


class MSUNetEngine(BasicUNetMemory, LearnedEngine):
    """Masked-slice regression UNet (the paper's MS-UNet baseline); see the module docstring.

    Examples
    --------
    >>> eng = MSUNetEngine(preset="tiny")
    >>> planes = torch.rand(2, 1, 20, 30)
    >>> known = torch.zeros(20, dtype=torch.bool); known[::4] = True
    >>> eng.restore(planes, known).shape
    torch.Size([2, 1, 20, 30])
    """

    name = "msunet"
    description = "masked-slice regression UNet (MSDSR paper's MS-UNet baseline): one pass, L1"
    capabilities: ClassVar[Capabilities] = Capabilities(learned=True, upscale=True)
    Config = MSUNetConfig
    PRESETS = unet_presets({"fill": "noise", "residual": False, "mask_channel": False, "loss_rows": "all",
                            "mask_scheme": "random", "ema_decay": 0.9999})

    @property
    def regressor(self) -> RowRegressor:
        c = self.cfg
        return RowRegressor(int(c.channels), c.fill, bool(c.mask_channel), bool(c.residual))

    def build_network(self) -> torch.nn.Module:
        return self.regressor.build(self.cfg.features, self.cfg.norm, self.cfg.upsample)

    def training_loss(self, hr: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 between the one-pass prediction from the (degraded) known rows and the HR plane.

        In-plane task (isotropic degradation): L1 between the upscaled degraded crop and the crop.
        """
        self.check_channels(hr.shape[1])
        if self.task == "isotropic":
            deg = self.cfg.degradation
            h, w = hr.shape[-2:]
            hr = hr[..., : h // deg.scale * deg.scale, : w // deg.scale * deg.scale]
            return (self.regressor.upscale(self.network, deg(hr), deg.scale) - hr).abs().mean()
        measured = self.cfg.degradation.measured(hr)
        diff = (self.regressor(self.network, measured, known, generator) - hr).abs()
        if self.cfg.loss_rows == "unknown":
            weight = (~row_mask(known, *hr.shape[:1], hr.shape[2], hr.device)).to(diff.dtype).expand_as(diff)
            return (diff * weight).sum() / weight.sum().clamp(min=1.0)
        return diff.mean()

    def _chunk_pixels(self, height: int, width: int, options: RestoreOptions | None = None) -> int:
        return self.planes_per_call(height, width, options) * padded_size(height) * padded_size(width)

    @torch.no_grad()
    def _restore(self, planes: torch.Tensor, known: torch.Tensor, options: RestoreOptions, **run: Any) -> torch.Tensor:
        """One pass of the EMA network over all planes (any H, W; padded, chunked, cropped).

        ``options.seed`` fixes the noise rows when ``fill='noise'``; ``options.batch_size``
        caps planes per forward call (default: by pixel count, fewer when memory is short).
        """
        self.check_channels(planes.shape[1])
        self._check_task("rows")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(options.seed or 0))
        x = planes.to(self.device, torch.float32)
        out = self.regressor(self.sampling_network.eval(), x, known.to(self.device), gen,
                             chunk_pixels=self._chunk_pixels(x.shape[-2], x.shape[-1], options))
        return out.to(planes.device, planes.dtype)

    @torch.no_grad()
    def _upscale(self, images: torch.Tensor, scale: int, options: RestoreOptions, **run: Any) -> torch.Tensor:
        """One pass of the EMA network on the bicubic upsampling (models trained with --task upscale)."""
        self.check_channels(images.shape[1])
        self._check_upscale(scale)
        h, w = images.shape[-2] * int(scale), images.shape[-1] * int(scale)
        out = self.regressor.upscale(self.sampling_network.eval(), images.to(self.device, torch.float32), int(scale),
                                     chunk_pixels=self._chunk_pixels(h, w))
        return out.to(images.device, images.dtype)
