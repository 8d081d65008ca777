"""*Score*: SliceFID per axis and the spectral isotropy gap of a (restored) volume.

SliceFID (MSDSR paper eq. 10) compares XY, XZ and YZ slices of the volume with a reference
set of high-resolution 2D images — the XY planes of a layer, or a folder of 2D images;
:func:`volsr.metrics.slice_fid` does the work. The isotropy gap needs no reference: it
compares the radial power spectra of XZ/YZ slices with XY (:func:`volsr.metrics.axis_spectra`),
and the spectra can be plotted under the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    SpinBox,
    Table,
)

from volsr.errors import InputError, VolsrError

from ._widgets import (
    DEVICES,
    Job,
    JobWidget,
    Outcome,
    check_image_layer,
    guard_triton_llvm_clash,
    image_layers,
    notify_error,
    z_factor_from_scale,
)

__all__ = ["ScoreWidget", "read_image_folder", "score_volume", "score_rows"]

REFERENCE_MODES = ("none (isotropy gap only)", "XY planes of a layer", "folder of 2D images")


def read_image_folder(folder) -> list[np.ndarray]:
    """All 2D images (TIFF/PNG/JPEG/BMP) in ``folder`` as (C, H, W) float32 arrays, sorted by name."""
    from volsr.training.planes import IMAGE_SUFFIXES, read_image_2d

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"reference folder {path} does not exist; choose a folder of 2D images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); choose a folder of 2D images")
    return [read_image_2d(p) for p in files]


def score_volume(
    volume,
    reference=None,
    *,
    extractor: str = "lowlevel",
    weights=None,
    crop: int = 48,
    n_crops: int = 500,
    spectra: bool = True,
    tile: int | None = 32,
    n_tiles: int = 256,
    seed: int = 0,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> dict:
    """SliceFID against ``reference`` (if given) and axis spectra / isotropy gap (if ``spectra``).

    ``reference`` is a path to a folder of 2D images, or anything
    :func:`volsr.metrics.reference_stats` accepts (e.g. a (Z, Y, X) stack: its XY planes).
    ``tile`` (spectra tile size) falls back to the largest size that fits when the volume is
    smaller than it (``None`` = always that). Returns
    ``{"fid": SliceFIDResult | None, "spectra": AxisSpectra | None}``.
    """
    from volsr.errors import Cancelled
    from volsr.metrics import axis_spectra, slice_fid

    if reference is None and not spectra:
        raise InputError("nothing to score: choose a reference for SliceFID and/or tick 'isotropy gap'")
    stages = int(reference is not None) + int(bool(spectra))
    done = 0
    out = {"fid": None, "spectra": None}
    if reference is not None:
        if isinstance(reference, (str, Path)):
            reference = read_image_folder(reference)
        if progress is not None:
            progress("slicefid", done, stages)
        out["fid"] = slice_fid(volume, reference, extractor=extractor, weights=weights, crop=int(crop),
                               n_crops=int(n_crops), seed=int(seed), device=device)
        done += 1
    if cancel is not None and cancel():
        raise Cancelled("scoring cancelled")
    if spectra:
        if progress is not None:
            progress("spectra", done, stages)
        if tile is not None and min(np.shape(volume)[-3:]) < int(tile):
            tile = None  # axis_spectra then uses the largest even tile that fits every axis
        out["spectra"] = axis_spectra(volume, tile=tile, n_tiles=int(n_tiles), seed=int(seed))
        done += 1
    if progress is not None:
        progress("done", done, stages)
    return out


def score_rows(scores: dict) -> tuple[list[str], list[list[str]]]:
    """Table rows (name, value) for a :func:`score_volume` result."""
    names, values = [], []
    fid = scores.get("fid")
    if fid is not None:
        for name, v in (("FID XY", fid.fid_xy), ("FID XZ", fid.fid_xz), ("FID YZ", fid.fid_yz),
                        ("SliceFID", fid.slice_fid)):
            names.append(name)
            values.append([f"{v:.4g}"])
    sp = scores.get("spectra")
    if sp is not None:
        names += ["isotropy gap", "spectral distance XZ-XY", "spectral distance YZ-XY"]
        values += [[f"{sp.gap:.4g}"], [f"{sp.distance['xz']:.4g}"], [f"{sp.distance['yz']:.4g}"]]
    return names, values


class ScoreWidget(JobWidget, Container):
    """Dock widget: SliceFID per axis + isotropy gap of a volume, with an optional spectra plot."""

    def __init__(self, napari_viewer):
        from volsr.metrics import list_extractors

        guard_triton_llvm_clash()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_scores: dict | None = None
        self._canvas = None

        self.volume = ComboBox(label="volume layer", choices=self._volume_choices, nullable=True,
                               tooltip="the (restored, isotropic) stack to score")
        self.reference_mode = ComboBox(label="reference", choices=list(REFERENCE_MODES), value=REFERENCE_MODES[1])
        self.reference_layer = ComboBox(label="reference layer", choices=self._reference_choices, nullable=True,
                                        tooltip="high-resolution images: its XY planes (or the 2D image) are used")
        self.reference_folder = FileEdit(label="reference folder", mode="d")
        extractors = list_extractors()
        self.features = ComboBox(label="features", choices=extractors,
                                 value="lowlevel" if "lowlevel" in extractors else extractors[0],
                                 tooltip="'inception' = standard FID (needs the Inception weights file); "
                                         "'lowlevel' works offline but is not comparable with published FID")
        self.weights = FileEdit(label="Inception weights", mode="r", filter="*.pth",
                                tooltip="optional: the pt_inception-2015-12-05 .pth file (else searched in the cache)")
        self.crop = SpinBox(label="crop size", value=48, min=8, max=1024)
        self.n_crops = SpinBox(label="crops per axis", value=500, min=2, max=100_000)
        self.spectra = CheckBox(text="isotropy gap (radial spectra)", value=True)
        self.plot = CheckBox(text="plot spectra", value=True)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.score_button = self._job_controls("Score")
        self.table = Table(value={"data": [], "index": [], "columns": ["value"]})
        self.table.min_height = 230  # all seven rows without scrolling
        super().__init__(widgets=[
            self.volume, self.reference_mode, self.reference_layer, self.reference_folder, self.features,
            self.weights, self.crop, self.n_crops, self.spectra, self.plot, self.device, self.score_button,
            self.cancel_button, self.progress, self.status, self.table,
        ])
        self.reference_mode.changed.connect(self._update_visibility)
        self.features.changed.connect(self._update_visibility)
        if napari_viewer is not None:
            events = napari_viewer.layers.events
            for ev in (events.inserted, events.removed, events.reordered):
                ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_visibility()

    # -- choices -----------------------------------------------------------------------------
    def _volume_choices(self, _widget=None):
        return image_layers(self.viewer, ndims=(3,))

    def _reference_choices(self, _widget=None):
        return image_layers(self.viewer, ndims=(2, 3))

    def _refresh_layers(self, event=None):
        self.volume.reset_choices()
        self.reference_layer.reset_choices()
        # sensible defaults: score the newest stack (e.g. a restoration) against the oldest one's XY planes
        volumes = [c for c in self.volume.choices if c is not None]
        references = [c for c in self.reference_layer.choices if c is not None]
        if self.volume.value is None and volumes:
            self.volume.value = volumes[-1]
        if self.reference_layer.value is None and references:
            self.reference_layer.value = references[0]

    def _update_visibility(self, *_):
        mode = self.reference_mode.value
        self.reference_layer.visible = mode == REFERENCE_MODES[1]
        self.reference_folder.visible = mode == REFERENCE_MODES[2]
        fid = mode != REFERENCE_MODES[0]
        for w in (self.features, self.crop, self.n_crops):
            w.visible = fid
        self.weights.visible = fid and self.features.value == "inception"

    # -- running -----------------------------------------------------------------------------
    def options(self) -> dict:
        """:func:`score_volume` keywords for the current form (raises :class:`InputError` on bad input)."""
        volume = check_image_layer(self.volume.value, purpose="scoring")
        mode = self.reference_mode.value
        reference = None
        if mode == REFERENCE_MODES[1]:
            ref_layer = self.reference_layer.value
            if ref_layer is None:
                raise InputError("choose a reference layer (high-resolution images) or another reference mode")
            reference = check_image_layer(ref_layer, purpose="the SliceFID reference", allow_2d=True)
            if reference.ndim == 2:
                reference = reference[None]
        elif mode == REFERENCE_MODES[2]:
            folder = str(self.reference_folder.value or "").strip()
            if folder in ("", "."):
                raise InputError("choose the reference folder of 2D images (or another reference mode)")
            reference = folder
        weights = None
        if reference is not None and self.features.value == "inception":
            w = str(self.weights.value or "").strip()
            weights = w if w not in ("", ".") else None
        return {
            "volume": volume,
            "reference": reference,
            "extractor": self.features.value,
            "weights": weights,
            "crop": int(self.crop.value),
            "n_crops": int(self.n_crops.value),
            "spectra": bool(self.spectra.value),
            "device": self.device.value,
        }

    def run(self, *_) -> Job | None:
        if self.job is not None and self.job.running:
            return None
        try:
            kwargs = self.options()
        except VolsrError as err:
            notify_error(str(err))
            return None
        f = z_factor_from_scale(self.volume.value.scale)
        note = "" if f is None or abs(f - 1.0) < 1e-3 else f" (note: layer z/xy scale is {f:.3g}, not isotropic)"
        self.status.value = "scoring…" + note
        self.progress.value = 0
        return self._start_job(score_volume, kwargs)

    def _on_progress(self, stage: str, done: int, total: int, info: dict) -> None:
        self.progress.max = max(1, total)
        self.progress.value = min(done, total)
        if stage != "done":
            self.status.value = f"computing {stage}…"

    def _on_done(self, outcome: Outcome) -> None:
        self._set_running(False)
        if outcome.cancelled:
            self.status.value = "cancelled"
            return
        if outcome.error is not None:
            self.status.value = "failed"
            notify_error(outcome.error)
            return
        scores = outcome.value
        self.last_scores = scores
        names, values = score_rows(scores)
        self.table.value = {"data": values, "index": names, "columns": ["value"]}
        self.progress.value = self.progress.max
        self.status.value = "done"
        if self.plot.value and scores.get("spectra") is not None:
            self.plot_spectra(scores["spectra"])

    # -- plotting ----------------------------------------------------------------------------
    def plot_spectra(self, spectra) -> None:
        """Draw the mean log radial spectra of XY/XZ/YZ under the table (matplotlib canvas)."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        if self._canvas is None:
            self._canvas = FigureCanvasQTAgg(Figure(figsize=(4, 3), tight_layout=True))
            self._canvas.setMinimumHeight(220)
            self.native.layout().addWidget(self._canvas)
        fig = self._canvas.figure
        fig.clear()
        ax = fig.add_subplot(111)
        for axis, style in (("xy", "-"), ("xz", "--"), ("yz", ":")):
            ax.plot(spectra.frequency, spectra.log_power[axis], style, label=axis.upper())
        ax.set_xlabel("radial frequency (cycles/pixel)")
        ax.set_ylabel("log10 power")
        ax.set_title(f"isotropy gap {spectra.gap:.3g}", fontsize=9)
        ax.legend(fontsize=8)
        self._canvas.draw_idle()
