"""Out of device memory in the middle of a restore: the batch is halved and the run goes on.

The engines here are real ones (linear, bicubic) that raise ``torch.cuda.OutOfMemoryError``, which
exists in CPU builds of torch too, when handed more planes than they "fit": the pipeline's retry
(:func:`volsr.runtime.hardware.halving_batches`) runs the same way with or without a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import volsr
from volsr.cli import main
from volsr.engines import registry
from volsr.engines.base import Capabilities
from volsr.engines.interpolation import BicubicEngine, LinearEngine
from volsr.errors import VolsrError
from volsr.grid import OutputGrid
from volsr.pipeline.inplane import upscale_volume
from volsr.pipeline.volume import restore_volume
from volsr.runtime import hardware

OOM = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


def _oom() -> BaseException:
    return OOM("CUDA out of memory. fake")


class _Fits:
    """Raises an out-of-memory error for calls with more than ``limit`` planes; records every call's size."""

    limit = 4

    def _check(self, n: int) -> None:
        self.calls = [*getattr(self, "calls", []), n]
        if n > self.limit:
            raise _oom()


class OOMLinear(_Fits, LinearEngine):
    name = "oom-linear"

    def _restore(self, planes, known, options, **run):
        self._check(planes.shape[0])
        return super()._restore(planes, known, options, **run)


class NeverFits(OOMLinear):
    name = "oom-always"
    limit = 0


class NoisyLinear(LinearEngine):
    """Linear plus seeded noise: a stochastic engine whose result depends on each call's seed."""

    name = "noisy-linear"
    capabilities = Capabilities(stochastic=True)

    def _restore(self, planes, known, options, *, generator=None, **run):
        out = super()._restore(planes, known, options, **run)
        gen = self._call_generator(options, generator)
        return out + 0.1 * torch.randn(out.shape, generator=gen, dtype=out.dtype)


class OOMNoisy(_Fits, NoisyLinear):
    name = "oom-noisy"

    def _restore(self, planes, known, options, **run):
        self._check(planes.shape[0])
        return super()._restore(planes, known, options, **run)


class FailsOnce(OOMNoisy):
    """Fits any batch, except that its ``fail_at``-th call runs out of memory (a GPU shared with others)."""

    name = "oom-once"
    limit, fail_at = 10**9, 2

    def _check(self, n: int) -> None:
        super()._check(n)
        if len(self.calls) == self.fail_at + 1:
            raise _oom()


class OOMBicubic(_Fits, BicubicEngine):
    name = "oom-bicubic"

    def _upscale(self, images, scale, options, **run):
        self._check(images.shape[0])
        return super()._upscale(images, scale, options, **run)


class NeverFitsBicubic(OOMBicubic):
    name = "oom-bicubic-always"
    limit = 0


def _volume(shape=(1, 4, 40, 36), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "volsr" and r.levelno == logging.WARNING]


# -- the rule itself ------------------------------------------------------------------------------
def test_out_of_memory_errors_are_recognised():
    assert hardware.is_out_of_memory(_oom())
    assert hardware.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert hardware.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not hardware.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not hardware.is_out_of_memory(ValueError("out of memory"))  # not a device error
    assert issubclass(OOM, RuntimeError)


def test_halving_batches_retries_the_same_start_and_keeps_the_smaller_batch(caplog):
    tried = []

    def compute(start, stop):
        tried.append((start, stop))
        if stop - start > 3:
            raise _oom()
        return start

    with caplog.at_level(logging.WARNING, logger="volsr"):
        done = list(hardware.halving_batches(13, 12, "cpu", compute))
    assert [(a, b) for a, b, _ in done] == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 13)]
    assert tried[:3] == [(0, 12), (0, 6), (0, 3)]  # 12 -> 6 -> 3, then 3 for the rest
    assert _warnings(caplog) == ["CPU out of memory at 12 planes per call; retrying with 6",
                                 "CPU out of memory at 6 planes per call; retrying with 3"]


def test_halving_batches_short_last_batch_halves_below_its_size(caplog):
    def compute(start, stop):
        if start >= 16 and stop - start > 2:
            raise _oom()
        return None

    with caplog.at_level(logging.WARNING, logger="volsr"):
        done = [(a, b) for a, b, _ in hardware.halving_batches(21, 16, "cpu", compute)]
    assert done == [(0, 16), (16, 18), (18, 20), (20, 21)]
    # the short last batch (5 planes) is not retried at 8 (still 5 planes): straight to 4, then 2
    assert _warnings(caplog) == ["CPU out of memory at 5 planes per call; retrying with 4",
                                 "CPU out of memory at 4 planes per call; retrying with 2"]


def test_halving_batches_other_errors_pass_through_and_one_plane_is_the_end():
    def broken(start, stop):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        list(hardware.halving_batches(4, 4, "cpu", broken))
    with pytest.raises(VolsrError, match="even at 1 plane per call") as err:
        list(hardware.halving_batches(4, 4, "cpu", lambda a, b: (_ for _ in ()).throw(_oom())))
    msg = str(err.value)
    assert "\n" not in msg and "--batch-size 1" in msg and "--tile" in msg and "--device cpu" not in msg
    assert isinstance(err.value.__cause__, OOM)
    gpu = hardware._oom_message(torch.device("cuda:0"), "plane")  # what a GPU run says
    assert gpu.startswith("GPU out of memory (cuda:0) even at 1 plane per call") and "--device cpu" in gpu


# -- z restoration ---------------------------------------------------------------------------------
def test_restore_halves_the_batch_and_equals_the_smaller_batch_bit_for_bit(caplog):
    vol, grid = _volume(), OutputGrid(4, 3)
    eng = OOMLinear()
    with caplog.at_level(logging.INFO, logger="volsr"):
        got = restore_volume(vol, grid, eng, batch_size=16).data
    want = restore_volume(vol, grid, LinearEngine(), batch_size=4).data
    np.testing.assert_array_equal(got, want)
    assert [n for n in eng.calls if n > 4] == [16, 8, 16, 8]  # failed once per direction, then 4 for the rest
    warned = _warnings(caplog)
    assert "CPU out of memory at 16 planes per call; retrying with 8" in warned
    assert "CPU out of memory at 8 planes per call; retrying with 4" in warned
    assert len(warned) == 4  # once per halving, in each of the two directions


@pytest.mark.parametrize("n_samples", [1, 3])
def test_stochastic_engine_after_a_first_batch_failure_equals_the_smaller_batch_run(n_samples):
    """Slab seeds depend on the slab's start only, and the retry starts where the failed slab did."""
    vol, grid = _volume((1, 4, 24, 20)), OutputGrid(4, 2)
    got = restore_volume(vol, grid, OOMNoisy(), batch_size=16, seed=5, n_samples=n_samples)
    want = restore_volume(vol, grid, NoisyLinear(), batch_size=4, seed=5, n_samples=n_samples)
    np.testing.assert_array_equal(got.data, want.data)
    if n_samples > 1:
        np.testing.assert_array_equal(got.std, want.std)
    other = restore_volume(vol, grid, NoisyLinear(), batch_size=16, seed=5, n_samples=n_samples).data
    assert not np.array_equal(got.data, other)  # the seeds do matter: it is the batch-4 run, not batch 16's


def test_a_later_failure_keeps_earlier_planes_and_continues_as_the_smaller_batch_run(caplog):
    vol, grid = _volume((1, 4, 64, 8)), OutputGrid(4, 2)
    eng = FailsOnce()  # the third slab of 16 (planes 32-47) runs out of memory once
    with caplog.at_level(logging.WARNING, logger="volsr"):
        got = restore_volume(vol, grid, eng, planes="xz", fusion="xz", batch_size=16, seed=1).data
    assert eng.calls == [16, 16, 16, 8, 8, 8, 8]
    assert _warnings(caplog) == ["CPU out of memory at 16 planes per call; retrying with 8"]
    run16 = restore_volume(vol, grid, NoisyLinear(), planes="xz", fusion="xz", batch_size=16, seed=1).data
    run8 = restore_volume(vol, grid, NoisyLinear(), planes="xz", fusion="xz", batch_size=8, seed=1).data
    np.testing.assert_array_equal(got[:, :, :32], run16[:, :, :32])  # before the failure: the 16-plane slabs
    np.testing.assert_array_equal(got[:, :, 32:], run8[:, :, 32:])  # from it: the 8-plane slabs (8 divides 32)
    assert not np.array_equal(got[:, :, :32], run8[:, :, :32])
    # a deterministic engine is the same either way
    det = restore_volume(vol, grid, OOMLinear(), planes="xz", fusion="xz", batch_size=16).data
    np.testing.assert_array_equal(det, restore_volume(vol, grid, LinearEngine(), planes="xz", fusion="xz").data)


def test_progress_never_goes_back_when_a_batch_is_retried():
    seen = []
    restore_volume(_volume(), OutputGrid(4, 3), OOMLinear(), batch_size=16,
                   progress=lambda stage, done, total: seen.append((stage, done, total)))
    for axis in ("xz", "yz"):
        done = [d for s, d, _ in seen if s == axis]
        assert done == sorted(done) and done[-1] == (40 if axis == "xz" else 36)


def test_no_plane_fits_raises_the_fix_and_restore_returns_nothing():
    with pytest.raises(VolsrError, match="--batch-size 1 does not fit"):
        restore_volume(_volume(), OutputGrid(4, 3), NeverFits(), batch_size=16)
    with pytest.raises(VolsrError, match="even at 1 plane per call"):
        volsr.restore(_volume((1, 6, 16, 16))[0], engine=NeverFits(), z_factor=2)


@pytest.fixture
def registered(monkeypatch):
    """The test engines under their names, for the command line (removed again afterwards)."""
    for cls in (NeverFits, OOMLinear, NeverFitsBicubic):
        monkeypatch.setitem(registry._REGISTERED, cls.name, cls)


def _stack(tmp_path: Path) -> Path:
    data = (_volume((6, 24, 24)) * 60000).astype(np.uint16)
    return volsr.write_stack(tmp_path / "stack.tif", data, "ZYX", spacing=(2.0, 1.0, 1.0))


def test_cli_infer_out_of_memory_at_one_plane_writes_no_file(tmp_path, capsys, registered):
    src = _stack(tmp_path)
    out = tmp_path / "restored.tif"
    rc = main(["infer", str(src), "-o", str(out), "--engine", "oom-always", "--batch-size", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "out of memory" in err and "--batch-size 1 does not fit" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]  # no output, no partial file


def test_cli_infer_halves_and_writes_the_same_file_as_the_smaller_batch(tmp_path, capsys, registered):
    src = _stack(tmp_path)
    assert main(["infer", str(src), "-o", str(tmp_path / "a.tif"), "--engine", "oom-linear",
                 "--batch-size", "16"]) == 0
    err = capsys.readouterr().err
    assert "out of memory at 16 planes per call; retrying with 8" in err
    assert main(["infer", str(src), "-o", str(tmp_path / "b.tif"), "--engine", "linear", "--batch-size", "4"]) == 0
    np.testing.assert_array_equal(volsr.read_stack(tmp_path / "a.tif").data, volsr.read_stack(tmp_path / "b.tif").data)


# -- in-plane upscaling ---------------------------------------------------------------------------------
def test_upscale_halves_the_batch_and_equals_the_smaller_batch_bit_for_bit(caplog):
    vol = _volume((1, 12, 16, 16))
    eng = OOMBicubic()
    with caplog.at_level(logging.WARNING, logger="volsr"):
        got = upscale_volume(vol, 2, eng, batch_size=16).data
    want = upscale_volume(vol, 2, BicubicEngine(), batch_size=4).data
    np.testing.assert_array_equal(got, want)
    assert _warnings(caplog) == ["CPU out of memory at 12 planes per call; retrying with 8",
                                 "CPU out of memory at 8 planes per call; retrying with 4"]


def test_upscale_no_plane_fits_writes_no_file(tmp_path, capsys, registered):
    img = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    out = tmp_path / "up.tif"
    with pytest.raises(VolsrError, match="--tile"):
        volsr.upscale(img, 2, engine=NeverFitsBicubic(), out=out)
    src = volsr.write_stack(tmp_path / "img.tif", img, "YX")
    with pytest.raises(VolsrError, match="even at 1 plane per call"):  # streamed: block by block into a TIFF
        volsr.upscale(src, 2, engine=NeverFitsBicubic(), out=out, stream=True, tile=16, block=16)
    rc = main(["upscale", str(src), "-o", str(out), "--engine", "oom-bicubic-always", "--scale", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "even at 1 plane per call" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif"]
