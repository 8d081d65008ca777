"""The 3D protocol (volsr.evaluation.protocol_3d, paper Tables 2-4)."""

import pandas as pd
import pytest

from volsr.errors import VolsrError
from volsr.evaluation import volume_3d


def test_volume_3d_metrics_and_reproducibility(hr):
    kw = dict(factors=(2, 4), variants=("both", "xz+blur"), crop=24, n_crops=100, n_tiles=32, spectra_tile=16)
    r = volume_3d(hr, ["linear"], **kw)
    t = r.table
    assert set(t.engine) == {"ground-truth", "linear"}
    lin = t[(t.engine == "linear") & (t.variant == "both")]
    for f in (2, 4):
        sub = lin[lin.factor == f]
        assert set(sub[sub.metric == "fid"]["axis"]) == {"xy", "xz", "yz"}
        fids = sub[sub.metric == "fid"].set_index("axis")["value"]
        sf = float(sub[sub.metric == "slice_fid"]["value"].iloc[0])
        assert sf == pytest.approx(fids.mean())
        assert len(sub[sub.metric == "ssim"]) == 6 and len(sub[sub.metric == "psnr"]) == 6
    gt = t[(t.engine == "ground-truth") & (t.metric == "isotropy_gap")]["value"]
    gap4 = lin[(lin.factor == 4) & (lin.metric == "isotropy_gap")]["value"].iloc[0]
    assert gap4 > gt.max()
    sf = lambda f: float(lin[(lin.factor == f) & (lin.metric == "slice_fid")]["value"].iloc[0])  # noqa: E731
    assert sf(4) > sf(2)
    assert ("linear", "xz+blur", 4) in r.examples and r.examples[("linear", "both", 2)].shape == (39, 40)
    assert set(r.spectra.columns) == {"engine", "variant", "factor", "axis", "frequency", "log_power"}
    again = volume_3d(hr, ["linear"], **kw)
    pd.testing.assert_frame_equal(t, again.table)
    with pytest.raises(VolsrError, match="integers"):
        volume_3d(hr, ["linear"], factors=(2.5,))
    with pytest.raises(VolsrError, match="crop"):
        volume_3d(hr, ["linear"], factors=(8,), crop=48)
