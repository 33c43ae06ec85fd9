"""Weight matrices of a model: a parametrization, then a quantizer.

Every weight matrix a model uses (HadamRNN's ``U`` and ``V``, a dense recurrent ``W``, the
gate matrices of a cell) is a :class:`Weight`: its latent parameters are turned into a
full-precision matrix ``M`` by a *parametrization*, and ``M`` into the matrix the forward
pass uses by a *quantizer* (:mod:`hadamnp.models.quantizers`)::

    M    = P(theta)          parametrization, e.g. dense (theta = M itself)
    Mq   = Q(M)              quantizer, e.g. uniform:4
    dM   = Q.backward(M, dMq)
    dtheta = P.backward(theta, dM)

Parametrizations are chosen by a spec string like quantizers and registered with
:func:`register_parametrization`; ``dense`` is built in (one parameter named after the
weight, e.g. ``U``). A parametrization with several parameters names them
``<weight>.<part>`` (e.g. ``U.A``, ``U.B`` for low-rank factors), so they stay unique
inside the model and readable in checkpoints and golden files.

A parametrization provides ``param_specs(name, shape, role)``, ``init(rng, name, shape,
dtype, init_matrix)``, ``matrix(params, name, shape)``, ``backward(params, name, shape,
dM)`` (gradients of its parameters), ``code_entries(shape)`` (how many values it stores)
and ``describe()``.

Parameters owned by a quantizer
    A quantizer may own learnable parameters (SiMaN's per-row scale ``alpha``). It then
    declares them with ``param_specs(shape) -> {part: ParamSpec}`` and
    ``init_params(M) -> {part: array}`` (computed from the initial matrix, so they draw no
    random numbers), and takes them in ``forward(M, rng=None, params=None)`` and
    ``backward(M, dMq, params=None) -> (dM, {part: gradient})``. The weight stores them
    as ``<weight>.<part>`` (``W.alpha``) right after its own parameters, passes them in and
    returns their gradients with the others. Quantizers without ``param_specs`` keep the
    two-argument ``forward(M, rng)``/``backward(M, dMq)``; nothing changes for them.

Optional quantizer members the weight uses when present (all deterministic)
    ``factors(M, rng, params) -> (C, s)``  ``Q(M) = s[:, None] * C`` (a code matrix and
                                          a per-row scale): models that must evaluate
                                          ``s * (C @ a)`` exactly (bit-packed products)
    ``code(M, params) -> {0, 1} array``   the stored code of a one-bit quantizer
    ``projects``, ``project(M, step)``    a training-time rewrite of the stored matrix
                                          before the forward pass of optimizer step
                                          ``step`` (SiMaN's progressive clipping); only
                                          with the dense parametrization

Role of the latent parameter
    By default a weight whose quantizer stores one bit per entry (``code_bits(1) == 1``:
    ``sign``, ``siman``) declares its latent matrix with role ``binary``, every other one
    with role ``weight``. The run's per-role tables then treat binarized latent weights
    apart: ``weight_decay = {weight = x}`` does not decay them (SiMaN's recipe: decay
    drives the latent weights towards a Laplacian, whose angle-aligned code is far from
    half ones), ``weight_decay = {binary = x}`` does.

Diagnostics
    :meth:`Weight.diagnostics` of a one-bit weight: the fraction of ones of its code, the
    code's bit entropy, and the angle-alignment fraction ``k*/N`` of its latent matrix
    (:mod:`hadamnp.models.binary`). Models report them through their optional
    ``diagnostics(params)`` member (:func:`weight_diagnostics`).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models import binary
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import FLOAT_BITS, get_quantizer, quantizer_spec

__all__ = ["Dense", "Weight", "PARAMETRIZATIONS", "register_parametrization",
           "get_parametrization", "parametrization_spec", "project_weights",
           "weight_diagnostics"]


@dataclass(frozen=True)
class Dense:
    """The matrix is its own parameter: ``M = theta`` (one parameter named after the weight)."""

    name = "dense"

    def param_specs(self, name, shape, role):
        return {name: ParamSpec(shape, role)}

    def init(self, rng, name, shape, dtype, init_matrix):
        return {name: init_matrix(rng, shape, dtype)}

    def matrix(self, params, name, shape):
        return params[name]

    def backward(self, params, name, shape, dM):
        return {name: dM}

    def code_entries(self, shape):
        """Values stored for the matrix: all of its entries."""
        return int(np.prod(shape))

    def describe(self):
        return {"kind": "dense"}


PARAMETRIZATIONS = {}


def register_parametrization(cls):
    """Register a parametrization class under ``cls.name`` (a class decorator); its
    dataclass fields are its spec arguments."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"parametrization class {cls.__name__} has no name")
    if name in PARAMETRIZATIONS and PARAMETRIZATIONS[name] is not cls:
        raise ConfigError(f"a parametrization named {name!r} is already registered")
    PARAMETRIZATIONS[name] = cls
    return cls


register_parametrization(Dense)


def get_parametrization(spec):
    """The parametrization described by ``spec`` (``"dense"``, or ``"name:arg,key=value"``)."""
    from hadamnp.models.quantizers import parse_spec

    if spec is None:
        return Dense()
    if not isinstance(spec, str):
        if type(spec) in PARAMETRIZATIONS.values():
            return spec
        raise ConfigError(f"a parametrization spec must be a string such as 'dense', "
                          f"got {spec!r}")
    return parse_spec(spec, PARAMETRIZATIONS, "parametrization")


def parametrization_spec(parametrization):
    """Canonical spec string of a parametrization (``get_parametrization`` reads it back)."""
    return quantizer_spec(parametrization)


class Weight:
    """One weight matrix: latent parameters -> ``M`` (parametrization) -> ``Q(M)``.

    Parameters
    ----------
    name : str
        Name of the weight in the model (``"U"``); the dense parametrization stores it
        under this name.
    shape : tuple (rows, cols)
        Shape of the matrix, acting on column vectors: ``(fan_out, fan_in)``.
    init_matrix : callable ``init_matrix(rng, shape, dtype) -> array``
        Initial full-precision matrix (parametrizations factor or project it).
    quantizer, parametrization : spec strings or objects
    role : str or None
        Role of the latent parameters; ``None``: ``binary`` for a one-bit quantizer, else
        ``weight`` (module docstring).
    bound : float or None, the latent clipping bound of the dense parameter
    """

    def __init__(self, name, shape, init_matrix, quantizer="none", parametrization="dense",
                 role=None, bound=None):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.init_matrix = init_matrix
        self.quantizer = get_quantizer(quantizer)
        self.parametrization = get_parametrization(parametrization)
        self.binary = self.quantizer.code_bits(1) == 1
        self.role = role if role is not None else ("binary" if self.binary else "weight")
        self.bound = bound
        owned = getattr(self.quantizer, "param_specs", None)
        self._owned = dict(owned(self.shape)) if owned is not None else {}
        own = self.parametrization.param_specs(self.name, self.shape, self.role)
        clash = sorted(set(own) & {self._owned_name(part) for part in self._owned})
        if clash:
            raise ConfigError(f"weight {name}: parameter name(s) {clash} of the quantizer "
                              f"clash with the parametrization's")
        if getattr(self.quantizer, "projects", False) \
                and not isinstance(self.parametrization, Dense):
            raise ConfigError(f"weight {name}: quantizer {quantizer_spec(self.quantizer)!r} "
                              f"rewrites the stored matrix during training, which needs the "
                              f"dense parametrization")

    def _owned_name(self, part):
        return f"{self.name}.{part}"

    def _owned_params(self, params):
        return {part: params[self._owned_name(part)] for part in self._owned}

    def param_specs(self):
        specs = self.parametrization.param_specs(self.name, self.shape, self.role)
        if self.bound is not None and self.name in specs:
            specs[self.name] = dataclasses.replace(specs[self.name], bound=self.bound)
        specs.update({self._owned_name(part): spec for part, spec in self._owned.items()})
        return specs

    def init(self, rng, dtype):
        """Initial parameters; the quantizer's own ones (if any) from the initial matrix."""
        params = self.parametrization.init(rng, self.name, self.shape, dtype, self.init_matrix)
        if self._owned:
            owned = self.quantizer.init_params(self.latent(params))
            params.update({self._owned_name(part): np.asarray(owned[part], dtype=dtype)
                           for part in self._owned})
        return params

    def latent(self, params):
        """The full-precision matrix ``M`` (before quantization)."""
        return self.parametrization.matrix(params, self.name, self.shape)

    def effective(self, params, rng=None):
        """``Q(M)``, the matrix the forward pass uses (``rng``: stochastic quantizers)."""
        if self._owned:
            return self.quantizer.forward(self.latent(params), rng,
                                          params=self._owned_params(params))
        return self.quantizer.forward(self.latent(params), rng)

    def factors(self, params, rng=None):
        """``(C, s)`` with ``Q(M) = s[:, None] * C``; ``s`` is None for a quantizer without
        a per-row scale (then ``C = Q(M)``)."""
        factors = getattr(self.quantizer, "factors", None)
        if factors is None:
            return self.effective(params, rng), None
        return factors(self.latent(params), rng, params=self._owned_params(params))

    def code(self, params):
        """The {0, 1} code (rows, cols) uint8 of a one-bit weight: the quantizer's own
        ``code``, else ``Q(M) > 0`` (sign: bit 1 for +1). ``None`` for other weights."""
        if not self.binary:
            return None
        code = getattr(self.quantizer, "code", None)
        if code is not None:
            return code(self.latent(params), params=self._owned_params(params))
        return (self.effective(params) > 0).astype(np.uint8)

    def backward(self, params, dMq):
        """Gradients of this weight's parameters from the gradient w.r.t. ``Q(M)``."""
        M = self.latent(params)
        if not self._owned:
            return self.parametrization.backward(params, self.name, self.shape,
                                                 self.quantizer.backward(M, dMq))
        dM, owned = self.quantizer.backward(M, dMq, params=self._owned_params(params))
        grads = self.parametrization.backward(params, self.name, self.shape, dM)
        grads.update({self._owned_name(part): owned[part] for part in self._owned})
        return grads

    def project(self, params, step):
        """Parameters the quantizer rewrites before the forward pass of training step
        ``step`` (new arrays, ``{}`` when nothing changes)."""
        if not getattr(self.quantizer, "projects", False):
            return {}
        M = params[self.name]
        projected = self.quantizer.project(M, step)
        return {} if projected is M else {self.name: projected}

    def diagnostics(self, params):
        """Training diagnostics of the matrix: the quantizer's ``stats(M)`` when it has
        one (e.g. ``{"alpha": float, "codes": [count per level]}``), and for a one-bit
        weight ``{"ones", "entropy", "kstar"}`` (module docstring); ``{}`` otherwise."""
        stats = getattr(self.quantizer, "stats", None)
        out = {} if stats is None else dict(stats(self.latent(params)))
        if self.binary:
            out.update(binary.code_statistics(self.code(params)))
            out.update(binary.magnitude_statistics(self.latent(params)))
        return out

    def code_bits(self):
        """Deployed bits of the codes (quantized entries of every stored value)."""
        return self.quantizer.code_bits(self.parametrization.code_entries(self.shape))

    def scale_bits(self):
        """Bits of the scales: the quantizer's, plus its owned parameters as float32."""
        owned = sum(int(np.prod(spec.shape)) for spec in self._owned.values())
        return self.quantizer.scale_bits() + FLOAT_BITS * owned

    def describe(self):
        return {"quantizer": quantizer_spec(self.quantizer),
                "parametrization": parametrization_spec(self.parametrization)}


def project_weights(weights, params, step):
    """The training-time rewrites of several weights (:meth:`Weight.project`), merged."""
    out = {}
    for weight in weights:
        out.update(weight.project(params, step))
    return out


def weight_diagnostics(weights, params):
    """``{"<figure>.<weight>": value}`` (``alpha.U``, ``ones.W``...) of several weights
    (:meth:`Weight.diagnostics`)."""
    return {f"{key}.{weight.name}": value for weight in weights
            for key, value in weight.diagnostics(params).items()}
