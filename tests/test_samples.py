"""Synthetic volumes and the bundled sample stack."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from volsr.errors import InputError
from volsr.io import read_stack
from volsr.samples import (
    ACQUISITION_KINDS,
    FLUO_AXIAL_RATIO,
    KINDS,
    MRI_FULL_SCALE,
    SAMPLE_PATH,
    isotropic_volume,
    make_sample_stack,
    sample_ground_truth,
    sample_stack,
    subsample_z,
    write_sample_stack,
)


@pytest.mark.parametrize("kind", KINDS)
def test_volume_is_deterministic_and_in_range(kind):
    a = isotropic_volume((12, 40, 48), seed=3, kind=kind)
    b = isotropic_volume((12, 40, 48), seed=3, kind=kind)
    c = isotropic_volume((12, 40, 48), seed=4, kind=kind)
    assert a.shape == (12, 40, 48) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert a.std() > 0.02  # has structure, not a flat field


@pytest.mark.parametrize("kind", ["cells", "fibers", "texture", "em"])
def test_volume_is_isotropic(kind):
    # No preferred axis: the mean squared gradient along z, y and x agree within 15 %.
    vol = isotropic_volume((64, 128, 128), seed=0, kind=kind).astype(np.float64)
    energy = np.array([np.mean(np.diff(vol, axis=a) ** 2) for a in range(3)])
    assert np.all(np.abs(energy / energy.mean() - 1.0) < 0.15), energy


def test_noise_free_and_uint16():
    clean = isotropic_volume((8, 32, 32), seed=1, kind="cells", photons=None)
    noisy = isotropic_volume((8, 32, 32), seed=1, kind="cells")
    assert not np.array_equal(clean, noisy)
    assert abs(float(clean.mean() - noisy.mean())) < 0.02  # Poisson noise is unbiased (up to clipping)
    u16 = isotropic_volume((8, 32, 32), seed=1, kind="cells", dtype="uint16")
    assert u16.dtype == np.uint16
    np.testing.assert_array_equal(u16, np.rint(noisy * 65535).astype(np.uint16))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kind": "stars"}, "kind must be one of"),
        ({"shape": (2, 32, 32)}, "every size >= 4"),
        ({"shape": (32, 32)}, r"\(Z, Y, X\)"),
        ({"dtype": "int8"}, "dtype must be"),
        ({"photons": 0}, "photons"),
        ({"psf_sigma": -1}, "psf_sigma"),
        ({"photons": "many"}, "photons"),
        ({"photons": -5.0, "kind": "mri"}, "photons"),
        ({"psf_sigma": float("nan"), "kind": "fluo"}, "psf_sigma"),
    ],
)
def test_volume_bad_arguments(kwargs, match):
    args = {"shape": (8, 16, 16), **kwargs}
    with pytest.raises(InputError, match=match):
        isotropic_volume(**args)


def test_subsample_z():
    vol = np.arange(9 * 2 * 3, dtype=np.uint16).reshape(9, 2, 3)
    out = subsample_z(vol, 4)
    np.testing.assert_array_equal(out, vol[[0, 4, 8]])
    np.testing.assert_array_equal(subsample_z(vol, 4, offset=1), vol[[1, 5]])
    np.testing.assert_array_equal(subsample_z(vol, 1), vol)
    czyx = np.stack([vol, vol + 1])
    np.testing.assert_array_equal(subsample_z(czyx, 3), czyx[:, ::3])


def test_subsample_z_axial_blur_spreads_light_along_z_only():
    vol = np.zeros((17, 5, 5), np.float32)
    vol[8, 2, 2] = 1.0
    out = subsample_z(vol, 1, axial_sigma=1.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-5)
    assert out[7, 2, 2] > 0 and out[9, 2, 2] > 0 and out[8, 2, 2] < 1.0
    np.testing.assert_allclose(out[7, 2, 2], out[9, 2, 2])  # symmetric
    assert out[8, 2, 1] == 0 and out[8, 1, 2] == 0  # no lateral blur
    ints = subsample_z((vol * 1000).astype(np.uint16), 2, axial_sigma=1.0)
    assert ints.dtype == np.uint16 and ints.shape == (9, 5, 5)


@pytest.mark.parametrize(
    "args,match",
    [((0,), "factor"), ((2.5,), "factor"), ((2, None, 2), "offset"), ((2, -1.0), "axial_sigma")],
)
def test_subsample_z_bad_arguments(args, match):
    with pytest.raises(InputError, match=match):
        subsample_z(np.zeros((8, 4, 4)), *args)


def test_shipped_sample_equals_its_generator():
    assert SAMPLE_PATH.exists(), "volsr/data/sample_stack.tif is missing: run python -m volsr.samples"
    shipped = read_stack(SAMPLE_PATH)
    made = make_sample_stack()
    assert shipped.axes == made.axes == "ZYX"
    assert shipped.data.dtype == made.data.dtype == np.uint16
    assert shipped.data.shape == made.data.shape == (16, 128, 128)
    assert shipped.spacing == pytest.approx((1.0, 0.25, 0.25))
    assert shipped.unit == "µm"
    assert shipped.z_factor == pytest.approx(4.0)
    # Bit-identical where generated; allow last-bit float differences on another CPU/NumPy.
    diff = np.abs(shipped.data.astype(np.int64) - made.data.astype(np.int64))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3
    assert SAMPLE_PATH.stat().st_size < 2_000_000


def test_sample_stack_and_ground_truth_agree():
    stack = sample_stack()
    truth = sample_ground_truth()
    assert truth.shape == (61, 128, 128) and truth.dtype == np.uint16
    # The measured planes are every 4th plane of the truth, i.e. rows round(i * 4) of the output grid.
    diff = np.abs(truth[::4].astype(np.int64) - stack.data.astype(np.int64))
    assert diff.max() <= 1


def test_write_sample_stack_regenerates_the_file(tmp_path):
    path = write_sample_stack(tmp_path / "sample.tif")
    again = read_stack(path)
    np.testing.assert_array_equal(again.data, make_sample_stack().data)
    assert again.z_factor == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# acquisition-like kinds
# ---------------------------------------------------------------------------------------------
SMALL = (24, 48, 48)


def test_acquisition_kinds_are_listed_and_old_kinds_keep_their_streams():
    assert ACQUISITION_KINDS == ("fluo", "mri", "em")
    assert KINDS[:3] == ("cells", "fibers", "texture")  # the index seeds each kind's stream: never reorder
    assert set(ACQUISITION_KINDS) <= set(KINDS)


@pytest.mark.parametrize("kind", ACQUISITION_KINDS)
def test_acquisition_kind_deterministic_range_and_noise_switch(kind):
    a = isotropic_volume(SMALL, seed=7, kind=kind)
    np.testing.assert_array_equal(a, isotropic_volume(SMALL, seed=7, kind=kind))
    assert not np.array_equal(a, isotropic_volume(SMALL, seed=8, kind=kind))
    assert a.dtype == np.float32 and a.shape == SMALL
    assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0
    clean = isotropic_volume(SMALL, seed=7, kind=kind, photons=None)
    assert not np.array_equal(a, clean)
    # Noise changes voxels, not the picture: noisy and clean agree closely after a local mean.
    smooth = [ndi.uniform_filter(v.astype(np.float64), 5) for v in (a, clean)]
    assert np.corrcoef(smooth[0].ravel(), smooth[1].ravel())[0, 1] > 0.9
    u16 = isotropic_volume(SMALL, seed=7, kind=kind, dtype="uint16")
    np.testing.assert_array_equal(u16, np.rint(a * 65535).astype(np.uint16))


def _lag_correlation(vol, axis, lag):
    v = vol.astype(np.float64) - vol.mean()
    a = np.take(v, np.arange(lag, v.shape[axis]), axis=axis)
    b = np.take(v, np.arange(0, v.shape[axis] - lag), axis=axis)
    return float((a * b).mean() / (v * v).mean())


def test_fluo_is_blurrier_along_z_than_in_plane():
    clean = isotropic_volume(SMALL, seed=2, kind="fluo", photons=None).astype(np.float64)
    energy = [np.mean(np.diff(clean, axis=a) ** 2) for a in range(3)]
    # An axial PSF 2.5x wider: far less gradient energy along z; y and x alike.
    assert energy[0] < 0.5 * energy[1], energy
    assert 0.7 < energy[1] / energy[2] < 1.4, energy
    # With noise the autocorrelation of the fine structure (the smooth haze removed) still
    # decays slower along z than along y or x.
    noisy = isotropic_volume(SMALL, seed=2, kind="fluo").astype(np.float64)
    fine = noisy - ndi.gaussian_filter(noisy, 4.0)
    for lag in (2, 3):
        cz, cy, cx = (_lag_correlation(fine, a, lag) for a in range(3))
        assert cz > cy + 0.1 and cz > cx + 0.1, (lag, cz, cy, cx)
    # Without the PSF there is no preferred axis.
    bare = isotropic_volume(SMALL, seed=2, kind="fluo", photons=None, psf_sigma=0).astype(np.float64)
    e0 = [np.mean(np.diff(bare, axis=a) ** 2) for a in range(3)]
    assert 0.6 < e0[0] / e0[1] < 1.6, e0
    assert FLUO_AXIAL_RATIO == 2.5


def test_fluo_is_sparse_and_photon_limited():
    vol = isotropic_volume(SMALL, seed=4, kind="fluo")
    clean = isotropic_volume(SMALL, seed=4, kind="fluo", photons=None)
    # Most voxels are background near the camera offset; few are bright.
    assert np.median(clean) < 0.25 * clean.max()
    # Shot noise grows with the signal (Poisson), on top of a floor (read noise).
    resid = vol.astype(np.float64) - clean
    dim, bright = clean < np.percentile(clean, 50), clean > np.percentile(clean, 99.5)
    assert resid[bright].std() > 2.0 * resid[dim].std()
    # Low photon counts: at the brightest structures the relative noise is several percent.
    assert resid[bright].std() / clean[bright].mean() > 0.05


def test_mri_background_noise_is_rician():
    photons = 400.0  # Gaussian sigma 1/20 of white matter (magnitude 1) in each channel
    vol = isotropic_volume(SMALL, seed=5, kind="mri", photons=photons).astype(np.float64)
    clean = isotropic_volume(SMALL, seed=5, kind="mri", photons=None)
    background = clean == 0.0  # air around the head: a truly zero signal
    assert background.sum() > 2000
    sigma = 1.0 / np.sqrt(photons) / MRI_FULL_SCALE
    bg = vol[background]
    # A Rayleigh distribution, not zero-mean Gaussian noise (clipped or not):
    assert bg.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2.0), rel=0.08)
    assert bg.std() == pytest.approx(sigma * np.sqrt((4.0 - np.pi) / 2.0), rel=0.1)
    assert bg.min() > 0.0
    # Inside the brain (high SNR) the noise is near Gaussian with the same sigma and little bias.
    brain = clean > 0.7
    resid = vol[brain] - clean[brain]
    assert resid.std() == pytest.approx(sigma, rel=0.15)
    assert abs(resid.mean()) < 0.2 * sigma


def _busy_tile_fraction(vol, tile=16, threshold=0.05):
    z, y, x = vol.shape
    tiles = vol[:, : y - y % tile, : x - x % tile].reshape(z, y // tile, tile, x // tile, tile)
    return float(np.mean(tiles.std(axis=(2, 4)) > threshold))


def test_em_is_dense_and_fluo_is_not():
    # Noise-free, so noise cannot make a flat tile look busy.
    em = isotropic_volume(SMALL, seed=1, kind="em", photons=None)
    assert _busy_tile_fraction(em) > 0.9
    fluo = isotropic_volume(SMALL, seed=1, kind="fluo", photons=None)
    assert _busy_tile_fraction(fluo) < 0.9  # the same measure tells sparse data apart
    # Membranes are thin and dark: most voxels are cytoplasm grey, a minority much darker.
    grey = np.median(em)
    assert 0.3 < grey < 0.8
    dark = em < 0.6 * grey
    assert 0.03 < dark.mean() < 0.35


def test_acquisition_kinds_generate_quickly():
    import time

    t0 = time.perf_counter()
    for kind in ACQUISITION_KINDS:
        isotropic_volume((16, 64, 64), seed=0, kind=kind)
    assert time.perf_counter() - t0 < 10.0  # 64x256x256 takes ~1-2 s per kind


def test_one_subsample_z_shared_with_the_evaluation():
    from volsr import samples
    from volsr.evaluation import protocol_3d as evaluation

    assert evaluation.subsample_z is samples.subsample_z
