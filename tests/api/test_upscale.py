"""The 2D path: `volsr upscale` / volsr.upscale with the bicubic baseline engine."""

import numpy as np
import pytest
import tifffile
import torch

import volsr
from volsr.api import upscale
from volsr.cli import main
from volsr.pipeline.inplane import upscale_volume


def test_rgb_and_grayscale_round_trip_with_pixel_size(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (24, 30, 3)).astype(np.uint8)
    res = upscale(rgb, 2, axes="YXS")
    assert res.data.shape == (48, 60, 3) and res.data.dtype == np.uint8 and res.axes == "YXS"
    gray = volsr.write_stack(tmp_path / "g.tif", (rgb[..., 0].astype(np.uint16) * 100), "YX", spacing=(None, 0.5, 0.5))
    res = upscale(gray, 4)
    assert res.data.shape == (96, 120) and res.data.dtype == np.uint16
    assert res.spacing[1:] == (0.125, 0.125)
    back = volsr.read_stack(res.save(tmp_path / "g_x4.tif"))
    assert back.spacing[1:] == pytest.approx((0.125, 0.125)) and back.data.shape == (96, 120)


def test_every_plane_of_a_stack_in_order():
    vol = np.stack([np.full((10, 12), z * 10.0, np.float32) for z in range(3)])
    res = upscale(vol, 3, axes="ZYX", output_dtype="float32")
    assert res.data.shape == (3, 30, 36)
    np.testing.assert_allclose(res.data[:, 5, 5], [0.0, 10.0, 20.0], atol=1e-4)


def test_tiled_equals_untiled_within_tolerance():
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(np.random.default_rng(1).random((70, 90)), 2.0).astype(np.float32)[None, None]
    img = (img - img.min()) / (img.max() - img.min())
    eng = volsr.create_engine("bicubic")
    whole = upscale_volume(img, 2, eng, tile=None).data
    tiled = upscale_volume(img, 2, eng, tile=32, overlap=0.25).data
    assert np.abs(tiled - whole).max() < 0.02  # tile seams blended with Gaussian weights
    assert np.abs(tiled - whole).mean() < 0.002


@pytest.mark.parametrize("case, match", [
    ("tiny", "at least 2x2"), ("scale", "--scale"), ("level", "resolution level"), ("zengine", "does not upscale"),
])
def test_bad_input_one_line_error_and_nothing_written(tmp_path, capsys, case, match):
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, np.zeros((1, 1), np.uint8) if case == "tiny" else np.zeros((16, 16), np.uint8))
    args = ["upscale", str(src), "-q", "-o", str(tmp_path / "out.tif")]
    args += {"scale": ["--scale", "0.5"], "level": ["--level", "3"], "zengine": ["--engine", "linear"]}.get(case, [])
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("volsr: error:") and match in err and "Traceback" not in err
    assert not (tmp_path / "out.tif").exists()


def test_cli_png_and_whole_slide_level(tmp_path):
    from skimage.io import imsave

    png = tmp_path / "a.png"
    imsave(png, np.random.default_rng(2).integers(0, 255, (20, 24, 4)).astype(np.uint8), check_contrast=False)
    assert main(["upscale", str(png), "-q", "--scale", "2"]) == 0
    out = volsr.read_stack(tmp_path / "a_x2.tif")
    assert out.data.shape == (40, 48, 3)  # alpha dropped, RGB kept
    slide = tmp_path / "slide.tif"
    with tifffile.TiffWriter(slide) as tw:
        base = np.random.default_rng(3).integers(0, 255, (64, 64, 3)).astype(np.uint8)
        tw.write(base, subifds=1, photometric="rgb")
        tw.write(base[::2, ::2], subfiletype=1, photometric="rgb")
    assert main(["upscale", str(slide), "-q", "--level", "1", "--scale", "2", "-o", str(tmp_path / "s.tif")]) == 0
    assert volsr.read_stack(tmp_path / "s.tif").data.shape == (64, 64, 3)


def test_bicubic_engine_declares_2d_only():
    eng = volsr.create_engine("bicubic")
    assert eng.capabilities.upscale and not eng.capabilities.rows
    assert eng.upscale(torch.rand(1, 1, 5, 7), 2).shape == (1, 1, 10, 14)


def test_train_for_upscale_then_upscale_with_the_model(tmp_path, capsys):
    img = np.random.default_rng(4).random((64, 64)).astype(np.float32)
    src = volsr.write_stack(tmp_path / "hr.tif", img, "YX", spacing=(None, 0.5, 0.5))
    model = tmp_path / "m.volsr"
    assert main(["train", str(src), "-o", str(model), "--engine", "msunet", "--preset", "tiny", "--task", "upscale",
                 "--scale", "2", "--steps", "3", "--crop", "32"]) == 0
    eng = volsr.load_engine(model)
    assert eng.cfg.degradation.kind == "isotropic" and eng.cfg.degradation.scale == 2
    res = upscale(img[:20, :24], model=model, output_dtype="float32")  # the scale comes from the model
    assert res.scale == 2 and res.data.shape == (40, 48)
    with pytest.raises(volsr.VolsrError, match="trained for 2x"):
        upscale(img[:20, :24], 3, model=model)
    rc = main(["infer", str(volsr.write_stack(tmp_path / "z.tif", np.zeros((4, 16, 16), np.float32), "ZYX",
                                              spacing=(2.0, 1.0, 1.0))), "-q", "--model", str(model)])
    assert rc == 2 and "trained to upscale" in capsys.readouterr().err


def test_zero_shot_fit_on_the_image_itself():
    img = np.random.default_rng(5).random((48, 48)).astype(np.float32)
    res = upscale(img, 2, engine="msunet", fit_steps=2, output_dtype="float32")
    assert res.data.shape == (96, 96) and "zero-shot" in res.engine.provenance["fit"]


@pytest.mark.parametrize("engine, match", [("msdsr", "cannot be trained to upscale"), ("e2e-unet", "cannot be trained")])
def test_z_only_engines_refuse_the_upscale_task(tmp_path, capsys, engine, match):
    src = volsr.write_stack(tmp_path / "hr.tif", np.zeros((32, 32), np.float32), "YX")
    rc = main(["train", str(src), "-o", str(tmp_path / "m.volsr"), "--engine", engine, "--task", "upscale",
               "--steps", "1"])
    assert rc == 2 and match in capsys.readouterr().err and not (tmp_path / "m.volsr").exists()
