"""``volsr score2d``: values against the Python API, the LR baseline, JSON output, one-line errors."""

import json

import numpy as np
import pytest
import skimage.io
import tifffile
from scipy.ndimage import gaussian_filter

from volsr.cli import main
from volsr.evaluation import psnr_y, score_2d


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    hr = np.clip(0.5 + 0.8 * gaussian_filter(rng.normal(size=(3, 64, 64)), (0, 1, 1)), 0, 1)
    rgb = (np.moveaxis(hr, 0, -1) * 255).round().astype(np.uint8)  # H x W x 3, as files hold RGB
    sr = np.clip(rgb.astype(int) + 10, 0, 255).astype(np.uint8)  # a constant offset of 10 grey levels
    lr = rgb[1::4, 1::4]
    paths = {k: tmp_path / f"{k}.png" for k in ("hr", "sr", "lr")}
    for k, a in (("hr", rgb), ("sr", sr), ("lr", lr)):
        skimage.io.imsave(paths[k], a, check_contrast=False)
    return paths, rgb, sr


def _run(capsys, *argv):
    rc = main(["score2d", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_scores_match_the_api_and_the_closed_form(images, capsys):
    paths, rgb, sr = images
    rc, out, _ = _run(capsys, paths["sr"], "--reference", paths["hr"])
    assert rc == 0 and "Y channel of RGB" in out
    want = score_2d(np.moveaxis(sr, -1, 0) / 255, np.moveaxis(rgb, -1, 0) / 255)
    row = next(line for line in out.splitlines() if line.strip().startswith("SR"))
    assert row.split()[1:] == [f"{want['psnr']:.2f}", f"{want['ssim']:.4f}", f"{want['spectrum_error']:.4f}"]
    # where no channel clips at 255 the Y offset is 10 * 219 / 255 grey levels: PSNR's closed form
    unclipped = (rgb < 245).all(axis=-1)
    assert unclipped.mean() > 0.9
    mse_y = (10 / 255 * 219 / 255) ** 2
    assert want["psnr"] == pytest.approx(10 * np.log10(1 / mse_y), abs=0.5)
    assert psnr_y(np.full((3, 8, 8), 10 / 255), np.zeros((3, 8, 8))) == pytest.approx(10 * np.log10(1 / mse_y))


def test_lr_baseline_crop_border_and_json(images, tmp_path, capsys):
    paths, _, _ = images
    out_json = tmp_path / "s.json"
    rc, out, _ = _run(capsys, paths["sr"], "--reference", paths["hr"], "--lr", paths["lr"], "--crop-border", "4",
                      "--json", out_json)
    assert rc == 0 and "bicubic (LR)" in out and "scale 4" in out and "border 4 px" in out
    d = json.loads(out_json.read_text())
    assert d["scale"] == 4 and set(d["scores"]) == {"SR", "bicubic (LR)"}
    assert d["scores"]["SR"]["crop_border"] == 4 and d["scores"]["SR"]["channel"] == "Y"
    assert set(d["rps"]["log10_power"]) == {"HR", "LR", "SR"} and len(d["rps"]["frequency"]) == 28  # (64-8)//2
    # bicubic of a 4x subsampled texture loses fine detail: a larger spectrum error than the offset image
    assert d["scores"]["bicubic (LR)"]["spectrum_error"] > d["scores"]["SR"]["spectrum_error"]
    # the baseline row is what `volsr upscale --engine bicubic` writes for the LR file
    bic = tmp_path / "bicubic.tif"
    assert main(["upscale", str(paths["lr"]), "--scale", "4", "-o", str(bic), "-q"]) == 0
    rc, out, _ = _run(capsys, bic, "--reference", paths["hr"], "--lr", paths["lr"], "--crop-border", "4")
    rows = [line.split()[-3:] for line in out.splitlines() if line.strip().startswith(("SR", "bicubic"))]
    assert rc == 0 and len(rows) == 2 and rows[0] == rows[1]
    # a perfect match: PSNR inf on screen, null in strict JSON
    rc, out, _ = _run(capsys, paths["hr"], "--reference", paths["hr"], "--json", out_json, "--overwrite")
    assert rc == 0 and "inf" in out and json.loads(out_json.read_text())["scores"]["SR"]["psnr"] is None


@pytest.mark.parametrize("case, match", [
    ("size", "must be the same size"),
    ("channels", "must be the same size"),
    ("lr_scale", "not one whole scale"),
    ("unreadable", "cannot read"),
    ("missing", "does not exist"),
    ("json_exists", "--overwrite"),
    ("border", "--crop-border"),
])
def test_bad_input_gets_one_line_and_writes_nothing(images, tmp_path, capsys, case, match):
    paths, rgb, _ = images
    out_json = tmp_path / "out.json"
    sr, extra = paths["sr"], []
    if case == "size":
        sr = tmp_path / "small.tif"
        tifffile.imwrite(sr, rgb[:32])
    elif case == "channels":
        sr = tmp_path / "grey.tif"
        tifffile.imwrite(sr, rgb[..., 0])
    elif case == "lr_scale":
        bad = tmp_path / "lr.tif"
        tifffile.imwrite(bad, rgb[:24, :16])
        extra = ["--lr", bad]
    elif case == "unreadable":
        sr = tmp_path / "broken.png"
        sr.write_bytes(b"not a png")
    elif case == "missing":
        sr = tmp_path / "nothere.tif"
    elif case == "json_exists":
        out_json.write_text("{}")
    elif case == "border":
        extra = ["--crop-border", "40"]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = _run(capsys, sr, "--reference", paths["hr"], "--json", out_json, *extra)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no json, no temporary file


@pytest.fixture(scope="module")
def brainsr_model(tmp_path_factory):
    """A tiny RGB brainsr model (3 steps): its autoencoder is what --model needs, its quality is not."""
    import volsr
    from volsr.training.degrade import IsotropicDegradation

    rng = np.random.default_rng(1)
    rgb = np.clip(0.5 + 0.8 * gaussian_filter(rng.normal(size=(3, 1, 64, 64)), (0, 0, 1, 1)), 0, 1)
    eng = volsr.create_engine("brainsr", preset="tiny", degradation=IsotropicDegradation(scale=2))
    eng.fit(rgb.astype(np.float32), steps=3, batch_size=2)
    assert eng.cfg.channels == 3
    return eng.save(tmp_path_factory.mktemp("model") / "tiny_brainsr.volsr")


def test_model_adds_the_hr_latent_curve_and_scores(images, brainsr_model, tmp_path, capsys):
    from volsr import load_engine
    from volsr.evaluation import autoencoded

    paths, rgb, _ = images
    out_json = tmp_path / "s.json"
    rc, out, _ = _run(capsys, paths["sr"], "--reference", paths["hr"], "--lr", paths["lr"], "--crop-border", "4",
                      "--model", brainsr_model, "--device", "cpu", "--json", out_json)
    assert rc == 0 and "vs HR-latent" in out
    d = json.loads(out_json.read_text())
    assert d["model"] == {"path": str(brainsr_model), "engine": "brainsr"}
    assert set(d["scores"]) == {"SR", "bicubic (LR)", "HR-latent"}
    curves = d["rps"]["log10_power"]
    assert set(curves) == {"HR", "LR", "SR", "HR-latent"}
    assert all(len(c) == len(d["rps"]["frequency"]) and np.all(np.isfinite(c)) for c in curves.values())
    # the HR-latent row is the autoencoder against HR, as the Python API computes it (deterministic)
    hr = np.moveaxis(rgb, -1, 0)[None] / 255
    want = score_2d(autoencoded(load_engine(brainsr_model), hr), hr, crop_border=4)
    got = d["scores"]["HR-latent"]
    assert got["psnr"] == pytest.approx(want["psnr"], rel=1e-6) and np.isfinite(got["psnr"])
    assert got["spectrum_error"] == pytest.approx(want["spectrum_error"], rel=1e-6) and got["spectrum_error"] > 0
    # SR's error against HR-latent is the RMS gap of the two curves written to the file
    vs = np.sqrt(np.mean((np.array(curves["SR"]) - np.array(curves["HR-latent"])) ** 2))
    assert d["scores"]["SR"]["spectrum_error_vs_latent"] == pytest.approx(vs) and vs > 0
    assert "spectrum_error_vs_latent" not in d["scores"]["bicubic (LR)"]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip().startswith(("SR", "HR-"))}
    assert rows["HR-latent"] == [f"{got['psnr']:.2f}", f"{got['ssim']:.4f}", f"{got['spectrum_error']:.4f}"]
    assert rows["SR"][-1] == f"{vs:.4f}"


@pytest.mark.parametrize("case, match", [
    ("msunet", "is a 'msunet' model, which has no latent autoencoder; --model needs an engine with one, "
               "such as brainsr"),
    ("bundled", "is a 'msdsr' model, which has no latent autoencoder"),
    ("channels", "was trained for 3 channel(s) but the reference"),
])
def test_model_without_autoencoder_or_channels_one_line_and_no_json(images, brainsr_model, tmp_path_factory,
                                                                    tmp_path, capsys, case, match):
    import volsr

    paths, rgb, _ = images
    sr, hr, model = paths["sr"], paths["hr"], brainsr_model
    if case == "msunet":
        model = volsr.create_engine("msunet", preset="tiny").save(tmp_path_factory.mktemp("m") / "msunet.volsr")
    elif case == "bundled":
        model = "sample_model"
    else:
        sr, hr = tmp_path / "grey_sr.tif", tmp_path / "grey_hr.tif"
        tifffile.imwrite(sr, rgb[..., 0])
        tifffile.imwrite(hr, rgb[..., 0])
    out_json = tmp_path / "out.json"
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = _run(capsys, sr, "--reference", hr, "--model", model, "--json", out_json)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1 and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no json, no temporary file
