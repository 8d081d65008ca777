"""Frechet distance: identities, closed forms, MONAI cross-check, robustness."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from volsr.errors import VolsrError
from volsr.metrics import fid_from_features, frechet_distance, gaussian_stats, get_extractor
from volsr.metrics.slicefid import fid_of_crops


def exact_gaussian_set(mu, cov_diag, n, seed):
    """Samples whose *sample* mean and covariance are exactly mu and diag(cov_diag)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(axis=0)
    # whiten so that the unbiased sample covariance is exactly the identity
    c = np.cov(z, rowvar=False)
    w = np.linalg.cholesky(np.linalg.inv(c))
    z = z @ w
    return z * np.sqrt(cov_diag) + mu


def test_fid_of_set_with_itself_is_zero():
    f = np.random.default_rng(0).normal(size=(400, 16))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_is_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 8))
    b = rng.normal(loc=0.3, scale=1.5, size=(250, 8))
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-9)


def test_closed_form_diagonal_statistics():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))  # 5 + 4 + 1 + 0 = 10
    assert expected == pytest.approx(10.0)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_closed_form_from_gaussian_feature_sets():
    mu1, mu2 = np.array([0.0, 2.0, 1.0, -1.0]), np.array([0.5, 2.0, 0.0, 1.0])
    s1, s2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([4.0, 2.0, 0.1, 1.0])
    a = exact_gaussian_set(mu1, s1, 500, 0)
    b = exact_gaussian_set(mu2, s2, 700, 1)
    m, c = gaussian_stats(a)
    assert np.allclose(m, mu1) and np.allclose(c, np.diag(s1))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-8)


def test_matches_monai_fidmetric_on_correlated_features():
    from monai.metrics import FIDMetric

    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(280, 6)) @ rng.normal(size=(6, 6)) + 0.5
    ref = float(FIDMetric()(torch.from_numpy(b), torch.from_numpy(a)))
    assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-6)


def test_fid_increases_monotonically_on_a_blur_series():
    rng = np.random.default_rng(3)
    base = np.stack([gaussian_filter(rng.normal(size=(48, 48)), 1.0) for _ in range(300)])
    base = (base - base.min()) / (base.max() - base.min())
    ex = get_extractor("lowlevel")
    fids = []
    for sigma in (0.5, 1.0, 1.5, 2.5):
        blurred = np.stack([gaussian_filter(im, sigma) for im in base])
        fids.append(fid_of_crops(base[:, None], blurred[:, None], extractor=ex))
    assert all(b > a for a, b in zip(fids, fids[1:])), fids
    assert fids[0] > 0


def test_near_singular_covariance_gives_finite_value():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(10, 40))  # fewer samples than dimensions: rank-deficient covariances
    b = rng.normal(size=(12, 40)) + 0.1
    v = fid_from_features(a, b)
    assert np.isfinite(v) and v > 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(VolsrError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(VolsrError, match="NaN"):
        gaussian_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(VolsrError, match="same feature extractor"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(VolsrError, match="2D array"):
        gaussian_stats(np.zeros(5))
