"""The Stack object and read_stack: npy, axes, byte order, bad input and measured planes, whatever the format."""

import numpy as np
import pytest
import tifffile
from _io_test_data import listing as _listing  # tests/io is on sys.path (pytest rootdir insertion)
from _io_test_data import vol as _vol

from volsr.errors import InputError
from volsr.io import Stack, read_stack, write_stack


# -- round trips -----------------------------------------------------------------------------
def test_axes_override(tmp_path):
    data = _vol((3, 7, 16, 16), np.uint8)
    np.save(tmp_path / "a.npy", data)
    assert read_stack(tmp_path / "a.npy").axes == "CZYX"
    stack = read_stack(tmp_path / "a.npy", axes="zcyx")
    assert stack.axes == "ZCYX"
    assert stack.shape_czyx == (7, 3, 16, 16)


def test_npy_round_trip(tmp_path):
    data = _vol((6, 20, 24), np.float32)
    write_stack(tmp_path / "a.npy", data, "ZYX", spacing=(2.0, 1.0, 1.0))
    stack = read_stack(tmp_path / "a.npy")
    np.testing.assert_array_equal(stack.data, data)
    assert stack.axes == "ZYX"
    assert stack.spacing == (None, None, None)  # .npy has no metadata
    assert _listing(tmp_path) == ["a.npy"]


def test_big_endian_data_is_returned_in_native_byte_order(tmp_path):
    data = _vol((4, 8, 8)).astype(">u2")
    np.save(tmp_path / "be.npy", data)
    stack = read_stack(tmp_path / "be.npy")
    assert stack.data.dtype == np.uint16 and stack.data.dtype.isnative
    np.testing.assert_array_equal(stack.data, data)


def test_stack_object():
    data = _vol((6, 2, 20, 24))
    stack = Stack(data=data, axes="zcyx", spacing=(1.0, 0.25, 0.5), unit="micron")
    assert stack.axes == "ZCYX" and stack.unit == "µm"
    assert stack.shape_czyx == (2, 6, 20, 24)
    assert stack.canonical().shape == (2, 6, 20, 24)
    assert stack.z_factor == pytest.approx(2.0)  # z / x spacing
    np.testing.assert_array_equal(stack.from_canonical(stack.canonical()), data)
    assert "ZCYX" in repr(stack)
    with pytest.raises(InputError, match="spacing z must be a positive"):
        Stack(data=data, axes="ZCYX", spacing=(0.0, 1.0, 1.0))
    with pytest.raises(InputError, match="has 3 letters but the array has 4 dimensions"):
        Stack(data=data, axes="ZYX")
    with pytest.raises(InputError, match="dtype"):
        Stack(data=np.array([["a"]]), axes="YX")


# -- bad input -------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_stack(tmp_path / "nope.tif")


def test_unsupported_extension(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported file type"):
        read_stack(tmp_path / "a.png")


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".nii", ".nii.gz"])
def test_non_image_file(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are my notes, not an image\n" * 20)
    with pytest.raises(InputError, match="cannot read"):
        read_stack(path)


@pytest.mark.parametrize("suffix", [".npy", ".nii.gz"])
def test_truncated_npy_and_nifti(tmp_path, suffix):
    path = write_stack(tmp_path / f"a{suffix}", _vol((8, 32, 32)), "ZYX")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_stack(path)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        read_stack(tmp_path / "obj.npy")


def test_several_time_points_are_refused_on_use(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", _vol((5, 3, 16, 16)), imagej=True, metadata={"axes": "TZYX"})
    stack = read_stack(tmp_path / "t.tif")
    assert stack.axes == "TZYX"
    with pytest.raises(InputError, match=r"more than one time point \(T=5\)"):
        stack.canonical()


def test_axes_that_do_not_match_the_array(tmp_path):
    write_stack(tmp_path / "a.tif", _vol((6, 16, 16)), "ZYX")
    with pytest.raises(InputError, match="has 4 letters but the array has 3 dimensions"):
        read_stack(tmp_path / "a.tif", axes="CZYX")
    with pytest.raises(InputError, match="no X"):
        read_stack(tmp_path / "a.tif", axes="ZYC")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_stack(tmp_path)


# -- measured planes -------------------------------------------------------------------------
def test_measured_planes_round_trip(tmp_path):
    vol = _vol((9, 8, 8))
    write_stack(tmp_path / "r.tif", vol, "ZYX", spacing=(1.0, 1.0, 1.0), measured_planes=[0, 4, 8])
    assert read_stack(tmp_path / "r.tif").measured_planes == (0, 4, 8)
    write_stack(tmp_path / "c.ome.tif", np.stack([vol, vol]), "CZYX", measured_planes=np.array([0, 3, 6]))
    assert read_stack(tmp_path / "c.ome.tif").measured_planes == (0, 3, 6)
    write_stack(tmp_path / "n.tif", vol, "ZYX")
    assert read_stack(tmp_path / "n.tif").measured_planes is None  # other files: unknown
    with pytest.warns(UserWarning, match="measured planes"):
        write_stack(tmp_path / "r.npy", vol, "ZYX", measured_planes=[0, 8])
    for bad in ([0, 9], [4, 2], [0, 1.5]):
        with pytest.raises(InputError):
            write_stack(tmp_path / "bad.tif", vol, "ZYX", measured_planes=bad)
    assert not (tmp_path / "bad.tif").exists()
