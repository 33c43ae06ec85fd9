"""SiMaN sign-to-magnitude weight binarization (Lin et al., TPAMI; arXiv 2102.07981).

Each row ``o`` of the latent matrix ``M`` (an output unit: ``M`` acts on column vectors) is
standardized, its *magnitudes* ranked, and the high-magnitude entries coded 1, the others
0; the forward pass uses ``2B - 1`` times a learnable per-row scale ``alpha``::

    z_o   = (M_o - mean(M_o)) / sqrt(var(M_o) + 1e-5)        per-row standardization
    X     = |z|
    B_oj  = 1  if X_oj is among the k_o largest of row o,  else 0      (ties: earlier first)
            rule "half"   (default, the released code): k_o = floor(N / 2)
            rule "argmax" (the paper's angle alignment):  k_o = argmax_k S_k / sqrt(k),
                          S_k the sum of the k largest X_oj
    Q(M)  = diag(alpha) (2B - 1)                               alpha (R,), role "scale"

Backward (the released code's ``X - X.detach() + (2B - 1)``: identity STE from the code to
the magnitudes, then the exact chain rule through ``|.|`` and the standardization)::

    dX     = alpha * dQ                      (per row)
    dz     = sign(z) * dX                    (sign(0) = 0: the subgradient of |z| at 0)
    dM     = (dz - mean(dz) - z mean(dz z)) / sigma          (per row)
    dalpha = sum_j dQ_oj (2B_oj - 1)

so ``dM`` is the exact gradient of the surrogate ``diag(alpha) |z(M)|``, which the tests
check by finite differences. The sign of an effective weight is set by its magnitude rank,
not by the sign of the latent weight.

``alpha`` is a parameter the quantizer owns (:mod:`hadamnp.models.weights` names it
``<weight>.alpha``); it starts at ``mean_j |M_oj|`` of the initial matrix, as the released
code.

Progressive magnitude clipping (the released code's training trick, option ``clip``):
before the forward pass of training step ``k`` (0-based), the stored matrix is replaced by::

    M1 = M - mean_row(M);   P = clip * max(0, 1 - k / clip_steps)
    M  <- sign(M1) * clamp(|M1|, pct_P(|M1|), pct_{100-P}(|M1|))   (percentiles over the
                                                                    whole matrix; P > 0 only)

The released code decays ``P`` from 15 to 0 linearly in *epochs* over the whole run
(``15 (1 - epoch / epochs)``); here the decay is linear in optimizer steps over
``clip_steps`` steps, a quantizer option, so the schedule never depends on how many epochs
a resumed run is extended to. ``np.percentile``'s linear interpolation; ``sign(0) = 0``.

Evaluation (``rng=None``) uses the same deterministic code: the code is a function of the
stored matrix only. (The released code keeps, at evaluation, the code of the last training
forward pass, computed before the last optimizer update.)
"""

from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models import binary
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import register_quantizer

__all__ = ["SiMaN"]

RULES = ("half", "argmax")


@register_quantizer
@dataclass(frozen=True)
class SiMaN:
    """SiMaN magnitude binarization alpha_o (2B - 1), B the top magnitudes of each row.

    Parameters
    ----------
    rule : {"half", "argmax"}
        Ones per row: ``floor(N/2)`` (released code) or the angle-alignment ``k*``.
    clip : float in [0, 50)
        Initial percentile ``P`` of the progressive magnitude clipping (released code: 15);
        0 disables it.
    clip_steps : int >= 0
        Optimizer steps over which ``P`` decays linearly to 0 (needed when ``clip > 0``).
    """

    rule: str = "half"
    clip: float = 0
    clip_steps: int = 0

    name = "siman"
    stochastic = False

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"siman quantizer: unknown rule {self.rule!r}; choose one of "
                              f"{', '.join(RULES)}")
        if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)) \
                or not 0 <= self.clip < 50:
            raise ConfigError(f"siman quantizer: clip must be a percentile in [0, 50), "
                              f"got {self.clip!r}")
        if isinstance(self.clip_steps, bool) or not isinstance(self.clip_steps, int) \
                or self.clip_steps < 0:
            raise ConfigError(f"siman quantizer: clip_steps must be an integer >= 0, got "
                              f"{self.clip_steps!r}")
        if (self.clip > 0) != (self.clip_steps > 0):
            raise ConfigError("siman quantizer: clip and clip_steps go together (clip=15,"
                              "clip_steps=N decays the clipping percentile from 15 to 0 over "
                              "N steps)")

    # ---------------------------------------------------------------- owned parameters

    def param_specs(self, shape):
        """The per-row scale ``alpha`` (R,), role ``scale``."""
        return {"alpha": ParamSpec((shape[0],), "scale")}

    def init_params(self, M):
        """``alpha = mean_j |M_oj|`` of the initial matrix."""
        return {"alpha": np.mean(np.abs(M), axis=1)}

    # ---------------------------------------------------------------- forward / backward

    def _check(self, M):
        if M.ndim != 2:
            raise ConfigError(f"siman quantizer: expects a matrix (rows = output units), "
                              f"got shape {M.shape}")

    def _standardized(self, M):
        self._check(M)
        return binary.standardize(M, axis=1)

    def _code(self, z):
        X = np.abs(z)
        if self.rule == "half":
            k = np.full(X.shape[0], X.shape[1] // 2)
        else:
            k = binary.argmax_k(X)
        return binary.top_k_code(X, k)

    def code(self, M, params=None):
        """The {0, 1} code ``B`` (R, N) uint8 of ``M``."""
        return self._code(self._standardized(M)[0])

    def factors(self, M, rng=None, params=None):
        """``(C, alpha)`` with ``Q(M) = alpha[:, None] * C``, ``C = 2B - 1`` in ``M``'s dtype."""
        C = 2 * self.code(M).astype(M.dtype) - 1  # stays in M's dtype
        return C, _alpha(params, M)

    def forward(self, M, rng=None, params=None):
        """``diag(alpha) (2B - 1)``, in ``M``'s dtype."""
        C, alpha = self.factors(M, rng, params)
        return alpha[:, None] * C

    def backward(self, M, dMq, params=None):
        """``(dM, {"alpha": dalpha})`` (see the module docstring)."""
        z, sigma = self._standardized(M)
        C = 2 * self._code(z).astype(M.dtype) - 1
        alpha = _alpha(params, M)
        dz = np.sign(z) * (alpha[:, None] * dMq)
        dM = binary.standardize_backward(dz, z, sigma, axis=1)
        return dM, {"alpha": np.sum(dMq * C, axis=1)}

    # ---------------------------------------------------------------- training schedule

    @property
    def projects(self):
        """True when the quantizer rewrites the stored matrix during training (clipping)."""
        return self.clip > 0

    def percentile(self, step):
        """Clipping percentile ``P`` before training step ``step`` (0 when off or over)."""
        if not self.projects:
            return 0.0
        return float(self.clip) * max(0.0, 1.0 - step / self.clip_steps)

    def project(self, M, step):
        """The matrix after the progressive magnitude clipping of step ``step``; ``M``
        itself (not a copy) when ``P = 0``."""
        P = self.percentile(step)
        if P == 0:
            return M
        M1 = M - M.mean(axis=1, keepdims=True)
        mag = np.abs(M1)
        low, high = np.percentile(mag, [P, 100 - P])
        return (np.sign(M1) * np.clip(mag, low, high)).astype(M.dtype)

    # ---------------------------------------------------------------- storage

    def code_bits(self, entries):
        """One bit per entry (the {0, 1} code)."""
        return entries

    def scale_bits(self):
        """None beyond ``alpha``, which is a parameter (counted by the weight as float32)."""
        return 0

    def describe(self):
        return {"kind": "siman", "rule": self.rule, "clip": self.clip,
                "clip_steps": self.clip_steps, "ste": "standardized magnitudes"}


def _alpha(params, M):
    """The owned scale ``alpha`` (R,) from ``params``, checked against ``M``."""
    alpha = None if params is None else params.get("alpha")
    if alpha is None:
        raise ConfigError("the siman quantizer owns the parameter alpha: use it through a "
                          "Weight, or pass params={'alpha': array of shape (rows,)}")
    if alpha.shape != (M.shape[0],):
        raise ConfigError(f"siman quantizer: alpha has shape {alpha.shape}, expected "
                          f"({M.shape[0]},) for a matrix of shape {M.shape}")
    return alpha
