"""Ott et al.'s quantizers (:mod:`hadamnp.models.lowprec_quantizers`): outputs on their
stated grids (Hypothesis), the deterministic rules at their thresholds, unbiasedness of the
stochastic ones (fixed seeds), identity STEs, reproducible draws, bad specs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hadamnp.errors import ConfigError
from hadamnp.models.lowprec_quantizers import (EXP_MAX, EXP_MIN, Binary, BinaryStochastic,
                                               Exponential, ExponentialStochastic,
                                               Pow2Ternary, Ternary, TernaryStochastic,
                                               glorot_bound)
from hadamnp.models.quantizers import get_quantizer, quantizer_spec

DTYPES = (np.float32, np.float64)


def tensors(dtype, low=2.0 ** -30, high=2.0 ** 12):
    width = 32 if dtype == np.float32 else 64
    magnitude = st.floats(low, high, width=width)
    elements = st.one_of(st.just(0.0), magnitude, magnitude.map(lambda v: -v))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                      elements=elements)


def draws(seed):
    """A generator, or None (the deterministic forward)."""
    return None if seed is None else np.random.default_rng(seed)


seeds = st.one_of(st.none(), st.integers(0, 2 ** 32 - 1))
dtypes = st.sampled_from(DTYPES)
scales = st.floats(2.0 ** -8, 2.0 ** 4)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, H=scales, seed=seeds)
def test_binary_outputs_are_plus_minus_H(data, dtype, H, seed):
    M = data.draw(tensors(dtype))
    for q in (Binary(H), BinaryStochastic(H)):
        Q = q.forward(M, draws(seed))
        assert Q.dtype == M.dtype and Q.shape == M.shape
        assert np.all(np.abs(Q) == dtype(H)), f"{q}: {Q}"
        # outside [-H, H] the hard sigmoid saturates: even the stochastic draw is certain
        assert np.all(Q[M >= H] > 0) and np.all(Q[M <= -H] < 0)
    np.testing.assert_array_equal(Binary(H).forward(M), np.where(M >= 0, dtype(H), -dtype(H)))


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, W0=scales, seed=seeds)
def test_ternary_outputs_lie_on_minus_W0_zero_W0(data, dtype, W0, seed):
    M = data.draw(tensors(dtype))
    for q in (Ternary(W0), TernaryStochastic(W0)):
        Q = q.forward(M, draws(seed))
        assert Q.dtype == M.dtype and Q.shape == M.shape
        assert set(np.unique(Q)) <= {dtype(-W0), dtype(0), dtype(W0)}, f"{q}: {Q}"
        assert np.all(Q * M >= 0), "ternarization never flips a sign"
        assert np.all(Q[M == 0] == 0)
        assert np.all(Q[np.abs(M) >= W0] == np.sign(M[np.abs(M) >= W0]) * dtype(W0))


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, i=st.integers(0, 5), f=st.integers(0, 10))
def test_pow2_ternary_is_the_nearest_fixed_point_value(data, dtype, i, f):
    if i + f == 0:
        f = 1
    M = data.draw(tensors(dtype))
    q = Pow2Ternary(i, f)
    Q = q.forward(M)
    top = 2 ** (i + f) - 1
    code = Q.astype(np.float64) * 2.0 ** f
    assert Q.dtype == M.dtype
    np.testing.assert_array_equal(code, np.rint(code), err_msg=f"off-grid: {Q}")
    assert np.all(np.abs(code) <= top), code
    step = 2.0 ** -f
    err = np.abs(Q.astype(np.float64) - M.astype(np.float64))
    inside = np.abs(M.astype(np.float64)) <= top * step
    assert np.all(err[inside] <= step / 2 * (1 + 1e-6)), (M, Q)
    np.testing.assert_array_equal(Q[~inside], np.sign(M[~inside]) * dtype(top * step))


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, seed=seeds)
def test_exponential_outputs_are_signed_powers_of_two(data, dtype, seed):
    M = data.draw(tensors(dtype, low=2.0 ** -40, high=2.0 ** 20))
    for q in (Exponential(), ExponentialStochastic()):
        Q = q.forward(M, draws(seed))
        assert Q.dtype == M.dtype and Q.shape == M.shape
        assert np.all(Q[M == 0] == 0) and np.all(Q[M != 0] != 0)
        assert np.all(np.sign(Q) == np.sign(M)), "sign kept"
        mant, ex = np.frexp(np.abs(Q[M != 0]))
        assert np.all(mant == 0.5), f"not a power of two: {Q}"
        assert np.all((ex - 1 >= EXP_MIN) & (ex - 1 <= EXP_MAX + 1)), ex - 1
        # within the range, Q is one of the two powers of two around |M|
        magnitude = np.abs(M.astype(np.float64))
        inner = (magnitude >= 2.0 ** EXP_MIN) & (magnitude < 2.0 ** (EXP_MAX + 1))
        e = np.floor(np.log2(magnitude[inner]))
        got = np.log2(np.abs(Q[inner].astype(np.float64)))
        assert np.all((got == e) | (got == e + 1)), (M, Q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_rules_at_their_thresholds(dtype):
    W0 = 0.5
    M = np.array([-0.5, -0.25, -0.2499, 0.0, 0.25, 0.2501, 0.7], dtype=dtype)
    np.testing.assert_array_equal(Ternary(W0).forward(M),
                                  np.array([-0.5, -0.5, 0, 0, 0, 0.5, 0.5], dtype=dtype))
    np.testing.assert_array_equal(Binary().forward(np.array([-1e-30, 0.0, 1e-30], dtype)),
                                  np.array([-1, 1, 1], dtype=dtype))
    # i = 0, f = 1 (the method's defaults): {-1/2, 0, 1/2}, ties to even (0.25 -> 0)
    M = np.array([-0.9, -0.26, -0.25, 0.2, 0.25, 0.26, 3.0], dtype=dtype)
    np.testing.assert_array_equal(Pow2Ternary().forward(M),
                                  np.array([-0.5, -0.5, 0, 0, 0, 0.5, 0.5], dtype=dtype))
    # exponential: up from 2^e when |W| > 1.5 * 2^e; clamped to [2^-22, 2^10]
    M = np.array([0.75, 0.7500001, -3.0, -3.1, 1.0, 2.0 ** -30, 5000.0, 0.0], dtype=dtype)
    expected = [0.5, 1.0, -2.0, -4.0, 1.0, 2.0 ** -22, 1024.0, 0.0]
    np.testing.assert_array_equal(Exponential().forward(M), np.array(expected, dtype=dtype))


def test_stochastic_without_generator_is_deterministic_and_draws_are_reproducible():
    M = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    for det, sto in ((Binary(), BinaryStochastic()), (Ternary(0.6), TernaryStochastic(0.6)),
                     (Exponential(), ExponentialStochastic())):
        np.testing.assert_array_equal(sto.forward(M), det.forward(M))
        a = sto.forward(M, np.random.default_rng(7))
        b = sto.forward(M, np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)
        assert sto.stochastic and not det.stochastic
        # a deterministic quantizer ignores the generator
        np.testing.assert_array_equal(det.forward(M, np.random.default_rng(7)), det.forward(M))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        TernaryStochastic(0.6).forward(M, 7)


def _mean_and_error(q, values, draws_count, seed):
    """Mean of ``draws_count`` stochastic draws of ``q`` on ``values`` and its standard error."""
    M = np.broadcast_to(values, (draws_count, values.size)).copy()
    Q = q.forward(M, np.random.default_rng(seed))
    return Q.mean(axis=0), Q.std(axis=0, ddof=1) / math.sqrt(draws_count)


@pytest.mark.parametrize("q, values", [
    (BinaryStochastic(1.0), np.array([-0.9, -0.3, 0.0, 0.1, 0.55, 0.99])),
    (BinaryStochastic(0.25), np.array([-0.2, 0.05, 0.24])),
    (TernaryStochastic(0.3), np.array([-0.29, -0.1, 0.0, 0.02, 0.15, 0.28])),
    (ExponentialStochastic(), np.array([-0.7, 0.3, 1.9, 3.0e-3, -600.0, 2.0 ** -21 * 1.3])),
], ids=["binary", "binary-H0.25", "ternary", "exponential"])
def test_stochastic_quantizers_are_unbiased_in_their_range(q, values):
    """``E[Q(W)] = W`` where the method says so (|W| <= H, |W| <= W0, 2^-22 <= |W| < 2^10),
    tested with 40000 draws per value (fixed seed): the mean lies within 5 standard errors
    and the draws really vary (a deterministic rounding would fail both)."""
    mean, err = _mean_and_error(q, values, 40000, seed=2016)
    varying = values != 0
    assert np.all(err[varying] > 0), "draws do not vary"
    random = err > 0
    z = np.abs(mean - values)[random] / err[random]
    assert np.all(z < 5), f"{q}: means {mean} vs {values} ({z} standard errors)"
    np.testing.assert_array_equal(mean[~random], values[~random])  # zeros stay zero


def test_stochastic_quantizers_are_biased_outside_their_range():
    """Saturation: beyond H / W0 the draw is certain (and so biased), as the rules say."""
    for q, w, expected in ((BinaryStochastic(1.0), 1.7, 1.0), (TernaryStochastic(0.3), -0.8,
                                                                   -0.3)):
        mean, _ = _mean_and_error(q, np.array([w]), 1000, seed=1)
        assert mean[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("q", [Binary(), BinaryStochastic(0.5), Ternary(0.2),
                               TernaryStochastic(), Pow2Ternary(1, 3), Exponential(),
                               ExponentialStochastic()], ids=str)
def test_identity_ste_and_no_writes(q):
    M = np.random.default_rng(3).uniform(-2, 2, (4, 6))
    dMq = np.random.default_rng(4).standard_normal((4, 6))
    M0, d0 = M.copy(), dMq.copy()
    q.forward(M, np.random.default_rng(5))
    np.testing.assert_array_equal(q.backward(M, dMq), d0)
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_array_equal(dMq, d0)
    assert q.describe()["ste"] == "identity"
    assert get_quantizer(quantizer_spec(q)) == q


def test_ternary_default_W0_is_the_glorot_bound_of_the_shape():
    M = np.full((3, 5), 0.9)
    assert Ternary().scale(M) == pytest.approx(glorot_bound(5, 3))
    np.testing.assert_array_equal(Ternary().forward(M), Ternary(glorot_bound(5, 3)).forward(M))
    with pytest.raises(ConfigError, match="W0=VALUE"):
        Ternary().forward(np.ones(4))


def test_storage_bits():
    assert Binary().code_bits(10) == 10 and Ternary().code_bits(10) == 20
    assert Pow2Ternary(0, 1).code_bits(10) == 20 and Pow2Ternary(2, 3).code_bits(10) == 60
    assert Exponential().code_bits(10) == 70
    assert Binary().scale_bits() == Ternary().scale_bits() == 32
    assert Pow2Ternary().scale_bits() == Exponential().scale_bits() == 0


@pytest.mark.parametrize("spec, words", [
    ("ternery", ["unknown quantizer 'ternery'", "ternary-stochastic"]),
    ("pow2-ternary:0,0", ["i + f", "[1, 15]"]),
    ("pow2-ternary:10,6", ["i + f", "i=10, f=6"]),
    ("pow2-ternary:i=-1", ["i (the number of integer bits)", ">= 0"]),
    ("pow2-ternary:f=1.5", ["f (the number of fractional bits)"]),
    ("pow2-ternary:0,1,2", ["at most 2"]),
    ("ternary:W0=0", ["W0 must be a positive number"]),
    ("ternary-stochastic:W0=-1", ["W0 must be a positive number"]),
    ("binary:H=nan", ["H must be a positive number"]),
    ("binary:H=big", ["H must be a positive number"]),
    ("exponential:3", ["takes at most 0"]),
])
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(ConfigError) as info:
        get_quantizer(spec)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
