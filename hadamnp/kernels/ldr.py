"""Toeplitz-like (low displacement rank) products through real FFTs, and their gradients.

Fast twins of :mod:`hadamnp.reference.ldr` (same signatures, shape contract and
definitions; read its docstring for ``M(G, H) = sum_j C(g_j) S(h_j)``, the block layout of
rectangular matrices and the generator arrays ``(k, r, b)``). These are NumPy/SciPy code,
not Numba: the work is in the FFTs (``scipy.fft``, compiled pocketfft, float32 kept as
complex64), and the rest is a few vectorised products over all blocks and ranks at once.

Per row ``x`` of a block of size ``b`` (``Y = X M^T``)::

    S(h) x = L[:b] - L[b:]      L = irfft_2b(rfft_2b(h) rfft_2b(x))   linear convolution
    C(g) v = irfft_b(rfft_b(g) rfft_b(v))                              circular convolution
    y      = irfft_b(sum_j rfft_b(g_j) rfft_b(S(h_j) x))

(the skew-circulant product is the wrapped linear convolution with the wrapped part
negated, so it needs a real FFT of size ``2b``; the circulant one is diagonal in the size-``b``
real FFT). ``rfft(x)`` is shared by the ``r`` terms and the sum over ``j`` happens in the
frequency domain: ``1 + r`` transforms of size ``2b`` and ``r + 1`` of size ``b`` per row,
``O(r b log b)`` against ``b^2`` for the dense product.

Gradients (``dY`` the upstream gradient, ``v_j = S(h_j) x``), with ``C(g)^T`` and ``S(h)^T``
the correlations (conjugated spectra) and ``S(h) x = S(x) h``::

    dv_j = C(g_j)^T dy                       dg_j = sum_rows C(v_j)^T dy
    dx   = sum_j S(h_j)^T dv_j               dh_j = sum_rows S(x)^T dv_j

The sums over rows are taken in the frequency domain, so the generator gradients cost one
inverse transform each, whatever the batch.

The dense matrix (:func:`ldr_matrix`) is the product with the identity, and its adjoint
(:func:`ldr_matrix_backward`, from a dense ``dM``) the backward of that product:
``O(r n^2 log n)``; the models use these to run the dense sequence kernels on ``M`` (see
:mod:`hadamnp.models.structured`).
"""

import numpy as np
import scipy.fft as sfft

from hadamnp.reference.ldr import _check_rows, check_generators

__all__ = ["ldr_matrix", "ldr_matrix_backward", "ldr_matmul", "ldr_matmul_backward"]


def _input_blocks(X, b, k, stacked_rows):
    """``(B, kx, b)``: the whole input for stacked rows (kx = 1), else its ``k`` zero-padded
    slices."""
    if stacked_rows:
        return X[:, None, :]
    B, n = X.shape
    if n == k * b:
        return X.reshape(B, k, b)
    padded = np.zeros((B, k * b), dtype=X.dtype)
    padded[:, :n] = X
    return padded.reshape(B, k, b)


def _output_blocks(dY, b, k, stacked_rows):
    """``(B, ky, b)``: the output gradient per block row (ky = k for stacked rows, else 1)."""
    if not stacked_rows:
        return dY[:, None, :]
    B, m = dY.shape
    if m == k * b:
        return dY.reshape(B, k, b)
    padded = np.zeros((B, k * b), dtype=dY.dtype)
    padded[:, :m] = dY
    return padded.reshape(B, k, b)


def _fold(L, b):
    """``L[:b] - L[b:]`` along the last axis: the skew-circulant wrap of a length-2b result."""
    return L[..., :b] - L[..., b:]


def _skew_products(Xf, Hf, b):
    """``v = S(h_j) x`` for every block, rank and row: ``(B, k, r, b)``."""
    return _fold(sfft.irfft(Xf * Hf, n=2 * b, axis=-1), b)


def _prepare(G, H, X, shape):
    G, H, b, k, r, stacked_rows = check_generators(G, H, shape)
    X = np.ascontiguousarray(_check_rows(X, shape[1], "X", G.dtype))
    Xf = sfft.rfft(_input_blocks(X, b, k, stacked_rows), n=2 * b, axis=-1)[:, :, None, :]
    Hf = sfft.rfft(H, n=2 * b, axis=-1)                           # (k, r, b + 1)
    Gf = sfft.rfft(G, n=b, axis=-1)                               # (k, r, b // 2 + 1)
    return G, H, X, Xf, Hf, Gf, b, k, stacked_rows


def ldr_matmul(G, H, X, shape):
    """``Y = X M^T`` for rows ``X`` through FFTs, without forming ``M``.

    Parameters
    ----------
    G, H : (k, r, b) float32 or float64 generators (see :func:`hadamnp.reference.ldr.ldr_layout`)
    X : (B, n) rows, the generators' dtype
    shape : (m, n) shape of ``M``

    Returns
    -------
    Y : (B, m), the generators' dtype

    Raises
    ------
    ShapeError, TypeError, ConfigError (rank out of range)
    """
    G, H, X, Xf, Hf, Gf, b, k, stacked_rows = _prepare(G, H, X, shape)
    Vf = sfft.rfft(_skew_products(Xf, Hf, b), n=b, axis=-1)      # (B, k, r, b // 2 + 1)
    Yf = np.einsum("bkrf,krf->bkf", Vf, Gf)
    if not stacked_rows:
        Yf = Yf.sum(axis=1, keepdims=True)
    Y = sfft.irfft(Yf, n=b, axis=-1)                              # (B, ky, b)
    return np.ascontiguousarray(Y.reshape(X.shape[0], -1)[:, :shape[0]])


def _backward(G, H, X, dY, shape, input_grad):
    G, H, X, Xf, Hf, Gf, b, k, stacked_rows = _prepare(G, H, X, shape)
    dY = _check_rows(dY, shape[0], "dY", G.dtype)
    if dY.shape[0] != X.shape[0]:
        raise ValueError(f"dY has {dY.shape[0]} rows, X has {X.shape[0]}")
    dYf = sfft.rfft(_output_blocks(dY, b, k, stacked_rows), n=b, axis=-1)[:, :, None, :]
    Vf = sfft.rfft(_skew_products(Xf, Hf, b), n=b, axis=-1)      # (B, k, r, b // 2 + 1)
    dG = sfft.irfft((np.conj(Vf) * dYf).sum(axis=0), n=b, axis=-1)
    dV = sfft.irfft(np.conj(Gf) * dYf, n=b, axis=-1)              # (B, k, r, b)
    dVf = sfft.rfft(dV, n=2 * b, axis=-1)                         # (B, k, r, b + 1)
    dH = _fold(sfft.irfft((np.conj(Xf) * dVf).sum(axis=0), n=2 * b, axis=-1), b)
    grads = (np.ascontiguousarray(dG, dtype=G.dtype), np.ascontiguousarray(dH, dtype=G.dtype))
    if not input_grad:
        return grads
    dXf = np.einsum("bkrf,krf->bkf", dVf, np.conj(Hf))
    if stacked_rows:
        dXf = dXf.sum(axis=1, keepdims=True)
    dX = _fold(sfft.irfft(dXf, n=2 * b, axis=-1), b)              # (B, kx, b)
    return grads + (np.ascontiguousarray(dX.reshape(X.shape[0], -1)[:, :shape[1]]),)


def ldr_matmul_backward(G, H, X, dY, shape):
    """Gradients of ``sum(dY * (X M^T))`` through FFTs.

    Parameters
    ----------
    G, H : (k, r, b) generators
    X : (B, n) the rows given to :func:`ldr_matmul`
    dY : (B, m) upstream gradient
    shape : (m, n)

    Returns
    -------
    dG, dH : (k, r, b)
    dX : (B, n)
    """
    return _backward(G, H, X, dY, shape, input_grad=True)


def ldr_matrix(G, H, shape):
    """The dense ``M`` (m, n): ``(I_n M^T)^T`` through :func:`ldr_matmul`, ``O(r n^2 log n)``."""
    G, H, *_ = check_generators(G, H, shape)
    eye = np.eye(shape[1], dtype=G.dtype)
    return np.ascontiguousarray(ldr_matmul(G, H, eye, shape).T)


def ldr_matrix_backward(G, H, dM, shape):
    """Gradients ``(dG, dH)`` of ``sum(dM * M(G, H))`` for a dense ``dM`` (m, n): the
    backward of the product with the identity."""
    G, H, *_ = check_generators(G, H, shape)
    dM = np.asarray(dM, dtype=G.dtype)
    if dM.shape != tuple(shape):
        raise ValueError(f"dM has shape {dM.shape}, expected {tuple(shape)}")
    eye = np.eye(shape[1], dtype=G.dtype)
    return _backward(G, H, eye, np.ascontiguousarray(dM.T), shape, input_grad=False)
