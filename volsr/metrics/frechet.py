"""Frechet distance between two sets of feature vectors (the "F" in FID).

Each feature set is summarised by a Gaussian (mean ``mu``, covariance ``sigma``) and the
distance between the two Gaussians is

    d^2 = ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

Everything runs in float64: covariances of a few thousand 2048-d Inception features are
close to singular, and the matrix square root of their product loses many digits in
float32. When the square root comes back non-finite or with a large imaginary part (a
near-singular product), it is retried on ``(sigma1 + eps I)(sigma2 + eps I)`` — the usual
regularisation of FID code — and a complex part that remains but is tiny is dropped.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from ..errors import VolsrError

__all__ = ["gaussian_stats", "frechet_distance", "fid_from_features"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``N - 1``) covariance of a feature set, in float64.

    Parameters
    ----------
    features : array (N, D)
        One feature vector per image, ``N >= 2``.

    Returns
    -------
    mu : (D,) float64
    sigma : (D, D) float64

    Examples
    --------
    >>> mu, sigma = gaussian_stats(np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise VolsrError(f"features must be a 2D array (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise VolsrError(f"need at least 2 feature vectors to estimate a covariance, got {f.shape[0]}")
    if not np.all(np.isfinite(f)):
        raise VolsrError("features contain NaN or inf; check the input images for NaN/inf values")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> np.ndarray:
    """Real part of ``sqrtm(sigma1 @ sigma2)``, regularised if the plain root is unusable."""

    def root(a, b):
        with warnings.catch_warnings():
            # scipy warns on singular input; we check the result ourselves below
            warnings.simplefilter("ignore")
            r = scipy.linalg.sqrtm(a @ b)
        return np.asarray(r[0] if isinstance(r, tuple) else r)

    def usable(r):
        if not np.all(np.isfinite(r)):
            return False
        if np.iscomplexobj(r):
            scale = max(1.0, float(np.max(np.abs(r.real))))
            return float(np.max(np.abs(r.imag))) <= 1e-3 * scale
        return True

    r = root(sigma1, sigma2)
    if not usable(r):
        offset = eps * np.eye(sigma1.shape[0])
        r = root(sigma1 + offset, sigma2 + offset)
        if not np.all(np.isfinite(r)):
            raise VolsrError(
                "matrix square root of the feature covariances failed even after regularisation; "
                "use more images (at least as many as feature dimensions) or a larger eps"
            )
    return np.real(r)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Parameters
    ----------
    mu1, mu2 : (D,) arrays
    sigma1, sigma2 : (D, D) arrays, symmetric positive semi-definite
    eps : float
        Diagonal offset used only when the plain matrix square root is non-finite or
        clearly complex (near-singular covariances, e.g. fewer images than dimensions).

    Returns
    -------
    float
        ``>= 0`` up to float rounding (tiny negative values from rounding are clipped to 0).

    Examples
    --------
    >>> mu = np.zeros(2); s = np.eye(2)
    >>> round(frechet_distance(mu, s, mu + 1.0, 4 * s), 6)   # 2 + 2 * (1 + 4 - 2*2)
    4.0
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise VolsrError(
            f"feature statistics do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}; both sets must use the same feature extractor"
        )
    if not eps >= 0:
        raise VolsrError(f"eps must be >= 0, got {eps}")
    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2, eps)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def fid_from_features(features1: np.ndarray, features2: np.ndarray, *, eps: float = 1e-6) -> float:
    """Frechet distance between two feature sets (N1, D) and (N2, D).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(500, 4))
    >>> fid_from_features(f, f) < 1e-8
    True
    """
    mu1, s1 = gaussian_stats(features1)
    mu2, s2 = gaussian_stats(features2)
    return frechet_distance(mu1, s1, mu2, s2, eps=eps)
