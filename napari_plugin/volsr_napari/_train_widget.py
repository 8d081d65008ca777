"""*Train / fit model*: fit a learned volsr engine on the XY planes of napari layers.

Pick one or more image layers (3D stacks contribute their XY planes, 2D images themselves),
the engine and its size preset, the crop size, a step and/or time budget and where to save
the model; press *Train*. Loss and progress update live; *Cancel* stops at the next step.
The saved model is added to the Restore widget's engine list at once.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    Select,
    SpinBox,
)

from volsr.errors import InputError, VolsrError

from ._widgets import (
    DEVICES,
    MODEL_CATALOG,
    Job,
    JobWidget,
    Outcome,
    check_image_layer,
    guard_triton_llvm_clash,
    image_layers,
    notify_error,
    notify_info,
)

__all__ = ["TrainWidget", "fit_model", "learned_engines"]

PRESETS = ("small", "tiny", "paper")
DEFAULT_MODEL_DIR = Path.home() / "volsr_models"


def learned_engines() -> list[str]:
    """Names of the installed engines that learn (can be fitted)."""
    from volsr.engines import get_engine_class, list_engines

    out = []
    for name in list_engines():
        try:
            if get_engine_class(name).capabilities.learned:
                out.append(name)
        except VolsrError:
            continue
    return out


def fit_model(
    arrays: list,
    *,
    names: list[str],
    engine: str = "msdsr",
    preset: str | None = "small",
    crop: int = 48,
    steps: int | None = None,
    minutes: float | None = None,
    out_path,
    device: str = "auto",
    seed: int = 0,
    progress=None,
    cancel=None,
) -> dict:
    """Create ``engine``, fit it on the XY planes of ``arrays`` and save it to ``out_path``.

    A composition of library calls (:func:`volsr.engines.create_engine`,
    :func:`volsr.training.planes.as_plane_data`, ``Engine.fit``, ``Engine.save``) run in the widget's
    worker thread. Returns ``{"path", "engine", "report"}``.
    """
    from volsr.engines import create_engine
    from volsr.training.planes import as_plane_data

    out = Path(out_path).expanduser()
    if out.suffix != ".volsr":
        out = out.with_name(out.name + ".volsr")
    out.parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(engine, device=device, preset=preset or None, crop=int(crop))
    data = as_plane_data(list(arrays), crop=int(crop), names=list(names))
    report = eng.fit(data, steps=steps, minutes=minutes, seed=seed, progress=progress, cancel=cancel)
    eng.provenance.update({"trained_on": ", ".join(names), "trained_with": "volsr napari Train widget"})
    saved = eng.save(out, overwrite=True)
    return {"path": str(saved or out), "engine": eng.name, "report": report}


class TrainWidget(JobWidget, Container):
    """Dock widget: fit a model on image layers and save it (it then appears in Restore)."""

    def __init__(self, napari_viewer):
        guard_triton_llvm_clash()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_result: dict | None = None
        engines = learned_engines()
        default_engine = "msdsr" if "msdsr" in engines else (engines[0] if engines else None)

        self.layers = Select(label="training layers", choices=self._layer_choices,
                             tooltip="3D stacks contribute their XY planes; 2D images are used as they are")
        self.layers.max_height = 110
        self.engine = ComboBox(label="engine", choices=engines, value=default_engine)
        self.preset = ComboBox(label="size preset", choices=list(PRESETS), value="small",
                               tooltip="network size: tiny (smoke test), small (CPU), paper (GPU)")
        self.crop = SpinBox(label="crop size", value=48, min=8, max=1024, step=8)
        self.steps = SpinBox(label="steps", value=0, min=0, max=10_000_000, tooltip="0 = no step limit")
        self.minutes = FloatSpinBox(label="minutes", value=5.0, min=0.0, max=100_000.0, step=0.5,
                                    tooltip="time budget (0 = no time limit)")
        self.out_path = FileEdit(label="save model to", mode="w", filter="*.volsr",
                                 value=DEFAULT_MODEL_DIR / "model.volsr")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.train_button = self._job_controls("Train")
        self.loss = Label(label="loss", value="–")
        super().__init__(widgets=[
            self.layers, self.engine, self.preset, self.crop, self.steps, self.minutes, self.out_path,
            self.device, self.seed, self.train_button, self.cancel_button, self.progress, self.loss, self.status,
        ])
        if napari_viewer is not None:
            events = napari_viewer.layers.events
            for ev in (events.inserted, events.removed, events.reordered):
                ev.connect(self._refresh_layers)

    def _layer_choices(self, _widget=None):
        return image_layers(self.viewer, ndims=(2, 3))

    def _refresh_layers(self, event=None):
        self.layers.reset_choices()

    # -- running -----------------------------------------------------------------------------
    def options(self) -> dict:
        """:func:`fit_model` keywords for the current form (raises :class:`InputError` on bad input)."""
        layers = list(self.layers.value or [])
        if not layers:
            raise InputError("select one or more training layers (3D stacks or 2D images) in 'training layers'")
        arrays = [check_image_layer(layer, purpose="training", allow_2d=True) for layer in layers]
        if self.engine.value is None:
            raise InputError("no learned engine is installed; volsr's msdsr engine needs torch and monai")
        if not self.steps.value and not self.minutes.value:
            raise InputError("set a training budget: 'steps' and/or 'minutes' must be > 0")
        out = str(self.out_path.value).strip() if self.out_path.value is not None else ""
        if out in ("", ".") or Path(out).is_dir():
            raise InputError("choose where to save the model in 'save model to' (a .volsr file)")
        return {
            "arrays": arrays,
            "names": [layer.name for layer in layers],
            "engine": self.engine.value,
            "preset": self.preset.value,
            "crop": int(self.crop.value),
            "steps": int(self.steps.value) or None,
            "minutes": float(self.minutes.value) or None,
            "out_path": out,
            "device": self.device.value,
            "seed": int(self.seed.value),
        }

    def run(self, *_) -> Job | None:
        """Start training; returns the job (None if the form was refused)."""
        if self.job is not None and self.job.running:
            notify_info("training is already running; cancel it first")
            return None
        try:
            kwargs = self.options()
        except VolsrError as err:
            notify_error(str(err))
            return None
        self.progress.value = 0
        self.loss.value = "–"
        self.status.value = "preparing data…"
        return self._start_job(fit_model, kwargs)

    def _on_progress(self, stage: str, done: int, total: int, info: dict) -> None:
        if self.job is None or not self.job.running:
            return
        self.progress.max = max(1, total)
        self.progress.value = min(done, total)
        loss = info.get("loss")
        if loss is not None:
            self.loss.value = f"{float(loss):.4f}"
        self.status.value = f"{stage}: step {done}/{total}"

    def _on_done(self, outcome: Outcome) -> None:
        self._set_running(False)
        if outcome.cancelled:
            self.status.value = "cancelled (no model saved)"
            notify_info("volsr training cancelled; no model was saved")
            return
        if outcome.error is not None:
            self.status.value = "failed"
            notify_error(outcome.error)
            return
        res = outcome.value
        self.last_result = res
        MODEL_CATALOG.add(res["path"], res["engine"])
        rep = res.get("report") or {}
        final = rep.get("final_loss")
        if final is not None:
            self.loss.value = f"{float(final):.4f}"
        self.progress.value = self.progress.max
        self.status.value = f"saved {Path(res['path']).name} ({rep.get('steps', '?')} steps)"
        notify_info(f"model saved to {res['path']}; it is now listed in the Restore widget")
