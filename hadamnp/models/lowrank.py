"""Low-rank weight matrices ``W = U Σ Vᵀ`` and the rules of OIALR.

OIALR (orthogonality-informed adaptive low-rank training; Coquelin et al., *Harnessing
Orthogonality to Train Low-Rank Neural Networks*, arXiv 2401.08505) trains a model at full
rank for a warm-up, then trains each eligible weight matrix as ``U Σ Vᵀ`` with only the
small square ``Σ`` trainable, re-orthogonalizes the factors periodically and prunes their
rank. This module holds the mathematics and the rules (pure functions on arrays and
parameter specs); the schedule and its state in a training run are in
:mod:`hadamnp.training.oialr`.

Orientation. A matrix ``W`` (rows, cols) is factored in its *tall* orientation, ``M = W``
when ``rows >= cols``, else ``M = Wᵀ``; ``M`` is ``(m, N)`` with ``m >= N`` (``N`` the
inner dimension)::

    M = U Σ Vᵀ      U  (m, k)  orthonormal columns, frozen
                    Σ  (k, k)  a full square matrix, trainable
                    Vᵀ (k, N)  orthonormal rows, frozen
    W = M  or  Mᵀ                                        (:func:`compose`)

At the switch ``U diag(s) Vᵀ`` is the thin SVD of ``M`` (``k = N``, :func:`factorize`).

Gradient (``Σ`` only). With ``dM = dL/dM`` (``dL/dW``, transposed when ``W`` is wide),
``dL = <dM, U dΣ Vᵀ> = <Uᵀ dM V, dΣ>``, so (:func:`sigma_grad`)::

    dL/dΣ = Uᵀ dM V                                      (k, k)

Re-orthogonalization (:func:`reorthogonalize`). ``Σ = U_σ diag(σ) V_σᵀ`` (SVD of the
``k x k`` matrix); ``U <- U U_σ``, ``Vᵀ <- V_σᵀ Vᵀ``, ``Σ <- diag(σ)``: the product is
unchanged and ``U``, ``V`` stay orthonormal.

Rank rule (:func:`next_rank`; ``σ`` descending, ``k`` the current rank, ``β`` the cutoff
fraction)::

    cutoff = β σ_1
    k'     = number of leading σ_i >= cutoff   (the index of the first σ_i < cutoff; k if none)
    if k' < k/2 and k/2 > ⌊N/100⌋:  k' = ⌊k/2⌋        (at most halving per update)
    k'     = max(k', ⌊N/100⌋)                          (1% floor)

Basis stability (:func:`stability`). ``Q = U Vᵀ`` of the SVD of ``M``; between two
checks, the mean over the ``N`` columns of the cosine between ``Q_prev[:, j]`` and
``Q[:, j]`` (1 when the singular bases did not move).

Eligible weights (:func:`select_weights`). The model declares its layer weight matrices
with a depth (:attr:`hadamnp.models.protocol.ParamSpec.depth`, 0 at the input); OIALR
factors a matrix when ``min(shape) > max(shape) / 10``, except those of the last layer
(the deepest: ``keep_last_layer``) and optionally of the first (``keep_first_layer``).
Parameters of role ``signs`` (the binary recurrent matrix of HadamRNN,
``diag(sign u) H / sqrt(n)``) are never factored: a low-rank matrix is neither binary nor
orthogonal.

Inclusion order (:func:`included`). Layers are ordered from input to output (by depth,
then declaration order). The ``c``-th check (``c = 1`` at the switch) updates the last
``c·⌊layer_step·(L−1)⌋`` of the ``L`` factored matrices, deepest first; when
``⌊layer_step·(L−1)⌋ = 0`` (fewer than 11 matrices at the default 0.1, every hadamnp
model) the released code's ``[-0:]`` slice includes them all, and so does this one.
"""

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError

__all__ = ["OIALROptions", "parse_oialr", "is_wide", "tall", "factorize", "compose",
           "sigma_grad", "reorthogonalize", "next_rank", "rank_floor", "stability",
           "eligible_shape", "select_weights", "included"]


@dataclass(frozen=True)
class OIALROptions:
    """Options of an OIALR run (the ``[oialr]`` table; ``--oialr delay=…,every=…,beta=…``).

    Attributes
    ----------
    delay : int >= 1
        Optimizer steps at full rank before the switch (the released code's ``delay``).
    every : int >= 1
        Steps between two checks (re-orthogonalization and rank pruning), the first at the
        switch (``stability_frequency``); the basis stability is also measured on the same
        grid during the warm-up.
    beta : float in (0, 1)
        Cutoff fraction ``β`` of the rank rule (``sigma_cutoff_fraction``; 0.15 in the
        released experiment configurations).
    keep_first_layer, keep_last_layer : bool
        Keep the first / last layer at full rank (released experiment configurations:
        False / True).
    stable_delay : int >= 0
        Checks a matrix skips after it was updated (``stable_update_delay``, 0 in the
        experiment configurations).
    layer_step : float in (0, 1]
        Fraction of the layers added to the inclusion set at each check
        (``network_layer_perc_step``).
    weights : tuple of str or None
        Factor only these parameters (each must satisfy the rules above); None: every
        eligible one.
    """

    delay: int
    every: int
    beta: float = 0.15
    keep_first_layer: bool = False
    keep_last_layer: bool = True
    stable_delay: int = 0
    layer_step: float = 0.1
    weights: tuple | None = None

    def __post_init__(self):
        for name, low in (("delay", 1), ("every", 1), ("stable_delay", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < low:
                raise ConfigError(f"oialr.{name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("keep_first_layer", "keep_last_layer"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"oialr.{name} must be true or false, got "
                                  f"{getattr(self, name)!r}")
        for name, ok, text in (("beta", lambda v: 0 < v < 1, "in (0, 1)"),
                               ("layer_step", lambda v: 0 < v <= 1, "in (0, 1]")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not ok(value):
                raise ConfigError(f"oialr.{name} must be a number {text}, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.weights is not None:
            weights = self.weights
            if isinstance(weights, str) or not isinstance(weights, (list, tuple)) \
                    or not weights or not all(isinstance(w, str) and w for w in weights):
                raise ConfigError(f"oialr.weights must be a non-empty list of parameter "
                                  f"names, got {weights!r}")
            object.__setattr__(self, "weights", tuple(dict.fromkeys(weights)))

    @classmethod
    def from_table(cls, table):
        """Options from a mapping (the ``[oialr]`` table); unknown keys are an error."""
        if not hasattr(table, "keys"):
            raise ConfigError(f"oialr must be a table of options, got {table!r}")
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in table:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                raise ConfigError(f"unknown oialr option {key!r}"
                                  + (f" (did you mean {close[0]!r}?)" if close else "")
                                  + f"; options: {', '.join(fields)}")
        missing = [name for name in ("delay", "every") if name not in table]
        if missing:
            raise ConfigError(f"oialr needs {' and '.join(missing)} (full-rank warm-up steps "
                              f"and steps between checks), e.g. delay=500,every=250")
        return cls(**table)

    def to_dict(self):
        """All options (``weights`` a list or None); :meth:`from_table` reads it back."""
        out = dataclasses.asdict(self)
        out["weights"] = None if self.weights is None else list(self.weights)
        return out


def parse_oialr(text):
    """The ``[oialr]`` table of a spec such as ``"delay=500,every=250,beta=0.15"``.

    Values are read as TOML (numbers, ``true``/``false``); ``weights`` is a ``:``-separated
    list of parameter names (``weights=W_hi:W_hf``).

    Raises
    ------
    ConfigError
        A part that is not ``key=value``.
    """
    table = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, eq, raw = part.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if not eq or not key or not raw:
            raise ConfigError(f"oialr: expected key=value, got {part!r} (e.g. "
                              f"delay=500,every=250,beta=0.15)")
        if key == "weights":
            table[key] = [name for name in raw.split(":") if name]
            continue
        try:
            table[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            table[key] = raw
    return table


def is_wide(shape):
    """True when the matrix has fewer rows than columns (it is factored transposed)."""
    return shape[0] < shape[1]


def tall(W):
    """``W`` in its tall orientation (a view): ``W`` or ``W.T``, ``(m, N)`` with ``m >= N``."""
    return W.T if is_wide(W.shape) else W


def factorize(W):
    """Thin SVD of the tall orientation of ``W``: ``U (m, N)``, ``s (N,)``, ``Vt (N, N)``,
    in ``W``'s dtype, ``s`` descending."""
    U, s, Vt = np.linalg.svd(tall(W), full_matrices=False)
    return U.astype(W.dtype, copy=False), s.astype(W.dtype, copy=False), \
        Vt.astype(W.dtype, copy=False)


def compose(U, S, Vt, wide):
    """``W = (U Σ) Vᵀ``, transposed back when ``wide`` (a new C-contiguous array)."""
    M = (U @ S) @ Vt
    return np.ascontiguousarray(M.T if wide else M)


def sigma_grad(U, Vt, dW, wide):
    """``dL/dΣ = Uᵀ dM V`` from ``dW = dL/dW`` (``dM = dWᵀ`` when ``wide``); ``(k, k)``."""
    dM = dW.T if wide else dW
    return U.T @ (dM @ Vt.T)


def reorthogonalize(U, S, Vt):
    """``(U U_σ, σ, V_σᵀ Vᵀ)`` with ``Σ = U_σ diag(σ) V_σᵀ`` (σ descending): the same
    product with ``Σ`` diagonal again."""
    Us, sigma, Vst = np.linalg.svd(S)
    dtype = S.dtype
    return ((U @ Us.astype(dtype, copy=False)), sigma.astype(dtype, copy=False),
            (Vst.astype(dtype, copy=False) @ Vt))


def rank_floor(inner):
    """``⌊0.01 N⌋``: the smallest rank the rule keeps (1% of the inner dimension)."""
    return int(inner) // 100


def next_rank(sigma, rank, inner, beta):
    """The rank after one update (see the module docstring).

    Parameters
    ----------
    sigma : (k,) singular values of ``Σ``, descending
    rank : int, the current rank ``k``
    inner : int, the inner dimension ``N`` of the matrix
    beta : float, the cutoff fraction

    Returns
    -------
    int in ``[⌊N/100⌋, k]``
    """
    sigma = np.asarray(sigma)
    cutoff = sigma.dtype.type(beta) * sigma[0]
    below = np.flatnonzero(sigma < cutoff)
    new = int(below[0]) if below.size else int(sigma.size)
    floor = rank_floor(inner)
    if new < 0.5 * rank and 0.5 * rank > floor:
        new = rank // 2
    return max(new, floor)


def stability(Q_prev, Q):
    """Mean over columns of the cosine between ``Q_prev[:, j]`` and ``Q[:, j]`` (float64;
    a norm product below 1e-8 counts as 1e-8, as ``torch.nn.CosineSimilarity``)."""
    a, b = np.asarray(Q_prev, np.float64), np.asarray(Q, np.float64)
    dots = np.einsum("ij,ij->j", a, b)
    norms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return float(np.mean(dots / np.maximum(norms, 1e-8)))


def eligible_shape(shape):
    """``min(shape) > max(shape) / 10``: the matrix is not too skinny to factor."""
    return len(shape) == 2 and min(shape) > max(shape) / 10


def _refusal(name, spec, first, last, options):
    """Why parameter ``name`` cannot be factored (None when it can)."""
    if spec.role == "signs":
        return (f"{name} (role 'signs') holds the signs of a structured binary/ternary "
                f"matrix, such as HadamRNN's recurrent W = diag(sign u) H / sqrt(n); it is "
                f"never low-rank-ified (a low-rank W is neither binary nor orthogonal)")
    if spec.depth is None or spec.role != "weight":
        return (f"{name} (role {spec.role!r}, shape {spec.shape}) is not a dense weight "
                f"matrix the model declares as a layer (ParamSpec.depth)")
    if not eligible_shape(spec.shape):
        return (f"{name} {spec.shape} is too skinny to factor (OIALR needs "
                f"min(shape) > max(shape) / 10)")
    if options.keep_last_layer and spec.depth == last:
        return (f"{name} is in the last layer (depth {last}), kept at full rank "
                f"(keep_last_layer = true)")
    if options.keep_first_layer and spec.depth == first:
        return (f"{name} is in the first layer (depth {first}), kept at full rank "
                f"(keep_first_layer = true)")
    return None


def select_weights(specs, options):
    """The parameters OIALR factors, ordered from input to output.

    Parameters
    ----------
    specs : dict name -> ParamSpec (a model's :meth:`param_specs`)
    options : OIALROptions

    Returns
    -------
    tuple of str
        Ordered by (depth, declaration order).

    Raises
    ------
    ConfigError
        No eligible matrix (every layer's reason is named), or ``options.weights`` names a
        parameter that does not exist or that the rules exclude.
    """
    order = {name: index for index, name in enumerate(specs)}
    depths = [spec.depth for spec in specs.values() if spec.depth is not None]
    if not depths:
        raise ConfigError("oialr: the model declares no layer weight matrix "
                          "(ParamSpec.depth), so there is nothing to factor")
    first, last = min(depths), max(depths)
    if options.weights is not None:
        for name in options.weights:
            parts = [key for key in specs if key.startswith(f"{name}.")]
            if name not in specs and parts:
                raise ConfigError(f"oialr.weights: {name} is not a dense weight matrix "
                                  f"(stored as {', '.join(parts)}: a structured "
                                  f"parametrization); OIALR factors dense matrices only")
            if name not in specs:
                layers = [n for n, s in specs.items() if s.depth is not None]
                raise ConfigError(f"oialr.weights: the model has no parameter {name!r} "
                                  f"(its layer weight matrices: {', '.join(layers)})")
            reason = _refusal(name, specs[name], first, last, options)
            if reason is not None:
                raise ConfigError(f"oialr.weights: {reason}")
        chosen = list(options.weights)
    else:
        reasons = {name: _refusal(name, spec, first, last, options)
                   for name, spec in specs.items() if spec.depth is not None}
        chosen = [name for name, reason in reasons.items() if reason is None]
        if not chosen:
            raise ConfigError("oialr: no weight matrix of this model can be factored: "
                              + "; ".join(reasons.values()))
    return tuple(sorted(chosen, key=lambda name: (specs[name].depth, order[name])))


def included(names, check, layer_step):
    """The matrices the ``check``-th check (1-based) updates: the last
    ``check·⌊layer_step·(L−1)⌋`` of ``names`` (ordered input to output), all when that is 0."""
    count = check * int((len(names) - 1) * layer_step)
    return tuple(names) if count == 0 else tuple(names[-count:])
