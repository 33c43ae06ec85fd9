"""Tests of hadamnp.models.lowrank: the U Σ Vᵀ algebra, the OIALR rank rule on constructed
spectra, the stability metric, eligibility and the inclusion order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import ConfigError
from hadamnp.models.lowrank import (OIALROptions, compose, factorize, included, next_rank,
                                    parse_oialr, rank_floor, reorthogonalize, select_weights,
                                    sigma_grad, stability)
from hadamnp.models.protocol import ParamSpec


def orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5, 5), (1, 1), (2, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_factorize_compose_round_trip(rng, shape, dtype):
    W = rng.standard_normal(shape).astype(dtype)
    U, s, Vt = factorize(W)
    m, N = max(shape), min(shape)
    assert U.shape == (m, N) and s.shape == (N,) and Vt.shape == (N, N)
    assert U.dtype == s.dtype == Vt.dtype == np.dtype(dtype)
    assert np.all(np.diff(s) <= 0)
    tol = 1e-5 if dtype == "float32" else 1e-12
    back = compose(U, np.diag(s), Vt, shape[0] < shape[1])
    assert back.shape == shape and back.flags.c_contiguous
    np.testing.assert_allclose(back, W, atol=tol * np.abs(W).max())
    np.testing.assert_allclose(U.T @ U, np.eye(N), atol=tol)
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(N), atol=tol)


@pytest.mark.parametrize("wide", [False, True])
def test_sigma_grad_is_the_adjoint_of_the_product(rng, wide):
    """<dW, d compose(U, Σ + t E, Vt)/dt> = <sigma_grad(dW), E> for random E (exact in
    float64 up to rounding, since the map Σ -> W is linear)."""
    m, N, k = 6, 4, 3
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    Vt = np.linalg.qr(rng.standard_normal((N, k)))[0].T
    S, E = rng.standard_normal((k, k)), rng.standard_normal((k, k))
    dW = rng.standard_normal((N, m) if wide else (m, N))
    change = compose(U, S + E, Vt, wide) - compose(U, S, Vt, wide)
    assert np.sum(dW * change) == pytest.approx(np.sum(sigma_grad(U, Vt, dW, wide) * E),
                                                rel=1e-12)


def test_reorthogonalize_keeps_the_product_and_diagonalizes(rng):
    m, N, k = 9, 6, 4
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    Vt = np.linalg.qr(rng.standard_normal((N, k)))[0].T
    S = rng.standard_normal((k, k))
    U2, sigma, Vt2 = reorthogonalize(U, S, Vt)
    assert np.all(np.diff(sigma) <= 0) and np.all(sigma >= 0)
    np.testing.assert_allclose(U2 @ np.diag(sigma) @ Vt2, U @ S @ Vt, atol=1e-12)
    np.testing.assert_allclose(U2.T @ U2, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(Vt2 @ Vt2.T, np.eye(k), atol=1e-12)


# ---------------------------------------------------------------------------- rank rule

def spectrum(k, above, top=10.0, beta=0.2):
    """``k`` descending singular values of which exactly ``above`` are >= beta * top."""
    cutoff = beta * top
    high = np.linspace(top, cutoff, above) if above > 1 else np.array([top])
    low = np.linspace(cutoff * 0.99, cutoff * 0.01, k - above)
    return np.concatenate([high, low])


def test_rank_rule_on_a_constructed_spectrum_sequence():
    """N = 300 (floor ⌊0.01 N⌋ = 3), β = 0.2, from the switch (k = 300): the raw rule asks
    for 200, 40, 60, 1, 1, 1, 1, 1, 1; the halving safeguard and the 1% floor give the
    exact sequence below."""
    N, beta = 300, 0.2
    above = [200, 40, 60, 1, 1, 1, 1, 1, 1]
    expected = [200, 100, 60, 30, 15, 7, 3, 3, 3]
    assert rank_floor(N) == 3
    k, got = N, []
    for count in above:
        k = next_rank(spectrum(k, count, beta=beta), k, N, beta)
        got.append(k)
    assert got == expected
    #  200 >= 300/2: kept; 40 < 200/2: halved to 100; 60 >= 50: kept; 1 < 30: halved to 30,
    #  15, 7; 1 < 7/2 = 3.5 > 3: halved to ⌊3.5⌋ = 3; 1 < 1.5 but 1.5 <= 3: the floor, 3.


def test_rank_rule_edges():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    assert next_rank(s, 4, 4, 0.1) == 4           # nothing below the cutoff: keep all
    assert next_rank(s, 4, 4, 0.25) == 3          # σ == cutoff is kept (first σ < cutoff)
    assert next_rank(s, 4, 4, 0.26) == 2          # 2 = ⌊4/2⌋: the halving bound is reached
    assert next_rank(s, 4, 4, 0.9) == 2           # raw 1 < 2: halved to 2
    assert next_rank(np.array([1.0]), 1, 1, 0.5) == 1
    assert next_rank(np.array([5.0, 1.0]), 2, 2, 0.5) == 1   # 1 < 1 is false: no halving
    assert next_rank(np.zeros(3), 3, 3, 0.5) == 3            # Σ = 0: nothing below 0
    floor = np.linspace(1, 0.001, 10)
    assert next_rank(floor, 10, 1000, 0.9) == 10              # floor 10 = k: unchanged
    s32 = np.array([1.0, 0.15, 0.1], np.float32)
    assert next_rank(s32, 3, 3, 0.15) == 2                    # the cutoff in float32


@given(st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=40),
       st.floats(0.01, 0.99), st.integers(1, 5000))
@settings(max_examples=200, deadline=None)
def test_rank_rule_bounds(values, beta, inner):
    """The new rank never grows, never drops below half (unless the floor allows less,
    i.e. never below ⌊k/2⌋ when that is above the floor) and never below the floor."""
    s = np.sort(np.array(values))[::-1]
    k = s.size
    inner = max(inner, k)
    new = next_rank(s, k, inner, beta)
    floor = rank_floor(inner)
    assert new <= max(k, floor)
    assert new >= floor
    assert new >= min(k // 2, k) or k // 2 <= floor


# ---------------------------------------------------------------------------- stability

def test_stability_metric(rng):
    Q = orthogonal(rng, 5)[:, :3] @ orthogonal(rng, 3)
    assert stability(Q, Q) == pytest.approx(1.0)
    assert stability(Q, -Q) == pytest.approx(-1.0)
    flipped = Q.copy()
    flipped[:, 0] *= -1
    assert stability(Q, flipped) == pytest.approx(1 / 3)
    assert stability(Q, np.zeros_like(Q)) == 0.0           # eps keeps zero columns finite
    assert stability(Q, 3 * Q) == pytest.approx(1.0)       # a cosine: scale free


# ---------------------------------------------------------------------------- eligibility

SPECS = {
    "E": ParamSpec((50, 16), "embedding"),
    "u": ParamSpec((16,), "signs", bound=1.0),
    "U": ParamSpec((16, 1), "weight", depth=0),
    "W_x": ParamSpec((16, 12), "weight", depth=0),
    "W": ParamSpec((16, 16), "weight", depth=1),
    "b": ParamSpec((16,), "bias"),
    "W2": ParamSpec((16, 16), "weight", depth=1),
    "V": ParamSpec((10, 16), "weight", depth=2),
}


def options(**changes):
    return OIALROptions(**{"delay": 4, "every": 2, **changes})


def test_select_weights_rules_and_order():
    assert select_weights(SPECS, options()) == ("W_x", "W", "W2")
    assert select_weights(SPECS, options(keep_first_layer=True)) == ("W", "W2")
    assert select_weights(SPECS, options(keep_last_layer=False)) == ("W_x", "W", "W2", "V")
    assert select_weights(SPECS, options(weights=["W2", "W"])) == ("W", "W2")
    # declared order inside a depth, depth before declaration order
    specs = {name: ParamSpec((8, 8), "weight", depth=depth)
             for name, depth in (("V", 2), ("B", 1), ("A", 1), ("Z", 0))}
    assert select_weights(specs, options()) == ("Z", "B", "A")


@pytest.mark.parametrize("weights, message", [
    (["u"], "never low-rank-ified"),
    (["U"], "too skinny"),
    (["V"], "last layer"),
    (["b"], "not a dense weight matrix"),
    (["E"], "not a dense weight matrix"),
    (["nope"], "no parameter 'nope'"),
])
def test_refused_weights(weights, message):
    with pytest.raises(ConfigError, match=message):
        select_weights(SPECS, options(weights=weights))


def test_no_eligible_weight_names_every_reason():
    specs = {"U": ParamSpec((128, 1), "weight", depth=0), "u": ParamSpec((128,), "signs"),
             "V": ParamSpec((10, 128), "weight", depth=2)}
    with pytest.raises(ConfigError, match=r"U \(128, 1\) is too skinny.*V \(10, 128\)"):
        select_weights(specs, options())
    with pytest.raises(ConfigError, match="declares no layer weight matrix"):
        select_weights({"u": ParamSpec((4,), "signs")}, options())


def test_included_deepest_first():
    names = [f"L{i}" for i in range(21)]          # ⌊0.1 · 20⌋ = 2 more per check
    assert included(names, 1, 0.1) == ("L19", "L20")
    assert included(names, 3, 0.1) == tuple(names[-6:])
    assert included(names, 11, 0.1) == tuple(names)    # past the start: all
    assert included(names, 1, 0.25) == tuple(names[-5:])
    small = ["A", "B", "C"]                        # ⌊0.1 · 2⌋ = 0: the [-0:] quirk, all
    assert included(small, 1, 0.1) == ("A", "B", "C")


# ---------------------------------------------------------------------------- options

def test_options_validation_and_parsing():
    table = parse_oialr("delay=500, every=250,beta=0.2,keep_first_layer=true,weights=W:U")
    assert table == {"delay": 500, "every": 250, "beta": 0.2, "keep_first_layer": True,
                     "weights": ["W", "U"]}
    opts = OIALROptions.from_table(table)
    assert opts.weights == ("W", "U") and opts.keep_first_layer is True
    assert OIALROptions.from_table(opts.to_dict()) == opts
    for bad, message in ((dict(delay=0, every=1), "delay"), (dict(delay=1, every=0), "every"),
                         (dict(delay=1, every=1, beta=1.0), "beta"),
                         (dict(delay=1, every=1, beta=True), "beta"),
                         (dict(delay=1, every=1, layer_step=0), "layer_step"),
                         (dict(delay=1, every=1, keep_last_layer=1), "keep_last_layer"),
                         (dict(delay=1, every=1, weights="W"), "weights"),
                         (dict(delay=1, every=1, stable_delay=-1), "stable_delay")):
        with pytest.raises(ConfigError, match=message):
            OIALROptions.from_table(bad)
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        OIALROptions.from_table({"delay": 1, "every": 1, "bta": 0.2})
    with pytest.raises(ConfigError, match="needs every"):
        OIALROptions.from_table({"delay": 1})
    with pytest.raises(ConfigError, match="key=value"):
        parse_oialr("delay")


def test_models_declare_layer_depths():
    """Depth is declared by the models (input 0, recurrence 1, readout 2), on matrices only;
    each gate matrix of a cell is a layer matrix of its own."""
    from hadamnp.models.registry import build_model

    sizes = dict(input_size=3, hidden_size=8, output_size=2)
    depths = {name: {k: s.depth for k, s in build_model(name, **sizes).param_specs().items()
                     if s.depth is not None}
              for name in ("hadamrnn", "block-hadamrnn", "dense")}
    assert depths == {"hadamrnn": {"U": 0, "V": 2}, "block-hadamrnn": {"U": 0, "V": 2},
                      "dense": {"W": 1, "U": 0, "V": 2}}
    for cell, gates in (("rnn", [""]), ("gru", "ruc"), ("lstm", "ifgo")):
        specs = build_model(cell, **sizes).param_specs()
        assert {k: s.depth for k, s in specs.items() if s.depth is not None} == {
            **{f"W_x{g}": 0 for g in gates}, **{f"W_h{g}": 1 for g in gates}, "V": 2}
    peepholes = build_model("lstm", peepholes=True, **sizes).param_specs()
    assert peepholes["p_i"].depth is None and peepholes["b_i"].depth is None
    with pytest.raises(ConfigError, match="layer depth"):
        ParamSpec((4,), "weight", depth=0)
    with pytest.raises(ConfigError, match="layer depth"):
        ParamSpec((4, 4), "weight", depth=-1)
