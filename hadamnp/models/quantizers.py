"""Weight quantizers with straight-through estimators (STE).

A quantizer maps a latent full-precision tensor ``M`` to the tensor used in the forward
pass, and maps the gradient with respect to that tensor back to ``M``::

    Mq = q.forward(M)
    dM = q.backward(M, dMq)        # the surrogate gradient (STE)

Quantizers hold only their configuration (no per-call state) and never write into their
arguments. New schemes (ternary, power-of-two, exponential, {0, +1} magnitude) implement
the same two methods plus :meth:`describe`.
"""

from dataclasses import dataclass

import numpy as np

from hadamnp import conventions
from hadamnp.errors import ConfigError


@dataclass(frozen=True)
class Identity:
    """No quantization: ``forward(M) = M``, gradient passed through."""

    def forward(self, M):
        return M

    def backward(self, M, dMq):
        return dMq

    def describe(self):
        return {"kind": "none"}


@dataclass(frozen=True)
class Sign:
    """Binarisation ``sign(M)`` with ``sign(0) = +1``.

    Parameters
    ----------
    clipped : bool
        ``False`` (default, as the reference code): identity STE, ``dM = dMq``.
        ``True``: clipped STE, ``dM = dMq * 1[|M| <= 1]``.
    """

    clipped: bool = False

    def forward(self, M):
        return conventions.sign(M)

    def backward(self, M, dMq):
        if self.clipped:
            return dMq * (np.abs(M) <= 1)
        return dMq

    def describe(self):
        return {"kind": "sign", "ste": "clipped" if self.clipped else "identity"}


@dataclass(frozen=True)
class Uniform:
    """Symmetric uniform per-tensor quantizer on ``bits`` bits (the HadamRNN U/V quantizer).

    ``alpha = max|M|`` (1 when ``M`` is all zero), ``c = 2**(bits-1)``::

        bits >= 2:  Q(M) = alpha/c * clip(round(M * c/alpha), -c, c - 1)
        bits == 1:  Q(M) = alpha   * clip(round(M / alpha), -1, 1)      # {-alpha, 0, alpha}

    ``round`` is half-to-even. Backward: identity STE with ``alpha`` held constant.
    """

    bits: int

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) \
                or not 1 <= self.bits <= 32:
            raise ConfigError(f"quantizer bits must be an integer in [1, 32], got {self.bits!r}")

    def alpha(self, M):
        """Per-tensor scale ``max|M|`` (1 for an all-zero tensor), in ``M``'s dtype."""
        alpha = np.max(np.abs(M)) if M.size else 0
        return M.dtype.type(alpha if alpha > 0 else 1)

    def grid(self):
        """Integer code range ``(low, high, levels_per_alpha)``: ``Q = alpha/levels * code``."""
        if self.bits == 1:
            return -1, 1, 1
        c = 2 ** (self.bits - 1)
        return -c, c - 1, c

    def codes(self, M):
        """Integer codes of ``Q(M)`` (int64, same shape) and ``alpha``."""
        low, high, levels = self.grid()
        alpha = self.alpha(M)
        code = np.clip(conventions.round_half_even(M * (levels / alpha)), low, high)
        return code.astype(np.int64), alpha

    def forward(self, M):
        code, alpha = self.codes(M)
        _, _, levels = self.grid()
        return (code * (alpha / levels)).astype(M.dtype)

    def backward(self, M, dMq):
        return dMq

    def describe(self):
        return {"kind": "uniform", "bits": int(self.bits), "ste": "identity"}


def weight_quantizer(bits):
    """The U/V quantizer for a bit width: ``0``/``None`` means none, else :class:`Uniform`."""
    if bits is None or bits == 0:
        return Identity()
    return Uniform(int(bits))
