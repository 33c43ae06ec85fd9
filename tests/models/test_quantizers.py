"""Weight quantizers and their straight-through estimators (:mod:`hadamnp.models.quantizers`).

The uniform quantizer is the spec's ``Q_k``: ``alpha = max|M|`` (1 for an all-zero ``M``),
``c = 2**(k-1)``, ``Q(M) = alpha/c * clip(round(M c / alpha), -c, c - 1)`` for ``k >= 2`` and
``Q(M) = alpha * clip(round(M / alpha), -1, 1)`` for ``k = 1``, rounding half to even.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hadamnp.errors import ConfigError
from hadamnp.models.quantizers import (QUANTIZERS, Identity, Sign, Uniform, get_quantizer,
                                       quantizer_spec, register_quantizer, uniform_spec)

DTYPES = (np.float32, np.float64)


def matrices(dtype=np.float64):
    """Small matrices with zeros and magnitudes in [2**-20, 2**10] (scaling them by 2**±20
    stays far from underflow and overflow)."""
    width = 32 if dtype == np.float32 else 64
    magnitude = st.floats(2.0 ** -20, 2.0 ** 10, width=width)
    elements = st.one_of(st.just(0.0), magnitude, magnitude.map(lambda v: -v))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                      elements=elements)


def grid(bits):
    """``(low, high, c)``: codes in ``[low, high]``, ``Q = alpha / c * code``."""
    if bits == 1:
        return -1, 1, 1
    c = 2 ** (bits - 1)
    return -c, c - 1, c


def expected_alpha(M):
    a = float(np.max(np.abs(M))) if M.size else 0.0
    return a if a > 0 else 1.0


bit_widths = st.integers(1, 12)
dtypes = st.sampled_from(DTYPES)


@settings(deadline=None)
@given(data=st.data(), bits=bit_widths, dtype=dtypes)
def test_uniform_outputs_lie_on_the_grid(data, bits, dtype):
    M = data.draw(matrices(dtype))
    q = Uniform(bits)
    Q = q.forward(M)
    low, high, c = grid(bits)
    alpha = expected_alpha(M)
    assert Q.dtype == M.dtype and Q.shape == M.shape
    assert float(q.alpha(M)) == alpha
    # Q = code * alpha / c rounded once to the dtype (exact in float64 for these widths).
    code = np.rint(Q.astype(np.float64) * c / alpha)
    np.testing.assert_array_equal(Q, (code * (alpha / c)).astype(dtype),
                                  err_msg=f"off-grid values: M={M}\nQ={Q}")
    assert code.min() >= low and code.max() <= high, f"codes {code} outside [{low}, {high}]"
    levels = np.unique(Q).size
    assert levels <= (3 if bits == 1 else 2 ** bits), f"{levels} levels for {bits} bits"
    got_code, got_alpha = q.codes(M)
    assert got_code.dtype == np.int64
    np.testing.assert_array_equal(got_code, code.astype(np.int64))
    assert float(got_alpha) == alpha


@settings(deadline=None)
@given(data=st.data(), bits=bit_widths)
def test_uniform_rounds_to_the_nearest_level_and_clips(data, bits):
    """Each entry maps to its nearest level (within half a step) unless clipped at the
    top, where the error is at most one step; Q is monotone and keeps signs."""
    M = data.draw(matrices())
    Q = Uniform(bits).forward(M)
    _, high, c = grid(bits)
    alpha = expected_alpha(M)
    step = alpha / c
    err = np.abs(Q - M)
    unclipped = M * c / alpha <= high + 0.5
    tol = 1e-12 * alpha
    assert np.all(err[unclipped] <= step / 2 + tol), f"M={M}\nQ={Q}"
    assert np.all(err <= step + tol), f"M={M}\nQ={Q}"
    assert np.all(Q * M >= 0), f"sign changed: M={M}\nQ={Q}"
    order = np.argsort(M, axis=None, kind="stable")
    assert np.all(np.diff(Q.ravel()[order]) >= 0), f"not monotone: M={M}\nQ={Q}"


@settings(deadline=None)
@given(data=st.data(), bits=bit_widths, power=st.integers(-20, 20))
def test_uniform_is_exactly_scale_equivariant_for_powers_of_two(data, bits, power):
    M = data.draw(matrices())
    scale = 2.0 ** power
    np.testing.assert_array_equal(Uniform(bits).forward(M * scale),
                                  Uniform(bits).forward(M) * scale)


@settings(deadline=None)
@given(data=st.data(), bits=bit_widths)
def test_requantizing_is_exact_when_alpha_is_kept(data, bits):
    """Q(Q(M)) == Q(M) when ``alpha`` survives quantization: always for k = 1 (the extreme
    entry maps to ±alpha), and for k >= 2 when ``-alpha`` is an entry of ``M`` (it maps to
    code ``-c``, which is on the grid)."""
    M = data.draw(matrices())
    if bits >= 2:
        M = M.copy()
        M.flat[0] = -expected_alpha(M)
    q = Uniform(bits)
    Q = q.forward(M)
    assume(np.any(Q != 0))
    np.testing.assert_array_equal(q.forward(Q), Q)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_requantizing_shrinks_when_the_extreme_is_positive(bits):
    """The top positive entry maps to (c-1)/c * alpha, so alpha changes on requantization:
    Q is not idempotent in general (the spec's asymmetric grid)."""
    c = 2 ** (bits - 1)
    M = np.array([[1.0, 0.25]])
    Q = Uniform(bits).forward(M)
    assert Q[0, 0] == (c - 1) / c
    QQ = Uniform(bits).forward(Q)
    assert QQ[0, 0] == (c - 1) / c * (c - 1) / c, f"Q={Q}, Q(Q)={QQ}"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_rounds_exact_ties_half_to_even(bits, dtype):
    c = 2 ** (bits - 1)
    j = np.arange(-c, c - 1)
    # alpha = 1 (the -1 entry), and every other entry lies exactly half-way between codes.
    M = np.concatenate([[-1.0], (j + 0.5) / c]).astype(dtype)[None, :]
    code, alpha = Uniform(bits).codes(M)
    assert alpha == 1
    expected = np.where(j % 2 == 0, j, j + 1)
    np.testing.assert_array_equal(code[0, 1:], expected,
                                  err_msg=f"ties {M[0, 1:] * c} -> codes {code[0, 1:]}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_bit_is_ternary(dtype):
    M = np.array([[-3.0, -1.6, -1.5, -1.4, 0.0, 1.4, 1.5, 2.9, 3.0]], dtype=dtype)
    Q = Uniform(1).forward(M)
    # M / alpha = [-1, -.53, -.5, -.47, 0, .47, .5, .97, 1]: -.5 and .5 are ties -> 0.
    np.testing.assert_array_equal(Q, np.array([[-3, -3, 0, 0, 0, 0, 0, 3, 3]], dtype=dtype))


def test_four_bit_hand_example():
    """alpha = 2: grid {-8..7} * 2/8; 2.0 clips to 7/8 * 2, -2.0 maps to -2."""
    M = np.array([[2.0, -2.0, 0.3, -0.3, 0.125, 0.375, 1.1]])
    expected = np.array([[1.75, -2.0, 0.25, -0.25, 0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(Uniform(4).forward(M), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_matrix_has_alpha_one(dtype):
    M = np.zeros((3, 2), dtype=dtype)
    q = Uniform(4)
    assert q.alpha(M) == 1 and q.alpha(M).dtype == dtype
    np.testing.assert_array_equal(q.forward(M), M)


@pytest.mark.parametrize("bits", [0, -1, 33, 2.5, "4", None])
def test_bad_bit_widths_are_config_errors(bits):
    with pytest.raises(ConfigError, match="bits"):
        Uniform(bits)


@pytest.mark.parametrize("spec, expected", [
    ("none", Identity()), (None, Identity()), ("uniform:4", Uniform(4)),
    ("uniform:bits=2", Uniform(2)), (" uniform:16 ", Uniform(16)), ("sign", Sign()),
    ("sign:clipped", Sign("clipped")), ("sign:ste=identity", Sign()),
])
def test_quantizers_by_spec(spec, expected):
    q = get_quantizer(spec)
    assert q == expected
    assert get_quantizer(quantizer_spec(q)) == q  # the canonical spec reads back


def test_canonical_specs():
    assert [quantizer_spec(q) for q in (Identity(), Sign(), Sign("clipped"), Uniform(3))] == \
        ["none", "sign", "sign:clipped", "uniform:3"]
    assert uniform_spec(0) == "none" and uniform_spec(4) == "uniform:4"
    with pytest.raises(ConfigError, match="non-negative"):
        uniform_spec(-1)


@pytest.mark.parametrize("spec, words", [
    ("quinary", ["unknown quantizer 'quinary'", "uniform", "ternary"]),
    ("uniform", ["uniform", "bits"]),
    ("uniform:40", ["40", "[1, 16]"]),
    ("uniform:4,5", ["at most 1"]),
    ("uniform:depth=4", ["no argument 'depth'", "bits"]),
    ("uniform:bits=4,2", ["positional", "after a named"]),
    ("uniform:4,bits=4", ["given twice"]),
    ("sign:smooth", ["ste", "smooth"]),
    (4, ["spec must be a string"]),
])
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(ConfigError) as info:
        get_quantizer(spec)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_register_quantizer_refuses_a_taken_name():
    class Other(Identity):
        pass

    with pytest.raises(ConfigError, match="already registered"):
        register_quantizer(Other)
    assert QUANTIZERS["none"] is Identity


@settings(deadline=None)
@given(data=st.data(), bits=st.integers(0, 8))
def test_uniform_and_identity_stes_pass_the_gradient_unchanged(data, bits):
    """Identity STE with alpha constant: dM = dMq everywhere, clipped entries included;
    neither direction writes into its arguments."""
    M = data.draw(matrices())
    dMq = np.arange(M.size, dtype=M.dtype).reshape(M.shape) - 3.5
    M0, dMq0 = M.copy(), dMq.copy()
    q = get_quantizer(uniform_spec(bits))
    q.forward(M)
    np.testing.assert_array_equal(q.backward(M, dMq), dMq0)
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_array_equal(dMq, dMq0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sign_forward_maps_zero_to_plus_one(dtype):
    u = np.array([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0], dtype=dtype)
    s = Sign().forward(u)
    assert s.dtype == dtype
    np.testing.assert_array_equal(s, np.array([-1, -1, 1, 1, 1, 1], dtype=dtype))


def test_sign_stes():
    u = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0000001, 7.0])
    ds = np.arange(1.0, 9.0)
    np.testing.assert_array_equal(Sign().backward(u, ds), ds)
    np.testing.assert_array_equal(Sign("clipped").backward(u, ds),
                                  np.array([0, 2, 3, 4, 5, 6, 0, 0], dtype=float))
    assert Sign().describe() == {"kind": "sign", "ste": "identity"}
    assert Sign("clipped").describe() == {"kind": "sign", "ste": "clipped"}
    assert Uniform(4).describe() == {"kind": "uniform", "bits": 4, "ste": "identity"}
    assert Identity().describe() == {"kind": "none"}
