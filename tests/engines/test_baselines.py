"""MS-UNet and E2E-UNet baseline engines."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from volsr.engines import create_engine
from volsr.engines.e2e_unet import E2EUNetEngine, subdivision_plan
from volsr.engines.msunet import MSUNetEngine
from volsr.engines.unet_common import forward_padded as run_padded
from volsr.errors import InputError, VolsrError
from volsr.grid import OutputGrid


def tiny(name="msunet", **kw):
    torch.manual_seed(0)
    return create_engine(name, preset="tiny", **kw)


def known_mask(h, step):
    k = torch.zeros(h, dtype=torch.bool)
    k[::step] = True
    return k


@pytest.mark.parametrize("shape", [(2, 1, 17, 33), (1, 1, 48, 48), (3, 1, 5, 70), (1, 1, 61, 9)])
def test_msunet_any_size_known_rows_exact(shape):
    eng = tiny()
    planes = torch.rand(shape)
    known = known_mask(shape[2], 4)
    out = eng.restore(planes, known)
    assert out.shape == planes.shape and torch.isfinite(out).all()
    assert torch.equal(out[:, :, known], planes[:, :, known])


def test_msunet_batching_and_per_sample_masks_match_unbatched():
    eng = tiny()
    planes = torch.rand(5, 1, 24, 40)
    known = torch.stack([known_mask(24, s) for s in (2, 3, 4, 5, 6)])
    full = eng.restore(planes, known)
    chunked = eng.restore(planes, known, batch_size=2)
    assert torch.allclose(full, chunked, atol=1e-5)
    one = eng.restore(planes[3:4], known[3])
    assert torch.allclose(full[3:4], one, atol=1e-5)


def test_msunet_noise_fill_is_seeded():
    eng = tiny(fill="noise", residual=False)
    planes = torch.rand(2, 1, 16, 16)
    known = known_mask(16, 4)
    a = eng.restore(planes, known, seed=1)
    b = eng.restore(planes, known, seed=1)
    c = eng.restore(planes, known, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_msunet_zero_network_residual_is_linear_interpolation():
    eng = tiny()
    with torch.no_grad():
        for p in eng.ema.parameters():
            p.zero_()
    ramp = torch.arange(20, dtype=torch.float32)[None, None, :, None].expand(1, 1, 20, 8) / 20
    known = known_mask(20, 4)
    known[19] = True
    out = eng.restore(ramp * known[None, None, :, None], known)  # unknown rows given as zeros
    assert torch.allclose(out, ramp, atol=1e-6)


def test_msunet_inputs_mask_channel_and_fills():
    planes = torch.rand(2, 1, 8, 8)
    known = known_mask(8, 2)
    x = tiny().regressor.inputs(planes, known, None)
    assert x.shape == (2, 2, 8, 8) and torch.equal(x[:, 1, :, 0], known.float().expand(2, 8))
    x = tiny(fill="zeros", residual=False, mask_channel=False).regressor.inputs(planes, known, None)
    assert x.shape == (2, 1, 8, 8) and torch.all(x[:, :, ~known] == 0)
    g = torch.Generator().manual_seed(0)
    x = tiny(fill="noise", residual=False).regressor.inputs(planes, known, g)
    assert torch.equal(x[:, 0, known], planes[:, 0, known]) and not torch.equal(x[:, 0], planes[:, 0])


def test_msunet_loss_rows_unknown_ignores_known_rows(monkeypatch):
    eng = tiny(loss_rows="unknown")
    hr = torch.rand(2, 1, 16, 16, requires_grad=True)
    known = torch.stack([known_mask(16, 3), known_mask(16, 5)])
    pred_rows = {}

    def fake_forward(net, x, chunk_pixels=None):
        out = x[:, :1].detach().clone().requires_grad_(True)
        pred_rows["out"] = out
        return out

    monkeypatch.setattr("volsr.engines.msunet.forward_padded", fake_forward)
    loss = eng.training_loss(hr.detach(), known)
    loss.backward()
    grad = pred_rows["out"].grad
    kk = known[:, None, :, None].expand_as(grad)
    assert torch.all(grad[kk] == 0) and torch.any(grad[~kk] != 0)


def test_msunet_presets_and_bad_config():
    assert MSUNetEngine(preset="small").cfg["features"] == [16, 16, 32, 64, 128, 16]
    paper = MSUNetEngine(preset="paper")
    assert paper.cfg["fill"] == "noise" and paper.cfg["residual"] is False and paper.cfg["lr"] == 1e-3
    assert paper.cfg["mask_channel"] is False and paper.cfg["features"][0] == 32
    with pytest.raises(VolsrError, match="preset"):
        MSUNetEngine(preset="huge")
    with pytest.raises(VolsrError, match="fill"):
        MSUNetEngine(preset="tiny", fill="magic")
    with pytest.raises(VolsrError, match="residual"):
        MSUNetEngine(preset="tiny", fill="noise", residual=True)
    with pytest.raises(VolsrError, match="loss_rows"):
        MSUNetEngine(preset="tiny", loss_rows="some")


def test_msunet_wrong_channels_refused():
    eng = tiny()
    with pytest.raises(VolsrError, match="trained for 1 channel"):
        eng.restore(torch.rand(1, 2, 16, 16), known_mask(16, 4))
    with pytest.raises(VolsrError, match="channel"):
        eng.training_loss(torch.rand(2, 3, 16, 16), torch.stack([known_mask(16, 4)] * 2))


def test_run_padded_crops_back():
    net = torch.nn.Identity()
    x = torch.rand(2, 3, 7, 19)
    assert torch.equal(run_padded(net, x), x)
    assert torch.equal(run_padded(net, x, chunk_pixels=10), x)


# -- e2e-unet -------------------------------------------------------------------------------
def test_subdivision_plan_power_of_two_and_odd_gaps():
    calls, rows = subdivision_plan(0, 8)
    assert sorted(c[1] for c in calls) == [1, 2, 3, 4, 5, 6, 7]
    assert all(w == 0.0 for (_, _, w) in rows.values())
    assert calls[0] == (0.0, 4.0, 8.0)  # the first call is the midpoint of the measured pair
    calls, rows = subdivision_plan(0, 3)
    assert [c[1] for c in calls] == [1.5, 0.75, 2.25]
    assert rows[1] == (0.75, 1.5, pytest.approx(1 / 3)) and rows[2] == (1.5, 2.25, pytest.approx(2 / 3))
    calls, rows = subdivision_plan(5, 6)
    assert calls == [] and rows == {}


def zero_e2e():
    eng = tiny("e2e-unet")
    with torch.no_grad():
        for p in eng.ema.parameters():
            p.zero_()
    return eng


@pytest.mark.parametrize("factor", [2, 3, 4, 2.5])
def test_e2e_restore_volume_zero_network_is_linear_in_z(factor):
    eng = zero_e2e()  # residual: midpoint = mean of the two planes -> exact linear interpolation
    grid = OutputGrid(5, factor)
    zz = np.arange(grid.n_out, dtype=np.float32)
    truth = np.broadcast_to((zz / grid.n_out)[None, :, None, None], (1, grid.n_out, 12, 20)).copy()
    truth += np.random.default_rng(0).random((1, 1, 12, 20)).astype(np.float32)
    measured = truth[:, grid.positions]
    out = eng.restore_volume(measured, grid)
    assert isinstance(out, np.ndarray) and out.shape == truth.shape
    assert np.array_equal(out[:, grid.positions], measured)
    assert np.allclose(out, truth, atol=1e-5)
    t = eng.restore_volume(torch.from_numpy(measured), grid, batch_size=1)
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), out, atol=1e-6)


def test_e2e_restore_volume_progress_cancel_and_checks():
    eng = tiny("e2e-unet")
    grid = OutputGrid(3, 4)
    vol = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    calls = []
    out = eng.restore_volume(vol, grid, batch_size=2, progress=lambda s, d, t: calls.append((s, d, t)))
    assert out.shape == (1, 9, 16, 16) and calls[-1][1] == calls[-1][2] and calls[0][0] == "restore"
    from volsr.errors import Cancelled

    with pytest.raises(Cancelled):
        eng.restore_volume(vol, grid, cancel=lambda: True)
    with pytest.raises(InputError):
        eng.restore_volume(vol[:, :2], grid)
    with pytest.raises(VolsrError, match="channel"):
        eng.restore_volume(np.zeros((2, 3, 16, 16), np.float32), grid)


def test_e2e_plane_restore_refused_with_hint():
    eng = tiny("e2e-unet")
    with pytest.raises(VolsrError, match="volume pipeline"):
        eng.restore(torch.rand(1, 1, 9, 9), known_mask(9, 4))


def test_e2e_needs_volumetric_training_data():
    eng = tiny("e2e-unet")
    planes_2d = [np.random.default_rng(i).random((40, 40)).astype(np.float32) for i in range(3)]
    with pytest.raises(VolsrError, match="volumetric"):
        eng.fit(planes_2d, steps=2, crop=32)
    with pytest.raises(VolsrError, match="triplets"):
        eng.training_loss(torch.rand(2, 1, 16, 16), None)


def test_e2e_fit_reduces_loss_on_smooth_volume():
    vol = gaussian_filter(np.random.default_rng(0).random((24, 48, 48)), 2.0).astype(np.float32)
    eng = tiny("e2e-unet", residual=False)  # from scratch (the residual default starts at the mean plane)
    rep = eng.fit(vol, steps=30, batch_size=4, crop=32, log_every=10, seed=0)
    hist = [v for _, v in rep["loss_history"]]
    assert rep["steps"] == 30 and hist[-1] < 0.85 * hist[0]
    assert "triplets" in eng.provenance["trained_on"] and isinstance(eng, E2EUNetEngine)
