"""Recurrent cell layers (vanilla RNN, GRU, LSTM) built from quantizable gate matrices.

A :class:`CellLayer` maps an input sequence ``x`` (T, B, d_in) to its hidden-state sequence
``H`` (T, B, n), and its backward pass maps ``dL/dH`` to the gradients of its parameters
(and ``dL/dx``). It knows nothing of readouts or losses, so layers stack: the input
gradient of one is the ``dL/dH`` of the layer below. Equations: see
:mod:`hadamnp.reference.cells` (gate order rnn: one gate; gru: r, u, c; lstm: i, f, g, o).

Every matrix and bias is a :class:`~hadamnp.models.weights.Weight`, one per gate::

    W_x<g> (n, d_in)   input weights        quant_in,   W0 = sqrt(6/(d_in + n))
    W_h<g> (n, n)      recurrent weights    quant_rec,  W0 = sqrt(6/(2n))
    b_<g>  (n,)        gate bias            quant_bias, W0 = sqrt(6/(d_in + n))

(``<g>`` is the gate letter; the vanilla RNN's are ``W_x``, ``W_h``, ``b``), so a quantizer
or a weight parametrization applies to each gate matrix separately. ``W0`` is Ott et al.'s
Glorot bound: the scale of the ternary quantizers (bound into the quantizer when its spec
leaves ``W0`` unset), the initialisation range of the matrices and the clipping bound of
the latent ("shadow") values, declared as ``ParamSpec.bound``. Quantized parameters also
declare ``ParamSpec.clip`` (unless ``clip_shadow=False``): the training loop then clips them
to ``[-W0, W0]`` after every update, as BinaryConnect does. The LSTM's optional peephole
vectors ``p_i``, ``p_f``, ``p_o`` (n,) stay in full precision.

The forward pass quantizes each weight once (stochastic quantizers draw from ``rng`` in the
order of :meth:`CellLayer.param_specs`), stacks the gate matrices into ``W_x`` (G n, d_in),
``W_h`` (G n, n) and ``b`` (G n,) and runs the sequence kernel
(:mod:`hadamnp.kernels.cells`, or its NumPy twin): one ``(B, n) x (n, G n)`` product per
step for all gates. The backward pass splits the stacked gradients back per gate and runs
each through its weight's surrogate gradient and parametrization.
"""

import dataclasses

import numpy as np

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models.lowprec_quantizers import glorot_bound
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import get_quantizer
from hadamnp.models.structured import init_shared
from hadamnp.models.weights import Weight, accumulate

__all__ = ["CELLS", "CellLayer", "bind_scale"]

# cell -> gate letters, in the stacking order of the kernels
CELLS = {"rnn": ("",), "gru": ("r", "u", "c"), "lstm": ("i", "f", "g", "o")}
PEEPHOLES = ("i", "f", "o")


def bind_scale(spec, W0, option):
    """The quantizer of ``spec`` with its ``W0`` set to this matrix's Glorot bound when the
    spec leaves it unset (quantizers without ``W0`` are returned as they are)."""
    try:
        quantizer = get_quantizer(spec)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if getattr(quantizer, "W0", "absent") is None:
        quantizer = dataclasses.replace(quantizer, W0=float(W0))
    return quantizer


def _uniform(bound):
    def init(rng, shape, dtype):
        return rng.uniform(-bound, bound, size=shape).astype(dtype)
    return init


class CellLayer:
    """One recurrent layer of ``cell`` type (see the module docstring).

    Parameters
    ----------
    cell : {"rnn", "gru", "lstm"}
    input_size, hidden_size : int
        ``d_in`` and ``n``.
    quant_in, quant_rec, quant_bias : str
        Quantizer specs of the input matrices, recurrent matrices and gate biases.
    parametrization : str
        Weight parametrization of every gate matrix (``"dense"``).
    param_in, param_rec : str, optional
        Parametrizations of the input and of the recurrent gate matrices (default:
        ``parametrization``), e.g. ``"ldr:2"``, ``"lowrank:16"``
        (:mod:`hadamnp.models.structured`).
    share_in, share_rec : str, optional
        Name of a projection shared by the input (resp. recurrent) gate matrices, which
        must then be low-rank: their right factor ``B`` is that one parameter
        (``W_g = A_g P``); the layer stack may give the same name to the next layer's input
        matrices (:mod:`hadamnp.models.stack`).
    peepholes : bool
        LSTM peephole connections.
    clip_shadow : bool
        Declare the quantized parameters as always clipped to ``[-W0, W0]``.
    prefix : str
        Prepended to every parameter name (distinct names for stacked layers).
    depth : int
        Layer depth (``ParamSpec.depth``) of the input matrices ``W_x<g>``; the recurrent
        matrices ``W_h<g>`` are one deeper (the order OIALR uses, input to output).
    kernels : {"numba", "reference"}
    """

    def __init__(self, cell, input_size, hidden_size, *, quant_in="none", quant_rec="none",
                 quant_bias="none", parametrization="dense", param_in=None, param_rec=None,
                 share_in=None, share_rec=None, peepholes=False, clip_shadow=True, prefix="",
                 depth=0, kernels="numba"):
        if cell not in CELLS:
            raise ConfigError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        if peepholes and cell != "lstm":
            raise ConfigError(f"peepholes apply to the lstm cell only, not {cell!r}")
        if kernels == "numba":
            from hadamnp.kernels import cells as impl
        elif kernels == "reference":
            from hadamnp.reference import cells as impl
        else:
            raise ConfigError(f"unknown kernels {kernels!r}; choose 'numba' or 'reference'")
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.peepholes, self.prefix = bool(peepholes), prefix
        self._forward = getattr(impl, f"{cell}_forward")
        self._backward = getattr(impl, f"{cell}_backward")
        n, d_in = hidden_size, input_size
        self.W0_in, self.W0_rec = glorot_bound(d_in, n), glorot_bound(n, n)
        bias_bound = 1 / np.sqrt(n)

        self.clipped = set()  # names of the weights whose latent values are always clipped

        # role None: "binary" for a one-bit quantizer, else "weight" (models/weights.py)
        def weight(name, shape, spec, option, W0, init, role=None, param="dense",
                   param_option=None, share=None, depth=None):
            quantizer = bind_scale(spec, W0, option)
            if clip_shadow and quantizer.name != "none":
                self.clipped.add(prefix + name)
            shared = {"B": share} if share else None  # the low-rank right factor
            try:
                return Weight(prefix + name, shape, init, quantizer=quantizer,
                              parametrization=param, role=role, bound=W0, depth=depth,
                              shared=shared)
            except ConfigError as exc:
                raise ConfigError(f"{param_option}: {exc}") from None

        gates = CELLS[cell]
        param_in = parametrization if param_in is None else param_in
        param_rec = parametrization if param_rec is None else param_rec
        self.Wx = [weight(f"W_x{g}", (n, d_in), quant_in, "quant_in", self.W0_in,
                          _uniform(self.W0_in), param=param_in, param_option="param_in",
                          share=share_in, depth=depth) for g in gates]
        self.Wh = [weight(f"W_h{g}", (n, n), quant_rec, "quant_rec", self.W0_rec,
                          _uniform(self.W0_rec), param=param_rec, param_option="param_rec",
                          share=share_rec, depth=depth + 1) for g in gates]
        self.b = [weight("b" + (f"_{g}" if g else ""), (n,), quant_bias, "quant_bias",
                         self.W0_in, _uniform(bias_bound), role="bias") for g in gates]
        self.p = [f"{prefix}p_{g}" for g in PEEPHOLES] if self.peepholes else []
        self._bias_bound = bias_bound

    @property
    def weight_objects(self):
        """Every :class:`Weight` of the layer, in parameter order (gate by gate)."""
        return [w for trio in zip(self.Wx, self.Wh, self.b) for w in trio]

    def param_specs(self):
        """``{name: ParamSpec}`` in initialisation order: per gate ``W_x<g>``, ``W_h<g>``,
        ``b_<g>``; then the peepholes."""
        specs = {}
        for w in self.weight_objects:
            for name, spec in w.param_specs().items():
                clip = w.name in self.clipped and spec.bound is not None
                specs[name] = dataclasses.replace(spec, clip=clip)
        specs.update({name: ParamSpec((self.hidden_size,), "weight") for name in self.p})
        return specs

    def init(self, rng, dtype, params=None, groups=None):
        """Initial parameters: matrices ``U(-W0, W0)`` (Glorot uniform), biases and
        peepholes ``U(-1/sqrt(n), 1/sqrt(n))`` (PyTorch's defaults), in the order of
        :meth:`param_specs`; a quantized bias is clipped into ``[-W0, W0]``. Structured
        matrices project that Glorot draw (:mod:`hadamnp.models.structured`).

        Parameters
        ----------
        rng : numpy.random.Generator
        dtype : str
        params : dict, optional
            Parameters already initialised (added to and returned): a weight whose
            parameters are all there is skipped (a shared group initialised earlier).
        groups : dict shared name -> list of Weight, optional
            The weights reading each shared projection (possibly in other layers): the
            first weight of a group met initialises the whole group
            (:func:`hadamnp.models.structured.init_shared`).
        """
        params = {} if params is None else params
        for w in self.weight_objects:
            if all(name in params for name in w.param_specs()):
                continue
            if w.shared:
                params.update(init_shared(rng, groups[w.shared["B"]], dtype))
                continue
            values = w.init(rng, dtype)
            if w.name in self.clipped:  # the dense shadow value only (not factors)
                values = {k: np.clip(v, -w.bound, w.bound).astype(dtype) if k == w.name
                          else v for k, v in values.items()}
            params.update(values)
        for name in self.p:
            params[name] = _uniform(self._bias_bound)(rng, (self.hidden_size,), dtype)
        return params

    def weights(self, params, rng=None):
        """Effective (quantized) weights by name: ``<weight>_q`` for every weight, and
        the peepholes under their own names."""
        out = {f"{w.name}_q": w.effective(params, rng) for w in self.weight_objects}
        out.update({name: params[name] for name in self.p})
        return out

    def state_buffer(self, batch, seq_len, dtype):
        """Reusable arrays for :meth:`forward`'s ``out``: the stored states and the
        backward workspace ``work`` (:func:`hadamnp.kernels.cells.workspace_shape`)."""
        from hadamnp.kernels.cells import state_shapes, workspace_shape

        n = self.hidden_size
        shapes = state_shapes(self.cell, seq_len, batch, n)
        shapes["work"] = workspace_shape(self.cell, seq_len, batch, n)
        return {name: np.empty(shape, dtype) for name, shape in shapes.items()}

    def _stacked(self, eff):
        stack = [np.concatenate([eff[f"{w.name}_q"] for w in ws]) for ws in
                 (self.Wx, self.Wh, self.b)]
        p = np.stack([eff[name] for name in self.p]) if self.p else None
        return stack, p

    def forward(self, params, x, *, rng=None, out=None):
        """Run the layer.

        Parameters
        ----------
        params : dict of parameters (at least this layer's)
        x : (T, B, d_in) inputs, in the parameters' dtype
        rng : numpy.random.Generator or None
            Draws of stochastic quantizers (training); None: deterministic.
        out : dict from :meth:`state_buffer`, optional

        Returns
        -------
        H : (T, B, n) hidden states (part of the cache: valid until ``out`` is reused)
        cache : dict for :meth:`backward`
        """
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ShapeError(f"layer input has shape {x.shape}, expected (T, B, "
                             f"{self.input_size})")
        eff = self.weights(params, rng)
        (Wx, Wh, b), p = self._stacked(eff)
        args = (Wx, Wh, b, p) if self.cell == "lstm" else (Wx, Wh, b)
        states = self._forward(*args, x, out=out)
        cache = {"x": x, "states": states, "Wx": Wx, "Wh": Wh, "p": p, "weights": eff,
                 "work": None if out is None else out.get("work")}
        return states["h"], cache

    def backward(self, params, cache, dH, *, input_grad=False):
        """Backpropagation through time of the layer.

        Parameters
        ----------
        params : dict, as given to :meth:`forward`
        cache : dict from :meth:`forward`
        dH : (T, B, n), or (1, B, n) when only the last state is scored
        input_grad : bool, also return ``"x"``: ``dL/dx`` (T, B, d_in)

        Returns
        -------
        dict of gradients of this layer's parameters (and ``x``).
        """
        x = cache["x"]
        if self.cell == "lstm":
            g = self._backward(cache["Wx"], cache["Wh"], cache["p"], x, cache["states"], dH,
                               input_grad=input_grad, work=cache["work"])
        else:
            g = self._backward(cache["Wx"], cache["Wh"], x, cache["states"], dH,
                               input_grad=input_grad, work=cache["work"])
        n = self.hidden_size
        grads = {}
        for key, ws in (("Wx", self.Wx), ("Wh", self.Wh), ("b", self.b)):
            for k, w in enumerate(ws):
                accumulate(grads, w.backward(params, g[key][k * n:(k + 1) * n]))
        grads.update({name: g["p"][k] for k, name in enumerate(self.p)})
        if input_grad:
            grads["x"] = g["x"]
        return grads

    def code_bits(self):
        """Deployed bits: ``{"W_x": .., "W_h": .., "b": .., "p": .., "scales": ..}``
        (shared projections excluded: the stack counts each once)."""
        bits = {key: sum(w.code_bits() for w in ws)
                for key, ws in (("W_x", self.Wx), ("W_h", self.Wh), ("b", self.b))}
        if self.p:
            bits["p"] = 32 * len(self.p) * self.hidden_size
        bits["scales"] = sum(w.scale_bits() for w in self.weight_objects)
        return bits
