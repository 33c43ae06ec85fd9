"""Binary RNN: a recurrent layer whose input, the previous state, is binarized.

The SiMaN recipe for CNNs (Lin et al.) binarizes both the weights and the inputs of every
inner layer and keeps the first and the last layer in full precision. Applied to an RNN,
the inner layer is the recurrent product ``W h_{t-1}``; the input matrix ``U`` (first
layer) and the readout ``V`` (last layer) default to full precision::

    z_t = (h_{t-1} - mean) / sqrt(var + 1e-5)   per sample over the n units (standardize)
          or h_{t-1}                             (standardize = False)
    a_t = sign(z_t)                              sign(0) = +1; backward: ApproxSign,
                                                 da/dz := max(0, 2 - 2|z|)
    h_t = s * (C a_t) + Q_in(U) x_t + b          h_0 = 0
    y_t = Q_out(V) relu(h_t) + c                 every t (many-to-many) or t = T only

``Q_rec(W) = diag(s) C`` is the recurrent quantizer's factored form
(:meth:`hadamnp.models.weights.Weight.factors`): SiMaN (the default, ``quant_rec =
"siman"``) gives ``C = 2B - 1`` with the {0, 1} code ``B`` and the learnable per-row scale
``s = alpha``; a quantizer without a row scale (``sign``, ``none``...) gives ``C = Q(W)``
and no ``s``. The forward pass evaluates the product as ``s * (C @ a_t)``: with ±1 entries
``C @ a_t`` holds small integers, exact in floating point, which is what lets the
bit-packed engine (:mod:`hadamnp.deploy.packed`) reproduce it exactly.

With a one-bit recurrent quantizer the recurrent layer is *fully binary* (binary weight
codes times sign activations): :meth:`BinaryRNN.binary_layers` hands its code to the
packed engine, and ``forward(..., products={"W": f})`` lets that engine compute
``C @ a_t`` by XNOR-popcount. Since ``a_t`` is ±1 the state stays bounded whatever ``W``.

Backward (hand-written BPTT, checked by finite differences on the surrogate: the ApproxSign
smooth function in place of ``sign``, :func:`hadamnp.models.binary.approx_sign`)::

    g_t    = dL/dh_t = readout part + dL/dz_{t+1} through the standardization
    dQ(W)  = sum_t g_t a_t^T,  dQ(U) = sum_t g_t x_t^T,  db = sum_t g_t
    dz_t   = (Q(W)^T g_t) * max(0, 2 - 2|z_t|)
    dh_{t-1} = (dz - mean(dz) - z mean(dz z)) / sigma   (standardize) or dz
               entries below 2^-100 in magnitude flushed to zero (see _FLUSH)

The time loop is plain NumPy (one BLAS product per step); registered as ``binary-rnn``.
"""

from dataclasses import asdict, dataclass

import numpy as np

from hadamnp import conventions
from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models import binary, protocol
from hadamnp.models.init import orthogonal, uniform_bias, xavier_uniform
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer, quantizer_spec
from hadamnp.models.size import FLOAT_BITS, ModelSize
from hadamnp.models.weights import Weight, project_weights, weight_diagnostics

DTYPES = ("float32", "float64")

__all__ = ["BinaryRNNConfig", "BinaryRNN"]


@dataclass(frozen=True)
class BinaryRNNConfig:
    """Architecture of a binary RNN (validated and normalised on construction).

    Attributes
    ----------
    input_size, hidden_size, output_size : int >= 1
        ``d_in``, ``n`` (any size), ``d_out``.
    quant_in, quant_rec, quant_out : str
        Quantizer specs of ``U``, ``W`` and ``V`` (default ``none``, ``siman``, ``none``).
    standardize : bool
        Standardize the previous state per sample before its sign (the released SiMaN
        code's activation).
    many_to_many : bool
    dtype : {"float32", "float64"}
    """

    input_size: int
    hidden_size: int
    output_size: int
    quant_in: str = "none"
    quant_rec: str = "siman"
    quant_out: str = "none"
    standardize: bool = True
    many_to_many: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("input_size", "hidden_size", "output_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("standardize", "many_to_many"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(DTYPES)}")
        for name in ("quant_in", "quant_rec", "quant_out"):
            try:
                canonical = quantizer_spec(get_quantizer(getattr(self, name)))
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, canonical)

    def to_dict(self):
        return asdict(self)


# Gradients vanish backwards through the ApproxSign gates; once below 2^-100 they carry
# nothing next to the gradients of order 1e-8 and more they are added to, but as float32
# subnormals they slow every following BLAS product by about two orders of magnitude
# (measured: 8 ms instead of 58 us for a 128 x 128 by 128 x 100 product). They are set to
# zero (flush to zero) at each step of the backward pass.
_FLUSH = 2.0 ** -100

# The binary activation and its surrogate derivative (ApproxSign). The forward and backward
# passes use only these two names, so the finite-difference test can swap the sign for its
# smooth surrogate and check the whole unroll.
_activation = conventions.sign
_activation_grad = binary.approx_sign_grad


def _orthogonal_init(rng, shape, dtype):
    return orthogonal(rng, shape[0], dtype)


class BinaryRNN:
    """Binary RNN (see the module docstring).

    Parameters
    ----------
    config : BinaryRNNConfig
    """

    name = "binary-rnn"

    def __init__(self, config):
        if not isinstance(config, BinaryRNNConfig):
            raise ConfigError(f"config must be a BinaryRNNConfig, got {type(config).__name__}")
        self.config = config
        n, d_in, d_out = config.hidden_size, config.input_size, config.output_size
        # layer depths (input, recurrence, readout) order the matrices for OIALR
        self.W = Weight("W", (n, n), _orthogonal_init, quantizer=config.quant_rec, depth=1)
        self.U = Weight("U", (n, d_in), xavier_uniform, quantizer=config.quant_in, depth=0)
        self.V = Weight("V", (d_out, n), xavier_uniform, quantizer=config.quant_out, depth=2)

    # ------------------------------------------------------------------ parameters

    def param_specs(self):
        """``W`` (and ``W.alpha`` for SiMaN), ``U``, ``b``, ``V``, ``c``, in init order."""
        n, d_out = self.config.hidden_size, self.config.output_size
        return {**self.W.param_specs(), **self.U.param_specs(), "b": ParamSpec((n,), "bias"),
                **self.V.param_specs(), "c": ParamSpec((d_out,), "bias")}

    def init_params(self, rng):
        """Haar-orthogonal ``W`` (``alpha = mean |W|`` per row), Xavier-uniform ``U`` and
        ``V``, ``b, c ~ U(-1/sqrt(n), 1/sqrt(n))``, drawn from ``rng`` in that order."""
        cfg = self.config
        n, dtype = cfg.hidden_size, cfg.dtype
        params = self.W.init(rng, dtype)
        params.update(self.U.init(rng, dtype))
        params["b"] = uniform_bias(rng, n, n, dtype)
        params.update(self.V.init(rng, dtype))
        params["c"] = uniform_bias(rng, cfg.output_size, n, dtype)
        return params

    def check_params(self, params):
        protocol.check_params(self.param_specs(), params, self.config.dtype)

    def weights(self, params, rng=None):
        """``W_q`` (n, n) = ``diag(s) C``, ``U_q`` (n, d_in), ``V_q`` (d_out, n)."""
        return {"W_q": self.W.effective(params, rng), "U_q": self.U.effective(params, rng),
                "V_q": self.V.effective(params, rng)}

    @property
    def _weights(self):
        return (self.W, self.U, self.V)

    def project_params(self, params, step):
        """Training-time rewrites of the weights before step ``step`` (SiMaN clipping)."""
        return project_weights(self._weights, params, step)

    def diagnostics(self, params, cache=None, grads=None):
        """Code statistics of the binarized weights (``ones.W``, ``entropy.W``, ``kstar.W``);
        ``cache`` and ``grads`` are not needed."""
        return weight_diagnostics(self._weights, params)

    def binary_layers(self, params):
        """``{"W": {0, 1} code (n, n)}`` when the recurrent quantizer is one-bit (the
        recurrent layer is then fully binary: ``C = 2 code - 1``), else ``{}``."""
        code = self.W.code(params)
        return {} if code is None else {"W": code}

    # ------------------------------------------------------------------ forward / backward

    def state_buffer(self, batch, seq_len):
        """A reusable ``(T, n, B)`` buffer for :meth:`forward`'s ``states_out``."""
        return np.empty((seq_len, self.config.hidden_size, batch), dtype=self.config.dtype)

    def forward(self, params, x, *, states_out=None, rng=None, products=None):
        """Run the model on a batch.

        Parameters
        ----------
        params : dict of parameters
        x : (B, T, d_in) inputs
        states_out : (T, n, B) array from :meth:`state_buffer`, optional
        rng : numpy.random.Generator, optional (stochastic quantizers; None: deterministic)
        products : dict, optional
            ``{"W": f}``: ``f(a)`` returns ``C @ a`` for the ±1 activations ``a`` (n, B),
            as an array of the model dtype (the packed engine); default the float product.

        Returns
        -------
        logits : (B, d_out) or (B, T, d_out)
        cache : dict for :meth:`backward` (kernel-layout ``(T, ., B)`` arrays)
        """
        self.check_params(params)
        cfg = self.config
        x = protocol.check_inputs(x, cfg.input_size, cfg.dtype)
        n, dtype = cfg.hidden_size, np.dtype(cfg.dtype)
        C, s = self.W.factors(params, rng)
        Uq, Vq = self.U.effective(params, rng), self.V.effective(params, rng)
        xk = np.ascontiguousarray(x.transpose(1, 2, 0))  # (T, d_in, B)
        T, _, B = xk.shape
        if states_out is None:
            h = self.state_buffer(B, T)
        elif states_out.shape != (T, n, B) or states_out.dtype != dtype:
            raise ShapeError(f"states_out has shape {states_out.shape} {states_out.dtype}, "
                             f"expected {(T, n, B)} {dtype}")
        else:
            h = states_out
        product = (products or {}).get("W")
        if product is None:
            def product(a):
                return C @ a
        drive = np.matmul(Uq, xk)  # (T, n, B): U x_t + b for every step at once
        drive += params["b"][:, None]
        z = np.empty((T, n, B), dtype=dtype)
        sigma = np.empty((T, 1, B), dtype=dtype) if cfg.standardize else None
        prev = np.zeros((n, B), dtype=dtype)
        for t in range(T):
            if cfg.standardize:
                z[t], sigma[t] = binary.standardize(prev, 0)
            else:
                z[t] = prev
            r = product(_activation(z[t]))
            if s is not None:
                r = s[:, None] * r
            np.add(r, drive[t], out=h[t])
            prev = h[t]
        scored = h if cfg.many_to_many else h[-1:]
        logits = np.matmul(Vq, np.maximum(scored, 0)) + params["c"][:, None]
        logits = logits.transpose(2, 0, 1)  # (B, T_out, d_out)
        cache = {"x": xk, "h": h, "z": z, "sigma": sigma,
                 "weights": {"W_q": C if s is None else s[:, None] * C, "U_q": Uq, "V_q": Vq}}
        return (logits if cfg.many_to_many else logits[:, 0, :]), cache

    @staticmethod
    def states(cache):
        """``{"h": (B, T, n)}``: the states of the cached forward pass (a view)."""
        return {"h": cache["h"].transpose(2, 0, 1)}

    def backward(self, params, cache, dlogits, *, input_grad=False):
        """Backpropagation through time (module docstring); gradients under the keys of
        ``params`` (new arrays), plus ``"x"`` (B, T, d_in) with ``input_grad``."""
        cfg = self.config
        xk, h, z, sigma = cache["x"], cache["h"], cache["z"], cache["sigma"]
        T, n, B = h.shape
        expected = ((B, T) if cfg.many_to_many else (B,)) + (cfg.output_size,)
        if dlogits.shape != expected:
            raise ShapeError(f"dlogits has shape {dlogits.shape}, expected {expected}")
        w = cache["weights"]
        gk = dlogits.transpose(1, 2, 0) if cfg.many_to_many else dlogits.T[None]
        gk = np.ascontiguousarray(gk, dtype=cfg.dtype)  # (T_out, d_out, B)
        scored = h if cfg.many_to_many else h[-1:]
        dVq = np.tensordot(gk, np.maximum(scored, 0), axes=([0, 2], [0, 2]))
        dc = gk.sum(axis=(0, 2))
        dh_out = np.matmul(w["V_q"].T, gk) * (scored > 0)  # (T_out, n, B)
        WqT = np.ascontiguousarray(w["W_q"].T)
        UqT = w["U_q"].T
        dWq = np.zeros_like(w["W_q"])
        dUq = np.zeros_like(w["U_q"])
        db = np.zeros((n, B), dtype=cfg.dtype)
        dx = np.empty((T, cfg.input_size, B), dtype=cfg.dtype) if input_grad else None
        gh = np.zeros((n, B), dtype=cfg.dtype)
        for t in range(T - 1, -1, -1):
            if cfg.many_to_many:
                gh = gh + dh_out[t]
            elif t == T - 1:
                gh = gh + dh_out[0]
            dWq += gh @ _activation(z[t]).T  # a_t, recomputed from the cache
            dUq += gh @ xk[t].T
            db += gh
            if input_grad:
                dx[t] = UqT @ gh
            dz = (WqT @ gh) * _activation_grad(z[t])
            gh = (binary.standardize_backward(dz, z[t], sigma[t], 0) if cfg.standardize
                  else dz)
            gh[np.abs(gh) < _FLUSH] = 0
        grads = {"b": db.sum(axis=1), "c": dc}
        grads.update(self.W.backward(params, dWq))
        grads.update(self.U.backward(params, dUq))
        grads.update(self.V.backward(params, dVq))
        out = {name: grads[name] for name in params}
        if input_grad:
            out["x"] = dx.transpose(2, 0, 1)  # (B, T, d_in)
        return out

    # ------------------------------------------------------------------ size

    def size(self):
        """Storage: the codes of ``W``, ``U``, ``V`` at their quantizer's width (one bit per
        entry for SiMaN), float32 ``b``, ``c`` and the scales (``alpha``: float32 per row).
        The float32 reference has dense full-precision matrices."""
        cfg = self.config
        n, d_in, d_out = cfg.hidden_size, cfg.input_size, cfg.output_size
        bits = {"W": self.W.code_bits(), "U": self.U.code_bits(), "V": self.V.code_bits(),
                "b": FLOAT_BITS * n, "c": FLOAT_BITS * d_out,
                "alpha": sum(weight.scale_bits() for weight in self._weights)}
        specs = self.param_specs()
        return ModelSize(parameters=protocol.param_count(specs),
                         trainable=protocol.param_count(specs, trainable_only=True),
                         bits=bits, float32_parameters=n * n + n * d_in + d_out * n + n + d_out)

    def describe(self):
        return {"name": self.name, "config": self.config.to_dict()}
