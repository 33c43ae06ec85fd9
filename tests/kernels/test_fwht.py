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
from numba.core.errors import TypingError
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
    want = x @ reference.sylvester(256, np.int64)
    for dtype in DTYPES:
        assert np.array_equal(fwht(x.astype(dtype)), want.astype(dtype))
        assert np.array_equal(reference.fwht(x.astype(dtype)), want.astype(dtype))


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


# --- input contract of the in-place kernels -------------------------------------------------
# Issue 14: from Python they raised multi-page Numba TypingErrors for integer or
# non-contiguous arrays, took m=True as 1, and wrote past the end of the array when the
# transform length was not a power of two.


def _read_only(a):
    a.flags.writeable = False
    return a


IN_PLACE = [pytest.param(fwht_rows_inplace, id="rows"),
            pytest.param(fwht_columns_inplace, id="columns")]

BAD_IN_PLACE_ARRAYS = {
    "int64": (lambda: np.ones((8, 8), np.int64), TypeError,
              "a must be float32 or float64, got dtype int64"),
    "uint8": (lambda: np.ones((8, 8), np.uint8), TypeError, "float32 or float64, got dtype uint8"),
    "bool": (lambda: np.ones((8, 8), bool), TypeError, "float32 or float64, got dtype bool"),
    "float16": (lambda: np.ones((8, 8), np.float16), TypeError, "got dtype float16"),
    "big-endian": (lambda: np.ones((8, 8), ">f8"), TypeError, "got dtype >f8"),
    "transposed": (lambda: np.ones((8, 16), np.float32).T[:8], ValueError,
                   "a must be C-contiguous"),
    "every other row": (lambda: np.ones((16, 8))[::2], ValueError, "a must be C-contiguous"),
    "every other column": (lambda: np.ones((8, 16))[:, ::2], ValueError, "C-contiguous"),
    "read-only": (lambda: _read_only(np.ones((8, 8))), ValueError, "a is read-only"),
    "1-D": (lambda: np.ones(8), ShapeError, r"a must have shape \(\w, \w\), got shape \(8,\)"),
    "3-D": (lambda: np.ones((2, 8, 8)), ShapeError, r"got shape \(2, 8, 8\)"),
    "list": (lambda: [[1.0] * 8] * 8, TypeError, "a must be a numpy.ndarray, got list"),
}


@pytest.mark.parametrize("kernel", IN_PLACE)
@pytest.mark.parametrize("case", sorted(BAD_IN_PLACE_ARRAYS))
def test_in_place_kernels_refuse_bad_arrays(case, kernel):
    make, error, message = BAD_IN_PLACE_ARRAYS[case]
    a = make()
    keep = np.array(a, copy=True)
    with pytest.raises(error, match=message) as info:
        kernel(a, 8)
    assert "\n" not in str(info.value), f"not a one-line message: {info.value}"
    assert str(info.value).startswith(kernel.__name__), f"does not name the kernel: {info.value}"
    assert np.array_equal(np.asarray(a), keep), "a was modified"


@pytest.mark.parametrize("kernel", IN_PLACE)
@pytest.mark.parametrize("m", [True, np.True_, 8.0, np.float64(8), 2.5, "8", None])
def test_in_place_kernels_refuse_non_integer_blocks(kernel, m):
    a = np.ones((8, 8))
    with pytest.raises(TypeError, match="block size m must be an integer"):
        kernel(a, m)
    assert np.all(a == 1), "a was modified"


@pytest.mark.parametrize("kernel", IN_PLACE)
@pytest.mark.parametrize("m", [np.int64(4), np.uint8(4), np.array(4)])
def test_in_place_kernels_take_numpy_integer_blocks(kernel, m):
    x = np.random.default_rng(15).standard_normal((8, 8))
    a, b = x.copy(), x.copy()
    kernel(a, m)
    kernel(b, 4)
    assert np.array_equal(a, b), f"m={m!r} and m=4 differ"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, shape, m", [
    (fwht_rows_inplace, (2, 12), 4), (fwht_rows_inplace, (1, 24), 8),
    (fwht_rows_inplace, (3, 0), 1), (fwht_rows_inplace, (2, 48), 16),
    (fwht_columns_inplace, (12, 1), 4), (fwht_columns_inplace, (12, 3), 4),
    (fwht_columns_inplace, (24, 16), 8), (fwht_columns_inplace, (0, 5), 1)])
def test_in_place_kernels_refuse_lengths_that_are_not_powers_of_two(kernel, shape, m, dtype):
    """``n`` not a power of two but divisible by ``m`` used to pass the check; the vector
    passes then read and wrote whole blocks past the end of the array."""
    size = shape[0] * shape[1]
    buf = np.full(size + 64, 7.0, dtype)
    a = buf[:size].reshape(shape)
    with pytest.raises(SizeError, match="must be a power of two"):
        kernel(a, m)
    assert np.all(buf[size:] == 7), "written past the end of the array"


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_kernels_accept_empty_batches(dtype):
    rows, cols = np.empty((0, 16), dtype), np.empty((16, 0), dtype)
    fwht_rows_inplace(rows, 16)
    fwht_columns_inplace(cols, 4)
    assert rows.shape == (0, 16) and cols.shape == (16, 0)


@numba.njit
def rows_from_compiled_code(a, m):
    fwht_rows_inplace(a, m)


def test_in_place_kernels_are_typed_in_compiled_code():
    """Compiled callers get the kernels (rows here; columns in the tests above) and a
    TypingError naming the contract for arrays the kernels cannot take."""
    x = np.random.default_rng(16).standard_normal((5, 64)).astype(np.float32)
    a = x.copy()
    rows_from_compiled_code(a, 16)
    assert_matches_reference(a, x, 16, "rows kernel from compiled code")
    for bad in (np.ones((8, 16))[:, ::2], np.ones((8, 8), np.int64), _read_only(np.ones((8, 8)))):
        with pytest.raises(TypingError, match="writable C-contiguous 2-D float32 or float64"):
            rows_from_compiled_code(bad, 8)
        with pytest.raises(TypingError, match="writable C-contiguous 2-D float32 or float64"):
            columns_per_step(bad[None], 8)
    with pytest.raises(TypingError, match="block size m must be an integer"):
        rows_from_compiled_code(a, 2.0)
    with pytest.raises(SizeError, match="power of two"):
        rows_from_compiled_code(np.ones((2, 12)), 4)


# --- one contract for the twins ------------------------------------------------------------


TWIN_BAD_INPUTS = {
    "uint8 (wrapped around in the reference)": (np.array([1, 2, 3, 4], np.uint8), None,
                                                TypeError),
    "int64": (np.arange(8), None, TypeError),
    "bool": (np.ones(8, bool), None, TypeError),
    "float16": (np.ones(8, np.float16), None, TypeError),
    "complex": (np.ones(8, complex), None, TypeError),
    "object": (np.ones(8, object), None, TypeError),
    "block_size True (1 in the kernel)": (np.ones(8), True, TypeError),
    "block_size np.True_": (np.ones(8), np.True_, TypeError),
    "block_size 2.0": (np.ones(8), 2.0, TypeError),
    "block_size '2'": (np.ones(8), "2", TypeError),
    "block_size 0": (np.ones(8), 0, SizeError),
    "block_size 16 > n": (np.ones(8), 16, SizeError),
    "length 6": (np.ones(6), None, SizeError),
    "length 0": (np.ones((2, 0)), None, SizeError),
    "scalar": (np.float64(1.0), None, ShapeError),
    "NaN (passed through by the reference)": (np.array([1.0, np.nan]), None, NonFiniteError),
    "-Inf": (np.array([[1.0, 2.0], [-np.inf, 0.0]], np.float32), 2, NonFiniteError),
}


@pytest.mark.parametrize("case", sorted(TWIN_BAD_INPUTS))
def test_fwht_twins_refuse_the_same_inputs(case):
    x, block_size, error = TWIN_BAD_INPUTS[case]
    with pytest.raises(error) as kernel_error:
        fwht(x, block_size)
    with pytest.raises(error) as reference_error:
        reference.fwht(x, block_size)
    assert type(kernel_error.value) is type(reference_error.value), (
        f"kernel {type(kernel_error.value).__name__}: {kernel_error.value}; "
        f"reference {type(reference_error.value).__name__}: {reference_error.value}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fwht_twins_agree_on_awkward_valid_inputs(dtype):
    rng = np.random.default_rng(17)
    base = rng.standard_normal((6, 64)).astype(dtype)
    cases = [(base.T[:16].T, None), (base[::2], np.int8(8)), (base[:, ::-1], 4),
             (np.empty((0, 8), dtype), None), (np.empty((3, 0, 4), dtype), 2), (base[0, :1], 1),
             (_read_only(base.copy()), np.uint64(16))]
    for x, block_size in cases:
        got, want = fwht(x, block_size), reference.fwht(x, block_size)
        assert got.dtype == want.dtype and got.shape == want.shape, f"{x.shape} {block_size}"
        assert np.array_equal(got, want), f"shape {x.shape} strides {x.strides} m={block_size}"


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
