"""2D SR scores: Y-channel PSNR/SSIM, z-scored RPS curves, spectrum error, HR-latent curves."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from volsr.errors import InputError, VolsrError
from volsr.evaluation import (
    SPECTRUM_FLOOR,
    as_batch,
    autoencoded,
    psnr_y,
    rps,
    rps_curves,
    score_2d,
    spectrum_error_2d,
    ssim_y,
    to_y,
    unit_range,
    upsample_lr,
)


@pytest.fixture(scope="module")
def texture():
    return np.clip(0.5 + 0.2 * gaussian_filter(np.random.default_rng(0).normal(size=(64, 64)), 1.0) * 4, 0, 1)


def test_y_channel_is_bt601_luma():
    rgb = np.zeros((3, 2, 2))
    rgb[0, 0, 0] = 1.0  # pure red
    rgb[:, 1, 1] = 1.0  # white
    y = to_y(rgb)[0, 0]
    assert y[0, 0] == pytest.approx((16 + 65.481) / 255)
    assert y[1, 1] == pytest.approx(235 / 255) and y[0, 1] == pytest.approx(16 / 255)
    grey = np.random.default_rng(0).random((5, 6))
    assert np.array_equal(to_y(grey)[0, 0], grey)  # grey images as they are


def test_psnr_of_a_constant_offset_is_the_closed_form():
    hr = np.full((16, 16), 0.4)
    assert psnr_y(hr + 0.05, hr) == pytest.approx(10 * np.log10(1 / 0.05**2))
    # RGB: an offset d on every channel moves Y by d * 219 / 255
    rgb = np.full((3, 16, 16), 0.4)
    assert psnr_y(rgb + 0.05, rgb) == pytest.approx(-20 * np.log10(0.05 * 219 / 255))
    assert psnr_y(hr, hr) == float("inf")
    # a batch reports the mean of per-image values (as papers average over a test set)
    batch_sr = np.stack([hr + 0.05, hr + 0.1])[:, None]
    assert psnr_y(batch_sr, np.stack([hr, hr])[:, None]) == pytest.approx((26.0206 + 20.0) / 2, abs=1e-3)


def test_ssim_on_y_matches_scikit_image(texture):
    rgb = np.stack([texture, texture**2, 1 - texture])
    noisy = np.clip(rgb + np.random.default_rng(1).normal(0, 0.05, rgb.shape), 0, 1)
    want = structural_similarity(to_y(noisy)[0, 0], to_y(rgb)[0, 0], data_range=1.0, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)
    assert ssim_y(noisy, rgb) == pytest.approx(want, abs=1e-9)
    assert ssim_y(rgb, rgb) == pytest.approx(1.0)


def test_crop_border_shaves_every_side(texture):
    sr = texture.copy()
    sr[:3] += 0.3  # wrong only in the top 3 rows
    assert np.isfinite(psnr_y(sr, texture)) and psnr_y(sr, texture, crop_border=3) == float("inf")
    with pytest.raises(InputError, match="crop-border"):
        psnr_y(sr, texture, crop_border=30)
    with pytest.raises(InputError, match="crop_border"):
        psnr_y(sr, texture, crop_border=-1)


def test_rps_of_a_sinusoid_peaks_in_its_bin():
    x = np.arange(64)
    img = 0.5 + 0.4 * np.sin(2 * np.pi * 0.1875 * x)[None, :] * np.ones((64, 1))
    k, lp = rps(img)
    assert len(k) == 32 and abs(k[np.argmax(lp)] - 0.1875) <= 0.5 / 32
    # z-scored: the same curve for another brightness and contrast
    assert np.allclose(rps(0.2 * img + 0.1)[1], lp)
    assert rps(np.full((16, 16), 0.3))[1] == pytest.approx(np.full(8, np.log10(SPECTRUM_FLOOR)))


def test_spectrum_error_zero_for_identical_and_grows_with_blur(texture):
    assert spectrum_error_2d(texture, texture) == 0.0
    errs = [spectrum_error_2d(gaussian_filter(texture, s), texture) for s in (0.5, 1.0, 2.0)]
    assert 0 < errs[0] < errs[1] < errs[2]
    assert spectrum_error_2d(0.5 * texture + 0.2, texture) == pytest.approx(0.0, abs=1e-9)  # texture, not contrast
    s = score_2d(gaussian_filter(texture, 1.0), texture, crop_border=2)
    assert s["spectrum_error"] == pytest.approx(spectrum_error_2d(gaussian_filter(texture, 1.0), texture,
                                                                  crop_border=2))
    assert s["channel"] == "grey" and s["images"] == 1 and s["ssim"] < 1 and np.isfinite(s["psnr"])


def test_shape_and_channel_errors_name_the_problem(texture):
    with pytest.raises(InputError, match="same size"):
        psnr_y(texture[:32], texture)
    with pytest.raises(InputError, match="moveaxis"):
        as_batch(np.zeros((16, 16, 3)))
    with pytest.raises(InputError, match="NaN"):
        as_batch(np.full((8, 8), np.nan))


def test_unit_range_and_lr_upsampling():
    assert unit_range(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert unit_range(np.array([0.25], np.float32)).tolist() == [0.25]
    up, s = upsample_lr(np.full((8, 8), 0.3), (34, 33))  # HR sides not a multiple of the scale
    assert s == 4 and up.shape == (1, 1, 34, 33) and np.allclose(up, 0.3)
    with pytest.raises(InputError, match="whole scale"):
        upsample_lr(np.zeros((8, 8)), (32, 16))


def test_curves_hr_lr_sr(texture):
    lr = texture[1::2, 1::2]
    c = rps_curves(texture, lr=lr, sr={"blurred": gaussian_filter(texture, 1.0), "same": texture})
    assert list(c.log_power) == ["HR", "LR", "blurred", "same"] and len(c.frequency) == 32
    assert c.error("same") == 0.0 and c.error("blurred") > 0 and c.error("LR") > 0
    d = c.to_dict()
    assert len(d["frequency"]) == 32 and set(d["log10_power"]) == set(c.log_power)
    with pytest.raises(InputError, match="'blurred'"):
        rps_curves(texture, sr={"blurred": texture[:32]})


def test_hr_latent_curve_from_the_engines_autoencoder():
    import volsr
    from volsr.training.degrade import IsotropicDegradation

    eng = volsr.create_engine("brainsr", preset="tiny", channels=3, degradation=IsotropicDegradation(scale=2))
    img = np.random.default_rng(0).random((3, 30, 26)).astype(np.float32)
    with pytest.raises(VolsrError, match="untrained"):
        autoencoded(eng, img)
    eng.trained = True  # untrained weights are enough to check the plumbing
    x = torch.from_numpy(img[None])
    out = eng.autoencode(x)
    assert out.shape == x.shape and torch.equal(out, eng.autoencode(x))  # deterministic (latent mean)
    ae = eng.ema["autoencoder"]
    with torch.no_grad():
        want = eng.decode(ae, eng.encode(ae, torch.nn.functional.pad(x, (0, 2, 0, 2), mode="reflect")))
    assert torch.allclose(out, want[..., :30, :26], atol=1e-6)
    c = rps_curves(img, engine=eng)
    assert list(c.log_power) == ["HR", "HR-latent"] and c.error("HR-latent") > 0
    # an engine without an autoencoder adds no curve; asking it directly is refused
    bicubic = volsr.create_engine("bicubic")
    assert not bicubic.capabilities.autoencoder and list(rps_curves(img, engine=bicubic).log_power) == ["HR"]
    with pytest.raises(VolsrError, match="no latent autoencoder"):
        bicubic.autoencode(x)
