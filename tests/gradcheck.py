"""Finite-difference helpers of the gradient tests (run them in float64)."""

import numpy as np

EPS = 1e-6


def numeric_grad(loss, array, eps=EPS):
    """Central differences of the scalar ``loss()`` w.r.t. every entry of ``array``, which is
    perturbed in place and restored; an array of ``array``'s shape and dtype."""
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        orig = array[idx]
        array[idx] = orig + eps
        up = loss()
        array[idx] = orig - eps
        down = loss()
        array[idx] = orig
        grad[idx] = (up - down) / (2 * eps)
    return grad


def rel_err(got, ref):
    """Norm-wise relative error ``max|got - ref| / max|ref|``.

    A reference that is identically zero fails the test: a check against it would be
    vacuous."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"shape mismatch: {got.shape} against {ref.shape}"
    scale = float(np.max(np.abs(ref)))
    assert scale > 0, "vacuous check: the reference (numeric gradient) is identically zero"
    return float(np.max(np.abs(got - ref))) / scale
