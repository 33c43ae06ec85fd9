"""Numba bit packing and XNOR-popcount products for binary (±1) matrices.

Reference twins: :mod:`hadamnp.reference.bitpack` (same names, same shape contracts).

Bit packing (:mod:`hadamnp.conventions`)
    The last axis is packed into ``uint64`` words, LSB first: bit ``j % 64`` of word
    ``j // 64`` holds element ``j``. For ±1 values a set bit means -1; for {0, 1} values a set
    bit means 1. Padding bits (beyond ``n``) are written as 0.

Products
    With ``a``, ``b`` the packed rows of two ±1 vectors of length ``n``,
    ``a · b = n - 2 popcount(a XOR b)``. The product kernels *mask* the padding bits, so
    their results do not depend on what the padding holds.

    ``xnor_matvec``      ``W (n_out, n_in)`` ±1 times one ±1 vector     -> int32 ``(n_out,)``
    ``xnor_matmul``      ``W`` times ``B`` ±1 vectors, rows ``(B, nw)``  -> int32 ``(n_out, B)``
    ``bitplane_matvec``  ``W`` times one k-bit signed integer vector    -> int64 ``(n_out,)``
    ``bitplane_matmul``  ``W`` times ``B`` k-bit integer vectors         -> int64 ``(n_out, B)``

    Batched results are ``(n_out, B)`` (``W @ X.T``): the column layout ``(n, B)`` of the
    sequence kernels, while the packed operand keeps one activation vector per row so that
    every vector is a contiguous run of words.

Bit-planes (two's complement)
    A k-bit signed integer ``x`` in ``[-2^(k-1), 2^(k-1) - 1]`` is
    ``x = -2^(k-1) b_{k-1} + sum_{j<k-1} 2^j b_j`` with ``b_j`` bit ``j`` of its two's
    complement code. Plane ``j`` packs ``b_j`` over the vector as a {0, 1} vector. For a ±1
    row ``w`` and a {0, 1} vector ``b``: ``w · b = popcount(w XOR b) - popcount(w)``, hence
    ``w · x = sum_j c_j popcount(w XOR b_j) + popcount(w)`` with plane weights ``c_j = 2^j``
    and ``c_{k-1} = -2^(k-1)`` (they sum to -1, which turns ``-popcount(w) sum_j c_j`` into
    ``+popcount(w)``).

Implementation notes
    One scalar popcount helper, :func:`popcount64`, lowers to LLVM ``ctpop`` (a single
    ``popcnt``). The product kernels work on explicit 8-lane ``uint64`` vectors (LLVM
    ``<8 x i64>``, a private Numba type); the helper and the vector type live with their
    audit notes in :mod:`hadamnp.kernels._machine`. LLVM's auto-vectoriser on AVX-512 machines
    prefers 256-bit registers, and the 512-bit ``vpopcntq`` halves the work of the
    popcount-bound inner loops. On machines without AVX-512 LLVM splits the same vectors
    into narrower ones; results are identical. The ``matvec`` kernels vectorise over the
    words of a row and reduce eight rows at once with a transpose-add tree; the ``matmul``
    kernels vectorise over the batch (tiles of 4 rows x 16 columns, eight accumulators in
    registers), so they never reduce across lanes.
"""

import numba
import numpy as np

from hadamnp._checks import (
    check_finite,
    check_integer,
    check_sign_vector,
    check_unpacked_dtype,
)
from hadamnp.errors import ShapeError, SizeError
from hadamnp.kernels._machine import (
    popcount64,
    v_broadcast,
    v_lane,
    v_load,
    v_scale_add,
    v_splat,
    v_store,
    v_sum8,
    v_xor_popcount_add,
)

WORD_BITS = 64
MAX_PLANES = 32

# XNOR products are the bit-plane formula with one plane of weight -2 (a.b = n - 2 popcount).
_XNOR_WEIGHTS = np.array([-2], dtype=np.int64)


# ---------------------------------------------------------------------------------------
# packing kernels
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _pack_rows(x, set_value, other_value, out):
    """Pack each row of ``x`` (R, n) into ``out`` (R, nw) uint64: bit set where
    ``x == set_value``. Returns the flat index of the first value that is neither
    ``set_value`` nor ``other_value``, or -1. (Branch-free loops, so LLVM vectorises them.)
    """
    R, n = x.shape
    nw = out.shape[1]
    for r in range(R):
        bad = False
        for w in range(nw):
            lo = w * 64
            word = np.uint64(0)
            for j in range(lo, min(lo + 64, n)):
                v = x[r, j]
                bit = v == set_value
                bad |= not (bit or v == other_value)
                word |= np.uint64(bit) << np.uint64(j - lo)
            out[r, w] = word
        if bad:
            for j in range(n):
                if x[r, j] != set_value and x[r, j] != other_value:
                    return r * n + j
    return -1


@numba.njit(cache=True)
def _unpack_rows(packed, n, minus_one, out):
    """Unpack ``packed`` (R, nw) into ``out`` (R, n) int8; return the first row with nonzero
    padding bits, or -1."""
    R, nw = packed.shape
    tail = n - (nw - 1) * 64
    for r in range(R):
        if tail < 64 and (packed[r, nw - 1] >> np.uint64(tail)) != 0:
            return r
        for j in range(n):
            bit = (packed[r, j // 64] >> np.uint64(j % 64)) & np.uint64(1)
            if minus_one:
                out[r, j] = 1 - 2 * np.int8(bit)
            else:
                out[r, j] = np.int8(bit)
    return -1


@numba.njit(cache=True)
def _pack_planes(x, k, out):
    """Pack the k two's complement bit-planes of each row of int64 ``x`` (R, n) into
    ``out`` (R, k, nw); return the flat index of the first value outside k bits, or -1."""
    R, n = x.shape
    nw = out.shape[2]
    lo_val = -(1 << (k - 1))
    hi_val = (1 << (k - 1)) - 1
    for r in range(R):
        bad = False
        for i in range(n):
            bad |= (x[r, i] < lo_val) | (x[r, i] > hi_val)
        if bad:
            for i in range(n):
                if x[r, i] < lo_val or x[r, i] > hi_val:
                    return r * n + i
        for w in range(nw):
            lo = w * 64
            for j in range(k):
                word = np.uint64(0)
                for i in range(lo, min(lo + 64, n)):
                    # int64 -> uint64 keeps the two's complement bits; bits 0..k-1 are the code.
                    bit = (np.uint64(x[r, i]) >> np.uint64(j)) & np.uint64(1)
                    word |= bit << np.uint64(i - lo)
                out[r, j, w] = word
    return -1


@numba.njit(cache=True)
def _hadamard_rows(s, out):
    """Packed rows of ``diag(s) S_n``: bit j of row i is ``parity(i & j) XOR (s_i == -1)``."""
    n = s.shape[0]
    nw = out.shape[1]
    for i in range(n):
        flip = np.uint64(1) if s[i] == -1 else np.uint64(0)
        for w in range(nw):
            word = np.uint64(0)
            for j in range(w * 64, min(w * 64 + 64, n)):
                bit = (np.uint64(popcount64(i & j)) & np.uint64(1)) ^ flip
                word |= bit << np.uint64(j - w * 64)
            out[i, w] = word
    return out


# ---------------------------------------------------------------------------------------
# product kernels
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _padding_mask(n_in, nw):
    """(tail, mask): valid bits in the last word, and the mask keeping them."""
    tail = n_in - (nw - 1) * 64
    if tail == 64:
        return tail, ~np.uint64(0)
    return tail, (np.uint64(1) << np.uint64(tail)) - np.uint64(1)


@numba.njit(cache=True, inline="always")
def _row_rest(W, i, Pf, first, weights, n_in):
    """Scalar part of row ``i`` of a rows product (:func:`_rows_finish`) from word ``first`` on.

    ``Pf`` is the flattened (k * nw,) second operand. Returns
    ``sum_j weights[j] * popcount((W[i, w] XOR P[j, w]) & valid)`` over words ``w >= first``.
    """
    nw = W.shape[1]
    _, mask = _padding_mask(n_in, nw)
    total = 0
    for j in range(weights.shape[0]):
        raw = 0
        for w in range(first, nw - 1):
            raw += popcount64(W[i, w] ^ Pf[j * nw + w])
        if first < nw:
            raw += popcount64((W[i, nw - 1] ^ Pf[j * nw + nw - 1]) & mask)
        total += weights[j] * raw
    return total


@numba.njit(cache=True, inline="always")
def _group_sum8(Wf, row, nw, Pf, start, chunk_end):
    """Lane ``r``: ``sum_w popcount(W[row/nw + r, w] XOR P[w])`` over words ``w < chunk_end``.

    ``Wf`` is the flattened W and ``row`` the flat index of the first of 8 rows; ``Pf[start:]``
    is the other operand. One vector accumulator per row, then one transpose-add.
    """
    a0 = v_splat(0)
    a1 = a0
    a2 = a0
    a3 = a0
    a4 = a0
    a5 = a0
    a6 = a0
    a7 = a0
    for c in range(0, chunk_end, 8):
        x = v_load(Pf, start + c)
        a0 = v_xor_popcount_add(a0, v_load(Wf, row + c), x)
        a1 = v_xor_popcount_add(a1, v_load(Wf, row + nw + c), x)
        a2 = v_xor_popcount_add(a2, v_load(Wf, row + 2 * nw + c), x)
        a3 = v_xor_popcount_add(a3, v_load(Wf, row + 3 * nw + c), x)
        a4 = v_xor_popcount_add(a4, v_load(Wf, row + 4 * nw + c), x)
        a5 = v_xor_popcount_add(a5, v_load(Wf, row + 5 * nw + c), x)
        a6 = v_xor_popcount_add(a6, v_load(Wf, row + 6 * nw + c), x)
        a7 = v_xor_popcount_add(a7, v_load(Wf, row + 7 * nw + c), x)
    return v_sum8(a0, a1, a2, a3, a4, a5, a6, a7)


@numba.njit(cache=True, inline="always")
def _rows_finish(W, Pf, weights, n_in, base, out):
    """Scalar part of :func:`_xnor_rows` / :func:`_bitplane_rows` after the vector pass.

    Target: ``out[i] = base + sum_j weights[j] popcount((W[i] XOR P[j]) & valid)``. Rows in
    groups of 8 got the words ``w < chunk_end`` from the vector pass (the last of them
    unmasked); here they get the remaining words and the padding mask. The last
    ``n_out % 8`` rows are computed here entirely.
    """
    n_out, nw = W.shape
    k = weights.shape[0]
    chunk_end = nw - nw % 8
    tail, _ = _padding_mask(n_in, nw)
    n_group = n_out - n_out % 8
    if chunk_end < nw or tail < 64:
        for r in range(n_group):
            first = chunk_end
            if tail < 64 and chunk_end == nw:
                # The vector pass counted the last word without its padding mask.
                first = nw - 1
                for j in range(k):
                    out[r] -= weights[j] * popcount64(W[r, nw - 1] ^ Pf[j * nw + nw - 1])
            out[r] += _row_rest(W, r, Pf, first, weights, n_in)
    for r in range(n_group, n_out):
        out[r] = base + _row_rest(W, r, Pf, 0, weights, n_in)
    return out


@numba.njit(cache=True)
def _xnor_rows(W, x, n_in, out):
    """``out[i] = n_in - 2 popcount((W[i] XOR x) & valid)``: W (n_out, nw) uint64,
    x (nw,) uint64, out (n_out,) int32. Eight rows per vector pass (:func:`_group_sum8`)."""
    n_out, nw = W.shape
    Wf = W.reshape(W.size)
    chunk_end = nw - nw % 8
    for i in range(0, n_out - n_out % 8, 8):
        s = _group_sum8(Wf, i * nw, nw, x, 0, chunk_end)
        v_store(out, i, v_scale_add(v_splat(n_in), s, -2))
    return _rows_finish(W, x, _XNOR_WEIGHTS, n_in, n_in, out)


@numba.njit(cache=True)
def _bitplane_rows(W, planes, n_in, out):
    """``out[i] = sum_j c_j popcount((W[i] XOR b_j) & valid) + popcount(W[i] & valid)``.

    W (n_out, nw) uint64; planes (k, nw) uint64; out (n_out,) int64; ``c_j`` the two's
    complement plane weights. The ``popcount(W[i])`` term is one more plane, all zeros, of
    weight 1 (``W XOR 0 = W``), so the vector pass computes it too. One pass per plane,
    accumulated in ``out``.
    """
    n_out, nw = W.shape
    k = planes.shape[0]
    P = np.zeros((k + 1, nw), dtype=np.uint64)
    P[:k] = planes
    weights = np.empty(k + 1, dtype=np.int64)
    for j in range(k):
        weights[j] = 1 << j
    weights[k - 1] = -weights[k - 1]
    weights[k] = 1
    Wf = W.reshape(W.size)
    Pf = P.reshape(P.size)
    chunk_end = nw - nw % 8
    for j in range(k + 1):
        for i in range(0, n_out - n_out % 8, 8):
            s = _group_sum8(Wf, i * nw, nw, Pf, j * nw, chunk_end)
            acc = v_splat(0) if j == 0 else v_load(out, i)
            v_store(out, i, v_scale_add(acc, s, weights[j]))
    return _rows_finish(W, Pf, weights, n_in, 0, out)


@numba.njit(cache=True, inline="always")
def _row_offsets(W, n_in, xnor):
    """Per-row constants of :func:`_lanes_product` (module docstring, padding included).

    The batch operand is copied with zero padding, so raw popcounts include the padding bits
    of ``W``, ``pad_i = popcount(W[i, -1] & ~valid)``. XNOR (weight -2): ``n_in + 2 pad_i``.
    Bit-planes (weights sum to -1): ``popcount(W_i & valid) + pad_i = popcount(W_i)``.
    """
    n_out, nw = W.shape
    _, mask = _padding_mask(n_in, nw)
    offsets = np.empty(n_out, dtype=np.int64)
    for i in range(n_out):
        if xnor:
            offsets[i] = n_in + 2 * popcount64(W[i, nw - 1] & ~mask)
        else:
            total = 0
            for w in range(nw):
                total += popcount64(W[i, w])
            offsets[i] = total
    return offsets


_LANES = 16  # batch columns per tile: two 8-lane vectors


@numba.njit(cache=True, inline="always")
def _lane_tiles(planes, n_in):
    """Regroup ``planes`` (B, k, nw) as (B_pad / 16, k, nw, 16) with zero padding.

    Tile ``t`` holds batch columns ``16 t ... 16 t + 15``; entry ``[t, j, w, l]`` is word ``w``
    of plane ``j`` of column ``16 t + l``, so the 16 columns of one word are contiguous.
    Padding bits and padding columns are zero.
    """
    B, k, nw = planes.shape
    n_tiles = (B + _LANES - 1) // _LANES
    T = np.zeros((n_tiles, k, nw, _LANES), dtype=np.uint64)
    _, mask = _padding_mask(n_in, nw)
    for b in range(B):
        t = b // _LANES
        lane = b % _LANES
        for j in range(k):
            for w in range(nw):
                T[t, j, w, lane] = planes[b, j, w]
            T[t, j, nw - 1, lane] &= mask
    return T


@numba.njit(cache=True, inline="always")
def _store_tile_row(out_row, b0, B, v):
    """Store the 8 lanes of ``v`` at columns ``b0 ...`` of ``out_row``, clipped at ``B``."""
    if b0 + 8 <= B:
        v_store(out_row, b0, v)
    else:
        for lane in range(B - b0):
            out_row[b0 + lane] = v_lane(v, lane)


@numba.njit(cache=True)
def _lanes_product(W, planes, weights, n_in, xnor, out):
    """``out[i, b] = offset_i + sum_j weights[j] * popcount(W[i] XOR planes[b, j])``.

    W (n_out, nw) uint64; planes (B, k, nw) uint64; weights (k,) int64;
    out (n_out, B) int32 or int64; offsets from :func:`_row_offsets`. Vectorised over the
    batch: a tile of 4 rows x 16 columns keeps eight vector accumulators in registers while
    the words stream by, so no lane reduction is needed. Rows left over (n_out % 4) use a
    one-row version of the same loop.
    """
    n_out, nw = W.shape
    B = planes.shape[0]
    k = planes.shape[1]
    T = _lane_tiles(planes, n_in)
    Tf = T.reshape(T.size)
    Wf = W.reshape(W.size)
    offsets = _row_offsets(W, n_in, xnor)
    n_group = n_out - n_out % 4
    for i in range(0, n_group, 4):
        row = i * nw
        for t in range(T.shape[0]):
            b0 = t * _LANES
            s00 = v_splat(offsets[i])
            s01 = s00
            s10 = v_splat(offsets[i + 1])
            s11 = s10
            s20 = v_splat(offsets[i + 2])
            s21 = s20
            s30 = v_splat(offsets[i + 3])
            s31 = s30
            for j in range(k):
                a00 = v_splat(0)
                a01 = a00
                a10 = a00
                a11 = a00
                a20 = a00
                a21 = a00
                a30 = a00
                a31 = a00
                tile = (t * k + j) * nw * _LANES
                for w in range(nw):
                    x0 = v_load(Tf, tile + w * _LANES)
                    x1 = v_load(Tf, tile + w * _LANES + 8)
                    w0 = v_broadcast(Wf, row + w)
                    w1 = v_broadcast(Wf, row + nw + w)
                    w2 = v_broadcast(Wf, row + 2 * nw + w)
                    w3 = v_broadcast(Wf, row + 3 * nw + w)
                    a00 = v_xor_popcount_add(a00, w0, x0)
                    a01 = v_xor_popcount_add(a01, w0, x1)
                    a10 = v_xor_popcount_add(a10, w1, x0)
                    a11 = v_xor_popcount_add(a11, w1, x1)
                    a20 = v_xor_popcount_add(a20, w2, x0)
                    a21 = v_xor_popcount_add(a21, w2, x1)
                    a30 = v_xor_popcount_add(a30, w3, x0)
                    a31 = v_xor_popcount_add(a31, w3, x1)
                c = weights[j]
                s00 = v_scale_add(s00, a00, c)
                s01 = v_scale_add(s01, a01, c)
                s10 = v_scale_add(s10, a10, c)
                s11 = v_scale_add(s11, a11, c)
                s20 = v_scale_add(s20, a20, c)
                s21 = v_scale_add(s21, a21, c)
                s30 = v_scale_add(s30, a30, c)
                s31 = v_scale_add(s31, a31, c)
            _store_tile_row(out[i], b0, B, s00)
            _store_tile_row(out[i], b0 + 8, B, s01)
            _store_tile_row(out[i + 1], b0, B, s10)
            _store_tile_row(out[i + 1], b0 + 8, B, s11)
            _store_tile_row(out[i + 2], b0, B, s20)
            _store_tile_row(out[i + 2], b0 + 8, B, s21)
            _store_tile_row(out[i + 3], b0, B, s30)
            _store_tile_row(out[i + 3], b0 + 8, B, s31)
    for i in range(n_group, n_out):
        row = i * nw
        for t in range(T.shape[0]):
            b0 = t * _LANES
            s0 = v_splat(offsets[i])
            s1 = s0
            for j in range(k):
                a0 = v_splat(0)
                a1 = a0
                tile = (t * k + j) * nw * _LANES
                for w in range(nw):
                    wi = v_broadcast(Wf, row + w)
                    a0 = v_xor_popcount_add(a0, wi, v_load(Tf, tile + w * _LANES))
                    a1 = v_xor_popcount_add(a1, wi, v_load(Tf, tile + w * _LANES + 8))
                s0 = v_scale_add(s0, a0, weights[j])
                s1 = v_scale_add(s1, a1, weights[j])
            _store_tile_row(out[i], b0, B, s0)
            _store_tile_row(out[i], b0 + 8, B, s1)
    return out


# ---------------------------------------------------------------------------------------
# public wrappers
# ---------------------------------------------------------------------------------------


def n_words(n):
    """Number of uint64 words holding ``n`` packed elements: ``ceil(n / 64)``.

    ``n`` must be an integer ``>= 0`` (``TypeError`` for bools and floats, ``SizeError`` if
    negative).
    """
    n = check_integer(n, "n (number of packed elements)")
    if n < 0:
        raise SizeError(f"n (number of packed elements) must be >= 0, got {n}")
    return (n + WORD_BITS - 1) // WORD_BITS


def _as_values(x, name, allow_bool):
    """``x`` as int64 or float64 (exact casts) for the packing kernels."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise ShapeError(f"{name} must have at least one axis (the packed axis), got a scalar")
    if x.shape[-1] == 0:
        raise ShapeError(f"{name} has an empty last axis (shape {x.shape}); nothing to pack")
    if x.dtype == np.bool_ and allow_bool:
        return x.astype(np.int64)
    if x.dtype.kind in "iu":
        if not np.can_cast(x.dtype, np.int64):
            raise TypeError(f"{name} has dtype {x.dtype}, which does not convert exactly to int64")
        return x.astype(np.int64, copy=False)
    if x.dtype.kind == "f":
        check_finite(x, name)
        return x.astype(np.float64, copy=False)
    allowed = "bool, integer or float" if allow_bool else "integer or float"
    raise TypeError(f"{name} must have a {allowed} dtype, got {x.dtype}")


def _pack(x, minus_one, name):
    allowed = "-1 and +1" if minus_one else "0 and 1"
    x = _as_values(x, name, allow_bool=not minus_one)
    n = x.shape[-1]
    rows = np.ascontiguousarray(x.reshape(-1, n))
    out = np.empty((rows.shape[0], n_words(n)), dtype=np.uint64)
    set_value, other_value = (-1, 1) if minus_one else (1, 0)
    bad = _pack_rows(rows, rows.dtype.type(set_value), rows.dtype.type(other_value), out)
    if bad >= 0:
        index = np.unravel_index(bad, x.shape)
        count = int(np.count_nonzero((x != (-1 if minus_one else 0)) & (x != 1)))
        raise ValueError(
            f"{name} must hold only {allowed}; found {count} other value(s), "
            f"first {x[index].item()!r} at index {tuple(int(i) for i in index)}"
        )
    return out.reshape(x.shape[:-1] + (out.shape[1],))


def pack_signs(x):
    """Pack ±1 values along the last axis (set bit = -1, LSB first, zero padding).

    Parameters
    ----------
    x : array_like (..., n), n >= 1, integer or float dtype, every value -1 or +1

    Returns
    -------
    packed : ndarray (..., ceil(n / 64)), uint64

    Raises
    ------
    ValueError
        If a value is not ±1 (the message gives the count and the first offender).
    NonFiniteError
        If a float ``x`` holds NaN or Inf.
    """
    return _pack(x, True, "x")


def pack_bits(x):
    """Pack {0, 1} values along the last axis (set bit = 1, LSB first, zero padding).

    Parameters
    ----------
    x : array_like (..., n), n >= 1, bool, integer or float dtype, every value 0 or 1

    Returns
    -------
    packed : ndarray (..., ceil(n / 64)), uint64

    Raises
    ------
    ValueError
        If a value is not 0 or 1.
    """
    return _pack(x, False, "x")


def _unpack(packed, n, minus_one, dtype):
    packed = _check_packed(packed, "packed", None)
    if packed.ndim == 0:
        raise ShapeError("packed must have at least one axis (the word axis), got a scalar")
    n = check_integer(n, "n (number of packed elements)")
    dtype = check_unpacked_dtype(dtype, signs=minus_one)
    if n < 1:
        raise SizeError(f"n (number of packed elements) must be >= 1, got {n}")
    if packed.shape[-1] != n_words(n):
        raise ShapeError(
            f"packed has {packed.shape[-1]} words on its last axis (shape {packed.shape}), "
            f"expected ceil({n} / 64) = {n_words(n)}"
        )
    rows = np.ascontiguousarray(packed.reshape(-1, packed.shape[-1]))
    out = np.empty((rows.shape[0], n), dtype=np.int8)
    bad_row = _unpack_rows(rows, n, minus_one, out)
    if bad_row >= 0:
        index = np.unravel_index(bad_row, packed.shape[:-1]) if packed.ndim > 1 else ()
        raise ValueError(
            f"packed row {tuple(int(i) for i in index)} has nonzero padding bits beyond "
            f"element {n} (the packing convention requires zero padding)"
        )
    return out.reshape(packed.shape[:-1] + (n,)).astype(dtype, copy=False)


def unpack_signs(packed, n, dtype=np.int8):
    """Inverse of :func:`pack_signs`.

    Parameters
    ----------
    packed : ndarray (..., ceil(n / 64)), uint64, zero padding bits
    n : int, number of elements per packed row (bools and floats such as 70.0 are refused)
    dtype : numpy dtype of the result, able to hold -1: a signed integer, float or complex
        dtype (``unpack_bits`` also takes bool and unsigned dtypes)

    Returns
    -------
    x : ndarray (..., n), values ±1 (set bit -> -1)

    Raises
    ------
    TypeError
        If ``packed`` is not a uint64 ndarray, ``n`` is not an integer, or ``dtype`` cannot
        hold the values.
    SizeError
        If ``n < 1``.
    ShapeError
        If the word count does not match ``n``.
    ValueError
        If a padding bit is set.
    """
    return _unpack(packed, n, True, dtype)


def unpack_bits(packed, n, dtype=np.uint8):
    """Inverse of :func:`pack_bits`: ndarray (..., n) of 0/1 values in ``dtype``.

    Same parameters and errors as :func:`unpack_signs`.
    """
    return _unpack(packed, n, False, dtype)


def _check_planes_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k (bits per activation) must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= MAX_PLANES:
        raise SizeError(f"k (bits per activation) must be in [1, {MAX_PLANES}], got {k}")
    return k


def pack_bitplanes(x, k):
    """Pack k-bit signed integers into two's complement bit-planes.

    Parameters
    ----------
    x : array_like (..., n), integer dtype, values in ``[-2^(k-1), 2^(k-1) - 1]``
    k : int in [1, 32], bits per value

    Returns
    -------
    planes : ndarray (..., k, ceil(n / 64)), uint64; ``planes[..., j, :]`` packs bit ``j`` of
        each value's two's complement code as a {0, 1} vector (plane ``k - 1`` is the sign).

    Raises
    ------
    TypeError
        If ``x`` is not an integer array.
    ValueError
        If a value does not fit in ``k`` bits.
    """
    k = _check_planes_k(k)
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"x must have an integer dtype for bit-planes, got {x.dtype}")
    x = _as_values(x, "x", allow_bool=False)
    n = x.shape[-1]
    rows = np.ascontiguousarray(x.reshape(-1, n))
    out = np.empty((rows.shape[0], k, n_words(n)), dtype=np.uint64)
    bad = _pack_planes(rows, k, out)
    if bad >= 0:
        index = np.unravel_index(bad, x.shape)
        lo, hi = -(1 << (k - 1)), (1 << (k - 1)) - 1
        count = int(np.count_nonzero((x < lo) | (x > hi)))
        raise ValueError(
            f"x must fit in k={k} signed bits, i.e. lie in [{lo}, {hi}]; found {count} value(s) "
            f"outside, first {int(x[index])} at index {tuple(int(i) for i in index)}"
        )
    return out.reshape(x.shape[:-1] + out.shape[1:])


def plane_weights(k):
    """Two's complement plane weights ``(1, 2, ..., 2^(k-2), -2^(k-1))`` as int64 (k,)."""
    k = _check_planes_k(k)
    weights = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64))
    weights[-1] = -weights[-1]
    return weights


def hadamard_packed(s):
    """Packed rows of the unnormalised binary HadamRNN matrix ``diag(s) S_n``.

    ``M[i, j] = s_i (-1)^popcount(i & j)`` (Sylvester ordering). The matrix is *unnormalised*:
    the recurrent matrix is ``W = M / sqrt(n)``, and the caller applies ``1/sqrt(n)``.

    Parameters
    ----------
    s : array_like (n,), values ±1, ``n`` a power of two

    Returns
    -------
    M_packed : ndarray (n, ceil(n / 64)), uint64, rows packed with :func:`pack_signs`'s
        convention, ready for :func:`xnor_matvec` / :func:`xnor_matmul` with ``n_in = n``.
    """
    s = check_sign_vector(s).astype(np.int8)
    out = np.empty((s.shape[0], n_words(s.shape[0])), dtype=np.uint64)
    return _hadamard_rows(s, out)


def _check_packed(a, name, ndim):
    """``a`` as a plain C-contiguous uint64 ndarray of ``ndim`` axes (any when None)."""
    if not isinstance(a, np.ndarray) or a.dtype != _UINT64:
        dtype = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a uint64 ndarray of packed words, got {dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} axes, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _check_product(W_packed, n_in, x, x_name, x_ndim):
    """Validate the operands of a product; return (W, x, n_in).

    The usual case (C-contiguous uint64 arrays of the right sizes) is a handful of inline
    attribute tests: at n = 512 the product itself takes about a microsecond.
    """
    W = W_packed
    if not (type(W) is np.ndarray and W.dtype == _UINT64 and W.ndim == 2
            and W.flags.c_contiguous):
        W = _check_packed(W, "W_packed", 2)
    if not (type(x) is np.ndarray and x.dtype == _UINT64 and x.ndim == x_ndim
            and x.flags.c_contiguous):
        x = _check_packed(x, x_name, x_ndim)
    if type(n_in) is not int:
        if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)):
            raise TypeError(f"n_in must be an integer, got {n_in!r}")
        n_in = int(n_in)
    nw = (n_in + 63) >> 6
    n_out, w_words = W.shape
    if n_in >= 1 and w_words == nw and n_out >= 1 and x.shape[-1] == nw:
        return W, x, n_in
    if n_in < 1:
        raise SizeError(f"n_in must be >= 1, got {n_in}")
    if w_words != nw or n_out < 1:
        raise ShapeError(
            f"W_packed has shape {W.shape}; expected (n_out >= 1, ceil({n_in} / 64) = {nw})"
        )
    raise ShapeError(
        f"{x_name} has {x.shape[-1]} words on its last axis (shape {x.shape}), "
        f"expected ceil({n_in} / 64) = {nw}"
    )


def _check_out(out, shape, dtype):
    """A fresh ``(shape, dtype)`` array, or ``out`` after checking it matches."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if type(out) is np.ndarray and out.dtype == dtype and out.shape == shape and out.flags.carray:
        return out  # the usual case, in four attribute tests
    if not isinstance(out, np.ndarray) or out.dtype != dtype:
        got = out.dtype if isinstance(out, np.ndarray) else type(out).__name__
        raise TypeError(f"out must be a {np.dtype(dtype)} ndarray, got {got}")
    if out.shape != shape:
        raise ShapeError(f"out has shape {out.shape}, expected {shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous, got strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if not out.flags.aligned:
        raise ValueError(f"out is not aligned to its {out.itemsize}-byte elements")
    return out


_UINT64 = np.dtype(np.uint64)
_INT32 = np.dtype(np.int32)
_INT64 = np.dtype(np.int64)


def xnor_matvec(W_packed, x_packed, n_in, out=None):
    """±1 matrix times ±1 vector by XNOR-popcount: ``W_pm1 @ x_pm1``.

    Parameters
    ----------
    W_packed : ndarray (n_out, ceil(n_in / 64)), uint64, rows from :func:`pack_signs`
    x_packed : ndarray (ceil(n_in / 64),), uint64
    n_in : int, number of columns of ``W`` (padding bits beyond it are ignored)
    out : ndarray (n_out,), int32, optional destination (saves an allocation in loops)

    Returns
    -------
    y : ndarray (n_out,), int32, ``y_i = n_in - 2 popcount(W_i XOR x)``
    """
    W, x, n_in = _check_product(W_packed, n_in, x_packed, "x_packed", 1)
    if out is None:
        out = np.empty(W.shape[0], dtype=_INT32)
    else:
        out = _check_out(out, (W.shape[0],), _INT32)
    return _xnor_rows(W, x, n_in, out)


def xnor_matmul(W_packed, X_packed, n_in, out=None):
    """±1 matrix times a batch of ±1 vectors by XNOR-popcount: ``W_pm1 @ X_pm1.T``.

    Parameters
    ----------
    W_packed : ndarray (n_out, ceil(n_in / 64)), uint64
    X_packed : ndarray (B, ceil(n_in / 64)), uint64, one packed vector per row
    n_in : int
    out : ndarray (n_out, B), int32, optional destination

    Returns
    -------
    Y : ndarray (n_out, B), int32, ``Y[i, b] = n_in - 2 popcount(W_i XOR X_b)`` (column
        layout: column ``b`` is the product with vector ``b``).
    """
    W, X, n_in = _check_product(W_packed, n_in, X_packed, "X_packed", 2)
    out = _check_out(out, (W.shape[0], X.shape[0]), _INT32)
    planes = X.reshape(X.shape[0], 1, X.shape[1])  # one plane per vector (B may be 0)
    return _lanes_product(W, planes, _XNOR_WEIGHTS, n_in, True, out)


def bitplane_matvec(W_packed, planes, n_in, out=None):
    """±1 matrix times one k-bit signed integer vector: exactly ``W_pm1.astype(int64) @ x``.

    Parameters
    ----------
    W_packed : ndarray (n_out, ceil(n_in / 64)), uint64
    planes : ndarray (k, ceil(n_in / 64)), uint64, from :func:`pack_bitplanes` of ``x (n_in,)``
    n_in : int
    out : ndarray (n_out,), int64, optional destination

    Returns
    -------
    y : ndarray (n_out,), int64, ``y_i = sum_j c_j popcount(W_i XOR b_j) + popcount(W_i)``
        with the weights ``c_j`` of :func:`plane_weights`.
    """
    W, P, n_in = _check_product(W_packed, n_in, planes, "planes", 2)
    _check_planes_k(P.shape[0])
    out = _check_out(out, (W.shape[0],), _INT64)
    return _bitplane_rows(W, P, n_in, out)


def bitplane_matmul(W_packed, planes, n_in, out=None):
    """±1 matrix times a batch of k-bit integer vectors: exactly ``W_pm1.astype(int64) @ X.T``.

    Parameters
    ----------
    W_packed : ndarray (n_out, ceil(n_in / 64)), uint64
    planes : ndarray (B, k, ceil(n_in / 64)), uint64, from :func:`pack_bitplanes` of
        ``X (B, n_in)``
    n_in : int
    out : ndarray (n_out, B), int64, optional destination

    Returns
    -------
    Y : ndarray (n_out, B), int64
    """
    W, P, n_in = _check_product(W_packed, n_in, planes, "planes", 3)
    weights = plane_weights(_check_planes_k(P.shape[1]))
    out = _check_out(out, (W.shape[0], P.shape[0]), _INT64)
    return _lanes_product(W, P, weights, n_in, False, out)
