"""SliceFID: orientation conventions, crops, intensity handling, sensitivity to stretching."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from volsr.errors import InputError, VolsrError
from volsr.metrics import axis_slices, reference_stats, sample_volume_crops, slice_fid
from volsr.metrics.slicing import IntensityWindow


@pytest.fixture(scope="module")
def iso_volume():
    rng = np.random.default_rng(0)
    v = gaussian_filter(rng.normal(size=(48, 64, 64)), 1.5)
    return ((v - v.min()) / (v.max() - v.min())).astype(np.float32)


def coded_volume():
    z, y, x = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    return (z * 10000 + y * 100 + x).astype(np.float64)[None]


def test_axis_slices_follow_the_row_is_z_convention():
    v = coded_volume()
    xz = axis_slices(v, "xz")  # (Y, C, Z, X)
    yz = axis_slices(v, "yz")  # (X, C, Z, Y)
    assert xz.shape == (7, 1, 6, 8) and yz.shape == (8, 1, 6, 7)
    assert np.array_equal(xz[3, 0], v[0, :, 3, :])
    assert np.array_equal(yz[5, 0], v[0, :, :, 5])
    assert np.array_equal(axis_slices(v, "xy")[2, 0], v[0, 2])


def test_volume_crops_have_z_as_rows():
    v = coded_volume()
    rng = np.random.default_rng(0)
    for axis, col_step in (("xz", 1), ("yz", 100)):
        crops = sample_volume_crops(v, axis, 4, 20, rng)
        assert crops.shape == (20, 1, 4, 4)
        d_rows = np.diff(crops[:, 0], axis=1)
        d_cols = np.diff(crops[:, 0], axis=2)
        assert np.all(d_rows == 10000) and np.all(d_cols == col_step)
    xy = sample_volume_crops(v, "xy", 4, 5, rng)
    assert np.all(np.diff(xy[:, 0], axis=1) == 100) and np.all(np.diff(xy[:, 0], axis=2) == 1)
    with pytest.raises(InputError, match="z planes"):
        sample_volume_crops(v, "xz", 7, 3, rng)


def test_slicefid_lower_for_isotropic_than_for_z_stretched(iso_volume):
    ref = np.moveaxis(iso_volume[None], 1, 0)  # the XY planes as (Z, C, Y, X)
    stats = reference_stats(ref, crop=32, n_crops=300, seed=0)
    iso = slice_fid(iso_volume, stats, n_crops=300)
    stretched = np.repeat(iso_volume[::4], 4, axis=0)[: iso_volume.shape[0]]  # nearest along z
    st = slice_fid(stretched, stats, n_crops=300)
    assert st.slice_fid > 5 * iso.slice_fid
    assert st.fid_xz > 10 * iso.fid_xz and st.fid_yz > 10 * iso.fid_yz
    assert st.fid_xy < 2 * iso.fid_xy + 0.1  # XY planes of the stretched volume are real planes
    assert iso.slice_fid == pytest.approx((iso.fid_xy + iso.fid_xz + iso.fid_yz) / 3)


def test_slicefid_is_reproducible_with_seed(iso_volume):
    a = slice_fid(iso_volume, iso_volume, crop=32, n_crops=200, seed=3)
    b = slice_fid(iso_volume, iso_volume, crop=32, n_crops=200, seed=3)
    c = slice_fid(iso_volume, iso_volume, crop=32, n_crops=200, seed=4)
    assert a == b and a != c


def test_intensity_reference_window_counts_brightness_errors(iso_volume):
    dim = iso_volume * 0.5
    ref = iso_volume  # (Z, Y, X) array: its XY planes
    shared = slice_fid(dim, ref, crop=32, n_crops=200, intensity="reference")
    own = slice_fid(dim, ref, crop=32, n_crops=200, intensity="per-set")
    assert shared.slice_fid > 10 * own.slice_fid
    fixed = slice_fid(iso_volume, ref, crop=32, n_crops=200, intensity=(0.0, 1.0))
    assert np.isfinite(fixed.slice_fid)
    with pytest.raises(VolsrError, match="intensity"):
        slice_fid(iso_volume, ref, crop=32, n_crops=50, intensity="uint8")


def test_no_uint8_wraparound(iso_volume):
    v16 = (iso_volume * 4000 + 100).astype(np.uint16)  # far beyond 255
    a = slice_fid(v16, v16, crop=32, n_crops=150)
    b = slice_fid(v16.astype(np.float32), v16.astype(np.float32), crop=32, n_crops=150)
    assert a == b


def test_intensity_window_maps_and_clips():
    w = IntensityWindow.fixed(10.0, 20.0)
    out = w.apply(np.array([[[[5.0, 10.0, 15.0, 20.0, 300.0]]]]))
    assert out.dtype == np.float32 and out.ravel().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_channels(iso_volume):
    two = np.stack([iso_volume, iso_volume[:, ::-1]])  # C=2: channels pooled as grayscale samples
    r = slice_fid(two, np.moveaxis(two, 1, 0), crop=32, n_crops=100)
    assert np.isfinite(r.slice_fid)
    rgb = np.stack([iso_volume] * 3)
    r3 = slice_fid(rgb, np.moveaxis(rgb, 1, 0), crop=32, n_crops=100)
    assert np.isfinite(r3.slice_fid)
    with pytest.raises(InputError, match="channel"):
        slice_fid(two, iso_volume, crop=32, n_crops=100)
