"""A token embedding in front of any registered model.

Token tasks (``.npz`` ``tokens``, the byte-level text task) give integer ids ``x`` (B, T).
Without an embedding they are fed one-hot (:func:`hadamnp.runs.plumbing.model_inputs`);
with one, :class:`Embedded` wraps any model of the registry whose ``input_size`` is the
embedding width ``d``::

    E_q   = Q(E)                         E (V, d), role "embedding"; Q any quantizer spec
    e_t   = E_q[x_t]                     (B, T, d); the zero vector where x_t = padding_id
    y     = inner.forward(params, e)     the wrapped model, unchanged

    de    = inner.backward(..., input_grad=True)["x"]           (B, T, d)
    dE_q  = sum over (b, t) with x_bt != padding_id of de_bt into row x_bt
    dE    = Q.backward(E, dE_q)          the quantizer's surrogate gradient

Initialisation: ``E ~ N(0, 1/d)``, so a row has expected squared norm 1 like the one-hot
vector it replaces; the padding row is zero (and stays unused: it never receives a
gradient and the lookup never reads it).

The wrapper follows the model protocol itself, so the loop, checkpoints, golden files and
``hadamnp info`` need nothing new. Its description is the wrapped model's description plus
an ``"embedding"`` record::

    {"name": "hadamrnn", "config": {... "input_size": d ...},
     "embedding": {"vocab_size": V, "embedding_dim": d, "quantizer": "uniform:4",
                   "padding_id": 0}}

and :func:`hadamnp.models.registry.model_from_description` rebuilds the same wrapped model
from it (:func:`embedded_from_description`). Parameters are the wrapped model's plus ``E``.
"""

from dataclasses import asdict, dataclass

import numpy as np

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models import protocol
from hadamnp.models.quantizers import get_quantizer, quantizer_spec
from hadamnp.models.size import ModelSize
from hadamnp.models.weights import Weight, weight_diagnostics

__all__ = ["EmbeddingConfig", "EmbeddedConfig", "Embedded", "embed",
           "embedded_from_description", "TABLE"]

TABLE = "E"  # parameter name of the embedding table


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding table of an :class:`Embedded` model (validated on construction).

    Attributes
    ----------
    vocab_size : int
        ``V``: token ids are ``0 .. V-1``.
    embedding_dim : int
        ``d``, the input size of the wrapped model.
    quantizer : str
        Quantizer spec of the table (``"none"``, ``"uniform:4"``, any registered one); the
        option ``quant_embedding`` of a run.
    padding_id : int or None
        Id embedded as the zero vector (``0`` for ``.npz`` tokens); None: every id is a
        token (text bytes).
    """

    vocab_size: int
    embedding_dim: int
    quantizer: str = "none"
    padding_id: int | None = 0

    def __post_init__(self):
        object.__setattr__(self, "vocab_size", _positive_int(self.vocab_size, "vocab_size"))
        object.__setattr__(self, "embedding_dim",
                           _positive_int(self.embedding_dim, "embedding_dim"))
        try:
            canonical = quantizer_spec(get_quantizer(self.quantizer))
        except ConfigError as exc:
            raise ConfigError(f"quant_embedding: {exc}") from None
        object.__setattr__(self, "quantizer", canonical)
        pad = self.padding_id
        if pad is not None and (isinstance(pad, bool) or not isinstance(pad, (int, np.integer))
                                or not 0 <= pad < self.vocab_size):
            raise ConfigError(f"padding_id must be None or an id in 0..{self.vocab_size - 1}, "
                              f"got {pad!r}")
        if pad is not None:
            object.__setattr__(self, "padding_id", int(pad))

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class EmbeddedConfig:
    """What the protocol's ``config`` provides for an :class:`Embedded` model.

    ``input_size`` is the vocabulary size; the other sizes and the dtype are the wrapped
    model's. ``to_dict()`` gives both parts (the model is rebuilt from its description,
    :func:`embedded_from_description`).
    """

    embedding: EmbeddingConfig
    inner: object

    @property
    def input_size(self):
        return self.embedding.vocab_size

    @property
    def hidden_size(self):
        return self.inner.hidden_size

    @property
    def output_size(self):
        return self.inner.output_size

    @property
    def many_to_many(self):
        return self.inner.many_to_many

    @property
    def dtype(self):
        return self.inner.dtype

    def to_dict(self):
        return {"embedding": self.embedding.to_dict(), "inner": self.inner.to_dict()}


def embed(table, ids, padding_id):
    """The embedding lookup ``table[ids]`` with padding positions set to zero.

    Parameters
    ----------
    table : (V, d) float array (the effective, quantized table)
    ids : (B, T) int64 token ids in ``0 .. V-1``
    padding_id : int or None

    Returns
    -------
    (B, T, d) array of ``table``'s dtype (a new array)
    """
    out = table[ids]
    if padding_id is not None:
        out[ids == padding_id] = 0
    return out


class Embedded:
    """Token ids -> embedding table -> any model (see the module docstring).

    Parameters
    ----------
    inner : a model (:class:`hadamnp.models.protocol.Model`) whose ``input_size`` is
        ``embedding.embedding_dim`` and whose ``backward`` supports ``input_grad=True``
    embedding : EmbeddingConfig
    """

    input_kind = "tokens"  # forward takes (B, T) integer ids, not (B, T, d_in) features

    def __init__(self, inner, embedding):
        if not isinstance(embedding, EmbeddingConfig):
            raise ConfigError(f"embedding must be an EmbeddingConfig, got "
                              f"{type(embedding).__name__}")
        if inner.config.input_size != embedding.embedding_dim:
            raise ConfigError(f"the wrapped model's input_size {inner.config.input_size} must "
                              f"equal embedding_dim {embedding.embedding_dim}")
        if TABLE in inner.param_specs():
            raise ConfigError(f"the wrapped model already has a parameter named {TABLE!r}")
        self.inner = inner
        self.config = EmbeddedConfig(embedding, inner.config)
        d, pad = embedding.embedding_dim, embedding.padding_id

        def init_table(rng, shape, dtype):
            table = rng.standard_normal(shape) / np.sqrt(d)
            if pad is not None:
                table[pad] = 0
            return table.astype(dtype)

        self.table = Weight(TABLE, (embedding.vocab_size, d), init_table,
                            quantizer=embedding.quantizer, role="embedding")

    @property
    def name(self):
        return self.inner.describe()["name"]

    def _inner_params(self, params):
        return {name: value for name, value in params.items() if name != TABLE}

    def param_specs(self):
        """``E`` (V, d) (role ``embedding``), then the wrapped model's parameters."""
        return {**self.table.param_specs(), **self.inner.param_specs()}

    def init_params(self, rng):
        """``E ~ N(0, 1/d)`` (padding row zero) drawn first, then the wrapped model's."""
        params = self.table.init(rng, self.config.dtype)
        params.update(self.inner.init_params(rng))
        return params

    def check_params(self, params):
        protocol.check_params(self.param_specs(), params, self.config.dtype)

    def state_buffer(self, batch, seq_len):
        return self.inner.state_buffer(batch, seq_len)

    def tokens(self, x):
        """``x`` checked as ``(B, T)`` integer ids in ``0 .. V-1`` (int64)."""
        x = np.asarray(x)
        if x.dtype.kind not in "iu":
            raise TypeError(f"an embedding model takes integer token ids, got dtype {x.dtype}")
        if x.ndim != 2 or 0 in x.shape:
            raise ShapeError(f"x must have shape (B, T) (token ids) with B, T >= 1, got "
                             f"shape {x.shape}")
        vocab = self.config.embedding.vocab_size
        if x.min() < 0 or x.max() >= vocab:
            raise ConfigError(f"token ids must lie in 0..{vocab - 1} (vocab_size), got range "
                              f"[{x.min()}, {x.max()}]")
        return x.astype(np.int64, copy=False)

    def forward(self, params, x, *, states_out=None, rng=None):
        """Embed the ids and run the wrapped model.

        Parameters
        ----------
        params : dict, ``E`` and the wrapped model's parameters
        x : (B, T) integer token ids
        states_out, rng : as the wrapped model's (``rng`` also draws a stochastic
            quantizer of the table, before the wrapped model's draws)

        Returns
        -------
        outputs : as the wrapped model's
        cache : dict (``ids``, ``E_q``, ``embedded`` (B, T, d), the wrapped model's cache)
        """
        self.check_params(params)
        ids = self.tokens(x)
        table = self.table.effective(params, rng)
        embedded = embed(table, ids, self.config.embedding.padding_id)
        outputs, cache = self.inner.forward(self._inner_params(params), embedded,
                                            states_out=states_out, rng=rng)
        return outputs, {"ids": ids, "E_q": table, "embedded": embedded, "inner": cache}

    def backward(self, params, cache, doutputs, *, input_grad=False):
        """Gradients of ``E`` (scatter-add of the wrapped model's input gradient, through
        the table's quantizer) and of the wrapped model's parameters.

        Raises
        ------
        NotImplementedError
            With ``input_grad``: token ids have no gradient.
        ConfigError
            The wrapped model cannot return its input gradient.
        """
        if input_grad:
            raise NotImplementedError("an embedding model's inputs are token ids; they have "
                                      "no gradient (input_grad=True)")
        try:
            grads = self.inner.backward(self._inner_params(params), cache["inner"], doutputs,
                                        input_grad=True)
        except NotImplementedError as exc:
            raise ConfigError(f"model {self.name!r} cannot sit behind an embedding: its "
                              f"backward gives no input gradient ({exc})") from None
        dembedded = grads.pop("x")
        ids, pad = cache["ids"], self.config.embedding.padding_id
        dtable = np.zeros_like(cache["E_q"])
        if pad is None:
            np.add.at(dtable, ids.ravel(), dembedded.reshape(-1, dtable.shape[1]))
        else:
            keep = ids != pad
            np.add.at(dtable, ids[keep], dembedded[keep])
        grads.update(self.table.backward(params, dtable))
        return {name: grads[name] for name in params}

    def project_params(self, params, step):
        """Training-time rewrites (:mod:`hadamnp.models.protocol`): the table's, then the
        wrapped model's if it has them."""
        out = self.table.project(params, step)
        inner = getattr(self.inner, "project_params", None)
        if inner is not None:
            out.update(inner(self._inner_params(params), step))
        return out

    def diagnostics(self, params, cache=None, grads=None):
        """Code statistics of a binarized table (``ones.E``...), then the wrapped model's."""
        out = weight_diagnostics([self.table], params)
        inner = getattr(self.inner, "diagnostics", None)
        if inner is not None:
            out.update(inner(self._inner_params(params)))
        return out

    def weights(self, params):
        """``E_q`` (V, d), the effective table, then the wrapped model's weights."""
        return {f"{TABLE}_q": self.table.effective(params),
                **self.inner.weights(self._inner_params(params))}

    def states(self, cache):
        """``embedded`` (B, T, d), the embedded inputs, then the wrapped model's states."""
        return {"embedded": cache["embedded"], **self.inner.states(cache["inner"])}

    def size(self):
        """The wrapped model's size plus the table: ``E`` at its quantizer's bit width
        (its scale added to ``alpha``); the float32 reference stores ``V d`` floats."""
        inner = self.inner.size()
        bits = {**inner.bits, TABLE: self.table.code_bits()}
        if self.table.scale_bits():
            bits["alpha"] = bits.get("alpha", 0) + self.table.scale_bits()
        specs = self.param_specs()
        cfg = self.config.embedding
        return ModelSize(parameters=protocol.param_count(specs),
                         trainable=protocol.param_count(specs, trainable_only=True),
                         bits=bits,
                         float32_parameters=(inner.float32_parameters
                                             + cfg.vocab_size * cfg.embedding_dim))

    def describe(self):
        """The wrapped model's description plus ``"embedding"`` (the table's configuration)."""
        return {**self.inner.describe(), "embedding": self.config.embedding.to_dict()}


def embedded_from_description(inner, record):
    """The :class:`Embedded` model of a description's ``"embedding"`` record around the
    already rebuilt ``inner`` model."""
    if not isinstance(record, dict):
        raise ConfigError(f"the embedding record of a model description must be a table, got "
                          f"{record!r}")
    try:
        return Embedded(inner, EmbeddingConfig(**record))
    except TypeError as exc:
        raise ConfigError(f"bad embedding record {record!r}: {exc}") from None
