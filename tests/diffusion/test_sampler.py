"""The conditional sampling loop (volsr.diffusion.sampler) with a tiny random network."""

import numpy as np
import pytest
import torch

from volsr.diffusion.sampler import DenoiserInput, MaskedSliceSampler, pad_to_multiple
from volsr.diffusion.schedule import sampling_scheduler
from volsr.errors import Cancelled
from volsr.grid import OutputGrid
from volsr.models import build_diffusion_unet, size_multiple
from volsr.training.masks import random_rows, strided_rows


def _net(mask_channel=True, seed=0):
    torch.manual_seed(seed)
    net = build_diffusion_unet("tiny", channels=1, mask_channel=mask_channel)
    with torch.no_grad():  # MONAI zero-initialises the output conv; make the net non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _sampler(kind="ddim", steps=3, eta=0.0, mode="full", prediction_type="sample", mask_channel=True, **kw):
    sched, mt = sampling_scheduler(kind, steps=steps, prediction_type=prediction_type)
    return MaskedSliceSampler(network=_net(mask_channel), scheduler=sched, model_timesteps=mt,
                              inputs=DenoiserInput(mask_channel=mask_channel), multiple=size_multiple("tiny"), eta=eta, mode=mode,
                              tile=16, **kw)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _masks(h):
    rng = np.random.default_rng(3)
    grid = OutputGrid(5, 2.5)  # non-integer stride: rows 0, 2, 5, 8, 10
    return {
        "random": torch.from_numpy(random_rows(h, rng)),
        "strided": torch.from_numpy(strided_rows(h, rng, factor_range=(4, 4))),
        "non_integer": torch.from_numpy(np.pad(grid.known_mask, (0, h - grid.n_out))),
    }


@pytest.mark.parametrize("scheme", ["random", "strided", "non_integer"])
@pytest.mark.parametrize("kind,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_known_rows_exactly_preserved(scheme, kind, eta):
    known = _masks(21)[scheme]
    x = torch.rand(3, 1, 21, 19) * 2 - 1
    out = _sampler(kind, eta=eta)(x, known, generator=_gen(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, :, known], x[:, :, known])
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[:, :, ~known], x[:, :, ~known])


def test_per_plane_masks():
    h = 20
    rng = np.random.default_rng(0)
    known = torch.from_numpy(np.stack([random_rows(h, rng) for _ in range(4)]))
    x = torch.rand(4, 1, h, 16)
    out = _sampler()(x, known, generator=_gen(0))
    for i in range(4):
        assert torch.equal(out[i, :, known[i]], x[i, :, known[i]])


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_deterministic_under_seed_and_seeds_differ(eta):
    known = _masks(16)["strided"]
    x = torch.rand(2, 1, 16, 16)
    s = _sampler(eta=eta)
    a, b = s(x, known, generator=_gen(7)), s(x, known, generator=_gen(7))
    c = s(x, known, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a[:, :, ~known], c[:, :, ~known])


def test_sub_batches_cover_all_planes():
    known = _masks(16)["strided"]
    x = torch.rand(5, 1, 16, 16)
    out = _sampler(chunk_pixels=2 * 16 * 16)(x, known, generator=_gen(0))  # 3 sub-batches
    assert torch.equal(out[:, :, known], x[:, :, known])
    assert torch.isfinite(out).all() and out.shape == x.shape


@pytest.mark.parametrize("mode", ["full", "tiles"])
def test_planes_larger_than_crop_and_odd_sizes(mode):
    known = torch.zeros(37, dtype=torch.bool)
    known[::4] = True
    x = torch.rand(2, 1, 37, 53)
    out = _sampler(mode=mode)(x, known, generator=_gen(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, :, known], x[:, :, known])
    assert torch.isfinite(out).all()


def test_epsilon_and_v_prediction_without_mask_channel():
    known = _masks(16)["random"]
    x = torch.rand(2, 1, 16, 16)
    for pred in ("epsilon", "v_prediction"):
        out = _sampler(prediction_type=pred, mask_channel=False)(x, known, generator=_gen(0))
        assert torch.equal(out[:, :, known], x[:, :, known]) and torch.isfinite(out).all()


def test_progress_and_cancel():
    known = _masks(16)["strided"]
    x = torch.rand(3, 1, 16, 16)
    calls = []
    _sampler(steps=4, chunk_pixels=2 * 16 * 16)(x, known, generator=_gen(0),
                                                 progress=lambda s, d, t: calls.append((s, d, t)))
    assert calls[-1] == ("denoise", 8, 8) and len(calls) == 8  # 2 sub-batches x 4 steps
    state = {"n": 0}

    def count(*args):
        state["n"] += 1

    with pytest.raises(Cancelled):
        _sampler(steps=4)(x, known, generator=_gen(0), progress=count, cancel=lambda: state["n"] >= 1)
    assert state["n"] == 1


def test_pad_to_multiple_reflects_and_handles_small():
    x = torch.arange(5.0).reshape(1, 1, 5, 1).expand(1, 1, 5, 3)
    p = pad_to_multiple(x, 8)
    assert p.shape == (1, 1, 8, 8)
    assert p[0, 0, 5:, 0].tolist() == [3.0, 2.0, 1.0]
    tiny = torch.rand(1, 1, 2, 2)
    assert pad_to_multiple(tiny, 8).shape == (1, 1, 8, 8)


def test_bad_options():
    sched, mt = sampling_scheduler("ddim", steps=2)
    with pytest.raises(ValueError, match="mode"):
        MaskedSliceSampler(network=_net(), scheduler=sched, model_timesteps=mt, mode="patches")
    with pytest.raises(ValueError, match="eta"):
        MaskedSliceSampler(network=_net(), scheduler=sched, model_timesteps=mt, eta=2.0)
    with pytest.raises(ValueError, match="known-row mask"):
        MaskedSliceSampler(network=_net(), scheduler=sched, model_timesteps=mt, multiple=2)(
            torch.rand(2, 1, 8, 8), torch.ones(3, 8, dtype=torch.bool))


def test_match_noise_levels_and_keeps_known_rows():
    from volsr.diffusion.sampler import match_noise, row_noise_std

    g = torch.Generator().manual_seed(1)
    x = torch.zeros(3, 2, 40, 50)
    known = torch.arange(40) % 5 == 0
    x[:, :, known] = 0.1 * torch.randn(3, 2, int(known.sum()), 50, generator=g)
    y = match_noise(x, known, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :, known], x[:, :, known])
    s = row_noise_std(y, (~known).expand(3, 40))
    assert s.shape == (3, 2, 1, 1) and torch.allclose(s, torch.full_like(s, 0.1), atol=0.02)
    # deterministic under the generator, and nothing added where the unknown rows are already as noisy
    assert torch.equal(y, match_noise(x, known, torch.Generator().manual_seed(0)))
    assert torch.equal(match_noise(y, known, g, scale=0.0), y)
    noisy = 0.1 * torch.randn(3, 2, 40, 50, generator=g)
    z = match_noise(noisy, known, g)
    assert float((z - noisy).std()) < 0.03  # only estimator jitter (the true deficit is 0)
    # planes too narrow for the estimator are returned unchanged
    thin = torch.rand(2, 1, 9, 2)
    assert torch.equal(match_noise(thin, known[:9], g), thin)
