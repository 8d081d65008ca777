"""Protocols (paired 2D, 3D), report files, and the `volsr score` / `volsr eval` commands."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter

from volsr.engines.base import Engine
from volsr.errors import OutputError, VolsrError
from volsr.evaluation import (
    COLUMNS,
    evaluate,
    evenly_spaced_rows,
    paired_2d,
    paper_tables,
    parse_variant,
    volume_3d,
    write_report,
)


@pytest.fixture(scope="module")
def hr():
    rng = np.random.default_rng(0)
    v = gaussian_filter(rng.normal(size=(40, 40, 40)), 1.5)
    return (1000 + 300 * v / v.std()).astype(np.float32)


def test_evenly_spaced_rows_match_the_paper():
    assert [int(evenly_spaced_rows(48, f).sum()) for f in (2, 4, 8)] == [24, 12, 6]
    assert np.flatnonzero(evenly_spaced_rows(48, 8)).tolist() == [0, 8, 16, 24, 32, 40]
    with pytest.raises(VolsrError, match="fewer than 2 rows"):
        evenly_spaced_rows(8, 8)


def test_parse_variant():
    assert parse_variant("both") == {"planes": "both", "fusion": "mean", "blur_sigma": None}
    assert parse_variant("xz+blur", 0.7) == {"planes": "xz", "fusion": "xz", "blur_sigma": 0.7}
    with pytest.raises(VolsrError, match="variant"):
        parse_variant("xy")


def test_paired_2d(hr):
    t = paired_2d(np.moveaxis(hr, 0, 0), ["nearest", "linear"], (2, 4), crop=32, n_crops=120, seed=0)
    assert list(t.columns) == COLUMNS and set(t["protocol"]) == {"2d"}
    assert len(t) == 2 * 2 * 5  # engines x factors x (fid + ssim/psnr x restored/all)

    def val(engine, f, metric, rows):
        sel = (t.engine == engine) & (t.factor == f) & (t.metric == metric) & (t.rows == rows)
        return float(t[sel]["value"].iloc[0])

    for f in (2, 4):
        assert val("linear", f, "ssim", "restored") > val("nearest", f, "ssim", "restored")
        assert val("linear", f, "fid", "all") < val("nearest", f, "fid", "all")
        # measured rows are exact, so counting them can only raise PSNR
        assert val("linear", f, "psnr", "restored") < val("linear", f, "psnr", "all")
    assert val("linear", 2, "psnr", "restored") > val("linear", 4, "psnr", "restored")


def test_volume_3d_metrics_and_reproducibility(hr):
    kw = dict(factors=(2, 4), variants=("both", "xz+blur"), crop=24, n_crops=100, n_tiles=32, spectra_tile=16)
    r = volume_3d(hr, ["linear"], **kw)
    t = r.table
    assert set(t.engine) == {"ground-truth", "linear"}
    lin = t[(t.engine == "linear") & (t.variant == "both")]
    for f in (2, 4):
        sub = lin[lin.factor == f]
        assert set(sub[sub.metric == "fid"]["axis"]) == {"xy", "xz", "yz"}
        fids = sub[sub.metric == "fid"].set_index("axis")["value"]
        sf = float(sub[sub.metric == "slice_fid"]["value"].iloc[0])
        assert sf == pytest.approx(fids.mean())
        assert len(sub[sub.metric == "ssim"]) == 6 and len(sub[sub.metric == "psnr"]) == 6
    gt = t[(t.engine == "ground-truth") & (t.metric == "isotropy_gap")]["value"]
    gap4 = lin[(lin.factor == 4) & (lin.metric == "isotropy_gap")]["value"].iloc[0]
    assert gap4 > gt.max()
    sf = lambda f: float(lin[(lin.factor == f) & (lin.metric == "slice_fid")]["value"].iloc[0])  # noqa: E731
    assert sf(4) > sf(2)
    assert ("linear", "xz+blur", 4) in r.examples and r.examples[("linear", "both", 2)].shape == (39, 40)
    assert set(r.spectra.columns) == {"engine", "variant", "factor", "axis", "frequency", "log_power"}
    again = volume_3d(hr, ["linear"], **kw)
    pd.testing.assert_frame_equal(t, again.table)
    with pytest.raises(VolsrError, match="integers"):
        volume_3d(hr, ["linear"], factors=(2.5,))
    with pytest.raises(VolsrError, match="crop"):
        volume_3d(hr, ["linear"], factors=(8,), crop=48)


def test_write_report_and_tables(hr, tmp_path):
    r = evaluate(hr, ["nearest", "linear"], (2,), crop=24, n_crops=80, features="lowlevel", n_tiles=16,
                 spectra_tile=16)
    tabs = paper_tables(r.table)
    assert set(tabs) == {"paired_2d", "fid_3d", "paired_3d", "isotropy_3d"}
    assert list(tabs["fid_3d"].columns) == ["2x XY", "2x YZ", "2x XZ", "2x SliceFID"]
    assert list(tabs["fid_3d"].index) == ["ground-truth", "nearest", "linear"]
    paths = write_report(r, tmp_path / "out")
    for name in ("results.csv", "tables.md", "spectra.csv", "fid_per_axis.png", "radial_spectra.png",
                 "xz_examples.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "NOT comparable" in paths["tables"].read_text()
    back = pd.read_csv(paths["results"], keep_default_na=False)
    assert np.allclose(back["value"].astype(float), r.table["value"])
    with pytest.raises(OutputError, match="overwrite"):
        write_report(r, tmp_path / "out")


@pytest.fixture(scope="module")
def hr_file(hr, tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    path = d / "hr.tif"
    tifffile.imwrite(path, hr)
    return path


def test_cli_eval_writes_files_reproducible_from_api(hr, hr_file, tmp_path, capsys):
    from volsr.cli import main

    out = tmp_path / "res"
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "nearest", "linear",
               "--crop", "24", "--n-crops", "80", "--seed", "1", "--out", str(out), "-q", "--device", "cpu"])
    assert rc == 0
    for name in ("results.csv", "tables.md", "spectra.csv", "fid_per_axis.png", "radial_spectra.png",
                 "xz_examples.png"):
        assert (out / name).exists()
    api = evaluate(hr, ["nearest", "linear"], (2,), crop=24, n_crops=80, seed=1, features="lowlevel", device="cpu")
    cli = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(cli) == len(api.table)
    assert np.allclose(cli["value"].astype(float), api.table["value"], rtol=1e-12, atol=0)
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "linear",
               "--crop", "24", "--n-crops", "80", "--out", str(out), "-q"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_cli_score(hr, hr_file, tmp_path, capsys):
    from volsr.cli import main

    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(0, 40, 4):
        tifffile.imwrite(refs / f"ref{i:02d}.tif", hr[i])
    args = ["score", str(hr_file), "--reference", str(refs), "--features", "lowlevel", "--crop", "24",
            "--n-crops", "100", "--n-tiles", "16", "--tile", "16"]
    assert main(args + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"fid_xy", "fid_xz", "fid_yz", "slice_fid", "isotropy_gap"} <= set(res)
    assert res["slice_fid"] == pytest.approx((res["fid_xy"] + res["fid_xz"] + res["fid_yz"]) / 3)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "SliceFID" in text and "isotropy gap" in text and "NOT comparable" in text
    # inception without weights: a clear error, exit code 2, nothing silently replaced
    assert main(["score", str(hr_file), "--reference", str(refs), "--inception-weights",
                 str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_add_parsers_on_a_local_parser():
    from volsr.cli.evaluate import add_parsers, cmd_eval, cmd_score

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["eval", "x.tif", "--factors", "2", "4", "--engines", "linear"])
    assert a.func is cmd_eval and a.factors == [2, 4] and a.features == "inception" and a.seed == 0
    a = parser.parse_args(["score", "x.tif", "--reference", "refs", "--features", "lowlevel"])
    assert a.func is cmd_score and a.crop == 48


def test_load_reference_folder(tmp_path, hr):
    from skimage.io import imsave

    from volsr.cli.evaluate import load_reference

    img = (np.clip((hr[0] - hr.min()) / np.ptp(hr), 0, 1) * 255).astype(np.uint8)
    imsave(tmp_path / "a.png", img, check_contrast=False)
    tifffile.imwrite(tmp_path / "b.tif", hr[:5])  # a stack contributes its XY planes
    refs = load_reference(tmp_path)
    assert len(refs) == 6 and all(r.shape == (1, 40, 40) for r in refs)
    with pytest.raises(VolsrError, match="does not exist"):
        load_reference(tmp_path / "nope")


def test_cli_eval_refuses_an_untrained_learned_engine(hr_file, tmp_path, capsys):
    """`--engines msdsr` without a model would score noise: refuse unless a fit budget is given."""
    from volsr.cli import main

    out = tmp_path / "res"
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "msdsr",
               "--crop", "24", "--n-crops", "16", "--out", str(out), "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "msdsr=model.volsr" in err and "--fit-minutes" in err
    assert not out.exists()


def test_figures_leave_the_matplotlib_backend_alone(hr, tmp_path):
    """Notebooks keep their inline backend after write_report draws the PNG figures."""
    import matplotlib

    matplotlib.use("svg")  # any non-Agg backend stands in for the notebook's inline one
    res = volume_3d(hr, ["linear"], (2,), crop=24, n_crops=16, features="lowlevel", device="cpu")
    paths = write_report(res, tmp_path / "r")
    assert paths["spectra_png"].stat().st_size > 0
    assert matplotlib.get_backend().lower() == "svg"


def test_cli_score_uses_the_measured_planes_as_xy_reference(tmp_path, capsys):
    """`volsr infer` records where the measured planes went; `volsr score` draws its XY reference there."""
    from volsr.cli import main
    from volsr.io import read_stack, write_stack
    from volsr.samples import isotropic_volume

    gt = isotropic_volume((25, 40, 40), seed=5, kind="texture")
    low = tmp_path / "low.tif"
    write_stack(low, gt[::4], "ZYX", spacing=(4.0, 1.0, 1.0))
    out = tmp_path / "low_volsr.tif"
    assert main(["infer", str(low), "--engine", "linear", "-o", str(out), "-q"]) == 0
    assert read_stack(out).measured_planes == (0, 4, 8, 12, 16, 20, 24)
    capsys.readouterr()
    base = ["score", str(out), "--tile", "16", "--n-tiles", "32", "--json"]
    assert main(base) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["isotropy_reference"] == "measured planes (7 of 25), recorded in the file"
    assert main(base + ["--factor", "4"]) == 0
    by_factor = json.loads(capsys.readouterr().out)
    assert by_factor["isotropy_gap"] == recorded["isotropy_gap"] and "--factor 4" in by_factor["isotropy_reference"]
    assert main(base + ["--measured-planes", "0,4,8,12,16,20,24"]) == 0
    assert json.loads(capsys.readouterr().out)["isotropy_gap"] == recorded["isotropy_gap"]
    # a file without the record: all planes, and a warning that says so
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, read_stack(out).data)
    assert main(["score", str(plain), "--tile", "16", "--n-tiles", "32"]) == 0
    cap = capsys.readouterr()
    assert "XY reference: all planes" in cap.out and "ALL planes" in cap.err
    assert main(base + ["--factor", "4", "--measured-planes", "0,4"]) == 2
    assert main(base + ["--measured-planes", "0,99"]) == 2
    assert "--measured-planes" in capsys.readouterr().err


# -- fitting without leakage, and checks before any fit ---------------------------------------
from volsr.engines.base import Capabilities  # noqa: E402


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
    from volsr.evaluation.protocols import _sampling_kwargs, needs_fit

    assert _sampling_kwargs(create_engine("linear"), 5) == {}
    assert _sampling_kwargs(MemoEngine(), 5) == {}  # learned, but not a diffusion engine
    assert _sampling_kwargs(create_engine("msdsr", preset="tiny"), 5) == {"sampling_steps": 5}
    assert needs_fit(MemoEngine()) and not needs_fit(create_engine("linear"))
