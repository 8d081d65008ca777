"""The MSDSR engine: config, training loss, restore, uncertainty, save/load."""

import warnings

import numpy as np
import pytest
import torch

from volsr.engines import create_engine
from volsr.engines.msdsr import PAPER_SETTING, MSDSREngine
from volsr.errors import Cancelled, VolsrError
from volsr.grid import OutputGrid


def _engine(**kw):
    """A one-stage engine (its network is the denoiser itself), outputs depending on inputs."""
    torch.manual_seed(0)
    if "loss" not in kw:
        kw.setdefault("condition", "linear")
    eng = MSDSREngine(preset="tiny", sampling_steps=3, **kw)
    with torch.no_grad():  # MONAI zero-initialises the output conv; make outputs depend on inputs
        for p in eng.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
        eng.ema.load_state_dict(eng.network.state_dict())
    eng.trained = True
    return eng


def _stripes(b=8, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(b, 1, 1, 1, generator=g) * 6.28
    freq = 0.3 + 0.3 * torch.rand(b, 1, 1, 1, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return 0.5 + 0.4 * torch.sin(freq * (yy + xx) + phase)


def _known(b, h, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(b, h, generator=g) < 0.3
    k[:, 0] = True
    return k


def test_registered_and_defaults():
    eng = create_engine("msdsr", preset="tiny")
    assert isinstance(eng, MSDSREngine) and eng.supports_uncertainty and eng.learned
    cfg = MSDSREngine.default_config()
    assert cfg["schedule"] == "cosine" and cfg["num_train_timesteps"] == 1000
    assert cfg["mask_channel"] is True and cfg["loss"] == "l1_unknown"
    assert cfg["prediction_type"] in ("epsilon", "sample", "v_prediction")


def test_paper_preset_selects_paper_setting():
    eng = MSDSREngine(preset="paper", device="cpu", config={"preset": "tiny"})  # tiny net, paper setting
    for k, v in PAPER_SETTING.items():
        assert eng.cfg[k] == v
    assert eng.cfg["preset"] == "tiny"


def test_paper_loss_implies_epsilon_and_no_mask_channel():
    eng = MSDSREngine(preset="tiny", loss="paper")
    assert eng.cfg["prediction_type"] == "epsilon" and eng.cfg["mask_channel"] is False
    with pytest.raises(VolsrError, match="loss='paper'"):
        MSDSREngine(preset="tiny", loss="paper", prediction_type="sample")


@pytest.mark.parametrize("key,value", [("prediction_type", "x0"), ("loss", "l2"), ("sampler", "euler"),
                                       ("sampling_steps", 0), ("eta", 1.5), ("data_range", "raw"),
                                       ("inference_mode", "patch"), ("preset", "huge"), ("crop", 4)])
def test_bad_config_is_refused_with_the_key(key, value):
    with pytest.raises(VolsrError, match=key):
        MSDSREngine(config={"preset": "tiny", key: value})


def _output_grad(eng, hr, known):
    """Gradient of the training loss w.r.t. the network output."""
    captured = {}
    net = eng.network

    class Wrap(torch.nn.Module):
        def forward(self, x, timesteps):
            out = net(x, timesteps=timesteps)
            out.retain_grad()
            captured["out"] = out
            return out

    eng.network = Wrap()
    try:
        loss = eng.training_loss(hr, known, torch.Generator().manual_seed(0))
        loss.backward()
    finally:
        eng.network = net
    return captured["out"].grad, loss


@pytest.mark.parametrize("pred", ["sample", "epsilon", "v_prediction"])
def test_default_loss_has_zero_gradient_on_known_rows(pred):
    eng = _engine(prediction_type=pred)
    hr, known = _stripes(4, 16, 16), _known(4, 16)
    grad, loss = _output_grad(eng, hr, known)
    assert torch.isfinite(loss)
    assert torch.all(grad[known[:, None, :, None].expand_as(grad)] == 0)
    assert torch.any(grad[(~known)[:, None, :, None].expand_as(grad)] != 0)


def test_paper_loss_targets_zero_on_known_rows_and_uses_all_pixels():
    eng = _engine(loss="paper")
    hr, known = _stripes(4, 16, 16), _known(4, 16)
    grad, _ = _output_grad(eng, hr, known)
    # L1 mean over all pixels: every pixel gets |grad| = 1 / numel (output never exactly on target)
    assert torch.allclose(grad.abs(), torch.full_like(grad, 1.0 / grad.numel()))


def test_known_rows_are_clean_in_x_t():
    eng = _engine()
    seen = {}
    net = eng.network

    class Spy(torch.nn.Module):
        def forward(self, x, timesteps):
            seen["x"] = x.detach()
            return net(x, timesteps=timesteps)

    eng.network = Spy()
    hr, known = _stripes(3, 16, 16), _known(3, 16)
    eng.training_loss(hr, known, torch.Generator().manual_seed(1))
    eng.network = net
    x = seen["x"]
    m = known[:, None, :, None].expand(3, 1, 16, 16)
    assert torch.allclose(x[:, :1][m], (hr * 2 - 1)[m])  # symmetric data range
    assert torch.equal(x[:, 1:2], m.float())  # the mask channel


def test_tiny_model_training_reduces_loss():
    torch.manual_seed(0)
    eng = MSDSREngine(preset="tiny", prediction_type="sample")
    hr_eval, known_eval = _stripes(16, 16, 16, seed=99), _known(16, 16, seed=99)

    def eval_loss():
        with torch.no_grad():
            return float(eng.training_loss(hr_eval, known_eval, torch.Generator().manual_seed(5)))

    before = eval_loss()
    opt = torch.optim.AdamW(eng.network.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(30):
        loss = eng.training_loss(_stripes(8, 16, 16, seed=step), _known(8, 16, seed=step), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before


def test_restore_preserves_known_rows_on_large_planes_any_size():
    eng = _engine()
    grid = OutputGrid(9, 2.5)  # non-integer factor: 21 rows
    planes = torch.rand(3, 1, grid.n_out, 150)  # wider than the 48-pixel training crop
    known = torch.from_numpy(grid.known_mask)
    out = eng.restore(planes, known, seed=0)
    assert out.shape == planes.shape and out.dtype == planes.dtype
    assert torch.equal(out[:, :, known], planes[:, :, known])
    assert torch.isfinite(out).all()


def test_restore_deterministic_with_seed_and_running_generator():
    eng = _engine(eta=1.0)
    planes, known = torch.rand(2, 1, 16, 16), torch.arange(16) % 4 == 0
    a, b = eng.restore(planes, known, seed=3), eng.restore(planes, known, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, eng.restore(planes, known, seed=4))
    eng.reset_generator(11)
    c1, c2 = eng.restore(planes, known), eng.restore(planes, known)
    eng.reset_generator(11)
    assert torch.equal(eng.restore(planes, known), c1) and not torch.equal(c1, c2)


def test_restore_with_std():
    eng = _engine(eta=1.0)
    planes, known = torch.rand(2, 1, 16, 24), torch.arange(16) % 4 == 0
    mean, std = eng.restore_with_std(planes, known, 3, seed=0)
    assert mean.shape == std.shape == planes.shape
    assert torch.all(std >= 0) and torch.all(std[:, :, known] == 0)
    assert torch.any(std[:, :, ~known] > 0)
    assert torch.equal(mean[:, :, known], planes[:, :, known])
    with pytest.raises(VolsrError, match="n_samples"):
        eng.restore_with_std(planes, known, 0)


def test_restore_progress_cancel_and_channel_check():
    eng = _engine()
    planes, known = torch.rand(2, 1, 16, 16), torch.arange(16) % 4 == 0
    calls = []
    eng.restore(planes, known, seed=0, progress=lambda s, d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)
    with pytest.raises(Cancelled):
        eng.restore(planes, known, seed=0, cancel=lambda: True)
    with pytest.raises(VolsrError, match="channel"):
        eng.restore(torch.rand(2, 3, 16, 16), known)


def test_untrained_engine_warns():
    eng = MSDSREngine(preset="tiny", sampling_steps=1)
    with pytest.warns(UserWarning, match="untrained"):
        eng.restore(torch.rand(1, 1, 8, 8), torch.arange(8) % 2 == 0)


def test_save_load_identical_outputs(tmp_path):
    eng = _engine(eta=1.0)
    eng.provenance = {"trained_on": "test stripes"}
    path = eng.save(tmp_path / "m.volsr")
    loaded = MSDSREngine.load(path)
    assert loaded.cfg == eng.cfg and loaded.trained
    planes, known = torch.rand(2, 1, 16, 20), torch.arange(16) % 3 == 0
    assert torch.equal(eng.restore(planes, known, seed=1), loaded.restore(planes, known, seed=1))


def test_restore_volume_end_to_end():
    from volsr.pipeline.volume import restore_volume

    eng = _engine()
    vol = np.random.default_rng(0).random((1, 5, 12, 10)).astype(np.float32)
    grid = OutputGrid(5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = restore_volume(vol, grid, eng).data
    assert out.shape == (1, grid.n_out, 12, 10)
    np.testing.assert_array_equal(out[:, grid.positions], vol)


def test_untrained_residual_model_reproduces_linear_interpolation():
    # MONAI zero-initialises the output conv: x0 = linear fill at every step, so the sample is linear interpolation
    from volsr.training.masks import linear_fill

    eng = MSDSREngine(preset="tiny", sampling_steps=4, eta=1.0, noise_match=0.0)
    eng.trained = True
    planes = torch.rand(2, 1, 17, 12)
    known = torch.arange(17) % 4 == 0
    out = eng.restore(planes, known, seed=0)
    assert torch.allclose(out, linear_fill(planes, known), atol=1e-5)


def test_noise_match_gives_unknown_rows_the_measured_noise_level():
    # default noise_match=1: the (smooth) linear sample of the untrained residual model gets the
    # white-noise level of the measured rows; measured rows stay exact
    from volsr.diffusion.sampler import row_noise_std
    from volsr.training.masks import linear_fill

    assert MSDSREngine.default_config()["noise_match"] == 1.0
    eng = MSDSREngine(preset="tiny", sampling_steps=2, condition="linear")  # one-stage: noise_match unscaled
    eng.trained = True
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 64)[None, None, None, :].expand(4, 1, 33, 64)
    planes = 0.5 * smooth + 0.05 * torch.randn(4, 1, 33, 64, generator=g)
    known = torch.arange(33) % 4 == 0
    out = eng.restore(planes, known, seed=0)
    assert torch.equal(out[:, :, known], planes[:, :, known])
    unknown = (~known).expand(4, 33)
    lin = linear_fill(planes, known)
    assert float(row_noise_std(lin, unknown).mean()) < 0.043  # interpolation averages the noise away (~0.8x)
    assert abs(float(row_noise_std(out, unknown).mean()) - 0.05) < 0.005
    with pytest.raises(VolsrError, match="noise_match"):
        MSDSREngine(preset="tiny", noise_match=-1.0)


def test_condition_channels_and_residual_validation():
    eng = MSDSREngine(preset="tiny", condition="linear")
    assert eng.network.conv_in.conv.in_channels == 1 + 1 + 1  # x_t, mask, linear condition
    eng = MSDSREngine(preset="tiny")  # default: two-stage, the denoiser sees x_t, mask, stage-1 estimate
    assert eng.cfg.two_stage and eng.network["denoiser"].conv_in.conv.in_channels == 3
    eng = MSDSREngine(preset="tiny", condition="none", residual=False, mask_channel=False)
    assert eng.network.conv_in.conv.in_channels == 1
    assert MSDSREngine(preset="tiny", prediction_type="v_prediction").cfg["residual"] is False
    with pytest.raises(VolsrError, match="residual"):
        MSDSREngine(preset="tiny", prediction_type="v_prediction", residual=True)
    with pytest.raises(VolsrError, match="residual"):
        MSDSREngine(preset="tiny", condition="none", residual=True)
