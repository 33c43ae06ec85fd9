"""Run configuration: every option of a training run, in one immutable, validated record.

A run's configuration is resolved in layers, each overriding the one before::

    RunConfig defaults  <  preset  <  TOML file  <  explicit overrides (command line)

Presets (:data:`PRESETS`) carry the paper's hyperparameters (spec/hadamrnn.md, 1.b):

========  ======  ====  =====  ======  =====  ====  ====================================
preset    task    n     batch  epochs  lr     γ     seed
========  ======  ====  =====  ======  =====  ====  ====================================
copy      copy    128   128    10      1e-4   0.98  712 (L = 1000, CE over all steps)
smnist    smnist  512   64     100     1e-3   0.98  68
pmnist    pmnist  512   100    100     1e-3   0.98  8
quick     pmnist  128   100    3       1e-3   0.9   8 (500 steps/epoch; sign_lr_scale 0.1)
========  ======  ====  =====  ======  =====  ====  ====================================

Preset ``base`` is the :class:`RunConfig` defaults alone (what :func:`config_to_toml` pins).

All use Adam (β = 0.9/0.999, ε = 1e-8, no weight decay), StepLR stepped once per epoch, no
gradient clipping and 4-bit U and V. ``quick`` is the default when neither a preset nor a
task names one: a small HadamRNN trained on the shipped MNIST files for 1500 steps, about
a minute on two CPU cores (validation on 1000 images per epoch, test on the first 2000
test images). It lowers the sign learning rate (``sign_lr_scale = 0.1``), without which
the measured runs on pixel-by-pixel MNIST did not learn.

A TOML file holds the same keys as :class:`RunConfig` at top level (plus ``preset``);
any other key is a :class:`ConfigError` naming it.
"""

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from hadamnp._checks import is_power_of_two
from hadamnp.errors import ConfigError

TASKS = ("copy", "smnist", "pmnist", "npz")
MODELS = ("hadamrnn", "block-hadamrnn", "dense")
OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "float64")
STES = ("identity", "clipped")
MAX_BITS = 16


@dataclass(frozen=True)
class RunConfig:
    """All options of a training run (validated on construction).

    Attributes
    ----------
    task : {"copy", "smnist", "pmnist", "npz"}
    model : {"hadamrnn", "block-hadamrnn", "dense"}
        Binary Hadamard recurrence, block (sparse ternary) recurrence, or a dense
        full-precision ``W`` baseline.
    hidden : int
        Hidden size ``n``, a power of two.
    block : int or None
        Block size ``m`` of ``block-hadamrnn`` (power of two, ``m < n``); default ``n/4``.
    bits : int
        Bit width of ``Q(U)`` and ``Q(V)`` (0 = full precision), at most 16.
    nonlinear : bool
        relu inside the recurrence (ablation; the paper's recurrence is linear).
    ste : {"identity", "clipped"}
        Straight-through estimator of ``sign(u)``.
    dtype : {"float32", "float64"}
    optimizer : {"adam", "sgd"}
    lr, gamma : float
        Initial learning rate and StepLR factor per epoch (``0 < gamma <= 1``).
    sign_lr_scale : float
        Multiplier of the learning rate of the latent signs ``u`` (1 = the paper's recipe).
        A sign flip changes ``W`` discretely, and over hundreds of steps the whole
        trajectory; measured here, pixel-by-pixel MNIST does not learn at 1 and learns at
        0.1 (README, "Reproduction").
    momentum : float
        SGD momentum (SGD only).
    clip_grad_norm : float or None
        Clip the global gradient norm to this value.
    batch_size, epochs : int
    steps_per_epoch : int or None
        Cap on the batches of an epoch (the rest of the epoch is skipped).
    train_size : int or None
        Train on a fixed subset of this many sequences (MNIST/npz: drawn once from the
        seed; copy task: sequences per epoch, default 512000).
    eval_batch_size : int
    val_batches, test_batches : int or None
        Cap on the evaluation batches of the per-epoch validation / final test.
    seed : int
        Root of every random stream: data order and generation, initial parameters.
    copy_length : int
        Total copy-task sequence length ``L`` (10 symbols, ``L - 20`` blanks, marker, 9).
    data_dir : str or None
        MNIST directory (default: the shipped ``data/`` folder or ``$HADAMNP_DATA``).
    npz : str or None
        User ``.npz`` archive (task ``npz``).
    npz_val_fraction, npz_test_fraction : float or None
        Fractions of the ``.npz`` training arrays held out when it has no val/test split.
    checkpoint_every : int or None
        Also checkpoint every this many steps (a checkpoint is always written each epoch).
    log_every : int
        Write a per-step metrics line every this many steps.
    """

    task: str = "smnist"
    model: str = "hadamrnn"
    hidden: int = 128
    block: int | None = None
    bits: int = 4
    nonlinear: bool = False
    ste: str = "identity"
    dtype: str = "float32"
    optimizer: str = "adam"
    lr: float = 1e-3
    gamma: float = 0.98
    sign_lr_scale: float = 1.0
    momentum: float = 0.0
    clip_grad_norm: float | None = None
    batch_size: int = 64
    epochs: int = 100
    steps_per_epoch: int | None = None
    train_size: int | None = None
    eval_batch_size: int = 500
    val_batches: int | None = None
    test_batches: int | None = None
    seed: int = 68
    copy_length: int = 1000
    data_dir: str | None = None
    npz: str | None = None
    npz_val_fraction: float | None = None
    npz_test_fraction: float | None = None
    checkpoint_every: int | None = None
    log_every: int = 10

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        for name, allowed in (("task", TASKS), ("model", MODELS), ("optimizer", OPTIMIZERS),
                              ("dtype", DTYPES), ("ste", STES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; "
                                  f"choose one of {', '.join(allowed)}")
        for name in ("hidden", "batch_size", "epochs", "eval_batch_size", "log_every",
                     "steps_per_epoch", "train_size", "val_batches", "test_batches",
                     "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if not is_power_of_two(self.hidden):
            raise ConfigError(f"hidden must be a power of two (hidden size n), got {self.hidden}")
        self._check_block()
        if not 0 <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be in [0, {MAX_BITS}] (0 = full precision), "
                              f"got {self.bits}")
        for name in ("lr", "gamma", "sign_lr_scale", "momentum", "clip_grad_norm",
                     "npz_val_fraction",
                     "npz_test_fraction"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.sign_lr_scale <= 0:
            raise ConfigError(f"sign_lr_scale must be > 0, got {self.sign_lr_scale}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.momentum < 0:
            raise ConfigError(f"momentum must be >= 0, got {self.momentum}")
        if self.momentum != 0 and self.optimizer != "sgd":
            raise ConfigError(f"momentum applies to optimizer 'sgd' only, not {self.optimizer!r}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        if self.copy_length < 21:
            raise ConfigError(f"copy_length must be >= 21 (total length L: 10 symbols, "
                              f"blanks, marker, 9 outputs), got {self.copy_length}")
        if (self.task == "npz") != (self.npz is not None):
            raise ConfigError("task 'npz' needs the option npz (path of the archive)"
                              if self.task == "npz" else
                              f"option npz is for task 'npz' only, not {self.task!r}")
        for name in ("npz_val_fraction", "npz_test_fraction"):
            value = getattr(self, name)
            if value is not None and self.task != "npz":
                raise ConfigError(f"option {name} is for task 'npz' only")

    def _check_block(self):
        if self.model != "block-hadamrnn":
            if self.block is not None and self.block != self.hidden:
                raise ConfigError(f"block applies to model 'block-hadamrnn' only "
                                  f"(model is {self.model!r})")
            return
        if self.hidden < 2:
            raise ConfigError("block-hadamrnn needs hidden >= 2")
        if self.block is not None:
            if not is_power_of_two(self.block):
                raise ConfigError(f"block must be a power of two, got {self.block}")
            if self.block >= self.hidden:
                raise ConfigError(f"block must be smaller than hidden={self.hidden} "
                                  f"(block = hidden is model 'hadamrnn'), got {self.block}")

    @property
    def block_size(self):
        """Effective block size ``m`` (``n`` unless ``block-hadamrnn``; default ``n/4``)."""
        if self.model != "block-hadamrnn":
            return self.hidden
        if self.block is not None:
            return self.block
        return max(self.hidden // 4, 1)

    def to_dict(self):
        """All fields as a JSON/TOML-friendly dict (``None`` for unset options)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict of fields; unknown keys are a :class:`ConfigError`."""
        _check_keys(values, "configuration")
        return cls(**values)

    def replace(self, **changes):
        """A validated copy with ``changes`` applied (unknown keys are an error)."""
        _check_keys(changes, "override")
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))

# Presets override the RunConfig defaults; the paper's (spec/hadamrnn.md, 1.b) and a demo.
_PAPER = {"model": "hadamrnn", "bits": 4, "optimizer": "adam", "gamma": 0.98}
PRESETS = types.MappingProxyType({
    "base": {},
    "copy": {**_PAPER, "task": "copy", "hidden": 128, "batch_size": 128, "epochs": 10,
             "lr": 1e-4, "seed": 712, "copy_length": 1000},
    "smnist": {**_PAPER, "task": "smnist", "hidden": 512, "batch_size": 64, "epochs": 100,
               "lr": 1e-3, "seed": 68},
    "pmnist": {**_PAPER, "task": "pmnist", "hidden": 512, "batch_size": 100, "epochs": 100,
               "lr": 1e-3, "seed": 8},
    "quick": {**_PAPER, "task": "pmnist", "hidden": 128, "batch_size": 100, "epochs": 3,
              "steps_per_epoch": 500, "lr": 1e-3, "gamma": 0.9, "sign_lr_scale": 0.1,
              "seed": 8, "val_batches": 2, "test_batches": 4},
})
DEFAULT_PRESET = "quick"


def _field_kind(annotation):
    # (base type, nullable) of an annotation such as ``int`` or ``float | None``.
    args = typing.get_args(annotation) or (annotation,)
    base = next(a for a in args if a is not type(None))
    return base, type(None) in args


_KINDS = {f.name: _field_kind(f.type) for f in dataclasses.fields(RunConfig)}


def _coerce(name, value):
    """``value`` checked against the type of field ``name`` (ints accepted as floats)."""
    base, nullable = _KINDS[name]
    if value is None and nullable:
        return None
    accepted = (int, float) if base is float else (base,)
    # bool is an int subclass: a TOML `true` must not pass as a number.
    if isinstance(value, bool) and base is not bool or not isinstance(value, accepted):
        raise ConfigError(f"option {name} must be {base.__name__}"
                          f"{' or unset' if nullable else ''}, got {value!r}")
    return float(value) if base is float else value


def _check_keys(values, what):
    if not isinstance(values, dict):
        raise ConfigError(f"{what} must be a table of options, got {type(values).__name__}")
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {what} key {key!r}{hint}")


def load_toml(path):
    """The options of a TOML configuration file, as a dict (keys checked, types not yet).

    Parameters
    ----------
    path : str or os.PathLike
        A TOML file with :class:`RunConfig` keys (and optionally ``preset``) at top level.

    Raises
    ------
    ConfigError
        Unreadable file, invalid TOML, or an unknown key (named in the message).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    options = dict(values)
    preset = options.pop("preset", None)
    try:
        _check_keys(options, "configuration")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if preset is not None:
        options["preset"] = preset
    return options


def resolve_config(preset=None, path=None, overrides=None):
    """Resolve a run configuration: defaults < preset < TOML file < ``overrides``.

    Parameters
    ----------
    preset : str, optional
        A key of :data:`PRESETS`. When absent: the file's ``preset`` key, else the preset
        named after the task (``copy``, ``smnist``, ``pmnist``) when the task is given,
        else none for task ``npz``, else :data:`DEFAULT_PRESET`.
    path : str or os.PathLike, optional
        TOML configuration file (see :func:`load_toml`).
    overrides : dict, optional
        Options set explicitly (e.g. on the command line), by :class:`RunConfig` field name.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        Unknown preset, key or option value.
    """
    file_options = load_toml(path) if path is not None else {}
    overrides = dict(overrides or {})
    _check_keys(overrides, "override")
    file_preset = file_options.pop("preset", None)
    if preset is None:
        preset = file_preset
    if preset is None:
        task = overrides.get("task", file_options.get("task"))
        if task is None:
            preset = DEFAULT_PRESET
        elif task in PRESETS:
            preset = task
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {**(PRESETS[preset] if preset is not None else {}), **file_options, **overrides}
    return RunConfig(**values)


def preset_config(name):
    """The :class:`RunConfig` of preset ``name``."""
    return resolve_config(preset=name)


def config_to_toml(config):
    """``config`` as TOML text that :func:`resolve_config` reads back to an equal config.

    Unset (``None``) options are written as comments, since TOML has no null.
    """
    # Preset "base" (no overrides) leaves unset options at their default, None.
    lines = ["# hadamnp run configuration (read back with: hadamnp train --config FILE)",
             'preset = "base"']
    for name, value in config.to_dict().items():
        if value is None:
            lines.append(f"# {name} = (unset)")
        elif isinstance(value, bool):
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name} = "{escaped}"')
        else:
            # repr round-trips floats exactly and is valid TOML for finite values.
            lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"
