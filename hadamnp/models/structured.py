"""Compact weight parametrizations: Toeplitz-like (``ldr:r``) and low-rank (``lowrank:k``).

Lu, Sindhwani, Sainath, *Learning Compact Recurrent Neural Networks* (ICASSP 2016) replace
the matrices of an LSTM by structured or factored ones. Both are registered
parametrizations of :class:`hadamnp.models.weights.Weight`, so any weight of any model can
use them (``param_in = "ldr:2"``, ``param_rec = "lowrank:16"``):

=================  ======================================  ===================  ==============
spec               ``M`` (m, n) from the parameters        parameters           values stored
=================  ======================================  ===================  ==============
``ldr:r``          ``sum_j C(g_j) S(h_j)`` per square      ``<w>.G``, ``<w>.H`` ``2 k r b``
                   block (circulant times skew-circulant)  (k, r, b)
``lowrank:k``      ``A B``                                 ``<w>.A`` (m, k),    ``k (m + n)``
                                                           ``<w>.B`` (k, n)
=================  ======================================  ===================  ==============

Toeplitz-like (low displacement rank ``r``): see :mod:`hadamnp.reference.ldr` for the
definitions, the displacement identity and the blocks of a rectangular matrix (square blocks
of size ``b = min(m, n)``, ``k = ceil(max(m, n) / b)`` of them, the last one cropped;
``1 <= r < b``). The matrix and the gradients of the generators are computed with the FFT
kernels of :mod:`hadamnp.kernels.ldr` in ``O(r n^2 log n)`` per weight and pass; the
sequence kernels then use ``M`` like any dense matrix (the recurrent products stay BLAS
products, which are faster than FFT products at the sizes trained here: see
``bench/bench_ldr.py`` for the crossover).

Low rank: ``dA = dM B^T``, ``dB = A^T dM``; ``1 <= k < min(m, n)``.

Initialisation (both): the weight's initial matrix ``M0`` (drawn by its ``init_matrix``) is
*projected* onto the parametrized set -- the truncated SVD of ``M0`` for low rank, the
truncated SVD of its displacement for Toeplitz-like (:func:`hadamnp.reference.ldr.project`)
-- and the result is rescaled to the Frobenius norm of ``M0``, so a compact layer starts
with the signal scale of its dense counterpart. A matrix the set contains exactly (a
Toeplitz ``M0`` with ``r >= 2``) is kept as is.

Shared factors: several low-rank weights may read one right factor ``B`` (a *projection*
``P``: ``W_gate = A_gate P``), declared with ``Weight(..., shared={"B": "P_h"})``; see
:func:`init_shared` for their joint initialisation and :mod:`hadamnp.models.weights` for
how a model accumulates their gradients.
"""

from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.weights import register_parametrization
from hadamnp.reference.ldr import ldr_layout, project

__all__ = ["ToeplitzLike", "LowRank", "init_shared"]


def _kernels():
    """:mod:`hadamnp.kernels.ldr`, imported on first use: it loads ``scipy.fft``, which the
    command line must not pay for at start-up."""
    from hadamnp.kernels import ldr

    return ldr


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def _rescale(M0, M):
    """Factor bringing ``M`` to the Frobenius norm of ``M0`` (1 when ``M`` is zero)."""
    norm = float(np.linalg.norm(M))
    return float(np.linalg.norm(M0)) / norm if norm > 0 else 1.0


@register_parametrization
@dataclass(frozen=True)
class ToeplitzLike:
    """``M = sum_j C(g_j) S(h_j)`` per square block, displacement rank ``r`` (spec ``ldr:r``).

    Parameters ``<weight>.G`` and ``<weight>.H``, each ``(k, r, b)`` (see the module
    docstring); raises :class:`ConfigError` for ``r < 1`` or ``r >= b``.
    """

    r: int
    name = "ldr"

    def __post_init__(self):
        object.__setattr__(self, "r", _positive_int(self.r, "displacement rank r of ldr:r"))

    def _layout(self, shape):
        return ldr_layout(shape, self.r)

    def param_specs(self, name, shape, role):
        b, k, _ = self._layout(shape)
        return {f"{name}.G": ParamSpec((k, self.r, b), role),
                f"{name}.H": ParamSpec((k, self.r, b), role)}

    def init(self, rng, name, shape, dtype, init_matrix):
        """Projection of ``init_matrix``'s draw, rescaled to its norm (split evenly between
        ``G`` and ``H``)."""
        M0 = np.asarray(init_matrix(rng, shape, dtype), dtype=np.float64)
        G, H = project(M0, self.r)
        scale = np.sqrt(_rescale(M0, _kernels().ldr_matrix(G, H, shape)))
        return {f"{name}.G": (G * scale).astype(dtype), f"{name}.H": (H * scale).astype(dtype)}

    def matrix(self, params, name, shape):
        return _kernels().ldr_matrix(params[f"{name}.G"], params[f"{name}.H"], shape)

    def backward(self, params, name, shape, dM):
        dG, dH = _kernels().ldr_matrix_backward(params[f"{name}.G"], params[f"{name}.H"],
                                                 dM, shape)
        return {f"{name}.G": dG, f"{name}.H": dH}

    def code_entries(self, shape):
        """Values stored: the generators, ``2 k r b``."""
        b, k, _ = self._layout(shape)
        return 2 * k * self.r * b

    def describe(self):
        return {"kind": "ldr", "r": self.r}


@register_parametrization
@dataclass(frozen=True)
class LowRank:
    """``M = A B`` with ``A`` (m, k) and ``B`` (k, n) (spec ``lowrank:k``).

    Parameters ``<weight>.A`` and ``<weight>.B``; raises :class:`ConfigError` unless
    ``1 <= k < min(m, n)``.
    """

    rank: int
    name = "lowrank"

    def __post_init__(self):
        object.__setattr__(self, "rank", _positive_int(self.rank, "rank k of lowrank:k"))

    def check(self, shape):
        m, n = shape
        if self.rank >= min(m, n):
            raise ConfigError(
                f"rank k={self.rank} of lowrank:{self.rank} must be < min(m, n) = "
                f"{min(m, n)} for a {m}x{n} matrix"
                + ("" if min(m, n) > 1 else "; a matrix with one row or column has no "
                   "smaller rank: keep it dense"))

    def param_specs(self, name, shape, role):
        self.check(shape)
        m, n = shape
        return {f"{name}.A": ParamSpec((m, self.rank), role),
                f"{name}.B": ParamSpec((self.rank, n), role)}

    def init(self, rng, name, shape, dtype, init_matrix):
        """Truncated SVD of ``init_matrix``'s draw ``M0 = U S V^T``: ``A = U_k S_k^½``,
        ``B = S_k^½ V_k^T``, rescaled to the norm of ``M0``."""
        self.check(shape)
        M0 = np.asarray(init_matrix(rng, shape, dtype), dtype=np.float64)
        A, B = _factor(M0, self.rank)
        scale = np.sqrt(_rescale(M0, A @ B))
        return {f"{name}.A": (A * scale).astype(dtype), f"{name}.B": (B * scale).astype(dtype)}

    def matrix(self, params, name, shape):
        return params[f"{name}.A"] @ params[f"{name}.B"]

    def backward(self, params, name, shape, dM):
        return {f"{name}.A": dM @ params[f"{name}.B"].T, f"{name}.B": params[f"{name}.A"].T @ dM}

    def code_entries(self, shape):
        """Values stored: ``k (m + n)``."""
        return self.rank * (shape[0] + shape[1])

    def describe(self):
        return {"kind": "lowrank", "rank": self.rank}


def _factor(M, k):
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    root = np.sqrt(s[:k])
    return U[:, :k] * root, root[:, None] * Vt[:k]


def init_shared(rng, weights, dtype):
    """Initial parameters of low-rank weights that share their right factor ``B``.

    The weights all read the same vector (same column count ``n``), have the same rank
    ``k`` and name the same shared parameter for ``B``. Their initial matrices ``M0_i`` are
    drawn in order and stacked; the truncated SVD of the stack ``[M0_1; M0_2; ...] = U S
    V^T`` gives the shared ``B = S_k^½ V_k^T`` and each ``A_i`` from its rows of ``U_k
    S_k^½``, rescaled to the norm of its ``M0_i``: the best rank-``k`` approximation of the
    stack with one common row space (the spec's "factor the stacked gate matrices").

    Parameters
    ----------
    rng : numpy.random.Generator
    weights : sequence of :class:`hadamnp.models.weights.Weight`
    dtype : str

    Returns
    -------
    dict: every ``A`` under its weight's parameter name and the shared ``B`` once.
    """
    first = weights[0]
    shared = first.shared.get("B")
    for w in weights:
        if not isinstance(w.parametrization, LowRank) or w.shared.get("B") != shared \
                or shared is None:
            raise ConfigError(f"weights sharing a factor must all be low-rank and name one "
                              f"shared 'B'; {w.name!r} does not match {first.name!r}")
        if w.parametrization.rank != first.parametrization.rank or w.shape[1] != first.shape[1]:
            raise ConfigError(f"weights sharing {shared!r} need one rank and one column "
                              f"count: {w.name!r} is {w.parametrization.rank}/{w.shape}, "
                              f"{first.name!r} is {first.parametrization.rank}/{first.shape}")
    k = first.parametrization.rank
    if k >= first.shape[1]:
        raise ConfigError(f"rank k={k} of the shared factor {shared!r} must be < the "
                          f"{first.shape[1]} columns it reads")
    M0 = [np.asarray(w.init_matrix(rng, w.shape, dtype), dtype=np.float64) for w in weights]
    A_all, B = _factor(np.concatenate(M0), k)
    params = {shared: B.astype(dtype)}
    start = 0
    for w, M in zip(weights, M0):
        A = A_all[start:start + w.shape[0]]
        start += w.shape[0]
        params[f"{w.name}.A"] = (A * _rescale(M, A @ B)).astype(dtype)
    return params
