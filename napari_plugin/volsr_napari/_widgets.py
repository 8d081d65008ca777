"""Pieces shared by the volsr widgets: layer checks, notifications, threads, the model list.

The widgets are thin shells over :mod:`volsr`; what lives here is only what is about
napari itself — which layers can be used, how a layer's ``scale`` maps to volsr's voxel
spacing, how work runs off the GUI thread with progress and cancel, and how a model
trained in one widget becomes selectable in another.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QObject
from qtpy.QtCore import Signal as QtSignal

from volsr.errors import Cancelled, InputError, VolsrError

logger = logging.getLogger("volsr_napari")

DEVICES = ("auto", "cpu", "cuda")


# -- a process-level crash guard ------------------------------------------------------------------
def guard_triton_llvm_clash() -> bool:
    """Keep ``triton`` from loading into a process where Mesa's software OpenGL already loaded LLVM.

    Why: with software rendering (Mesa llvmpipe: Xvfb, VMs, remote desktops) the napari canvas
    loads ``libLLVM``; importing triton afterwards (torch's CUDA builds ship it, and
    ``import monai.networks`` -> torchvision -> ``torch._dynamo`` imports it) loads a second,
    clashing LLVM and the process segfaults. volsr never uses triton (no ``torch.compile``),
    so when that LLVM is present and triton is not imported yet, ``sys.modules['triton']`` is
    set to None: torch then treats triton as absent. Returns True when the guard was set.
    Linux only (reads ``/proc/self/maps``); a no-op elsewhere and when triton is already loaded.
    """
    import importlib.util
    import sys

    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            has_llvm = "libLLVM" in fh.read()
    except OSError:
        return False
    if not has_llvm or importlib.util.find_spec("triton") is None:
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]
    logger.info("volsr: Mesa's LLVM is loaded (software OpenGL); triton is disabled in this process to avoid a crash")
    return True


# -- notifications ---------------------------------------------------------------------------
def notify_error(message: str) -> None:
    """A napari error notification (never a traceback dialog): user errors say what to do."""
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


# -- layers ------------------------------------------------------------------------------------
def image_layers(viewer, *, ndims: tuple[int, ...] = (2, 3, 4, 5)) -> list:
    """Image layers of ``viewer`` with one of ``ndims`` dimensions, as (name, layer) choices."""
    from napari.layers import Image

    if viewer is None:
        return []
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image) and layer.ndim in ndims]


def check_image_layer(layer, *, purpose: str, allow_2d: bool = False) -> np.ndarray:
    """The layer's voxels as a NumPy array, or an :class:`InputError` saying why it cannot be used.

    volsr restores one single-channel z-stack (Z, Y, X) at a time: RGB layers, multiscale
    pyramids, 2D images (unless ``allow_2d``) and 4D+ layers are refused with the fix in the
    message. The array is a view of the layer data when possible (it is never written to).
    """
    if layer is None:
        raise InputError(f"no image layer selected for {purpose}; open a z-stack (File > Open) or the volsr sample "
                         "(File > Open Sample > volsr) first")
    name = getattr(layer, "name", "?")
    if getattr(layer, "rgb", False):
        raise InputError(f"layer '{name}' is RGB; volsr needs a single-channel z-stack — convert it to grayscale "
                         "or split the colour channels (right-click the layer > Split RGB)")
    if getattr(layer, "multiscale", False):
        raise InputError(f"layer '{name}' is a multiscale pyramid; open the full-resolution level as its own layer")
    ndim = int(layer.ndim)
    if ndim == 2 and not allow_2d:
        raise InputError(f"layer '{name}' is a 2D image; {purpose} needs a z-stack with at least 2 z planes (Z, Y, X)")
    if ndim not in ((2, 3) if allow_2d else (3,)):
        raise InputError(
            f"layer '{name}' has {ndim} dimensions {tuple(layer.data.shape)}; {purpose} takes one (Z, Y, X) stack — "
            "split channels/time points into separate layers first (right-click > Split Stack)"
        )
    data = np.asarray(layer.data)
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool) or np.iscomplexobj(data):
        raise InputError(f"layer '{name}' has dtype {data.dtype}; volsr needs real-valued intensities")
    return data


def layer_spacing(layer) -> tuple[float, float, float]:
    """(z, y, x) voxel spacing of a 3D layer from its napari ``scale``."""
    scale = tuple(float(s) for s in layer.scale[-3:])
    return scale  # type: ignore[return-value]


def z_factor_from_scale(scale) -> float | None:
    """z spacing / x spacing from a napari ``scale`` (None when it cannot be formed)."""
    if scale is None or len(scale) < 3:
        return None
    z, x = float(scale[-3]), float(scale[-1])
    if not (np.isfinite(z) and np.isfinite(x)) or x <= 0 or z <= 0:
        return None
    return z / x


# -- the model list shared by the widgets ----------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """A model file produced in this session (Train widget, or 'fit on this stack' with a save path)."""

    path: str
    engine: str

    @property
    def label(self) -> str:
        return f"trained: {Path(self.path).name} ({self.engine})"


class ModelCatalog:
    """Models trained during this napari session, so the Restore widget can offer them.

    One instance (:data:`MODEL_CATALOG`) is shared by all widgets; ``changed`` fires on the
    GUI thread after a model is added.
    """

    changed = Signal()

    def __init__(self) -> None:
        self._entries: list[ModelEntry] = []

    def add(self, path, engine: str) -> ModelEntry:
        entry = ModelEntry(str(Path(path).resolve()), str(engine))
        if entry not in self._entries:
            self._entries.append(entry)
        self.changed.emit()
        return entry

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.changed.emit()


MODEL_CATALOG = ModelCatalog()


# -- work off the GUI thread -------------------------------------------------------------------
class ProgressRelay(QObject):
    """Carries ``progress(stage, done, total, **info)`` calls from a worker thread to the GUI thread.

    The relay lives on the GUI thread; a Qt signal emitted from another thread is queued, so
    the connected slot always runs where widgets may be touched.
    """

    progressed = QtSignal(str, int, int, object)

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None:
        self.progressed.emit(str(stage), int(done), int(total), dict(info))


@dataclass
class Outcome:
    """What a guarded call returns to the GUI thread: a value, a user error, or a cancellation."""

    value: Any = None
    error: str | None = None
    cancelled: bool = False


def guarded(func: Callable, *args, **kwargs) -> Outcome:
    """Run ``func`` and turn every exception into an :class:`Outcome` (no traceback reaches the user).

    :class:`VolsrError` messages already name the problem and the fix; anything else is a bug
    or an environment problem — its traceback goes to the log and a one-line summary to the
    notification.
    """
    try:
        return Outcome(value=func(*args, **kwargs))
    except Cancelled:
        return Outcome(cancelled=True)
    except VolsrError as err:
        return Outcome(error=str(err))
    except MemoryError:
        return Outcome(error="out of memory; restore a smaller crop of the stack or use a smaller model/batch")
    except Exception as err:  # noqa: BLE001 - shown as a notification instead of a traceback
        logger.error("volsr worker failed:\n%s", traceback.format_exc())
        return Outcome(error=f"{type(err).__name__}: {err}")


class Job:
    """One background task of a widget: start, cancel, and hand the outcome back on the GUI thread.

    ``done(outcome)`` runs on the GUI thread when the work ends (finished, failed or
    cancelled). Cancelling sets a flag that volsr polls between batches/steps
    (``cancel=job.cancelled``), so the work stops cleanly at the next check.
    """

    def __init__(self, func: Callable, kwargs: dict, done: Callable[[Outcome], None]):
        """``func(**kwargs, cancel=...)`` runs in a napari thread worker once :meth:`start` is called."""
        from napari.qt.threading import create_worker

        self._event = threading.Event()
        self.outcome: Outcome | None = None
        self._done = done
        kwargs = {**kwargs, "cancel": self.cancelled}
        relay = kwargs.get("progress")
        if relay is not None:
            kwargs["progress"] = self._progress_then_check(relay)
        self.worker = create_worker(guarded, func, _start_thread=False, **kwargs)
        self.worker.returned.connect(self._on_returned)

    def _progress_then_check(self, relay: Callable) -> Callable:
        """Forward progress, then stop if cancelled.

        volsr's loops accept a progress callback that raises :class:`Cancelled`; checking here
        too makes Cancel work in steps that take no ``cancel`` argument (e.g. the fit inside
        ``volsr.restore(engine='msdsr')`` with no model).
        """

        def progress(stage, done, total, **info):
            relay(stage, done, total, **info)
            if self._event.is_set():
                raise Cancelled("cancelled from the napari widget")

        return progress

    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def start(self) -> None:
        guard_triton_llvm_clash()  # the canvas may have loaded Mesa's LLVM since the widget was built
        self.worker.start()

    @property
    def running(self) -> bool:
        return self.outcome is None

    def _on_returned(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._done(outcome)


class JobWidget:
    """Mixin for the dock widgets: one background :class:`Job` at a time, a start and a Cancel button.

    The widget sets ``self.start_button``, ``self.cancel_button``, ``self.status`` and
    ``self._relay`` (a :class:`ProgressRelay`) and defines ``_on_done(outcome)``.
    """

    job: Job | None = None

    def _start_job(self, func: Callable, kwargs: dict) -> Job:
        self.job = Job(func, {**kwargs, "progress": self._relay}, self._on_done)
        self._set_running(True)
        self.job.start()
        return self.job

    def cancel(self, *_) -> None:
        """Ask the running job to stop at its next check (nothing is added or saved)."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.value = "cancelling…"
            self.cancel_button.enabled = False

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = not running
        self.cancel_button.enabled = running
