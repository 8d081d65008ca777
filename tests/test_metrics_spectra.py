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
    with pytest.raises(VolsrError, match="square"):
        radial_power_spectrum(np.zeros((16, 32)))


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
