"""HadamRNN / Block-HadamRNN model (:mod:`hadamnp.models.hadamrnn`): algebra, validation,
kernel agreement, determinism, initialisation, and a short training run."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hadamnp.conventions import sign
from hadamnp.errors import ConfigError, NonFiniteError, ShapeError, SizeError
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.models.quantizers import Uniform
from hadamnp.reference.recurrence import hadamard_matrix
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.training.optim import Adam
from gradcheck import rel_err

# (n, block_size, recurrence) of the three registered model kinds.
KINDS = {"hadamrnn": (16, None, "hadamard"), "block-hadamrnn": (16, 4, "hadamard"),
         "dense": (8, None, "dense")}


def make(kind="hadamrnn", d_in=3, d_out=5, dtype="float64", kernels="numba", **options):
    n, m, recurrence = KINDS[kind]
    config = HadamRNNConfig(input_size=d_in, hidden_size=n, output_size=d_out, block_size=m,
                            recurrence=recurrence, dtype=dtype, **options)
    return HadamRNN(config, kernels=kernels)


def run(net, seed, B=3, T=6):
    """Parameters, logits and gradients for one random batch drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    params = net.init_params(rng)
    cfg = net.config
    x = rng.standard_normal((B, T, cfg.input_size))
    y = rng.integers(0, cfg.output_size, size=(B, T) if cfg.many_to_many else (B,))
    logits, cache = net.forward(params, x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    return params, logits, loss, net.backward(params, cache, dlogits), cache


# ----------------------------------------------------------------------------------------------
# Algebra
# ----------------------------------------------------------------------------------------------

@st.composite
def latent_signs(draw):
    """``(u, m)``: a latent vector (zeros included) for n = 2^k and a block size m | n."""
    k = draw(st.integers(0, 6))
    n = 2 ** k
    m = 2 ** draw(st.integers(0, k))
    u = draw(hnp.arrays(np.float64, n, elements=st.one_of(
        st.just(0.0), st.just(-0.0), st.floats(-10, 10, allow_nan=False))))
    return u, m


@settings(deadline=None)
@given(latent_signs())
def test_recurrent_matrix_is_orthogonal_for_every_u(case):
    u, m = case
    n = u.size
    net = HadamRNN(HadamRNNConfig(input_size=1, hidden_size=n, output_size=1, block_size=m))
    s = net.weights({"u": u, "U": np.zeros((n, 1)), "V": np.zeros((1, n))})["W_signs"]
    np.testing.assert_array_equal(s, np.where(u >= 0, 1.0, -1.0))  # sign(0) = sign(-0) = +1
    W = hadamard_matrix(s.astype(np.float64), m)
    err = np.max(np.abs(W @ W.T - np.eye(n)))
    assert err < 1e-12, f"W W^T - I up to {err:.2e} (n={n}, m={m}, s={s})"
    assert np.count_nonzero(W) == n * m, f"density {np.count_nonzero(W) / n**2}, expected {m / n}"
    assert np.all(np.isin(np.abs(W), [0, 1 / np.sqrt(m)]))


@pytest.mark.parametrize("kind", ["hadamrnn", "block-hadamrnn"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_state_norm_is_preserved_without_input_and_bias(kind, dtype, rtol):
    """With the input only at t = 0 and b = 0, ``h_t = W h_{t-1}`` keeps ``||h_t||``."""
    net = make(kind, dtype=dtype)
    params = net.init_params(np.random.default_rng(0))
    params["b"][:] = 0
    x = np.zeros((3, 40, 3))
    x[:, 0] = np.random.default_rng(1).standard_normal((3, 3))
    _, cache = net.forward(params, x)
    norms = np.linalg.norm(net.states(cache)["h"].astype(np.float64), axis=2)  # (B, T)
    assert np.all(norms[:, 0] > 0)
    err = np.max(np.abs(norms / norms[:, :1] - 1))
    assert err <= rtol, f"norm drift {err:.2e} over 40 steps; norms {norms[0]}"


def test_states_follow_the_equations():
    """``h_t = W h_{t-1} + Q(U) x_t + b`` and the logits, written out with dense matrices."""
    for kind in KINDS:
        for nonlinear in (False, True):
            net = make(kind, many_to_many=True, nonlinear=nonlinear)
            rng = np.random.default_rng(2)
            params = net.init_params(rng)
            x = rng.standard_normal((2, 4, 3))
            logits, cache = net.forward(params, x)
            w = net.weights(params)
            W = w["W_q"] if "W_q" in w else hadamard_matrix(w["W_signs"], net.config.m)
            h = np.zeros((2, net.config.hidden_size))
            for t in range(4):
                h = h @ W.T + x[:, t] @ w["U_q"].T + params["b"]
                if nonlinear:
                    h = np.maximum(h, 0)
                np.testing.assert_allclose(net.states(cache)["h"][:, t], h, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(logits[:, t], np.maximum(h, 0) @ w["V_q"].T
                                           + params["c"], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

BAD_INPUTS = {
    "2-d": (np.zeros((3, 4)), ShapeError, r"\(B, T, d_in\)"),
    "4-d": (np.zeros((2, 3, 4, 3)), ShapeError, r"\(B, T, d_in\)"),
    "wrong d_in": (np.zeros((2, 4, 2)), ShapeError, "d_in = 3"),
    "NaN": (np.full((2, 4, 3), np.nan), NonFiniteError, "x"),
    "Inf": (np.concatenate([np.zeros((2, 4, 2)), np.full((2, 4, 1), np.inf)], axis=2),
            NonFiniteError, "x"),
    "empty batch": (np.zeros((0, 4, 3)), ShapeError, "at least one"),
    "empty sequence": (np.zeros((2, 0, 3)), ShapeError, "at least one"),
    "strings": (np.full((2, 4, 3), "a"), TypeError, "numeric"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_forward_rejects_bad_inputs(case):
    x, error, message = BAD_INPUTS[case]
    net = make()
    params = net.init_params(np.random.default_rng(0))
    with pytest.raises(error, match=message):
        net.forward(params, x)


def test_forward_converts_integer_inputs():
    net = make()
    params = net.init_params(np.random.default_rng(0))
    x = np.arange(2 * 4 * 3).reshape(2, 4, 3) % 3
    np.testing.assert_array_equal(net.forward(params, x)[0], net.forward(params, x * 1.0)[0])


BAD_PARAMS = {
    "b too short": (lambda p: {**p, "b": p["b"][:-1]}, ShapeError, "b"),
    "V transposed": (lambda p: {**p, "V": p["V"].T.copy()}, ShapeError, "V"),
    "u NaN": (lambda p: {**p, "u": np.full_like(p["u"], np.nan)}, NonFiniteError, "u"),
    "b Inf": (lambda p: {**p, "b": np.full_like(p["b"], np.inf)}, NonFiniteError, "b"),
    "missing c": (lambda p: {k: v for k, v in p.items() if k != "c"}, ConfigError, "c"),
    "extra W": (lambda p: {**p, "W": np.eye(16)}, ConfigError, "W"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_check_params_rejects_bad_parameters(case):
    change, error, message = BAD_PARAMS[case]
    net = make()
    with pytest.raises(error, match=message):
        net.check_params(change(net.init_params(np.random.default_rng(0))))


@pytest.mark.parametrize("case", ["b too short", "u NaN", "b Inf"])
def test_forward_rejects_bad_parameters(case):
    """The compiled kernels do no bounds checks: malformed parameters must be refused
    before dispatch, and non-finite ones must not silently give NaN logits."""
    change, error, message = BAD_PARAMS[case]
    net = make()
    params = change(net.init_params(np.random.default_rng(0)))
    with pytest.raises(error, match=message):
        net.forward(params, np.zeros((2, 4, 3)))


def test_backward_rejects_wrong_dlogits_shape():
    net = make(many_to_many=True)
    params = net.init_params(np.random.default_rng(0))
    logits, cache = net.forward(params, np.ones((2, 4, 3)))
    with pytest.raises(ShapeError, match="dlogits"):
        net.backward(params, cache, np.zeros((2, 5)))


BAD_CONFIGS = {
    "n = 12": ({"hidden_size": 12}, SizeError, "12"),
    "n = 0": ({"hidden_size": 0}, SizeError, "0"),
    "n = 8.5": ({"hidden_size": 8.5}, (SizeError, ConfigError), "8.5"),
    "block 3": ({"block_size": 3}, SizeError, "3"),
    "block > n": ({"block_size": 32}, SizeError, "32"),
    "unknown recurrence": ({"recurrence": "lstm"}, ConfigError, "lstm"),
    "unknown ste": ({"quant_rec": "sign:tanh"}, ConfigError, "tanh"),
    "unknown dtype": ({"dtype": "float16"}, ConfigError, "float16"),
    "quant_in 33 bits": ({"quant_in": "uniform:33"}, ConfigError, "quant_in.*33"),
    "quant_out unknown": ({"quant_out": "quinary"}, ConfigError, "quant_out.*quinary"),
    "quant_in not a spec": ({"quant_in": 2.5}, ConfigError, "quant_in"),
    "uniform signs": ({"quant_rec": "uniform:2"}, ConfigError, "sign quantizer"),
    "input_size = 0": ({"input_size": 0}, ConfigError, "input_size"),
    "output_size = 1.5": ({"output_size": 1.5}, ConfigError, "output_size"),
    "dense with block": ({"recurrence": "dense", "block_size": 4}, ConfigError, "block"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_validation(case):
    change, error, message = BAD_CONFIGS[case]
    options = {"input_size": 3, "hidden_size": 16, "output_size": 5, **change}
    with pytest.raises(error, match=message):
        HadamRNNConfig(**options)


def test_config_is_immutable_and_unknown_kernels_rejected():
    config = HadamRNNConfig(input_size=1, hidden_size=8, output_size=2, block_size=2)
    with pytest.raises(AttributeError):
        config.hidden_size = 16
    with pytest.raises(TypeError):
        HadamRNNConfig(input_size=1, hidden_size=8, output_size=2, hiden_size=4)
    with pytest.raises(ConfigError, match="cuda"):
        HadamRNN(config, kernels="cuda")
    assert config.m == 2 and config.model_name == "block-hadamrnn"
    assert HadamRNNConfig(1, 8, 2).model_name == "hadamrnn"
    assert HadamRNNConfig(1, 8, 2, block_size=8).model_name == "hadamrnn"
    assert HadamRNNConfig(1, 8, 2, recurrence="dense").model_name == "dense"
    assert HadamRNNConfig(**config.to_dict()) == config
    # options are stored canonically: block size n, quantizer specs as written back
    full = HadamRNNConfig(1, 8, 2, quant_in="uniform:bits=4", quant_rec="sign:ste=clipped")
    assert (full.block_size, full.quant_in, full.quant_rec) == (8, "uniform:4", "sign:clipped")
    assert HadamRNNConfig(1, 8, 2, recurrence="dense").quant_rec == "none"


# ----------------------------------------------------------------------------------------------
# Kernels, determinism, weights
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_numba_and_reference_models_agree(kind, dtype, rtol):
    for mtm in (False, True):
        for nonlinear in (False, True):
            options = {"dtype": dtype, "many_to_many": mtm, "nonlinear": nonlinear}
            _, logits, loss, grads, _ = run(make(kind, **options), seed=5)
            _, logits_r, loss_r, grads_r, _ = run(make(kind, kernels="reference", **options),
                                                  seed=5)
            label = f"{kind} {options}"
            assert logits.dtype == logits_r.dtype == dtype
            err = rel_err(logits, logits_r)
            assert err <= rtol, f"{label}: logits relative error {err:.2e}"
            assert abs(loss - loss_r) <= rtol * abs(loss_r)
            for name in grads_r:
                assert grads[name].dtype == dtype
                err = rel_err(grads[name], grads_r[name])
                assert err <= rtol, f"{label}: d{name} relative error {err:.2e}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_same_seed_gives_bit_identical_runs(kind):
    first = run(make(kind, dtype="float32", many_to_many=True), seed=9)
    second = run(make(kind, dtype="float32", many_to_many=True), seed=9)
    params, logits, loss, grads, _ = first
    params2, logits2, loss2, grads2, _ = second
    for name in params:
        np.testing.assert_array_equal(params2[name], params[name], err_msg=f"param {name}")
        np.testing.assert_array_equal(grads2[name], grads[name], err_msg=f"grad {name}")
    np.testing.assert_array_equal(logits2, logits)
    assert loss2 == loss
    other = run(make(kind, dtype="float32", many_to_many=True), seed=10)[0]
    assert not np.array_equal(other["U"], params["U"]), "the seed does not reach the init"


def test_backward_leaves_params_and_cache_untouched():
    net = make("block-hadamrnn", nonlinear=True, many_to_many=True)
    rng = np.random.default_rng(3)
    params = net.init_params(rng)
    logits, cache = net.forward(params, rng.standard_normal((2, 5, 3)))
    before = {k: v.copy() for k, v in {**params, **{f"cache.{k}": v
                                                   for k, v in cache.items()}}.items()}
    grads = net.backward(params, cache, np.ones_like(logits))
    grads2 = net.backward(params, cache, np.ones_like(logits))
    for name, value in before.items():
        current = params[name] if name in params else cache[name[len("cache."):]]
        np.testing.assert_array_equal(current, value, err_msg=f"{name} modified by backward")
    for name in grads:
        np.testing.assert_array_equal(grads2[name], grads[name])
        assert not any(np.shares_memory(grads[name], v) for v in params.values())


def test_state_buffer_reuse_gives_the_same_results():
    net = make("hadamrnn", dtype="float32")
    rng = np.random.default_rng(4)
    params = net.init_params(rng)
    x = rng.standard_normal((3, 6, 3))
    buffer = net.state_buffer(3, 6)
    assert buffer.shape == (6, 16, 3) and buffer.dtype == np.float32
    logits, cache = net.forward(params, x)
    logits_b, cache_b = net.forward(params, x, states_out=buffer)
    np.testing.assert_array_equal(logits_b, logits)
    np.testing.assert_array_equal(net.states(cache_b)["h"], net.states(cache)["h"])
    assert np.shares_memory(net.states(cache_b)["h"], buffer)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_weights_keys_and_values(kind):
    net = make(kind, quant_in="uniform:4", quant_out="uniform:3")
    params = net.init_params(np.random.default_rng(6))
    w = net.weights(params)
    rec = "W_q" if kind == "dense" else "W_signs"
    assert set(w) == {rec, "U_q", "V_q"}
    np.testing.assert_array_equal(w["U_q"], Uniform(4).forward(params["U"]))
    np.testing.assert_array_equal(w["V_q"], Uniform(3).forward(params["V"]))
    if kind == "dense":
        np.testing.assert_array_equal(w["W_q"], params["W"])
    else:
        np.testing.assert_array_equal(w["W_signs"], sign(params["u"]))
    unquantized = make(kind, quant_in="none", quant_out="none")
    w0 = unquantized.weights(params)
    np.testing.assert_array_equal(w0["U_q"], params["U"])
    np.testing.assert_array_equal(w0["V_q"], params["V"])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_parameter_and_gradient_keys_and_shapes(kind):
    net = make(kind, many_to_many=True)
    params, _, _, grads, _ = run(net, seed=0)
    specs = net.param_specs()
    shapes = {name: spec.shape for name, spec in specs.items()}
    assert {k: v.shape for k, v in params.items()} == shapes
    assert {k: v.shape for k, v in grads.items()} == shapes
    rec = "W" if kind == "dense" else "u"
    assert list(specs) == [rec, "U", "b", "V", "c"]
    roles = {name: spec.role for name, spec in specs.items()}
    assert roles == {rec: "weight" if kind == "dense" else "signs", "U": "weight",
                     "b": "bias", "V": "weight", "c": "bias"}


# ----------------------------------------------------------------------------------------------
# Initialisation (PyTorch-equivalent distributions)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_distributions(dtype):
    n, d_in, d_out = 64, 3, 10
    net = HadamRNN(HadamRNNConfig(input_size=d_in, hidden_size=n, output_size=d_out,
                                  dtype=dtype))
    p = net.init_params(np.random.default_rng(0))
    assert all(v.dtype == dtype for v in p.values())
    bounds = {"u": np.sqrt(6 / (n + 1)), "U": np.sqrt(6 / (d_in + n)),
              "V": np.sqrt(6 / (d_out + n)), "b": 1 / np.sqrt(n), "c": 1 / np.sqrt(n)}
    for name, bound in bounds.items():
        values = p[name].astype(np.float64)
        assert np.max(np.abs(values)) <= bound * (1 + 1e-6), f"{name} exceeds {bound}"
        # The whole interval is used (U(-a, a), not a narrower or one-sided law).
        assert values.max() > 0.5 * bound and values.min() < -0.5 * bound, name
    assert abs(np.mean(p["u"] > 0) - 0.5) < 0.2


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_square_input_matrix_and_dense_w_are_orthogonal(dtype, tol):
    net = HadamRNN(HadamRNNConfig(input_size=16, hidden_size=16, output_size=2,
                                  recurrence="dense", dtype=dtype))
    p = net.init_params(np.random.default_rng(1))
    for name in ("W", "U"):
        M = p[name].astype(np.float64)
        err = np.max(np.abs(M @ M.T - np.eye(16)))
        assert err < tol, f"{name} {name}^T - I up to {err:.2e}"


# ----------------------------------------------------------------------------------------------
# A short training run (not timed)
# ----------------------------------------------------------------------------------------------

def recall_batch(rng, B, T=8, symbols=4):
    """Remember-the-first-symbol task: a one-hot symbol at t = 0, zeros after it, the
    symbol to be named at the last step."""
    y = rng.integers(0, symbols, B)
    x = np.zeros((B, T, symbols))
    x[np.arange(B), 0, y] = 1
    return x, y


@pytest.mark.parametrize("block_size", [None, 4])
def test_training_reduces_the_loss(block_size):
    net = HadamRNN(HadamRNNConfig(input_size=4, hidden_size=16, output_size=4,
                                  block_size=block_size))  # float32, 4-bit U and V
    rng = np.random.default_rng(0)
    params = net.init_params(rng)
    x_eval, y_eval = recall_batch(np.random.default_rng(1), 256)

    def eval_loss():
        return softmax_cross_entropy(net.forward(params, x_eval)[0], y_eval)[0]

    initial = eval_loss()
    optimizer = Adam()
    state = optimizer.init_state(params)
    for _ in range(40):
        x, y = recall_batch(rng, 32)
        logits, cache = net.forward(params, x)
        _, dlogits = softmax_cross_entropy(logits, y)
        optimizer.step(params, net.backward(params, cache, dlogits), state, lr=1e-2)
    final = eval_loss()
    assert np.isfinite(final) and final < 0.6 * initial, f"loss {initial:.3f} -> {final:.3f}"
