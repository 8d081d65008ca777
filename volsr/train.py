"""The training loop shared by every learned engine.

An engine supplies ``training_loss(hr, known, generator)``; this module supplies
everything around it: data (:mod:`volsr.data`), row masks (:mod:`volsr.masks`), AdamW with
linear warm-up + cosine decay, gradient clipping, an EMA of the weights (used for
sampling), a step / wall-time budget, progress with cancellation, and resumable
checkpoints (:mod:`volsr.checkpoint`).

Engines may customise two things through optional attributes:

* ``prepare_training_data(data, crop=None)`` -> an object with ``batch(rng, batch_size)``,
  ``channels``, ``describe()`` and ``source_names`` (E2E-UNet uses plane triplets);
  default :func:`volsr.data.as_plane_data`.
* ``uses_row_masks`` (default True): when False, ``known`` is passed as None.
"""

from __future__ import annotations

import copy
import datetime as _dt
import inspect
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import Cancelled, VolsrError

__all__ = ["fit_engine", "lr_at", "lr_at_fraction", "ema_decay_at"]

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
        params = inspect.signature(progress).parameters.values()
        takes_info = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) or any(
            p.name == "loss" for p in params)
    except (TypeError, ValueError):
        takes_info = False

    def call(done, total, **info):
        if takes_info:
            progress("fit", done, total, **info)
        else:
            progress("fit", done, total)

    return call


def _prepare_data(engine, data, crop):
    from .data import PlaneData, as_plane_data

    prep = getattr(engine, "prepare_training_data", None)
    if prep is not None:
        return prep(data, crop=crop)
    if isinstance(data, PlaneData) and crop is None:
        return as_plane_data(data)
    return as_plane_data(data, crop=crop if crop is not None else engine.cfg.get("crop"))


def _match_channels(engine, channels: int) -> None:
    """An untrained engine adopts the data's channel count; a trained one must match it."""
    want = engine.cfg.get("channels")
    if want is None or int(want) == int(channels):
        return
    if getattr(engine, "trained", False):
        raise VolsrError(
            f"the '{engine.name}' model was trained for {want} channel(s) but the training data have {channels}; "
            "fine-tune only on data with the same channels, or train a new model"
        )
    engine.cfg["channels"] = int(channels)
    engine.network = engine.build_network().to(engine.device)
    engine.ema = copy.deepcopy(engine.network).requires_grad_(False)


def _config_json(engine) -> str:
    return json.dumps(engine.cfg, sort_keys=True, default=str)


def fit_engine(
    engine,
    data,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    warmup_frac: float = 0.1,
    weight_decay: float | None = None,
    grad_clip: float | None = 1.0,
    ema_decay: float | None = None,
    seed: int = 0,
    progress: Callable[..., Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    mask_sampler=None,
    log_every: int = 50,
    crop: int | None = None,
) -> dict:
    """Train ``engine`` on planes within a step and/or wall-time budget.

    Parameters
    ----------
    engine : volsr.engines.learned.LearnedEngine
        Trained in place: ``engine.network`` gets the live weights, ``engine.ema`` the EMA
        weights (used for restoring and saved in model files). Everything runs on
        ``engine.device``.
    data : PlaneData, array, path, folder or list of those
        See :func:`volsr.data.as_plane_data`. An untrained engine adopts the data's channel
        count; a trained one (fine-tuning) must match it.
    steps : int, optional
        Total optimisation steps (including steps done before a resumed checkpoint). The
        learning-rate schedule spans ``steps``.
    minutes : float, optional
        Wall-time budget for this call (counted from the call, data loading included).
        With ``minutes`` alone the learning-rate schedule follows elapsed time instead of
        steps (:func:`lr_at_fraction`), so warm-up and cosine decay span the budget however
        fast the machine turns out to be; the step count shown to ``progress`` is then an
        estimate from the speed so far (``report['estimated_total']`` says so). Training
        stops at ``steps`` or ``minutes``, whichever comes first. At least one is required.
    batch_size : int
        Planes per step (default 16).
    lr : float, optional
        Peak learning rate (default ``engine.cfg['lr']``).
    warmup_frac : float
        Share of the steps spent in linear warm-up (default 0.1), then cosine decay to 0.
    weight_decay : float, optional
        AdamW weight decay (default ``engine.cfg.get('weight_decay', 1e-4)``).
    grad_clip : float or None
        Max gradient norm (default 1.0; None disables clipping).
    ema_decay : float, optional
        EMA decay (default ``engine.cfg['ema_decay']``), with warm-up
        ``min(ema_decay, (1 + n) / (10 + n))``.
    seed : int
        Seeds the crop/mask generator (NumPy) and the engine's noise generator (torch).
        Network initialisation happens when the engine is created, not here.
    progress : callable, optional
        ``progress(stage, done, total)``; called once per step with ``stage='fit'`` and, if
        it accepts ``**info`` (or a ``loss`` argument), ``loss=`` (running mean) and
        ``lr=``. It may raise :class:`volsr.errors.Cancelled` to stop.
    cancel : callable, optional
        ``cancel()`` returning True stops training by raising :class:`Cancelled`.
    checkpoint_path : path, optional
        Where to write resumable checkpoints every ``checkpoint_every`` steps, at the end, and
        when training is cancelled or interrupted (Ctrl-C).
    checkpoint_every : int
        Steps between checkpoints (default 500).
    resume : bool
        Continue from ``checkpoint_path`` if it exists (weights, EMA, optimizer, schedule
        position, random generators): a run cancelled after a checkpoint and resumed ends
        with the same weights as an uninterrupted run. Without a checkpoint file training
        starts fresh (``report['resumed_from']`` is None).
    mask_sampler : volsr.masks.MaskSampler, optional
        Default: built from the engine config (:func:`volsr.masks.mask_sampler_from_config`).
    log_every : int
        Steps per entry of ``report['loss_history']`` (default 50).
    crop : int, optional
        Crop size when ``data`` is not already a PlaneData (default ``engine.cfg['crop']``).

    Returns
    -------
    dict
        ``steps`` (total done), ``steps_this_run``, ``total_steps``, ``minutes``,
        ``final_loss`` (mean of the last ``log_every`` steps), ``mean_loss``,
        ``loss_history`` ([step, mean loss] pairs), ``steps_per_second``,
        ``estimated_total``, ``stopped_by`` ('steps', 'minutes'), ``resumed_from``,
        ``data``, ``rejected_crop_fraction``, ``lr``, ``batch_size``, ``seed``.
    """
    from .checkpoint import load_training_checkpoint, save_training_checkpoint
    from .masks import mask_sampler_from_config

    t_start = time.perf_counter()
    # -- validate the budget and options ------------------------------------------------------
    if steps is None and minutes is None:
        raise VolsrError("no training budget: give steps (--steps N) and/or minutes (--minutes M)")
    if steps is not None:
        if int(steps) != steps or int(steps) <= 0:
            raise VolsrError(f"steps must be a positive whole number of training steps, got {steps!r}")
        steps = int(steps)
    if minutes is not None and not (float(minutes) > 0 and math.isfinite(float(minutes))):
        raise VolsrError(f"minutes must be a positive number, got {minutes!r}")
    if int(batch_size) < 1:
        raise VolsrError(f"batch_size must be >= 1, got {batch_size!r}")
    if not (0.0 <= float(warmup_frac) < 1.0):
        raise VolsrError(f"warmup_frac must be in [0, 1), got {warmup_frac!r}")
    if int(checkpoint_every) < 1:
        raise VolsrError(f"checkpoint_every must be >= 1 step, got {checkpoint_every!r}")
    if int(log_every) < 1:
        raise VolsrError(f"log_every must be >= 1, got {log_every!r}")
    if resume and checkpoint_path is None:
        raise VolsrError("resume=True needs checkpoint_path (the file to resume from)")
    base_lr = float(lr if lr is not None else engine.cfg.get("lr", 1e-4))
    if not (base_lr > 0 and math.isfinite(base_lr)):
        raise VolsrError(f"lr must be a positive number, got {base_lr!r}")
    wd = float(weight_decay if weight_decay is not None else engine.cfg.get("weight_decay", 1e-4))
    decay = float(ema_decay if ema_decay is not None else engine.cfg.get("ema_decay", 0.999))
    if not (0.0 <= decay < 1.0):
        raise VolsrError(f"ema_decay must be in [0, 1), got {decay!r}")
    batch_size = int(batch_size)

    # -- data, channels, masks ----------------------------------------------------------------
    planes = _prepare_data(engine, data, crop)
    _match_channels(engine, planes.channels)
    sampler = mask_sampler if mask_sampler is not None else mask_sampler_from_config(engine.cfg)
    uses_masks = bool(getattr(engine, "uses_row_masks", True))
    device = engine.device
    net, ema = engine.network, engine.ema
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=wd)
    np_rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))

    # -- resume ---------------------------------------------------------------------------------
    step, ema_n, losses, history = 0, 0, [], []
    total = steps
    resumed_from = None
    frac0 = 0.0  # share of a time-based schedule already used (resume)
    if resume and Path(checkpoint_path).exists():
        state = load_training_checkpoint(checkpoint_path)
        if state.get("engine") != engine.name:
            raise VolsrError(
                f"checkpoint {checkpoint_path} is for engine '{state.get('engine')}', not '{engine.name}'; "
                "resume with the same engine or start without --resume"
            )
        saved_cfg = json.loads(state["config"])
        if saved_cfg != json.loads(_config_json(engine)):
            if saved_cfg.get("channels") != engine.cfg.get("channels"):
                raise VolsrError(
                    f"checkpoint {checkpoint_path} was trained on {saved_cfg.get('channels')} channel(s), "
                    f"the data have {engine.cfg.get('channels')}; resume with the same data"
                )
            # otherwise adopt the checkpoint's network config (it defines the weights' shapes)
            engine.cfg = saved_cfg
            engine.network = net = engine.build_network().to(device)
            engine.ema = ema = copy.deepcopy(net).requires_grad_(False)
            net.train()
            opt = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=wd)
        net.load_state_dict(state["network"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        ema_n = int(state["ema_n"])
        losses = [float(v) for v in state["losses"]]
        history = [list(h) for h in state["history"]]
        np_rng.bit_generator.state = json.loads(state["np_rng"])
        gen.set_state(state["torch_gen"].to("cpu"))
        resumed_from = step
        if total is None:
            if state.get("total_steps") is not None:
                total = int(state["total_steps"])
            else:
                frac0 = float(state.get("time_fraction", 0.0))
                if frac0 >= 1.0:
                    raise VolsrError(
                        f"the checkpoint's time budget is used up (step {step}); give --steps to train further"
                    )
    time_mode = total is None  # minutes only: schedule over elapsed time
    if time_mode and minutes is None:
        raise VolsrError("resuming a time-budgeted run needs a budget: give --minutes or --steps")
    if not time_mode and step >= total:
        raise VolsrError(
            f"the checkpoint already holds {step} steps, the budget is {total}; raise --steps to train further"
        )
    frac = frac0

    def checkpoint_state() -> dict:
        return {
            "engine": engine.name,
            "config": _config_json(engine),
            "network": net.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "ema_n": ema_n,
            "total_steps": None if time_mode else total,
            "time_fraction": float(frac),
            "losses": list(losses),
            "history": [list(h) for h in history],
            "np_rng": json.dumps(np_rng.bit_generator.state),
            "torch_gen": gen.get_state(),
            "seed": int(seed),
        }

    report_progress = _progress_caller(progress)
    deadline = None if minutes is None else t_start + 60.0 * float(minutes)
    t_loop = time.perf_counter()
    first_step = step
    stopped_by = "steps"
    shown_total = total
    try:
        while time_mode or step < total:
            if cancel is not None and cancel():
                raise Cancelled("training cancelled")
            if time_mode:
                now = time.perf_counter()
                run_frac = (now - t_loop) / max(deadline - t_loop, 1e-9)
                if now >= deadline and step > first_step:
                    stopped_by = "minutes"
                    break
                frac = min(frac0 + (1.0 - frac0) * run_frac, 1.0)
                lr_now = lr_at_fraction(frac, base_lr, warmup_frac)
            else:
                lr_now = lr_at(step, total, base_lr, warmup_frac)
            for group in opt.param_groups:
                group["lr"] = lr_now
            hr = planes.batch(np_rng, batch_size).to(device, non_blocking=True)
            known = None
            if uses_masks:
                known = torch.from_numpy(sampler(batch_size, hr.shape[-2], np_rng)).to(device)
            loss = engine.training_loss(hr, known, gen)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise VolsrError(
                    f"the training loss became {value} at step {step + 1}; lower the learning rate (--lr)"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None and grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(grad_clip))
            opt.step()
            _ema_update(ema, net, ema_decay_at(ema_n, decay))
            ema_n += 1
            step += 1
            losses.append(value)
            if step % int(log_every) == 0:
                history.append([step, float(np.mean(losses[-int(log_every):]))])
            now = time.perf_counter()
            if time_mode:
                done_frac = (now - t_loop) / max(deadline - t_loop, 1e-9)
                frac = min(frac0 + (1.0 - frac0) * done_frac, 1.0)
                shown_total = max(step, first_step + int(round((step - first_step) / max(done_frac, 1e-9))))
            if checkpoint_path is not None and step % int(checkpoint_every) == 0:
                save_training_checkpoint(checkpoint_path, checkpoint_state())
            if report_progress is not None:
                report_progress(step, shown_total, loss=float(np.mean(losses[-int(log_every):])), lr=lr_now)
            if not time_mode and deadline is not None and now >= deadline and step < total:
                stopped_by = "minutes"
                break
    except (Cancelled, KeyboardInterrupt):
        if checkpoint_path is not None and step > first_step:
            save_training_checkpoint(checkpoint_path, checkpoint_state())
        net.eval()
        raise
    if checkpoint_path is not None and step > first_step and step % int(checkpoint_every) != 0:
        save_training_checkpoint(checkpoint_path, checkpoint_state())
    net.eval()
    ema.eval()
    if losses and (not history or history[-1][0] != step):
        tail = step % int(log_every) or int(log_every)
        history.append([step, float(np.mean(losses[-tail:]))])

    elapsed = time.perf_counter() - t_start
    loop_s = max(time.perf_counter() - t_loop, 1e-9)
    drawn = max(getattr(planes, "drawn", 0), 1)
    report = {
        "steps": step,
        "steps_this_run": step - first_step,
        "total_steps": step if time_mode else total,
        "minutes": elapsed / 60.0,
        "final_loss": float(np.mean(losses[-int(log_every):])) if losses else float("nan"),
        "mean_loss": float(np.mean(losses)) if losses else float("nan"),
        "loss_history": history,
        "steps_per_second": (step - first_step) / loop_s,
        "estimated_total": bool(time_mode),
        "stopped_by": stopped_by,
        "resumed_from": resumed_from,
        "data": planes.describe(),
        "rejected_crop_fraction": getattr(planes, "rejected", 0) / drawn,
        "lr": base_lr,
        "batch_size": batch_size,
        "seed": int(seed),
    }
    previous = dict(engine.provenance) if getattr(engine, "trained", False) and engine.provenance else None
    engine.provenance = {
        "trained_on": planes.describe(),
        "data": list(getattr(planes, "source_names", []))[:100],
        "steps": step,
        "seed": int(seed),
        "batch_size": batch_size,
        "lr": base_lr,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "final_loss": report["final_loss"],
        **({"mask": sampler.to_config()} if uses_masks and hasattr(sampler, "to_config") else {}),
        **({"finetuned_from": previous} if previous else {}),
    }
    engine.trained = True
    return report
