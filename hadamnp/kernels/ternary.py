"""Numba sparse-ternary products: a {-1, 0, +1} matrix applied with adds and subtracts only.

Reference twins: :mod:`hadamnp.reference.ternary`, which also defines the shared format
:class:`~hadamnp.reference.ternary.TernaryRows` (per-row index lists of the +1 and of the -1
columns: ``plus_ptr``/``minus_ptr`` int64 (n_out + 1,), ``plus_idx``/``minus_idx`` int32,
``n_in``).

Summation order (what makes float results reproducible bit for bit)
    ``y_i = (sum_{j in plus(i)} x_j) - (sum_{j in minus(i)} x_j)``, each sum left to right
    over its index list from 0, in the dtype of ``x`` for float32/float64 and in int64 for
    integers. No fastmath: LLVM may not reorder the float sums. The batch kernel keeps this
    order for every column and vectorises across the batch instead.

Batch layout
    ``X`` is (n_in, B) and ``Y = M @ X`` is (n_out, B): the column layout of the sequence
    kernels, so every added term is a contiguous row of ``B`` values.
"""

import numba
import numpy as np

from hadamnp._checks import check_block_size, check_finite, check_sign_vector
from hadamnp.errors import ShapeError
from hadamnp.kernels._machine import popcount64
from hadamnp.reference.ternary import TernaryRows, check_column_count

_BAD_PTR = 1
_BAD_IDX = 2


@numba.njit(cache=True, inline="always")
def _check_lists(ptr, idx, n_out, n_in):
    """0 if ``ptr`` rises from 0 to ``len(idx)`` and every index is in [0, n_in); else a code."""
    if ptr.shape[0] != n_out + 1 or ptr[0] != 0 or ptr[n_out] != idx.shape[0]:
        return _BAD_PTR
    for i in range(n_out):
        if ptr[i + 1] < ptr[i]:
            return _BAD_PTR
    if idx.shape[0] == 0:
        return 0
    # min/max reductions vectorise; a per-element range test did not.
    lo = idx[0]
    hi = idx[0]
    for k in range(idx.shape[0]):
        lo = min(lo, idx[k])
        hi = max(hi, idx[k])
    return _BAD_IDX if lo < 0 or hi >= n_in else 0


@numba.njit(cache=True)
def _ternary_matvec(plus_ptr, plus_idx, minus_ptr, minus_idx, x, zero, out):
    """``out[i] = sum(x[plus(i)]) - sum(x[minus(i)])``; x (n_in,), out (n_out,).

    ``zero`` is a 0 of the accumulator dtype. Returns 0, or the code of the list that failed
    :func:`_check_lists` (plus: the code, minus: 2 + the code)."""
    n_out = out.shape[0]
    n_in = x.shape[0]
    status = _check_lists(plus_ptr, plus_idx, n_out, n_in)
    if status:
        return status
    status = _check_lists(minus_ptr, minus_idx, n_out, n_in)
    if status:
        return 2 + status
    for i in range(n_out):
        p = zero
        q = zero
        kp = plus_ptr[i]
        km = minus_ptr[i]
        # The two sums advance together (two independent add chains for the CPU to overlap);
        # each still adds its own terms in list order. Indices were range-checked above, so
        # they are read as unsigned: no negative-index wrap-around test per term.
        both = min(plus_ptr[i + 1] - kp, minus_ptr[i + 1] - km)
        for t in range(both):
            p += x[np.uint32(plus_idx[kp + t])]
            q += x[np.uint32(minus_idx[km + t])]
        for k in range(kp + both, plus_ptr[i + 1]):
            p += x[np.uint32(plus_idx[k])]
        for k in range(km + both, minus_ptr[i + 1]):
            q += x[np.uint32(minus_idx[k])]
        out[i] = p - q
    return 0


@numba.njit(cache=True)
def _ternary_matmul(plus_ptr, plus_idx, minus_ptr, minus_idx, X, out):
    """``out[i, :] = sum(X[plus(i), :]) - sum(X[minus(i), :])``; X (n_in, B), out (n_out, B).

    Each column keeps the order of :func:`_ternary_matvec`; the loops over ``B`` vectorise.
    Returns a status code as :func:`_ternary_matvec`.
    """
    n_out, B = out.shape
    n_in = X.shape[0]
    status = _check_lists(plus_ptr, plus_idx, n_out, n_in)
    if status:
        return status
    status = _check_lists(minus_ptr, minus_idx, n_out, n_in)
    if status:
        return 2 + status
    q = np.empty(B, dtype=out.dtype)
    for i in range(n_out):
        p = out[i]
        p[:] = 0
        for k in range(plus_ptr[i], plus_ptr[i + 1]):
            row = X[plus_idx[k]]
            for b in range(B):
                p[b] += row[b]
        q[:] = 0
        for k in range(minus_ptr[i], minus_ptr[i + 1]):
            row = X[minus_idx[k]]
            for b in range(B):
                q[b] += row[b]
        for b in range(B):
            p[b] -= q[b]
    return 0


@numba.njit(cache=True)
def _dense_to_lists(M, value, ptr, idx):
    """Fill ``ptr`` (n_out + 1,) and ``idx`` with the columns where ``M == value``, by row.

    With ``idx`` of length 0 only counts: returns the number of matches. Two passes (count,
    then fill) keep the output exactly sized.
    """
    n_out, n_in = M.shape
    count = 0
    ptr[0] = 0
    for i in range(n_out):
        for j in range(n_in):
            if M[i, j] == value:
                if idx.shape[0]:
                    idx[count] = j
                count += 1
        ptr[i + 1] = count
    return count


@numba.njit(cache=True)
def _first_non_ternary(M):
    """Flat index of the first entry of ``M`` outside {-1, 0, +1}, or -1."""
    n_out, n_in = M.shape
    for i in range(n_out):
        for j in range(n_in):
            v = M[i, j]
            if v != 0 and v != 1 and v != -1:
                return i * n_in + j
    return -1


@numba.njit(cache=True)
def _block_hadamard_lists(s, m, value, ptr, idx):
    """As :func:`_dense_to_lists` for ``diag(s) (I ⊗ S_m)`` without forming it: entry
    ``(i, m (i // m) + c)`` is ``s_i (-1)^popcount((i % m) & c)``."""
    n = s.shape[0]
    count = 0
    ptr[0] = 0
    for i in range(n):
        start = (i // m) * m
        r = i % m
        for c in range(m):
            entry = s[i] * (1 - 2 * (popcount64(r & c) & 1))
            if entry == value:
                if idx.shape[0]:
                    idx[count] = start + c
                count += 1
        ptr[i + 1] = count
    return count


def _two_pass(fill, args, n_out):
    """Run a count-then-fill list builder; return (ptr int64, idx int32)."""
    ptr = np.empty(n_out + 1, dtype=np.int64)
    count = fill(*args, ptr, np.empty(0, dtype=np.int32))
    idx = np.empty(count, dtype=np.int32)
    fill(*args, ptr, idx)
    return ptr, idx


def ternary_to_rows(M):
    """Convert a dense {-1, 0, +1} matrix to :class:`TernaryRows`.

    Parameters
    ----------
    M : array_like (n_out, n_in), integer or float dtype, values in {-1, 0, +1}

    Returns
    -------
    rows : TernaryRows (indices ascending within each row)

    Raises
    ------
    ValueError
        If an entry is not -1, 0 or +1.
    """
    M = np.asarray(M)
    if M.ndim != 2:
        raise ShapeError(f"M must have shape (n_out, n_in), got shape {M.shape}")
    if M.dtype.kind not in "iuf":
        raise TypeError(f"M must have an integer or float dtype, got {M.dtype}")
    check_finite(M, "M")
    M = np.ascontiguousarray(M.astype(np.float64) if M.dtype.kind == "f" else M.astype(np.int64))
    bad = _first_non_ternary(M)
    if bad >= 0:
        index = np.unravel_index(bad, M.shape)
        count = int(np.count_nonzero((M != -1) & (M != 0) & (M != 1)))
        raise ValueError(
            f"M must hold only -1, 0 and +1; found {count} other value(s), "
            f"first {M[index].item()!r} at index {tuple(int(i) for i in index)}"
        )
    plus = _two_pass(_dense_to_lists, (M, 1), M.shape[0])
    minus = _two_pass(_dense_to_lists, (M, -1), M.shape[0])
    return TernaryRows(*plus, *minus, M.shape[1])


def block_hadamard_rows(s, m):
    """:class:`TernaryRows` of the unnormalised Block-HadamRNN matrix ``diag(s) (I ⊗ S_m)``.

    Parameters
    ----------
    s : array_like (n,), values ±1, ``n`` a power of two
    m : int, block size, a power of two ``<= n``

    Returns
    -------
    rows : TernaryRows with ``n_out = n_in = n`` and ``m`` nonzeros per row. Unnormalised:
        the recurrent matrix is this matrix times ``1/sqrt(m)``, applied by the caller.
    """
    s = check_sign_vector(s)
    n = s.shape[0]
    m = check_block_size(n, m)
    plus = _two_pass(_block_hadamard_lists, (s, m, 1), n)
    minus = _two_pass(_block_hadamard_lists, (s, m, -1), n)
    return TernaryRows(*plus, *minus, n)


def _lists(rows):
    """The four arrays of ``rows`` with the kernel dtypes (light checks; the kernels check
    the pointer structure and index range)."""
    if not isinstance(rows, TernaryRows):
        raise TypeError(f"rows must be a TernaryRows, got {type(rows).__name__}")
    check_column_count(rows.n_in)
    arrays = []
    for name, dtype in (("plus_ptr", np.int64), ("plus_idx", np.int32),
                        ("minus_ptr", np.int64), ("minus_idx", np.int32)):
        a = getattr(rows, name)
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1:
            raise TypeError(f"rows.{name} must be a 1-D {np.dtype(dtype)} ndarray")
        arrays.append(np.ascontiguousarray(a))
    if arrays[0].shape[0] < 2:
        raise ShapeError(
            f"rows.plus_ptr has shape {arrays[0].shape}; expected (n_out + 1,), n_out >= 1"
        )
    return arrays


def _operand(rows, x, ndim, layout):
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ShapeError(f"x must have shape {layout}, got shape {x.shape}")
    if x.shape[0] != rows.n_in:
        raise ShapeError(f"x has {x.shape[0]} rows (shape {x.shape}), expected n_in = {rows.n_in}")
    if x.dtype in (np.float32, np.float64):
        check_finite(x, "x")
        return np.ascontiguousarray(x)
    if x.dtype.kind in "iu" and np.can_cast(x.dtype, np.int64):
        return np.ascontiguousarray(x, dtype=np.int64)
    raise TypeError(
        f"x must be float32, float64 or an integer dtype castable to int64, got {x.dtype}"
    )


def _raise_status(status, rows):
    if status:
        which = "plus" if status <= 2 else "minus"
        if status in (_BAD_PTR, 2 + _BAD_PTR):
            raise ValueError(
                f"rows.{which}_ptr must have n_out + 1 = {rows.plus_ptr.shape[0]} entries rising "
                f"from 0 to len(rows.{which}_idx)"
            )
        raise ValueError(f"rows.{which}_idx holds a column outside [0, n_in = {rows.n_in})")


def ternary_matvec(rows, x):
    """``M @ x`` with adds and subtracts only, in the documented order.

    Parameters
    ----------
    rows : TernaryRows of ``M`` (n_out, n_in)
    x : array_like (n_in,), float32, float64 or integer

    Returns
    -------
    y : ndarray (n_out,), dtype of ``x`` for floats, int64 for integers

    Raises
    ------
    ShapeError
        If ``x`` does not have ``n_in`` entries.
    ValueError
        If the index lists are malformed or point outside ``[0, n_in)``.
    """
    arrays = _lists(rows)
    x = _operand(rows, x, 1, "(n_in,)")
    out = np.empty(arrays[0].shape[0] - 1, dtype=x.dtype)
    _raise_status(_ternary_matvec(*arrays, x, x.dtype.type(0), out), rows)
    return out


def ternary_matmul(rows, X):
    """``M @ X`` for a batch of column vectors, adds and subtracts only.

    Parameters
    ----------
    rows : TernaryRows of ``M`` (n_out, n_in)
    X : array_like (n_in, B), float32, float64 or integer

    Returns
    -------
    Y : ndarray (n_out, B), dtype of ``X`` for floats, int64 for integers
    """
    arrays = _lists(rows)
    X = _operand(rows, X, 2, "(n_in, B)")
    out = np.empty((arrays[0].shape[0] - 1, X.shape[1]), dtype=X.dtype)
    _raise_status(_ternary_matmul(*arrays, X, out), rows)
    return out
