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
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer, quantizer_spec

__all__ = ["Dense", "Weight", "PARAMETRIZATIONS", "register_parametrization",
           "get_parametrization", "parametrization_spec"]


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
    role : str, the parameter role (default ``"weight"``)
    bound : float or None, the latent clipping bound of the dense parameter
    depth : int or None, the layer depth of the dense parameter (``ParamSpec.depth``:
        0 at the input; the model's readout deepest), read by depth-ordered training
        methods such as OIALR
    """

    def __init__(self, name, shape, init_matrix, quantizer="none", parametrization="dense",
                 role="weight", bound=None, depth=None):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.init_matrix = init_matrix
        self.quantizer = get_quantizer(quantizer)
        self.parametrization = get_parametrization(parametrization)
        self.role = role
        self.bound = bound
        self.depth = depth

    def param_specs(self):
        specs = self.parametrization.param_specs(self.name, self.shape, self.role)
        if self.name in specs:  # the dense parametrization: the matrix is the parameter
            spec = specs[self.name]
            specs[self.name] = dataclasses.replace(
                spec, bound=spec.bound if self.bound is None else self.bound,
                depth=self.depth)
        return specs

    def init(self, rng, dtype):
        return self.parametrization.init(rng, self.name, self.shape, dtype, self.init_matrix)

    def latent(self, params):
        """The full-precision matrix ``M`` (before quantization)."""
        return self.parametrization.matrix(params, self.name, self.shape)

    def effective(self, params, rng=None):
        """``Q(M)``, the matrix the forward pass uses (``rng``: stochastic quantizers)."""
        return self.quantizer.forward(self.latent(params), rng)

    def backward(self, params, dMq):
        """Gradients of this weight's parameters from the gradient w.r.t. ``Q(M)``."""
        M = self.latent(params)
        return self.parametrization.backward(params, self.name, self.shape,
                                             self.quantizer.backward(M, dMq))

    def code_bits(self):
        """Deployed bits of the codes (quantized entries of every stored value)."""
        return self.quantizer.code_bits(self.parametrization.code_entries(self.shape))

    def scale_bits(self):
        return self.quantizer.scale_bits()

    def describe(self):
        return {"quantizer": quantizer_spec(self.quantizer),
                "parametrization": parametrization_spec(self.parametrization)}
