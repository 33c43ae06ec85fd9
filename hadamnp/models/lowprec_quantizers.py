"""The weight quantizers of Ott et al. (2016), *Recurrent Neural Networks With Limited
Numerical Precision*: binarization, ternarization, pow2-ternarization and exponential
quantization, each deterministic and (where the method has one) stochastic.

They follow the quantizer protocol of :mod:`hadamnp.models.quantizers` (which registers
them by name) and all use the identity straight-through estimator: the gradient with
respect to the quantized tensor is applied to the full-precision "shadow" tensor
unchanged, as BinaryConnect and the reference code do.

=============================  ==================================================  ==========
spec                           forward ``Q(W)`` (elementwise)                       surrogate
=============================  ==================================================  ==========
``binary[:H]``                 ``+H`` if ``W >= 0`` else ``-H`` (``H = 1``)        ``dQ``
``binary-stochastic[:H]``      ``+H`` with probability ``p = clip((W/H + 1)/2,     ``dQ``
                               0, 1)``, else ``-H``; ``E[Q] = W`` on ``[-H, H]``
``ternary[:W0]``               ``+W0`` if ``W > W0/2``, ``-W0`` if ``W <= -W0/2``,  ``dQ``
                               else 0
``ternary-stochastic[:W0]``    ``W0 sign(W) Bernoulli(min(|W|/W0, 1))``;            ``dQ``
                               ``E[Q] = W`` on ``[-W0, W0]``
``pow2-ternary[:i,f]``         ``clip(round(W 2^f), -(2^(i+f) - 1), 2^(i+f) - 1)``  ``dQ``
                               ``/ 2^f``; ``i = 0, f = 1``: ``{-1/2, 0, 1/2}``
``exponential``                ``sign(W) 2^(e + 1[p > 1/2])``, ``e = clip(floor(    ``dQ``
                               log2|W|), -22, 9)``, ``p = |W|/2^e - 1``; ``Q(0) = 0``
``exponential-stochastic``     ``sign(W) 2^(e + Bernoulli(clip(p, 0, 1)))``;        ``dQ``
                               ``E|Q| = |W|`` for ``2^-22 <= |W| < 2^10``
=============================  ==================================================  ==========

``W0`` is the Glorot bound of the matrix: the cells of :mod:`hadamnp.models.lowprec` set
it per matrix (``sqrt(6/(d_in + n))`` for input weights and biases, ``sqrt(6/(2n))`` for
recurrent weights). Left unset (``None``), it is the Glorot bound
``sqrt(6/(rows + cols))`` of the 2-D tensor being quantized.

Rounding in ``pow2-ternary`` is half to even (the project's convention; the method's
formula does not say, and exact ties have probability zero for trained weights).
Binarization's deterministic rule maps ``W = 0`` to ``+H``, as ``sign(0) = +1``.

Stochastic quantizers draw from the ``numpy.random.Generator`` passed to ``forward``
(the training loop passes one derived from the run's seed and the step); with ``rng=None``
(evaluation, export, golden files) they apply their deterministic counterpart.
"""

import math
from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError

__all__ = ["Binary", "BinaryStochastic", "Ternary", "TernaryStochastic", "Pow2Ternary",
           "Exponential", "ExponentialStochastic", "LOWPREC_QUANTIZERS", "glorot_bound",
           "EXP_MIN", "EXP_MAX", "MAX_FIXED_BITS"]

FLOAT_BITS = 32
EXP_MIN, EXP_MAX = -22, 9   # exponent range of exponential quantization (the method's)
MAX_FIXED_BITS = 15         # i + f: codes up to 2^15 - 1 fit a signed 16-bit integer


def glorot_bound(fan_in, fan_out):
    """``sqrt(6 / (fan_in + fan_out))``: the Glorot-uniform bound, the method's ``W0``."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def _check_rng(rng, name):
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"quantizer {name!r}: rng must be a numpy.random.Generator or None, "
                        f"got {type(rng).__name__}")
    return rng


def _check_scale(value, what, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"quantizer {name!r}: {what} must be a positive number, "
                          f"got {value!r}")


class _IdentitySTE:
    """Shared parts: identity surrogate gradient, no state."""

    stochastic = False

    def backward(self, M, dMq):
        """Identity straight-through estimator: ``dM = dMq``."""
        return dMq

    def _uniform(self, rng, M):
        """Uniform draws in [0, 1) of ``M``'s shape and dtype, or None (deterministic)."""
        if not self.stochastic or _check_rng(rng, self.name) is None:
            return None
        return rng.random(M.shape, dtype=M.dtype)


@dataclass(frozen=True)
class Binary(_IdentitySTE):
    """Binarization (BinaryConnect): ``Q(W) = +H`` if ``W >= 0`` else ``-H``.

    Parameters
    ----------
    H : float > 0
        Magnitude of the two levels (1 in the method's code).
    """

    H: float = 1.0

    name = "binary"

    def __post_init__(self):
        _check_scale(self.H, "H", self.name)

    def forward(self, M, rng=None):
        H = M.dtype.type(self.H)
        draw = self._uniform(rng, M)
        if draw is None:
            return np.where(M >= 0, H, -H)
        p = np.clip((M / H + 1) / 2, 0, 1)   # the "hard sigmoid"
        return np.where(draw < p, H, -H)

    def code_bits(self, entries):
        """One bit per entry."""
        return entries

    def scale_bits(self):
        """The magnitude ``H``, one float32."""
        return FLOAT_BITS

    def describe(self):
        return {"kind": self.name, "H": float(self.H), "stochastic": self.stochastic,
                "ste": "identity"}


@dataclass(frozen=True)
class BinaryStochastic(Binary):
    """Stochastic binarization: ``+H`` with probability ``clip((W/H + 1)/2, 0, 1)``."""

    name = "binary-stochastic"
    stochastic = True


@dataclass(frozen=True)
class Ternary(_IdentitySTE):
    """Ternarization: ``W0 * (1[W > W0/2] - 1[W <= -W0/2])``, levels ``{-W0, 0, W0}``.

    Parameters
    ----------
    W0 : float > 0 or None
        The Glorot bound of the matrix (set by the model); ``None``: the Glorot bound of
        the 2-D tensor's own shape.
    """

    W0: float | None = None

    name = "ternary"

    def __post_init__(self):
        if self.W0 is not None:
            _check_scale(self.W0, "W0", self.name)

    def scale(self, M):
        """``W0`` in ``M``'s dtype."""
        if self.W0 is not None:
            return M.dtype.type(self.W0)
        if M.ndim != 2:
            raise ConfigError(f"quantizer {self.name!r} has no W0 for a tensor of shape "
                              f"{M.shape}: give it as {self.name}:W0=VALUE")
        return M.dtype.type(glorot_bound(M.shape[1], M.shape[0]))

    def forward(self, M, rng=None):
        W0 = self.scale(M)
        zero = M.dtype.type(0)
        draw = self._uniform(rng, M)
        if draw is None:
            return np.where(M > W0 / 2, W0, np.where(M <= -W0 / 2, -W0, zero))
        keep = draw < np.minimum(np.abs(M) / W0, 1)
        return np.where(keep, np.where(M > 0, W0, -W0), zero)

    def code_bits(self, entries):
        """Two bits per entry (three levels)."""
        return 2 * entries

    def scale_bits(self):
        """The magnitude ``W0``, one float32."""
        return FLOAT_BITS

    def describe(self):
        return {"kind": self.name, "W0": None if self.W0 is None else float(self.W0),
                "stochastic": self.stochastic, "ste": "identity"}


@dataclass(frozen=True)
class TernaryStochastic(Ternary):
    """Stochastic ternarization: ``W0 sign(W) Bernoulli(min(|W|/W0, 1))``."""

    name = "ternary-stochastic"
    stochastic = True


@dataclass(frozen=True)
class Pow2Ternary(_IdentitySTE):
    """Pow2-ternarization: fixed point, ``i`` integer and ``f`` fractional bits.

    ``Q(W) = clip(round(W 2^f), -(2^(i+f) - 1), 2^(i+f) - 1) / 2^f`` (round half to even).

    With the defaults ``i = 0, f = 1`` the levels are ``{-1/2, 0, 1/2}``: ternary with a
    power-of-two magnitude.

    Parameters
    ----------
    i, f : int >= 0, with ``1 <= i + f <= 15``
    """

    i: int = 0
    f: int = 1

    name = "pow2-ternary"

    def __post_init__(self):
        for key in ("i", "f"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < 0:
                raise ConfigError(f"quantizer {self.name!r}: {key} (the number of "
                                  f"{'integer' if key == 'i' else 'fractional'} bits) must "
                                  f"be an integer >= 0, got {value!r}")
        if not 1 <= self.i + self.f <= MAX_FIXED_BITS:
            raise ConfigError(f"quantizer {self.name!r}: i + f must be in [1, "
                              f"{MAX_FIXED_BITS}], got i={self.i}, f={self.f}")

    @property
    def max_code(self):
        """Largest code ``2^(i+f) - 1``."""
        return 2 ** (self.i + self.f) - 1

    def forward(self, M, rng=None):
        step = M.dtype.type(2.0 ** -self.f)
        code = np.clip(np.rint(M / step), -self.max_code, self.max_code)
        return (code * step).astype(M.dtype, copy=False)

    def code_bits(self, entries):
        """``i + f + 1`` bits per entry (sign and magnitude of the code)."""
        return (self.i + self.f + 1) * entries

    def scale_bits(self):
        """No scale: the grid is fixed."""
        return 0

    def describe(self):
        return {"kind": self.name, "i": int(self.i), "f": int(self.f),
                "stochastic": False, "ste": "identity"}


@dataclass(frozen=True)
class Exponential(_IdentitySTE):
    """Exponential quantization: signed powers of two ``±2^k``, ``k`` in [-22, 10].

    ``k`` is in ``[EXP_MIN, EXP_MAX + 1]``; rounding is linear between adjacent powers (up
    when ``|W| > 1.5 * 2^e``); ``Q(0) = 0``."""

    name = "exponential"

    def _parts(self, M):
        """``(sign, e, p_up)``: ``|M| = 2^e (1 + p_up)`` with ``e`` clipped to the range."""
        magnitude = np.abs(M)
        _, ex = np.frexp(magnitude)            # |M| = m 2^ex, m in [1/2, 1): floor(log2) = ex-1
        e = np.clip(ex - 1, EXP_MIN, EXP_MAX)
        p_up = np.ldexp(magnitude, -e) - 1     # exact: a power-of-two scaling
        return np.where(M < 0, -1, 1).astype(M.dtype), e, p_up

    def forward(self, M, rng=None):
        sign, e, p_up = self._parts(M)
        draw = self._uniform(rng, M)
        up = p_up > 0.5 if draw is None else draw < np.clip(p_up, 0, 1)
        out = sign * np.ldexp(M.dtype.type(1), e + up)
        return np.where(M == 0, M.dtype.type(0), out).astype(M.dtype, copy=False)

    def code_bits(self, entries):
        """Seven bits per entry: a sign and one of 34 codes (33 exponents and zero)."""
        return 7 * entries

    def scale_bits(self):
        """No scale."""
        return 0

    def describe(self):
        return {"kind": self.name, "exponents": [EXP_MIN, EXP_MAX + 1],
                "stochastic": self.stochastic, "ste": "identity"}


@dataclass(frozen=True)
class ExponentialStochastic(Exponential):
    """Stochastic exponential quantization: up with probability ``clip(p_up, 0, 1)``."""

    name = "exponential-stochastic"
    stochastic = True


LOWPREC_QUANTIZERS = (Binary, BinaryStochastic, Ternary, TernaryStochastic, Pow2Ternary,
                      Exponential, ExponentialStochastic)
