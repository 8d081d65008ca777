import numpy as np
import pytest

from volsr.errors import InputError
from volsr.grid import OutputGrid, check_factor


@pytest.mark.parametrize(
    "n_in, f, n_out, positions",
    [
        (5, 2, 9, [0, 2, 4, 6, 8]),
        (4, 4, 13, [0, 4, 8, 12]),
        (5, 2.5, 11, [0, 2, 5, 8, 10]),  # round-half-even: 2.5 -> 2, 7.5 -> 8
        (6, 1, 6, [0, 1, 2, 3, 4, 5]),
        (16, 4, 61, list(range(0, 61, 4))),
    ],
)
def test_output_grid(n_in, f, n_out, positions):
    g = OutputGrid(n_in, f)
    assert g.n_out == n_out == round((n_in - 1) * f) + 1
    assert g.positions.tolist() == positions
    assert g.known_mask.sum() == n_in
    assert np.flatnonzero(g.known_mask).tolist() == positions


def test_grid_place_puts_planes_on_rows():
    g = OutputGrid(3, 2.5)
    planes = np.arange(3, dtype=np.float32)[:, None] + 1
    out = g.place(planes, axis=0, fill=-1)
    assert g.n_out == 6 and g.positions.tolist() == [0, 2, 5]
    assert out[:, 0].tolist() == [1, -1, 2, -1, -1, 3]
    assert out[g.positions, 0].tolist() == [1, 2, 3]
    assert (out[~g.known_mask] == -1).all()


def test_out_spacing_factor():
    assert OutputGrid(5, 2).out_spacing_factor == 1.0
    g = OutputGrid(4, 2.5)  # 7.5 um over 8 steps
    assert g.out_spacing_factor == pytest.approx(7.5 / 8)


@pytest.mark.parametrize("bad", [0.5, 0, -2, float("nan"), float("inf"), "x", None])
def test_bad_factor(bad):
    with pytest.raises(InputError):
        check_factor(bad)


def test_too_few_planes():
    with pytest.raises(InputError, match="at least 2 z planes"):
        OutputGrid(1, 2)
