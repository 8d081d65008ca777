"""Feature extractors: the download-free lowlevel vector and the Inception pipeline."""

import sys

import numpy as np
import pytest
import torch

from volsr.errors import ModelFileError, VolsrError
from volsr.metrics import features as feat
from volsr.metrics import get_extractor, list_extractors


def test_lowlevel_shape_determinism_and_channels():
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 32, 32)).astype(np.float32)
    ex = get_extractor("lowlevel")
    a, b = ex(x), get_extractor("lowlevel")(x)
    assert a.shape == (5, 51) and a.dtype == np.float64
    assert np.array_equal(a, b) and np.all(np.isfinite(a))
    assert not ex.comparable_to_published
    rgb = get_extractor("lowlevel", n_channels=3)(rng.random((2, 3, 32, 32)))
    assert rgb.shape == (2, 153)


def test_lowlevel_sees_orientation():
    # horizontal streaks (rows duplicated, as nearest z-interpolation makes) vs the same texture
    rng = np.random.default_rng(1)
    x = rng.random((4, 1, 32, 32))
    streaks = np.repeat(x[:, :, ::4], 4, axis=2)
    ex = get_extractor("lowlevel")
    fx, fs = ex(x), ex(streaks)
    # features 0-6 are intensity statistics; 7 and 8 the log energies of horizontal and
    # vertical first differences at full scale: the vertical one drops for streaks
    assert np.all(fs[:, 8] < fx[:, 8] - 0.5)
    assert np.all(np.abs(fs[:, 7] - fx[:, 7]) < 0.5)


def test_lowlevel_errors():
    ex = get_extractor("lowlevel")
    with pytest.raises(VolsrError, match="at least 24 px"):
        ex(np.zeros((2, 1, 16, 16)))
    with pytest.raises(VolsrError, match="C = 1 or 3"):
        ex(np.zeros((2, 2, 32, 32)))
    with pytest.raises(VolsrError, match="unknown feature extractor"):
        get_extractor("vgg")
    assert list_extractors() == ["inception", "lowlevel"]


tv = pytest.importorskip("torchvision", reason="inception features need torchvision")


@pytest.fixture(scope="module")
def random_inception():
    return feat.InceptionExtractor("random", device="cpu", batch_size=4)


def test_inception_random_weights_shape_and_determinism(random_inception, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 40, 40)).astype(np.float32)
    f1 = random_inception(x)
    assert f1.shape == (2, 2048) and np.all(np.isfinite(f1)) and f1.std() > 0
    # a weight file with the pytorch-fid layout (1008 classes) loads into the FID variant and
    # gives the same features (determinism across instances); grayscale == replicated RGB
    state = dict(random_inception.model.state_dict())
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path / "pt_inception-test.pth"
    torch.save(state, path)
    loaded = feat.InceptionExtractor(path, device="cpu", batch_size=4)
    assert loaded.variant == "pytorch-fid" and loaded.comparable_to_published
    assert np.allclose(loaded(np.repeat(x, 3, axis=1)), f1, atol=1e-5)
    assert type(loaded.model.Mixed_7c).__name__ == "FIDInceptionE"
    assert isinstance(loaded.model.Mixed_7c, tv.models.inception.InceptionE)


def test_bad_weight_file(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(3)}, bad)
    with pytest.raises(ModelFileError, match="not an Inception-v3 weight file"):
        feat.InceptionExtractor(bad, device="cpu")


def test_missing_weights_error_says_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.delenv(feat.ENV_WEIGHTS, raising=False)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(ModelFileError) as err:
            get_extractor("inception", device="cpu")
    finally:
        torch.hub.set_dir(old)
    msg = str(err.value)
    for needle in ("--inception-weights", "VOLSR_INCEPTION_WEIGHTS", feat.FID_WEIGHTS_URL, "lowlevel",
                   str(tmp_path / "hub" / "checkpoints")):
        assert needle in msg
    monkeypatch.setenv(feat.ENV_WEIGHTS, str(tmp_path / "nope.pth"))
    with pytest.raises(ModelFileError, match="nope.pth"):
        get_extractor("inception", device="cpu")


def test_missing_torchvision_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(VolsrError, match=r"pip install 'volsr\[metrics\]'"):
        feat._torchvision()
