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

A parametrization provides ``param_specs(name, shape, role)`` (raising
:class:`ConfigError` for a shape it cannot represent), ``init(rng, name, shape, dtype,
init_matrix)``, ``matrix(params, name, shape)``, ``backward(params, name, shape, dM)``
(gradients of its parameters), ``code_entries(shape)`` (how many values it stores) and
``describe()``. Besides ``dense``, :mod:`hadamnp.models.structured` registers ``ldr:r``
(Toeplitz-like) and ``lowrank:k``.

Shared parameters
    Several weights may read one parameter, e.g. low-rank gate matrices ``W_g = A_g P``
    sharing the projection ``P``: ``Weight(..., shared={"B": "P_h"})`` stores the part
    ``B`` under the model-level name ``P_h`` instead of ``<weight>.B``. Every weight reading
    it lists it in its ``param_specs()`` and returns a gradient for it from ``backward``;
    the model declares it once and *sums* those gradients
    (:func:`accumulate`), initialises the group together
    (:func:`hadamnp.models.structured.init_shared`) and counts its storage once
    (:func:`storage_bits`).

Storage
    An unquantized weight deploys its parameters (``code_entries`` float32 values); a
    quantized one deploys ``Q(M)``, whose ``m n`` codes are no longer structured. A shared
    part is stored once by the model, so a weight's own bits exclude it; sharing therefore
    requires an unquantized weight.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer, quantizer_spec

__all__ = ["Dense", "Weight", "PARAMETRIZATIONS", "register_parametrization",
           "get_parametrization", "parametrization_spec", "accumulate", "storage_bits",
           "matrix_table"]

FLOAT_BITS = 32


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
    import hadamnp.models.structured  # noqa: F401  (registers ldr and lowrank)
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
    shared : dict part -> parameter name, optional
        Parts of the parametrization stored under a model-level name shared with other
        weights (see the module docstring), e.g. ``{"B": "P_h"}``.

    Raises
    ------
    ConfigError
        A shape the parametrization cannot represent, an unknown shared part, or a shared
        part on a quantized weight.
    """

    def __init__(self, name, shape, init_matrix, quantizer="none", parametrization="dense",
                 role="weight", bound=None, shared=None):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.init_matrix = init_matrix
        self.quantizer = get_quantizer(quantizer)
        self.parametrization = get_parametrization(parametrization)
        self.role = role
        self.bound = bound
        self.shared = dict(shared or {})
        own = self.parametrization.param_specs(self.name, self.shape, self.role)
        # local parameter name (as the parametrization names it) -> name in the model
        self._names = {key: key for key in own}
        for part, target in self.shared.items():
            local = f"{name}.{part}"
            if local not in own:
                raise ConfigError(f"weight {name!r}: parametrization "
                                  f"{parametrization_spec(self.parametrization)!r} has no "
                                  f"part {part!r} to share (parts: "
                                  f"{', '.join(k.rpartition('.')[2] for k in own)})")
            self._names[local] = target
        if self.shared and quantizer_spec(self.quantizer) != "none":
            raise ConfigError(f"weight {name!r} shares {sorted(self.shared)} but is "
                              f"quantized ({quantizer_spec(self.quantizer)}): a quantized "
                              f"matrix is deployed as Q(M), so a shared factor saves nothing")

    def _rename(self, values):
        return {self._names[key]: value for key, value in values.items()}

    def _local(self, params):
        return {key: params[target] for key, target in self._names.items()}

    def param_specs(self):
        specs = self.parametrization.param_specs(self.name, self.shape, self.role)
        if self.bound is not None and self.name in specs:
            specs[self.name] = dataclasses.replace(specs[self.name], bound=self.bound)
        return self._rename(specs)

    def init(self, rng, dtype):
        """Initial parameters of this weight alone (a weight with shared parts is
        initialised with its group by the model instead)."""
        return self._rename(self.parametrization.init(rng, self.name, self.shape, dtype,
                                                      self.init_matrix))

    def latent(self, params):
        """The full-precision matrix ``M`` (before quantization)."""
        return self.parametrization.matrix(self._local(params), self.name, self.shape)

    def effective(self, params, rng=None):
        """``Q(M)``, the matrix the forward pass uses (``rng``: stochastic quantizers)."""
        return self.quantizer.forward(self.latent(params), rng)

    def backward(self, params, dMq):
        """Gradients of this weight's parameters from the gradient w.r.t. ``Q(M)``."""
        local = self._local(params)
        M = self.parametrization.matrix(local, self.name, self.shape)
        return self._rename(self.parametrization.backward(local, self.name, self.shape,
                                                          self.quantizer.backward(M, dMq)))

    def parameter_count(self):
        """Values of this weight's own parameters (shared parts excluded)."""
        specs = self.param_specs()
        return (self.parametrization.code_entries(self.shape)
                - sum(int(np.prod(specs[target].shape)) for target in self.shared.values()))

    def code_bits(self):
        """Deployed bits of the codes: ``Q(M)`` (all entries) when quantized, else the
        weight's own parameters (shared parts are counted once by the model)."""
        if quantizer_spec(self.quantizer) != "none":
            return self.quantizer.code_bits(int(np.prod(self.shape)))
        return self.quantizer.code_bits(self.parameter_count())

    def scale_bits(self):
        return self.quantizer.scale_bits()

    def describe(self):
        return {"quantizer": quantizer_spec(self.quantizer),
                "parametrization": parametrization_spec(self.parametrization)}


def accumulate(grads, more):
    """Add the gradients ``more`` into ``grads`` (in place), summing those of a parameter
    read by several weights; returns ``grads``."""
    for key, value in more.items():
        grads[key] = grads[key] + value if key in grads else value
    return grads


def storage_bits(weights):
    """Deployed bits of ``weights``: each one's :meth:`Weight.code_bits` plus every shared
    parameter once, in float32."""
    shared = {}
    for w in weights:
        specs = w.param_specs()
        shared.update({target: specs[target].shape for target in w.shared.values()})
    return (sum(w.code_bits() for w in weights)
            + FLOAT_BITS * sum(int(np.prod(shape)) for shape in shared.values()))


def matrix_table(weights):
    """Per-matrix parameter counts of ``weights`` (``ModelSize.matrices``).

    Returns
    -------
    dict name -> ``{"shape", "parametrization", "quantizer", "parameters", "dense",
    "shared"}`` per weight, then one entry ``{"shape", "parametrization": "shared",
    "parameters", "readers"}`` per shared parameter.
    """
    table, shared = {}, {}
    for w in weights:
        specs = w.param_specs()
        table[w.name] = {"shape": list(w.shape),
                         "parametrization": parametrization_spec(w.parametrization),
                         "quantizer": quantizer_spec(w.quantizer),
                         "parameters": w.parameter_count(),
                         "dense": int(np.prod(w.shape)),
                         "shared": sorted(w.shared.values())}
        for target in w.shared.values():
            entry = shared.setdefault(target, {"shape": list(specs[target].shape),
                                               "parametrization": "shared",
                                               "parameters": int(np.prod(specs[target].shape)),
                                               "readers": []})
            entry["readers"].append(w.name)
    return {**table, **shared}
