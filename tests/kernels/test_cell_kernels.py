"""The gated-cell sequence kernels (:mod:`hadamnp.kernels.cells`) against their NumPy twins
(:mod:`hadamnp.reference.cells`): awkward sizes, both dtypes, both scoring modes, peepholes,
reused buffers, and argument errors. The twins' own gradients are checked by central
differences in ``tests/models/test_lowprec.py`` (through the model) and below (directly)."""

import numpy as np
import pytest

from hadamnp.errors import NonFiniteError, ShapeError
from hadamnp.kernels import cells as kernels
from hadamnp.reference import cells as reference
from gradcheck import numeric_grad

# float32 values are compared norm-wise: max|a - b| / max|b| (the twins use different libm
# paths and summation orders), float64 to near rounding.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
# (T, B, d_in, n): n = 1, 2, odd batches, T = 1, d_in = 1, a d_in above the loop threshold
SIZES = [(1, 1, 1, 1), (1, 3, 2, 2), (2, 1, 1, 2), (5, 3, 1, 1), (4, 5, 3, 7), (3, 2, 9, 4),
         (7, 4, 1, 16)]
CELLS = [("rnn", False), ("gru", False), ("lstm", False), ("lstm", True)]


def rel(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / (scale if scale > 0 else 1.0) if b.size else 0.0


def problem(cell, peep, T, B, d_in, n, dtype, last, seed=0):
    rng = np.random.default_rng(seed)
    G = kernels.GATES[cell]
    args = {"Wx": rng.standard_normal((G * n, d_in)) * 0.6,
            "Wh": rng.standard_normal((G * n, n)) * 0.6,
            "b": rng.standard_normal(G * n) * 0.3}
    if cell == "lstm":
        args["p"] = rng.standard_normal((3, n)) * 0.5 if peep else None
    args = {k: (None if v is None else v.astype(dtype)) for k, v in args.items()}
    x = rng.standard_normal((T, B, d_in)).astype(dtype)
    dH = rng.standard_normal((1 if last else T, B, n)).astype(dtype)
    return args, x, dH


def run(impl, cell, args, x, dH, input_grad=True, out=None, work=None):
    forward = getattr(impl, f"{cell}_forward")
    backward = getattr(impl, f"{cell}_backward")
    states = forward(*args.values(), x, out=out)
    bargs = [args["Wx"], args["Wh"]] + ([args["p"]] if cell == "lstm" else [])
    grads = backward(*bargs, x, states, dH, input_grad=input_grad, work=work)
    return states, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("last", [False, True], ids=["all-steps", "last-step"])
@pytest.mark.parametrize("cell,peep", CELLS, ids=["rnn", "gru", "lstm", "lstm-peep"])
@pytest.mark.parametrize("size", SIZES, ids=[f"T{s[0]}B{s[1]}d{s[2]}n{s[3]}" for s in SIZES])
def test_kernel_equals_reference(size, cell, peep, last, dtype):
    args, x, dH = problem(cell, peep, *size, dtype, last)
    states_k, grads_k = run(kernels, cell, args, x, dH)
    states_r, grads_r = run(reference, cell, args, x, dH)
    assert sorted(states_k) == sorted(states_r)
    assert sorted(grads_k) == sorted(grads_r) == sorted(
        ["Wx", "Wh", "b", "x"] + (["p"] if peep else []))
    for label, got, ref in [*(("state " + k, states_k[k], states_r[k]) for k in states_r),
                            *(("grad " + k, grads_k[k], grads_r[k]) for k in grads_r)]:
        assert got.dtype == dtype and got.shape == ref.shape, (label, got.dtype, got.shape)
        err = rel(got, ref)
        assert err <= RTOL[dtype], f"{cell} {size} {label}: rel err {err:.2e}\n{got}\n{ref}"


@pytest.mark.parametrize("cell,peep", CELLS, ids=["rnn", "gru", "lstm", "lstm-peep"])
def test_reused_buffers_give_the_same_results(cell, peep):
    """``out`` and ``work`` buffers (as the training loop reuses them) change nothing; the
    backward pass writes into none of its inputs."""
    args, x, dH = problem(cell, peep, 6, 3, 2, 5, np.float64, False, seed=4)
    fresh_states, fresh_grads = run(kernels, cell, args, x, dH)
    out = {k: np.full_like(v, np.nan) for k, v in fresh_states.items()}
    work = np.full(kernels.workspace_shape(cell, 6, 3, 5), np.nan)
    inputs = {k: v.copy() for k, v in args.items() if v is not None}
    x0, dH0 = x.copy(), dH.copy()
    for _ in range(2):
        states, grads = run(kernels, cell, args, x, dH, out=out, work=work)
        assert all(states[k] is out[k] for k in out)
        for k in fresh_grads:
            np.testing.assert_array_equal(grads[k], fresh_grads[k], err_msg=k)
    for k, v in inputs.items():
        np.testing.assert_array_equal(args[k], v, err_msg=f"{k} was written")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dH, dH0)


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "reference"])
@pytest.mark.parametrize("last", [False, True], ids=["all-steps", "last-step"])
@pytest.mark.parametrize("cell,peep", CELLS, ids=["rnn", "gru", "lstm", "lstm-peep"])
def test_bptt_matches_finite_differences(impl, cell, peep, last):
    """Loss ``sum(dH * H)``: the BPTT of every argument (weights, biases, peepholes, inputs)
    through the whole unroll, in float64, against central differences."""
    args, x, dH = problem(cell, peep, 5, 3, 2, 4, np.float64, last, seed=7)

    def loss():
        h = getattr(impl, f"{cell}_forward")(*args.values(), x)["h"]
        return float(np.sum(dH * (h[-1:] if last else h)))

    _, grads = run(impl, cell, args, x, dH)
    errors = {}
    for name in grads:
        array = x if name == "x" else args[name]
        numeric = numeric_grad(loss, array)
        errors[name] = rel(grads[name], numeric)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-7, f"worst {worst}: {errors}"


def test_subnormal_values_are_flushed():
    """Gradients vanishing over a long unroll reach subnormal numbers, whose arithmetic is
    two orders of magnitude slower on x86; the kernels flush values below
    sqrt(smallest normal) to zero (the reference does not: the difference is below 1e-19)."""
    rng = np.random.default_rng(0)
    n, T, B = 8, 400, 2
    Wx = (rng.standard_normal((4 * n, 1)) * 0.1).astype(np.float32)
    Wh = (rng.standard_normal((4 * n, n)) * 0.1).astype(np.float32)
    b = np.zeros(4 * n, np.float32)
    x = rng.random((T, B, 1)).astype(np.float32)
    dH = np.ones((1, B, n), np.float32)
    states = kernels.lstm_forward(Wx, Wh, b, None, x)
    grads = kernels.lstm_backward(Wx, Wh, None, x, states, dH, input_grad=True)
    ref = reference.lstm_backward(Wx, Wh, None, x, reference.lstm_forward(Wx, Wh, b, None, x),
                                  dH, input_grad=True)
    level = np.sqrt(np.finfo(np.float32).tiny)
    assert np.any(np.abs(ref["x"][ref["x"] != 0]) < level), "no vanishing gradient: vacuous"
    small = grads["x"][grads["x"] != 0]
    assert np.all(np.abs(small) >= np.finfo(np.float32).tiny)
    for k in ref:
        assert rel(grads[k], ref[k]) < 1e-5, k


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_bad_arguments_name_the_problem(cell):
    args, x, dH = problem(cell, False, 3, 2, 2, 4, np.float64, False)
    forward = getattr(kernels, f"{cell}_forward")
    values = list(args.values())
    with pytest.raises(ShapeError, match="Wh has shape"):
        forward(values[0], values[1][:-1], *values[2:], x)
    with pytest.raises(ShapeError, match="b has shape"):
        forward(values[0], values[1], values[2][:-1], *values[3:], x)
    with pytest.raises(TypeError, match="dtype"):
        forward(values[0].astype(np.float32), *values[1:], x)
    with pytest.raises(ShapeError, match=r"x must have shape \(T, B, d_in\)"):
        forward(*values, x[0])
    bad = x.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="x contains 1 NaN"):
        forward(*values, bad)
    with pytest.raises(ShapeError, match=r"out\['h'\]"):
        forward(*values, x, out={"h": np.empty((3, 2, 5))})
    states, _ = run(kernels, cell, args, x, dH)
    bargs = [args["Wx"], args["Wh"]] + ([args["p"]] if cell == "lstm" else [])
    backward = getattr(kernels, f"{cell}_backward")
    with pytest.raises(ShapeError, match="dH has shape"):
        backward(*bargs, x, states, dH[:, :1])
    with pytest.raises(ShapeError, match=r"states\['h'\]"):
        backward(*bargs, x, {**states, "h": states["h"][:1]}, dH)


def test_peepholes_have_three_rows():
    args, x, _ = problem("lstm", True, 3, 2, 2, 4, np.float64, False)
    with pytest.raises(ShapeError, match=r"p has shape \(2, 4\), expected \(3, 4\)"):
        kernels.lstm_forward(args["Wx"], args["Wh"], args["b"], args["p"][:2], x)
