"""The plane preview (:func:`volsr.api.restore_plane`): one XZ/YZ plane through :func:`volsr.restore`'s own path."""

import numpy as np
import pytest
import torch

import volsr
from volsr import InputError
from volsr.api import PlaneResult, restore_plane
from volsr.engines import create_engine


def _vol(shape=(6, 20, 24), seed=0):
    """Smooth structure + noise (uint16), with one bright y row and x column: a crop's percentiles differ."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in shape), indexing="ij")
    base = 0.3 + 0.2 * np.sin(6 * x + 3 * y) * np.cos(4 * z) + 0.1 * rng.random(shape)
    base[:, 5, :] += 0.35
    base[:, :, 17] += 0.35
    return np.clip(base * 65535, 0, 65535).astype(np.uint16)


def _plane(data, axis, index):
    return data[:, index, :] if axis == "xz" else data[:, :, index]


@pytest.fixture(scope="module")
def msunet_model(tmp_path_factory):
    """A tiny MS-UNet fitted for two steps on the test stack, saved as a model file."""
    path = tmp_path_factory.mktemp("plane") / "tiny.volsr"
    torch.manual_seed(0)
    volsr.restore(_vol(), engine="msunet", z_factor=2.5, fit_steps=2, device="cpu", seed=0, model_out=path,
                  engine_options={"preset": "tiny", "crop": 16})
    return path


@pytest.mark.parametrize("axis, index", [("xz", 0), ("xz", 5), ("xz", 19), ("yz", 17), ("yz", 23)])
@pytest.mark.parametrize("blur", [None, 0.5])
@pytest.mark.parametrize("output_dtype", ["same", "float32"])
def test_linear_preview_is_the_full_restores_plane_bit_for_bit(axis, index, blur, output_dtype):
    data = _vol()
    kw = {"engine": "linear", "z_factor": 2.5, "blur_sigma": blur, "output_dtype": output_dtype}
    full = volsr.restore(data, planes=axis, **kw)
    res = restore_plane(data, axis=axis, index=index, **kw)
    assert isinstance(res, PlaneResult) and (res.axis, res.index, res.axes) == (axis, index, "ZX" if axis == "xz"
                                                                                    else "ZY")
    assert res.data.dtype == full.data.dtype
    np.testing.assert_array_equal(res.data, _plane(full.data, axis, index))
    # measured rows: where the grid puts them, the input's own plane, unchanged
    assert res.measured_rows.tolist() == full.grid.positions.tolist() == [0, 2, 5, 8, 10, 12]
    np.testing.assert_array_equal(res.measured, _plane(data, axis, index))
    np.testing.assert_array_equal(res.data[res.measured_rows], _plane(data, axis, index).astype(res.data.dtype))
    assert res.spacing == pytest.approx((full.spacing[0], full.spacing[2 if axis == "xz" else 1]))
    assert res.z_factor == 2.5 and res.engine.name == "linear"


@pytest.mark.parametrize("axis, index", [("xz", 5), ("xz", 11), ("yz", 17), ("yz", 2)])
def test_msunet_preview_matches_the_full_restore_with_whole_stack_normalisation(msunet_model, axis, index):
    data = _vol()
    kw = {"model": msunet_model, "z_factor": 2.5, "device": "cpu", "seed": 3, "precision": "float32"}
    for dtype in ("float32", "same"):
        full = volsr.restore(data, planes=axis, output_dtype=dtype, **kw)
        res = restore_plane(data, axis=axis, index=index, output_dtype=dtype, **kw)
        ref = _plane(full.data, axis, index)
        assert res.data.shape == ref.shape and res.data.dtype == ref.dtype
        # equal up to float32 rounding: the network sees one plane here and a batch in the full run, and
        # oneDNN's one-image convolution rounds the last bit differently (cf. test_baselines' batching test).
        # A crop-normalised preview would be off by thousands of grey levels.
        assert np.abs(res.data.astype(np.float64) - ref.astype(np.float64)).max() <= (0.02 if dtype == "float32"
                                                                                     else 1)
        np.testing.assert_array_equal(res.data[res.measured_rows], _plane(data, axis, index).astype(ref.dtype))
    # the same model on the crop's own percentiles is far outside that tolerance: the whole-stack normaliser matters
    crop = data[:, index:index + 1, :] if axis == "xz" else data[:, :, index:index + 1]
    own = volsr.restore(crop, planes=axis, output_dtype="float32", **kw).data
    assert np.abs(_plane(own, axis, 0) - _plane(full.data, axis, index).astype(np.float32)).max() > 5


def test_msunet_engine_instance_and_n_samples(msunet_model):
    data = _vol()
    eng = volsr.load_engine(msunet_model, device="cpu")
    full = volsr.restore(data, engine=eng, z_factor=2.5, planes="xz", precision="float32", output_dtype="float32")
    res = restore_plane(data, engine=eng, z_factor=2.5, index=8, precision="float32", output_dtype="float32")
    np.testing.assert_allclose(res.data, full.data[:, 8], rtol=0, atol=0.02)
    assert res.std is None and res.timings.keys() == {"fit_s", "restore_s"}


def test_stochastic_preview_is_reproducible_and_keeps_the_measured_rows():
    data = _vol((4, 24, 24))
    kw = {"model": "sample_model", "z_factor": 2, "sampling_steps": 2, "device": "cpu", "axis": "yz", "index": 9}
    a, b = restore_plane(data, seed=1, **kw), restore_plane(data, seed=1, **kw)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.engine.name == "msdsr" and a.data.shape == (7, 24)
    np.testing.assert_array_equal(a.data[a.measured_rows], data[:, :, 9])
    assert not np.array_equal(a.data[1::2], data[:-1, :, 9])  # the rows between were generated


def test_bad_axis_index_and_inputs_are_one_line_input_errors():
    data = _vol()
    kw = {"engine": "linear", "z_factor": 2}
    def refused(match, **call):
        with pytest.raises(InputError, match=match) as err:
            restore_plane(**{"source": data, **kw, **call})
        assert "\n" not in str(err.value)  # one line, naming the fix

    for axis in ("xy", "z", 3):
        refused("axis must be 'xz'.*or 'yz'", axis=axis, index=0)
    for axis, index, n in (("xz", 20, 20), ("xz", -1, 20), ("yz", 24, 24)):
        refused(f"index {index} is outside the stack's {n} .*from 0 to {n - 1}", axis=axis, index=index)
    for index in (2.5, "3", True):
        refused("index must be a whole number", index=index)
    refused("single z plane.*at least 2 planes", source=data[0], index=0)  # a 2D image
    with pytest.raises(TypeError):
        restore_plane(data, index=0, engin="linear")  # misspelt keyword: restore()'s own signature
    res = restore_plane(data, axis="XZ", index=np.int64(3), **kw)  # upper case and NumPy integers are fine
    assert res.axis == "xz" and res.index == 3


def test_untrained_learned_engines_are_refused_not_fitted(tmp_path):
    data = _vol()
    with pytest.raises(InputError, match="'msunet' has no trained model.*load a trained model"):
        restore_plane(data, engine="msunet", index=3, z_factor=2, fit_steps=1)
    with pytest.raises(InputError, match="'msdsr' has no trained model"):
        restore_plane(data, index=3, z_factor=2)  # the default engine, no model
    with pytest.raises(InputError, match="'msunet' has no trained model"):
        restore_plane(data, engine=create_engine("msunet", preset="tiny"), index=3, z_factor=2)
    with pytest.raises(InputError, match="does not fine-tune"):
        restore_plane(data, engine="msdsr", init_model="sample_model", index=3, z_factor=2)
    whole = create_engine("e2e-unet", preset="tiny")
    whole.trained = True  # stands in for a fitted one: the refusal is about its kind, not its weights
    with pytest.raises(InputError, match="restores the whole volume at once"):
        restore_plane(data, engine=whole, index=3, z_factor=2)
