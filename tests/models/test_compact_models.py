"""Stacked cell models with Toeplitz-like and (shared) low-rank gate matrices: BPTT through
the whole stack against central differences (float64, quantization off), the compiled
kernels against the NumPy twins, sharing, sizes, options and errors."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.models.lowprec import LowPrecisionRNN
from hadamnp.models.registry import build_config, build_model, model_from_description
from gradcheck import numeric_grad

D_IN, D_OUT, N = 3, 2, 6

# (cell, options): one layer structured; stacks with per-layer specs and every sharing mode
CASES = [
    ("lstm", dict(param_rec="ldr:2")),
    ("lstm", dict(param_in="lowrank:2", param_rec="lowrank:2", share="gates")),
    ("rnn", dict(num_layers=2, param_in=["dense", "ldr:1"], param_rec="ldr:3")),
    ("gru", dict(num_layers=2, param_in=["ldr:2", "lowrank:2"], param_rec="lowrank:2",
                 share="layers")),
    ("lstm", dict(num_layers=3, param_in=["dense", "ldr:2", "lowrank:3"],
                  param_rec=["ldr:2", "lowrank:3", "lowrank:3"], share="layers",
                  peepholes=True)),
]


def case_id(case):
    cell, options = case
    return cell + "-" + "-".join(f"{k}{v}" for k, v in options.items()).replace(" ", "")


def build(cell, options, many_to_many=False, kernels="numba", **extra):
    config = build_config(cell, input_size=D_IN, hidden_size=N, output_size=D_OUT,
                          many_to_many=many_to_many, dtype="float64", **options, **extra)
    return LowPrecisionRNN(config, kernels=kernels)


def loss_and_grads(model, params, x, y, input_grad=False):
    logits, cache = model.forward(params, x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    return loss, model.backward(params, cache, dlogits, input_grad=input_grad)


@pytest.mark.parametrize("many_to_many", [False, True])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bptt_through_the_stack_matches_finite_differences(case, many_to_many):
    cell, options = case
    model = build(cell, options, many_to_many)
    rng = np.random.default_rng(7)
    params = model.init_params(rng)
    x = rng.standard_normal((2, 4, D_IN))
    y = rng.integers(0, D_OUT, (2, 4) if many_to_many else (2,))
    _, grads = loss_and_grads(model, params, x, y, input_grad=True)
    assert set(grads) == set(params) | {"x"}

    def loss():
        return softmax_cross_entropy(model.forward(params, x)[0], y)[0]

    worst = {}
    for name, array in list(params.items()) + [("x", x)]:
        numeric = numeric_grad(loss, array)
        scale = np.abs(numeric).max()
        assert scale > 0, f"{name}: zero numeric gradient, the check would be vacuous"
        worst[name] = np.abs(grads[name] - numeric).max() / scale
    bad = {k: f"{v:.2e}" for k, v in worst.items() if v > 1e-6}
    assert not bad, f"relative errors above 1e-6: {bad}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_kernels_match_the_numpy_twins(case, dtype):
    cell, options = case
    config = build_config(cell, input_size=D_IN, hidden_size=N, output_size=D_OUT,
                          many_to_many=True, dtype=dtype, **options)
    fast, slow = LowPrecisionRNN(config), LowPrecisionRNN(config, kernels="reference")
    rng = np.random.default_rng(3)
    params = fast.init_params(rng)
    x = rng.standard_normal((3, 5, D_IN)).astype(dtype)
    y = rng.integers(0, D_OUT, (3, 5))
    tol = 1e-4 if dtype == "float32" else 1e-11
    a, ga = loss_and_grads(fast, params, x, y, input_grad=True)
    b, gb = loss_and_grads(slow, params, x, y, input_grad=True)
    assert abs(a - b) <= tol * abs(b)
    for key in ga:
        scale = max(np.abs(gb[key]).max(), 1e-30)
        assert np.abs(ga[key] - gb[key]).max() <= tol * scale, key


def test_default_options_keep_the_one_layer_names():
    model = build_model("lstm", input_size=1, hidden_size=4, output_size=2)
    cfg = model.config
    assert (cfg.num_layers, cfg.param_in, cfg.param_rec, cfg.share) == (1, "dense", "dense",
                                                                          "none")
    assert list(model.param_specs())[:3] == ["W_xi", "W_hi", "b_i"]


def test_layer_names_and_shared_projections():
    model = build("lstm", CASES[4][1])
    specs = model.param_specs()
    # layer 0: dense inputs, Toeplitz-like recurrent; layer 1: Toeplitz-like inputs,
    # low-rank recurrent reading h^1 with layer 2's inputs through one projection l1.P_h
    assert specs["l0.W_xi"].shape == (N, D_IN)
    assert specs["l0.W_hi.G"].shape == (1, 2, N)
    assert specs["l1.W_xf.H"].shape == (1, 2, N)
    assert specs["l1.W_ho.A"].shape == (N, 3) and specs["l1.P_h"].shape == (3, N)
    assert specs["l2.W_xg.A"].shape == (N, 3) and "l2.P_x" not in specs
    assert specs["l2.P_h"].shape == (3, N)
    assert not any(name.endswith(".B") for name in specs)
    params = model.init_params(np.random.default_rng(0))
    w = model.weights(params)
    np.testing.assert_allclose(w["l2.W_xi_q"], params["l2.W_xi.A"] @ params["l1.P_h"])
    np.testing.assert_allclose(w["l1.W_hi_q"], params["l1.W_hi.A"] @ params["l1.P_h"])


def test_init_is_reproducible_and_descriptions_round_trip():
    model = build("gru", CASES[3][1])
    a = model.init_params(np.random.default_rng(11))
    b = model.init_params(np.random.default_rng(11))
    assert list(a) == list(model.param_specs())
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    description = model.describe()
    assert description["config"]["param_in"] == ("ldr:2", "lowrank:2")
    assert description["config"]["param_rec"] == "lowrank:2"
    again = model_from_description({"name": "gru", "config": {
        **description["config"], "param_in": list(description["config"]["param_in"])}})
    assert again.describe() == description


def test_sizes_and_matrix_table():
    n, r = 64, 2
    model = build_model("lstm", input_size=1, hidden_size=n, output_size=10,
                        param_rec=f"ldr:{r}")
    size = model.size()
    dense = build_model("lstm", input_size=1, hidden_size=n, output_size=10).size()
    assert size.bits["W_h"] == 32 * 4 * 2 * r * n
    assert size.float32_parameters == dense.float32_parameters == dense.parameters
    assert size.parameters == dense.parameters - 4 * (n * n - 2 * r * n)
    assert size.compression_ratio == pytest.approx(dense.total_bits / size.total_bits)
    table = size.matrices
    assert table["W_hi"]["parametrization"] == "ldr:2"
    assert table["W_hi"]["parameters"] == 2 * r * n and table["W_hi"]["dense"] == n * n
    shared = build_model("lstm", input_size=1, hidden_size=n, output_size=10,
                         param_rec="lowrank:4", share="gates").size()
    assert shared.bits["W_h"] == 32 * 4 * n * 4 and shared.bits["P"] == 32 * 4 * n
    assert shared.matrices["P_h"]["readers"] == ["W_hi", "W_hf", "W_hg", "W_ho"]
    assert shared.matrices["W_hi"]["shared"] == ["P_h"]


@pytest.mark.parametrize("options, message", [
    (dict(num_layers=0), "num_layers must be a positive integer"),
    (dict(num_layers=2, param_rec=["ldr:2"]), "param_rec must be .* a list of 2"),
    (dict(param_in="toeplitz:2"), "param_in: unknown parametrization 'toeplitz'"),
    (dict(share="everything"), "unknown share 'everything'"),
    (dict(param_in="ldr:1"), "param_in: displacement rank r=1 .* block of size 1"),
    (dict(param_rec="ldr:8"), "param_rec: displacement rank r=8 must be < the block size 8"),
    (dict(param_rec="lowrank:8"), "param_rec: rank k=8 of lowrank:8 must be < min"),
    (dict(num_layers=2, param_rec="lowrank:2", param_in=["dense", "lowrank:3"],
          share="layers"), "share = 'layers'.*layer 0 .*layer 1.*one rank"),
    (dict(num_layers=2, param_in=["dense", "lowrank:2"], param_rec="lowrank:2",
          share="gates", quant_rec="ternary"), "layer 0: param_rec: .*quantized"),
])
def test_bad_options_raise_naming_them(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("lstm", input_size=1, hidden_size=8, output_size=2, **options)
