"""The paired 2D protocol (volsr.evaluation.protocol_2d, paper Table 1)."""

import numpy as np

from volsr.evaluation import COLUMNS, paired_2d


def test_paired_2d(hr):
    t = paired_2d(np.moveaxis(hr, 0, 0), ["nearest", "linear"], (2, 4), crop=32, n_crops=120, seed=0)
    assert list(t.columns) == COLUMNS and set(t["protocol"]) == {"2d"}
    assert len(t) == 2 * 2 * 5  # engines x factors x (fid + ssim/psnr x restored/all)

    def val(engine, f, metric, rows):
        sel = (t.engine == engine) & (t.factor == f) & (t.metric == metric) & (t.rows == rows)
        return float(t[sel]["value"].iloc[0])

    for f in (2, 4):
        assert val("linear", f, "ssim", "restored") > val("nearest", f, "ssim", "restored")
        assert val("linear", f, "fid", "all") < val("nearest", f, "fid", "all")
        # measured rows are exact, so counting them can only raise PSNR
        assert val("linear", f, "psnr", "restored") < val("linear", f, "psnr", "all")
    assert val("linear", 2, "psnr", "restored") > val("linear", 4, "psnr", "restored")
