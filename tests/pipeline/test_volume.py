"""The sliced pipeline: orientation, exactness, fusion, measured planes, bad options."""

import numpy as np
import pytest
import torch

from volsr.engines import Engine, create_engine, list_engines
from volsr.errors import Cancelled, InputError
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume


def _rv(*args, **kwargs):
    return restore_volume(*args, **kwargs).data

INTERP = ["nearest", "linear", "cubic"]


def test_interpolation_engines_registered():
    assert set(INTERP) <= set(list_engines())


def linear_in_z_volume(grid, ny=6, nx=7, c=1):
    """v(z, y, x) = a*z + ramp(x) + step(y): linear along z on the output grid."""
    z_out = np.arange(grid.n_out, dtype=np.float64)
    y = np.arange(ny)
    x = np.arange(nx)
    full = 0.3 * z_out[:, None, None] + 0.1 * x[None, None, :] + (y[None, :, None] >= ny // 2) * 1.0
    full = np.repeat(full[None], c, axis=0).astype(np.float32)
    return full, full[:, grid.positions]


@pytest.mark.parametrize("f", [2, 4, 1])
def test_linear_exact_on_linear_volume(f):
    grid = OutputGrid(5, f)
    full, sparse = linear_in_z_volume(grid)
    out = _rv(sparse, grid, create_engine("linear"))
    np.testing.assert_allclose(out, full, atol=1e-5)


def test_orientation_xz_and_yz_planes_go_back_to_their_place():
    """Structure differs along X (ramp) and Y (step) and Z (sparse, varying per plane).

    Restoring along XZ only and YZ only must both give the analytic answer; a transposed
    write-back would put the X ramp along Y and fail.
    """
    grid = OutputGrid(4, 3)
    ny, nx = 9, 5
    zz = np.arange(grid.n_out)[:, None, None]
    yy = np.arange(ny)[None, :, None]
    xx = np.arange(nx)[None, None, :]
    truth = (2.0 * xx + 10.0 * (yy > 4) + 0.5 * zz * (1 + xx)).astype(np.float32)[None]
    sparse = truth[:, grid.positions]
    for planes in ("xz", "yz", "both"):
        out = _rv(sparse, grid, create_engine("linear"), planes=planes)
        assert out.shape == (1, grid.n_out, ny, nx)
        np.testing.assert_allclose(out, truth, atol=1e-4, err_msg=planes)


@pytest.mark.parametrize("engine", INTERP)
@pytest.mark.parametrize("f", [2, 4, 2.5, 1])
def test_measured_planes_bit_identical(engine, f):
    rng = np.random.default_rng(0)
    grid = OutputGrid(5, f)
    vol = rng.random((2, 5, 8, 9)).astype(np.float32)
    out = _rv(vol, grid, create_engine(engine), blur_sigma=0.5)
    assert out.shape == (2, grid.n_out, 8, 9)
    assert np.array_equal(out[:, grid.positions], vol)


def test_blur_without_keep_measured_changes_measured_planes():
    rng = np.random.default_rng(1)
    grid = OutputGrid(4, 2)
    vol = rng.random((1, 4, 8, 8)).astype(np.float32)
    out = _rv(vol, grid, create_engine("linear"), blur_sigma=0.5, keep_measured=False)
    assert not np.array_equal(out[:, grid.positions], vol)
    # blur preserves the mean (reflect boundary)
    ref = _rv(vol, grid, create_engine("linear"))
    assert out.mean() == pytest.approx(ref.mean(), rel=1e-4)


class _DirectionMarker(Engine):
    """Fills unknown rows with +1 for XZ planes and +3 for YZ planes (told apart by width)."""

    name = "marker"

    def __init__(self, nx, **kw):
        super().__init__(**kw)
        self.nx = nx

    def _restore(self, planes, known, options, **kw):
        val = 1.0 if planes.shape[-1] == self.nx else 3.0
        return torch.full_like(planes, val)


@pytest.mark.parametrize(
    "fusion, planes, expected",
    [("mean", "both", 2.0), ("geometric", "both", np.sqrt(3.0)), ("mean", "xz", 1.0), ("xz", "both", 1.0),
     ("yz", "both", 3.0), ("mean", "yz", 3.0)],
)
def test_fusion_modes(fusion, planes, expected):
    grid = OutputGrid(3, 2)
    vol = np.zeros((1, 3, 4, 6), np.float32)
    out = _rv(vol, grid, _DirectionMarker(nx=6), planes=planes, fusion=fusion)
    unknown = out[:, ~grid.known_mask]
    np.testing.assert_allclose(unknown, expected, rtol=1e-6)
    assert (out[:, grid.positions] == 0).all()


def test_batching_does_not_change_result():
    rng = np.random.default_rng(2)
    grid = OutputGrid(4, 2.5)
    vol = rng.random((1, 4, 11, 13)).astype(np.float32)
    a = _rv(vol, grid, create_engine("cubic"), batch_size=1)
    b = _rv(vol, grid, create_engine("cubic"), batch_size=100)
    np.testing.assert_array_equal(a, b)


def test_progress_and_cancel():
    grid = OutputGrid(3, 2)
    vol = np.zeros((1, 3, 4, 5), np.float32)
    seen = []
    _rv(vol, grid, create_engine("linear"), batch_size=2, progress=lambda s, d, t: seen.append((s, d, t)))
    assert seen[-1] == ("yz", 5, 5) and ("xz", 4, 4) in seen
    with pytest.raises(Cancelled):
        _rv(vol, grid, create_engine("linear"), cancel=lambda: True)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"planes": "xy"}, "planes must be"), ({"fusion": "max"}, "fusion must be"),
     ({"planes": "xz", "fusion": "yz"}, "contradicts"), ({"blur_sigma": -1.0}, "blur sigma"),
     ({"n_samples": 0}, "n_samples")],
)
def test_bad_options(kwargs, match):
    grid = OutputGrid(3, 2)
    vol = np.zeros((1, 3, 4, 5), np.float32)
    with pytest.raises(InputError, match=match):
        _rv(vol, grid, create_engine("linear"), **kwargs)


def test_grid_mismatch():
    with pytest.raises(InputError, match="z planes"):
        _rv(np.zeros((1, 4, 4, 4), np.float32), OutputGrid(3, 2), create_engine("linear"))


def test_nearest_and_cubic_values():
    grid = OutputGrid(3, 2)
    vol = np.array([0.0, 2.0, 8.0], np.float32)[None, :, None, None] * np.ones((1, 3, 2, 2), np.float32)
    near = _rv(vol, grid, create_engine("nearest"))[0, :, 0, 0]
    assert near.tolist() == [0, 0, 2, 2, 8]  # ties go to the lower known row
    cub = _rv(vol, grid, create_engine("cubic"))[0, :, 0, 0]
    # 3 points -> quadratic through (0,0), (2,2), (4,8): v = z^2/2
    np.testing.assert_allclose(cub, [0, 0.5, 2, 4.5, 8], atol=1e-5)


def test_bfloat16_restoration_close_to_float32_and_float32_bit_reproducible():
    from volsr.engines import create_engine as make

    eng = make("msunet", preset="tiny")
    eng.trained = True
    torch.manual_seed(0)
    with torch.no_grad():  # untrained residual nets output exactly 0: give the weights something to do
        for p in eng.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    vol = np.random.default_rng(0).random((1, 4, 24, 20)).astype(np.float32)
    grid = OutputGrid(4, 3)
    a = restore_volume(vol, grid, eng, seed=3).data
    b = restore_volume(vol, grid, eng, seed=3).data
    np.testing.assert_array_equal(a, b)
    c = restore_volume(vol, grid, eng, seed=3, precision="bfloat16").data
    assert 0 < np.abs(c - a).max() < 0.05  # bf16 keeps 8 bits of mantissa; normalised units
    np.testing.assert_array_equal(restore_volume(vol, grid, eng, seed=3, precision="float32").data, a)
    with pytest.raises(InputError, match="precision"):
        restore_volume(vol, grid, eng, precision="float8")


def test_auto_precision_lays_the_denoiser_channels_last_and_fuses_attention_only_for_the_call(monkeypatch):
    from volsr.engines import create_engine as make
    from volsr.runtime import precision

    eng = make("msdsr", preset="tiny", sampling_steps=1)
    eng.trained = True
    torch.manual_seed(0)
    with torch.no_grad():
        for p in eng.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    den = eng.channels_last_network
    seen = []
    hook = den.conv_in.conv.register_forward_pre_hook(
        lambda m, args: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last)))
    attn = den.middle_block.attention.attn  # MONAI's SABlock: built with the explicit attention matrix
    assert attn.use_flash_attention is False
    sdpa = torch.nn.functional.scaled_dot_product_attention
    fused = []
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: fused.append(1) or sdpa(*a, **k))
    vol = np.random.default_rng(0).random((1, 4, 16, 16)).astype(np.float32)
    exact = restore_volume(vol, OutputGrid(4, 3), eng, seed=1, precision="float32").data
    assert seen and not any(seen)  # float32: the exact arithmetic, contiguous weights, attention as built
    assert not fused
    seen.clear()
    fast = restore_volume(vol, OutputGrid(4, 3), eng, seed=1, precision="auto").data
    assert not fused  # these planes have too few tokens for the fused kernel to pay
    monkeypatch.setattr(precision, "FUSED_MIN_TOKENS", 1)
    fast_fused = restore_volume(vol, OutputGrid(4, 3), eng, seed=1, precision="auto").data
    hook.remove()
    assert seen and all(seen)  # auto: the denoiser ran channels-last, its attention fused (SDPA) ...
    assert fused
    # ... and came back as it was: contiguous, ordinary tensors that training can use, attention as built
    assert all(p.is_contiguous() and not p.is_inference() for p in eng.ema.parameters())
    assert attn.use_flash_attention is False and not attn._forward_pre_hooks
    assert np.abs(fast_fused - fast).max() < 0.05
    assert 0 < np.abs(fast - exact).max() < 0.05
