"""HadamRNN and Block-HadamRNN (Foucault, Mamalet, Malgouyres, ICLR 2025).

Equations (``s = sign(u)`` with sign(0) = +1; ``S`` Sylvester, block size ``m``)::

    W     = diag(s) (I_{n/m} ⊗ S_m) / sqrt(m)      binary (m = n) or sparse ternary (m < n)
    h_t   = W h_{t-1} + Q_in(U) x_t + b,  h_0 = 0   linear recurrence (default)
    h_t   = relu(W h_{t-1} + Q_in(U) x_t + b)       ``nonlinear=True`` (ablation)
    y_t   = Q_out(V) relu(h_t) + c                  every t (many-to-many) or t = T only

``Q_in``, ``Q_out`` are quantizers chosen by name (default ``uniform:4``, the paper's 4-bit
uniform quantizer, :mod:`hadamnp.models.quantizers`); gradients reach the latent ``u``,
``U``, ``V`` through their straight-through estimators. The recurrent matrix is a
:mod:`recurrence <hadamnp.models.recurrences>` object: ``hadamard`` (above) or ``dense``
(a full-precision or quantized ``(n, n)`` ``W``, the baseline).

The model implements :class:`hadamnp.models.protocol.Model`; it is registered as
``hadamrnn`` (full Hadamard), ``block-hadamrnn`` (block size ``m < n``, default ``n/4``)
and ``dense`` (dense ``W``).
"""

from dataclasses import asdict, dataclass

import numpy as np

from hadamnp._checks import check_power_of_two
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models import protocol
from hadamnp.models.init import orthogonal, uniform_bias, xavier_uniform
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer, quantizer_spec
from hadamnp.models.recurrences import RECURRENCES, make_recurrence
from hadamnp.models.size import FLOAT_BITS, ModelSize
from hadamnp.models.weights import (Weight, matrix_table, parametrization_spec,
                                     project_weights, weight_diagnostics)

DTYPES = ("float32", "float64")

__all__ = ["HadamRNNConfig", "HadamRNN"]


def _input_init(rng, shape, dtype):
    """``U``: orthogonal when square (``d_in = n``), else Xavier-uniform."""
    n, d_in = shape
    return orthogonal(rng, n, dtype) if d_in == n else xavier_uniform(rng, shape, dtype)


@dataclass(frozen=True)
class HadamRNNConfig:
    """Architecture of a HadamRNN (validated and normalised on construction).

    Attributes
    ----------
    input_size, hidden_size, output_size : int
        ``d_in``, ``n`` (a power of two), ``d_out``.
    recurrence : {"hadamard", "dense"}
        Binary/ternary Hadamard recurrence, or a dense ``W`` (baseline).
    block_size : int or None
        ``m`` of the Hadamard recurrence, a power of two dividing ``n``; ``None`` means
        ``n`` (full HadamRNN) and is stored as ``n``. Must be ``None`` for ``dense``.
    quant_in, quant_out : str
        Quantizer specs of ``U`` and ``V`` (e.g. ``"uniform:4"``, ``"none"``).
    quant_rec : str or None
        Quantizer spec of the recurrent parameter: ``"sign"`` (identity STE) or
        ``"sign:clipped"`` for ``hadamard``; any quantizer for ``dense``. ``None`` means
        the recurrence's default (``sign``, resp. ``none``).
    param_in, param_out : str
        Weight parametrizations of ``U`` and ``V`` (:mod:`hadamnp.models.weights`):
        ``"dense"`` (default), ``"lowrank:k"`` or ``"ldr:r"`` (Toeplitz-like), applied
        before the quantizer. The recurrent matrix stays the Hadamard (or dense) one.
    nonlinear : bool
        Apply relu inside the recurrence.
    store_every : int
        Keep only every ``k``-th hidden state during training and recompute the others
        exactly in the backward pass (Hadamard recurrence only): memory ``T/k + k`` states
        instead of ``T`` for about one more forward pass of work; the gradients are the
        same bits. ``k ≈ sqrt(T)`` minimises memory.
    many_to_many : bool
        Score every step instead of only the last one.
    dtype : {"float32", "float64"}
    """

    input_size: int
    hidden_size: int
    output_size: int
    recurrence: str = "hadamard"
    block_size: int | None = None
    quant_in: str = "uniform:4"
    quant_out: str = "uniform:4"
    quant_rec: str | None = None
    param_in: str = "dense"
    param_out: str = "dense"
    nonlinear: bool = False
    store_every: int = 1
    many_to_many: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("input_size", "output_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        n = check_power_of_two(self.hidden_size, "hidden size n")
        for name in ("nonlinear", "many_to_many"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.store_every, bool) or \
                not isinstance(self.store_every, (int, np.integer)) or self.store_every < 1:
            raise ConfigError(f"store_every must be an integer >= 1, got {self.store_every!r}")
        if self.store_every > 1 and self.recurrence != "hadamard":
            raise ConfigError("store_every applies to the Hadamard recurrence only")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(DTYPES)}")
        if self.recurrence not in RECURRENCES:
            raise ConfigError(f"unknown recurrence {self.recurrence!r}; choose one of "
                              f"{list(RECURRENCES)}")
        if self.recurrence == "hadamard":
            block = n if self.block_size is None else self.block_size
        elif self.block_size is not None:
            raise ConfigError("block_size applies to the Hadamard recurrence only")
        else:
            block = None
        quant_rec = RECURRENCES[self.recurrence][1] if self.quant_rec is None else self.quant_rec
        object.__setattr__(self, "hidden_size", n)
        object.__setattr__(self, "block_size", block)
        for name, spec in (("quant_in", self.quant_in), ("quant_out", self.quant_out),
                           ("quant_rec", quant_rec)):
            try:
                canonical = quantizer_spec(get_quantizer(spec))
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, canonical)
        self.recurrent_matrix()  # validates the block size and the recurrent quantizer
        d_in, d_out = self.input_size, self.output_size
        for name, shape in (("param_in", (n, d_in)), ("param_out", (d_out, n))):
            try:
                weight = Weight(name, shape, None, parametrization=getattr(self, name))
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, parametrization_spec(weight.parametrization))

    def recurrent_matrix(self):
        """The :mod:`recurrence <hadamnp.models.recurrences>` object of this configuration."""
        return make_recurrence(self, get_quantizer(self.quant_rec))

    @property
    def m(self):
        """Effective block size (``n`` for the full HadamRNN and the dense recurrence)."""
        return self.hidden_size if self.block_size is None else int(self.block_size)

    @property
    def model_name(self):
        """Registered name: ``"hadamrnn"``, ``"block-hadamrnn"`` or ``"dense"``."""
        if self.recurrence == "dense":
            return "dense"
        return "hadamrnn" if self.m == self.hidden_size else "block-hadamrnn"

    def to_dict(self):
        return asdict(self)


class HadamRNN:
    """HadamRNN / Block-HadamRNN / dense-RNN baseline (see the module docstring).

    Parameters
    ----------
    config : HadamRNNConfig
    kernels : {"numba", "reference"}
        Sequence kernels: compiled (:mod:`hadamnp.kernels.recurrence`) or the plain-NumPy
        twins (:mod:`hadamnp.reference.recurrence`), e.g. for auditing.
    """

    def __init__(self, config, kernels="numba"):
        if not isinstance(config, HadamRNNConfig):
            raise ConfigError(f"config must be a HadamRNNConfig, got {type(config).__name__}")
        if kernels == "numba":
            from hadamnp.kernels import recurrence
        elif kernels == "reference":
            from hadamnp.reference import recurrence
        else:
            raise ConfigError(f"unknown kernels {kernels!r}; choose 'numba' or 'reference'")
        self.config = config
        self._kernels = recurrence
        self.recurrence = config.recurrent_matrix()
        n, d_in, d_out = config.hidden_size, config.input_size, config.output_size
        # Layer depths (input, recurrence, readout) order the matrices for OIALR.
        self.U = Weight("U", (n, d_in), _input_init, quantizer=config.quant_in,
                        parametrization=config.param_in, depth=0)
        self.V = Weight("V", (d_out, n), xavier_uniform, quantizer=config.quant_out,
                        parametrization=config.param_out, depth=2)

    @property
    def name(self):
        return self.config.model_name

    def param_specs(self):
        """``u`` (signs) or ``W`` (weight), ``U``, ``b``, ``V``, ``c``, in init order."""
        n, d_out = self.config.hidden_size, self.config.output_size
        return {**self.recurrence.param_specs(), **self.U.param_specs(),
                "b": ParamSpec((n,), "bias"), **self.V.param_specs(),
                "c": ParamSpec((d_out,), "bias")}

    def init_params(self, rng):
        """Initial parameters, drawn from ``rng`` in the order of :meth:`param_specs`.

        Recurrent parameter: see the recurrence (``u ~ U(-a, a)``, ``a = sqrt(6/(n+1))``,
        or an orthogonal ``W``); ``U`` orthogonal when square, else Xavier-uniform; ``V``
        Xavier-uniform; ``b``, ``c`` ~ ``U(-1/sqrt(n), 1/sqrt(n))``.

        Parameters
        ----------
        rng : numpy.random.Generator

        Returns
        -------
        dict of arrays in the configured dtype.
        """
        cfg = self.config
        n, d_out, dtype = cfg.hidden_size, cfg.output_size, cfg.dtype
        params = self.recurrence.init(rng, dtype)
        params.update(self.U.init(rng, dtype))
        params["b"] = uniform_bias(rng, n, n, dtype)
        params.update(self.V.init(rng, dtype))
        params["c"] = uniform_bias(rng, d_out, n, dtype)
        return params

    def check_params(self, params):
        """Raise :class:`ConfigError`/:class:`ShapeError`/:class:`NonFiniteError` for
        malformed parameters (names, shapes, dtype, NaN/Inf)."""
        protocol.check_params(self.param_specs(), params, self.config.dtype)

    def weights(self, params, rng=None):
        """Effective weights used by the forward pass.

        Returns
        -------
        dict: ``W_signs`` (n,) = sign(u) (or ``W_q`` (n, n) for the dense recurrence),
        ``U_q`` (n, d_in), ``V_q`` (d_out, n).
        """
        return {**self.recurrence.effective(params, rng),
                "U_q": self.U.effective(params, rng), "V_q": self.V.effective(params, rng)}

    def project_params(self, params, step):
        """Training-time rewrites of the weight matrices before step ``step`` (e.g. SiMaN's
        progressive clipping; see :mod:`hadamnp.models.protocol`), ``{}`` for most models."""
        return project_weights(self._weights, params, step)

    @property
    def _weights(self):
        return (*self.recurrence.weights, self.U, self.V)

    def state_buffer(self, batch, seq_len):
        """A reusable ``(T // store_every, n, B)`` buffer for :meth:`forward`'s
        ``states_out``."""
        return np.empty((seq_len // self.config.store_every, self.config.hidden_size, batch),
                        dtype=self.config.dtype)

    def forward(self, params, x, *, states_out=None, rng=None):
        """Run the model on a batch.

        Parameters
        ----------
        params : dict of parameters (see :meth:`init_params`)
        x : (B, T, d_in) inputs (converted to the model dtype)
        states_out : (T, n, B) array, optional
            Buffer from :meth:`state_buffer` that receives the hidden states. Training loops
            pass the same buffer for every batch (the cache then refers to it until the next
            call), which avoids re-faulting hundreds of MB of fresh memory per batch.
        rng : numpy.random.Generator, optional
            Draws of stochastic quantizers (training); ``None``: deterministic.

        Returns
        -------
        logits : (B, d_out) (many-to-one) or (B, T, d_out) (many-to-many), a view
        cache : dict needed by :meth:`backward` (kernel layout ``(T, ., B)`` arrays)
        """
        self.check_params(params)
        x = protocol.check_inputs(x, self.config.input_size, self.config.dtype)
        w = self.weights(params, rng)
        xk = np.ascontiguousarray(x.transpose(1, 2, 0))
        h, logits = self.recurrence.forward(
            self._kernels, w, w["U_q"], params["b"], w["V_q"], params["c"], xk,
            nonlinear=self.config.nonlinear, many_to_many=self.config.many_to_many,
            h_out=states_out, store_every=self.config.store_every)
        cache = {"x": xk, "h": h, "weights": w, "b": params["b"]}
        logits = logits.transpose(2, 0, 1)  # (B, T_out, d_out)
        return (logits if self.config.many_to_many else logits[:, 0, :]), cache

    def states(self, cache):
        """``{"h": (B, T, n)}``: the hidden states of the cached forward pass (a view of the
        stored states, or all of them recomputed when ``store_every > 1``)."""
        h = cache["h"]
        if self.config.store_every > 1:
            w = cache["weights"]
            h = self._kernels.hadamard_states(
                w["W_signs"], self.config.m, w["U_q"], cache["b"], cache["x"], h,
                nonlinear=self.config.nonlinear, store_every=self.config.store_every)
        return {"h": h.transpose(2, 0, 1)}

    def backward(self, params, cache, dlogits, *, input_grad=False):
        """Backpropagation through time, through the straight-through estimators.

        Parameters
        ----------
        params : dict, as passed to :meth:`forward`
        cache : dict returned by :meth:`forward`
        dlogits : gradient of the loss w.r.t. the logits, shape of the logits
        input_grad : bool
            Also return ``"x"``: the gradient w.r.t. the inputs, (B, T, d_in).

        Returns
        -------
        dict of gradients with the keys and shapes of ``params`` (new arrays), plus ``x``
        with ``input_grad``.
        """
        B = cache["x"].shape[2]
        expected = ((B, cache["x"].shape[0]) if self.config.many_to_many else (B,)) \
            + (self.config.output_size,)
        if dlogits.shape != expected:
            raise ShapeError(f"dlogits has shape {dlogits.shape}, expected {expected}")
        g = dlogits.transpose(1, 2, 0) if self.config.many_to_many else dlogits.T[None]
        g = np.ascontiguousarray(g, dtype=self.config.dtype)
        w = cache["weights"]
        grads = self.recurrence.backward(self._kernels, params, w, w["U_q"], w["V_q"],
                                         cache["x"], cache["h"], g, self.config.nonlinear,
                                         input_grad, store_every=self.config.store_every,
                                         b=cache["b"])
        grads.update(self.U.backward(params, grads.pop("U")))
        grads.update(self.V.backward(params, grads.pop("V")))
        out = {name: grads[name] for name in params}
        if input_grad:
            out["x"] = grads["x"].transpose(2, 0, 1)  # (B, T, d_in)
        return out

    def diagnostics(self, params, cache=None, grads=None):
        """Model-specific training diagnostics (the loop logs them on logged steps).

        The loop itself reports what the parameter roles give (sign flips, ``|u|``, the
        gradient's alignment with ``sign(u)``, gradient norms); this adds what needs the
        model's structure.

        Parameters
        ----------
        params : dict, the parameters of the step's forward pass
        cache : dict returned by :meth:`forward` for them, or ``None`` (no state figures)
        grads : dict returned by :meth:`backward` (unused by this family)

        Returns
        -------
        dict of JSON numbers/lists:
            ``<figure>.<weight>`` of the weight matrices
            (:meth:`hadamnp.models.weights.Weight.diagnostics`): ``alpha``/``codes`` of a
            quantized matrix with a scale (the per-tensor scale and the count of entries at
            each integer code, lowest code first), ``ones``/``entropy``/``kstar`` of a
            one-bit one;
            with a cache, ``h_absmax``: ``max |h_t,i|`` over the batch, the steps and the
            units, and ``h_rms_last``: the root mean square of the last state ``h_T``.
            With ``store_every = k > 1`` both read the states the cache keeps (steps
            ``k, 2k, ...``: recomputing the others would cost the memory ``k`` saves), and
            ``h_rms_last`` is left out unless ``k`` divides ``T``.
        """
        out = weight_diagnostics(self._weights, params)
        if cache is None:
            return out
        h = cache["h"]  # (T/k, n, B); max and min read it once each without a temporary
        out["h_absmax"] = float(max(h.max(), -h.min()))
        if cache["x"].shape[0] % self.config.store_every == 0:
            last = h[-1].astype(np.float64)
            out["h_rms_last"] = float(np.sqrt(np.mean(last * last)))
        return out

    def size(self):
        """Storage of the deployed model (see :mod:`hadamnp.models.size`).

        ``W``: ``n`` sign bits for the Hadamard recurrences (the block pattern is fixed),
        the quantized or float32 entries of a dense ``W``; ``U``, ``V`` at their quantizer's
        bit width; float32 ``b``, ``c``; ``alpha``: the scales of the quantized matrices.
        The float32 reference has a dense ``n x n`` ``W``.
        """
        cfg = self.config
        n, d_in, d_out = cfg.hidden_size, cfg.input_size, cfg.output_size
        bits = {"U": self.U.code_bits(), "V": self.V.code_bits(), **self.recurrence.bits(),
                "b": FLOAT_BITS * n, "c": FLOAT_BITS * d_out,
                "alpha": (self.U.scale_bits() + self.V.scale_bits()
                          + self.recurrence.scale_bits())}
        specs = self.param_specs()
        recurrent = {"W": {"shape": [n, n], "parametrization": cfg.recurrence,
                           "quantizer": cfg.quant_rec,
                           "parameters": protocol.param_count(self.recurrence.param_specs()),
                           "dense": n * n, "shared": []}}
        return ModelSize(parameters=protocol.param_count(specs),
                         trainable=protocol.param_count(specs, trainable_only=True),
                         bits=bits, float32_parameters=n * d_in + d_out * n + n * n + n + d_out,
                         matrices={**matrix_table([self.U]), **recurrent,
                                   **matrix_table([self.V])})

    def describe(self):
        return {"name": self.name, "config": self.config.to_dict()}
