"""The `volsr score` / `volsr eval` commands (volsr.cli.evaluate) over the evaluation protocols."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from volsr.errors import VolsrError
from volsr.evaluation import evaluate


def test_cli_eval_writes_files_reproducible_from_api(hr, hr_file, tmp_path, capsys):
    from volsr.cli import main

    out = tmp_path / "res"
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "nearest", "linear",
               "--crop", "24", "--n-crops", "80", "--seed", "1", "--out", str(out), "-q", "--device", "cpu"])
    assert rc == 0
    for name in ("results.csv", "tables.md", "spectra.csv", "fid_per_axis.png", "radial_spectra.png",
                 "xz_examples.png"):
        assert (out / name).exists()
    api = evaluate(hr, ["nearest", "linear"], (2,), crop=24, n_crops=80, seed=1, features="lowlevel", device="cpu")
    cli = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(cli) == len(api.table)
    assert np.allclose(cli["value"].astype(float), api.table["value"], rtol=1e-12, atol=0)
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "linear",
               "--crop", "24", "--n-crops", "80", "--out", str(out), "-q"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_cli_score(hr, hr_file, tmp_path, capsys):
    from volsr.cli import main

    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(0, 40, 4):
        tifffile.imwrite(refs / f"ref{i:02d}.tif", hr[i])
    args = ["score", str(hr_file), "--reference", str(refs), "--features", "lowlevel", "--crop", "24",
            "--n-crops", "100", "--n-tiles", "16", "--tile", "16"]
    assert main(args + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"fid_xy", "fid_xz", "fid_yz", "slice_fid", "isotropy_gap"} <= set(res)
    assert res["slice_fid"] == pytest.approx((res["fid_xy"] + res["fid_xz"] + res["fid_yz"]) / 3)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "SliceFID" in text and "isotropy gap" in text and "NOT comparable" in text
    # inception without weights: a clear error, exit code 2, nothing silently replaced
    assert main(["score", str(hr_file), "--reference", str(refs), "--inception-weights",
                 str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_add_parsers_on_a_local_parser():
    from volsr.cli.evaluate import add_parsers, cmd_eval, cmd_score

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["eval", "x.tif", "--factors", "2", "4", "--engines", "linear"])
    assert a.func is cmd_eval and a.factors == [2, 4] and a.features == "inception" and a.seed == 0
    a = parser.parse_args(["score", "x.tif", "--reference", "refs", "--features", "lowlevel"])
    assert a.func is cmd_score and a.crop == 48


def test_load_reference_folder(tmp_path, hr):
    from skimage.io import imsave

    from volsr.cli.evaluate import load_reference

    img = (np.clip((hr[0] - hr.min()) / np.ptp(hr), 0, 1) * 255).astype(np.uint8)
    imsave(tmp_path / "a.png", img, check_contrast=False)
    tifffile.imwrite(tmp_path / "b.tif", hr[:5])  # a stack contributes its XY planes
    refs = load_reference(tmp_path)
    assert len(refs) == 6 and all(r.shape == (1, 40, 40) for r in refs)
    with pytest.raises(VolsrError, match="does not exist"):
        load_reference(tmp_path / "nope")


def test_cli_eval_refuses_an_untrained_learned_engine(hr_file, tmp_path, capsys):
    """`--engines msdsr` without a model would score noise: refuse unless a fit budget is given."""
    from volsr.cli import main

    out = tmp_path / "res"
    rc = main(["eval", str(hr_file), "--features", "lowlevel", "--factors", "2", "--engines", "msdsr",
               "--crop", "24", "--n-crops", "16", "--out", str(out), "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "msdsr=model.volsr" in err and "--fit-minutes" in err
    assert not out.exists()


def test_cli_score_uses_the_measured_planes_as_xy_reference(tmp_path, capsys):
    """`volsr infer` records where the measured planes went; `volsr score` draws its XY reference there."""
    from volsr.cli import main
    from volsr.io import read_stack, write_stack
    from volsr.samples import isotropic_volume

    gt = isotropic_volume((25, 40, 40), seed=5, kind="texture")
    low = tmp_path / "low.tif"
    write_stack(low, gt[::4], "ZYX", spacing=(4.0, 1.0, 1.0))
    out = tmp_path / "low_volsr.tif"
    assert main(["infer", str(low), "--engine", "linear", "-o", str(out), "-q"]) == 0
    assert read_stack(out).measured_planes == (0, 4, 8, 12, 16, 20, 24)
    capsys.readouterr()
    base = ["score", str(out), "--tile", "16", "--n-tiles", "32", "--json"]
    assert main(base) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["isotropy_reference"] == "measured planes (7 of 25), recorded in the file"
    assert main(base + ["--factor", "4"]) == 0
    by_factor = json.loads(capsys.readouterr().out)
    assert by_factor["isotropy_gap"] == recorded["isotropy_gap"] and "--factor 4" in by_factor["isotropy_reference"]
    assert main(base + ["--measured-planes", "0,4,8,12,16,20,24"]) == 0
    assert json.loads(capsys.readouterr().out)["isotropy_gap"] == recorded["isotropy_gap"]
    # a file without the record: all planes, and a warning that says so
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, read_stack(out).data)
    assert main(["score", str(plain), "--tile", "16", "--n-tiles", "32"]) == 0
    cap = capsys.readouterr()
    assert "XY reference: all planes" in cap.out and "ALL planes" in cap.err
    assert main(base + ["--factor", "4", "--measured-planes", "0,4"]) == 2
    assert main(base + ["--measured-planes", "0,99"]) == 2
    assert "--measured-planes" in capsys.readouterr().err
