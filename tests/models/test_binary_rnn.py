"""The binary RNN (:mod:`hadamnp.models.binary_rnn`): finite-difference check of its
hand-written BPTT, its straight-through estimators, configuration and size.

The sign activation blocks the true gradient, so the whole-unroll check swaps it for the
smooth ApproxSign surrogate (the model's forward and backward use only the module names
``_activation``/``_activation_grad``): the BPTT must then be the exact gradient of that
smooth model. With the sign restored, the gradients w.r.t. the weights must equal the
surrogate gradients of the quantizers applied to the finite-difference gradient w.r.t. the
effective weights actually used.
"""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models import binary, binary_rnn
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.models.registry import build_model
from gradcheck import numeric_grad, rel_err

FD_RTOL = 1e-7


def problem(mtm, standardize, quant_rec="none", n=5, T=4, B=3, seed=0):
    net = build_model("binary-rnn", input_size=2, hidden_size=n, output_size=3,
                      quant_rec=quant_rec, standardize=standardize, many_to_many=mtm,
                      dtype="float64")
    rng = np.random.default_rng(seed)
    params = net.init_params(rng)
    params["W"] *= 3  # a larger recurrent drive: activations reach both sides of the kinks
    x = rng.standard_normal((B, T, 2))
    y = rng.integers(0, 3, size=(B, T) if mtm else (B,))
    return net, params, x, y


def loss_and_grads(net, params, x, y, input_grad=False):
    logits, cache = net.forward(params, x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    return loss, net.backward(params, cache, dlogits, input_grad=input_grad)


@pytest.fixture
def smooth_activation(monkeypatch):
    monkeypatch.setattr(binary_rnn, "_activation", binary.approx_sign)


@pytest.mark.parametrize("mtm", [False, True])
@pytest.mark.parametrize("standardize", [True, False])
def test_bptt_matches_finite_differences_of_the_surrogate(smooth_activation, mtm, standardize):
    net, params, x, y = problem(mtm, standardize)
    _, grads = loss_and_grads(net, params, x, y, input_grad=True)
    worst = {}
    for name in params:
        numeric = numeric_grad(lambda: loss_and_grads(net, params, x, y)[0], params[name])
        worst[name] = rel_err(grads[name], numeric)
    numeric_x = numeric_grad(lambda: loss_and_grads(net, params, x, y)[0], x)
    worst["x"] = rel_err(grads["x"], numeric_x)
    assert max(worst.values()) < FD_RTOL, worst
    z = net.forward(params, x)[1]["z"]
    assert (np.abs(z) > 1).any() and (np.abs(z) < 1).any(), "vacuous: one side of the kinks"


@pytest.mark.parametrize("rule", ["half", "argmax"])
def test_siman_gradients_are_the_quantizer_surrogate_of_the_used_weights(smooth_activation,
                                                                        rule):
    """grads[W], grads[W.alpha] = SiMaN.backward(W, dL/dQ(W)) with dL/dQ(W) by finite
    differences through a float model holding Q(W)."""
    net, params, x, y = problem(True, True, quant_rec=f"siman:{rule}", n=6)
    _, grads = loss_and_grads(net, params, x, y)
    free = problem(True, True, quant_rec="none", n=6)[0]
    free_params = {**params, "W": net.weights(params)["W_q"].copy()}
    del free_params["W.alpha"]
    dWq = numeric_grad(lambda: loss_and_grads(free, free_params, x, y)[0], free_params["W"])
    dW, owned = net.W.quantizer.backward(params["W"], dWq, params={"alpha": params["W.alpha"]})
    assert rel_err(grads["W"], dW) < FD_RTOL
    assert rel_err(grads["W.alpha"], owned["alpha"]) < FD_RTOL


def test_forward_values_by_hand(rng):
    """One step from h_0 = 0: a_1 = sign(0) = +1, h_1 = alpha * (C 1) + U x_1 + b."""
    net = build_model("binary-rnn", input_size=2, hidden_size=4, output_size=3,
                      many_to_many=True, dtype="float64")
    params = net.init_params(rng)
    x = rng.standard_normal((2, 2, 2))
    logits, cache = net.forward(params, x)
    C, alpha = net.W.factors(params)
    h1 = alpha[:, None] * C.sum(axis=1)[:, None] + params["U"] @ x[:, 0].T + params["b"][:, None]
    np.testing.assert_allclose(cache["h"][0], h1, rtol=1e-14)
    z = binary.standardize(h1, 0)[0]
    h2 = alpha[:, None] * (C @ np.where(z < 0, -1.0, 1.0)) + params["U"] @ x[:, 1].T \
        + params["b"][:, None]
    np.testing.assert_allclose(cache["h"][1], h2, rtol=1e-14)
    np.testing.assert_allclose(logits[:, 1], (params["V"] @ np.maximum(h2, 0)).T + params["c"],
                               rtol=1e-14)
    np.testing.assert_array_equal(net.states(cache)["h"], cache["h"].transpose(2, 0, 1))


def test_state_buffer_is_filled_and_checked(rng):
    net = build_model("binary-rnn", input_size=1, hidden_size=3, output_size=2,
                      many_to_many=False, dtype="float32")
    params = net.init_params(rng)
    x = rng.standard_normal((5, 4, 1))
    buf = net.state_buffer(5, 4)
    logits, cache = net.forward(params, x, states_out=buf)
    assert cache["h"] is buf and logits.shape == (5, 2) and logits.dtype == np.float32
    np.testing.assert_array_equal(net.forward(params, x)[0], logits)
    with pytest.raises(ShapeError, match="states_out"):
        net.forward(params, x, states_out=net.state_buffer(5, 3))
    with pytest.raises(ShapeError, match="dlogits"):
        net.backward(params, cache, np.zeros((5, 3)))


def test_configuration_and_size():
    net = build_model("binary-rnn", input_size=1, hidden_size=128, output_size=10,
                      many_to_many=False, dtype="float32")
    assert net.config.quant_rec == "siman" and net.config.standardize
    assert {k: s.role for k, s in net.param_specs().items()} == {
        "W": "binary", "W.alpha": "scale", "U": "weight", "b": "bias", "V": "weight",
        "c": "bias"}
    size = net.size()
    assert size.bits["W"] == 128 * 128 and size.bits["alpha"] == 32 * 128
    assert size.bits["U"] == 32 * 128 and size.bits["V"] == 32 * 1280
    assert size.float32_parameters == 128 * 128 + 128 + 1280 + 128 + 10
    for options, match in ((dict(hidden_size=0), "hidden_size"),
                           (dict(quant_rec="siman:nope"), "quant_rec"),
                           (dict(standardize="yes"), "standardize")):
        with pytest.raises(ConfigError, match=match):
            build_model("binary-rnn", **{**dict(input_size=1, hidden_size=4, output_size=2,
                                                 many_to_many=False, dtype="float32"),
                                          **options})


def test_binary_layers_only_for_one_bit_recurrent_quantizers(rng):
    for quant_rec, binary_layer in (("siman", True), ("sign", True), ("none", False),
                                    ("uniform:2", False)):
        net = build_model("binary-rnn", input_size=1, hidden_size=4, output_size=2,
                          quant_rec=quant_rec, many_to_many=False, dtype="float64")
        layers = net.binary_layers(net.init_params(rng))
        assert bool(layers) == binary_layer, quant_rec
