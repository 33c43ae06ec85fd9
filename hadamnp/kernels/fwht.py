"""Numba fast Walsh-Hadamard transform (FWHT) kernels.

Unnormalised, Sylvester-ordered, in independent blocks of ``m`` (see
:mod:`hadamnp.conventions`). Reference twin: :func:`hadamnp.reference.hadamard.fwht`.

Two memory layouts are served:

- :func:`fwht_columns_inplace` transforms along axis 0 of an ``(n, B)`` array. Every
  butterfly adds two contiguous rows of ``B`` values, so the work vectorises across the
  batch. The sequence kernels keep their state in this layout and call it from compiled
  code once per time step.
- :func:`fwht` is the public, validating transform along the last axis of any array
  (rows of length ``n``: the ``(batch, n)`` layout); :func:`fwht_rows_inplace` is its
  in-place kernel, for compiled code.

Both in-place kernels are callable from Python and from compiled code. From Python they
check their arguments before dispatch (a few attribute tests on the usual path) and raise
one-line errors; compiled callers get the same checks at typing time.

How it is fast
--------------
Stage ``h`` (``h = 1, 2, 4, ...``) maps each pair ``(x[i], x[i + h])`` to
``(x[i] + x[i + h], x[i] - x[i + h])``. A radix-2 loop streams the whole array through
memory once per stage; here stages are fused so that each element is loaded and stored
once per group of up to ``log2(8 W)`` stages, ``W`` being the lanes of a 512-bit vector
(16 float32 or 8 float64):

- *Contiguous block* (rows): ``8 W`` contiguous elements are held in 8 vector registers;
  the stages ``h < W`` run inside each register (a lane permutation and one exact
  multiply-add by ±1),
  the stages ``W <= h < 8 W`` between registers. This is the register-level base case;
  the small strides never touch memory. This pass also copies the input into the output
  buffer and checks it for NaN/Inf on the way.
- *Strided pass*: ``r`` = 2, 4 or 8 vectors lying ``h`` rows apart are loaded, the
  ``log2 r`` stages between them run in registers, and they are stored back. Rows are
  covered ``W`` lanes at a time; a ragged last chunk (``B`` not a multiple of ``W``) is
  handled by an overlapping chunk ending at lane ``B``, loaded together with the chunk it
  overlaps so that no lane is read after being written.
- *Cache blocking*: the stages that stay inside an L1-sized block of rows are finished
  block by block before the wider stages sweep the whole array.

Numba runs LLVM's loop vectoriser but not its SLP vectoriser, so the register-level
blocks are small LLVM-IR intrinsics on ``<W x float>`` vectors, kept with their audit notes
in :mod:`hadamnp.kernels._machine`: generic vector IR that LLVM lowers to AVX-512, AVX2,
SSE or NEON. Single thread, no ``fastmath``: every output is
produced by the same IEEE additions and subtractions, in the same stage order, as the
reference. Inside a register the butterfly is computed as ``x[k ^ h] + sign_k * x[k]``
with a constant ``sign_k = ±1`` (``llvm.fmuladd``); the product by ±1 is exact, so the
fused and unfused forms both give the correctly rounded sum or difference.
"""

import numba
import numpy as np
from numba.core import types
from numba.core.errors import NumbaError, TypingError
from numba.extending import overload

from hadamnp._checks import (
    check_block_size,
    check_finite,
    check_float,
    check_integer,
    check_power_of_two,
)
from hadamnp.errors import ShapeError, SizeError
from hadamnp.kernels._machine import (
    VECTOR_BYTES,
    address,
    block1,
    block2,
    block4,
    block8,
    block16,
    block32,
    block64,
    block128,
    lanes,
    nonfinite_vector,
    strided2,
    strided2_pair,
    strided4,
    strided4_pair,
    strided8,
    strided8_pair,
)

# Data bytes in one cache block (leaves room in a 48 KiB L1 for lines straddling rows).
_L1_BLOCK_BYTES = 32768
# Stages fused in one strided pass at most (radix 8: 8 vectors in registers). Radix 16
# rarely saves a pass after cache blocking and doubles the compiled code.
_MAX_PASS_STAGES = 3


# ---------------------------------------------------------------------------------------
# Compiled drivers. ``p`` is a pointer from address(); "the matrix (rows, B) at base" is the
# elements p[base + i * B + j]; ``W`` lanes per vector (lanes()). Integer constants passed
# between compiled functions are wrapped in np.intp(): Numba would otherwise compile one
# specialisation per literal value.
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _contiguous_pass(src, dst, base, n, size):
    """``dst[base:base+n]`` = blocks of ``size`` of ``src[base:base+n]``, transformed.

    Needs ``n`` a multiple of ``max(size, W)`` and ``size <= 8 W`` (``size = 1``: a copy).
    Returns whether ``src[base:base+n]`` holds NaN/Inf.
    """
    step = max(size, lanes(src))
    bad = False
    for off in range(base, base + n, step):
        if size == 128:
            found = block128(src, dst, off)
        elif size == 64:
            found = block64(src, dst, off)
        elif size == 32:
            found = block32(src, dst, off)
        elif size == 16:
            found = block16(src, dst, off)
        elif size == 8:
            found = block8(src, dst, off)
        elif size == 4:
            found = block4(src, dst, off)
        elif size == 2:
            found = block2(src, dst, off)
        else:
            found = block1(src, dst, off)
        bad |= found
    return bad


@numba.njit(cache=True)
def _strided_pass(p, base, rows, B, h, radix):
    """Stages ``h, 2h, ..., radix h / 2`` along the rows of the matrix ``(rows, B)`` at ``base``.

    Needs ``B >= W``; half-widths ``h`` count rows.
    """
    W = lanes(p)
    last = B - B % W - W          # start of the last full chunk of a row
    ragged = B % W != 0           # then one more chunk ends at lane B, overlapping it
    stride = h * B
    for block in range(0, rows, radix * h):
        for i in range(block, block + h):
            row = base + i * B
            for j in range(row, row + last, W):
                if radix == 8:
                    strided8(p, j, stride)
                elif radix == 4:
                    strided4(p, j, stride)
                else:
                    strided2(p, j, stride)
            j, j_end = row + last, row + B - W
            if radix == 8:
                if ragged:
                    strided8_pair(p, j, j_end, stride)
                else:
                    strided8(p, j, stride)
            elif radix == 4:
                if ragged:
                    strided4_pair(p, j, j_end, stride)
                else:
                    strided4(p, j, stride)
            elif ragged:
                strided2_pair(p, j, j_end, stride)
            else:
                strided2(p, j, stride)


@numba.njit(inline="always")
def _strided_stages(p, base, rows, B, h, h_end):
    """Stages ``h, 2h, ..., h_end / 2`` of the matrix ``(rows, B)`` at ``base``, fused.

    Groups of at most ``_MAX_PASS_STAGES`` stages, as even as possible (7 = 3+2+2).
    """
    k = 0
    while h << k < h_end:
        k += 1
    while k > 0:
        passes = (k + _MAX_PASS_STAGES - 1) // _MAX_PASS_STAGES
        s = (k + passes - 1) // passes
        _strided_pass(p, base, rows, B, h, 1 << s)
        h <<= s
        k -= s


@numba.njit(inline="always")
def _blocked_stages(p, base, rows, B, h, m):
    """Stages ``h .. m/2`` of the matrix ``(rows, B)`` at ``base``, cache-blocked.

    The stages narrower than the largest block of ``P <= m`` rows fitting
    ``_L1_BLOCK_BYTES`` are finished block by block, then the rest sweep all rows.
    """
    row_bytes = B * (VECTOR_BYTES // lanes(p))
    P = h
    while P < m and 2 * P * row_bytes <= _L1_BLOCK_BYTES:  # double while it still fits
        P *= 2
    if P > h:
        for r0 in range(0, rows, P):
            _strided_stages(p, base + r0 * B, P, B, h, P)
    if m > P:
        _strided_stages(p, base, rows, B, P, m)


@numba.njit(inline="always")
def _row_transform(src, dst, base, n, m):
    """``dst[base:base+n]`` = blocked FWHT of ``src[base:base+n]``; True if it held NaN/Inf.

    Needs ``n >= W``. The contiguous pass does the stages ``h < 8 W``; the rest are strided
    passes over the row seen as an ``(n / W, W)`` matrix (half-width ``h`` elements =
    ``h / W`` rows).
    """
    W = lanes(src)
    size = min(m, 8 * W)
    bad = _contiguous_pass(src, dst, base, n, size)
    if m > size:
        _blocked_stages(dst, base, n // W, W, size // W, m // W)
    return bad


@numba.njit(cache=True)
def _radix2_inplace(p, base, n, B, m):
    """Plain radix-2 FWHT of the matrix ``(n, B)`` at ``base`` along its rows (small cases)."""
    h = 1
    while h < m:
        for block in range(0, n, 2 * h):
            for i in range(block, block + h):
                lo = base + i * B
                hi = lo + h * B
                for j in range(B):
                    x = p[lo + j]
                    y = p[hi + j]
                    p[lo + j] = x + y
                    p[hi + j] = x - y
        h *= 2


@numba.njit(cache=True)
def _rows(src, dst, n, m):
    """``dst`` = FWHT (blocks of ``m``) of every length-``n`` row of ``src``.

    ``src``, ``dst``: C-contiguous ``(R, n)`` arrays of one dtype; ``dst`` may be ``src``.
    Returns whether ``src`` holds NaN/Inf.
    """
    src_p, dst_p = address(src), address(dst)
    bad = False
    if n < lanes(src_p):
        for i in range(src.size):
            v = src_p[i]
            bad |= not np.isfinite(v)
            dst_p[i] = v
        for base in range(0, dst.size, n):
            _radix2_inplace(dst_p, base, n, np.intp(1), m)
        return bad
    for base in range(0, src.size, n):
        bad |= _row_transform(src_p, dst_p, base, n, m)
    return bad


@numba.njit(cache=True)
def _has_nonfinite(a):
    """Whether the C-contiguous array ``a`` holds NaN or ±Inf (vector loads, scalar tail)."""
    p = address(a)
    W = lanes(p)
    n = a.size
    bad = False
    for off in range(0, n - W + 1, W):
        bad |= nonfinite_vector(p, off)
    for i in range(n - n % W, n):
        bad |= not np.isfinite(p[i])
    return bad


@numba.njit(cache=True)
def _rows_inplace(a, m):
    n = a.shape[1]
    if n < 1 or n & (n - 1) != 0 or m < 1 or m & (m - 1) != 0 or n % m != 0:
        raise SizeError("fwht_rows_inplace: the row length n must be a power of two and the "
                        "block size m a power of two dividing n")
    _rows(a, a, n, m)


@numba.njit(cache=True)
def _columns(a, m):
    n, B = a.shape
    if n < 1 or n & (n - 1) != 0 or m < 1 or m & (m - 1) != 0 or n % m != 0:
        raise SizeError("fwht_columns_inplace: the column length n must be a power of two and "
                        "the block size m a power of two dividing n")
    p = address(a)
    W = lanes(p)
    zero, one = np.intp(0), np.intp(1)
    if B >= W:
        _blocked_stages(p, zero, n, B, one, m)
    elif B == 1 and n >= W:
        _row_transform(p, p, zero, n, m)
    elif B > 0:
        _radix2_inplace(p, zero, n, B, m)


# ---------------------------------------------------------------------------------------
# In-place kernels, callable from Python (validated) and from compiled code (typed)
# ---------------------------------------------------------------------------------------


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_inplace(a, m, name, layout):
    """``(a, m)`` as a plain ndarray and an int, or the one-line error that says why not."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: a must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: a must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ShapeError(f"{name}: a must have shape {layout}, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: a must be C-contiguous (it is transformed in place), got "
                         f"strides {a.strides} for shape {a.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name}: a is read-only (it is transformed in place)")
    if not a.flags.aligned:
        raise ValueError(f"{name}: a is not aligned to its {a.itemsize}-byte elements")
    return np.asarray(a), check_integer(m, f"{name}: block size m")


def _check_compiled_inplace(a, m, name):
    """Typing-time twin of :func:`_check_inplace` for calls from compiled code."""
    if not (isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" and a.mutable
            and a.dtype in (types.float32, types.float64)):
        raise TypingError(f"{name}: a must be a writable C-contiguous 2-D float32 or float64 "
                          f"array, got {a}")
    if not isinstance(m, types.Integer):
        raise TypingError(f"{name}: block size m must be an integer, got {m}")


def fwht_rows_inplace(a, m):
    """Transform each row of ``a`` in place, independently over column blocks of ``m``.

    The kernel behind :func:`fwht` for compiled code and benchmarks:
    ``a[r, k*m:(k+1)*m] <- S_m a[r, k*m:(k+1)*m]``. NaN/Inf are not checked. From Python
    the arguments are checked before dispatch; compiled callers get the same checks at
    typing time (a Numba ``TypingError``) and the size checks at run time.

    Parameters
    ----------
    a : ndarray (R, n), float32 or float64, C-contiguous and writable, ``n`` a power of two.
        Modified.
    m : int
        Block size: a power of two dividing ``n``.

    Raises
    ------
    TypeError
        If ``a`` is not a float32/float64 ndarray or ``m`` not an integer (bools refused).
    ShapeError
        If ``a`` does not have two axes.
    ValueError
        If ``a`` is not C-contiguous or is read-only.
    SizeError
        If ``n`` is not a power of two or ``m`` not a power of two dividing ``n``.
    """
    # The usual call passes every test of the first line: a few attribute reads (the
    # kernel itself takes well under a microsecond at batch 1).
    if not (type(a) is np.ndarray and a.flags.carray and a.ndim == 2
            and a.dtype in _FLOAT_DTYPES and type(m) is int):
        a, m = _check_inplace(a, m, "fwht_rows_inplace", "(R, n)")
    _rows_inplace(a, m)


def fwht_columns_inplace(a, m):
    """Transform each column of ``a`` in place, independently over row blocks of ``m``.

    ``a[k*m:(k+1)*m, j] <- S_m a[k*m:(k+1)*m, j]`` for every block ``k`` and column ``j``:
    unnormalised, Sylvester order. Made for compiled code (the sequence kernels call it
    once per time step); from Python the arguments are checked before dispatch.

    Parameters
    ----------
    a : ndarray (n, B), float32 or float64, C-contiguous and writable; ``n`` a power of
        two; any ``B`` (0, 1, odd, ...). Modified in place.
    m : int
        Block size: a power of two dividing ``n`` (``m = n`` for the full transform).

    Raises
    ------
    TypeError, ShapeError, ValueError, SizeError
        As :func:`fwht_rows_inplace` (from compiled code: ``TypingError`` for the first
        three, ``SizeError`` at run time).

    Notes
    -----
    In compiled code the call is inlined and only calls ``_columns``, which is compiled
    (and cached) once per dtype, so callers do not re-type the transform.
    """
    if not (type(a) is np.ndarray and a.flags.carray and a.ndim == 2
            and a.dtype in _FLOAT_DTYPES and type(m) is int):
        a, m = _check_inplace(a, m, "fwht_columns_inplace", "(n, B)")
    _columns(a, m)


@overload(fwht_rows_inplace, inline="always")
def _fwht_rows_inplace_compiled(a, m):
    _check_compiled_inplace(a, m, "fwht_rows_inplace")

    def impl(a, m):
        _rows_inplace(a, m)

    return impl


@overload(fwht_columns_inplace, inline="always")
def _fwht_columns_inplace_compiled(a, m):
    _check_compiled_inplace(a, m, "fwht_columns_inplace")

    def impl(a, m):
        _columns(a, m)

    return impl


# ---------------------------------------------------------------------------------------
# Public wrapper
# ---------------------------------------------------------------------------------------


def _check_out(out, x):
    """Raise unless ``out`` can receive the transform of ``x``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != x.dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {x.dtype} (the dtype of x)")
    if out.shape != x.shape:
        raise ShapeError(f"out has shape {out.shape}, expected {x.shape} (the shape of x)")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not flags.writeable:
        raise ValueError("out is read-only")


def _same_memory(a, b):
    """Whether C-contiguous ``a`` and ``b`` of equal shape and dtype are the same elements."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


_FAST_DTYPES = (types.float32, types.float64)


def _fast_types_ok(src, dst):
    """Whether ``src`` and ``dst`` are C-contiguous arrays of one float dtype and ``dst`` is
    writable (a constant of their Numba types)."""


@overload(_fast_types_ok)
def _fast_types_ok_typed(src, dst):
    ok = (isinstance(src, types.Array) and isinstance(dst, types.Array)
          and src.dtype in _FAST_DTYPES and dst.dtype == src.dtype and src.layout == "C"
          and dst.layout == "C" and dst.mutable)
    return lambda src, dst: ok


def _rows_if_typed(src, dst, n, m):
    """:func:`_rows` where the types allow it (see :func:`_fast_types_ok`), else True."""


@overload(_rows_if_typed)
def _rows_if_typed_impl(src, dst, n, m):
    if isinstance(src, types.Array) and isinstance(dst, types.Array) and \
            src.dtype in _FAST_DTYPES and dst.dtype == src.dtype and src.layout == dst.layout == "C":
        return lambda src, dst, n, m: _rows(src, dst, n, m)
    return lambda src, dst, n, m: True


def _nonfinite_if_typed(a):
    """:func:`_has_nonfinite` for a C-contiguous float array, else True."""


@overload(_nonfinite_if_typed)
def _nonfinite_if_typed_impl(a):
    if isinstance(a, types.Array) and a.dtype in _FAST_DTYPES and a.layout == "C":
        return lambda a: _has_nonfinite(a)
    return lambda a: True


@numba.njit(cache=True)
def _fwht_fast(src, dst, m):
    """The usual call of :func:`fwht` in one compiled call: 0 when ``dst`` holds the result.

    Returns 1 when ``src`` holds NaN/Inf (``dst`` may have been written unless it is
    ``src``) and 2 for anything the full path must handle or reject (types, layouts,
    shapes, sizes, overlap, a read-only ``dst``); ``m = 0`` means ``m = n``.
    """
    if not _fast_types_ok(src, dst) or src.ndim == 0 or src.shape != dst.shape:
        return 2
    n = src.shape[src.ndim - 1]
    if m == 0:
        m = n
    if n < 1 or n & (n - 1) != 0 or m < 1 or m & (m - 1) != 0 or m > n:
        return 2
    a, b, nbytes = src.ctypes.data, dst.ctypes.data, src.size * src.itemsize
    if a == b:                       # in place: refuse NaN/Inf before writing
        if _nonfinite_if_typed(src):
            return 1
    elif a < b + nbytes and b < a + nbytes:
        return 2                     # partial overlap: the full path copies
    if src.size == 0:
        return 0
    return 1 if _rows_if_typed(src, dst, n, m) and a != b else 0


def fwht(x, block_size=None, out=None):
    """Unnormalised fast Walsh-Hadamard transform along the last axis.

    Same contract as the reference twin :func:`hadamnp.reference.hadamard.fwht` (which has
    no ``out``): same dtypes, results, and errors.

    Parameters
    ----------
    x : array_like (..., n), float32 or float64, ``n`` a power of two. Other dtypes are
        refused, integers included (no silent wrap-around): convert explicitly, e.g.
        ``x.astype(np.float64)``, exact for integers while ``n max|x| < 2**53``.
    block_size : int, optional
        Power of two ``m`` dividing ``n``; blocks of ``m`` consecutive entries are
        transformed independently (Block-HadamRNN). Default ``n``. Bools and floats are
        refused.
    out : ndarray (..., n), optional
        C-contiguous destination with the shape and dtype of ``x``; may be ``x`` itself
        (in place). If an error is raised after validation, ``out`` may have been written.

    Returns
    -------
    y : ndarray (..., n), C-contiguous, same dtype as ``x``: ``y = x @ (I_{n/m} ⊗ S_m)``
        (``S_m`` is symmetric, so each row is ``S_m`` times the row).

    Raises
    ------
    TypeError
        If ``x`` is not float32/float64, ``block_size`` is not an integer (or is a bool), or
        ``out`` is not an array of the dtype of ``x``.
    ShapeError
        If ``x`` is a scalar or ``out`` has another shape.
    SizeError
        If ``n`` or ``block_size`` is not a power of two, or the block exceeds ``n``.
    NonFiniteError
        If ``x`` holds NaN or Inf.

    Notes
    -----
    The usual call (a float32/float64 ndarray, ``out`` None or an ndarray of its dtype)
    is checked and transformed in one compiled call; anything else, including every
    error, takes the full path below, which raises the specific exception.
    """
    if type(x) is np.ndarray and (block_size is None or type(block_size) is int
                                  and block_size > 0):
        m = 0 if block_size is None else block_size
        try:
            if out is None:
                y = np.empty(x.shape, x.dtype)
                if _fwht_fast(x, y, m) == 0:
                    return y
            elif type(out) is np.ndarray and _fwht_fast(x, out, m) == 0:
                return out
        except (NotImplementedError, NumbaError):
            pass                     # a dtype Numba cannot type (float16, object, ...)
    x = check_float(x, "x")
    if x.ndim == 0:
        raise ShapeError("x must have at least one axis (the transform axis), got a scalar")
    n = check_power_of_two(x.shape[-1], "transform length n (last axis of x)")
    m = n if block_size is None else check_block_size(n, check_integer(block_size, "block_size"))
    src = np.ascontiguousarray(x)
    in_place = False
    if out is None:
        out = np.empty_like(src)
    else:
        _check_out(out, x)
        in_place = out is x or np.may_share_memory(src, out)
        if in_place and not _same_memory(src, out):
            src = src.copy()                  # partial overlap: read from a private copy
            in_place = False
    # The kernel takes (rows, n): one compiled specialisation per dtype.
    src2, out2 = (src, out) if src.ndim == 2 else (src.reshape(-1, n), out.reshape(-1, n))
    # Out of place, the first pass checks for NaN/Inf as it copies, so x is read once;
    # in place the check must come first, so that a rejected x is left untouched.
    if in_place and _has_nonfinite(src2):
        check_finite(x, "x")
    if _rows(src2, out2, n, m) and not in_place:
        check_finite(x, "x")
    return out
