"""Weight quantizers with their surrogate gradients, registered by name.

A quantizer maps a latent full-precision tensor ``M`` to the tensor used in the forward
pass, and maps the gradient with respect to that tensor back to ``M``::

    Mq = q.forward(M)            # deterministic (evaluation, export, golden files)
    Mq = q.forward(M, rng)       # training draw: stochastic quantizers use ``rng``
    dM = q.backward(M, dMq)      # the surrogate gradient (straight-through estimator)

Quantizers hold only their configuration (no per-call state), never write into their
arguments and are chosen by a *spec* string ``name[:arg,arg,...]`` (positional arguments
follow the constructor's order; ``key=value`` arguments name them), e.g. ``"uniform:4"``,
``"sign"``, ``"sign:clipped"``, ``"none"``. :func:`get_quantizer` parses a spec and
:func:`register_quantizer` adds a family (one line per family, see :data:`QUANTIZERS`).

=========================  =======================================  ===========================
spec                       forward ``Q(M)``                         surrogate ``dM``
=========================  =======================================  ===========================
``none``                   ``M``                                    ``dMq``
``sign``                   ``sign(M)``, sign(0) = +1                ``dMq`` (identity STE)
``sign:clipped``           ``sign(M)``                              ``dMq * 1[|M| <= 1]``
``uniform:k``              ``alpha/c * clip(rint(M c/alpha),        ``dMq`` (alpha held
                           -c, c-1)``, ``c = 2^(k-1)``,             constant)
                           ``alpha = max|M|``; k = 1 ternary
``binary[-stochastic]``    ``±H`` (``H = 1``); stochastic: ``+H``     ``dMq`` (identity STE)
                           w.p. ``clip((M/H + 1)/2, 0, 1)``
``ternary[-stochastic]``   ``{-W0, 0, W0}``, thresholds ``±W0/2``;    ``dMq``
                           stochastic: ``W0 sign(M) Bern(|M|/W0)``
``pow2-ternary:i,f``       ``clip(rint(M 2^f), ±(2^(i+f) - 1))/2^f``  ``dMq``
``exponential[-stoch..]``  ``sign(M) 2^k``, ``k`` in [-22, 10],       ``dMq``
                           rounded linearly (stochastic: unbiased)
=========================  =======================================  ===========================

The last four rows are Ott et al.'s quantizers (:mod:`hadamnp.models.lowprec_quantizers`
has their exact definitions; ``W0`` is the Glorot bound of the matrix).

A quantizer also states what its output costs to store (``code_bits(entries)`` for the
codes, ``scale_bits()`` for the scales stored beside them), used by the model-size
bookkeeping, and whether it draws random numbers (``stochastic``).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from hadamnp import conventions
from hadamnp.errors import ConfigError
from hadamnp.models.lowprec_quantizers import LOWPREC_QUANTIZERS

FLOAT_BITS = 32
MAX_BITS = 16  # widest uniform code: int16 (wider codes buy nothing over float32 storage)


@dataclass(frozen=True)
class Identity:
    """No quantization: ``forward(M) = M``, gradient passed through."""

    name = "none"
    stochastic = False

    def forward(self, M, rng=None):
        return M

    def backward(self, M, dMq):
        return dMq

    def code_bits(self, entries):
        """Bits to store ``entries`` values: float32 each."""
        return FLOAT_BITS * entries

    def scale_bits(self):
        """Bits of the scales stored with the codes: none."""
        return 0

    def describe(self):
        return {"kind": "none"}


@dataclass(frozen=True)
class Sign:
    """Binarisation ``sign(M)`` with ``sign(0) = +1``.

    Parameters
    ----------
    ste : {"identity", "clipped"}
        ``"identity"`` (default, as the HadamRNN reference code): ``dM = dMq``.
        ``"clipped"``: ``dM = dMq * 1[|M| <= 1]`` (BinaryConnect's hard-tanh STE).
    """

    ste: str = "identity"

    name = "sign"
    stochastic = False

    def __post_init__(self):
        if self.ste not in ("identity", "clipped"):
            raise ConfigError(f"sign quantizer: unknown ste {self.ste!r}; "
                              f"choose 'identity' or 'clipped'")

    def forward(self, M, rng=None):
        return conventions.sign(M)

    def backward(self, M, dMq):
        if self.ste == "clipped":
            return dMq * (np.abs(M) <= 1)
        return dMq

    def code_bits(self, entries):
        """One bit per entry."""
        return entries

    def scale_bits(self):
        """No scale."""
        return 0

    def describe(self):
        return {"kind": "sign", "ste": self.ste}


@dataclass(frozen=True)
class Uniform:
    """Symmetric uniform per-tensor quantizer on ``bits`` bits (the HadamRNN U/V quantizer).

    ``alpha = max|M|`` (1 when ``M`` is all zero), ``c = 2**(bits-1)``::

        bits >= 2:  Q(M) = alpha/c * clip(round(M * c/alpha), -c, c - 1)
        bits == 1:  Q(M) = alpha   * clip(round(M / alpha), -1, 1)      # {-alpha, 0, alpha}

    ``round`` is half-to-even. Backward: identity STE with ``alpha`` held constant.

    Parameters
    ----------
    bits : int in [1, 16]
    """

    bits: int

    name = "uniform"
    stochastic = False

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) \
                or not 1 <= self.bits <= MAX_BITS:
            raise ConfigError(f"uniform quantizer: bits must be an integer in [1, {MAX_BITS}], "
                              f"got {self.bits!r}")

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

    def forward(self, M, rng=None):
        code, alpha = self.codes(M)
        _, _, levels = self.grid()
        return (code * (alpha / levels)).astype(M.dtype)

    def backward(self, M, dMq):
        return dMq

    def code_bits(self, entries):
        """``bits`` per entry (2 for ``bits = 1``: the codes {-1, 0, 1} take three values)."""
        return (2 if self.bits == 1 else self.bits) * entries

    def scale_bits(self):
        """One float32 scale ``alpha`` per tensor."""
        return FLOAT_BITS

    def describe(self):
        return {"kind": "uniform", "bits": int(self.bits), "ste": "identity"}


QUANTIZERS = {}


def register_quantizer(cls):
    """Register a quantizer class under ``cls.name`` (usable as a class decorator).

    The class must be a frozen dataclass whose fields are its spec arguments, with
    ``forward(M, rng=None)``, ``backward(M, dMq)``, ``code_bits(entries)``, ``scale_bits()``,
    ``describe()`` and the class attributes ``name`` and ``stochastic``.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"quantizer class {cls.__name__} has no name")
    if name in QUANTIZERS and QUANTIZERS[name] is not cls:
        raise ConfigError(f"a quantizer named {name!r} is already registered")
    QUANTIZERS[name] = cls
    return cls


for _cls in (Identity, Sign, Uniform, *LOWPREC_QUANTIZERS):
    register_quantizer(_cls)


def _parse_value(text):
    """A spec argument as int, float, bool or str (``"4"`` -> 4, ``"0.5"`` -> 0.5)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_spec(spec, registry, what):
    """The object a spec string ``name[:arg,...,key=value]`` describes in ``registry``
    (name -> frozen dataclass; positional arguments follow its field order).

    Raises :class:`ConfigError` naming ``what`` (e.g. "quantizer") for an unknown name (the
    message lists the registered ones) or bad arguments.
    """
    name, _, args = spec.strip().partition(":")
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r} in {spec!r}; choose one of "
                          f"{', '.join(sorted(registry))}")
    cls = registry[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    positional, named = [], {}
    for part in filter(None, (p.strip() for p in args.split(","))):
        key, eq, value = part.partition("=")
        if eq:
            if key not in fields:
                raise ConfigError(f"{what} {name!r} has no argument {key!r} "
                                  f"(arguments: {', '.join(fields) or 'none'})")
            named[key] = _parse_value(value)
        elif named:
            raise ConfigError(f"positional argument {part!r} after a named one in {spec!r}")
        else:
            positional.append(_parse_value(part))
    if len(positional) > len(fields):
        raise ConfigError(f"{what} {name!r} takes at most {len(fields)} argument(s) "
                          f"({', '.join(fields) or 'none'}), got {spec!r}")
    values = dict(zip(fields, positional))
    duplicated = sorted(set(values) & set(named))
    if duplicated:
        raise ConfigError(f"argument {duplicated[0]!r} given twice in {spec!r}")
    try:
        return cls(**values, **named)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for {what} {name!r} in {spec!r}: {exc}") from None


def get_quantizer(spec):
    """The quantizer described by ``spec``.

    Parameters
    ----------
    spec : str or quantizer
        ``"name"`` or ``"name:arg,arg,key=value"`` (see the module docstring); a quantizer
        instance is returned as is. ``None`` and ``"none"`` mean no quantization.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the registered ones) or bad arguments.
    """
    if spec is None:
        return Identity()
    if not isinstance(spec, str):
        if type(spec) in QUANTIZERS.values():
            return spec
        raise ConfigError(f"a quantizer spec must be a string such as 'uniform:4', got {spec!r}")
    return parse_spec(spec, QUANTIZERS, "quantizer")


def quantizer_spec(quantizer):
    """The canonical spec string of a quantizer, or of any object built by
    :func:`parse_spec` (``get_quantizer`` / ``parse_spec`` read it back)."""
    cls = type(quantizer)
    args, skipped = [], False
    for f in dataclasses.fields(cls):
        value = getattr(quantizer, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            skipped = True  # later arguments must then be named
            continue
        args.append(f"{f.name}={value}" if skipped else str(value))
    return cls.name + (":" + ",".join(args) if args else "")


def uniform_spec(bits):
    """Spec of the ``bits``-bit uniform quantizer; ``0`` means none (the ``--bits`` option)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 0:
        raise ConfigError(f"bits must be a non-negative integer (0 = full precision), "
                          f"got {bits!r}")
    return "none" if bits == 0 else f"uniform:{int(bits)}"
