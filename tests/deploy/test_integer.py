"""Integer-only inference: float64 simulation vs Numba engine (bit for bit), the fixed-point
arithmetic, calibration and conversion, bounds, export round trips and golden traces."""

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hadamnp.deploy.integer import (IntegerModel, agreement, calibrate, convert,
                                    default_shift, fixed_point, power_of_two_exponent,
                                    quantize_inputs, recurrent_multiplier, to_integer)
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.kernels import integer as kernel
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.reference import integer as reference
from hadamnp.reference.hadamard import sylvester
from hadamnp.errors import IntegerRangeError
from hadamnp.reference.integer import INT64_MAX


def exact_step(z, u, M_rec, M_in, b, q):
    """Python-int ground truth of the step's accumulator and rounding."""
    return (int(M_rec) * int(z) + int(M_in) * int(u) + int(b) + 2 ** (q - 1)) >> q


def random_integer_args(rng, n, m, d_in, d_out, a, B, T, q=None, M_rec=None, M_in=None,
                        bias=40.0):
    """Random arguments of integer_forward, inputs over the whole a-bit range.

    Defaults: the conversion's shift and recurrent multiplier for ``m``, an input factor
    ``M_in / 2^q`` in [0, 1/8) (odd, so every bit of the multiply matters) and a bias of up
    to ``bias`` state units with a random fractional part.
    """
    q = default_shift(m) if q is None else q
    M_rec = recurrent_multiplier(m, q) if M_rec is None else M_rec
    M_in = int(rng.integers(0, 2 ** (q - 3))) | 1 if M_in is None else M_in
    low, high = reference.activation_range(a)
    b_fine = np.rint(rng.uniform(-bias, bias, n) * 2.0**q).astype(np.int64)
    return dict(s=rng.choice(np.array([-1, 1], np.int8), n), m=m,
                U_int=rng.integers(-8, 8, (n, d_in)).astype(np.int8), b_fine=b_fine,
                V_int=rng.integers(-8, 8, (d_out, n)).astype(np.int8),
                c_int=rng.integers(-40, 41, d_out).astype(np.int32),
                M_rec=M_rec, M_in=M_in, q=q, a=a,
                x_int=rng.integers(low, high + 1, (B, T, d_in)).astype(np.int32))


def assert_engines_equal(args, many_to_many):
    h_ref, l_ref = reference.integer_forward(**args, many_to_many=many_to_many)
    h_num, l_num = kernel.integer_forward(**args, many_to_many=many_to_many)
    assert h_ref.dtype == h_num.dtype == np.int32
    diff = np.argwhere(h_ref != h_num)
    assert diff.size == 0, (f"h_int differs at {diff[:3].tolist()}: reference "
                            f"{h_ref[tuple(diff[0])]} vs numba {h_num[tuple(diff[0])]}")
    assert np.array_equal(l_ref, l_num), f"logits_int differ:\n{l_ref}\nvs\n{l_num}"
    return h_ref, l_ref


# --- fixed-point arithmetic ---------------------------------------------------------------

@st.composite
def accumulator_terms(draw):
    """(z, u, M_rec, M_in, b, q) whose accumulator fits int64, magnitudes spread over all
    bit lengths (so both the q < 20 and q >= 20 branches and the carries are exercised)."""
    q = draw(st.integers(1, 62))
    z = draw(st.integers(-(2**31) + 1, 2**31 - 1))
    u = draw(st.integers(-(2**31) + 1, 2**31 - 1))
    M_rec = draw(st.integers(1, 2**31 - 1))
    in_bits = draw(st.integers(0, 62 - max(abs(u), 1).bit_length()))
    M_in = draw(st.integers(0, 2**in_bits))
    b_bits = draw(st.integers(0, 62))
    b = draw(st.integers(-(2**b_bits), 2**b_bits))
    assume(abs(M_rec * z) + abs(M_in * u) + abs(b) + 2 ** (q - 1) <= INT64_MAX)
    return z, u, M_rec, M_in, b, q


@settings(max_examples=300, deadline=None)
@given(terms=accumulator_terms())
def test_rescale_is_exact_in_float64(terms):
    z, u, M_rec, M_in, b, q = terms
    expected = exact_step(z, u, M_rec, M_in, b, q)
    got = reference.rescale(np.array([float(z)]), np.array([float(u)]), M_rec, M_in,
                            np.array([b], np.int64), q)[0]
    if abs(expected) < 2**53:
        assert got == expected, f"float64 {got} vs exact {expected} for {terms}"
    else:  # far outside every R_a: only the sign and the size matter (it saturates)
        assert abs(got - expected) <= abs(expected) * 2.0**-50, (got, expected)


def test_rescale_rounds_half_up():
    z = np.arange(-5, 6, dtype=np.float64)
    got = reference.rescale(z, np.zeros_like(z), 1, 0, 0, 1)  # z / 2, ties up
    assert got.tolist() == [exact_step(v, 0, 1, 0, 0, 1) for v in range(-5, 6)]
    assert got.tolist() == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3]


@pytest.mark.parametrize("m", [1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048, 2**16])
def test_recurrent_multiplier_is_the_nearest_integer(m):
    for q in range(default_shift(m), default_shift(m) - 12, -1):
        M = recurrent_multiplier(m, q)
        # |M - 2^q / sqrt(m)| < 1/2  <=>  (2M - 1)^2 m < 4^(q+1) < (2M + 1)^2 m
        assert (2 * M - 1) ** 2 * m < 4 ** (q + 1) < (2 * M + 1) ** 2 * m, (m, q, M)
    M = recurrent_multiplier(m, default_shift(m))
    assert 2**30 <= M < 2**31
    is_power_of_four = (m.bit_length() - 1) % 2 == 0
    assert ((M & (M - 1)) == 0) == is_power_of_four, (m, M)


def test_fixed_point_keeps_the_default_shift_when_it_fits():
    rng = np.random.default_rng(0)
    U_int = rng.integers(-8, 8, (64, 3))
    b_state = rng.uniform(-300, 300, 64)
    M_rec, M_in, b_fine, q = fixed_point(64, 12, 0.0123, b_state, U_int)
    assert q == default_shift(64) == 33 and M_rec == 2**30  # 2^33 / 8
    assert M_in == round(0.0123 * 2**q)
    assert b_fine.dtype == np.int64
    assert np.array_equal(b_fine, np.rint(b_state * 2.0**q).astype(np.int64))


def test_fixed_point_lowers_the_shift_only_as_far_as_needed():
    U_int = np.full((16, 1), -8)
    r_in = 3.0e4  # worst case M_in * 8 * 2^15 ~ 2^(q + 32.9): q must drop below 32
    M_rec, M_in, b_fine, q = fixed_point(16, 16, r_in, np.zeros(16), U_int)
    assert q < default_shift(16)
    bound = reference.accumulator_bound(16, U_int, b_fine, M_rec, M_in, q, 16)
    assert bound <= INT64_MAX
    one_more = (recurrent_multiplier(16, q + 1) * 16 * 2**15 + round(r_in * 2 ** (q + 1))
                * 8 * 2**15 + 2**q)
    assert one_more > INT64_MAX, "q could have been larger"
    with pytest.raises(IntegerRangeError, match="int64"):
        fixed_point(16, 16, 2.0**70, np.zeros(16), U_int)
    with pytest.raises(ConfigError):
        fixed_point(16, 16, float("nan"), np.zeros(16), U_int)


def test_fine_bias_tracks_the_float_recurrence_better_than_whole_units():
    """The reason for one rounding per step: on W = diag(s) S / sqrt(m) (eigenvalues on the
    unit circle) a bias rounded to whole state units adds the same error at every step, and
    it grows linearly with T. Here the state is driven by the bias alone (U x = 0)."""
    n, q, a, T = 16, 32, 16, 300
    errors = {"fine": 0.0, "whole": 0.0}
    for seed in range(4):
        rng = np.random.default_rng(seed)
        s = rng.choice(np.array([-1, 1], np.int8), n)
        b_state = rng.uniform(-3, 3, n)
        W = s[:, None] * sylvester(n) / 4
        h = np.zeros(n)
        for _ in range(T):
            h = W @ h + b_state
        for name, b_units in (("fine", b_state), ("whole", np.rint(b_state))):
            h_int, _ = reference.integer_forward(
                s, n, np.zeros((n, 1), np.int8), np.rint(b_units * 2.0**q).astype(np.int64),
                np.zeros((1, n), np.int8), np.zeros(1, np.int32), 2**30, 0, q, a,
                np.zeros((1, T, 1), np.int32), many_to_many=False)
            errors[name] += np.linalg.norm(h_int[0, -1] - h) / np.linalg.norm(h)
    assert errors["fine"] < 0.5 * errors["whole"], errors


@settings(max_examples=100, deadline=None)
@given(stat=st.floats(1e-6, 1e6), a=st.sampled_from([4, 8, 12, 16]))
def test_power_of_two_exponent_is_the_smallest(stat, a):
    top = 2 ** (a - 1) - 1
    e = power_of_two_exponent(stat, a)
    assert stat <= math.ldexp(top, e)
    assert stat > math.ldexp(top, e - 1)


def test_power_of_two_exponent_boundaries():
    assert power_of_two_exponent(127.0, 8) == 0
    assert power_of_two_exponent(127.0 * 2**-5, 8) == -5
    assert power_of_two_exponent(np.nextafter(127.0, 200), 8) == 1
    assert power_of_two_exponent(0.0, 8) == 0


# --- simulation vs engine -----------------------------------------------------------------

SIZES = [(1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 8), (8, 2), (16, 16), (16, 4),
         (32, 32), (32, 8), (64, 64), (64, 16), (128, 128), (128, 32), (256, 8), (256, 256)]


@pytest.mark.parametrize("n,m", SIZES)
def test_engine_equals_simulation_over_sizes(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    for B, T, d_in, d_out in ((1, 1, 1, 1), (3, 5, 3, 2), (1, 9, 2, 3)):
        # The conversion's multipliers, and a small shift (the q < 20 branch of rescale).
        for fixed in ({}, {"q": 7, "M_rec": 91, "M_in": 13}):
            args = random_integer_args(rng, n, m, d_in, d_out, 12, B, T, **fixed)
            for many_to_many in (False, True):
                assert_engines_equal(args, many_to_many)


@pytest.mark.parametrize("a", [4, 8, 12, 16, 20])
def test_engine_equals_simulation_over_widths(a):
    rng = np.random.default_rng(a)
    args = random_integer_args(rng, 64, 64, 3, 4, a, 2, 12, bias=2.0 ** (a - 2))
    h, _ = assert_engines_equal(args, True)
    low, high = reference.activation_range(a)
    assert h.min() >= low and h.max() <= high


def test_engine_equals_simulation_near_the_int64_limit():
    rng = np.random.default_rng(11)
    # Worst case |M_in u| ~ 2^61.6; inputs within +-1000 keep most states unsaturated while
    # the products M_in u still reach ~2^56, beyond float64's 2^53.
    args = random_integer_args(rng, 16, 16, 3, 2, 16, 2, 30, q=42, M_rec=2**31 - 1,
                               M_in=2**42 - 1, bias=1000.0)
    assert 2**61 < reference.accumulator_bound(16, args["U_int"], args["b_fine"],
                                               args["M_rec"], args["M_in"], 42, 16) <= INT64_MAX
    args["x_int"] = rng.integers(-1000, 1001, args["x_int"].shape).astype(np.int32)
    h, _ = assert_engines_equal(args, True)
    assert np.mean(np.abs(h) < 2**15 - 1) > 0.9 and np.abs(h).max() > 2**13


def test_saturation_is_exercised_and_exact():
    rng = np.random.default_rng(7)
    # Input factor 4 and a large bias drive the state to both rails within a few steps.
    q = default_shift(32)
    args = random_integer_args(rng, 32, 32, 2, 3, 8, 3, 20, M_in=4 * 2**q, bias=200.0)
    h, _ = assert_engines_equal(args, True)
    assert (h == 127).any() and (h == -128).any(), "saturation case never saturated"


def test_simulation_matches_python_integers():
    """The float64 simulation against a from-scratch Python-int version of the scheme."""
    rng = np.random.default_rng(3)
    n, m, a = 8, 4, 8
    args = random_integer_args(rng, n, m, 2, 2, a, 2, 6, bias=20.0)
    h_ref, l_ref = reference.integer_forward(**args, many_to_many=True)
    S = np.kron(np.eye(n // m, dtype=int), sylvester(m).astype(int))
    low, high = reference.activation_range(a)
    for b in range(2):
        prev = [0] * n
        for t in range(6):
            z = [int(args["s"][i]) * sum(int(S[i, j]) * prev[j] for j in range(n))
                 for i in range(n)]
            u = [sum(int(args["U_int"][i, j]) * int(args["x_int"][b, t, j]) for j in range(2))
                 for i in range(n)]
            prev = [min(max(exact_step(z[i], u[i], args["M_rec"], args["M_in"],
                                       args["b_fine"][i], args["q"]), low), high)
                    for i in range(n)]
            assert h_ref[b, t].tolist() == prev, f"step {t}: {h_ref[b, t]} vs {prev}"
            logits = [sum(int(args["V_int"][o, i]) * max(prev[i], 0) for i in range(n))
                      + int(args["c_int"][o]) for o in range(2)]
            assert l_ref[b, t].tolist() == logits


def test_bounds_reject_overflow():
    rng = np.random.default_rng(0)
    args = random_integer_args(rng, 1024, 1024, 1, 1, 24, 1, 1, q=20)
    for engine in (kernel, reference):
        with pytest.raises(IntegerRangeError, match="fwht"):
            engine.integer_forward(**args, many_to_many=False)
    # z, u fit int32 but M_rec z + M_in u does not fit int64.
    args = random_integer_args(rng, 16, 16, 1, 1, 16, 1, 1, q=40, M_rec=2**31 - 1,
                               M_in=2**45)
    for engine in (kernel, reference):
        with pytest.raises(IntegerRangeError, match="accumulator.*int64"):
            engine.integer_forward(**args, many_to_many=False)


def test_inputs_outside_the_activation_range_are_rejected():
    rng = np.random.default_rng(0)
    args = random_integer_args(rng, 8, 8, 1, 1, 8, 1, 2)
    args["x_int"][0, 1, 0] = 128
    with pytest.raises(IntegerRangeError, match="x_int"):
        kernel.integer_forward(**args, many_to_many=False)


def test_argument_validation_names_the_argument():
    rng = np.random.default_rng(0)
    args = random_integer_args(rng, 8, 8, 2, 2, 8, 1, 2)
    bad = dict(args, U_int=args["U_int"][:, :1])
    with pytest.raises(ShapeError, match="x_int"):
        kernel.integer_forward(**bad, many_to_many=False)
    with pytest.raises(TypeError, match="x_int"):
        kernel.integer_forward(**dict(args, x_int=args["x_int"].astype(float)),
                               many_to_many=False)
    with pytest.raises(TypeError, match="b_fine"):
        kernel.integer_forward(**dict(args, b_fine=args["b_fine"].astype(np.uint64)),
                               many_to_many=False)
    with pytest.raises(ConfigError, match="M_rec"):
        kernel.integer_forward(**dict(args, M_rec=2**31), many_to_many=False)
    with pytest.raises(ConfigError, match="shift q"):
        kernel.integer_forward(**dict(args, q=0), many_to_many=False)
    with pytest.raises(ConfigError, match="signs"):
        kernel.integer_forward(**dict(args, s=np.zeros(8, np.int8)), many_to_many=False)


# --- calibration and conversion -----------------------------------------------------------

def float_model(n=32, block=None, d_in=3, d_out=4, many_to_many=False, seed=0):
    model = HadamRNN(HadamRNNConfig(input_size=d_in, hidden_size=n, output_size=d_out,
                                    block_size=block, many_to_many=many_to_many,
                                    dtype="float64"))
    rng = np.random.default_rng(seed)
    return model, model.init_params(rng), rng


@pytest.mark.parametrize("n,block", [(32, None), (64, 8), (16, 2)])
def test_conversion_tracks_the_float_model(n, block):
    model, params, rng = float_model(n, block)
    x = rng.standard_normal((40, 25, 3))
    for a, tol in ((8, 0.25), (12, 0.02), (16, 0.002)):
        imodel = convert(model, params, x, a=a)
        report = agreement(model, params, imodel, x)
        scale = report["max_abs_logit"]
        assert report["max_abs_logit_error"] <= tol * scale, (a, report["max_abs_logit_error"],
                                                              scale)
        assert report["final_state_error"] <= tol, (a, report["final_state_error"])
        assert report["saturated_fraction"] == 0.0
    assert report["argmax_agreement"] >= 0.95
    ref = agreement(model, params, imodel, x, engine="reference")
    assert np.array_equal(ref["int_logits"], report["int_logits"])


def test_conversion_fields():
    model, params, rng = float_model(16, None, many_to_many=True)
    x = rng.standard_normal((5, 4, 3))
    imodel = convert(model, params, x, a=12)
    assert (imodel.M_rec, imodel.q) == (2**30, 32)  # 2^32 / sqrt(16): a power of two
    assert imodel.U_int.dtype == np.int8 and imodel.V_int.dtype == np.int8
    assert np.array_equal(imodel.signs, np.where(params["u"] >= 0, 1, -1))
    assert np.array_equal(imodel.b_fine, np.rint(params["b"] * 2.0 ** (imodel.q - imodel.exp_h)))
    max_h = calibrate(model, params, x, 12)["max_abs_h"]
    assert max_h <= 2.0**imodel.exp_h * 2047 < 2 * max_h
    h, logits = imodel.run(imodel.quantize_inputs(x))
    assert h.shape == (5, 4, 16) and logits.shape == (5, 4, 4)


def test_one_hot_inputs_are_exact():
    model, params, rng = float_model(16, None, d_in=5)
    x = np.eye(5)[rng.integers(0, 5, (6, 7))]
    cal = calibrate(model, params, x, 8)
    assert cal["exp_x"] == 0 and cal["inputs_integer"]
    imodel = to_integer(model, params, 8, cal)
    assert np.array_equal(imodel.quantize_inputs(x), x)


def test_percentile_calibration_never_widens_the_scale():
    model, params, rng = float_model(32)
    x = rng.standard_normal((60, 10, 3))
    cal_max = calibrate(model, params, x, 8)
    cal_pct = calibrate(model, params, x, 8, percentile=50)
    assert cal_pct["method"] == "percentile" and cal_pct["stat_h"] <= cal_max["stat_h"]
    assert cal_pct["exp_h"] <= cal_max["exp_h"]
    with pytest.raises(ConfigError, match="percentile"):
        calibrate(model, params, x, 8, percentile=0)


def test_unsupported_models_are_rejected():
    for kwargs, words in (({"recurrence": "dense"}, "Hadamard recurrence"),
                          ({"nonlinear": True}, "linear recurrence"),
                          ({"quant_in": "none"}, "quant_in='none'"),
                          ({"quant_out": "uniform:9"}, "quant_out='uniform:9'")):
        model = HadamRNN(HadamRNNConfig(input_size=2, hidden_size=8, output_size=2, **kwargs))
        params = model.init_params(np.random.default_rng(0))
        with pytest.raises(ConfigError, match=re.escape(words)):
            convert(model, params, np.zeros((1, 2, 2)), a=8)


def test_quantize_inputs_rounds_half_even_and_saturates():
    x = np.array([[[0.5], [1.5], [-0.5], [1000.0], [-1000.0]]])
    assert quantize_inputs(x, 0, 8).ravel().tolist() == [0, 2, 0, 127, -128]


def test_integer_model_validates_its_fields():
    model, params, rng = float_model(8)
    imodel = convert(model, params, rng.standard_normal((2, 3, 3)), a=8)
    fields = {k: getattr(imodel, k) for k in IntegerModel.__dataclass_fields__}
    with pytest.raises(ShapeError, match="U_int"):
        IntegerModel(**dict(fields, U_int=imodel.U_int.astype(np.int32)))
    with pytest.raises(ConfigError, match="V_int"):
        IntegerModel(**dict(fields, p_out=2))
    with pytest.raises(ShapeError, match="b_fine"):
        IntegerModel(**dict(fields, b_fine=imodel.b_fine.astype(np.int32)))
    with pytest.raises(ConfigError, match="shift q"):
        IntegerModel(**dict(fields, q=63))
    with pytest.raises(IntegerRangeError, match="accumulator"):
        IntegerModel(**dict(fields, b_fine=np.full(8, 2**63 - 100, np.int64)))


# --- export round trip, golden traces, report ---------------------------------------------

def test_npz_export_round_trip(tmp_path):
    from hadamnp.deploy.export import export_npz, read_export_npz

    model, params, rng = float_model(128, 32)
    x = rng.standard_normal((3, 6, 3))
    imodel = convert(model, params, x, a=12)
    export_npz(imodel, tmp_path / "model.npz")
    back = read_export_npz(tmp_path / "model.npz")
    assert np.array_equal(back.signs, imodel.signs)
    x_int = imodel.quantize_inputs(x)
    for got, want in zip(back.run(x_int), imodel.run(x_int)):
        assert np.array_equal(got, want)


def test_integer_golden_is_reproducible_and_consistent(tmp_path):
    from hadamnp.golden.integer import (make_integer_golden, read_integer_golden,
                                       write_integer_golden)

    arrays, meta = make_integer_golden(model="block-hadamrnn", hidden_size=16, a=8, seed=3)
    again, _ = make_integer_golden(model="block-hadamrnn", hidden_size=16, a=8, seed=3)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    write_integer_golden(tmp_path / "g.npz", arrays, meta)
    stored, stored_meta = read_integer_golden(tmp_path / "g.npz")
    assert stored_meta["format"] == "hadamnp-golden-int" and stored_meta["version"] == 1
    assert stored["h_int"].shape == (3, 7, 16) and stored["logits_int"].shape == (3, 5)
    from hadamnp.deploy.export import model_from_fields

    imodel = model_from_fields(stored, stored_meta)
    h, logits = imodel.run(stored["x_int"], engine="reference")
    assert np.array_equal(h, stored["h_int"]) and np.array_equal(logits, stored["logits_int"])


def test_deployment_report_counts():
    from hadamnp.deploy.export import deployment_report

    model = HadamRNN(HadamRNNConfig(input_size=1, hidden_size=512, output_size=10))
    params = model.init_params(np.random.default_rng(0))
    imodel = convert(model, params, np.random.default_rng(1).random((4, 5, 1)), a=8)
    report = deployment_report(imodel)
    ops = report["ops_per_step"]
    assert ops["integer_fwht"]["additions"] >= 512 * 9
    assert ops["integer_fwht"]["popcounts"] == 0
    assert ops["integer_xnor_popcount"]["popcounts"] == 512 * 8 * 8
    assert ops["float_dense"]["multiplications"] == 512 * 512 + 512
    # docs/hadamrnn.md "Model size": sMNIST 39,808 bits.
    assert report["size_bytes"]["float_model"] == math.ceil(39808 / 8)
    assert ops["integer_fwht"]["shifts"] == 512
    assert ops["integer_fwht"]["multiplications"] == 512 + 512 + 512  # U x, M_in u, M_rec z
    # int8 U, V; 8 sign words; int64 b_fine, int32 c_int; 14 scalars, M_in on two words.
    assert report["size_bytes"]["integer_exported"] == (512 + 5120 + 64 + 8 * 512 + 4 * 10
                                                        + 4 * 15)


# --- command line -------------------------------------------------------------------------

def test_cli_export_and_golden_int(tmp_path):
    from click.testing import CliRunner

    from hadamnp.cli import main
    from hadamnp.deploy.export import read_export_npz
    from hadamnp.golden.integer import read_integer_golden
    from hadamnp.runs.config import resolve_config
    from hadamnp.training.loop import train

    config = resolve_config("copy", None, {"model": {"hidden_size": 16}, "copy_length": 24,
                                           "batch_size": 4,
                                           "train_size": 8, "epochs": 1, "val_batches": 1,
                                           "test_batches": 1, "eval_batch_size": 4})
    train(config, tmp_path / "run", max_steps=2)
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(tmp_path / "run"), "--format", "npz",
                                  "--bits-act", "12", "--calib-size", "8",
                                  "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 0, result.output
    assert "deployed size" in result.output and "integer_fwht" in result.output
    imodel = read_export_npz(tmp_path / "m.npz")
    assert (imodel.n, imodel.a, imodel.exp_x, imodel.many_to_many) == (16, 12, 0, True)
    result = runner.invoke(main, ["export", str(tmp_path / "run"), "--format", "c",
                                  "--out", str(tmp_path / "m.h")])
    assert result.exit_code == 0, result.output
    assert "#define HADAMRNN_N 16" in (tmp_path / "m.h").read_text()
    result = runner.invoke(main, ["export", str(tmp_path / "run"), "--bits-act", "30",
                                  "--out", str(tmp_path / "x.npz")])
    assert result.exit_code != 0 and "activation width" in result.output
    assert "Traceback" not in result.output

    result = runner.invoke(main, ["golden-int", "--hidden", "8", "--bits-act", "8",
                                  "--out", str(tmp_path / "g.npz")])
    assert result.exit_code == 0, result.output
    arrays, meta = read_integer_golden(tmp_path / "g.npz")
    assert meta["n"] == 8 and arrays["h_int"].dtype == np.int32
