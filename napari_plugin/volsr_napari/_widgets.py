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


def check_image_layer(layer, *, purpose: str, allow_2d: bool = False, allow_rgb: bool = False) -> np.ndarray:
    """The layer's voxels as a NumPy array, or an :class:`InputError` saying why it cannot be used.

    volsr restores one single-channel z-stack (Z, Y, X) at a time: RGB layers (unless
    ``allow_rgb``: then (Y, X, 3) or (Z, Y, X, 3)), multiscale pyramids, 2D images (unless
    ``allow_2d``) and 4D+ layers are refused with the fix in the message. The array is a view
    of the layer data when possible (it is never written to).
    """
    if layer is None:
        raise InputError(f"no image layer selected for {purpose}; open a z-stack (File > Open) or the volsr sample "
                         "(File > Open Sample > volsr) first")
    name = getattr(layer, "name", "?")
    if getattr(layer, "rgb", False) and not allow_rgb:
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


def layer_axes(layer) -> str:
    """volsr's axes string for a layer that passed :func:`check_image_layer` (``S`` = RGB samples)."""
    return ("YX" if int(layer.ndim) == 2 else "ZYX") + ("S" if getattr(layer, "rgb", False) else "")


def newest_layer(choices, accept: Callable) -> Any:
    """The last layer in a layer ComboBox's ``choices`` that ``accept`` (e.g. the sample just opened)."""
    for layer in reversed(list(choices)):
        if layer is not None and accept(layer):
            return layer
    return None


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


# -- engine / model choices -------------------------------------------------------------------
@dataclass(frozen=True)
class EngineChoice:
    """One entry of an engine/model list.

    kind : 'engine' (no weights: nearest/linear/cubic/bicubic), 'fit' (a learned engine fitted
    on the input itself), 'model' (a bundled model name or a model file, with its engine), or
    'file' (a model file chosen in the file field).
    """

    kind: str
    engine: str
    model: str | None = None

    @property
    def learned(self) -> bool:
        return self.kind != "engine"


def list_engine_choices(*, accept: Callable | None = None, fit_label: str = "fit {name} on this stack",
                        first: tuple[str, ...] = (), file_engine: str = "msdsr") -> list[tuple[str, EngineChoice]]:
    """(label, choice) pairs: engines without weights, bundled and session models, fits, a model file.

    ``accept(engine_class)`` keeps only some engines (and their models), e.g. the 2D ones;
    ``first`` orders the weightless engines; ``fit_label`` names the fit-on-input entries.
    """
    from volsr.engines import get_engine_class, list_engines

    plain, fits, usable = [], [], set()
    for name in list_engines():
        try:
            cls = get_engine_class(name)
        except VolsrError:
            continue
        if accept is not None and not accept(cls):
            continue
        usable.add(name)
        if cls.capabilities.learned:
            fits.append((fit_label.format(name=name), EngineChoice("fit", name)))
        else:
            desc = f" — {cls.description}" if cls.description else ""
            plain.append((f"{name}{desc}", EngineChoice("engine", name)))
    models = [m for m in _model_choices() if accept is None or m[1].engine in usable]
    order = {name: i for i, name in enumerate(first)}
    plain.sort(key=lambda item: (order.get(item[1].engine, len(order)), item[1].engine))
    return plain + models + fits + [("model file…", EngineChoice("file", file_engine))]


def _model_choices() -> list[tuple[str, EngineChoice]]:
    """Bundled models (readable ones) and the models trained in this session."""
    models = []
    try:
        from volsr.checkpoint import list_bundled_models

        for info in list_bundled_models():
            if info.get("engine", "?") == "?":
                continue  # unreadable bundled file: listed by `volsr models`, not offered here
            models.append((f"bundled model: {info['name']} ({info['engine']})",
                           EngineChoice("model", info["engine"], info["name"])))
    except (ImportError, VolsrError):
        pass
    for entry in MODEL_CATALOG.entries():
        models.append((entry.label, EngineChoice("model", entry.engine, entry.path)))
    return models


def path_or_none(value) -> Path | None:
    """FileEdit values: '' / '.' mean unset."""
    if value is None:
        return None
    s = str(value).strip()
    if s in ("", "."):
        return None
    return Path(s).expanduser()


def chosen_model(choice: EngineChoice, model_file) -> str | None:
    """The model a choice runs: a bundled name or session model, the file field's path, or None."""
    if choice.kind == "model":
        return choice.model
    if choice.kind == "file":
        path = path_or_none(model_file)
        if path is None or not path.is_file():
            raise InputError("choose a .volsr model file in 'model file' (or pick another engine)")
        return str(path)
    return None


def fit_budget(fit_steps, fit_minutes) -> dict:
    """``fit_steps`` / ``fit_minutes`` keywords from spin boxes where 0 means "no limit of this kind"."""
    if not fit_steps and not fit_minutes:
        raise InputError("set a fit budget: 'fit steps' and/or 'fit minutes' must be > 0")
    return {"fit_steps": int(fit_steps) if fit_steps else None,
            "fit_minutes": float(fit_minutes) if fit_minutes else None}


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


class EngineMenu:
    """Mixin for widgets with an engine/model ComboBox ``self.engine`` of :class:`EngineChoice` values.

    Models trained in this session appear in the list as soon as they are saved; a bound method
    (held weakly by psygnal) keeps a closed widget from being kept alive by the catalog.
    """

    engine: Any

    def _follow_model_catalog(self) -> None:
        MODEL_CATALOG.changed.connect(self._on_catalog_changed)

    def _on_catalog_changed(self):
        try:
            self.engine.reset_choices()
        except RuntimeError:  # the Qt widget was deleted (dock closed): stop listening
            MODEL_CATALOG.changed.disconnect(self._on_catalog_changed)

    def select_engine(self, kind: str, engine: str | None = None, model: str | None = None) -> EngineChoice:
        """Select the first engine-list entry matching ``kind`` (and ``engine``/``model`` if given)."""
        for choice in self.engine.choices:
            if choice.kind == kind and engine in (None, choice.engine) and model in (None, choice.model):
                self.engine.value = choice
                return choice
        raise InputError(f"no {kind} entry {engine or ''} {model or ''} in the engine list")


def follow_layers(viewer, callback: Callable) -> None:
    """Call ``callback`` whenever layers are added, removed or reordered in ``viewer``."""
    if viewer is not None:
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(callback)


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

    The widget builds its job controls with :meth:`_job_controls` and defines ``run()``,
    ``_on_progress(stage, done, total, info)`` and ``_on_done(outcome)``.
    """

    job: Job | None = None

    def _job_controls(self, start_text: str):
        """Build the controls every job widget shares, so they look and behave alike; returns the start button.

        Sets ``self._relay`` (a :class:`ProgressRelay` feeding ``self._on_progress``),
        ``self.start_button`` (labelled ``start_text``, runs ``self.run``), ``self.cancel_button``
        (runs :meth:`cancel`), ``self.progress`` and ``self.status``. The widget places them in
        its own layout.
        """
        from magicgui.widgets import Label, ProgressBar, PushButton

        self._relay = ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self.start_button = PushButton(text=start_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(value="")
        self.start_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        return self.start_button

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

    def _finished(self, outcome: Outcome, what: str) -> bool:
        """The common end of a job that adds layers: False (and said so) after a cancel or an error."""
        self._set_running(False)
        if outcome.cancelled:
            self.status.value = "cancelled"
            self.progress.value = 0
            notify_info(f"volsr {what} cancelled; nothing was added")
            return False
        if outcome.error is not None:
            self.status.value = "failed"
            notify_error(outcome.error)
            return False
        return True
