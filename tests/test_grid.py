import numpy as np
import pytest

from volsr.errors import InputError
from volsr.grid import OutputGrid, check_factor, parse_plane_list


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


# -- damaged planes ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, planes", [
    ("12,37-39", (12, 37, 38, 39)), ("", ()), (None, ()), ("3", (3,)), (" 5 , 1-2 ,2", (1, 2, 5)),
    ("4-4", (4,)), ("0,", (0,)),
])
def test_parse_plane_list(text, planes):
    assert parse_plane_list(text) == planes


@pytest.mark.parametrize("text, match", [
    ("5-3", "backwards"), ("a-b", "not a plane number"), ("x", "not a plane number"), ("1.5", "not a plane number"),
    ("-1", "negative"), ("2--3", "not a plane number"), ("1-", "not a plane number"),
])
def test_parse_plane_list_refuses_malformed_text(text, match):
    with pytest.raises(InputError, match=match):
        parse_plane_list(text)


@pytest.mark.parametrize("text, n_in, match", [
    ("10", 10, "outside the stack"), ("0-9", 10, "every plane"), ("1-9", 10, "at least 2 good planes"),
])
def test_parse_plane_list_checks_against_the_stack(text, n_in, match):
    with pytest.raises(InputError, match=match):
        parse_plane_list(text, n_in)
    assert parse_plane_list("2-7", 10) == (2, 3, 4, 5, 6, 7)


def test_damaged_planes_leave_the_known_rows_not_the_grid():
    plain, g = OutputGrid(5, 2.5), OutputGrid(5, 2.5, damaged=[3, 1, 3])
    assert g.damaged == (1, 3)
    assert g.n_out == plain.n_out and g.positions.tolist() == plain.positions.tolist() == [0, 2, 5, 8, 10]
    assert g.out_spacing_factor == plain.out_spacing_factor
    assert g.good_positions.tolist() == [0, 5, 10] and g.damaged_positions.tolist() == [2, 8]
    assert np.flatnonzero(g.known_mask).tolist() == [0, 5, 10]
    assert g.place(np.arange(5.0)).tolist() == plain.place(np.arange(5.0)).tolist()  # every plane placed
    for bad, match in [((5,), "outside"), ((-1,), "negative"), ((0, 1, 2, 3), "at least 2 good"),
                       ((0.5,), "whole number"), ((True,), "whole number")]:
        with pytest.raises(InputError, match=match):
            OutputGrid(5, 2.5, damaged=bad)
    with pytest.raises(InputError, match="damaged planes"):
        OutputGrid(1, 2, damaged=(0,))


def test_format_ranges_writes_what_parse_plane_list_reads():
    from volsr.grid import format_ranges, parse_plane_list

    assert format_ranges([39, 12, 37, 38]) == "12,37-39"
    assert format_ranges([0]) == "0"
    assert format_ranges([]) == ""
    assert parse_plane_list(format_ranges([39, 12, 37, 38])) == (12, 37, 38, 39)
