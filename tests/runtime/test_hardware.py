"""volsr.runtime.hardware: threads from affinity and cgroup quota, memory-bounded batches, the log line."""

import dataclasses
import logging

import numpy as np
import pytest
import torch

from volsr.engines import create_engine
from volsr.engines.base import RestoreOptions
from volsr.errors import InputError
from volsr.grid import OutputGrid
from volsr.pipeline.volume import restore_volume
from volsr.runtime import hardware as runtime

GiB = 1 << 30


# -- threads --------------------------------------------------------------------------------------
@pytest.mark.parametrize("affinity,text,expected", [
    ({0, 1, 2, 3}, "150000 100000", 1),  # 1.5 CPUs of quota -> 1 (rounded down)
    ({0, 1, 2, 3}, "max 100000", 4),  # no quota: the affinity decides
    ({0, 1, 2, 3}, "max", 4),
    ({0, 1, 2, 3}, "", 4),  # no cgroup
    ({0, 1}, "800000 100000", 2),  # quota above the affinity: the affinity decides
    ({0, 1, 2, 3, 4, 5, 6, 7}, "250000 100000", 2),
    ({5}, "50000 100000", 1),  # half a CPU -> still 1
    ({0, 1, 2}, "garbage", 3),
])
def test_usable_cpus(affinity, text, expected):
    assert runtime.usable_cpus(affinity=affinity, cgroup_text=text) == expected


def test_cpu_quota_read_from_cgroup_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.read_cpu_quota(tmp_path) == "150000 100000"
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.usable_cpus(affinity=range(8), cgroup_text=runtime.read_cpu_quota(v1)) == 2
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime.read_cpu_quota(v1) == "max"
    assert runtime.read_cpu_quota(tmp_path / "none") == ""


@pytest.fixture
def thread_calls(monkeypatch):
    """Record torch.set_num_threads calls instead of changing the test process."""
    calls = []
    monkeypatch.setattr(runtime, "_threads_configured", False)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)  # torch's default: the physical cores
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 3)  # e.g. a cgroup quota of 3 CPUs
    return calls


def test_threads_env_var_leaves_torch_untouched(thread_calls):
    for var in runtime.THREAD_ENV:
        runtime._threads_configured = False
        runtime.configure_threads(env={var: "1"})
    assert thread_calls == []


def test_threads_set_once_from_usable_cpus(thread_calls, monkeypatch):
    runtime.configure_threads(env={})
    runtime.configure_threads(env={})  # once per process
    assert thread_calls == [3]
    runtime._threads_configured = False
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 16)  # 16 logical CPUs, 8 physical cores: keep 8
    runtime.configure_threads(env={})
    assert thread_calls == [3]


# -- memory ---------------------------------------------------------------------------------------
def test_host_memory_capped_by_cgroup(tmp_path):
    meminfo = "MemTotal:  24000000 kB\nMemAvailable:  2000000 kB\n"
    assert runtime.host_available_memory(meminfo, None) == 2000000 * 1024
    assert runtime.host_available_memory(meminfo, 1000) == 1000
    (tmp_path / "memory.max").write_text("3000000000\n")
    (tmp_path / "memory.current").write_text("1000000000\n")
    assert runtime._cgroup_memory_headroom(tmp_path) == 2_000_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert runtime._cgroup_memory_headroom(tmp_path) is None
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "unlimited"
    (v1 / "memory.usage_in_bytes").write_text("5\n")
    assert runtime._cgroup_memory_headroom(tmp_path / "v1") is None
    (v1 / "memory.limit_in_bytes").write_text("105\n")
    assert runtime._cgroup_memory_headroom(tmp_path / "v1") == 100
    assert runtime.available_memory("cpu") > 0


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0])
@pytest.mark.parametrize("cap", [None, 1, 7])
def test_choose_batch_size_never_exceeds_budget(monkeypatch, fraction, cap):
    for avail in (0, 1, 1000, 12345, 10**9, 7 * GiB):
        monkeypatch.setattr(runtime, "available_memory", lambda device, a=avail: a)
        for per_item in np.geomspace(1.0, 1e10, 41):
            n = runtime.choose_batch_size(float(per_item), "cpu", fraction=fraction, cap=cap)
            budget = int(fraction * avail)  # whole bytes
            assert n >= 1 and (cap is None or n <= cap)
            if per_item <= budget:  # at least one fits: n items fit, n + 1 do not (or the cap stops it)
                assert n * per_item <= budget
                assert (n + 1) * per_item > budget or n == cap
            else:
                assert n == 1
            assert runtime.choose_batch_size(float(per_item), fraction=fraction, cap=cap, available=avail) == n


def test_choose_batch_size_values_and_bad_arguments():
    assert runtime.choose_batch_size(100.0, available=1000) == 5
    assert runtime.choose_batch_size(0.0, available=0, cap=9) == 9
    for kwargs in (dict(fraction=0), dict(fraction=1.5), dict(cap=0)):
        with pytest.raises(InputError):
            runtime.choose_batch_size(1.0, available=10, **kwargs)
    with pytest.raises(InputError, match="bytes_per_item"):
        runtime.choose_batch_size(-1.0, available=10)


def test_unet_estimate_widths_and_quadratic_attention():
    assert runtime.unet_bytes_per_pixel([8, 16]) == 48.0 * (8 + 16 / 4)
    assert runtime.unet_bytes_per_pixel([8, 16], blocks=3) == 2 * runtime.unet_bytes_per_pixel([8, 16])
    a = runtime.unet_bytes_per_pixel([8, 16], attention=[(1, 2)], height=64, width=64)
    b = runtime.unet_bytes_per_pixel([8, 16], attention=[(1, 2)], height=128, width=128)
    conv = 48.0 * 12
    assert a - conv == 8.0 * 2 * (64 * 64 / 4) / 4
    assert b - conv == 4 * (a - conv)  # per pixel grows with the token count


def test_to_device_on_cpu_is_a_plain_move():
    x = torch.arange(6.0)
    y = runtime.to_device(x, "cpu")
    assert y.device.type == "cpu" and torch.equal(x, y)


# -- reproducibility: free memory never changes the random draws ----------------------------------
def _msdsr_tiny():
    torch.manual_seed(1)
    eng = create_engine("msdsr", preset="tiny", sampling_steps=1)
    with torch.no_grad():
        for p in eng.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    eng.ema.load_state_dict(eng.network.state_dict())
    eng.trained = True
    return eng


def _restore_with_memory(monkeypatch, eng, avail, seed=3):
    monkeypatch.setattr(runtime, "available_memory", lambda device: avail)
    vol = np.random.default_rng(0).random((1, 3, 5, 4)).astype(np.float32)
    return restore_volume(vol, OutputGrid(3, 2), eng, seed=seed).data


def _bytes_per_slab(eng, rows, cols, planes):
    """Memory of one network call over a whole slab: the larger of MSDSR's denoiser and stage-1 UNet."""
    from volsr.engines.unet_common import basic_unet_bytes_per_pixel, padded_size
    from volsr.models.padding import padded_side

    m = eng.multiple
    denoiser = eng.bytes_per_pixel(rows, cols) * padded_side(rows, m) * padded_side(cols, m)
    stage1 = basic_unet_bytes_per_pixel(eng.cfg.regressor_features) * padded_size(rows) * padded_size(cols)
    return max(denoiser, stage1) * planes


def _fewest_planes_per_call(eng, rows, cols):
    """Planes per call of the network (denoiser or stage 1) that free memory limits most."""
    from volsr.engines.unet_common import regression_planes

    return min(eng.planes_per_call(rows, cols), regression_planes("cpu", eng.cfg.regressor_features, rows, cols))


def test_msdsr_result_does_not_depend_on_free_memory(monkeypatch):
    eng = _msdsr_tiny()
    rows = OutputGrid(3, 2).n_out
    slabs = {4: 5, 5: 4}  # plane width -> planes per slab (XZ: 5 planes 4 wide; YZ: 4 planes 5 wide)
    need = max(_bytes_per_slab(eng, rows, cols, n) for cols, n in slabs.items())
    plenty = _restore_with_memory(monkeypatch, eng, 64 * GiB)
    just_enough = int(2 * need) + 2  # MEMORY_FRACTION = 0.5: each slab is still one network call
    tight = _restore_with_memory(monkeypatch, eng, just_enough)
    assert all(_fewest_planes_per_call(eng, rows, cols) >= n for cols, n in slabs.items())
    np.testing.assert_array_equal(plenty, tight)  # bit-identical
    monkeypatch.setattr(runtime, "available_memory", lambda device: just_enough // 2)
    assert any(_fewest_planes_per_call(eng, rows, cols) < n for cols, n in slabs.items())  # it was binding
    # memory below one plane: calls of 1 plane, the same noise (only float rounding of batched kernels moves)
    starved = _restore_with_memory(monkeypatch, eng, 1)
    assert _fewest_planes_per_call(eng, rows, 4) == _fewest_planes_per_call(eng, rows, 5) == 1
    other_seed = _restore_with_memory(monkeypatch, eng, 64 * GiB, seed=4)
    assert np.abs(starved - plenty).max() < 1e-4 < 0.05 < np.abs(other_seed - plenty).max()


def test_sampler_network_calls_split_inside_a_noise_chunk():
    eng = _msdsr_tiny()
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    known = torch.zeros(16, dtype=torch.bool)
    known[::4] = True
    seen = []
    sampler = eng.make_sampler(eng.cfg.replace(sampling_steps=2))
    sampler.network.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    cond = torch.rand_like(x)
    full = sampler(x, known, cond=cond, generator=torch.Generator().manual_seed(0))
    assert seen == [5, 5]  # 2 steps, all planes in one call
    split = dataclasses.replace(sampler, call_planes=2)
    seen.clear()
    out = split(x, known, cond=cond, generator=torch.Generator().manual_seed(0))
    assert seen == [2, 2, 1] * 2  # 2 steps, 5 planes in calls of at most 2
    np.testing.assert_allclose(out.numpy(), full.numpy(), atol=1e-5)


# -- the log line ---------------------------------------------------------------------------------
def test_log_line_names_device_dtype_and_batch(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "available_memory", lambda device: 6 * GiB)
    eng = create_engine("msunet", preset="tiny")
    eng.trained = True
    vol = np.random.default_rng(0).random((1, 4, 24, 20)).astype(np.float32)
    calls = []
    eng.sampling_network.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    with caplog.at_level(logging.INFO, logger="volsr"):
        restore_volume(vol, OutputGrid(4, 3), eng, precision="bfloat16")
        restore_volume(vol, OutputGrid(4, 3), create_engine("linear"), batch_size=5)
    lines = [r.getMessage() for r in caplog.records if r.name == "volsr"]
    threads = torch.get_num_threads()
    threads_text = f"{threads} thread" + ("s" if threads != 1 else "")
    assert calls == [24, 20]  # what the line says is what the network got: each slab fits one call
    assert lines == [
        f"restoring on cpu ({threads_text}), bfloat16 autocast, batch XZ 24 per network call, slabs of 24 planes; "
        "YZ 20 per network call, slabs of 20 planes (memory budget 3.0 GiB)",
        f"restoring on cpu ({threads_text}), float32, batch 5 planes",
    ]


def test_log_line_says_when_a_basic_unet_call_is_split_side_by_side(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "available_memory", lambda device: 6 * GiB)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    eng = create_engine("msunet", preset="tiny")
    eng.trained = True
    calls = []
    eng.sampling_network.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    vol = np.random.default_rng(0).random((1, 4, 8, 8)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="volsr"):
        restore_volume(vol, OutputGrid(4, 3), eng, precision="bfloat16", planes="xz",
                       options=RestoreOptions(batch_size=8))
    lines = [r.getMessage() for r in caplog.records if r.name == "volsr"]
    # 8 planes per call, shared by two calls at once (one per thread): 4 planes each
    assert calls == [4, 4]
    assert lines == ["restoring on cpu (2 threads), bfloat16 autocast, batch 4 per network call (2 at once, "
                     "1 thread each), slabs of 8 planes (memory budget 3.0 GiB)"]


def test_cli_infer_prints_the_log_line(tmp_path, capsys):
    import tifffile

    from volsr.cli import main

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32))
    assert main(["infer", str(src), "--axes", "ZYX", "--engine", "linear", "--z-factor", "2", "-q"]) == 0
    err = capsys.readouterr().err
    assert f"volsr: restoring on cpu ({runtime.planes_text(torch.get_num_threads(), 'thread')}), float32, batch 16 planes\n" in err
