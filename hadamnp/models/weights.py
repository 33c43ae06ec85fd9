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
    :meth:`Weight.diagnostics`: the quantizer's ``stats`` when it has them (scale and code
    counts), and for a one-bit weight the fraction of ones of its code, the code's bit
    entropy, and the angle-alignment fraction ``k*/N`` of its latent matrix
    (:mod:`hadamnp.models.binary`). Models report them through their optional
    ``diagnostics(params, cache=None, grads=None)`` member (:func:`weight_diagnostics`).
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
           "weight_diagnostics", "accumulate", "storage_bits", "matrix_table"]


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
    role : str or None
        Role of the latent parameters; ``None``: ``binary`` for a one-bit quantizer, else
        ``weight`` (module docstring).
    bound : float or None, the latent clipping bound of the dense parameter
    depth : int or None, the layer depth of the dense parameter (``ParamSpec.depth``:
        0 at the input; the model's readout deepest), read by depth-ordered training
        methods such as OIALR
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
                 role=None, bound=None, depth=None, shared=None):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.init_matrix = init_matrix
        self.quantizer = get_quantizer(quantizer)
        self.parametrization = get_parametrization(parametrization)
        self.binary = self.quantizer.code_bits(1) == 1
        self.role = role if role is not None else ("binary" if self.binary else "weight")
        self.bound = bound
        self.depth = depth
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
        owned = getattr(self.quantizer, "param_specs", None)
        self._owned = dict(owned(self.shape)) if owned is not None else {}
        clash = sorted(set(own) & {self._owned_name(part) for part in self._owned})
        if clash:
            raise ConfigError(f"weight {name}: parameter name(s) {clash} of the quantizer "
                              f"clash with the parametrization's")
        if getattr(self.quantizer, "projects", False) \
                and not isinstance(self.parametrization, Dense):
            raise ConfigError(f"weight {name}: quantizer {quantizer_spec(self.quantizer)!r} "
                              f"rewrites the stored matrix during training, which needs the "
                              f"dense parametrization")

    def _rename(self, values):
        return {self._names[key]: value for key, value in values.items()}

    def _local(self, params):
        return {key: params[target] for key, target in self._names.items()}

    def _owned_name(self, part):
        return f"{self.name}.{part}"

    def _owned_params(self, params):
        return {part: params[self._owned_name(part)] for part in self._owned}

    def param_specs(self):
        specs = self.parametrization.param_specs(self.name, self.shape, self.role)
        if self.name in specs:  # the dense parametrization: the matrix is the parameter
            spec = specs[self.name]
            specs[self.name] = dataclasses.replace(
                spec, bound=spec.bound if self.bound is None else self.bound,
                depth=self.depth)
        specs = self._rename(specs)
        specs.update({self._owned_name(part): spec for part, spec in self._owned.items()})
        return specs

    def init(self, rng, dtype):
        """Initial parameters of this weight alone (a weight with shared parts is
        initialised with its group by the model instead); the quantizer's own ones (if
        any) are computed from the initial matrix."""
        params = self._rename(self.parametrization.init(rng, self.name, self.shape, dtype,
                                                        self.init_matrix))
        if self._owned:
            owned = self.quantizer.init_params(self.latent(params))
            params.update({self._owned_name(part): np.asarray(owned[part], dtype=dtype)
                           for part in self._owned})
        return params

    def latent(self, params):
        """The full-precision matrix ``M`` (before quantization)."""
        return self.parametrization.matrix(self._local(params), self.name, self.shape)

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
        local = self._local(params)
        M = self.parametrization.matrix(local, self.name, self.shape)
        if not self._owned:
            return self._rename(self.parametrization.backward(
                local, self.name, self.shape, self.quantizer.backward(M, dMq)))
        dM, owned = self.quantizer.backward(M, dMq, params=self._owned_params(params))
        grads = self._rename(self.parametrization.backward(local, self.name, self.shape, dM))
        grads.update({self._owned_name(part): owned[part] for part in self._owned})
        return grads

    def parameter_count(self):
        """Values of this weight's own parameters (shared parts and quantizer-owned
        scales excluded)."""
        specs = self.param_specs()
        return (self.parametrization.code_entries(self.shape)
                - sum(int(np.prod(specs[target].shape)) for target in self.shared.values()))

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
        """Deployed bits of the codes: ``Q(M)`` (all entries) when quantized, else the
        weight's own parameters (shared parts are counted once by the model)."""
        if quantizer_spec(self.quantizer) != "none":
            return self.quantizer.code_bits(int(np.prod(self.shape)))
        return self.quantizer.code_bits(self.parameter_count())

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
