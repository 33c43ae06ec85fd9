"""Building blocks of binarized layers: standardization, binary activations, code statistics.

Shared by the SiMaN weight binarizer (:mod:`hadamnp.models.siman`) and the binary RNN
(:mod:`hadamnp.models.binary_rnn`). Every function is plain NumPy and never writes into its
arguments.

Standardization along an axis (per output row of a weight matrix, per sample of a batch of
activations), with the variance of the released SiMaN code's form (``+ 1e-5`` inside the
square root) and the population variance (divide by the length ``N``)::

    mu    = mean(v),  c = v - mu,  sigma = sqrt(mean(c^2) + EPS)
    z     = c / sigma
    dv    = (dz - mean(dz) - z * mean(dz * z)) / sigma          (exact Jacobian-vector product)

The backward line follows from ``dL/dc_j = dz_j / sigma - c_j sum(dz c) / (N sigma^3)``
and ``c = v - mean(v)`` (subtracting the mean of a vector removes the mean of its
gradient); ``EPS`` does not change its form.

Binary activations (Bi-Real "ApproxSign", the released SiMaN code's activation)::

    a  = sign(z)                 sign(0) = +1 (hadamnp.conventions)
    da/dz := max(0, 2 - 2|z|)    the derivative of the smooth surrogate
                                 ApproxSign(z) = 2c - c|c|,  c = clip(z, -1, 1)

Code statistics (the diagnostics that motivate SiMaN's weight-decay rule): for a {0, 1}
code with a fraction ``p`` of ones, the bit entropy ``H(p) = -p log2 p - (1-p) log2 (1-p)``
bits per weight (1 at ``p = 1/2``), and the *angle-alignment* fraction of ones
``k*/N`` of each row (:func:`argmax_k`), the fraction the analytic rule would choose for
those magnitudes: about 0.54 for Gaussian and 1/e = 0.37 for Laplacian weights.
"""

import numpy as np

EPS = 1e-5  # inside the square root of the variance, as the released SiMaN code

__all__ = ["EPS", "standardize", "standardize_backward", "approx_sign",
           "approx_sign_grad", "top_k_code", "argmax_k",
           "code_statistics", "magnitude_statistics"]


def standardize(v, axis):
    """Zero mean and unit variance along ``axis``.

    Parameters
    ----------
    v : float array
    axis : int

    Returns
    -------
    z : array like ``v``, ``(v - mean) / sqrt(var + EPS)`` (population variance)
    sigma : array of ``v``'s shape with ``axis`` kept as length 1, ``sqrt(var + EPS)``
    """
    c = v - v.mean(axis=axis, keepdims=True)
    sigma = np.sqrt(np.mean(c * c, axis=axis, keepdims=True) + v.dtype.type(EPS))
    return c / sigma, sigma


def standardize_backward(dz, z, sigma, axis):
    """Gradient w.r.t. the input of :func:`standardize` from ``dz`` (new array).

    ``dv = (dz - mean(dz) - z mean(dz z)) / sigma`` along ``axis``, with ``z, sigma`` the
    outputs of the forward call.
    """
    return (dz - dz.mean(axis=axis, keepdims=True)
            - z * np.mean(dz * z, axis=axis, keepdims=True)) / sigma


def approx_sign(z):
    """The smooth surrogate whose derivative is the ApproxSign STE (finite-difference checks):
    ``2c - c|c|`` with ``c = clip(z, -1, 1)`` (-1 below -1, +1 above 1)."""
    c = np.clip(z, -1, 1)
    return 2 * c - c * np.abs(c)


def approx_sign_grad(z):
    """The ApproxSign surrogate derivative ``max(0, 2 - 2|z|)`` (same dtype as ``z``)."""
    return np.maximum(z.dtype.type(0), z.dtype.type(2) - 2 * np.abs(z))


def top_k_code(X, k):
    """{0, 1} code with ones on the ``k[o]`` largest entries of each row ``X[o]``.

    Ties are broken by position (the earlier entry ranks first: a stable sort), so the code
    is a deterministic function of ``X``.

    Parameters
    ----------
    X : (R, N) float array
    k : (R,) integer array, ``0 <= k <= N``

    Returns
    -------
    B : (R, N) uint8
    """
    order = np.argsort(-X, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(X.shape[1])[None, :], axis=1)
    return (rank < np.asarray(k)[:, None]).astype(np.uint8)


def argmax_k(X):
    """Angle-alignment number of ones of each row: ``k* = argmax_k S_k / sqrt(k)``.

    ``S_k`` is the sum of the ``k`` largest entries of the row (``k = 1..N``); the first
    maximiser is taken. The sums run in float64 whatever ``X``'s dtype.

    Parameters
    ----------
    X : (R, N) float array (SiMaN: standardized magnitudes, ``>= 0``)

    Returns
    -------
    k : (R,) int64, in ``[1, N]``
    """
    ordered = -np.sort(-np.asarray(X, dtype=np.float64), axis=1)
    score = np.cumsum(ordered, axis=1) / np.sqrt(np.arange(1, X.shape[1] + 1))
    return np.argmax(score, axis=1) + 1


def _entropy(p):
    if p <= 0 or p >= 1:
        return 0.0
    return float(-p * np.log2(p) - (1 - p) * np.log2(1 - p))


def code_statistics(code):
    """Fraction of ones and bit entropy of a {0, 1} code (any shape).

    Returns
    -------
    dict : ``ones`` (fraction of ones), ``entropy`` (``H(ones)`` in bits per entry)
    """
    p = float(np.count_nonzero(code)) / code.size
    return {"ones": p, "entropy": _entropy(p)}


def magnitude_statistics(M):
    """Mean angle-alignment fraction of ones ``k*/N`` over the rows of ``M`` (R, N), from
    the magnitudes of its per-row standardized entries (what SiMaN's argmax rule would
    choose for these weights; about 0.37 for Laplacian and 0.54 for Gaussian rows). A
    vector (a binarized bias) is one row."""
    M = np.atleast_2d(np.asarray(M, dtype=np.float64))
    z, _ = standardize(M, axis=1)
    return {"kstar": float(np.mean(argmax_k(np.abs(z)) / M.shape[1]))}
