"""The learned noise map of one-step diffusion (Brain-SR's noise predictor), shared by engines.

Brain-SR (``papers/brain-sr_frequency-guided-diffusion.txt``, Eq. 1, after InvSR) replaces
the reverse chain by *one* denoiser call at a fixed timestep ``t*`` from the state
``x_t* = sqrt(abar) cond + sqrt(1 - abar) eps``, where ``cond`` is a low-resolution estimate
and ``eps`` is drawn from a distribution a small network (the NP) predicts from ``cond``.
Brain-SR applies it to latents (:mod:`volsr.engines.brainsr`), two-stage MSDSR to the
stage-1 estimate in image space (:mod:`volsr.engines.msdsr`); this module holds what both
use: the network, the reparameterised draw and the one-step start state.
"""

from __future__ import annotations

import torch

__all__ = ["NoisePredictor", "draw_noise", "one_step_state"]


class NoisePredictor(torch.nn.Module):
    """The NP: a few 3x3 convolutions (dilated for context) to noise mean and log-variance.

    The last layer starts at zero: an untrained NP gives mean 0 and variance 1, i.e. standard
    diffusion noise at ``t*`` (SDEdit from the condition), and training moves it from there.
    The buffer ``steps`` counts training steps (saved with the weights: whether it was trained).

    Parameters
    ----------
    channels : int
        Channels of the noise map (the denoiser's data channels); the output has
        ``2 * channels`` (mean, log-variance).
    width, layers : int
        Hidden width and number of hidden convolutions.
    in_channels : int, optional
        Input channels (default ``channels``; MSDSR adds the known-row mask channel).

    Examples
    --------
    >>> mean, logvar = NoisePredictor(1, width=4, layers=2, in_channels=2)(torch.rand(1, 2, 8, 8))
    >>> float(mean.abs().max()), float(logvar.abs().max())
    (0.0, 0.0)
    """

    def __init__(self, channels: int, width: int = 32, layers: int = 4, in_channels: int | None = None):
        super().__init__()
        mods: list[torch.nn.Module] = []
        c_in = int(in_channels or channels)
        for i in range(layers):
            d = (1, 2, 4)[i % 3] if layers > 2 else 1
            mods += [torch.nn.Conv2d(c_in, width, 3, padding=d, dilation=d), torch.nn.SiLU()]
            c_in = width
        self.body = torch.nn.Sequential(*mods)
        self.head = torch.nn.Conv2d(width, 2 * channels, 3, padding=1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.head(self.body(z)).chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 4.0)


def draw_noise(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
               sample: bool = True) -> torch.Tensor:
    """``S(eps)`` of Eq. 1: ``mean + exp(logvar / 2) n`` (reparameterised: gradients reach the NP), or the mean."""
    if not sample:
        return mean
    n = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + (0.5 * logvar).exp() * n


def one_step_state(cond: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor | float) -> torch.Tensor:
    """Eq. 1 in the denoiser's variance-preserving scaling: ``sqrt(abar) cond + sqrt(1 - abar) eps``.

    (``z_t = cond + sigma_t eps`` with ``sigma_t = sqrt((1 - abar) / abar)``, times ``sqrt(abar)``.)
    """
    abar = torch.as_tensor(abar, dtype=cond.dtype, device=cond.device)
    return abar.sqrt() * cond + (1 - abar).sqrt() * eps
