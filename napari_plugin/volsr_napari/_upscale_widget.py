"""*Upscale image*: a napari dock widget over :func:`volsr.api.upscale`.

Pick an image layer — grayscale (Y, X), RGB (``rgb=True``) or a stack (every plane is
upscaled) — a scale, and a 2D engine (``capabilities.upscale``), a 2D model, or *fit ... on
this image (zero-shot)*; press *Upscale*. The work runs in a napari thread worker with a
progress bar and *Cancel*, as in the Restore widget. The result is a new layer in the
source's dtype (RGB stays RGB); the source layer is never modified.

Where the new layer sits: napari puts the centre of data pixel ``i`` at world
``translate + i * scale``, and volsr upscales pixel *areas* (``n`` pixels become ``n * s``
covering the same extent, as bicubic with ``align_corners=False``). So the new pixel size is
``scale / s`` and the first new pixel's centre lies ``(s - 1) / (2 s)`` of an old pixel before
the old first centre: ``translate_new = translate + scale * (1 / s - 1) / 2`` in Y and X.
Both layers then cover the same world rectangle. Z (stacks) keeps its scale and translate.
"""

from __future__ import annotations

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    SpinBox,
)

from volsr.errors import VolsrError

from ._widgets import (
    DEVICES,
    EngineChoice,
    EngineMenu,
    Job,
    JobWidget,
    Outcome,
    check_image_layer,
    chosen_model,
    fit_budget,
    follow_layers,
    guard_triton_llvm_clash,
    image_layers,
    layer_axes,
    list_engine_choices,
    newest_layer,
    notify_error,
    notify_info,
)

__all__ = ["UpscaleWidget", "upscale_engine_choices", "upscale_options", "upscaled_layer_kwargs"]

PURPOSE = "upscaling"


def upscale_engine_choices() -> list[tuple[str, EngineChoice]]:
    """The 2D engines (``bicubic`` first), their models, a zero-shot fit per learned 2D engine, a model file."""
    return list_engine_choices(accept=lambda cls: cls.capabilities.upscale,
                               fit_label="fit {name} on this image (zero-shot)", first=("bicubic",),
                               file_engine="")


def upscale_options(choice: EngineChoice, *, scale: int, tile: int = 512, seed: int = 0, device: str = "auto",
                    fit_steps: int = 0, fit_minutes: float = 0.0, model_file=None) -> dict:
    """Keyword arguments for :func:`volsr.api.upscale` from the widget's values.

    A model choice passes ``model`` (a model of a z-only engine is refused here, from the
    file's header); a zero-shot fit needs a budget (0 = "no limit of this kind", not both 0).
    """
    from volsr.api import model_scale

    kw: dict = {"scale": int(scale), "tile": int(tile), "seed": int(seed), "device": device}
    model = chosen_model(choice, model_file)
    if model is not None:
        model_scale(model)  # InputError for a z-only engine's model, before any thread starts
        kw["model"] = model
    else:
        kw["engine"] = choice.engine
    if choice.kind == "fit":
        kw.update(fit_budget(fit_steps, fit_minutes))
    return kw


def upscaled_layer_kwargs(source_layer, result, *, zero_shot: bool = False) -> dict:
    """``add_image`` keywords for an upscaling of ``source_layer`` (see the module note on pixel centres).

    Y/X pixel size is the result's spacing (the source's divided by the scale), the translate
    moves by half an old pixel minus half a new one so both layers cover the same world
    rectangle; Z, colormap, blending and contrast limits are the source's. ``zero_shot`` (the
    engine was fitted on this image itself) is recorded in the layer metadata.
    """
    s = int(result.scale)
    src_scale = [float(v) for v in source_layer.scale]
    src_translate = [float(v) for v in source_layer.translate]
    scale = src_scale[:-2] + [float(v) for v in result.spacing[-2:]]
    translate = src_translate[:-2] + [t + d * (1.0 / s - 1.0) / 2.0 for t, d in zip(src_translate[-2:], src_scale[-2:])]
    kwargs = {
        "name": f"{source_layer.name} x{s} ({result.engine.name})",
        "scale": tuple(scale),
        "translate": tuple(translate),
        "rgb": bool(getattr(source_layer, "rgb", False)),
        "contrast_limits": tuple(float(c) for c in source_layer.contrast_limits),
        "blending": source_layer.blending,
        "metadata": {"volsr": {"source": source_layer.name, "engine": result.engine.name, "upscale": s,
                               "spacing": tuple(scale), "zero_shot": bool(zero_shot), "timings": dict(result.timings)}},
    }
    if not kwargs["rgb"]:
        kwargs["colormap"] = source_layer.colormap.name
    return kwargs


def _layer_source(layer, data):
    """The layer as a :class:`volsr.io.Stack`: its axes and its Y/X (and Z) pixel size."""
    from volsr.io import Stack

    pixel = tuple(float(v) for v in layer.scale)
    spacing = (pixel[0] if len(pixel) == 3 else None, pixel[-2], pixel[-1])
    return Stack(data=data, axes=layer_axes(layer), spacing=spacing)


class UpscaleWidget(JobWidget, EngineMenu, Container):
    """Dock widget: in-plane super-resolution of the selected image layer."""

    def __init__(self, napari_viewer):
        from volsr.api.upscaling import DEFAULT_FIT_MINUTES, DEFAULT_SCALE

        guard_triton_llvm_clash()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self._source = None
        self._zero_shot = False

        self.layer = ComboBox(label="image layer", choices=self._layer_choices, nullable=True)
        self.engine = ComboBox(label="engine / model", choices=lambda _w=None: upscale_engine_choices())
        self.model_file = FileEdit(label="model file", mode="r", filter="*.volsr")
        self.model_info = Label(value="")
        self.scale = SpinBox(label="scale", value=DEFAULT_SCALE, min=1, max=32,
                             tooltip="upscaling factor in Y and X; a 2D model fills in its own")
        self.shape_info = Label(value="")
        self.fit_steps = SpinBox(label="fit steps", value=0, min=0, max=10_000_000,
                                 tooltip="training steps of the zero-shot fit (0 = no step limit)")
        self.fit_minutes = FloatSpinBox(label="fit minutes", value=DEFAULT_FIT_MINUTES, min=0.0, max=100_000.0,
                                        step=0.5, tooltip="time budget of the zero-shot fit (0 = no time limit)")
        self.tile = SpinBox(label="tile size", value=512, min=8, max=16_384,
                            tooltip="input pixels per tile side; larger images go through overlapping, blended "
                                    "tiles so memory stays bounded")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.run_button = self._job_controls("Upscale")
        super().__init__(widgets=[
            self.layer, self.engine, self.model_file, self.model_info, self.scale, self.shape_info,
            self.fit_steps, self.fit_minutes, self.tile, self.seed, self.device, self.run_button,
            self.cancel_button, self.progress, self.status,
        ])
        self.layer.changed.connect(self._update_shape_info)
        self.scale.changed.connect(self._update_shape_info)
        self.engine.changed.connect(self._on_engine_changed)
        self.model_file.changed.connect(self._on_engine_changed)
        self._follow_model_catalog()
        follow_layers(napari_viewer, self._refresh_layers)
        self._refresh_layers()
        self.select_engine("engine", "bicubic")
        self._on_engine_changed()

    # -- choices and form ------------------------------------------------------------------
    def _layer_choices(self, _widget=None):
        return image_layers(self.viewer, ndims=(2, 3))

    def _refresh_layers(self, event=None):
        self.layer.reset_choices()
        if self.layer.value is None and self.layer.choices:
            self.layer.value = newest_layer(self.layer.choices, lambda ly: True)
        self._update_shape_info()

    def _on_engine_changed(self, *_):
        """Show the fields the choice needs; a model fills in its own scale."""
        from volsr.api import model_scale

        choice = self.engine.value
        kind = choice.kind if choice is not None else "engine"
        self.model_file.visible = kind == "file"
        self.fit_steps.visible = self.fit_minutes.visible = kind == "fit"
        self.model_info.value = ""
        if kind == "fit":
            self.model_info.value = "no model: zero-shot fit on this image itself first"
        if kind not in ("model", "file"):
            return
        try:
            s = model_scale(chosen_model(choice, self.model_file.value))
        except VolsrError as err:
            self.model_info.value = str(err)
            return
        if s is not None:
            self.scale.value = s
        self.model_info.value = f"model trained for {s}x" if s else "model trained for z; scale is yours to set"

    def _update_shape_info(self, *_):
        layer = self.layer.value
        if layer is None:
            self.shape_info.value = "open an image (File > Open)"
            return
        s = self.scale.value
        y, x = (int(v) for v in layer.data.shape[int(layer.ndim) - 2:int(layer.ndim)])
        kind = "RGB " if getattr(layer, "rgb", False) else ""
        planes = f" (each of {layer.data.shape[0]} planes)" if layer.ndim == 3 else ""
        self.shape_info.value = f"{kind}{y}x{x} -> {y * s}x{x * s}{planes}"

    # -- running ---------------------------------------------------------------------------
    def options(self) -> dict:
        """The :func:`volsr.api.upscale` keywords for the current form (raises on bad input)."""
        return upscale_options(self.engine.value, scale=self.scale.value, tile=self.tile.value,
                               seed=self.seed.value, device=self.device.value, fit_steps=self.fit_steps.value,
                               fit_minutes=self.fit_minutes.value, model_file=self.model_file.value)

    def run(self, *_) -> Job | None:
        """Start upscaling the selected layer; returns the job (None if the form was refused)."""
        if self.job is not None and self.job.running:
            notify_info("an upscaling is already running; cancel it first")
            return None
        try:
            layer = self.layer.value
            data = check_image_layer(layer, purpose=PURPOSE, allow_2d=True, allow_rgb=True)
            kwargs = self.options()
            source = _layer_source(layer, data)
        except VolsrError as err:
            notify_error(str(err))
            return None
        from volsr.api import upscale

        self._source = layer
        self._zero_shot = self.engine.value.kind == "fit"
        self.progress.max = 1
        self.progress.value = 0
        self.status.value = (f"zero-shot: no model, fitting {kwargs['engine']} on this image itself first…"
                             if self._zero_shot else "starting…")
        return self._start_job(upscale, {"source": source, **kwargs})

    def _on_progress(self, stage: str, done: int, total: int, info: dict) -> None:
        if self.job is None or not self.job.running:
            return
        self.progress.max = max(1, total)
        self.progress.value = min(done, total)
        if stage == "fit":
            loss = info.get("loss")
            self.status.value = (f"zero-shot fit on this image: step {done}/{total}"
                                 + (f", loss {loss:.4f}" if loss is not None else ""))
        elif stage == "upscale":
            self.status.value = f"upscaling: {done}/{total} planes"
        else:
            self.status.value = f"{stage}: {done}/{total}"

    def _on_done(self, outcome: Outcome) -> None:
        if not self._finished(outcome, "upscaling"):
            return
        result = outcome.value
        kwargs = upscaled_layer_kwargs(self._source, result, zero_shot=self._zero_shot)
        self.viewer.add_image(result.data, **kwargs)
        self.progress.value = self.progress.max
        secs = sum(result.timings.values()) if result.timings else 0.0
        how = " (zero-shot: fitted on this image, no model)" if self._zero_shot else ""
        self.status.value = f"done: {kwargs['name']} {result.data.shape} in {secs:.1f} s{how}"
