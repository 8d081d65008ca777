"""``volsr score2d``: values against the Python API, the LR baseline, JSON output, one-line errors."""

import json

import numpy as np
import pytest
import skimage.io
import tifffile
from scipy.ndimage import gaussian_filter

from volsr.cli import main
from volsr.evaluation_2d import psnr_y, score_2d


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
