"""Bit packing: Numba kernels vs NumPy reference, round trips, the convention, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import NonFiniteError, ShapeError, SizeError
from hadamnp.kernels import bitpack as kb
from hadamnp.reference import bitpack as rb

TWINS = [pytest.param(kb, id="kernel"), pytest.param(rb, id="reference")]
LENGTHS = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 511, 512, 513]
LEADING = [(), (1,), (3,), (2, 3)]


def random_signs(rng, shape, dtype=np.int8):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(dtype)


def assert_same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, (
        f"{what}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    )
    assert np.array_equal(a, b), f"{what}:\n{a}\nvs\n{b}"


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("lead", LEADING)
def test_pack_signs_twins_and_round_trip(n, lead):
    rng = np.random.default_rng(n)
    x = random_signs(rng, lead + (n,))
    packed = kb.pack_signs(x)
    assert_same(packed, rb.pack_signs(x), f"pack_signs n={n} lead={lead}")
    assert packed.shape == lead + (kb.n_words(n),)
    for twin in (kb, rb):
        assert_same(twin.unpack_signs(packed, n), x, f"{twin.__name__}.unpack_signs n={n}")


@pytest.mark.parametrize("n", LENGTHS)
def test_pack_bits_twins_and_round_trip(n):
    rng = np.random.default_rng(n + 1000)
    x = (rng.random((3, n)) < 0.5).astype(np.uint8)
    packed = kb.pack_bits(x)
    assert_same(packed, rb.pack_bits(x), f"pack_bits n={n}")
    for twin in (kb, rb):
        assert_same(twin.unpack_bits(packed, n), x, f"{twin.__name__}.unpack_bits n={n}")


@pytest.mark.parametrize("twin", TWINS)
def test_bit_convention_by_hand(twin):
    # Element j -> bit j % 64 of word j // 64, set bit = -1, padding zero.
    x = np.ones(65, dtype=np.int64)
    x[[0, 3, 63, 64]] = -1
    packed = twin.pack_signs(x)
    expected = np.array([(1 << 0) | (1 << 3) | (1 << 63), 1], dtype=np.uint64)
    assert_same(packed, expected, "pack_signs by hand")
    bits = twin.pack_bits(np.array([True, False, True]))
    assert_same(bits, np.array([5], dtype=np.uint64), "pack_bits by hand")


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.float32, np.float64])
def test_pack_accepts_numeric_dtypes(twin, dtype):
    x = np.array([[1, -1, -1], [-1, 1, 1]], dtype=dtype)
    assert_same(twin.pack_signs(x), np.array([[6], [1]], dtype=np.uint64), f"dtype {dtype}")
    assert_same(twin.pack_bits((x > 0).astype(dtype)), np.array([[1], [6]], dtype=np.uint64),
                f"bits dtype {dtype}")


@pytest.mark.parametrize("n", [1, 63, 64, 65, 130])
def test_padding_bits_are_zero(n):
    packed = kb.pack_signs(-np.ones((2, n), dtype=np.int8))
    tail = n - 64 * (packed.shape[-1] - 1)
    expected_last = np.uint64((1 << tail) - 1) if tail < 64 else ~np.uint64(0)
    assert np.all(packed[:, -1] == expected_last), f"{packed[:, -1]} vs {expected_last}"


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_property_pack_unpack_identity(n, rows, seed):
    rng = np.random.default_rng(seed)
    x = random_signs(rng, (rows, n))
    assert_same(kb.unpack_signs(kb.pack_signs(x), n), x, "unpack(pack(x))")
    words = rng.integers(0, 2**63, (rows, kb.n_words(n)), dtype=np.uint64) << np.uint64(1)
    words |= rng.integers(0, 2, (rows, kb.n_words(n)), dtype=np.uint64)
    words &= rb.valid_mask(n)
    assert_same(kb.pack_signs(kb.unpack_signs(words, n)), words, "pack(unpack(w))")


@pytest.mark.parametrize("twin", TWINS)
def test_pack_errors(twin):
    with pytest.raises(ValueError, match=r"only -1 and \+1; found 2 other value\(s\), first 0"):
        twin.pack_signs(np.array([[1, 0], [-1, 2]]))
    with pytest.raises(ValueError, match=r"index \(1, 2\)"):
        twin.pack_signs(np.array([[1, 1, 1], [-1, 1, 0.5]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        twin.pack_bits(np.array([0, 1, -1]))
    with pytest.raises(NonFiniteError, match="x contains 1 NaN"):
        twin.pack_signs(np.array([1.0, np.nan]))
    with pytest.raises(ShapeError, match="scalar"):
        twin.pack_signs(1)
    with pytest.raises(ShapeError, match="empty last axis"):
        twin.pack_bits(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="integer or float"):
        twin.pack_signs(np.array([True, False]))


@pytest.mark.parametrize("twin", TWINS)
def test_unpack_errors(twin):
    packed = kb.pack_signs(np.ones((2, 70), dtype=np.int8))
    with pytest.raises(ShapeError, match=r"expected ceil\(129 / 64\) = 3"):
        twin.unpack_signs(packed, 129)
    with pytest.raises(SizeError, match=">= 1"):
        twin.unpack_signs(packed, 0)
    with pytest.raises(TypeError, match="uint64"):
        twin.unpack_bits(packed.astype(np.int64), 70)
    bad = packed.copy()
    bad[1, -1] |= np.uint64(1 << 20)
    with pytest.raises(ValueError, match=r"row \(1,\) has nonzero padding bits beyond element 70"):
        twin.unpack_signs(bad, 70)


@pytest.mark.parametrize("k", [1, 2, 3, 8, 16, 32])
@pytest.mark.parametrize("n", [1, 33, 64, 65, 200])
def test_bitplanes_twins_and_reconstruction(k, n):
    rng = np.random.default_rng(k * 1000 + n)
    lo, hi = -(1 << (k - 1)), (1 << (k - 1)) - 1
    x = rng.integers(lo, hi, (3, n), endpoint=True)
    x[0, 0], x[-1, -1] = lo, hi
    planes = kb.pack_bitplanes(x, k)
    assert planes.shape == (3, k, kb.n_words(n))
    assert_same(planes, rb.pack_bitplanes(x, k), f"pack_bitplanes k={k} n={n}")
    bits = kb.unpack_bits(planes, n).astype(np.int64)
    rebuilt = np.einsum("j,bjn->bn", kb.plane_weights(k), bits)
    assert_same(rebuilt, x.astype(np.int64), f"sum_j c_j b_j k={k} n={n}")


@pytest.mark.parametrize("k", [1, 2, 5, 32])
def test_plane_weights_twins(k):
    w = kb.plane_weights(k)
    assert_same(w, rb.plane_weights(k), f"plane_weights k={k}")
    assert int(w.sum()) == -1 and w[-1] == -(2 ** (k - 1))


@pytest.mark.parametrize("twin", TWINS)
def test_bitplane_errors(twin):
    with pytest.raises(ValueError, match=r"\[-8, 7\]; found 2 value\(s\) outside, first 8"):
        twin.pack_bitplanes(np.array([0, 8, -9]), 4)
    with pytest.raises(TypeError, match="integer dtype"):
        twin.pack_bitplanes(np.array([0.0, 1.0]), 4)
    with pytest.raises(SizeError, match=r"\[1, 32\]"):
        twin.pack_bitplanes(np.array([0, 1]), 33)
    with pytest.raises(TypeError, match="integer"):
        twin.pack_bitplanes(np.array([0, 1]), 2.0)


@pytest.mark.parametrize("n", [1, 2, 4, 32, 64, 128, 256])
def test_hadamard_packed_twins_and_entries(n):
    rng = np.random.default_rng(n)
    s = random_signs(rng, n)
    packed = kb.hadamard_packed(s)
    assert_same(packed, rb.hadamard_packed(s), f"hadamard_packed n={n}")
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    parity = np.vectorize(lambda v: bin(v).count("1") % 2)(i & j)
    expected = s[:, None].astype(np.int8) * (1 - 2 * parity).astype(np.int8)
    assert_same(kb.unpack_signs(packed, n), expected, f"s_i (-1)^popcount(i & j) n={n}")


@pytest.mark.parametrize("twin", TWINS)
def test_hadamard_packed_errors(twin):
    with pytest.raises(SizeError, match="power of two"):
        twin.hadamard_packed(np.ones(6))
    with pytest.raises(ValueError, match="only -1 and"):
        twin.hadamard_packed(np.array([1, 0, 1, 1]))
    with pytest.raises(ShapeError, match=r"shape \(n,\)"):
        twin.hadamard_packed(np.ones((2, 2)))


def test_popcount64_scalar_helper():
    import numba

    @numba.njit
    def count(words):
        total = 0
        for w in words:
            total += kb.popcount64(w)
        return total

    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**63, 50, dtype=np.uint64) | np.uint64(1 << 63)
    expected = int(rb.popcount(words).sum())
    assert count(words) == expected, f"{count(words)} vs {expected}"
    assert count(np.array([~np.uint64(0), np.uint64(0)])) == 64


# --- input contract (issue 14 and the twin audit) -------------------------------------------


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("n", [70.5, 70.0, np.float64(70), True, np.True_, "70", None])
def test_unpack_refuses_non_integer_n(twin, n):
    """``unpack_signs(packed, 70.5)`` used to unpack 70 elements (``int(n)``)."""
    packed = kb.pack_signs(np.ones((2, 70), dtype=np.int8))
    for unpack in (twin.unpack_signs, twin.unpack_bits):
        with pytest.raises(TypeError, match=r"n \(number of packed elements\) must be an integer"):
            unpack(packed, n)
    assert_same(twin.unpack_signs(packed, np.int16(70)), np.ones((2, 70), np.int8), "np.int16 n")


@pytest.mark.parametrize("twin", TWINS)
def test_n_words_takes_only_counts(twin):
    assert [twin.n_words(n) for n in (0, 1, 64, np.int64(65))] == [0, 1, 1, 2]
    for n in (70.5, 64.0, True, "64"):
        with pytest.raises(TypeError, match="must be an integer"):
            twin.n_words(n)
    with pytest.raises(SizeError, match=">= 0, got -1"):
        twin.n_words(-1)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint64, bool, "U2", object])
def test_unpack_signs_refuses_dtypes_without_minus_one(twin, dtype):
    """-1 came back as 255 in uint8 and as True in bool."""
    packed = kb.pack_signs(np.array([[-1, 1, -1]]))
    with pytest.raises(TypeError, match=r"dtype must hold -1 and \+1"):
        twin.unpack_signs(packed, 3, dtype)


@pytest.mark.parametrize("twin", TWINS)
def test_unpack_result_dtypes(twin):
    packed = kb.pack_signs(np.array([[-1, 1, -1]]))
    for dtype in (np.int8, np.int64, np.float32, np.complex64):
        assert_same(twin.unpack_signs(packed, 3, dtype), np.array([[-1, 1, -1]], dtype),
                    f"unpack_signs {np.dtype(dtype)}")
    for dtype in (bool, np.uint8, np.int32, np.float64):
        assert_same(twin.unpack_bits(packed, 3, dtype), np.array([[1, 0, 1]], dtype),
                    f"unpack_bits {np.dtype(dtype)}")
    for dtype in ("U1", object):
        with pytest.raises(TypeError, match="dtype must hold 0 and 1"):
            twin.unpack_bits(packed, 3, dtype)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("packed", [np.uint64(5), [5], 5])
def test_unpack_refuses_packed_that_is_not_an_array(twin, packed):
    with pytest.raises(TypeError, match="packed must be a uint64 ndarray"):
        twin.unpack_signs(packed, 3)
