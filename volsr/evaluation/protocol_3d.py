"""The paper's 3D protocol (Tables 2-4): :func:`volume_3d`.

From an isotropic HR volume simulate a low-res stack by keeping every f-th plane (optionally
after an axial blur), restore with each engine and plane/fusion variant (``both``, ``xz``,
``yz``, each optionally ``+blur``), then per-axis FID, SliceFID, per-axis PSNR/SSIM and the
spectral isotropy gap. Settings, units and the table format are those of :mod:`.common`.

Fitting without leakage: a separate fit per factor on the XY planes of that factor's simulated
low-res stack (planes 0, f, 2f, ...).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import VolsrError
from ..grid import OutputGrid
from ..metrics.features import FeatureExtractor
from ..metrics.paired import paired_metrics
from ..metrics.slicefid import reference_stats, slice_fid
from ..metrics.slicing import as_czyx, as_image_list
from ..metrics.spectra import axis_spectra
from ..normalize import PercentileNormalizer
from ..samples import subsample_z  # the one implementation (tests check it is the one used here)
from .common import (
    COLUMNS,
    GROUND_TRUTH,
    EvalResult,
    ProgressFn,
    _check_factors,
    _engines,
    _extractor,
    _fitted,
    _normalise_images,
    _row,
    _sampling_kwargs,
    check_settings,
    parse_variant,
)

__all__ = ["volume_3d"]


def _plane_list(idx) -> str:
    idx = [int(i) for i in idx]
    if len(idx) > 4 and all(b - a == idx[1] - idx[0] for a, b in zip(idx, idx[1:])):
        return f"{idx[0]}, {idx[1]}, ..., {idx[-1]}"
    return ", ".join(map(str, idx))


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
