"""The brainsr engine: FFT patch loss, one-step latent sampler, both tasks, model files, config checks."""

import numpy as np
import pytest
import torch

import volsr
from volsr.api import upscale
from volsr.cli import main
from volsr.config import ConfigError
from volsr.engines.brainsr import BrainSREngine
from volsr.errors import ModelFileError
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume
from volsr.training.degrade import IsotropicDegradation
from volsr.training.losses import fft_patch_loss, patch_spectra

FIT = dict(steps=3, batch_size=2)  # one step per stage (autoencoder, denoiser, noise predictor)


def _blobs(shape=(64, 64), seed=0):
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


@pytest.fixture(scope="module")
def upscaler():
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    eng.fit(_blobs(), **FIT)
    return eng


# -- FFT patch loss ---------------------------------------------------------------------------
def test_fft_patch_loss_zero_for_identical_and_positive_for_blur():
    x = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(fft_patch_loss(x, x)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(fft_patch_loss(blurred, x)) > 0.1
    assert float(fft_patch_loss(blurred, x, reduction="mean")) == pytest.approx(
        float(fft_patch_loss(blurred, x)) / (4 * 16), rel=1e-5)


def test_fft_patch_loss_ignores_a_circular_shift_inside_a_patch():
    x = torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))  # one 4x4 patch (stride 2)
    shifted = torch.roll(x, shifts=(1, 3), dims=(2, 3))
    assert float(fft_patch_loss(shifted, x, patch=4, stride=2)) < 1e-5
    assert float((shifted - x).abs().mean()) > 0.1  # a pixel loss sees it


def test_patch_configuration_is_size_and_stride():
    spec = patch_spectra(torch.rand(1, 4, 8, 8), patch=4, stride=2)  # starts 0, 2, 4 per axis
    assert tuple(spec.shape) == (1, 9, 4, 4, 4)
    assert patch_spectra(torch.rand(1, 1, 16, 16), 8, 4).shape[1] == 9
    assert patch_spectra(torch.rand(1, 1, 9, 9), 4, 2).shape[1] == 16  # padded so the border is covered
    with pytest.raises(volsr.VolsrError, match="stride"):
        fft_patch_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), patch=2, stride=4)


# -- sampler, model file -----------------------------------------------------------------------
def test_one_step_sampler_shapes():
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=4))
    z = torch.randn(3, 4, 8, 10)
    assert eng.one_step(z).shape == z.shape
    assert eng.super_resolve(torch.rand(2, 1, 32, 40)).shape == (2, 1, 32, 40)
    out = eng.upscale(torch.rand(1, 1, 7, 9), 4)  # padded to the autoencoder x denoiser multiple and back
    assert out.shape == (1, 1, 28, 36) and torch.isfinite(out).all()


def test_stochastic_seeded_and_deterministic_without_sampling(upscaler):
    img = torch.from_numpy(_blobs((12, 12)))[None, None]
    a, b = upscaler.upscale(img, 2, seed=1), upscaler.upscale(img, 2, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, upscaler.upscale(img, 2, seed=2))


def test_save_load_round_trip(upscaler, tmp_path):
    path = upscaler.save(tmp_path / "b.volsr")
    back = volsr.load_engine(path)
    assert isinstance(back, BrainSREngine) and back.cfg == upscaler.cfg
    img = torch.from_numpy(_blobs((12, 16)))[None, None]
    torch.testing.assert_close(back.upscale(img, 2, seed=3), upscaler.upscale(img, 2, seed=3))
    assert float(back.network["autoencoder"].latent_std) == float(upscaler.ema["autoencoder"].latent_std)


# -- both tasks ------------------------------------------------------------------------------------
def test_cli_train_upscale_then_upscale_with_the_model(tmp_path):
    src = volsr.write_stack(tmp_path / "hr.tif", _blobs((64, 64), 2), "YX", spacing=(None, 0.5, 0.5))
    model = tmp_path / "m.volsr"
    assert main(["train", str(src), "-o", str(model), "--engine", "brainsr", "--preset", "tiny", "--task", "upscale",
                 "--scale", "4", "--steps", "2", "--batch-size", "2"]) == 0
    res = upscale(_blobs((10, 12), 3), model=model, output_dtype="float32")
    assert res.scale == 4 and res.data.shape == (40, 48) and np.isfinite(res.data).all()


def test_zero_shot_fit():
    res = upscale(_blobs((16, 16), 4), 2, engine="brainsr", fit_steps=1, output_dtype="float32")
    assert res.data.shape == (32, 32) and "zero-shot" in res.engine.provenance["fit"]


def test_rows_task_keeps_measured_rows_and_refuses_upscaling():
    vol = np.stack([_blobs((24, 24), s) for s in range(4)])[None]  # (C, Z, Y, X)
    eng = BrainSREngine(preset="tiny")
    eng.fit(vol[0], **FIT)
    grid = OutputGrid(4, 3)
    res = restore_volume(vol, grid, eng)
    assert res.data.shape == (1, grid.n_out, 24, 24) and np.isfinite(res.data).all()
    np.testing.assert_allclose(res.data[:, grid.positions], vol, atol=1e-6)
    with pytest.raises(volsr.VolsrError, match="trained to restore z"):
        eng.upscale(torch.rand(1, 1, 8, 8), 2)
    mean, std = eng.restore_with_std(torch.rand(2, 1, 12, 16), torch.arange(12) % 3 == 0, 3)
    assert std.shape == mean.shape and float(std[:, :, ::3].abs().max()) == 0.0 and float(std.max()) > 0


def test_upscale_model_refuses_rows(upscaler):
    with pytest.raises(volsr.VolsrError, match="trained to upscale"):
        upscaler.restore(torch.rand(1, 1, 8, 8), torch.arange(8) % 2 == 0)
    with pytest.raises(volsr.VolsrError, match="trained for 2x"):
        upscaler.upscale(torch.rand(1, 1, 8, 8), 3)


# -- pretrained parts ----------------------------------------------------------------------------
def test_pretrained_parts_load_freeze_and_refuse_misfits(tmp_path):
    from monai.networks.nets import AutoencoderKL
    from safetensors.torch import save_file

    ae = AutoencoderKL(spatial_dims=2, channels=(8, 8, 16), latent_channels=4, norm_num_groups=4,
                       attention_levels=(False,) * 3, num_res_blocks=1,
                       with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp_path / "ae.safetensors"))
    eng = BrainSREngine.from_pretrained_parts(autoencoder=tmp_path / "ae.safetensors", preset="tiny",
                                              degradation=IsotropicDegradation(scale=2), latent_scale=0.5)
    assert eng.cfg.freeze == ("autoencoder",)
    assert [p.name for p in eng.trainable_parts()] == ["denoiser", "noise_predictor"]
    eng.fit(_blobs(), **FIT)
    for k, v in ae.state_dict().items():
        torch.testing.assert_close(eng.ema["autoencoder"].state_dict()[k], v)
    with pytest.raises(ModelFileError, match="does not fit the configured MONAI autoencoder"):
        BrainSREngine.from_pretrained_parts(autoencoder=tmp_path / "ae.safetensors", preset="small")
    with pytest.raises(ModelFileError, match="do not exist"):
        BrainSREngine.from_pretrained_parts(denoiser=tmp_path / "nope.safetensors", preset="tiny")


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    ({"lambda_fft": -1.0}, "lambda_fft"),
    ({"lambda_fft": 0.0, "lambda_perceptual": 0.0}, "no loss"),
    ({"fft_patch": 4, "fft_stride": 8}, "fft_stride"),
    ({"fft_patch": 0}, "fft_patch"),
    ({"fft_patch": 16, "crop": 32}, "smaller than fft_patch"),
    ({"kl_weight": 2.0}, "kl_weight"),
    ({"lambda_ae_adv": -0.1}, "lambda_ae_adv"),
    ({"ae_adv_start": -1}, "ae_adv_start"),
    ({"t_star": 1000}, "t_star"),
    ({"ae_channels": (8, 16)}, "ae_channels"),
    ({"ae_norm_groups": 3}, "ae_norm_groups"),
    ({"perceptual": "lpips"}, "perceptual"),
    ({"freeze": ("noise_predictor",)}, "freeze"),
    ({"bogus": 1}, "unknown config key"),
])
def test_config_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        BrainSREngine(preset="tiny", **bad)


def test_registered_with_capabilities():
    from volsr.engines import get_engine_class

    cls = get_engine_class("brainsr")
    caps = cls.capabilities
    assert cls is BrainSREngine and caps.learned and caps.upscale and caps.rows and caps.stochastic
    assert "brainsr" in volsr.list_engines()


def test_adversarial_term_after_its_delay_and_paper_preset_config():
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2), lambda_adv=0.1, adv_start=1)
    assert "discriminator" in [p.name for p in eng.trainable_parts()]
    hr = torch.rand(2, 1, 32, 32)
    disc = eng.network["discriminator"]
    eng.training_loss(hr, None).backward()  # step 0: before the delay, no adversarial gradient
    assert all(p.grad is None for p in disc.parameters())
    eng.training_loss(hr, None).backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in disc.parameters())
    cfg = BrainSREngine.make_config(preset="paper")
    assert (cfg.lambda_adv, cfg.lambda_fft, cfg.lambda_perceptual, cfg.lambda_l2) == (0.08, 0.4, 0.7, 0.0)
    assert (cfg.fft_patch, cfg.fft_stride) == (4, 2)


def test_autoencoder_adversarial_term_trains_with_the_autoencoder_after_its_warm_up():
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2), lambda_ae_adv=0.1, ae_adv_start=1)
    assert [s.parts for s in eng.training_stages()][0] == ("autoencoder", "ae_discriminator")
    eng.training_stage = "autoencoder"
    hr = torch.rand(2, 1, 32, 32)
    disc, ae = eng.network["ae_discriminator"], eng.network["autoencoder"]
    eng.training_loss(hr, None).backward()  # step 0: warm-up, L1 + KL only
    assert all(p.grad is None for p in disc.parameters()) and int(disc.steps) == 1
    for p in ae.parameters():
        p.grad = None
    with_adv = eng.training_loss(hr, None)
    with_adv.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in disc.parameters())
    assert torch.isfinite(with_adv) and int(disc.steps) == 2
    # off by default, and no part to train when the autoencoder is pretrained and frozen
    assert "ae_discriminator" not in BrainSREngine(preset="tiny").network
    frozen_ae = BrainSREngine(preset="tiny", lambda_ae_adv=0.1, freeze=("autoencoder",))
    assert "ae_discriminator" not in [p.name for p in frozen_ae.trainable_parts()]


# -- staged fit ----------------------------------------------------------------------------------
def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items())


def test_staged_fit_trains_one_part_per_stage_and_settles_it_on_its_ema():
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    assert [(s.name, s.end) for s in eng.training_stages()] == [
        ("autoencoder", 0.45), ("denoiser", 0.7), ("noise_predictor", 1.0)]
    img = _blobs()
    seen = []
    for steps, trained in ((2, {"autoencoder", "noise_predictor"}), (3, {"autoencoder", "denoiser", "noise_predictor"})):
        eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
        before = {k: _weights(eng.network[k]) for k in ("autoencoder", "denoiser", "noise_predictor")}
        eng.fit(img, steps=steps, batch_size=2)
        seen.append({k for k, w in before.items() if _changed(w, eng.network[k])})
        assert seen[-1] == trained
    # a part that stopped training holds its EMA weights (what inference uses)
    for k, v in eng.ema["autoencoder"].state_dict().items():
        torch.testing.assert_close(eng.network["autoencoder"].state_dict()[k], v)
    latent_std = float(eng.network["autoencoder"].latent_std)
    eng.fit(img, steps=3, batch_size=2)  # fine-tuning runs the stages again
    assert eng.training_stage == "noise_predictor" and float(eng.network["autoencoder"].latent_std) != latent_std


def test_stages_skip_frozen_parts_and_joint_fit_is_one_stage():
    eng = BrainSREngine(preset="tiny", stages=(0.5, 0.75), freeze=("autoencoder",), latent_scale=1.0)
    assert [(s.name, s.end) for s in eng.training_stages()] == [("denoiser", 0.5), ("noise_predictor", 1.0)]
    joint = BrainSREngine(preset="tiny", stages=())
    assert [s.name for s in joint.training_stages()] == ["joint"]
    with pytest.raises(ConfigError, match="stages"):
        BrainSREngine(preset="tiny", stages=(0.7, 0.5))


def test_stage_plan_locates_fractions():
    from volsr.engines.learned import TrainingStage
    from volsr.training.budget import StagePlan

    plan = StagePlan([TrainingStage("a", ("a",), 0.25), TrainingStage("b", ("b",), 1.0)])
    assert plan.locate(0.0) == (0, 0.0) and plan.locate(0.125) == (0, 0.5) and plan.locate(0.625) == (1, 0.5)
    assert plan.locate(1.0) == (1, 1.0)
    with pytest.raises(volsr.VolsrError, match="increasing"):
        StagePlan([TrainingStage("a", ("a",), 0.5), TrainingStage("b", ("b",), 0.5)])


def test_staged_fit_resumes_to_the_uninterrupted_weights(tmp_path):
    from volsr.errors import Cancelled

    img, fit = _blobs(), dict(steps=6, batch_size=2, seed=1)
    a = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    torch.manual_seed(0)
    a.rebuild(a.cfg)
    a.fit(img, **fit)

    def stop_in_the_denoiser_stage(stage, done, total, **info):
        if done == 4:
            raise Cancelled("stop")

    ckpt = tmp_path / "b.ckpt"
    b = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    torch.manual_seed(0)
    b.rebuild(b.cfg)
    with pytest.raises(Cancelled):
        b.fit(img, checkpoint_path=ckpt, progress=stop_in_the_denoiser_stage, **fit)
    c = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    rep = c.fit(img, checkpoint_path=ckpt, resume=True, **fit)
    assert rep["resumed_from"] == 4 and c.training_stage == "noise_predictor"
    for k, v in a.ema.state_dict().items():
        torch.testing.assert_close(c.ema.state_dict()[k], v, atol=1e-6, rtol=0)


def test_staged_fit_reports_the_training_part():
    parts, losses = [], []
    eng = BrainSREngine(preset="tiny", degradation=IsotropicDegradation(scale=2))
    eng.fit(_blobs(), steps=3, batch_size=2, progress=lambda stage, done, total, **info: parts.append(info["part"]))
    assert parts == ["autoencoder", "denoiser", "noise_predictor"]
    eng.fit(_blobs(), steps=1, batch_size=2, progress=lambda stage, done, total, loss=None: losses.append(loss))
    assert len(losses) == 1 and losses[0] > 0  # a callback taking only loss= gets only loss=
