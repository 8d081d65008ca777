"""Model files written by earlier versions load and restore the same numbers.

The files in tests/fixtures/models were written by volsr at commit f2131ab (the flat-layout
version, before the subpackages) with tests/fixtures/make_model_fixtures.py, together with the
restoration each gave. A file that stops loading, or loads into an engine that restores
something else, fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import volsr

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_model_fixtures import ENGINES, FACTOR, volumes  # noqa: E402


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_an_earlier_model_file_loads_and_restores_as_it_did(name):
    path = FIXTURES / "models" / f"{name}.volsr"
    eng = volsr.load_engine(path)
    assert eng.name == name and eng.trained
    _, stack = volumes()
    out = volsr.restore(stack, model=path, z_factor=FACTOR, seed=0, precision="float32", output_dtype="float32")
    before = np.load(FIXTURES / "models" / f"{name}_restored.npy")
    assert out.data.shape == before.shape == (13, 24, 24)
    np.testing.assert_allclose(out.data, before, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.data[::FACTOR], stack)  # measured planes come back untouched
