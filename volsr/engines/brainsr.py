"""Brain-SR: frequency-guided one-step latent diffusion super-resolution, trained offline.

The published model (``papers/brain-sr_frequency-guided-diffusion.txt``, built on InvSR) sits
on a *frozen, pretrained* SD-Turbo VAE and UNet and trains only a noise predictor (NP). Those
weights cannot be downloaded here, so volsr trains every part itself with MONAI networks, on
any modality, within one fit:

``autoencoder``
    :class:`monai.networks.nets.AutoencoderKL` (2D, ``latent_channels=4``, three levels, i.e.
    4x spatial downsampling; the paper's SD VAE downsamples 8x). Loss: L1 reconstruction +
    ``kl_weight`` x KL, and optionally (``lambda_ae_adv`` > 0, default off) ``lambda_ae_adv`` x a
    least-squares patch-adversarial term on the decoded image (a MONAI ``PatchDiscriminator``,
    part ``ae_discriminator``, trained with the autoencoder) from autoencoder step
    ``ae_adv_start`` on: an L1-trained autoencoder loses the fine texture (its radial spectrum
    falls 10-100x below HR's above 0.25 cycles/px in ``benchmarks/results_2d*.png``), and a
    pretrained VAE such as SD's keeps it with a perceptual and an adversarial term. Measured at
    MONAI's tutorial weight 0.01 in a 15-minute CPU fit it did not lower the autoencoder's
    spectrum error (``benchmarks/results/results_2d_aeadv.md``), hence off by default. Latents are divided by their running standard deviation (buffer
    ``latent_std``; a fixed ``latent_scale`` for pretrained VAEs such as SD's 0.18215), so the
    diffusion model sees unit-variance latents, as in latent diffusion.
``denoiser``
    :class:`monai.networks.nets.DiffusionModelUNet` (2D, 4 -> 4 channels, unconditional)
    trained on HR latents with a MONAI DDPM schedule (:mod:`volsr.diffusion.schedule`), x0
    prediction by default (``prediction_type``): the sampler makes *one* step, and x0 is what
    one step must return (an epsilon network's x0 estimate is unstable at high noise).
``noise_predictor``
    A small convolutional network mapping the latent of the bicubic-upsampled LR image
    ``z_LR`` to the mean and log-variance of a latent noise map; ``S(eps)`` of the paper's
    Eq. 1 samples it (reparameterised; ``np_sample=False`` uses the mean: deterministic).

One-step sampling (Eq. 1): ``z_t = z_LR + sigma_t S(NP(z_LR))`` at the fixed timestep
``t_star``, with ``sigma_t = sqrt((1 - abar_t) / abar_t)``; the variance-preserving denoiser
receives ``sqrt(abar_t) z_t = sqrt(abar_t) z_LR + sqrt(1 - abar_t) eps`` (the same state in its
own scaling), predicts ``z0_hat`` in one call, and the decoder returns the image.

Training is *staged* within the one fit budget (``stages``, default ``(0.45, 0.7)``: the
autoencoder trains in the first 45% of the budget - steps, or wall time with ``--minutes`` -,
the denoiser on its frozen latents until 70%, the NP through both frozen parts in the rest;
:class:`volsr.engines.learned.TrainingStage`, run by :func:`volsr.training.loop.fit_engine`, which gives
every stage its own warm-up and cosine decay and continues a finished part from its EMA
weights). Why staged: trained jointly from scratch, every part chases the others' moving
targets (the NP learns through a denoiser and decoder that are still changing); in a 12-minute
CPU fit on a busy machine the joint autoencoder reached only 17.7 dB (the first run of
``benchmarks/results_2d.md``, superseded and kept in git history). ``stages=()`` trains all
parts jointly in every step.
Parts listed in ``freeze`` (pretrained ones, :meth:`BrainSREngine.from_pretrained_parts`) have
no stage and are not trained at all - the paper's setting. Learning rate ``lr`` 1e-3 for every
part (``ae_lr`` / ``denoiser_lr`` / ``np_lr`` override it): measured on the IHC image of
``benchmarks/bench_2d.py`` after 1500 staged steps, 2e-4 gave 26.6 dB (autoencoder 29.2 dB),
1e-3 for the autoencoder only 27.3 dB (30.8), 1e-3 for all parts 28.0 dB (30.4); the paper's 2e-5
tunes an NP on frozen pretrained parts. An extra patch-FFT term on the autoencoder's output
(weight 0.5, 16-px patches) lowered the SR PSNR by 0.7 dB at 1e-3 and was dropped.

NP losses (latent space, Eq. 2): ``lambda_l2`` x MSE (paper's final model: 0), ``lambda_fft``
x :func:`volsr.training.losses.fft_patch_loss` (0.4, patch/stride ``fft_patch``/``fft_stride`` = 4/2,
the paper's final ``{4, 2}``), ``lambda_perceptual`` x a perceptual term in place of LPIPS
(0.7; LPIPS needs ImageNet-trained weights that are not available offline): with
``perceptual='decoder'`` the L1 distance between the *frozen decoder's* activations at every
resolution level (and its output image) for ``z0_hat`` and for the HR latent - deep,
multi-scale features of a network trained on this very modality, the role VGG/AlexNet
features play in LPIPS; ``perceptual='pixel'`` is the L1 between the decoded image and the HR
image. ``lambda_adv`` x a least-squares patch-adversarial term on latents (MONAI
``PatchDiscriminator`` + ``PatchAdversarialLoss``, paper 0.08) from step ``adv_start`` on;
default off on CPU (``paper`` preset: on).

Tasks: ``degradation.kind`` 'isotropic' (``volsr train --task upscale``: LR = blur +
downsample, bicubic up) or 'rows' (z restoration through ``volsr infer``: LR = linear
interpolation of the known rows, optional axial PSF; known rows pasted back).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..config import ConfigError, check_choice, check_int, check_number
from ..diffusion.schedule import PREDICTION_TYPES, SCHEDULES, training_scheduler
from ..errors import ModelFileError, VolsrError
from ..models.noise_map import NoisePredictor, draw_noise, one_step_state
from ..models.padding import pad_to_multiple, run_padded
from ..training.losses import REDUCTIONS, fft_patch_loss
from ..training.masks import linear_fill
from .base import Capabilities, RestoreOptions
from .learned import LearnedEngine, TrainableConfig, TrainablePart, TrainingStage, frozen

__all__ = ["BrainSREngine", "BrainSRConfig", "NoisePredictor", "BRAINSR_PRESETS"]

PARTS = ("autoencoder", "denoiser", "noise_predictor")
LATENT_CHANNELS = 4
AE_DOWNSAMPLING = 4  # three AutoencoderKL levels: two 2x downsamplings
PIXELS_PER_CHUNK = 1 << 20

BRAINSR_PRESETS: dict[str, dict] = {
    # tests: a second per step
    "tiny": dict(crop=32, ae_channels=(8, 8, 16), ae_norm_groups=4, denoiser_channels=(8, 16),
                 denoiser_attention=(False, False), denoiser_norm_groups=4, denoiser_res_blocks=1,
                 np_width=8, np_layers=2, disc_channels=8),
    # 2 CPU cores: useful within ~15 minutes (crop 64 -> 16x16 latents); the config defaults
    "small": dict(crop=64, ae_channels=(16, 32, 32), ae_norm_groups=8, denoiser_channels=(32, 64, 64),
                  denoiser_attention=(False, False, False), denoiser_norm_groups=8, denoiser_res_blocks=1,
                  np_width=32, np_layers=4, disc_channels=32),
    # GPUs: bigger parts, 128-pixel crops, the paper's NP losses incl. the adversarial term, EMA 0.99
    "paper": dict(crop=128, lr=2e-4, ae_channels=(64, 128, 256), ae_res_blocks=2, ae_norm_groups=32, ae_attention=True,
                  denoiser_channels=(128, 256, 512), denoiser_attention=(False, True, True), denoiser_norm_groups=32,
                  denoiser_res_blocks=2, np_width=64, np_layers=6, lambda_adv=0.08, adv_start=2000,
                  np_ema_decay=0.99, disc_channels=64),
}


@dataclasses.dataclass(frozen=True)
class BrainSRConfig(TrainableConfig):
    """Settings of :class:`BrainSREngine` (see the module docstring for their meaning)."""

    crop: int = 64
    lr: float = 1e-3  # from scratch on a CPU budget; see the module docstring
    # autoencoder (MONAI AutoencoderKL, 3 levels -> 4x downsampling, 4 latent channels)
    ae_channels: tuple[int, ...] = (16, 32, 32)
    ae_res_blocks: int = 1
    ae_norm_groups: int = 8
    ae_attention: bool = False
    kl_weight: float = 1e-6
    lambda_ae_adv: float = 0.0
    ae_adv_start: int = 500
    latent_scale: float | None = None
    ae_lr: float | None = None
    # latent denoiser (MONAI DiffusionModelUNet) and its schedule
    denoiser_channels: tuple[int, ...] = (32, 64, 64)
    denoiser_attention: tuple[bool, ...] = (False, False, False)
    denoiser_res_blocks: int = 1
    denoiser_norm_groups: int = 8
    denoiser_head_channels: int = 16
    denoiser_lr: float | None = None
    num_train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    prediction_type: str = "sample"
    t_star: int = 250
    t_star_fraction: float = 0.25
    # noise predictor
    np_width: int = 32
    np_layers: int = 4
    np_sample: bool = True
    np_lr: float | None = None
    np_ema_decay: float | None = None
    # noise-predictor losses (paper Eq. 2; LPIPS replaced, see the module docstring)
    lambda_l2: float = 0.0
    lambda_fft: float = 0.4
    fft_patch: int = 4
    fft_stride: int = 2
    fft_reduction: str = "patch"
    lambda_perceptual: float = 0.7
    perceptual: str = "decoder"
    lambda_adv: float = 0.0
    adv_start: int = 0
    disc_channels: int = 32
    # parts not trained (pretrained ones)
    freeze: tuple[str, ...] = ()
    # staged fit: budget fractions at which the autoencoder and the denoiser stages end; () = joint
    stages: tuple[float, ...] = (0.45, 0.7)

    def validate(self) -> None:
        super().validate()
        ch = self.ae_channels
        if len(ch) != 3 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in ch):
            raise ConfigError(f"config 'ae_channels' = {list(ch)!r} is invalid; accepted: 3 positive widths "
                              "(three AutoencoderKL levels = 4x downsampling)")
        check_int("ae_res_blocks", self.ae_res_blocks, 1)
        check_int("ae_norm_groups", self.ae_norm_groups, 1)
        if any(c % self.ae_norm_groups for c in ch):
            raise ConfigError(f"config 'ae_norm_groups' = {self.ae_norm_groups} must divide every ae_channels width "
                              f"{list(ch)}")
        _check_bool("ae_attention", self.ae_attention)
        check_number("kl_weight", self.kl_weight, 0, 1)
        check_number("lambda_ae_adv", self.lambda_ae_adv, 0, 100)
        check_int("ae_adv_start", self.ae_adv_start, 0)
        if self.latent_scale is not None:
            check_number("latent_scale", self.latent_scale, 0, lo_open=True)
        dc = self.denoiser_channels
        if not 1 <= len(dc) <= 6 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in dc):
            raise ConfigError(f"config 'denoiser_channels' = {list(dc)!r} is invalid; accepted: 1 to 6 positive widths")
        if len(self.denoiser_attention) != len(dc) or not all(isinstance(a, bool) for a in self.denoiser_attention):
            raise ConfigError(f"config 'denoiser_attention' must hold one true/false per denoiser level ({len(dc)}), "
                              f"got {list(self.denoiser_attention)!r}")
        check_int("denoiser_res_blocks", self.denoiser_res_blocks, 1)
        check_int("denoiser_norm_groups", self.denoiser_norm_groups, 1)
        if any(c % self.denoiser_norm_groups for c in dc):
            raise ConfigError(f"config 'denoiser_norm_groups' = {self.denoiser_norm_groups} must divide every "
                              f"denoiser_channels width {list(dc)}")
        check_int("denoiser_head_channels", self.denoiser_head_channels, 1)
        check_int("num_train_timesteps", self.num_train_timesteps, 2)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_int("t_star", self.t_star, 0, self.num_train_timesteps - 1)
        check_number("t_star_fraction", self.t_star_fraction, 0, 1)
        check_int("np_width", self.np_width, 1)
        check_int("np_layers", self.np_layers, 1)
        _check_bool("np_sample", self.np_sample)
        for name in ("ae_lr", "denoiser_lr", "np_lr"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), 0, lo_open=True)
        if self.np_ema_decay is not None:
            check_number("np_ema_decay", self.np_ema_decay, 0, 1, hi_open=True)
        for name in ("lambda_l2", "lambda_fft", "lambda_perceptual", "lambda_adv"):
            check_number(name, getattr(self, name), 0, 100)
        if self.lambda_l2 + self.lambda_fft + self.lambda_perceptual + self.lambda_adv <= 0:
            raise ConfigError("the noise predictor has no loss: give at least one of lambda_l2, lambda_fft, "
                              "lambda_perceptual, lambda_adv a positive weight")
        check_int("fft_patch", self.fft_patch, 1, 64)
        check_int("fft_stride", self.fft_stride, 1, 64)
        if self.fft_stride > self.fft_patch:
            raise ConfigError(f"config 'fft_stride' = {self.fft_stride} must not exceed 'fft_patch' = {self.fft_patch} "
                              "(the paper's configurations {16,8}, {8,4}, {4,2} are patch, stride)")
        check_choice("fft_reduction", self.fft_reduction, REDUCTIONS)
        check_choice("perceptual", self.perceptual, ("decoder", "pixel"))
        check_int("adv_start", self.adv_start, 0)
        check_int("disc_channels", self.disc_channels, 1)
        bad = [p for p in self.freeze if p not in ("autoencoder", "denoiser")]
        if bad:
            raise ConfigError(f"config 'freeze' = {list(self.freeze)!r} is invalid; accepted: a subset of "
                              "autoencoder, denoiser (the noise predictor is always trained)")
        st = self.stages
        if st and (len(st) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in st)
                   or not 0 < st[0] < st[1] < 1):
            raise ConfigError(f"config 'stages' = {list(st)!r} is invalid; accepted: [] (joint fit) or two budget "
                              "fractions 0 < a < b < 1 where the autoencoder and the denoiser stages end")
        latent_crop = self.crop // AE_DOWNSAMPLING
        if latent_crop < self.fft_patch:
            raise ConfigError(f"crop {self.crop} gives {latent_crop}-pixel latents, smaller than fft_patch "
                              f"{self.fft_patch}; use a crop >= {self.fft_patch * AE_DOWNSAMPLING}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"config '{name}' = {value!r} is invalid; accepted: true or false")


def _load_part(module: torch.nn.Module, source, what: str, optional_keys=()) -> dict:
    """Load a state dict (file path, dict or module) into ``module``; a clear error when it does not fit."""
    if isinstance(source, torch.nn.Module):
        state = source.state_dict()
        label = f"the given {type(source).__name__}"
    elif isinstance(source, dict):
        state, label = dict(source), "the given state dict"
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"pretrained {what} weights {path} do not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        label = str(path)
    state = {k: v for k, v in state.items() if k not in optional_keys or k in module.state_dict()}
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and k not in optional_keys)
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatch(es) e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise ModelFileError(f"{label} does not fit the configured MONAI {what} ({'; '.join(parts)}); set the "
                             f"config's {what} widths/levels to match the weights")
    module.load_state_dict(state, strict=False)
    return {k: v.detach().clone() for k, v in state.items()}


class BrainSREngine(LearnedEngine):
    """Brain-SR one-step latent diffusion SR with parts trained by volsr (see the module docstring).

    Capabilities: learned, 2D upscaling *and* z restoration (rows), stochastic (the NP's noise
    is sampled: ``seed`` matters, ``n_samples > 1`` gives an uncertainty map; deterministic
    with ``np_sample=False``), and a latent autoencoder (:meth:`autoencode`: the "HR-latent"
    spectral reference of :func:`volsr.evaluation.rps_curves`).

    Examples
    --------
    >>> from volsr.training.degrade import IsotropicDegradation
    >>> eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    >>> eng.upscale(torch.rand(1, 1, 10, 12), 2).shape
    torch.Size([1, 1, 20, 24])
    """

    name = "brainsr"
    description = "Brain-SR: frequency-guided one-step latent diffusion (AutoencoderKL + UNet + noise predictor)"
    capabilities: ClassVar[Capabilities] = Capabilities(learned=True, upscale=True, rows=True, stochastic=True,
                                                        autoencoder=True)
    Config = BrainSRConfig
    PRESETS = BRAINSR_PRESETS

    def __init__(self, *args: Any, **kwargs: Any):
        self._pretrained: dict[str, dict] = {}
        super().__init__(*args, **kwargs)
        self._scheduler_cache = None

    # -- networks ---------------------------------------------------------------------------------
    def build_network(self) -> torch.nn.Module:
        from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, PatchDiscriminator

        c = self.cfg
        ae = AutoencoderKL(
            spatial_dims=2, in_channels=int(c.channels), out_channels=int(c.channels), channels=tuple(c.ae_channels),
            num_res_blocks=int(c.ae_res_blocks), attention_levels=(False,) * 3, latent_channels=LATENT_CHANNELS,
            norm_num_groups=int(c.ae_norm_groups), with_encoder_nonlocal_attn=bool(c.ae_attention),
            with_decoder_nonlocal_attn=bool(c.ae_attention),
        )
        ae.register_buffer("latent_std", torch.ones(()))
        ae.register_buffer("latent_updates", torch.zeros((), dtype=torch.long))
        denoiser = DiffusionModelUNet(
            spatial_dims=2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
            channels=tuple(c.denoiser_channels), attention_levels=tuple(c.denoiser_attention),
            num_res_blocks=int(c.denoiser_res_blocks), norm_num_groups=int(c.denoiser_norm_groups),
            num_head_channels=int(c.denoiser_head_channels),
        )
        parts = {"autoencoder": ae, "denoiser": denoiser,
                 "noise_predictor": NoisePredictor(LATENT_CHANNELS, int(c.np_width), int(c.np_layers))}
        if c.lambda_adv > 0:
            parts["discriminator"] = PatchDiscriminator(
                spatial_dims=2, channels=int(c.disc_channels), in_channels=LATENT_CHANNELS, num_layers_d=2, kernel_size=3,
                norm="BATCH")
        if c.lambda_ae_adv > 0 and "autoencoder" not in c.freeze:  # on images: 8x8 patches of a 64-px crop
            parts["ae_discriminator"] = PatchDiscriminator(
                spatial_dims=2, channels=int(c.disc_channels), in_channels=int(c.channels), num_layers_d=3,
                kernel_size=4, norm="BATCH")
            parts["ae_discriminator"].register_buffer("steps", torch.zeros((), dtype=torch.long))
        return torch.nn.ModuleDict(parts)

    def trainable_parts(self) -> list[TrainablePart]:
        c = self.cfg
        lrs = {"autoencoder": c.ae_lr, "denoiser": c.denoiser_lr, "noise_predictor": c.np_lr,
               "discriminator": c.np_lr, "ae_discriminator": c.ae_lr}
        decays = {"noise_predictor": c.np_ema_decay}
        return [TrainablePart(k, self.network[k], self.ema[k], float(lrs[k] or c.lr),
                              float(decays.get(k) or c.ema_decay))
                for k in (*PARTS, "discriminator", "ae_discriminator") if k in self.network and k not in c.freeze]

    def rebuild(self, cfg) -> None:
        super().rebuild(cfg)
        for part, state in self._pretrained.items():  # a rebuild (crop, channels) keeps pretrained parts
            _load_part(self.network[part], state, part, optional_keys=("latent_std", "latent_updates"))
            _load_part(self.ema[part], state, part, optional_keys=("latent_std", "latent_updates"))

    @property
    def multiple(self) -> int:
        """Image sides are padded to multiples of this (autoencoder x denoiser downsampling)."""
        return AE_DOWNSAMPLING * 2 ** (len(self.cfg.denoiser_channels) - 1)

    # -- pretrained parts -------------------------------------------------------------------------
    @classmethod
    def from_pretrained_parts(cls, autoencoder=None, denoiser=None, *, freeze: bool = True, device="cpu",
                              config=None, preset: str | None = None, **overrides: Any) -> BrainSREngine:
        """An engine whose autoencoder and/or denoiser start from your own pretrained weights.

        Parameters
        ----------
        autoencoder, denoiser : path, state dict or torch.nn.Module, optional
            Weights that fit the configured MONAI networks: a ``.safetensors`` file (or a
            ``torch.save`` state dict) of a ``monai.networks.nets.AutoencoderKL`` with
            ``latent_channels=4`` and three levels, resp. a ``DiffusionModelUNet`` with 4 input
            and output channels. Set the widths in ``config`` / ``overrides`` (``ae_channels``,
            ``ae_res_blocks``, ``ae_norm_groups``, ``ae_attention``, ``denoiser_channels``,
            ``denoiser_attention``, ...) to those of the weights, and ``latent_scale`` to the
            VAE's latent scaling factor, ``prediction_type`` / ``schedule`` /
            ``num_train_timesteps`` to the denoiser's.
        freeze : bool
            Keep the loaded parts fixed during ``fit`` (the paper's setting: only the NP trains).

        Raises
        ------
        ModelFileError
            When a file is missing or its weights do not fit the configured network (names the
            first missing / unexpected key or shape mismatch).

        Examples
        --------
        >>> from monai.networks.nets import AutoencoderKL
        >>> ae = AutoencoderKL(spatial_dims=2, channels=(8, 8, 16), latent_channels=4, norm_num_groups=4,
        ...                    attention_levels=(False,) * 3, num_res_blocks=1,
        ...                    with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        >>> eng = BrainSREngine.from_pretrained_parts(autoencoder=ae, preset="tiny")
        >>> eng.cfg.freeze
        ('autoencoder',)
        """
        given = {k: v for k, v in (("autoencoder", autoencoder), ("denoiser", denoiser)) if v is not None}
        if not given:
            raise VolsrError("from_pretrained_parts needs autoencoder= and/or denoiser= weights")
        if freeze:
            overrides["freeze"] = tuple(sorted(set(overrides.get("freeze") or ()) | set(given)))
        eng = cls(device=device, config=config, preset=preset, **overrides)
        for part, src in given.items():
            state = _load_part(eng.network[part], src, part, optional_keys=("latent_std", "latent_updates"))
            eng.ema[part].load_state_dict(eng.network[part].state_dict())
            eng._pretrained[part] = state
        eng.provenance["pretrained_parts"] = {k: (str(v) if isinstance(v, (str, Path)) else type(v).__name__)
                                             for k, v in given.items()}
        return eng

    def adopt_channels(self, channels: int) -> None:
        if self._pretrained and int(channels) != int(self.cfg.channels):
            raise VolsrError(f"the pretrained parts have {self.cfg.channels} image channel(s) but the data have "
                             f"{int(channels)}; give channels={int(channels)} weights or convert the data")
        super().adopt_channels(channels)

    # -- latent helpers ---------------------------------------------------------------------------
    def _abar(self, device) -> torch.Tensor:
        if self._scheduler_cache is None or self._scheduler_cache[0] != (self.cfg.num_train_timesteps,
                                                                          self.cfg.schedule):
            sched = training_scheduler(num_train_timesteps=self.cfg.num_train_timesteps, schedule=self.cfg.schedule,
                                       prediction_type=self.cfg.prediction_type)
            self._scheduler_cache = ((self.cfg.num_train_timesteps, self.cfg.schedule),
                                     sched.alphas_cumprod.detach().float().clone())
        return self._scheduler_cache[1].to(device)

    def _latent_std(self, ae: torch.nn.Module) -> torch.Tensor:
        if self.cfg.latent_scale is not None:
            return torch.tensor(1.0 / float(self.cfg.latent_scale), device=ae.latent_std.device)
        return ae.latent_std.clamp(min=1e-4)

    def encode(self, ae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Scaled latent mean (N, 4, H/4, W/4) of images in model units."""
        mu, _ = ae.encode(images)
        return mu / self._latent_std(ae)

    def decode(self, ae: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        return ae.decode(z * self._latent_std(ae))

    def _x0(self, out: torch.Tensor, z_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        a = abar.reshape(-1, 1, 1, 1)
        if self.cfg.prediction_type == "sample":
            return out
        if self.cfg.prediction_type == "epsilon":
            return (z_t - (1 - a).sqrt() * out) / a.sqrt()
        return a.sqrt() * z_t - (1 - a).sqrt() * out  # v prediction

    def one_step(self, z_lr: torch.Tensor, net: torch.nn.Module | None = None,
                 generator: torch.Generator | None = None, sample: bool | None = None) -> torch.Tensor:
        """Eq. 1 + one denoising call: scaled LR latent -> ``z0_hat`` (same shape).

        ``sample`` (default ``cfg.np_sample``) draws the noise from the NP's distribution
        (reparameterised, so gradients reach the NP); otherwise its mean is used.
        """
        net = self.sampling_network if net is None else net
        mean, logvar = net["noise_predictor"](z_lr)
        eps = draw_noise(mean, logvar, generator, self.cfg.np_sample if sample is None else sample)
        abar = self._abar(z_lr.device)[self.cfg.t_star]
        z_t = one_step_state(z_lr, eps, abar)  # Eq. 1 in the denoiser's VP scaling
        t = torch.full((z_lr.shape[0],), int(self.cfg.t_star), device=z_lr.device, dtype=torch.long)
        out = net["denoiser"](z_t, timesteps=t)
        return self._x0(out, z_t, abar.expand(z_lr.shape[0]))

    def super_resolve(self, lr_up: torch.Tensor, net: torch.nn.Module | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The whole sampler on an LR estimate at the output size (N, C, H, W), H, W multiples of :attr:`multiple`."""
        net = self.sampling_network if net is None else net
        ae = net["autoencoder"]
        return self.decode(ae, self.one_step(self.encode(ae, lr_up), net, generator))

    # -- training ---------------------------------------------------------------------------------
    def _pairs(self, hr: torch.Tensor, known: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR estimate at HR size, HR), both padded to :attr:`multiple`."""
        deg = self.cfg.degradation
        if self.task == "isotropic":
            s = deg.scale
            h, w = hr.shape[-2:]
            hr = hr[..., : h // s * s, : w // s * s]
            lr = F.interpolate(deg(hr), scale_factor=s, mode="bicubic", align_corners=False)
        else:
            if known is None:
                raise VolsrError("the rows task trains on planes with known-row masks")
            lr = linear_fill(deg.measured(hr), known)
        m = self.multiple
        return pad_to_multiple(lr, m), pad_to_multiple(hr, m)

    def _decoder_features(self, ae: torch.nn.Module, z: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's activations after each residual block, and its output image."""
        h = ae.post_quant_conv(z * self._latent_std(ae))
        feats = []
        for block in ae.decoder.blocks:
            h = block(h)
            if type(block).__name__.endswith("ResBlock"):
                feats.append(h)
        return [*feats, h]

    def _perceptual(self, ae, z_hat, z_hr, hr) -> torch.Tensor:
        if self.cfg.perceptual == "pixel":
            return (self.decode(ae, z_hat) - hr).abs().mean()
        with torch.no_grad():
            target = self._decoder_features(ae, z_hr)
        pred = self._decoder_features(ae, z_hat)
        return sum((p - t).abs().mean() for p, t in zip(pred, target)) / len(pred)

    def training_stages(self) -> tuple[TrainingStage, ...]:
        """Autoencoder, then denoiser, then noise predictor (``stages``); one joint stage with ``stages=()``.

        Parts in ``freeze`` (pretrained) have no stage; the others share the budget in the
        configured proportions.
        """
        trained = [p.name for p in self.trainable_parts()]
        if not self.cfg.stages:
            return (TrainingStage("joint", tuple(trained), 1.0),)
        ends = [*self.cfg.stages, 1.0]
        spans = [(name, e - s) for name, s, e in zip(PARTS, [0.0, *ends[:-1]], ends) if name in trained]
        total, done, out = sum(w for _, w in spans), 0.0, []
        for name, w in spans:
            done += w / total
            helper = {"noise_predictor": "discriminator", "autoencoder": "ae_discriminator"}.get(name)
            parts = (name, helper) if helper in trained else (name,)
            out.append(TrainingStage(name, parts, 1.0 if name == spans[-1][0] else done))
        return tuple(out)

    def _trains(self, part: str) -> bool:
        return part not in self.cfg.freeze and self.training_stage in ("joint", part)

    def training_loss(self, hr: torch.Tensor, known: torch.Tensor | None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The losses of the parts training in this stage (:meth:`training_stages`; see the module docstring)."""
        c = self.cfg
        self.check_channels(hr.shape[1])
        net = self.network
        ae, den = net["autoencoder"], net["denoiser"]
        lr_img, hr = self._pairs(hr, known)
        total = hr.new_zeros(())
        # 1. autoencoder: L1 reconstruction + KL
        if self._trains("autoencoder"):
            mu, sigma = ae.encode(hr)
            z = mu + sigma * torch.randn(mu.shape, generator=generator, device=hr.device, dtype=mu.dtype)
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 2 * sigma.clamp(min=1e-12).log() - 1).flatten(1).sum(1).mean()
            rec = ae.decode(z)
            total = total + (rec - hr).abs().mean() + c.kl_weight * kl
            if "ae_discriminator" in net:
                total = total + self._ae_adversarial_loss(net["ae_discriminator"], rec, hr)
            mu_hr = mu.detach()
        elif self._trains("denoiser") or self._trains("noise_predictor"):
            with torch.no_grad():
                mu_hr = ae.encode(hr)[0]
        else:
            return total
        if c.latent_scale is None and self._measures_latent_std():
            self._update_latent_std(ae, mu_hr)
        with torch.no_grad():
            z_hr = mu_hr / self._latent_std(ae)
        if self._trains("denoiser"):
            total = total + self._denoiser_loss(den, z_hr, generator)
        if self._trains("noise_predictor"):
            total = total + self._noise_predictor_loss(net, z_hr, lr_img, hr, generator)
        return total

    def _ae_adversarial_loss(self, disc: torch.nn.Module, rec: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """``lambda_ae_adv`` x the decoder's least-squares adversarial term + the discriminator's own
        loss (HR real, detached reconstructions fake), from autoencoder step ``ae_adv_start`` on."""
        from monai.losses import PatchAdversarialLoss

        on = int(disc.steps) >= self.cfg.ae_adv_start
        if disc.training:
            disc.steps.add_(1)
        if not on:
            return rec.new_zeros(())
        adv = PatchAdversarialLoss(criterion="least_squares")
        with frozen(disc):
            gen_loss = adv(disc(rec)[-1], target_is_real=True, for_discriminator=False)
        disc_loss = 0.5 * (adv(disc(rec.detach())[-1], target_is_real=False, for_discriminator=True)
                           + adv(disc(hr)[-1], target_is_real=True, for_discriminator=True))
        return self.cfg.lambda_ae_adv * gen_loss + disc_loss

    def _measures_latent_std(self) -> bool:
        """The latent scale is measured while the autoencoder trains, or (a pretrained, frozen one
        without ``latent_scale``) in the first stage, before anything learns its latents."""
        if "autoencoder" not in self.cfg.freeze:
            return self._trains("autoencoder")
        return self.training_stage in ("joint", self.training_stages()[0].name)

    @torch.no_grad()
    def _update_latent_std(self, ae: torch.nn.Module, mu_hr: torch.Tensor) -> None:
        """Running std of the HR latents (the latent scaling) while the autoencoder trains."""
        n = int(ae.latent_updates)
        d = min(0.99, (1.0 + n) / (10.0 + n))
        ae.latent_std.mul_(d).add_((1 - d) * mu_hr.std().clamp(min=1e-4))
        ae.latent_updates.add_(1)

    def _denoiser_loss(self, den: torch.nn.Module, z_hr: torch.Tensor, generator) -> torch.Tensor:
        """MSE of the denoiser on noised HR latents; a ``t_star_fraction`` of the batch at ``t_star``."""
        c, dev, b = self.cfg, z_hr.device, z_hr.shape[0]
        t = torch.randint(0, c.num_train_timesteps, (b,), generator=generator, device=dev)
        at_star = torch.rand((b,), generator=generator, device=dev) < c.t_star_fraction
        t = torch.where(at_star, torch.full_like(t, c.t_star), t)
        noise = torch.randn(z_hr.shape, generator=generator, device=dev, dtype=z_hr.dtype)
        a = self._abar(dev)[t].reshape(-1, 1, 1, 1)
        z_t = a.sqrt() * z_hr + (1 - a).sqrt() * noise
        target = {"sample": z_hr, "epsilon": noise,
                  "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * z_hr}[c.prediction_type]
        return F.mse_loss(den(z_t, timesteps=t), target)

    def _noise_predictor_loss(self, net, z_hr, lr_img, hr, generator) -> torch.Tensor:
        """Eq. 2 through the frozen denoiser and decoder (+ the discriminator's own loss when on)."""
        c = self.cfg
        ae, den, npred = net["autoencoder"], net["denoiser"], net["noise_predictor"]
        with torch.no_grad():
            z_lr = self.encode(ae, lr_img)
        with frozen(ae, den, *([net["discriminator"]] if "discriminator" in net else [])):
            z_hat = self.one_step(z_lr, net, generator)
            np_loss = z_hat.new_zeros(())
            if c.lambda_l2 > 0:
                np_loss = np_loss + c.lambda_l2 * F.mse_loss(z_hat, z_hr)
            if c.lambda_fft > 0:
                np_loss = np_loss + c.lambda_fft * fft_patch_loss(z_hat, z_hr, c.fft_patch, c.fft_stride,
                                                                  c.fft_reduction)
            if c.lambda_perceptual > 0:
                np_loss = np_loss + c.lambda_perceptual * self._perceptual(ae, z_hat, z_hr, hr)
            adv_on = c.lambda_adv > 0 and int(npred.steps) >= c.adv_start
            if adv_on:
                from monai.losses import PatchAdversarialLoss

                adv = PatchAdversarialLoss(criterion="least_squares")
                np_loss = np_loss + c.lambda_adv * adv(net["discriminator"](z_hat)[-1], target_is_real=True,
                                                       for_discriminator=False)
        if adv_on:  # the discriminator learns HR latents (real) vs detached NP outputs (fake)
            disc = net["discriminator"]
            np_loss = np_loss + 0.5 * (adv(disc(z_hat.detach())[-1], target_is_real=False, for_discriminator=True)
                                       + adv(disc(z_hr)[-1], target_is_real=True, for_discriminator=True))
        if npred.training:
            npred.steps.add_(1)
        return np_loss

    # -- inference --------------------------------------------------------------------------------
    def _run(self, lr_up: torch.Tensor, options: RestoreOptions, generator) -> torch.Tensor:
        gen = self._call_generator(options, generator)
        net = self.sampling_network.eval()
        m = self.multiple
        chunk = PIXELS_PER_CHUNK
        if options.batch_size is not None:
            from ..models.padding import padded_side

            chunk = int(options.batch_size) * padded_side(lr_up.shape[-2], m) * padded_side(lr_up.shape[-1], m)
        return run_padded(lambda x: self.super_resolve(x, net, gen), lr_up, m, chunk_pixels=chunk)

    @torch.no_grad()
    def _restore(self, planes: torch.Tensor, known: torch.Tensor, options: RestoreOptions, *, progress=None,
                 cancel=None, generator=None) -> torch.Tensor:
        """Rows task: linear interpolation of the known rows -> latent one-step pipeline (known rows pasted by the caller)."""
        self.check_channels(planes.shape[1])
        self._check_task("rows")
        x = planes.to(self.device, torch.float32)
        k = known.to(self.device)
        lr = linear_fill(x, k)
        return self._run(lr, options, generator).to(planes.device, planes.dtype)

    @torch.no_grad()
    def _upscale(self, images: torch.Tensor, scale: int, options: RestoreOptions, *, progress=None, cancel=None,
                 generator=None) -> torch.Tensor:
        """Bicubic up -> encode (latent mean) -> NP -> one denoising step -> decode."""
        self.check_channels(images.shape[1])
        self._check_upscale(scale)
        up = F.interpolate(images.to(self.device, torch.float32), scale_factor=int(scale), mode="bicubic",
                           align_corners=False)
        return self._run(up, options, generator).to(images.device, images.dtype)

    @torch.no_grad()
    def _autoencode(self, images: torch.Tensor) -> torch.Tensor:
        """Encode (latent mean) and decode with the EMA autoencoder: what the latent space keeps of ``images``."""
        self.check_channels(images.shape[1])
        ae = self.sampling_network.eval()["autoencoder"]
        x = images.to(self.device, torch.float32)
        out = run_padded(lambda t: self.decode(ae, self.encode(ae, t)), x, AE_DOWNSAMPLING,
                         chunk_pixels=PIXELS_PER_CHUNK)
        return out.to(images.device, images.dtype)
