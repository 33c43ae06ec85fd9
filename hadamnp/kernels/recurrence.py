"""Numba sequence kernels: the HadamRNN time loop, forward and backward (BPTT).

Reference twins: :mod:`hadamnp.reference.recurrence` (same signatures and equations).
The whole time loop runs in compiled code; the recurrent product ``W h`` is a block FWHT
(``n log2 m`` additions), never a dense ``n x n`` product, for the Hadamard recurrences.

Entry points (Hadamard recurrence):

- :func:`hadamard_forward` / :func:`hadamard_backward`: the sequence and its BPTT, keeping
  all states or every ``store_every``-th one (the others are recomputed exactly);
- :func:`hadamard_loss_and_grads`: forward, mean softmax cross-entropy and BPTT in one call,
  the readout and the loss inside the time loop (a training step);
- :func:`hadamard_step_weights` / :func:`hadamard_step`: one step of one sequence, the
  weights validated and packed once (inference);
- :func:`dense_forward` / :func:`dense_backward`: a dense ``W`` (baselines and tests).

Layout (see :mod:`hadamnp.conventions`): time-major, batch-last. ``x`` ``(T, d_in, B)``,
states ``h`` ``(T, n, B)``, logits and their gradients ``(T_out, d_out, B)`` with
``T_out = T`` when every step is scored and ``1`` when only the last one is. Every
elementwise pass runs over contiguous lanes of the batch; small matrix products call BLAS.

Determinism: the Hadamard kernels split the batch into lane blocks fixed by ``B`` and the
dtype (:func:`lane_blocks`) and run them in parallel on Numba's threads; sums over the
batch are accumulated per lane or per block and reduced in a fixed order, so results are
the same bytes for every thread count (no ``fastmath`` in the sequence kernels).
"""


import numba
import numpy as np

from hadamnp._checks import (
    check_block_size,
    check_finite,
    check_ndim,
    check_power_of_two,
    check_sequence_args,
    check_state_buffer,
)
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.kernels.fwht import fwht_columns_inplace


@numba.njit(cache=True, inline="always")
def _update_state(a, scale, b, drive, nonlinear):
    """``a = relu?(scale[:, None] * a + b[:, None] + drive)`` in place.

    ``a`` and ``drive`` are (n, B); ``scale`` holds ``s_i / sqrt(m)`` (ones for the dense
    recurrence).
    """
    n, B = a.shape
    for i in range(n):
        si = scale[i]
        bi = b[i]
        for j in range(B):
            v = si * a[i, j] + bi + drive[i, j]
            if nonlinear:
                v = max(v, 0)
            a[i, j] = v


@numba.njit(cache=True, inline="always")
def _input_drive(U, x_t, drive):
    """``drive = U @ x_t`` for ``x_t`` (d_in, B); explicit loops when d_in is tiny.

    BLAS is faster from a few input features on, but a rank-1 update (d_in = 1, e.g.
    pixel-by-pixel MNIST) costs more in call overhead than in arithmetic.
    """
    n, d_in = U.shape
    if d_in > 4:
        np.dot(U, x_t, drive)
        return
    B = x_t.shape[1]
    for i in range(n):
        for j in range(B):
            drive[i, j] = U[i, 0] * x_t[0, j]
        for k in range(1, d_in):
            u = U[i, k]
            for j in range(B):
                drive[i, j] += u * x_t[k, j]


@numba.njit(cache=True, inline="always")
def _readout(V, c, h_t, z, out):
    """``out = V @ relu(h_t) + c[:, None]`` (``z`` (n, B) scratch, ``out`` (d_out, B))."""
    np.maximum(h_t, 0, z)
    np.dot(V, z, out)
    for o in range(out.shape[0]):
        co = c[o]
        for j in range(out.shape[1]):
            out[o, j] += co


@numba.njit(cache=True, inline="always")
def _readout_backward(V_T, h_t, g_t, z, back, delta, dV):
    """Add the readout's contribution at one step (``z``, ``back`` are (n, B) scratch).

    ``delta += 1[h_t > 0] * (V^T g_t)`` and ``dV += g_t relu(h_t)^T``.
    """
    np.maximum(h_t, 0, z)
    dV += np.dot(g_t, z.T)
    np.dot(V_T, g_t, back)
    n, B = delta.shape
    for i in range(n):
        for j in range(B):
            if h_t[i, j] > 0:
                delta[i, j] += back[i, j]


@numba.njit(cache=True, inline="always")
def _mask_inactive(delta, h_t):
    """``delta *= 1[h_t > 0]``: the derivative of the recurrent relu (``h_t`` post-relu)."""
    n, B = delta.shape
    for i in range(n):
        for j in range(B):
            if h_t[i, j] <= 0:
                delta[i, j] = 0


# ---------------------------------------------------------------------------------------
# Hadamard recurrence engine: lane blocks, checkpointed states, fused loss
#
# The batch is cut into lane blocks (:func:`lane_blocks`: at most 64 lanes of whole 512-bit
# vectors; fixed by B and the dtype alone). Each block
# runs its whole time loop on its own contiguous (n, Bp) scratch, ``Bp`` its lanes padded
# to whole vectors (padding lanes get zero inputs and gradients and are never read back).
# Lanes never interact in the recurrence, so blocks need no synchronisation and run in
# parallel (``prange``). A block's arithmetic is the same whichever thread runs it, and the
# sums over the batch are reduced after the parallel loop in a fixed order, so results do
# not depend on the number of threads.
#
# States: the forward pass stores every ``k``-th state (``store_every = k``; ``k = 1``:
# all). The backward pass walks the segments ``[c k, (c + 1) k)`` from the last, first
# recomputing the segment's states from the stored one before it with the forward's own
# operations (so they are bit-identical), keeping ``P_t = S h_{t-1}`` (needed for ds)
# and ``h_t`` in a small in-cache buffer. A recomputed state costs one FWHT, the same as
# the ``S h_{t-1}`` that the backward pass needs anyway, so ``k > 1`` trades memory
# traffic for an elementwise update per step.
# ---------------------------------------------------------------------------------------

_LANES_PER_BLOCK = 64   # lanes per block at most (B <= 64: one block)
_VECTOR_BYTES = 64      # lane blocks are whole 512-bit vectors
_SMALL_D_IN = 4         # up to this many input features, U x is fused into the state update
_CHUNK = 1024           # elements of the per-lane sums kept in L1 over a segment


def lane_blocks(B, dtype):
    """Lane blocks of a batch of ``B``: ``(starts, padded)``, both ``int64`` of ``nblk + 1``.

    ``ceil(B / 64)`` blocks of whole 512-bit vectors (16 float32 / 8 float64 lanes), as
    equal as possible; block ``k`` holds lanes ``starts[k]:starts[k + 1]`` and works on
    ``padded[k + 1] - padded[k]`` lanes, its width rounded up to whole vectors. The
    partition depends on ``B`` and ``dtype`` only, never on the thread count, which fixes
    the order of every reduction over the batch.
    """
    W = _VECTOR_BYTES // np.dtype(dtype).itemsize
    vectors = -(-B // W)
    nblk = max(1, min(vectors, -(-B // _LANES_PER_BLOCK)))
    starts = np.array([min(B, W * (k * vectors // nblk)) for k in range(nblk)] + [B], np.int64)
    padded = np.concatenate(([0], np.cumsum(-(-np.diff(starts) // W) * W))).astype(np.int64)
    return starts, padded


_SEGMENT_BYTES = 1 << 20   # default store_every: one block's segment buffers in ~1 MiB


def default_store_every(n, B, dtype):
    """A ``store_every`` for training: the largest ``k`` whose segment buffers (``P_t`` and
    ``h_t`` for ``k`` steps of one lane block) fit in 1 MiB, so the recomputed states stay
    in cache; at least 1.

    The stored states then take ``1/k`` of all of them. For the least memory instead,
    ``k ~ sqrt(T B / (2 Bp))`` balances the stored states against the segment buffers
    (``Bp``: a block's padded lanes; see :func:`lane_blocks`).
    """
    _, padded = lane_blocks(B, dtype)
    widest = int(np.max(np.diff(padded))) if B > 0 else 1
    return max(1, _SEGMENT_BYTES // (2 * n * widest * np.dtype(dtype).itemsize))


@numba.njit(cache=True, inline="always")
def _drive_blas(U, xp, t, p0, xs, drive):
    """``drive = U @ x_t`` by BLAS for many input features (``xs`` (d_in, Bp) scratch)."""
    d_in = U.shape[1]
    if d_in > _SMALL_D_IN:
        for k in range(d_in):
            for j in range(xs.shape[1]):
                xs[k, j] = xp[t, k, p0 + j]
        np.dot(U, xs, drive)


@numba.njit(cache=True, inline="always")
def _drive_row(U, xp, t, p0, i, drive, dr):
    """``dr = (U x_t)_i`` over the block's padded lanes, inputs summed in order (from
    ``drive`` when computed by BLAS)."""
    d_in = U.shape[1]
    if d_in > _SMALL_D_IN:
        for j in range(dr.shape[0]):
            dr[j] = drive[i, j]
        return
    u = U[i, 0]
    for j in range(dr.shape[0]):
        dr[j] = u * xp[t, 0, p0 + j]
    for k in range(1, d_in):
        u = U[i, k]
        for j in range(dr.shape[0]):
            dr[j] += u * xp[t, k, p0 + j]


@numba.njit(cache=True)
def _update_inplace(a, scale, b, U, xp, t, p0, drive, xs, dr, nonlinear):
    """``a = act(scale * a + b + U x_t)`` in place; ``a`` (n, Bp) holds ``S h_{t-1}``.

    ``xp`` is the lane-padded input (T, d_in, P), the block's lanes from ``p0``; ``drive``
    (n, Bp), ``xs`` (d_in, Bp), ``dr`` (Bp,) are scratch. Per element
    ``(scale_i * a + b_i) + (U x_t)_i``, exactly as :func:`_update_into`.
    """
    _drive_blas(U, xp, t, p0, xs, drive)
    n, Bp = a.shape
    xt = xp[t, 0]
    for i in range(n):
        si = scale[i]
        bi = b[i]
        if U.shape[1] == 1:                   # U x_t inline: one pass
            u = U[i, 0]
            for j in range(Bp):
                v = si * a[i, j] + bi + u * xt[p0 + j]
                if nonlinear:
                    v = max(v, 0)
                a[i, j] = v
        else:
            _drive_row(U, xp, t, p0, i, drive, dr)
            for j in range(Bp):
                v = si * a[i, j] + bi + dr[j]
                if nonlinear:
                    v = max(v, 0)
                a[i, j] = v


@numba.njit(cache=True)
def _update_into(P, out, out2, both, scale, b, U, xp, t, p0, drive, xs, dr, nonlinear):
    """``out = act(scale * P + b + U x_t)`` (and ``out2`` when ``both``); ``P`` unchanged.

    As :func:`_update_inplace`. ``P``, ``out``, ``out2`` must be distinct arrays: LLVM's
    run-time alias check would otherwise send the loop to its scalar version.
    """
    _drive_blas(U, xp, t, p0, xs, drive)
    n, Bp = P.shape
    xt = xp[t, 0]
    for i in range(n):
        si = scale[i]
        bi = b[i]
        if U.shape[1] == 1:
            u = U[i, 0]
            if both:
                for j in range(Bp):
                    v = si * P[i, j] + bi + u * xt[p0 + j]
                    if nonlinear:
                        v = max(v, 0)
                    out[i, j] = v
                    out2[i, j] = v
            else:
                for j in range(Bp):
                    v = si * P[i, j] + bi + u * xt[p0 + j]
                    if nonlinear:
                        v = max(v, 0)
                    out[i, j] = v
            continue
        _drive_row(U, xp, t, p0, i, drive, dr)
        if both:
            for j in range(Bp):
                v = si * P[i, j] + bi + dr[j]
                if nonlinear:
                    v = max(v, 0)
                out[i, j] = v
                out2[i, j] = v
        else:
            for j in range(Bp):
                v = si * P[i, j] + bi + dr[j]
                if nonlinear:
                    v = max(v, 0)
                out[i, j] = v


@numba.njit(cache=True)
def _readout_block(V, c, h, z, out):
    """``out (d_out, Bp) = V relu(h) + c`` (``z`` (n, Bp) scratch)."""
    np.maximum(h, 0, z)
    np.dot(V, z, out)
    for o in range(out.shape[0]):
        co = c[o]
        for j in range(out.shape[1]):
            out[o, j] += co


@numba.njit(cache=True)
def _xent_block(lg, w, y, ts, j0, count, g, loss, correct, top, arg, total, e):
    """Softmax cross-entropy of the block's logits ``lg`` (d_out, Bp) at scored step ``ts``.

    For the ``w`` real lanes: adds each lane's loss to ``loss`` (B,) float64 and its hit
    (argmax, first maximum) to ``correct`` (B,); writes ``g[ts, :, lane] = (softmax -
    onehot(y)) / count``, the gradient of the mean loss over ``count`` positions (the
    operations of :func:`hadamnp.models.losses.softmax_cross_entropy`). ``top``,
    ``total`` (Bp,), ``arg`` (Bp,) int and ``e`` (d_out, Bp) are scratch; every loop but
    the exponentials runs across lanes.
    """
    d_out = lg.shape[0]
    for j in range(w):
        top[j] = lg[0, j]
        arg[j] = 0
        total[j] = 0
    for o in range(1, d_out):
        for j in range(w):
            if lg[o, j] > top[j]:
                top[j] = lg[o, j]
                arg[j] = o
    for o in range(d_out):
        for j in range(w):
            e[o, j] = np.exp(lg[o, j] - top[j])
            total[j] += e[o, j]
    for j in range(w):
        target = y[ts, j0 + j]
        loss[j0 + j] += np.float64(np.log(total[j])) - np.float64(lg[target, j] - top[j])
        if arg[j] == target:
            correct[j0 + j] += 1
    for o in range(d_out):
        for j in range(w):
            p = e[o, j] / total[j]
            if o == y[ts, j0 + j]:
                p -= 1
            g[ts, o, j0 + j] = p / count


@numba.njit(cache=True)
def _forward_block(scale, m, U, b, V, c, xp, nonlinear, every, hs, j0, w, p0, Bp,
                   first_scored, logits, fused, y, count, g, loss, correct):
    """Forward time loop of lanes ``j0:j0+w`` (lanes ``p0:p0+Bp`` of the padded input
    ``xp``): stores every ``every``-th state in ``hs``. Unfused: writes ``logits``. Fused:
    the cross-entropy at the scored steps into ``g``, ``loss``, ``correct`` (see
    :func:`_xent_block`)."""
    T = xp.shape[0]
    n = scale.shape[0]
    d_in = U.shape[1]
    dtype = hs.dtype
    a = np.zeros((n, Bp), dtype=dtype)          # h_{t-1}, then S h_{t-1}, then h_t
    drive = np.zeros((n, Bp), dtype=dtype)
    xs = np.zeros((d_in, Bp), dtype=dtype)
    dr = np.zeros(Bp, dtype=dtype)
    z = np.empty((n, Bp), dtype=dtype)
    lg = np.empty((V.shape[0], Bp), dtype=dtype)
    top, total = np.empty(Bp, dtype=dtype), np.empty(Bp, dtype=dtype)
    arg = np.empty(Bp, dtype=np.int64)
    e = np.empty((V.shape[0], Bp), dtype=dtype)
    for t in range(T):
        if t > 0:                                 # S h_{-1} = 0: nothing to transform
            fwht_columns_inplace(a, m)
        _update_inplace(a, scale, b, U, xp, t, p0, drive, xs, dr, nonlinear)
        if (t + 1) % every == 0:
            dst = hs[(t + 1) // every - 1]
            for i in range(n):
                for j in range(w):
                    dst[i, j0 + j] = a[i, j]
        if t >= first_scored:
            _readout_block(V, c, a, z, lg)
            ts = t - first_scored
            if fused:
                _xent_block(lg, w, y, ts, j0, count, g, loss, correct, top, arg, total, e)
            else:
                for o in range(lg.shape[0]):
                    for j in range(w):
                        logits[ts, o, j0 + j] = lg[o, j]


@numba.njit(cache=True)
def _load_lanes(src, j0, w, dst):
    """``dst[:, :w] = src[:, j0:j0+w]`` (``src`` (n, B), ``dst`` (n, Bp))."""
    for i in range(dst.shape[0]):
        for j in range(w):
            dst[i, j] = src[i, j0 + j]


@numba.njit(cache=True)
def _backward_block(scale, m, U, b, V, xp, g, nonlinear, every, hs, j0, w, p0, Bp,
                    first_scored, ds_l, db_l, dV_b, dU_b, dx):
    """BPTT of lanes ``j0:j0+w`` (``p0:p0+Bp`` of the padded input ``xp``) from the
    stored states ``hs``.

    Accumulates per lane ``ds_l``, ``db_l`` (flat, ``n * Bp``: sums of ``dL/da_t * S
    h_{t-1}`` and of ``dL/da_t``; the ``1/sqrt(m)`` of ds is applied at the end) and per
    block ``dV_b`` (d_out, n) and ``dU_b`` (n, d_in) (BLAS, once per step); writes the
    block's lanes of ``dx[t] = U^T dL/da_t`` unless ``dx`` is empty.
    """
    T = xp.shape[0]
    n = scale.shape[0]
    d_in = U.shape[1]
    d_out = V.shape[0]
    dtype = hs.dtype
    V_T = np.ascontiguousarray(V.T)
    U_T = np.ascontiguousarray(U.T)
    input_grad = dx.shape[0] > 0
    dxb = np.empty((d_in, Bp), dtype=dtype)
    seg_P = np.zeros((every, n, Bp), dtype=dtype)   # P_t = S h_{t-1} over one segment
    seg_h = np.zeros((every, n, Bp), dtype=dtype)   # h_t over one segment (where needed)
    delta = np.zeros((n, Bp), dtype=dtype)          # dL/dh_t, then dL/da_t, then W^T of it
    back = np.zeros((n, Bp), dtype=dtype)
    z = np.empty((n, Bp), dtype=dtype)
    drive = np.zeros((n, Bp), dtype=dtype)
    spare = np.empty((n, Bp), dtype=dtype)          # second output of _update_into, unused
    xs = np.zeros((d_in, Bp), dtype=dtype)
    xs_T = np.zeros((Bp, d_in), dtype=dtype)
    dr = np.zeros(Bp, dtype=dtype)
    seg_dm = np.zeros((every, n, Bp), dtype=dtype)  # dL/da_t over one segment
    gb = np.zeros((d_out, Bp), dtype=dtype)
    tmp_V = np.empty((d_out, n), dtype=dtype)
    tmp_U = np.empty((n, d_in), dtype=dtype)
    n_seg = (T + every - 1) // every
    for seg in range(n_seg - 1, -1, -1):
        t0 = seg * every
        t1 = min(T, t0 + every)
        # Recompute the segment's states from the stored one before it.
        for t in range(t0, t1):
            k = t - t0
            P = seg_P[k]
            if k == 0 and seg > 0:
                _load_lanes(hs[seg - 1], j0, w, P)
            elif k == 0:
                P[:] = 0
            if t > 0:
                fwht_columns_inplace(P, m)
            need_h = nonlinear or t >= first_scored
            if t + 1 < t1:
                if need_h:
                    _update_into(P, seg_P[k + 1], seg_h[k], True, scale, b, U, xp, t, p0,
                                 drive, xs, dr, nonlinear)
                else:
                    _update_into(P, seg_P[k + 1], spare, False, scale, b, U, xp, t, p0,
                                 drive, xs, dr, nonlinear)
            elif need_h:
                if (t + 1) % every == 0:          # stored: h_t = hs[seg] exactly
                    _load_lanes(hs[seg], j0, w, seg_h[k])
                else:
                    _update_into(P, seg_h[k], spare, False, scale, b, U, xp, t, p0, drive,
                                 xs, dr, nonlinear)
        # Backward through the segment: delta and dL/da_t (kept in seg_dm) step by step.
        for t in range(t1 - 1, t0 - 1, -1):
            k = t - t0
            H = seg_h[k]
            D = seg_dm[k]
            if t >= first_scored:
                gt = g[t - first_scored]
                for o in range(d_out):
                    for j in range(w):
                        gb[o, j] = gt[o, j0 + j]
                np.dot(V_T, gb, back)
                np.maximum(H, 0, z)
                np.dot(gb, z.T, tmp_V)
                dV_b += tmp_V
                for i in range(n):                # + 1[h_t > 0] V^T g_t
                    for j in range(Bp):
                        delta[i, j] = delta[i, j] + back[i, j] if H[i, j] > 0 else delta[i, j]
            if nonlinear:
                for i in range(n):                # dL/da_t = 1[h_t > 0] dL/dh_t
                    for j in range(Bp):
                        delta[i, j] = delta[i, j] if H[i, j] > 0 else 0
            for i in range(n):
                si = scale[i]
                for j in range(Bp):
                    d = delta[i, j]
                    D[i, j] = d
                    delta[i, j] = d * si          # W^T delta = S (s * delta) / sqrt(m)
            for j in range(Bp):
                for kk in range(d_in):
                    xs_T[j, kk] = xp[t, kk, p0 + j]
            np.dot(D, xs_T, tmp_U)
            dU_b += tmp_U
            if input_grad:
                np.dot(U_T, D, dxb)
                for kk in range(d_in):
                    for j in range(w):
                        dx[t, kk, j0 + j] = dxb[kk, j]
            if t > 0:
                fwht_columns_inplace(delta, m)
        # The per-lane sums over the segment, in chunks of the flattened (n, Bp) block
        # that stay in L1 while the segment's steps are added in order (as if step by step).
        size = n * Bp
        for q0 in range(0, size, _CHUNK):
            q1 = min(size, q0 + _CHUNK)
            acc_b = db_l[q0:q1]
            acc_s = ds_l[q0:q1]
            for t in range(t1 - 1, t0 - 1, -1):
                Dt = seg_dm[t - t0].ravel()[q0:q1]
                for q in range(q1 - q0):
                    acc_b[q] += Dt[q]
                if t > 0:
                    Pt = seg_P[t - t0].ravel()[q0:q1]
                    for q in range(q1 - q0):
                        acc_s[q] += Dt[q] * Pt[q]


@numba.njit(cache=True, parallel=True)
def _forward_blocks(starts, padded, scale, m, U, b, V, c, xp, nonlinear, every, hs,
                    first_scored, logits, fused, y, count, g, loss, correct):
    for k in numba.prange(starts.shape[0] - 1):
        _forward_block(scale, m, U, b, V, c, xp, nonlinear, every, hs, starts[k],
                       starts[k + 1] - starts[k], padded[k], padded[k + 1] - padded[k],
                       first_scored, logits, fused, y, count, g, loss, correct)


@numba.njit(cache=True, parallel=True)
def _backward_blocks(starts, padded, scale, m, U, b, V, xp, g, nonlinear, every, hs,
                     first_scored, ds_l, db_l, dV_b, dU_b, dx):
    n = U.shape[0]
    for k in numba.prange(starts.shape[0] - 1):
        p0 = padded[k]
        p1 = padded[k + 1]
        # Block k's per-lane accumulators: contiguous pieces of flat arrays, private to the
        # block (no cache line is written by two blocks).
        _backward_block(scale, m, U, b, V, xp, g, nonlinear, every, hs, starts[k],
                        starts[k + 1] - starts[k], p0, p1 - p0, first_scored,
                        ds_l[n * p0:n * p1], db_l[n * p0:n * p1], dV_b[k], dU_b[k], dx)


@numba.njit(cache=True)
def _reduce_blocks(starts, padded, m, ds_l, db_l, dV_b, dU_b, ds, db, dU, dV):
    """Sum the accumulators in a fixed order into ``ds`` (times ``1/sqrt(m)``), ``db``,
    ``dU``, ``dV``: per-lane ones over lanes ``0..B-1``, per-block ones over blocks."""
    nblk = starts.shape[0] - 1
    n = ds.shape[0]
    inv_sqrt_m = 1 / np.sqrt(ds.dtype.type(m))
    for i in range(n):
        s_acc = ds.dtype.type(0)
        b_acc = ds.dtype.type(0)
        for k in range(nblk):
            Bp = padded[k + 1] - padded[k]
            base = n * padded[k] + i * Bp
            for j in range(starts[k + 1] - starts[k]):
                s_acc += ds_l[base + j]
                b_acc += db_l[base + j]
        ds[i] = s_acc * inv_sqrt_m
        db[i] = b_acc
    for k in range(nblk):
        dU += dU_b[k]
        dV += dV_b[k]


def _pad_lanes(x, blocks):
    """``x`` (T, d_in, B) with each lane block's lanes padded with zeros to whole vectors
    (the layout of ``padded`` from :func:`lane_blocks`)."""
    starts, padded = blocks
    if padded[-1] == x.shape[2]:
        return x
    xp = np.zeros(x.shape[:2] + (int(padded[-1]),), x.dtype)
    for k in range(starts.shape[0] - 1):
        xp[:, :, padded[k]:padded[k] + starts[k + 1] - starts[k]] = x[:, :, starts[k]:starts[k + 1]]
    return xp


def _run_backward(scale, m, U, b, V, xp, g, nonlinear, every, hs, first_scored, blocks, dx):
    """Allocate the accumulators, run the blocks (on the padded input ``xp``) and reduce;
    returns ds, dU, db, dV and fills ``dx`` (T, d_in, B) unless it is empty."""
    starts, padded = blocks
    n, d_in = U.shape
    d_out = V.shape[0]
    dtype = xp.dtype
    nblk = starts.shape[0] - 1
    ds_l = np.zeros(n * int(padded[-1]), dtype)
    db_l = np.zeros(n * int(padded[-1]), dtype)
    dU_b = np.zeros((nblk, n, d_in), dtype)
    dV_b = np.zeros((nblk, d_out, n), dtype)
    _backward_blocks(starts, padded, scale, m, U, b, V, xp, g, bool(nonlinear), every, hs,
                     first_scored, ds_l, db_l, dV_b, dU_b, dx)
    ds, db = np.zeros(n, dtype), np.zeros(n, dtype)
    dU, dV = np.zeros((n, d_in), dtype), np.zeros((d_out, n), dtype)
    _reduce_blocks(starts, padded, m, ds_l, db_l, dV_b, dU_b, ds, db, dU, dV)
    return ds, dU, db, dV


@numba.njit(cache=True)
def _dense_forward(W, U, b, V, c, x, nonlinear, h, logits):
    T, _, B = x.shape
    n = W.shape[0]
    first_scored = T - logits.shape[0]
    ones = np.ones(n, dtype=h.dtype)
    drive = np.empty((n, B), dtype=h.dtype)
    z = np.empty((n, B), dtype=h.dtype)
    for t in range(T):
        a = h[t]
        if t == 0:
            a[:] = 0
        else:
            np.dot(W, h[t - 1], a)
        _input_drive(U, x[t], drive)
        _update_state(a, ones, b, drive, nonlinear)
        if t >= first_scored:
            _readout(V, c, a, z, logits[t - first_scored])


@numba.njit(cache=True)
def _dense_backward(W, U_T, V, x_T, h, g, nonlinear, dU, dW, db, dV, dx):
    T, B, _ = x_T.shape
    input_grad = dx.shape[0] > 0
    n = W.shape[0]
    W_T = np.ascontiguousarray(W.T)
    V_T = np.ascontiguousarray(V.T)
    first_scored = T - g.shape[0]
    delta = np.zeros((n, B), dtype=h.dtype)
    z = np.empty((n, B), dtype=h.dtype)
    back = np.empty((n, B), dtype=h.dtype)
    db_lanes = np.zeros((n, B), dtype=h.dtype)
    for t in range(T - 1, -1, -1):
        if t >= first_scored:
            _readout_backward(V_T, h[t], g[t - first_scored], z, back, delta, dV)
        if nonlinear:
            _mask_inactive(delta, h[t])
        dU += np.dot(delta, x_T[t])
        if input_grad:
            np.dot(U_T, delta, dx[t])
        if t > 0:
            dW += np.dot(delta, h[t - 1].T)
        db_lanes += delta
        np.dot(W_T, delta, back)
        delta[:] = back
    for i in range(n):
        db[i] = db_lanes[i].sum()


def _contiguous(*arrays):
    return tuple(np.ascontiguousarray(a) for a in arrays)


def _state_buffer(h_out, T, n, B, dtype):
    """``h_out`` checked for reuse, or a new ``(T, n, B)`` array.

    Reusing one buffer across batches matters: the first write to freshly mapped memory
    page-faults at well under the memory bandwidth (160 MB per sequential-MNIST batch).
    """
    if h_out is None:
        return np.empty((T, n, B), dtype=dtype)
    check_state_buffer(h_out, (T, n, B), dtype)
    return h_out


def _input_grad_buffer(x, input_grad):
    """``dx`` (T, d_in, B) when the input gradient is wanted, else an empty (0, d_in, B)."""
    T, d_in, B = x.shape
    return np.zeros((T if input_grad else 0, d_in, B), dtype=x.dtype)


def _check_store_every(store_every):
    """Validate the checkpoint interval ``k >= 1`` (an integer); return ``int(k)``."""
    if isinstance(store_every, bool) or not isinstance(store_every, (int, np.integer)) \
            or store_every < 1:
        raise ConfigError(f"store_every must be an integer >= 1, got {store_every!r}")
    return int(store_every)


def _hadamard_setup(s, m, x, V, store_every, arrays, h=None):
    """Shared validation of the Hadamard wrappers (:func:`hadamnp._checks.check_sequence_args`,
    the contract of the reference twin too); ``h``, when given, must hold every
    ``store_every``-th state. Returns ``(n, m, k, T, d_in, B)``."""
    n = check_power_of_two(s.shape[0], "hidden size n")
    m = check_block_size(n, m)
    k = _check_store_every(store_every)
    T, d_in, B = check_sequence_args(x, V, n, s=s, **arrays)
    if h is not None:
        if not isinstance(h, np.ndarray):
            raise TypeError(f"h must be a numpy.ndarray, got {type(h).__name__}")
        if h.shape != (T // k, n, B):
            raise ShapeError(f"h has shape {h.shape}, expected {(T // k, n, B)} (every "
                             f"{k}-th of the {T} states)")
        if h.dtype != x.dtype:
            raise TypeError(f"h has dtype {h.dtype} but x has dtype {x.dtype}")
    return n, m, k, T, d_in, B


def _scale(s, m):
    """``s_i / sqrt(m)``: the signs and the normalisation of ``W``, in the dtype of ``s``."""
    return s / np.sqrt(s.dtype.type(m))


def hadamard_forward(s, m, U, b, V, c, x, *, nonlinear, many_to_many, h_out=None,
                     store_every=1):
    """Forward pass of the (Block-)HadamRNN over a whole sequence.

    Parameters
    ----------
    s : (n,) signs in {-1, +1}, float32 or float64 (the dtype of every argument)
    m : int, block size (power of two dividing ``n``; ``m = n`` for the full HadamRNN)
    U : (n, d_in) quantized input matrix
    b : (n,) recurrent bias
    V : (d_out, n) quantized output matrix
    c : (d_out,) output bias
    x : (T, d_in, B) inputs
    nonlinear : bool, ``h_t = relu(W h_{t-1} + U x_t + b)`` instead of the linear recurrence
    many_to_many : bool, compute logits at every step (else only at the last)
    h_out : (T // store_every, n, B) array, optional
        Buffer to write the states into (reused across batches to avoid page faults):
        C-contiguous, writable, the dtype of ``x``.
    store_every : int, default 1
        Keep every ``k``-th state only: ``h[i] = h_{(i + 1) k - 1}``. :func:`hadamard_backward`
        with the same ``k`` recomputes the others exactly; ``k = 1`` keeps all ``T``.

    Returns
    -------
    h : (T // store_every, n, B) states
    logits : (T_out, d_out, B)

    Raises
    ------
    TypeError
        Non-float32/float64 ``x``, another dtype elsewhere, or an ``h_out`` that is not an
        array of that dtype.
    ShapeError, SizeError, NonFiniteError, ValueError
        Wrong shapes; ``n``/``m`` not powers of two; NaN/Inf in ``x``; an ``h_out`` that is
        not C-contiguous or is read-only. The reference twin raises the same errors.
    ConfigError
        ``store_every`` not an integer >= 1.

    Notes
    -----
    Runs the lane blocks of :func:`lane_blocks` in parallel on Numba's threads
    (``numba.set_num_threads``); results do not depend on the thread count.
    """
    n, m, k, T, d_in, B = _hadamard_setup(s, m, x, V, store_every, {"U": U, "b": b, "c": c})
    T_out = T if many_to_many else 1
    s, U, b, V, c, x = _contiguous(s, U, b, V, c, x)
    h = _state_buffer(h_out, T // k, n, B, x.dtype)
    logits = np.empty((T_out, V.shape[0], B), dtype=h.dtype)
    blocks = lane_blocks(B, x.dtype)
    _forward_blocks(*blocks, _scale(s, m), m, U, b, V, c, _pad_lanes(x, blocks),
                    bool(nonlinear), k, h, T - T_out, logits, False, np.zeros((1, 1), np.int64),
                    x.dtype.type(1), logits, np.zeros(B), np.zeros(B, np.int64))
    return h, logits


def hadamard_backward(s, m, U, V, x, h, g, *, nonlinear, input_grad=False, store_every=1,
                      b=None):
    """Backpropagation through time for :func:`hadamard_forward`.

    Parameters
    ----------
    s, m, U, V, x : as in :func:`hadamard_forward`
    h : (T // store_every, n, B) states from :func:`hadamard_forward` (same ``store_every``)
    g : (T_out, d_out, B) gradient of the loss with respect to the logits
    input_grad : bool
        Also return ``x``: the gradient with respect to the inputs, ``U^T dL/da_t``
        (T, d_in, B) (an embedding or a lower layer below this one needs it).
    store_every : int, default 1, as passed to :func:`hadamard_forward`
    b : (n,) recurrent bias; required when ``store_every > 1`` (to recompute states)

    Returns
    -------
    dict of gradients: ``s`` (n,) (``s`` treated as continuous), ``U`` (n, d_in),
    ``b`` (n,), ``V`` (d_out, n), ``c`` (d_out,), and ``x`` with ``input_grad``. Equal
    bit for bit for every ``store_every`` and every thread count.
    """
    arrays = {"U": U, "g": g}
    if b is not None:
        arrays["b"] = b
    n, m, k, T, d_in, B = _hadamard_setup(s, m, x, V, store_every, arrays, h=h)
    if b is None:
        if k > 1:
            raise ConfigError("hadamard_backward needs the bias b to recompute states when "
                              f"store_every > 1 (got store_every={k})")
        b = np.zeros(n, x.dtype)      # never read: with k = 1 every state is stored
    s, U, b, V, x, h, g = _contiguous(s, U, b, V, x, h, g)
    blocks = lane_blocks(B, x.dtype)
    dx = _input_grad_buffer(x, input_grad)
    ds, dU, db, dV = _run_backward(_scale(s, m), m, U, b, V, _pad_lanes(x, blocks), g,
                                   nonlinear, k, h, T - g.shape[0], blocks, dx)
    grads = {"s": ds, "U": dU, "b": db, "V": dV, "c": g.sum(axis=(0, 2))}
    if input_grad:
        grads["x"] = dx
    return grads


def hadamard_loss_and_grads(s, m, U, b, V, c, x, y, *, nonlinear, many_to_many,
                            store_every=1, h_out=None):
    """Forward pass, mean softmax cross-entropy and BPTT in one call (a training step).

    The readout and the loss run inside the time loop, per lane block, while each state is
    in cache; nothing of size ``(T, d_out, B)`` but the logits' gradient is kept.

    Parameters
    ----------
    s, m, U, b, V, c, x, nonlinear, many_to_many, h_out, store_every :
        as in :func:`hadamard_forward`
    y : (T_out, B) integer class targets in ``[0, d_out)`` (``T_out = T`` or ``1``)

    Returns
    -------
    loss_sum : float, the cross-entropy summed over the ``T_out * B`` scored positions
        (float64 accumulation); the mean loss is ``loss_sum / (T_out * B)``
    correct : int, positions whose argmax (first maximum) equals the target
    grads : dict ``s``, ``U``, ``b``, ``V``, ``c`` of the *mean* loss, as returned by
        :func:`hadamard_backward` for ``g = dL/dlogits``

    Equals :func:`hadamard_forward`, :func:`hadamnp.models.losses.softmax_cross_entropy`
    and :func:`hadamard_backward` within float rounding (the loss is summed in another order).
    """
    n, m, k, T, d_in, B = _hadamard_setup(s, m, x, V, store_every,
                                          {"U": U, "b": b, "c": c})
    T_out = T if many_to_many else 1
    d_out = V.shape[0]
    y = np.asarray(y)
    if y.shape != (T_out, B):
        raise ShapeError(f"y has shape {y.shape}, expected {(T_out, B)} (T_out, B)")
    if y.dtype.kind not in "iu":
        raise TypeError(f"class targets y must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= d_out):
        raise ValueError(f"targets must lie in [0, {d_out}), got range [{y.min()}, {y.max()}]")
    s, U, b, V, c, x = _contiguous(s, U, b, V, c, x)
    y = np.ascontiguousarray(y, dtype=np.int64)
    h = _state_buffer(h_out, T // k, n, B, x.dtype)
    g = np.empty((T_out, d_out, B), x.dtype)
    loss = np.zeros(B)
    correct = np.zeros(B, np.int64)
    blocks = lane_blocks(B, x.dtype)
    scale = _scale(s, m)
    xp = _pad_lanes(x, blocks)
    _forward_blocks(*blocks, scale, m, U, b, V, c, xp, bool(nonlinear), k, h, T - T_out, g,
                    True, y, x.dtype.type(T_out * B), g, loss, correct)
    ds, dU, db, dV = _run_backward(scale, m, U, b, V, xp, g, nonlinear, k, h, T - T_out, blocks,
                                   _input_grad_buffer(x, False))
    grads = {"s": ds, "U": dU, "b": db, "V": dV, "c": g.sum(axis=(0, 2))}
    return float(loss.sum()), int(correct.sum()), grads


def dense_forward(W, U, b, V, c, x, *, nonlinear, many_to_many, h_out=None):
    """Forward pass with a dense ``(n, n)`` recurrent matrix ``W`` (baselines and tests).

    Same arguments and results as :func:`hadamard_forward`, with ``W`` in place of ``s, m``.
    """
    check_ndim(W, 2, "W", "(n, n)")
    n = W.shape[0]
    T, _, B = check_sequence_args(x, V, n, W=W, U=U, b=b, c=c)
    T_out = T if many_to_many else 1
    W, U, b, V, c, x = _contiguous(W, U, b, V, c, x)
    h = _state_buffer(h_out, T, n, B, x.dtype)
    logits = np.empty((T_out, V.shape[0], B), dtype=h.dtype)
    _dense_forward(W, U, b, V, c, x, bool(nonlinear), h, logits)
    return h, logits


def dense_backward(W, U, V, x, h, g, *, nonlinear, input_grad=False):
    """BPTT for :func:`dense_forward`; returns gradients ``W``, ``U``, ``b``, ``V``, ``c``
    (and ``x`` with ``input_grad``, as in :func:`hadamard_backward`)."""
    check_ndim(W, 2, "W", "(n, n)")
    n = W.shape[0]
    check_sequence_args(x, V, n, W=W, U=U, h=h, g=g)
    W, V, h, g = _contiguous(W, V, h, g)
    x_T = np.ascontiguousarray(x.transpose(0, 2, 1))
    grads = {"W": np.zeros_like(W), "U": np.zeros_like(U), "b": np.zeros(n, x.dtype),
             "V": np.zeros_like(V)}
    dx = _input_grad_buffer(x, input_grad)
    _dense_backward(W, np.ascontiguousarray(U.T), V, x_T, h, g, bool(nonlinear),
                    grads["U"], grads["W"], grads["b"], grads["V"], dx)
    grads["c"] = g.sum(axis=(0, 2))
    if input_grad:
        grads["x"] = dx
    return grads


# ---------------------------------------------------------------------------------------
# One inference step for one sequence (batch 1), validated once
# ---------------------------------------------------------------------------------------

_STEP_HEADER = 5   # n, m, d_in, d_out, nonlinear: the first entries of the packed weights


def hadamard_step_weights(s, m, U, b, V, c, *, nonlinear):
    """Validate the weights of a float HadamRNN once and pack them for :func:`hadamard_step`.

    Parameters
    ----------
    s, m, U, b, V, c, nonlinear : as in :func:`hadamard_forward` (float32 or float64)

    Returns
    -------
    weights : 1-D array of the dtype of ``s``: ``[n, m, d_in, d_out, nonlinear]`` then
        ``s / sqrt(m)`` (n), ``b`` (n), ``U^T`` (d_in * n), ``V`` (d_out * n), ``c``
        (d_out). One array, so a step call converts four arguments, not nine.
    """
    n = check_power_of_two(s.shape[0], "hidden size n")
    m = check_block_size(n, m)
    if s.dtype not in (np.float32, np.float64):
        raise TypeError(f"s must be float32 or float64, got dtype {s.dtype}")
    check_ndim(U, 2, "U", "(n, d_in)")
    check_ndim(V, 2, "V", "(d_out, n)")
    d_in, d_out = U.shape[1], V.shape[0]
    for name, a, shape in (("U", U, (n, d_in)), ("b", b, (n,)), ("V", V, (d_out, n)),
                           ("c", c, (d_out,))):
        if a.shape != shape:
            raise ShapeError(f"{name} has shape {a.shape}, expected {shape}")
        if a.dtype != s.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but s has dtype {s.dtype}")
        check_finite(a, name)
    header = np.array([n, m, d_in, d_out, bool(nonlinear)], dtype=s.dtype)
    return np.concatenate([header, _scale(s, m), b, U.T.ravel(), V.ravel(), c])


@numba.njit(cache=True)
def hadamard_step(weights, h, x, logits):
    """One HadamRNN step for one sequence, in place: the lean inference path.

    ``h <- act(diag(s) (I ⊗ S_m) h / sqrt(m) + U x + b)``, then ``logits = V relu(h) + c``.

    Parameters
    ----------
    weights : packed weights from :func:`hadamard_step_weights`
    h : (n,) state, C-contiguous, the dtype of ``weights``; updated in place (start from
        zeros)
    x : (d_in,) input of this step
    logits : (d_out,) output, overwritten

    Raises
    ------
    ShapeError
        If ``h``, ``x`` or ``logits`` has the wrong size (the only checks made per call).

    Notes
    -----
    For up to four inputs the state update performs the operations of
    :func:`hadamard_forward` (the same states, bit for bit; with more inputs the sequence
    kernel computes ``U x`` by BLAS). The readout's sums are reassociated into vector
    partial sums, so the logits equal the sequence kernel's within float rounding.
    """
    n = int(weights[0])
    m = int(weights[1])
    d_in = int(weights[2])
    d_out = int(weights[3])
    nonlinear = weights[4] != 0
    if h.shape[0] != n or x.shape[0] != d_in or logits.shape[0] != d_out:
        raise ShapeError("hadamard_step: h, x, logits must have sizes n, d_in, d_out")
    o0 = _STEP_HEADER
    scale = weights[o0:o0 + n]
    b = weights[o0 + n:o0 + 2 * n]
    U_T = weights[o0 + 2 * n:o0 + (2 + d_in) * n]
    V = weights[o0 + (2 + d_in) * n:o0 + (2 + d_in + d_out) * n]
    c = weights[o0 + (2 + d_in + d_out) * n:]
    fwht_columns_inplace(h.reshape((n, 1)), m)
    # As _update_inplace: (scale_i * Sh_i + b_i) + (U x)_i, inputs summed in order.
    for i in range(n):
        d = U_T[i] * x[0]
        for k in range(1, d_in):
            d += U_T[k * n + i] * x[k]
        v = scale[i] * h[i] + b[i] + d
        if nonlinear:
            v = max(v, 0)
        h[i] = v
    _step_readout(V, c, h, logits)


# Reassociation lets LLVM split each dot product into vector partial sums (a fixed order
# for the compiled code, so results repeat run to run); the readout is compared with its
# twin within float tolerance, never bit for bit.
@numba.njit(cache=True, fastmath={"reassoc"})
def _step_readout(V, c, h, logits):
    """``logits[o] = c[o] + sum_i V[o, i] relu(h_i)`` (``V`` flat (d_out * n))."""
    n = h.shape[0]
    for o in range(logits.shape[0]):
        acc = h.dtype.type(0)
        for i in range(n):
            acc += V[o * n + i] * max(h[i], h.dtype.type(0))
        logits[o] = c[o] + acc
