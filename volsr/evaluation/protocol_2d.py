"""The paper's paired 2D protocol (Table 1): :func:`paired_2d`.

HR 2D crops, keep 24 / 12 / 6 evenly spaced rows of 48 (2x / 4x / 8x), restore with each
engine, FID / SSIM / PSNR against the HR crops. It scores 2D images, not a volume, so it has a
module of its own; it shares only :mod:`.common` (settings, units, the table format) with
the 3D protocol.

Fitting without leakage: the HR XY planes are split into a training block and a test block
with a gap between them (:func:`~volsr.evaluation.common.holdout_planes`, done by
:func:`~volsr.evaluation.combined.evaluate`); the test crops come from the test block only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import VolsrError
from ..metrics.features import FeatureExtractor
from ..metrics.frechet import frechet_distance, gaussian_stats
from ..metrics.paired import psnr, ssim_planes
from ..metrics.slicefid import crop_features
from ..metrics.slicing import IntensityWindow, as_image_list, sample_image_crops
from .common import (
    COLUMNS,
    ProgressFn,
    _check_2d,
    _check_factors,
    _engines,
    _extractor,
    _fitted,
    _normalise_images,
    _row,
    _sampling_kwargs,
    _trained_on,
    evenly_spaced_rows,
    needs_fit,
)

__all__ = ["paired_2d"]


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
