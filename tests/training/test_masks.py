"""Training row masks: counts, positions (incl. non-integer strides), mixing, linear fill."""

import numpy as np
import pytest
import torch

from volsr.errors import VolsrError
from volsr.grid import OutputGrid
from volsr.training.masks import MaskSampler, linear_fill, mask_sampler_from_config, random_rows, strided_rows


def test_random_rows_paper_counts_at_48():
    rng = np.random.default_rng(0)
    counts = [int(random_rows(48, rng).sum()) for _ in range(400)]
    assert min(counts) == 5 and max(counts) == 20  # the paper's l ~ U[5, 20] of 48


def test_random_rows_scale_with_height():
    rng = np.random.default_rng(1)
    counts = [int(random_rows(96, rng).sum()) for _ in range(400)]
    assert 10 <= min(counts) <= 12 and 38 <= max(counts) <= 40
    m = random_rows(96, rng)
    assert m.dtype == bool and m.shape == (96,)


def test_random_rows_small_height_keeps_two_known_and_one_unknown():
    rng = np.random.default_rng(2)
    for _ in range(50):
        m = random_rows(3, rng)
        assert m.sum() == 2


@pytest.mark.parametrize("f", [2.0, 3.0, 4.0, 7.0])
def test_strided_rows_integer_factor_is_regular(f):
    rng = np.random.default_rng(3)
    for _ in range(20):
        rows = np.flatnonzero(strided_rows(48, rng, factor_range=(f, f)))
        assert np.all(np.diff(rows) == f)
        assert rows[0] <= f  # round(phase), phase in [0, f)
        assert rows[-1] + f > 47  # runs to the end of the crop


@pytest.mark.parametrize("f", [2.5, 1.5, 3.3])
def test_strided_rows_non_integer_factor_matches_round_phase_plus_i_f(f):
    rng = np.random.default_rng(4)
    phases = np.linspace(0, f, 2001, endpoint=False)
    for _ in range(20):
        rows = np.flatnonzero(strided_rows(48, rng, factor_range=(f, f)))
        # some phase in [0, f) reproduces the rows as round(phase + i * f)
        ok = False
        for ph in phases:
            cand = np.round(ph + np.arange(rows.size) * f).astype(int)
            if np.array_equal(cand, rows) and np.round(ph + rows.size * f) >= 48:
                ok = True
                break
        assert ok, rows
        assert set(np.diff(rows).tolist()) <= {int(np.floor(f)), int(np.ceil(f))}


def test_strided_rows_gap_pattern_matches_output_grid():
    # f = 2.5 gives the same 2/3 alternation of gaps as the inference grid
    grid_gaps = set(np.diff(OutputGrid(20, 2.5).positions).tolist())
    rng = np.random.default_rng(5)
    for _ in range(20):
        rows = np.flatnonzero(strided_rows(48, rng, factor_range=(2.5, 2.5)))
        gaps = np.diff(rows)
        assert set(gaps.tolist()) == grid_gaps == {2, 3}
        assert abs(gaps.mean() - 2.5) < 0.1


def test_strided_rows_factor_larger_than_crop_still_two_rows():
    rng = np.random.default_rng(6)
    for _ in range(50):
        m = strided_rows(5, rng, factor_range=(8.0, 8.0))
        assert m.sum() >= 2


def test_strided_factors_cover_range_log_uniformly():
    rng = np.random.default_rng(7)
    gaps = []
    for _ in range(600):
        rows = np.flatnonzero(strided_rows(480, rng, factor_range=(2.0, 8.0)))
        gaps.append(np.mean(np.diff(rows)))
    gaps = np.asarray(gaps)
    assert gaps.min() >= 1.9 and gaps.max() <= 8.1
    # log-uniform: as many in [2, 4) as in [4, 8]
    lo, hi = np.sum(gaps < 4), np.sum(gaps >= 4)
    assert abs(lo - hi) < 0.2 * len(gaps)


def test_mask_sampler_shapes_minimum_and_seed():
    s = MaskSampler()
    a = s(32, 48, np.random.default_rng(8))
    b = s(32, 48, np.random.default_rng(8))
    assert a.shape == (32, 48) and a.dtype == bool
    assert np.array_equal(a, b)
    assert (a.sum(1) >= 2).all() and (a.sum(1) < 48).all()


def test_mask_sampler_schemes():
    rng = np.random.default_rng(9)
    strided = MaskSampler(scheme="strided", factor_range=(4, 4))(16, 48, rng)
    for m in strided:
        assert np.all(np.diff(np.flatnonzero(m)) == 4)
    rnd = MaskSampler(scheme="random")(200, 48, rng)
    assert 5 <= rnd.sum(1).min() and rnd.sum(1).max() <= 20
    # mixed with p_strided=1 is strided only
    mixed = MaskSampler(scheme="mixed", p_strided=1.0, factor_range=(3, 3))(16, 48, rng)
    for m in mixed:
        assert np.all(np.diff(np.flatnonzero(m)) == 3)


@pytest.mark.parametrize("kw", [{"scheme": "bogus"}, {"p_strided": 1.5}, {"factor_range": (0.5, 2)},
                                {"factor_range": (4, 2)}, {"lmin_frac": 0.5, "lmax_frac": 0.2}])
def test_mask_sampler_rejects_bad_settings(kw):
    with pytest.raises(VolsrError):
        MaskSampler(**kw)


def test_mask_sampler_from_config_flat_and_nested():
    s = mask_sampler_from_config({"mask_scheme": "strided", "mask_factor_range": [2, 3]})
    assert s.scheme == "strided" and s.factor_range == (2.0, 3.0)
    s = mask_sampler_from_config({"mask": {"scheme": "random", "lmin_frac": 0.2}})
    assert s.scheme == "random" and s.lmin_frac == 0.2
    assert mask_sampler_from_config(None) == MaskSampler()
    assert mask_sampler_from_config(s.to_config()) == s


def test_linear_fill_recovers_linear_rows_and_keeps_known():
    h, w = 13, 5
    ramp = torch.arange(h, dtype=torch.float32)[None, None, :, None].expand(2, 3, h, w).clone()
    known = torch.zeros(2, h, dtype=torch.bool)
    known[0, [0, 4, 7, 12]] = True
    known[1, [2, 9]] = True
    out = linear_fill(ramp, known)
    assert torch.allclose(out[0], ramp[0])
    # sample 1: inside [2, 9] exact, outside constant extrapolation
    assert torch.allclose(out[1, :, 2:10], ramp[1, :, 2:10])
    assert torch.all(out[1, :, :2] == 2) and torch.all(out[1, :, 10:] == 9)


def test_linear_fill_rejects_empty_mask():
    with pytest.raises(VolsrError):
        linear_fill(torch.zeros(1, 1, 4, 4), torch.zeros(4, dtype=torch.bool))


# -- dropped rows: the 2f / 3f gaps of damaged planes ------------------------------------------
def test_strided_masks_with_p_drop_cover_gaps_of_2f_and_3f():
    from volsr.training.masks import drop_rows

    rng = np.random.default_rng(3)
    masks = MaskSampler(scheme="strided", factor_range=(4, 4), p_drop=1.0)(200, 48, rng)
    gaps = set()
    for m in masks:
        rows = np.flatnonzero(m)
        assert rows.size >= 2
        gaps.update(np.diff(rows).tolist())
    assert {4, 8, 12} <= gaps and gaps <= {4, 8, 12}
    base = np.zeros(13, bool)
    base[::4] = True
    for _ in range(20):  # the end rows stay: the wider gap is bridged from both sides
        out = drop_rows(base, rng)
        assert out[0] and out[12] and 2 <= out.sum() <= 3
    two = np.zeros(5, bool)
    two[[0, 4]] = True
    np.testing.assert_array_equal(drop_rows(two, rng), two)  # no interior known row: unchanged


def test_p_drop_zero_draws_the_masks_of_earlier_versions():
    a = MaskSampler()(64, 48, np.random.default_rng(5))
    b = MaskSampler(p_drop=0.0)(64, 48, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(VolsrError, match="p_drop"):
        MaskSampler(p_drop=1.5)
    s = MaskSampler(p_drop=0.25)
    assert mask_sampler_from_config(s.to_config()) == s


def test_mask_p_drop_is_opt_in_and_old_model_files_keep_zero():
    from pathlib import Path

    from volsr.engines import create_engine, load_engine
    from volsr.engines.msdsr import MSDSREngine

    assert create_engine("msunet", preset="tiny").cfg.mask_p_drop == 0.0  # default fits unchanged
    eng = create_engine("msunet", preset="tiny", mask_p_drop=0.25)
    assert eng.cfg.mask_p_drop == 0.25 and eng.cfg.mask_sampler().p_drop == 0.25
    assert MSDSREngine.upgrade_config({"preset": "tiny"})["mask_p_drop"] == 0.0
    assert MSDSREngine.upgrade_config({"mask_p_drop": 0.5})["mask_p_drop"] == 0.5
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "models"
    for name in ("msunet", "msdsr"):
        eng = load_engine(fixtures / f"{name}.volsr")
        assert eng.cfg.mask_p_drop == 0.0 and eng.cfg.mask_sampler().p_drop == 0.0
