"""Fixtures shared by the evaluation tests: a small isotropic HR volume, in memory and as a file."""

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter


@pytest.fixture(scope="module")
def hr():
    rng = np.random.default_rng(0)
    v = gaussian_filter(rng.normal(size=(40, 40, 40)), 1.5)
    return (1000 + 300 * v / v.std()).astype(np.float32)


@pytest.fixture(scope="module")
def hr_file(hr, tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    path = d / "hr.tif"
    tifffile.imwrite(path, hr)
    return path
