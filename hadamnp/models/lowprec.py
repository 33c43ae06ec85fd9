"""Low-precision vanilla RNN, GRU and LSTM (Ott, Lin, Zhang, Liu, Bengio, 2016).

One recurrent layer (:class:`hadamnp.models.cells.CellLayer`; a stack of them with
``num_layers``) and a linear readout::

    H   = cell(x)                      h_t: vanilla tanh RNN, GRU (Lasagne form) or LSTM
    y_t = Q_out(V) h_t + c             every t (many-to-many) or t = T only

Every gate matrix and bias is quantized by a quantizer chosen by name per group:
``quant_in`` (input matrices ``W_x<g>``), ``quant_rec`` (recurrent matrices ``W_h<g>``),
``quant_bias`` (gate biases ``b_<g>``) and ``quant_out`` (the readout ``V``; the method
does not say whether its output layer was quantized, so the default is ``none``). The
quantizers of the method are ``binary``, ``binary-stochastic``, ``ternary``,
``ternary-stochastic``, ``pow2-ternary:i,f``, ``exponential`` and
``exponential-stochastic`` (:mod:`hadamnp.models.lowprec_quantizers`); any registered
quantizer works. Training keeps full-precision shadow values, uses their quantized copy in
the forward pass and applies the gradient through the identity straight-through estimator;
with ``clip_shadow`` (default) the shadow values of every quantized matrix or bias are
clipped to ``[-W0, W0]`` after every update (``W0`` the Glorot bound, see
:mod:`hadamnp.models.cells`). Stochastic quantizers draw from the training forward's
``rng``; evaluation, export and golden files use their deterministic form.

Stacks and compact matrices: ``num_layers`` cell layers, each reading the states of the
one below (:mod:`hadamnp.models.stack`; BPTT runs through the whole stack), and the gate
matrices under any weight parametrization: ``param_in``/``param_rec`` = ``"ldr:r"``
(Toeplitz-like) or ``"lowrank:k"``, one spec for all layers or one per layer, with low-rank
projections shared across gates and layers (``share``), as in Lu, Sindhwani, Sainath
(2016); see docs/compact.md.

Registered as ``rnn``, ``gru`` and ``lstm`` (options: the fields of :class:`CellConfig`,
plus ``peepholes`` for ``lstm``).
"""

import dataclasses
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models import protocol
from hadamnp.models.cells import bind_scale
from hadamnp.models.lowprec_quantizers import glorot_bound
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer, quantizer_spec
from hadamnp.models.size import FLOAT_BITS, ModelSize
from hadamnp.models.stack import SHARING, CellStack, layer_specs
from hadamnp.models.weights import Weight, matrix_table, project_weights, weight_diagnostics

DTYPES = ("float32", "float64")
QUANT_OPTIONS = ("quant_in", "quant_rec", "quant_bias", "quant_out")

__all__ = ["CellConfig", "RNNConfig", "GRUConfig", "LSTMConfig", "LowPrecisionRNN"]


@dataclass(frozen=True)
class CellConfig:
    """Architecture of a recurrent model (one cell layer, or a stack) with a linear readout.

    Attributes
    ----------
    input_size, hidden_size, output_size : int
        ``d_in``, ``n``, ``d_out`` (any positive integers).
    quant_in, quant_rec, quant_bias, quant_out : str
        Quantizer specs of the input matrices, the recurrent matrices, the gate biases and
        the readout matrix ``V`` (e.g. ``"ternary"``, ``"exponential-stochastic"``,
        ``"pow2-ternary:0,3"``, ``"none"``). A ``W0`` the spec leaves unset is the Glorot
        bound of each matrix.
    clip_shadow : bool
        Clip the shadow (latent) values of every quantized matrix and bias to
        ``[-W0, W0]`` after every update (the method; ``False`` for an ablation).
    num_layers : int
        Stacked cell layers (the readout reads the top one).
    param_in, param_rec : str or list of str
        Parametrization of the input (resp. recurrent) gate matrices: ``"dense"``,
        ``"ldr:r"`` (Toeplitz-like, displacement rank r), ``"lowrank:k"``; one spec for
        every layer or a list of ``num_layers``. Stored as one string when all layers agree.
    share : {"none", "gates", "layers"}
        Sharing of the low-rank projections (:mod:`hadamnp.models.stack`).
    many_to_many : bool
    dtype : {"float32", "float64"}
    """

    cell: ClassVar[str] = ""

    input_size: int
    hidden_size: int
    output_size: int
    quant_in: str = "none"
    quant_rec: str = "none"
    quant_bias: str = "none"
    quant_out: str = "none"
    clip_shadow: bool = True
    num_layers: int = 1
    param_in: str | tuple = "dense"
    param_rec: str | tuple = "dense"
    share: str = "none"
    many_to_many: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("clip_shadow", "many_to_many", "peepholes"):
            if hasattr(self, name) and not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(DTYPES)}")
        for name in QUANT_OPTIONS:
            try:
                canonical = quantizer_spec(get_quantizer(getattr(self, name)))
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, canonical)
        for name in ("param_in", "param_rec"):
            specs = layer_specs(getattr(self, name), self.num_layers, name)
            object.__setattr__(self, name, specs[0] if len(set(specs)) == 1 else specs)
        if self.share not in SHARING:
            raise ConfigError(f"unknown share {self.share!r}; choose one of "
                              f"{', '.join(SHARING)}")
        if self.clip_shadow:
            self._check_live_grids()

    def layer_params(self, name):
        """``param_in`` or ``param_rec`` as a tuple of ``num_layers`` specs."""
        return layer_specs(getattr(self, name), self.num_layers, name)

    def bounds(self):
        """``{option: W0}``: the Glorot bound of the matrices each quantizer applies to."""
        n, d_in, d_out = self.hidden_size, self.input_size, self.output_size
        return {"quant_in": glorot_bound(d_in, n), "quant_rec": glorot_bound(n, n),
                "quant_bias": glorot_bound(d_in, n), "quant_out": glorot_bound(n, d_out)}

    def _check_live_grids(self):
        """A fixed grid whose every level inside ``[-W0, W0]`` is 0 would zero the matrix
        for good once the shadow values are clipped there: refuse it, naming the option."""
        checks = list(self.bounds().items())
        if self.num_layers > 1:  # the input matrices of the upper layers read n values
            checks.append(("quant_in", glorot_bound(self.hidden_size, self.hidden_size)))
        for option, W0 in checks:
            quantizer = bind_scale(getattr(self, option), W0, option)
            if quantizer.name == "none" or hasattr(quantizer, "param_specs"):
                continue  # no fixed grid: a quantizer owning its scale (siman) learns it
            edge = np.array([-W0, W0])
            if not np.any(quantizer.forward(edge)):
                raise ConfigError(
                    f"{option}: {getattr(self, option)!r} maps every value of the clipping "
                    f"range [-W0, W0] = [{-W0:.4g}, {W0:.4g}] to 0; choose a finer grid "
                    f"(e.g. more fractional bits) or clip_shadow = false")

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class RNNConfig(CellConfig):
    """:class:`CellConfig` of the vanilla tanh RNN (``rnn``)."""

    cell: ClassVar[str] = "rnn"


@dataclass(frozen=True)
class GRUConfig(CellConfig):
    """:class:`CellConfig` of the GRU (``gru``, the Lasagne form)."""

    cell: ClassVar[str] = "gru"


@dataclass(frozen=True)
class LSTMConfig(CellConfig):
    """:class:`CellConfig` of the LSTM (``lstm``), plus

    Attributes
    ----------
    peepholes : bool
        Peephole connections ``p_i ⊙ c_{t-1}``, ``p_f ⊙ c_{t-1}``, ``p_o ⊙ c_t`` (the
        Lasagne LSTM's default; off by default here, as PyTorch's ``nn.LSTM``).
    """

    cell: ClassVar[str] = "lstm"

    peepholes: bool = False


class LowPrecisionRNN:
    """Vanilla RNN / GRU / LSTM with quantized weights and a linear readout (see the module
    docstring); implements :class:`hadamnp.models.protocol.Model`.

    Parameters
    ----------
    config : RNNConfig, GRUConfig or LSTMConfig
    kernels : {"numba", "reference"}
        Compiled sequence kernels or their plain-NumPy twins.
    """

    def __init__(self, config, kernels="numba"):
        if not isinstance(config, CellConfig) or not config.cell:
            raise ConfigError(f"config must be an RNNConfig, GRUConfig or LSTMConfig, got "
                              f"{type(config).__name__}")
        self.config = config
        n, d_out = config.hidden_size, config.output_size
        self.layers = CellStack(config.cell, config.input_size, n, config.num_layers,
                                param_in=config.layer_params("param_in"),
                                param_rec=config.layer_params("param_rec"),
                                share=config.share, quant_in=config.quant_in,
                                quant_rec=config.quant_rec, quant_bias=config.quant_bias,
                                peepholes=getattr(config, "peepholes", False),
                                clip_shadow=config.clip_shadow, kernels=kernels)
        W0_out = config.bounds()["quant_out"]
        quantizer = bind_scale(config.quant_out, W0_out, "quant_out")
        # OIALR's order: layer l's input matrices at depth 2l, its recurrent ones at 2l + 1,
        # the readout after the top layer
        self.V = Weight("V", (d_out, n), _glorot, quantizer=quantizer, bound=W0_out,
                        depth=2 * config.num_layers)
        self._clip_V = config.clip_shadow and quantizer.name != "none"

    @property
    def name(self):
        return self.config.cell

    def param_specs(self):
        """The layers' parameters (per gate ``W_x<g>``, ``W_h<g>``, ``b_<g>`` or their
        factors / generators; shared projections; peepholes), then ``V`` and ``c``."""
        specs = self.layers.param_specs()
        for key, spec in self.V.param_specs().items():
            specs[key] = dataclasses.replace(spec, clip=self._clip_V and spec.bound is not None)
        specs["c"] = ParamSpec((self.config.output_size,), "bias")
        return specs

    def init_params(self, rng):
        """Initial parameters from ``rng`` in the order of :meth:`param_specs`: gate
        matrices and ``V`` Glorot-uniform (``U(-W0, W0)``), biases and peepholes
        ``U(-1/sqrt(n), 1/sqrt(n))``."""
        cfg = self.config
        params = self.layers.init(rng, cfg.dtype)
        params.update(self.V.init(rng, cfg.dtype))
        bound = 1 / np.sqrt(cfg.hidden_size)
        params["c"] = rng.uniform(-bound, bound, cfg.output_size).astype(cfg.dtype)
        return params

    def check_params(self, params):
        protocol.check_params(self.param_specs(), params, self.config.dtype)

    def weights(self, params, rng=None):
        """Effective weights: ``<name>_q`` (quantized) for every gate matrix, gate bias and
        ``V``; the peephole vectors under their own names."""
        return {**self.layers.weights(params, rng), "V_q": self.V.effective(params, rng)}

    @property
    def _weights(self):
        return (*self.layers.weight_objects, self.V)

    def project_params(self, params, step):
        """Training-time rewrites of the weights before step ``step`` (e.g. SiMaN's
        progressive clipping; :mod:`hadamnp.models.protocol`), ``{}`` for most models."""
        return project_weights(self._weights, params, step)

    def diagnostics(self, params, cache=None, grads=None):
        """Code statistics of the binarized matrices (``ones.W_hi``, ``entropy.W_hi``,
        ``kstar.W_hi``...); ``cache`` and ``grads`` are not needed."""
        return weight_diagnostics(self._weights, params)

    def state_buffer(self, batch, seq_len):
        """Reusable state and workspace arrays for :meth:`forward`'s ``states_out``."""
        return self.layers.state_buffer(batch, seq_len, self.config.dtype)

    def forward(self, params, x, *, states_out=None, rng=None):
        """Run the model on a batch.

        Parameters
        ----------
        params : dict (see :meth:`init_params`)
        x : (B, T, d_in) inputs (converted to the model dtype)
        states_out : dict from :meth:`state_buffer`, optional (reused across batches)
        rng : numpy.random.Generator, optional
            Draws of stochastic quantizers (training forward); None: deterministic.

        Returns
        -------
        outputs : (B, d_out) or (B, T, d_out)
        cache : dict for :meth:`backward`
        """
        self.check_params(params)
        cfg = self.config
        x = protocol.check_inputs(x, cfg.input_size, cfg.dtype)
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))     # (T, B, d_in)
        H, stack_cache = self.layers.forward(params, xt, rng=rng, out=states_out)
        V = self.V.effective(params, rng)
        c = params["c"]
        if cfg.many_to_many:
            outputs = (H @ V.T + c).transpose(1, 0, 2)       # (B, T, d_out)
        else:
            outputs = H[-1] @ V.T + c
        return outputs, {"layer": stack_cache, "V_q": V}

    def backward(self, params, cache, doutputs, *, input_grad=False):
        """Backpropagation through time through the straight-through estimators.

        Parameters
        ----------
        params : dict, as passed to :meth:`forward`
        cache : dict from :meth:`forward`
        doutputs : gradient w.r.t. the outputs (their shape)
        input_grad : bool, also return ``"x"``: ``dL/dx`` (B, T, d_in)

        Returns
        -------
        dict of gradients under the keys of ``params`` (and ``x``).
        """
        cfg = self.config
        H = cache["layer"]["h"]
        T, B, n = H.shape
        expected = ((B, T) if cfg.many_to_many else (B,)) + (cfg.output_size,)
        if doutputs.shape != expected:
            raise ShapeError(f"doutputs has shape {doutputs.shape}, expected {expected}")
        V = cache["V_q"]
        g = np.asarray(doutputs, dtype=cfg.dtype)
        if cfg.many_to_many:
            gt = np.ascontiguousarray(g.transpose(1, 0, 2))  # (T, B, d_out)
            dV = gt.reshape(T * B, -1).T @ H.reshape(T * B, n)
            dc = gt.reshape(T * B, -1).sum(axis=0)
            dH = gt @ V
        else:
            dV = g.T @ H[-1]
            dc = g.sum(axis=0)
            dH = (g @ V)[None]
        grads = self.layers.backward(params, cache["layer"], np.ascontiguousarray(dH),
                                     input_grad=input_grad)
        grads.update(self.V.backward(params, dV))
        grads["c"] = dc
        out = {name: grads[name] for name in params}
        if input_grad:
            out["x"] = grads["x"].transpose(1, 0, 2)
        return out

    @staticmethod
    def states(cache):
        """Named state sequences (B, T, ...): ``h``; gru also ``gates`` (r, u, c) and
        ``hc``; lstm also ``c``, ``tc`` and ``gates`` (i, f, g, o); prefixed ``l<k>.`` per
        layer when there are several."""
        return {name: a.transpose(1, 0, 2) for name, a in cache["layer"]["states"].items()}

    def size(self):
        """Storage of the deployed model: each gate matrix and bias and ``V`` at its
        quantizer's width (float32 unquantized), float32 ``c`` and peepholes, one float32
        scale per matrix whose quantizer stores one (binary ``H``, ternary ``W0``); a
        structured unquantized matrix stores its factors or generators, and each shared
        projection is stored once (``P``). The float32 reference is the same stack with
        dense full-precision matrices."""
        cfg = self.config
        bits = self.layers.code_bits()
        bits["V"] = self.V.code_bits()
        bits["c"] = FLOAT_BITS * cfg.output_size
        bits["scales"] += self.V.scale_bits()
        specs = self.param_specs()
        dense = (self.layers.float32_values() + cfg.output_size * cfg.hidden_size
                 + cfg.output_size)
        return ModelSize(parameters=protocol.param_count(specs),
                         trainable=protocol.param_count(specs, trainable_only=True),
                         bits=bits, float32_parameters=dense,
                         matrices=matrix_table(self.layers.matrices + [self.V]))

    def describe(self):
        return {"name": self.name, "config": self.config.to_dict()}


def _glorot(rng, shape, dtype):
    bound = glorot_bound(shape[1], shape[0])
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
