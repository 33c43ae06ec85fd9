"""Finite-difference check of the whole hand-written BPTT (float64, tiny sizes).

The loss is ``softmax_cross_entropy(HadamRNN.forward(params, x), y)`` and the analytic
gradient ``HadamRNN.backward(params, cache, dlogits)``: the check covers the time loop
(Numba kernels), the readout, the loss gradient and the straight-through estimators.

The quantizers make the true gradients of ``u``, ``U`` and ``V`` zero almost everywhere, so
the check replaces each STE by the identity it stands for:

- ``U``, ``V``: quantization off (``bits = 0``), then the gradient is the true one;
- ``u``: the identity STE passes on ``dL/ds`` with ``s = sign(u)`` treated as continuous, so
  ``grads["u"]`` is compared with central differences of the loss in a continuous ``s``,
  computed through the plain-NumPy reference forward (which accepts any float ``s``);
- with quantization on, ``grads["U"]``/``grads["V"]`` must equal the finite-difference
  gradient with respect to the quantized matrices ``U_q``/``V_q`` actually used, and the
  clipped sign STE must zero ``grads["u"]`` exactly where ``|u| > 1``.

Central differences with ``EPS = 1e-6`` have truncation error ~``EPS**2`` and rounding error
~``1e-16 / EPS``; the worst relative error (norm-wise, ``max|analytic - numeric| /
max|numeric|``) must stay below ``FD_RTOL = 1e-7`` (observed: at most 2e-9) and is
reported in every failure message.
"""

import numpy as np
import pytest

from hadamnp.kernels import recurrence as kernels
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.models.quantizers import uniform_spec
from hadamnp.reference import recurrence as reference
from hadamnp.models.losses import softmax_cross_entropy
from gradcheck import numeric_grad, rel_err

EPS = 1e-6
FD_RTOL = 1e-7

# (name, n, m, recurrent): full HadamRNN, Block-HadamRNN and the dense baseline.
MODELS = [("hadamrnn", 8, None, "hadamard"), ("block-hadamrnn", 8, 2, "hadamard"),
          ("dense", 4, None, "dense")]
CASES = [(model, mtm, nonlinear, T)
         for model in MODELS
         for mtm, nonlinear, T in [(False, False, 5), (True, False, 3),
                                   (False, True, 4), (True, True, 5)]]
D_IN, D_OUT, B = 2, 3, 2


def case_id(case):
    (name, *_), mtm, nonlinear, T = case
    return f"{name}-{'m2m' if mtm else 'm2o'}-{'relu' if nonlinear else 'linear'}-T{T}"


def build(model, mtm, nonlinear, T, bits=0, seed=0):
    name, n, m, recurrence = model
    quant = uniform_spec(bits)
    config = HadamRNNConfig(input_size=D_IN, hidden_size=n, output_size=D_OUT, block_size=m,
                            quant_in=quant, quant_out=quant, recurrence=recurrence,
                            nonlinear=nonlinear, many_to_many=mtm, dtype="float64")
    net = HadamRNN(config)
    rng = np.random.default_rng(seed)
    params = net.init_params(rng)
    x = rng.standard_normal((B, T, D_IN))
    y = rng.integers(0, D_OUT, size=(B, T) if mtm else (B,))
    return net, params, x, y


def model_loss(net, params, x, y):
    return softmax_cross_entropy(net.forward(params, x)[0], y)[0]


def analytic_grads(net, params, x, y):
    logits, cache = net.forward(params, x)
    _, dlogits = softmax_cross_entropy(logits, y)
    return net.backward(params, cache, dlogits), cache


def effective_loss(net, s, w, params, x, y):
    """The loss with the effective weights passed explicitly, through the NumPy reference.

    ``s`` (signs, may be continuous) or ``w["W_q"]`` is the recurrent weight; ``w["U_q"]``,
    ``w["V_q"]`` the matrices the forward pass uses.
    """
    cfg = net.config
    xk = np.ascontiguousarray(x.transpose(1, 2, 0))
    opts = {"nonlinear": cfg.nonlinear, "many_to_many": cfg.many_to_many}
    if s is None:
        _, logits = reference.dense_forward(w["W_q"], w["U_q"], params["b"], w["V_q"],
                                            params["c"], xk, **opts)
    else:
        _, logits = reference.hadamard_forward(s, cfg.m, w["U_q"], params["b"], w["V_q"],
                                               params["c"], xk, **opts)
    logits = logits.transpose(2, 0, 1)
    return softmax_cross_entropy(logits if cfg.many_to_many else logits[:, 0], y)[0]


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bptt_matches_finite_differences(case):
    """Every parameter, STEs replaced by identities (bits 0; ``u`` via continuous ``s``)."""
    net, params, x, y = build(*case)
    grads, cache = analytic_grads(net, params, x, y)
    assert sorted(grads) == sorted(params)
    errors = {}
    for name in params:
        if name == "u":
            s = cache["weights"]["W_signs"].copy()
            w = net.weights(params)
            numeric = numeric_grad(lambda: effective_loss(net, s, w, params, x, y), s)
        else:
            numeric = numeric_grad(lambda: model_loss(net, params, x, y), params[name])
        assert grads[name].shape == params[name].shape
        errors[name] = rel_err(grads[name], numeric)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FD_RTOL, (
        f"{case_id(case)}: worst relative error {errors[worst]:.2e} for d{worst} "
        f"(all: { {k: f'{v:.1e}' for k, v in errors.items()} })")


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "reference"])
@pytest.mark.parametrize("m", [8, 2])
def test_sign_gradient_treats_s_as_continuous(impl, m):
    """``hadamard_backward`` returns ``dL/ds`` for any real ``s`` (its documented contract),
    not only at ``s = ±1``: checked against central differences of the reference forward
    with ``s`` drawn from ±[0.5, 1.5]."""
    rng = np.random.default_rng(11)
    n, T = 8, 4
    s = rng.uniform(0.5, 1.5, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    U = rng.standard_normal((n, D_IN))
    b = 0.1 * rng.standard_normal(n)
    V = rng.standard_normal((D_OUT, n))
    c = rng.standard_normal(D_OUT)
    x = rng.standard_normal((T, D_IN, B))
    g = rng.standard_normal((T, D_OUT, B))
    opts = {"nonlinear": False, "many_to_many": True}

    def loss():
        return float(np.sum(g * reference.hadamard_forward(s, m, U, b, V, c, x, **opts)[1]))

    numeric = numeric_grad(loss, s)
    h, _ = reference.hadamard_forward(s, m, U, b, V, c, x, **opts)
    analytic = impl.hadamard_backward(s, m, U, V, x, h, g, nonlinear=False)["s"]
    err = rel_err(analytic, numeric)
    assert err <= FD_RTOL, (f"{impl.__name__} ds at continuous s: relative error {err:.2e}\n"
                            f"analytic {analytic}\nnumeric  {numeric}")


def test_reference_kernels_model_matches_finite_differences():
    """The same check for a model running on the plain-NumPy kernels."""
    net, params, x, y = build(MODELS[1], True, True, 4)
    net = HadamRNN(net.config, kernels="reference")
    grads, _ = analytic_grads(net, params, x, y)
    for name in ("U", "b", "V", "c"):
        numeric = numeric_grad(lambda: model_loss(net, params, x, y), params[name])
        err = rel_err(grads[name], numeric)
        assert err <= FD_RTOL, f"d{name}: relative error {err:.2e}"


@pytest.mark.parametrize("model", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("mtm", [False, True], ids=["m2o", "m2m"])
def test_uniform_ste_passes_the_quantized_weight_gradient(model, mtm):
    """With 4-bit quantization, ``grads[U]`` and ``grads[V]`` are the true gradients with
    respect to ``U_q`` and ``V_q`` (identity STE, alpha held constant)."""
    net, params, x, y = build(model, mtm, False, 4, bits=4)
    grads, cache = analytic_grads(net, params, x, y)
    w = {k: cache["weights"][k].copy() for k in ("U_q", "V_q")}
    if "W" in params:
        w["W_q"] = params["W"]
    s = cache["weights"].get("W_signs")
    assert not np.array_equal(w["U_q"], params["U"]), "U was not quantized: vacuous check"
    for name in ("U", "V"):
        numeric = numeric_grad(lambda: effective_loss(net, s, w, params, x, y), w[f"{name}_q"])
        err = rel_err(grads[name], numeric)
        assert err <= FD_RTOL, f"d{name} vs d{name}_q: relative error {err:.2e}"


def test_clipped_sign_ste_masks_where_u_exceeds_one():
    model = MODELS[0]
    net_id, params, x, y = build(model, True, False, 4)
    net_clip = HadamRNN(HadamRNNConfig(**{**net_id.config.to_dict(),
                                          "quant_rec": "sign:clipped"}))
    # Push some latent signs outside [-1, 1] without changing sign(u).
    params["u"] = params["u"] * np.where(np.arange(8) % 3 == 0, 5.0, 1.0)
    params["u"][1] = 1.0  # the boundary |u| = 1 still passes the gradient
    grads_id, _ = analytic_grads(net_id, params, x, y)
    grads_clip, _ = analytic_grads(net_clip, params, x, y)
    inside = np.abs(params["u"]) <= 1
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(grads_clip["u"], np.where(inside, grads_id["u"], 0.0))
    assert np.all(grads_id["u"][~inside] != 0), "the masked gradients were already zero"
    for name in ("U", "b", "V", "c"):
        np.testing.assert_array_equal(grads_clip[name], grads_id[name], err_msg=f"d{name}")


@pytest.mark.parametrize("model", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("mtm,nonlinear", [(False, False), (True, True)])
def test_input_gradient_matches_finite_differences(model, mtm, nonlinear):
    """``backward(..., input_grad=True)["x"]`` is dL/dx (what an embedding or a lower
    layer receives), through quantized U."""
    net, params, x, y = build(model, mtm, nonlinear, 4, bits=4)
    logits, cache = net.forward(params, x)
    _, dlogits = softmax_cross_entropy(logits, y)
    grads = net.backward(params, cache, dlogits, input_grad=True)
    assert sorted(grads) == sorted([*params, "x"])
    numeric = numeric_grad(lambda: model_loss(net, params, x, y), x)
    err = rel_err(grads["x"], numeric)
    assert err <= FD_RTOL, f"dx: relative error {err:.2e}"
