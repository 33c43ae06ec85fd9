"""The model registry: every family by name, and the one factory the rest of hadamnp uses.

The training loop, the CLI (``train``, ``info``, ``eval``, ``export``, ``golden``), the
size bookkeeping, golden files and deploy build models only through :func:`build_model`
and rebuild them from a stored description with :func:`model_from_description`; none of
them names a concrete class. Adding a family is new files plus one :func:`register_model`
line in :data:`_BUILTIN` (or a call from user code: a family registered at run time
trains, checkpoints and resumes like a built-in one within that process).

Options of a model are the fields of its configuration dataclass. Four of them are never
given by the user: ``input_size``, ``output_size`` and ``many_to_many`` come from the task,
``dtype`` from the run (:data:`RUN_OPTIONS`).
"""

import dataclasses
import difflib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

from hadamnp.errors import ConfigError, HadamnpError
from hadamnp.models.embedding import embedded_from_description
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.models.lowprec import GRUConfig, LowPrecisionRNN, LSTMConfig, RNNConfig

__all__ = ["ModelEntry", "RUN_OPTIONS", "register_model", "unregister_model", "model_entry",
           "model_names", "model_options", "build_config", "build_model",
           "model_from_description"]

# Options set by the task and the run, not by the user's model options.
RUN_OPTIONS = ("input_size", "output_size", "many_to_many", "dtype")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model family.

    Attributes
    ----------
    name : str
    model_class : callable ``model_class(config) -> Model``
    config_class : a dataclass whose fields are the model's options
    fixed : mapping of options this name pins (e.g. ``recurrence="hadamard"``); giving
        another value is an error
    complete : callable ``complete(options) -> options``, optional
        Fills defaults that depend on other options and checks rules of this name (e.g.
        ``block-hadamrnn``: ``block_size`` defaults to ``n/4`` and must be ``< n``).
    summary : str, one line for listings
    """

    name: str
    model_class: Callable
    config_class: type
    fixed: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    complete: Callable | None = None
    summary: str = ""

    @property
    def fields(self):
        return tuple(f.name for f in dataclasses.fields(self.config_class))


_REGISTRY = {}


def register_model(name, model_class, config_class, *, fixed=None, complete=None, summary="",
                   replace=False):
    """Register a model family under ``name``.

    Parameters
    ----------
    name : str
    model_class : callable ``model_class(config)`` returning an object that implements
        :class:`hadamnp.models.protocol.Model`
    config_class : frozen dataclass with at least the fields ``input_size``,
        ``hidden_size``, ``output_size``, ``many_to_many``, ``dtype`` and ``to_dict()``
    fixed, complete, summary : see :class:`ModelEntry`
    replace : bool
        Allow replacing an existing entry of that name.

    Returns
    -------
    ModelEntry
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigError(f"a model name must be a non-empty string, got {name!r}")
    if not dataclasses.is_dataclass(config_class):
        raise ConfigError(f"config_class of model {name!r} must be a dataclass")
    names = {f.name for f in dataclasses.fields(config_class)}
    missing = sorted((set(RUN_OPTIONS) | {"hidden_size"}) - names)
    if missing:
        raise ConfigError(f"config_class of model {name!r} lacks the fields {missing}")
    if name in _REGISTRY and not replace:
        raise ConfigError(f"a model named {name!r} is already registered")
    entry = ModelEntry(name, model_class, config_class, MappingProxyType(dict(fixed or {})),
                       complete, summary)
    _REGISTRY[name] = entry
    return entry


def unregister_model(name):
    """Remove a registered family (for tests and interactive sessions)."""
    model_entry(name)
    del _REGISTRY[name]


def model_names():
    """Registered model names, in registration order."""
    return tuple(_REGISTRY)


def model_entry(name):
    """The :class:`ModelEntry` of ``name``; a :class:`ConfigError` lists the known names."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; choose one of "
                          f"{', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def model_options(name):
    """The options a user may set for model ``name`` (config fields minus task/run/fixed)."""
    entry = model_entry(name)
    return tuple(f for f in entry.fields if f not in RUN_OPTIONS and f not in entry.fixed)


def build_config(name, **options):
    """The validated configuration of model ``name`` with ``options``.

    Raises
    ------
    ConfigError
        Unknown model or option (with a suggestion), a value contradicting what the name
        fixes, or an invalid value (from the configuration class).
    """
    entry = model_entry(name)
    for key in options:
        if key not in entry.fields:
            close = difflib.get_close_matches(str(key), entry.fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"model {name!r} has no option {key!r}{hint}; its options: "
                              f"{', '.join(model_options(name))}")
    for key, value in entry.fixed.items():
        if key in options and options[key] != value:
            raise ConfigError(f"model {name!r} has {key} = {value!r}, got {options[key]!r}")
    options = {**options, **entry.fixed}
    if entry.complete is not None:
        options = entry.complete(options)
    try:
        return entry.config_class(**options)
    except ConfigError:
        raise
    except (TypeError, HadamnpError) as exc:  # e.g. SizeError: one error type for options
        raise ConfigError(f"model {name!r}: {exc}") from None


def build_model(name, **options):
    """Build model ``name``: ``build_model("hadamrnn", input_size=1, output_size=10,
    hidden_size=128)``. See :func:`build_config`."""
    return model_entry(name).model_class(build_config(name, **options))


def model_from_description(description):
    """Rebuild a model from ``{"name": ..., "config": {...}}`` (``model.describe()``).

    A description with an ``"embedding"`` record (a token embedding in front of the model,
    :mod:`hadamnp.models.embedding`) rebuilds the wrapped model.
    """
    try:
        name, config = description["name"], description["config"]
    except (KeyError, TypeError):
        raise ConfigError(f"a model description needs 'name' and 'config', got "
                          f"{description!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration of model {name!r} must be a table")
    model = build_model(name, **config)
    if "embedding" in description:
        return embedded_from_description(model, description["embedding"])
    return model


# ------------------------------------------------------------------------------ built-ins

def _full_hadamard(options):
    n, m = options.get("hidden_size"), options.get("block_size")
    if m is not None and m != n:
        raise ConfigError(f"hadamrnn uses the full Hadamard matrix: block size must be n={n}, "
                          f"got {m} (use model 'block-hadamrnn')")
    return options


def _block_hadamard(options):
    n, m = options.get("hidden_size"), options.get("block_size")
    if not isinstance(n, int) or isinstance(n, bool):
        return options  # the configuration class reports the bad hidden size
    if n < 2:
        raise ConfigError(f"block-hadamrnn needs hidden_size >= 2, got {n}")
    if m is None:
        m = max(n // 4, 1)
    if isinstance(m, int) and m >= n:
        raise ConfigError(f"block-hadamrnn needs a block size smaller than n={n}, got {m} "
                          f"(block size n is model 'hadamrnn')")
    return {**options, "block_size": m}


_BUILTIN = (
    ("hadamrnn", HadamRNN, HadamRNNConfig, {"recurrence": "hadamard"}, _full_hadamard,
     "binary orthogonal recurrence W = diag(sign(u)) H / sqrt(n), k-bit U and V"),
    ("block-hadamrnn", HadamRNN, HadamRNNConfig, {"recurrence": "hadamard"}, _block_hadamard,
     "sparse ternary block-Hadamard recurrence (block size m < n, default n/4)"),
    ("dense", HadamRNN, HadamRNNConfig, {"recurrence": "dense"}, None,
     "dense recurrent W (full precision by default), the HadamRNN baseline"),
    ("rnn", LowPrecisionRNN, RNNConfig, {}, None,
     "vanilla tanh RNN, weights/biases quantized per group (Ott et al. quantizers)"),
    ("gru", LowPrecisionRNN, GRUConfig, {}, None,
     "GRU (Lasagne form), weights/biases quantized per group (Ott et al. quantizers)"),
    ("lstm", LowPrecisionRNN, LSTMConfig, {}, None,
     "LSTM (optional peepholes), weights/biases quantized per group (Ott et al.)"),
)
for _name, _model, _config, _fixed, _complete, _summary in _BUILTIN:
    register_model(_name, _model, _config, fixed=_fixed, complete=_complete, summary=_summary)
