"""What the paper's two evaluation protocols share: the long table, the settings checks, the
engine and feature-extractor set-up, and fitting without leakage.

:mod:`.protocol_2d` (paired 2D, paper Table 1) and :mod:`.protocol_3d` (3D, paper Tables 2-4)
both build on this module, so they check settings, normalise intensities, fit engines and write
table rows the same way, and :func:`check_settings` can refuse a run of either before any work.

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
fitted on here.

Fitting without leakage (``fit=...``): a learned engine given without weights is fitted on
what a user would have, never on the planes it is scored on (how each protocol does it: see
:mod:`.protocol_2d`, which tests on the test block of :func:`holdout_planes`, and
:mod:`.protocol_3d`). Every fit starts from the same untrained engine (a copy), so factors do
not share weights.

Settings are checked before any work (:func:`check_settings`): a crop that does not fit, a
factor that leaves too few planes, a missing FID weight file or an existing report fail in
seconds, not after the fits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..engines import create_engine
from ..engines.base import Engine
from ..errors import InputError, VolsrError
from ..metrics.features import FeatureExtractor, LowLevelExtractor, get_extractor
from ..normalize import PercentileNormalizer

__all__ = [
    "COLUMNS",
    "EvalResult",
    "GROUND_TRUTH",
    "parse_variant",
    "evenly_spaced_rows",
    "holdout_planes",
    "check_settings",
    "check_extractor",
    "needs_fit",
]

COLUMNS = ["protocol", "engine", "variant", "factor", "metric", "axis", "rows", "value", "trained_on"]
GROUND_TRUTH = "ground-truth"
ProgressFn = Callable[[str, int, int], None]


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
