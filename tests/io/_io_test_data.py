"""Shared by the tests in tests/io: a random volume of a given dtype, and a folder's listing."""

import os

import numpy as np


def vol(shape=(6, 20, 24), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def listing(folder):
    return sorted(os.listdir(folder))
