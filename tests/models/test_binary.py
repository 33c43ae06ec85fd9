"""Building blocks of binarized layers (:mod:`hadamnp.models.binary`): the standardization
backward and the ApproxSign surrogate by finite differences, codes and their statistics."""

import itertools

import numpy as np
import pytest

from hadamnp.models import binary
from gradcheck import numeric_grad, rel_err

EPS = 1e-6


@pytest.mark.parametrize("shape, axis", [((4, 7), 1), ((6, 3), 0), ((1, 5), 1), ((3, 2), 0)])
def test_standardize_backward_matches_finite_differences(rng, shape, axis):
    v = rng.standard_normal(shape) * 3 + 1
    G = rng.standard_normal(shape)
    z, sigma = binary.standardize(v, axis)
    np.testing.assert_allclose(z.mean(axis=axis), 0, atol=1e-12)
    np.testing.assert_allclose(np.mean(z * z, axis=axis),
                               np.var(v, axis=axis) / (np.var(v, axis=axis) + binary.EPS))
    analytic = binary.standardize_backward(G, z, sigma, axis)
    numeric = numeric_grad(lambda: float(np.sum(G * binary.standardize(v, axis)[0])), v)
    assert rel_err(analytic, numeric) < 1e-7


def test_standardize_of_a_constant_is_zero_and_keeps_the_dtype():
    v = np.full((3, 1), 2.5, dtype=np.float32)
    z, sigma = binary.standardize(v, 0)
    assert z.dtype == np.float32 and sigma.dtype == np.float32
    np.testing.assert_array_equal(z, 0)


def test_approx_sign_grad_is_the_derivative_of_its_surrogate(rng):
    z = rng.uniform(-1.6, 1.6, size=40)
    z = z[np.abs(np.abs(z) - 1) > 1e-3]  # off the kinks at |z| = 1
    analytic = binary.approx_sign_grad(z)
    numeric = (binary.approx_sign(z + EPS) - binary.approx_sign(z - EPS)) / (2 * EPS)
    assert rel_err(analytic, numeric) < 1e-7
    np.testing.assert_array_equal(binary.approx_sign_grad(np.array([-2.0, -1, 0, 0.5, 1, 3])),
                                  [0, 0, 2, 1, 0, 0])
    assert binary.approx_sign(np.array([-5.0, 5.0])).tolist() == [-1, 1]


def test_top_k_code_takes_the_largest_and_breaks_ties_by_position():
    X = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, 1.0, 1.0, 1.0], [3.0, 2.0, 1.0, 0.0]])
    code = binary.top_k_code(X, np.array([2, 2, 0]))
    np.testing.assert_array_equal(code, [[0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert code.dtype == np.uint8


def test_argmax_k_is_the_best_angle_over_every_code(rng):
    """The analytic rule equals the brute-force maximum of cos(X, b) over all b in {0,1}^N."""
    for N in (1, 2, 5, 9):
        X = np.abs(rng.laplace(size=(6, N)))
        k = binary.argmax_k(X)
        for row, k_row in zip(X, k):
            best = max(itertools.product((0, 1), repeat=N),
                       key=lambda b: -np.inf if not any(b) else
                       row @ np.array(b) / np.sqrt(sum(b)))
            assert k_row == sum(best), (row, k_row, best)


def test_code_statistics():
    assert binary.code_statistics(np.array([1, 0, 1, 0])) == {"ones": 0.5, "entropy": 1.0}
    assert binary.code_statistics(np.ones((2, 3))) == {"ones": 1.0, "entropy": 0.0}
    stats = binary.code_statistics(np.array([1, 0, 0, 0]))
    assert stats["entropy"] == pytest.approx(-0.25 * np.log2(0.25) - 0.75 * np.log2(0.75))


def test_magnitude_statistics_tell_laplacian_from_gaussian(rng):
    """The motivating figure: angle alignment keeps ~54 % ones of Gaussian rows and ~1/e of
    Laplacian ones (rows of 2048 entries here)."""
    gauss = binary.magnitude_statistics(rng.standard_normal((32, 2048)))["kstar"]
    laplace = binary.magnitude_statistics(rng.laplace(size=(32, 2048)))["kstar"]
    assert abs(gauss - 0.54) < 0.02 and abs(laplace - 1 / np.e) < 0.02, (gauss, laplace)


def test_magnitude_statistics_of_a_vector_is_one_row(rng):
    v = rng.laplace(size=50)
    assert binary.magnitude_statistics(v) == binary.magnitude_statistics(v[None, :])
