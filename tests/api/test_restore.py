"""The public Python API (:func:`volsr.restore`): output grid, values, dtype, spacing, errors, engines."""

import math

import numpy as np
import pytest
import torch

import volsr
from volsr import Cancelled, InputError, OutputError, RestoreResult, VolsrError


def _vol(shape=(6, 20, 24), dtype=np.uint16, seed=0):
    """Smooth structure + noise, spread over most of the dtype's range."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in shape[-3:]), indexing="ij")
    base = 0.5 + 0.25 * np.sin(6 * x + 3 * y) * np.cos(4 * z) + 0.2 * rng.random(shape[-3:])
    base = np.broadcast_to(base, shape)
    if np.dtype(dtype).kind == "f":
        return (base * 1000).astype(dtype)
    return np.clip(base * np.iinfo(dtype).max, 0, np.iinfo(dtype).max).astype(dtype)


def _n_out(z, f):
    return int(round((z - 1) * f)) + 1


def _positions(z, f):
    return [int(round(i * f)) for i in range(z)]


# -- the three-line API on a file -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("f", [2, 2.5])
def test_restore_file_grid_values_dtype_spacing_and_save(tmp_path, dtype, f):
    data = _vol((6, 20, 24), dtype)
    src = volsr.write_stack(tmp_path / "in.tif", data, "ZYX", spacing=(0.5 * f, 0.5, 0.5), unit="µm")
    res = volsr.restore(src, engine="linear")  # z factor from the file's spacing
    assert isinstance(res, RestoreResult)
    n_out = _n_out(6, f)
    pos = _positions(6, f)
    assert res.z_factor == pytest.approx(f)
    assert res.data.shape == (n_out, 20, 24) and res.axes == "ZYX"
    assert res.data.dtype == np.dtype(dtype)
    assert res.grid.positions.tolist() == pos
    for i, p in enumerate(pos):
        np.testing.assert_array_equal(res.data[p], data[i])  # measured planes bit-identical
    if f == 2:  # linear interpolation: the middle plane is the mean of its neighbours (in input units)
        mid = (data[0].astype(np.float64) + data[1]) / 2
        tol = 1e-3 if np.dtype(dtype).kind == "f" else 1.0  # integers are rounded
        np.testing.assert_allclose(res.data[1].astype(np.float64), mid, atol=tol)
    # new z spacing: the output rows are evenly spread over the input's z extent
    z_extent = 0.5 * f * 5
    assert res.spacing == pytest.approx((z_extent / (n_out - 1), 0.5, 0.5))
    assert res.unit == "µm"

    out = res.save(tmp_path / "out.tif")
    back = volsr.read_stack(out)
    assert back.axes == "ZYX" and back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, res.data)
    assert back.spacing == pytest.approx(res.spacing)
    assert back.unit == "µm"
    with pytest.raises(OutputError, match="--overwrite"):
        res.save(out)
    assert res.save(out, overwrite=True) == out


def test_output_dtype_float32_keeps_fractions():
    data = _vol((4, 12, 12), np.uint16)
    res = volsr.restore(data, engine="linear", z_factor=2, output_dtype="float32")
    assert res.data.dtype == np.float32
    np.testing.assert_array_equal(res.data[::2], data.astype(np.float32))
    mid = (data[1].astype(np.float64) + data[2]) / 2
    np.testing.assert_allclose(res.data[3], mid, rtol=1e-5, atol=0.05)
    assert np.any(res.data[3] % 1 != 0)  # not rounded to integers
    with pytest.raises(InputError, match="output_dtype"):
        volsr.restore(data, engine="linear", z_factor=2, output_dtype="float64")


# -- the z factor ------------------------------------------------------------------------------
def test_z_factor_from_spacing_and_explicit_override(tmp_path):
    data = _vol((5, 10, 10), np.float32)
    res = volsr.restore(data, engine="linear", spacing=(1.5, 0.5, 0.5))
    assert res.z_factor == 3 and res.data.shape[0] == 13
    assert res.spacing == pytest.approx((0.5, 0.5, 0.5))
    # an explicit factor wins over the spacing; the output z spacing follows it
    res = volsr.restore(data, engine="linear", spacing=(1.5, 0.5, 0.5), z_factor=2)
    assert res.z_factor == 2 and res.data.shape[0] == 9
    assert res.spacing == pytest.approx((0.5, 0.5, 0.5))
    # spacing given for a file overrides the file's
    src = volsr.write_stack(tmp_path / "s.tif", data, "ZYX", spacing=(1.0, 0.5, 0.5))
    assert volsr.restore(src, engine="linear").data.shape[0] == 9
    res = volsr.restore(src, engine="linear", spacing=(2.0, 0.5, 0.5))
    assert res.z_factor == 4 and res.data.shape[0] == 17


def test_array_without_spacing_gets_pixel_units():
    res = volsr.restore(_vol((4, 8, 8), np.float32), engine="linear", z_factor=2.5)
    assert res.data.shape[0] == _n_out(4, 2.5)
    assert res.unit == "pixel"
    assert res.spacing == pytest.approx((3 * 2.5 / (res.data.shape[0] - 1), 1.0, 1.0))


def test_missing_spacing_needs_a_z_factor(tmp_path):
    data = _vol((4, 8, 8), np.float32)
    with pytest.raises(InputError, match="z-factor"):
        volsr.restore(data, engine="linear")
    src = volsr.write_stack(tmp_path / "nosp.tif", data, "ZYX", spacing=None)
    with pytest.raises(InputError, match="no z/xy voxel spacing"):
        volsr.restore(src, engine="linear")


@pytest.mark.parametrize("f", [0.5, 0.999, float("nan"), float("inf"), -2, "abc"])
def test_bad_z_factor(f):
    with pytest.raises(InputError, match="z factor"):
        volsr.restore(_vol((4, 8, 8), np.float32), engine="linear", z_factor=f)


def test_spacing_giving_factor_below_one():
    with pytest.raises(InputError, match=">= 1"):
        volsr.restore(_vol((4, 8, 8), np.float32), engine="linear", spacing=(0.25, 0.5, 0.5))


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_refused(bad):
    data = _vol((4, 8, 8), np.float32)
    data[2, 3, 4] = bad
    with pytest.raises(InputError, match="NaN/Inf"):
        volsr.restore(data, engine="linear", z_factor=2)


@pytest.mark.parametrize(
    "data,axes,match",
    [
        (np.zeros((8, 8), np.float32), None, "single z plane"),
        (np.zeros((1, 8, 8), np.float32), None, "single z plane"),
        (np.zeros((4, 8, 8), np.float32), "CZYX", "4 letters"),
        (np.zeros((4, 8, 8), np.float32), "ZQX", "unsupported letter"),
        (np.zeros((2, 4, 8, 8), np.float32), "TZYX", "time point"),
        ([1, 2, 3], None, "cannot restore a list"),
    ],
)
def test_bad_arrays_and_axes(data, axes, match):
    with pytest.raises(InputError, match=match):
        volsr.restore(data, engine="linear", z_factor=2, axes=axes)


@pytest.mark.parametrize("bs", [0, -1, 2.5])
def test_bad_batch_size_refused(bs):
    # a negative batch size used to skip every plane and return uninitialised memory
    with pytest.raises(InputError, match="batch size"):
        volsr.restore(_vol((4, 8, 8), np.float32), engine="linear", z_factor=2, batch_size=bs)


# -- axes orders and channels ------------------------------------------------------------------
def test_multichannel_czyx_and_zcyx_match_per_channel_restores():
    ch0 = _vol((5, 12, 14), np.float32, seed=1)
    ch1 = _vol((5, 12, 14), np.float32, seed=2)[:, :, ::-1] * 50 + 7  # other structure, other range
    czyx = np.stack([ch0, ch1])
    sep = [volsr.restore(c, engine="linear", z_factor=2.5).data for c in (ch0, ch1)]
    n_out = _n_out(5, 2.5)

    res = volsr.restore(czyx, engine="linear", z_factor=2.5)
    assert res.axes == "CZYX" and res.data.shape == (2, n_out, 12, 14)
    for c in range(2):
        np.testing.assert_allclose(res.data[c], sep[c], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(res.data[c][_positions(5, 2.5)], czyx[c])

    zcyx = np.ascontiguousarray(czyx.transpose(1, 0, 2, 3))
    res = volsr.restore(zcyx, engine="linear", z_factor=2.5, axes="ZCYX")
    assert res.axes == "ZCYX" and res.data.shape == (n_out, 2, 12, 14)
    for c in range(2):
        np.testing.assert_allclose(res.data[:, c], sep[c], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(res.data[_positions(5, 2.5)], zcyx)


def test_single_time_point_keeps_its_axes():
    data = _vol((1, 4, 8, 8), np.uint16)
    res = volsr.restore(data, engine="linear", z_factor=2, axes="TZYX")
    assert res.axes == "TZYX" and res.data.shape == (1, 7, 8, 8)
    np.testing.assert_array_equal(res.data[0, ::2], data[0])


# -- cancel and progress -----------------------------------------------------------------------
def test_cancel_raises_cancelled_and_progress_reports_both_directions():
    data = _vol((4, 16, 16), np.float32)
    with pytest.raises(Cancelled):
        volsr.restore(data, engine="linear", z_factor=2, cancel=lambda: True)
    calls = []
    volsr.restore(data, engine="linear", z_factor=2, batch_size=4, progress=lambda s, d, t, **kw: calls.append((s, d, t)))
    stages = {s for s, _, _ in calls}
    assert {"xz", "yz"} <= stages
    assert ("xz", 16, 16) in calls and ("yz", 16, 16) in calls


def test_cancel_during_a_fit():
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(Cancelled):
        volsr.restore(_vol((4, 32, 32), np.float32), engine="msunet", z_factor=2, fit_steps=50, device="cpu",
                      engine_options={"preset": "tiny"}, cancel=cancel)


# -- learned engines ---------------------------------------------------------------------------
def test_msunet_fit_save_and_reload_reproduces(tmp_path):
    data = _vol((5, 32, 32), np.uint16)
    model_out = tmp_path / "m.volsr"
    stages = set()
    res = volsr.restore(data, engine="msunet", fit_steps=3, z_factor=2, device="cpu", model_out=model_out,
                        engine_options={"preset": "tiny"}, output_dtype="float32",
                        progress=lambda s, d, t, **kw: stages.add(s))
    assert "fit" in stages
    assert res.engine.name == "msunet" and res.model_path == model_out and model_out.exists()
    assert res.data.shape == (9, 32, 32)
    np.testing.assert_array_equal(res.data[::2], data.astype(np.float32))

    again = volsr.restore(data, model=model_out, z_factor=2, device="cpu", output_dtype="float32")
    assert again.engine.name == "msunet" and again.model_path == model_out
    np.testing.assert_allclose(again.data, res.data, rtol=1e-6, atol=1e-3)
    # an explicit engine that the model file is not
    with pytest.raises(VolsrError, match="'msunet' model"):
        volsr.restore(data, engine="linear", model=model_out, z_factor=2)
    # a model for 1 channel on a 2-channel stack
    with pytest.raises(InputError, match="1 channel"):
        volsr.restore(np.stack([data, data]), model=model_out, z_factor=2, device="cpu")


def test_fit_budget_and_model_out_checked_before_fitting(tmp_path):
    data = _vol((4, 32, 32), np.float32)
    with pytest.raises(VolsrError, match="fit-steps"):
        volsr.restore(data, engine="msunet", fit_steps=0, z_factor=2, device="cpu")
    stages = set()
    with pytest.raises(OutputError, match="does not exist"):
        volsr.restore(data, engine="msunet", fit_steps=2, z_factor=2, device="cpu",
                      model_out=tmp_path / "missing" / "m.volsr", progress=lambda s, *a, **k: stages.add(s))
    assert "fit" not in stages  # failed before the fit, not after it
    assert not (tmp_path / "missing").exists()


def test_self_fit_on_a_stack_narrower_than_the_training_crop():
    # the default crop (48) would refuse 16x16 planes with advice (--crop) that `volsr infer` does not have
    data = _vol((4, 16, 16), np.float32)
    res = volsr.restore(data, engine="msunet", fit_steps=1, z_factor=2, device="cpu", engine_options={"preset": "tiny"})
    assert res.engine.cfg["crop"] == 16
    np.testing.assert_array_equal(res.data[::2], data)


def test_bundled_msdsr_model_seeds_and_uncertainty():
    data = _vol((4, 24, 24), np.float32)
    kw = dict(model="sample_model", z_factor=2, sampling_steps=2, device="cpu", output_dtype="float32")
    a = volsr.restore(data, seed=0, **kw)
    b = volsr.restore(data, seed=0, **kw)
    c = volsr.restore(data, seed=1, **kw)
    assert a.engine.name == "msdsr"
    np.testing.assert_array_equal(a.data, b.data)  # same seed, same result
    assert not np.allclose(a.data[1::2], c.data[1::2])  # another seed samples other unknown rows
    for r in (a, c):
        np.testing.assert_array_equal(r.data[::2], data)
    assert a.std is None

    s = volsr.restore(data, seed=0, n_samples=2, **kw)
    assert s.std is not None and s.std.shape == s.data.shape == (7, 24, 24)
    assert s.std.dtype == np.float32
    np.testing.assert_array_equal(s.std[::2], 0)  # measured planes are certain
    assert s.std[1::2].min() >= 0 and s.std[1::2].max() > 0
    assert math.isfinite(float(s.std.max()))


def test_fit_can_start_from_a_bundled_model(tmp_path):
    """init_model fine-tunes: the fit starts from the bundled weights and records it."""
    import volsr

    vol = volsr.samples.sample_stack().data[:6, :32, :32]
    out = tmp_path / "ft.volsr"
    res = volsr.restore(vol, engine="msdsr", init_model="sample_model", fit_steps=2, z_factor=2,
                        sampling_steps=2, model_out=out)
    assert out.exists()
    assert "fine-tuned from sample_model" in res.engine.provenance["fit"]
    base = volsr.load_engine("sample_model")
    changed = [k for k, v in res.engine.ema.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v.cpu(), base.ema.state_dict()[k].cpu())]
    assert changed, "fine-tuning left the weights untouched"
    with pytest.raises(volsr.VolsrError, match="nothing to fine-tune|starting model"):
        volsr.restore(vol, engine="msunet", init_model="sample_model", fit_steps=1, z_factor=2)


def test_noise_match_adds_measured_noise_level_to_generated_planes():
    """noise_match=0 gives the smooth posterior estimate; the default adds noise only between measured planes."""
    rng = np.random.default_rng(3)
    vol = (0.5 + 0.1 * rng.standard_normal((5, 32, 32))).astype(np.float32)  # pure noise: all texture is noise
    kw = dict(model="sample_model", z_factor=4, sampling_steps=2, seed=0, output_dtype="float32")
    smooth = volsr.restore(vol, noise_match=0, **kw).data
    matched = volsr.restore(vol, **kw).data
    np.testing.assert_array_equal(smooth[::4], vol)
    np.testing.assert_array_equal(matched[::4], vol)

    def hp(planes):  # white-noise level from the second difference along x
        return np.std(np.diff(planes, 2, axis=-1)) / np.sqrt(6)

    between = np.ones(smooth.shape[0], bool)
    between[::4] = False
    assert hp(matched[between]) > hp(smooth[between])
    with pytest.raises(InputError, match="noise_match"):
        volsr.restore(vol, engine="linear", z_factor=2, noise_match=1)
