"""MS-UNet: the paper's masked-slice regression baseline (one UNet pass, L1).

The MSDSR paper (Sec. 4, "MS-UNet baseline") trains a UNet on the same masked input as
the diffusion model — high-resolution planes "interlaced with random noise rows" — with an
L1 loss to the full high-resolution plane, learning rate 1e-3. It is one forward pass, so
it is fast and its result is the conditional *mean* (sharp where the known rows decide,
smooth elsewhere), the paper's "perceptually blurry" comparison row.

The network is MONAI's :class:`monai.networks.nets.BasicUNet` (2D, four 2x downsamplings,
instance norm). Configurable departures from the paper, each a config key:

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

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import VolsrError
from ..masks import linear_fill
from .learned import LearnedEngine

__all__ = ["MSUNetEngine", "UNET_PRESETS", "build_basic_unet", "run_padded", "padded_size", "apply_preset"]

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


def apply_preset(presets: dict, preset: str | None, config: dict | None, extra: dict | None = None) -> dict | None:
    """Merge a named preset under an explicit config (explicit keys win)."""
    if preset is None:
        return config
    if preset not in presets:
        raise VolsrError(f"unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    return {**presets[preset], **(extra or {}), "preset": preset, **(config or {})}


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


def _pad_mode(size: int, pad: int) -> str:
    return "reflect" if pad < size else "replicate"


def padded_size(n: int, multiple: int = NET_MULTIPLE) -> int:
    """Side after padding: a multiple of ``multiple`` and at least ``2 * multiple``.

    The floor keeps the deepest BasicUNet level at >= 2x2 pixels (instance norm needs more
    than one pixel).
    """
    return max(-(-int(n) // multiple) * multiple, 2 * multiple)


def run_padded(net: torch.nn.Module, x: torch.Tensor, multiple: int = NET_MULTIPLE,
               chunk_pixels: int | None = None) -> torch.Tensor:
    """Run ``net`` on (N, C, H, W) of any H, W: pad bottom/right (see :func:`padded_size`), then crop.

    Padding reflects the plane (replicates when the plane is smaller than the pad). With
    ``chunk_pixels`` the batch is split so that each forward call holds at most that many
    pixels per channel (at least one plane).
    """
    n, _, h, w = x.shape
    ph, pw = padded_size(h, multiple) - h, padded_size(w, multiple) - w
    if ph or pw:
        if ph:
            x = F.pad(x, (0, 0, 0, ph), mode=_pad_mode(h, ph))
        if pw:
            x = F.pad(x, (0, pw, 0, 0), mode=_pad_mode(w, pw))
    if chunk_pixels is None:
        out = net(x)
    else:
        per = max(1, int(chunk_pixels) // ((h + ph) * (w + pw)))
        out = torch.cat([net(x[i:i + per]) for i in range(0, n, per)])
    return out[:, :, :h, :w]


def check_channels(engine: LearnedEngine, planes: torch.Tensor) -> None:
    """Refuse planes whose channel count differs from the model's, with the fix."""
    want = int(engine.cfg["channels"])
    if planes.shape[1] != want:
        raise VolsrError(
            f"the '{engine.name}' model was trained for {want} channel(s) but the data have {planes.shape[1]}; "
            "use a model trained on data with the same channels, or fit a new one"
        )


class MSUNetEngine(LearnedEngine):
    """Masked-slice regression UNet (the paper's MS-UNet baseline); see the module docstring.

    Parameters
    ----------
    device : str
        'auto', 'cpu', 'cuda', ...
    config : dict, optional
        Full config (as stored in a model file).
    preset : {'tiny', 'small', 'paper'}, optional
        Network size (and, for 'paper', the paper's training setting).
    **overrides
        Any config key (``channels``, ``crop``, ``fill``, ``features``, ``lr``, ...).

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

    _PAPER_SETTING = {"fill": "noise", "residual": False, "mask_channel": False, "loss_rows": "all",
                      "mask_scheme": "random", "ema_decay": 0.9999}

    def __init__(self, device="cpu", config: dict | None = None, preset: str | None = None, **overrides: Any):
        extra = self._PAPER_SETTING if preset == "paper" else None
        super().__init__(device=device, config=apply_preset(UNET_PRESETS, preset, config, extra), **overrides)
        self._validate()

    @classmethod
    def default_config(cls) -> dict:
        return {
            "preset": "small",
            "channels": 1,
            "crop": 48,
            "features": list(UNET_PRESETS["small"]["features"]),
            "norm": "instance",
            "upsample": "deconv",
            "fill": "linear",
            "residual": True,
            "mask_channel": True,
            "loss_rows": "all",
            "lr": 1e-3,  # paper
            "weight_decay": 1e-4,
            "ema_decay": 0.999,
            "mask_scheme": "mixed",
            "mask_p_strided": 0.5,
            "mask_factor_range": [1.5, 8.0],
        }

    def _validate(self) -> None:
        c = self.cfg
        if c["fill"] not in ("noise", "zeros", "linear"):
            raise VolsrError(f"fill must be 'noise', 'zeros' or 'linear', got {c['fill']!r}")
        if c["residual"] and c["fill"] != "linear":
            raise VolsrError("residual=True adds the network output to the linear fill; use fill='linear'")
        if c["loss_rows"] not in ("all", "unknown"):
            raise VolsrError(f"loss_rows must be 'all' or 'unknown', got {c['loss_rows']!r}")
        if int(c["channels"]) < 1:
            raise VolsrError(f"channels must be >= 1, got {c['channels']!r}")

    def build_network(self) -> torch.nn.Module:
        c = int(self.cfg["channels"])
        extra = 1 if self.cfg.get("mask_channel", True) else 0
        return build_basic_unet(c + extra, c, self.cfg["features"], self.cfg.get("norm", "instance"),
                                self.cfg.get("upsample", "deconv"), zero_last=bool(self.cfg["residual"]))

    # -- the masked input ----------------------------------------------------------------------
    def _inputs(self, planes: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Network input: planes with unknown rows filled (+ mask channel); (N, C[+1], H, W)."""
        n, c, h, w = planes.shape
        known = torch.as_tensor(known, dtype=torch.bool, device=planes.device)
        if known.ndim == 1:
            known = known.expand(n, h)
        m = known[:, None, :, None]
        fill = self.cfg["fill"]
        if fill == "linear":
            x = linear_fill(planes, known)
        elif fill == "zeros":
            x = torch.where(m, planes, torch.zeros((), dtype=planes.dtype, device=planes.device))
        else:
            noise = torch.rand(planes.shape, generator=generator, device=planes.device, dtype=planes.dtype)
            x = torch.where(m, planes, noise)
        if self.cfg.get("mask_channel", True):
            x = torch.cat([x, m.to(planes.dtype).expand(n, 1, h, w)], dim=1)
        return x

    def _forward(self, net: torch.nn.Module, x: torch.Tensor, chunk_pixels: int | None = None) -> torch.Tensor:
        out = run_padded(net, x, chunk_pixels=chunk_pixels)
        if self.cfg["residual"]:
            out = out + x[:, : int(self.cfg["channels"])]
        return out

    def training_loss(self, hr: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 between the one-pass prediction and the HR plane (all rows, or unknown rows only)."""
        check_channels(self, hr)
        x = self._inputs(hr, known, generator)
        diff = (self._forward(self.network, x) - hr).abs()
        if self.cfg["loss_rows"] == "unknown":
            unknown = (~torch.as_tensor(known, dtype=torch.bool, device=hr.device))[:, None, :, None]
            weight = unknown.to(diff.dtype).expand_as(diff)
            return (diff * weight).sum() / weight.sum().clamp(min=1.0)
        return diff.mean()

    @torch.no_grad()
    def _restore(self, planes: torch.Tensor, known: torch.Tensor, seed: int = 0, batch_size: int | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """One pass of the EMA network over all planes (any H, W; padded, chunked, cropped).

        ``seed`` fixes the noise rows when ``fill='noise'`` so results are reproducible;
        ``batch_size`` caps planes per forward call (default: by pixel count).
        """
        check_channels(self, planes)
        src_device, src_dtype = planes.device, planes.dtype
        x_planes = planes.to(self.device, torch.float32)
        known = torch.as_tensor(known, dtype=torch.bool).to(self.device)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        net = self.sampling_network.eval()
        x = self._inputs(x_planes, known, gen)
        h, w = x.shape[-2:]
        chunk = PIXELS_PER_CHUNK
        if batch_size is not None:
            chunk = max(1, int(batch_size)) * padded_size(h) * padded_size(w)
        out = self._forward(net, x, chunk_pixels=chunk)
        return out.to(src_device, src_dtype)
