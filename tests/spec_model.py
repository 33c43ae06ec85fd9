"""HadamRNN / Block-HadamRNN written from the spec on top of :mod:`autograd_ref`.

Test-only, independent reference (nothing from hadamnp is imported; source: the method
specification of the HadamRNN paper and hadamnp's documented decisions, docs/hadamrnn.md and
docs/conventions.md). Gradients come from
the generic reverse-mode autograd, not from a hand-derived BPTT, so this model cross-checks
hadamnp's hand-written backward and its golden files.

Equations (0-based indices, batch-first arrays)::

    S[i, j]  = (-1) ** popcount(i & j)                 # Sylvester Hadamard, size m
    B        = I_{n/m} kron (S_m / sqrt(m))            # m = n: the full normalised Hadamard
    s        = sign(u),  sign(0) = +1                  # backward: identity STE, dL/du := dL/ds
    W        = diag(s) B
    Q_k(M)   = alpha/c * clip(rint(M c / alpha), -c, c - 1),  c = 2**(k-1), k >= 2
    Q_1(M)   = alpha * clip(rint(M / alpha), -1, 1)
               alpha = max|M| (1 if that is 0), rint = round half to even,
               k in {0, None}: no quantization; backward: identity STE, alpha constant
    h_0      = 0
    h_t      = W h_{t-1} + Q(U) x_t + b                # recurrence="linear" (the model)
    h_t      = relu(W h_{t-1} + Q(U) x_t + b)          # recurrence="nonlinear" (ablation)
    y_t      = Q(V) relu(h_t) + c                      # scored at t = T only, or every t
    loss     = mean softmax cross-entropy over the scored positions (B or B*T of them)

Other losses (``loss=``): ``mse`` = mean of (y_t - target)^2 over every output value;
``bce`` (one logit z per position) = mean of -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))],
written as the cross-entropy of the two logits (0, z).

Token inputs (``embedding=``): ids x_t in 0..V-1 and a table E (V, d) give the inputs
``e_t = Q(E)[x_t]``, the zero vector where ``x_t`` is the padding id; Q is the uniform
quantizer above with the identity STE.
"""

import numpy as np

import autograd_ref as ag

PARAM_NAMES = ("u", "U", "b", "V", "c")
RECURRENCES = ("linear", "nonlinear")
LOSSES = ("cross_entropy", "mse", "bce")


def _is_pow2(k):
    return isinstance(k, (int, np.integer)) and k >= 1 and (k & (k - 1)) == 0


def sylvester(m):
    """Unnormalised Sylvester Hadamard matrix from the popcount formula.

    Parameters
    ----------
    m : int
        Size, a power of two.

    Returns
    -------
    ndarray, shape (m, m), float64
        Entries ``(-1) ** popcount(i & j)`` in {-1, +1}.
    """
    if not _is_pow2(m):
        raise ValueError(f"Hadamard size must be a power of two, got {m}")
    idx = np.arange(m, dtype=np.uint64)
    parity = np.bitwise_count(idx[:, None] & idx[None, :]) & 1
    return np.where(parity == 1, -1.0, 1.0)


def block_basis(n, m):
    """Block-diagonal normalised Hadamard basis ``I_{n/m} kron (S_m / sqrt(m))``.

    Parameters
    ----------
    n : int
        Hidden size, a power of two.
    m : int
        Block size, a power of two dividing ``n`` (``m = n`` gives the full HadamRNN).

    Returns
    -------
    ndarray, shape (n, n), float64
        Orthogonal matrix with entries in {-1/sqrt(m), 0, +1/sqrt(m)}.
    """
    if not _is_pow2(n):
        raise ValueError(f"hidden size n must be a power of two, got {n}")
    if not _is_pow2(m) or m > n:
        raise ValueError(f"block size m must be a power of two dividing n={n}, got {m}")
    return np.kron(np.eye(n // m), sylvester(m) / np.sqrt(m))


def sign_pm1(u):
    """``sign(u)`` with ``sign(0) = +1``.

    Parameters
    ----------
    u : ndarray, shape (n,), float

    Returns
    -------
    ndarray, shape (n,), float64
        Entries in {-1, +1}.
    """
    return np.where(np.asarray(u) < 0, -1.0, 1.0)


def quantize(M, bits):
    """Per-tensor uniform quantizer ``Q_bits`` of the spec (forward value only).

    Parameters
    ----------
    M : ndarray, any shape, float64
    bits : int or None
        Bit width; 0 or None means no quantization (``M`` is returned as float64).

    Returns
    -------
    ndarray, same shape as ``M``, float64
    """
    M = np.asarray(M, dtype=np.float64)
    if bits is None or bits == 0:
        return M.copy()
    if bits < 0:
        raise ValueError(f"bits must be None, 0 or positive, got {bits}")
    alpha = np.max(np.abs(M)) if M.size else 0.0
    if alpha == 0:
        alpha = 1.0
    if bits == 1:
        return alpha * np.clip(np.rint(M / alpha), -1, 1)
    c = 2.0 ** (bits - 1)
    return alpha / c * np.clip(np.rint(M * c / alpha), -c, c - 1)


def _check_params(params, x, y, block_size, many_to_many, recurrence, loss="cross_entropy"):
    missing = set(PARAM_NAMES) - set(params)
    if missing:
        raise ValueError(f"params is missing {sorted(missing)}")
    u, U, b, V, c = (np.asarray(params[k], dtype=np.float64) for k in PARAM_NAMES)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if u.ndim != 1:
        raise ValueError(f"u must be (n,), got shape {u.shape}")
    n = u.shape[0]
    if x.ndim != 3:
        raise ValueError(f"x must be (B, T, d_in), got shape {x.shape}")
    nb, T, d_in = x.shape
    if U.shape != (n, d_in):
        raise ValueError(f"U must be (n, d_in) = {(n, d_in)}, got {U.shape}")
    if b.shape != (n,):
        raise ValueError(f"b must be (n,) = {(n,)}, got {b.shape}")
    if V.ndim != 2 or V.shape[1] != n:
        raise ValueError(f"V must be (d_out, n) with n={n}, got {V.shape}")
    if c.shape != (V.shape[0],):
        raise ValueError(f"c must be (d_out,) = {(V.shape[0],)}, got {c.shape}")
    want_y = ((nb, T) if many_to_many else (nb,)) + ((V.shape[0],) if loss == "mse" else ())
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if y.shape != want_y:
        raise ValueError(f"y must have shape {want_y}, got {y.shape}")
    if recurrence not in RECURRENCES:
        raise ValueError(f"recurrence must be one of {RECURRENCES}, got {recurrence!r}")
    block_basis(n, block_size)  # validates n and block_size
    return (u, U, b, V, c), x, y


def effective_weights(params, *, block_size, bits_in, bits_out):
    """Weights the forward pass actually uses.

    Parameters
    ----------
    params : dict
        ``u`` (n,), ``U`` (n, d_in), ``V`` (d_out, n); float64.
    block_size : int
        m; ``m = n`` for the full HadamRNN.
    bits_in, bits_out : int or None
        Bit widths of U and V (0 or None: unquantized).

    Returns
    -------
    dict
        ``W_signs`` (n,) in {-1, +1}; ``W`` (n, n) = diag(W_signs) B; ``U_q`` (n, d_in);
        ``V_q`` (d_out, n). All float64.
    """
    u = np.asarray(params["u"], dtype=np.float64)
    signs = sign_pm1(u)
    return {
        "W_signs": signs,
        "W": signs[:, None] * block_basis(u.shape[0], block_size),
        "U_q": quantize(params["U"], bits_in),
        "V_q": quantize(params["V"], bits_out),
    }


def model_graph(s, U_eff, b, V_eff, c, x, y, *, block_size, many_to_many, recurrence="linear",
                loss="cross_entropy"):
    """Build the unrolled graph from the *effective* weights.

    The signs ``s`` enter only through ``W = diag(s) B``, so with a continuous ``s`` this is
    the smooth function whose gradient the identity STE passes to ``u``.

    Parameters
    ----------
    s : Tensor, shape (n,)
    U_eff : Tensor, shape (n, d_in)
    b : Tensor, shape (n,)
    V_eff : Tensor, shape (d_out, n)
    c : Tensor, shape (d_out,)
    x : ndarray or Tensor, shape (B, T, d_in), float64
    y : ndarray of int, shape (B,) or (B, T); float (B, [T,] d_out) for ``mse``
    block_size : int
    many_to_many : bool
    recurrence : {"linear", "nonlinear"}
    loss : {"cross_entropy", "mse", "bce"}

    Returns
    -------
    loss : Tensor, shape ()
    logits : Tensor, shape (B, d_out) or (B, T, d_out)
    h : Tensor, shape (B, T, n)
        The recurring state after every step.
    """
    n = s.shape[0]
    W = ag.reshape(s, (n, 1)) * block_basis(n, block_size)
    return unroll(W, U_eff, b, V_eff, c, x, y, many_to_many=many_to_many,
                  recurrence=recurrence, loss=loss)


def score(logits, y, loss="cross_entropy"):
    """The mean loss of ``logits`` (Tensor (B, d_out) or (B, T, d_out)) against ``y``
    (see the module docstring); a Tensor of shape ()."""
    d_out = logits.shape[-1]
    rows = int(np.prod(logits.shape[:-1]))
    if loss == "mse":
        diff = logits - np.asarray(y, dtype=np.float64)
        return ag.mean(diff * diff)
    if loss == "bce":
        z = ag.reshape(logits, (rows,))
        return ag.cross_entropy(ag.stack([z * 0.0, z], axis=1), np.asarray(y).reshape(-1))
    return ag.cross_entropy(ag.reshape(logits, (rows, d_out)), np.asarray(y).reshape(-1))


def embed(E_q, ids, padding_id):
    """``e[b, t] = E_q[ids[b, t]]``, zero where ``ids`` is ``padding_id`` (Tensor (B, T, d))."""
    ids = np.asarray(ids)
    rows = ag.getitem(E_q, ids)
    if padding_id is None:
        return rows
    return rows * (ids != padding_id)[..., None].astype(np.float64)


def unroll(W, U_eff, b, V_eff, c, x, y, *, many_to_many, recurrence="linear",
           loss="cross_entropy"):
    """The unrolled recurrence for any recurrent matrix ``W`` (Tensor (n, n)); see
    :func:`model_graph` for the other arguments and the results; ``x`` may be a Tensor
    (embedded tokens)."""
    n = W.shape[0]
    nb, T, _ = x.shape
    xs = ag.as_tensor(x)
    h = ag.as_tensor(np.zeros((nb, n)))
    states, outputs = [], []
    for t in range(T):
        pre = h @ W.T + xs[:, t, :] @ U_eff.T + b
        h = ag.relu(pre) if recurrence == "nonlinear" else pre
        states.append(h)
        if many_to_many or t == T - 1:
            outputs.append(ag.relu(h) @ V_eff.T + c)
    logits = ag.stack(outputs, axis=1) if many_to_many else outputs[0]
    return score(logits, y, loss), logits, ag.stack(states, axis=1)


def _inputs(params, x, embedding):
    """``(graph input, its value, {"E": leaf} or {})``: ``x`` itself, or the embedded tokens
    with the table ``params["E"]`` as a leaf (``embedding``: ``bits``, ``padding_id``)."""
    if embedding is None:
        x = np.asarray(x, dtype=np.float64)
        return x, x, {}
    leaf = ag.Tensor(np.asarray(params["E"], dtype=np.float64), requires_grad=True)
    E_q = ag.ste(leaf, quantize(leaf.value, embedding["bits"]))
    xs = embed(E_q, x, embedding["padding_id"])
    return xs, xs.value, {"E": leaf}


def forward_loss(params, x, y, *, block_size, bits_in, bits_out, many_to_many,
                 recurrence="linear", loss="cross_entropy", embedding=None):
    """Forward pass, loss and STE gradients of the spec model via reverse-mode autograd.

    Parameters
    ----------
    params : dict
        Latent parameters, float64: ``u`` (n,), ``U`` (n, d_in), ``b`` (n,),
        ``V`` (d_out, n), ``c`` (d_out,).
    x : ndarray, shape (B, T, d_in), float64; or (B, T) int token ids with ``embedding``
    y : ndarray of int, shape (B,) (many-to-one) or (B, T) (many-to-many); for ``mse``
        float, with a last axis d_out
    block_size : int
        m, a power of two dividing n (m = n: full HadamRNN).
    bits_in, bits_out : int or None
        Bit widths of U and V; 0 or None means unquantized.
    many_to_many : bool
        Score every step (True) or only t = T (False).
    recurrence : {"linear", "nonlinear"}
    loss : {"cross_entropy", "mse", "bce"}
    embedding : dict, optional
        ``{"bits": k or None, "padding_id": id or None}``: ``x`` are token ids and
        ``params["E"]`` (V, d) the embedding table.

    Returns
    -------
    loss : float
    logits : ndarray, shape (B, d_out) or (B, T, d_out), float64
    h : ndarray, shape (B, T, n), float64
    grads : dict
        Same keys and shapes as ``params``; gradients through the identity STEs.
    """
    xg, x, table = _inputs(params, x, embedding)
    (u, U, b, V, c), x, y = _check_params(params, x, y, block_size, many_to_many, recurrence,
                                          loss)
    leaves = {k: ag.Tensor(v, requires_grad=True) for k, v in zip(PARAM_NAMES, (u, U, b, V, c))}
    s = ag.ste(leaves["u"], sign_pm1(u))
    U_q = ag.ste(leaves["U"], quantize(U, bits_in))
    V_q = ag.ste(leaves["V"], quantize(V, bits_out))
    value, logits, h = model_graph(s, U_q, leaves["b"], V_q, leaves["c"], xg, y,
                                   block_size=block_size, many_to_many=many_to_many,
                                   recurrence=recurrence, loss=loss)
    value.backward()
    leaves.update(table)
    grads = {k: leaf.grad.copy() for k, leaf in leaves.items()}
    return float(value.value), logits.value.copy(), h.value.copy(), grads


DENSE_PARAM_NAMES = ("W", "U", "b", "V", "c")


def dense_forward_loss(params, x, y, *, bits_in, bits_out, many_to_many, recurrence="linear",
                       loss="cross_entropy", embedding=None):
    """:func:`forward_loss` for the dense baseline: a free full-precision ``W`` (n, n) in
    place of ``diag(sign(u)) B``; ``params`` has ``W``, ``U``, ``b``, ``V``, ``c`` (and
    ``E`` with ``embedding``)."""
    missing = set(DENSE_PARAM_NAMES) - set(params)
    if missing:
        raise ValueError(f"params is missing {sorted(missing)}")
    values = {k: np.asarray(params[k], dtype=np.float64) for k in DENSE_PARAM_NAMES}
    n = values["W"].shape[0]
    if values["W"].shape != (n, n):
        raise ValueError(f"W must be square, got {values['W'].shape}")
    xg, x, table = _inputs(params, x, embedding)
    _check_params({"u": np.ones(n), **values}, x, y, n, many_to_many, recurrence, loss)
    leaves = {k: ag.Tensor(v, requires_grad=True) for k, v in values.items()}
    U_q = ag.ste(leaves["U"], quantize(values["U"], bits_in))
    V_q = ag.ste(leaves["V"], quantize(values["V"], bits_out))
    value, logits, h = unroll(leaves["W"], U_q, leaves["b"], V_q, leaves["c"], xg,
                              np.asarray(y), many_to_many=many_to_many, recurrence=recurrence,
                              loss=loss)
    value.backward()
    leaves.update(table)
    grads = {k: leaf.grad.copy() for k, leaf in leaves.items()}
    return float(value.value), logits.value.copy(), h.value.copy(), grads


# --------------------------------------------------------------------------------------------
# Low-precision vanilla RNN, GRU and LSTM (Ott et al. 2016), written from the method's
# specification and hadamnp's documented choices (docs/low-precision-rnn.md): per-gate
# matrices, the quantizers' deterministic forms (what evaluation and golden files use),
# identity STEs, a linear readout y_t = Q(V) h_t + c.
#
#   rnn   h_t = tanh(W_x x_t + W_h h_{t-1} + b)
#   gru   r = σ(W_xr x + W_hr h + b_r), u = σ(W_xu x + W_hu h + b_u),
#         c~ = tanh(W_xc x + b_c + r ⊙ (W_hc h)), h_t = (1 - u) ⊙ h + u ⊙ c~
#   lstm  i = σ(W_xi x + W_hi h + b_i [+ p_i ⊙ c]), f = σ(... [+ p_f ⊙ c]),
#         g = tanh(W_xg x + W_hg h + b_g), c_t = f ⊙ c + i ⊙ g,
#         o = σ(W_xo x + W_ho h + b_o [+ p_o ⊙ c_t]), h_t = o ⊙ tanh(c_t)
#
# W0 (the Glorot bound) of each group: input matrices and gate biases sqrt(6/(d_in + n)),
# recurrent matrices sqrt(6/(2n)), the readout sqrt(6/(n + d_out)).
# --------------------------------------------------------------------------------------------

CELL_GATES = {"rnn": ("",), "gru": ("r", "u", "c"), "lstm": ("i", "f", "g", "o")}


def ott_quantize(M, kind, args, W0):
    """Deterministic forward of Ott et al.'s quantizers (value only).

    Parameters
    ----------
    M : ndarray, float64
    kind : {"none", "binary", "ternary", "pow2-ternary", "exponential"}
    args : dict of the spec's arguments (``H``; ``W0``; ``i``, ``f``)
    W0 : float, the Glorot bound of the matrix (used when ``args`` has no ``W0``)

    Returns
    -------
    ndarray, float64, same shape
    """
    M = np.asarray(M, dtype=np.float64)
    if kind == "none":
        return M.copy()
    if kind == "binary":
        H = float(args.get("H", 1.0))
        return np.where(M >= 0, H, -H)
    if kind == "ternary":
        w = float(args.get("W0") or W0)
        return np.where(M > w / 2, w, np.where(M <= -w / 2, -w, 0.0))
    if kind == "pow2-ternary":
        i, f = int(args.get("i", 0)), int(args.get("f", 1))
        top = 2.0 ** (i + f) - 1
        return np.clip(np.rint(M * 2.0 ** f), -top, top) / 2.0 ** f
    if kind == "exponential":
        out = np.zeros_like(M)
        nz = M != 0
        magnitude = np.abs(M[nz])
        e = np.clip(np.floor(np.log2(magnitude)), -22, 9)
        p_up = magnitude / 2.0 ** e - 1
        out[nz] = np.sign(M[nz]) * 2.0 ** (e + (p_up > 0.5))
        return out
    raise ValueError(f"no spec-model quantizer {kind!r}")


def cell_param_names(cell, peepholes=False):
    """Parameter names of a cell model, in hadamnp's order."""
    names = []
    for g in CELL_GATES[cell]:
        names += [f"W_x{g}", f"W_h{g}", "b" + (f"_{g}" if g else "")]
    if peepholes:
        names += ["p_i", "p_f", "p_o"]
    return tuple(names) + ("V", "c")


def cell_group(name):
    """Quantizer group of a parameter: quant_in / quant_rec / quant_bias / quant_out / None."""
    if name.startswith("W_x"):
        return "quant_in"
    if name.startswith("W_h"):
        return "quant_rec"
    if name == "b" or name.startswith("b_"):
        return "quant_bias"
    return "quant_out" if name == "V" else None


def cell_effective_weights(params, quant, d_in, n, d_out):
    """``{name: Q(param)}`` for every quantized group (``quant``: group -> (kind, args))."""
    W0 = {"quant_in": np.sqrt(6 / (d_in + n)), "quant_rec": np.sqrt(6 / (2 * n)),
          "quant_bias": np.sqrt(6 / (d_in + n)), "quant_out": np.sqrt(6 / (n + d_out))}
    out = {}
    for name, value in params.items():
        group = cell_group(name)
        if group is not None:
            kind, args = quant[group]
            out[name] = ott_quantize(value, kind, args, W0[group])
    return out


def cell_forward_loss(cell, params, x, y, *, quant, peepholes=False, many_to_many,
                      loss="cross_entropy", embedding=None):
    """Forward pass, loss, states and STE gradients of a cell model via reverse-mode autograd.

    Parameters
    ----------
    cell : {"rnn", "gru", "lstm"}
    params : dict, float64, names of :func:`cell_param_names`
    x : (B, T, d_in); y : (B,) or (B, T) int
    quant : dict group -> (kind, args), groups quant_in, quant_rec, quant_bias, quant_out
    peepholes : bool (lstm)
    many_to_many : bool
    loss, embedding : as in :func:`forward_loss` (``params["E"]`` with ``embedding``)

    Returns
    -------
    loss : float
    logits : (B, d_out) or (B, T, d_out)
    states : dict of (B, T, .) arrays: ``h``; gru ``gates`` (r, u, c~), ``hc`` (W_hc h);
        lstm ``c``, ``tc`` (tanh c), ``gates`` (i, f, g, o)
    grads : dict, keys of ``params``
    effective : dict name -> quantized value
    """
    names = cell_param_names(cell, peepholes)
    if set(params) - {"E"} != set(names):
        raise ValueError(f"params must have exactly {sorted(names)}, got {sorted(params)}")
    xg, x, table = _inputs(params, x, embedding)
    nb, T, d_in = x.shape
    n = params["W_h" + CELL_GATES[cell][0]].shape[1]
    d_out = params["V"].shape[0]
    leaves = {k: ag.Tensor(np.asarray(params[k], dtype=np.float64), requires_grad=True)
              for k in names}
    effective = cell_effective_weights({k: params[k] for k in names}, quant, d_in, n, d_out)
    w = {k: ag.ste(leaves[k], effective[k]) if k in effective else leaves[k] for k in names}

    def pre(g, xt, h):
        return xt @ w[f"W_x{g}"].T + h @ w[f"W_h{g}"].T + w["b" + (f"_{g}" if g else "")]

    xs = ag.as_tensor(xg)
    h = ag.as_tensor(np.zeros((nb, n)))
    c = ag.as_tensor(np.zeros((nb, n)))
    states = {"h": []}
    outputs = []
    for t in range(T):
        xt = xs[:, t, :]
        if cell == "rnn":
            h = ag.tanh(pre("", xt, h))
        elif cell == "gru":
            hc = h @ w["W_hc"].T
            r = ag.sigmoid(pre("r", xt, h))
            u = ag.sigmoid(pre("u", xt, h))
            cand = ag.tanh(xt @ w["W_xc"].T + w["b_c"] + r * hc)
            h = (1 - u) * h + u * cand
            states.setdefault("gates", []).append(np.concatenate(
                [r.value, u.value, cand.value], axis=1))
            states.setdefault("hc", []).append(hc.value)
        else:
            zi, zf, zo = pre("i", xt, h), pre("f", xt, h), pre("o", xt, h)
            if peepholes:
                zi, zf = zi + w["p_i"] * c, zf + w["p_f"] * c
            i, f, g = ag.sigmoid(zi), ag.sigmoid(zf), ag.tanh(pre("g", xt, h))
            c = f * c + i * g
            o = ag.sigmoid(zo + w["p_o"] * c if peepholes else zo)
            tc = ag.tanh(c)
            h = o * tc
            for key, value in (("c", c.value), ("tc", tc.value), ("gates", np.concatenate(
                    [i.value, f.value, g.value, o.value], axis=1))):
                states.setdefault(key, []).append(value)
        states["h"].append(h.value)
        if many_to_many or t == T - 1:
            outputs.append(h @ w["V"].T + w["c"])
    logits = ag.stack(outputs, axis=1) if many_to_many else outputs[0]
    value = score(logits, y, loss)
    value.backward()
    leaves.update(table)
    grads = {k: leaf.grad.copy() for k, leaf in leaves.items()}
    states = {k: np.stack(v, axis=1) for k, v in states.items()}
    return float(value.value), logits.value.copy(), states, grads, effective
