"""The embedding wrapper (:mod:`hadamnp.models.embedding`): lookup, finite-difference check
of the whole backward (table and wrapped model, float64, through the unroll), the table's
straight-through estimator, padding, descriptions, sizes and errors."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models.embedding import Embedded, EmbeddingConfig, embed
from hadamnp.models.losses import get_loss
from hadamnp.models.registry import build_model, model_from_description
from hadamnp.runs.plumbing import model_inputs
from gradcheck import numeric_grad, rel_err

FD_RTOL = 1e-7
V, D, B = 7, 3, 3


def make(model="dense", vocab=V, dim=D, quantizer="none", padding_id=0, many_to_many=False,
         output_size=4, dtype="float64", **options):
    options.setdefault("hidden_size", 4)
    if model == "dense":
        options.setdefault("quant_in", "none")
        options.setdefault("quant_out", "none")
    inner = build_model(model, input_size=dim, output_size=output_size,
                        many_to_many=many_to_many, dtype=dtype, **options)
    return Embedded(inner, EmbeddingConfig(vocab, dim, quantizer, padding_id))


def batch(rng, net, T, loss="cross_entropy"):
    params = net.init_params(rng)
    ids = rng.integers(0, net.config.input_size, size=(B, T))
    ids[0, 0] = 0  # a padding position (when the model has one) in every case
    positions = (B, T) if net.config.many_to_many else (B,)
    if loss == "mse":
        y = rng.standard_normal(positions + (net.config.output_size,))
    else:
        y = rng.integers(0, net.config.output_size, size=positions)
    return params, ids, y


def test_forward_is_the_wrapped_model_on_the_looked_up_rows(rng):
    net = make(many_to_many=True)
    params, ids, _ = batch(rng, net, T=5)
    logits, cache = net.forward(params, ids)
    rows = params["E"][ids]
    rows[ids == 0] = 0
    inner_params = {k: v for k, v in params.items() if k != "E"}
    expected, _ = net.inner.forward(inner_params, rows)
    np.testing.assert_array_equal(logits, expected)
    np.testing.assert_array_equal(net.states(cache)["embedded"], rows)
    np.testing.assert_array_equal(net.states(cache)["h"], net.inner.states(_)["h"])
    assert set(net.weights(params)) == {"E_q", "W_q", "U_q", "V_q"}


def test_identity_table_is_the_one_hot_path(rng):
    """With E = I (V = d) the embedding equals the one-hot inputs of token tasks."""

    class Tokens:
        input_kind, input_size, padding_id = "tokens", V, 0

    net = make(dim=V)
    params, ids, _ = batch(rng, net, T=4)
    params["E"] = np.eye(V)
    one_hot = model_inputs(Tokens, ids, np.float64)
    inner_params = {k: v for k, v in params.items() if k != "E"}
    np.testing.assert_array_equal(net.forward(params, ids)[0],
                                  net.inner.forward(inner_params, one_hot)[0])
    assert model_inputs(Tokens, ids, np.float64, net) is ids  # the embedding takes the ids


CASES = [  # (wrapped model, options, many_to_many, padding_id, loss, T)
    ("dense", {}, False, 0, "cross_entropy", 4),
    ("dense", {"nonlinear": True}, True, None, "cross_entropy", 3),
    ("dense", {}, True, 0, "mse", 3),
    ("hadamrnn", {"quant_in": "none", "quant_out": "none"}, False, 0, "cross_entropy", 5),
    ("block-hadamrnn", {"hidden_size": 8, "block_size": 2, "quant_in": "none",
                        "quant_out": "none"}, True, None, "mse", 3),
]


@pytest.mark.parametrize("model,options,mtm,padding_id,loss,T", CASES,
                         ids=[f"{c[0]}-{'m2m' if c[2] else 'm2o'}-pad{c[3]}-{c[4]}"
                              for c in CASES])
def test_backward_matches_finite_differences(rng, model, options, mtm, padding_id, loss, T):
    """Every smooth parameter (the Hadamard signs ``u`` are the wrapped model's own check),
    quantizers off, through the whole unroll and the lookup."""
    net = make(model, many_to_many=mtm, padding_id=padding_id,
               output_size=2 if loss == "mse" else 4, **options)
    params, ids, y = batch(rng, net, T, loss)
    loss_fn = get_loss(loss)
    logits, cache = net.forward(params, ids)
    grads = net.backward(params, cache, loss_fn(logits, y)[1])
    assert list(grads) == list(params)
    for name in params:
        if name == "u":
            continue
        numeric = numeric_grad(lambda: loss_fn(net.forward(params, ids)[0], y)[0],
                               params[name])
        err = rel_err(grads[name], numeric)
        assert err < FD_RTOL, f"{name}: relative error {err:.2e}"
    if padding_id is not None:
        assert not grads["E"][padding_id].any(), "the padding row received a gradient"
    unused = np.setdiff1d(np.arange(V), ids)
    assert not grads["E"][unused].any(), "a row no token used received a gradient"


def test_quantized_table_passes_the_gradient_of_the_effective_table(rng):
    """With ``uniform:4`` the table's gradient is the gradient w.r.t. ``Q(E)`` (identity
    STE, alpha held constant), checked by finite differences in the effective table."""
    net = make(quantizer="uniform:4", many_to_many=True)
    params, ids, y = batch(rng, net, T=3)
    loss_fn = get_loss("cross_entropy")
    logits, cache = net.forward(params, ids)
    grads = net.backward(params, cache, loss_fn(logits, y)[1])
    table_q = net.weights(params)["E_q"]
    levels = np.unique(table_q / np.abs(params["E"]).max() * 8)  # codes on the 4-bit grid
    codes = np.round(levels)
    np.testing.assert_allclose(levels, codes, atol=1e-12)
    assert set(codes) <= set(range(-8, 8)) and len(set(codes)) > 4, levels
    plain = make(quantizer="none", many_to_many=True)
    fixed = {**params, "E": table_q.copy()}
    numeric = numeric_grad(lambda: loss_fn(plain.forward(fixed, ids)[0], y)[0], fixed["E"])
    assert rel_err(grads["E"], numeric) < FD_RTOL


def test_padding_row_starts_at_zero_and_the_draws_are_reproducible():
    net = make(vocab=50, dim=8)
    params = net.init_params(np.random.default_rng(3))
    assert not params["E"][0].any()
    np.testing.assert_allclose(np.mean(np.sum(params["E"][1:] ** 2, axis=1)), 1, rtol=0.25)
    again = net.init_params(np.random.default_rng(3))
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert make(vocab=50, dim=8, padding_id=None).init_params(
        np.random.default_rng(3))["E"][0].any()
    np.testing.assert_array_equal(embed(np.ones((3, 2)), np.array([[0, 2]]), 0),
                                  [[[0, 0], [1, 1]]])


def test_description_round_trips_through_the_registry(rng):
    net = make("block-hadamrnn", hidden_size=8, block_size=4, quantizer="uniform:3",
               padding_id=None, many_to_many=True)
    description = net.describe()
    assert description["name"] == "block-hadamrnn"
    assert description["config"]["input_size"] == D
    assert description["embedding"] == {"vocab_size": V, "embedding_dim": D,
                                        "quantizer": "uniform:3", "padding_id": None}
    again = model_from_description(description)
    assert isinstance(again, Embedded) and again.describe() == description
    params, ids, _ = batch(rng, net, T=4)
    np.testing.assert_array_equal(again.forward(params, ids)[0], net.forward(params, ids)[0])
    assert model_from_description(net.inner.describe()).describe() == net.inner.describe()


def test_size_counts_the_table_at_its_bit_width():
    inner_only = make(vocab=100, dim=6).inner.size()
    size = make(vocab=100, dim=6, quantizer="uniform:4").size()
    assert size.bits["E"] == 100 * 6 * 4
    assert size.bits["alpha"] == inner_only.bits.get("alpha", 0) + 32
    assert size.parameters == inner_only.parameters + 600
    assert size.float32_parameters == inner_only.float32_parameters + 600
    assert make(vocab=100, dim=6).size().bits["E"] == 100 * 6 * 32


def test_large_vocabulary_float32(rng):
    """IMDB-size vocabularies go through the table (no one-hot cap)."""
    net = make("hadamrnn", vocab=30_000, dim=16, hidden_size=16, quantizer="uniform:4",
               dtype="float32", output_size=1)
    params = net.init_params(rng)
    ids = rng.integers(0, 30_000, size=(4, 20))
    logits, cache = net.forward(params, ids)
    grads = net.backward(params, cache, get_loss("bce")(logits, np.array([0, 1, 1, 0]))[1])
    assert logits.shape == (4, 1) and grads["E"].shape == (30_000, 16)
    assert grads["E"].dtype == np.float32
    assert np.count_nonzero(np.any(grads["E"] != 0, axis=1)) <= np.unique(ids).size


def test_bad_inputs_and_configurations(rng):
    net = make()
    params = net.init_params(rng)
    with pytest.raises(TypeError, match="integer token ids"):
        net.forward(params, np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"\(B, T\)"):
        net.forward(params, np.zeros((2, 3, 1), dtype=int))
    with pytest.raises(ConfigError, match=r"0\.\.6 \(vocab_size\)"):
        net.forward(params, np.array([[1, 7]]))
    with pytest.raises(ConfigError, match="missing"):
        net.forward({k: v for k, v in params.items() if k != "E"}, np.array([[1]]))
    logits, cache = net.forward(params, np.array([[1, 2]]))
    with pytest.raises(NotImplementedError, match="token ids"):
        net.backward(params, cache, np.ones_like(logits), input_grad=True)
    with pytest.raises(ConfigError, match="quant_embedding: unknown quantizer 'int4'"):
        EmbeddingConfig(10, 4, "int4")
    with pytest.raises(ConfigError, match="padding_id"):
        EmbeddingConfig(10, 4, padding_id=10)
    with pytest.raises(ConfigError, match="embedding_dim"):
        EmbeddingConfig(10, 0)
    with pytest.raises(ConfigError, match="input_size 3 must equal embedding_dim 5"):
        Embedded(net.inner, EmbeddingConfig(10, 5))
    class NoInputGrad:
        config = net.inner.config

        def backward(self, params, cache, doutputs, *, input_grad=False):
            raise NotImplementedError("no dL/dx here")

        def describe(self):
            return {"name": "toy", "config": {}}

        def param_specs(self):
            return net.inner.param_specs()

    with pytest.raises(ConfigError, match="'toy' cannot sit behind an embedding.*no dL/dx"):
        Embedded(NoInputGrad(), net.config.embedding).backward(params, {"inner": None},
                                                               logits)
    with pytest.raises(ConfigError, match="embedding record"):
        model_from_description({**net.describe(), "embedding": {"vocab": 3}})
