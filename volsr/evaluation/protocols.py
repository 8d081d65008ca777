"""Evaluation protocols of the MSDSR paper, as tidy tables, plus report files and figures.

* :func:`paired_2d` — paper Table 1: HR 2D crops, keep 24 / 12 / 6 evenly spaced rows of
  48 (2x / 4x / 8x), restore with each engine, FID / SSIM / PSNR against the HR crops.
* :func:`volume_3d` — paper Tables 2-4: from an isotropic HR volume simulate a low-res
  stack by keeping every f-th plane (optionally after an axial blur), restore with each
  engine and plane/fusion variant (``both``, ``xz``, ``yz``, each optionally ``+blur``),
  then per-axis FID, SliceFID, per-axis PSNR/SSIM and the spectral isotropy gap.
* :func:`evaluate` — both on one HR volume (what ``volsr eval`` runs);
  :func:`write_report` — CSV + Markdown tables + PNG figures.
* 2D super-resolution (in-plane upscaling) scores live in :mod:`volsr.evaluation` and are
  re-exported here: :func:`score_2d`, :func:`psnr_y`, :func:`ssim_y`, :func:`spectrum_error_2d`,
  :func:`rps_curves`.

Intensity units: the HR data are percentile-normalised once
(:class:`volsr.normalize.PercentileNormalizer`, 0.1/99.9 per channel) and every
simulated input, restoration and ground truth lives in these units. FID crops are mapped
with the fixed window ``[0, 1]`` (clipped), PSNR/SSIM use ``data_range=1``. A separately
given reference set is normalised the same way with its own percentiles.

Every table is long ("tidy"): one row per number, with columns ``protocol, engine,
variant, factor, metric, axis, rows, value, trained_on``. ``rows`` is ``restored`` (only the
non-measured rows/planes count) or ``all``; ``axis`` is ``xy``/``xz``/``yz``, or ``mean``
for SliceFID and ``-`` where it does not apply. ``trained_on`` says what the engine's
weights saw: ``-`` (no weights), ``given model`` (fitted elsewhere), or the planes it was
fitted on here. The same call with the same arguments
(including ``seed``) gives the same numbers, so every number of ``volsr eval`` can be
re-computed from Python.

Fitting without leakage (``fit=...``): a learned engine given without weights is fitted on
what a user would have, never on the planes it is scored on. 3D protocol: a separate fit per
factor on the XY planes of that factor's simulated low-res stack (planes 0, f, 2f, ...).
Paired 2D protocol: the HR XY planes are split into a training block and a test block with
a gap between them (:func:`holdout_planes`); the test crops come from the test block only.
Every fit starts from the same untrained engine (a copy), so factors do not share weights.

Settings are checked before any work (:func:`check_settings`): a crop that does not fit, a
factor that leaves too few planes, a missing FID weight file or an existing report fail in
seconds, not after the fits.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..engines import create_engine
from ..engines.base import Engine
from ..errors import InputError, OutputError, VolsrError
from ..grid import OutputGrid
from ..metrics.features import FeatureExtractor, LowLevelExtractor, get_extractor
from ..metrics.frechet import frechet_distance, gaussian_stats
from ..metrics.paired import paired_metrics, psnr, ssim_planes
from ..metrics.slicefid import crop_features, reference_stats, slice_fid
from ..metrics.slicing import IntensityWindow, as_czyx, as_image_list, sample_image_crops
from ..metrics.spectra import axis_spectra
from ..normalize import PercentileNormalizer
from ..samples import subsample_z  # the one implementation; re-exported here for compatibility
from .scores_2d import RPSCurves, psnr_y, rps_curves, score_2d, spectrum_error_2d, ssim_y  # the 2D scores

__all__ = [
    "COLUMNS",
    "EvalResult",
    "paired_2d",
    "RPSCurves",
    "psnr_y",
    "rps_curves",
    "score_2d",
    "spectrum_error_2d",
    "ssim_y",
    "volume_3d",
    "evaluate",
    "parse_variant",
    "evenly_spaced_rows",
    "holdout_planes",
    "check_settings",
    "check_extractor",
    "needs_fit",
    "subsample_z",
    "paper_tables",
    "markdown_table",
    "write_report",
    "check_report_destination",
    "training_table",
    "plot_fid_bars",
    "plot_spectra",
    "plot_xz_examples",
]

COLUMNS = ["protocol", "engine", "variant", "factor", "metric", "axis", "rows", "value", "trained_on"]
GROUND_TRUTH = "ground-truth"
ProgressFn = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- helpers
def parse_variant(variant: str, blur_sigma: float = 0.5) -> dict:
    """``'both'|'xz'|'yz'`` with optional ``'+blur'`` -> restore_volume keyword arguments.

    ``both`` restores XZ and YZ planes and averages them (the paper's method); ``xz``/``yz``
    use one direction only (Table 3); ``+blur`` adds the 3D Gaussian post-blur (Table 4,
    sigma ``blur_sigma``, 3x3x3 kernel for 0.5).
    """
    base, _, suffix = str(variant).partition("+")
    if base not in ("both", "xz", "yz") or suffix not in ("", "blur"):
        raise VolsrError(f"variant must be 'both', 'xz' or 'yz', optionally with '+blur'; got {variant!r}")
    return {
        "planes": base,
        "fusion": "mean" if base == "both" else base,
        "blur_sigma": float(blur_sigma) if suffix else None,
    }


def evenly_spaced_rows(size: int, factor: float) -> np.ndarray:
    """Known-row mask of the paired 2D protocol: rows ``round(i * factor)`` that fit in ``size``.

    For ``size=48`` this keeps 24 / 12 / 6 rows at 2x / 4x / 8x, the paper's setting, with
    the same regular stride the volume pipeline sees at inference.

    Examples
    --------
    >>> [int(evenly_spaced_rows(48, f).sum()) for f in (2, 4, 8)]
    [24, 12, 6]
    """
    n_known = int(math.floor((int(size) - 1) / float(factor))) + 1
    if n_known < 2:
        raise VolsrError(f"factor {factor} leaves fewer than 2 rows of a {size} px crop; use a larger crop")
    known = np.zeros(int(size), dtype=bool)
    known[np.round(np.arange(n_known) * float(factor)).astype(int)] = True
    return known


def _check_factors(factors, *, integer: bool) -> list:
    out = []
    for f in factors:
        try:
            v = float(f)
        except (TypeError, ValueError):
            raise VolsrError(f"factors must be numbers >= 2, got {f!r}") from None
        if not (math.isfinite(v) and v >= 2):
            raise VolsrError(f"factors must be >= 2, got {f!r}")
        if integer and v != int(v):
            raise VolsrError(f"the 3D protocol keeps every f-th plane, so factors must be integers; got {f!r}")
        out.append(int(v) if v == int(v) else v)
    if not out:
        raise VolsrError("give at least one factor (e.g. 2 4 8)")
    return out


def _check_2d(image_hw, factors, crop: int) -> None:
    h, w = (int(v) for v in image_hw)
    if int(crop) > min(h, w):
        raise InputError(f"the FID crop {crop} px does not fit the {h}x{w} px XY planes; use --crop <= {min(h, w)}")
    for f in factors:
        evenly_spaced_rows(crop, f)


def _check_3d(czyx_shape, factors, crop: int, spectra_tile) -> None:
    _, z, y, x = (int(v) for v in czyx_shape)
    if int(crop) > min(y, x):
        raise InputError(f"the FID crop {crop} px does not fit the {y}x{x} px XY planes; use --crop <= {min(y, x)}")
    for f in factors:
        z_lr = -(-z // f)
        if z_lr < 2:
            raise InputError(f"factor {f} leaves fewer than 2 planes of the {z}-plane volume")
        n_out = (z_lr - 1) * f + 1
        if n_out < crop:
            raise InputError(
                f"at factor {f} the restored volume has {n_out} z planes, fewer than the FID crop "
                f"{crop}; use a smaller crop (e.g. --crop {n_out - n_out % 8 or n_out}) or a deeper volume"
            )
        if spectra_tile is not None and not 8 <= int(spectra_tile) <= min(n_out, y, x):
            raise InputError(
                f"the spectra tile {spectra_tile} px must be >= 8 and fit the {n_out} z planes restored at "
                f"factor {f} and the {y}x{x} px XY planes"
            )


def check_settings(
    hr_shape,
    factors=(2, 4, 8),
    *,
    protocols=("2d", "3d"),
    variants=("both",),
    blur_sigma: float = 0.5,
    crop: int = 48,
    spectra_tile: int | None = 32,
    reference=None,
    engines=(),
    fit: dict | None = None,
) -> None:
    """Check every setting that can be checked from the inputs, before any fit or restoration.

    Parameters
    ----------
    hr_shape : (Z, Y, X) or (C, Z, Y, X)
        Shape of the isotropic HR volume.
    factors, protocols, variants, blur_sigma, crop, spectra_tile
        As for :func:`evaluate`.
    reference : list of (C, H, W) images, optional
        The FID reference set (the crop must fit every image; channels must match).
    engines : Engine objects
        Checked for a fit that would be needed (``fit`` given: a budget; 2D: a train/test split).
    fit : dict, optional
        Keyword arguments of ``Engine.fit`` (``steps``, ``minutes``, ``seed``, ...).

    Raises
    ------
    VolsrError
        Naming the setting and a fix. The feature extractor (FID weights) and the output
        folder are checked by :func:`evaluate` and :func:`check_report_destination`.
    """
    shape = tuple(int(v) for v in hr_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise InputError(f"the HR volume must be (Z, Y, X) or (C, Z, Y, X), got shape {tuple(hr_shape)}")
    protocols = list(protocols)
    bad = [p for p in protocols if p not in ("2d", "3d")]
    if bad or not protocols:
        raise VolsrError(f"protocols must be a non-empty subset of ('2d', '3d'), got {protocols}")
    crop = int(crop)
    if crop < 8:
        raise VolsrError(f"the FID crop must be >= 8 px, got {crop}")
    fs = _check_factors(factors, integer="3d" in protocols)
    if "2d" in protocols:
        _check_2d(shape[2:], fs, crop)
    if "3d" in protocols:
        for v in variants:
            parse_variant(v, blur_sigma)
        _check_3d(shape, fs, crop, spectra_tile)
    if reference is not None:
        for i, im in enumerate(reference):
            if im.shape[0] != shape[0]:
                raise InputError(f"the HR volume has {shape[0]} channel(s) but the reference images have {im.shape[0]}")
            if crop > min(im.shape[1:]):
                raise InputError(
                    f"the FID crop {crop} px does not fit reference image {i} ({im.shape[1]}x{im.shape[2]} px); "
                    f"use --crop <= {min(im.shape[1:])} or larger reference images"
                )
    if fit is not None and any(needs_fit(e) for e in engines):
        steps, minutes = fit.get("steps"), fit.get("minutes")
        if steps is None and minutes is None:
            raise VolsrError("a fit needs a budget: give fit={'steps': N} or {'minutes': M} (--fit-steps/--fit-minutes)")
        if (steps is not None and int(steps) <= 0) or (minutes is not None and not float(minutes) > 0):
            raise VolsrError(f"the fit budget must be positive, got steps={steps}, minutes={minutes}")
        if "2d" in protocols:
            holdout_planes(shape[1])


def _engines(engines, device) -> list[Engine]:
    if isinstance(engines, (str, Engine)):
        engines = [engines]
    out = [create_engine(e, device=device) if isinstance(e, str) else e for e in engines]
    if not out:
        raise VolsrError("give at least one engine (e.g. nearest linear cubic)")
    for e in out:
        if not isinstance(e, Engine):
            raise VolsrError(f"engines must be names or Engine objects, got {e!r}")
    return out


def _extractor(features, extractor, n_channels, device, weights, crop: int | None = None) -> FeatureExtractor:
    ex = extractor if extractor is not None else get_extractor(
        features, device=device, weights=weights, n_channels=3 if n_channels == 3 else 1)
    if crop is not None:
        check_extractor(ex, crop)
    return ex


def check_extractor(extractor: FeatureExtractor, crop: int) -> None:
    """Refuse a FID crop smaller than the feature extractor can take (before any work)."""
    if isinstance(extractor, LowLevelExtractor) and int(crop) < extractor.min_size:
        raise VolsrError(
            f"lowlevel features need crops of at least {extractor.min_size} px per side, got --crop {crop}; "
            "use a larger --crop"
        )


def needs_fit(eng: Engine) -> bool:
    """A learned engine without weights must be fitted before it can be scored."""
    return eng.capabilities.learned and not eng.trained


def _sampling_kwargs(eng: Engine, sampling_steps: int | None) -> dict:
    """``sampling_steps`` for diffusion engines only (the others have no sampler to shorten)."""
    return {"sampling_steps": int(sampling_steps)} if sampling_steps is not None and "sampling_steps" in eng.capabilities.options else {}


def _trained_on(eng: Engine) -> str:
    return "given model" if eng.capabilities.learned else "-"


def _fitted(eng: Engine, data, fit: dict | None, label: str) -> tuple[Engine, str]:
    """``(engine to score, what trained it)``: an unfitted learned engine is fitted on ``data``
    as a copy (the original stays unfitted, so the next factor starts from the same weights)."""
    if fit is None or not needs_fit(eng):
        return eng, _trained_on(eng)
    fitted = copy.deepcopy(eng)
    fitted.fit(data, **fit)
    return fitted, label


def _plane_list(idx) -> str:
    idx = [int(i) for i in idx]
    if len(idx) > 4 and all(b - a == idx[1] - idx[0] for a, b in zip(idx, idx[1:])):
        return f"{idx[0]}, {idx[1]}, ..., {idx[-1]}"
    return ", ".join(map(str, idx))


def holdout_planes(n_planes: int, *, test_fraction: float = 0.5, gap: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` z indices for the paired 2D protocol when engines are fitted here.

    The test block is the last ``round(test_fraction * n_planes)`` XY planes; the training
    block is the planes before it, minus ``gap`` planes next to the test block (neighbouring
    planes of an isotropic volume are nearly the same image, so a memorising engine would
    otherwise still see its test images).

    Examples
    --------
    >>> tr, te = holdout_planes(40)
    >>> (tr[0], tr[-1], te[0], te[-1])
    (0, 17, 20, 39)
    """
    n = int(n_planes)
    n_test = int(round(float(test_fraction) * n))
    n_train = n - n_test - int(gap)
    if n_test < 1 or n_train < 1:
        raise InputError(
            f"a volume of {n} XY planes cannot be split into training and test planes (test fraction "
            f"{test_fraction:g}, gap {gap}); use a deeper volume or give trained models (name=model.volsr)"
        )
    return np.arange(n_train), np.arange(n - n_test, n)


def _row(protocol, engine, variant, factor, metric, axis, rows, value, trained_on="-") -> dict:
    return dict(zip(COLUMNS, (protocol, engine, variant, factor, metric, axis, rows, float(value), trained_on)))


def _normalise_images(images: list[np.ndarray], pmin: float, pmax: float) -> list[np.ndarray]:
    c = images[0].shape[0]
    norm = PercentileNormalizer(pmin, pmax).fit(np.concatenate([im.reshape(c, -1) for im in images], axis=1))
    return [norm.forward(im) for im in images]


@dataclass
class EvalResult:
    """What the protocols return.

    Attributes
    ----------
    table : DataFrame
        Long table (see module docstring).
    spectra : DataFrame
        Mean log10 radial spectra: ``engine, variant, factor, axis, frequency, log_power``.
    examples : dict
        ``(engine, variant, factor) -> 2D XZ slice`` (middle y, first channel), for figures.
    meta : dict
        Settings that produced the numbers (features, crop, seed, ...).
    """

    table: pd.DataFrame
    spectra: pd.DataFrame = field(default_factory=lambda: pd.DataFrame())
    examples: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- paired 2D
def paired_2d(
    images,
    engines=("nearest", "linear", "cubic"),
    factors=(2, 4, 8),
    *,
    crop: int = 48,
    n_crops: int = 1000,
    features: str = "lowlevel",
    extractor: FeatureExtractor | None = None,
    inception_weights=None,
    seed: int = 0,
    data_range: float = 1.0,
    device: str = "cpu",
    batch_size: int = 256,
    pmin: float = 0.1,
    pmax: float = 99.9,
    sampling_steps: int | None = None,
    fit: dict | None = None,
    fit_images=None,
    fit_label: str = "the given fit_images",
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Paper Table 1: restore HR 2D crops from evenly spaced rows; FID, SSIM, PSNR.

    Parameters
    ----------
    images : (N, C, H, W) / (N, H, W) array or list of (H, W) / (C, H, W) arrays
        High-resolution 2D images (e.g. XY planes). Normalised together with
        PercentileNormalizer(pmin, pmax); ``n_crops`` random ``crop x crop`` crops (seeded).
    engines : names or Engine objects
    factors : numbers >= 2
        Factor f keeps rows ``round(i * f)`` for ``i = 0 .. floor((crop - 1) / f)`` —
        24 / 12 / 6 rows of 48 for 2x / 4x / 8x, as in the paper. Rows below the last kept
        row (1 / 3 / 7 of 48) are extrapolated by the engine, as at the end of a stack.
    features, extractor, inception_weights
        Feature extractor for FID (``extractor`` overrides the name).
    data_range : float
        For PSNR/SSIM, in normalised units (1.0 = the percentile window).
    sampling_steps : int, optional
        Denoising steps for diffusion engines (default: each model's own).
    fit : dict, optional
        ``Engine.fit`` keyword arguments (``steps``/``minutes``/``seed``): learned engines
        without weights are fitted (one copy, once) on ``fit_images``, which must be images
        held apart from ``images`` (e.g. :func:`holdout_planes`). None: engines as given.
    fit_images : 2D image set, optional
        Training images for ``fit`` (normalised with their own percentiles).
    fit_label : str
        What ``fit_images`` are, for the ``trained_on`` column.

    Returns
    -------
    DataFrame (long, see module docstring): metrics ``fid`` (rows ``all``), ``ssim`` and
    ``psnr`` (rows ``restored`` and ``all``), axis ``xy``, protocol ``2d``.
    """
    imgs = _normalise_images(as_image_list(images, "images"), pmin, pmax)
    factors = _check_factors(factors, integer=False)
    for im in imgs:
        _check_2d(im.shape[1:], factors, crop)
    engs = _engines(engines, device)
    if fit is not None and any(needs_fit(e) for e in engs):
        if fit_images is None:
            raise VolsrError("fitting for the paired 2D protocol needs fit_images held apart from the test images")
        train = _normalise_images(as_image_list(fit_images, "fit_images"), pmin, pmax)
        train_stack = np.stack(train, axis=1)  # (C, N, H, W): the training planes as a stack
        engs_labels = [_fitted(e, train_stack, fit, fit_label) for e in engs]
    else:
        engs_labels = [(e, _trained_on(e)) for e in engs]
    c = imgs[0].shape[0]
    ex = _extractor(features, extractor, c, device, inception_weights, crop)
    window = IntensityWindow.fixed(0.0, 1.0, c)
    hr = sample_image_crops(imgs, crop, n_crops, np.random.default_rng([seed, 100]))
    mu_hr, sigma_hr = gaussian_stats(crop_features(hr, ex, window))
    rows = []
    total, done = len(engs) * len(factors), 0
    for f in factors:
        known = evenly_spaced_rows(crop, f)
        masked = hr * known[None, None, :, None]
        for eng, trained_on in engs_labels:
            out = np.empty_like(hr)
            kt = torch.from_numpy(known)
            for i in range(0, len(hr), batch_size):
                planes = torch.from_numpy(masked[i : i + batch_size]).to(eng.device)
                with torch.no_grad():
                    out[i : i + batch_size] = eng.restore(
                        planes, kt.to(eng.device), **_sampling_kwargs(eng, sampling_steps)).float().cpu().numpy()
            mu, sigma = gaussian_stats(crop_features(out, ex, window))
            rows.append(_row("2d", eng.name, "-", f, "fid", "xy", "all", frechet_distance(mu_hr, sigma_hr, mu, sigma),
                             trained_on))
            for rname, rmask in (("restored", ~known), ("all", None)):
                vox = None if rmask is None else rmask[None, None, :, None]
                rows.append(_row("2d", eng.name, "-", f, "ssim", "xy", rname,
                                 ssim_planes(out, hr, data_range=data_range, row_mask=rmask), trained_on))
                rows.append(_row("2d", eng.name, "-", f, "psnr", "xy", rname,
                                 psnr(out, hr, data_range=data_range, mask=vox), trained_on))
            done += 1
            if progress is not None:
                progress("2d", done, total)
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- 3D
def _prepare_3d(hr, axial_sigma, reference, ref_given, pmin, pmax, features, extractor, device,
                inception_weights, crop, n_crops, seed):
    """Normalised HR volume, the (optionally z-blurred) source of the low-res stacks, the FID reference."""
    c = hr.shape[0]
    norm = PercentileNormalizer(pmin, pmax).fit(hr)
    hrn = norm.forward(hr)
    src = hrn
    if axial_sigma:
        from scipy.ndimage import gaussian_filter1d

        if not (axial_sigma > 0 and math.isfinite(axial_sigma)):
            raise VolsrError(f"axial_sigma must be a positive number, got {axial_sigma!r}")
        src = gaussian_filter1d(hrn, float(axial_sigma), axis=1, mode="reflect").astype(np.float32)
    if reference is None:
        ref_images = list(np.moveaxis(hrn, 1, 0))
    else:
        ref_images = _normalise_images(ref_given, pmin, pmax)
    ex = _extractor(features, extractor, c, device, inception_weights, crop)
    ref = reference_stats(ref_images, extractor=ex, crop=crop, n_crops=n_crops, seed=seed, intensity=(0.0, 1.0))
    return hrn, src, ref_images, ex, ref


class _Scores3D:
    """Accumulates the 3D protocol's rows, spectra and example slices for one run."""

    def __init__(self, ref, fid_kw, sp_kw, data_range):
        self.ref, self.fid_kw, self.sp_kw, self.data_range = ref, fid_kw, sp_kw, data_range
        self.rows, self.spec_rows, self.examples = [], [], {}

    def score(self, name, variant, f, vol, truth=None, known=None, measured=None, trained_on="-"):
        rows, spec_rows, examples = self.rows, self.spec_rows, self.examples
        ref, fid_kw, sp_kw, data_range = self.ref, self.fid_kw, self.sp_kw, self.data_range
        r = slice_fid(vol, ref, **fid_kw)
        for axis, val in (("xy", r.fid_xy), ("xz", r.fid_xz), ("yz", r.fid_yz)):
            rows.append(_row("3d", name, variant, f, "fid", axis, "all", val, trained_on))
        rows.append(_row("3d", name, variant, f, "slice_fid", "mean", "all", r.slice_fid, trained_on))
        if truth is not None:
            for m in paired_metrics(vol, truth, known, data_range=data_range):
                rows.append(_row("3d", name, variant, f, "psnr", m["axis"], m["rows"], m["psnr"], trained_on))
                rows.append(_row("3d", name, variant, f, "ssim", m["axis"], m["rows"], m["ssim"], trained_on))
        sp = axis_spectra(vol, measured_planes=measured, **sp_kw)  # XY reference: the measured planes
        rows.append(_row("3d", name, variant, f, "isotropy_gap", "-", "all", sp.gap, trained_on))
        for d in sp.to_rows():
            spec_rows.append({"engine": name, "variant": variant, "factor": f, **d})
        examples[(name, variant, f)] = np.asarray(vol[0, :, vol.shape[2] // 2, :], dtype=np.float32).copy()



def _tick(count) -> None:
    count[0] += 1
    if count[2] is not None:
        count[2]("3d", count[0], count[1])


def _score_factor(f, src, hrn, n_hr, engs, variants, blur_sigma, batch_size, sampling_steps, fit,
                  include_ground_truth, score, count) -> None:
    """One factor of the 3D protocol: simulate the low-res stack, fit (no leakage), restore, score."""
    from ..pipeline.volume import restore_volume

    lr = subsample_z(src, f)
    grid = OutputGrid(lr.shape[1], f)
    truth = hrn[:, : grid.n_out]
    if include_ground_truth:
        score(GROUND_TRUTH, "-", f, truth, measured=grid.positions)
        _tick(count)
    label = f"XY planes {_plane_list(range(0, n_hr, f))} ({lr.shape[1]} planes) of the simulated {f}x stack"
    for eng0 in engs:
        eng, trained_on = _fitted(eng0, lr, fit, label)  # per factor: only the planes a user would have
        for v in variants:
            kw = parse_variant(v, blur_sigma)
            out = restore_volume(lr, grid, eng, batch_size=batch_size, **kw,
                                 **_sampling_kwargs(eng, sampling_steps)).data
            score(eng.name, v, f, out, truth, grid.known_mask, measured=grid.positions, trained_on=trained_on)
            _tick(count)


def volume_3d(
    hr_volume,
    engines=("nearest", "linear", "cubic"),
    factors=(2, 4, 8),
    *,
    variants=("both",),
    blur_sigma: float = 0.5,
    axial_sigma: float | None = None,
    reference=None,
    features: str = "lowlevel",
    extractor: FeatureExtractor | None = None,
    inception_weights=None,
    crop: int = 48,
    n_crops: int = 1000,
    spectra_tile: int = 32,
    n_tiles: int = 256,
    seed: int = 0,
    data_range: float = 1.0,
    device: str = "cpu",
    batch_size: int | None = None,
    sampling_steps: int | None = None,
    include_ground_truth: bool = True,
    pmin: float = 0.1,
    pmax: float = 99.9,
    fit: dict | None = None,
    progress: ProgressFn | None = None,
) -> EvalResult:
    """Paper Tables 2-4: simulate a low-res stack, restore, score every axis.

    Parameters
    ----------
    hr_volume : array (Z, Y, X) or (C, Z, Y, X)
        Isotropic high-resolution volume (z spacing = xy spacing).
    engines : names or Engine objects
    factors : integers >= 2
        Factor f keeps planes 0, f, 2f, ... (``Z_lr = ceil(Z / f)``); the restoration has
        ``(Z_lr - 1) * f + 1`` planes and is compared with the first that many HR planes.
    variants : iterable of str
        ``both`` (XZ + YZ averaged, the paper's method), ``xz``, ``yz``; append ``+blur``
        for the 3D post-blur with ``blur_sigma`` (paper: 3x3x3, sigma 0.5).
    axial_sigma : float, optional
        Gaussian blur (in HR planes) along z before subsampling, to mimic a thick optical
        section; None keeps plain subsampling.
    reference : 2D image set, optional
        Reference for FID; default: the XY planes of the HR volume itself.
    features, extractor, inception_weights, crop, n_crops
        FID settings (see :mod:`volsr.metrics.slicefid`); ``crop`` must fit the restored
        z extent.
    spectra_tile, n_tiles
        Isotropy gap settings (see :mod:`volsr.metrics.spectra`). The gap's XY reference is
        the measured planes of each factor (planes 0, f, 2f, ... of the output), never the
        engine's generated planes; the ground truth is scored against the same planes.
    sampling_steps : int, optional
        Denoising steps for diffusion engines (default: each model's own).
    include_ground_truth : bool
        Also score the HR volume itself (engine ``ground-truth``, per factor on the same
        planes), the floor every engine is measured against.
    fit : dict, optional
        ``Engine.fit`` keyword arguments (``steps``/``minutes``/``seed``): learned engines
        without weights are fitted per factor, each time from the same untrained copy, on
        the XY planes of that factor's simulated low-res stack only (what a user has).
        None: engines are used as given.

    Returns
    -------
    EvalResult
        ``table`` with protocol ``3d``: metrics ``fid`` (axes xy/xz/yz), ``slice_fid``
        (axis ``mean``), ``psnr`` and ``ssim`` (per axis, rows ``restored`` and ``all``),
        ``isotropy_gap`` (axis ``-``).
    """

    hr = as_czyx(hr_volume, "hr_volume")
    factors = _check_factors(factors, integer=True)
    variants = list(variants)
    engs = _engines(engines, device)
    ref_given = None if reference is None else as_image_list(reference)
    check_settings(hr.shape, factors, protocols=("3d",), variants=variants, blur_sigma=blur_sigma, crop=crop,
                   spectra_tile=spectra_tile, reference=ref_given, engines=engs, fit=fit)
    hrn, src, ref_images, ex, ref = _prepare_3d(hr, axial_sigma, reference, ref_given, pmin, pmax, features,
                                                extractor, device, inception_weights, crop, n_crops, seed)
    fid_kw = dict(n_crops=n_crops, seed=seed)
    sp_kw = dict(tile=spectra_tile, n_tiles=n_tiles, seed=seed)

    sc = _Scores3D(ref, fid_kw, sp_kw, data_range)
    score, rows, spec_rows, examples = sc.score, sc.rows, sc.spec_rows, sc.examples

    total = len(factors) * (len(engs) * len(variants) + int(include_ground_truth))
    count = [0, total, progress]
    for f in factors:
        _score_factor(f, src, hrn, hr.shape[1], engs, variants, blur_sigma, batch_size, sampling_steps, fit,
                      include_ground_truth, score, count)
    meta = {
        "features": ex.describe(), "crop": int(crop), "n_crops": int(n_crops), "seed": int(seed),
        "data_range": float(data_range), "axial_sigma": axial_sigma, "blur_sigma": float(blur_sigma),
        "spectra_tile": spectra_tile, "n_tiles": n_tiles, "hr_shape": list(hr.shape),
        "reference": "XY planes of the HR volume" if reference is None else f"{len(ref_images)} given images",
        "isotropy_reference": "XY tiles from the measured planes of each factor (ground truth: the same planes)",
    }
    return EvalResult(pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(spec_rows), examples, meta)


def evaluate(
    hr_volume,
    engines=("nearest", "linear", "cubic"),
    factors=(2, 4, 8),
    *,
    protocols=("2d", "3d"),
    variants=("both",),
    features: str = "lowlevel",
    inception_weights=None,
    crop: int = 48,
    n_crops: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    sampling_steps: int | None = None,
    fit: dict | None = None,
    progress: ProgressFn | None = None,
    **kwargs,
) -> EvalResult:
    """Both protocols on one isotropic HR volume (what ``volsr eval`` runs).

    The paired 2D protocol uses the XY planes of ``hr_volume`` as its HR images; the 3D
    protocol simulates low-res stacks from it. Extra keyword arguments go to
    :func:`volume_3d`. Returns one :class:`EvalResult` whose table holds both protocols.

    Every setting is checked (:func:`check_settings`, then the feature extractor) before
    any fit or restoration. With ``fit`` (``Engine.fit`` keyword arguments), learned engines
    given without weights are fitted without leakage (see the module docstring): per factor
    on the simulated low-res stack for 3D; for 2D on the training block of
    :func:`holdout_planes`, and then *every* engine's 2D test crops come from the test
    block only (``meta['paired_2d_test_planes']``).
    """
    protocols = list(protocols)
    hr = as_czyx(hr_volume, "hr_volume")
    engs = _engines(engines, device)
    reference = kwargs.get("reference")
    ref_images = None if reference is None else as_image_list(reference)
    check_settings(hr.shape, factors, protocols=protocols, variants=variants, blur_sigma=kwargs.get("blur_sigma", 0.5),
                   crop=crop, spectra_tile=kwargs.get("spectra_tile", 32), reference=ref_images, engines=engs, fit=fit)
    ex = _extractor(features, None, hr.shape[0], device, inception_weights, crop)
    tables, result = [], EvalResult(pd.DataFrame(columns=COLUMNS))
    meta2d = {}
    if "2d" in protocols:
        planes = np.moveaxis(hr, 1, 0)
        fit_kw = {}
        if fit is not None and any(needs_fit(e) for e in engs):
            train, test = holdout_planes(hr.shape[1])
            fit_kw = dict(fit=fit, fit_images=planes[train],
                          fit_label=f"HR XY planes {train[0]}-{train[-1]} ({len(train)} planes; "
                                    f"2D test planes {test[0]}-{test[-1]})")
            planes = planes[test]
            meta2d["paired_2d_test_planes"] = f"{test[0]}-{test[-1]} (training planes {train[0]}-{train[-1]})"
        else:
            meta2d["paired_2d_test_planes"] = f"all ({hr.shape[1]})"
        tables.append(paired_2d(planes, engs, factors, crop=crop, n_crops=n_crops,
                                extractor=ex, seed=seed, device=device, sampling_steps=sampling_steps,
                                progress=progress, **fit_kw))
    if "3d" in protocols:
        result = volume_3d(hr, engs, factors, variants=variants, extractor=ex, crop=crop, n_crops=n_crops,
                           seed=seed, device=device, sampling_steps=sampling_steps, fit=fit, progress=progress,
                           **kwargs)
        tables.append(result.table)
    result.table = pd.concat(tables, ignore_index=True)
    result.meta = {**result.meta, "features": ex.describe(), "crop": int(crop), "n_crops": int(n_crops),
                   "seed": int(seed), "protocols": protocols, **meta2d}
    return result


# ----------------------------------------------------------------------------- tables
def _label(df: pd.DataFrame) -> pd.Series:
    return df["engine"] + np.where(df["variant"].isin(["-", "both"]), "", " (" + df["variant"] + ")")


def paper_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Wide, paper-style views of a long table (rows: method, columns: factor x metric).

    Keys present when the data is: ``paired_2d`` (FID, SSIM, PSNR on restored rows),
    ``fid_3d`` (XY, YZ, XZ, SliceFID; Tables 2-4), ``paired_3d`` (PSNR and XY/XZ/YZ SSIM on
    restored planes), ``isotropy_3d`` (isotropy gap).
    """
    out = {}
    t = table.copy()
    t["method"] = _label(t)

    def wide(sel, key_cols, order):
        sub = t[sel].copy()
        sub["col"] = sub[key_cols].astype(str).agg(" ".join, axis=1) if len(key_cols) > 1 else sub[key_cols[0]]
        w = sub.pivot_table(index="method", columns=["factor", "col"], values="value", aggfunc="first", sort=False)
        cols = [(f, c) for f in sorted(sub["factor"].unique()) for c in order if (f, c) in w.columns]
        w = w[cols]
        w.columns = [f"{f}x {c}" for f, c in cols]
        return w

    d2 = t["protocol"] == "2d"
    if d2.any():
        sel = d2 & (((t["metric"] == "fid")) | (t["rows"] == "restored"))
        out["paired_2d"] = wide(sel, ["metric"], ["fid", "ssim", "psnr"]).rename(
            columns=lambda s: s.replace("fid", "FID").replace("ssim", "SSIM").replace("psnr", "PSNR"))
    d3 = t["protocol"] == "3d"
    if d3.any():
        sel = d3 & t["metric"].isin(["fid", "slice_fid"])
        sub = t[sel].copy()
        sub["metric"] = np.where(sub["metric"] == "slice_fid", "SliceFID", sub["axis"].str.upper())
        t.loc[sel, "metric2"] = sub["metric"]
        out["fid_3d"] = wide(sel, ["metric2"], ["XY", "YZ", "XZ", "SliceFID"])
        sel = d3 & t["metric"].isin(["psnr", "ssim"]) & (t["rows"] == "restored")
        if sel.any():
            t.loc[sel, "metric3"] = np.where(t.loc[sel, "metric"] == "psnr", "PSNR " + t.loc[sel, "axis"].str.upper(),
                                             "SSIM " + t.loc[sel, "axis"].str.upper())
            w = wide(sel, ["metric3"], ["PSNR XY", "SSIM XY", "SSIM YZ", "SSIM XZ"])
            out["paired_3d"] = w.rename(columns=lambda s: s.replace("PSNR XY", "PSNR"))
        sel = d3 & (t["metric"] == "isotropy_gap")
        t.loc[sel, "metric4"] = "gap"
        out["isotropy_3d"] = wide(sel, ["metric4"], ["gap"])
    return out


def markdown_table(df: pd.DataFrame, *, digits: int = 3, index_name: str = "method") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "inf" if v > 0 else ("-inf" if v < 0 else "")
            return f"{v:.{digits}f}"
        return str(v)

    header = [index_name] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.tolist()]) + " |")
    return "\n".join(lines) + "\n"


_TITLES = {
    "paired_2d": "Paired 2D (paper Table 1): FID of all rows; SSIM and PSNR (dB) on restored rows only",
    "fid_3d": "3D FID per axis and SliceFID (paper Tables 2-4)",
    "paired_3d": "3D paired metrics on restored planes only: PSNR (dB, same for every axis) and SSIM per axis",
    "isotropy_3d": "Spectral isotropy gap (decades of power; 0 = isotropic)",
}


# ----------------------------------------------------------------------------- figures
def _subplots(nrows: int, ncols: int, figsize) -> tuple:
    """A figure without pyplot: no backend switch, so notebooks keep their inline figures."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise VolsrError("figures need matplotlib: pip install 'volsr[metrics]'") from None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _rc_colors() -> list:
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_fid_bars(table: pd.DataFrame, path) -> Path:
    """Per-axis FID (XY, XZ, YZ) and SliceFID per method, one panel per factor."""
    t = table[(table["protocol"] == "3d") & table["metric"].isin(["fid", "slice_fid"])].copy()
    if t.empty:
        raise VolsrError("no 3D FID rows to plot")
    t["method"] = _label(t)
    t["what"] = np.where(t["metric"] == "slice_fid", "SliceFID", t["axis"].str.upper())
    factors = sorted(t["factor"].unique())
    methods = list(dict.fromkeys(t["method"]))
    whats = ["XY", "XZ", "YZ", "SliceFID"]
    fig, axes = _subplots(1, len(factors), figsize=(4.5 * len(factors), 3.6))
    width = 0.8 / len(methods)
    for ax, f in zip(axes[0], factors):
        for i, m in enumerate(methods):
            vals = [t[(t["factor"] == f) & (t["method"] == m) & (t["what"] == w)]["value"].mean() for w in whats]
            ax.bar(np.arange(len(whats)) + i * width - 0.4 + width / 2, vals, width, label=m)
        ax.set_xticks(np.arange(len(whats)), whats)
        ax.set_title(f"{f}x")
        ax.set_ylabel("FID")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_spectra(spectra: pd.DataFrame, path) -> Path:
    """Mean log radial spectra: one panel per factor, XY solid, XZ dashed, YZ dotted."""
    if spectra.empty:
        raise VolsrError("no spectra to plot")
    s = spectra.copy()
    s["method"] = _label(s)
    factors = sorted(s["factor"].unique())
    methods = list(dict.fromkeys(s["method"]))
    styles = {"xy": "-", "xz": "--", "yz": ":"}
    fig, axes = _subplots(1, len(factors), figsize=(4.5 * len(factors), 3.6))
    colors = _rc_colors()
    for ax, f in zip(axes[0], factors):
        for i, m in enumerate(methods):
            for axis, ls in styles.items():
                d = s[(s["factor"] == f) & (s["method"] == m) & (s["axis"] == axis)]
                ax.plot(d["frequency"], d["log_power"], ls, color=colors[i % len(colors)],
                        label=m if axis == "xy" else None, lw=1)
        ax.set_title(f"{f}x   (solid XY, dashed XZ, dotted YZ)", fontsize=9)
        ax.set_xlabel("radial frequency (cycles/px)")
        ax.set_ylabel("mean log10 power")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_xz_examples(examples: dict, path) -> Path:
    """The middle XZ slice (z rows) of every method side by side, one row per factor."""
    if not examples:
        raise VolsrError("no example slices to plot")
    factors = sorted({k[2] for k in examples})
    methods = list(dict.fromkeys((k[0], k[1]) for k in examples))
    fig, axes = _subplots(len(factors), len(methods), figsize=(2.6 * len(methods), 1.9 * len(factors) + 0.4))
    for r, f in enumerate(factors):
        for c, (name, variant) in enumerate(methods):
            ax = axes[r, c]
            img = examples.get((name, variant, f))
            if img is not None:
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
            title = name if variant in ("-", "both") else f"{name} ({variant})"
            ax.set_title(f"{title}, {f}x", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("z")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def training_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per learned model and protocol/factor: what its weights were trained on."""
    if "trained_on" not in table.columns:
        return pd.DataFrame()
    t = table[table["trained_on"] != "-"]
    t = t[["engine", "protocol", "factor", "trained_on"]].drop_duplicates()
    return t.set_index("engine")


def check_report_destination(out_dir, *, has_3d: bool = True, overwrite: bool = False,
                             figures: bool = True) -> dict[str, Path]:
    """The report files :func:`write_report` would write; refuse before any work when they cannot be.

    Raises :class:`volsr.errors.OutputError` when ``out_dir`` is a file or a report file
    exists (without ``overwrite``), :class:`volsr.errors.VolsrError` when figures are asked
    for without matplotlib.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot create or write the report folder {out}: {parent} is not writable")
    paths = {"results": out / "results.csv", "tables": out / "tables.md"}
    if has_3d:
        paths["spectra"] = out / "spectra.csv"
        if figures:
            paths.update(fid_bars=out / "fid_per_axis.png", spectra_png=out / "radial_spectra.png",
                         xz_examples=out / "xz_examples.png")
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{', '.join(existing)} exist(s); pass --overwrite or choose another --out folder")
    if has_3d and figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise VolsrError("figures need matplotlib: pip install 'volsr[metrics]' (or pass --no-figures)") from None
    return paths


def write_report(result: EvalResult, out_dir, *, overwrite: bool = False, figures: bool = True) -> dict[str, Path]:
    """Write ``results.csv`` (long table), ``spectra.csv``, ``tables.md`` and PNG figures.

    ``tables.md`` ends with what trained each learned model (the ``trained_on`` column).

    Returns the written paths by name. Refuses to overwrite existing files unless
    ``overwrite``.
    """
    has3d = not result.spectra.empty
    paths = check_report_destination(out_dir, has_3d=has3d, overwrite=overwrite, figures=figures)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    result.table.to_csv(paths["results"], index=False)
    md = ["# volsr evaluation\n"]
    meta = ", ".join(f"{k}={v}" for k, v in result.meta.items())
    md.append(f"Settings: {meta}\n")
    feats = result.meta.get("features", {})
    if isinstance(feats, dict) and not feats.get("comparable_to_published", False):
        md.append(f"FID uses '{feats.get('features')}' features: NOT comparable with published FID values.\n")
    for key, df in paper_tables(result.table).items():
        md.append(f"\n## {_TITLES[key]}\n\n")
        md.append(markdown_table(df, digits=2 if key in ("fid_3d",) else 3))
    trained = training_table(result.table)
    if not trained.empty:
        md.append("\n## What trained each learned model\n\n")
        md.append(markdown_table(trained, index_name="engine"))
    paths["tables"].write_text("".join(md))
    if has3d:
        result.spectra.to_csv(paths["spectra"], index=False)
        if figures:
            plot_fid_bars(result.table, paths["fid_bars"])
            plot_spectra(result.spectra, paths["spectra_png"])
            plot_xz_examples(result.examples, paths["xz_examples"])
    return paths
