"""*Restore z-stack*: a napari dock widget over :func:`volsr.restore`.

Pick an image layer; the z factor is pre-filled from the layer's ``scale`` (z / x) and can
be edited; choose an interpolation engine, a bundled or saved model, a model trained in
this session, or *fit on this stack*; press *Restore*. The work runs in a napari thread
worker (the viewer stays responsive), the progress bar counts restored slices, and
*Cancel* stops it at the next batch. The result is a new layer with isotropic ``scale``;
the source layer is never modified.

*Preview plane* restores only the XZ plane (or YZ) under the cursor — or at the y (x) slider
when that axis is not on screen — with the same settings, through
:func:`volsr.api.restore_plane`, in seconds: two 2D layers, the source's plane (stretched by
its z spacing) above the restored one, appear below the stack; pressing again replaces them.

*damaged planes* lists z planes (``12,37-39``) to restore instead of keep (folds, lost
sections, dropped frames); *mark current plane* appends the plane under the z slider.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from volsr.errors import InputError, VolsrError

from ._widgets import (
    DEVICES,
    MODEL_CATALOG,
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
    layer_spacing,
    list_engine_choices,
    newest_layer,
    notify_error,
    notify_info,
    path_or_none,
    z_factor_from_scale,
)

__all__ = ["EngineChoice", "RestoreWidget", "add_plane", "current_plane", "default_choice", "engine_choices",
           "plane_index", "preview_layer_kwargs", "restore_options", "restored_layer_kwargs"]


def engine_choices() -> list[tuple[str, EngineChoice]]:
    """Everything the Restore widget can run, as (label, choice) pairs.

    Interpolation engines first (instant, no weights), then bundled models, models trained in
    this session, *fit on this stack* for each learned engine, and a model file.
    """
    return list_engine_choices(accept=lambda cls: cls.capabilities.rows,
                               fit_label="fit {name} on this stack", first=("linear", "cubic", "nearest"))


def default_choice(choices: list[EngineChoice]) -> EngineChoice | None:
    """A bundled MSDSR model when one is installed (the method the plugin is for), else linear."""
    for kind, engine in (("model", "msdsr"), ("engine", "linear")):
        for c in choices:
            if c.kind == kind and c.engine == engine and (kind == "engine" or not Path(str(c.model)).is_absolute()):
                return c
    return choices[0] if choices else None


def restore_options(
    choice: EngineChoice,
    *,
    z_factor: float,
    spacing,
    planes: str = "both",
    fusion: str = "mean",
    blur_sigma: float = 0.0,
    device: str = "auto",
    sampling_steps: int = 0,
    n_samples: int = 1,
    realism: float = -1.0,
    fit_steps: int = 0,
    fit_minutes: float = 0.0,
    fit_preset: str | None = None,
    model_file=None,
    model_out=None,
    seed: int = 0,
    float_output: bool = False,
    damaged: str = "",
) -> dict:
    """Keyword arguments for :func:`volsr.restore` from the widget's values.

    Zero means "not set" for ``blur_sigma``, ``sampling_steps``, ``fit_steps`` and
    ``fit_minutes``, and a negative ``realism`` means "the model's" (the library defaults
    then apply). ``damaged`` is the *damaged planes* text (``"12,37-39"``,
    :func:`volsr.grid.parse_plane_list`); empty = none. Raises :class:`InputError` when a
    model file is required but missing, or the damaged planes are malformed.
    """
    from volsr.grid import parse_plane_list

    kw: dict = {
        "engine": choice.engine,
        "z_factor": float(z_factor),
        "axes": "ZYX",
        "spacing": tuple(spacing) if spacing is not None else None,
        "planes": planes,
        "fusion": fusion,
        "blur_sigma": float(blur_sigma) if blur_sigma else None,
        "device": device,
        "seed": int(seed),
        "output_dtype": "float32" if float_output else "same",
    }
    planes_damaged = parse_plane_list(damaged or "")
    if planes_damaged:
        kw["damaged"] = planes_damaged
    if choice.learned:
        kw["n_samples"] = int(n_samples)
        if sampling_steps:
            kw["sampling_steps"] = int(sampling_steps)
        if realism is not None and realism >= 0:
            kw["realism"] = float(realism)
    if choice.kind in ("model", "file"):
        kw["model"] = chosen_model(choice, model_file)
    elif choice.kind == "fit":
        kw.update(fit_budget(fit_steps, fit_minutes))
        if fit_preset:
            kw["engine_options"] = {"preset": fit_preset}
        out = path_or_none(model_out)
        if out is not None:
            kw["model_out"] = str(out)
    return kw


def restored_layer_kwargs(source_layer, result) -> dict:
    """``add_image`` keywords for a restoration of ``source_layer``.

    The new scale is the result's (z, y, x) spacing — z becomes the restored plane spacing,
    y/x stay the source's — and the translate, colormap, blending and contrast limits are the
    source's, so both layers overlay in world coordinates and look alike.
    """
    from volsr.grid import VolumeGrid

    sz = float(result.spacing[0])
    src_scale = tuple(float(s) for s in source_layer.scale[-3:])
    # the widget passes the layer's scale as spacing, so sz is in the layer's units; y/x follow the grid
    shape = tuple(int(v) for v in source_layer.data.shape[-3:])
    _, sy, sx = VolumeGrid(shape, z=result.grid).spacing_out(src_scale)
    scale = (sz, sy, sx)
    name = f"{source_layer.name} (volsr {result.engine.name})"
    return {
        "name": name,
        "scale": scale,
        "translate": tuple(float(t) for t in source_layer.translate[-3:]),
        "contrast_limits": tuple(float(c) for c in source_layer.contrast_limits),
        "colormap": source_layer.colormap.name,
        "blending": source_layer.blending,
        "metadata": {
            "volsr": {
                "source": source_layer.name,
                "engine": result.engine.name,
                "z_factor": float(result.z_factor),
                "spacing": scale,
                "model_path": str(result.model_path) if result.model_path else None,
                "timings": dict(result.timings),
            }
        },
    }


def plane_index(viewer, layer, axis: str) -> int:
    """The y (``axis='xz'``) or x (``'yz'``) index of ``layer`` to preview.

    Under the cursor when that axis is on screen (the XY view), else at the viewer's dims
    position (e.g. the y slider of an XZ view); world coordinates are mapped to the layer's
    data coordinates (``layer.world_to_data``), so scale and translate are honoured.
    Raises :class:`InputError` when the position is outside the layer.
    """
    world = viewer.dims.ndim - (2 if axis == "xz" else 1)  # the layer's y / x are the last two world axes
    position = [float(v) for v in viewer.dims.point]
    if world in viewer.dims.displayed:
        position[world] = float(viewer.cursor.position[world])
    value = float(layer.world_to_data(position)[-2 if axis == "xz" else -1])
    index = int(np.floor(value + 0.5))
    what, n = ("y", layer.data.shape[-2]) if axis == "xz" else ("x", layer.data.shape[-1])
    if not 0 <= index < n:
        raise InputError(f"the cursor is outside '{layer.name}' along {what} ({what} = {index}, the stack has 0 to "
                         f"{n - 1}); move the cursor over the stack, or set the {what} slider in a {axis.upper()} view")
    return index


def current_plane(viewer, layer) -> int:
    """The z index of ``layer`` at the viewer's current position (``viewer.dims.current_step``).

    The viewer's position along the layer's z world axis is mapped to the layer's data index
    (``layer.world_to_data``), so scale and translate are honoured. Raises
    :class:`InputError` when that position is outside the layer.
    """
    position = [float(v) for v in viewer.dims.point]
    value = float(layer.world_to_data(position)[-3])
    index = int(np.floor(value + 0.5))
    n = int(layer.data.shape[-3])
    if not 0 <= index < n:
        raise InputError(f"the z slider is outside '{layer.name}' (z = {index}, the stack has planes 0 to {n - 1}); "
                         "move the z slider onto the damaged plane")
    return index


def add_plane(text: str, index: int) -> str:
    """``text`` (a damaged-planes list) with plane ``index`` appended (unchanged when already listed).

    Examples
    --------
    >>> add_plane("", 4), add_plane("12,37-39", 4), add_plane("4", 4)
    ('4', '12,37-39,4', '4')
    """
    from volsr.grid import parse_plane_list

    text = (text or "").strip().strip(",")
    if int(index) in parse_plane_list(text):
        return text
    return f"{text},{int(index)}" if text else str(int(index))


def preview_layer_kwargs(source_layer, result) -> tuple[dict, dict]:
    """``add_image`` keywords for the source's plane and the restored plane of a preview (:class:`PlaneResult`).

    Both are 2D layers laid out below the stack in the XY view, the source's plane on top, their
    columns under the stack's x (an XZ plane) and their rows in the stack's z units: the source's
    plane keeps its own z spacing (each measured row drawn as tall as the z spacing, no
    resampling), the restored one the restored spacing, so both cover the same z extent and look
    like the stack does in an XZ view. Colormap and contrast limits are the source's.
    """
    scale = [float(v) for v in source_layer.scale[-3:]]
    translate = [float(v) for v in source_layer.translate[-3:]]
    ny, nz = int(source_layer.data.shape[-2]), int(source_layer.data.shape[-3])
    col = 2 if result.axis == "xz" else 1  # the plane's columns: x (XZ) or y (YZ)
    gap = 0.04 * ny * scale[1]
    top = translate[1] + (ny - 0.5) * scale[1] + gap  # just below the stack in world y
    src_dz, out_dz = scale[0], float(result.spacing[0])
    ax = result.axis.upper()
    what = "y" if result.axis == "xz" else "x"
    base = {"colormap": source_layer.colormap.name, "blending": source_layer.blending,
            "contrast_limits": tuple(float(c) for c in source_layer.contrast_limits)}
    meta = {"source": source_layer.name, "axis": result.axis, "index": int(result.index)}
    measured = {**base, "name": f"{source_layer.name} {ax} {what}={result.index} (measured)",
                "scale": (src_dz, scale[col]), "translate": (top + 0.5 * src_dz, translate[2]),
                "metadata": {"volsr_preview": {**meta, "kind": "measured"}}}
    below = top + nz * src_dz + gap
    restored = {**base, "name": f"{source_layer.name} preview {ax} {what}={result.index}",
                "scale": (out_dz, scale[col]), "translate": (below + 0.5 * out_dz, translate[2]),
                "metadata": {"volsr_preview": {**meta, "kind": "restored", "engine": result.engine.name,
                                               "measured_rows": [int(r) for r in result.measured_rows],
                                               "timings": dict(result.timings)}}}
    return measured, restored


class RestoreWidget(JobWidget, EngineMenu, Container):
    """Dock widget: restore the selected z-stack layer to isotropic z sampling."""

    def __init__(self, napari_viewer):
        guard_triton_llvm_clash()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self._source = None
        self._plan: dict = {}

        self.layer = ComboBox(label="image layer", choices=self._layer_choices, nullable=True)
        self.z_factor = FloatSpinBox(label="z factor", value=1.0, min=0.0, max=1000.0, step=0.05,
                                     tooltip="z spacing / xy spacing; pre-filled from the layer's scale")
        self.shape_info = Label(value="")
        self.engine = ComboBox(label="engine / model", choices=self._engine_choices)
        self.model_file = FileEdit(label="model file", mode="r", filter="*.volsr")
        self.fit_steps = SpinBox(label="fit steps", value=0, min=0, max=10_000_000,
                                 tooltip="training steps for 'fit on this stack' (0 = no step limit)")
        self.fit_minutes = FloatSpinBox(label="fit minutes", value=4.0, min=0.0, max=100_000.0, step=0.5,
                                        tooltip="time budget for 'fit on this stack' (0 = no time limit)")
        self.fit_preset = ComboBox(label="fit network size", choices=["small", "tiny", "paper"], value="small",
                                   tooltip="tiny: seconds (demo quality); small: minutes on a CPU; paper: GPU")
        self.model_out = FileEdit(label="save fitted model", mode="w", filter="*.volsr",
                                  tooltip="optional: where to save the model fitted on this stack")
        self.sampling_steps = SpinBox(label="sampling steps", value=0, min=0, max=10_000,
                                      tooltip="denoising steps for diffusion models (0 = the model's default)")
        self.realism = FloatSpinBox(
            label="realism", value=-1.0, min=-1.0, max=1.0, step=0.1,
            tooltip="two-stage diffusion models: 0 = regression estimate (best PSNR/SSIM, for measuring and "
                    "segmenting) .. 1 = full diffusion sample (realistic texture, for looking); -1 = the model's")
        self.n_samples = SpinBox(label="samples", value=1, min=1, max=64,
                                 tooltip=">1: average several samples and add a per-voxel std layer")
        self.planes = ComboBox(label="planes", choices=["both", "xz", "yz"], value="both")
        self.fusion = ComboBox(label="fusion", choices=["mean", "geometric"], value="mean")
        self.blur = FloatSpinBox(label="blur sigma", value=0.0, min=0.0, max=10.0, step=0.1,
                                 tooltip="3D Gaussian post-blur (0 = off; the paper's ablation used 0.5)")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.float_output = CheckBox(text="float32 output", value=False)
        self.damaged = LineEdit(
            label="damaged planes", value="",
            tooltip="z planes to restore instead of keep (folds, lost sections, dropped frames): 0-based "
                    "indices and ranges, e.g. 12,37-39")
        self.mark_button = PushButton(text="mark current plane",
                                      tooltip="add the z plane under the z slider to the damaged planes")
        self.damaged_row = Container(widgets=[self.damaged, self.mark_button], layout="horizontal",
                                     labels=False, label="damaged planes")
        self.damaged_row.margins = (0, 0, 0, 0)
        self.preview_button = PushButton(
            text="Preview plane",
            tooltip="restore only the plane under the cursor (XZ: at its y, YZ: at its x) with these settings, "
                    "in seconds, beside the source's plane; pressing again replaces it")
        self.preview_axis = ComboBox(choices=["XZ", "YZ"], value="XZ", tooltip="which plane to preview")
        self.preview_row = Container(widgets=[self.preview_button, self.preview_axis], layout="horizontal",
                                     labels=False, label="preview")
        self.preview_row.margins = (0, 0, 0, 0)
        self._preview_layers: list = []
        self._job_kind = "restore"
        self.run_button = self._job_controls("Restore")
        super().__init__(widgets=[
            self.layer, self.z_factor, self.shape_info, self.engine, self.model_file, self.fit_steps,
            self.fit_minutes, self.fit_preset, self.model_out, self.sampling_steps, self.realism, self.n_samples,
            self.planes,
            self.fusion, self.blur, self.device, self.float_output, self.damaged_row, self.preview_row,
            self.run_button,
            self.cancel_button, self.progress, self.status,
        ])
        self.preview_button.changed.connect(self.preview)
        self.mark_button.changed.connect(self.mark_current_plane)
        self.layer.changed.connect(self._on_layer_changed)
        self.z_factor.changed.connect(self._update_shape_info)
        self.engine.changed.connect(self._update_visibility)
        self._follow_model_catalog()
        follow_layers(napari_viewer, self._refresh_layers)
        self._refresh_layers()
        choice = default_choice(list(self.engine.choices))
        if choice is not None:
            self.engine.value = choice
        self._update_visibility()

    # -- choices ---------------------------------------------------------------------------
    def _layer_choices(self, _widget=None):
        return image_layers(self.viewer)

    def _engine_choices(self, _widget=None):
        return engine_choices()

    def _refresh_layers(self, event=None):
        self.layer.reset_choices()
        if self.layer.value is None and self.layer.choices:
            # prefer the newest 3D image layer (e.g. the sample just opened)
            layer = newest_layer(self.layer.choices, lambda ly: ly.ndim == 3 and not getattr(ly, "rgb", False))
            if layer is not None:
                self.layer.value = layer

    # -- reacting to the form --------------------------------------------------------------
    def _on_layer_changed(self, layer=None):
        layer = self.layer.value
        if layer is not None and layer.ndim >= 3:
            f = z_factor_from_scale(layer.scale)
            if f is not None:
                self.z_factor.value = round(f, 4)
        self._update_shape_info()

    def _update_shape_info(self, *_):
        layer = self.layer.value
        if layer is None:
            self.shape_info.value = "open a z-stack or File > Open Sample > volsr"
            return
        if layer.ndim != 3 or getattr(layer, "rgb", False):
            self.shape_info.value = f"'{layer.name}' is not a single-channel z-stack"
            return
        from volsr.grid import OutputGrid

        z, y, x = layer.data.shape
        f = self.z_factor.value
        hint = ""
        if z_factor_from_scale(layer.scale) == 1.0:
            hint = " — layer scale is isotropic: set the z factor"
        try:
            n_out = OutputGrid(z, f).n_out if z >= 2 else z
            self.shape_info.value = f"{z}x{y}x{x} -> {n_out}x{y}x{x}{hint}"
        except (VolsrError, ValueError):
            self.shape_info.value = f"z factor {f:g} is not valid (needs >= 1){hint}"

    def _update_visibility(self, *_):
        choice = self.engine.value
        kind = choice.kind if choice is not None else "engine"
        self.model_file.visible = kind == "file"
        for w in (self.fit_steps, self.fit_minutes, self.fit_preset, self.model_out):
            w.visible = kind == "fit"
        for w in (self.sampling_steps, self.realism, self.n_samples):
            w.visible = kind != "engine"

    # -- running -----------------------------------------------------------------------------
    def options(self) -> dict:
        """The :func:`volsr.restore` keywords for the current form (raises on bad input)."""
        layer = self.layer.value
        check_image_layer(layer, purpose="restoration")
        return restore_options(
            self.engine.value, z_factor=self.z_factor.value, spacing=layer_spacing(layer),
            planes=self.planes.value, fusion=self.fusion.value, blur_sigma=self.blur.value,
            device=self.device.value, sampling_steps=self.sampling_steps.value, n_samples=self.n_samples.value,
            realism=self.realism.value,
            fit_steps=self.fit_steps.value, fit_minutes=self.fit_minutes.value,
            fit_preset=self.fit_preset.value, model_file=self.model_file.value,
            model_out=self.model_out.value, float_output=self.float_output.value, damaged=self.damaged.value,
        )

    def mark_current_plane(self, *_) -> int | None:
        """Append the z index under the viewer's z slider to *damaged planes*; returns it (None if refused)."""
        try:
            layer = self.layer.value
            check_image_layer(layer, purpose="marking a damaged plane")
            index = current_plane(self.viewer, layer)
            self.damaged.value = add_plane(self.damaged.value, index)
        except VolsrError as err:
            notify_error(str(err))
            return None
        return index

    def run(self, *_) -> Job | None:
        """Start restoring the selected layer; returns the job (None if the form was refused)."""
        if self.job is not None and self.job.running:
            notify_info("a restoration is already running; cancel it first")
            return None
        try:
            layer = self.layer.value
            data = check_image_layer(layer, purpose="restoration")
            kwargs = self.options()
            from volsr.grid import check_factor

            check_factor(kwargs["z_factor"])
        except VolsrError as err:
            notify_error(str(err))
            return None
        import volsr

        self._source = layer
        _, ny, nx = data.shape
        planes = kwargs["planes"]
        self._plan = {"xz": ny if planes in ("both", "xz") else 0, "yz": nx if planes in ("both", "yz") else 0}
        self._plan["total"] = self._plan["xz"] + self._plan["yz"]
        self.progress.max = max(1, self._plan["total"])
        self.progress.value = 0
        self.status.value = "starting…"
        self._job_kind = "restore"
        return self._start_job(volsr.restore, {"source": data, **kwargs})

    def preview(self, *_) -> Job | None:
        """Restore only the plane under the cursor (:func:`volsr.api.restore_plane`); returns the job."""
        if self.job is not None and self.job.running:
            notify_info("a restoration is already running; wait for it or cancel it first")
            return None
        axis = str(self.preview_axis.value).lower()
        try:
            layer = self.layer.value
            data = check_image_layer(layer, purpose="a preview")
            choice = self.engine.value
            if choice is not None and choice.kind == "fit":
                raise InputError(f"a preview needs a trained model, and '{choice.engine}' would first be fitted on "
                                 "the stack (minutes): press Restore once with 'save fitted model' set (or train "
                                 "one in 'Train / fit model'), then pick that model and preview")
            kwargs = self.options()
            from volsr.grid import check_factor

            check_factor(kwargs["z_factor"])
            index = plane_index(self.viewer, layer, axis)
        except VolsrError as err:
            notify_error(str(err))
            return None
        from volsr.api import restore_plane

        self._source = layer
        self._plan = {"xz": 0, "yz": 0, "total": 0}  # the planes restored (1, or a blur halo): each stage's total
        self.progress.max, self.progress.value = 1, 0
        self.status.value = f"previewing {axis.upper()} {'y' if axis == 'xz' else 'x'}={index}…"
        self._job_kind = "preview"
        return self._start_job(restore_plane, {"source": data, "axis": axis, "index": index, **kwargs})

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        self.preview_button.enabled = not running

    def _on_progress(self, stage: str, done: int, total: int, info: dict) -> None:
        if self.job is None or not self.job.running:
            return
        if stage == "fit":
            self.progress.max = max(1, total)
            self.progress.value = min(done, total)
            loss = info.get("loss")
            self.status.value = f"fitting: step {done}/{total}" + (f", loss {loss:.4f}" if loss is not None else "")
        elif stage in ("xz", "yz"):
            offset = self._plan.get("xz", 0) if stage == "yz" else 0
            total_all = self._plan.get("total") or total
            self.progress.max = max(1, total_all)
            self.progress.value = min(offset + done, total_all)
            self.status.value = f"restoring: {offset + done}/{total_all} slices ({stage.upper()})"
        elif stage == "blur":
            self.status.value = "blurring"
        else:
            self.status.value = f"{stage}: {done}/{total}"

    def _on_done(self, outcome: Outcome) -> None:
        if self._job_kind == "preview":
            self._on_preview_done(outcome)
            return
        if not self._finished(outcome, "restoration"):
            return
        result = outcome.value
        source = self._source
        kwargs = restored_layer_kwargs(source, result)
        self.viewer.add_image(result.data, **kwargs)
        if result.std is not None:
            std_kwargs = {k: v for k, v in kwargs.items() if k in ("scale", "translate", "metadata")}
            self.viewer.add_image(result.std, name=f"{kwargs['name']} std", colormap="magma", blending="additive",
                                  visible=False, **std_kwargs)
        if result.model_path is not None and self.engine.value is not None and self.engine.value.kind == "fit":
            MODEL_CATALOG.add(result.model_path, result.engine.name)
        self.progress.value = self.progress.max
        secs = sum(result.timings.values()) if result.timings else 0.0
        self.status.value = f"done: {kwargs['name']} {result.data.shape} in {secs:.1f} s"

    def _on_preview_done(self, outcome: Outcome) -> None:
        if not self._finished(outcome, "preview"):
            return
        result = outcome.value
        first = not self.clear_preview()
        measured, restored = preview_layer_kwargs(self._source, result)
        self._preview_layers = [self.viewer.add_image(result.measured, **measured),
                                self.viewer.add_image(result.data, **restored)]
        if first and list(self.viewer.dims.displayed)[-2:] == [self.viewer.dims.ndim - 2, self.viewer.dims.ndim - 1]:
            self.viewer.reset_view()  # the first preview sits below the stack: bring it into view (XY view only)
        self.progress.value = self.progress.max
        secs = sum(result.timings.values()) if result.timings else 0.0
        self.status.value = f"preview: {restored['name']} {result.data.shape} in {secs:.1f} s (below the stack)"

    def clear_preview(self) -> bool:
        """Remove the preview layers this widget added (those still in the viewer); True if there were any."""
        had = False
        for layer in self._preview_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
                had = True
        self._preview_layers = []
        return had
