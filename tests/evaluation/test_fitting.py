"""Fitting without leakage (volsr.evaluation.common, evaluate), and checks before any fit."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from volsr.engines.base import Capabilities, Engine
from volsr.evaluation import evaluate, paired_2d, volume_3d, write_report


class MemoEngine(Engine):
    """A 'learned' engine that memorises its training stack and, at restore time, returns the
    exact training slice (XY, XZ or YZ window) whose measured rows match; otherwise linear
    interpolation. Perfect with leakage, exactly linear without."""

    name = "memo-test"
    capabilities = Capabilities(learned=True)

    def __init__(self, device="cpu", **options):
        super().__init__(device, **options)
        self.trained = False
        self.fits = []  # shapes of what each fit saw

    def fit(self, data, **kwargs):
        stack = np.asarray(data, dtype=np.float32)
        assert stack.ndim == 4  # (C, Z, Y, X)
        self.memory = [np.moveaxis(stack, 1, 0), np.moveaxis(stack, 2, 0), np.moveaxis(stack, 3, 0)]
        self.fits.append(stack.shape)
        self.trained = True
        return {}

    def _lookup(self, plane, rows):
        _, h, w = plane.shape
        for slices in self.memory:  # (N, C, R, S) slices of the memorised stack
            n, _, r, s = slices.shape
            if r < h or s < w:
                continue
            for i in range(n):
                for r0 in range(r - h + 1):
                    for c0 in range(s - w + 1):
                        win = slices[i, :, r0 : r0 + h, c0 : c0 + w]
                        if np.array_equal(win[:, rows], plane[:, rows]):
                            return win
        return None

    def _restore(self, planes, known, options, **run):
        from volsr.engines.interpolation import LinearEngine

        out = LinearEngine()._restore(planes, known, options).clone()
        known = known.cpu().numpy()
        p = planes.cpu().numpy()
        for k in range(len(p)):
            rows = known if known.ndim == 1 else known[k]
            hit = self._lookup(p[k], np.flatnonzero(rows))
            if hit is not None:
                out[k] = torch.from_numpy(np.ascontiguousarray(hit))
        return out


@pytest.fixture(scope="module")
def small_hr():
    rng = np.random.default_rng(1)
    v = gaussian_filter(rng.normal(size=(28, 28, 28)), 1.0)
    return (1000 + 300 * v / v.std()).astype(np.float32)


def _val(t, protocol, engine, metric, rows, axis=None):
    sel = (t.protocol == protocol) & (t.engine == engine) & (t.metric == metric) & (t.rows == rows)
    if axis is not None:
        sel &= t.axis == axis
    return t[sel]["value"].to_numpy()


def test_memorising_engine_gains_nothing_without_leakage(small_hr):
    kw = dict(crop=24, n_crops=12, n_tiles=8, spectra_tile=16, features="lowlevel")
    memo = MemoEngine()
    r = evaluate(small_hr, [memo, "linear"], (2, 4), fit={"steps": 1}, **kw)
    t = r.table
    assert not memo.trained  # fitted copies, the given engine stays unfitted
    for protocol in ("2d", "3d"):
        for metric in ("psnr", "ssim"):
            np.testing.assert_allclose(_val(t, protocol, "memo-test", metric, "restored"),
                                       _val(t, protocol, "linear", metric, "restored"))
    # what trained each model is in the table and the report
    on = t[t.engine == "memo-test"].groupby(["protocol", "factor"])["trained_on"].first()
    assert on[("3d", 2)] == "XY planes 0, 2, ..., 26 (14 planes) of the simulated 2x stack"
    assert on[("3d", 4)] == "XY planes 0, 4, ..., 24 (7 planes) of the simulated 4x stack"
    assert on[("2d", 2)] == "HR XY planes 0-11 (12 planes; 2D test planes 14-27)"
    assert set(t[t.engine == "linear"]["trained_on"]) == {"-"}
    assert r.meta["paired_2d_test_planes"].startswith("14-27")

    # with leakage (fitted on the HR planes it is scored on) the same engine would be perfect
    from volsr.normalize import PercentileNormalizer

    hrn = PercentileNormalizer(0.1, 99.9).fit(small_hr[None]).forward(small_hr[None])
    leaky = MemoEngine()
    leaky.fit(hrn)
    t3 = volume_3d(small_hr, [leaky], (4,), include_ground_truth=False, **kw).table
    assert np.all(_val(t3, "3d", "memo-test", "psnr", "restored") > 100)
    planes = small_hr[:, None]
    t2 = paired_2d(planes, [MemoEngine()], (4,), crop=24, n_crops=12, features="lowlevel",
                   fit={"steps": 1}, fit_images=planes)
    assert _val(t2, "2d", "memo-test", "psnr", "restored")[0] > 100


def test_report_names_the_training_planes(small_hr, tmp_path):
    r = evaluate(small_hr, [MemoEngine(), "linear"], (4,), fit={"steps": 1}, crop=24, n_crops=12, n_tiles=8,
                 spectra_tile=16, features="lowlevel")
    md = write_report(r, tmp_path / "out", figures=False)["tables"].read_text()
    assert "What trained each learned model" in md and "simulated 4x stack" in md and "2D test planes" in md


def test_eval_checks_settings_before_any_fit(hr_file, tmp_path, capsys, monkeypatch):
    """Issue 10: the FID crop used to be refused only after minutes of fitting."""
    from volsr.cli import main
    from volsr.engines import register_engine
    from volsr.engines.registry import _REGISTERED

    def no_fit(self, *a, **k):
        raise AssertionError("a fit started before the settings were checked")

    monkeypatch.setattr(MemoEngine, "fit", no_fit)
    register_engine(MemoEngine)
    try:
        base = ["eval", str(hr_file), "--features", "lowlevel", "--engines", "memo-test", "linear",
                "--fit-steps", "5", "--n-crops", "8", "-q"]
        out = tmp_path / "res"
        cases = [
            (["--factors", "8", "--crop", "36", "--out", str(out)], "fewer than the FID crop 36"),
            (["--factors", "2", "--crop", "48", "--out", str(out)], "does not fit"),
            (["--factors", "2", "--crop", "24", "--out", str(out), "--features", "inception",
              "--inception-weights", str(tmp_path / "missing.pth")], "missing.pth"),
            (["--factors", "2", "--crop", "24", "--out", str(out), "--variants", "xy"], "variant"),
            (["--factors", "2", "--crop", "24", "--out", str(hr_file)], "is a file"),
            (["--factors", "2", "--crop", "24", "--out", str(out), "--fit-steps", "0"], "positive"),
        ]
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "results.csv").write_text("x")
        cases.append((["--factors", "2", "--crop", "24", "--out", str(tmp_path / "taken")], "--overwrite"))
        for extra, message in cases:
            assert main(base + extra) == 2, extra
            assert message in capsys.readouterr().err, extra
        assert not out.exists()
    finally:
        _REGISTERED.pop("memo-test", None)


def test_sampling_steps_only_for_listed_diffusion_engines():
    from volsr.engines import create_engine
    from volsr.evaluation.common import _sampling_kwargs, needs_fit

    assert _sampling_kwargs(create_engine("linear"), 5) == {}
    assert _sampling_kwargs(MemoEngine(), 5) == {}  # learned, but not a diffusion engine
    assert _sampling_kwargs(create_engine("msdsr", preset="tiny"), 5) == {"sampling_steps": 5}
    assert needs_fit(MemoEngine()) and not needs_fit(create_engine("linear"))
