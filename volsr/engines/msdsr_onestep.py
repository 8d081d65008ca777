"""One-step MSDSR: Brain-SR's learned noise map on top of a fitted two-stage model.

The DDIM chain of two-stage MSDSR costs ``sampling_steps`` denoiser calls per plane. Plain
DDIM with 1-3 steps keeps PSNR/SSIM but loses texture (spectrum error up on ``texture`` and
``em``). Brain-SR's remedy (``papers/brain-sr_frequency-guided-diffusion.txt``, Eq. 1-3) is a
*learned* start state and one denoiser call: a small network (the noise map,
:class:`volsr.models.noise_map.NoisePredictor`) reads the condition - here the stage-1
estimate (model units) and the known-row mask - and predicts the mean and log-variance of
the noise; ``x_t* = sqrt(abar) est + sqrt(1 - abar) eps`` with ``eps`` drawn from it (known rows
written clean, as in the masked sampler); the frozen denoiser predicts x0 at ``t*`` in one call.
Everything after the sample (realism blend, noise matching, pasting the measured rows) is
the DDIM path's. An untrained noise map (zero head) gives standard noise: SDEdit from the
estimate at ``t*``.

Training (:meth:`NoiseMapMixin.distil`): a short extra stage on a fitted model, through the
same loop as the fit (:func:`volsr.training.loop.fit_engine`: data, masks, budget, EMA, checkpoints);
only the noise map is a trainable part, the regressor and denoiser are frozen (their weights
get no gradient; the loss flows *through* the denoiser). Loss on the one-step x0 (model units,
measured rows pasted): L1 over the unknown rows + ``lambda_fft`` x
:func:`volsr.training.losses.fft_patch_loss` with the paper's final ``{4, 2}`` patches (weight 0.4, as
Brain-SR's default).

``fft_pairing``: ``'batch'`` (default) compares the batch-mean patch spectra
(:func:`volsr.training.losses.fft_spectrum_loss`), ``'patch'`` each patch with the target's (Brain-SR's
Eq. 3). Measured (``benchmarks/results/results_onestep.md``, 200 distil steps on the six 48x160x160
kinds, realism 0.5): the paired loss teaches the map to *shrink* its noise and ends at the
spectrum error of 1-step DDIM (texture 0.213 vs DDIM-10 0.100); the batch loss reaches DDIM-10's
spectrum error on cells, fibers, mri and em (texture 0.128, fluo 0.187 vs 0.106) at 0.2-0.6 dB
less PSNR. ``one_step_t`` 250: best of 100/250/500/750 untrained on ``texture``, equal after training.

Config keys (in :class:`volsr.engines.msdsr.MSDSRConfig`): ``one_step`` (build the noise map;
default False so older model files load unchanged; :meth:`distil` sets it), ``one_step_t``
(``t*``), ``np_width`` / ``np_layers`` (noise-map size), ``lambda_fft``. Restore with
``sampler='one-step'``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VolsrError
from ..models.noise_map import NoisePredictor, draw_noise, one_step_state
from ..training.losses import fft_patch_loss, fft_spectrum_loss
from ..training.masks import row_mask
from .learned import frozen

__all__ = ["ONE_STEP", "NoiseMapMixin", "FFT_PATCH", "FFT_STRIDE", "FFT_PAIRINGS"]

ONE_STEP = "one-step"
FFT_PAIRINGS = ("batch", "patch")
FFT_PATCH, FFT_STRIDE = 4, 2  # Brain-SR's final {patch, stride} configuration


class NoiseMapMixin:
    """The one-step sampler's parts of :class:`volsr.engines.msdsr.MSDSREngine` (see the module docstring)."""

    @property
    def distilling(self) -> bool:
        """True inside :meth:`distil`: only the noise map trains, on :meth:`noise_map_loss`."""
        return bool(self.__dict__.get("_distilling", False))

    def build_noise_map(self) -> NoisePredictor:
        c = int(self.cfg.channels)
        return NoisePredictor(c, int(self.cfg.np_width), int(self.cfg.np_layers), in_channels=c + 1)

    @property
    def noise_map_trained(self) -> bool:
        return "noise_map" in self.ema and int(self.ema["noise_map"].steps) > 0

    def check_noise_map(self) -> None:
        """Refuse one-step sampling on a model whose noise map was never trained."""
        if not self.noise_map_trained:
            raise VolsrError(
                "sampler='one-step' needs a trained noise map and this model has none; train one on the fitted "
                "model with `volsr distil MODEL.volsr DATA... -o OUT.volsr --minutes 2` (Python: "
                "engine.distil(data, minutes=2)), or restore with sampler='ddim'")

    # -- the start state ------------------------------------------------------------------------
    def _abar_at(self, t: int, device) -> torch.Tensor:
        return self._train_scheduler().alphas_cumprod[int(t)].to(device=device, dtype=torch.float32)

    def _start_state(self, net: torch.nn.Module, xk: torch.Tensor, m: torch.Tensor, cond: torch.Tensor,
                     t_star: int, generator: torch.Generator | None) -> torch.Tensor:
        """``x_t*`` from the noise map (known rows clean); gradients reach the noise map."""
        n, _, h, w = cond.shape
        mean, logvar = net["noise_map"](torch.cat([cond, m.to(cond.dtype).expand(n, 1, h, w)], dim=1))
        x = one_step_state(cond, draw_noise(mean, logvar, generator), self._abar_at(t_star, cond.device))
        return torch.where(m, xk, x)

    def one_step_start(self, net: torch.nn.Module, cfg) -> Any:
        """The ``start`` hook of :class:`volsr.diffusion.sampler.MaskedSliceSampler` for ``sampler='one-step'``."""
        t_star = int(cfg.one_step_t)

        def start(xk, m, cond, generator):
            return self._start_state(net, xk, m, cond, t_star, generator)

        return start

    # -- training -------------------------------------------------------------------------------
    def noise_map_loss(self, hr: torch.Tensor, known: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 (unknown rows) + ``lambda_fft`` x patch-FFT loss of the one-step x0 on HR planes (B, C, H, W)."""
        b, _, h, _ = hr.shape
        net, c = self.network, self.cfg
        m = row_mask(known, b, h, hr.device)
        measured = c.degradation.measured(hr.float())
        with torch.no_grad():
            cond = self.condition(measured, m[:, 0, :, 0], self.estimate(net, measured, m[:, 0, :, 0]))
        xk = self.to_model_units(measured)
        target = torch.where(m, xk, self.to_model_units(hr.float()))
        t = torch.full((b,), int(c.one_step_t), dtype=torch.long, device=hr.device)
        with frozen(net["denoiser"]):
            x = self._start_state(net, xk, m, cond, int(c.one_step_t), generator)
            pred = torch.where(m, xk, self.inputs.predict(net["denoiser"], x, m, t, cond, self.multiple))
        weight = (~m).to(pred.dtype).expand_as(pred)
        loss = ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)
        if c.lambda_fft > 0:
            fft = fft_spectrum_loss if c.fft_pairing == "batch" else fft_patch_loss
            loss = loss + float(c.lambda_fft) * fft(pred, target, FFT_PATCH, FFT_STRIDE)
        if net["noise_map"].training:
            net["noise_map"].steps.add_(1)
        return loss

    def add_noise_map(self) -> None:
        """Give a fitted model an (untrained) noise map, keeping every other weight."""
        if self.cfg.one_step:
            return
        if not self.cfg.two_stage:
            raise VolsrError("one-step sampling is built for two-stage MSDSR models (condition='regression'); "
                             "this model has no stage-1 estimate to start from")
        states = self.network.state_dict(), self.ema.state_dict()
        self.rebuild(self.cfg.replace(one_step=True))
        for module, state in zip((self.network, self.ema), states):
            missing, unexpected = module.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("noise_map.") for k in missing):
                raise VolsrError("internal: adding the noise map changed other weights' names")
        self.ema["noise_map"].load_state_dict(self.network["noise_map"].state_dict())

    def distil(self, data, *, steps: int | None = None, minutes: float | None = None, seed: int = 0,
               **options: Any) -> dict:
        """Train the one-step sampler's noise map on a fitted model (regressor and denoiser frozen).

        Parameters
        ----------
        data : PlaneData, array, path, folder or list of those
            Training planes, as for :meth:`fit` (use the data the model was fitted on).
        steps, minutes : int, float, optional
            The budget (at least one), as for :meth:`fit`.
        seed : int
            Crops, masks and the noise draws.
        **options
            Further :func:`volsr.training.loop.fit_engine` options (``batch_size``, ``lr``,
            ``progress``, ``cancel``, ``checkpoint_path``, ``resume``, ...).

        Returns
        -------
        dict
            The fit report; the provenance records ``stage='one-step distillation'``.

        Raises
        ------
        VolsrError
            When the model is untrained or not two-stage.
        """
        from ..training.loop import fit_engine

        if not self.trained:
            raise VolsrError("distil trains the one-step sampler of a fitted model; fit the model first "
                             "(or load one with MSDSREngine.load)")
        self.add_noise_map()
        previous = dict(self.provenance)
        self._distilling = True
        try:
            report = fit_engine(self, data, steps=steps, minutes=minutes, seed=seed, **options)
        finally:
            self._distilling = False
        self.provenance = {**previous, "stage": "one-step distillation", "one_step": {
            "one_step_t": int(self.cfg.one_step_t), "lambda_fft": float(self.cfg.lambda_fft),
            "fft_pairing": self.cfg.fft_pairing,
            "fft_patch_stride": [FFT_PATCH, FFT_STRIDE], "steps": report["steps"],
            "minutes": round(float(report["minutes"]), 3), "final_loss": report["final_loss"],
            "trained_on": report["data"], "seed": int(seed)}}
        self.trained = True
        return report
