"""Plain-NumPy reference of Toeplitz-like (low displacement rank) matrices.

Reference twins of :mod:`hadamnp.kernels.ldr` (same signatures and shape contract): they
build the dense matrix and multiply by it, where the kernels use FFTs and never form it.

A square ``b x b`` block of displacement rank ``r`` (Sindhwani, Sainath, Kumar 2015; Lu,
Sindhwani, Sainath 2016) is parametrized by ``r`` pairs of generators ``g_j, h_j``::

    M(G, H) = sum_{j<r} C(g_j) S(h_j)

    C(g)[a, c] = g[(a - c) mod b]                         circulant, first column g
    S(h)[a, c] = h[(a - c) mod b] * (1 if a >= c else -1)  skew-circulant, first column h

``C(g) = [g, Z_1 g, ..., Z_1^{b-1} g]`` and ``S(h) = [h, Z_{-1} h, ...]`` with ``Z_f`` the
f-unit-circulant shift. Such an ``M`` has the Sylvester displacement (numerically checked in
the tests)::

    Z_1 M - M Z_{-1} = 2 sum_j g_j (J h_j)^T           (J: the reversal permutation)

of rank at most ``r``; conversely every matrix whose displacement has rank ``r`` is such a
sum (the displacement operator is invertible: the eigenvalues of ``Z_1`` and ``Z_{-1}``
differ), e.g. every Toeplitz matrix with ``r = 2``. :func:`project` computes the generators
of the matrix whose displacement is the best rank-``r`` approximation of a given matrix's.

Rectangular ``(m, n)`` matrices are a row (``m < n``) or column (``m > n``) of ``k`` square
blocks of the smaller size ``b = min(m, n)``, ``k = ceil(max(m, n) / b)``; the last block is
cropped (the same as zero-padding the input, resp. dropping output rows). Generators are
stored as arrays ``G, H`` of shape ``(k, r, b)``: ``G[i, j]`` is ``g_j`` of block ``i``.
The displacement rank must satisfy ``1 <= r < b``: ``r = b`` already covers every block,
with twice the values of the dense block.

Products act on rows, as in the rest of hadamnp: ``Y = X M^T`` for ``X`` (B, n).
"""

import numpy as np

from hadamnp._checks import check_float, check_ndim
from hadamnp.errors import ConfigError, ShapeError

__all__ = ["ldr_layout", "check_generators", "circulant", "skew_circulant", "ldr_matrix",
           "ldr_matrix_backward", "ldr_matmul", "ldr_matmul_backward", "project"]


def ldr_layout(shape, r=None):
    """Block layout of a Toeplitz-like matrix of ``shape``.

    Parameters
    ----------
    shape : (m, n) ints >= 1
    r : int, optional
        Displacement rank, checked against the block size when given.

    Returns
    -------
    b : int, block size ``min(m, n)``
    k : int, number of blocks ``ceil(max(m, n) / b)``
    stacked_rows : bool, blocks stacked vertically (``m > n``: every block reads the whole
        input) rather than side by side (``m < n``: every block reads one slice of it)

    Raises
    ------
    ConfigError
        A shape that is not two positive integers, ``r < 1`` or ``r >= b``.
    """
    if len(shape) != 2 or any(isinstance(d, bool) or not isinstance(d, (int, np.integer))
                              or d < 1 for d in shape):
        raise ConfigError(f"a Toeplitz-like matrix needs a shape (m, n) of positive "
                          f"integers, got {tuple(shape)!r}")
    m, n = int(shape[0]), int(shape[1])
    b = min(m, n)
    k = -(-max(m, n) // b)
    if r is not None:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ConfigError(f"displacement rank r must be an integer >= 1, got {r!r}")
        if r >= b:
            raise ConfigError(
                f"displacement rank r={r} must be < the block size {b} of a {m}x{n} matrix "
                f"(square blocks of size min(m, n)); "
                + ("a block of size 1 has no such rank: keep this matrix dense"
                   if b == 1 else f"choose r <= {b - 1}"))
    return b, k, m > n


def check_generators(G, H, shape):
    """Validate generators against ``shape``; return ``(G, H, b, k, r, stacked_rows)``.

    Raises
    ------
    TypeError for a non-float dtype or different dtypes; ShapeError for shapes other than
    ``(k, r, b)`` of :func:`ldr_layout`; ConfigError for a rank out of range.
    """
    G = check_float(G, "G")
    H = check_float(H, "H")
    check_ndim(G, 3, "G", "(k, r, b)")
    check_ndim(H, 3, "H", "(k, r, b)")
    if G.dtype != H.dtype:
        raise TypeError(f"G and H must have one dtype, got {G.dtype} and {H.dtype}")
    b, k, stacked_rows = ldr_layout(shape, G.shape[1])
    for name, a in (("G", G), ("H", H)):
        if a.shape != (k, G.shape[1], b):
            raise ShapeError(f"{name} has shape {a.shape}, expected (k, r, b) = "
                             f"{(k, G.shape[1], b)} for a {shape[0]}x{shape[1]} matrix")
    return G, H, b, k, G.shape[1], stacked_rows


def _check_rows(X, width, name, dtype):
    X = check_float(X, name)
    check_ndim(X, 2, name, f"(B, {width})")
    if X.shape[1] != width:
        raise ShapeError(f"{name} has {X.shape[1]} columns (shape {X.shape}), expected {width}")
    if X.dtype != dtype:
        raise TypeError(f"{name} must have the generators' dtype {dtype}, got {X.dtype}")
    return X


def circulant(g):
    """``C(g)`` (b, b): ``C[a, c] = g[(a - c) mod b]``."""
    b = g.shape[-1]
    idx = (np.arange(b)[:, None] - np.arange(b)[None, :]) % b
    return g[..., idx]


def skew_circulant(h):
    """``S(h)`` (b, b): ``S[a, c] = h[(a - c) mod b]``, negated above the diagonal."""
    b = h.shape[-1]
    idx = (np.arange(b)[:, None] - np.arange(b)[None, :]) % b
    sign = np.where(np.arange(b)[:, None] >= np.arange(b)[None, :], 1, -1).astype(h.dtype)
    return h[..., idx] * sign


def _blocks(G, H):
    """Dense blocks ``sum_j C(g_j) S(h_j)``, shape (k, b, b)."""
    return np.einsum("krac,krcd->kad", circulant(G), skew_circulant(H))


def _assemble(blocks, shape, stacked_rows):
    m, n = shape
    full = np.concatenate(list(blocks), axis=0 if stacked_rows else 1)
    return np.ascontiguousarray(full[:m, :n])


def _split(dM, b, k, stacked_rows):
    """``(k, b, b)`` blocks of the zero-padded ``dM`` (the adjoint of :func:`_assemble`)."""
    m, n = dM.shape
    rows, cols = (k * b, b) if stacked_rows else (b, k * b)
    padded = np.zeros((rows, cols), dtype=dM.dtype)
    padded[:m, :n] = dM
    if stacked_rows:
        return padded.reshape(k, b, b)
    return padded.reshape(b, k, b).transpose(1, 0, 2)


def ldr_matrix(G, H, shape):
    """The dense matrix ``M`` (m, n) of the generators ``G, H`` (k, r, b)."""
    G, H, _, _, _, stacked_rows = check_generators(G, H, shape)
    return _assemble(_blocks(G, H), shape, stacked_rows)


def ldr_matrix_backward(G, H, dM, shape):
    """Gradients ``(dG, dH)`` of ``sum(dM * M(G, H))``, by the chain rule through the dense
    factors: ``dC_j = dM S_j^T`` and ``dS_j = C_j^T dM``, then each summed over the
    (wrapped) diagonals that hold one generator entry (with the signs of ``S``)."""
    G, H, b, k, _, stacked_rows = check_generators(G, H, shape)
    dM = np.asarray(dM, dtype=G.dtype)
    if dM.shape != tuple(shape):
        raise ShapeError(f"dM has shape {dM.shape}, expected {tuple(shape)}")
    dB = _split(dM, b, k, stacked_rows)                          # (k, b, b)
    C, S = circulant(G), skew_circulant(H)                        # (k, r, b, b)
    dC = np.einsum("kac,krdc->krad", dB, S)                       # dM S^T
    dS = np.einsum("krca,kcd->krad", C, dB)                       # C^T dM
    a, c = np.meshgrid(np.arange(b), np.arange(b), indexing="ij")
    diag = (a - c) % b
    sign = np.where(a >= c, 1, -1).astype(G.dtype)
    dG = np.zeros_like(G)
    dH = np.zeros_like(H)
    for d in range(b):
        on = diag == d
        dG[..., d] = dC[..., on].sum(axis=-1)
        dH[..., d] = (dS[..., on] * sign[on]).sum(axis=-1)
    return dG, dH


def ldr_matmul(G, H, X, shape):
    """``Y = X M^T`` (B, m) for rows ``X`` (B, n), through the dense ``M``."""
    M = ldr_matrix(G, H, shape)
    X = _check_rows(X, shape[1], "X", M.dtype)
    return X @ M.T


def ldr_matmul_backward(G, H, X, dY, shape):
    """Gradients ``(dG, dH, dX)`` of ``sum(dY * (X M^T))``: ``dM = dY^T X``, ``dX = dY M``."""
    M = ldr_matrix(G, H, shape)
    X = _check_rows(X, shape[1], "X", M.dtype)
    dY = _check_rows(dY, shape[0], "dY", M.dtype)
    if dY.shape[0] != X.shape[0]:
        raise ShapeError(f"dY has {dY.shape[0]} rows, X has {X.shape[0]}")
    dG, dH = ldr_matrix_backward(G, H, dY.T @ X, shape)
    return dG, dH, dY @ M


def project(M, r):
    """Generators ``(G, H)`` (k, r, b) of the Toeplitz-like matrix closest to ``M`` in
    displacement: per block, the best rank-``r`` approximation (truncated SVD) of
    ``D = Z_1 M - M Z_{-1}`` written as ``2 sum_j g_j (J h_j)^T``.

    Exact (``M(G, H) = M`` up to rounding) when every block has displacement rank <= ``r``,
    e.g. Toeplitz blocks with ``r >= 2``, or the identity with ``r >= 1``.
    """
    M = check_float(M, "M")
    check_ndim(M, 2, "M", "(m, n)")
    b, k, stacked_rows = ldr_layout(M.shape, r)
    blocks = _split(M, b, k, stacked_rows)
    D = np.roll(blocks, 1, axis=1) - np.concatenate(
        [blocks[:, :, 1:], -blocks[:, :, :1]], axis=2)            # Z_1 M - M Z_{-1}
    U, s, Vt = np.linalg.svd(D)
    G = np.ascontiguousarray((U[:, :, :r] * (s[:, None, :r] / 2)).transpose(0, 2, 1))
    H = np.ascontiguousarray(Vt[:, :r, ::-1])
    return G.astype(M.dtype), H.astype(M.dtype)

