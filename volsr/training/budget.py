"""How long a fit runs and how its rates change: the step / wall-time budget, the learning-rate
and EMA schedules, and the stages of a staged fit.

Pure arithmetic of the budget, apart from the loop (:mod:`volsr.training.loop`) so that the
schedules can be read and tested without a network: AdamW with linear warm-up + cosine decay
over steps (:func:`lr_at`) or over elapsed wall time when only minutes are given
(:func:`lr_at_fraction`), an EMA decay that warms up (:func:`ema_decay_at`), and
:class:`StagePlan`, the spans of the budget in which only some parts train.
"""

from __future__ import annotations

import math
import time

from ..errors import VolsrError

__all__ = ["Budget", "StagePlan", "check_budget", "ema_decay_at", "lr_at", "lr_at_fraction"]


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
