"""The napari plugin in a real viewer (pytest-qt + napari's make_napari_viewer; CI runs it under xvfb-run).

Run: xvfb-run -a .venv/bin/pytest tests/plugin/test_napari_plugin.py -q
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                             or os.environ.get("QT_QPA_PLATFORM")):
    # Qt would abort the whole pytest process without a display
    pytest.skip("the napari tests need a display: run them under `xvfb-run -a`", allow_module_level=True)

from napari.utils.notifications import NotificationSeverity, notification_manager  # noqa: E402
from volsr_napari import RestoreWidget, ScoreWidget, TrainWidget, UpscaleWidget, write_image  # noqa: E402
from volsr_napari._restore_widget import EngineChoice, restore_options  # noqa: E402
from volsr_napari._widgets import MODEL_CATALOG, z_factor_from_scale  # noqa: E402

import volsr  # noqa: E402
from volsr.engines import register_engine  # noqa: E402
from volsr.engines.interpolation import BicubicEngine, LinearEngine  # noqa: E402
from volsr.engines.registry import _REGISTERED  # noqa: E402

pytestmark = pytest.mark.qt

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 30_000


# -- helpers -------------------------------------------------------------------------------------
def small_stack(shape=(6, 32, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, size=shape).astype(np.uint16)


def errors_after(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:] if n.severity == NotificationSeverity.ERROR]


def wait_for(qtbot, job):
    assert job is not None, "the widget refused to start"
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    return job.outcome


# -- manifest --------------------------------------------------------------------------------------
def test_manifest_validates_and_registers_all_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("volsr")
    pm.validate_imports()  # every python_name resolves
    c = pm.contributions
    assert {w.display_name for w in c.widgets} == {"Restore z-stack", "Train / fit model",
                                                  "Score (SliceFID, isotropy gap)", "Upscale image"}
    assert [s.key for s in c.sample_data] == ["anisotropic_stack"]
    assert c.writers[0].layer_types == ["image"] and ".tif" in c.writers[0].filename_extensions
    # the shipped file is the one the entry point points to
    path = ROOT / "napari_plugin" / "volsr_napari" / "napari.yaml"
    assert PluginManifest.from_file(path).name == "volsr"


def test_widgets_dock_from_the_plugins_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    for name, cls in (("Restore z-stack", RestoreWidget), ("Train / fit model", TrainWidget),
                      ("Score (SliceFID, isotropy gap)", ScoreWidget), ("Upscale image", UpscaleWidget)):
        dock, widget = viewer.window.add_plugin_dock_widget("volsr", name)
        assert isinstance(widget, cls)
    # interpolation engines, fit-on-stack for learned engines and a model-file entry are offered
    kinds = {(c.kind, c.engine) for c in widget_choices(viewer)}
    assert {("engine", "linear"), ("engine", "nearest"), ("engine", "cubic"), ("fit", "msdsr"),
            ("file", "msdsr")} <= kinds
    assert ("engine", "bicubic") not in kinds  # 2D-only engines belong to "Upscale image", not Restore


def widget_choices(viewer):
    return list(RestoreWidget(viewer).engine.choices)


# -- restore ---------------------------------------------------------------------------------------
def test_restore_linear_adds_isotropic_layer_and_leaves_source_untouched(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = small_stack()
    original = data.copy()
    src = viewer.add_image(data, name="stack", scale=(1.5, 0.5, 0.5), translate=(1.0, 2.0, 3.0),
                           contrast_limits=(100, 3000))
    w = RestoreWidget(viewer)
    assert w.layer.value is src
    assert w.z_factor.value == pytest.approx(3.0)  # pre-filled from scale z / x
    assert "6x32x40 -> 16x32x40" in w.shape_info.value
    w.select_engine("engine", "linear")
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None and not outcome.cancelled

    assert len(viewer.layers) == 2
    out = viewer.layers[-1]
    assert out.name == "stack (volsr linear)"
    assert out.data.shape == (16, 32, 40) and out.data.dtype == np.uint16
    np.testing.assert_allclose(out.scale, (0.5, 0.5, 0.5))  # isotropic: z spacing 1.5 / 3
    np.testing.assert_allclose(out.translate, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(out.contrast_limits, (100, 3000))
    # measured planes sit at rows 0, 3, ..., 15 unchanged; rows between are linear interpolations
    np.testing.assert_array_equal(out.data[::3], original)
    expect = (2 * original[0].astype(float) + original[1]) / 3
    assert np.abs(out.data[1].astype(float) - expect).max() <= 1.0
    # the same numbers as the Python API (the widget is a thin shell)
    api = volsr.restore(original, engine="linear", z_factor=3.0, spacing=(1.5, 0.5, 0.5))
    np.testing.assert_array_equal(out.data, api.data)
    # the source layer is never modified
    np.testing.assert_array_equal(src.data, original)
    np.testing.assert_allclose(src.scale, (1.5, 0.5, 0.5))
    assert out.metadata["volsr"]["engine"] == "linear"
    assert w.progress.value == w.progress.max == 32 + 40  # XZ + YZ slices


def test_edited_z_factor_sets_the_output_spacing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(small_stack((4, 16, 16)), name="s", scale=(1.0, 1.0, 1.0))
    w = RestoreWidget(viewer)
    assert w.z_factor.value == pytest.approx(1.0)
    assert "isotropic" in w.shape_info.value  # hint: set the factor
    w.z_factor.value = 2.5
    w.select_engine("engine", "nearest")
    assert wait_for(qtbot, w.run()).error is None
    out = viewer.layers[-1]
    assert out.data.shape[0] == round(3 * 2.5) + 1
    np.testing.assert_allclose(out.scale[0] * (out.data.shape[0] - 1), 2.5 * 3, rtol=1e-6)  # same physical extent


@pytest.fixture
def slow_engine():
    """A registered interpolation engine that takes 0.4 s per batch and signals when it runs."""
    started = threading.Event()

    class SlowEngine(LinearEngine):
        name = "test-slow"
        description = "test engine"

        def _restore(self, planes, known, options, **run):
            started.set()
            time.sleep(0.4)
            return super()._restore(planes, known, options, **run)

    register_engine(SlowEngine)
    yield started
    _REGISTERED.pop("test-slow", None)


def test_cancel_stops_a_running_restore_without_adding_a_layer(make_napari_viewer, qtbot, slow_engine):
    viewer = make_napari_viewer()
    src = viewer.add_image(small_stack(), name="stack", scale=(2.0, 1.0, 1.0))
    w = RestoreWidget(viewer)
    w.select_engine("engine", "test-slow")
    job = w.run()
    assert job is not None and w.cancel_button.enabled and not w.run_button.enabled
    assert slow_engine.wait(10)  # the worker is inside the engine now; the GUI thread is free
    w.cancel()
    outcome = wait_for(qtbot, job)
    assert outcome.cancelled and outcome.value is None
    assert list(viewer.layers) == [src]
    assert w.status.value == "cancelled" and w.run_button.enabled and not w.cancel_button.enabled


def test_cancel_stops_fit_on_this_stack(make_napari_viewer, qtbot):
    """Cancel also works while 'fit msdsr on this stack' is still training (before any slice)."""
    viewer = make_napari_viewer()
    src = viewer.add_image(small_stack((4, 32, 32)), name="stack", scale=(2.0, 1.0, 1.0))
    w = RestoreWidget(viewer)
    w.select_engine("fit", "msdsr")
    w.fit_preset.value = "tiny"
    w.fit_steps.value = 100_000
    w.fit_minutes.value = 0
    job = w.run()
    assert job is not None
    qtbot.waitUntil(lambda: w.status.value.startswith("fitting") or not job.running, timeout=WAIT_MS)
    assert job.running and w.progress.max == 100_000
    w.cancel()
    outcome = wait_for(qtbot, job)
    assert outcome.cancelled
    assert list(viewer.layers) == [src] and w.status.value == "cancelled"


# -- preview plane ---------------------------------------------------------------------------------
def _press_preview(qtbot, w):
    outcome = wait_for(qtbot, w.preview())
    assert outcome.error is None and not outcome.cancelled, outcome.error
    return outcome.value


def test_preview_plane_under_the_cursor_is_restore_plane_and_replaces_itself(make_napari_viewer, qtbot):
    from volsr.api import restore_plane

    viewer = make_napari_viewer()
    data = small_stack((6, 32, 40))
    src = viewer.add_image(data, name="stack", scale=(1.5, 0.5, 0.5), translate=(1.0, 2.0, 3.0),
                           contrast_limits=(100, 3000))
    w = RestoreWidget(viewer)
    w.select_engine("engine", "linear")
    w.blur.value = 0.5  # every setting of the full restore applies to the preview
    assert w.preview_button.text == "Preview plane" and w.preview_axis.value == "XZ"
    # XY view: y comes from the cursor, mapped through the layer's scale and translate
    viewer.cursor.position = (1.0 + 1.5 * 2, 2.0 + 0.5 * 11 + 0.2, 3.0 + 0.5 * 7)
    _press_preview(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["stack", "stack XZ y=11 (measured)", "stack preview XZ y=11"]
    measured, preview = viewer.layers[1], viewer.layers[2]
    api = restore_plane(data, axis="xz", index=11, **w.options())
    assert preview.ndim == measured.ndim == 2 and preview.data.shape == (16, 40) and preview.data.dtype == np.uint16
    np.testing.assert_array_equal(preview.data, api.data)
    np.testing.assert_array_equal(preview.data, volsr.restore(data, planes="xz", **{
        k: v for k, v in w.options().items() if k != "planes"}).data[:, 11, :])
    np.testing.assert_array_equal(measured.data, data[:, 11, :])  # the source's own plane, not resampled
    # both planes cover the stack's z extent (the source's at its own z spacing), below the stack, under its x
    np.testing.assert_allclose(measured.scale, (1.5, 0.5))
    np.testing.assert_allclose(preview.scale, (0.5, 0.5))
    assert measured.translate[0] > 2.0 + 0.5 * 32 and preview.translate[0] > measured.translate[0] + 1.5 * 5
    np.testing.assert_allclose([measured.translate[1], preview.translate[1]], [3.0, 3.0])
    np.testing.assert_allclose(preview.contrast_limits, (100, 3000))
    assert preview.metadata["volsr_preview"]["measured_rows"] == [0, 3, 6, 9, 12, 15]
    np.testing.assert_array_equal(src.data, data)
    assert w.status.value.startswith("preview: stack preview XZ y=11") and w.preview_button.enabled

    # pressed again in an XZ view (y is the slider there): the new plane replaces the old layers
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(1, 2.0 + 0.5 * 20)
    _press_preview(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["stack", "stack XZ y=20 (measured)", "stack preview XZ y=20"]
    np.testing.assert_array_equal(viewer.layers[2].data, restore_plane(data, axis="xz", index=20, **w.options()).data)

    # the YZ plane at the cursor's x
    viewer.dims.order = (0, 1, 2)
    w.preview_axis.value = "YZ"
    viewer.cursor.position = (1.0, 2.0, 3.0 + 0.5 * 33)
    _press_preview(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["stack", "stack YZ x=33 (measured)", "stack preview YZ x=33"]
    np.testing.assert_array_equal(viewer.layers[2].data, restore_plane(data, axis="yz", index=33, **w.options()).data)
    np.testing.assert_array_equal(viewer.layers[1].data, data[:, :, 33])


def test_preview_refusals_are_notifications_and_cancel_keeps_the_old_preview(make_napari_viewer, qtbot,
                                                                              slow_engine):
    viewer = make_napari_viewer()
    viewer.add_image(small_stack((6, 32, 40)), name="stack", scale=(2.0, 1.0, 1.0))
    w = RestoreWidget(viewer)
    start = len(notification_manager.records)
    w.select_engine("fit", "msdsr")  # would fit for minutes first: refused, not started
    viewer.cursor.position = (0.0, 4.0, 4.0)
    assert w.preview() is None
    w.select_engine("engine", "linear")
    viewer.cursor.position = (0.0, 40.0, 4.0)  # below the stack
    assert w.preview() is None
    msgs = errors_after(start)
    assert len(msgs) == 2 and "needs a trained model" in msgs[0] and "'msdsr' would first be fitted" in msgs[0]
    assert "outside 'stack' along y (y = 40, the stack has 0 to 31)" in msgs[1]
    assert len(viewer.layers) == 1

    viewer.cursor.position = (0.0, 4.0, 4.0)
    _press_preview(qtbot, w)
    before = list(viewer.layers)
    w.select_engine("engine", "test-slow")
    viewer.cursor.position = (0.0, 9.0, 4.0)
    job = w.preview()
    assert job is not None and w.cancel_button.enabled and not w.preview_button.enabled and not w.run_button.enabled
    assert w.run() is None  # one job at a time
    assert slow_engine.wait(10)
    w.cancel()
    assert wait_for(qtbot, job).cancelled
    assert list(viewer.layers) == before and w.status.value == "cancelled"
    assert w.preview_button.enabled and w.run_button.enabled


class _RunningJob:
    running = True
    asked = False

    def cancel(self):
        self.asked = True


@pytest.mark.parametrize("cls, start_name, start_text", [
    (RestoreWidget, "run_button", "Restore"), (UpscaleWidget, "run_button", "Upscale"),
    (TrainWidget, "train_button", "Train"), (ScoreWidget, "score_button", "Score")])
def test_every_widget_has_the_same_job_controls(make_napari_viewer, qtbot, cls, start_name, start_text):
    viewer = make_napari_viewer()
    w = cls(viewer)
    start = getattr(w, start_name)
    assert start is w.start_button and start.text == start_text and start.enabled
    assert w.cancel_button.text == "Cancel" and not w.cancel_button.enabled
    assert (w.progress.label, w.progress.value, w.progress.min, w.progress.max) == ("progress", 0, 0, 1)
    assert w.status.value == ""
    order = list(w)
    assert order.index(start) + 1 == order.index(w.cancel_button) < order.index(w.progress) < order.index(w.status)
    # the start button runs the widget (an empty viewer: a notification, no job) ...
    before = len(notification_manager.records)
    start.native.click()
    assert w.job is None and len(errors_after(before)) == 1
    # ... Cancel asks a running job to stop, and the relay feeds the widget's own progress display
    w.job, w.cancel_button.enabled = _RunningJob(), True
    w.cancel_button.native.click()
    assert w.job.asked and w.status.value == "cancelling…" and not w.cancel_button.enabled
    w._relay("fit", 3, 7)
    qtbot.waitUntil(lambda: w.progress.value == 3 and w.progress.max == 7, timeout=WAIT_MS)


# -- errors are notifications, not tracebacks ------------------------------------------------------
def test_bad_inputs_are_reported_as_notifications(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = RestoreWidget(viewer)
    start = len(notification_manager.records)
    assert w.run() is None  # no layer at all
    flat = viewer.add_image(np.zeros((32, 32), np.uint16), name="flat")
    w.layer.value = flat
    assert w.run() is None
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    w.layer.value = rgb
    assert w.run() is None
    stack = viewer.add_image(small_stack((4, 16, 16)), name="stack")
    w.layer.value = stack
    w.z_factor.value = 0.5
    assert w.run() is None
    msgs = errors_after(start)
    assert len(msgs) == 4
    assert "no image layer" in msgs[0]
    assert "'flat' is a 2D image" in msgs[1]
    assert "'photo' is RGB" in msgs[2]
    assert "z factor 0.5 < 1" in msgs[3]
    assert len(viewer.layers) == 3


def test_missing_fid_weights_is_a_notification(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.delenv("VOLSR_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    viewer = make_napari_viewer()
    layer = viewer.add_image(small_stack((16, 32, 32)), name="vol")
    w = ScoreWidget(viewer)
    w.volume.value = layer
    w.reference_layer.value = layer
    w.features.value = "inception"
    assert not w.weights.native.isHidden()  # the weights field appears for inception
    start = len(notification_manager.records)
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is not None and "Inception-v3 FID weights not found" in outcome.error
    assert errors_after(start) == [outcome.error]


def test_option_validation():
    with pytest.raises(volsr.VolsrError, match="fit budget"):
        restore_options(EngineChoice("fit", "msdsr"), z_factor=2, spacing=None, fit_steps=0, fit_minutes=0)
    with pytest.raises(volsr.VolsrError, match="model file"):
        restore_options(EngineChoice("file", "msdsr"), z_factor=2, spacing=None, model_file="")
    kw = restore_options(EngineChoice("model", "msdsr", "sample"), z_factor=2, spacing=(2, 1, 1), sampling_steps=5,
                         blur_sigma=0.5)
    assert kw["model"] == "sample" and kw["sampling_steps"] == 5 and kw["blur_sigma"] == 0.5
    kw = restore_options(EngineChoice("engine", "linear"), z_factor=2, spacing=(2, 1, 1), sampling_steps=5)
    assert "sampling_steps" not in kw and "model" not in kw and kw["blur_sigma"] is None
    kw = restore_options(EngineChoice("fit", "msdsr"), z_factor=2, spacing=None, fit_minutes=1, realism=0.0)
    assert kw["realism"] == 0.0  # 0 is a setting (the regression estimate), not "unset"
    assert "realism" not in restore_options(EngineChoice("fit", "msdsr"), z_factor=2, spacing=None, fit_minutes=1)
    assert "realism" not in restore_options(EngineChoice("engine", "linear"), z_factor=2, spacing=None, realism=0.5)
    assert z_factor_from_scale((3.0, 0.5, 0.5)) == 6.0 and z_factor_from_scale((1.0, 0.0)) is None


# -- upscale image -----------------------------------------------------------------------------------
def smooth_image(shape, seed=0, top=4000.0, dtype=np.uint16) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return (gaussian_filter(rng.random(shape), 1.5) * top).astype(dtype)


def infos_after(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:] if n.severity == NotificationSeverity.INFO]


def test_upscale_bicubic_grayscale_matches_the_api_and_overlays_the_source(make_napari_viewer, qtbot):
    from volsr.api import upscale

    viewer = make_napari_viewer()
    data = smooth_image((20, 24))
    original = data.copy()
    src = viewer.add_image(data, name="img", scale=(0.5, 0.25), translate=(10.0, 20.0))
    w = UpscaleWidget(viewer)
    assert w.layer.value is src and w.engine.value.engine == "bicubic" and w.scale.value == 4
    assert w.shape_info.value == "20x24 -> 80x96"
    # only 2D engines are offered: bicubic, a zero-shot fit per learned 2D engine, a model file
    engines = {c.engine for c in w.engine.choices if c.kind != "file"}
    assert "bicubic" in engines and "msunet" in engines and not engines & {"msdsr", "linear", "e2e-unet"}
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None and not outcome.cancelled

    out = viewer.layers[-1]
    assert out.name == "img x4 (bicubic)" and not out.rgb
    assert out.data.shape == (80, 96) and out.data.dtype == np.uint16
    np.testing.assert_array_equal(out.data, upscale(original, 4, engine="bicubic").data)  # a thin shell
    np.testing.assert_allclose(out.scale, (0.125, 0.0625))
    # pixel areas: new pixel j's centre sits at old pixel coordinate (j + 0.5) / 4 - 0.5 in world space
    np.testing.assert_allclose(out.translate, (10.0 - 0.5 * 3 / 8, 20.0 - 0.25 * 3 / 8))
    for j, k in ((0, 0), (79, 95), (37, 5)):
        back = src.world_to_data(out.data_to_world((j, k)))
        np.testing.assert_allclose(back, ((j + 0.5) / 4 - 0.5, (k + 0.5) / 4 - 0.5), atol=1e-9)
    assert out.metadata["volsr"]["upscale"] == 4 and out.metadata["volsr"]["zero_shot"] is False
    np.testing.assert_array_equal(src.data, original)
    assert w.status.value.startswith("done: img x4 (bicubic) (80, 96)")


def test_upscale_rgb_stays_rgb_uint8_and_stacks_keep_z(make_napari_viewer, qtbot):
    from volsr.api import upscale

    viewer = make_napari_viewer()
    rgb = smooth_image((16, 12, 3), seed=1, top=255.0, dtype=np.uint8)
    photo = viewer.add_image(rgb, name="photo", rgb=True)
    w = UpscaleWidget(viewer)
    w.scale.value = 2
    assert w.shape_info.value == "RGB 16x12 -> 32x24"
    assert wait_for(qtbot, w.run()).error is None
    out = viewer.layers[-1]
    assert out.rgb and out.data.shape == (32, 24, 3) and out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.data, upscale(rgb, 2, axes="YXS").data)
    np.testing.assert_allclose(out.scale, (0.5, 0.5))
    np.testing.assert_allclose(out.translate, (-0.25, -0.25))

    stack = viewer.add_image(smooth_image((3, 10, 8), seed=2), name="stack", scale=(3.0, 1.0, 1.0),
                             translate=(5.0, 0.0, 0.0))
    w.layer.value = stack
    assert wait_for(qtbot, w.run()).error is None
    out = viewer.layers[-1]
    assert out.data.shape == (3, 20, 16) and out.name == "stack x2 (bicubic)"
    np.testing.assert_allclose(out.scale, (3.0, 0.5, 0.5))  # Z unchanged
    np.testing.assert_allclose(out.translate, (5.0, -0.25, -0.25))
    np.testing.assert_array_equal(out.data[1], upscale(stack.data[1], 2).data)  # every plane on its own
    assert w.progress.value == w.progress.max == 3  # planes
    assert photo.data.shape == (16, 12, 3)


@pytest.fixture
def slow_2d_engine():
    """A registered 2D engine that takes 0.4 s per batch and signals when it runs."""
    started = threading.Event()

    class Slow2D(BicubicEngine):
        name = "test-slow-2d"
        description = "test engine"

        def _upscale(self, images, scale, options, **run):
            started.set()
            time.sleep(0.4)
            return super()._upscale(images, scale, options, **run)

    register_engine(Slow2D)
    yield started
    _REGISTERED.pop("test-slow-2d", None)


def test_cancel_stops_an_upscale_without_adding_a_layer(make_napari_viewer, qtbot, slow_2d_engine):
    viewer = make_napari_viewer()
    src = viewer.add_image(smooth_image((16, 16)), name="img")
    w = UpscaleWidget(viewer)
    w.select_engine("engine", "test-slow-2d")
    start = len(notification_manager.records)
    job = w.run()
    assert job is not None and w.cancel_button.enabled and not w.run_button.enabled
    assert slow_2d_engine.wait(10)
    w.cancel()
    outcome = wait_for(qtbot, job)
    assert outcome.cancelled and outcome.value is None
    assert list(viewer.layers) == [src]
    assert w.status.value == "cancelled" and w.run_button.enabled and not w.cancel_button.enabled
    assert "volsr upscaling cancelled; nothing was added" in infos_after(start)


def test_upscale_without_a_model_says_zero_shot_and_cancels_during_the_fit(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    src = viewer.add_image(smooth_image((32, 32)), name="img")
    w = UpscaleWidget(viewer)
    w.select_engine("fit", "msunet")
    assert "zero-shot" in w.model_info.value and not w.fit_steps.native.isHidden()
    w.fit_steps.value = 100_000
    w.fit_minutes.value = 0
    job = w.run()
    assert job is not None and w.status.value.startswith("zero-shot: no model, fitting msunet on this image")
    qtbot.waitUntil(lambda: w.status.value.startswith("zero-shot fit on this image: step") or not job.running,
                    timeout=WAIT_MS)
    assert job.running and w.progress.max == 100_000
    w.cancel()
    assert wait_for(qtbot, job).cancelled
    assert list(viewer.layers) == [src] and w.status.value == "cancelled"


def test_upscale_bad_choices_are_notifications_and_add_no_layer(make_napari_viewer, qtbot):
    from volsr.checkpoint import list_bundled_models

    viewer = make_napari_viewer()
    w = UpscaleWidget(viewer)
    start = len(notification_manager.records)
    assert w.run() is None  # no image layer
    viewer.add_image(smooth_image((16, 16)), name="img")
    w.select_engine("file")
    assert w.run() is None  # no model file chosen
    z_model = next(m["path"] for m in list_bundled_models() if m["engine"] == "msdsr")
    w.model_file.value = z_model
    assert "'msdsr' restores z" in w.model_info.value
    assert w.run() is None  # a z-only engine's model
    w.select_engine("fit", "msunet")
    w.fit_steps.value, w.fit_minutes.value = 0, 0
    assert w.run() is None  # no fit budget
    msgs = errors_after(start)
    assert len(msgs) == 4
    assert "no image layer selected for upscaling" in msgs[0]
    assert "choose a .volsr model file" in msgs[1]
    assert "engine 'msdsr' restores z, it does not upscale images in-plane; choose one of: bicubic" in msgs[2]
    assert "fit budget" in msgs[3]
    assert len(viewer.layers) == 1 and w.run_button.enabled


def test_upscale_with_a_trained_model_takes_its_scale(make_napari_viewer, qtbot, tmp_path):
    from volsr.api import upscale
    from volsr.cli import main

    hr = volsr.write_stack(tmp_path / "hr.tif", smooth_image((48, 48), seed=3).astype(np.float32), "YX")
    model = tmp_path / "sr2.volsr"
    assert main(["train", str(hr), "-o", str(model), "--engine", "msunet", "--preset", "tiny", "--task", "upscale",
                 "--scale", "2", "--steps", "2", "--crop", "32"]) == 0
    viewer = make_napari_viewer()
    img = smooth_image((12, 16), seed=4)
    viewer.add_image(img, name="img")
    w = UpscaleWidget(viewer)
    MODEL_CATALOG.add(model, "msunet")
    try:
        w.select_engine("model", "msunet", str(model.resolve()))
        assert w.scale.value == 2 and w.model_info.value == "model trained for 2x"
        assert wait_for(qtbot, w.run()).error is None
    finally:
        MODEL_CATALOG.clear()
    out = viewer.layers[-1]
    assert out.name == "img x2 (msunet)" and out.data.shape == (24, 32) and out.data.dtype == np.uint16
    np.testing.assert_array_equal(out.data, upscale(img, model=model).data)


# -- sample data, writer -----------------------------------------------------------------------------
def test_sample_data_opens_with_anisotropic_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("volsr", "anisotropic_stack")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.ndim == 3 and layer.data.shape[0] >= 2
    assert z_factor_from_scale(layer.scale) == pytest.approx(volsr.samples.sample_stack().z_factor)
    w = RestoreWidget(viewer)
    assert w.layer.value is layer and w.z_factor.value == pytest.approx(z_factor_from_scale(layer.scale))


def test_writer_keeps_the_spacing(make_napari_viewer, tmp_path):
    data = small_stack((5, 16, 16))
    (path,) = write_image(str(tmp_path / "out.tif"), data, {"scale": (0.5, 0.25, 0.25), "name": "r"})
    back = volsr.read_stack(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.axes == "ZYX"
    np.testing.assert_allclose(back.spacing, (0.5, 0.25, 0.25))
    # through napari's save with the plugin's writer
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name="r", scale=(1.0, 0.5, 0.5))
    (saved,) = layer.save(str(tmp_path / "layer.ome.tif"), plugin="volsr")
    np.testing.assert_allclose(volsr.read_stack(saved).spacing, (1.0, 0.5, 0.5))


# -- train -> restore ---------------------------------------------------------------------------------
def test_train_widget_fits_saves_and_offers_the_model(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    from scipy.ndimage import gaussian_filter

    vol = (gaussian_filter(rng.random((4, 32, 32)), 1.5) * 4000).astype(np.uint16)
    img = (gaussian_filter(rng.random((32, 32)), 1.5) * 4000).astype(np.uint16)
    stack = viewer.add_image(vol, name="stack", scale=(2.0, 1.0, 1.0))
    plane = viewer.add_image(img, name="plane")
    t = TrainWidget(viewer)
    r = RestoreWidget(viewer)
    n_choices = len(r.engine.choices)
    t.layers.value = [stack, plane]
    t.engine.value = "msdsr"
    t.preset.value = "tiny"
    t.crop.value = 16
    t.steps.value = 3
    t.minutes.value = 0
    t.out_path.value = tmp_path / "m.volsr"
    outcome = wait_for(qtbot, t.run())
    assert outcome.error is None, outcome.error
    path = Path(outcome.value["path"])
    assert path.is_file() and outcome.value["report"]["steps"] == 3
    assert t.loss.value not in ("", "–") and np.isfinite(float(t.loss.value))
    # the Restore widget now offers it and can run it
    assert len(r.engine.choices) == n_choices + 1
    choice = r.select_engine("model", "msdsr", str(path.resolve()))
    r.layer.value = stack
    r.sampling_steps.value = 1
    out = wait_for(qtbot, r.run())
    assert out.error is None, out.error
    assert viewer.layers[-1].name == "stack (volsr msdsr)" and viewer.layers[-1].data.shape == (7, 32, 32)
    assert viewer.layers[-1].metadata["volsr"]["model_path"] == str(path.resolve()) == choice.model
    MODEL_CATALOG.clear()


# -- score --------------------------------------------------------------------------------------------
def test_score_widget_table_matches_the_metrics_api(make_napari_viewer, qtbot):
    from volsr.metrics import axis_spectra, slice_fid

    viewer = make_napari_viewer()
    vol = small_stack((32, 32, 32), seed=3)
    layer = viewer.add_image(vol, name="vol")
    w = ScoreWidget(viewer)
    w.volume.value = layer
    w.reference_layer.value = layer
    w.crop.value = 24
    w.n_crops.value = 40
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None, outcome.error
    table = w.table.value
    assert list(table["index"]) == ["FID XY", "FID XZ", "FID YZ", "SliceFID", "isotropy gap",
                                    "spectral distance XZ-XY", "spectral distance YZ-XY"]
    ref = slice_fid(vol, vol, extractor="lowlevel", crop=24, n_crops=40, seed=0)
    sp = axis_spectra(vol, tile=32, n_tiles=256, seed=0)
    got = [float(row[0]) for row in table["data"]]
    np.testing.assert_allclose(got[:4], [ref.fid_xy, ref.fid_xz, ref.fid_yz, ref.slice_fid], rtol=1e-3)
    np.testing.assert_allclose(got[4], sp.gap, rtol=1e-3)
    assert w._canvas is not None and len(w._canvas.figure.axes[0].lines) == 3  # XY/XZ/YZ spectra plotted


def test_score_reference_folder(make_napari_viewer, qtbot, tmp_path):
    import tifffile
    from volsr_napari._score_widget import REFERENCE_MODES, read_image_folder

    viewer = make_napari_viewer()
    vol = small_stack((24, 24, 24), seed=4)
    layer = viewer.add_image(vol, name="vol")
    w = ScoreWidget(viewer)
    w.volume.value = layer
    w.reference_mode.value = REFERENCE_MODES[2]
    w.reference_folder.value = tmp_path
    start = len(notification_manager.records)
    assert wait_for(qtbot, w.run()).error.startswith(f"folder {tmp_path} holds no images")
    assert len(errors_after(start)) == 1
    for i, plane in enumerate(vol[::4]):
        tifffile.imwrite(tmp_path / f"ref_{i}.tif", plane)
    assert len(read_image_folder(tmp_path)) == 6
    w.crop.value = 24
    w.n_crops.value = 20
    w.spectra.value = False
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None, outcome.error
    assert list(w.table.value["index"]) == ["FID XY", "FID XZ", "FID YZ", "SliceFID"]


def test_sample_restored_with_the_bundled_msdsr_model(make_napari_viewer, qtbot):
    """The two-click path of a new user: open the sample, restore it with the bundled MSDSR model."""
    viewer = make_napari_viewer()
    (sample,) = viewer.open_sample("volsr", "anisotropic_stack")
    w = RestoreWidget(viewer)
    assert w.layer.value is sample and w.z_factor.value == pytest.approx(4.0)
    w.select_engine("model", "msdsr", "sample_model")
    w.sampling_steps.value = 2  # the test checks the plumbing, not the quality
    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None and not outcome.cancelled
    out = viewer.layers[-1]
    assert out.data.shape == (61, 128, 128) and out.data.dtype == sample.data.dtype
    np.testing.assert_allclose(out.scale, [sample.scale[1]] * 3)  # isotropic
    np.testing.assert_array_equal(out.data[::4], sample.data)  # measured planes kept exactly
    between = out.data[1::4].astype(float)
    assert between.std() > 0 and not np.array_equal(out.data[1::4], sample.data[:-1])
    assert out.metadata["volsr"]["engine"] == "msdsr"


def test_screenshot_with_docked_widgets(make_napari_viewer, qtbot, tmp_path):
    """Sample + restoration (XZ view, one above the other) with the three widgets docked.

    Writes docs/napari_screenshot.png when VOLSR_UPDATE_SCREENSHOT=1 (then with the bundled MSDSR
    model if one is installed, its own sampler settings: seconds on a CPU), else a temp file with ``linear``.
    """
    from volsr.checkpoint import list_bundled_models

    update = bool(os.environ.get("VOLSR_UPDATE_SCREENSHOT"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    (sample,) = viewer.open_sample("volsr", "anisotropic_stack")
    viewer.window.add_plugin_dock_widget("volsr", "Train / fit model")
    viewer.window.add_plugin_dock_widget("volsr", "Score (SliceFID, isotropy gap)", tabify=True)
    dock, restore = viewer.window.add_plugin_dock_widget("volsr", "Restore z-stack", tabify=True)
    msdsr = [m["name"] for m in list_bundled_models() if m["engine"] == "msdsr"]
    if update and msdsr:
        restore.select_engine("model", "msdsr", msdsr[0])  # its own sampler settings, as a user gets them
    else:
        restore.select_engine("engine", "linear")
    job = restore.run()
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=600_000)
    assert job.outcome.error is None, job.outcome.error
    dock.raise_()
    grid = viewer.canvas.grid if hasattr(getattr(viewer, "canvas", None), "grid") else viewer.grid  # napari >= 0.9
    grid.enabled = True
    grid.shape = (2, 1)
    viewer.dims.order = (1, 0, 2)  # show Z (rows) x X: where the restoration is visible
    viewer.dims.set_point(1, 64 * sample.scale[1])
    viewer.reset_view()
    qtbot.wait(200)
    img = viewer.screenshot(canvas_only=False, flash=False)
    assert img.ndim == 3 and img.shape[2] == 4 and img[..., :3].std() > 5
    out = ROOT / "docs" / "napari_screenshot.png" if update else tmp_path / "s.png"
    out.parent.mkdir(exist_ok=True)
    from skimage.io import imsave

    imsave(out, img, check_contrast=False)
    assert out.stat().st_size > 10_000


# -- damaged planes --------------------------------------------------------------------------------
def test_damaged_planes_field_and_mark_current_plane_button(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = small_stack()
    original = data.copy()
    viewer.add_image(data, name="stack", scale=(1.5, 0.5, 0.5), translate=(1.0, 0.0, 0.0))
    w = RestoreWidget(viewer)
    w.select_engine("engine", "linear")
    assert w.damaged.value == ""
    viewer.dims.set_point(0, 1.0 + 2 * 1.5)  # world z of data plane 2 (scale and translate honoured)
    assert w.mark_current_plane() == 2 and w.damaged.value == "2"
    w.mark_button.clicked.emit()  # the button: the same plane is not added twice
    assert w.damaged.value == "2"
    viewer.dims.set_point(0, 1.0 + 4 * 1.5)
    w.mark_button.clicked.emit()
    assert w.damaged.value == "2,4"
    assert w.options()["damaged"] == (2, 4)

    outcome = wait_for(qtbot, w.run())
    assert outcome.error is None
    out = viewer.layers[-1]
    assert out.data.shape == (16, 32, 40)
    api = volsr.restore(original, engine="linear", z_factor=3.0, spacing=(1.5, 0.5, 0.5), damaged="2,4")
    np.testing.assert_array_equal(out.data, api.data)
    for i in (0, 1, 3, 5):
        np.testing.assert_array_equal(out.data[3 * i], original[i])
    mid = (original[1].astype(float) + original[3]) / 2  # plane 2 (row 6): between rows 3 and 9
    assert np.abs(out.data[6].astype(float) - mid).max() <= 1.0

    start = len(notification_manager.records)
    w.damaged.value = "5-3"
    assert w.run() is None
    assert any("backwards" in m for m in errors_after(start))
