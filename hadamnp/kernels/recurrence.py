"""Numba sequence kernels: the HadamRNN time loop, forward and backward (BPTT).

Reference twins: :mod:`hadamnp.reference.recurrence` (same signatures and equations).
The whole time loop runs in compiled code; the recurrent product ``W h`` is a block FWHT
(``n log2 m`` additions), never a dense ``n x n`` product, for the Hadamard recurrences.

Layout (see :mod:`hadamnp.conventions`): time-major, batch-last. ``x`` ``(T, d_in, B)``,
states ``h`` ``(T, n, B)``, logits and their gradients ``(T_out, d_out, B)`` with
``T_out = T`` when every step is scored and ``1`` when only the last one is. Every
elementwise pass runs over ``B`` contiguous values; small matrix products call BLAS.

Gradients that sum over the batch are accumulated per batch lane and reduced once at the
end, so the inner loops vectorise without reassociating floating-point sums (the kernels
use no ``fastmath`` and are deterministic).
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
    check_store_every,
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


@numba.njit(cache=True, inline="always")
def _next_state(a, scale, m, U, b, x_t, drive, nonlinear):
    """``a <- act(scale * (S_m a) + U x_t + b)`` in place: one step of the recurrence, with
    ``a`` holding ``h_{t-1}`` on entry. The only place a Hadamard state is computed, so
    recomputed states (``store_every > 1``) equal the stored ones bit for bit."""
    fwht_columns_inplace(a, m)
    _input_drive(U, x_t, drive)
    _update_state(a, scale, b, drive, nonlinear)


@numba.njit(cache=True)
def _hadamard_forward(s, m, U, b, V, c, x, nonlinear, every, h, logits):
    T, _, B = x.shape
    n = s.shape[0]
    scale = s / np.sqrt(s.dtype.type(m))  # s_i / sqrt(m): signs and normalisation, once
    first_scored = T - logits.shape[0]
    drive = np.empty((n, B), dtype=h.dtype)  # U x_t
    z = np.empty((n, B), dtype=h.dtype)      # relu(h_t)
    cur = np.empty((n, B), dtype=h.dtype)    # h_t when only every k-th state is kept
    for t in range(T):
        a = h[t] if every == 1 else cur
        if t == 0:
            a[:] = 0
            _input_drive(U, x[t], drive)
            _update_state(a, scale, b, drive, nonlinear)
        else:
            if every == 1:
                a[:] = h[t - 1]
            _next_state(a, scale, m, U, b, x[t], drive, nonlinear)
        if t >= first_scored:
            _readout(V, c, a, z, logits[t - first_scored])
        if every > 1 and (t + 1) % every == 0:
            h[(t + 1) // every - 1] = a


@numba.njit(cache=True)
def _recompute_segment(scale, m, U, b, x, nonlinear, every, h, t0, t1, seg, drive):
    """``seg[t - t0] = h_t`` for ``t0 <= t < t1``, from the stored ``h_{t0-1}``
    (``h[t0 // every - 1]``; zero before the first step)."""
    for t in range(t0, t1):
        a = seg[t - t0]
        if t == 0:
            a[:] = 0
            _input_drive(U, x[t], drive)
            _update_state(a, scale, b, drive, nonlinear)
            continue
        a[:] = seg[t - t0 - 1] if t > t0 else h[t0 // every - 1]
        _next_state(a, scale, m, U, b, x[t], drive, nonlinear)


@numba.njit(cache=True)
def _hadamard_backward(s, m, U, U_T, b, V, x, x_T, h, g, nonlinear, every, dU, ds, db, dV,
                       dx):
    T, B, _ = x_T.shape
    input_grad = dx.shape[0] > 0  # dx: (T, d_in, B), or (0, d_in, B) when not wanted
    n = s.shape[0]
    scale = s / np.sqrt(s.dtype.type(m))
    V_T = np.ascontiguousarray(V.T)
    first_scored = T - g.shape[0]
    delta = np.zeros((n, B), dtype=h.dtype)   # dL/dh_t, then dL/da_t (pre-activation)
    z = np.empty((n, B), dtype=h.dtype)
    back = np.empty((n, B), dtype=h.dtype)
    hh = np.empty((n, B), dtype=h.dtype)      # S h_{t-1}, recomputed from the stored state
    ds_lanes = np.zeros((n, B), dtype=h.dtype)
    db_lanes = np.zeros((n, B), dtype=h.dtype)
    # Every state when all are stored; else one segment of `every` recomputed states.
    seg = np.empty((every if every > 1 else 0, n, B), dtype=h.dtype)
    drive = np.empty((n, B), dtype=h.dtype)
    t0 = T
    for t in range(T - 1, -1, -1):
        if every > 1 and t < t0:
            t0 = (t // every) * every
            _recompute_segment(scale, m, U, b, x, nonlinear, every, h, t0, t + 1, seg, drive)
        h_t = h[t] if every == 1 else seg[t - t0]
        if t >= first_scored:
            _readout_backward(V_T, h_t, g[t - first_scored], z, back, delta, dV)
        if nonlinear:
            _mask_inactive(delta, h_t)
        dU += np.dot(delta, x_T[t])
        if input_grad:
            np.dot(U_T, delta, dx[t])
        if t > 0:
            if every == 1:
                hh[:] = h[t - 1]
            elif t > t0:
                hh[:] = seg[t - t0 - 1]
            else:
                hh[:] = h[t0 // every - 1]
            fwht_columns_inplace(hh, m)
        for i in range(n):
            si = scale[i]
            for j in range(B):
                d = delta[i, j]
                db_lanes[i, j] += d
                if t > 0:
                    ds_lanes[i, j] += d * hh[i, j]
                delta[i, j] = d * si   # W^T delta = S (s ⊙ delta) / sqrt(m)
        fwht_columns_inplace(delta, m)
    inv_sqrt_m = 1 / np.sqrt(h.dtype.type(m))
    for i in range(n):
        ds[i] = ds_lanes[i].sum() * inv_sqrt_m
        db[i] = db_lanes[i].sum()


@numba.njit(cache=True)
def _hadamard_states(s, m, U, b, x, nonlinear, every, h, out):
    """All ``T`` states from every ``k``-th one, segment by segment (as the backward)."""
    T, _, B = x.shape
    scale = s / np.sqrt(s.dtype.type(m))
    drive = np.empty((s.shape[0], B), dtype=h.dtype)
    for t0 in range(0, T, every):
        _recompute_segment(scale, m, U, b, x, nonlinear, every, h, t0, min(T, t0 + every),
                           out[t0:], drive)


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
    h_out : (T, n, B) array, optional
        Buffer to write the states into (reused across batches to avoid page faults):
        C-contiguous, writable, the dtype of ``x``.
    store_every : int >= 1
        Keep only every ``k``-th state (``h_{k-1}, h_{2k-1}, ...``): ``T // k`` states
        instead of ``T``, the others recomputed exactly by :func:`hadamard_backward` (about
        one more forward pass of work). ``k ≈ sqrt(T)`` minimises memory.

    Returns
    -------
    h : (T // store_every, n, B) states (all ``T`` with the default ``store_every = 1``)
    logits : (T_out, d_out, B)

    Raises
    ------
    TypeError
        Non-float32/float64 ``x``, another dtype elsewhere, or an ``h_out`` that is not an
        array of that dtype.
    ShapeError, SizeError, NonFiniteError, ValueError
        Wrong shapes; ``n``/``m`` not powers of two; NaN/Inf in ``x``; an ``h_out`` that is
        not C-contiguous or is read-only. The reference twin raises the same errors.
    """
    n = check_power_of_two(s.shape[0], "hidden size n")
    m = check_block_size(n, m)
    every = check_store_every(store_every)
    T, _, B = check_sequence_args(x, V, n, s=s, U=U, b=b, c=c)
    T_out = T if many_to_many else 1
    s, U, b, V, c, x = _contiguous(s, U, b, V, c, x)
    h = _state_buffer(h_out, T // every, n, B, x.dtype)
    logits = np.empty((T_out, V.shape[0], B), dtype=h.dtype)
    _hadamard_forward(s, m, U, b, V, c, x, bool(nonlinear), every, h, logits)
    return h, logits


def _input_grad_buffer(x, input_grad):
    """``dx`` (T, d_in, B) when the input gradient is wanted, else an empty (0, d_in, B)."""
    T, d_in, B = x.shape
    return np.zeros((T if input_grad else 0, d_in, B), dtype=x.dtype)


def hadamard_backward(s, m, U, V, x, h, g, *, nonlinear, input_grad=False, store_every=1,
                      b=None):
    """Backpropagation through time for :func:`hadamard_forward`.

    Parameters
    ----------
    s, m, U, V, x : as in :func:`hadamard_forward`
    h : (T // store_every, n, B) states from the forward pass
    g : (T_out, d_out, B) gradient of the loss with respect to the logits
    input_grad : bool
        Also return ``x``: the gradient with respect to the inputs, ``U^T dL/da_t``
        (T, d_in, B) (an embedding or a lower layer below this one needs it).
    store_every : int, as given to :func:`hadamard_forward`
        With ``k > 1`` each segment of ``k`` states is recomputed from the stored one before
        it, by the forward pass's own code: the gradients equal those of ``k = 1`` bit for
        bit.
    b : (n,) recurrent bias, needed to recompute states when ``store_every > 1``

    Returns
    -------
    dict of gradients: ``s`` (n,) (``s`` treated as continuous), ``U`` (n, d_in),
    ``b`` (n,), ``V`` (d_out, n), ``c`` (d_out,), and ``x`` with ``input_grad``.
    """
    n = check_power_of_two(s.shape[0], "hidden size n")
    m = check_block_size(n, m)
    every = check_store_every(store_every)
    if b is None:
        if every > 1:
            raise ConfigError("hadamard_backward needs the bias b to recompute states when "
                              "store_every > 1")
        b = np.zeros(n, dtype=getattr(x, "dtype", None))
    check_sequence_args(x, V, n, store_every=every, s=s, U=U, b=b, h=h, g=g)
    s, U, b, V, x, h, g = _contiguous(s, U, b, V, x, h, g)
    x_T = np.ascontiguousarray(x.transpose(0, 2, 1))  # (T, B, d_in): fast BLAS operand
    grads = {"s": np.zeros(n, x.dtype), "U": np.zeros_like(U), "b": np.zeros(n, x.dtype),
             "V": np.zeros_like(V)}
    dx = _input_grad_buffer(x, input_grad)
    _hadamard_backward(s, m, U, np.ascontiguousarray(U.T), b, V, x, x_T, h, g,
                       bool(nonlinear), every, grads["U"], grads["s"], grads["b"], grads["V"],
                       dx)
    grads["c"] = g.sum(axis=(0, 2))
    if input_grad:
        grads["x"] = dx
    return grads


def hadamard_states(s, m, U, b, x, h, *, nonlinear, store_every):
    """All ``T`` states of a forward pass that kept every ``k``-th one.

    Parameters
    ----------
    s, m, U, b, x, nonlinear : as in :func:`hadamard_forward`
    h : (T // store_every, n, B) the stored states
    store_every : int

    Returns
    -------
    (T, n, B) states, equal bit for bit to those of ``store_every = 1``.
    """
    n = check_power_of_two(s.shape[0], "hidden size n")
    m = check_block_size(n, m)
    every = check_store_every(store_every)
    T, _, B = check_sequence_args(x, U.T, n, store_every=every, s=s, U=U, b=b, h=h)
    s, U, b, x, h = _contiguous(s, U, b, x, h)
    out = np.empty((T, n, B), dtype=x.dtype)
    _hadamard_states(s, m, U, b, x, bool(nonlinear), every, h, out)
    return out


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
    scale = s / np.sqrt(s.dtype.type(m))  # as the sequence kernels: s_i / sqrt(m)
    return np.concatenate([header, scale, b, U.T.ravel(), V.ravel(), c])


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
    # As _input_drive then _update_state: (scale_i * Sh_i + b_i) + (U x)_i, inputs summed
    # in order.
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
