"""The SiMaN weight binarizer (:mod:`hadamnp.models.siman`) and the quantizer-owned parameter
seam of :class:`hadamnp.models.weights.Weight`."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.models import binary
from hadamnp.models.init import xavier_uniform
from hadamnp.models.quantizers import Sign, get_quantizer, quantizer_spec
from hadamnp.models.siman import SiMaN
from hadamnp.models.weights import Weight
from gradcheck import rel_err

EPS = 1e-6


def surrogate(M, alpha):
    """The function whose gradient the STE returns: ``diag(alpha) |z(M)|``."""
    return alpha[:, None] * np.abs(binary.standardize(M, 1)[0])


@pytest.mark.parametrize("rule", ["half", "argmax"])
@pytest.mark.parametrize("shape", [(3, 8), (5, 7), (1, 2), (4, 1)])
def test_forward_is_alpha_times_the_magnitude_code(rng, rule, shape):
    q = SiMaN(rule=rule)
    M = rng.standard_normal(shape)
    alpha = rng.uniform(0.5, 2, size=shape[0])
    Q = q.forward(M, params={"alpha": alpha})
    B = q.code(M)
    np.testing.assert_array_equal(Q, alpha[:, None] * (2.0 * B - 1))
    X = np.abs(binary.standardize(M, 1)[0])
    k = B.sum(axis=1)
    if rule == "half":
        assert (k == shape[1] // 2).all()
    else:
        np.testing.assert_array_equal(k, binary.argmax_k(X))
    for row, code in zip(X, B):  # the ones are the largest magnitudes
        if 0 < code.sum() < code.size:
            assert row[code == 1].min() >= row[code == 0].max()
    C, s = q.factors(M, params={"alpha": alpha})
    np.testing.assert_array_equal(s[:, None] * C, Q)


def test_code_depends_on_magnitude_not_sign(rng):
    M = rng.standard_normal((4, 10))
    q = SiMaN()
    np.testing.assert_array_equal(q.code(M), q.code(-M))
    B = q.code(M).astype(bool)
    centred = M - M.mean(axis=1, keepdims=True)
    # +1 effective weights come from latent weights of both signs: "sign-to-magnitude"
    assert (centred[B] > 0).any() and (centred[B] < 0).any()


@pytest.mark.parametrize("rule", ["half", "argmax"])
def test_ste_through_the_standardization_matches_finite_differences(rng, rule):
    """dM is the exact gradient of sum(G * diag(alpha)|z(M)|) (the surrogate)."""
    q = SiMaN(rule=rule)
    M = rng.standard_normal((4, 6))
    alpha = rng.uniform(0.5, 2, size=4)
    G = rng.standard_normal((4, 6))
    dM, owned = q.backward(M, G, params={"alpha": alpha})
    numeric = np.zeros_like(M)
    for idx in np.ndindex(M.shape):
        up, down = M.copy(), M.copy()
        up[idx] += EPS
        down[idx] -= EPS
        numeric[idx] = (np.sum(G * surrogate(up, alpha))
                        - np.sum(G * surrogate(down, alpha))) / (2 * EPS)
    assert rel_err(dM, numeric) < 1e-7
    # alpha: the forward pass is linear in alpha (the code does not depend on it)
    numeric_alpha = np.array([
        (np.sum(G * q.forward(M, params={"alpha": alpha + EPS * e}))
         - np.sum(G * q.forward(M, params={"alpha": alpha - EPS * e}))) / (2 * EPS)
        for e in np.eye(4)])
    assert rel_err(owned["alpha"], numeric_alpha) < 1e-7


def test_dtype_is_kept(rng):
    M = rng.standard_normal((3, 5)).astype(np.float32)
    alpha = np.ones(3, np.float32)
    q = SiMaN()
    assert q.forward(M, params={"alpha": alpha}).dtype == np.float32
    dM, owned = q.backward(M, np.ones_like(M), params={"alpha": alpha})
    assert dM.dtype == np.float32 and owned["alpha"].dtype == np.float32


def test_specs_and_errors():
    assert quantizer_spec(get_quantizer("siman")) == "siman"
    q = get_quantizer("siman:argmax,clip=15,clip_steps=100")
    assert (q.rule, q.clip, q.clip_steps) == ("argmax", 15, 100)
    assert get_quantizer(quantizer_spec(q)) == q
    for spec, match in (("siman:topk", "unknown rule"), ("siman:clip=60,clip_steps=3", "clip"),
                        ("siman:clip=15", "go together"), ("siman:clip_steps=-1", "clip_steps")):
        with pytest.raises(ConfigError, match=match):
            get_quantizer(spec)
    with pytest.raises(ConfigError, match="owns the parameter alpha"):
        SiMaN().forward(np.ones((2, 2)))
    with pytest.raises(ConfigError, match="alpha has shape"):
        SiMaN().forward(np.ones((2, 2)), params={"alpha": np.ones(3)})


def test_progressive_clipping_schedule(rng):
    q = SiMaN(clip=15, clip_steps=10)
    assert [q.percentile(k) for k in (0, 5, 10, 50)] == [15.0, 7.5, 0.0, 0.0]
    M = rng.standard_normal((6, 20)).astype(np.float32)
    clipped = q.project(M, 0)
    assert clipped.dtype == np.float32 and clipped is not M
    centred = M - M.mean(axis=1, keepdims=True)
    low, high = np.percentile(np.abs(centred), [15, 85])
    np.testing.assert_allclose(np.abs(clipped).min(), low, rtol=1e-6)
    np.testing.assert_allclose(np.abs(clipped).max(), high, rtol=1e-6)
    np.testing.assert_array_equal(np.sign(clipped), np.sign(centred))
    inside = (np.abs(centred) > low) & (np.abs(centred) < high)
    np.testing.assert_array_equal(clipped[inside], centred[inside])
    assert q.project(M, 10) is M and SiMaN().project(M, 0) is M
    assert not SiMaN().projects and q.projects


def test_weight_owns_the_quantizer_parameters(rng):
    weight = Weight("W", (4, 6), xavier_uniform, quantizer="siman")
    specs = weight.param_specs()
    assert list(specs) == ["W", "W.alpha"]
    assert (specs["W"].role, specs["W.alpha"].role, specs["W.alpha"].shape) == \
        ("binary", "scale", (4,))
    params = weight.init(rng, "float32")
    assert params["W.alpha"].dtype == np.float32
    np.testing.assert_allclose(params["W.alpha"], np.abs(params["W"]).mean(axis=1), rtol=1e-6)
    params["W.alpha"] = rng.uniform(0.5, 2, size=4).astype(np.float32)
    np.testing.assert_array_equal(
        weight.effective(params),
        SiMaN().forward(params["W"], params={"alpha": params["W.alpha"]}))
    dMq = rng.standard_normal((4, 6)).astype(np.float32)
    grads = weight.backward(params, dMq)
    dM, owned = SiMaN().backward(params["W"], dMq, params={"alpha": params["W.alpha"]})
    assert set(grads) == {"W", "W.alpha"}
    np.testing.assert_array_equal(grads["W"], dM)
    np.testing.assert_array_equal(grads["W.alpha"], owned["alpha"])
    assert weight.code_bits() == 24 and weight.scale_bits() == 32 * 4
    np.testing.assert_array_equal(weight.code(params), SiMaN().code(params["W"]))
    stats = weight.diagnostics(params)
    assert stats["ones"] == 0.5 and stats["entropy"] == 1.0 and 0 < stats["kstar"] <= 1


def test_initialisation_draws_nothing_for_the_owned_parameters(rng):
    """alpha comes from the initial matrix: the random stream of the other parameters is
    the one of a weight without SiMaN."""
    plain = Weight("W", (4, 6), xavier_uniform).init(np.random.default_rng(3), "float64")
    owned = Weight("W", (4, 6), xavier_uniform, quantizer="siman").init(
        np.random.default_rng(3), "float64")
    np.testing.assert_array_equal(plain["W"], owned["W"])


def test_roles_follow_the_bit_width():
    assert Weight("U", (2, 3), xavier_uniform, quantizer="sign").role == "binary"
    assert Weight("U", (2, 3), xavier_uniform, quantizer="uniform:1").role == "weight"
    assert Weight("U", (2, 3), xavier_uniform, quantizer="none").role == "weight"
    assert Weight("U", (2, 3), xavier_uniform, quantizer="sign", role="weight").role == "weight"


def test_sign_weights_report_codes_without_owned_parameters(rng):
    weight = Weight("V", (3, 4), xavier_uniform, quantizer=Sign())
    params = weight.init(rng, "float64")
    np.testing.assert_array_equal(weight.code(params), params["V"] >= 0)
    assert set(weight.diagnostics(params)) == {"ones", "entropy", "kstar"}
    assert weight.project(params, 0) == {}
    assert Weight("V", (3, 4), xavier_uniform).diagnostics(params) == {}


def test_clipping_weight_projects_its_matrix(rng):
    weight = Weight("W", (4, 6), xavier_uniform, quantizer="siman:clip=10,clip_steps=4")
    params = weight.init(rng, "float64")
    projected = weight.project(params, 1)
    assert set(projected) == {"W"}
    np.testing.assert_array_equal(projected["W"], weight.quantizer.project(params["W"], 1))
    assert weight.project(params, 4) == {}


def test_embedding_wrapper_forwards_the_optional_members(rng):
    from hadamnp.models.embedding import Embedded, EmbeddingConfig
    from hadamnp.models.registry import build_model

    inner = build_model("dense", input_size=4, hidden_size=8, output_size=3,
                        quant_rec="siman:clip=10,clip_steps=5", many_to_many=False,
                        dtype="float64")
    model = Embedded(inner, EmbeddingConfig(vocab_size=6, embedding_dim=4, quantizer="siman"))
    params = model.init_params(rng)
    assert model.param_specs()["E"].role == "embedding" and "E.alpha" in params
    figures = model.diagnostics(params)
    assert {"ones.E", "entropy.E", "kstar.E", "ones.W", "entropy.W", "kstar.W"} <= set(figures)
    projected = model.project_params(params, 0)
    assert set(projected) == {"W"}
    np.testing.assert_array_equal(projected["W"], inner.project_params(
        {k: v for k, v in params.items() if k != "E"}, 0)["W"])


@pytest.mark.parametrize("n", [1, 2, 64])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T, mtm", [(1, False), (5, True)])
def test_siman_dense_rnn_numba_kernels_equal_the_reference(rng, n, dtype, T, mtm):
    """A dense RNN with SiMaN W, U and V: the Numba sequence kernels against their NumPy
    twins (forward, states and every gradient, alpha included), odd batch."""
    from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
    from hadamnp.models.losses import softmax_cross_entropy

    config = HadamRNNConfig(input_size=3, hidden_size=n, output_size=4, recurrence="dense",
                            quant_in="siman", quant_rec="siman:argmax", quant_out="siman",
                            many_to_many=mtm, dtype=dtype)
    numba_net, ref_net = HadamRNN(config), HadamRNN(config, kernels="reference")
    params = numba_net.init_params(rng)
    x = rng.standard_normal((3, T, 3)).astype(dtype)
    y = rng.integers(0, 4, size=(3, T) if mtm else (3,))
    rtol = 1e-4 if dtype == "float32" else 1e-11
    out = {}
    for label, net in (("numba", numba_net), ("reference", ref_net)):
        logits, cache = net.forward(params, x)
        _, dlogits = softmax_cross_entropy(logits, y)
        out[label] = (logits, net.states(cache)["h"], net.backward(params, cache, dlogits))
    (lg, h, g), (lg_ref, h_ref, g_ref) = out["numba"], out["reference"]
    np.testing.assert_allclose(lg, lg_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(h, h_ref, rtol=rtol, atol=rtol)
    assert set(g) == set(params) and {"W.alpha", "U.alpha", "V.alpha"} <= set(g)
    for name in g:
        np.testing.assert_allclose(g[name], g_ref[name], rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_siman_gate_matrices_of_the_cells(rng, cell):
    """SiMaN on the recurrent gate matrices of a GRU / LSTM: owned alphas, role binary, and
    gradients = the quantizer's surrogate applied to the gradient of the same cell holding
    the effective matrices in full precision."""
    from hadamnp.models.losses import softmax_cross_entropy
    from hadamnp.models.registry import build_model

    options = dict(input_size=2, hidden_size=5, output_size=3, many_to_many=True,
                   dtype="float64")
    net = build_model(cell, quant_rec="siman", **options)
    free = build_model(cell, **options)
    params = net.init_params(rng)
    gates = [k for k in params if k.startswith("W_h") and "." not in k]
    specs = net.param_specs()
    assert all(specs[g].role == "binary" and specs[g + ".alpha"].role == "scale"
               for g in gates)
    x, y = rng.standard_normal((3, 4, 2)), rng.integers(0, 3, size=(3, 4))

    def loss_grads(model, p):
        logits, cache = model.forward(p, x)
        _, d = softmax_cross_entropy(logits, y)
        return model.backward(p, cache, d)

    grads = loss_grads(net, params)
    effective = net.weights(params)
    free_params = {k: (effective[k + "_q"].copy() if k in gates else v)
                   for k, v in params.items() if not k.endswith(".alpha")}
    free_grads = loss_grads(free, free_params)
    for g in gates:
        dW, owned = SiMaN().backward(
            params[g], free_grads[g], params={"alpha": params[g + ".alpha"]})
        np.testing.assert_allclose(grads[g], dW, rtol=1e-10, atol=1e-14, err_msg=g)
        np.testing.assert_allclose(grads[g + ".alpha"], owned["alpha"], rtol=1e-10,
                                   atol=1e-14, err_msg=g)
    assert set(net.diagnostics(params)) == {f"{k}.{g}" for g in gates
                                            for k in ("ones", "entropy", "kstar")}


def test_cell_size_counts_alpha_as_scales_only():
    from hadamnp.models.registry import build_model

    options = dict(input_size=2, hidden_size=6, output_size=3, many_to_many=False,
                   dtype="float32")
    plain, siman = build_model("lstm", **options), build_model("lstm", quant_rec="siman",
                                                               **options)
    assert siman.size().float32_parameters == plain.size().float32_parameters
    assert siman.size().parameters == plain.size().parameters + 4 * 6
    assert siman.size().bits["W_h"] == 4 * 36
    assert siman.size().bits["scales"] - plain.size().bits["scales"] == 32 * 4 * 6
