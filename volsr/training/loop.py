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

The loop is assembled from small parts: :class:`TrainSettings` (validated options),
:class:`Budget` (steps / wall time and the learning-rate schedule), :class:`TrainState`
(counters, losses, random generators), :class:`Optimiser` (AdamW groups, clipping, EMA) and
:class:`Checkpointer` (resumable checkpoints).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled, VolsrError
from ..runtime.hardware import configure_threads

__all__ = ["fit_engine", "lr_at", "lr_at_fraction", "ema_decay_at", "TrainSettings", "Budget", "TrainState"]

def lr_at(step: int, total: int, base_lr: float, warmup_frac: float = 0.1) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up over ``warmup_frac * total`` steps, then cosine to 0.

    Examples
    --------
    >>> round(lr_at(0, 100, 1.0), 3), round(lr_at(9, 100, 1.0), 3), round(lr_at(99, 100, 1.0), 4)
    (0.1, 1.0, 0.0003)
    """
    total = max(int(total), 1)
    warm = max(1, int(round(warmup_frac * total)))
    if step < warm:
        return base_lr * (step + 1) / warm
    span = max(total - warm, 1)
    t = min((step - warm) / span, 1.0)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_at_fraction(frac: float, base_lr: float, warmup_frac: float = 0.1, floor: float = 0.01) -> float:
    """Learning rate at a fraction ``frac`` in [0, 1] of a wall-time budget (same shape as :func:`lr_at`).

    Used when only ``minutes`` is given: the schedule follows elapsed time, so it spans the
    whole budget however the speed varies on a shared machine. ``floor`` keeps the very first
    step's warm-up rate above 0.

    Examples
    --------
    >>> lr_at_fraction(0.05, 1.0), lr_at_fraction(0.1, 1.0), round(lr_at_fraction(1.0, 1.0), 6)
    (0.5, 1.0, 0.0)
    """
    frac = min(max(float(frac), 0.0), 1.0)
    if warmup_frac > 0 and frac < warmup_frac:
        return base_lr * max(frac / warmup_frac, floor)
    t = (frac - warmup_frac) / max(1.0 - warmup_frac, 1e-12)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))


def ema_decay_at(n: int, ema_decay: float) -> float:
    """EMA decay after ``n`` updates: ``min(ema_decay, (1 + n) / (10 + n))``.

    The warm-up keeps the EMA close to the live weights early on, so a fit of a few hundred
    steps already yields usable EMA weights (a fixed 0.9999 would still be ~97% the random
    initialisation after 300 steps).
    """
    return min(float(ema_decay), (1.0 + n) / (10.0 + n))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


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


def check_budget(steps, minutes) -> tuple[int | None, float | None]:
    """The one check of a fit budget: positive whole steps and/or positive finite minutes."""
    if steps is None and minutes is None:
        raise VolsrError("no training budget: give steps (--steps N) and/or minutes (--minutes M)")
    if steps is not None:
        if isinstance(steps, bool) or int(steps) != steps or int(steps) <= 0:
            raise VolsrError(f"steps must be a positive whole number of training steps, got {steps!r}")
        steps = int(steps)
    if minutes is not None:
        if not (float(minutes) > 0 and math.isfinite(float(minutes))):
            raise VolsrError(f"minutes must be a positive number, got {minutes!r}")
        minutes = float(minutes)
    return steps, minutes


@dataclass(frozen=True)
class TrainSettings:
    """Validated options of one fit (see :func:`fit_engine`)."""

    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 16
    lr: float | None = None
    warmup_frac: float = 0.1
    weight_decay: float | None = None
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    seed: int = 0
    checkpoint_path: str | Path | None = None
    checkpoint_every: int = 500
    resume: bool = False
    log_every: int = 50

    def __post_init__(self):
        steps, minutes = check_budget(self.steps, self.minutes)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "minutes", minutes)
        if int(self.batch_size) < 1:
            raise VolsrError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not (0.0 <= float(self.warmup_frac) < 1.0):
            raise VolsrError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        if int(self.checkpoint_every) < 1:
            raise VolsrError(f"checkpoint_every must be >= 1 step, got {self.checkpoint_every!r}")
        if int(self.log_every) < 1:
            raise VolsrError(f"log_every must be >= 1, got {self.log_every!r}")
        if self.resume and self.checkpoint_path is None:
            raise VolsrError("resume=True needs checkpoint_path (the file to resume from)")
        if self.lr is not None and not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise VolsrError(f"lr must be a positive number, got {self.lr!r}")
        if self.ema_decay is not None and not (0.0 <= float(self.ema_decay) < 1.0):
            raise VolsrError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")


@dataclass
class TrainState:
    """Everything that changes step by step and is saved in a checkpoint."""

    seed: int
    device: torch.device
    step: int = 0
    ema_n: int = 0
    losses: list = field(default_factory=list)
    history: list = field(default_factory=list)
    time_fraction: float = 0.0
    stage: int = 0

    def __post_init__(self):
        self.np_rng = np.random.default_rng(self.seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(self.seed))

    def to_dict(self) -> dict:
        return {"step": self.step, "ema_n": self.ema_n, "losses": list(self.losses),
                "history": [list(h) for h in self.history], "time_fraction": float(self.time_fraction),
                "stage": int(self.stage),
                "np_rng": json.dumps(self.np_rng.bit_generator.state), "torch_gen": self.gen.get_state(),
                "seed": int(self.seed)}

    def load(self, state: dict) -> None:
        self.step, self.ema_n = int(state["step"]), int(state["ema_n"])
        self.losses = [float(v) for v in state["losses"]]
        self.history = [list(h) for h in state["history"]]
        self.time_fraction = float(state.get("time_fraction", 0.0))
        self.stage = int(state.get("stage", 0))
        self.np_rng.bit_generator.state = json.loads(state["np_rng"])
        self.gen.set_state(state["torch_gen"].to("cpu"))

    def record(self, value: float, log_every: int) -> float:
        """Add one loss; returns the running mean over the last ``log_every`` steps."""
        self.step += 1
        self.losses.append(value)
        recent = float(np.mean(self.losses[-log_every:]))
        if self.step % log_every == 0:
            self.history.append([self.step, recent])
        return recent

    def close_history(self, log_every: int) -> None:
        if self.losses and (not self.history or self.history[-1][0] != self.step):
            tail = self.step % log_every or log_every
            self.history.append([self.step, float(np.mean(self.losses[-tail:]))])


class Budget:
    """Steps and/or wall time, and the learning-rate factor at the current position.

    With ``minutes`` alone the schedule follows elapsed time (:func:`lr_at_fraction`), so
    warm-up and cosine decay span the budget however fast the machine is.
    """

    def __init__(self, total: int | None, minutes: float | None, warmup_frac: float, t_start: float,
                 first_step: int, frac0: float = 0.0):
        self.total, self.warmup_frac, self.first_step, self.frac0 = total, warmup_frac, first_step, frac0
        self.time_mode = total is None
        self.deadline = None if minutes is None else t_start + 60.0 * float(minutes)
        self.t_loop = time.perf_counter()
        self.frac = frac0
        self.stopped_by = "steps"
        self.shown_total = total
        if self.time_mode and minutes is None:
            raise VolsrError("resuming a time-budgeted run needs a budget: give --minutes or --steps")
        if not self.time_mode and first_step >= total:
            raise VolsrError(
                f"the checkpoint already holds {first_step} steps, the budget is {total}; raise --steps to train further"
            )

    def _run_fraction(self, now: float) -> float:
        return (now - self.t_loop) / max(self.deadline - self.t_loop, 1e-9)

    def lr_factor(self, step: int) -> float | None:
        """The lr multiplier for the next step, or None when the budget is spent."""
        if not self.time_mode:
            if step >= self.total:
                return None
            if self.deadline is not None and step > self.first_step and time.perf_counter() >= self.deadline:
                self.stopped_by = "minutes"
                return None
            return lr_at(step, self.total, 1.0, self.warmup_frac)
        now = time.perf_counter()
        if now >= self.deadline and step > self.first_step:
            self.stopped_by = "minutes"
            return None
        self.frac = min(self.frac0 + (1.0 - self.frac0) * self._run_fraction(now), 1.0)
        return lr_at_fraction(self.frac, 1.0, self.warmup_frac)

    def fraction(self, step: int) -> float:
        """Where the next step sits in the budget, in [0, 1) (after :meth:`lr_factor`): its middle
        with a step budget, so a staged fit of ``n`` steps gives each of ``n`` stages one step."""
        return self.frac if self.time_mode else (step + 0.5) / max(self.total, 1)

    def after_step(self, step: int) -> None:
        if self.time_mode:
            done = self._run_fraction(time.perf_counter())
            self.frac = min(self.frac0 + (1.0 - self.frac0) * done, 1.0)
            self.shown_total = max(step, self.first_step + int(round((step - self.first_step) / max(done, 1e-9))))


class Optimiser:
    """AdamW over the engine's trainable parts (one group each), gradient clipping, EMA updates."""

    def __init__(self, engine, lr: float | None, weight_decay: float, grad_clip: float | None,
                 ema_decay: float | None):
        self.engine = engine
        self.parts = engine.trainable_parts()
        scale = 1.0 if lr is None else float(lr) / float(engine.cfg.lr)
        self.base_lrs = [p.lr * scale for p in self.parts]
        self.decays = [float(ema_decay) if ema_decay is not None else p.ema_decay for p in self.parts]
        groups = [{"params": list(p.module.parameters()), "lr": b} for p, b in zip(self.parts, self.base_lrs)]
        self.opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.params = [q for g in groups for q in g["params"]]
        self.active = {p.name for p in self.parts}

    def set_lr(self, factor: float) -> float:
        for part, group, base in zip(self.parts, self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor if part.name in self.active else 0.0
        return next((b * factor for p, b in zip(self.parts, self.base_lrs) if p.name in self.active), 0.0)

    def enter_stage(self, stage) -> None:
        """Train only ``stage.parts``; a part that stops training continues from its EMA weights."""
        for part in self.parts:
            if part.name in self.active and part.name not in stage.parts:
                part.module.load_state_dict(part.ema.state_dict())
        self.active = {p.name for p in self.parts if p.name in stage.parts}

    def step(self, loss: torch.Tensor, ema_n: int) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None and self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, float(self.grad_clip))
        self.opt.step()
        for part, decay in zip(self.parts, self.decays):
            if part.name in self.active:
                _ema_update(part.ema, part.module, ema_decay_at(ema_n, decay))


class Checkpointer:
    """Writes resumable checkpoints every ``every`` steps, at the end and on cancel."""

    def __init__(self, path, every: int, engine, optimiser: Optimiser, state: TrainState, budget_total):
        self.path, self.every, self.engine, self.optimiser, self.state = path, int(every), engine, optimiser, state
        self.budget_total = budget_total

    def _payload(self) -> dict:
        eng = self.engine
        return {"engine": eng.name, "config": _config_json(eng), "network": eng.network.state_dict(),
                "ema": eng.ema.state_dict(), "optimizer": self.optimiser.opt.state_dict(),
                "total_steps": self.budget_total, **self.state.to_dict()}

    def save(self) -> None:
        from ..checkpoint import save_training_checkpoint

        if self.path is not None:
            save_training_checkpoint(self.path, self._payload())

    def maybe_save(self) -> None:
        if self.path is not None and self.state.step % self.every == 0:
            self.save()


def _config_json(engine) -> str:
    return json.dumps(engine.cfg.to_dict(), sort_keys=True, default=str)


def _resume(engine, path, state: TrainState, weight_decay, settings) -> tuple[Optimiser, int | None, float]:
    """Load a checkpoint into engine and state; returns (optimiser, total steps, time fraction used)."""
    from ..checkpoint import load_training_checkpoint

    ck = load_training_checkpoint(path)
    if ck.get("engine") != engine.name:
        raise VolsrError(f"checkpoint {path} is for engine '{ck.get('engine')}', not '{engine.name}'; "
                         "resume with the same engine or start without --resume")
    saved = json.loads(ck["config"])
    if saved != json.loads(_config_json(engine)):
        if saved.get("channels") != engine.cfg.channels:
            raise VolsrError(f"checkpoint {path} was trained on {saved.get('channels')} channel(s), "
                             f"the data have {engine.cfg.channels}; resume with the same data")
        engine.rebuild(engine.Config.from_dict(saved, strict=False))  # its config defines the weights' shapes
    engine.network.load_state_dict(ck["network"])
    engine.ema.load_state_dict(ck["ema"])
    opt = Optimiser(engine, settings.lr, weight_decay, settings.grad_clip, settings.ema_decay)
    opt.opt.load_state_dict(ck["optimizer"])
    state.load(ck)
    total = settings.steps if settings.steps is not None else ck.get("total_steps")
    frac0 = 0.0
    if total is None:
        frac0 = state.time_fraction
        if frac0 >= 1.0:
            raise VolsrError(f"the checkpoint's time budget is used up (step {state.step}); give --steps to train further")
    return opt, (int(total) if total is not None else None), frac0


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


class StagePlan:
    """The engine's :class:`~volsr.engines.learned.TrainingStage` s over the budget fraction."""

    def __init__(self, stages):
        self.stages = tuple(stages)
        ends = [float(s.end) for s in self.stages]
        if not self.stages or any(b <= a for a, b in zip([0.0, *ends], ends)) or abs(ends[-1] - 1.0) > 1e-9:
            raise VolsrError(f"training stages must end at increasing budget fractions up to 1, got {ends}")
        self.starts = [0.0, *ends[:-1]]
        self.staged = len(self.stages) > 1

    def locate(self, frac: float) -> tuple[int, float]:
        """(stage index, fraction of that stage done) at budget fraction ``frac``."""
        i = next((k for k, s in enumerate(self.stages) if frac < s.end), len(self.stages) - 1)
        start, end = self.starts[i], self.stages[i].end
        return i, min(max((frac - start) / (end - start), 0.0), 1.0)


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
