"""Paper tables and report files (volsr.evaluation.tables, volsr.evaluation.reports)."""

import numpy as np
import pandas as pd
import pytest

from volsr.errors import OutputError
from volsr.evaluation import evaluate, paper_tables, write_report


def test_write_report_and_tables(hr, tmp_path):
    r = evaluate(hr, ["nearest", "linear"], (2,), crop=24, n_crops=80, features="lowlevel", n_tiles=16,
                 spectra_tile=16)
    tabs = paper_tables(r.table)
    assert set(tabs) == {"paired_2d", "fid_3d", "paired_3d", "isotropy_3d"}
    assert list(tabs["fid_3d"].columns) == ["2x XY", "2x YZ", "2x XZ", "2x SliceFID"]
    assert list(tabs["fid_3d"].index) == ["ground-truth", "nearest", "linear"]
    paths = write_report(r, tmp_path / "out")
    for name in ("results.csv", "tables.md", "spectra.csv", "fid_per_axis.png", "radial_spectra.png",
                 "xz_examples.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "NOT comparable" in paths["tables"].read_text()
    back = pd.read_csv(paths["results"], keep_default_na=False)
    assert np.allclose(back["value"].astype(float), r.table["value"])
    with pytest.raises(OutputError, match="overwrite"):
        write_report(r, tmp_path / "out")
