"""One-step MSDSR: the learned noise map (Brain-SR's scheme), its distil stage, sampler, CLI."""

import numpy as np
import pytest
import torch

from volsr.cli import main
from volsr.diffusion.schedule import one_step_scheduler
from volsr.engines.msdsr import MSDSREngine
from volsr.errors import VolsrError


def _fitted(seed=0, **kw):
    """A two-stage tiny engine whose outputs depend on its inputs (as after a fit)."""
    torch.manual_seed(seed)
    eng = MSDSREngine(preset="tiny", crop=32, **kw)
    with torch.no_grad():  # MONAI zero-initialises the output conv; make outputs depend on inputs
        for p in eng.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
        eng.ema.load_state_dict(eng.network.state_dict())
    eng.trained = True
    return eng


def _volume(z=6, side=48, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.random((z, side, side)), (0, 1.5, 1.5)).astype(np.float32)


def _planes(n=3, h=13, w=40):
    g = torch.Generator().manual_seed(1)
    planes = torch.rand(n, 1, h, w, generator=g)
    known = torch.zeros(h, dtype=torch.bool)
    known[::4] = True
    return planes, known


@pytest.fixture(scope="module")
def distilled():
    eng = _fitted()
    eng.distil(_volume(), steps=4, batch_size=4, seed=0)
    return eng


def test_one_step_scheduler_returns_the_x0_prediction():
    sched, model_t = one_step_scheduler(300)
    assert model_t.tolist() == [300]
    x0, xt = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    out, _ = sched.step(x0, int(sched.timesteps[0]), xt, eta=0.0)
    assert torch.equal(out, x0)


def test_spectrum_loss_is_unpaired_but_sees_missing_texture():
    from volsr.training.losses import fft_patch_loss, fft_spectrum_loss

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 1, 16, 16, generator=g), torch.randn(8, 1, 16, 16, generator=g)
    # b: another texture of a's statistics. Unpaired: best at full amplitude, far below no texture;
    # paired: prefers the texture shrunk to 70 % (why the paired loss makes one-step outputs smooth)
    assert float(fft_spectrum_loss(b, a)) < 0.1 * float(fft_spectrum_loss(torch.zeros_like(a), a))
    assert float(fft_spectrum_loss(b, a)) < float(fft_spectrum_loss(0.7 * b, a))
    assert float(fft_patch_loss(0.7 * b, a)) < float(fft_patch_loss(b, a))
    assert float(fft_spectrum_loss(a.flip(0), a)) < 1e-5


def test_untrained_noise_map_is_sdedit_from_the_estimate():
    eng = _fitted()
    eng.add_noise_map()
    cond = torch.randn(2, 1, 9, 12)
    m = torch.zeros(2, 1, 9, 1, dtype=torch.bool)
    m[:, :, ::4] = True
    xk = torch.full_like(cond, 7.0)
    got = eng._start_state(eng.ema, xk, m, cond, 400, torch.Generator().manual_seed(3))
    abar = eng._train_scheduler().alphas_cumprod[400].float()
    want = abar.sqrt() * cond + (1 - abar).sqrt() * torch.randn(cond.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got[~m.expand_as(got)], want[~m.expand_as(want)], atol=1e-6)
    assert torch.equal(got[m.expand_as(got)], xk[m.expand_as(xk)])  # known rows clean


def test_refused_without_a_trained_noise_map():
    eng = _fitted()
    planes, known = _planes()
    with pytest.raises(VolsrError, match="volsr distil"):
        eng.restore(planes, known, sampler="one-step")
    eng.add_noise_map()  # built but never trained
    with pytest.raises(VolsrError, match="trained noise map"):
        eng.restore(planes, known, sampler="one-step")
    with pytest.raises(VolsrError, match="two-stage"):
        MSDSREngine(preset="tiny", condition="linear", one_step=True)
    with pytest.raises(VolsrError, match="fft_pairing"):
        MSDSREngine(preset="tiny", fft_pairing="pixel")


def test_distil_trains_only_the_noise_map_and_records_the_stage(distilled):
    before = _fitted()
    for part in ("regressor", "denoiser"):
        for k, v in before.ema[part].state_dict().items():
            assert torch.equal(v, distilled.ema[part].state_dict()[k]), f"{part}.{k} changed"
    assert int(distilled.ema["noise_map"].steps) == 4
    assert float(distilled.ema["noise_map"].head.weight.abs().sum()) > 0  # moved off its zero start
    assert distilled.provenance["stage"] == "one-step distillation"
    assert distilled.provenance["one_step"]["steps"] == 4
    planes, known = _planes()  # the DDIM path is untouched by the added noise map
    assert torch.equal(before.restore(planes, known, seed=0, sampling_steps=2),
                       distilled.restore(planes, known, seed=0, sampling_steps=2))


def test_one_step_output_known_rows_and_one_call_per_plane_batch(distilled):
    planes, known = _planes(n=3)
    calls = []
    hook = distilled.ema["denoiser"].register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    try:
        out = distilled.restore(planes, known, sampler="one-step", seed=0)
        assert calls == [3]  # all three planes in one batch: one call
        calls.clear()
        distilled.restore(planes, known, sampler="one-step", seed=0, batch_size=1)
        assert calls == [1, 1, 1]
    finally:
        hook.remove()
    assert out.shape == planes.shape
    assert torch.equal(out[:, :, known], planes[:, :, known])
    assert torch.isfinite(out).all() and float((out[:, :, ~known] - planes[:, :, ~known]).abs().mean()) > 0.01
    assert torch.equal(out, distilled.restore(planes, known, sampler="one-step", seed=0))  # seeded


def test_trained_noise_map_changes_the_output(distilled):
    planes, known = _planes()
    untrained = _fitted()
    untrained.add_noise_map()
    untrained.ema["noise_map"].steps.fill_(1)  # let the SDEdit start (zero head) through the check
    a = distilled.restore(planes, known, sampler="one-step", seed=0, noise_match=0.0)
    b = untrained.restore(planes, known, sampler="one-step", seed=0, noise_match=0.0)
    assert float((a - b).abs().mean()) > 1e-4


def test_save_load_keeps_the_noise_map(distilled, tmp_path):
    path = distilled.save(tmp_path / "m.volsr")
    back = MSDSREngine.load(path)
    assert back.cfg.one_step and back.noise_map_trained
    for k, v in distilled.ema["noise_map"].state_dict().items():
        assert torch.equal(v, back.ema["noise_map"].state_dict()[k])
    planes, known = _planes()
    assert torch.equal(distilled.restore(planes, known, sampler="one-step", seed=2),
                       back.restore(planes, known, sampler="one-step", seed=2))
    old = _fitted().save(tmp_path / "old.volsr")  # a model without the noise map loads as before
    assert "noise_map" not in MSDSREngine.load(old).ema


def test_cli_distil(tmp_path, capsys):
    import tifffile

    model = _fitted().save(tmp_path / "fit.volsr")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, _volume())
    out = tmp_path / "one.volsr"
    assert main(["distil", str(model), str(stack), "-o", str(out), "--steps", "2", "--batch-size", "2",
                 "--device", "cpu"]) == 0
    eng = MSDSREngine.load(out)
    assert int(eng.ema["noise_map"].steps) == 2 and eng.provenance["stage"] == "one-step distillation"
    assert main(["distil", str(model), str(stack), "-o", str(out), "--steps", "1"]) != 0
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_distil_is_a_declared_capability_and_the_cli_asks_it(tmp_path, capsys):
    from volsr.engines import get_engine_class, list_engines

    assert [n for n in list_engines() if get_engine_class(n).capabilities.distil] == ["msdsr"]
    other = tmp_path / "msunet.volsr"
    stack = tmp_path / "stack.tif"
    import tifffile

    tifffile.imwrite(stack, _volume())
    assert main(["train", str(stack), "-o", str(other), "--engine", "msunet", "--preset", "tiny", "--steps", "1",
                 "--crop", "16"]) == 0
    capsys.readouterr()
    assert main(["distil", str(other), str(stack), "-o", str(tmp_path / "one.volsr"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "is a 'msunet' model; volsr distil trains the one-step sampler of msdsr models" in err
    assert not (tmp_path / "one.volsr").exists()
