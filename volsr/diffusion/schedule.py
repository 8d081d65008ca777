"""Noise schedules and schedulers (MONAI) for masked-slice diffusion.

The *scheduler* is the pure math of the forward process and of one reverse step; the
network (:mod:`volsr.models.diffusion_unet`) and the sampling loop (:mod:`volsr.diffusion.sampler`)
are separate objects, as in diffusers.

Training uses MONAI's ``DDPMScheduler(schedule='cosine')`` with T = 1000 (the paper's cosine
schedule, Nichol & Dhariwal 2021). For sampling with fewer than T steps the schedule is
*respaced*: a new MONAI scheduler whose ``alphas_cumprod`` are the training schedule's values
at the chosen timesteps. Why not MONAI's own ``set_timesteps``? In MONAI 1.6 the DDIM step
assumes a stride of ``T // n`` while ``set_timesteps`` spaces the timesteps by ``(T-1)/(n-1)``
(so the noise level the model is told and the one it receives disagree), and the DDPM step
always steps from ``t`` to ``t - 1`` (only exact with all T steps). A respaced scheduler makes
every step exact for both: index ``i`` of the respaced chain is training timestep
``timesteps[i]``, which is what the network is given.
"""

from __future__ import annotations

import torch

SCHEDULES = ("cosine", "linear_beta", "scaled_linear_beta")
SAMPLERS = ("ddim", "ddpm")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _register_respaced() -> None:
    from monai.networks.schedulers import NoiseSchedules

    if "volsr_respaced" in NoiseSchedules.names:
        return

    @NoiseSchedules.add_def("volsr_respaced", "A training schedule evaluated at a subset of its timesteps (volsr)")
    def _respaced(num_train_timesteps: int, alphas_cumprod: torch.Tensor):
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if abar.numel() != num_train_timesteps:
            raise ValueError("alphas_cumprod must have one value per respaced step")
        prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        alphas = abar / prev
        betas = 1.0 - alphas
        return betas, alphas, abar  # float64: keeps 1 - abar exact near abar ~ 0 (eta > 0 steps)


def _stable_ddim():
    """MONAI's ``DDIMScheduler`` with the step variance clamped to its mathematical bound.

    ``sigma_t^2 <= 1 - abar_prev`` holds exactly, but in floating point ``1 - abar_prev -
    sigma_t^2`` can round below 0 at the first step from pure noise (abar ~ 1e-9) with
    ``eta = 1``, and MONAI takes its square root (NaN). The clamp changes nothing else.
    """
    from monai.networks.schedulers import DDIMScheduler

    class StableDDIMScheduler(DDIMScheduler):
        def _get_variance(self, timestep, prev_timestep):
            var = super()._get_variance(timestep, prev_timestep)
            abar_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
            return torch.clamp(var, min=0.0, max=float(1.0 - abar_prev) * (1.0 - 1e-6))

    return StableDDIMScheduler


def training_scheduler(
    *, num_train_timesteps: int = 1000, schedule: str = "cosine", prediction_type: str = "sample"
):
    """The forward process used for training: a MONAI ``DDPMScheduler`` (no clipping).

    Parameters
    ----------
    num_train_timesteps : int
        T (paper: 1000).
    schedule : {'cosine', 'linear_beta', 'scaled_linear_beta'}
        MONAI noise-schedule name; ``'cosine'`` is the paper's.
    prediction_type : {'epsilon', 'sample', 'v_prediction'}
        What the network predicts (MONAI names; ``sample`` is x0).
    """
    from monai.networks.schedulers import DDPMScheduler

    _check(schedule=schedule, prediction_type=prediction_type, num_train_timesteps=num_train_timesteps)
    return DDPMScheduler(
        num_train_timesteps=int(num_train_timesteps), schedule=schedule, prediction_type=prediction_type,
        clip_sample=False,
    )


SPACINGS = ("trailing", "leading", "quadratic")


def sampling_timesteps(num_train_timesteps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Training timesteps visited by an ``steps``-step sampler, descending.

    ``trailing``: ``t_k = round(T - k T / steps) - 1``; the chain starts from pure noise at
    t = T-1 and even a one-step sampler predicts from noise. Right for x0 and v prediction.
    ``quadratic``: ``t_k = round((T - 1) ((steps - k) / steps)^2)`` (DDIM paper's quadratic
    spacing, floored at 1 and made strictly decreasing); starts from pure noise like ``trailing`` but
    spends more steps at low noise and ends near t = 0 instead of at ``T / steps - 1``.
    ``leading``: ``t_k = (steps - 1 - k) * (T // steps) + 1`` (diffusers' default); the chain
    starts below T-1. Needed for epsilon prediction: there ``x0 = (x_t - sqrt(1 - abar) eps)
    / sqrt(abar)`` and the cosine schedule's ``abar(T-1) ~ 2e-9`` would amplify any epsilon
    error ~2e4-fold (measured: unusable samples after a short CPU fit).

    Examples
    --------
    >>> sampling_timesteps(1000, 4).tolist()
    [999, 749, 499, 249]
    >>> sampling_timesteps(1000, 4, spacing="leading").tolist()
    [751, 501, 251, 1]
    >>> sampling_timesteps(1000, 4, spacing="quadratic").tolist()
    [999, 562, 250, 62]
    """
    T, n = int(num_train_timesteps), int(steps)
    if not 1 <= n <= T:
        raise ValueError(f"sampling steps must be between 1 and {T}, got {steps!r}")
    if spacing == "trailing":
        t = torch.round(T - torch.arange(n, dtype=torch.float64) * (T / n)).long() - 1
    elif spacing == "quadratic":
        frac = (n - torch.arange(n, dtype=torch.float64)) / n
        t = torch.round((T - 1) * frac**2).long()
        for i in range(n - 2, -1, -1):  # strictly decreasing (many steps on a short schedule)
            t[i] = max(int(t[i]), int(t[i + 1]) + 1)
        for i in range(n - 1, -1, -1):  # ... and at most T-1 (n <= T, so both passes fit)
            t[i] = min(int(t[i]), T - 1 - i)
    elif spacing == "leading":
        t = (n - 1 - torch.arange(n)) * (T // n) + min(1, T - 1 - (n - 1) * (T // n))
    else:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    return t.long().clamp(0, T - 1)


def sampling_scheduler(
    kind: str = "ddim",
    *,
    steps: int = 20,
    num_train_timesteps: int = 1000,
    schedule: str = "cosine",
    prediction_type: str = "sample",
    spacing: str | None = None,
):
    """A MONAI scheduler for an ``steps``-step reverse chain, and the network timesteps.

    Parameters
    ----------
    kind : {'ddim', 'ddpm'}
        ``ddim`` (deterministic for ``eta=0``; ``eta=1`` is DDPM-like ancestral noise, the
        paper's official setting) or ``ddpm`` (ancestral sampling, posterior variance).
    steps : int
        Number of network calls (1 .. T).
    spacing : {'trailing', 'leading'}, optional
        See :func:`sampling_timesteps`; default ``leading`` for epsilon prediction,
        ``trailing`` otherwise.

    Returns
    -------
    scheduler : monai.networks.schedulers.Scheduler
        Respaced to ``steps`` steps; call ``scheduler.step(output, i, sample, ...)`` with
        the respaced index ``i`` (``scheduler.timesteps``, descending).
    model_timesteps : torch.LongTensor (steps,)
        The training timestep to give the network at each entry of ``scheduler.timesteps``
        (same order).
    """
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")
    base = training_scheduler(num_train_timesteps=num_train_timesteps, schedule=schedule,
                              prediction_type=prediction_type)
    if spacing is None:
        spacing = "leading" if prediction_type == "epsilon" else "trailing"
    model_t = sampling_timesteps(num_train_timesteps, steps, spacing)  # descending
    return _respaced(kind, base, model_t, prediction_type)


def one_step_scheduler(t_star: int, *, num_train_timesteps: int = 1000, schedule: str = "cosine",
                       prediction_type: str = "sample"):
    """A one-step DDIM chain from training timestep ``t_star`` straight to the clean image.

    The step from ``t_star`` ends at ``abar = 1`` (``set_alpha_to_one``), so with ``eta = 0``
    it returns the network's x0 estimate exactly: the sampler of one-step diffusion
    (Brain-SR's Eq. 1 start state, :mod:`volsr.models.noise_map`). Same returns as
    :func:`sampling_scheduler`.

    Examples
    --------
    >>> sched, model_t = one_step_scheduler(400)
    >>> model_t.tolist()
    [400]
    """
    if not 0 <= int(t_star) < int(num_train_timesteps):
        raise ValueError(f"t_star must be in [0, {int(num_train_timesteps) - 1}], got {t_star!r}")
    base = training_scheduler(num_train_timesteps=num_train_timesteps, schedule=schedule,
                              prediction_type=prediction_type)
    return _respaced("ddim", base, torch.tensor([int(t_star)]), prediction_type)


def _respaced(kind: str, base, model_t: torch.Tensor, prediction_type: str):
    """The respaced scheduler visiting the training timesteps ``model_t`` (descending) and those timesteps."""
    from monai.networks.schedulers import DDPMScheduler

    ascending = model_t.flip(0)
    abar = base.alphas_cumprod.double()[ascending]
    _register_respaced()
    n = int(len(model_t))
    if kind == "ddim":
        sched = _stable_ddim()(num_train_timesteps=n, schedule="volsr_respaced", alphas_cumprod=abar,
                              clip_sample=False, set_alpha_to_one=True, prediction_type=prediction_type)
    else:
        sched = DDPMScheduler(num_train_timesteps=n, schedule="volsr_respaced", alphas_cumprod=abar,
                              clip_sample=False, prediction_type=prediction_type)
    sched.set_timesteps(n)
    # respaced index i <-> training timestep ascending[i]
    model_timesteps = ascending[sched.timesteps.long()]
    return sched, model_timesteps


def _check(*, schedule: str, prediction_type: str, num_train_timesteps: int) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
    if int(num_train_timesteps) != num_train_timesteps or int(num_train_timesteps) < 2:
        raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
