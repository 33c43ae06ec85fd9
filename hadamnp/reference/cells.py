"""Plain-NumPy reference of the gated-cell sequence kernels: vanilla RNN, GRU, LSTM.

Reference twins of :mod:`hadamnp.kernels.cells` (same signatures, same layout, same stored
states), written for readability: one Python iteration per time step, NumPy's ``tanh`` and
``exp``. Equations (``σ`` the logistic sigmoid, ``⊙`` elementwise, ``h_{-1} = c_{-1} = 0``)::

    rnn    h_t = tanh(W_x x_t + W_h h_{t-1} + b)

    gru    r_t = σ(W_xr x_t + W_hr h_{t-1} + b_r)
           u_t = σ(W_xu x_t + W_hu h_{t-1} + b_u)
           c_t = tanh(W_xc x_t + b_c + r_t ⊙ (W_hc h_{t-1}))          (the Lasagne form)
           h_t = (1 - u_t) ⊙ h_{t-1} + u_t ⊙ c_t

    lstm   i_t = σ(W_xi x_t + W_hi h_{t-1} + b_i [+ p_i ⊙ c_{t-1}])
           f_t = σ(W_xf x_t + W_hf h_{t-1} + b_f [+ p_f ⊙ c_{t-1}])
           g_t = tanh(W_xg x_t + W_hg h_{t-1} + b_g)
           c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
           o_t = σ(W_xo x_t + W_ho h_{t-1} + b_o [+ p_o ⊙ c_t])      [peepholes]
           h_t = o_t ⊙ tanh(c_t)

Gate matrices are stacked along their rows, in the gate order above: ``Wx`` is
``(G n, d_in)``, ``Wh`` ``(G n, n)``, ``b`` ``(G n,)`` with ``G`` = 1 (rnn), 3 (gru: r, u,
c), 4 (lstm: i, f, g, o); the peephole vectors are the rows of ``p`` ``(3, n)`` (i, f, o).

Layout: time-major, batch second: ``x`` ``(T, B, d_in)``, states ``(T, B, n)``, gates
``(T, B, G n)``, so every matrix product over all steps is one product of a ``(T B, .)``
matrix (a free reshape). The upstream gradient ``dH`` is ``(T, B, n)``, or ``(1, B, n)``
when only the last state is scored.

Stored states (what the backward pass reads): ``h``; gru ``gates`` (r, u, c after their
nonlinearities) and ``hc`` (``W_hc h_{t-1}``); lstm ``gates`` (i, f, g, o after their
nonlinearities), ``c`` and ``tc = tanh(c)``.
"""

import numpy as np

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward"]


def _sigmoid(z):
    with np.errstate(over="ignore"):  # exp(-z) = inf for very negative z gives exactly 0
        return 1 / (1 + np.exp(-z))


def _states(out, shapes, dtype):
    return {name: np.empty(shape, dtype) if out is None else out[name]
            for name, shape in shapes.items()}


def _upstream(dH, t, T):
    """``dL/dh_t`` from outside the recurrence (zeros before the scored steps)."""
    first = T - dH.shape[0]
    return dH[t - first] if t >= first else 0


def _finish(grads, dZ, Wx, x, input_grad):
    """Input-side gradients from the pre-activation gradients ``dZ`` (T, B, G n)."""
    T, B, d_in = x.shape
    flat = dZ.reshape(T * B, -1)
    grads["Wx"] = flat.T @ x.reshape(T * B, d_in)
    grads["b"] = flat.sum(axis=0)
    if input_grad:
        grads["x"] = (flat @ Wx).reshape(T, B, d_in)
    return grads


def rnn_forward(Wx, Wh, b, x, *, out=None):
    """Vanilla tanh RNN over a whole sequence.

    Parameters
    ----------
    Wx : (n, d_in) input weights (already quantized)
    Wh : (n, n) recurrent weights
    b : (n,) bias
    x : (T, B, d_in) inputs
    out : dict, optional
        Buffers to write the states into (``h`` (T, B, n)).

    Returns
    -------
    dict ``{"h": (T, B, n)}``
    """
    T, B, _ = x.shape
    n = Wh.shape[0]
    s = _states(out, {"h": (T, B, n)}, x.dtype)
    prev = np.zeros((B, n), x.dtype)
    for t in range(T):
        prev = np.tanh(x[t] @ Wx.T + prev @ Wh.T + b)
        s["h"][t] = prev
    return s


def rnn_backward(Wx, Wh, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`rnn_forward`.

    Parameters
    ----------
    Wx, Wh, x : as in :func:`rnn_forward`
    states : dict returned by :func:`rnn_forward`
    dH : (T, B, n) or (1, B, n) gradient of the loss w.r.t. the states (last step only)
    input_grad : bool, also return ``x`` (T, B, d_in)
    work : ignored (the compiled twin's workspace)

    Returns
    -------
    dict with ``Wx``, ``Wh``, ``b`` (and ``x``).
    """
    h = states["h"]
    T, B, _ = x.shape
    n = Wh.shape[0]
    dZ = np.zeros((T, B, n), x.dtype)
    carry = np.zeros((B, n), x.dtype)   # dL/dh_t through h_{t+1}
    for t in range(T - 1, -1, -1):
        dZ[t] = (_upstream(dH, t, T) + carry) * (1 - h[t] ** 2)
        carry = dZ[t] @ Wh
    grads = {"Wh": _recurrent_grad(dZ, h)}
    return _finish(grads, dZ, Wx, x, input_grad)


def _recurrent_grad(dZ, h):
    """``sum_t dZ_t^T h_{t-1}`` (G n, n), with ``h_{-1} = 0``."""
    T, B, n = h.shape
    if T == 1:
        return np.zeros((dZ.shape[2], n), h.dtype)
    return dZ[1:].reshape((T - 1) * B, -1).T @ h[:-1].reshape((T - 1) * B, n)


def gru_forward(Wx, Wh, b, x, *, out=None):
    """GRU (Lasagne form, reset gate on ``W_hc h_{t-1}``) over a whole sequence.

    Parameters
    ----------
    Wx : (3n, d_in), Wh : (3n, n), b : (3n,)
        Stacked gate matrices and biases, gate order r, u, c.
    x : (T, B, d_in)
    out : dict, optional, buffers ``h`` (T, B, n), ``gates`` (T, B, 3n), ``hc`` (T, B, n)

    Returns
    -------
    dict ``h``, ``gates`` (r, u, c after the nonlinearities), ``hc`` (``W_hc h_{t-1}``)
    """
    T, B, _ = x.shape
    n = Wh.shape[1]
    s = _states(out, {"h": (T, B, n), "gates": (T, B, 3 * n), "hc": (T, B, n)}, x.dtype)
    prev = np.zeros((B, n), x.dtype)
    for t in range(T):
        zx = x[t] @ Wx.T + b
        zh = prev @ Wh.T
        r = _sigmoid(zx[:, :n] + zh[:, :n])
        u = _sigmoid(zx[:, n:2 * n] + zh[:, n:2 * n])
        c = np.tanh(zx[:, 2 * n:] + r * zh[:, 2 * n:])
        prev = (1 - u) * prev + u * c
        s["gates"][t] = np.concatenate([r, u, c], axis=1)
        s["hc"][t] = zh[:, 2 * n:]
        s["h"][t] = prev
    return s


def gru_backward(Wx, Wh, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`gru_forward`; arguments as :func:`rnn_backward`.

    Returns
    -------
    dict with ``Wx`` (3n, d_in), ``Wh`` (3n, n), ``b`` (3n,) (and ``x``).
    """
    h, gates, hc = states["h"], states["gates"], states["hc"]
    T, B, _ = x.shape
    n = Wh.shape[1]
    dZx = np.zeros((T, B, 3 * n), x.dtype)   # w.r.t. W_x x_t + b
    dZh = np.zeros((T, B, 3 * n), x.dtype)   # w.r.t. W_h h_{t-1}
    carry = np.zeros((B, n), x.dtype)
    for t in range(T - 1, -1, -1):
        r, u, c = gates[t, :, :n], gates[t, :, n:2 * n], gates[t, :, 2 * n:]
        prev = h[t - 1] if t > 0 else np.zeros((B, n), x.dtype)
        dh = _upstream(dH, t, T) + carry
        dc = dh * u * (1 - c ** 2)                    # w.r.t. the pre-activation of c
        dr = dc * hc[t] * r * (1 - r)
        du = dh * (c - prev) * u * (1 - u)
        dZx[t] = np.concatenate([dr, du, dc], axis=1)
        dZh[t] = np.concatenate([dr, du, dc * r], axis=1)
        carry = dh * (1 - u) + dZh[t] @ Wh
    grads = {"Wh": _recurrent_grad(dZh, h)}
    return _finish(grads, dZx, Wx, x, input_grad)


def lstm_forward(Wx, Wh, b, p, x, *, out=None):
    """LSTM over a whole sequence.

    Parameters
    ----------
    Wx : (4n, d_in), Wh : (4n, n), b : (4n,)
        Stacked gate matrices and biases, gate order i, f, g, o.
    p : (3, n) peephole vectors (rows i, f, o), or None (no peepholes)
    x : (T, B, d_in)
    out : dict, optional, buffers ``h``, ``c``, ``tc`` (T, B, n), ``gates`` (T, B, 4n)

    Returns
    -------
    dict ``h``, ``c``, ``tc`` (= tanh(c)), ``gates`` (i, f, g, o after the nonlinearities)
    """
    T, B, _ = x.shape
    n = Wh.shape[1]
    s = _states(out, {"h": (T, B, n), "c": (T, B, n), "tc": (T, B, n),
                      "gates": (T, B, 4 * n)}, x.dtype)
    h_prev = np.zeros((B, n), x.dtype)
    c_prev = np.zeros((B, n), x.dtype)
    for t in range(T):
        z = x[t] @ Wx.T + h_prev @ Wh.T + b
        zi, zf, zg, zo = (z[:, k * n:(k + 1) * n] for k in range(4))
        if p is not None:
            zi, zf = zi + p[0] * c_prev, zf + p[1] * c_prev
        i, f, g = _sigmoid(zi), _sigmoid(zf), np.tanh(zg)
        c_prev = f * c_prev + i * g
        o = _sigmoid(zo + p[2] * c_prev if p is not None else zo)
        s["tc"][t] = np.tanh(c_prev)
        h_prev = o * s["tc"][t]
        s["gates"][t] = np.concatenate([i, f, g, o], axis=1)
        s["c"][t], s["h"][t] = c_prev, h_prev
    return s


def lstm_backward(Wx, Wh, p, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`lstm_forward`; arguments as :func:`rnn_backward`, plus ``p``.

    Returns
    -------
    dict with ``Wx`` (4n, d_in), ``Wh`` (4n, n), ``b`` (4n,), ``p`` (3, n) when ``p`` is
    given (and ``x``).
    """
    h, c, tc, gates = states["h"], states["c"], states["tc"], states["gates"]
    T, B, _ = x.shape
    n = Wh.shape[1]
    dZ = np.zeros((T, B, 4 * n), x.dtype)
    dp = np.zeros((3, n), x.dtype)
    carry_h = np.zeros((B, n), x.dtype)   # dL/dh_t through step t+1
    carry_c = np.zeros((B, n), x.dtype)   # dL/dc_t through step t+1
    for t in range(T - 1, -1, -1):
        i, f, g, o = (gates[t, :, k * n:(k + 1) * n] for k in range(4))
        c_prev = c[t - 1] if t > 0 else np.zeros((B, n), x.dtype)
        dh = _upstream(dH, t, T) + carry_h
        do = dh * tc[t] * o * (1 - o)
        dc = carry_c + dh * o * (1 - tc[t] ** 2)
        if p is not None:
            dc = dc + do * p[2]
        di = dc * g * i * (1 - i)
        df = dc * c_prev * f * (1 - f)
        dg = dc * i * (1 - g ** 2)
        carry_c = dc * f
        if p is not None:
            carry_c = carry_c + di * p[0] + df * p[1]
            dp += np.stack([(di * c_prev).sum(0), (df * c_prev).sum(0), (do * c[t]).sum(0)])
        dZ[t] = np.concatenate([di, df, dg, do], axis=1)
        carry_h = dZ[t] @ Wh
    grads = {"Wh": _recurrent_grad(dZ, h)}
    if p is not None:
        grads["p"] = dp
    return _finish(grads, dZ, Wx, x, input_grad)
