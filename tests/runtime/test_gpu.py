"""What only a CUDA GPU can show: autocast, fused attention, pinned copies, GPU-memory batches, device moves, a real OOM.

Every test here is marked ``gpu`` and skipped without CUDA (``python -m pytest -m gpu`` runs them
on a GPU machine; ``benchmarks/gpu_check.py`` runs them first and reports the counts).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from volsr.engines import create_engine, load_engine
from volsr.engines.interpolation import LinearEngine
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume
from volsr.runtime import hardware, precision

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

GiB = 1 << 30


def _perturbed(eng):
    """Untrained residual networks output exactly 0: give the weights something to do (as on the CPU)."""
    eng.trained = True
    torch.manual_seed(0)
    with torch.no_grad():
        for p in eng.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return eng


def _tiny_msdsr():
    return _perturbed(create_engine("msdsr", preset="tiny", sampling_steps=1, device="cuda"))


def _vol(shape=(1, 4, 16, 16), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_auto_precision_is_bfloat16_autocast_on_cuda_and_close_to_float32():
    cuda = torch.device("cuda")
    assert precision.resolve_precision("auto", cuda) == "bfloat16"
    low = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert precision.compute_dtype_name(cuda, "auto").startswith(f"{low} autocast")
    eng = _tiny_msdsr()
    den = eng.channels_last_network
    dtypes = []
    hook = den.conv_in.conv.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    vol, grid = _vol(), OutputGrid(4, 3)
    exact = restore_volume(vol, grid, eng, seed=3, precision="float32").data
    assert dtypes and set(dtypes) == {torch.float32}
    dtypes.clear()
    fast = restore_volume(vol, grid, eng, seed=3, precision="auto").data
    hook.remove()
    assert dtypes and set(dtypes) == {getattr(torch, low)}  # the convolutions ran in the low precision
    assert np.isfinite(fast).all()
    # the CPU test's bound (tests/pipeline/test_volume.py): bf16 keeps 8 mantissa bits, normalised units
    assert 0 < np.abs(fast - exact).max() < 0.05
    again = restore_volume(vol, grid, eng, seed=3, precision="float32").data
    np.testing.assert_allclose(again, exact, atol=1e-5)  # same seed, same noise on the GPU


def test_fused_attention_takes_the_sdpa_kernel_on_cuda(monkeypatch):
    eng = _tiny_msdsr()
    attn = eng.channels_last_network.middle_block.attention.attn
    assert attn.use_flash_attention is False  # as built; only inference under 'auto' fuses it
    sdpa = torch.nn.functional.scaled_dot_product_attention
    calls = []

    def spy(*args, **kwargs):
        q = kwargs.get("query", args[0] if args else None)
        calls.append((q.device.type, q.dtype))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    vol, grid = _vol(), OutputGrid(4, 3)
    restore_volume(vol, grid, eng, seed=1, precision="float32")
    assert not calls  # float32: the attention as built, with its explicit matrix
    unfused = restore_volume(vol, grid, eng, seed=1, precision="auto").data
    assert not calls  # these small planes have too few tokens for the fused kernel to pay
    monkeypatch.setattr(precision, "FUSED_MIN_TOKENS", 1)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fused_only = [b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                              getattr(SDPBackend, "CUDNN_ATTENTION", None)) if b is not None]
    with sdpa_kernel(fused_only):  # no math fallback: a fused GPU kernel must take the call
        fused = restore_volume(vol, grid, eng, seed=1, precision="auto").data
    assert calls and all(dev == "cuda" for dev, _ in calls)
    assert {dt for _, dt in calls} <= {torch.bfloat16, torch.float16}  # autocast reached the attention
    assert attn.use_flash_attention is False and not attn._forward_pre_hooks  # back as it was
    assert np.abs(fused - unfused).max() < 0.05  # the CPU test's bound


def test_to_device_copies_to_cuda_from_pinned_memory_without_blocking(monkeypatch):
    seen = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append((self.device.type, self.is_pinned(), bool(kwargs.get("non_blocking", False))))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    y = hardware.to_device(x, "cuda")
    torch.cuda.synchronize()
    monkeypatch.undo()
    assert y.device.type == "cuda" and torch.equal(y.cpu(), x)
    assert ("cpu", True, True) in seen  # the copy left from page-locked memory, asynchronously
    assert not x.is_pinned()  # the caller's tensor is untouched
    assert hardware.to_device(y, "cuda") is y  # already there: no copy
    assert hardware.to_device(y, "cpu").device.type == "cpu"


def test_batch_size_on_cuda_follows_free_gpu_memory(monkeypatch):
    free, total = torch.cuda.mem_get_info()
    assert 0 < hardware.available_memory("cuda") <= total
    state, asked = {"free": 8 * GiB}, []

    def mem_get_info(device=None):
        asked.append(device)
        return state["free"], 80 * GiB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(hardware, "host_available_memory", lambda *a, **k: pytest.fail("host memory asked on cuda"))
    per = 1 << 20  # 1 MiB per plane
    big = hardware.choose_batch_size(per, "cuda")
    state["free"] = 2 * GiB
    small = hardware.choose_batch_size(per, "cuda")
    assert asked and big == int(hardware.MEMORY_FRACTION * 8 * GiB) // per == 4 * small
    eng = create_engine("msdsr", preset="tiny", device="cuda")
    state["free"] = 64 * GiB
    roomy = eng.planes_per_call(64, 64)  # the sampler's sub-batch: 16 planes of 64x64
    state["free"] = 1 << 20
    assert eng.planes_per_call(64, 64) == 1 < roomy  # short of memory: one plane per network call


@pytest.fixture
def no_tf32():
    """float32 on the GPU without TF32 in cuDNN / cuBLAS: it then differs from the CPU by rounding only."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_model_trained_on_gpu_restores_on_cpu_and_back(tmp_path, no_tf32):
    vol = _vol((1, 6, 48, 40), seed=1)
    eng = create_engine("msunet", preset="tiny", device="cuda")
    eng.fit(vol, steps=3, batch_size=4, crop=32, seed=0)
    assert next(eng.ema.parameters()).device.type == "cuda"
    path = eng.save(tmp_path / "gpu.volsr")
    grid = OutputGrid(6, 2)
    on_gpu = restore_volume(vol, grid, eng, precision="float32").data
    cpu = load_engine(path, device="cpu")
    assert next(cpu.ema.parameters()).device.type == "cpu"
    for (name, a), (_, b) in zip(eng.ema.state_dict().items(), cpu.ema.state_dict().items()):
        assert torch.equal(a.cpu(), b), name  # the weights, bit for bit
    on_cpu = restore_volume(vol, grid, cpu, precision="float32").data
    back = load_engine(path, device="cuda")
    on_gpu_again = restore_volume(vol, grid, back, precision="float32").data
    np.testing.assert_allclose(on_gpu_again, on_gpu, atol=1e-5)
    # other convolution algorithms than the CPU's: close, not bit-identical
    np.testing.assert_allclose(on_cpu, on_gpu, atol=1e-4)
    np.testing.assert_array_equal(on_cpu[:, grid.positions], vol)  # measured planes exact everywhere


class _GPUHog(LinearEngine):
    """Linear interpolation that asks for twice the GPU's memory when given more than 4 planes."""

    name = "gpu-hog"

    def _restore(self, planes, known, options, **run):
        if planes.shape[0] > 4:
            _, total = torch.cuda.mem_get_info()
            torch.empty(2 * int(total), dtype=torch.uint8, device="cuda")  # a real torch.cuda.OutOfMemoryError
        return super()._restore(planes, known, options, **run)


def test_a_real_cuda_out_of_memory_halves_the_batch(caplog, monkeypatch):
    emptied = []
    empty_cache = torch.cuda.empty_cache
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1) or empty_cache())
    vol, grid = _vol((1, 4, 20, 18)), OutputGrid(4, 3)
    with caplog.at_level(logging.WARNING, logger="volsr"):
        got = restore_volume(vol, grid, _GPUHog(device="cuda"), batch_size=16).data
    want = restore_volume(vol, grid, LinearEngine(device="cuda"), batch_size=4).data
    np.testing.assert_array_equal(got, want)
    warned = [r.getMessage() for r in caplog.records if r.name == "volsr" and r.levelno == logging.WARNING]
    assert "GPU out of memory at 16 planes per call; retrying with 8" in warned
    assert emptied  # the cache was given back before the retry
