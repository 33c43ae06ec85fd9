"""Numba FWHT kernels vs the NumPy reference twin (hadamnp.reference.hadamard.fwht).

Tolerance: the float64 reference of the same input; float32 results within 1e-5 and float64
within 1e-12 of the largest reference magnitude (the kernels in fact reproduce the same-dtype
reference bit for bit, checked separately). Sizes: every power of two n up to 4096, block
sizes from 1 to n, batches around the vector widths (1, 2, 3, 15/16/17, 31/32/33, 63/64/65,
100, 128). Longer grids are marked slow.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import NonFiniteError, ShapeError, SizeError
from hadamnp.kernels.fwht import fwht, fwht_columns_inplace, fwht_rows_inplace
from hadamnp.reference import hadamard as reference

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
POWERS = [1 << k for k in range(13)]  # 1 .. 4096
BATCHES = [1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 128]


def blocks_for(n):
    """Block sizes to try for length ``n``: 1, 2, 4, 8, 16, ..., n, thinned above 256."""
    return [m for m in POWERS if m <= n and (m <= 256 or m == n)]


def assert_matches_reference(got, x, m, what, axis=-1):
    """``got`` vs the float64 reference transform of ``x`` along ``axis``; shows both values."""
    want = np.moveaxis(reference.fwht(np.moveaxis(x.astype(np.float64), axis, -1), m), -1, axis)
    assert got.shape == x.shape and got.dtype == x.dtype, (
        f"{what}: got {got.shape} {got.dtype}, expected {x.shape} {x.dtype}")
    if x.size == 0:
        return
    err = np.abs(got.astype(np.float64) - want)
    scale = max(1.0, float(np.abs(want).max()))
    worst = np.unravel_index(int(err.argmax()), err.shape)
    tol = TOL[x.dtype]
    assert err[worst] <= tol * scale, (
        f"{what}: error {err[worst]:.3g} > {tol:g} * {scale:.3g} at {worst}: "
        f"kernel {got[worst]!r}, reference {want[worst]!r}")


@numba.njit
def columns_per_step(h, m):
    """Apply the column kernel to every ``h[t]`` (T, n, B), as the sequence kernels do."""
    for t in range(h.shape[0]):
        fwht_columns_inplace(h[t], m)


# --- public fwht (rows) --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", POWERS)
def test_fwht_matches_reference(n, dtype):
    rng = np.random.default_rng(n)
    for rows in (1, 3):
        x = rng.standard_normal((rows, n)).astype(dtype)
        for m in blocks_for(n):
            y = fwht(x, m)
            assert_matches_reference(y, x, m, f"fwht n={n} m={m} rows={rows}")
    assert_matches_reference(fwht(x[0]), x[0], n, f"1-D input n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [16, 512])
def test_fwht_batches(n, dtype):
    rng = np.random.default_rng(7)
    for rows in BATCHES:
        x = rng.standard_normal((rows, n)).astype(dtype)
        assert_matches_reference(fwht(x), x, n, f"n={n} rows={rows}")
        assert_matches_reference(fwht(x, 8), x, 8, f"n={n} rows={rows} m=8")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fwht_leading_shapes(dtype):
    rng = np.random.default_rng(3)
    for shape in [(3, 5, 64), (2, 1, 3, 16), (5, 7, 4), (0, 32), (3, 0, 8)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = fwht(x)
        assert y.flags.c_contiguous
        assert_matches_reference(y, x, shape[-1], f"shape {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fwht_bitwise_equals_same_dtype_reference(dtype):
    """Same additions in the same stage order: identical to the reference in its own dtype."""
    rng = np.random.default_rng(11)
    for n, m, rows in [(8, 8, 5), (64, 16, 3), (512, 512, 33), (4096, 4096, 2), (4096, 64, 2)]:
        x = rng.standard_normal((rows, n)).astype(dtype)
        y, want = fwht(x, m), reference.fwht(x, m)
        bad = np.argwhere(y != want)
        assert bad.size == 0, (f"n={n} m={m}: differs at {bad[0].tolist()}: kernel "
                               f"{y[tuple(bad[0])]!r}, reference {want[tuple(bad[0])]!r}")


def test_fwht_integer_valued_input_is_exact():
    x = np.random.default_rng(5).integers(-3, 4, (7, 256))
    want = reference.fwht(x)
    for dtype in DTYPES:
        assert np.array_equal(fwht(x.astype(dtype)), want.astype(dtype))


def test_fwht_non_contiguous_and_read_only_input():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((64, 6))
    for x in (base.T, base[::2].T, base.T[:, ::2], base.T[::-1]):
        assert_matches_reference(fwht(x), x, x.shape[-1], f"strides {x.strides}")
    ro = rng.standard_normal((3, 32)).astype(np.float32)
    ro.flags.writeable = False
    assert_matches_reference(fwht(ro), ro, 32, "read-only input")


# --- out= and in place ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_fwht_out_argument(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 128)).astype(dtype)
    keep = x.copy()
    out = np.full_like(x, np.nan)
    assert fwht(x, 16, out=out) is out
    assert np.array_equal(x, keep), "x was modified"
    assert_matches_reference(out, x, 16, "out=")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [4, 512])
def test_fwht_in_place(n, dtype):
    x = np.random.default_rng(8).standard_normal((3, n)).astype(dtype)
    keep = x.copy()
    assert fwht(x, out=x) is x
    assert_matches_reference(x, keep, n, "in place")


def test_fwht_out_overlapping_input():
    """``out`` a shifted view of ``x``'s buffer: the result is still the transform of ``x``."""
    buf = np.random.default_rng(9).standard_normal(80).astype(np.float32)
    x = buf[:64].reshape(2, 32)
    keep = x.copy()
    out = buf[16:].reshape(2, 32)
    fwht(x, out=out)
    assert_matches_reference(out, keep, 32, "overlapping out")


def test_fwht_out_validation():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ShapeError, match=r"\(2, 4\)"):
        fwht(x, out=np.empty((2, 4), np.float32))
    with pytest.raises(TypeError, match="float64"):
        fwht(x, out=np.empty((2, 8), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        fwht(x, out=np.empty((8, 2), np.float32).T)
    ro = np.empty((2, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fwht(x, out=ro)
    with pytest.raises(TypeError, match="list"):
        fwht(x, out=[[0.0] * 8] * 2)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 6, 0, 12, 31, 33])
def test_fwht_rejects_non_power_length(n):
    with pytest.raises(SizeError, match=rf"\b{n}\b"):
        fwht(np.ones((2, n), np.float32))


@pytest.mark.parametrize("m", [3, 0, -2, 6, 32])
def test_fwht_rejects_bad_block(m):
    with pytest.raises(SizeError, match=rf"{m}"):
        fwht(np.ones((2, 16)), m)


def test_fwht_rejects_non_integer_block():
    with pytest.raises(TypeError, match="block_size"):
        fwht(np.ones(16), 2.5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, bool])
def test_fwht_rejects_dtype(dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        fwht(np.ones((2, 8), dtype))


def test_fwht_rejects_scalar():
    with pytest.raises(ShapeError, match="scalar"):
        fwht(np.float32(1.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [4, 16, 512])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fwht_rejects_non_finite(bad, n, dtype):
    for index in [(0, 0), (1, n // 2 + 1), (2, n - 1)]:
        x = np.ones((3, n), dtype)
        x[index] = bad
        with pytest.raises(NonFiniteError, match="1 NaN/Inf"):
            fwht(x)
        keep = x.copy()
        with pytest.raises(NonFiniteError):
            fwht(x, out=x)
        assert np.array_equal(x, keep, equal_nan=True), "in place: rejected x was modified"


# --- column kernel (n, B) ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", POWERS)
def test_columns_match_reference(n, dtype):
    rng = np.random.default_rng(100 + n)
    for B in BATCHES if n <= 1024 else [1, 17, 100]:
        for m in sorted({1, min(2, n), min(16, n), n // 2 or 1, n}):
            x = rng.standard_normal((n, B)).astype(dtype)
            a = x.copy()
            fwht_columns_inplace(a, m)
            assert_matches_reference(a, x, m, f"columns n={n} B={B} m={m}", axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, B, m", [(512, 100, 512), (128, 128, 128), (64, 1, 64),
                                     (32, 33, 8), (8, 7, 8), (1, 5, 1)])
def test_columns_from_compiled_code(n, B, m, dtype):
    """Called once per time step inside an njit loop on ``h[t]`` of a (T, n, B) state."""
    x = np.random.default_rng(12).standard_normal((3, n, B)).astype(dtype)
    h = x.copy()
    columns_per_step(h, m)
    for t in range(3):
        assert_matches_reference(h[t], x[t], m, f"step {t} n={n} B={B} m={m}", axis=0)


def test_columns_empty_batch():
    a = np.empty((16, 0), np.float32)
    fwht_columns_inplace(a, 16)
    assert a.shape == (16, 0)


@pytest.mark.parametrize("m", [3, 0, 32, 6])
def test_columns_reject_bad_block(m):
    with pytest.raises(SizeError, match="power of two dividing n"):
        fwht_columns_inplace(np.ones((16, 4), np.float32), m)


# --- row kernel ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_inplace_kernel(dtype):
    rng = np.random.default_rng(13)
    for n, R, m in [(1, 3, 1), (8, 5, 4), (64, 17, 64), (2048, 2, 128)]:
        x = rng.standard_normal((R, n)).astype(dtype)
        a = x.copy()
        fwht_rows_inplace(a, m)
        assert_matches_reference(a, x, m, f"rows kernel n={n} R={R} m={m}")
    with pytest.raises(SizeError, match="power of two dividing n"):
        fwht_rows_inplace(np.ones((2, 8), dtype), 3)


# --- algebra (Hypothesis) ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(k=st.integers(0, 11), rows=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_fwht_twice_is_n_identity(k, rows, seed):
    n = 1 << k
    x = np.random.default_rng(seed).standard_normal((rows, n))
    got = fwht(fwht(x))
    err = np.abs(got - n * x).max()
    assert err <= 1e-12 * n * max(1.0, np.abs(x).max()), f"n={n}: max |FWHT(FWHT(x)) - n x| = {err}"


@settings(max_examples=40, deadline=None)
@given(k=st.integers(0, 11), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_normalised_fwht_keeps_norm(k, dtype, seed):
    n = 1 << k
    x = np.random.default_rng(seed).standard_normal((2, n)).astype(dtype)
    got = np.linalg.norm(fwht(x).astype(np.float64) / np.sqrt(n), axis=-1)
    want = np.linalg.norm(x.astype(np.float64), axis=-1)
    rel = np.abs(got - want).max() / want.max()
    assert rel <= 10 * TOL[np.dtype(dtype)], f"n={n} {dtype.__name__}: norms {got} vs {want}"


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_normalised_fwht_is_dense_product(k, seed):
    n = 1 << k
    x = np.random.default_rng(seed).standard_normal((3, n))
    got = fwht(x) / np.sqrt(n)
    want = x @ reference.sylvester(n) / np.sqrt(n)
    err = np.abs(got - want).max()
    assert err <= 1e-12 * max(1.0, np.abs(want).max()), f"n={n}: max error {err}"


# --- long grids ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", range(13, 18))
def test_fwht_large_sizes(k, dtype):
    n = 1 << k
    x = np.random.default_rng(k).standard_normal((3, n)).astype(dtype)
    for m in [16, 4096, n]:
        assert_matches_reference(fwht(x, m), x, m, f"n={n} m={m}")
    a = x.T.copy()
    fwht_columns_inplace(a, n)
    assert_matches_reference(a, x.T, n, f"columns n={n} B=3", axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_columns_all_batches_and_blocks(dtype):
    rng = np.random.default_rng(14)
    for n in POWERS:
        for B in range(1, 200, 7):
            for m in blocks_for(n):
                x = rng.standard_normal((n, B)).astype(dtype)
                a = x.copy()
                fwht_columns_inplace(a, m)
                assert_matches_reference(a, x, m, f"columns n={n} B={B} m={m}", axis=0)
