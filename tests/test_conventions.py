"""The numerical conventions (:mod:`hadamnp.conventions`) and the validation helpers they
rest on (:mod:`hadamnp._checks`)."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hadamnp import _checks, conventions
from hadamnp.errors import (CheckpointError, ConfigError, DataFormatError, HadamnpError,
                            NonFiniteError, ShapeError, SizeError)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_of_zero_is_plus_one(dtype):
    x = np.array([0.0, -0.0, -np.finfo(dtype).tiny, np.finfo(dtype).tiny, -np.inf, np.inf],
                 dtype=dtype)
    s = conventions.sign(x)
    assert s.dtype == dtype
    np.testing.assert_array_equal(s, np.array([1, 1, -1, 1, -1, 1], dtype=dtype))
    assert conventions.sign(np.float64(0.0)) == 1
    assert conventions.SIGN_ZERO == 1


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3),
                  elements=st.floats(allow_nan=False)))
def test_sign_is_plus_or_minus_one_and_recovers_the_magnitude(x):
    s = conventions.sign(x)
    assert s.shape == x.shape
    assert np.all(np.abs(s) == 1)
    np.testing.assert_array_equal(s * x, np.abs(x))


def test_rounding_is_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999999999999994, 2.5000000000000004])
    np.testing.assert_array_equal(conventions.round_half_even(x),
                                  [-2, -2, -0, 0, 2, 2, 4, 0, 3])
    x32 = np.array([0.5, 1.5, 2.5], dtype=np.float32)
    assert conventions.round_half_even(x32).dtype == np.float32
    assert conventions.ROUNDING == "half-to-even"


@given(st.integers(-2 ** 40, 2 ** 40))
def test_rounding_ties_go_to_the_even_neighbour(k):
    tie = k + 0.5
    rounded = conventions.round_half_even(np.float64(tie))
    assert rounded in (k, k + 1) and rounded % 2 == 0


def test_as_dict_records_the_conventions_as_json():
    d = conventions.as_dict()
    assert d["conventions_version"] == conventions.CONVENTIONS_VERSION == 1
    assert d["sign_zero"] == 1 and "ste" not in d  # STEs belong to each quantizer
    assert d["hadamard"] == "sylvester" and d["rounding"] == "half-to-even"
    assert json.loads(json.dumps(d)) == d
    # The golden format requires these fields.
    assert {"sign_zero", "rounding"} <= set(d)


def test_errors_subclass_the_matching_builtins():
    for cls in (ShapeError, SizeError, NonFiniteError, ConfigError, DataFormatError):
        assert issubclass(cls, HadamnpError) and issubclass(cls, ValueError)
    assert issubclass(CheckpointError, HadamnpError)


@pytest.mark.parametrize("n", [1, 2, 4, 64, 2 ** 40])
def test_powers_of_two_accepted(n):
    assert _checks.is_power_of_two(n)
    assert _checks.check_power_of_two(n, "n") == n


@pytest.mark.parametrize("n", [0, -1, -8, 3, 6, 12, 31, 33, 63, 65, 2 ** 40 + 1])
def test_non_powers_of_two_rejected_with_the_size_in_the_message(n):
    assert not _checks.is_power_of_two(n)
    with pytest.raises(SizeError, match=f"hidden size n.*{n}"):
        _checks.check_power_of_two(n, "hidden size n")


def test_block_size_rules():
    assert _checks.check_block_size(16, 4) == 4
    assert _checks.check_block_size(16, 16) == 16
    with pytest.raises(SizeError, match="m=32.*n=16"):
        _checks.check_block_size(16, 32)
    with pytest.raises(SizeError, match="block size m.*3"):
        _checks.check_block_size(16, 3)


def test_array_checks():
    with pytest.raises(NonFiniteError, match="2 NaN/Inf"):
        _checks.check_finite(np.array([1.0, np.nan, np.inf]), "x")
    _checks.check_finite(np.array([1, 2]), "integers are always finite")
    with pytest.raises(TypeError, match="x must be float32 or float64.*int64"):
        _checks.check_float(np.array([1, 2], dtype=np.int64), "x")
    with pytest.raises(ShapeError, match=r"x must have shape \(B, T\)"):
        _checks.check_ndim(np.zeros(3), 2, "x", "(B, T)")
    with pytest.raises(ShapeError, match="x has 3 columns.*expected 4"):
        _checks.check_axis(np.zeros((2, 3)), 1, 4, "x", "columns")


@pytest.mark.parametrize("value", [0, 7, -3, np.int8(7), np.uint64(7), np.array(7), 2 ** 70])
def test_check_integer_accepts_integers(value):
    got = _checks.check_integer(value, "n")
    assert type(got) is int and got == int(value)


@pytest.mark.parametrize("value", [True, False, np.True_, 7.0, np.float64(7), 7.5, "7", None,
                                   np.array([7])])
def test_check_integer_refuses_everything_else(value):
    with pytest.raises(TypeError, match="n must be an integer"):
        _checks.check_integer(value, "n")


def test_check_unpacked_dtype():
    for dtype in (np.int8, np.int64, np.float32, np.complex128):
        assert _checks.check_unpacked_dtype(dtype, signs=True) == np.dtype(dtype)
    for dtype in (bool, np.uint8, np.int16, np.float64):
        assert _checks.check_unpacked_dtype(dtype, signs=False) == np.dtype(dtype)
    for dtype in (bool, np.uint8, np.uint64, "U4", object):
        with pytest.raises(TypeError, match=r"-1 and \+1"):
            _checks.check_unpacked_dtype(dtype, signs=True)
    for dtype in ("U4", object, "M8[s]"):
        with pytest.raises(TypeError, match="0 and 1"):
            _checks.check_unpacked_dtype(dtype, signs=False)
