"""Independent autograd cross-check of hadamnp's golden files (issue 2).

Three layers, each validating the next:

1. ``autograd_ref`` (a tiny reverse-mode autograd) against central finite differences for every
   primitive, and against hand-derived gradients.
2. ``spec_model`` (HadamRNN / Block-HadamRNN written from the spec on that autograd) against
   finite differences with quantization off, against a plain NumPy forward loop, and its
   straight-through estimators against finite differences of the effective weights.
3. The golden files hadamnp writes (in memory, through a file, and through the CLI) are
   recomputed from their ``x``, ``y``, ``param.*`` and ``meta`` and every array must agree to
   1e-7 relative in float64. Only this layer imports hadamnp; it skips if
   ``hadamnp.golden.vectors`` cannot be imported.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

import autograd_ref as ag
import spec_model as sm
from gradcheck import numeric_grad

RTOL = 1e-7
TINY = np.finfo(np.float64).tiny
FD_RTOL = 1e-7  # central differences in float64 on smooth tiny problems: truncation ~eps^2


def rel_err(got, ref):
    """Norm-wise relative error ``max|got - ref| / max(max|ref|, tiny)``."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"shape mismatch: got {got.shape}, reference {ref.shape}")
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), TINY))


# --------------------------------------------------------------------------------------------
# 1. The autograd itself
# --------------------------------------------------------------------------------------------

def _away_from_zero(rng, shape):
    """Random values with |v| in [0.2, 1.2]: keeps FD steps off the ReLU kink."""
    return np.asarray(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.2, size=shape),
                      dtype=np.float64)


# name -> (function of tensors, input shapes); each output is scalarised by a fixed random
# weighting so that the upstream gradient is not trivially all-ones.
OP_CASES = {
    "add_same": (lambda a, b: a + b, [(3, 4), (3, 4)]),
    "add_bcast_row": (lambda a, b: a + b, [(3, 4), (4,)]),
    "add_bcast_both": (lambda a, b: a + b, [(3, 1), (1, 4)]),
    "add_scalar_operand": (lambda a, b: a + b, [(2, 3), ()]),
    "sub_bcast": (lambda a, b: a - b, [(4,), (2, 3, 4)]),
    "mul_bcast": (lambda a, b: a * b, [(2, 3, 1), (3, 5)]),
    "mul_self": (lambda a: a * a * a, [(5,)]),
    "neg": (lambda a: -a, [(2, 3)]),
    "div_bcast": (lambda a, b: a / b, [(3, 4), (4,)]),
    "rdiv_scalar": (lambda a: 2.0 / a, [(3,)]),
    "sqrt": (lambda a: ag.sqrt(a * a + 0.5), [(2, 5)]),
    "matmul_2d": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "matmul_batched_bcast": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "transpose_2d": (lambda a: a.T, [(3, 4)]),
    "transpose_axes": (lambda a: ag.transpose(a, (1, 2, 0)), [(2, 3, 4)]),
    "reshape": (lambda a: ag.reshape(a, (6, 2)), [(3, 4)]),
    "relu": (ag.relu, [(4, 5)]),
    "sigmoid": (ag.sigmoid, [(4, 5)]),
    "sigmoid_large": (lambda a: ag.sigmoid(a * 8.0), [(3, 4)]),
    "tanh": (ag.tanh, [(4, 5)]),
    "gate_like_chain": (lambda a, b: ag.sigmoid(a) * ag.tanh(b) + (1 - ag.sigmoid(b)) * a,
                        [(3, 4), (3, 4)]),
    "sum_all": (lambda a: ag.tsum(a), [(3, 4)]),
    "sum_axis": (lambda a: ag.tsum(a, axis=1), [(3, 4, 2)]),
    "sum_axes_keepdims": (lambda a: ag.tsum(a, axis=(0, 2), keepdims=True), [(3, 4, 2)]),
    "mean_all": (lambda a: ag.mean(a), [(3, 4)]),
    "mean_axis": (lambda a: ag.mean(a, axis=-1), [(3, 4)]),
    "getitem_slice": (lambda a: a[:, 1, :], [(3, 4, 2)]),
    "getitem_advanced_repeats": (lambda a: a[np.array([0, 2, 0, 0]), np.array([1, 1, 3, 1])],
                                 [(3, 4)]),
    "stack_axis1": (lambda a, b, c: ag.stack([a, b, c], axis=1), [(2, 3), (2, 3), (2, 3)]),
    "stack_negative_axis": (lambda a, b: ag.stack([a, b], axis=-1), [(2, 3), (2, 3)]),
    "log_softmax": (lambda a: ag.log_softmax(a, axis=-1), [(3, 5)]),
    "log_softmax_axis0": (lambda a: ag.log_softmax(a, axis=0), [(4, 2)]),
    "cross_entropy": (lambda a: ag.cross_entropy(a, np.array([0, 4, 2, 4])), [(4, 5)]),
    "rnn_like_chain": (lambda w, x0, v: ag.relu(ag.relu(x0 @ w) @ w) @ v, [(3, 3), (2, 3), (3, 2)]),
}


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_autograd_primitive_matches_finite_differences(name):
    fn, shapes = OP_CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    inputs = [_away_from_zero(rng, shape) for shape in shapes]
    out_shape = fn(*[ag.as_tensor(a) for a in inputs]).shape
    weights = rng.standard_normal(out_shape)

    def scalar():
        return float(ag.tsum(fn(*[ag.as_tensor(a) for a in inputs]) * weights).value)

    leaves = [ag.Tensor(a.copy(), requires_grad=True) for a in inputs]
    ag.tsum(fn(*leaves) * weights).backward()
    for i, (leaf, array) in enumerate(zip(leaves, inputs)):
        fd = numeric_grad(scalar, array)
        err = rel_err(leaf.grad, fd)
        assert err < FD_RTOL, (f"{name}, input {i}: autograd vs finite differences rel err {err:.3e}"
                               f"\nautograd={leaf.grad}\nfd={fd}")


def test_autograd_hand_derived_gradients():
    rng = np.random.default_rng(0)
    A, x = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    # d/dA sum(A @ x) = 1 x^T
    leaf = ag.Tensor(A, requires_grad=True)
    ag.tsum(leaf @ x).backward()
    np.testing.assert_allclose(leaf.grad, np.ones((3, 2)) @ x.T, rtol=1e-15, atol=0)

    # d/da sum(a * a + a) = 2a + 1 (a used three times: accumulation on a shared node)
    a = rng.standard_normal(5)
    leaf = ag.Tensor(a, requires_grad=True)
    ag.tsum(leaf * leaf + leaf).backward()
    np.testing.assert_allclose(leaf.grad, 2 * a + 1, rtol=1e-15, atol=0)

    # mean cross-entropy: d/dlogits = (softmax - onehot) / N
    logits, t = rng.standard_normal((4, 3)), np.array([2, 0, 1, 2])
    leaf = ag.Tensor(logits, requires_grad=True)
    loss = ag.cross_entropy(leaf, t)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(float(loss.value), -np.mean(np.log(p[np.arange(4), t])),
                               rtol=1e-14)
    loss.backward()
    np.testing.assert_allclose(leaf.grad, (p - np.eye(3)[t]) / 4, rtol=1e-13, atol=1e-16)


def test_autograd_ste_forwards_value_and_passes_gradient_unchanged():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 2))
    w = rng.standard_normal((3, 2))
    leaf = ag.Tensor(a, requires_grad=True)
    out = ag.ste(leaf, np.sign(a))
    np.testing.assert_array_equal(out.value, np.sign(a))
    ag.tsum(out * w).backward()
    # Identity backward: the gradient w.r.t. the latent is the upstream gradient w, exactly.
    np.testing.assert_array_equal(leaf.grad, w)
    with pytest.raises(ValueError, match="ste forward value has shape"):
        ag.ste(leaf, np.zeros(6))


def test_autograd_constants_get_no_gradient_and_backward_needs_scalar():
    leaf = ag.Tensor(np.ones(3), requires_grad=True)
    const = ag.as_tensor(np.arange(3.0))
    out = leaf * const
    with pytest.raises(ValueError, match="needs a scalar output"):
        out.backward()
    ag.tsum(out).backward()
    assert const.grad is None
    np.testing.assert_array_equal(leaf.grad, np.arange(3.0))


# --------------------------------------------------------------------------------------------
# 2. The spec model
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [1, 2, 4, 8, 16, 32])
def test_sylvester_popcount_equals_kronecker_recursion(m):
    kron = np.ones((1, 1))
    while kron.shape[0] < m:
        kron = np.kron(kron, np.array([[1.0, 1.0], [1.0, -1.0]]))
    S = sm.sylvester(m)
    np.testing.assert_array_equal(S, kron)
    np.testing.assert_array_equal(S @ S.T, m * np.eye(m))


@pytest.mark.parametrize("n,m", [(8, 8), (8, 2), (16, 4), (16, 1)])
def test_block_basis_orthogonal_with_density_m_over_n(n, m):
    B = sm.block_basis(n, m)
    np.testing.assert_allclose(B @ B.T, np.eye(n), rtol=0, atol=1e-15)
    assert np.count_nonzero(B) == n * m
    np.testing.assert_allclose(np.abs(B[B != 0]), 1 / np.sqrt(m), rtol=1e-15)


@pytest.mark.parametrize("n,m", [(6, 2), (8, 3), (8, 16), (8, 0)])
def test_block_basis_rejects_bad_sizes(n, m):
    with pytest.raises(ValueError, match="power of two"):
        sm.block_basis(n, m)


def test_sign_zero_is_plus_one():
    np.testing.assert_array_equal(sm.sign_pm1(np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])),
                                  [-1.0, 1.0, 1.0, 1.0, 1.0])


def test_quantizer_hand_examples():
    # bits 4: alpha = 1, c = 8: M*8 = [-8, 4, 0.5, 1.5, 8] -> rint (half to even)
    # [-8, 4, 0, 2, 8] -> clip to [-8, 7] -> /8
    M = np.array([-1.0, 0.5, 0.0625, 0.1875, 1.0])
    np.testing.assert_array_equal(sm.quantize(M, 4), [-1.0, 0.5, 0.0, 0.25, 0.875])
    # alpha scales the grid: same pattern at 3x
    np.testing.assert_array_equal(sm.quantize(3 * M, 4), 3 * np.array([-1.0, 0.5, 0.0, 0.25, 0.875]))
    # bits 1 (ternary): M/alpha = [-1, -0.5, 0.5, 0.6, 1] -> rint [-1, -0, 0, 1, 1]
    M1 = np.array([-2.0, -1.0, 1.0, 1.2, 2.0])
    np.testing.assert_array_equal(sm.quantize(M1, 1), [-2.0, 0.0, 0.0, 2.0, 2.0])
    # alpha := 1 for an all-zero tensor; bits 0 / None: unquantized
    np.testing.assert_array_equal(sm.quantize(np.zeros(3), 4), np.zeros(3))
    np.testing.assert_array_equal(sm.quantize(M, 0), M)
    np.testing.assert_array_equal(sm.quantize(M, None), M)


def test_quantizer_levels_on_grid():
    M = np.random.default_rng(2).standard_normal((16, 9))
    alpha = np.max(np.abs(M))
    q = sm.quantize(M, 4) * 8 / alpha
    np.testing.assert_array_equal(q, np.rint(q))
    assert q.min() == -8 and q.max() <= 7 and len(np.unique(q)) <= 16


def _problem(seed, n, d_in, d_out, T, nb, many_to_many):
    rng = np.random.default_rng(seed)
    params = {
        "u": _away_from_zero(rng, (n,)),
        "U": rng.standard_normal((n, d_in)) * 0.7,
        "b": rng.standard_normal(n) * 0.3,
        "V": rng.standard_normal((d_out, n)) * 0.7,
        "c": rng.standard_normal(d_out) * 0.3,
    }
    x = rng.standard_normal((nb, T, d_in))
    y = rng.integers(0, d_out, size=(nb, T) if many_to_many else (nb,))
    return params, x, y


SPEC_CASES = [  # (n, block_size, many_to_many, recurrence, T)
    (8, 8, False, "linear", 5),
    (8, 8, True, "linear", 6),
    (16, 4, False, "linear", 7),
    (16, 4, True, "linear", 5),
    (8, 2, True, "nonlinear", 5),
    (8, 8, False, "nonlinear", 6),
]


@pytest.mark.parametrize("n,m,mtm,recurrence,T", SPEC_CASES)
def test_spec_forward_matches_plain_numpy_loop(n, m, mtm, recurrence, T):
    params, x, y = _problem(10 + n + m + T, n, 3, 5, T, 3, mtm)
    loss, logits, h, _ = sm.forward_loss(params, x, y, block_size=m, bits_in=4, bits_out=4,
                                         many_to_many=mtm, recurrence=recurrence)
    w = sm.effective_weights(params, block_size=m, bits_in=4, bits_out=4)
    state = np.zeros((3, n))
    hs, outs = [], []
    for t in range(T):
        state = state @ w["W"].T + x[:, t] @ w["U_q"].T + params["b"]
        if recurrence == "nonlinear":
            state = np.maximum(state, 0)
        hs.append(state)
        outs.append(np.maximum(state, 0) @ w["V_q"].T + params["c"])
    ref_logits = np.stack(outs, axis=1) if mtm else outs[-1]
    flat = ref_logits.reshape(-1, 5)
    logp = flat - np.log(np.exp(flat).sum(axis=1, keepdims=True))
    ref_loss = -np.mean(logp[np.arange(flat.shape[0]), y.reshape(-1)])
    np.testing.assert_allclose(h, np.stack(hs, axis=1), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)


def _graph_loss(s, U_eff, params, x, y, m, mtm, recurrence):
    """Loss of the smooth graph with the sign vector and effective U, V given directly."""
    return float(sm.model_graph(ag.as_tensor(s), ag.as_tensor(U_eff), ag.as_tensor(params["b"]),
                                ag.as_tensor(params["V_eff"]), ag.as_tensor(params["c"]), x, y,
                                block_size=m, many_to_many=mtm, recurrence=recurrence)[0].value)


@pytest.mark.parametrize("n,m,mtm,recurrence,T", SPEC_CASES)
def test_spec_gradients_match_finite_differences_unquantized(n, m, mtm, recurrence, T):
    """bits 0: U, b, V, c are differentiated directly; u through the smooth function of the
    continuous signs s at s = sign(u), which is what the identity STE passes to u."""
    params, x, y = _problem(20 + n + m + T, n, 3, 5, T, 3, mtm)
    kw = dict(block_size=m, bits_in=0, bits_out=0, many_to_many=mtm, recurrence=recurrence)
    _, _, _, grads = sm.forward_loss(params, x, y, **kw)
    errors = {}
    for name in ("U", "b", "V", "c"):
        fd = numeric_grad(lambda: sm.forward_loss(params, x, y, **kw)[0], params[name])
        errors[name] = rel_err(grads[name], fd)
    s = sm.sign_pm1(params["u"])
    smooth = dict(params, V_eff=params["V"])
    fd_s = numeric_grad(lambda: _graph_loss(s, params["U"], smooth, x, y, m, mtm, recurrence), s)
    errors["u"] = rel_err(grads["u"], fd_s)
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_RTOL, f"worst FD rel err {errors[worst]:.3e} on {worst}: {errors}"


@pytest.mark.parametrize("n,m,mtm", [(8, 8, True), (16, 4, False)])
def test_spec_quantizer_ste_passes_effective_weight_gradient(n, m, mtm):
    """bits 4: dL/dU and dL/dV must equal the derivative w.r.t. Q(U), Q(V) themselves."""
    params, x, y = _problem(30 + n + m, n, 3, 5, 5, 3, mtm)
    _, _, _, grads = sm.forward_loss(params, x, y, block_size=m, bits_in=4, bits_out=4,
                                     many_to_many=mtm)
    s = sm.sign_pm1(params["u"])
    U_q, V_q = sm.quantize(params["U"], 4), sm.quantize(params["V"], 4)
    smooth = dict(params, V_eff=V_q)
    fd_U = numeric_grad(lambda: _graph_loss(s, U_q, smooth, x, y, m, mtm, "linear"), U_q)
    fd_V = numeric_grad(lambda: _graph_loss(s, U_q, smooth, x, y, m, mtm, "linear"),
                        smooth["V_eff"])
    assert not np.array_equal(U_q, params["U"])  # the quantizer is really active here
    for name, fd in (("U", fd_U), ("V", fd_V)):
        err = rel_err(grads[name], fd)
        assert err < FD_RTOL, f"STE grad {name} vs FD w.r.t. Q({name}): rel err {err:.3e}"


def test_spec_siman_ste_is_the_gradient_of_the_surrogate():
    """The spec model's SiMaN weight: forward alpha (2B - 1) with half ones per row; gradient
    = finite differences of the surrogate sum(G * alpha |z(M)|), z by plain NumPy."""
    rng = np.random.default_rng(21)
    M, alpha, G = rng.standard_normal((3, 6)), rng.uniform(0.5, 2, 3), rng.standard_normal((3, 6))
    leaves = {"W": ag.Tensor(M.copy(), requires_grad=True),
              "W.alpha": ag.Tensor(alpha.copy(), requires_grad=True)}
    Q, value = sm.quantized(leaves, "W", "siman")
    ag.tsum(Q * G).backward()
    assert set(np.unique(np.abs(value / alpha[:, None]))) == {1.0}
    assert ((value > 0).sum(axis=1) == 3).all()

    def surrogate():
        c = M - M.mean(axis=1, keepdims=True)
        z = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + 1e-5)
        return float(np.sum(G * alpha[:, None] * np.abs(z)))

    assert rel_err(leaves["W"].grad, numeric_grad(surrogate, M)) < FD_RTOL
    np.testing.assert_allclose(leaves["W.alpha"].grad,
                               np.sum(G * value / alpha[:, None], axis=1), rtol=1e-14)


def test_spec_siman_argmax_code_is_the_best_angle():
    rng = np.random.default_rng(22)
    X = np.abs(rng.laplace(size=(5, 7)))
    B = sm.siman_code(X, "argmax")
    for row, code in zip(X, B):
        cos = lambda b: row @ b / np.sqrt(b.sum())  # noqa: E731
        best = max((np.array(b) for b in np.ndindex(*(2,) * 7) if any(b)), key=cos)
        assert cos(code) == pytest.approx(cos(best), rel=1e-12)


def test_spec_approx_sign_ste():
    rng = np.random.default_rng(23)
    z = rng.uniform(-2, 2, size=(4, 5))
    z[0, 0] = 0.0
    leaf = ag.Tensor(z.copy(), requires_grad=True)
    G = rng.standard_normal(z.shape)
    out = sm.approx_sign_ste(leaf)
    ag.tsum(out * G).backward()
    np.testing.assert_array_equal(out.value, np.where(z >= 0, 1.0, -1.0))
    np.testing.assert_allclose(leaf.grad, G * np.maximum(0, 2 - 2 * np.abs(z)), rtol=1e-14)


def test_spec_model_validates_inputs():
    params, x, y = _problem(0, 8, 3, 5, 4, 2, False)
    kw = dict(block_size=8, bits_in=4, bits_out=4, many_to_many=False)
    with pytest.raises(ValueError, match="y must have shape"):
        sm.forward_loss(params, x, np.zeros((2, 4), dtype=np.int64), **kw)
    with pytest.raises(ValueError, match="U must be"):
        sm.forward_loss(dict(params, U=np.zeros((8, 2))), x, y, **kw)
    with pytest.raises(ValueError, match="recurrence"):
        sm.forward_loss(params, x, y, recurrence="gru", **kw)
    with pytest.raises(ValueError, match="block size"):
        sm.forward_loss(params, x, y, **dict(kw, block_size=3))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_spec_losses_match_direct_formulas():
    """``score``: mse and bce (as the cross-entropy of the logits (0, z)) against NumPy."""
    rng = np.random.default_rng(40)
    logits = rng.standard_normal((3, 4, 2))
    values = rng.standard_normal((3, 4, 2))
    mse = float(sm.score(ag.as_tensor(logits), values, "mse").value)
    np.testing.assert_allclose(mse, np.mean((logits - values) ** 2), rtol=1e-14)
    z = rng.standard_normal((5, 1)) * 3
    labels = rng.integers(0, 2, size=5)
    p = _sigmoid(z[:, 0])
    bce = float(sm.score(ag.as_tensor(z), labels, "bce").value)
    np.testing.assert_allclose(bce, -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)),
                               rtol=1e-13)
    leaf = ag.Tensor(z.copy(), requires_grad=True)
    sm.score(leaf, labels, "bce").backward()
    np.testing.assert_allclose(leaf.grad[:, 0], (p - labels) / 5, rtol=1e-12)


def _embedded_problem(seed, vocab, d, mtm, loss, padding_id):
    params, _, _ = _problem(seed, 8, d, 2, 4, 3, mtm)
    rng = np.random.default_rng(seed + 1)
    params["E"] = rng.standard_normal((vocab, d))
    ids = rng.integers(0, vocab, size=(3, 4))
    ids[0, 0] = 0
    positions = (3, 4) if mtm else (3,)
    if loss == "mse":
        y = rng.standard_normal(positions + (2,))
    else:
        y = rng.integers(0, 2, size=positions)
    if loss == "bce":
        params["V"], params["c"] = params["V"][:1], params["c"][:1]
    return params, ids, y


@pytest.mark.parametrize("mtm,loss,padding_id", [(False, "mse", 0), (True, "bce", None),
                                                 (True, "cross_entropy", 0)])
def test_spec_embedding_gradients_match_finite_differences(mtm, loss, padding_id):
    """The table and every smooth parameter of the spec model with token inputs, by central
    differences (quantizers off); with a 4-bit table, the STE gradient equals the
    derivative w.r.t. the quantized table."""
    params, ids, y = _embedded_problem(50, 6, 3, mtm, loss, padding_id)
    kw = dict(block_size=8, bits_in=0, bits_out=0, many_to_many=mtm, loss=loss,
              embedding={"bits": None, "padding_id": padding_id})
    _, _, _, grads = sm.forward_loss(params, ids, y, **kw)
    for name in ("E", "U", "b", "V", "c"):
        fd = numeric_grad(lambda: sm.forward_loss(params, ids, y, **kw)[0], params[name])
        err = rel_err(grads[name], fd)
        assert err < FD_RTOL, f"{name}: FD rel err {err:.3e}"
    if padding_id is not None:
        assert not grads["E"][padding_id].any()
    quantized = dict(kw, embedding={"bits": 4, "padding_id": padding_id})
    _, _, _, grads = sm.forward_loss(params, ids, y, **quantized)
    fixed = dict(params, E=sm.quantize(params["E"], 4))
    fd = numeric_grad(lambda: sm.forward_loss(fixed, ids, y, **kw)[0], fixed["E"])
    assert rel_err(grads["E"], fd) < FD_RTOL


# --------------------------------------------------------------------------------------------
# 3. hadamnp's golden files against the spec model
# --------------------------------------------------------------------------------------------

V1_META_KEYS = ("format", "version", "model", "hidden_size", "block_size", "input_size",
                "output_size", "bits_in", "bits_out", "many_to_many", "activation",
                "recurrence", "loss", "dtype", "seed", "hadamnp_version", "sign_zero", "ste",
                "rounding")
V2_META_KEYS = ("format", "version", "model", "param_roles", "loss", "dtype", "seed", "source",
                "batch", "seq_len", "hadamnp_version", "sign_zero", "rounding",
                "conventions_version")
DATA = Path(__file__).resolve().parent / "data"


def parse_uniform(spec):
    """Bit width of a quantizer spec the spec model implements: ``uniform:k`` or ``none``."""
    if spec == "none":
        return None
    name, _, bits = spec.partition(":")
    assert name == "uniform" and bits.isdigit(), f"no spec-model quantizer for {spec!r}"
    return int(bits)


def read_embedding(meta, config):
    """The embedding layer of a v2 golden file's model (or None), checked."""
    embedding = meta["model"].get("embedding")
    if embedding is not None:
        assert set(embedding) == {"vocab_size", "embedding_dim", "quantizer", "padding_id"}, \
            f"unexpected embedding fields {sorted(embedding)}"
        assert embedding["embedding_dim"] == config["input_size"], (embedding, config)
        embedding = dict(embedding, bits=parse_uniform(embedding["quantizer"]))
    return embedding


def spec_case(meta):
    """``(family, options)`` of a golden file for the spec model, from its ``meta``.

    Version 1 files carry flat HadamRNN fields; version 2 files the model's registered name
    and full configuration, read here field by field (an unknown field fails the test, so a
    new option cannot slip past the independent check).
    """
    if meta["version"] == 1:
        missing = [k for k in V1_META_KEYS if k not in meta]
        assert not missing, f"meta lacks required fields {missing}"
        assert meta["model"] in ("hadamrnn", "block-hadamrnn"), meta["model"]
        assert (meta["activation"], meta["ste"]) == ("relu", "identity"), meta
        return meta["model"], dict(
            n=meta["hidden_size"], m=meta["block_size"], d_in=meta["input_size"],
            d_out=meta["output_size"], bits_in=meta["bits_in"], bits_out=meta["bits_out"],
            many_to_many=meta["many_to_many"], recurrence=meta["recurrence"], embedding=None)
    missing = [k for k in V2_META_KEYS if k not in meta]
    assert not missing, f"meta lacks required fields {missing}"
    name = meta["model"]["name"]
    if name in sm.CELL_GATES:
        config = dict(meta["model"]["config"])
        return name, cell_case(name, config, read_embedding(meta, config))
    config = dict(meta["model"]["config"])
    if name == "binary-rnn" or any(str(config.get(k, "")).startswith("siman")
                                   for k in ("quant_in", "quant_out", "quant_rec")):
        return name, quantized_case(name, config)
    # param_in / param_out were added after the first v2 files: dense when absent
    config = {"param_in": "dense", "param_out": "dense", **meta["model"]["config"]}
    known = {"input_size", "hidden_size", "output_size", "recurrence", "block_size",
             "quant_in", "quant_out", "quant_rec", "param_in", "param_out", "nonlinear",
             "store_every", "many_to_many", "dtype"}
    assert set(config) == known, f"unexpected model fields {sorted(set(config) ^ known)}"
    assert config["param_in"] == config["param_out"] == "dense", \
        f"no spec-model parametrization of U, V other than dense: {config}"
    assert config["dtype"] == "float64"
    n = config["hidden_size"]
    if name in ("hadamrnn", "block-hadamrnn"):
        assert config["recurrence"] == "hadamard" and config["quant_rec"] == "sign", config
        m = config["block_size"]
        assert (m == n) == (name == "hadamrnn"), f"{name} with block size {m}, n = {n}"
    else:
        assert name == "dense" and config["recurrence"] == "dense", (name, config)
        assert config["quant_rec"] == "none" and config["block_size"] is None, config
        m = n
    embedding = read_embedding(meta, config)
    return name, dict(n=n, m=m, d_in=config["input_size"], d_out=config["output_size"],
                      bits_in=parse_uniform(config["quant_in"]),
                      bits_out=parse_uniform(config["quant_out"]),
                      many_to_many=config["many_to_many"],
                      recurrence="nonlinear" if config["nonlinear"] else "linear",
                      embedding=embedding)


def quantized_case(name, config):
    """Spec-model options of a SiMaN golden file (``binary-rnn``, or a HadamRNN-style model
    with a SiMaN-quantized matrix), read field by field."""
    assert config["dtype"] == "float64"
    n = config["hidden_size"]
    case = dict(n=n, d_in=config["input_size"], d_out=config["output_size"],
                many_to_many=config["many_to_many"], quantized=True,
                **{k: config[k] for k in ("quant_in", "quant_rec", "quant_out")})
    for key in ("quant_in", "quant_rec", "quant_out"):
        sm.parse_quantizer(config[key])  # only quantizers the spec model implements
    if name == "binary-rnn":
        known = {"input_size", "hidden_size", "output_size", "quant_in", "quant_rec",
                 "quant_out", "standardize", "many_to_many", "dtype"}
        assert set(config) == known, f"unexpected model fields {sorted(set(config) ^ known)}"
        return {**case, "standardize": config["standardize"]}
    config = {"param_in": "dense", "param_out": "dense", **config}
    known = {"input_size", "hidden_size", "output_size", "recurrence", "block_size",
             "quant_in", "quant_out", "quant_rec", "param_in", "param_out", "nonlinear",
             "store_every", "many_to_many", "dtype"}
    assert set(config) == known, f"unexpected model fields {sorted(set(config) ^ known)}"
    assert config["param_in"] == config["param_out"] == "dense", \
        f"no spec-model parametrization of U, V other than dense: {config}"
    assert name in ("hadamrnn", "block-hadamrnn", "dense"), name
    kind = config["recurrence"]
    assert kind == ("dense" if name == "dense" else "hadamard"), (name, kind)
    m = n if kind == "dense" else config["block_size"]
    return {**case, "recurrence_kind": kind, "m": m,
            "recurrence": "nonlinear" if config["nonlinear"] else "linear"}


def quantized_golden_errors(arrays, meta, family, case):
    """:func:`golden_errors` for the cases of :func:`quantized_case` (cross-entropy, feature
    inputs)."""
    assert meta["loss"] == "cross_entropy" and "embedding" not in meta["model"], meta
    n, d_in, d_out, mtm = case["n"], case["d_in"], case["d_out"], case["many_to_many"]
    hadamard = case.get("recurrence_kind") == "hadamard"
    one_bit = lambda spec: sm.parse_quantizer(spec)[0] in ("sign", "siman")  # noqa: E731
    roles, shapes = {}, {}
    for name, spec, shape in ((None if hadamard else "W", case["quant_rec"], (n, n)),
                              ("U", case["quant_in"], (n, d_in)),
                              ("V", case["quant_out"], (d_out, n))):
        if name is None:
            roles["u"], shapes["u"] = "signs", (n,)
            continue
        roles[name], shapes[name] = ("binary" if one_bit(spec) else "weight"), shape
        if sm.parse_quantizer(spec)[0] == "siman":
            roles[name + ".alpha"], shapes[name + ".alpha"] = "scale", (shape[0],)
    roles.update(b="bias", c="bias")
    shapes.update(b=(n,), c=(d_out,))
    assert meta["param_roles"] == {k: roles[k] for k in meta["param_roles"]}, meta
    assert set(meta["param_roles"]) == set(roles), (meta["param_roles"], roles)
    weight_keys = ("weight.W_signs" if hadamard else "weight.W_q", "weight.U_q", "weight.V_q")
    expected_keys = {"x", "y", "state.h", "logits", "loss", *weight_keys,
                     *(f"param.{k}" for k in roles), *(f"grad.{k}" for k in roles)}
    assert set(arrays) == expected_keys, (
        f"golden keys differ: missing {sorted(expected_keys - set(arrays))}, "
        f"extra {sorted(set(arrays) - expected_keys)}")
    x, y = arrays["x"], arrays["y"]
    nb, T, _ = x.shape
    expected_shapes = {"x": (nb, T, d_in), "y": (nb, T) if mtm else (nb,),
                       weight_keys[0]: (n,) if hadamard else (n, n), "weight.U_q": (n, d_in),
                       "weight.V_q": (d_out, n), "state.h": (nb, T, n),
                       "logits": (nb, T, d_out) if mtm else (nb, d_out), "loss": ()}
    for k, shape in shapes.items():
        expected_shapes[f"param.{k}"] = expected_shapes[f"grad.{k}"] = shape
    for key, shape in expected_shapes.items():
        assert arrays[key].shape == shape, f"{key}: shape {arrays[key].shape}, expected {shape}"
        want = np.int64 if key == "y" else np.float64
        assert arrays[key].dtype == want, f"{key}: dtype {arrays[key].dtype}, expected {want}"
    params = {k: arrays[f"param.{k}"] for k in roles}
    specs = {k: case[k] for k in ("quant_in", "quant_rec", "quant_out")}
    if family == "binary-rnn":
        loss, logits, h, grads, effective = sm.binary_rnn_forward_loss(
            params, x, y, standardize=case["standardize"], many_to_many=mtm, **specs)
    else:
        loss, logits, h, grads, effective = sm.quantized_rnn_forward_loss(
            params, x, y, recurrence_kind=case["recurrence_kind"], block_size=case["m"],
            many_to_many=mtm, recurrence=case["recurrence"], **specs)
    reference = {f"weight.{k}": v for k, v in effective.items()}
    reference.update({"state.h": h, "logits": logits, "loss": np.asarray(loss)})
    reference.update({f"grad.{k}": g for k, g in grads.items()})
    errors = {}
    for key, ref in reference.items():
        errors[key] = rel_err(arrays[key], ref)
        scale = max(float(np.max(np.abs(ref))), TINY)
        np.testing.assert_allclose(
            arrays[key], ref, rtol=RTOL, atol=1e-12 * scale,
            err_msg=f"golden {key} vs spec autograd (norm-wise rel err {errors[key]:.3e})")
    return errors


def golden_errors(arrays, meta):
    """Recompute a golden file (v1 or v2) with the spec model; return
    ``{key: norm-wise rel error}``.

    Also checks the file's structure (keys, meta fields, shapes, dtypes), raising
    AssertionError with a message naming the problem.
    """
    assert meta["format"] == "hadamnp-golden" and meta["version"] in (1, 2), meta
    assert meta["loss"] in sm.LOSSES and meta["dtype"] == "float64", meta
    assert meta["version"] == 2 or meta["loss"] == "cross_entropy", meta
    loss = meta["loss"]
    family, case = spec_case(meta)
    if family in sm.CELL_GATES:
        if case["stack"] is not None:
            return stack_golden_errors(arrays, meta, family, case, loss)
        return cell_golden_errors(arrays, meta, family, case, loss)
    if case.get("quantized"):
        return quantized_golden_errors(arrays, meta, family, case)
    embedding = case["embedding"]
    dense = family == "dense"
    names = (sm.DENSE_PARAM_NAMES if dense else sm.PARAM_NAMES) + (("E",) if embedding else ())
    weight_keys = ("weight.W_q" if dense else "weight.W_signs", "weight.U_q", "weight.V_q") \
        + (("weight.E_q",) if embedding else ())
    state_key = "h" if meta["version"] == 1 else "state.h"
    expected_keys = {"x", "y", state_key, "logits", "loss", *weight_keys,
                     *(f"param.{k}" for k in names), *(f"grad.{k}" for k in names)} \
        | ({"state.embedded"} if embedding else set())
    assert set(arrays) == expected_keys, (
        f"golden keys differ: missing {sorted(expected_keys - set(arrays))}, "
        f"extra {sorted(set(arrays) - expected_keys)}")
    if meta["version"] == 2:
        roles = {"u": "signs", "W": "weight", "U": "weight", "b": "bias", "V": "weight",
                 "c": "bias", "E": "embedding"}
        assert meta["param_roles"] == {k: roles[k] for k in names}, meta["param_roles"]
    n, d_in, d_out, mtm = case["n"], case["d_in"], case["d_out"], case["many_to_many"]
    x, y = arrays["x"], arrays["y"]
    nb, T = x.shape[:2]
    param_shapes = {"u": (n,), "W": (n, n), "U": (n, d_in), "b": (n,), "V": (d_out, n),
                    "c": (d_out,)}
    positions = (nb, T) if mtm else (nb,)
    expected_shapes = {
        "x": (nb, T) if embedding else (nb, T, d_in),
        "y": positions + ((d_out,) if loss == "mse" else ()),
        weight_keys[0]: (n, n) if dense else (n,), "weight.U_q": (n, d_in),
        "weight.V_q": (d_out, n), state_key: (nb, T, n),
        "logits": (nb, T, d_out) if mtm else (nb, d_out), "loss": (),
    }
    if embedding:
        table = (embedding["vocab_size"], d_in)
        param_shapes["E"] = expected_shapes["weight.E_q"] = table
        expected_shapes["state.embedded"] = (nb, T, d_in)
    for k in names:
        expected_shapes[f"param.{k}"] = expected_shapes[f"grad.{k}"] = param_shapes[k]
    integers = {"x"} if embedding else set()
    if loss != "mse":
        integers.add("y")
    for key, shape in expected_shapes.items():
        assert arrays[key].shape == shape, f"{key}: shape {arrays[key].shape}, expected {shape}"
        want = np.int64 if key in integers else np.float64
        assert arrays[key].dtype == want, f"{key}: dtype {arrays[key].dtype}, expected {want}"

    params = {k: arrays[f"param.{k}"] for k in names}
    kw = dict(bits_in=case["bits_in"], bits_out=case["bits_out"], many_to_many=mtm,
              recurrence=case["recurrence"], loss=loss,
              embedding=embedding and {"bits": embedding["bits"],
                                       "padding_id": embedding["padding_id"]})
    if dense:
        value, logits, h, grads = sm.dense_forward_loss(params, x, y, **kw)
        reference = {"weight.W_q": params["W"]}
    else:
        value, logits, h, grads = sm.forward_loss(params, x, y, block_size=case["m"], **kw)
        reference = {"weight.W_signs": sm.sign_pm1(params["u"])}
    if embedding:
        table_q = sm.quantize(params["E"], embedding["bits"])
        reference["weight.E_q"] = table_q
        reference["state.embedded"] = sm.embed(table_q, x, embedding["padding_id"]).value
    reference.update({"weight.U_q": sm.quantize(params["U"], case["bits_in"]),
                      "weight.V_q": sm.quantize(params["V"], case["bits_out"]),
                      state_key: h, "logits": logits, "loss": np.asarray(value)})
    reference.update({f"grad.{k}": g for k, g in grads.items()})
    errors = {}
    for key, ref in reference.items():
        errors[key] = rel_err(arrays[key], ref)
        scale = max(float(np.max(np.abs(ref))), TINY)
        np.testing.assert_allclose(
            arrays[key], ref, rtol=RTOL, atol=1e-12 * scale,
            err_msg=f"golden {key} vs spec autograd (norm-wise rel err {errors[key]:.3e})")
    return errors


# Arguments of the spec strings of Ott et al.'s quantizers, in positional order. Golden
# files are written with the deterministic forward, so "-stochastic" names are read as
# their deterministic counterparts.
OTT_ARGS = {"none": (), "binary": ("H",), "ternary": ("W0",), "pow2-ternary": ("i", "f"),
            "exponential": ()}


def parse_ott(spec):
    """``(kind, args)`` of a quantizer spec the spec model implements."""
    name, _, rest = spec.partition(":")
    kind = name.removesuffix("-stochastic")
    assert kind in OTT_ARGS, f"no spec-model quantizer for {spec!r}"
    args = {}
    for k, part in enumerate(filter(None, rest.split(","))):
        key, eq, value = part.partition("=")
        args[key if eq else OTT_ARGS[kind][k]] = float(value if eq else part)
    return kind, args


STACK_DEFAULTS = {"num_layers": 1, "param_in": "dense", "param_rec": "dense", "share": "none"}


def cell_case(name, config, embedding):
    """Options of a rnn / gru / lstm golden file, read field by field. The stack options
    (``num_layers``, ``param_in``, ``param_rec``, ``share``; absent from older files) give
    ``stack``: None for one dense layer, else the layout of :func:`stack_layout`."""
    config = {**STACK_DEFAULTS, **config}
    known = {"input_size", "hidden_size", "output_size", "quant_in", "quant_rec",
             "quant_bias", "quant_out", "clip_shadow", "many_to_many", "dtype",
             *STACK_DEFAULTS}
    known |= {"peepholes"} if name == "lstm" else set()
    assert set(config) == known, f"unexpected model fields {sorted(set(config) ^ known)}"
    assert config["dtype"] == "float64"
    stacked = any(config[k] != v for k, v in STACK_DEFAULTS.items())
    return dict(n=config["hidden_size"], d_in=config["input_size"],
                d_out=config["output_size"], many_to_many=config["many_to_many"],
                peepholes=config.get("peepholes", False), embedding=embedding,
                quant={g: parse_ott(config[g]) for g in
                       ("quant_in", "quant_rec", "quant_bias", "quant_out")},
                stack=stack_layout(name, config) if stacked else None)


def _per_layer(value, L):
    specs = [value] * L if isinstance(value, str) else list(value)
    assert len(specs) == L, f"{L} layers, specs {value!r}"
    parsed = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        assert kind in ("dense", "ldr", "lowrank") and (kind == "dense") == (arg == ""), spec
        parsed.append((kind, int(arg) if arg else None))
    return parsed


def stack_layout(cell, config):
    """Parameters of a stacked / structured cell model, from the naming rules of
    docs/compact.md (not from hadamnp): layer prefixes ``l<k>.`` when there are several
    layers; a dense matrix is its own parameter, a Toeplitz-like one has ``.G``, ``.H``
    (k, r, b), a low-rank one ``.A`` (m, k) and ``.B`` (k, n) unless it shares a projection:
    ``P_x`` / ``P_h`` of its layer (share = gates), and with share = layers the recurrent
    matrices of layer l and the input matrices of layer l + 1 share ``l<l>.P_h``.

    Returns ``{"layers", "matrices", "shapes", "names"}`` for
    :func:`hadamnp`-independent recomputation by ``spec_model.stack_forward_loss``.
    """
    L, n, share = config["num_layers"], config["hidden_size"], config["share"]
    assert share in ("none", "gates", "layers"), share
    p_in, p_rec = _per_layer(config["param_in"], L), _per_layer(config["param_rec"], L)
    prefixes = [""] if L == 1 else [f"l{k}." for k in range(L)]
    layers, matrices, shapes, names = [], {}, {}, []
    for k, prefix in enumerate(prefixes):
        d_in = config["input_size"] if k == 0 else n
        layers.append({"prefix": prefix, "d_in": d_in})
        for g in sm.CELL_GATES[cell]:
            for letter, (kind, arg), shape in (("x", p_in[k], (n, d_in)),
                                               ("h", p_rec[k], (n, n))):
                name = f"{prefix}W_{letter}{g}"
                if kind == "dense":
                    parts = {name: shape}
                elif kind == "ldr":
                    b, blocks = min(shape), -(-max(shape) // min(shape))
                    parts = {f"{name}.G": (blocks, arg, b), f"{name}.H": (blocks, arg, b)}
                else:
                    projection = f"{name}.B"
                    if share != "none":
                        projection = f"{prefix}P_{letter}"
                        below = k - 1
                        if letter == "x" and share == "layers" and below >= 0 \
                                and p_rec[below][0] == "lowrank":
                            assert p_rec[below][1] == arg, "shared projections need one rank"
                            projection = f"{prefixes[below]}P_h"
                    parts = {f"{name}.A": (shape[0], arg), projection: (arg, shape[1])}
                matrices[name] = (kind, tuple(parts))
                for part, part_shape in parts.items():
                    assert shapes.get(part, part_shape) == part_shape, part
                    shapes[part] = part_shape
                    if part not in names:
                        names.append(part)
            bias = prefix + "b" + (f"_{g}" if g else "")
            shapes[bias] = (n,)
            names.append(bias)
        if config.get("peepholes"):
            for g in ("i", "f", "o"):
                shapes[f"{prefix}p_{g}"] = (n,)
                names.append(f"{prefix}p_{g}")
    shapes["V"], shapes["c"] = (config["output_size"], n), (config["output_size"],)
    return {"layers": layers, "matrices": matrices, "shapes": shapes,
            "names": tuple(names) + ("V", "c")}


def stack_golden_errors(arrays, meta, cell, case, loss):
    """:func:`golden_errors` of a stacked or structured rnn / gru / lstm file."""
    layout, embedding = case["stack"], case["embedding"]
    names = layout["names"] + (("E",) if embedding else ())
    biases = {k for k in names if k == "c" or k.rpartition(".")[2].startswith("b")}
    effective = [m for m in layout["matrices"]] + [k for k in biases if k != "c"] + ["V"]
    peepholes = [k for k in names if k.rpartition(".")[2].startswith("p_")]
    states = [layer["prefix"] + s for layer in layout["layers"] for s in CELL_STATES[cell]]
    expected = {"x", "y", "logits", "loss", *(f"weight.{k}_q" for k in effective),
                *(f"weight.{k}" for k in peepholes), *(f"state.{k}" for k in states),
                *(f"param.{k}" for k in names), *(f"grad.{k}" for k in names)} \
        | ({"weight.E_q", "state.embedded"} if embedding else set())
    assert set(arrays) == expected, (
        f"golden keys differ: missing {sorted(expected - set(arrays))}, "
        f"extra {sorted(set(arrays) - expected)}")
    roles = {k: "embedding" if k == "E" else "bias" if k in biases else "weight"
             for k in names}
    assert meta["param_roles"] == roles, meta["param_roles"]
    shapes = dict(layout["shapes"])
    if embedding:
        shapes["E"] = (embedding["vocab_size"], case["d_in"])
    for k in names:
        assert arrays[f"param.{k}"].shape == shapes[k] == arrays[f"grad.{k}"].shape, k
    params = {k: arrays[f"param.{k}"] for k in names}
    value, logits, st, grads, eff = sm.stack_forward_loss(
        cell, params, arrays["x"], arrays["y"], layers=layout["layers"],
        matrices=layout["matrices"], quant=case["quant"], peepholes=case["peepholes"],
        many_to_many=case["many_to_many"], loss=loss, embedding=embedding and {
            "bits": embedding["bits"], "padding_id": embedding["padding_id"]})
    reference = {"logits": logits, "loss": np.asarray(value)}
    reference.update({f"weight.{k}_q": v for k, v in eff.items()})
    reference.update({f"weight.{k}": params[k] for k in peepholes})
    reference.update({f"state.{k}": v for k, v in st.items()})
    reference.update({f"grad.{k}": g for k, g in grads.items()})
    if embedding:
        table_q = sm.quantize(params["E"], embedding["bits"])
        reference["weight.E_q"] = table_q
        reference["state.embedded"] = sm.embed(table_q, arrays["x"],
                                               embedding["padding_id"]).value
    recomputed = set(reference) | {f"param.{k}" for k in names} | {"x", "y"}
    assert recomputed == set(arrays), sorted(set(arrays) ^ recomputed)
    errors = {}
    for key, ref in reference.items():
        errors[key] = rel_err(arrays[key], ref)
        scale = max(float(np.max(np.abs(ref))), TINY)
        np.testing.assert_allclose(
            arrays[key], ref, rtol=RTOL, atol=1e-12 * scale,
            err_msg=f"golden {key} vs spec autograd (norm-wise rel err {errors[key]:.3e})")
    return errors


CELL_STATES = {"rnn": ("h",), "gru": ("h", "gates", "hc"), "lstm": ("h", "c", "tc", "gates")}


def cell_golden_errors(arrays, meta, cell, case, loss):
    """:func:`golden_errors` of a rnn / gru / lstm file."""
    embedding = case["embedding"]
    cell_names = sm.cell_param_names(cell, case["peepholes"])
    names = cell_names + (("E",) if embedding else ())
    quantized = [k for k in names if sm.cell_group(k) is not None]
    weight_keys = [f"weight.{k}_q" for k in quantized] + \
        [f"weight.{k}" for k in names if k.startswith("p_")] + \
        (["weight.E_q", "state.embedded"] if embedding else [])
    expected = {"x", "y", "logits", "loss", *weight_keys,
                *(f"state.{k}" for k in CELL_STATES[cell]),
                *(f"param.{k}" for k in names), *(f"grad.{k}" for k in names)}
    assert set(arrays) == expected, (
        f"golden keys differ: missing {sorted(expected - set(arrays))}, "
        f"extra {sorted(set(arrays) - expected)}")
    one_bit = {g for g, (kind, _) in case["quant"].items() if kind == "binary"}
    roles = {k: "embedding" if k == "E" else "bias" if k == "c" or k == "b" or
             k.startswith("b_") else "binary" if sm.cell_group(k) in one_bit else "weight"
             for k in names}
    assert meta["param_roles"] == roles, meta["param_roles"]
    n, d_in, d_out, mtm = case["n"], case["d_in"], case["d_out"], case["many_to_many"]
    x, y = arrays["x"], arrays["y"]
    nb, T = x.shape[:2]
    G = len(sm.CELL_GATES[cell])
    positions = (nb, T) if mtm else (nb,)
    shapes = {"x": (nb, T) if embedding else (nb, T, d_in),
              "y": positions + ((d_out,) if loss == "mse" else ()), "loss": (),
              "logits": (nb, T, d_out) if mtm else (nb, d_out), "state.h": (nb, T, n),
              "state.c": (nb, T, n), "state.tc": (nb, T, n), "state.hc": (nb, T, n),
              "state.gates": (nb, T, G * n)}
    for k in names:
        shape = ((n, d_in) if k.startswith("W_x") else (n, n) if k.startswith("W_h")
                 else (d_out, n) if k == "V" else (d_out,) if k == "c" else (n,))
        shapes[f"param.{k}"] = shapes[f"grad.{k}"] = shape
        shapes[f"weight.{k}_q"] = shapes[f"weight.{k}"] = shape
    if embedding:
        table = (embedding["vocab_size"], d_in)
        shapes["param.E"] = shapes["grad.E"] = shapes["weight.E_q"] = table
        shapes["state.embedded"] = (nb, T, d_in)
    integers = ({"x"} if embedding else set()) | (set() if loss == "mse" else {"y"})
    for key in arrays:
        assert arrays[key].shape == shapes[key], f"{key}: {arrays[key].shape}, {shapes[key]}"
        want = np.int64 if key in integers else np.float64
        assert arrays[key].dtype == want, f"{key}: dtype {arrays[key].dtype}"
    params = {k: arrays[f"param.{k}"] for k in names}
    value, logits, states, grads, effective = sm.cell_forward_loss(
        cell, params, x, y, quant=case["quant"], peepholes=case["peepholes"],
        many_to_many=mtm, loss=loss, embedding=embedding and {
            "bits": embedding["bits"], "padding_id": embedding["padding_id"]})
    reference = {"logits": logits, "loss": np.asarray(value)}
    if embedding:
        table_q = sm.quantize(params["E"], embedding["bits"])
        reference["weight.E_q"] = table_q
        reference["state.embedded"] = sm.embed(table_q, x, embedding["padding_id"]).value
    reference.update({f"weight.{k}_q": v for k, v in effective.items()})
    reference.update({f"weight.{k}": params[k] for k in names if k.startswith("p_")})
    reference.update({f"state.{k}": v for k, v in states.items()})
    reference.update({f"grad.{k}": g for k, g in grads.items()})
    errors = {}
    for key, ref in reference.items():
        errors[key] = rel_err(arrays[key], ref)
        scale = max(float(np.max(np.abs(ref))), TINY)
        np.testing.assert_allclose(
            arrays[key], ref, rtol=RTOL, atol=1e-12 * scale,
            err_msg=f"golden {key} vs spec autograd (norm-wise rel err {errors[key]:.3e})")
    return errors


def assert_golden_agrees(arrays, meta):
    errors = golden_errors(arrays, meta)
    worst = max(errors, key=errors.get)
    summary = ", ".join(f"{k}={v:.2e}" for k, v in sorted(errors.items()))
    assert errors[worst] <= RTOL, f"worst rel err {errors[worst]:.3e} on {worst}; all: {summary}"
    return errors


def load_npz_independently(path):
    """Read a golden ``.npz`` with NumPy alone (no hadamnp): ``(arrays, meta)``."""
    with np.load(path, allow_pickle=False) as data:
        assert "meta" in data.files, f"{path} has no 'meta' entry: {data.files}"
        raw = data["meta"]
        arrays = {k: data[k] for k in data.files if k != "meta"}
    assert raw.shape == () and raw.dtype.kind == "U", (
        f"meta must be a 0-d unicode array, got shape {raw.shape} dtype {raw.dtype}")
    return arrays, json.loads(str(raw))


GOLDEN_CASES = [  # (model, options, many_to_many, seq_len, seed)
    ("hadamrnn", dict(hidden_size=8), False, 5, 3),
    ("hadamrnn", dict(hidden_size=16, nonlinear=True), True, 6, 4),
    ("block-hadamrnn", dict(hidden_size=16, block_size=4), False, 7, 5),
    ("block-hadamrnn", dict(hidden_size=8, block_size=2, quant_out="uniform:2"), True, 5, 6),
    ("dense", dict(hidden_size=8), True, 4, 7),
    ("dense", dict(hidden_size=4, quant_in="none", nonlinear=True), False, 5, 8),
    # low-precision cells x Ott et al.'s quantizer families (stochastic specs: the golden
    # forward is deterministic)
    ("rnn", dict(hidden_size=4), False, 5, 11),
    ("rnn", dict(hidden_size=5, quant_in="binary", quant_rec="binary:0.5",
                 quant_bias="binary-stochastic"), True, 4, 12),
    ("rnn", dict(hidden_size=4, quant_in="ternary", quant_rec="ternary-stochastic",
                 quant_bias="ternary", quant_out="ternary"), False, 6, 13),
    ("rnn", dict(hidden_size=3, quant_rec="pow2-ternary:1,3", quant_bias="exponential",
                 quant_out="exponential-stochastic"), True, 5, 14),
    ("gru", dict(hidden_size=4), True, 5, 15),
    ("gru", dict(hidden_size=5, quant_in="binary-stochastic", quant_rec="binary:0.25",
                 quant_bias="binary"), False, 5, 16),
    ("gru", dict(hidden_size=4, quant_in="ternary-stochastic", quant_rec="ternary",
                 quant_bias="ternary:0.3"), True, 4, 17),
    ("gru", dict(hidden_size=4, quant_in="pow2-ternary", quant_rec="pow2-ternary:f=2",
                 quant_bias="pow2-ternary:f=3"), False, 6, 18),
    ("gru", dict(hidden_size=3, quant_in="exponential", quant_rec="exponential-stochastic",
                 quant_bias="exponential", quant_out="pow2-ternary:2,2"), True, 5, 19),
    ("lstm", dict(hidden_size=4), False, 5, 20),
    ("lstm", dict(hidden_size=4, peepholes=True), True, 5, 21),
    ("lstm", dict(hidden_size=5, quant_in="binary", quant_rec="binary-stochastic:0.5",
                  quant_bias="binary:0.2", quant_out="binary"), True, 4, 22),
    ("lstm", dict(hidden_size=4, peepholes=True, quant_in="ternary",
                  quant_rec="ternary-stochastic", quant_bias="ternary"), False, 6, 23),
    ("lstm", dict(hidden_size=3, quant_in="pow2-ternary:f=3", quant_rec="pow2-ternary:1,2",
                  quant_bias="pow2-ternary"), True, 5, 24),
    ("lstm", dict(hidden_size=4, peepholes=True, quant_in="exponential-stochastic",
                  quant_rec="exponential", quant_bias="exponential-stochastic",
                  quant_out="exponential"), False, 5, 25),
    ("dense", dict(hidden_size=8, quant_rec="siman", quant_in="none"), True, 5, 9),
    ("dense", dict(hidden_size=4, quant_rec="siman:argmax", quant_out="siman"), False, 4, 10),
    ("hadamrnn", dict(hidden_size=8, quant_in="siman", quant_out="siman:argmax"), True, 5, 11),
    ("binary-rnn", dict(hidden_size=7), False, 6, 12),
    ("binary-rnn", dict(hidden_size=5, quant_rec="siman:argmax", standardize=False,
                        quant_out="uniform:4"), True, 5, 13),
    ("binary-rnn", dict(hidden_size=6, quant_rec="sign", quant_in="siman"), True, 4, 14),
    # compact models (Lu et al.): Toeplitz-like and (shared) low-rank gate matrices, stacks;
    # awkward block sizes (n = 5 and 7 with d_in = 3: cropped rectangular blocks)
    ("lstm", dict(hidden_size=5, param_in="ldr:1", param_rec="ldr:2"), False, 5, 26),
    ("lstm", dict(hidden_size=6, param_in="lowrank:2", param_rec="lowrank:3", share="gates"),
     True, 4, 27),
    ("rnn", dict(hidden_size=7, num_layers=2, param_in=("ldr:2", "lowrank:2"),
                 param_rec=("ldr:3", "lowrank:2"), share="none", quant_rec="ternary"),
     True, 4, 28),
    ("gru", dict(hidden_size=4, num_layers=2, param_in=("dense", "lowrank:2"),
                 param_rec="lowrank:2", share="layers"), False, 5, 29),
    ("lstm", dict(hidden_size=5, num_layers=3, param_in=("dense", "ldr:2", "lowrank:2"),
                  param_rec=("ldr:2", "lowrank:2", "lowrank:2"), share="layers",
                  peepholes=True), True, 4, 30),
]
CASE_IDS = [f"{c[0]}-{'-'.join(f'{k}{v}' for k, v in c[1].items())}" for c in GOLDEN_CASES]


def _make(golden, model, options, mtm, T, seed):
    return golden.make_golden(model, **options, input_size=3, output_size=5, seq_len=T,
                              batch=3, many_to_many=mtm, seed=seed)


@pytest.mark.parametrize("model,options,mtm,T,seed", GOLDEN_CASES, ids=CASE_IDS)
def test_golden_in_memory_agrees_with_spec_autograd(model, options, mtm, T, seed):
    golden = pytest.importorskip("hadamnp.golden.vectors")
    arrays, meta = _make(golden, model, options, mtm, T, seed)
    config = meta["model"]["config"]
    assert meta["model"]["name"] == model and meta["seed"] == seed and meta["version"] == 2
    assert all(config[k] == v for k, v in options.items()), (options, config)
    assert (config["many_to_many"], meta["source"]) == (mtm, "random")
    assert arrays["x"].shape == (3, T, 3)
    assert_golden_agrees(arrays, meta)


@pytest.mark.parametrize("model,options,mtm,T,seed", GOLDEN_CASES, ids=CASE_IDS)
def test_golden_file_roundtrip_agrees_with_spec_autograd(tmp_path, model, options, mtm, T,
                                                         seed):
    golden = pytest.importorskip("hadamnp.golden.vectors")
    arrays, meta = _make(golden, model, options, mtm, T, seed)
    again, _ = _make(golden, model, options, mtm, T, seed)
    for key in arrays:  # same seed, same file: golden files are regenerated, never edited
        np.testing.assert_array_equal(again[key], arrays[key], err_msg=f"{key} not reproducible")
    path = tmp_path / "golden.npz"
    golden.write_golden(path, arrays, meta)
    for label, (read, read_meta) in (("read_golden", golden.read_golden(path)),
                                     ("np.load", load_npz_independently(path))):
        assert set(read) == set(arrays), f"{label}: keys {sorted(read)}"
        for key in arrays:
            np.testing.assert_array_equal(read[key], arrays[key], err_msg=f"{label}: {key}")
            assert read[key].dtype == arrays[key].dtype, f"{label}: {key} dtype changed"
        # The file layer may add fields of its own (e.g. a checksum); none may be lost or changed.
        changed = {k: (v, read_meta.get(k, "<missing>"))
                   for k, v in json.loads(json.dumps(meta)).items()
                   if k not in read_meta or read_meta[k] != v}
        assert not changed, f"{label}: meta fields changed (written, read): {changed}"
        assert_golden_agrees(read, read_meta)


# Losses and token inputs: make_golden keyword arguments (issue 9, tasks and embedding).
GOLDEN_TASK_CASES = [
    dict(model="hadamrnn", hidden_size=8, input_size=9, embedding_dim=4,
         quant_embedding="uniform:4", output_size=5, many_to_many=True, seq_len=5, seed=11),
    dict(model="block-hadamrnn", hidden_size=16, block_size=4, input_size=2, output_size=2,
         loss="mse", seq_len=6, seed=12),
    dict(model="dense", hidden_size=4, input_size=3, output_size=1, loss="bce",
         many_to_many=True, seq_len=4, seed=13),
    dict(model="dense", hidden_size=8, quant_in="none", nonlinear=True, input_size=12,
         embedding_dim=3, output_size=3, loss="mse", many_to_many=True, seq_len=5, seed=14),
    dict(model="hadamrnn", hidden_size=8, input_size=30, embedding_dim=5,
         quant_embedding="uniform:2", output_size=1, loss="bce", seq_len=6, seed=15),
    dict(model="lstm", hidden_size=4, quant_rec="ternary", input_size=2, output_size=1,
         loss="mse", seq_len=6, seed=16),
    dict(model="gru", hidden_size=4, quant_in="exponential", input_size=9, embedding_dim=3,
         quant_embedding="uniform:4", output_size=1, loss="bce", many_to_many=True,
         seq_len=5, seed=17),
    dict(model="rnn", hidden_size=3, quant_bias="pow2-ternary:f=2", input_size=2,
         output_size=2, loss="mse", many_to_many=True, seq_len=5, seed=18),
]
TASK_CASE_IDS = [f"{c['model']}-{c.get('loss', 'ce')}"
                 f"{'-emb' + str(c['embedding_dim']) if 'embedding_dim' in c else ''}"
                 for c in GOLDEN_TASK_CASES]


@pytest.mark.parametrize("kwargs", GOLDEN_TASK_CASES, ids=TASK_CASE_IDS)
def test_golden_losses_and_embeddings_agree_with_spec_autograd(tmp_path, kwargs):
    golden = pytest.importorskip("hadamnp.golden.vectors")
    arrays, meta = golden.make_golden(**kwargs, batch=3)
    assert meta["loss"] == kwargs.get("loss", "cross_entropy")
    assert ("embedding" in meta["model"]) == ("embedding_dim" in kwargs)
    assert_golden_agrees(arrays, meta)
    path = tmp_path / "golden.npz"
    golden.write_golden(path, arrays, meta)
    read, read_meta = load_npz_independently(path)
    for key in arrays:
        np.testing.assert_array_equal(read[key], arrays[key], err_msg=key)
    assert_golden_agrees(read, read_meta)


def test_golden_from_text_and_adding_checkpoints_agree_with_spec_autograd(tmp_path):
    """Trained runs with an embedding (text task) and with MSE (adding task)."""
    loop = pytest.importorskip("hadamnp.training.loop")
    from hadamnp.golden.vectors import golden_from_checkpoint
    from hadamnp.runs.config import resolve_config

    rng = np.random.default_rng(16)
    words = [b"sign ", b"hadamard ", b"rnn\n", b"bit "]
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"".join(words[i] for i in rng.integers(0, 4, size=600)))
    common = dict(batch_size=8, epochs=1, steps_per_epoch=3, lr=1e-2, val_batches=1,
                  test_batches=1, eval_batch_size=8)
    runs = {
        "text": dict(task="text", text=str(corpus), text_window=10, embedding_dim=4,
                     quant_embedding="uniform:4", model={"name": "hadamrnn", "hidden_size": 8}),
        "adding": dict(task="adding", adding_length=7, train_size=64,
                       model={"name": "dense", "hidden_size": 4}),
    }
    for name, options in runs.items():
        config = resolve_config(preset="base", overrides={**common, **options})
        loop.train(config, tmp_path / name)
        arrays, meta = golden_from_checkpoint(tmp_path / name, batch=2)
        assert meta["loss"] == ("mse" if name == "adding" else "cross_entropy")
        assert_golden_agrees(arrays, meta)


def test_golden_cli_file_agrees_with_spec_autograd(tmp_path):
    pytest.importorskip("hadamnp.golden.vectors")
    from click.testing import CliRunner

    from hadamnp.cli import main

    path = tmp_path / "cli.npz"
    args = ["golden", "--model", "block-hadamrnn", "--hidden", "8", "--block", "4", "--bits", "4",
            "--input-size", "3", "--output-size", "5", "--seq-len", "6", "--batch", "3",
            "--many-to-many", "--seed", "1", "--out", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    arrays, meta = load_npz_independently(path)
    config = meta["model"]["config"]
    assert (meta["model"]["name"], config["hidden_size"], config["block_size"],
            config["many_to_many"], meta["seed"]) == ("block-hadamrnn", 8, 4, True, 1), meta
    assert arrays["x"].shape == (3, 6, 3) and arrays["logits"].shape == (3, 6, 5)
    assert_golden_agrees(arrays, meta)


def test_version_1_file_stays_readable_and_correct():
    """A file written by hadamnp 0.1.0 (format v1), read by today's reader."""
    golden = pytest.importorskip("hadamnp.golden.vectors")
    arrays, meta = golden.read_golden(DATA / "golden-v1-block-hadamrnn.npz")
    assert (meta["version"], meta["model"], meta["block_size"]) == (1, "block-hadamrnn", 4)
    assert_golden_agrees(arrays, meta)


@pytest.fixture(scope="module")
def trained_copy_run(tmp_path_factory):
    """A HadamRNN trained a few steps on the copy task (L = 30, n = 16)."""
    loop = pytest.importorskip("hadamnp.training.loop")
    from hadamnp.runs.config import resolve_config

    run_dir = tmp_path_factory.mktemp("trained")
    config = resolve_config(preset="base", overrides=dict(
        task="copy", copy_length=30, batch_size=16, epochs=1, steps_per_epoch=6, lr=3e-2,
        val_batches=1, test_batches=1, model={"name": "hadamrnn", "hidden_size": 16}))
    loop.train(config, run_dir)
    return run_dir


def test_golden_from_checkpoint_agrees_with_spec_autograd(trained_copy_run, tmp_path):
    """``hadamnp golden --from-checkpoint``: a trained model on real task data."""
    from click.testing import CliRunner

    from hadamnp.cli import main

    path = tmp_path / "trained.npz"
    result = CliRunner().invoke(main, ["golden", "--from-checkpoint", str(trained_copy_run),
                                       "--batch", "2", "--seq-len", "12", "--out", str(path)])
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    arrays, meta = load_npz_independently(path)
    assert meta["source"] == "checkpoint" and meta["checkpoint"]["global_step"] == 6
    assert meta["checkpoint"]["trained_dtype"] == "float32"
    assert arrays["x"].shape == (2, 12, 10) and arrays["y"].shape == (2, 12)
    # the trained float32 parameters, exactly, in float64
    from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint

    trained = load_checkpoint(checkpoint_path(trained_copy_run)).params
    for name, value in trained.items():
        np.testing.assert_array_equal(arrays[f"param.{name}"], value.astype(np.float64))
    assert_golden_agrees(arrays, meta)


# --------------------------------------------------------------------------------------------
# The low-precision cells of the spec model (rnn, gru, lstm) and their golden files
# --------------------------------------------------------------------------------------------

FP_QUANT = {g: ("none", {}) for g in ("quant_in", "quant_rec", "quant_bias", "quant_out")}


def _cell_problem(cell, peepholes, seed, n=3, d_in=2, d_out=4, T=5, nb=2, mtm=True):
    rng = np.random.default_rng(seed)
    params = {}
    for name in sm.cell_param_names(cell, peepholes):
        shape = ((n, d_in) if name.startswith("W_x") else (n, n) if name.startswith("W_h")
                 else (d_out, n) if name == "V" else (d_out,) if name == "c" else (n,))
        params[name] = rng.standard_normal(shape) * 0.6
    x = rng.standard_normal((nb, T, d_in))
    y = rng.integers(0, d_out, size=(nb, T) if mtm else (nb,))
    return params, x, y


@pytest.mark.parametrize("cell,peepholes", [("rnn", False), ("gru", False), ("lstm", False),
                                            ("lstm", True)])
@pytest.mark.parametrize("mtm", [False, True])
def test_spec_cells_match_finite_differences_unquantized(cell, peepholes, mtm):
    params, x, y = _cell_problem(cell, peepholes, 40 + mtm, mtm=mtm)
    kw = dict(quant=FP_QUANT, peepholes=peepholes, many_to_many=mtm)
    _, _, _, grads, _ = sm.cell_forward_loss(cell, params, x, y, **kw)
    errors = {name: rel_err(grads[name], numeric_grad(
        lambda: sm.cell_forward_loss(cell, params, x, y, **kw)[0], params[name]))
        for name in params}
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_RTOL, f"worst FD rel err {errors[worst]:.3e} on {worst}"


def test_spec_cell_states_follow_the_equations():
    """The GRU's stored states against a direct NumPy evaluation of the spec's equations."""
    params, x, y = _cell_problem("gru", False, 3)
    _, _, states, _, _ = sm.cell_forward_loss("gru", params, x, y, quant=FP_QUANT,
                                              many_to_many=True)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    h = np.zeros((2, 3))
    for t in range(x.shape[1]):
        xt, P = x[:, t], params
        r = sig(xt @ P["W_xr"].T + h @ P["W_hr"].T + P["b_r"])
        u = sig(xt @ P["W_xu"].T + h @ P["W_hu"].T + P["b_u"])
        c = np.tanh(xt @ P["W_xc"].T + P["b_c"] + r * (h @ P["W_hc"].T))
        h = (1 - u) * h + u * c
        np.testing.assert_allclose(states["h"][:, t], h, rtol=1e-13)
        np.testing.assert_allclose(states["gates"][:, t], np.concatenate([r, u, c], 1),
                                   rtol=1e-13)


def test_spec_ott_quantizers_hand_examples():
    M = np.array([-0.9, -0.25, -0.2, 0.0, 0.25, 0.3, 0.75, 0.76])
    np.testing.assert_array_equal(sm.ott_quantize(M, "binary", {}, 0.5),
                                  [-1, -1, -1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(sm.ott_quantize(M, "ternary", {}, 0.5),
                                  [-0.5, -0.5, 0, 0, 0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(sm.ott_quantize(M, "ternary", {"W0": 1.0}, 0.5),
                                  [-1, 0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(sm.ott_quantize(M, "pow2-ternary", {}, 0.5),
                                  [-0.5, 0, 0, 0, 0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(sm.ott_quantize(M, "exponential", {}, 0.5),
                                  [-1, -0.25, -0.25, 0, 0.25, 0.25, 0.5, 1])
    assert parse_ott("pow2-ternary:1,3") == ("pow2-ternary", {"i": 1.0, "f": 3.0})
    assert parse_ott("binary-stochastic:H=0.5") == ("binary", {"H": 0.5})


def test_golden_cli_cell_file_agrees_with_spec_autograd(tmp_path):
    """``hadamnp golden --model gru --quant-rec ternary-stochastic ...``: the file holds the
    deterministic forward, which the spec model recomputes."""
    pytest.importorskip("hadamnp.golden.vectors")
    from click.testing import CliRunner

    from hadamnp.cli import main

    path = tmp_path / "gru.npz"
    args = ["golden", "--model", "gru", "--hidden", "6", "--quant-rec", "ternary-stochastic",
            "--quant-in", "exponential", "-O", "quant_bias=pow2-ternary:0,3", "--input-size",
            "3", "--output-size", "4", "--seq-len", "5", "--batch", "2", "--many-to-many",
            "--seed", "9", "--out", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    arrays, meta = load_npz_independently(path)
    assert meta["model"]["name"] == "gru"
    assert meta["model"]["config"]["quant_rec"] == "ternary-stochastic"
    W0 = np.sqrt(6 / (2 * 6))  # the recurrent Glorot bound of n = 6: the ternary levels
    np.testing.assert_array_equal(np.unique(arrays["weight.W_hr_q"]), [-W0, 0.0, W0])
    assert_golden_agrees(arrays, meta)
