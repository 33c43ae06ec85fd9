"""Numba integer engine for integer-only HadamRNN inference.

Reference twin: :func:`hadamnp.reference.integer.integer_forward` (same signature, same
scheme, see that module). Here the state is int32, the block FWHT is exact int32 additions,
the step's accumulator ``M_rec (s * z) + M_in u + b_fine`` is int64 and the single
rounding ``(acc + 2^(q-1)) >> q`` an arithmetic (flooring) right shift; the results equal
the float64 simulation bit for bit.

Layout: batch-first ``(B, T, .)`` like the public arrays, not the time-major batch-last
layout of the float sequence kernels. Deployment runs one sequence at a time (batch 1, as
on a device); keeping each state vector contiguous lets the butterflies, the requantisation
and the readout vectorise along the hidden axis, which is what batch-1 latency needs.
Sequences of a batch are independent and run one after the other.

The worst-case bounds are checked by the wrapper (``z``, ``U_int x`` and the readout in
int32, the accumulator in int64), so the compiled loop never overflows.
"""

import numba
import numpy as np

from hadamnp.reference.integer import check_integer_args


@numba.njit(cache=True, inline="always")
def _small_stage(src, dst, h):
    """One butterfly stage of half-width ``h`` from ``src`` into ``dst`` (1-D int32, n >= 2h).

    ``dst[i] = src[i] + src[i + h]`` where bit ``h`` of ``i`` is clear, else
    ``src[i - h] - src[i]``. Written as one pass over shifted contiguous slices with a
    select, so it vectorises even when ``h`` is smaller than a SIMD register (the in-place
    butterfly loop would not). Slices keep every index non-negative, which spares Numba's
    negative-index wraparound test (that test alone blocks vectorisation).
    """
    n = src.shape[0]
    for i in range(h):
        dst[i] = src[i] + src[i + h]
    low = src[:n - 2 * h]
    mid = src[h:n - h]
    high = src[2 * h:]
    out = dst[h:n - h]
    for k in range(n - 2 * h):
        if ((k + h) & h) == 0:
            out[k] = mid[k] + high[k]
        else:
            out[k] = low[k] - mid[k]
    for i in range(n - h, n):
        dst[i] = src[i - h] - src[i]


@numba.njit(cache=True, inline="always")
def _fwht(src, z, tmp, m):
    """``z = FWHT_m(src)`` for 1-D int32 arrays of length n (``tmp`` is scratch).

    Stages of half-width 1, 2, 4 run out of place (:func:`_small_stage`, ping-pong between
    ``z`` and ``tmp`` so the last lands in ``z``); the wider ones in place on ``z`` over
    contiguous half-blocks, which vectorise directly.
    """
    n = z.shape[0]
    if m == 1:
        z[:] = src
    elif m == 2:
        _small_stage(src, z, 1)
    elif m == 4:
        _small_stage(src, tmp, 1)
        _small_stage(tmp, z, 2)
    else:
        _small_stage(src, z, 1)
        _small_stage(z, tmp, 2)
        _small_stage(tmp, z, 4)
    h = 8
    while h < m:
        for block in range(n // (2 * h)):
            lo = z[2 * h * block:2 * h * block + h]
            hi = z[2 * h * block + h:2 * h * (block + 1)]
            for i in range(h):
                x = lo[i]
                y = hi[i]
                lo[i] = x + y
                hi[i] = x - y
        h *= 2


@numba.njit(cache=True)
def _integer_forward(s, m, U_T, b_half, V, c, M_rec, M_in, q, low, high, x, h, logits):
    B, T, d_in = x.shape
    n = s.shape[0]
    d_out = V.shape[0]
    first_scored = T - logits.shape[1]
    sM = s.astype(np.int64) * M_rec  # sign flip folded into the multiplier
    z = np.empty(n, dtype=np.int32)
    tmp = np.empty(n, dtype=np.int32)
    u = np.empty(n, dtype=np.int32)
    for bb in range(B):
        for t in range(T):
            if t == 0:
                z[:] = 0
            else:
                _fwht(h[bb, t - 1], z, tmp, m)
            # u = U_int x_t, column by column of U (rows of U_T are contiguous).
            u[:] = 0
            for j in range(d_in):
                xj = x[bb, t, j]
                if xj != 0:
                    for i in range(n):
                        u[i] += U_T[j, i] * xj
            out = h[bb, t]
            for i in range(n):
                acc = z[i] * sM[i] + np.int64(u[i]) * M_in + b_half[i]
                out[i] = min(max(acc >> q, low), high)
            if t >= first_scored:
                row = logits[bb, t - first_scored]
                for o in range(d_out):
                    total = np.int32(0)
                    for i in range(n):
                        total += V[o, i] * max(out[i], 0)
                    row[o] = total + c[o]


def integer_forward(s, m, U_int, b_fine, V_int, c_int, M_rec, M_in, q, a, x_int, *,
                    many_to_many):
    """Integer HadamRNN over whole sequences (compiled engine).

    Parameters
    ----------
    s : (n,) integer signs in {-1, +1}
    m : int, block size (power of two dividing ``n``)
    U_int : (n, d_in) integer input codes (int8 in exported models)
    b_fine : (n,) integer recurrent bias in units of ``S_h / 2^q`` (int64 in exported models)
    V_int : (d_out, n) integer output codes
    c_int : (d_out,) integer output bias, in logit units
    M_rec : int, recurrent multiplier, ``~ 2^q / sqrt(m)``
    M_in : int, input multiplier, ``~ 2^q alpha_U S_x / (levels_U S_h)``
    q : int, the common shift of the accumulator
    a : int, activation width
    x_int : (B, T, d_in) integer inputs within ``R_a``
    many_to_many : bool, logits at every step (else at the last step only)

    Returns
    -------
    h_int : (B, T, n) int32 states after every step
    logits_int : (B, T_out, d_out) int32, ``T_out = T`` or 1

    Raises
    ------
    IntegerRangeError
        ``x_int`` outside ``R_a``, or a worst-case intermediate beyond int32 / int64.
    """
    args = check_integer_args(s, m, U_int, b_fine, V_int, c_int, M_rec, M_in, q, a, x_int,
                              many_to_many)
    x = np.ascontiguousarray(args["x_int"], dtype=np.int32)
    B, T, _ = x.shape
    n, q = args["n"], args["q"]
    h = np.empty((B, T, n), dtype=np.int32)
    logits = np.empty((B, args["T_out"], args["V_int"].shape[0]), dtype=np.int32)
    # The rounding constant folded into the bias (the bounds include it: no overflow).
    b_half = args["b_fine"].astype(np.int64) + np.int64(2 ** (q - 1))
    _integer_forward(np.ascontiguousarray(args["s"], dtype=np.int32), args["m"],
                     np.ascontiguousarray(args["U_int"].T, dtype=np.int32), b_half,
                     np.ascontiguousarray(args["V_int"], dtype=np.int32),
                     np.ascontiguousarray(args["c_int"], dtype=np.int32),
                     np.int64(args["M_rec"]), np.int64(args["M_in"]), np.int64(q),
                     np.int64(args["low"]), np.int64(args["high"]), x, h, logits)
    return h, logits
