"""Network presets and noise schedules of MSDSR."""

import pytest
import torch

from volsr.diffusion.schedule import sampling_scheduler, sampling_timesteps, training_scheduler
from volsr.models import build_diffusion_unet, count_parameters, preset_names, size_multiple
from volsr.models.diffusion_unet import PAPER_PARAMETERS


def test_presets_listed():
    assert {"tiny", "small", "paper"} <= set(preset_names())


def test_paper_preset_has_274m_parameters():
    # the paper's 274M UNet (RGB SRH: 3 channels, no mask channel), built without memory
    net = build_diffusion_unet("paper", channels=3, mask_channel=False, device="meta")
    n = count_parameters(net)
    assert abs(n - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.01
    spec_channels = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(spec_channels) == 896


def test_tiny_preset_is_tiny_and_runs():
    net = build_diffusion_unet("tiny", channels=2, mask_channel=True)
    assert count_parameters(net) < 100_000
    out = net(torch.randn(3, 3, 16, 24), timesteps=torch.tensor([0, 500, 999]))
    assert out.shape == (3, 2, 16, 24)


def test_small_preset_channels_and_multiple():
    net = build_diffusion_unet("small", channels=1, mask_channel=False)
    assert count_parameters(net) < 5_000_000
    m = size_multiple("small")
    out = net(torch.randn(1, 1, 2 * m, 3 * m), timesteps=torch.tensor([10]))
    assert out.shape == (1, 1, 2 * m, 3 * m)


def test_unknown_preset_and_bad_channels():
    with pytest.raises(ValueError, match="preset"):
        build_diffusion_unet("huge")
    with pytest.raises(ValueError, match="channels"):
        build_diffusion_unet("tiny", channels=0)


def test_training_scheduler_is_cosine_without_clipping():
    s = training_scheduler(prediction_type="sample")
    assert s.num_train_timesteps == 1000 and not s.clip_sample
    abar = s.alphas_cumprod
    assert torch.all(abar[1:] <= abar[:-1]) and abar[0] > 0.999 and abar[-1] < 1e-3
    # the cosine schedule: abar(T/2) ~ cos^2(pi/4) = 0.5
    assert abs(float(abar[499]) - 0.5) < 0.02


def test_sampling_timesteps_trailing():
    assert sampling_timesteps(1000, 4).tolist() == [999, 749, 499, 249]
    assert sampling_timesteps(1000, 1).tolist() == [999]
    assert sampling_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        sampling_timesteps(1000, 0)


def test_sampling_timesteps_quadratic():
    # starts from pure noise, ends near t = 0 (low-noise steps synthesise fine texture)
    assert sampling_timesteps(1000, 4, spacing="quadratic").tolist() == [999, 562, 250, 62]
    assert sampling_timesteps(1000, 10, spacing="quadratic").tolist()[-1] == 10
    for T, n in [(10, 10), (10, 3), (5, 4), (1000, 1000), (1000, 1)]:
        t = sampling_timesteps(T, n, spacing="quadratic")
        assert len(t) == n and int(t[0]) == T - 1 and int(t.min()) >= 0
        assert torch.all(t[1:] < t[:-1])
    assert sampling_timesteps(10, 10, spacing="quadratic").tolist() == list(range(9, -1, -1))


def test_epsilon_sampling_avoids_the_last_timestep():
    # abar(999) ~ 2e-9 would amplify epsilon errors ~2e4-fold in x0 = (x - sqrt(1-abar) eps) / sqrt(abar)
    assert sampling_timesteps(1000, 4, spacing="leading").tolist() == [751, 501, 251, 1]
    _, model_t = sampling_scheduler("ddim", steps=20, prediction_type="epsilon")
    assert model_t[0] == 951 and model_t[-1] == 1
    _, model_t = sampling_scheduler("ddim", steps=20, prediction_type="v_prediction")
    assert model_t[0] == 999
    with pytest.raises(ValueError, match="spacing"):
        sampling_timesteps(1000, 4, spacing="middle")


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_respaced_scheduler_matches_training_schedule(kind):
    base = training_scheduler()
    sched, model_t = sampling_scheduler(kind, steps=10)
    assert model_t.tolist() == sampling_timesteps(1000, 10).tolist()
    # respaced alphas_cumprod at each index equal the training schedule at the model timestep
    for idx, t in zip(sched.timesteps.tolist(), model_t.tolist()):
        assert abs(float(sched.alphas_cumprod[idx]) - float(base.alphas_cumprod[t])) <= 1e-6 * float(base.alphas_cumprod[t]) + 1e-12


def test_full_ddpm_respacing_is_identity():
    base = training_scheduler()
    sched, model_t = sampling_scheduler("ddpm", steps=1000)
    assert torch.allclose(sched.betas.float(), base.betas, atol=1e-5)
    assert model_t.tolist() == list(range(999, -1, -1))


def test_ddim_x0_prediction_recovers_clean_signal():
    # a perfect x0 predictor makes DDIM (eta=0) return exactly the clean sample
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    sched, _ = sampling_scheduler("ddim", steps=5, prediction_type="sample")
    x = torch.randn_like(x0)
    for idx in sched.timesteps.tolist():
        x, _ = sched.step(x0, idx, x, eta=0.0)
    assert torch.allclose(x, x0, atol=1e-5)
