"""Stack I/O: formats, axes, spacing, atomic writes and bad input."""

import os

import numpy as np
import pytest
import tifffile

from volsr.errors import InputError, OutputError
from volsr.io import Stack, read_stack, write_stack


def _vol(shape=(6, 20, 24), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _listing(folder):
    return sorted(os.listdir(folder))


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


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip(tmp_path, suffix):
    data = _vol((6, 20, 24), np.int16)
    out = write_stack(tmp_path / f"a{suffix}", data, "ZYX", spacing=(2.0, 0.5, 0.25))
    stack = read_stack(out)
    assert stack.axes == "XYZ"  # NIfTI's storage order
    assert stack.data.dtype == np.int16
    np.testing.assert_array_equal(stack.canonical()[0], data)
    assert stack.spacing == pytest.approx((2.0, 0.5, 0.25))
    assert stack.unit == "µm"
    assert stack.z_factor == pytest.approx(8.0)
    # multi-channel -> X Y Z C
    czyx = _vol((2, 6, 20, 24), np.float32)
    stack = read_stack(write_stack(tmp_path / f"c{suffix}", czyx, "CZYX", spacing=(1.0, 0.5, 0.5)))
    assert stack.axes == "XYZC"
    np.testing.assert_array_equal(stack.canonical(), czyx)
    assert _listing(tmp_path) == sorted([f"a{suffix}", f"c{suffix}"])


def test_big_endian_data_is_returned_in_native_byte_order(tmp_path):
    data = _vol((4, 8, 8)).astype(">u2")
    np.save(tmp_path / "be.npy", data)
    stack = read_stack(tmp_path / "be.npy")
    assert stack.data.dtype == np.uint16 and stack.data.dtype.isnative
    np.testing.assert_array_equal(stack.data, data)


def test_nifti_without_spacing_reads_as_unknown(tmp_path):
    write_stack(tmp_path / "a.nii.gz", _vol((4, 8, 8)), "ZYX")
    assert read_stack(tmp_path / "a.nii.gz").spacing == (None, None, None)


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


# -- atomic writes ---------------------------------------------------------------------------
def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_imwrite(path, data, **kwargs):
        with open(path, "wb") as fh:  # half a file, then the machine "dies"
            fh.write(b"II*\x00" + bytes(1000))
        raise RuntimeError("interrupted")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_stack(tmp_path / "out.tif", _vol(), "ZYX")
    assert _listing(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    old = _vol(seed=1)
    write_stack(tmp_path / "out.tif", old, "ZYX")

    def broken_imwrite(path, data, **kwargs):
        open(path, "wb").write(b"II*\x00")
        raise KeyboardInterrupt

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(KeyboardInterrupt):
        write_stack(tmp_path / "out.tif", _vol(seed=2), "ZYX", overwrite=True)
    assert _listing(tmp_path) == ["out.tif"]
    np.testing.assert_array_equal(read_stack(tmp_path / "out.tif").data, old)


def test_os_error_while_writing_is_an_output_error(tmp_path, monkeypatch):
    def full_disk(file, arr, allow_pickle=True):
        file.write(b"\x93NUMPY")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        write_stack(tmp_path / "out.npy", _vol(), "ZYX")
    assert _listing(tmp_path) == []


def test_existing_output_is_not_overwritten(tmp_path):
    first = _vol(seed=1)
    write_stack(tmp_path / "out.tif", first, "ZYX")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        write_stack(tmp_path / "out.tif", _vol(seed=2), "ZYX")
    np.testing.assert_array_equal(read_stack(tmp_path / "out.tif").data, first)
    second = _vol(seed=2)
    write_stack(tmp_path / "out.tif", second, "ZYX", overwrite=True)
    np.testing.assert_array_equal(read_stack(tmp_path / "out.tif").data, second)
    assert _listing(tmp_path) == ["out.tif"]


def test_bad_outputs(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_stack(tmp_path / "missing" / "out.tif", _vol(), "ZYX")
    with pytest.raises(OutputError, match=r"unsupported output type.*\.tif"):
        write_stack(tmp_path / "out.png", _vol(), "ZYX")
    with pytest.raises(OutputError, match="cannot store dtype int64"):
        write_stack(tmp_path / "out.tif", np.zeros((2, 4, 4), np.int64), "ZYX")
    with pytest.raises(InputError, match="has 4 letters but the array has 3"):
        write_stack(tmp_path / "out.tif", _vol(), "CZYX")
    with pytest.raises(InputError, match="spacing must have 3 entries"):
        write_stack(tmp_path / "out.tif", _vol(), "ZYX", spacing=(1.0, 1.0))
    assert _listing(tmp_path) == []


# -- bad input -------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_stack(tmp_path / "nope.tif")


def test_unsupported_extension(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported file type"):
        read_stack(tmp_path / "a.png")


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


# -- 2D images: one reader, one alpha rule ---------------------------------------------------
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
