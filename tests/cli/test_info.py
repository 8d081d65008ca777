"""``volsr info --check-planes``: damaged planes listed with their reasons and a ready-to-paste hint."""

import numpy as np

import volsr
from volsr.cli import main
from volsr.samples import isotropic_volume, subsample_z


def _damaged(tmp_path, spacing=(4.0, 1.0, 1.0)):
    vol = subsample_z(isotropic_volume((41, 96, 96), seed=0, kind="cells"), 4)
    vol[5] = 0
    vol[8] = np.roll(vol[8], 4, axis=1)
    return volsr.write_stack(tmp_path / "damaged.tif", vol, "ZYX", spacing=spacing)


def test_check_planes_lists_damaged_planes_and_the_hint(tmp_path, capsys):
    path = _damaged(tmp_path)
    assert main(["info", str(path), "--check-planes"]) == 0
    out = capsys.readouterr().out
    assert "z factor:  4" in out
    assert "planes:    checked 11; 2 look damaged" in out
    assert "  plane 5: " in out and "std 0.00 vs neighbours" in out and "(output row 20)" in out
    assert "  plane 8: shift against neighbours" in out and "(output row 32)" in out
    assert f"restore them as unmeasured rows: volsr infer {path} --damaged-planes 5,8" in out


def test_check_planes_on_a_clean_stack_and_without_spacing(tmp_path, capsys):
    vol = subsample_z(isotropic_volume((41, 96, 96), seed=1, kind="em"), 4)
    path = volsr.write_stack(tmp_path / "clean.npy", vol, "ZYX")
    assert main(["info", str(path), "--check-planes"]) == 0
    out = capsys.readouterr().out
    assert "planes:    checked 11; 0 look damaged" in out
    assert "--damaged-planes" not in out


def test_check_planes_too_few_planes(tmp_path, capsys):
    path = volsr.write_stack(tmp_path / "short.tif", np.random.default_rng(0).random((4, 32, 32)), "ZYX")
    assert main(["info", str(path), "--check-planes"]) == 0
    assert "planes:    too few planes to check (need >= 5)" in capsys.readouterr().out


def test_info_without_the_flag_does_not_check(tmp_path, capsys):
    assert main(["info", str(_damaged(tmp_path))]) == 0
    assert "planes:" not in capsys.readouterr().out


def test_info_shows_where_damaged_planes_fall_on_the_output_grid(tmp_path, capsys):
    path = _damaged(tmp_path, spacing=(2.5, 1.0, 1.0))
    assert main(["info", str(path), "--damaged-planes", "5,7-8"]) == 0
    out = capsys.readouterr().out
    assert "damaged:   planes 5,7-8 (3 of 11) restored as unmeasured rows at output rows 12, 18, 20" in out
    assert main(["info", str(path), "--damaged-planes", "11"]) == 2  # outside the 11 planes 0-10
    err = capsys.readouterr().err
    assert "damaged plane 11 is outside the stack" in err and "Traceback" not in err
    nospacing = volsr.write_stack(tmp_path / "n.npy", np.zeros((6, 8, 8), np.float32), "ZYX")
    assert main(["info", str(nospacing), "--damaged-planes", "2"]) == 0
    assert "output rows need the z factor (--z-factor)" in capsys.readouterr().out
