"""HadamRNN and Block-HadamRNN (Foucault, Mamalet, Malgouyres, ICLR 2025).

Equations (``s = sign(u)`` with sign(0) = +1; ``S`` Sylvester, block size ``m``)::

    W     = diag(s) (I_{n/m} ⊗ S_m) / sqrt(m)      binary (m = n) or sparse ternary (m < n)
    h_t   = W h_{t-1} + Q(U) x_t + b,   h_0 = 0     linear recurrence (default)
    h_t   = relu(W h_{t-1} + Q(U) x_t + b)          ``nonlinear=True`` (ablation)
    y_t   = Q(V) relu(h_t) + c                      every t (many-to-many) or t = T only

``Q`` is the ``bits``-bit uniform quantizer of :mod:`hadamnp.models.quantizers`; gradients
reach the latent ``u``, ``U``, ``V`` through straight-through estimators. A dense
full-precision recurrent matrix ``W`` (``recurrent="dense"``) replaces ``u`` for baselines.

The model object holds only its configuration. Parameters are a dict of arrays
(``u``/``W``, ``U``, ``b``, ``V``, ``c``); :meth:`HadamRNN.forward` returns the logits and a
cache; :meth:`HadamRNN.backward` returns gradients under the same keys as the parameters.
Any model exposing ``init_params``, ``forward`` and ``backward`` this way can be trained
by :mod:`hadamnp.training`.
"""

from dataclasses import asdict, dataclass

import numpy as np

from hadamnp._checks import check_block_size, check_finite, check_ndim, check_power_of_two
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models.init import orthogonal, uniform_bias, xavier_uniform
from hadamnp.models.quantizers import Sign, weight_quantizer

RECURRENT_KINDS = ("hadamard", "dense")
STE_KINDS = ("identity", "clipped")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class HadamRNNConfig:
    """Architecture of a HadamRNN.

    Attributes
    ----------
    input_size, hidden_size, output_size : int
        ``d_in``, ``n`` (a power of two), ``d_out``.
    block_size : int or None
        ``m``, a power of two dividing ``n``; ``None`` means ``n`` (full HadamRNN).
    bits_in, bits_out : int
        Bit widths of ``Q(U)`` and ``Q(V)``; 0 disables quantization.
    recurrent : {"hadamard", "dense"}
        Binary/ternary Hadamard recurrence, or a dense full-precision ``W`` (baseline).
    nonlinear : bool
        Apply relu inside the recurrence.
    many_to_many : bool
        Score every step instead of only the last one.
    ste : {"identity", "clipped"}
        Straight-through estimator for ``sign(u)``.
    dtype : {"float32", "float64"}
    """

    input_size: int
    hidden_size: int
    output_size: int
    block_size: int | None = None
    bits_in: int = 4
    bits_out: int = 4
    recurrent: str = "hadamard"
    nonlinear: bool = False
    many_to_many: bool = False
    ste: str = "identity"
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("input_size", "output_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        n = check_power_of_two(self.hidden_size, "hidden size n")
        if self.block_size is not None:
            check_block_size(n, self.block_size)
        for name in ("bits_in", "bits_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value <= 32:
                raise ConfigError(f"{name} must be an integer in [0, 32], got {value!r}")
        for name in ("nonlinear", "many_to_many"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name, allowed in (("recurrent", RECURRENT_KINDS), ("ste", STE_KINDS),
                              ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; "
                                  f"choose one of {list(allowed)}")
        if self.recurrent == "dense" and self.block_size not in (None, n):
            raise ConfigError("block_size applies to the Hadamard recurrence only")

    @property
    def m(self):
        """Effective block size (``n`` for the full HadamRNN)."""
        return self.hidden_size if self.block_size is None else int(self.block_size)

    @property
    def model_name(self):
        """``"hadamrnn"``, ``"block-hadamrnn"`` or ``"dense-rnn"``."""
        if self.recurrent == "dense":
            return "dense-rnn"
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
        if kernels == "numba":
            from hadamnp.kernels import recurrence
        elif kernels == "reference":
            from hadamnp.reference import recurrence
        else:
            raise ConfigError(f"unknown kernels {kernels!r}; choose 'numba' or 'reference'")
        self.config = config
        self._kernels = recurrence
        self.sign = Sign(clipped=config.ste == "clipped")
        self.quantize_U = weight_quantizer(config.bits_in)
        self.quantize_V = weight_quantizer(config.bits_out)

    @property
    def recurrent_name(self):
        """Name of the recurrent parameter: ``"u"`` (latent signs) or ``"W"`` (dense)."""
        return "W" if self.config.recurrent == "dense" else "u"

    @property
    def param_names(self):
        return (self.recurrent_name, "U", "b", "V", "c")

    def param_shapes(self):
        """Shapes of the parameters, keyed by name."""
        n, d_in, d_out = self.config.hidden_size, self.config.input_size, self.config.output_size
        return {self.recurrent_name: (n, n) if self.recurrent_name == "W" else (n,),
                "U": (n, d_in), "b": (n,), "V": (d_out, n), "c": (d_out,)}

    def init_params(self, rng):
        """Initial parameters, drawn from ``rng`` in the order ``u``/``W``, ``U``, ``b``, ``V``, ``c``.

        ``u`` ~ ``U(-a, a)``, ``a = sqrt(6/(n+1))`` (only its signs matter); dense ``W``
        orthogonal; ``U`` orthogonal when square, else Xavier-uniform; ``V`` Xavier-uniform;
        ``b``, ``c`` ~ ``U(-1/sqrt(n), 1/sqrt(n))``.

        Parameters
        ----------
        rng : numpy.random.Generator

        Returns
        -------
        dict of arrays in the configured dtype.
        """
        cfg = self.config
        n, d_in, d_out, dtype = cfg.hidden_size, cfg.input_size, cfg.output_size, cfg.dtype
        params = {}
        if self.recurrent_name == "W":
            params["W"] = orthogonal(rng, n, dtype)
        else:
            a = np.sqrt(6.0 / (n + 1))
            params["u"] = rng.uniform(-a, a, size=n).astype(dtype)
        params["U"] = orthogonal(rng, n, dtype) if d_in == n else xavier_uniform(rng, (n, d_in), dtype)
        params["b"] = uniform_bias(rng, n, n, dtype)
        params["V"] = xavier_uniform(rng, (d_out, n), dtype)
        params["c"] = uniform_bias(rng, d_out, n, dtype)
        return params

    def check_params(self, params):
        """Raise :class:`ShapeError`/``KeyError``-like errors for malformed parameters."""
        shapes = self.param_shapes()
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        if missing or extra:
            raise ConfigError(f"parameters missing {missing} / unexpected {extra}")
        for name, shape in shapes.items():
            if params[name].shape != shape:
                raise ShapeError(f"parameter {name} has shape {params[name].shape}, expected {shape}")
            check_finite(params[name], f"parameter {name}")

    def weights(self, params):
        """Effective weights used by the forward pass.

        Returns
        -------
        dict: ``W_signs`` (n,) = sign(u) (or ``W`` (n, n) for the dense recurrence),
        ``U_q`` (n, d_in), ``V_q`` (d_out, n).
        """
        out = {"U_q": self.quantize_U.forward(params["U"]),
               "V_q": self.quantize_V.forward(params["V"])}
        if self.recurrent_name == "W":
            out["W"] = params["W"]
        else:
            out["W_signs"] = self.sign.forward(params["u"])
        return out

    def _check_input(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        x = x.astype(self.config.dtype, copy=False)
        check_ndim(x, 3, "x", "(B, T, d_in)")
        if x.shape[2] != self.config.input_size:
            raise ShapeError(f"x has {x.shape[2]} input features (shape {x.shape}), "
                             f"the model expects d_in = {self.config.input_size}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ShapeError(f"x must hold at least one sequence of one step, got shape {x.shape}")
        check_finite(x, "x")
        return x

    def state_buffer(self, batch, seq_len):
        """A reusable ``(T, n, B)`` buffer for :meth:`forward`'s ``states_out``."""
        return np.empty((seq_len, self.config.hidden_size, batch), dtype=self.config.dtype)

    def forward(self, params, x, states_out=None):
        """Run the model on a batch.

        Parameters
        ----------
        params : dict of parameters (see :meth:`init_params`)
        x : (B, T, d_in) inputs (converted to the model dtype)
        states_out : (T, n, B) array, optional
            Buffer from :meth:`state_buffer` that receives the hidden states. Training loops
            pass the same buffer for every batch (the cache then refers to it until the next
            call), which avoids re-faulting hundreds of MB of fresh memory per batch.

        Returns
        -------
        logits : (B, d_out) (many-to-one) or (B, T, d_out) (many-to-many), a view
        cache : dict needed by :meth:`backward` (kernel layout ``(T, ., B)`` arrays)
        """
        self.check_params(params)
        x = self._check_input(x)
        w = self.weights(params)
        xk = np.ascontiguousarray(x.transpose(1, 2, 0))
        options = {"nonlinear": self.config.nonlinear, "many_to_many": self.config.many_to_many,
                   "h_out": states_out}
        if self.recurrent_name == "W":
            h, logits = self._kernels.dense_forward(
                w["W"], w["U_q"], params["b"], w["V_q"], params["c"], xk, **options)
        else:
            h, logits = self._kernels.hadamard_forward(
                w["W_signs"], self.config.m, w["U_q"], params["b"], w["V_q"], params["c"],
                xk, **options)
        cache = {"x": xk, "h": h, **w}
        logits = logits.transpose(2, 0, 1)  # (B, T_out, d_out)
        return (logits if self.config.many_to_many else logits[:, 0, :]), cache

    @staticmethod
    def states(cache):
        """Hidden states ``h_t`` of the cached forward pass, shape (B, T, n) (a view)."""
        return cache["h"].transpose(2, 0, 1)

    def backward(self, params, cache, dlogits):
        """Backpropagation through time, through the straight-through estimators.

        Parameters
        ----------
        params : dict, as passed to :meth:`forward`
        cache : dict returned by :meth:`forward`
        dlogits : gradient of the loss w.r.t. the logits, shape of the logits

        Returns
        -------
        dict of gradients with the keys and shapes of ``params`` (new arrays).
        """
        B = cache["x"].shape[2]
        expected = ((B, cache["x"].shape[0]) if self.config.many_to_many else (B,)) \
            + (self.config.output_size,)
        if dlogits.shape != expected:
            raise ShapeError(f"dlogits has shape {dlogits.shape}, expected {expected}")
        g = dlogits.transpose(1, 2, 0) if self.config.many_to_many else dlogits.T[None]
        g = np.ascontiguousarray(g, dtype=self.config.dtype)
        nonlinear = self.config.nonlinear
        if self.recurrent_name == "W":
            grads = self._kernels.dense_backward(
                cache["W"], cache["U_q"], cache["V_q"], cache["x"], cache["h"], g,
                nonlinear=nonlinear)
        else:
            grads = self._kernels.hadamard_backward(
                cache["W_signs"], self.config.m, cache["U_q"], cache["V_q"], cache["x"],
                cache["h"], g, nonlinear=nonlinear)
            grads["u"] = self.sign.backward(params["u"], grads.pop("s"))
        grads["U"] = self.quantize_U.backward(params["U"], grads["U"])
        grads["V"] = self.quantize_V.backward(params["V"], grads["V"])
        return grads
