"""Axes strings <-> canonical (C, Z, Y, X): exact round trips and clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volsr.errors import InputError
from volsr.io import canonical_shape, default_axes, from_canonical, parse_axes, to_canonical

# axes string, array shape, expected canonical shape
CASES = [
    ("ZYX", (5, 6, 7), (1, 5, 6, 7)),
    ("YX", (6, 7), (1, 1, 6, 7)),
    ("CZYX", (2, 5, 6, 7), (2, 5, 6, 7)),
    ("ZCYX", (5, 2, 6, 7), (2, 5, 6, 7)),
    ("TZCYX", (1, 5, 2, 6, 7), (2, 5, 6, 7)),
    ("TCZYX", (1, 3, 5, 6, 7), (3, 5, 6, 7)),
    ("ZYXS", (5, 6, 7, 3), (3, 5, 6, 7)),
    ("YXS", (6, 7, 3), (3, 1, 6, 7)),
    ("CYX", (2, 6, 7), (2, 1, 6, 7)),
    ("TZYX", (1, 5, 6, 7), (1, 5, 6, 7)),
    ("TYX", (1, 6, 7), (1, 1, 6, 7)),
    ("XYZ", (7, 6, 5), (1, 5, 6, 7)),
    ("XYZC", (7, 6, 5, 2), (2, 5, 6, 7)),
    ("ZXY", (5, 7, 6), (1, 5, 6, 7)),
    ("CZYXS", (1, 5, 6, 7, 3), (3, 5, 6, 7)),
    ("CZYXS", (2, 5, 6, 7, 1), (2, 5, 6, 7)),
    ("TZCYXS", (1, 5, 1, 6, 7, 3), (3, 5, 6, 7)),
]


def _data(shape):
    return np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)


@pytest.mark.parametrize("axes,shape,canon", CASES)
def test_round_trip_every_supported_axes_string(axes, shape, canon):
    data = _data(shape)
    czyx = to_canonical(data, axes)
    assert czyx.shape == canon
    assert czyx.dtype == data.dtype
    assert canonical_shape(shape, axes) == canon
    back = from_canonical(czyx, axes, shape=shape)
    assert back.shape == data.shape
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("axes,shape,canon", [c for c in CASES if not ("C" in c[0] and "S" in c[0])])
def test_round_trip_without_shape_hint(axes, shape, canon):
    data = _data(shape)
    np.testing.assert_array_equal(from_canonical(to_canonical(data, axes), axes), data)


def test_values_land_on_the_right_axes():
    data = _data((5, 2, 6, 7))  # ZCYX
    czyx = to_canonical(data, "ZCYX")
    for z in range(5):
        for c in range(2):
            np.testing.assert_array_equal(czyx[c, z], data[z, c])
    xyz = _data((7, 6, 5))
    czyx = to_canonical(xyz, "XYZ")
    assert czyx[0, 4, 3, 2] == xyz[2, 3, 4]
    rgb = _data((6, 7, 3))
    np.testing.assert_array_equal(to_canonical(rgb, "YXS")[:, 0], np.moveaxis(rgb, -1, 0))


def test_from_canonical_takes_sizes_from_the_restored_volume():
    # A restored volume has more planes than the input: Z changes, everything else is restored.
    restored = _data((2, 9, 6, 7))
    out = from_canonical(restored, "TZCYX")
    assert out.shape == (1, 9, 2, 6, 7)
    np.testing.assert_array_equal(out[0, :, 1], restored[1])
    out = from_canonical(restored[:1], "XYZ")
    assert out.shape == (7, 6, 9)
    assert out[2, 3, 4] == restored[0, 4, 3, 2]


def test_both_c_and_s_default_split():
    czyx = _data((3, 4, 6, 7))
    assert from_canonical(czyx, "CZYXS").shape == (1, 4, 6, 7, 3)  # 3 channels -> RGB samples
    assert from_canonical(czyx[:2], "CZYXS").shape == (2, 4, 6, 7, 1)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_random_axes(data):
    letters = ["Y", "X"] + [a for a in "TCZS" if data.draw(st.booleans(), label=f"has {a}")]
    order = data.draw(st.permutations(letters), label="order")
    axes = "".join(order)
    sizes = {"T": 1, "Y": data.draw(st.integers(1, 4)), "X": data.draw(st.integers(1, 4))}
    sizes["Z"] = data.draw(st.integers(1, 4))
    channel_axis = data.draw(st.sampled_from([a for a in "CS" if a in axes] or [None]))
    for a in "CS":
        sizes[a] = data.draw(st.integers(1, 4)) if a == channel_axis else 1
    shape = tuple(sizes[a] for a in axes)
    arr = np.random.default_rng(0).random(shape).astype(np.float32)
    czyx = to_canonical(arr, axes.lower() if data.draw(st.booleans()) else axes)
    assert czyx.shape == canonical_shape(shape, axes)
    np.testing.assert_array_equal(from_canonical(czyx, axes, shape=shape), arr)


def test_default_axes():
    assert default_axes(2) == "YX"
    assert default_axes(3) == "ZYX"
    assert default_axes(4) == "CZYX"
    with pytest.raises(InputError, match="--axes"):
        default_axes(5)


def test_parse_axes_accepts_lower_case():
    assert parse_axes("czyx", (2, 3, 4, 5)) == "CZYX"


@pytest.mark.parametrize(
    "axes,shape,match",
    [
        ("ZYX", (2, 3, 4, 5), "has 3 letters but the array has 4 dimensions"),
        ("ZZYX", (2, 3, 4, 5), "repeats Z"),
        ("QYX", (2, 3, 4), "unsupported letter"),
        ("ZCY", (2, 3, 4), "no X"),
        ("", (2, 3), "non-empty"),
        (None, (2, 3), "non-empty"),
    ],
)
def test_bad_axes_strings(axes, shape, match):
    with pytest.raises(InputError, match=match):
        parse_axes(axes, shape)
    with pytest.raises(InputError):
        to_canonical(np.zeros(shape), axes)


def test_more_than_one_time_point_is_refused():
    with pytest.raises(InputError, match=r"more than one time point \(T=5\)"):
        to_canonical(np.zeros((5, 3, 4, 4)), "TZYX")
    with pytest.raises(InputError, match="T=5"):
        canonical_shape((5, 3, 4, 4), "TZYX")


def test_channels_and_rgb_samples_both_above_one_is_refused():
    with pytest.raises(InputError, match="both channels"):
        to_canonical(np.zeros((2, 3, 4, 4, 3)), "CZYXS")


def test_from_canonical_without_room_for_the_data():
    with pytest.raises(InputError, match="no Z"):
        from_canonical(np.zeros((1, 3, 4, 4)), "YX")
    with pytest.raises(InputError, match="no C"):
        from_canonical(np.zeros((2, 3, 4, 4)), "ZYX")
    with pytest.raises(InputError, match=r"\(C, Z, Y, X\)"):
        from_canonical(np.zeros((3, 4, 4)), "ZYX")
