"""Chunks side by side on the CPU (volsr.runtime.concurrency) and the sampler running them."""

import threading

import numpy as np
import pytest
import torch

from volsr.diffusion.sampler import DenoiserInput, MaskedSliceSampler
from volsr.diffusion.schedule import sampling_scheduler
from volsr.errors import Cancelled
from volsr.models import build_diffusion_unet, size_multiple
from volsr.models.padding import run_padded
from volsr.runtime.concurrency import chunk_workers, run_side_by_side
from volsr.runtime.precision import exact_arithmetic, inference_context

CPU = torch.device("cpu")


def _sampler(workers, eta=1.0, steps=3):
    torch.manual_seed(0)
    net = build_diffusion_unet("tiny", channels=1, mask_channel=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sched, mt = sampling_scheduler("ddim", steps=steps, prediction_type="sample")
    return MaskedSliceSampler(network=net.eval(), scheduler=sched, model_timesteps=mt, inputs=DenoiserInput(),
                              multiple=size_multiple("tiny"), eta=eta, chunk_pixels=2 * 16 * 24, workers=workers)


def _known(h=16):
    k = torch.zeros(h, dtype=torch.bool)
    k[::4] = True
    return k


def test_workers_only_outside_the_bit_exact_mode():
    assert exact_arithmetic() and chunk_workers(CPU, 8, threads=4) == 1  # a direct call keeps its arithmetic
    with inference_context(CPU, "float32"):
        assert exact_arithmetic() and chunk_workers(CPU, 8, threads=4) == 1
    with inference_context(CPU, "bfloat16"):
        assert not exact_arithmetic()
        assert chunk_workers(CPU, 8, threads=4) == 4
        assert chunk_workers(CPU, 3, threads=4) == 3  # never more than the chunks
        assert chunk_workers(CPU, 8, threads=1) == 1
        assert chunk_workers("cuda", 8, threads=4) == 1  # one call fills a GPU
    assert exact_arithmetic()  # the context is left behind with the block


def test_run_side_by_side_keeps_order_threads_and_modes():
    threads = torch.get_num_threads()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = run_side_by_side(lambda i: (i, torch.get_num_threads(), torch.is_inference_mode_enabled(),
                                          torch.is_autocast_enabled("cpu")), range(5), 2)
    assert [g[0] for g in got] == list(range(5))
    assert all(g[1] == max(1, threads // 2) and g[2] and g[3] for g in got)  # the caller's modes, split threads
    assert torch.get_num_threads() == threads  # the caller's pool is untouched

    def fail(i):
        if i == 2:
            raise Cancelled("stop")
        return i

    with pytest.raises(Cancelled):
        run_side_by_side(fail, range(4), 2)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_side_by_side_draws_the_same_noise(eta):
    x = torch.rand(5, 1, 16, 24)  # 3 chunks of 2, 2, 1 planes
    known = _known()
    outs, tails = [], []
    for workers in (1, 3):
        g = torch.Generator().manual_seed(0)
        with inference_context(CPU, "bfloat16"):
            outs.append(_sampler(workers, eta)(x, known, generator=g))
        tails.append(torch.randn(4, generator=g))
    assert torch.equal(tails[0], tails[1])  # the shared generator ends where a one-at-a-time run leaves it
    assert torch.equal(outs[1][:, :, known], x[:, :, known])
    # the same noise per chunk: equal up to bfloat16 rounding of kernels picked per thread count
    np.testing.assert_allclose(outs[1].float().numpy(), outs[0].float().numpy(), atol=0.03)
    assert (outs[1] - outs[0]).abs().mean() < 1e-3


def test_sampler_side_by_side_progress_and_cancel():
    x, known = torch.rand(6, 1, 16, 24), _known()
    calls = []
    with inference_context(CPU, "bfloat16"):
        _sampler(3, steps=2)(x, known, generator=torch.Generator().manual_seed(0),
                             progress=lambda s, d, t: calls.append((d, t)))
    assert [d for d, _ in calls] == list(range(1, 7)) and {t for _, t in calls} == {6}  # 3 chunks x 2 steps
    with inference_context(CPU, "bfloat16"), pytest.raises(Cancelled):
        _sampler(3, steps=2)(x, known, generator=torch.Generator().manual_seed(0), cancel=lambda: True)
    with pytest.raises(ValueError, match="workers"):
        _sampler(0)


def test_run_padded_side_by_side_matches_one_call():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    x = torch.rand(7, 1, 13, 18)
    with inference_context(CPU, "float32"):  # bit-exact mode: chunks one after the other
        ref = run_padded(net, x, 8, chunk_pixels=3 * 16 * 24)
    with inference_context(CPU, "bfloat16"):
        fast = run_padded(net, x, 8, chunk_pixels=3 * 16 * 24, side_by_side=True)
        threads = set()
        run_padded(lambda t: threads.add(threading.current_thread()) or t, x, 8, chunk_pixels=3 * 16 * 24)
    assert threads == {threading.current_thread()}  # not asked: an fn that may draw noise runs in turn
    assert fast.shape == ref.shape == x.shape
    np.testing.assert_allclose(fast.float().numpy(), ref.numpy(), atol=0.02)
