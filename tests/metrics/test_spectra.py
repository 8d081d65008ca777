"""Radial power spectra and the spectral isotropy gap."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, gaussian_filter1d, zoom

from volsr.errors import VolsrError
from volsr.metrics import axis_spectra, isotropy_gap, radial_power_spectrum


@pytest.fixture(scope="module")
def iso():
    return gaussian_filter(np.random.default_rng(0).normal(size=(48, 48, 48)), 1.0)


def test_radial_spectrum_peaks_at_the_sine_frequency():
    x = np.arange(32)
    img = np.sin(2 * np.pi * 0.25 * x)[None, :] * np.ones((32, 1))
    p, k = radial_power_spectrum(img, return_frequency=True)
    assert p.shape == (16,) and k[0] > 0 and k[-1] < 0.5
    assert abs(k[np.argmax(p)] - 0.25) <= 0.5 / 16
    flat = radial_power_spectrum(np.random.default_rng(1).normal(size=(64, 32, 32))).mean(axis=0)
    inner = flat[2:-2]  # white noise: flat away from the window's edges
    assert inner.max() / inner.min() < 1.5
    with pytest.raises(VolsrError, match="at least 8 px"):
        radial_power_spectrum(np.zeros((6, 32)))
    with pytest.raises(VolsrError, match="normalization"):
        radial_power_spectrum(np.zeros((16, 16)), normalization="max")


def test_rectangular_images_bin_on_the_shorter_side():
    # a sine along the long axis of a 32 x 64 image: 16 bins, peak at its frequency
    x = np.arange(64)
    img = np.sin(2 * np.pi * 0.125 * x)[None, :] * np.ones((32, 1))
    p, k = radial_power_spectrum(img, return_frequency=True)
    assert p.shape == (16,) and abs(k[np.argmax(p)] - 0.125) <= 0.5 / 16


def test_zscore_spectrum_is_the_orthonormal_power_of_the_zscored_windowed_image():
    rng = np.random.default_rng(3)
    img = 5.0 + 3.0 * rng.normal(size=(32, 32))
    p, k = radial_power_spectrum(img, normalization="zscore", return_frequency=True)
    # same curve for any brightness and contrast
    assert np.allclose(p, radial_power_spectrum(0.1 * img - 7, normalization="zscore"))
    # white noise of unit variance: power per frequency ~ mean(w^2) of the Hann window (Parseval)
    w2 = np.mean(np.outer(np.hanning(32), np.hanning(32)) ** 2)
    flat = radial_power_spectrum(rng.normal(size=(256, 32, 32)), normalization="zscore").mean(axis=0)
    assert np.allclose(flat[3:-3], w2, rtol=0.1)
    # a constant image has no structure: zero power, not NaN
    assert np.all(radial_power_spectrum(np.full((16, 16), 2.0), normalization="zscore") == 0)


def test_isotropy_gap_is_small_for_isotropic_volume(iso):
    s = axis_spectra(iso, tile=32, n_tiles=128)
    assert s.gap < 0.05
    assert set(s.log_power) == {"xy", "xz", "yz"} and len(s.frequency) == 16
    assert len(s.to_rows()) == 3 * 16


def test_isotropy_gap_grows_with_anisotropy(iso):
    blur = [isotropy_gap(gaussian_filter1d(iso, s, axis=0), n_tiles=128) for s in (0.5, 1.0, 2.0)]
    base = isotropy_gap(iso, n_tiles=128)
    assert base < blur[0] < blur[1] < blur[2]
    # linear z-interpolation from every f-th plane
    lin = [isotropy_gap(zoom(iso[::f], (f, 1, 1), order=1)[:40], n_tiles=128) for f in (2, 4, 8)]
    assert base < lin[0] < lin[1] < lin[2]


def test_spectra_reproducible_and_validated(iso):
    assert isotropy_gap(iso, n_tiles=32, seed=1) == isotropy_gap(iso, n_tiles=32, seed=1)
    with pytest.raises(VolsrError, match="tile"):
        axis_spectra(iso, tile=4)


def test_spectrum_error_is_zero_against_itself_and_grows_with_blur():
    from scipy.ndimage import gaussian_filter

    from volsr.metrics import axis_spectra, spectrum_error

    vol = gaussian_filter(np.random.default_rng(1).normal(size=(40, 40, 40)), 0.7)
    assert spectrum_error(vol, vol) == 0.0
    errs = [spectrum_error(gaussian_filter(vol, (s, 0, 0)), vol) for s in (0.5, 1.0, 2.0)]
    assert 0 < errs[0] < errs[1] < errs[2]
    # the value is the RMS difference of the two mean log XZ spectra
    a, b = axis_spectra(gaussian_filter(vol, (1.0, 0, 0)), tile=32), axis_spectra(vol, tile=32)
    assert errs[1] == pytest.approx(np.sqrt(np.mean((a.log_power["xz"] - b.log_power["xz"]) ** 2)))
    with pytest.raises(VolsrError, match="shape"):
        spectrum_error(vol, vol[:-1])


@pytest.fixture(scope="module")
def restored_pair():
    """Ground-truth texture and a 'smooth engine' output on the 4x grid of its every 4th plane."""
    from volsr.grid import OutputGrid
    from volsr.samples import isotropic_volume

    gt = isotropic_volume((61, 64, 64), seed=3, kind="texture").astype(np.float32)
    pos = OutputGrid(16, 4).positions
    smooth = gaussian_filter(gt, (3.0, 0.7, 0.7))  # generated planes heavily smoothed ...
    smooth[pos] = gt[pos]  # ... measured planes come back unchanged, as in every restoration
    return gt, smooth, pos


def test_measured_plane_reference_is_the_microscopes_not_the_engines(restored_pair):
    gt, smooth, pos = restored_pair
    kw = dict(tile=32, n_tiles=96, seed=0)
    honest = {name: axis_spectra(v, measured_planes=pos, **kw) for name, v in (("gt", gt), ("smooth", smooth))}
    old = {name: axis_spectra(v, **kw) for name, v in (("gt", gt), ("smooth", smooth))}
    assert honest["gt"].reference == "measured planes (16 of 61)" and old["gt"].reference == "all planes"
    # the reference no longer moves with the engine's output: same measured planes, same XY spectrum ...
    np.testing.assert_array_equal(honest["smooth"].log_power["xy"], honest["gt"].log_power["xy"])
    # ... whereas from all planes the smoothing engine supplied 3/4 of its own reference
    assert np.abs(old["smooth"].log_power["xy"] - old["gt"].log_power["xy"]).max() > 0.5
    # generated planes that are smoother than the measured ones score worse than the truth
    assert honest["smooth"].gap > 5 * honest["gt"].gap
    assert honest["gt"].gap < 0.05
    assert isotropy_gap(smooth, measured_planes=pos, **kw) == pytest.approx(honest["smooth"].gap)


def test_measured_positions_and_bad_measured_planes(iso):
    from volsr.errors import InputError
    from volsr.grid import OutputGrid, measured_positions

    for n_in, f in ((16, 4), (4, 2.5), (7, 3.3), (5, 1.0)):
        g = OutputGrid(n_in, f)
        np.testing.assert_array_equal(measured_positions(g.n_out, f), g.positions)
    for bad in ([0, 0, 4], [-1, 3], [0, 48], "0,a", [0.5, 2]):
        with pytest.raises(InputError):
            axis_spectra(iso, tile=16, n_tiles=4, measured_planes=bad)
