"""Training planes: crops, augmentations, background rejection, seeds, sources, triplets."""

import numpy as np
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter

from volsr.errors import InputError, VolsrError
from volsr.training.planes import PlaneData, PlaneTriplets, as_plane_data, as_triplet_data, read_image_2d


def texture(shape, seed=0, sigma=1.5):
    return gaussian_filter(np.random.default_rng(seed).random(shape), sigma).astype(np.float32)


def test_batch_shape_dtype_and_normalised_range():
    vol = texture((6, 80, 90))[None] * 1000 + 200
    data = PlaneData([vol], crop=32, pmin=0, pmax=100)
    b = data.batch(np.random.default_rng(0), 8)
    assert b.shape == (8, 1, 32, 32) and b.dtype == torch.float32
    # min/max normalisation of the source: values in [0, 1]
    assert 0.0 <= float(b.min()) and float(b.max()) <= 1.0 + 1e-6
    assert float(b.max() - b.min()) > 0.3
    assert data.channels == 1 and data.n_planes == 6


def test_seed_reproducibility():
    data = PlaneData([texture((4, 64, 64))], crop=24)
    a = data.batch(np.random.default_rng(5), 6)
    b = data.batch(np.random.default_rng(5), 6)
    c = data.batch(np.random.default_rng(6), 6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augmentations_are_the_eight_dihedral_transforms():
    plane = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    data = PlaneData([plane], crop=16, min_std=0, min_foreground=0, pmin=0, pmax=100)
    ref = (plane - plane.min()) / (plane.max() - plane.min())
    dihedral = []
    for k in range(4):
        r = np.rot90(ref, k)
        dihedral += [r, r[::-1]]
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(80):
        s = data.sample(rng)[0]
        match = [i for i, d in enumerate(dihedral) if np.allclose(s, d)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))


def test_no_augmentation_gives_plain_crops():
    plane = texture((40, 40))
    data = PlaneData([plane], crop=40, augment=False, min_std=0, min_foreground=0)
    s = data.sample(np.random.default_rng(0))[0]
    norm = data._sources[0].planes[0][0, 0]
    assert np.array_equal(s, norm)


def test_background_rejection():
    vol = np.zeros((4, 128, 128), np.float32)
    vol[:, :, 64:] = texture((4, 128, 64)) * 10 + 1  # right half textured, left half empty
    rng = np.random.default_rng(0)
    data = PlaneData([vol], crop=32, augment=False, max_retries=50)
    stds = [float(data.sample(rng).std()) for _ in range(100)]
    assert min(stds) >= data.min_std
    assert data.rejected > 0
    off = PlaneData([vol], crop=32, augment=False, min_std=0, min_foreground=0)
    stds = [float(off.sample(rng).std()) for _ in range(100)]
    assert min(stds) == 0.0 and off.rejected == 0


def test_all_background_still_returns_after_bounded_retries():
    data = PlaneData([np.zeros((2, 40, 40), np.float32)], crop=32, max_retries=3)
    b = data.batch(np.random.default_rng(0), 4)
    assert b.shape == (4, 1, 32, 32)
    assert data.rejected == 4 * 3 and data.drawn == 4 * 4


def test_small_planes_reflect_padded_or_refused():
    data = PlaneData([texture((2, 40, 30))], crop=48)
    assert data.batch(np.random.default_rng(0), 2).shape == (2, 1, 48, 48)
    with pytest.raises(InputError, match="crop"):
        PlaneData([texture((2, 20, 60))], crop=48)


def test_bad_options_and_sources():
    with pytest.raises(VolsrError):
        PlaneData([texture((2, 40, 40))], crop=4)
    with pytest.raises(InputError):
        PlaneData([])
    with pytest.raises(InputError):
        PlaneData([np.zeros((1, 2, 3, 4, 5))])
    with pytest.raises(InputError, match="does not exist"):
        PlaneData(["/no/such/file.tif"])
    with pytest.raises(InputError):
        PlaneData([object()])


def test_multichannel_and_channel_mismatch():
    rgb = np.stack([texture((3, 40, 40), seed=i) for i in range(3)])
    data = PlaneData([rgb], crop=32)
    assert data.channels == 3
    assert data.batch(np.random.default_rng(0), 2).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="channel"):
        PlaneData([rgb, texture((3, 40, 40))], crop=32)


def test_image_folder_png_and_tiff(tmp_path):
    import skimage.io

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        img = (texture((50, 60), seed=i) * 255).astype(np.uint8)
        skimage.io.imsave(str(folder / f"g{i}.png"), img, check_contrast=False)
    tifffile.imwrite(folder / "t.tif", (texture((64, 64), seed=9) * 4000).astype(np.uint16))
    (folder / "notes.txt").write_text("not an image")
    data = PlaneData([folder], crop=32)
    assert data.channels == 1 and data.n_planes == 4
    assert len(data.source_names) == 4 and all(n.startswith("imgs/") for n in data.source_names)
    assert data.batch(np.random.default_rng(0), 3).shape == (3, 1, 32, 32)


def test_rgb_png_channels_last_and_mixed_folder_refused(tmp_path):
    import skimage.io

    rgba = (np.random.default_rng(0).random((40, 40, 4)) * 255).astype(np.uint8)
    skimage.io.imsave(str(tmp_path / "a.png"), rgba, check_contrast=False)
    img = read_image_2d(tmp_path / "a.png")
    assert img.shape == (3, 40, 40)  # alpha dropped, channels first
    assert np.array_equal(img[1], rgba[..., 1].astype(np.float32))
    skimage.io.imsave(str(tmp_path / "b.png"), rgba[..., 0], check_contrast=False)
    with pytest.raises(InputError, match="channel"):
        PlaneData([tmp_path], crop=32)
    with pytest.raises(InputError, match="no images"):
        (tmp_path / "empty").mkdir()
        PlaneData([tmp_path / "empty"])


def test_stack_file_source(tmp_path):
    vol = (texture((5, 48, 56)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", vol, imagej=True, metadata={"axes": "ZYX"})
    data = as_plane_data(tmp_path / "s.tif", crop=32)
    assert data.n_planes == 5 and data.source_names == ["s.tif"]
    assert data.batch(np.random.default_rng(0), 2).shape == (2, 1, 32, 32)


def test_as_plane_data_variants():
    vol = texture((3, 40, 40))
    d = as_plane_data([vol, vol[None]], crop=32)
    assert d.n_planes == 6
    assert as_plane_data(d) is d
    assert as_plane_data(d, crop=32) is d
    with pytest.raises(VolsrError, match="crop"):
        as_plane_data(d, crop=16)
    t = as_triplet_data(d)
    back = as_plane_data(t)
    assert type(back) is PlaneData and back.batch(np.random.default_rng(0), 2).ndim == 4


def test_triplets_are_consecutive_planes_with_joint_augmentation():
    z = np.arange(10, dtype=np.float32)[:, None, None]
    yy = np.linspace(0, 1, 40, dtype=np.float32)[None, :, None]
    vol = (z * 10 + yy * np.ones((1, 1, 40), np.float32))[None]  # z ramp + y ramp
    data = PlaneTriplets([vol], crop=32, min_std=0, min_foreground=0)
    b = data.batch(np.random.default_rng(0), 16)
    assert b.shape == (16, 3, 1, 32, 32)
    d01 = b[:, 1] - b[:, 0]
    d12 = b[:, 2] - b[:, 1]
    # neighbours differ by one z step everywhere (same xy transform for the three planes)
    assert torch.allclose(d01, d12, atol=1e-5)
    step = float(10 / (vol.max() - vol.min()) * (1 - 0.002))  # ~normalised z step
    assert torch.allclose(d01.abs(), torch.full_like(d01, step), rtol=0.05)
    assert (d01.flatten(1)[:, 0] < 0).any() and (d01.flatten(1)[:, 0] > 0).any()  # z order flipped sometimes


def test_triplets_refuse_2d_only_data():
    with pytest.raises(VolsrError, match="volumetric"):
        PlaneTriplets([texture((40, 40))], crop=32)
    with pytest.raises(VolsrError, match="volumetric"):
        PlaneTriplets([texture((2, 40, 40))], crop=32)  # 2 planes: no triplet
