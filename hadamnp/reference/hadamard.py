"""Sylvester Hadamard matrices and the Walsh-Hadamard transform, in plain NumPy.

Reference twins of :mod:`hadamnp.kernels.fwht`. Conventions (:mod:`hadamnp.conventions`):
Sylvester ordering ``S[i, j] = (-1) ** popcount(i & j)``; transforms are unnormalised.
"""

import numpy as np

from hadamnp._checks import (
    check_block_size,
    check_finite,
    check_float,
    check_integer,
    check_power_of_two,
)
from hadamnp.errors import ShapeError


def sylvester(n, dtype=np.float64):
    """Unnormalised Sylvester Hadamard matrix ``S_n``.

    Parameters
    ----------
    n : int, power of two
    dtype : numpy dtype of the result

    Returns
    -------
    S : ndarray (n, n), entries ±1; ``S @ S == n * I`` and ``S == S.T``.
    """
    n = check_power_of_two(n, "Hadamard size n")
    S = np.ones((1, 1), dtype=dtype)
    kernel = np.array([[1, 1], [1, -1]], dtype=dtype)
    while S.shape[0] < n:
        S = np.kron(S, kernel)
    return S


def block_hadamard(n, m, dtype=np.float64):
    """Unnormalised block-diagonal Hadamard matrix ``I_{n/m} ⊗ S_m``.

    Parameters
    ----------
    n : int, power of two (hidden size)
    m : int, power of two dividing ``n`` (block size)

    Returns
    -------
    B : ndarray (n, n), entries in {-1, 0, +1}, density ``m / n``.
    """
    m = check_block_size(n, m)
    return np.kron(np.eye(n // m, dtype=dtype), sylvester(m, dtype))


def fwht(x, block_size=None):
    """Unnormalised Walsh-Hadamard transform along the last axis, block by block.

    Stage ``h = 1, 2, 4, ..., m/2`` replaces every pair ``(x[i], x[i + h])`` (``i`` in the
    first half of its ``2h``-block) by ``(x[i] + x[i + h], x[i] - x[i + h])``.

    Same contract as the kernel twin :func:`hadamnp.kernels.fwht.fwht`: same dtypes,
    results and errors.

    Parameters
    ----------
    x : array_like (..., n), float32 or float64, ``n`` a power of two. Other dtypes are
        refused, integers included (an unsigned or narrow integer transform would wrap
        around silently): convert explicitly, e.g. ``x.astype(np.float64)``, exact for
        integers while ``n max|x| < 2**53``.
    block_size : int, optional
        Power of two ``m`` dividing ``n``; the transform ``S_m`` is applied independently to
        each contiguous block of ``m`` entries. Defaults to ``n`` (the full transform).
        Bools and floats are refused.

    Returns
    -------
    y : ndarray (..., n), same dtype: ``y = x @ (I_{n/m} ⊗ S_m)`` (the matrix is symmetric).

    Raises
    ------
    TypeError
        If ``x`` is not float32/float64 or ``block_size`` is not an integer (or is a bool).
    ShapeError
        If ``x`` is a scalar.
    SizeError
        If ``n`` or ``block_size`` is not a power of two, or the block exceeds ``n``.
    NonFiniteError
        If ``x`` holds NaN or Inf.
    """
    x = check_float(x, "x")
    if x.ndim == 0:
        raise ShapeError("x must have at least one axis (the transform axis), got a scalar")
    n = check_power_of_two(x.shape[-1], "transform length n (last axis of x)")
    m = n if block_size is None else check_block_size(n, check_integer(block_size, "block_size"))
    check_finite(x, "x")
    y = np.array(x, copy=True, order="C")  # C order: the reshapes below must be views
    lead = y.shape[:-1]
    h = 1
    while h < m:
        # View each block as pairs of half-blocks of length h: (..., n/(2h), 2, h).
        v = y.reshape(*lead, n // (2 * h), 2, h)
        a = v[..., 0, :].copy()
        b = v[..., 1, :]
        v[..., 0, :] = a + b
        v[..., 1, :] = a - b
        h *= 2
    return y
