"""A stack of recurrent cell layers, with structured and shared weight matrices per layer.

Layer ``l`` (:class:`hadamnp.models.cells.CellLayer`) reads the hidden states of layer
``l - 1`` (layer 0 reads the inputs)::

    H^0 = cell_0(x),   H^l = cell_l(H^{l-1}),   l = 1 .. L-1;   the readout reads H^{L-1}

Backpropagation through time runs through the whole stack: the top layer's BPTT gives the
gradient of its inputs (``backward(..., input_grad=True)``), which is the ``dL/dH`` of the
layer below, and so on down to layer 0 (which returns ``dL/dx`` when asked).

Parameter names: a one-layer stack keeps the layer's own names (``W_xi``, ``W_hi``, ``b_i``,
...); with ``L > 1`` layers every name of layer ``l`` is prefixed ``l<l>.`` (``l0.W_hi``,
``l1.b_f``).

Which matrices are structured
    ``param_in`` and ``param_rec`` give the parametrization of the input and the recurrent
    gate matrices of every layer, one spec for all layers or one per layer: the paper's
    hybrid (Lu, Sindhwani, Sainath 2016) is Toeplitz-like bottom layers and low-rank top
    layers, e.g. ``param_rec = ["ldr:4", "ldr:4", "lowrank:32"]``.

Shared low-rank factors (``share``)
    Low-rank matrices that read the same vector may share their right factor, a
    *projection* ``P`` (``W = A P``), so that they all read ``P v``:

    ============  ==========================================================================
    ``none``      every low-rank matrix has its own ``A``, ``B``
    ``gates``     the gates of one layer share one projection per vector read: ``P_x`` for
                  the input matrices ``W_x<g>``, ``P_h`` for the recurrent ``W_h<g>``
                  (the stacked gate matrix ``[W_i; W_f; W_g; W_o] = Z P`` of the spec)
    ``layers``    as ``gates``, and the recurrent matrices of layer ``l`` and the input
                  matrices of layer ``l + 1`` -- which both read ``h^l`` -- share the one
                  projection ``l<l>.P_h`` (the construction of an LSTM with a recurrent
                  projection layer); they need the same rank
    ============  ==========================================================================

    Only low-rank matrices share (a dense or Toeplitz-like matrix keeps its parameters).
    A shared projection is one parameter: every matrix reading it adds its gradient, it is
    initialised once from the truncated SVD of all its readers' initial matrices stacked
    (:func:`hadamnp.models.structured.init_shared`) and stored once.
"""

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.models.cells import CellLayer
from hadamnp.models.structured import LowRank
from hadamnp.models.weights import accumulate, get_parametrization, storage_bits

__all__ = ["SHARING", "CellStack", "layer_specs"]

SHARING = ("none", "gates", "layers")


def layer_specs(value, num_layers, option):
    """Per-layer parametrization specs of option ``option``: one spec for every layer, or a
    list of ``num_layers`` specs. Returns a tuple of ``num_layers`` canonical specs.

    Raises
    ------
    ConfigError naming ``option``: a list of the wrong length, a non-string, an unknown
    parametrization or bad arguments.
    """
    from hadamnp.models.weights import parametrization_spec

    specs = [value] * num_layers if isinstance(value, str) else value
    if not isinstance(specs, (list, tuple)) or len(specs) != num_layers \
            or not all(isinstance(s, str) for s in specs):
        raise ConfigError(f"{option} must be a parametrization spec (e.g. 'ldr:2') or a list "
                          f"of {num_layers} (one per layer), got {value!r}")
    out = []
    for spec in specs:
        try:
            out.append(parametrization_spec(get_parametrization(spec)))
        except ConfigError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    return tuple(out)


def _prefix(layer, num_layers):
    return "" if num_layers == 1 else f"l{layer}."


def _rank(spec):
    parametrization = get_parametrization(spec)
    return parametrization.rank if isinstance(parametrization, LowRank) else None


def _shared_names(param_in, param_rec, share):
    """``[(share_in, share_rec)]`` per layer: the projection names of the low-rank input and
    recurrent matrices (``None``: not shared)."""
    L = len(param_in)
    names = []
    for layer in range(L):
        prefix = _prefix(layer, L)
        share_in = share_rec = None
        if share != "none":
            if _rank(param_in[layer]):
                share_in = f"{prefix}P_x"
            if _rank(param_rec[layer]):
                share_rec = f"{prefix}P_h"
        names.append([share_in, share_rec])
    if share == "layers":
        for layer in range(L - 1):
            rec, nxt = _rank(param_rec[layer]), _rank(param_in[layer + 1])
            if rec and nxt:
                if rec != nxt:
                    raise ConfigError(
                        f"share = 'layers': the recurrent matrices of layer {layer} "
                        f"({param_rec[layer]}) and the input matrices of layer {layer + 1} "
                        f"({param_in[layer + 1]}) read the same h and share one projection: "
                        f"give them one rank (param_rec, param_in)")
                names[layer + 1][0] = names[layer][1]
    return names


class CellStack:
    """``num_layers`` cell layers of one type, with the interface of
    :class:`hadamnp.models.cells.CellLayer` (see the module docstring).

    Parameters
    ----------
    cell : {"rnn", "gru", "lstm"}
    input_size, hidden_size : int
    num_layers : int >= 1
    param_in, param_rec : tuple of ``num_layers`` parametrization specs
        (see :func:`layer_specs`)
    share : {"none", "gates", "layers"}
    **layer_options
        Passed to every :class:`CellLayer`: ``quant_in``, ``quant_rec``, ``quant_bias``,
        ``peepholes``, ``clip_shadow``, ``kernels``.
    """

    def __init__(self, cell, input_size, hidden_size, num_layers=1, *, param_in=("dense",),
                 param_rec=("dense",), share="none", **layer_options):
        if share not in SHARING:
            raise ConfigError(f"unknown share {share!r}; choose one of {', '.join(SHARING)}")
        if len(param_in) != num_layers or len(param_rec) != num_layers:
            raise ConfigError(f"param_in and param_rec need {num_layers} specs, one per layer")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.layers = []
        for layer, (share_in, share_rec) in enumerate(_shared_names(param_in, param_rec,
                                                                    share)):
            try:
                self.layers.append(CellLayer(
                    cell, input_size if layer == 0 else hidden_size, hidden_size,
                    param_in=param_in[layer], param_rec=param_rec[layer], share_in=share_in,
                    share_rec=share_rec, prefix=_prefix(layer, num_layers), depth=2 * layer,
                    **layer_options))
            except ConfigError as exc:
                raise ConfigError(f"{exc}" if num_layers == 1
                                  else f"layer {layer}: {exc}") from None
        self.groups = {}
        for w in self.weight_objects:
            if w.shared:
                self.groups.setdefault(w.shared["B"], []).append(w)

    @property
    def weight_objects(self):
        """Every Weight of every layer, bottom layer first."""
        return [w for layer in self.layers for w in layer.weight_objects]

    @property
    def matrices(self):
        """The gate matrices (Weights) of every layer, bottom layer first."""
        return [w for layer in self.layers for w in layer.Wx + layer.Wh]

    def param_specs(self):
        specs = {}
        for layer in self.layers:
            specs.update(layer.param_specs())
        return specs

    def init(self, rng, dtype):
        """Initial parameters, layer by layer (see :meth:`CellLayer.init`); a shared
        projection is drawn with its whole group when its first reader is met."""
        params = {}
        for layer in self.layers:
            layer.init(rng, dtype, params, self.groups)
        return {name: params[name] for name in self.param_specs()}

    def weights(self, params, rng=None):
        out = {}
        for layer in self.layers:
            out.update(layer.weights(params, rng))
        return out

    def state_buffer(self, batch, seq_len, dtype):
        """One :meth:`CellLayer.state_buffer` per layer."""
        return [layer.state_buffer(batch, seq_len, dtype) for layer in self.layers]

    def forward(self, params, x, *, rng=None, out=None):
        """Run the stack on ``x`` (T, B, d_in); return the top layer's ``H`` (T, B, n) and
        the cache. Stochastic quantizers draw layer by layer, bottom first."""
        caches = []
        H = x
        for k, layer in enumerate(self.layers):
            H, cache = layer.forward(params, H, rng=rng, out=None if out is None else out[k])
            caches.append(cache)
        weights = {key: value for cache in caches for key, value in cache["weights"].items()}
        return H, {"layers": caches, "states": self._states(caches), "h": H,
                   "weights": weights}

    def _states(self, caches):
        if self.num_layers == 1:
            return dict(caches[0]["states"])
        return {f"{_prefix(k, self.num_layers)}{name}": array
                for k, cache in enumerate(caches) for name, array in cache["states"].items()}

    def backward(self, params, cache, dH, *, input_grad=False):
        """BPTT through the stack: ``dH`` (T or 1, B, n) of the top layer's states; each
        layer's input gradient is the ``dL/dH`` of the layer below. Gradients of a shared
        projection are summed over its readers."""
        grads = {}
        for k in range(self.num_layers - 1, -1, -1):
            g = self.layers[k].backward(params, cache["layers"][k], dH,
                                        input_grad=input_grad or k > 0)
            dH = g.pop("x", None)
            accumulate(grads, g)
        if input_grad:
            grads["x"] = dH
        return grads

    def code_bits(self):
        """Deployed bits summed over the layers (``W_x``, ``W_h``, ``b``, ``p``,
        ``scales``), plus ``P``: the shared projections, once each (float32)."""
        bits = {}
        for layer in self.layers:
            for key, value in layer.code_bits().items():
                bits[key] = bits.get(key, 0) + value
        weights = self.weight_objects
        shared = storage_bits(weights) - sum(w.code_bits() for w in weights)
        if shared:
            bits["P"] = shared
        return bits

    def float32_values(self):
        """Values of the float32 reference stack: every gate matrix and bias dense, the
        peepholes."""
        return (sum(int(np.prod(w.shape)) for w in self.weight_objects)
                + sum(len(layer.p) * self.hidden_size for layer in self.layers))
