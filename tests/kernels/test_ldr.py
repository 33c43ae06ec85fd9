"""Toeplitz-like FFT kernels (hadamnp.kernels.ldr) vs the dense reference twin
(hadamnp.reference.ldr), the displacement algebra, and finite differences of the gradients.

Tolerance: against the float64 reference of the same inputs, the worst error relative to the
largest reference magnitude of that output: 1e-5 in float32, 1e-12 in float64 (FFTs round
differently from the dense sums, so results are close, not bitwise equal). Sizes: block sizes
2, 3, 4, 5, 31/32/33, 63/64/65, square and rectangular (both orientations, an exact number of
blocks and a cropped last block), batch 1, 2 and odd, ranks 1 to b - 1.
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.kernels import ldr as kernel
from hadamnp.reference import ldr as reference

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
# (shape, r): square, tall (stacked rows), wide (side by side), exact and cropped blocks
CASES = [((2, 2), 1), ((3, 3), 2), ((4, 4), 3), ((5, 5), 2), ((31, 31), 4), ((32, 32), 1),
         ((33, 33), 8), ((64, 64), 2), ((65, 65), 3), ((63, 63), 62), ((6, 3), 2),
         ((7, 3), 1), ((64, 32), 4), ((65, 32), 2), ((3, 6), 2), ((3, 8), 2), ((32, 64), 4),
         ((33, 100), 5), ((2, 9), 1), ((9, 2), 1)]
BATCHES = [1, 2, 7]


def generators(rng, shape, r, dtype):
    b, k, _ = reference.ldr_layout(shape, r)
    return (rng.standard_normal((k, r, b)).astype(dtype),
            rng.standard_normal((k, r, b)).astype(dtype))


def assert_close(got, want, what):
    """``got`` vs the float64 ``want``; shows the worst entry of both."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got.astype(np.float64) - want)
    scale = max(float(np.abs(want).max()), 1e-300)
    worst = np.unravel_index(int(err.argmax()), err.shape)
    tol = TOL[got.dtype]
    assert err[worst] <= tol * scale, (
        f"{what}: error {err[worst]:.3g} > {tol:g} * {scale:.3g} at {worst}: "
        f"kernel {got[worst]!r}, reference {want[worst]!r}")


def as64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", CASES)
def test_matrix_and_its_backward_match_reference(rng, shape, r, dtype):
    G, H = generators(rng, shape, r, dtype)
    dM = rng.standard_normal(shape).astype(dtype)
    M = kernel.ldr_matrix(G, H, shape)
    assert M.dtype == dtype and M.flags.c_contiguous
    assert_close(M, reference.ldr_matrix(*as64(G, H), shape), "M")
    want = reference.ldr_matrix_backward(*as64(G, H, dM), shape)
    for name, got, w in zip("GH", kernel.ldr_matrix_backward(G, H, dM, shape), want):
        assert got.dtype == dtype
        assert_close(got, w, f"d{name}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", CASES)
def test_matmul_and_its_backward_match_reference(rng, shape, r, dtype, batch):
    G, H = generators(rng, shape, r, dtype)
    X = rng.standard_normal((batch, shape[1])).astype(dtype)
    dY = rng.standard_normal((batch, shape[0])).astype(dtype)
    Y = kernel.ldr_matmul(G, H, X, shape)
    assert Y.dtype == dtype
    assert_close(Y, reference.ldr_matmul(*as64(G, H, X), shape), "Y")
    want = reference.ldr_matmul_backward(*as64(G, H, X, dY), shape)
    got = kernel.ldr_matmul_backward(G, H, X, dY, shape)
    for name, g, w in zip(("dG", "dH", "dX"), got, want):
        assert g.dtype == dtype
        assert_close(g, w, name)


def test_reference_is_the_spec_definition(rng):
    """C(g) = [g, Z_1 g, ...], S(h) = [h, Z_{-1} h, ...], M = sum_j C(g_j) S(h_j)."""
    b = 5
    Z1 = np.roll(np.eye(b), 1, axis=0)
    Zm1 = Z1.copy()
    Zm1[0, -1] = -1
    g, h = rng.standard_normal(b), rng.standard_normal(b)
    np.testing.assert_allclose(reference.circulant(g),
                               np.stack([np.linalg.matrix_power(Z1, c) @ g for c in range(b)], 1))
    np.testing.assert_allclose(reference.skew_circulant(h),
                               np.stack([np.linalg.matrix_power(Zm1, c) @ h for c in range(b)], 1))
    G, H = rng.standard_normal((1, 2, b)), rng.standard_normal((1, 2, b))
    M = sum(reference.circulant(G[0, j]) @ reference.skew_circulant(H[0, j]) for j in range(2))
    np.testing.assert_allclose(reference.ldr_matrix(G, H, (b, b)), M)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(2, 24), data=st.data())
def test_displacement_identity(b, data):
    """``Z_1 M - M Z_{-1} = 2 sum_j g_j (J h_j)^T``: displacement rank <= r."""
    r = data.draw(st.integers(1, b - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    G, H = rng.standard_normal((1, r, b)), rng.standard_normal((1, r, b))
    M = kernel.ldr_matrix(G, H, (b, b))
    Z1 = np.roll(np.eye(b), 1, axis=0)
    Zm1 = Z1.copy()
    Zm1[0, -1] = -1
    D = Z1 @ M - M @ Zm1
    want = 2 * G[0].T @ H[0, :, ::-1]
    np.testing.assert_allclose(D, want, atol=1e-10 * np.abs(want).max())
    assert np.linalg.matrix_rank(D, tol=1e-8 * np.abs(D).max()) <= r


@settings(max_examples=30, deadline=None)
@given(b=st.integers(3, 40), seed=st.integers(0, 2**32 - 1))
def test_toeplitz_matrices_have_displacement_rank_two(b, seed):
    """Every Toeplitz matrix is M(G, H) with r = 2: the projection recovers it exactly."""
    rng = np.random.default_rng(seed)
    T = scipy.linalg.toeplitz(rng.standard_normal(b), rng.standard_normal(b))
    G, H = reference.project(T, 2)
    np.testing.assert_allclose(kernel.ldr_matrix(G, H, (b, b)), T, atol=1e-10 * np.abs(T).max())


def test_identity_has_displacement_rank_one():
    G, H = reference.project(np.eye(17), 1)
    np.testing.assert_allclose(kernel.ldr_matrix(G, H, (17, 17)), np.eye(17), atol=1e-13)


def test_rectangular_blocks_are_cropped_square_blocks(rng):
    """A (7, 3) matrix is a column of three 3x3 blocks with the last two rows dropped; a
    (3, 7) one a row of three blocks reading the zero-padded input."""
    G, H = generators(rng, (7, 3), 2, np.float64)
    full = np.concatenate([reference.ldr_matrix(G[i:i + 1], H[i:i + 1], (3, 3))
                           for i in range(3)])
    np.testing.assert_allclose(kernel.ldr_matrix(G, H, (7, 3)), full[:7], atol=1e-13)
    wide = np.concatenate([reference.ldr_matrix(G[i:i + 1], H[i:i + 1], (3, 3))
                           for i in range(3)], axis=1)
    np.testing.assert_allclose(kernel.ldr_matrix(G, H, (3, 7)), wide[:, :7], atol=1e-13)


@pytest.mark.parametrize("shape,r", [((5, 5), 2), ((7, 3), 1), ((3, 7), 2)])
def test_gradients_match_finite_differences(rng, shape, r):
    """Central differences in float64 of L = sum(dY * (X M^T)) for every G, H, X entry."""
    G, H = generators(rng, shape, r, np.float64)
    X = rng.standard_normal((3, shape[1]))
    dY = rng.standard_normal((3, shape[0]))

    def loss(G, H, X):
        return float(np.sum(dY * kernel.ldr_matmul(G, H, X, shape)))

    grads = kernel.ldr_matmul_backward(G, H, X, dY, shape)
    eps = 1e-6
    worst = 0.0
    for which, (name, grad) in enumerate(zip(("G", "H", "X"), grads)):
        args = [G, H, X]
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(grad.shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[which][idx] += eps
            minus[which][idx] -= eps
            numeric[idx] = (loss(*plus) - loss(*minus)) / (2 * eps)
        rel = np.abs(numeric - grad).max() / np.abs(numeric).max()
        worst = max(worst, rel)
        assert rel < 1e-7, f"d{name}: relative error {rel:.3g}"
    assert worst < 1e-7


def test_bad_ranks_and_shapes_raise():
    G = np.zeros((1, 2, 4))
    with pytest.raises(ConfigError, match="r=4 must be < the block size 4"):
        kernel.ldr_matrix(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), (4, 4))
    with pytest.raises(ConfigError, match="block of size 1 has no such rank"):
        reference.ldr_layout((8, 1), 1)
    with pytest.raises(ConfigError, match="r must be an integer >= 1"):
        reference.ldr_layout((8, 8), 0)
    with pytest.raises(ConfigError, match="shape"):
        reference.ldr_layout((8, 0), 1)
    with pytest.raises(ShapeError, match=r"expected \(k, r, b\) = \(2, 2, 4\)"):
        kernel.ldr_matrix(G, G, (8, 4))
    with pytest.raises(ShapeError, match="X has 3 columns"):
        kernel.ldr_matmul(G, G, np.zeros((2, 3)), (4, 4))
    with pytest.raises(TypeError, match="one dtype"):
        kernel.ldr_matrix(G, G.astype(np.float32), (4, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernel.ldr_matrix(G.astype(int), G.astype(int), (4, 4))
