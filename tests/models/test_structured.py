"""Compact parametrizations (hadamnp.models.structured) through Weight: Toeplitz-like
``ldr:r`` and ``lowrank:k``, shared factors, storage and errors."""

import numpy as np
import pytest
import scipy.linalg

from hadamnp.errors import ConfigError
from hadamnp.models.init import xavier_uniform
from hadamnp.models.structured import LowRank, ToeplitzLike, init_shared
from hadamnp.models.weights import (Weight, accumulate, get_parametrization,
                                    parametrization_spec, storage_bits)
from hadamnp.reference.ldr import ldr_matrix


def fd_check(weight, params, dMq, eps=1e-6):
    """Worst relative error of ``weight.backward`` against central differences of
    ``sum(dMq * Q(M))`` (identity-STE quantizers: the surrogate is the true gradient)."""
    grads = weight.backward(params, dMq)
    worst = 0.0
    for name, grad in grads.items():
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(grad.shape):
            plus, minus = dict(params), dict(params)
            plus[name] = params[name].copy()
            minus[name] = params[name].copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (np.sum(dMq * weight.latent(plus))
                            - np.sum(dMq * weight.latent(minus))) / (2 * eps)
        worst = max(worst, np.abs(numeric - grad).max() / np.abs(numeric).max())
    return worst


def test_specs_parse_and_print():
    assert get_parametrization("ldr:2") == ToeplitzLike(2)
    assert get_parametrization("lowrank:16") == LowRank(16)
    assert parametrization_spec(ToeplitzLike(3)) == "ldr:3"
    assert parametrization_spec(LowRank(rank=5)) == "lowrank:5"
    with pytest.raises(ConfigError, match="displacement rank r of ldr:r must be an integer"):
        get_parametrization("ldr:0")
    with pytest.raises(ConfigError, match="rank k of lowrank:k must be an integer >= 1"):
        get_parametrization("lowrank:-1")
    with pytest.raises(ConfigError, match="bad arguments|takes at most"):
        get_parametrization("ldr")


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9)])
def test_ldr_weight(rng, shape):
    weight = Weight("W", shape, xavier_uniform, parametrization="ldr:2")
    b = min(shape)
    k = -(-max(shape) // b)
    specs = weight.param_specs()
    assert {name: s.shape for name, s in specs.items()} == {"W.G": (k, 2, b), "W.H": (k, 2, b)}
    params = weight.init(rng, "float64")
    np.testing.assert_allclose(weight.latent(params),
                               ldr_matrix(params["W.G"], params["W.H"], shape), atol=1e-13)
    assert fd_check(weight, params, rng.standard_normal(shape)) < 1e-7
    assert weight.code_bits() == 32 * 2 * k * 2 * b == 32 * weight.parameter_count()
    assert weight.describe() == {"quantizer": "none", "parametrization": "ldr:2"}


def test_lowrank_weight(rng):
    weight = Weight("U", (7, 5), xavier_uniform, parametrization="lowrank:2")
    assert {k: s.shape for k, s in weight.param_specs().items()} == {"U.A": (7, 2),
                                                                     "U.B": (2, 5)}
    params = weight.init(rng, "float64")
    np.testing.assert_allclose(weight.latent(params), params["U.A"] @ params["U.B"])
    assert np.linalg.matrix_rank(weight.latent(params)) == 2
    assert fd_check(weight, params, rng.standard_normal((7, 5))) < 1e-7
    assert weight.code_bits() == 32 * 2 * 12


@pytest.mark.parametrize("spec", ["ldr:2", "lowrank:3"])
def test_init_projects_and_keeps_the_norm_of_the_initial_matrix(rng, spec):
    shape = (8, 8)
    draws = []

    def init_matrix(rng, shape, dtype):
        draws.append(xavier_uniform(rng, shape, dtype))
        return draws[-1]

    weight = Weight("W", shape, init_matrix, parametrization=spec)
    params = weight.init(rng, "float64")
    np.testing.assert_allclose(np.linalg.norm(weight.latent(params)), np.linalg.norm(draws[0]))
    # the same seed gives the same parameters (the draw is the only random choice)
    again = weight.init(np.random.default_rng(5), "float64")
    for key, value in weight.init(np.random.default_rng(5), "float64").items():
        np.testing.assert_array_equal(value, again[key])


def test_ldr_init_keeps_a_representable_matrix(rng):
    T = scipy.linalg.toeplitz(rng.standard_normal(9), rng.standard_normal(9))
    weight = Weight("W", (9, 9), lambda rng, shape, dtype: T.astype(dtype),
                    parametrization="ldr:2")
    np.testing.assert_allclose(weight.latent(weight.init(rng, "float64")), T, atol=1e-12)


def test_quantized_structured_weight_uses_the_surrogate_and_deploys_dense_codes(rng):
    weight = Weight("W", (6, 6), xavier_uniform, quantizer="uniform:4",
                    parametrization="ldr:1")
    params = weight.init(rng, "float64")
    dMq = rng.standard_normal((6, 6))
    # identity STE: the generators receive the parametrization's gradient of dMq
    np.testing.assert_allclose(weight.backward(params, dMq)["W.G"],
                               get_parametrization("ldr:1").backward(
                                   params, "W", (6, 6), dMq)["W.G"])
    assert weight.code_bits() == 4 * 36        # Q(M) is stored, not the generators


def test_unrepresentable_shapes_raise_naming_the_problem():
    with pytest.raises(ConfigError, match="r=4 must be < the block size 4 of a 4x9 matrix"):
        Weight("W", (4, 9), xavier_uniform, parametrization="ldr:4")
    with pytest.raises(ConfigError, match="block of size 1 has no such rank.*dense"):
        Weight("U", (128, 1), xavier_uniform, parametrization="ldr:1")
    with pytest.raises(ConfigError, match=r"rank k=5 of lowrank:5 must be < min\(m, n\) = 5"):
        Weight("W", (5, 8), xavier_uniform, parametrization="lowrank:5")
    with pytest.raises(ConfigError, match="one row or column.*dense"):
        Weight("U", (8, 1), xavier_uniform, parametrization="lowrank:1")


def test_shared_projection_is_one_parameter_with_summed_gradients(rng):
    gates = [Weight(f"W_h{g}", (6, 5), xavier_uniform, parametrization="lowrank:2",
                    shared={"B": "P_h"}) for g in "ifgo"]
    for w in gates:
        assert {k: s.shape for k, s in w.param_specs().items()} == {f"{w.name}.A": (6, 2),
                                                                    "P_h": (2, 5)}
    params = init_shared(rng, gates, "float64")
    assert sorted(params) == sorted(["P_h"] + [f"W_h{g}.A" for g in "ifgo"])
    for w in gates:
        np.testing.assert_allclose(w.latent(params), params[f"{w.name}.A"] @ params["P_h"])
    # the sum over the gates of each gate's gradient of P_h, by finite differences
    dM = {w.name: rng.standard_normal(w.shape) for w in gates}
    grads = {}
    for w in gates:
        accumulate(grads, w.backward(params, dM[w.name]))

    def loss(P):
        p = {**params, "P_h": P}
        return sum(np.sum(dM[w.name] * w.latent(p)) for w in gates)

    eps = 1e-6
    numeric = np.zeros((2, 5))
    for idx in np.ndindex(2, 5):
        E = np.zeros((2, 5))
        E[idx] = eps
        numeric[idx] = (loss(params["P_h"] + E) - loss(params["P_h"] - E)) / (2 * eps)
    np.testing.assert_allclose(grads["P_h"], numeric, rtol=1e-7, atol=1e-9)
    # storage: four A's and one P
    assert storage_bits(gates) == 32 * (4 * 12 + 10)
    assert sum(w.parameter_count() for w in gates) == 4 * 12


def test_shared_init_is_the_best_common_row_space(rng):
    """The shared init is the truncated SVD of the stacked initial matrices (then each A
    rescaled): the projection P spans the top right singular vectors of the stack."""
    draws = []

    def init_matrix(rng, shape, dtype):
        draws.append(rng.standard_normal(shape))
        return draws[-1]

    gates = [Weight(f"W{g}", (4, 6), init_matrix, parametrization="lowrank:3",
                    shared={"B": "P"}) for g in range(3)]
    params = init_shared(rng, gates, "float64")
    _, _, Vt = np.linalg.svd(np.concatenate(draws))
    P = params["P"]
    # same row space: projecting Vt[:3] onto rowspace(P) changes nothing
    Q, _ = np.linalg.qr(P.T)
    np.testing.assert_allclose(Q @ (Q.T @ Vt[:3].T), Vt[:3].T, atol=1e-12)
    for w, M0 in zip(gates, draws):
        np.testing.assert_allclose(np.linalg.norm(w.latent(params)), np.linalg.norm(M0))


def test_sharing_errors():
    with pytest.raises(ConfigError, match="has no part 'C' to share"):
        Weight("W", (4, 4), xavier_uniform, parametrization="lowrank:2", shared={"C": "P"})
    with pytest.raises(ConfigError, match="quantized"):
        Weight("W", (4, 4), xavier_uniform, quantizer="uniform:2",
               parametrization="lowrank:2", shared={"B": "P"})
    a = Weight("W1", (4, 4), xavier_uniform, parametrization="lowrank:2", shared={"B": "P"})
    b = Weight("W2", (4, 4), xavier_uniform, parametrization="lowrank:3", shared={"B": "P"})
    with pytest.raises(ConfigError, match="one rank and one column count"):
        init_shared(np.random.default_rng(0), [a, b], "float64")
