"""Plain-NumPy reference of the HadamRNN sequence kernels (forward and BPTT).

Reference twins of :mod:`hadamnp.kernels.recurrence`: same signatures, same kernel layout
(time-major, batch-last), written for readability with a dense recurrent matrix and one
Python iteration per time step.

Model (``W`` orthogonal; ``s = sign(u)``; ``S`` block-Sylvester with block size ``m``)::

    W     = diag(s) S / sqrt(m)                       (or any dense n x n matrix)
    a_t   = W h_{t-1} + U x_t + b,    h_0 = 0
    h_t   = a_t            (linear)    or relu(a_t)    (nonlinear)
    y_t   = V relu(h_t) + c           (every t, or only t = T)

Layout: ``x`` ``(T, d_in, B)``, ``h`` ``(T, n, B)``, logits and their gradients
``(T_out, d_out, B)`` with ``T_out = T`` (many-to-many) or ``1`` (many-to-one).

Arguments are checked as by the kernels (:func:`hadamnp._checks.check_sequence_args`):
float32 or float64 arrays of one dtype and the documented shapes, finite ``x``, and an
``h_out`` that is a C-contiguous writable array of the states' shape and dtype.
"""

import numpy as np

from hadamnp._checks import (
    check_block_size,
    check_ndim,
    check_power_of_two,
    check_sequence_args,
    check_state_buffer,
    check_store_every,
)
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.reference.hadamard import block_hadamard


def hadamard_matrix(s, m):
    """Dense ``W = diag(s) (I ⊗ S_m) / sqrt(m)`` of shape ``(n, n)``, dtype of ``s``."""
    n = s.shape[0]
    return (s[:, None] * block_hadamard(n, m, s.dtype)) / np.sqrt(s.dtype.type(m))


def dense_forward(W, U, b, V, c, x, *, nonlinear, many_to_many, h_out=None):
    """Run the recurrence with a dense recurrent matrix.

    Parameters
    ----------
    W : (n, n) recurrent matrix
    U : (n, d_in) input matrix (already quantized)
    b : (n,) recurrent bias
    V : (d_out, n) output matrix (already quantized)
    c : (d_out,) output bias
    x : (T, d_in, B) inputs
    nonlinear : bool, apply relu inside the recurrence
    many_to_many : bool, score every step (else only the last)
    h_out : (T, n, B) array, optional, buffer for the states (C-contiguous, writable, the
        dtype of ``x``)

    Returns
    -------
    h : (T, n, B) states ``h_t``
    logits : (T_out, d_out, B)
    """
    check_ndim(W, 2, "W", "(n, n)")
    n = W.shape[0]
    T, _, B = check_sequence_args(x, V, n, W=W, U=U, b=b, c=c)
    if h_out is not None:
        check_state_buffer(h_out, (T, n, B), x.dtype)
    h = np.zeros((T, n, B), dtype=x.dtype) if h_out is None else h_out
    prev = np.zeros((n, B), dtype=x.dtype)
    for t in range(T):
        a = W @ prev + U @ x[t] + b[:, None]
        prev = np.maximum(a, 0) if nonlinear else a
        h[t] = prev
    scored = h if many_to_many else h[-1:]
    logits = V @ np.maximum(scored, 0) + c[:, None]
    return h, logits


def dense_backward(W, U, V, x, h, g, *, nonlinear, input_grad=False):
    """Backpropagation through time for :func:`dense_forward`.

    Parameters
    ----------
    W, U, V, x, h : as in :func:`dense_forward` (``h`` from the forward pass)
    g : (T_out, d_out, B) gradient of the loss with respect to the logits
    input_grad : bool, also return ``x``, the gradient w.r.t. the inputs (T, d_in, B)

    Returns
    -------
    dict with ``W`` (n, n), ``U`` (n, d_in), ``b`` (n,), ``V`` (d_out, n), ``c`` (d_out,),
    the gradients of the loss with respect to the matrices actually used (and ``x``).
    """
    check_ndim(W, 2, "W", "(n, n)")
    n = W.shape[0]
    T, _, B = check_sequence_args(x, V, n, W=W, U=U, h=h, g=g)
    first_scored = T - g.shape[0]
    grads = {name: np.zeros_like(p) for name, p in (("W", W), ("U", U), ("V", V))}
    grads["b"] = np.zeros(n, dtype=x.dtype)
    grads["c"] = g.sum(axis=(0, 2))
    delta = np.zeros((n, B), dtype=x.dtype)  # dL/dh_t, accumulated from step t+1
    dx = np.zeros_like(x)
    for t in range(T - 1, -1, -1):
        if t >= first_scored:
            g_t = g[t - first_scored]
            grads["V"] += g_t @ np.maximum(h[t], 0).T
            delta = delta + (h[t] > 0) * (V.T @ g_t)
        dpre = delta * (h[t] > 0) if nonlinear else delta  # dL/da_t
        prev = h[t - 1] if t > 0 else np.zeros((n, B), dtype=x.dtype)
        grads["W"] += dpre @ prev.T
        grads["U"] += dpre @ x[t].T
        grads["b"] += dpre.sum(axis=1)
        dx[t] = U.T @ dpre
        delta = W.T @ dpre
    if input_grad:
        grads["x"] = dx
    return grads


def hadamard_forward(s, m, U, b, V, c, x, *, nonlinear, many_to_many, h_out=None,
                     store_every=1):
    """:func:`dense_forward` with ``W = diag(s) (I ⊗ S_m) / sqrt(m)``; ``s`` (n,) in {-1, +1}.

    With ``store_every = k > 1`` only ``h_{k-1}, h_{2k-1}, ...`` are returned
    (``T // k`` states).
    """
    m = check_block_size(check_power_of_two(s.shape[0], "hidden size n"), m)
    every = check_store_every(store_every)
    check_sequence_args(x, V, s.shape[0], s=s, U=U, b=b, c=c)
    h, logits = dense_forward(hadamard_matrix(s, m), U, b, V, c, x, nonlinear=nonlinear,
                              many_to_many=many_to_many,
                              h_out=h_out if every == 1 else None)
    if every == 1:
        return h, logits
    kept = h[every - 1::every][:x.shape[0] // every]
    if h_out is None:
        return kept.copy(), logits
    check_state_buffer(h_out, kept.shape, x.dtype)
    h_out[...] = kept
    return h_out, logits


def hadamard_states(s, m, U, b, x, h, *, nonlinear, store_every):
    """All ``T`` states from every ``k``-th one: segment ``c`` (steps ``ck .. ck + k - 1``)
    restarts from the stored ``h_{ck-1}`` (zero before the first step)."""
    m = check_block_size(check_power_of_two(s.shape[0], "hidden size n"), m)
    every = check_store_every(store_every)
    check_sequence_args(x, U.T, s.shape[0], store_every=every, s=s, U=U, b=b, h=h)
    W = hadamard_matrix(s, m)
    T = x.shape[0]
    full = np.empty((T, W.shape[0], x.shape[2]), dtype=x.dtype)
    for t in range(T):
        if t % every == 0:
            prev = np.zeros_like(full[0]) if t == 0 else h[t // every - 1]
        a = W @ prev + U @ x[t] + b[:, None]
        prev = np.maximum(a, 0) if nonlinear else a
        full[t] = prev
    return full


def hadamard_backward(s, m, U, V, x, h, g, *, nonlinear, input_grad=False, store_every=1,
                      b=None):
    """BPTT for :func:`hadamard_forward`; returns ``s`` (n,) in place of ``W``.

    ``dL/ds_i = sum_j dL/dW_ij * dW_ij/ds_i`` treats ``s`` as continuous (the quantity the
    straight-through estimator passes on to the latent ``u``). With ``store_every > 1``,
    ``h`` holds every ``k``-th state and the bias ``b`` is needed to rebuild the others.
    """
    m = check_block_size(check_power_of_two(s.shape[0], "hidden size n"), m)
    every = check_store_every(store_every)
    if every > 1:
        if b is None:
            raise ConfigError("hadamard_backward needs the bias b to recompute states when "
                              "store_every > 1")
        h = hadamard_states(s, m, U, b, x, h, nonlinear=nonlinear, store_every=every)
    check_sequence_args(x, V, s.shape[0], s=s, U=U, h=h, g=g)
    grads = dense_backward(hadamard_matrix(s, m), U, V, x, h, g, nonlinear=nonlinear,
                           input_grad=input_grad)
    dW = grads.pop("W")
    # W_ij = s_i B_ij / sqrt(m), so dW_ij/ds_i = B_ij / sqrt(m).
    grads["s"] = np.sum(dW * block_hadamard(s.shape[0], m, s.dtype), axis=1) / np.sqrt(s.dtype.type(m))
    return grads


def hadamard_step(weights, h, x, logits):
    """One step for one sequence, in place (twin of the compiled lean inference step).

    ``weights`` is the packed array of :func:`hadamnp.kernels.recurrence.hadamard_step_weights`:
    ``[n, m, d_in, d_out, nonlinear]``, ``s / sqrt(m)`` (n), ``b`` (n), ``U^T`` (d_in, n),
    ``V`` (d_out, n), ``c`` (d_out). ``h`` (n,) is updated to
    ``act(diag(s) (I ⊗ S_m) h / sqrt(m) + U x + b)`` and ``logits`` (d_out,) receives
    ``V relu(h) + c``.
    """
    n, m, d_in, d_out = (int(v) for v in weights[:4])
    nonlinear = bool(weights[4])
    scale, b, U_T, V, c = np.split(weights[5:], np.cumsum([n, n, d_in * n, d_out * n]))
    a = scale * (block_hadamard(n, m, weights.dtype) @ h) + b + U_T.reshape(d_in, n).T @ x
    h[...] = np.maximum(a, 0) if nonlinear else a
    logits[...] = V.reshape(d_out, n) @ np.maximum(h, 0) + c
