"""XNOR-popcount and bit-plane products: kernels vs NumPy reference vs integer matmul."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import ShapeError, SizeError
from hadamnp.kernels import bitpack as kb
from hadamnp.reference import bitpack as rb
from hadamnp.reference.hadamard import sylvester

N_IN = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 511, 512, 513]
N_OUT = [1, 2, 7, 8, 9, 17]
BATCH = [1, 2, 15, 16, 17, 33]


def random_signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


def assert_same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, (
        f"{what}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    )
    assert np.array_equal(a, b), f"{what}:\n{a}\nvs\n{b}"


def dense(W_pm1, X):
    return W_pm1.astype(np.int64) @ X.astype(np.int64)


@pytest.mark.parametrize("n_in", N_IN)
@pytest.mark.parametrize("n_out", N_OUT)
def test_xnor_matvec_twins_and_dense(n_in, n_out):
    rng = np.random.default_rng(100 * n_in + n_out)
    W = random_signs(rng, (n_out, n_in))
    x = random_signs(rng, n_in)
    Wp, xp = kb.pack_signs(W), kb.pack_signs(x)
    y = kb.xnor_matvec(Wp, xp, n_in)
    assert_same(y, rb.xnor_matvec(Wp, xp, n_in), f"kernel vs reference n_in={n_in} n_out={n_out}")
    assert_same(y, dense(W, x).astype(np.int32), f"kernel vs W @ x n_in={n_in} n_out={n_out}")


@pytest.mark.parametrize("n_in", N_IN)
@pytest.mark.parametrize("n_out", [1, 3, 4, 9])
@pytest.mark.parametrize("B", BATCH)
def test_xnor_matmul_twins_and_dense(n_in, n_out, B):
    rng = np.random.default_rng(10000 * n_in + 100 * n_out + B)
    W = random_signs(rng, (n_out, n_in))
    X = random_signs(rng, (B, n_in))
    Wp, Xp = kb.pack_signs(W), kb.pack_signs(X)
    Y = kb.xnor_matmul(Wp, Xp, n_in)
    what = f"n_in={n_in} n_out={n_out} B={B}"
    assert_same(Y, rb.xnor_matmul(Wp, Xp, n_in), f"kernel vs reference {what}")
    assert_same(Y, dense(W, X.T).astype(np.int32), f"kernel vs W @ X.T {what}")


@pytest.mark.slow
@pytest.mark.parametrize("n_in", [1000, 1023, 1024, 1025, 4096])
@pytest.mark.parametrize("n_out", [15, 16, 100])
@pytest.mark.parametrize("B", [1, 7, 100])
def test_xnor_large_grid(n_in, n_out, B):
    rng = np.random.default_rng(n_in + n_out + B)
    W, X = random_signs(rng, (n_out, n_in)), random_signs(rng, (B, n_in))
    Wp, Xp = kb.pack_signs(W), kb.pack_signs(X)
    assert_same(kb.xnor_matmul(Wp, Xp, n_in), dense(W, X.T).astype(np.int32), "matmul")
    assert_same(kb.xnor_matvec(Wp, Xp[0], n_in), dense(W, X[0]).astype(np.int32), "matvec")


def with_garbage_padding(packed, n_in, rng):
    """Set random bits beyond n_in in the last word (the products must ignore them)."""
    tail = n_in - 64 * (packed.shape[-1] - 1)
    garbage = packed.copy()
    if tail < 64:
        noise = rng.integers(0, 2**63, garbage.shape[:-1], dtype=np.uint64) | np.uint64(1 << 63)
        garbage[..., -1] |= noise & ~np.uint64((1 << tail) - 1)
    return garbage


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
@pytest.mark.parametrize("n_in", [1, 33, 65, 127, 500, 513])
@pytest.mark.parametrize("n_out", [5, 8, 16])
def test_padding_bits_are_ignored(twin, n_in, n_out):
    rng = np.random.default_rng(n_in * n_out)
    W, X = random_signs(rng, (n_out, n_in)), random_signs(rng, (9, n_in))
    x_int = rng.integers(-8, 8, (9, n_in))
    Wg = with_garbage_padding(kb.pack_signs(W), n_in, rng)
    Xg = with_garbage_padding(kb.pack_signs(X), n_in, rng)
    Pg = with_garbage_padding(kb.pack_bitplanes(x_int, 4), n_in, rng)
    assert_same(twin.xnor_matvec(Wg, Xg[3], n_in), dense(W, X[3]).astype(np.int32), "matvec")
    assert_same(twin.xnor_matmul(Wg, Xg, n_in), dense(W, X.T).astype(np.int32), "matmul")
    assert_same(twin.bitplane_matvec(Wg, Pg[2], n_in), dense(W, x_int[2]), "bitplane matvec")
    assert_same(twin.bitplane_matmul(Wg, Pg, n_in), dense(W, x_int.T), "bitplane matmul")


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_property_dot_is_n_minus_twice_popcount(n, seed):
    rng = np.random.default_rng(seed)
    a, b = random_signs(rng, n), random_signs(rng, n)
    pa, pb = kb.pack_signs(a), kb.pack_signs(b)
    expected = int(a.astype(np.int64) @ b)
    by_formula = n - 2 * int(rb.popcount((pa ^ pb) & rb.valid_mask(n)).sum())
    assert by_formula == expected, f"{by_formula} vs {expected}"
    assert int(kb.xnor_matvec(pa[None, :], pb, n)[0]) == expected
    assert int(kb.xnor_matmul(pa[None, :], pb[None, :], n)[0, 0]) == expected


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("n_in", [1, 31, 64, 65, 129, 512])
@pytest.mark.parametrize("n_out", [1, 8, 9])
def test_bitplane_products_equal_integer_matmul(k, n_in, n_out):
    rng = np.random.default_rng(k * 100000 + n_in * 100 + n_out)
    W = random_signs(rng, (n_out, n_in))
    lo, hi = -(1 << (k - 1)), (1 << (k - 1)) - 1
    X = rng.integers(lo, hi, (17, n_in), endpoint=True)
    X[0, :] = lo  # the extreme codes exercise the sign plane
    X[1, :] = hi
    Wp, P = kb.pack_signs(W), kb.pack_bitplanes(X, k)
    what = f"k={k} n_in={n_in} n_out={n_out}"
    Y = kb.bitplane_matmul(Wp, P, n_in)
    assert_same(Y, dense(W, X.T), f"bitplane_matmul vs W @ X.T {what}")
    assert_same(Y, rb.bitplane_matmul(Wp, P, n_in), f"bitplane_matmul kernel vs reference {what}")
    for b in (0, 1, 5):
        y = kb.bitplane_matvec(Wp, P[b], n_in)
        assert_same(y, dense(W, X[b]), f"bitplane_matvec vs W @ x {what} b={b}")
        assert_same(y, rb.bitplane_matvec(Wp, P[b], n_in), f"bitplane_matvec twins {what}")


@pytest.mark.parametrize("n", [1, 2, 8, 64, 128, 256])
def test_hadamrnn_recurrence_by_xnor(n):
    """``diag(s) S h`` via XNOR (±1 h) and bit-planes (integer h); ``M M^T = n I``."""
    rng = np.random.default_rng(n)
    s = random_signs(rng, n)
    M = kb.hadamard_packed(s)
    S = sylvester(n, dtype=np.int64)
    h_pm1 = random_signs(rng, (5, n))
    expected = s[:, None] * (S @ h_pm1.T.astype(np.int64))
    assert_same(kb.xnor_matmul(M, kb.pack_signs(h_pm1), n), expected.astype(np.int32), "xnor W h")
    h_int = rng.integers(-128, 128, (5, n))
    expected = s[:, None] * (S @ h_int.T)
    assert_same(kb.bitplane_matmul(M, kb.pack_bitplanes(h_int, 8), n), expected, "bitplane W h")
    gram = kb.xnor_matmul(M, M, n)
    assert_same(gram, (n * np.eye(n)).astype(np.int32), "M M^T = n I")


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
def test_out_argument(twin):
    rng = np.random.default_rng(3)
    W, X = random_signs(rng, (9, 70)), random_signs(rng, (4, 70))
    Wp, Xp = kb.pack_signs(W), kb.pack_signs(X)
    out = np.empty((9, 4), dtype=np.int32)
    assert twin.xnor_matmul(Wp, Xp, 70, out=out) is out
    assert_same(out, dense(W, X.T).astype(np.int32), "out= matmul")
    out1 = np.empty(9, dtype=np.int32)
    assert twin.xnor_matvec(Wp, Xp[1], 70, out=out1) is out1
    assert_same(out1, dense(W, X[1]).astype(np.int32), "out= matvec")
    with pytest.raises(ShapeError, match=r"out has shape \(8,\)"):
        twin.xnor_matvec(Wp, Xp[1], 70, out=np.empty(8, dtype=np.int32))
    with pytest.raises(TypeError, match="int32"):
        twin.xnor_matvec(Wp, Xp[1], 70, out=np.empty(9, dtype=np.int64))


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
def test_product_errors(twin):
    Wp = kb.pack_signs(np.ones((4, 70), dtype=np.int8))
    xp = Wp[0].copy()
    with pytest.raises(TypeError, match="W_packed must be a uint64"):
        twin.xnor_matvec(Wp.astype(np.int64), xp, 70)
    with pytest.raises(ShapeError, match=r"expected \(n_out >= 1, ceil\(200 / 64\) = 4\)"):
        twin.xnor_matvec(Wp, xp, 200)
    with pytest.raises(ShapeError, match="x_packed must have 1 axes"):
        twin.xnor_matvec(Wp, Wp, 70)
    with pytest.raises(ShapeError, match="X_packed has 3 words"):
        twin.xnor_matmul(Wp, np.zeros((2, 3), dtype=np.uint64), 70)
    with pytest.raises(SizeError, match="n_in must be >= 1"):
        twin.xnor_matvec(Wp, xp, 0)
    with pytest.raises(TypeError, match="n_in must be an integer"):
        twin.xnor_matvec(Wp, xp, 70.0)
    with pytest.raises(SizeError, match=r"\[1, 32\]"):
        twin.bitplane_matvec(Wp, np.zeros((33, 2), dtype=np.uint64), 70)


def test_non_contiguous_operands():
    rng = np.random.default_rng(11)
    W, X = random_signs(rng, (6, 130)), random_signs(rng, (5, 130))
    Wp = np.asfortranarray(kb.pack_signs(W))
    Xp = kb.pack_signs(X)[::2]
    assert_same(kb.xnor_matmul(Wp, Xp, 130), dense(W, X[::2].T).astype(np.int32), "strided")


# --- input contract (the twin audit) ---------------------------------------------------------


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
def test_empty_batch(twin):
    """B = 0 gave ``(n_out, 0)`` in the reference and a reshape error in the kernel."""
    Wp = kb.pack_signs(np.ones((4, 70), dtype=np.int8))
    assert_same(twin.xnor_matmul(Wp, np.zeros((0, 2), np.uint64), 70),
                np.zeros((4, 0), np.int32), "xnor_matmul B=0")
    assert_same(twin.bitplane_matmul(Wp, np.zeros((0, 3, 2), np.uint64), 70),
                np.zeros((4, 0), np.int64), "bitplane_matmul B=0")


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
def test_out_must_be_contiguous_and_writable(twin):
    """A read-only ``out`` gave a Numba TypingError in the kernel; a strided one was refused
    by the kernel (TypeError) and filled by the reference."""
    rng = np.random.default_rng(12)
    Wp = kb.pack_signs(random_signs(rng, (9, 70)))
    Xp = kb.pack_signs(random_signs(rng, (4, 70)))
    for out, error, message in ((np.empty(18, np.int32)[::2], ValueError, "C-contiguous"),
                                (_read_only(np.empty(9, np.int32)), ValueError, "read-only")):
        with pytest.raises(error, match=message):
            twin.xnor_matvec(Wp, Xp[0], 70, out=out)
    with pytest.raises(ValueError, match="C-contiguous"):
        twin.xnor_matmul(Wp, Xp, 70, out=np.empty((4, 9), np.int32).T)
    with pytest.raises(ValueError, match="read-only"):
        twin.bitplane_matmul(Wp, kb.pack_bitplanes(np.zeros((4, 70), np.int64), 2), 70,
                             out=_read_only(np.empty((9, 4), np.int64)))


class Tagged(np.ndarray):
    """An ndarray subclass (like ``np.memmap``) holding packed words."""


@pytest.mark.parametrize("twin", [kb, rb], ids=["kernel", "reference"])
def test_packed_operands_may_be_ndarray_subclasses(twin):
    rng = np.random.default_rng(13)
    W, X = random_signs(rng, (9, 70)), random_signs(rng, (4, 70))
    Wp, Xp = kb.pack_signs(W), kb.pack_signs(X)
    got = twin.xnor_matmul(Wp.view(Tagged), Xp.view(Tagged), 70)
    assert_same(np.asarray(got), dense(W, X.T).astype(np.int32), "subclass operands")
    assert_same(twin.unpack_signs(Xp.view(Tagged), 70), X, "unpack a subclass")
