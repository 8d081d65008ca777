"""Damaged planes (``restore(..., damaged=...)``): restored like unmeasured rows, the others kept bit-exact."""

import numpy as np
import pytest

import volsr
from volsr import InputError
from volsr.engines import create_engine
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume


def _vol(shape=(6, 20, 24), seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in shape), indexing="ij")
    base = 0.5 + 0.25 * np.sin(6 * x + 3 * y) * np.cos(4 * z) + 0.2 * rng.random(shape)
    return (base * 1000).astype(np.float32)


def _interp_columns(rows, values, n_out):
    """Reference: np.interp along z per column (held at the edges)."""
    _, ny, nx = values.shape
    flat = values.reshape(values.shape[0], -1)
    out = np.stack([np.interp(np.arange(n_out), rows, flat[:, k]) for k in range(flat.shape[1])], axis=-1)
    return out.reshape(n_out, ny, nx)


def test_linear_pipeline_interpolates_across_the_wider_gap_exactly():
    # integer values: the linear weights (quarters of a 4-row gap) are exact in float32
    vol = np.random.default_rng(1).integers(0, 16, (1, 6, 8, 9)).astype(np.float32)
    grid = OutputGrid(6, 2, damaged=(2,))
    out = restore_volume(vol, grid, create_engine("linear")).data
    expected = _interp_columns(grid.good_positions, vol[0, grid.good], grid.n_out).astype(np.float32)
    np.testing.assert_array_equal(out[0], expected)
    # the damaged plane's own row (4) is the mean of its good neighbours (planes 1 and 3, rows 2 and 6)
    np.testing.assert_array_equal(out[0, 4], 0.5 * (vol[0, 1] + vol[0, 3]))


@pytest.mark.parametrize("engine", ["nearest", "linear", "cubic"])
def test_interpolation_damaged_plane_restored_others_bit_exact(engine):
    data = _vol()
    data[3] = 0.0  # a lost section
    ref = volsr.restore(data, engine=engine, z_factor=2)
    res = volsr.restore(data, engine=engine, z_factor=2, damaged="3")
    assert res.damaged == (3,)
    assert res.data.shape == ref.data.shape and res.spacing == ref.spacing
    assert res.grid.positions.tolist() == ref.grid.positions.tolist()  # the grid is unchanged
    for i, p in enumerate(res.grid.positions):
        if i != 3:
            np.testing.assert_array_equal(res.data[p], data[i])
    assert not np.array_equal(res.data[6], data[3])
    if engine == "linear":
        np.testing.assert_allclose(res.data[6], 0.5 * (data[2] + data[4]), rtol=1e-5)
        np.testing.assert_allclose(res.data[5], 0.75 * data[2] + 0.25 * data[4], rtol=1e-5)


def test_damaged_edge_planes_hold_the_nearest_good_plane():
    data = _vol()
    res = volsr.restore(data, engine="linear", z_factor=2, damaged=[0, 5])
    np.testing.assert_allclose(res.data[0], data[1], rtol=1e-6)
    np.testing.assert_allclose(res.data[-1], data[4], rtol=1e-6)
    np.testing.assert_array_equal(res.data[2], data[1])


def test_saved_file_records_only_the_good_planes_as_measured(tmp_path):
    data = _vol()
    res = volsr.restore(data, engine="linear", z_factor=2.5, damaged="1,3-4")
    out = res.save(tmp_path / "out.tif")
    back = volsr.read_stack(out)
    assert back.data.shape == res.data.shape
    assert list(back.measured_planes) == [int(round(i * 2.5)) for i in (0, 2, 5)]


def test_bad_damaged_planes_are_refused_before_any_work():
    data = _vol()
    for bad, match in [("6", "outside the stack"), ("-1", "negative"), ("x", "not a plane number"),
                       ("5-3", "backwards"), ("a-b", "not a plane number"), ("0-5", "every plane"),
                       ("0-4", "at least 2 good planes"), ([1.5], "whole number")]:
        with pytest.raises(InputError, match=match):
            volsr.restore(data, engine="linear", z_factor=2, damaged=bad)
    with pytest.raises(InputError, match="damaged planes"):
        volsr.restore(data[:1], engine="linear", z_factor=2, damaged="0")


def test_fit_drops_the_damaged_planes(monkeypatch):
    from volsr.engines.msunet import MSUNetEngine

    seen = {}
    real_fit = MSUNetEngine.fit

    def spy(self, data, **kw):
        seen["data"] = np.asarray(data).copy()
        return real_fit(self, data, **kw)

    monkeypatch.setattr(MSUNetEngine, "fit", spy)
    data = _vol((6, 32, 32))
    data[2] = 1e4  # a fold: it must not reach the training data
    volsr.restore(data, engine="msunet", fit_steps=1, z_factor=2, device="cpu", damaged=(2,),
                  engine_options={"preset": "tiny"}, precision="float32")
    assert seen["data"].shape == (1, 5, 32, 32)
    np.testing.assert_array_equal(seen["data"][0], np.delete(data, 2, axis=0))


def test_msunet_model_file_restores_damaged_rows_and_keeps_the_others(tmp_path):
    data = _vol((6, 32, 32))
    data[3] = 0.0
    model_out = tmp_path / "m.volsr"
    volsr.restore(data, engine="msunet", fit_steps=2, z_factor=2, device="cpu", model_out=model_out,
                  engine_options={"preset": "tiny"}, damaged="3", precision="float32")
    ref = volsr.restore(data, model=model_out, z_factor=2, device="cpu", precision="float32")
    res = volsr.restore(data, model=model_out, z_factor=2, device="cpu", damaged="3", precision="float32")
    assert res.engine.name == "msunet"
    assert res.data.shape == ref.data.shape == (11, 32, 32) and res.spacing == ref.spacing
    for i, p in enumerate(res.grid.positions):
        if i != 3:
            np.testing.assert_array_equal(res.data[p], data[i])
    assert not np.array_equal(res.data[6], data[3])  # restored, not the damaged input
    assert float(np.abs(res.data[6]).mean()) > 1.0


def test_e2e_unet_honours_the_mask():
    from volsr.engines import create_engine

    eng = create_engine("e2e-unet", device="cpu", preset="tiny")
    vol = np.random.default_rng(0).random((1, 5, 16, 16)).astype(np.float32)
    grid = OutputGrid(5, 2, damaged=(2,))
    eng.trained = True
    out = eng.restore_volume(vol, grid)
    assert out.shape == (1, 9, 16, 16)
    for i in (0, 1, 3, 4):
        np.testing.assert_array_equal(out[0, 2 * i], vol[0, i])
    assert not np.allclose(out[0, 4], vol[0, 2])


def test_restore_plane_takes_damaged():
    data = _vol()
    res = volsr.api.restore_plane(data, axis="xz", index=3, engine="linear", z_factor=2, damaged="2")
    assert res.measured_rows.tolist() == [0, 2, 6, 8, 10]
    full = volsr.restore(data, engine="linear", z_factor=2, damaged="2", planes="xz")
    np.testing.assert_array_equal(res.data, full.data[:, 3, :])


def test_msdsr_two_stage_fills_the_damaged_rows_from_the_mask():
    data = _vol((6, 32, 32))
    data[3] = 0.0
    res = volsr.restore(data, engine="msdsr", fit_steps=1, z_factor=2, device="cpu", damaged=[3],
                        engine_options={"preset": "tiny"}, sampling_steps=1, precision="float32")
    assert res.data.shape == (11, 32, 32)
    for i, p in enumerate(res.grid.positions):
        if i != 3:
            np.testing.assert_array_equal(res.data[p], data[i])
    assert not np.array_equal(res.data[6], data[3])
