"""PSNR/SSIM against scikit-image, restored-only variants, per-axis table."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from volsr.errors import InputError, VolsrError
from volsr.metrics import paired_metrics, psnr, ssim_planes
from volsr.metrics.paired import SSIM_SETTINGS


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    truth = rng.random((1, 33, 24, 20))
    known = np.zeros(33, dtype=bool)
    known[::4] = True
    restored = truth + 0.1 * rng.normal(size=truth.shape)
    restored[:, known] = truth[:, known]  # measured planes are exact
    return restored, truth, known


def test_psnr_matches_skimage(pair):
    restored, truth, known = pair
    assert psnr(restored, truth, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(truth, restored, data_range=1.0), rel=1e-12)
    assert psnr(restored, truth, data_range=1.0, mask=~known[None, :, None, None]) == pytest.approx(
        peak_signal_noise_ratio(truth[:, ~known], restored[:, ~known], data_range=1.0), rel=1e-12)
    assert psnr(truth, truth, data_range=1.0) == float("inf")


def test_ssim_matches_skimage(pair):
    restored, truth, _ = pair
    planes_r, planes_t = np.moveaxis(restored, 1, 0), np.moveaxis(truth, 1, 0)  # XY planes
    expected = np.mean([structural_similarity(r[0], t[0], data_range=1.0, win_size=11, **SSIM_SETTINGS)
                        for r, t in zip(planes_r, planes_t)])
    assert ssim_planes(planes_r, planes_t, data_range=1.0) == pytest.approx(expected, rel=1e-12)


def test_restored_only_excludes_measured_rows(pair):
    restored, truth, known = pair
    rows = {(r["axis"], r["rows"]): r for r in paired_metrics(restored, truth, known, data_range=1.0)}
    assert set(rows) == {(a, v) for a in ("xy", "xz", "yz") for v in ("restored", "all")}
    for axis in ("xy", "xz", "yz"):
        assert rows[(axis, "restored")]["ssim"] < rows[(axis, "all")]["ssim"]
        assert rows[(axis, "restored")]["psnr"] < rows[(axis, "all")]["psnr"]
    # XY restored-only = skimage SSIM averaged over the non-measured planes
    xy = [structural_similarity(restored[0, z], truth[0, z], data_range=1.0, win_size=11, **SSIM_SETTINGS)
          for z in np.flatnonzero(~known)]
    assert rows[("xy", "restored")]["ssim"] == pytest.approx(np.mean(xy), rel=1e-12)
    # PSNR covers the same voxels on every axis
    assert rows[("xz", "restored")]["psnr"] == rows[("yz", "restored")]["psnr"]


def test_paired_multichannel_and_errors(pair):
    restored, truth, known = pair
    two_r, two_t = np.concatenate([restored, restored]), np.concatenate([truth, truth])
    rows = paired_metrics(two_r, two_t, known, data_range=1.0)
    single = paired_metrics(restored, truth, known, data_range=1.0)
    for a, b in zip(rows, single):
        assert a["ssim"] == pytest.approx(b["ssim"], rel=1e-9) and a["psnr"] == pytest.approx(b["psnr"])
    with pytest.raises(VolsrError, match="data_range"):
        psnr(restored, truth, data_range=0)
    with pytest.raises(InputError, match="shape"):
        paired_metrics(restored, truth[:, :-1], None)
    with pytest.raises(InputError, match="known mask"):
        paired_metrics(restored, truth, known[:-1])
