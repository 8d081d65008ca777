"""``volsr.metrics.plane_outliers``: damaged z planes found by their neighbours, clean stacks left alone."""

import numpy as np
import pytest

from volsr.metrics.plane_outliers import (
    DEFAULT_THRESHOLD,
    PlaneFlag,
    check_planes,
    plane_scores,
)
from volsr.samples import KINDS, isotropic_volume, subsample_z

SHAPE = (41, 96, 96)  # every 4th plane: 11 input planes


def _stack(kind="cells", seed=0, shape=SHAPE):
    return subsample_z(isotropic_volume(shape, seed=seed, kind=kind), 4)


def _flagged(vol):
    return {f.index: f for f in check_planes(vol)}


@pytest.mark.parametrize("kind", KINDS)
def test_clean_stacks_of_every_kind_give_nothing(kind):
    for seed in (0, 1):
        vol = _stack(kind, seed)
        assert check_planes(vol) == [], (kind, seed)
        z = plane_scores(vol)
        worst = max(float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0 for v in z.values())
        assert worst < DEFAULT_THRESHOLD


@pytest.mark.parametrize("kind", ["cells", "em", "fluo"])
def test_bleaching_drift_is_not_flagged(kind):
    vol = _stack(kind, 0)
    bleached = vol * np.exp(-0.05 * np.arange(len(vol)))[:, None, None]
    assert check_planes(bleached.astype(np.float32)) == []
    assert check_planes((vol * np.exp(-0.15 * np.arange(len(vol)))[:, None, None]).astype(np.float32)) == []


@pytest.mark.parametrize("kind", ["cells", "em"])
def test_zeroed_plane_is_flagged_by_its_mean_and_contrast(kind):
    vol = _stack(kind, 1)
    vol[5] = 0
    flags = _flagged(vol)
    assert list(flags) == [5]
    f = flags[5]
    assert isinstance(f, PlaneFlag) and f.index == 5
    assert any(r.startswith("std 0.00 vs neighbours") for r in f.reasons), f.reasons
    assert "constant plane (std 0)" in f.reasons
    assert f.scores["std"] < -DEFAULT_THRESHOLD and f.scores["mean"] < 0


def test_dark_plane_is_flagged_by_its_mean():
    vol = _stack("fluo", 0)
    vol[6] = vol[6] * 0.3
    (reason,) = [r for r in _flagged(vol)[6].reasons if r.startswith("mean")]
    assert "vs neighbours" in reason and "(z=-" in reason


@pytest.mark.parametrize("kind, seed", [("cells", 0), ("cells", 1), ("texture", 0), ("em", 1)])
def test_noise_plane_with_the_same_mean_and_std_is_flagged_by_its_detail(kind, seed):
    vol = _stack(kind, seed)
    p = vol[4]
    vol[4] = np.random.default_rng(0).normal(p.mean(), p.std(), p.shape).astype(np.float32)
    flags = _flagged(vol)
    assert list(flags) == [4]
    (reason,) = [r for r in flags[4].reasons if r.startswith("high-frequency energy")]
    assert "vs neighbours" in reason and "(z=+" in reason


def test_noise_plane_is_flagged_and_its_correlation_named():
    vol = _stack("cells", 1)
    p = vol[4]
    vol[4] = np.random.default_rng(0).normal(p.mean(), p.std(), p.shape).astype(np.float32)
    (reason,) = [r for r in _flagged(vol)[4].reasons if r.startswith("correlation with neighbours")]
    assert "vs typical" in reason and "(z=-" in reason


@pytest.mark.parametrize("kind, shift", [("cells", 4), ("cells", 5), ("fluo", 3), ("fluo", 4)])
def test_shifted_plane_is_flagged_by_its_offset(kind, shift):
    vol = _stack(kind, 0)
    vol[5] = np.roll(vol[5], shift, axis=1)
    flags = _flagged(vol)
    assert list(flags) == [5]
    (reason,) = [r for r in flags[5].reasons if r.startswith("shift against neighbours")]
    assert "px vs typical" in reason
    assert flags[5].scores["offset"] > DEFAULT_THRESHOLD


def test_damage_at_both_ends_is_found():
    vol = _stack("mri", 0)
    vol[0] = 0
    vol[-1] = np.random.default_rng(1).random(vol[-1].shape).astype(np.float32) * vol.max()
    assert sorted(_flagged(vol)) == [0, len(vol) - 1]
    vol = _stack("cells", 0)
    vol[-1] = np.roll(vol[-1], 4, axis=0)
    assert sorted(_flagged(vol)) == [len(vol) - 1]


def test_several_damaged_planes_and_channels():
    vol = _stack("fluo", 1)
    vol[2] = 0
    vol[7] = np.roll(vol[7], 4, axis=1)
    two_channels = np.stack([vol, vol * 0.5])
    assert sorted(_flagged(two_channels)) == [2, 7]


def test_fewer_than_five_planes_are_not_checked():
    vol = _stack()[:4]
    vol[1] = 0
    assert check_planes(vol) == []
    assert check_planes(vol[None]) == []


def test_reads_one_plane_at_a_time(tmp_path):
    vol = _stack()
    vol[5] = 0
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=vol.shape)
    mm[:] = vol
    mm.flush()
    assert [f.index for f in check_planes(np.load(tmp_path / "v.npy", mmap_mode="r"))] == [5]
