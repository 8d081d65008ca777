"""Both protocols on one isotropic HR volume: :func:`evaluate`, what ``volsr eval`` runs.

Kept apart from the two protocols so that neither imports the other: it checks every setting
once, splits the HR XY planes into training and test blocks (:func:`holdout_planes`) when
engines are fitted here, runs :func:`paired_2d` and :func:`volume_3d` and joins their tables.
The report files are :func:`volsr.evaluation.reports.write_report` (CSV + Markdown tables +
PNG figures).

The same call with the same arguments (including ``seed``) gives the same numbers, so every
number of ``volsr eval`` can be re-computed from Python.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics.slicing import as_czyx, as_image_list
from .common import (
    COLUMNS,
    EvalResult,
    ProgressFn,
    _engines,
    _extractor,
    check_settings,
    holdout_planes,
    needs_fit,
)
from .protocol_2d import paired_2d
from .protocol_3d import volume_3d

__all__ = ["evaluate"]


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
