"""The training loop shared by every learned engine.

An engine supplies ``training_loss(hr, known, generator)``; this module supplies
everything around it: data (:mod:`volsr.training.planes`), row masks (:mod:`volsr.training.masks`), AdamW with
linear warm-up + cosine decay, gradient clipping, an EMA of the weights (used for
sampling), a step / wall-time budget, progress with cancellation, and resumable
checkpoints (:mod:`volsr.checkpoint`).

The engine says what it needs through its interface, never through optional attributes:
``engine.training_data(data, crop)`` gives the batch source (crops or plane triplets),
``engine.capabilities.training_data`` whether batches come with row masks ('planes') or
not ('triplets'), and ``engine.trainable_parts()`` the networks to optimise, each with its
own learning rate and EMA decay (two-stage engines have two).

The loop is assembled from small parts: :class:`~volsr.training.state.TrainSettings` (validated
options), :class:`~volsr.training.budget.Budget` (steps / wall time and the learning-rate
schedule), :class:`~volsr.training.state.TrainState` (counters, losses, random generators),
:class:`~volsr.training.state.Optimiser` (AdamW groups, clipping, EMA) and
:class:`~volsr.training.state.Checkpointer` (resumable checkpoints).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled, VolsrError
from ..runtime.hardware import configure_threads
from .budget import Budget, StagePlan, lr_at_fraction
from .state import Checkpointer, Optimiser, TrainSettings, TrainState, _resume

__all__ = ["fit_engine"]


def _progress_caller(progress: Callable | None):
    if progress is None:
        return None
    try:
        params = list(inspect.signature(progress).parameters.values())
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        names = {p.name for p in params}
    except (TypeError, ValueError):
        takes_all, names = False, set()

    def call(done, total, **info):  # only the keywords the callback takes
        progress("fit", done, total, **(info if takes_all else {k: v for k, v in info.items() if k in names}))

    return call


def _loss_value(loss: torch.Tensor, step: int) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise VolsrError(f"the training loss became {value} at step {step + 1}; lower the learning rate (--lr)")
    return value


def _run_loop(engine, planes, sampler, state: TrainState, budget: Budget, opt: Optimiser, ckpt: Checkpointer,
              settings: TrainSettings, report_progress, cancel) -> None:
    uses_masks = engine.capabilities.training_data == "planes"
    log_every = int(settings.log_every)
    stages = StagePlan(engine.training_stages())
    while True:
        if cancel is not None and cancel():
            raise Cancelled("training cancelled")
        factor = budget.lr_factor(state.step)
        if factor is None:
            return
        if stages.staged:
            factor = _enter_stage(engine, opt, state, stages, budget, settings)
        lr_now = opt.set_lr(factor)
        hr = planes.batch(state.np_rng, settings.batch_size).to(engine.device, non_blocking=True)
        known = None
        if uses_masks:
            known = torch.from_numpy(sampler(settings.batch_size, hr.shape[-2], state.np_rng)).to(engine.device)
        loss = engine.training_loss(hr, known, state.gen)
        value = _loss_value(loss, state.step)
        opt.step(loss, state.ema_n)
        state.ema_n += 1
        recent = state.record(value, log_every)
        budget.after_step(state.step)
        state.time_fraction = budget.frac
        ckpt.maybe_save()
        if report_progress is not None:
            report_progress(state.step, budget.shown_total, loss=recent, lr=lr_now,
                            **({"part": engine.training_stage} if stages.staged else {}))


def _enter_stage(engine, opt: Optimiser, state: TrainState, stages: StagePlan, budget: Budget,
                 settings: TrainSettings) -> float:
    """Switch to the stage the budget has reached; the lr factor within that stage."""
    i, local = stages.locate(budget.fraction(state.step))
    i = max(i, state.stage)  # never back (a resumed run keeps the stage it was in)
    if i != state.stage or engine.training_stage != stages.stages[i].name:
        if i != state.stage:
            state.ema_n = 0  # the new stage's parts get their own EMA warm-up
        state.stage = i
        opt.enter_stage(stages.stages[i])
        engine.training_stage = stages.stages[i].name
    return lr_at_fraction(local, 1.0, float(settings.warmup_frac))


def _report(state: TrainState, budget: Budget, planes, settings, base_lr, t_start, first_step, resumed_from) -> dict:
    loop_s = max(time.perf_counter() - budget.t_loop, 1e-9)
    drawn = max(planes.drawn, 1)
    losses, log_every = state.losses, int(settings.log_every)
    return {
        "steps": state.step,
        "steps_this_run": state.step - first_step,
        "total_steps": state.step if budget.time_mode else budget.total,
        "minutes": (time.perf_counter() - t_start) / 60.0,
        "final_loss": float(np.mean(losses[-log_every:])) if losses else float("nan"),
        "mean_loss": float(np.mean(losses)) if losses else float("nan"),
        "loss_history": state.history,
        "steps_per_second": (state.step - first_step) / loop_s,
        "estimated_total": bool(budget.time_mode),
        "stopped_by": budget.stopped_by,
        "resumed_from": resumed_from,
        "data": planes.describe(),
        "rejected_crop_fraction": planes.rejected / drawn,
        "lr": base_lr,
        "batch_size": int(settings.batch_size),
        "seed": int(settings.seed),
    }


def _provenance(engine, planes, sampler, report: dict) -> dict:
    previous = dict(engine.provenance) if engine.trained and engine.provenance else None
    return {
        "trained_on": planes.describe(),
        "data": list(planes.source_names)[:100],
        "steps": report["steps"],
        "seed": report["seed"],
        "batch_size": report["batch_size"],
        "lr": report["lr"],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "final_loss": report["final_loss"],
        **({"mask": sampler.to_config()} if sampler is not None else {}),
        **({"finetuned_from": previous} if previous else {}),
    }


def fit_engine(engine, data, *, mask_sampler=None, crop: int | None = None,
               progress: Callable[..., Any] | None = None, cancel: Callable[[], bool] | None = None,
               **options: Any) -> dict:
    """Train ``engine`` on planes within a step and/or wall-time budget.

    Parameters
    ----------
    engine : volsr.engines.learned.LearnedEngine
        Trained in place: each trainable part's live weights and EMA weights (the EMA is used
        for restoring and saved in model files). Everything runs on ``engine.device``.
    data : PlaneData, array, path, folder or list of those
        See :func:`volsr.training.planes.as_plane_data`. An untrained engine adopts the data's channel
        count; a trained one (fine-tuning) must match it.
    mask_sampler : volsr.training.masks.MaskSampler, optional
        Default: from the engine config.
    crop : int, optional
        Crop size when ``data`` is not already a PlaneData (default ``engine.cfg.crop``).
    progress : callable, optional
        ``progress(stage, done, total)``; called once per step with ``stage='fit'`` and
        those of ``loss=`` (running mean), ``lr=`` and, in a staged fit, ``part=`` (the
        stage's name) that it accepts (all with ``**info``). It may raise
        :class:`volsr.errors.Cancelled` to stop.
    cancel : callable, optional
        ``cancel()`` returning True stops training by raising :class:`Cancelled`.
    **options
        :class:`TrainSettings`: ``steps`` (total, including steps before a resumed
        checkpoint; the lr schedule spans them), ``minutes`` (wall time of this call; alone,
        the schedule follows elapsed time and ``progress`` totals are estimates), at least
        one of the two; ``batch_size`` (16), ``lr`` (peak; default each part's config lr),
        ``warmup_frac`` (0.1, then cosine to 0), ``weight_decay`` (default config),
        ``grad_clip`` (1.0; None = off), ``ema_decay`` (default config; warm-up
        ``min(decay, (1 + n) / (10 + n))``), ``seed`` (crops/masks and the engine's noise),
        ``checkpoint_path``, ``checkpoint_every`` (500), ``resume`` (continue from
        ``checkpoint_path``: a resumed run ends with the same weights as an uninterrupted
        one), ``log_every`` (50 steps per ``loss_history`` entry).

    Returns
    -------
    dict
        ``steps``, ``steps_this_run``, ``total_steps``, ``minutes``, ``final_loss``,
        ``mean_loss``, ``loss_history``, ``steps_per_second``, ``estimated_total``,
        ``stopped_by`` ('steps', 'minutes'), ``resumed_from``, ``data``,
        ``rejected_crop_fraction``, ``lr``, ``batch_size``, ``seed``.
    """
    t_start = time.perf_counter()
    configure_threads()
    settings = TrainSettings(**options)
    wd = float(settings.weight_decay if settings.weight_decay is not None else engine.cfg.weight_decay)
    planes = engine.training_data(data, crop=crop)
    engine.adopt_channels(planes.channels)
    uses_masks = engine.capabilities.training_data == "planes"
    sampler = (mask_sampler or engine.cfg.mask_sampler()) if uses_masks else None
    state = TrainState(seed=int(settings.seed), device=engine.device)
    total, frac0, resumed_from = settings.steps, 0.0, None
    if settings.resume and Path(settings.checkpoint_path).exists():
        opt, total, frac0 = _resume(engine, settings.checkpoint_path, state, wd, settings)
        resumed_from = state.step
    else:
        opt = Optimiser(engine, settings.lr, wd, settings.grad_clip, settings.ema_decay)
    first_step = state.step
    budget = Budget(total, settings.minutes, float(settings.warmup_frac), t_start, first_step, frac0)
    ckpt = Checkpointer(settings.checkpoint_path, settings.checkpoint_every, engine, opt, state,
                        None if budget.time_mode else total)
    engine.network.train()
    try:
        _run_loop(engine, planes, sampler, state, budget, opt, ckpt, settings, _progress_caller(progress), cancel)
    except (Cancelled, KeyboardInterrupt):
        if state.step > first_step:
            ckpt.save()
        engine.network.eval()
        raise
    if state.step > first_step and state.step % ckpt.every != 0:
        ckpt.save()
    engine.network.eval()
    engine.ema.eval()
    state.close_history(int(settings.log_every))
    report = _report(state, budget, planes, settings, opt.base_lrs[0], t_start, first_step, resumed_from)
    engine.provenance = _provenance(engine, planes, sampler, report)
    engine.trained = True
    return report
