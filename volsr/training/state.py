"""What a fit carries from step to step: its validated settings, counters and random generators,
the AdamW groups with clipping and EMA, and resumable checkpoints.

:class:`TrainSettings` (validated options of one fit), :class:`TrainState` (counters, losses,
random generators), :class:`Optimiser` (AdamW groups, gradient clipping, the EMA of the weights
used for sampling) and :class:`Checkpointer` (a checkpoint every few minutes through
:mod:`volsr.checkpoint`, and resuming from one) are the parts :func:`volsr.training.loop.fit_engine`
is assembled from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import VolsrError
from .budget import check_budget, ema_decay_at

__all__ = ["Checkpointer", "Optimiser", "TrainSettings", "TrainState"]


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


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
        # its config defines the weights' shapes; keys added since it was saved keep their old meaning
        upgrade = getattr(type(engine), "upgrade_config", None)
        engine.rebuild(engine.Config.from_dict(upgrade(dict(saved)) if upgrade else saved, strict=False))
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
