"""What both protocols share (volsr.evaluation.common): the row masks and plane/fusion variants."""

import numpy as np
import pytest

from volsr.errors import VolsrError
from volsr.evaluation import evenly_spaced_rows, parse_variant


def test_evenly_spaced_rows_match_the_paper():
    assert [int(evenly_spaced_rows(48, f).sum()) for f in (2, 4, 8)] == [24, 12, 6]
    assert np.flatnonzero(evenly_spaced_rows(48, 8)).tolist() == [0, 8, 16, 24, 32, 40]
    with pytest.raises(VolsrError, match="fewer than 2 rows"):
        evenly_spaced_rows(8, 8)


def test_parse_variant():
    assert parse_variant("both") == {"planes": "both", "fusion": "mean", "blur_sigma": None}
    assert parse_variant("xz+blur", 0.7) == {"planes": "xz", "fusion": "xz", "blur_sigma": 0.7}
    with pytest.raises(VolsrError, match="variant"):
        parse_variant("xy")
