"""Sparse ternary {-1, 0, +1} matrices as per-row index lists, in plain NumPy.

Reference twins of :mod:`hadamnp.kernels.ternary`, and the home of the format both share.

Format (:class:`TernaryRows`, CSR-like, one list for each sign)
    For a matrix ``M`` (n_out, n_in) with entries in {-1, 0, +1}, the columns of the +1
    entries of row ``i`` are ``plus_idx[plus_ptr[i] : plus_ptr[i + 1]]`` and those of its -1
    entries ``minus_idx[minus_ptr[i] : minus_ptr[i + 1]]``, each in increasing order.
    ``*_ptr`` are int64 (n_out + 1,) with ``ptr[0] = 0``; ``*_idx`` are int32.

Products (adds and subtracts only)
    ``y_i = (sum_{j in plus(i)} x_j) - (sum_{j in minus(i)} x_j)``: each sum runs left to
    right over its index list starting from 0, in the dtype of ``x`` (float32, float64), or
    in int64 for integer ``x``; the two sums are then subtracted. Integer results are exact;
    float results equal, bit for bit, any implementation that keeps this order.

Block-HadamRNN
    ``diag(s) (I_{n/m} ⊗ S_m)`` (unnormalised; the recurrence applies ``1/sqrt(m)``):
    row ``i`` has ``m`` nonzeros, in columns ``m * (i // m) + c`` for ``c < m``, with value
    ``s_i (-1)^popcount((i % m) & c)``.
"""

from typing import NamedTuple

import numpy as np

from hadamnp._checks import check_block_size, check_finite, check_integer, check_sign_vector
from hadamnp.errors import ShapeError, SizeError
from hadamnp.reference.hadamard import block_hadamard


class TernaryRows(NamedTuple):
    """A {-1, 0, +1} matrix (n_out, n_in) as per-row index lists of its +1 and -1 columns.

    Attributes
    ----------
    plus_ptr : ndarray (n_out + 1,), int64
    plus_idx : ndarray (nnz_plus,), int32, ascending within each row
    minus_ptr : ndarray (n_out + 1,), int64
    minus_idx : ndarray (nnz_minus,), int32, ascending within each row
    n_in : int, number of columns
    """

    plus_ptr: np.ndarray
    plus_idx: np.ndarray
    minus_ptr: np.ndarray
    minus_idx: np.ndarray
    n_in: int

    @property
    def n_out(self):
        """Number of rows."""
        return self.plus_ptr.shape[0] - 1


def _check_ternary_matrix(M):
    M = np.asarray(M)
    if M.ndim != 2:
        raise ShapeError(f"M must have shape (n_out, n_in), got shape {M.shape}")
    if M.dtype.kind not in "iuf":
        raise TypeError(f"M must have an integer or float dtype, got {M.dtype}")
    check_finite(M, "M")
    bad = (M != -1) & (M != 0) & (M != 1)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"M must hold only -1, 0 and +1; found {int(np.count_nonzero(bad))} other value(s), "
            f"first {M[index].item()!r} at index {index}"
        )
    return M


def _index_lists(mask):
    """(ptr int64 (n_out + 1,), idx int32) of the True entries of ``mask``, row by row."""
    rows, cols = np.nonzero(mask)
    counts = np.bincount(rows, minlength=mask.shape[0])
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ptr, cols.astype(np.int32)


def ternary_to_rows(M):
    """Convert a dense {-1, 0, +1} matrix to :class:`TernaryRows`.

    Parameters
    ----------
    M : array_like (n_out, n_in), integer or float dtype, values in {-1, 0, +1}

    Returns
    -------
    rows : TernaryRows

    Raises
    ------
    ValueError
        If an entry is not -1, 0 or +1 (the message gives the count and the first offender).
    """
    M = _check_ternary_matrix(M)
    plus_ptr, plus_idx = _index_lists(M == 1)
    minus_ptr, minus_idx = _index_lists(M == -1)
    return TernaryRows(plus_ptr, plus_idx, minus_ptr, minus_idx, M.shape[1])


def rows_to_dense(rows, dtype=np.int8):
    """The dense (n_out, n_in) matrix of ``rows`` (for checks and audits)."""
    rows = check_rows(rows)
    M = np.zeros((rows.n_out, rows.n_in), dtype=dtype)
    lists = ((rows.plus_ptr, rows.plus_idx, 1), (rows.minus_ptr, rows.minus_idx, -1))
    for ptr, idx, value in lists:
        row_of = np.repeat(np.arange(rows.n_out), np.diff(ptr))
        M[row_of, idx] = value
    return M


def block_hadamard_rows(s, m):
    """:class:`TernaryRows` of the unnormalised Block-HadamRNN matrix ``diag(s) (I ⊗ S_m)``.

    Parameters
    ----------
    s : array_like (n,), values ±1, ``n`` a power of two
    m : int, block size, a power of two ``<= n``

    Returns
    -------
    rows : TernaryRows with ``n_out = n_in = n`` and ``m`` nonzeros per row; the recurrent
        matrix is this matrix times ``1/sqrt(m)``, which the caller applies.
    """
    s = check_sign_vector(s)
    m = check_block_size(s.shape[0], m)
    return ternary_to_rows(s[:, None] * block_hadamard(s.shape[0], m, dtype=np.int64))


def check_column_count(n_in):
    """Return ``rows.n_in`` as an int; ``TypeError`` unless an integer (bools and floats such
    as ``3.0`` refused), ``SizeError`` if negative."""
    n_in = check_integer(n_in, "rows.n_in")
    if n_in < 0:
        raise SizeError(f"rows.n_in must be >= 0, got {n_in}")
    return n_in


def check_rows(rows):
    """Validate a :class:`TernaryRows` (dtypes, pointer structure, index range); return it."""
    if not isinstance(rows, TernaryRows):
        raise TypeError(f"rows must be a TernaryRows, got {type(rows).__name__}")
    n_in = check_column_count(rows.n_in)
    for ptr_name, idx_name in (("plus_ptr", "plus_idx"), ("minus_ptr", "minus_idx")):
        ptr, idx = getattr(rows, ptr_name), getattr(rows, idx_name)
        if not isinstance(ptr, np.ndarray) or ptr.dtype != np.int64 or ptr.ndim != 1:
            raise TypeError(f"rows.{ptr_name} must be a 1-D int64 ndarray")
        if not isinstance(idx, np.ndarray) or idx.dtype != np.int32 or idx.ndim != 1:
            raise TypeError(f"rows.{idx_name} must be a 1-D int32 ndarray")
        if ptr.shape[0] != rows.plus_ptr.shape[0] or ptr.shape[0] < 2:
            raise ShapeError(
                f"rows.{ptr_name} has shape {ptr.shape}; both pointer arrays must be (n_out + 1,)"
                " with n_out >= 1"
            )
        if ptr[0] != 0 or ptr[-1] != idx.shape[0] or np.any(np.diff(ptr) < 0):
            raise ValueError(
                f"rows.{ptr_name} must rise from 0 to len(rows.{idx_name}) = {idx.shape[0]}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= n_in):
            raise ValueError(f"rows.{idx_name} holds a column outside [0, n_in = {n_in})")
    return rows


def _check_operand(rows, x, ndim, layout):
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ShapeError(f"x must have shape {layout}, got shape {x.shape}")
    if x.shape[0] != rows.n_in:
        raise ShapeError(f"x has {x.shape[0]} rows (shape {x.shape}), expected n_in = {rows.n_in}")
    if x.dtype.kind == "f" and x.dtype in (np.float32, np.float64):
        check_finite(x, "x")
        return x
    if x.dtype.kind in "iu" and np.can_cast(x.dtype, np.int64):
        return x.astype(np.int64)
    raise TypeError(
        f"x must be float32, float64 or an integer dtype castable to int64, got {x.dtype}"
    )


def _sequential_sum(values):
    """Left-to-right sum over axis 0 (``np.cumsum`` is a running, sequential sum)."""
    if values.shape[0] == 0:
        return np.zeros(values.shape[1:], dtype=values.dtype)
    return np.cumsum(values, axis=0)[-1]


def _apply(rows, x):
    out = np.empty((rows.n_out,) + x.shape[1:], dtype=x.dtype)
    for i in range(rows.n_out):
        plus = rows.plus_idx[rows.plus_ptr[i] : rows.plus_ptr[i + 1]]
        minus = rows.minus_idx[rows.minus_ptr[i] : rows.minus_ptr[i + 1]]
        out[i] = _sequential_sum(x[plus]) - _sequential_sum(x[minus])
    return out


def ternary_matvec(rows, x):
    """``M @ x`` with adds and subtracts only, in the documented order.

    Parameters
    ----------
    rows : TernaryRows of ``M`` (n_out, n_in)
    x : array_like (n_in,), float32, float64 or integer

    Returns
    -------
    y : ndarray (n_out,), dtype of ``x`` for floats, int64 for integers
    """
    rows = check_rows(rows)
    return _apply(rows, _check_operand(rows, x, 1, "(n_in,)"))


def ternary_matmul(rows, X):
    """``M @ X`` for a batch of column vectors ``X`` (n_in, B).

    Parameters
    ----------
    rows : TernaryRows of ``M`` (n_out, n_in)
    X : array_like (n_in, B), float32, float64 or integer

    Returns
    -------
    Y : ndarray (n_out, B), dtype of ``X`` for floats, int64 for integers
    """
    rows = check_rows(rows)
    return _apply(rows, _check_operand(rows, X, 2, "(n_in, B)"))
