"""MSDSR: masked-slice diffusion for z super-resolution (the core engine).

A 2D DDPM (MONAI ``DiffusionModelUNet``, cosine schedule, T = 1000) learns high-resolution
planes; some rows of each training plane are kept clean in ``x_t`` (MSDSR Eq. 5), so at
inference the measured z planes - the known rows of an XZ/YZ plane - condition the reverse
chain, and the unknown rows are sampled. See ``papers/msdsr_masked-slice-diffusion.txt``
Sec. 3-4 and DESIGN.md section 4.

Config (JSON; every key has a default in :meth:`MSDSREngine.default_config`):

``preset``
    Network size: ``tiny`` (tests), ``small`` (default, CPU), ``paper`` (274M parameters).
    ``MSDSREngine(preset='paper')`` also selects the paper's training and sampling setting
    (below); explicit keys always win.
``prediction_type``
    ``'sample'`` (x0, default), ``'epsilon'`` (paper) or ``'v_prediction'``. Measured after the
    same 270 training steps (small preset, fit on the XY planes of a 4x-subsampled synthetic
    ``cells`` stack, 16 restored XZ planes, 10 DDIM steps; linear interpolation: 25.5 dB /
    SSIM 0.839): x0 26.1 dB / 0.861, v 24.4 dB / 0.820, epsilon 15.7 dB / 0.30 (21.2 dB /
    0.66 with 50 steps). x0 reaches useful quality within the minutes of a CPU fit; it is
    also the smoothest (it under-synthesises texture and shot noise; v-prediction keeps more
    high frequencies). Epsilon sampling starts below T-1 (see
    :func:`volsr.diffusion.schedule.sampling_timesteps`).
``mask_channel``
    Feed the known-row mask as an extra input channel (default True; the paper had none).
``condition``
    ``'regression'`` (default): two-stage MSDSR - a masked-row
    regression UNet (the MS-UNet of :mod:`volsr.engines.msunet`, trained in the same fit)
    gives a first estimate, and the diffusion model is conditioned on it and predicts the
    residual over it (the DiffBIR / Histo-Diffusion arrangement: restoration first,
    generation of the missing detail second); ``'none'``: the paper (the known rows in
    ``x_t`` are the only condition); ``'linear'`` (the default of volsr 0.1): feed the linear
    interpolation of the known rows as ``C`` input channels - the standard conditioning of
    diffusion super-resolution (SR3 feeds the bicubic-upsampled image). Measured
    (``benchmarks/results/results_two_stage.md``, 2-min fits on 32x128x128, 4x): at realism 0 the
    two-stage model matches MS-UNet's PSNR/SSIM (fluo 30.52 / 0.745 vs 30.45 / 0.745), which
    the linear-conditioned model cannot give at any setting.
``residual``
    With x0 prediction and a condition: the network predicts ``x0 - condition``, so an
    untrained network already reproduces the condition and a short CPU fit only has to
    learn the correction (default True).
``realism``
    Two-stage models only: the default of the fidelity/realism control (see
    :meth:`MSDSREngine.restore`): the result is ``estimate + realism * (sample - estimate)``
    on the restored rows. 0 = the regression estimate (the conditional mean: best PSNR/SSIM,
    for measurement and segmentation), 1 = a full diffusion sample (texture at the right
    scales, for looking; each sample is one plausible volume). Default 0.53 with the default 4
    quadratic sampling steps (0.5 with 10 trailing steps in volsr 0.2: the same PSNR and
    texture, see ``sampling_steps``): on the six kinds of ``benchmarks/results/results_quality.md`` (48x160x160, 4x,
    4-min fits) it never falls below linear interpolation on PSNR or SSIM (realism 1 does on
    texture, fluo and mri - the failure seen on real fluorescence data), at the cost of a
    spectrum error above cubic's on cells, fibers, mri and em (realism 1 is below cubic's on
    all six kinds).
``regressor_features``
    BasicUNet widths of the stage-1 network (two-stage only).
``loss``
    ``'l1_unknown'`` (default): L1 between the prediction and its target on *unknown* rows
    only - known rows are given, so they carry no learning signal. ``'paper'``: the official
    code's variant - epsilon target, target 0 on known rows, mean over all pixels, no mask
    channel (requires ``prediction_type='epsilon'`` and ``mask_channel=False``).
``data_range``
    ``'symmetric'`` (default): normalised data ~[0, 1] are mapped to [-1, 1] inside the
    engine, so the data are centred like the unit-variance noise they are mixed with (the
    usual DDPM convention); ``'unit'``: the paper's [0, 1]. Never clipped either way -
    percentile-normalised data legitimately exceed [0, 1].
``schedule``, ``num_train_timesteps``
    ``'cosine'``, 1000 (paper).
``sampler``, ``sampling_steps``, ``eta``
    ``'ddim'`` (default), ``'ddpm'`` or ``'one-step'`` (below); steps and DDIM eta (paper: DDIM, 200 steps, eta 1).
    Default 4 steps, eta 1, quadratic spacing, with ``realism`` 0.53 (volsr 0.2 had 10 trailing
    steps at realism 0.5). The quality-vs-steps curve on six kinds (``benchmarks/results/results_steps.md``,
    saved 4-min fits): fewer steps keep PSNR/SSIM but lose texture (spectrum error +0.024 at 5
    steps, +0.057 at 3 and +0.114 at 1 on ``texture``, trailing spacing); more realism or more
    steps at low noise (quadratic spacing) give it back. 4 quadratic steps at 0.53 are within
    -0.07..+0.05 dB of the 10-step PSNR and -0.013..+0.007 of its spectrum error on every kind, at
    2.4x fewer network calls (4 trailing steps at 0.6, the previous default: -0.12 dB on
    ``mri``). Three steps did not hold both: at realism 0.5 ``texture`` lost +0.02-0.04 spectrum
    error, at 0.55-0.6 ``fluo``/``mri``/``em`` lost 0.1-0.2 dB (trailing, quadratic, or started at
    t = 600 from the noised stage-1 estimate). Deterministic DDIM (eta 0) was no better at 2-4
    steps, and a learned one-step sampler (``sampler='one-step'``,
    :mod:`volsr.engines.msdsr_onestep`) did not reach the 10-step texture without losing 0.2-0.6 dB.
``noise_match``
    After sampling, add white Gaussian noise to the generated rows so that their noise level
    (robust estimate from the second difference along x, :func:`volsr.diffusion.sampler.match_noise`)
    equals that of the measured rows of the same plane; the value scales the added std
    (default 1; 0 = off). Why: the measured rows carry the instrument's noise, but a
    short-fit x0 model predicts a (near) noise-free posterior median, so without it every
    ``factor``-th plane is noisier than the planes between (a z-periodic texture) and XZ/YZ
    spectra lack high frequencies. Measured (small preset, 400 training steps on a 4x
    subsampled ``cells`` stack 64x128x128 with Poisson noise, XZ planes after mean fusion;
    row high-pass std 0.068 in measured rows): off 28.34 dB / SSIM 0.889 / spectrum error
    0.314, generated-row high-pass std 0.043; 1.0: 27.91 / 0.846 / 0.136, std 0.052;
    1.41: 27.55 / 0.810 / 0.046 (linear 25.35 / 0.830 / 0.160, cubic 25.27 / 0.814 / 0.165).
    The mean fusion of XZ and YZ halves the variance of the (independent) added noise. 4-min
    fits on 64x256x256 ``cells`` / ``fibers`` / ``texture`` (``benchmarks/results/results_bench_msdsr_kinds.md``):
    spectrum error 0.304 -> 0.127 / 0.269 -> 0.110 / 0.145 -> 0.193 (cubic 0.168 / 0.149 /
    0.224), SSIM 0.889 -> 0.845 / 0.919 -> 0.890 / 0.713 -> 0.706 (linear 0.827 / 0.864 / 0.740).
``one_step``, ``one_step_t``, ``np_width``, ``np_layers``, ``lambda_fft``, ``fft_pairing``
    One-step sampling (``sampler='one-step'``): a learned noise map trained on a fitted
    model by :meth:`MSDSREngine.distil` (``volsr distil``); one denoiser call at
    ``one_step_t`` instead of ``sampling_steps``. See :mod:`volsr.engines.msdsr_onestep`.
``timestep_spacing``
    ``'quadratic'`` for new two-stage x0 models (above), else ``'auto'`` (``leading`` for
    epsilon, ``trailing`` otherwise; the value stored in volsr 0.2 model files, which keep their
    sampling); ``'trailing'``, ``'leading'`` or ``'quadratic'``
    (:func:`volsr.diffusion.schedule.sampling_timesteps`).
    Ending the chain at t = 10 (quadratic) instead of t = 99 (trailing, 10 steps) did not
    bring back the fine texture on the model above (spectrum error 0.334 vs 0.314): the
    x0 model denoises at every noise level.
``inference_mode``, ``tile_overlap``
    ``'full'`` (whole planes, padded; default) or ``'tiles'`` (crop-size tiles blended at
    every step).
``crop``, ``lr``, ``weight_decay``, ``ema_decay``, ``mask_*``
    Training crop side, AdamW settings, EMA decay and the :class:`volsr.training.masks.MaskSampler`
    settings read by :func:`volsr.training.loop.fit_engine`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ..config import check_choice, check_int, check_number
from ..diffusion.sampler import (
    DEFAULT_CHUNK_PIXELS,
    MODES,
    DenoiserInput,
    MaskedSliceSampler,
    match_noise,
    sub_batch_planes,
)
from ..diffusion.schedule import (
    PREDICTION_TYPES,
    SAMPLERS,
    SCHEDULES,
    SPACINGS,
    one_step_scheduler,
    sampling_scheduler,
    training_scheduler,
)
from ..errors import VolsrError
from ..models.diffusion_unet import build_diffusion_unet, preset_names, preset_spec, size_multiple
from ..models.padding import padded_side
from ..runtime.concurrency import chunk_workers
from ..runtime.hardware import MEMORY_FRACTION, choose_batch_size, unet_bytes_per_pixel
from ..training.masks import linear_fill, row_mask
from .base import Capabilities, RestoreOptions, paste_known
from .learned import LearnedEngine, TrainableConfig, TrainablePart
from .msdsr_onestep import FFT_PAIRINGS, ONE_STEP, NoiseMapMixin
from .msunet import RowRegressor
from .unet_common import padded_size, regression_planes

__all__ = ["MSDSREngine", "MSDSRConfig", "LOSSES", "CONDITIONS", "DATA_RANGES", "PAPER_SETTING",
           "denoiser_bytes_per_pixel"]

LOSSES = ("l1_unknown", "paper")
MSDSR_SAMPLERS = (*SAMPLERS, ONE_STEP)
CONDITIONS = ("linear", "regression", "none")
DATA_RANGES = ("symmetric", "unit")

#: The paper's / official code's setting (Sec. 4.2, DESIGN.md section 4), selected by preset='paper'.
PAPER_SETTING: dict[str, Any] = {
    "prediction_type": "epsilon",
    "loss": "paper",
    "mask_channel": False,
    "condition": "none",
    "residual": False,
    "data_range": "unit",
    "sampler": "ddim",
    "sampling_steps": 200,
    "eta": 1.0,
    "crop": 48,
    "lr": 1e-7,  # paper's base lr at effective batch 256
    "ema_decay": 0.9999,
    "mask_scheme": "random",
    "noise_match": 0.0,
}


def denoiser_bytes_per_pixel(preset: str, height: int, width: int, flash: bool = False) -> float:
    """Activation memory per pixel of one forward of a preset's DiffusionModelUNet on (padded) planes.

    :func:`volsr.runtime.hardware.unet_bytes_per_pixel` with the preset's widths and blocks; MONAI's
    DiffusionModelUNet has self-attention in its middle block and at its attention levels, each
    holding a (tokens x tokens) matrix per head unless built with flash attention (``flash``).
    """
    spec = preset_spec(preset)
    widths, head = spec["channels"], spec["num_head_channels"]
    attention = [(lvl, widths[lvl] // head) for lvl, on in enumerate(spec["attention_levels"]) if on]
    attention.append((len(widths) - 1, widths[-1] // head))  # the middle block
    return unet_bytes_per_pixel(widths, blocks=spec["num_res_blocks"], attention=[] if flash else attention,
                                height=height, width=width)


@dataclasses.dataclass(frozen=True)
class MSDSRConfig(TrainableConfig):
    """MSDSR settings; see the module docstring for each key."""

    prediction_type: str = "sample"
    mask_channel: bool = True
    condition: str = "regression"
    residual: bool = True
    loss: str = "l1_unknown"
    data_range: str = "symmetric"
    schedule: str = "cosine"
    num_train_timesteps: int = 1000
    sampler: str = "ddim"
    sampling_steps: int = 4
    eta: float = 1.0
    timestep_spacing: str = "quadratic"
    noise_match: float = 1.0
    realism: float = 0.53
    regressor_features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)
    inference_mode: str = "full"
    tile_overlap: float = 0.25
    one_step: bool = False
    one_step_t: int = 250
    np_width: int = 32
    np_layers: int = 4
    lambda_fft: float = 0.4
    fft_pairing: str = "batch"

    PRESETS: ClassVar[tuple[str, ...]] = tuple(preset_names())

    def validate(self) -> None:
        super().validate()
        if self.degradation.kind != "rows":
            raise VolsrError("MSDSR restores z (the 'rows' degradation); in-plane upscaling is not available for "
                             "it yet — use a 2D engine (e.g. msunet with --task upscale)")
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_choice("loss", self.loss, LOSSES)
        check_choice("data_range", self.data_range, DATA_RANGES)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("sampler", self.sampler, MSDSR_SAMPLERS)
        check_choice("inference_mode", self.inference_mode, MODES)
        check_choice("condition", self.condition, CONDITIONS)
        check_choice("timestep_spacing", self.timestep_spacing, ("auto", *SPACINGS))
        check_int("num_train_timesteps", self.num_train_timesteps, 2)
        check_int("sampling_steps", self.sampling_steps, 1, self.num_train_timesteps)
        check_number("eta", self.eta, 0, 1)
        check_number("noise_match", self.noise_match, 0, 4)
        check_number("realism", self.realism, 0, 1)
        check_number("tile_overlap", self.tile_overlap, 0, 1, hi_open=True)
        check_int("one_step_t", self.one_step_t, 1, self.num_train_timesteps - 1)
        check_int("np_width", self.np_width, 1)
        check_int("np_layers", self.np_layers, 1)
        check_number("lambda_fft", self.lambda_fft, 0, 100)
        check_choice("fft_pairing", self.fft_pairing, FFT_PAIRINGS)
        for key in ("mask_channel", "residual", "one_step"):
            if not isinstance(getattr(self, key), bool):
                raise VolsrError(f"config '{key}' must be true or false, got {getattr(self, key)!r}")
        if self.residual and (self.prediction_type != "sample" or self.condition == "none"):
            raise VolsrError(
                "config 'residual' = True means the network predicts x0 minus its condition; "
                "it needs prediction_type='sample' and condition='linear' or 'regression' (or set residual=False)"
            )
        if self.loss == "paper" and (self.prediction_type != "epsilon" or self.mask_channel):
            raise VolsrError(
                "loss='paper' is the official code's epsilon loss without a mask channel; "
                "set prediction_type='epsilon' and mask_channel=False, or use loss='l1_unknown'"
            )

        if (self.one_step or self.sampler == ONE_STEP) and not (self.two_stage and self.prediction_type == "sample"):
            raise VolsrError("one-step sampling (a learned noise map) is built for two-stage x0 models: "
                             "condition='regression' and prediction_type='sample' (the defaults)")

    @property
    def two_stage(self) -> bool:
        return self.condition == "regression"


class MSDSREngine(NoiseMapMixin, LearnedEngine):
    """Masked-slice diffusion engine; see the module docstring for the config.

    Parameters
    ----------
    device : str or torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ...
    config : dict or MSDSRConfig, optional
        A full or partial config (as stored in a model file).
    preset : {'tiny', 'small', 'paper'}, optional
        Network size; ``'paper'`` also selects :data:`PAPER_SETTING`; explicit keys win.
    **overrides
        Any config key; ``None`` values are ignored.

    Examples
    --------
    >>> eng = MSDSREngine(preset="tiny", sampling_steps=2)
    >>> planes = torch.rand(3, 1, 13, 20)
    >>> known = torch.zeros(13, dtype=torch.bool); known[::4] = True
    >>> out = eng.restore(planes, known, seed=0)
    >>> bool((out[:, :, known] == planes[:, :, known]).all())
    True
    """

    name = "msdsr"
    description = "masked-slice diffusion (MSDSR): conditional 2D DDPM on XZ/YZ planes"
    capabilities: ClassVar[Capabilities] = Capabilities(
        learned=True, stochastic=True, distil=True,
        options=frozenset({"sampling_steps", "sampler", "eta", "inference_mode", "noise_match",
                           "timestep_spacing", "realism"}),
    )
    Config = MSDSRConfig
    PRESETS = {"paper": PAPER_SETTING}

    cfg: MSDSRConfig

    def __init__(self, device="cpu", config=None, preset: str | None = None, **overrides: Any):
        super().__init__(device=device, config=config, preset=preset, **overrides)
        self.reset_generator(0)

    @classmethod
    def implied_settings(cls, merged: dict, explicit: dict) -> dict:
        if explicit.get("loss") == "paper":  # the paper's loss implies the paper's model input unless told otherwise
            for k in ("prediction_type", "mask_channel", "condition", "residual"):
                merged.setdefault(k, PAPER_SETTING[k])
        if merged.get("prediction_type", "sample") != "sample" or merged.get("condition") == "none":
            merged.setdefault("residual", False)  # the residual form needs x0 prediction and a condition
        if merged.get("prediction_type", "sample") != "sample" or merged.get("condition", "regression") != "regression":
            merged.setdefault("timestep_spacing", "auto")  # quadratic was measured on two-stage x0 models only
        return merged

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """A model file without ``timestep_spacing`` keeps the sampling it was saved with ('auto')."""
        return {"timestep_spacing": "auto", **super().upgrade_config(config)}

    # -- networks -------------------------------------------------------------------------------
    @property
    def inputs(self) -> DenoiserInput:
        c = self.cfg
        return DenoiserInput(mask_channel=bool(c.mask_channel), condition=c.condition != "none",
                             residual=bool(c.residual))

    @property
    def regressor(self) -> RowRegressor:
        """Stage 1 of two-stage MSDSR (the MS-UNet input and forward)."""
        return RowRegressor(int(self.cfg.channels), "linear", True, True)

    def build_network(self) -> torch.nn.Module:
        c = int(self.cfg.channels)
        denoiser = build_diffusion_unet(self.cfg.preset, channels=c, mask_channel=bool(self.cfg.mask_channel),
                                        condition_channels=c if self.cfg.condition != "none" else 0)
        if not self.cfg.two_stage:
            return denoiser
        parts = {"denoiser": denoiser, "regressor": self.regressor.build(self.cfg.regressor_features)}
        if self.cfg.one_step:
            parts["noise_map"] = self.build_noise_map()
        return torch.nn.ModuleDict(parts)

    def _denoiser(self, net: torch.nn.Module) -> torch.nn.Module:
        return net["denoiser"] if self.cfg.two_stage else net

    @property
    def channels_last_network(self) -> torch.nn.Module:
        """The denoiser (1.3-1.4x faster channels-last); the stage-1 BasicUNet was not faster."""
        return self._denoiser(self.sampling_network)

    def trainable_parts(self) -> list[TrainablePart]:
        if not self.cfg.two_stage:
            return super().trainable_parts()
        lr, decay = float(self.cfg.lr), float(self.cfg.ema_decay)
        names = ("noise_map",) if self.distilling else ("regressor", "denoiser")
        return [TrainablePart(k, self.network[k], self.ema[k], lr, decay) for k in names]

    @property
    def multiple(self) -> int:
        """Plane sides are padded to multiples of this for the network."""
        return size_multiple(self.cfg.preset)

    # -- units ----------------------------------------------------------------------------------
    def to_model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised intensities (~[0, 1]) -> the network's data range."""
        return x * 2.0 - 1.0 if self.cfg.data_range == "symmetric" else x

    def from_model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_units`."""
        return (x + 1.0) * 0.5 if self.cfg.data_range == "symmetric" else x

    # -- stage 1 and the condition ----------------------------------------------------------------
    def estimate(self, net: torch.nn.Module, measured: torch.Tensor, known: torch.Tensor,
                 chunk_pixels: int | None = None) -> torch.Tensor:
        """Stage-1 estimate in normalised units (two-stage), known rows = the measured values."""
        out = self.regressor(net["regressor"], measured, known, chunk_pixels=chunk_pixels)
        return paste_known(out, measured, known)

    def condition(self, measured: torch.Tensor, known: torch.Tensor,
                  estimate: torch.Tensor | None = None) -> torch.Tensor | None:
        """The condition channels in model units: linear interpolation, the stage-1 estimate, or None."""
        if self.cfg.condition == "linear":
            return self.to_model_units(linear_fill(measured, known))
        if self.cfg.condition == "regression":
            return self.to_model_units(estimate)
        return None

    # -- training -------------------------------------------------------------------------------
    def training_loss(self, hr: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked-slice diffusion loss on HR planes (B, C, H, W), known rows (B, H) or (H,) bool.

        The known rows hold the degraded plane (:attr:`cfg.degradation`, e.g. the axial PSF);
        ``x_t`` comes from the cosine forward process at a uniform random timestep with the
        known rows written clean (Eq. 5). ``l1_unknown``: L1 to the prediction target
        (epsilon, x0 or v) over unknown pixels only. ``paper``: L1 between the output and the
        noise with the target 0 on known rows, over all pixels. Two-stage: plus the stage-1
        L1 over all pixels; the denoiser is conditioned on the (detached) stage-1 estimate.
        """
        self.check_channels(hr.shape[1])
        if self.distilling:
            return self.noise_map_loss(hr, known, generator)
        b, _, h, _ = hr.shape
        m = row_mask(known, b, h, hr.device)
        measured = self.cfg.degradation.measured(hr.float())
        stage1_loss, est = 0.0, None
        if self.cfg.two_stage:
            est = self.estimate(self.network, measured, m[:, 0, :, 0])
            stage1_loss = (est - hr).abs().mean()
            est = est.detach()
        cond = self.condition(measured, m[:, 0, :, 0], est)
        sched = self._train_scheduler()
        x0 = self.to_model_units(hr.float())
        noise = torch.randn(x0.shape, generator=generator, device=hr.device, dtype=x0.dtype)
        t = torch.randint(0, sched.num_train_timesteps, (b,), generator=generator, device=hr.device)
        xt = torch.where(m, self.to_model_units(measured), sched.add_noise(x0, noise, t))
        out = self.inputs.predict(self._denoiser(self.network), xt, m, t, cond, self.multiple)
        if self.cfg.loss == "paper":
            target = torch.where(m, torch.zeros((), dtype=noise.dtype, device=hr.device), noise)
            return (out - target).abs().mean()
        kind = self.cfg.prediction_type
        target = noise if kind == "epsilon" else x0 if kind == "sample" else sched.get_velocity(x0, noise, t)
        weight = (~m).to(out.dtype).expand_as(out)
        return ((out - target).abs() * weight).sum() / weight.sum().clamp(min=1.0) + stage1_loss

    def _train_scheduler(self):
        key = (self.cfg.num_train_timesteps, self.cfg.schedule, self.cfg.prediction_type)
        cached = self.__dict__.get("_train_sched_cache")
        if cached is None or cached[0] != key:
            sched = training_scheduler(num_train_timesteps=key[0], schedule=key[1], prediction_type=key[2])
            self._train_sched_cache = (key, sched)
        return self._train_sched_cache[1]

    # -- sampling -------------------------------------------------------------------------------
    def reset_generator(self, seed: int = 0) -> None:
        """Seed the engine's running noise generator (used by calls without ``seed``)."""
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(int(seed))

    def to(self, device):
        super().to(device)
        self.reset_generator(0)
        return self

    # -- memory -------------------------------------------------------------------------------
    def bytes_per_pixel(self, height: int, width: int) -> float:
        """The denoiser's activation memory per pixel (:func:`denoiser_bytes_per_pixel`)."""
        flash = any(getattr(m, "use_flash_attention", False) for m in self.network.modules())
        hp, wp = padded_side(height, self.multiple), padded_side(width, self.multiple)
        return denoiser_bytes_per_pixel(self.cfg.preset, hp, wp, flash=flash)

    def planes_per_call(self, height: int, width: int, options: RestoreOptions | None = None,
                        workers: int = 1) -> int:
        """Planes per denoiser call: ``options.batch_size``, else the sampler's sub-batch capped by
        free memory (shared by ``workers`` calls running at once)."""
        if options is not None and options.batch_size is not None:
            return int(options.batch_size)
        hp, wp = padded_side(height, self.multiple), padded_side(width, self.multiple)
        return choose_batch_size(self.bytes_per_pixel(height, width) * hp * wp, self.device,
                                 fraction=MEMORY_FRACTION / max(1, int(workers)),
                                 cap=max(1, DEFAULT_CHUNK_PIXELS // (int(height) * int(width))))

    def chunks_side_by_side(self, height: int, width: int, n_planes: int,
                            options: RestoreOptions | None = None) -> int:
        """Sampler sub-batches run at once on the CPU (:func:`volsr.runtime.concurrency.chunk_workers`)."""
        chunk = self._chunk_pixels(options, height, width) or DEFAULT_CHUNK_PIXELS
        return chunk_workers(self.device, math.ceil(int(n_planes) / sub_batch_planes(chunk, height, width)))

    @staticmethod
    def _chunk_pixels(options: RestoreOptions | None, height: int, width: int) -> int | None:
        """Pixels per noise sub-batch: ``options.batch_size`` planes, else None (the sampler's fixed default)."""
        if options is None or options.batch_size is None:
            return None
        return int(options.batch_size) * int(height) * int(width)

    def _estimate_chunk(self, height: int, width: int) -> int:
        """Pixels per stage-1 (BasicUNet) call: the default budget, less when memory is short."""
        planes = regression_planes(self.device, self.cfg.regressor_features, height, width)
        return planes * padded_size(height) * padded_size(width)

    def make_sampler(self, cfg: MSDSRConfig | None = None, chunk_pixels: int | None = None,
                     call_planes: int | None = None, workers: int = 1) -> MaskedSliceSampler:
        """The sampling pipeline for this engine's EMA denoiser (``cfg``: per-call settings).

        ``chunk_pixels`` sets the noise sub-batches (machine-independent), ``call_planes`` the
        planes per network call inside one (from free memory), ``workers`` how many sub-batches
        run at once; see :class:`MaskedSliceSampler`.
        """
        cfg = cfg or self.cfg
        spacing = None if cfg.timestep_spacing == "auto" else cfg.timestep_spacing
        eta = float(cfg.eta)
        if cfg.sampler == ONE_STEP:  # one DDIM step from t* to x0: exact with eta 0
            sched, model_t = one_step_scheduler(cfg.one_step_t, num_train_timesteps=cfg.num_train_timesteps,
                                                schedule=cfg.schedule, prediction_type=cfg.prediction_type)
            eta = 0.0
        else:
            sched, model_t = sampling_scheduler(cfg.sampler, steps=cfg.sampling_steps,
                                                num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule,
                                                prediction_type=cfg.prediction_type, spacing=spacing)
        return MaskedSliceSampler(
            network=self._denoiser(self.sampling_network), scheduler=sched, model_timesteps=model_t,
            inputs=self.inputs, multiple=self.multiple, eta=eta, mode=cfg.inference_mode,
            tile=int(cfg.crop), tile_overlap=float(cfg.tile_overlap),
            chunk_pixels=int(chunk_pixels or DEFAULT_CHUNK_PIXELS), call_planes=call_planes, workers=workers,
        )

    def call_config(self, options: RestoreOptions) -> MSDSRConfig:
        """The model's config with this call's options applied (validated by the config)."""
        if options.realism is not None and not self.cfg.two_stage:
            raise VolsrError("realism needs a two-stage model (condition='regression'): it blends the stage-1 "
                             "estimate with the diffusion sample; this model has no stage-1 estimate")
        cfg = super().call_config(options)
        if cfg.sampler == ONE_STEP:
            self.check_noise_map()
        return cfg

    def _generator_for(self, seed: int | None) -> torch.Generator:
        """``seed`` None: the engine's running generator (:meth:`reset_generator`)."""
        return self._generator if seed is None else super()._generator_for(seed)

    @torch.no_grad()
    def _restore(self, planes: torch.Tensor, known: torch.Tensor, options: RestoreOptions, *,
                 progress: Callable[[str, int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the unknown rows of all planes in batched calls.

        ``options.seed`` reseeds the noise for this call (else ``generator``, else the
        engine's running generator); ``options.batch_size`` caps planes per network call
        (default: the sampler's sub-batch, fewer when free memory is short);
        ``progress(stage, done, total)`` after every denoising step, ``cancel()`` before each.
        Two-stage: ``realism`` 0 returns the stage-1 estimate without sampling.
        """
        self.check_channels(planes.shape[1])
        if not self.trained:
            warnings.warn("restoring with an untrained MSDSR model gives noise: fit it or load a model first",
                          stacklevel=3)
        cfg = self.call_config(options)
        x = planes.to(self.device, torch.float32)
        known = torch.as_tensor(known, dtype=torch.bool).to(self.device)
        gen = self._call_generator(options, generator)
        h, w = x.shape[-2:]
        est = self.estimate(self.sampling_network, x, known, self._estimate_chunk(h, w)) if cfg.two_stage else None
        if cfg.two_stage and cfg.realism == 0.0:
            out = est
        else:
            # the noise sub-batches follow options.batch_size or the fixed default, never free memory
            chunk = self._chunk_pixels(options, h, w)
            workers = self.chunks_side_by_side(h, w, x.shape[0], options)
            call = None if options.batch_size is not None else self.planes_per_call(h, w, workers=workers)
            cond = self.condition(x, known, est)
            start = self.one_step_start(self.sampling_network, cfg) if cfg.sampler == ONE_STEP else None
            sampler = self.make_sampler(cfg, chunk, call, workers)
            sample = sampler(self.to_model_units(x), known, cond=cond, generator=gen, progress=progress,
                             cancel=cancel, start=start)
            out = self.from_model_units(sample)
            if est is not None:
                out = est + float(cfg.realism) * (out - est)
        noise = float(cfg.noise_match) * (float(cfg.realism) if cfg.two_stage else 1.0)
        if noise:  # realism also scales the added noise: realism 0 is the untouched estimate
            out = match_noise(out, known, gen, scale=noise)
        return out.to(planes.device, planes.dtype)
