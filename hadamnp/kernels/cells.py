"""Numba sequence kernels of the gated cells: vanilla RNN, GRU and LSTM, forward and BPTT.

Reference twins: :mod:`hadamnp.reference.cells` (same signatures, equations, layout and
stored states; read its docstring for the equations). The whole time loop runs in compiled
code. Per step:

- forward: the input drive ``x_t W_x^T + b`` (explicit loops for ``d_in <= 4``, where a
  BLAS call costs more than the arithmetic, else one BLAS product), the recurrent product
  ``h_{t-1} W_h^T`` of *all* gates at once (one ``(B, n) x (n, G n)`` BLAS product), then
  one fused pass over ``(B, n)`` computing every gate, the cell state and ``h_t``;
- backward: one fused elementwise pass giving the pre-activation gradients ``dZ_t`` of all
  gates, then one BLAS product ``dZ_t W_h`` for the gradient reaching ``h_{t-1}``.

The weight gradients need no per-step work: after the loop they are single BLAS products
over all ``T B`` rows (``dW_h = sum_t dZ_t^T h_{t-1}``, ``dW_x = dZ^T X``, ``dx = dZ W_x``).
That is why the layout is time-major with the batch second, ``(T, B, .)``: those products
read the stored arrays as ``(T B, .)`` matrices without copying.

Activations: ``σ(z) = 1 / (1 + exp(-z))`` and ``tanh(z) = -sign(z) e / (2 + e)`` with
``e = expm1(-2|z|)`` (libm ``exp``/``expm1``; ``math.tanh`` measured 2.5x slower here).
No ``fastmath``: the kernels agree with the NumPy twins to rounding.
"""

import math

import numba
import numpy as np

from hadamnp._checks import check_finite, check_float, check_ndim
from hadamnp.errors import ShapeError

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward", "GATES", "state_shapes", "workspace_shape"]

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
SMALL_INPUT = 4   # d_in up to this: the input drive in explicit loops


@numba.njit(cache=True, inline="always")
def _sigmoid(z, one):
    return one / (one + math.exp(-z))


@numba.njit(cache=True, inline="always")
def _tanh(z, one):
    e = math.expm1(-(one + one) * abs(z))
    t = -e / (one + one + e)
    return t if z >= 0 else -t


@numba.njit(cache=True, inline="always")
def _flush_level(dtype):
    """``sqrt`` of the smallest normal number of ``dtype`` (about 1e-19 in float32)."""
    return dtype.type(math.sqrt(np.finfo(dtype).tiny))


@numba.njit(cache=True, inline="always")
def _ftz(v, tiny):
    """``v``, or 0 when ``|v| < tiny`` (see the module docstring: no subnormal numbers)."""
    return v if abs(v) >= tiny else v * 0


@numba.njit(cache=True)
def _input_drive(x_t, WxT, b, out):
    """``out = x_t @ WxT + b`` for ``x_t`` (B, d_in), ``WxT`` (d_in, G n), ``out`` (B, G n)."""
    B, d_in = x_t.shape
    width = out.shape[1]
    if d_in > SMALL_INPUT:
        np.dot(x_t, WxT, out)
        for j in range(B):
            for k in range(width):
                out[j, k] += b[k]
        return
    for j in range(B):
        for k in range(width):
            out[j, k] = b[k]
        for q in range(d_in):
            xq = x_t[j, q]
            for k in range(width):
                out[j, k] += xq * WxT[q, k]


@numba.njit(cache=True)
def _rnn_forward(WxT, WhT, b, x, h, zx, zh):
    T, B, _ = x.shape
    n = WhT.shape[0]
    one = x.dtype.type(1)
    tiny = _flush_level(x.dtype)
    for t in range(T):
        _input_drive(x[t], WxT, b, zx)
        if t > 0:
            np.dot(h[t - 1], WhT, zh)
            zx += zh
        for j in range(B):
            for k in range(n):
                h[t, j, k] = _ftz(_tanh(zx[j, k], one), tiny)


@numba.njit(cache=True)
def _rnn_backward(Wh, h, dH, dZ, carry):
    T, B, n = h.shape
    one = h.dtype.type(1)
    tiny = _flush_level(h.dtype)
    first = T - dH.shape[0]
    carry[:] = 0
    for t in range(T - 1, -1, -1):
        for j in range(B):
            for k in range(n):
                d = carry[j, k]
                if t >= first:
                    d += dH[t - first, j, k]
                ht = h[t, j, k]
                dZ[t, j, k] = _ftz(d * (one - ht * ht), tiny)
        if t > 0:
            np.dot(dZ[t], Wh, carry)


@numba.njit(cache=True)
def _gru_forward(WxT, WhT, b, x, h, gates, hc, zx, zh):
    T, B, _ = x.shape
    n = WhT.shape[0]
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    tiny = _flush_level(x.dtype)
    for t in range(T):
        _input_drive(x[t], WxT, b, zx)
        if t > 0:
            np.dot(h[t - 1], WhT, zh)
        g = gates[t]
        for j in range(B):
            for k in range(n):
                if t > 0:
                    ar, au, prev = zh[j, k], zh[j, n + k], h[t - 1, j, k]
                    ac = _ftz(zh[j, 2 * n + k], tiny)
                else:
                    ar = au = ac = prev = zero
                r = _ftz(_sigmoid(zx[j, k] + ar, one), tiny)
                u = _ftz(_sigmoid(zx[j, n + k] + au, one), tiny)
                c = _ftz(_tanh(zx[j, 2 * n + k] + r * ac, one), tiny)
                g[j, k] = r
                g[j, n + k] = u
                g[j, 2 * n + k] = c
                hc[t, j, k] = ac
                h[t, j, k] = _ftz((one - u) * prev + u * c, tiny)


@numba.njit(cache=True)
def _gru_backward(Wh, h, gates, hc, dH, dZx, dZh, carry, back):
    T, B, n = h.shape
    one = h.dtype.type(1)
    zero = h.dtype.type(0)
    tiny = _flush_level(h.dtype)
    first = T - dH.shape[0]
    carry[:] = 0
    for t in range(T - 1, -1, -1):
        g = gates[t]
        for j in range(B):
            for k in range(n):
                dh = carry[j, k]
                if t >= first:
                    dh += dH[t - first, j, k]
                dh = _ftz(dh, tiny)
                r, u, c = g[j, k], g[j, n + k], g[j, 2 * n + k]
                prev = h[t - 1, j, k] if t > 0 else zero
                dc = _ftz(dh * u * (one - c * c), tiny)
                dr = _ftz(dc * hc[t, j, k] * r * (one - r), tiny)
                du = _ftz(dh * (c - prev) * u * (one - u), tiny)
                dZx[t, j, k] = dr
                dZx[t, j, n + k] = du
                dZx[t, j, 2 * n + k] = dc
                dZh[t, j, k] = dr
                dZh[t, j, n + k] = du
                dZh[t, j, 2 * n + k] = _ftz(dc * r, tiny)
                carry[j, k] = dh * (one - u)
        if t > 0:
            np.dot(dZh[t], Wh, back)
            carry += back


@numba.njit(cache=True)
def _lstm_forward(WxT, WhT, b, p, peep, x, h, c, tc, gates, zx, zh):
    T, B, _ = x.shape
    n = WhT.shape[0]
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    tiny = _flush_level(x.dtype)
    for t in range(T):
        _input_drive(x[t], WxT, b, zx)
        if t > 0:
            np.dot(h[t - 1], WhT, zh)
        g = gates[t]
        for j in range(B):
            for k in range(n):
                zi, zf, zg, zo = zx[j, k], zx[j, n + k], zx[j, 2 * n + k], zx[j, 3 * n + k]
                cp = zero
                if t > 0:
                    zi += zh[j, k]
                    zf += zh[j, n + k]
                    zg += zh[j, 2 * n + k]
                    zo += zh[j, 3 * n + k]
                    cp = c[t - 1, j, k]
                if peep:
                    zi += p[0, k] * cp
                    zf += p[1, k] * cp
                i = _ftz(_sigmoid(zi, one), tiny)
                f = _ftz(_sigmoid(zf, one), tiny)
                gg = _ftz(_tanh(zg, one), tiny)
                ct = _ftz(f * cp + i * gg, tiny)
                if peep:
                    zo += p[2, k] * ct
                o = _ftz(_sigmoid(zo, one), tiny)
                tct = _ftz(_tanh(ct, one), tiny)
                g[j, k] = i
                g[j, n + k] = f
                g[j, 2 * n + k] = gg
                g[j, 3 * n + k] = o
                c[t, j, k] = ct
                tc[t, j, k] = tct
                h[t, j, k] = _ftz(o * tct, tiny)


@numba.njit(cache=True)
def _lstm_backward(Wh, p, peep, c, tc, gates, dH, dZ, carry_h, carry_c, dp_lanes):
    T, B, n = c.shape
    one = c.dtype.type(1)
    zero = c.dtype.type(0)
    tiny = _flush_level(c.dtype)
    first = T - dH.shape[0]
    carry_h[:] = 0
    carry_c[:] = 0
    for t in range(T - 1, -1, -1):
        g = gates[t]
        for j in range(B):
            for k in range(n):
                dh = carry_h[j, k]
                if t >= first:
                    dh += dH[t - first, j, k]
                dh = _ftz(dh, tiny)
                i, f, gg, o = g[j, k], g[j, n + k], g[j, 2 * n + k], g[j, 3 * n + k]
                cp = c[t - 1, j, k] if t > 0 else zero
                tct = tc[t, j, k]
                do = _ftz(dh * tct * o * (one - o), tiny)
                dc = carry_c[j, k] + dh * o * (one - tct * tct)
                if peep:
                    dc += do * p[2, k]
                dc = _ftz(dc, tiny)
                di = _ftz(dc * gg * i * (one - i), tiny)
                df = _ftz(dc * cp * f * (one - f), tiny)
                dg = _ftz(dc * i * (one - gg * gg), tiny)
                cc = dc * f
                if peep:
                    cc += di * p[0, k] + df * p[1, k]
                    dp_lanes[0, j, k] += di * cp
                    dp_lanes[1, j, k] += df * cp
                    dp_lanes[2, j, k] += do * c[t, j, k]
                carry_c[j, k] = cc
                dZ[t, j, k] = di
                dZ[t, j, n + k] = df
                dZ[t, j, 2 * n + k] = dg
                dZ[t, j, 3 * n + k] = do
        if t > 0:
            np.dot(dZ[t], Wh, carry_h)


# ---------------------------------------------------------------------------- wrappers

def state_shapes(cell, T, B, n):
    """Shapes of the arrays the forward pass of ``cell`` stores (its ``out`` buffers)."""
    G = GATES[cell]
    shapes = {"h": (T, B, n)}
    if cell == "gru":
        shapes.update(gates=(T, B, G * n), hc=(T, B, n))
    elif cell == "lstm":
        shapes.update(c=(T, B, n), tc=(T, B, n), gates=(T, B, G * n))
    return shapes


def workspace_shape(cell, T, B, n):
    """Shape of the backward workspace ``work`` of ``cell``: the pre-activation gradients
    ``(T, B, G n)`` (the GRU keeps two: input side and recurrent side)."""
    shape = (T, B, GATES[cell] * n)
    return (2, *shape) if cell == "gru" else shape


def _check_args(cell, Wx, Wh, b, x, p=None):
    """Validate ``Wx`` (G n, d_in), ``Wh`` (G n, n), ``b`` (G n,), ``x`` (T, B, d_in) and
    ``p`` (3, n) (dtype of ``x`` for all); return ``(T, B, d_in, n)``."""
    x = check_float(x, "x")
    check_ndim(x, 3, "x", "(T, B, d_in)")
    check_finite(x, "x")
    T, B, d_in = x.shape
    check_ndim(Wh, 2, "Wh", "(G n, n)")
    n = Wh.shape[1]
    G = GATES[cell]
    expected = {"Wx": (G * n, d_in), "Wh": (G * n, n), "b": (G * n,), "p": (3, n)}
    for name, a in (("Wx", Wx), ("Wh", Wh), ("b", b), ("p", p)):
        if a is None:
            continue
        if a.shape != expected[name]:
            raise ShapeError(f"{name} has shape {a.shape}, expected {expected[name]} "
                             f"({cell}: {G} gate(s) of n = {n}, d_in = {d_in})")
        if a.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x has dtype {x.dtype}")
    if T == 0 or B == 0 or n == 0:
        raise ShapeError(f"empty sequence: x {x.shape}, n = {n}")
    return T, B, d_in, n


def _buffers(cell, out, T, B, n, dtype):
    """The state arrays: ``out``'s (checked) or new ones."""
    shapes = state_shapes(cell, T, B, n)
    if out is None:
        return {name: np.empty(shape, dtype) for name, shape in shapes.items()}
    states = {}
    for name, shape in shapes.items():
        a = out.get(name) if isinstance(out, dict) else None
        if a is None or a.shape != shape or a.dtype != dtype or not a.flags.c_contiguous:
            got = "missing" if a is None else f"{a.dtype.name} {a.shape}"
            raise ShapeError(f"out[{name!r}] must be a C-contiguous {np.dtype(dtype).name} "
                             f"array of shape {shape}, got {got}")
        states[name] = a
    return states


def _check_backward(cell, x, states, dH, n):
    T, B, _ = x.shape
    for name, shape in state_shapes(cell, T, B, n).items():
        a = states.get(name)
        if a is None or a.shape != shape or a.dtype != x.dtype:
            got = "missing" if a is None else f"{a.dtype.name} {a.shape}"
            raise ShapeError(f"states[{name!r}] must be {x.dtype.name} {shape}, got {got}")
    check_ndim(dH, 3, "dH", "(T, B, n) or (1, B, n)")
    if dH.shape not in ((T, B, n), (1, B, n)):
        raise ShapeError(f"dH has shape {dH.shape}, expected {(T, B, n)} or {(1, B, n)}")
    return np.ascontiguousarray(dH, dtype=x.dtype)


def _workspace(work, shape, dtype):
    """``work`` when it fits (reused across batches: no page faults), else a new array."""
    if work is not None and work.shape == shape and work.dtype == dtype \
            and work.flags.c_contiguous:
        return work
    return np.empty(shape, dtype)


def _recurrent_grad(dZ, h):
    """``sum_t dZ_t^T h_{t-1}`` (G n, n), one BLAS product over ``(T-1) B`` rows."""
    T, B, n = h.shape
    if T == 1:
        return np.zeros((dZ.shape[2], n), h.dtype)
    return dZ[1:].reshape((T - 1) * B, -1).T @ h[:-1].reshape((T - 1) * B, n)


def _finish(grads, dZ, Wx, x, input_grad):
    T, B, d_in = x.shape
    flat = dZ.reshape(T * B, -1)
    grads["Wx"] = flat.T @ x.reshape(T * B, d_in)
    grads["b"] = flat.sum(axis=0)
    if input_grad:
        grads["x"] = (flat @ Wx).reshape(T, B, d_in)
    return grads


def _scratch(B, width, dtype):
    return np.empty((B, width), dtype), np.empty((B, width), dtype)


def rnn_forward(Wx, Wh, b, x, *, out=None):
    """Vanilla tanh RNN over a whole sequence (see :func:`hadamnp.reference.cells.rnn_forward`).

    Parameters
    ----------
    Wx : (n, d_in), Wh : (n, n), b : (n,), x : (T, B, d_in); float32 or float64 (all alike)
    out : dict, optional
        Buffers for the states (reused across batches to avoid page faults).

    Returns
    -------
    dict ``{"h": (T, B, n)}``
    """
    T, B, _, n = _check_args("rnn", Wx, Wh, b, x)
    s = _buffers("rnn", out, T, B, n, x.dtype)
    zx, zh = _scratch(B, n, x.dtype)
    _rnn_forward(np.ascontiguousarray(Wx.T), np.ascontiguousarray(Wh.T),
                 np.ascontiguousarray(b), np.ascontiguousarray(x), s["h"], zx, zh)
    return s


def rnn_backward(Wx, Wh, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`rnn_forward` (see the reference twin).

    Parameters
    ----------
    Wx, Wh, x : as in :func:`rnn_forward`
    states : dict from :func:`rnn_forward`
    dH : (T, B, n), or (1, B, n) when only the last state is scored
    input_grad : bool, also return ``x`` (T, B, d_in)
    work : array of :func:`workspace_shape`, optional
        Workspace for the pre-activation gradients, reused when it fits.

    Returns
    -------
    dict with ``Wx``, ``Wh``, ``b`` (and ``x``).
    """
    _check_args("rnn", Wx, Wh, None, x)
    T, B, _ = x.shape
    n = Wh.shape[1]
    dH = _check_backward("rnn", x, states, dH, n)
    dZ = _workspace(work, workspace_shape("rnn", T, B, n), x.dtype)
    _rnn_backward(np.ascontiguousarray(Wh), states["h"], dH, dZ, np.empty((B, n), x.dtype))
    grads = {"Wh": _recurrent_grad(dZ, states["h"])}
    return _finish(grads, dZ, Wx, x, input_grad)


def gru_forward(Wx, Wh, b, x, *, out=None):
    """GRU (Lasagne form) over a whole sequence (see the reference twin).

    Returns
    -------
    dict ``h`` (T, B, n), ``gates`` (T, B, 3n) (r, u, c), ``hc`` (T, B, n) (``W_hc h_{t-1}``)
    """
    T, B, _, n = _check_args("gru", Wx, Wh, b, x)
    s = _buffers("gru", out, T, B, n, x.dtype)
    zx, zh = _scratch(B, 3 * n, x.dtype)
    _gru_forward(np.ascontiguousarray(Wx.T), np.ascontiguousarray(Wh.T),
                 np.ascontiguousarray(b), np.ascontiguousarray(x), s["h"], s["gates"],
                 s["hc"], zx, zh)
    return s


def gru_backward(Wx, Wh, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`gru_forward`; arguments as :func:`rnn_backward` (``work``
    (2, T, B, 3n) holds the input-side and the recurrent-side gradients)."""
    _check_args("gru", Wx, Wh, None, x)
    T, B, _ = x.shape
    n = Wh.shape[1]
    dH = _check_backward("gru", x, states, dH, n)
    dZx, dZh = _workspace(work, workspace_shape("gru", T, B, n), x.dtype)
    carry, back = _scratch(B, n, x.dtype)
    _gru_backward(np.ascontiguousarray(Wh), states["h"], states["gates"], states["hc"], dH,
                  dZx, dZh, carry, back)
    grads = {"Wh": _recurrent_grad(dZh, states["h"])}
    return _finish(grads, dZx, Wx, x, input_grad)


def _peepholes(p, n, dtype):
    return (np.zeros((3, n), dtype), False) if p is None else (np.ascontiguousarray(p), True)


def lstm_forward(Wx, Wh, b, p, x, *, out=None):
    """LSTM over a whole sequence (see the reference twin).

    Parameters
    ----------
    Wx : (4n, d_in), Wh : (4n, n), b : (4n,) (gate order i, f, g, o)
    p : (3, n) peephole vectors (i, f, o) or None
    x : (T, B, d_in)
    out : dict, optional, buffers ``h``, ``c``, ``tc`` (T, B, n), ``gates`` (T, B, 4n)

    Returns
    -------
    dict ``h``, ``c``, ``tc`` (tanh c), ``gates`` (i, f, g, o after the nonlinearities)
    """
    T, B, _, n = _check_args("lstm", Wx, Wh, b, x, p)
    s = _buffers("lstm", out, T, B, n, x.dtype)
    zx, zh = _scratch(B, 4 * n, x.dtype)
    pk, peep = _peepholes(p, n, x.dtype)
    _lstm_forward(np.ascontiguousarray(Wx.T), np.ascontiguousarray(Wh.T),
                  np.ascontiguousarray(b), pk, peep, np.ascontiguousarray(x), s["h"], s["c"],
                  s["tc"], s["gates"], zx, zh)
    return s


def lstm_backward(Wx, Wh, p, x, states, dH, *, input_grad=False, work=None):
    """BPTT for :func:`lstm_forward`; arguments as :func:`rnn_backward`, plus ``p``.

    Returns
    -------
    dict with ``Wx`` (4n, d_in), ``Wh`` (4n, n), ``b`` (4n,), ``p`` (3, n) when ``p`` is
    given (and ``x``).
    """
    _check_args("lstm", Wx, Wh, None, x, p)
    T, B, _ = x.shape
    n = Wh.shape[1]
    dH = _check_backward("lstm", x, states, dH, n)
    dZ = _workspace(work, workspace_shape("lstm", T, B, n), x.dtype)
    pk, peep = _peepholes(p, n, x.dtype)
    # Peephole gradients are summed per batch lane, then over lanes once (no reassociation).
    dp_lanes = np.zeros((3, B, n) if peep else (3, 1, 1), x.dtype)
    carry_h, carry_c = _scratch(B, n, x.dtype)
    _lstm_backward(np.ascontiguousarray(Wh), pk, peep, states["c"], states["tc"],
                   states["gates"], dH, dZ, carry_h, carry_c, dp_lanes)
    grads = {"Wh": _recurrent_grad(dZ, states["h"])}
    if peep:
        grads["p"] = dp_lanes.sum(axis=1)
    return _finish(grads, dZ, Wx, x, input_grad)
