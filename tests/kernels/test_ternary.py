"""Sparse-ternary index lists and products: kernels vs NumPy reference vs dense matmul."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import NonFiniteError, ShapeError, SizeError
from hadamnp.kernels import ternary as kt
from hadamnp.reference import ternary as rt
from hadamnp.reference.hadamard import block_hadamard
from hadamnp.reference.ternary import TernaryRows

TWINS = [pytest.param(kt, id="kernel"), pytest.param(rt, id="reference")]
SHAPES = [(1, 1), (1, 2), (2, 1), (7, 31), (8, 32), (9, 33), (16, 63), (33, 64), (64, 65),
          (17, 128), (128, 129)]
FLOAT_RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def random_ternary(rng, shape, density=0.5):
    signs = np.where(rng.random(shape) < 0.5, -1, 1)
    return np.where(rng.random(shape) < density, signs, 0).astype(np.int8)


def assert_rows_equal(a, b, what):
    for name in TernaryRows._fields[:4]:
        u, v = getattr(a, name), getattr(b, name)
        assert u.dtype == v.dtype and np.array_equal(u, v), f"{what} {name}: {u} vs {v}"
    assert a.n_in == b.n_in, f"{what} n_in: {a.n_in} vs {b.n_in}"


def assert_same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, (
        f"{what}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    )
    assert np.array_equal(a, b), f"{what}:\n{a}\nvs\n{b}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_ternary_to_rows_twins(shape, density):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    M = random_ternary(rng, shape, density)
    rows = kt.ternary_to_rows(M)
    assert_rows_equal(rows, rt.ternary_to_rows(M), f"shape={shape}")
    assert rows.plus_ptr.dtype == np.int64 and rows.plus_idx.dtype == np.int32
    assert rows.n_out == shape[0] and rows.n_in == shape[1]
    assert_same(rt.rows_to_dense(rows), M, "rows_to_dense(ternary_to_rows(M))")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_products_twins_and_dense(shape, dtype):
    rng = np.random.default_rng(shape[0] * 77 + shape[1])
    M = random_ternary(rng, shape)
    rows = kt.ternary_to_rows(M)
    for B in (1, 2, 7, 16, 33):
        X = rng.standard_normal((shape[1], B)).astype(dtype)
        Y = kt.ternary_matmul(rows, X)
        what = f"shape={shape} B={B} {np.dtype(dtype)}"
        assert_same(Y, rt.ternary_matmul(rows, X), f"matmul kernel vs reference {what}")
        np.testing.assert_allclose(Y, M.astype(np.float64) @ X.astype(np.float64),
                                   rtol=FLOAT_RTOL[dtype], atol=FLOAT_RTOL[dtype] * shape[1],
                                   err_msg=f"matmul vs dense {what}")
        y = kt.ternary_matvec(rows, X[:, 0])
        assert_same(y, rt.ternary_matvec(rows, X[:, 0]), f"matvec kernel vs reference {what}")
        assert_same(y, Y[:, 0], f"matvec vs matmul column 0 {what}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_integer_products_exact(shape, dtype):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    M = random_ternary(rng, shape)
    rows = kt.ternary_to_rows(M)
    info = np.iinfo(dtype)
    X = rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), (shape[1], 5)).astype(dtype)
    expected = M.astype(np.int64) @ X.astype(np.int64)
    for twin in (kt, rt):
        assert_same(twin.ternary_matmul(rows, X), expected, f"{twin.__name__} matmul {shape}")
        assert_same(twin.ternary_matvec(rows, X[:, 3]), expected[:, 3],
                    f"{twin.__name__} matvec {shape}")


@pytest.mark.parametrize("twin", TWINS)
def test_summation_order_is_the_documented_one(twin):
    # float32: (1e8 + 1) rounds to 1e8, so left-to-right over [1e8, 1, -1e8] gives 0,
    # whereas summing the small term last (or pairwise) would give 1.
    rows = kt.ternary_to_rows(np.array([[1, 1, 1], [-1, -1, 1]]))
    x = np.array([1e8, 1.0, -1e8], dtype=np.float32)
    y = twin.ternary_matvec(rows, x)
    # Row 1: plus sum = -1e8, minus sum = 1e8 + 1 -> 1e8; y = -1e8 - 1e8.
    assert_same(y, np.array([0.0, -2e8], dtype=np.float32), "sequential float32 sums")
    Y = twin.ternary_matmul(rows, np.stack([x, x], axis=1))
    assert_same(Y, np.array([[0.0, 0.0], [-2e8, -2e8]], dtype=np.float32), "batch keeps order")


@pytest.mark.parametrize("n, m", [(1, 1), (2, 1), (2, 2), (8, 2), (64, 8), (128, 128),
                                  (256, 32), (512, 128)])
def test_block_hadamard_rows(n, m):
    rng = np.random.default_rng(n + m)
    s = np.where(rng.random(n) < 0.5, -1, 1)
    rows = kt.block_hadamard_rows(s, m)
    assert_rows_equal(rows, rt.block_hadamard_rows(s, m), f"n={n} m={m}")
    B = rt.rows_to_dense(rows, dtype=np.int64)
    assert_same(B, s[:, None] * block_hadamard(n, m, dtype=np.int64), "diag(s) (I ⊗ S_m)")
    assert np.all(np.diff(rows.plus_ptr) + np.diff(rows.minus_ptr) == m), "m nonzeros per row"
    assert_same(B @ B.T, m * np.eye(n, dtype=np.int64), "B B^T = m I")
    h = rng.integers(-1000, 1000, (n, 3))
    assert_same(kt.ternary_matmul(rows, h), B @ h, "recurrence step on integers")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_property_matches_dense_integer_product(n_out, n_in, seed):
    rng = np.random.default_rng(seed)
    M = random_ternary(rng, (n_out, n_in), density=rng.random())
    x = rng.integers(-(2**20), 2**20, n_in)
    rows = kt.ternary_to_rows(M)
    assert_same(kt.ternary_matvec(rows, x), M.astype(np.int64) @ x, "property M @ x")


@pytest.mark.parametrize("twin", TWINS)
def test_conversion_errors(twin):
    with pytest.raises(ValueError, match=r"only -1, 0 and \+1; found 1 other value\(s\), first 2"):
        twin.ternary_to_rows(np.array([[1, 0], [2, -1]]))
    with pytest.raises(NonFiniteError, match="M contains 1 NaN"):
        twin.ternary_to_rows(np.array([[1.0, np.nan]]))
    with pytest.raises(ShapeError, match="n_out, n_in"):
        twin.ternary_to_rows(np.ones(3))
    with pytest.raises(SizeError, match="power of two"):
        twin.block_hadamard_rows(np.ones(6), 2)
    with pytest.raises(SizeError, match="block size m"):
        twin.block_hadamard_rows(np.ones(8), 3)
    with pytest.raises(ValueError, match="only -1 and"):
        twin.block_hadamard_rows(np.array([1, 0, 1, 1]), 2)


@pytest.mark.parametrize("twin", TWINS)
def test_product_errors(twin):
    rows = kt.ternary_to_rows(np.array([[1, 0, -1], [0, 1, 1]]))
    with pytest.raises(ShapeError, match="expected n_in = 3"):
        twin.ternary_matvec(rows, np.ones(4))
    with pytest.raises(ShapeError, match=r"\(n_in, B\)"):
        twin.ternary_matmul(rows, np.ones(3))
    with pytest.raises(NonFiniteError, match="x contains 1 NaN"):
        twin.ternary_matvec(rows, np.array([1.0, np.inf, 0.0]))
    with pytest.raises(TypeError, match="float32, float64 or an integer"):
        twin.ternary_matvec(rows, np.ones(3, dtype=np.float16))
    with pytest.raises(TypeError, match="TernaryRows"):
        twin.ternary_matvec(tuple(rows), np.ones(3))
    out_of_range = rows._replace(minus_idx=np.array([3], dtype=np.int32))
    with pytest.raises(ValueError, match=r"minus_idx holds a column outside \[0, n_in = 3\)"):
        twin.ternary_matvec(out_of_range, np.ones(3))
    falling = rows._replace(plus_ptr=np.array([0, 2, 1], dtype=np.int64))
    with pytest.raises(ValueError, match="plus_ptr"):
        twin.ternary_matmul(falling, np.ones((3, 2)))
    with pytest.raises(TypeError, match="plus_idx must be a 1-D int32"):
        twin.ternary_matvec(rows._replace(plus_idx=rows.plus_idx.astype(np.int64)), np.ones(3))


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("n_in", [3.0, np.float32(3), True, "3", 3.5])
def test_rows_refuse_a_non_integer_column_count(twin, n_in):
    """``n_in = 3.0`` was accepted by both twins (and 3.5 compared against shapes)."""
    rows = rt.ternary_to_rows(np.array([[1, 0, -1], [0, 1, 1]]))._replace(n_in=n_in)
    with pytest.raises(TypeError, match="rows.n_in must be an integer"):
        twin.ternary_matvec(rows, np.ones(3))
    with pytest.raises(TypeError, match="rows.n_in must be an integer"):
        twin.ternary_matmul(rows, np.ones((3, 2)))


@pytest.mark.parametrize("twin", TWINS)
def test_rows_refuse_a_negative_column_count(twin):
    rows = rt.ternary_to_rows(np.zeros((2, 0)))._replace(n_in=-1)
    with pytest.raises(SizeError, match="rows.n_in must be >= 0, got -1"):
        twin.ternary_matvec(rows, np.ones(0))
