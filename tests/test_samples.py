"""Synthetic volumes and the bundled sample stack."""

import numpy as np
import pytest

from volsr.errors import InputError
from volsr.io import read_stack
from volsr.samples import (
    KINDS,
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


@pytest.mark.parametrize("kind", KINDS)
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


def test_one_subsample_z_shared_with_the_evaluation():
    from volsr import evaluation, samples

    assert evaluation.subsample_z is samples.subsample_z
