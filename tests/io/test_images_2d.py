"""2D images: one reader, one alpha rule."""

import numpy as np
import pytest
import tifffile

from volsr.errors import InputError


def test_read_image_2d_alpha_rule_and_shared_by_data_and_reference_loader(tmp_path):
    import skimage.io

    from volsr.cli.evaluate import load_reference
    from volsr.io import read_image_2d
    from volsr.training import planes as data

    assert data.read_image_2d is read_image_2d  # the old name still works
    rng = np.random.default_rng(0)
    rgba = (rng.random((40, 40, 4)) * 255).astype(np.uint8)
    la = (rng.random((40, 40, 2)) * 255).astype(np.uint8)
    skimage.io.imsave(str(tmp_path / "rgba.png"), rgba, check_contrast=False)
    skimage.io.imsave(str(tmp_path / "la.png"), la, check_contrast=False)
    tifffile.imwrite(tmp_path / "four.tif", rgba)  # 4 channels in a TIFF are kept
    assert read_image_2d(tmp_path / "rgba.png").shape == (3, 40, 40)
    assert read_image_2d(tmp_path / "la.png").shape == (1, 40, 40)
    four = read_image_2d(tmp_path / "four.tif")
    assert four.shape == (4, 40, 40) and four.dtype == np.float32
    np.testing.assert_array_equal(four[3], rgba[..., 3])
    # the FID reference loader applies the same rule
    assert [im.shape for im in load_reference(tmp_path / "rgba.png")] == [(3, 40, 40)]
    assert [im.shape for im in load_reference(tmp_path / "la.png")] == [(1, 40, 40)]
    assert [im.shape for im in load_reference(tmp_path / "four.tif")] == [(4, 40, 40)]
    tifffile.imwrite(tmp_path / "stack.tif", rng.random((5, 16, 16)).astype(np.float32))
    assert len(load_reference(tmp_path / "stack.tif")) == 5  # a stack gives its XY planes
    with pytest.raises(InputError, match="2D image"):
        tifffile.imwrite(tmp_path / "vol.tif", rng.random((3, 9, 16, 16)).astype(np.float32))
        read_image_2d(tmp_path / "vol.tif")
