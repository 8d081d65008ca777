"""SliceFID (MSDSR paper, eq. 10): FID of a reference 2D set against XY, XZ and YZ slices.

    SliceFID(x_H, X) = 1/3 [FID(x_H, XY(X)) + FID(x_H, XZ(X)) + FID(x_H, YZ(X))]

All four numbers are reported. How images become feature vectors, identically for the
reference and every slice set:

1. **Crops.** ``n_crops`` random square ``crop x crop`` crops per set (seeded): reference
   crops from the reference images, test crops from slices along each axis (slice index
   and position uniform). Same size everywhere (the official code compared 48 px
   references with 40 px slices; we do not).
2. **Intensity** (``intensity=``), float throughout, clipped to [0, 1], never uint8:

   * ``"reference"`` (default): one per-channel percentile window (``pmin``/``pmax``,
     default 0.1/99.9) computed over the reference images and applied to the reference
     *and* the test volume. Brightness or contrast errors of a restoration therefore count.
     Use it when reference and restored data are in the same units.
   * ``"per-set"``: each set gets its own window (reference: over its images; test:
     over the whole volume, shared by its three axes). Use when the units differ.
   * ``"per-image"``: every crop is stretched by its own percentiles.
   * ``(low, high)``: a fixed window for both (e.g. ``(0, 1)`` for data already
     normalised with :class:`volsr.normalize.PercentileNormalizer`).
3. **Channels.** C = 1: grayscale. C = 3: an RGB image. Any other C: every channel is
   treated as its own grayscale image (the sets are pooled over channels).
4. **Features** from a :mod:`volsr.metrics.features` extractor; Frechet distance in
   float64 (:mod:`volsr.metrics.frechet`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError, VolsrError
from .features import FeatureExtractor, get_extractor
from .frechet import frechet_distance, gaussian_stats
from .slicing import (
    AXES,
    IntensityWindow,
    as_czyx,
    as_image_list,
    per_image_window,
    sample_image_crops,
    sample_volume_crops,
)

__all__ = ["ReferenceStats", "SliceFIDResult", "reference_stats", "slice_fid", "crop_features", "fid_of_crops"]

_AXIS_STREAM = {"xy": 1, "xz": 2, "yz": 3}


def _resolve_extractor(extractor, n_channels: int, device: str = "auto", weights=None) -> FeatureExtractor:
    if isinstance(extractor, FeatureExtractor):
        return extractor
    if isinstance(extractor, str):
        return get_extractor(extractor, device=device, weights=weights, n_channels=3 if n_channels == 3 else 1)
    raise VolsrError(f"extractor must be a name ('lowlevel', 'inception') or a FeatureExtractor, got {extractor!r}")


def crop_features(crops: np.ndarray, extractor: FeatureExtractor, window) -> np.ndarray:
    """Features of (N, C, s, s) crops after the intensity mapping ``window``.

    ``window`` is an :class:`IntensityWindow` or ``"per-image"``. Channel counts other
    than 1 and 3 are split into grayscale images (N*C samples).
    """
    crops = np.asarray(crops)
    if isinstance(window, str):
        if window != "per-image":
            raise VolsrError(f"window must be an IntensityWindow or 'per-image', got {window!r}")
        mapped = per_image_window(crops)
    else:
        mapped = window.apply(crops)
    if mapped.shape[1] not in (1, 3):
        mapped = mapped.reshape(-1, 1, *mapped.shape[2:])
    return extractor(mapped)


def fid_of_crops(crops_a: np.ndarray, crops_b: np.ndarray, *, extractor="lowlevel", window=None) -> float:
    """FID between two crop sets (N, C, s, s) mapped with one shared window.

    ``window=None`` uses a percentile window over ``crops_a`` (the reference) for both.
    """
    crops_a, crops_b = np.asarray(crops_a), np.asarray(crops_b)
    if crops_a.shape[1:] != crops_b.shape[1:]:
        raise InputError(f"crop sets differ in shape: {crops_a.shape[1:]} vs {crops_b.shape[1:]}")
    ex = _resolve_extractor(extractor, crops_a.shape[1])
    if window is None:
        window = IntensityWindow.from_arrays([np.moveaxis(crops_a, 1, 0)])
    mu1, s1 = gaussian_stats(crop_features(crops_a, ex, window))
    mu2, s2 = gaussian_stats(crop_features(crops_b, ex, window))
    return frechet_distance(mu1, s1, mu2, s2)


@dataclass
class ReferenceStats:
    """Everything about the reference set a SliceFID needs, computed once and reused."""

    mu: np.ndarray
    sigma: np.ndarray
    window: IntensityWindow | None
    intensity: object
    crop: int
    n_crops: int
    n_channels: int
    extractor: FeatureExtractor = field(repr=False)
    pmin: float = 0.1
    pmax: float = 99.9


def reference_stats(
    reference,
    *,
    extractor="lowlevel",
    crop: int = 48,
    n_crops: int = 1000,
    seed: int = 0,
    intensity="reference",
    pmin: float = 0.1,
    pmax: float = 99.9,
    device: str = "auto",
    weights=None,
) -> ReferenceStats:
    """Feature statistics of a reference set of HR 2D images (see the module docstring).

    Parameters
    ----------
    reference : list of (H, W)/(C, H, W) arrays, (N, H, W) or (N, C, H, W) array
        High-resolution 2D images, e.g. the XY planes of an isotropic volume.
    extractor : str or FeatureExtractor
    crop, n_crops, seed : int
        Crop size (px), number of random crops, RNG seed.
    intensity : "reference", "per-set", "per-image" or (low, high)
    """
    images = as_image_list(reference)
    if int(n_crops) < 2:
        raise VolsrError(f"n_crops must be >= 2, got {n_crops}")
    c = images[0].shape[0]
    ex = _resolve_extractor(extractor, c, device=device, weights=weights)
    if isinstance(intensity, (tuple, list)) and len(intensity) == 2:
        window = IntensityWindow.fixed(intensity[0], intensity[1], c)
    elif intensity in ("reference", "per-set"):
        window = IntensityWindow.from_arrays(images, pmin=pmin, pmax=pmax, seed=seed)
    elif intensity == "per-image":
        window = None
    else:
        raise VolsrError(
            f"intensity must be 'reference', 'per-set', 'per-image' or a (low, high) pair, got {intensity!r}"
        )
    crops = sample_image_crops(images, crop, n_crops, np.random.default_rng([seed, 0]))
    feats = crop_features(crops, ex, window if window is not None else "per-image")
    mu, sigma = gaussian_stats(feats)
    return ReferenceStats(mu, sigma, window, intensity, int(crop), int(n_crops), c, ex, pmin, pmax)


@dataclass
class SliceFIDResult:
    """Per-axis FIDs and their mean (paper eq. 10)."""

    fid_xy: float
    fid_xz: float
    fid_yz: float
    slice_fid: float

    def as_dict(self) -> dict:
        return asdict(self)


def slice_fid(
    volume,
    reference,
    *,
    extractor="lowlevel",
    crop: int = 48,
    n_crops: int = 1000,
    seed: int = 0,
    intensity="reference",
    pmin: float = 0.1,
    pmax: float = 99.9,
    device: str = "auto",
    weights=None,
) -> SliceFIDResult:
    """SliceFID of a (restored) volume against a reference set of HR 2D images.

    Parameters
    ----------
    volume : array (Z, Y, X) or (C, Z, Y, X)
        The volume to score; it should be isotropic (z spacing = xy spacing).
    reference : ReferenceStats or 2D image set
        A :class:`ReferenceStats` (then ``extractor``, ``crop``, ``intensity`` are taken from
        it) or images accepted by :func:`reference_stats`.
    extractor, crop, n_crops, seed, intensity, pmin, pmax, device, weights
        See :func:`reference_stats` and the module docstring. ``n_crops`` crops are drawn
        per axis.

    Returns
    -------
    SliceFIDResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vol = rng.random((32, 32, 32)).astype(np.float32)
    >>> r = slice_fid(vol, vol, crop=24, n_crops=200)   # reference = XY planes of vol
    >>> r.slice_fid == (r.fid_xy + r.fid_xz + r.fid_yz) / 3
    True
    """
    vol = as_czyx(volume)
    if not isinstance(reference, ReferenceStats):
        reference = reference_stats(
            reference, extractor=extractor, crop=crop, n_crops=n_crops, seed=seed,
            intensity=intensity, pmin=pmin, pmax=pmax, device=device, weights=weights,
        )
    ref = reference
    if vol.shape[0] != ref.n_channels:
        raise InputError(
            f"volume has {vol.shape[0]} channel(s) but the reference images have {ref.n_channels}; "
            "compare data of the same kind"
        )
    if ref.intensity == "per-set":
        window = IntensityWindow.from_arrays([vol], pmin=ref.pmin, pmax=ref.pmax, seed=seed)
    elif ref.intensity == "per-image":
        window = "per-image"
    else:
        window = ref.window
    fids = {}
    for axis in AXES:
        crops = sample_volume_crops(vol, axis, ref.crop, n_crops, np.random.default_rng([seed, _AXIS_STREAM[axis]]))
        mu, sigma = gaussian_stats(crop_features(crops, ref.extractor, window))
        fids[axis] = frechet_distance(ref.mu, ref.sigma, mu, sigma)
    mean = (fids["xy"] + fids["xz"] + fids["yz"]) / 3.0
    return SliceFIDResult(fids["xy"], fids["xz"], fids["yz"], mean)
