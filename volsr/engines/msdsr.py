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
    :func:`volsr.models.schedule.sampling_timesteps`).
``mask_channel``
    Feed the known-row mask as an extra input channel (default True; the paper had none).
``condition``
    ``'linear'`` (default): also feed the linear interpolation of the known rows as ``C``
    input channels - the standard conditioning of diffusion super-resolution (SR3 feeds
    the bicubic-upsampled image); ``'none'``: the paper (the known rows in ``x_t`` are the
    only condition).
``residual``
    With x0 prediction and ``condition='linear'``: the network predicts ``x0 - linear``, so
    an untrained network already reproduces linear interpolation and a short CPU fit only
    has to learn the correction (default True).
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
    ``'ddim'`` (default) or ``'ddpm'``; steps and DDIM eta (paper: DDIM, 200 steps, eta 1).
    Default 10 steps, eta 1: on the x0 model above, 1 and 5 steps (eta 0) gave 24.6 and
    25.3 dB, 10 and 20 steps (eta 1) 26.1 and 26.2 dB (eta 1 beat eta 0 by 0.5-0.6 dB at
    10 and 20 steps), and one step costs ~30 s per 512 planes of 61x256 on 2 shared CPU cores, so
    10 steps keep a 256x256x61 restoration within ~5 min.
``noise_match``
    After sampling, add white Gaussian noise to the generated rows so that their noise level
    (robust estimate from the second difference along x, :func:`volsr.sampler.match_noise`)
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
    fits on 64x256x256 ``cells`` / ``fibers`` / ``texture`` (``benchmarks/results_bench_msdsr_kinds.md``):
    spectrum error 0.304 -> 0.127 / 0.269 -> 0.110 / 0.145 -> 0.193 (cubic 0.168 / 0.149 /
    0.224), SSIM 0.889 -> 0.845 / 0.919 -> 0.890 / 0.713 -> 0.706 (linear 0.827 / 0.864 / 0.740).
``timestep_spacing``
    ``'auto'`` (default: ``leading`` for epsilon, ``trailing`` otherwise), ``'trailing'``,
    ``'leading'`` or ``'quadratic'`` (:func:`volsr.models.schedule.sampling_timesteps`).
    Ending the chain at t = 10 (quadratic) instead of t = 99 (trailing, 10 steps) did not
    bring back the fine texture on the model above (spectrum error 0.334 vs 0.314): the
    x0 model denoises at every noise level.
``inference_mode``, ``tile_overlap``
    ``'full'`` (whole planes, padded; default) or ``'tiles'`` (crop-size tiles blended at
    every step).
``crop``, ``lr``, ``weight_decay``, ``ema_decay``, ``mask_*``
    Training crop side, AdamW settings, EMA decay and the :class:`volsr.masks.MaskSampler`
    settings read by :func:`volsr.train.fit_engine`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import VolsrError
from ..masks import linear_fill
from ..models.diffusion_unet import build_diffusion_unet, preset_names, size_multiple
from ..models.schedule import (
    PREDICTION_TYPES,
    SAMPLERS,
    SCHEDULES,
    SPACINGS,
    sampling_scheduler,
    training_scheduler,
)
from ..sampler import DEFAULT_CHUNK_PIXELS, MODES, MaskedSliceSampler
from .base import paste_known
from .learned import LearnedEngine

__all__ = ["MSDSREngine", "LOSSES", "CONDITIONS", "DATA_RANGES", "PAPER_SETTING"]

LOSSES = ("l1_unknown", "paper")
CONDITIONS = ("linear", "none")
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
}


class MSDSREngine(LearnedEngine):
    """Masked-slice diffusion engine; see the module docstring for the config.

    Parameters
    ----------
    device : str or torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ...
    config : dict, optional
        A full or partial config (as stored in a model file).
    preset : {'tiny', 'small', 'paper'}, optional
        Network size; ``'paper'`` also selects :data:`PAPER_SETTING`.
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
    supports_uncertainty = True
    description = "masked-slice diffusion (MSDSR): conditional 2D DDPM on XZ/YZ planes"

    def __init__(self, device="cpu", config: dict | None = None, preset: str | None = None, **overrides: Any):
        cfg = dict(config or {})
        explicit = {**cfg, **{k: v for k, v in overrides.items() if v is not None}}
        if preset is not None:
            if preset not in preset_names():
                raise VolsrError(f"unknown MSDSR preset {preset!r}; choose one of: {', '.join(preset_names())}")
            base = dict(PAPER_SETTING) if preset == "paper" else {}
            cfg = {**base, "preset": preset, **cfg}
        if explicit.get("loss") == "paper":  # the paper's loss implies the paper's model input unless told otherwise
            cfg.setdefault("prediction_type", "epsilon")
            cfg.setdefault("mask_channel", False)
            cfg.setdefault("condition", "none")
            cfg.setdefault("residual", False)
        if explicit.get("prediction_type") not in (None, "sample"):
            cfg.setdefault("residual", False)  # the residual form is defined for x0 prediction only
        self._validate_config({**self.default_config(), **cfg, **explicit})
        super().__init__(device=device, config=cfg, **overrides)
        self._generator: torch.Generator | None = None
        self.reset_generator(0)

    # -- config ---------------------------------------------------------------------------------
    @classmethod
    def default_config(cls) -> dict:
        return {
            "preset": "small",
            "channels": 1,
            "crop": 48,
            "prediction_type": "sample",
            "mask_channel": True,
            "condition": "linear",
            "residual": True,
            "loss": "l1_unknown",
            "data_range": "symmetric",
            "schedule": "cosine",
            "num_train_timesteps": 1000,
            "sampler": "ddim",
            "sampling_steps": 10,
            "eta": 1.0,
            "timestep_spacing": "auto",
            "noise_match": 1.0,
            "inference_mode": "full",
            "tile_overlap": 0.25,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "ema_decay": 0.999,
            "mask_scheme": "mixed",
            "mask_p_strided": 0.5,
            "mask_factor_range": [1.5, 8.0],
        }

    @staticmethod
    def _validate_config(c: dict) -> None:
        def bad(key, accepted):
            raise VolsrError(f"MSDSR config '{key}' = {c.get(key)!r} is invalid; accepted: {accepted}")

        if c["preset"] not in preset_names():
            bad("preset", ", ".join(preset_names()))
        if c["prediction_type"] not in PREDICTION_TYPES:
            bad("prediction_type", ", ".join(PREDICTION_TYPES))
        if c["loss"] not in LOSSES:
            bad("loss", ", ".join(LOSSES))
        if c["data_range"] not in DATA_RANGES:
            bad("data_range", ", ".join(DATA_RANGES))
        if c["schedule"] not in SCHEDULES:
            bad("schedule", ", ".join(SCHEDULES))
        if c["sampler"] not in SAMPLERS:
            bad("sampler", ", ".join(SAMPLERS))
        if c["inference_mode"] not in MODES:
            bad("inference_mode", ", ".join(MODES))
        T = c["num_train_timesteps"]
        if not isinstance(T, int) or T < 2:
            bad("num_train_timesteps", "an integer >= 2")
        s = c["sampling_steps"]
        if not isinstance(s, int) or not 1 <= s <= T:
            bad("sampling_steps", f"an integer in 1..{T}")
        if not 0.0 <= float(c["eta"]) <= 1.0:
            bad("eta", "a number in [0, 1]")
        if not 0.0 <= float(c.get("noise_match", 0.0)) <= 4.0:
            bad("noise_match", "a number in [0, 4]")
        if c.get("timestep_spacing", "auto") not in ("auto", *SPACINGS):
            bad("timestep_spacing", ", ".join(("auto", *SPACINGS)))
        if not isinstance(c["channels"], int) or c["channels"] < 1:
            bad("channels", "an integer >= 1")
        if not isinstance(c["crop"], int) or c["crop"] < 8:
            bad("crop", "an integer >= 8")
        if not 0.0 <= float(c["tile_overlap"]) < 1.0:
            bad("tile_overlap", "a number in [0, 1)")
        if c["condition"] not in CONDITIONS:
            bad("condition", ", ".join(CONDITIONS))
        if not isinstance(c["residual"], bool):
            bad("residual", "true or false")
        if c["residual"] and (c["prediction_type"] != "sample" or c["condition"] != "linear"):
            raise VolsrError(
                "config 'residual' = True means the network predicts x0 minus the linear interpolation; "
                "it needs prediction_type='sample' and condition='linear' (or set residual=False)"
            )
        if c["loss"] == "paper" and (c["prediction_type"] != "epsilon" or c["mask_channel"]):
            raise VolsrError(
                "loss='paper' is the official code's epsilon loss without a mask channel; "
                "set prediction_type='epsilon' and mask_channel=False, or use loss='l1_unknown'"
            )

    def build_network(self) -> torch.nn.Module:
        c = int(self.cfg["channels"])
        return build_diffusion_unet(self.cfg["preset"], channels=c, mask_channel=bool(self.cfg["mask_channel"]),
                                    condition_channels=c if self.cfg["condition"] == "linear" else 0)

    @property
    def multiple(self) -> int:
        """Plane sides are padded to multiples of this for the network."""
        return size_multiple(self.cfg["preset"])

    # -- units ----------------------------------------------------------------------------------
    def to_model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised intensities (~[0, 1]) -> the network's data range."""
        return x * 2.0 - 1.0 if self.cfg["data_range"] == "symmetric" else x

    def from_model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_units`."""
        return (x + 1.0) * 0.5 if self.cfg["data_range"] == "symmetric" else x

    def _check_channels(self, planes: torch.Tensor) -> None:
        want = int(self.cfg["channels"])
        if planes.shape[1] != want:
            raise VolsrError(
                f"the '{self.name}' model was trained for {want} channel(s) but the data have {planes.shape[1]}; "
                "use a model trained on data with the same channels, or fit a new one"
            )

    # -- training -------------------------------------------------------------------------------
    def training_loss(self, hr: torch.Tensor, known: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked-slice diffusion loss on HR planes (B, C, H, W), known rows (B, H) or (H,) bool.

        ``x_t`` comes from the cosine forward process at a uniform random timestep; the known
        rows are written clean into ``x_t`` (Eq. 5); the network sees ``x_t`` (+ the mask
        channel) and ``t``. ``l1_unknown``: L1 to the prediction target (epsilon, x0 or v)
        averaged over unknown pixels only. ``paper``: L1 between the output and the noise
        with the target set to 0 on known rows, averaged over all pixels.
        """
        self._check_channels(hr)
        b, c, h, w = hr.shape
        device = hr.device
        known = torch.as_tensor(known, dtype=torch.bool, device=device)
        if known.ndim == 1:
            known = known.expand(b, h)
        if tuple(known.shape) != (b, h):
            raise VolsrError(f"known-row mask shape {tuple(known.shape)} does not fit planes (B={b}, H={h})")
        m = known[:, None, :, None]
        sched = self._train_scheduler()
        x0 = self.to_model_units(hr.float())
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        t = torch.randint(0, sched.num_train_timesteps, (b,), generator=generator, device=device)
        xt = torch.where(m, x0, sched.add_noise(x0, noise, t))
        parts = [xt]
        if self.cfg["mask_channel"]:
            parts.append(m.to(xt.dtype).expand(b, 1, h, w))
        lin = linear_fill(x0, known) if self.cfg["condition"] == "linear" else None
        if lin is not None:
            parts.append(lin)
        out = self.network(torch.cat(parts, dim=1) if len(parts) > 1 else xt, timesteps=t)
        if self.cfg["residual"]:
            out = out + lin
        if self.cfg["loss"] == "paper":
            target = torch.where(m, torch.zeros((), dtype=noise.dtype, device=device), noise)
            return (out - target).abs().mean()
        kind = self.cfg["prediction_type"]
        if kind == "epsilon":
            target = noise
        elif kind == "sample":
            target = x0
        else:
            target = sched.get_velocity(x0, noise, t)
        weight = (~m).to(out.dtype).expand_as(out)
        return ((out - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)

    def _train_scheduler(self):
        cached = getattr(self, "_train_sched_cache", None)
        key = (self.cfg["num_train_timesteps"], self.cfg["schedule"], self.cfg["prediction_type"])
        if cached is None or cached[0] != key:
            sched = training_scheduler(num_train_timesteps=key[0], schedule=key[1], prediction_type=key[2])
            self._train_sched_cache = (key, sched)
        return self._train_sched_cache[1]

    # -- sampling -------------------------------------------------------------------------------
    def reset_generator(self, seed: int = 0) -> None:
        """Seed the engine's running noise generator.

        Calls of :meth:`restore` without ``seed`` draw from this generator, so consecutive
        batches of one volume get independent noise and the whole run is reproducible.
        """
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(int(seed))

    def to(self, device):
        super().to(device)
        self.reset_generator(0)
        return self

    def make_sampler(self, *, sampling_steps: int | None = None, sampler: str | None = None,
                     eta: float | None = None, inference_mode: str | None = None,
                     chunk_pixels: int | None = None, timestep_spacing: str | None = None,
                     noise_match: float | None = None) -> MaskedSliceSampler:
        """The sampling pipeline for this engine's EMA network (overrides for one call)."""
        steps = int(sampling_steps if sampling_steps is not None else self.cfg["sampling_steps"])
        kind = sampler if sampler is not None else self.cfg["sampler"]
        T = int(self.cfg["num_train_timesteps"])
        if kind not in SAMPLERS:
            raise VolsrError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")
        if not 1 <= steps <= T:
            raise VolsrError(f"sampling_steps must be between 1 and {T}, got {steps}")
        mode = inference_mode if inference_mode is not None else self.cfg["inference_mode"]
        if mode not in MODES:
            raise VolsrError(f"inference_mode must be one of {', '.join(MODES)}, got {mode!r}")
        eta = float(eta if eta is not None else self.cfg["eta"])
        if not 0.0 <= eta <= 1.0:
            raise VolsrError(f"eta must be in [0, 1], got {eta}")
        spacing = timestep_spacing if timestep_spacing is not None else self.cfg.get("timestep_spacing", "auto")
        nm = noise_match if noise_match is not None else self.cfg.get("noise_match", 0.0)
        if not 0.0 <= float(nm) <= 4.0:
            raise VolsrError(f"noise_match must be in [0, 4], got {nm}")
        if spacing not in ("auto", *SPACINGS):
            raise VolsrError(f"timestep_spacing must be one of auto, {', '.join(SPACINGS)}, got {spacing!r}")
        sched, model_t = sampling_scheduler(kind, steps=steps, num_train_timesteps=T, schedule=self.cfg["schedule"],
                                            prediction_type=self.cfg["prediction_type"],
                                            spacing=None if spacing == "auto" else spacing)
        return MaskedSliceSampler(
            network=self.sampling_network, scheduler=sched, model_timesteps=model_t,
            mask_channel=bool(self.cfg["mask_channel"]), linear_condition=self.cfg["condition"] == "linear",
            residual=bool(self.cfg["residual"]), multiple=self.multiple, eta=eta, mode=mode,
            tile=int(self.cfg["crop"]), tile_overlap=float(self.cfg["tile_overlap"]),
            chunk_pixels=int(chunk_pixels or DEFAULT_CHUNK_PIXELS),
            noise_match=float(nm),
        )

    def _generator_for(self, seed: int | None) -> torch.Generator:
        if seed is None:
            return self._generator
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    @torch.no_grad()
    def _restore(
        self,
        planes: torch.Tensor,
        known: torch.Tensor,
        *,
        seed: int | None = None,
        sampling_steps: int | None = None,
        sampler: str | None = None,
        eta: float | None = None,
        inference_mode: str | None = None,
        noise_match: float | None = None,
        batch_size: int | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Sample the unknown rows of all planes in batched calls.

        ``seed`` reseeds the noise for this call (else the engine's running generator, see
        :meth:`reset_generator`); ``batch_size`` caps planes per network call (default by
        pixel count); ``progress(stage, done, total)`` is called after every denoising step
        and ``cancel()`` is checked before each one. ``sampling_steps``, ``sampler``, ``eta``,
        ``inference_mode`` and ``noise_match`` override the model's config for this call.
        """
        self._check_channels(planes)
        if not self.trained:
            warnings.warn("restoring with an untrained MSDSR model gives noise: fit it or load a model first",
                          stacklevel=3)
        src_device, src_dtype = planes.device, planes.dtype
        x = self.to_model_units(planes.to(self.device, torch.float32))
        known = torch.as_tensor(known, dtype=torch.bool).to(self.device)
        chunk = None
        if batch_size is not None:
            if int(batch_size) < 1:
                raise VolsrError(f"batch_size must be >= 1, got {batch_size!r}")
            h, w = planes.shape[-2:]
            chunk = int(batch_size) * h * w
        pipe = self.make_sampler(sampling_steps=sampling_steps, sampler=sampler, eta=eta,
                                 inference_mode=inference_mode, chunk_pixels=chunk, noise_match=noise_match)
        gen = generator if generator is not None else self._generator_for(seed)
        out = pipe(x, known, generator=gen, progress=progress, cancel=cancel)
        return self.from_model_units(out).to(src_device, src_dtype)

    def restore_with_std(self, planes: torch.Tensor, known: torch.Tensor, n_samples: int, *,
                         seed: int | None = None, progress=None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and per-pixel standard deviation (Bessel-corrected) of ``n_samples`` samples.

        The std is an uncertainty map: 0 on measured rows, larger where the known rows
        constrain the result less. ``n_samples = 1`` gives a zero std.
        """
        if int(n_samples) != n_samples or int(n_samples) < 1:
            raise VolsrError(f"n_samples must be a whole number >= 1, got {n_samples!r}")
        n_samples = int(n_samples)
        gen = self._generator_for(seed)
        total_mean = None
        m2 = None
        for k in range(n_samples):
            def prog(stage, done, total, _k=k):  # one count over all samples: the bar never runs backwards
                if progress is not None:
                    progress(stage, _k * total + done, n_samples * total)
            s = self.restore(planes, known, generator=gen, progress=prog if progress else None, **kwargs).double()
            if total_mean is None:
                total_mean, m2 = s.clone(), torch.zeros_like(s)
            else:  # Welford: numerically stable running mean/variance
                delta = s - total_mean
                total_mean += delta / (k + 1)
                m2 += delta * (s - total_mean)
        std = (m2 / (n_samples - 1)).sqrt() if n_samples > 1 else m2
        n, _, h, _ = planes.shape
        kn = torch.as_tensor(known, dtype=torch.bool).to(planes.device)
        mean = paste_known(total_mean.to(planes.dtype), planes, kn)
        kn4 = (kn.expand(n, h) if kn.ndim == 1 else kn)[:, None, :, None]
        std = torch.where(kn4, torch.zeros((), dtype=planes.dtype, device=planes.device), std.to(planes.dtype))
        return mean, std
