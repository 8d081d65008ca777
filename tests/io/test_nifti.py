"""NIfTI stacks: the X Y Z (C) storage order and the voxel spacing in pixdim."""

import numpy as np
import pytest
from _io_test_data import listing as _listing  # tests/io is on sys.path (pytest rootdir insertion)
from _io_test_data import vol as _vol

from volsr.io import read_stack, write_stack


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


def test_nifti_without_spacing_reads_as_unknown(tmp_path):
    write_stack(tmp_path / "a.nii.gz", _vol((4, 8, 8)), "ZYX")
    assert read_stack(tmp_path / "a.nii.gz").spacing == (None, None, None)
