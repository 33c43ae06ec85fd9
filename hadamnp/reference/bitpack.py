"""Bit packing and XNOR-popcount products in plain NumPy.

Reference twins of :mod:`hadamnp.kernels.bitpack` (same names, shapes, dtypes and errors).

Packing convention (:mod:`hadamnp.conventions`): the last axis is packed into ``uint64``
words, LSB first, bit ``j % 64`` of word ``j // 64`` holding element ``j``; for ±1 values a
set bit means -1, for {0, 1} values a set bit means 1; padding bits are 0.

Products, with ``valid`` masking the padding bits of the last word:

- XNOR: ``W_i · x = n_in - 2 popcount((W_i XOR x) & valid)``.
- Bit-planes (two's complement, plane weights ``c_j = 2^j`` for ``j < k-1`` and
  ``c_{k-1} = -2^(k-1)``): for a {0, 1} plane ``b``, ``W_i · b = popcount(W_i XOR b) -
  popcount(W_i)``, so ``W_i · x = sum_j c_j popcount((W_i XOR b_j) & valid)
  + popcount(W_i & valid)`` because the weights sum to -1.
"""

import numpy as np

from hadamnp._checks import (
    check_finite,
    check_integer,
    check_sign_vector,
    check_unpacked_dtype,
)
from hadamnp.errors import ShapeError, SizeError
from hadamnp.reference.hadamard import sylvester

WORD_BITS = 64
MAX_PLANES = 32

_SHIFTS = np.arange(WORD_BITS, dtype=np.uint64)
_BYTE_COUNTS = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)


def n_words(n):
    """Number of uint64 words holding ``n >= 0`` packed elements: ``ceil(n / 64)``."""
    n = check_integer(n, "n (number of packed elements)")
    if n < 0:
        raise SizeError(f"n (number of packed elements) must be >= 0, got {n}")
    return (n + WORD_BITS - 1) // WORD_BITS


def popcount(words):
    """Set bits of each uint64 word: int64 array of the same shape (byte lookup table)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    per_byte = _BYTE_COUNTS[words.view(np.uint8)]
    return per_byte.reshape(words.shape + (8,)).sum(axis=-1)


def valid_mask(n):
    """The ``ceil(n / 64)`` words whose set bits are exactly the positions ``0 ... n-1``."""
    bits = np.zeros(n_words(n) * WORD_BITS, dtype=bool)
    bits[:n] = True
    return _pack_bool(bits)


def _pack_bool(bits):
    """Pack a boolean array (..., n) along its last axis (set bit = True)."""
    n = bits.shape[-1]
    nw = n_words(n)
    padded = np.zeros(bits.shape[:-1] + (nw * WORD_BITS,), dtype=np.uint64)
    padded[..., :n] = bits
    words = padded.reshape(bits.shape[:-1] + (nw, WORD_BITS)) << _SHIFTS
    return np.bitwise_or.reduce(words, axis=-1)


def _unpack_bool(packed, n):
    """Bits (..., n) of ``packed`` (..., ceil(n / 64)); raise if a padding bit is set."""
    bits = ((packed[..., None] >> _SHIFTS) & np.uint64(1)).astype(bool)
    bits = bits.reshape(packed.shape[:-1] + (packed.shape[-1] * WORD_BITS,))
    padding = bits[..., n:].any(axis=-1)
    if np.any(padding):
        index = np.argwhere(np.atleast_1d(padding))[0] if packed.ndim > 1 else []
        raise ValueError(
            f"packed row {tuple(int(i) for i in index)} has nonzero padding bits beyond "
            f"element {n} (the packing convention requires zero padding)"
        )
    return bits[..., :n]


def _as_values(x, name, allow_bool):
    """``x`` as an array with a packable dtype (bool only for {0, 1})."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise ShapeError(f"{name} must have at least one axis (the packed axis), got a scalar")
    if x.shape[-1] == 0:
        raise ShapeError(f"{name} has an empty last axis (shape {x.shape}); nothing to pack")
    if x.dtype == np.bool_ and allow_bool:
        return x
    if x.dtype.kind in "iu":
        if not np.can_cast(x.dtype, np.int64):
            raise TypeError(f"{name} has dtype {x.dtype}, which does not convert exactly to int64")
        return x
    if x.dtype.kind == "f":
        check_finite(x, name)
        return x
    allowed = "bool, integer or float" if allow_bool else "integer or float"
    raise TypeError(f"{name} must have a {allowed} dtype, got {x.dtype}")


def _check_pair(x, low, name):
    """Raise ValueError unless every value of ``x`` is ``low`` or 1."""
    bad = (x != low) & (x != 1)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold only {low} and {'+1' if low == -1 else '1'}; found "
            f"{int(np.count_nonzero(bad))} other value(s), first {x[index].item()!r} "
            f"at index {index}"
        )


def pack_signs(x):
    """Pack ±1 values along the last axis: uint64 (..., ceil(n / 64)), set bit = -1.

    Parameters
    ----------
    x : array_like (..., n), n >= 1, integer or float dtype, values ±1

    Returns
    -------
    packed : ndarray (..., ceil(n / 64)), uint64
    """
    x = _as_values(x, "x", allow_bool=False)
    _check_pair(x, -1, "x")
    return _pack_bool(x == -1)


def pack_bits(x):
    """Pack {0, 1} values along the last axis: uint64 (..., ceil(n / 64)), set bit = 1.

    Parameters
    ----------
    x : array_like (..., n), n >= 1, bool, integer or float dtype, values 0 or 1

    Returns
    -------
    packed : ndarray (..., ceil(n / 64)), uint64
    """
    x = _as_values(x, "x", allow_bool=True)
    if x.dtype != np.bool_:
        _check_pair(x, 0, "x")
    return _pack_bool(x == 1)


def _check_unpack(packed, n, dtype, signs):
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint64:
        got = packed.dtype if isinstance(packed, np.ndarray) else type(packed).__name__
        raise TypeError(f"packed must be a uint64 ndarray of packed words, got {got}")
    if packed.ndim == 0:
        raise ShapeError("packed must have at least one axis (the word axis), got a scalar")
    n = check_integer(n, "n (number of packed elements)")
    check_unpacked_dtype(dtype, signs)
    if n < 1:
        raise SizeError(f"n (number of packed elements) must be >= 1, got {n}")
    if packed.shape[-1] != n_words(n):
        raise ShapeError(
            f"packed has {packed.shape[-1]} words on its last axis (shape {packed.shape}), "
            f"expected ceil({n} / 64) = {n_words(n)}"
        )
    return packed, n


def unpack_signs(packed, n, dtype=np.int8):
    """Inverse of :func:`pack_signs`: ndarray (..., n) of ±1 in ``dtype``.

    ``n`` must be an integer (bools and floats are refused) and ``dtype`` able to hold -1
    (signed integer, float or complex). Raises TypeError for those, SizeError if ``n < 1``,
    ShapeError if the word count does not match ``n`` and ValueError if a padding bit is set.
    """
    packed, n = _check_unpack(packed, n, dtype, signs=True)
    return np.where(_unpack_bool(packed, n), -1, 1).astype(dtype)


def unpack_bits(packed, n, dtype=np.uint8):
    """Inverse of :func:`pack_bits`: ndarray (..., n) of 0/1 in ``dtype`` (bool, integer or
    float); same checks as :func:`unpack_signs`."""
    packed, n = _check_unpack(packed, n, dtype, signs=False)
    return _unpack_bool(packed, n).astype(dtype)


def _check_planes_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k (bits per activation) must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= MAX_PLANES:
        raise SizeError(f"k (bits per activation) must be in [1, {MAX_PLANES}], got {k}")
    return k


def plane_weights(k):
    """Two's complement plane weights ``(1, 2, ..., 2^(k-2), -2^(k-1))`` as int64 (k,)."""
    k = _check_planes_k(k)
    weights = 2 ** np.arange(k, dtype=np.int64)
    weights[-1] = -weights[-1]
    return weights


def pack_bitplanes(x, k):
    """Two's complement bit-planes of k-bit signed integers: uint64 (..., k, ceil(n / 64)).

    Parameters
    ----------
    x : array_like (..., n), integer dtype, values in ``[-2^(k-1), 2^(k-1) - 1]``
    k : int in [1, 32]

    Returns
    -------
    planes : ndarray (..., k, ceil(n / 64)), uint64; plane ``j`` packs bit ``j`` of each code.
    """
    k = _check_planes_k(k)
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"x must have an integer dtype for bit-planes, got {x.dtype}")
    x = _as_values(x, "x", allow_bool=False).astype(np.int64)
    lo, hi = -(1 << (k - 1)), (1 << (k - 1)) - 1
    bad = (x < lo) | (x > hi)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"x must fit in k={k} signed bits, i.e. lie in [{lo}, {hi}]; found "
            f"{int(np.count_nonzero(bad))} value(s) outside, first {int(x[index])} at index {index}"
        )
    # An arithmetic shift of the int64 value exposes its two's complement bits.
    planes = [((x >> j) & 1).astype(bool) for j in range(k)]
    return _pack_bool(np.stack(planes, axis=-2))


def hadamard_packed(s):
    """Packed rows of the unnormalised binary HadamRNN matrix ``diag(s) S_n``.

    ``M[i, j] = s_i (-1)^popcount(i & j)``; the caller applies ``1/sqrt(n)``.

    Parameters
    ----------
    s : array_like (n,), values ±1, ``n`` a power of two

    Returns
    -------
    M_packed : ndarray (n, ceil(n / 64)), uint64
    """
    s = check_sign_vector(s)
    S = sylvester(s.shape[0], dtype=np.int64)
    return pack_signs(s[:, None] * S)


def _check_product(W_packed, n_in, x, x_name, x_ndim):
    for a, name in ((W_packed, "W_packed"), (x, x_name)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint64:
            raise TypeError(f"{name} must be a uint64 ndarray of packed words")
    if W_packed.ndim != 2:
        raise ShapeError(f"W_packed must have 2 axes, got shape {W_packed.shape}")
    if x.ndim != x_ndim:
        raise ShapeError(f"{x_name} must have {x_ndim} axes, got shape {x.shape}")
    if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)):
        raise TypeError(f"n_in must be an integer, got {n_in!r}")
    n_in = int(n_in)
    if n_in < 1:
        raise SizeError(f"n_in must be >= 1, got {n_in}")
    nw = n_words(n_in)
    if W_packed.shape[1] != nw or W_packed.shape[0] < 1:
        raise ShapeError(
            f"W_packed has shape {W_packed.shape}; expected (n_out >= 1, ceil({n_in} / 64) = {nw})"
        )
    if x.shape[-1] != nw:
        raise ShapeError(
            f"{x_name} has {x.shape[-1]} words on its last axis (shape {x.shape}), "
            f"expected ceil({n_in} / 64) = {nw}"
        )
    return n_in


def _check_out(out, result):
    """Copy ``result`` into ``out`` when given (same contract as the kernels)."""
    if out is None:
        return result
    if not isinstance(out, np.ndarray) or out.dtype != result.dtype:
        raise TypeError(f"out must be a {result.dtype} ndarray")
    if out.shape != result.shape:
        raise ShapeError(f"out has shape {out.shape}, expected {result.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous, got strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if not out.flags.aligned:
        raise ValueError(f"out is not aligned to its {out.itemsize}-byte elements")
    out[...] = result
    return out


def _xnor_counts(W_packed, X_packed, n_in):
    """``popcount((W_i XOR X_b) & valid)`` for every row pair: int64 (n_out, B)."""
    xor = (W_packed[:, None, :] ^ X_packed[None, :, :]) & valid_mask(n_in)
    return popcount(xor).sum(axis=-1)


def xnor_matvec(W_packed, x_packed, n_in, out=None):
    """``W_pm1 @ x_pm1`` as int32 (n_out,): ``n_in - 2 popcount((W_i XOR x) & valid)``."""
    n_in = _check_product(W_packed, n_in, x_packed, "x_packed", 1)
    counts = _xnor_counts(W_packed, x_packed[None, :], n_in)[:, 0]
    return _check_out(out, (n_in - 2 * counts).astype(np.int32))


def xnor_matmul(W_packed, X_packed, n_in, out=None):
    """``W_pm1 @ X_pm1.T`` as int32 (n_out, B); ``X_packed`` is (B, ceil(n_in / 64))."""
    n_in = _check_product(W_packed, n_in, X_packed, "X_packed", 2)
    return _check_out(out, (n_in - 2 * _xnor_counts(W_packed, X_packed, n_in)).astype(np.int32))


def _bitplane_product(W_packed, planes, n_in):
    """int64 (n_out, B) from planes (B, k, nw): the formula of the module docstring."""
    weights = plane_weights(planes.shape[1])
    total = popcount(W_packed & valid_mask(n_in)).sum(axis=-1)[:, None]
    for j in range(planes.shape[1]):
        total = total + weights[j] * _xnor_counts(W_packed, planes[:, j, :], n_in)
    return total


def bitplane_matvec(W_packed, planes, n_in, out=None):
    """``W_pm1.astype(int64) @ x`` (n_out,) int64 from the (k, nw) bit-planes of ``x``."""
    n_in = _check_product(W_packed, n_in, planes, "planes", 2)
    _check_planes_k(planes.shape[0])
    return _check_out(out, _bitplane_product(W_packed, planes[None], n_in)[:, 0])


def bitplane_matmul(W_packed, planes, n_in, out=None):
    """``W_pm1.astype(int64) @ X.T`` (n_out, B) int64 from the (B, k, nw) bit-planes of X."""
    n_in = _check_product(W_packed, n_in, planes, "planes", 3)
    _check_planes_k(planes.shape[1])
    return _check_out(out, _bitplane_product(W_packed, planes, n_in))
