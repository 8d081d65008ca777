"""The command line's one progress reporter: ``progress(stage, done, total, **info)``.

Every ``volsr`` command that reports progress (``infer``, ``upscale``, ``train``, ``distil``,
``eval``/``score``) passes a :class:`ProgressReporter` as the library's ``progress`` callback.
It shows what the library reports; it never changes what the library does.

* **bar** mode (the default when stderr is a terminal): one tqdm bar per stage on stderr, with
  the fit's ``loss=`` (and, for staged fits, ``part=``) as a postfix.
* **log** mode (the default when stderr is not a terminal: a log file, a cluster job, CI): plain
  lines, no carriage returns: one when a stage starts, one when it completes, and in between one
  whenever the stage crosses a tenth of its total or ``interval`` seconds (default 10) have
  passed since the last line, e.g. ``volsr: restoring XZ planes 40/160 (25%) 3.1 planes/s,
  ETA 39 s``. A callback that repeats the last ``done`` prints nothing.
* **none**, or ``enabled=False`` (``--quiet``): nothing.

A stage whose ``done`` goes backwards (the same stage run again, e.g. one fit per factor in
``volsr eval``) starts a new bar / a new start line.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["MODES", "ProgressReporter", "format_duration"]

MODES = ("auto", "bar", "log", "none")


def format_duration(seconds: float) -> str:
    """``7 s``, ``4 min 05 s``, ``2 h 10 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _number(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def _plural(unit: str) -> str:
    return unit if unit == "it" or unit.endswith("s") else unit + "s"


@dataclass
class _Run:
    """One run of one stage (a stage run again after finishing gets a new run)."""

    label: str
    unit: str
    mode: str
    t0: float
    done0: int
    done: int
    total: int
    info: dict = field(default_factory=dict)
    bar: object = None
    last_print_t: float = 0.0
    last_print_done: int | None = None
    tenth: int = 0
    finished: bool = False


class ProgressReporter:
    """``progress(stage, done, total, **info)`` as tqdm bars (terminal) or plain log lines (otherwise).

    Parameters
    ----------
    enabled : False prints nothing (``--quiet``).
    mode : ``auto`` (bar when the stream is a terminal, else log), ``bar``, ``log`` or ``none``.
    labels, units : per-stage overrides of :attr:`LABELS` / :attr:`UNITS` (e.g. ``{"fit": "train msunet"}``).
    interval : seconds between log lines when no tenth of the total is crossed.
    stream : where to write; ``None`` looks ``sys.stderr`` up at each line, so redirections work.
    clock : seconds, monotonic; injectable so tests need no sleeps.
    """

    LABELS = {"fit": "fitting model", "xz": "restoring XZ planes", "yz": "restoring YZ planes", "blur": "3D blur",
              "upscale": "upscaling"}
    UNITS = {"fit": "step", "xz": "plane", "yz": "plane"}
    PREFIX = "volsr: "

    def __init__(self, enabled: bool = True, *, mode: str = "auto", labels: dict | None = None,
                 units: dict | None = None, interval: float = 10.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.enabled = bool(enabled) and mode != "none"
        self.mode = mode
        self.labels = {**self.LABELS, **(labels or {})}
        self.units = {**self.UNITS, **(units or {})}
        self.interval = float(interval)
        self._stream = stream
        self.clock = clock
        self.runs: dict[str, _Run] = {}
        self.bars: dict = {}  # stage -> its latest tqdm bar (bar mode)
        self._lock = threading.Lock()

    # -- the callback ------------------------------------------------------------------
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def resolved_mode(self) -> str:
        """``bar``, ``log`` or ``none``: what ``auto`` means for the stream right now."""
        if not self.enabled:
            return "none"
        if self.mode != "auto":
            return self.mode
        try:
            return "bar" if self.stream.isatty() else "log"
        except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
            return "log"

    def __call__(self, stage: str, done: int, total: int | None, **info) -> None:
        if not self.enabled:
            return
        done, total = int(done), int(total or 0)
        with self._lock:
            run = self.runs.get(stage)
            if run is None or done < run.done:  # a new stage, or the same stage run again
                if run is not None:
                    self._end(run)
                self._start(stage, done, total, info)
                return
            if run.finished:  # repeats after completion
                return
            changed = done != run.done or (total and total != run.total) or ("loss" in info)
            run.done, run.total, run.info = done, (total or run.total), info
            if run.mode == "bar":
                if changed:
                    self._draw(run)
                if run.total and done >= run.total:
                    run.finished = True
                    run.bar.close()
            else:
                self._log_update(run)

    def close(self) -> None:
        """Close the bars; in log mode, a last line for each stage left unfinished (interrupted, no total)."""
        with self._lock:
            for run in self.runs.values():
                self._end(run)

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------
    def _start(self, stage: str, done: int, total: int, info: dict) -> None:
        mode = self.resolved_mode()
        now = self.clock()
        run = self.runs[stage] = _Run(label=self.labels.get(stage, stage), unit=self.units.get(stage, "it"),
                                      mode=mode, t0=now, done0=done, done=done, total=total, info=info,
                                      last_print_t=now, tenth=self._tenth(done, total))
        if mode == "bar":
            from tqdm.auto import tqdm

            run.bar = self.bars[stage] = tqdm(total=total, desc=run.label, unit=run.unit, leave=True,
                                              file=self.stream, dynamic_ncols=True)
            if done or self._postfix(info):  # tqdm drew 0/total already
                self._draw(run)
            if total and done >= total:
                run.finished = True
                run.bar.close()
        elif total and done >= total:  # finished on its first call: the completion line alone
            run.finished = True
            self._line(run, now, "done")
        else:
            self._line(run, now, "start")

    def _end(self, run: _Run) -> None:
        if run.mode == "bar":
            if run.bar is not None:
                run.bar.close()
        elif not run.finished and run.last_print_done != run.done:
            self._line(run, self.clock(), "stopped" if run.total else "done")
        run.finished = True

    # -- bar mode ------------------------------------------------------------------------
    def _draw(self, run: _Run) -> None:
        bar = run.bar
        if run.total and bar.total != run.total:
            bar.total = run.total
        bar.n = run.done
        post = self._postfix(run.info)
        if post:
            bar.set_postfix(**post, refresh=False)
        bar.refresh()

    @staticmethod
    def _postfix(info: dict) -> dict:
        post = {}
        if "loss" in info:  # staged fits (brainsr) also say which part is training
            post["loss"] = _loss(info["loss"])
            if "part" in info:
                post["part"] = info["part"]
        return post

    # -- log mode ------------------------------------------------------------------------
    @staticmethod
    def _tenth(done: int, total: int) -> int:
        return min(10, (10 * done) // total) if total > 0 else 0

    def _log_update(self, run: _Run) -> None:
        if run.done == run.last_print_done:
            return
        now = self.clock()
        if run.total and run.done >= run.total:
            run.finished = True
            self._line(run, now, "done")
            return
        tenth = self._tenth(run.done, run.total)
        if tenth > run.tenth or now - run.last_print_t >= self.interval:
            self._line(run, now, "progress")

    def _line(self, run: _Run, now: float, kind: str) -> None:
        run.last_print_t, run.last_print_done = now, run.done
        run.tenth = max(run.tenth, self._tenth(run.done, run.total))
        print(self.PREFIX + self.describe(run, now, kind), file=self.stream, flush=True)

    def describe(self, run: _Run, now: float, kind: str = "progress") -> str:
        """One log line: label, done/total (percent), rate, ETA (or elapsed time), loss."""
        parts = [f"{run.label} {run.done}/{run.total} ({100 * run.done // run.total}%)" if run.total
                 else f"{run.label} {run.done} {_plural(run.unit)}"]
        elapsed = now - run.t0
        rate = (run.done - run.done0) / elapsed if elapsed > 0 and run.done > run.done0 else None
        if rate is not None:
            speed = (f"{_number(rate)} {_plural(run.unit)}/s" if rate >= 1
                     else f"{_number(1 / rate)} s/{run.unit}")
            if kind == "done":
                parts.append(f"{speed}, done in {format_duration(elapsed)}")
            elif kind == "stopped":
                parts.append(f"{speed}, stopped after {format_duration(elapsed)}")
            elif run.total:
                parts.append(f"{speed}, ETA {format_duration((run.total - run.done) / rate)}")
            else:
                parts.append(speed)
        elif kind == "done" and elapsed > 0:
            parts.append(f"done in {format_duration(elapsed)}")
        if not run.total and len(parts) > 1:  # "upscaling 20 it, 1.0 it/s"
            parts[0] += ","
        line = " ".join(parts)
        if "loss" in run.info:
            line += f", loss {_loss(run.info['loss'])}"
            if "part" in run.info:
                line += f" ({run.info['part']})"
        return line


def _loss(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.4f}" if math.isfinite(v) else str(v)


