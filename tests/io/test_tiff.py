"""TIFF, OME-TIFF and ImageJ stacks: axes, spacing and unit round trips, truncated files."""

import numpy as np
import pytest
import tifffile
from _io_test_data import listing as _listing  # tests/io is on sys.path (pytest rootdir insertion)
from _io_test_data import vol as _vol

from volsr.errors import InputError
from volsr.io import read_stack, write_stack


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "axes,shape,dtype",
    [
        ("ZYX", (6, 20, 24), np.uint16),
        ("ZYX", (6, 20, 24), np.float32),
        ("CZYX", (2, 6, 20, 24), np.uint8),
        ("ZCYX", (6, 2, 20, 24), np.int16),
        ("TZCYX", (1, 6, 1, 20, 24), np.uint16),
        ("ZYXS", (6, 20, 24, 3), np.uint8),
        ("YX", (20, 24), np.float64),
    ],
)
def test_ome_tiff_round_trip_keeps_axes_dtype_and_spacing(tmp_path, axes, shape, dtype):
    data = _vol(shape, dtype)
    out = write_stack(tmp_path / "out.tif", data, axes, spacing=(0.375, 0.125, 0.125), unit="µm")
    assert out == tmp_path / "out.tif"
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome
    stack = read_stack(out)
    assert stack.axes == axes
    assert stack.data.dtype == data.dtype
    np.testing.assert_array_equal(stack.data, data)
    assert stack.spacing == pytest.approx((0.375, 0.125, 0.125))
    assert stack.unit == "µm"
    assert stack.z_factor == pytest.approx(3.0)
    assert stack.path == out
    assert _listing(tmp_path) == ["out.tif"]  # no temporary file left


def test_ome_tiff_new_spacing_and_unit_conversion(tmp_path):
    data = _vol((4, 8, 8))
    write_stack(tmp_path / "a.ome.tif", data, "ZYX", spacing=(500.0, 100.0, 100.0), unit="nm")
    stack = read_stack(tmp_path / "a.ome.tif")
    assert stack.spacing == pytest.approx((500.0, 100.0, 100.0))
    assert stack.unit == "nm"
    # Mixed units in a foreign OME file are converted to the x unit.
    tifffile.imwrite(
        tmp_path / "mixed.ome.tif", data, ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1000.0,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "nm"},
    )
    stack = read_stack(tmp_path / "mixed.ome.tif")
    assert stack.spacing == pytest.approx((1.0, 0.2, 0.2))
    assert stack.z_factor == pytest.approx(5.0)


def test_imagej_hyperstack_spacing(tmp_path):
    data = _vol((5, 16, 16), np.float32)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"},
    )
    stack = read_stack(path)
    assert stack.axes == "ZYX"
    assert stack.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert stack.unit == "µm"
    assert stack.z_factor == pytest.approx(4.0)
    np.testing.assert_array_equal(stack.data, data)


def test_imagej_multichannel_hyperstack(tmp_path):
    data = _vol((5, 2, 16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    stack = read_stack(tmp_path / "h.tif")
    assert stack.axes == "ZCYX"
    assert stack.shape_czyx == (2, 5, 16, 16)
    assert stack.spacing == (None, None, None)  # uncalibrated
    assert stack.z_factor is None


def test_plain_tiff_without_axes_is_read_as_zyx(tmp_path):
    data = _vol((7, 16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", data)
    stack = read_stack(tmp_path / "plain.tif")
    assert stack.axes == "ZYX"
    assert stack.spacing == (None, None, None)
    np.testing.assert_array_equal(stack.data, data)
    tifffile.imwrite(tmp_path / "plain4.tif", _vol((2, 7, 16, 16), np.uint8))
    assert read_stack(tmp_path / "plain4.tif").axes == "CZYX"


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ome.tif", "plain.tif", "imagej.tif"])
def test_truncated_tiff(tmp_path, name):
    data = _vol((8, 32, 32))
    path = tmp_path / name
    if name == "ome.tif":
        write_stack(path, data, "ZYX", spacing=(1.0, 0.5, 0.5))
    elif name == "plain.tif":
        tifffile.imwrite(path, data)
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_stack(path)


def test_tiff_missing_its_last_bytes(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _vol((8, 32, 32)), compression="zlib")
    raw = path.read_bytes()
    path.write_bytes(raw[:-200])
    with pytest.raises(InputError, match="truncated"):
        read_stack(path)
