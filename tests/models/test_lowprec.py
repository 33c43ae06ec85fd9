"""The rnn / gru / lstm model families (:mod:`hadamnp.models.lowprec`): the whole
hand-written BPTT against central differences (every parameter and the inputs, float64),
the straight-through estimators, stochastic draws, clipping declarations, sizes and
configuration errors."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models.lowprec import LowPrecisionRNN
from hadamnp.models.lowprec_quantizers import glorot_bound
from hadamnp.models.registry import build_model, model_from_description, model_options
from gradcheck import numeric_grad, rel_err

FD_RTOL = 1e-7
D_IN, D_OUT, N, B = 2, 3, 4, 3
FAMILIES = [("rnn", {}), ("gru", {}), ("lstm", {}), ("lstm", {"peepholes": True})]
FAMILY_IDS = ["rnn", "gru", "lstm", "lstm-peep"]
QUANTIZED = dict(quant_in="ternary", quant_rec="exponential", quant_bias="pow2-ternary:0,4",
                 quant_out="binary:H=0.3")


def build(name, options, mtm, T=5, kernels="numba", seed=0, **quant):
    model = build_model(name, input_size=D_IN, hidden_size=N, output_size=D_OUT,
                        many_to_many=mtm, dtype="float64", **options, **quant)
    if kernels != "numba":
        model = LowPrecisionRNN(model.config, kernels=kernels)
    rng = np.random.default_rng(seed)
    params = model.init_params(rng)
    x = rng.standard_normal((B, T, D_IN))
    weights = rng.standard_normal((B, T, D_OUT) if mtm else (B, D_OUT))
    return model, params, x, weights


def grads_of(model, params, x, weights, input_grad=True, rng=None):
    """Gradients of ``sum(weights * outputs)`` (an upstream gradient of order one, so the
    finite differences resolve every parameter)."""
    _, cache = model.forward(params, x, rng=rng)
    return model.backward(params, cache, weights, input_grad=input_grad)


@pytest.mark.parametrize("kernels", ["numba", "reference"])
@pytest.mark.parametrize("mtm", [False, True], ids=["m2o", "m2m"])
@pytest.mark.parametrize("name,options", FAMILIES, ids=FAMILY_IDS)
def test_bptt_matches_finite_differences(name, options, mtm, kernels):
    """Full precision (the STEs are identities then): every parameter and the inputs."""
    model, params, x, weights = build(name, options, mtm, kernels=kernels)

    def loss():
        return float(np.sum(weights * model.forward(params, x)[0]))

    grads = grads_of(model, params, x, weights)
    assert sorted(grads) == sorted([*params, "x"])
    errors = {}
    for key in grads:
        array = x if key == "x" else params[key]
        assert grads[key].shape == array.shape and grads[key].dtype == np.float64, key
        errors[key] = rel_err(grads[key], numeric_grad(loss, array))
    worst = max(errors, key=errors.get)
    assert errors[worst] <= FD_RTOL, f"worst {worst}: {errors[worst]:.2e} (all {errors})"


@pytest.mark.parametrize("mtm", [False, True], ids=["m2o", "m2m"])
@pytest.mark.parametrize("name,options", FAMILIES, ids=FAMILY_IDS)
def test_quantized_gradients_are_the_effective_weights_gradients(name, options, mtm):
    """Identity STE: with every matrix and bias quantized, the gradient of each latent
    parameter equals the gradient of the full-precision model evaluated at the quantized
    values (itself checked by finite differences above)."""
    model, params, x, weights = build(name, options, mtm, **QUANTIZED)
    fp, _, _, _ = build(name, options, mtm)
    eff = model.weights(params)
    at_q = {key: eff.get(f"{key}_q", params[key]) for key in params}
    changed = [key for key in params if not np.array_equal(at_q[key], params[key])]
    assert len(changed) == len(params) - 1 - 3 * bool(options), changed  # all but c, p
    got = grads_of(model, params, x, weights)
    want = grads_of(fp, at_q, x, weights)
    np.testing.assert_array_equal(model.forward(params, x)[0], fp.forward(at_q, x)[0])
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_stochastic_quantizers_draw_from_the_training_generator():
    model, params, x, weights = build("gru", {}, False, quant_in="ternary-stochastic",
                                      quant_rec="binary-stochastic:H=0.5",
                                      quant_bias="exponential-stochastic")
    deterministic = build("gru", {}, False, quant_in="ternary", quant_rec="binary:H=0.5",
                          quant_bias="exponential")[0]
    evaluated = model.forward(params, x)[0]
    np.testing.assert_array_equal(evaluated, deterministic.forward(params, x)[0])
    a = model.forward(params, x, rng=np.random.default_rng(5))[0]
    b = model.forward(params, x, rng=np.random.default_rng(5))[0]
    c = model.forward(params, x, rng=np.random.default_rng(6))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, evaluated)
    # the backward pass uses the draw of its forward pass
    rng = np.random.default_rng(5)
    _, cache = model.forward(params, x, rng=rng)
    drawn = cache["layer"]["weights"]
    assert set(np.unique(drawn["W_hr_q"])) <= {-0.5, 0.5}
    grads = model.backward(params, cache, weights)
    fp = build("gru", {}, False)[0]
    at_q = {key: drawn.get(f"{key}_q", params[key]) for key in params}
    at_q["V"] = params["V"]
    for key, value in grads_of(fp, at_q, x, weights, input_grad=False).items():
        np.testing.assert_array_equal(grads[key], value, err_msg=key)


@pytest.mark.parametrize("name,options", FAMILIES, ids=FAMILY_IDS)
def test_param_specs_bounds_and_clipping(name, options):
    model = build_model(name, input_size=D_IN, hidden_size=N, output_size=D_OUT,
                        quant_rec="ternary", quant_bias="exponential", **options)
    specs = model.param_specs()
    W0_in, W0_rec = glorot_bound(D_IN, N), glorot_bound(N, N)
    for key, spec in specs.items():
        if key.startswith("W_x"):
            assert (spec.role, spec.bound, spec.clip) == ("weight", W0_in, False), key
        elif key.startswith("W_h"):
            assert (spec.role, spec.bound, spec.clip) == ("weight", W0_rec, True), key
        elif key.startswith("b"):
            assert (spec.role, spec.bound, spec.clip) == ("bias", W0_in, True), key
        elif key == "V":
            assert (spec.bound, spec.clip) == (glorot_bound(N, D_OUT), False)
        else:
            assert key in ("c", "p_i", "p_f", "p_o") and spec.bound is None and not spec.clip
    unclipped = build_model(name, input_size=D_IN, hidden_size=N, output_size=D_OUT,
                            quant_rec="ternary", clip_shadow=False, **options)
    assert not any(spec.clip for spec in unclipped.param_specs().values())
    # the recurrent ternary quantizer got its W0 (the clipping bound) bound in
    eff = model.weights(model.init_params(np.random.default_rng(0)))
    key = "W_h" if name == "rnn" else "W_hg" if name == "lstm" else "W_hc"
    assert set(np.abs(np.unique(eff[f"{key}_q"]))) <= {0.0, np.float32(W0_rec)}


def test_initial_values_lie_in_the_clipping_ranges():
    model = build_model("lstm", input_size=1, hidden_size=16, output_size=10,
                        quant_in="ternary", quant_bias="ternary")
    params = model.init_params(np.random.default_rng(0))
    for key, spec in model.param_specs().items():
        if spec.bound is not None:
            assert np.max(np.abs(params[key])) <= spec.bound, key
    assert params["W_hi"].dtype == np.float32


def test_outputs_shapes_states_and_readout():
    model, params, x, _ = build("lstm", {"peepholes": True}, True, T=4)
    outputs, cache = model.forward(params, x)
    states = model.states(cache)
    assert outputs.shape == (B, 4, D_OUT)
    assert {k: v.shape for k, v in states.items()} == {
        "h": (B, 4, N), "c": (B, 4, N), "tc": (B, 4, N), "gates": (B, 4, 4 * N)}
    np.testing.assert_allclose(outputs, states["h"] @ params["V"].T + params["c"], rtol=1e-13)
    np.testing.assert_allclose(states["tc"], np.tanh(states["c"]), rtol=1e-13, atol=1e-15)
    last = build("lstm", {"peepholes": True}, False, T=4)[0]
    np.testing.assert_allclose(last.forward(params, x)[0], outputs[:, -1], rtol=1e-13)


def test_state_buffer_reuse_matches_fresh_buffers():
    model, params, x, weights = build("gru", {}, False, T=6)
    fresh = grads_of(model, params, x, weights)
    buffer = model.state_buffer(B, 6)
    for _ in range(2):
        _, cache = model.forward(params, x, states_out=buffer)
        grads = model.backward(params, cache, weights, input_grad=True)
        for key in fresh:
            np.testing.assert_array_equal(grads[key], fresh[key], err_msg=key)


def test_size_counts_quantized_bits():
    fp = build_model("lstm", input_size=1, hidden_size=128, output_size=10)
    q = build_model("lstm", input_size=1, hidden_size=128, output_size=10,
                    quant_in="ternary", quant_rec="ternary", quant_bias="ternary")
    matrices = 4 * (128 * 1 + 128 * 128)
    assert fp.size().parameters == q.size().parameters == matrices + 4 * 128 + 10 * 128 + 10
    assert fp.size().float32_bits == 32 * fp.size().parameters == fp.size().total_bits
    bits = q.size().bits
    assert bits["W_x"] == 2 * 4 * 128 and bits["W_h"] == 2 * 4 * 128 * 128
    assert bits["b"] == 2 * 4 * 128 and bits["scales"] == 12 * 32
    assert bits["V"] == 32 * 1280 and bits["c"] == 320
    assert q.size().compression_ratio > 10


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_description_round_trip_and_options(name):
    model = build_model(name, input_size=3, hidden_size=5, output_size=2,
                        quant_rec="ternary-stochastic")
    again = model_from_description(model.describe())
    assert again.describe() == model.describe() and again.name == name
    expected = {"hidden_size", "quant_in", "quant_rec", "quant_bias", "quant_out",
                "clip_shadow", "num_layers", "param_in", "param_rec", "share"} \
        | ({"peepholes"} if name == "lstm" else set())
    assert set(model_options(name)) == expected


@pytest.mark.parametrize("name, options, message", [
    ("lstm", {"quant_rec": "ternery"}, "quant_rec: unknown quantizer 'ternery'"),
    ("gru", {"quant_in": "pow2-ternary:9,9"}, "quant_in.*i \\+ f"),
    ("rnn", {"quant_bias": "pow2-ternary:f=-2"}, "quant_bias.*fractional"),
    ("lstm", {"quant_rec": "pow2-ternary"}, "quant_rec.*maps every value.*to 0"),
    ("gru", {"peepholes": True}, "no option 'peepholes'"),
    ("rnn", {"hidden_size": 0}, "hidden_size must be a positive integer"),
    ("lstm", {"clip_shadow": "yes"}, "clip_shadow must be a bool"),
    ("lstm", {"quant_out": 3}, "quant_out.*spec must be a string"),
])
def test_bad_options_name_the_option(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, **{"input_size": 1, "hidden_size": 128, "output_size": 10,
                             **options})


def test_pow2_ternary_with_enough_fractional_bits_is_accepted():
    """``pow2-ternary:0,3`` on n = 128: the recurrent W0 = 0.153 keeps the levels
    {-1/8, 0, 1/8}; without clipping the method's default i = 0, f = 1 is accepted too."""
    model = build_model("lstm", input_size=1, hidden_size=128, output_size=10,
                        quant_rec="pow2-ternary:0,3")
    eff = model.weights(model.init_params(np.random.default_rng(0)))
    assert set(np.unique(eff["W_hi_q"])) == {-0.125, 0.0, 0.125}
    build_model("lstm", input_size=1, hidden_size=128, output_size=10,
                quant_rec="pow2-ternary", clip_shadow=False)


def test_forward_and_backward_check_their_inputs():
    model, params, x, weights = build("rnn", {}, False)
    with pytest.raises(ShapeError, match="input features"):
        model.forward(params, x[..., :1])
    _, cache = model.forward(params, x)
    with pytest.raises(ShapeError, match="doutputs has shape"):
        model.backward(params, cache, weights[:, :1])
    with pytest.raises(ConfigError, match="missing"):
        model.forward({k: v for k, v in params.items() if k != "W_h"}, x)
    with pytest.raises(ConfigError, match="must be an RNNConfig"):
        LowPrecisionRNN(object())
    with pytest.raises(ConfigError, match="unknown kernels"):
        LowPrecisionRNN(model.config, kernels="cuda")


def test_training_loop_clips_what_the_model_declares():
    """``ParamSpec.clip`` parameters get their bound in the loop's groups whatever the run's
    ``clip_roles``; a declared clip needs a bound."""
    from hadamnp.models.protocol import ParamSpec
    from hadamnp.runs.config import resolve_config
    from hadamnp.training.loop import ParamGroups

    config = resolve_config(preset="base", overrides=dict(
        task="pmnist", model={"name": "gru", "hidden_size": 4, "quant_rec": "ternary"}))
    model = config.build_model(1, 10, False)
    groups = ParamGroups.of(model, config)
    assert groups.bounds == {f"W_h{g}": glorot_bound(4, 4) for g in "ruc"}
    opted_in = ParamGroups.of(model, config.replace(clip_roles=("weight",)))
    assert set(opted_in.bounds) == {f"W_{s}{g}" for s in "xh" for g in "ruc"} | {"V"}
    with pytest.raises(ConfigError, match="needs a bound"):
        ParamSpec((3,), "weight", clip=True)
