"""Atomic writes: nothing half-written is ever left behind, nothing existing is replaced unasked."""

import numpy as np
import pytest
import tifffile
from _io_test_data import listing as _listing  # tests/io is on sys.path (pytest rootdir insertion)
from _io_test_data import vol as _vol

from volsr.errors import InputError, OutputError
from volsr.io import read_stack, write_stack


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
