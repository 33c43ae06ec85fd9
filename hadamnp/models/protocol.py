"""The model protocol: what the training loop, the CLI, golden files and deploy rely on.

Every model family (HadamRNN, and any family registered with
:func:`hadamnp.models.registry.register_model`) is an object holding only its
configuration, with a functional step API: parameters and gradients are dicts of arrays
under the same keys, ``forward`` returns the outputs and an explicit cache, ``backward``
never writes into its arguments::

    model = build_model("hadamrnn", input_size=1, output_size=10, hidden_size=128)
    params = model.init_params(rng)                       # dict name -> array
    outputs, cache = model.forward(params, x)             # x (B, T, d_in)
    grads = model.backward(params, cache, doutputs)       # dict name -> array

Parameter roles
    A model declares every parameter with a :class:`ParamSpec`: its shape and its *role*,
    one of :data:`ROLES`. The training loop never names a parameter; it applies per-role
    learning-rate scales (``lr_scales``), weight decay (``weight_decay``) and latent
    clipping (``clip_roles``, to the bound the model declares) and counts sign flips of
    ``signs`` parameters; a parameter whose spec sets ``clip`` is clipped to its bound
    after every update whatever the run's ``clip_roles`` (the model's method requires it).
    Roles:

    ==============  ==============================================================
    ``signs``       latent weights of which only the sign is used (HadamRNN's ``u``)
    ``weight``      latent full-precision weight matrices, quantized or not
    ``binary``      latent weights of a binarized (one bit per entry) matrix: SiMaN,
                    sign-quantized weights; no weight decay unless the run names the role
    ``bias``        biases
    ``scale``       learnable scales (e.g. a per-row scale of a binarized matrix)
    ``embedding``   token embedding tables
    ``frozen``      arrays carried in the parameters but never updated
    ==============  ==============================================================

Training and evaluation
    ``forward(params, x, rng=rng)`` is a *training* forward: stochastic quantizers draw
    from ``rng``. With ``rng=None`` (the default) every quantizer is deterministic; that is
    the evaluation, export and golden-file forward.

Optional members (the training loop and deploy use them when a model has them)
    ``project_params(params, step) -> {name: array}``
        Parameters to rewrite before the forward pass of optimizer step ``step`` (0-based,
        the steps done so far): training-time projections of the stored weights such as
        SiMaN's progressive magnitude clipping. New arrays; ``{}`` when nothing changes.
        A deterministic function of ``(params, step)``, so resumed runs stay bit-identical.
    ``diagnostics(params, cache=None, grads=None) -> {name: float}``
        Extra figures logged with the step and epoch records of ``metrics.jsonl``, keys
        ``<figure>.<parameter>`` (e.g. ``ones.W``, ``entropy.W``: the fraction of ones and
        the bit entropy of a binary code). ``cache``/``grads`` may be given by callers that
        have them; figures of the parameters alone ignore them.
    ``binary_layers(params) -> {layer: {0, 1} code (n_out, n_in)}`` and
    ``forward(..., products={layer: f})``
        Fully binary layers (binary weight codes applied to sign activations) and a way to
        compute their products another way (``hadamnp eval --engine packed``).

Token inputs
    A model whose ``forward`` takes integer token ids ``(B, T)`` instead of features says
    so with the attribute ``input_kind = "tokens"`` (the embedding wrapper,
    :mod:`hadamnp.models.embedding`); models without it take ``(B, T, d_in)`` features, and
    token tasks feed them one-hot vectors.

Optional hook
    ``diagnostics(params, cache, grads) -> dict`` (not part of :class:`Model`; a model may
    omit it): model-specific training diagnostics of one step (e.g. quantizer scales, code
    histograms, the largest state), JSON numbers or lists under flat keys. The training
    loop adds them to its logged step records (:mod:`hadamnp.training.diagnostics`).
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hadamnp._checks import check_finite, check_ndim
from hadamnp.errors import ConfigError, ShapeError

ROLES = ("signs", "weight", "binary", "bias", "scale", "embedding", "frozen")

__all__ = ["ROLES", "ParamSpec", "ModelConfig", "Model", "check_params", "check_inputs",
           "param_count"]


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one parameter.

    Attributes
    ----------
    shape : tuple of int
    role : str, one of :data:`ROLES`
    bound : float or None
        The natural clipping bound of the latent value (e.g. 1 for latent signs, the
        Glorot bound for a shadow weight); applied when the run clips this role, or always
        when ``clip`` is set.
    clip : bool
        The method itself clips this parameter to ``[-bound, bound]`` after every update
        (e.g. the shadow weights of a quantized matrix, as in BinaryConnect), whatever the
        run's ``clip_roles``. Needs a ``bound``.
    depth : int or None
        For a dense weight matrix: its layer's position from the input (0) to the output
        (largest), as a PyTorch module list would order the layers (input matrices, then
        recurrent matrices, then the readout). Depth-ordered training methods (OIALR,
        :mod:`hadamnp.training.oialr`) read it; None: not a layer's weight matrix.
    """

    shape: tuple
    role: str
    bound: float | None = None
    clip: bool = False
    depth: int | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ConfigError(f"unknown parameter role {self.role!r}; choose one of "
                              f"{', '.join(ROLES)}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.bound is not None and not self.bound > 0:
            raise ConfigError(f"a clipping bound must be > 0, got {self.bound!r}")
        if self.clip and self.bound is None:
            raise ConfigError("a parameter clipped by its model needs a bound")
        if self.depth is not None and (len(self.shape) != 2 or self.depth < 0):
            raise ConfigError(f"a layer depth ({self.depth!r}) is declared by a matrix "
                              f"parameter and is >= 0 (shape {self.shape})")

    @property
    def trainable(self):
        return self.role != "frozen"


@runtime_checkable
class ModelConfig(Protocol):
    """What every model configuration provides (an immutable, validated dataclass)."""

    input_size: int       # d_in (or the vocabulary size of token inputs)
    hidden_size: int      # n
    output_size: int      # d_out
    many_to_many: bool    # score every step, or only the last
    dtype: str            # "float32" or "float64"

    def to_dict(self) -> dict:
        """All fields, JSON-serialisable; ``config_class(**to_dict())`` rebuilds it."""


@runtime_checkable
class Model(Protocol):
    """A model family (see the module docstring)."""

    config: ModelConfig

    def param_specs(self) -> dict:
        """``{name: ParamSpec}`` of every parameter, in initialisation order."""

    def init_params(self, rng) -> dict:
        """Initial parameters drawn from the ``numpy.random.Generator`` ``rng``."""

    def check_params(self, params) -> None:
        """Raise a :mod:`hadamnp.errors` error unless ``params`` fit :meth:`param_specs`."""

    def state_buffer(self, batch, seq_len):
        """A reusable buffer for :meth:`forward`'s ``states_out`` (or None)."""

    def forward(self, params, x, *, states_out=None, rng=None):
        """``(outputs, cache)``: outputs ``(B, d_out)`` or ``(B, T, d_out)``."""

    def backward(self, params, cache, doutputs, *, input_grad=False) -> dict:
        """Gradients under the keys of ``params`` (new arrays); with ``input_grad``, also
        ``"x"``, the gradient w.r.t. the inputs (B, T, d_in) (what an embedding or a layer
        below needs). A model that cannot provide it raises ``NotImplementedError``."""

    def weights(self, params) -> dict:
        """The effective (quantized, deterministic) weights the forward pass uses."""

    def states(self, cache) -> dict:
        """Named state sequences of a cached forward pass, each ``(B, T, ...)``."""

    def size(self):
        """A :class:`hadamnp.models.size.ModelSize`."""

    def describe(self) -> dict:
        """``{"name": registered name, "config": config.to_dict()}``."""


def check_params(specs, params, dtype):
    """Check parameter names, shapes, dtype and finiteness against ``specs``.

    Raises
    ------
    ConfigError
        Missing or unexpected names, or a dtype other than ``dtype``.
    ShapeError, NonFiniteError
    """
    missing = sorted(set(specs) - set(params))
    extra = sorted(set(params) - set(specs))
    if missing or extra:
        raise ConfigError(f"parameters missing {missing} / unexpected {extra}")
    for name, spec in specs.items():
        value = params[name]
        if not isinstance(value, np.ndarray):
            raise ConfigError(f"parameter {name} must be a numpy array, got "
                              f"{type(value).__name__}")
        if value.shape != spec.shape:
            raise ShapeError(f"parameter {name} has shape {value.shape}, expected {spec.shape}")
        if value.dtype != np.dtype(dtype):
            raise ConfigError(f"parameter {name} has dtype {value.dtype}, the model "
                              f"configuration says {dtype}")
        check_finite(value, f"parameter {name}")


def check_inputs(x, input_size, dtype, name="x"):
    """``x`` as a finite ``(B, T, d_in)`` array of ``dtype`` with ``B, T >= 1``; errors
    name the argument ``name``."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.astype(dtype, copy=False)
    check_ndim(x, 3, name, "(B, T, d_in)")
    if x.shape[2] != input_size:
        raise ShapeError(f"{name} has {x.shape[2]} input features (shape {x.shape}), "
                         f"the model expects d_in = {input_size}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ShapeError(f"{name} must hold at least one sequence of one step, got shape "
                         f"{x.shape}")
    check_finite(x, name)
    return x


def param_count(specs, trainable_only=False):
    """Number of values in ``specs`` (only trainable roles when ``trainable_only``)."""
    return sum(int(np.prod(s.shape, dtype=np.int64)) for s in specs.values()
               if s.trainable or not trainable_only)
