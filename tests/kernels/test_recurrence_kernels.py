"""Numba sequence kernels (:mod:`hadamnp.kernels.recurrence`) against their NumPy twins.

Every case runs the compiled kernel and the plain-NumPy reference
(:mod:`hadamnp.reference.recurrence`) on the same inputs. The reference always runs in
float64 on the (upcast) inputs, so the comparison measures the kernel's own rounding:

- float64 kernels: relative error <= ``RTOL64 = 1e-12``;
- float32 kernels: relative error <= ``RTOL32 = 2e-5`` (about 170 float32 ulps: the states go
  through up to ``T * log2(m)`` additions and the gradients sum over ``T * B`` terms; the
  worst case observed over this grid is 5.4e-6, on the logits).

"Relative error" is norm-wise: ``max|got - ref| / max|ref|``. The backward passes of both
implementations receive the *same* states ``h`` (the kernel's), so a relu mask can never
flip between them because a state rounded to the other side of zero.

The kernels compile once per dtype (the wrappers pass C-contiguous arrays), so the grid
below costs two compilations per kernel.
"""

import itertools

import numpy as np
import pytest

from hadamnp.errors import NonFiniteError, ShapeError, SizeError
from hadamnp.kernels import recurrence as kernels
from hadamnp.reference import recurrence as reference

RTOL64 = 1e-12
RTOL32 = 2e-5
RTOL = {np.float32: RTOL32, np.float64: RTOL64}
DTYPES = (np.float32, np.float64)

# (B, T, d_in, d_out): batch 1 and odd batches, T = 1 and T > 1, d_in/d_out 1 and > 1.
SHAPES = ((1, 1, 1, 1), (3, 5, 3, 2), (5, 2, 1, 4), (1, 4, 2, 1))
FLAGS = tuple(itertools.product((False, True), (False, True)))  # (nonlinear, many_to_many)


def _blocks(n):
    """Every power-of-two block size 1..n (three of them for the large size)."""
    all_m = [2 ** k for k in range(n.bit_length())]
    return all_m if n <= 64 else [1, 32, n]


HADAMARD_SIZES = [(n, m) for n in (1, 2, 4, 8, 16, 64, 256) for m in _blocks(n)]


def rel_err(got, ref):
    """Norm-wise relative error ``max|got - ref| / max|ref|`` (absolute when ``ref == 0``)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"shape mismatch: kernel {got.shape}, reference {ref.shape}"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return err / scale if scale > 0 else err


def assert_close(got, ref, rtol, what):
    err = rel_err(got, ref)
    assert err <= rtol, (f"{what}: relative error {err:.3e} > {rtol:.0e}\n"
                         f"kernel:\n{np.asarray(got)}\nreference:\n{np.asarray(ref)}")


def random_signs(rng, n, dtype):
    return np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(dtype)


def random_problem(rng, n, B, T, d_in, d_out, dtype):
    """Quantizer-free random weights and inputs in kernel layout; ``U`` scaled so the
    linear states stay O(1)."""
    return {
        "U": (rng.standard_normal((n, d_in)) / np.sqrt(d_in)).astype(dtype),
        "b": (0.1 * rng.standard_normal(n)).astype(dtype),
        "V": rng.standard_normal((d_out, n)).astype(dtype),
        "c": rng.standard_normal(d_out).astype(dtype),
        "x": rng.standard_normal((T, d_in, B)).astype(dtype),
    }


def f64(arrays):
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}


def compare_sequence(forward, backward, ref_forward, ref_backward, rec, p, dtype, nonlinear,
                     many_to_many, label):
    """Run kernel and reference forward + backward on the same problem and compare.

    ``rec`` holds the recurrent arguments (``{"s": ..., "m": ...}`` or ``{"W": ...}``) in
    ``dtype``; ``p`` the other weights and ``x``.
    """
    rtol = RTOL[dtype]
    rec64 = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v)
             for k, v in rec.items()}
    p64 = f64(p)
    opts = {"nonlinear": nonlinear, "many_to_many": many_to_many}
    h, logits = forward(*rec.values(), p["U"], p["b"], p["V"], p["c"], p["x"], **opts)
    h_ref, logits_ref = ref_forward(*rec64.values(), p64["U"], p64["b"], p64["V"], p64["c"],
                                    p64["x"], **opts)
    assert h.dtype == logits.dtype == dtype, f"{label}: kernel returned {h.dtype}/{logits.dtype}"
    assert_close(h, h_ref, rtol, f"{label}: states h")
    assert_close(logits, logits_ref, rtol, f"{label}: logits")

    g = np.random.default_rng(1).standard_normal(logits.shape).astype(dtype)
    grads = backward(*rec.values(), p["U"], p["V"], p["x"], h, g, nonlinear=nonlinear,
                     input_grad=True)
    grads_ref = ref_backward(*rec64.values(), p64["U"], p64["V"], p64["x"],
                             h.astype(np.float64), g.astype(np.float64), nonlinear=nonlinear,
                             input_grad=True)
    assert grads["x"].shape == p["x"].shape, f"{label}: dx has shape {grads['x'].shape}"
    without = backward(*rec.values(), p["U"], p["V"], p["x"], h, g, nonlinear=nonlinear)
    assert "x" not in without
    for name in without:
        np.testing.assert_array_equal(without[name], grads[name], err_msg=f"{label}: d{name}")
    assert sorted(grads) == sorted(grads_ref), f"{label}: gradient keys {sorted(grads)}"
    for name in grads_ref:
        assert grads[name].dtype == dtype, f"{label}: d{name} has dtype {grads[name].dtype}"
        assert_close(grads[name], grads_ref[name], rtol, f"{label}: gradient d{name}")


@pytest.mark.parametrize("n,m", HADAMARD_SIZES)
def test_hadamard_kernels_match_reference(n, m):
    rng = np.random.default_rng(1000 * n + m)
    for dtype, (B, T, d_in, d_out), (nonlinear, mtm) in itertools.product(DTYPES, SHAPES, FLAGS):
        p = random_problem(rng, n, B, T, d_in, d_out, dtype)
        rec = {"s": random_signs(rng, n, dtype), "m": m}
        label = (f"n={n} m={m} B={B} T={T} d_in={d_in} d_out={d_out} {dtype.__name__} "
                 f"nonlinear={nonlinear} many_to_many={mtm}")
        compare_sequence(kernels.hadamard_forward, kernels.hadamard_backward,
                         reference.hadamard_forward, reference.hadamard_backward,
                         rec, p, dtype, nonlinear, mtm, label)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 64, 256])
def test_dense_kernels_match_reference(n):
    rng = np.random.default_rng(n)
    for dtype, (B, T, d_in, d_out), (nonlinear, mtm) in itertools.product(DTYPES, SHAPES, FLAGS):
        p = random_problem(rng, n, B, T, d_in, d_out, dtype)
        # A generic (non-orthogonal) matrix of spectral radius about 1.
        rec = {"W": (rng.standard_normal((n, n)) / np.sqrt(n)).astype(dtype)}
        label = (f"n={n} B={B} T={T} d_in={d_in} d_out={d_out} {dtype.__name__} "
                 f"nonlinear={nonlinear} many_to_many={mtm}")
        compare_sequence(kernels.dense_forward, kernels.dense_backward,
                         reference.dense_forward, reference.dense_backward,
                         rec, p, dtype, nonlinear, mtm, label)


@pytest.mark.parametrize("n,m", [(16, 16), (16, 4), (8, 1)])
def test_hadamard_kernel_equals_dense_kernel_with_the_hadamard_matrix(n, m):
    """The FWHT recurrence and the dense recurrence with W = diag(s) (I ⊗ S_m)/sqrt(m)
    compute the same thing (float64; dW maps to ds via ds_i = sum_j dW_ij W_ij s_i)."""
    rng = np.random.default_rng(7)
    p = random_problem(rng, n, 3, 6, 2, 3, np.float64)
    s = random_signs(rng, n, np.float64)
    W = reference.hadamard_matrix(s, m)
    for nonlinear, mtm in FLAGS:
        opts = {"nonlinear": nonlinear, "many_to_many": mtm}
        h, logits = kernels.hadamard_forward(s, m, p["U"], p["b"], p["V"], p["c"], p["x"], **opts)
        h_d, logits_d = kernels.dense_forward(W, p["U"], p["b"], p["V"], p["c"], p["x"], **opts)
        assert_close(h, h_d, RTOL64, f"states, {opts}")
        assert_close(logits, logits_d, RTOL64, f"logits, {opts}")
        g = rng.standard_normal(logits.shape)
        grads = kernels.hadamard_backward(s, m, p["U"], p["V"], p["x"], h, g, nonlinear=nonlinear)
        grads_d = kernels.dense_backward(W, p["U"], p["V"], p["x"], h, g, nonlinear=nonlinear)
        assert_close(grads["s"], np.sum(grads_d["W"] * W, axis=1) * s, RTOL64, f"ds, {opts}")
        for name in ("U", "b", "V", "c"):
            assert_close(grads[name], grads_d[name], RTOL64, f"d{name}, {opts}")


def test_kernels_accept_non_contiguous_inputs():
    """Strided views give the same results as their contiguous copies (the wrappers copy)."""
    rng = np.random.default_rng(3)
    n, m, B, T = 8, 4, 3, 4
    p = random_problem(rng, n, B, T, 2, 3, np.float64)
    s = random_signs(rng, n, np.float64)
    # Same values, transposed storage.
    strided = {k: (np.asfortranarray(v) if v.ndim > 1 else v) for k, v in p.items()}
    x_strided = np.ascontiguousarray(p["x"].transpose(2, 0, 1)).transpose(1, 2, 0)
    assert not x_strided.flags.c_contiguous and not strided["U"].flags.c_contiguous
    opts = {"nonlinear": True, "many_to_many": True}
    h, logits = kernels.hadamard_forward(s, m, p["U"], p["b"], p["V"], p["c"], p["x"], **opts)
    h2, logits2 = kernels.hadamard_forward(s, m, strided["U"], p["b"], strided["V"], p["c"],
                                           x_strided, **opts)
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(logits2, logits)
    g = rng.standard_normal(logits.shape)
    grads = kernels.hadamard_backward(s, m, p["U"], p["V"], p["x"], h, g, nonlinear=True)
    grads2 = kernels.hadamard_backward(s, m, strided["U"], strided["V"], x_strided,
                                       np.asfortranarray(h), np.asfortranarray(g), nonlinear=True)
    for name in grads:
        np.testing.assert_array_equal(grads2[name], grads[name], err_msg=f"d{name}")


@pytest.mark.parametrize("kind", ["hadamard", "dense"])
def test_kernels_do_not_write_into_their_arguments(kind):
    rng = np.random.default_rng(4)
    n, B, T = 8, 3, 4
    p = random_problem(rng, n, B, T, 2, 3, np.float64)
    if kind == "hadamard":
        rec = {"s": random_signs(rng, n, np.float64), "m": 4}
        forward, backward = kernels.hadamard_forward, kernels.hadamard_backward
    else:
        rec = {"W": rng.standard_normal((n, n)) / np.sqrt(n)}
        forward, backward = kernels.dense_forward, kernels.dense_backward
    h, logits = forward(*rec.values(), p["U"], p["b"], p["V"], p["c"], p["x"],
                        nonlinear=False, many_to_many=True)
    g = rng.standard_normal(logits.shape)
    inputs = {**{k: v for k, v in rec.items() if isinstance(v, np.ndarray)}, **p, "h": h, "g": g}
    before = {k: v.copy() for k, v in inputs.items()}
    backward(*rec.values(), p["U"], p["V"], p["x"], h, g, nonlinear=False)
    forward(*rec.values(), p["U"], p["b"], p["V"], p["c"], p["x"],
            nonlinear=True, many_to_many=False)
    for name, value in before.items():
        np.testing.assert_array_equal(inputs[name], value, err_msg=f"{name} was modified")


def test_many_to_one_logits_are_the_last_many_to_many_step():
    rng = np.random.default_rng(5)
    p = random_problem(rng, 16, 3, 5, 2, 4, np.float64)
    s = random_signs(rng, 16, np.float64)
    args = (s, 4, p["U"], p["b"], p["V"], p["c"], p["x"])
    _, every = kernels.hadamard_forward(*args, nonlinear=False, many_to_many=True)
    _, last = kernels.hadamard_forward(*args, nonlinear=False, many_to_many=False)
    assert every.shape == (5, 4, 3) and last.shape == (1, 4, 3)
    np.testing.assert_array_equal(last[0], every[-1])


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "reference"])
def test_state_buffer_is_filled_and_returned(impl):
    """``h_out`` receives the states (stale contents are overwritten) and is returned."""
    rng = np.random.default_rng(8)
    p = random_problem(rng, 8, 3, 4, 2, 3, np.float64)
    args = (random_signs(rng, 8, np.float64), 2, p["U"], p["b"], p["V"], p["c"], p["x"])
    h, logits = impl.hadamard_forward(*args, nonlinear=True, many_to_many=True)
    buffer = np.full((4, 8, 3), np.nan)
    h2, logits2 = impl.hadamard_forward(*args, nonlinear=True, many_to_many=True, h_out=buffer)
    assert h2 is buffer, "the states were not written into h_out"
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(logits2, logits)


def _read_only(a):
    a.flags.writeable = False
    return a


BAD_STATE_BUFFERS = {
    "wrong shape": (np.empty((4, 8, 2)), ShapeError, "shape"),
    "wrong dtype": (np.empty((4, 8, 3), np.float32), TypeError, "dtype float32"),
    "not contiguous": (np.empty((4, 8, 6))[:, :, ::2], ValueError, "C-contiguous"),
    "read-only": (_read_only(np.empty((4, 8, 3))), ValueError, "read-only"),
    "not an array": ([[[0.0] * 3] * 8] * 4, TypeError, "numpy.ndarray"),
}


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "reference"])
@pytest.mark.parametrize("case", sorted(BAD_STATE_BUFFERS))
def test_state_buffer_is_validated(case, impl):
    """Both twins refuse a state buffer they cannot fill (the kernel raised a Numba
    TypingError for a read-only one; the reference accepted every case but the list)."""
    buffer, error, named = BAD_STATE_BUFFERS[case]
    rng = np.random.default_rng(9)
    p = random_problem(rng, 8, 3, 4, 2, 3, np.float64)
    with pytest.raises(error, match=f"h_out.*{named}"):
        impl.hadamard_forward(random_signs(rng, 8, np.float64), 8, p["U"], p["b"], p["V"],
                              p["c"], p["x"], nonlinear=False, many_to_many=False,
                              h_out=buffer)
    with pytest.raises(error, match=f"h_out.*{named}"):
        impl.dense_forward(np.eye(8), p["U"], p["b"], p["V"], p["c"], p["x"],
                           nonlinear=False, many_to_many=False, h_out=buffer)


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "reference"])
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16, bool])
def test_sequence_kernels_refuse_non_float_dtypes(dtype, impl):
    """Integer arrays made the kernel raise a Numba TypingError page (float16: a
    NotImplementedError) while the reference computed in integers; both refuse them now."""
    rng = np.random.default_rng(10)
    shapes = {k: v.shape for k, v in random_problem(rng, 8, 3, 4, 2, 3, np.float64).items()}
    p = {k: np.ones(shape, dtype) for k, shape in shapes.items()}
    s = np.ones(8, dtype)
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=f"x must be float32 or float64, got dtype {name}"):
        impl.hadamard_forward(s, 8, p["U"], p["b"], p["V"], p["c"], p["x"],
                              nonlinear=True, many_to_many=True)
    with pytest.raises(TypeError, match=f"x must be float32 or float64, got dtype {name}"):
        impl.dense_forward(np.eye(8, dtype=dtype), p["U"], p["b"], p["V"], p["c"], p["x"],
                           nonlinear=True, many_to_many=True)
    h = np.zeros((4, 8, 3), dtype)
    with pytest.raises(TypeError, match=f"x must be float32 or float64, got dtype {name}"):
        impl.hadamard_backward(s, 8, p["U"], p["V"], p["x"], h, np.zeros((4, 2, 3), dtype),
                               nonlinear=True)


# ----------------------------------------------------------------------------------------------
# Wrapper validation: the compiled loops do no bounds checking, so every shape must be
# checked before dispatch.
# ----------------------------------------------------------------------------------------------

def _valid_hadamard_args():
    rng = np.random.default_rng(6)
    p = random_problem(rng, 8, 3, 4, 2, 3, np.float64)
    return {"s": random_signs(rng, 8, np.float64), "m": 4, **p}


def _call_forward(a):
    return kernels.hadamard_forward(a["s"], a["m"], a["U"], a["b"], a["V"], a["c"], a["x"],
                                    nonlinear=False, many_to_many=True)


FORWARD_BAD_ARGS = {
    "n not a power of two": ({"s": np.ones(6)}, SizeError, "6"),
    "block not a power of two": ({"m": 3}, SizeError, "3"),
    "block larger than n": ({"m": 16}, SizeError, "16"),
    "x not 3-d": ({"x": np.zeros((4, 2))}, ShapeError, "x"),
    "U wrong rows": ({"U": np.zeros((4, 2))}, ShapeError, "U"),
    "U wrong columns": ({"U": np.zeros((8, 3))}, ShapeError, "U"),
    "V wrong columns": ({"V": np.zeros((3, 4))}, ShapeError, "V"),
    "U wrong dtype": ({"U": np.zeros((8, 2), np.float32)}, TypeError, "U"),
    "b too short": ({"b": np.zeros(7)}, ShapeError, "b"),
    "c too short": ({"c": np.zeros(2)}, ShapeError, "c"),
    "s wrong dtype": ({"s": np.ones(8, np.float32)}, TypeError, "s"),
    "x holds NaN": ({"x": np.full((4, 2, 3), np.nan)}, NonFiniteError, "x"),
}


@pytest.mark.parametrize("case", sorted(FORWARD_BAD_ARGS))
def test_hadamard_forward_rejects_bad_arguments(case):
    change, error, named = FORWARD_BAD_ARGS[case]
    args = {**_valid_hadamard_args(), **change}
    with pytest.raises(error, match=named):
        _call_forward(args)


BACKWARD_BAD_ARGS = {
    "h too few steps": ({"h": np.zeros((3, 8, 3))}, ShapeError, "h"),
    "h wrong batch": ({"h": np.zeros((4, 8, 2))}, ShapeError, "h"),
    "g wrong outputs": ({"g": np.zeros((4, 2, 3))}, ShapeError, "g"),
    "g wrong steps": ({"g": np.zeros((2, 3, 3))}, ShapeError, "g"),
}


@pytest.mark.parametrize("case", sorted(BACKWARD_BAD_ARGS))
def test_hadamard_backward_rejects_bad_arguments(case):
    args = _valid_hadamard_args()
    h, logits = _call_forward(args)
    change, error, named = BACKWARD_BAD_ARGS[case]
    args = {**args, "h": h, "g": np.zeros_like(logits), **change}
    with pytest.raises(error, match=named):
        kernels.hadamard_backward(args["s"], args["m"], args["U"], args["V"], args["x"],
                                  args["h"], args["g"], nonlinear=False)


def test_dense_forward_rejects_non_square_w():
    a = _valid_hadamard_args()
    with pytest.raises(ShapeError, match="W"):
        kernels.dense_forward(np.zeros((8, 4)), a["U"], a["b"], a["V"], a["c"], a["x"],
                              nonlinear=False, many_to_many=False)


# ----------------------------------------------------------------------------------------------
# Checkpointed states (store_every)
# ----------------------------------------------------------------------------------------------

def _hadamard_problem(seed, n, m, B, T, d_in, d_out, dtype):
    rng = np.random.default_rng(seed)
    p = random_problem(rng, n, B, T, d_in, d_out, dtype)
    p["s"] = random_signs(rng, n, dtype)
    p["m"] = m
    return p


def _forward(impl, p, nonlinear, mtm, **options):
    return impl.hadamard_forward(p["s"], p["m"], p["U"], p["b"], p["V"], p["c"], p["x"],
                                 nonlinear=nonlinear, many_to_many=mtm, **options)


def _backward(impl, p, h, g, nonlinear, **options):
    return impl.hadamard_backward(p["s"], p["m"], p["U"], p["V"], p["x"], h, g,
                                  nonlinear=nonlinear, **options)


# (n, m, B, T, d_in, d_out): B = 1, 2 and odd, T = 1, many inputs (the BLAS path).
STORE_SHAPES = ((8, 8, 1, 7, 1, 2), (16, 4, 2, 1, 2, 3), (16, 16, 3, 9, 6, 2),
                (4, 2, 70, 5, 1, 3), (8, 8, 13, 6, 7, 2))


@pytest.mark.parametrize("shape", STORE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_store_every_gives_the_same_bits(shape, dtype):
    """Every k-th state is exactly the full run's; the gradients recomputed from them equal
    the all-states gradients bit for bit (same float operations), for k dividing T or not."""
    n, m, B, T, d_in, d_out = shape
    p = _hadamard_problem(11, n, m, B, T, d_in, d_out, dtype)
    for nonlinear, mtm in FLAGS:
        h, logits = _forward(kernels, p, nonlinear, mtm)
        g = np.random.default_rng(2).standard_normal(logits.shape).astype(dtype)
        full = _backward(kernels, p, h, g, nonlinear, input_grad=True)
        for k in sorted({2, 3, T, T + 1}):
            label = f"{shape} {dtype.__name__} nonlinear={nonlinear} mtm={mtm} k={k}"
            h_k, logits_k = _forward(kernels, p, nonlinear, mtm, store_every=k)
            assert h_k.shape == (T // k, n, B), label
            np.testing.assert_array_equal(h_k, h[k - 1::k], err_msg=label)
            np.testing.assert_array_equal(logits_k, logits, err_msg=label)
            grads = _backward(kernels, p, h_k, g, nonlinear, input_grad=True, store_every=k,
                              b=p["b"])
            assert sorted(grads) == sorted(full), label
            for name in full:
                np.testing.assert_array_equal(grads[name], full[name], err_msg=f"{label} d{name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_store_every_matches_reference(dtype):
    n, m, B, T, d_in, d_out = 16, 8, 3, 7, 2, 3
    p = _hadamard_problem(12, n, m, B, T, d_in, d_out, dtype)
    p64 = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    for nonlinear, mtm in FLAGS:
        label = f"{dtype.__name__} nonlinear={nonlinear} mtm={mtm}"
        h, logits = _forward(kernels, p, nonlinear, mtm, store_every=3)
        h_ref, _ = _forward(reference, p64, nonlinear, mtm, store_every=3)
        assert_close(h, h_ref, RTOL[dtype], f"{label}: stored states")
        g = np.random.default_rng(3).standard_normal(logits.shape).astype(dtype)
        grads = _backward(kernels, p, h, g, nonlinear, input_grad=True, store_every=3, b=p["b"])
        grads_ref = _backward(reference, p64, h.astype(np.float64), g.astype(np.float64),
                              nonlinear, input_grad=True, store_every=3, b=p64["b"])
        for name in grads_ref:
            assert_close(grads[name], grads_ref[name], RTOL[dtype], f"{label}: d{name}")


def test_store_every_arguments_are_validated():
    from hadamnp.errors import ConfigError

    p = _hadamard_problem(15, 8, 8, 3, 4, 2, 3, np.float64)
    for bad, error in ((0, ConfigError), (-1, ConfigError), (1.5, TypeError), (True, TypeError)):
        for impl in (kernels, reference):
            with pytest.raises(error, match="store_every"):
                _forward(impl, p, False, True, store_every=bad)
    h, logits = _forward(kernels, p, False, True, store_every=2)
    for impl in (kernels, reference):
        with pytest.raises(ConfigError, match="bias b"):
            _backward(impl, p, h, np.zeros_like(logits), False, store_every=2)
        with pytest.raises(ShapeError, match="h"):
            _backward(impl, p, h, np.zeros_like(logits), False, store_every=1)


def test_all_states_are_rebuilt_from_the_stored_ones():
    p = _hadamard_problem(16, 16, 4, 3, 10, 2, 3, np.float32)
    for nonlinear in (False, True):
        h, _ = _forward(kernels, p, nonlinear, True)
        for k in (1, 3, 10, 11):
            h_k, _ = _forward(kernels, p, nonlinear, True, store_every=k)
            for impl in (kernels, reference):
                full = impl.hadamard_states(p["s"], p["m"], p["U"], p["b"], p["x"], h_k,
                                            nonlinear=nonlinear, store_every=k)
                if impl is kernels:
                    np.testing.assert_array_equal(full, h, err_msg=f"k={k}")
                else:
                    assert_close(full, h, RTOL[np.float32], f"reference k={k}")


# ----------------------------------------------------------------------------------------------
# The lean single-step inference path
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,m,d_in,d_out", [(1, 1, 1, 1), (2, 2, 2, 1), (16, 4, 3, 2),
                                             (64, 64, 1, 10), (512, 128, 5, 3)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_step_matches_reference_and_the_sequence_kernel(n, m, d_in, d_out, dtype):
    """States equal the sequence kernel's bit for bit (d_in <= 4: the same operations);
    logits, and states computed with BLAS's U x (d_in = 5), within float tolerance."""
    rng = np.random.default_rng(n + d_in)
    p = random_problem(rng, n, 1, 6, d_in, d_out, dtype)
    s = random_signs(rng, n, dtype)
    for nonlinear in (False, True):
        weights = kernels.hadamard_step_weights(s, m, p["U"], p["b"], p["V"], p["c"],
                                                nonlinear=nonlinear)
        h_seq, logits_seq = kernels.hadamard_forward(s, m, p["U"], p["b"], p["V"], p["c"],
                                                     p["x"], nonlinear=nonlinear,
                                                     many_to_many=True)
        h, h_ref = np.zeros(n, dtype), np.zeros(n, np.float64)
        logits, logits_ref = np.empty(d_out, dtype), np.empty(d_out, np.float64)
        for t in range(p["x"].shape[0]):
            x_t = np.ascontiguousarray(p["x"][t, :, 0])
            kernels.hadamard_step(weights, h, x_t, logits)
            reference.hadamard_step(weights.astype(np.float64), h_ref, x_t.astype(np.float64),
                                    logits_ref)
            label = f"n={n} m={m} {dtype.__name__} nonlinear={nonlinear} t={t}"
            if d_in <= 4:
                np.testing.assert_array_equal(h, h_seq[t, :, 0], err_msg=label)
            assert_close(h, h_seq[t, :, 0], RTOL[dtype], f"{label}: state vs sequence")
            assert_close(h, h_ref, RTOL[dtype], f"{label}: state")
            assert_close(logits, logits_seq[t, :, 0], RTOL[dtype], f"{label}: logits vs sequence")
            assert_close(logits, logits_ref, RTOL[dtype], f"{label}: logits vs reference")


def test_step_checks_sizes_and_weights():
    rng = np.random.default_rng(16)
    p = random_problem(rng, 8, 1, 2, 2, 3, np.float32)
    s = random_signs(rng, 8, np.float32)
    weights = kernels.hadamard_step_weights(s, 4, p["U"], p["b"], p["V"], p["c"], nonlinear=False)
    with pytest.raises(ShapeError, match="sizes"):
        kernels.hadamard_step(weights, np.zeros(4, np.float32), np.zeros(2, np.float32),
                              np.zeros(3, np.float32))
    with pytest.raises(ShapeError, match="U"):
        kernels.hadamard_step_weights(s, 4, p["U"][:4], p["b"], p["V"], p["c"], nonlinear=False)
    with pytest.raises(TypeError, match="b"):
        kernels.hadamard_step_weights(s, 4, p["U"], p["b"].astype(np.float64), p["V"], p["c"],
                                      nonlinear=False)
    with pytest.raises(SizeError):
        kernels.hadamard_step_weights(s, 3, p["U"], p["b"], p["V"], p["c"], nonlinear=False)
    with pytest.raises(NonFiniteError, match="V"):
        kernels.hadamard_step_weights(s, 4, p["U"], p["b"], np.full_like(p["V"], np.nan),
                                      p["c"], nonlinear=False)
