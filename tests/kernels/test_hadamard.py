"""The plain-NumPy Hadamard reference: Sylvester matrices, block-Hadamard matrices and the
reference FWHT, checked against definitions (entry formula, scipy, dense products) and
their algebra (symmetry, S S = n I, orthogonality after scaling)."""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import NonFiniteError, ShapeError, SizeError
from hadamnp.reference.hadamard import block_hadamard, fwht, sylvester

POWERS = [1 << k for k in range(11)]  # 1 .. 1024


def popcount(v):
    return bin(int(v)).count("1")


def assert_close(got, want, tol, what):
    """``max|got - want| <= tol * max(1, max|want|)``; the message shows both values."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.size == 0:
        return
    err = np.abs(got - want)
    scale = max(1.0, float(np.abs(want).max()))
    worst = np.unravel_index(int(err.argmax()), err.shape)
    assert err[worst] <= tol * scale, (
        f"{what}: error {err[worst]:.3g} > {tol:g} * {scale:.3g} at index {worst}: "
        f"got {got[worst]!r}, expected {want[worst]!r}")


# --- sylvester ----------------------------------------------------------------------------


def test_sylvester_first_matrices():
    assert np.array_equal(sylvester(1), [[1]])
    assert np.array_equal(sylvester(2), [[1, 1], [1, -1]])
    assert np.array_equal(sylvester(4), [[1, 1, 1, 1], [1, -1, 1, -1],
                                         [1, 1, -1, -1], [1, -1, -1, 1]])


@pytest.mark.parametrize("n", POWERS[:8])
def test_sylvester_entry_formula(n):
    S = sylvester(n)
    want = np.array([[(-1) ** popcount(i & j) for j in range(n)] for i in range(n)])
    bad = np.argwhere(S != want)
    assert bad.size == 0, (f"S_{n} differs at {bad[0].tolist()}: "
                           f"{S[tuple(bad[0])]} vs {want[tuple(bad[0])]}")


@pytest.mark.parametrize("n", POWERS)
def test_sylvester_matches_scipy(n):
    assert np.array_equal(sylvester(n), scipy.linalg.hadamard(n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int64])
def test_sylvester_dtype(dtype):
    S = sylvester(8, dtype)
    assert S.dtype == dtype and S.shape == (8, 8)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(0, 9))
def test_sylvester_symmetric_and_orthogonal(k):
    n = 1 << k
    S = sylvester(n)
    assert np.array_equal(S, S.T), f"S_{n} is not symmetric"
    assert np.array_equal(S @ S, n * np.eye(n)), f"S_{n} S_{n} != {n} I"


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 8), data=st.data())
def test_signed_hadamard_orthogonal_for_any_signs(k, data):
    """``W = diag(s) S / sqrt(n)`` is orthogonal for every ``s`` in {±1}^n."""
    n = 1 << k
    s = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n)))
    W = s[:, None] * sylvester(n) / np.sqrt(n)
    assert_close(W @ W.T, np.eye(n), 1e-12, f"W W^T, n={n}")
    assert_close(W.T @ W, np.eye(n), 1e-12, f"W^T W, n={n}")


@pytest.mark.parametrize("n", [0, 3, 6, 12, -4])
def test_sylvester_rejects_non_powers(n):
    with pytest.raises(SizeError, match=str(n)):
        sylvester(n)


# --- block_hadamard -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 9), data=st.data())
def test_block_hadamard_structure_density_and_orthogonality(k, data):
    n = 1 << k
    m = 1 << data.draw(st.integers(0, k))
    Bm = block_hadamard(n, m)
    assert set(np.unique(Bm)) <= {-1.0, 0.0, 1.0}
    density = np.count_nonzero(Bm) / (n * n)
    assert density == m / n, f"density {density} != m/n = {m}/{n}"
    for b in range(n // m):
        block = Bm[b * m:(b + 1) * m, b * m:(b + 1) * m]
        assert np.array_equal(block, sylvester(m)), f"diagonal block {b} is not S_{m}"
    assert_close(Bm @ Bm.T / m, np.eye(n), 1e-12, f"B B^T / m, n={n} m={m}")


def test_block_hadamard_full_block_is_sylvester():
    assert np.array_equal(block_hadamard(16, 16), sylvester(16))


@pytest.mark.parametrize("n, m", [(8, 3), (8, 16), (8, 0), (6, 2)])
def test_block_hadamard_rejects_bad_sizes(n, m):
    with pytest.raises(SizeError):
        block_hadamard(n, m)


# --- reference fwht -----------------------------------------------------------------------


@pytest.mark.parametrize("n", POWERS)
def test_fwht_equals_dense_product(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n))
    for m in sorted({1, min(2, n), min(8, n), n}):
        assert_close(fwht(x, m), x @ block_hadamard(n, m), 1e-12, f"n={n} m={m}")


def test_fwht_of_integer_values_is_exact_in_float64():
    rng = np.random.default_rng(1)
    x = rng.integers(-1000, 1000, (5, 64))
    y = fwht(x.astype(np.float64))
    assert y.dtype == np.float64
    assert np.array_equal(y, x @ sylvester(64, np.int64))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int64, np.uint64, bool, np.float16,
                                   np.complex128, object])
def test_fwht_refuses_other_dtypes(dtype):
    """Issue 14: ``[1, 2, 3, 4]`` as uint8 came back as ``[10, 254, 252, 0]`` (wrapped)."""
    name = np.dtype(dtype)
    with pytest.raises(TypeError, match=f"x must be float32 or float64, got dtype {name}"):
        fwht(np.array([1, 2, 3, 4]).astype(dtype))


@pytest.mark.parametrize("block_size", [True, False, np.True_, 2.0, 2.5, "2"])
def test_fwht_refuses_non_integer_block_size(block_size):
    with pytest.raises(TypeError, match="block_size must be an integer"):
        fwht(np.ones(8), block_size)
    assert np.array_equal(fwht(np.ones(8), np.int8(2)), fwht(np.ones(8), 2))


def test_fwht_refuses_non_finite_input():
    with pytest.raises(NonFiniteError, match="x contains 2 NaN/Inf"):
        fwht(np.array([1.0, np.nan, np.inf, 0.0]))


def test_fwht_leading_shapes_and_layout():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 32))
    assert_close(fwht(x, 8), x @ block_hadamard(32, 8), 1e-12, "(3, 5, 32)")
    xt = rng.standard_normal((32, 5, 3)).transpose(2, 1, 0)  # not C-contiguous
    assert_close(fwht(xt), xt @ sylvester(32), 1e-12, "transposed input")
    assert fwht(np.zeros((0, 16))).shape == (0, 16)


def test_fwht_does_not_modify_input():
    x = np.arange(8.0)
    fwht(x)
    assert np.array_equal(x, np.arange(8.0))


@pytest.mark.parametrize("shape", [(3,), (2, 6), (4, 0)])
def test_fwht_rejects_non_power_length(shape):
    with pytest.raises(SizeError, match=str(shape[-1])):
        fwht(np.ones(shape))


@pytest.mark.parametrize("m", [3, 0, 32])
def test_fwht_rejects_bad_block(m):
    with pytest.raises(SizeError, match=str(m)):
        fwht(np.ones(16), m)


def test_fwht_rejects_scalar():
    with pytest.raises(ShapeError, match="scalar"):
        fwht(np.float64(1.0))


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 10), seed=st.integers(0, 2**32 - 1))
def test_fwht_algebra(k, seed):
    """FWHT twice = n I; the normalised FWHT keeps the norm and equals x S / sqrt(n)."""
    n = 1 << k
    x = np.random.default_rng(seed).standard_normal((2, n))
    y = fwht(x)
    assert_close(fwht(y), n * x, 1e-12, f"FWHT(FWHT(x)) vs n x, n={n}")
    norms = np.linalg.norm(y / np.sqrt(n), axis=-1)
    assert_close(norms, np.linalg.norm(x, axis=-1), 1e-12, f"norm, n={n}")
    assert_close(y / np.sqrt(n), x @ sylvester(n) / np.sqrt(n), 1e-12, f"x S / sqrt(n), n={n}")
