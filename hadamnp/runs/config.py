"""Run configuration: every option of a training run, in one immutable, validated record.

A run's configuration is resolved in layers, each overriding the one before::

    RunConfig defaults  <  preset  <  TOML file  <  explicit overrides (command line)

Vocabulary. Run options (task, optimizer, schedule, data) are top-level keys. The model is
a registered name plus its own options, under the model's field names, in a ``[model]``
table (``hidden_size``, ``block_size``, ``quant_in``, ...; see ``hadamnp info --model
NAME`` or :func:`hadamnp.models.registry.model_options`). Per-role training options are
tables keyed by parameter role (:data:`hadamnp.models.protocol.ROLES`)::

    task = "pmnist"
    lr = 1e-3
    clip_roles = ["signs"]          # clamp latent signs to [-1, 1] after each update

    [model]
    name = "hadamrnn"
    hidden_size = 128
    quant_in = "uniform:4"

    [lr_scales]
    signs = 0.1                     # the --sign-lr-scale option

    [weight_decay]
    weight = 1e-4

    [oialr]                         # OIALR low-rank training (hadamnp.training.oialr)
    delay = 500
    every = 250
    beta = 0.15

Presets (:data:`PRESETS`): ``paper-*`` carry the paper's recipes exactly; ``copy``,
``smnist``, ``pmnist`` are the recipes that train here (README, "Training that
converges"): the paper's, with the latent signs frozen at their random initial values
(``role_optimizers.signs = "frozen"``), and for the copy task a learning rate of 3e-4 with
500-step epochs:

============  ======  ====  =====  ===========  =====  ====  ===============================
preset        task    n     batch  epochs       lr     γ     seed, signs
============  ======  ====  =====  ===========  =====  ====  ===============================
paper-copy    copy    128   128    10           1e-4   0.98  712 (L = 1000, CE over all steps)
paper-smnist  smnist  512   64     100          1e-3   0.98  68
paper-pmnist  pmnist  512   100    100          1e-3   0.98  8
copy          copy    128   128    20 x 500     3e-4   0.98  712, frozen
smnist        smnist  512   64     100          1e-3   0.98  68, frozen
pmnist        pmnist  512   100    100          1e-3   0.98  8, frozen
quick         pmnist  128   100    3 x 500      1e-3   0.9   8, lr_scales.signs 0.1
npz           npz     128   64     20           1e-3   0.95  0, lr_scales.signs 0.1 (10 % val,
                                                             10 % test)
============  ======  ====  =====  ===========  =====  ====  ===============================

Preset ``base`` is the :class:`RunConfig` defaults alone. All use Adam (β = 0.9/0.999,
ε = 1e-8, no weight decay), StepLR stepped once per epoch, no gradient clipping and 4-bit
U and V; all but ``base`` keep the last 5 end-of-epoch checkpoints (plus the latest and the
best-validation one). ``quick`` is the default when neither a preset nor a task names one:
a small HadamRNN trained on the shipped MNIST files for 1500 steps, about a minute on two
CPU cores. It lowers the sign learning rate (``lr_scales.signs = 0.1``), without which the
measured runs on pixel-by-pixel MNIST did not learn. ``npz`` is the default of task
``npz`` (your own sequences): the quick recipe for 20 epochs, holding out 10 % of the
training arrays for validation and 10 % for test when the archive has no such split
(:func:`resolve_config` looks at the archive's keys).

A preset's model options apply only when the model a later layer chooses accepts them
(``--model dense`` drops a preset's ``quant_rec = "sign"``), and its per-role options only
to roles the model has (``--model dense`` drops ``quick``'s ``lr_scales.signs``); a role
that a file or the command line configures (learning-rate scale, weight decay, clipping) is
trained by the run's optimizer, so the preset's optimizer for it steps aside
(``--preset pmnist --sign-lr-scale 0.1`` trains the signs with Adam at a tenth of the
rate). Model options given in a file or an override must be accepted by the model, else a
:class:`ConfigError` names them.
"""

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from hadamnp.errors import ConfigError
from hadamnp.models import registry
from hadamnp.models.protocol import ROLES
from hadamnp.models.embedding import Embedded, EmbeddingConfig
from hadamnp.models.losses import get_loss
from hadamnp.models.lowrank import OIALROptions
from hadamnp.models.quantizers import get_quantizer, uniform_spec

__all__ = ["RunConfig", "PRESETS", "DEFAULT_PRESET", "TASKS", "resolve_config",
           "preset_config", "preset_defaults", "load_toml", "config_to_toml",
           "run_config_from_checkpoint"]

TASKS = ("copy", "smnist", "pmnist", "npz", "adding", "text")
# Tasks with real-valued targets (loss "mse"); the others have class labels.
REGRESSION_TASKS = ("adding",)
OPTIMIZERS = ("adam", "sgd")
# Role optimizers (hadamnp.training.role_optim) -> the roles they may train (None: any).
ROLE_OPTIMIZERS = {"bop": ("signs",), "frozen": None}
DTYPES = ("float32", "float64")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
SCHEDULES = ("step", "cosine")
# Sizes of placeholder task used to validate model options before the task is loaded.
_PLACEHOLDER_TASK = {"input_size": 1, "output_size": 2, "many_to_many": False}
# Tables of the TOML/dict form: table name -> field name.
_TABLES = {"model": "model", "lr_scales": "lr_scales", "weight_decay": "weight_decay",
           "role_optimizers": "role_optimizers"}


_DEFAULT_MODEL = {"name": "hadamrnn", "hidden_size": 128}


def _frozen(mapping):
    return types.MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class RunConfig:
    """All options of a training run (validated on construction).

    Attributes
    ----------
    task : {"copy", "smnist", "pmnist", "npz", "adding", "text"}
    model : str
        A registered model name (:func:`hadamnp.models.registry.model_names`).
    model_options : mapping
        Options of that model under its field names (e.g. ``hidden_size``); the task sets
        ``input_size``, ``output_size``, ``many_to_many`` and the run sets ``dtype``.
    dtype : {"float32", "float64"}
    optimizer : {"adam", "sgd"}
    lr, gamma : float
        Initial learning rate and StepLR factor per epoch (``0 < gamma <= 1``).
    lr_scales : mapping role -> float
        Learning-rate multipliers per parameter role, e.g. ``{"signs": 0.1}`` (the paper's
        recipe is 1 everywhere). A role the model does not have is an error.
    weight_decay : mapping role -> float
        Weight decay per parameter role (default none).
    weight_decay_mode : {"l2", "decoupled"}
        ``"l2"`` adds ``wd * p`` to the gradient (``torch.optim.Adam(weight_decay=...)``);
        ``"decoupled"`` shrinks ``p -= lr * wd * p`` before the update (AdamW).
    clip_roles : tuple of str
        Roles whose parameters are clamped to ``[-bound, bound]`` after every update, with
        the bound the model declares (e.g. latent signs to [-1, 1], as BinaryConnect).
    role_optimizers : mapping role -> str
        Optimizer specs of roles trained by their own optimizer instead of ``optimizer``
        (:mod:`hadamnp.training.role_optim`): ``"bop[:threshold,adaptivity]"`` (role
        ``signs``) or ``"frozen"``. Such a role takes no lr scale, weight decay or
        clipping.
    momentum : float
        SGD momentum (SGD only).
    clip_grad_norm : float or None
        Clip the global gradient norm to this value.
    batch_size, epochs : int
    steps_per_epoch : int or None
        Cap on the batches of an epoch (the rest of the epoch is skipped).
    train_size : int or None
        Train on a fixed subset of this many sequences (MNIST/npz/text: drawn once from
        the seed; copy and adding tasks: sequences per epoch, default 512000 and 100000).
    eval_batch_size : int
    val_batches, test_batches : int or None
        Cap on the evaluation batches of the per-epoch validation / final test.
    seed : int
        Root of every random stream: data order and generation, initial parameters,
        stochastic quantizers.
    copy_length : int
        Total copy-task sequence length ``L`` (10 symbols, ``L - 20`` blanks, marker, 9).
    data_dir : str or None
        MNIST directory (default: the shipped ``data/`` folder or ``$HADAMNP_DATA``).
    npz : str or None
        User ``.npz`` archive (task ``npz``).
    npz_val_fraction, npz_test_fraction : float or None
        Fractions of the ``.npz`` training arrays held out when it has no val/test split.
    adding_length : int
        Sequence length ``T >= 2`` of the adding problem (default 200).
    text : str or None
        Text file of the byte-level language-model task ``text``.
    text_window : int
        Steps per training/evaluation window of the text task (default 128).
    loss : {"cross_entropy", "bce", "mse"} or None
        The training and evaluation loss; None: the task's (``mse`` for ``adding``,
        ``cross_entropy`` otherwise). ``bce`` (one logit, binary cross-entropy) needs binary
        labels, e.g. an ``.npz`` task with ``y`` in {0, 1}.
    embedding_dim : int or None
        Feed token ids through a trainable ``vocabulary x embedding_dim`` table (role
        ``embedding``) instead of one-hot vectors; token tasks only.
    quant_embedding : str
        Quantizer spec of the embedding table (default ``"none"``, e.g. ``"uniform:4"``).
    checkpoint_every : int or None
        Also checkpoint every this many steps (a checkpoint is always written each epoch).
    log_every : int
        Write a per-step metrics line every this many steps.
    diagnostics : bool
        Add training diagnostics to the logged step lines (gradient norms per parameter,
        latent-sign magnitudes and gradient alignment, quantizer scales and code counts,
        largest state; :mod:`hadamnp.training.diagnostics`). They do not change the
        trajectory, so a run may be resumed with either value.
    schedule : {"step", "cosine"}
        Learning rate of optimizer step ``k`` (0-based, in epoch ``e``; ``K = epochs x``
        batches per epoch): ``"step"`` (StepLR) ``lr_k = lr gamma^e``; ``"cosine"``
        ``lr_k = lr (1 + cos(pi k / K)) / 2`` (``gamma`` unused). See
        :mod:`hadamnp.training.schedule`.
    warmup_steps : int
        Linear warm-up: ``lr_k`` is multiplied by ``min(1, (k + 1) / warmup_steps)``
        (0: none).
    keep_last : int or None
        Keep only the last ``keep_last`` end-of-epoch snapshots ``checkpoint-epochNNN.npz``
        (None: all); ``checkpoint.npz`` and ``checkpoint-best.npz`` are always kept.
    patience : int or None
        Early stopping: end training (then evaluate the test split) once this many epochs
        have passed without a better validation figure (accuracy for classification, else
        the loss; None: never).
    oialr : mapping or None
        Train the eligible weight matrices in OIALR's low-rank form after a full-rank
        warm-up: the options of :class:`hadamnp.models.lowrank.OIALROptions` (``delay``,
        ``every``, ``beta``, ...; stored with every option filled in). None: full rank.
    preset : str
        The preset the options were resolved from. A record only: every option is stored
        explicitly, and configurations are compared without it.
    """

    task: str = "smnist"
    model: str = _DEFAULT_MODEL["name"]
    model_options: typing.Mapping = dataclasses.field(
        default_factory=lambda: _frozen({k: v for k, v in _DEFAULT_MODEL.items()
                                         if k != "name"}))
    dtype: str = "float32"
    optimizer: str = "adam"
    lr: float = 1e-3
    gamma: float = 0.98
    lr_scales: typing.Mapping = dataclasses.field(default_factory=lambda: _frozen({}))
    weight_decay: typing.Mapping = dataclasses.field(default_factory=lambda: _frozen({}))
    weight_decay_mode: str = "l2"
    clip_roles: tuple = ()
    role_optimizers: typing.Mapping = dataclasses.field(default_factory=lambda: _frozen({}))
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
    adding_length: int = 200
    text: str | None = None
    text_window: int = 128
    loss: str | None = None
    embedding_dim: int | None = None
    quant_embedding: str = "none"
    checkpoint_every: int | None = None
    log_every: int = 10
    diagnostics: bool = True
    schedule: str = "step"
    warmup_steps: int = 0
    keep_last: int | None = None
    patience: int | None = None
    oialr: typing.Mapping | None = None
    preset: str = dataclasses.field(default="base", compare=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        for name, allowed in (("task", TASKS), ("optimizer", OPTIMIZERS), ("dtype", DTYPES),
                              ("weight_decay_mode", WEIGHT_DECAY_MODES),
                              ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; "
                                  f"choose one of {', '.join(allowed)}")
        for name in ("batch_size", "epochs", "eval_batch_size", "log_every",
                     "steps_per_epoch", "train_size", "val_batches", "test_batches",
                     "checkpoint_every", "keep_last", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("lr", "gamma", "momentum", "clip_grad_norm", "npz_val_fraction",
                     "npz_test_fraction"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
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
            if getattr(self, name) is not None and self.task != "npz":
                raise ConfigError(f"option {name} is for task 'npz' only")
        self._check_task_options()
        self._check_model()

    def _check_task_options(self):
        """The options of the adding and text tasks, the loss and the embedding."""
        if self.adding_length < 2:
            raise ConfigError(f"adding_length must be >= 2 (one marked position in each "
                              f"half of the sequence), got {self.adding_length}")
        if self.text_window < 1:
            raise ConfigError(f"text_window must be >= 1, got {self.text_window}")
        if (self.task == "text") != (self.text is not None):
            raise ConfigError("task 'text' needs the option text (path of the text file)"
                              if self.task == "text" else
                              f"option text is for task 'text' only, not {self.task!r}")
        if self.loss is not None:
            loss = get_loss(self.loss)
            regression = self.task in REGRESSION_TASKS
            if (loss.targets == "values") != regression:
                needs = "real-valued targets" if loss.targets == "values" else "class labels"
                has = "real-valued targets (loss 'mse')" if regression else "class labels"
                raise ConfigError(f"loss {self.loss!r} needs {needs}; task {self.task!r} has "
                                  f"{has}")
        # Whether the task's inputs are tokens is known once its data are loaded
        # (an .npz archive holds tokens or features): see plumbing.run_model.
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        try:
            get_quantizer(self.quant_embedding)
        except ConfigError as exc:
            raise ConfigError(f"quant_embedding: {exc}") from None
        if self.quant_embedding != "none" and self.embedding_dim is None:
            raise ConfigError("quant_embedding quantizes the embedding table: set "
                              "embedding_dim too")

    def _check_model(self):
        """Validate the model options (with placeholder task sizes) and the role tables."""
        reserved = sorted(set(self.model_options) & set(registry.RUN_OPTIONS))
        if reserved:
            raise ConfigError(f"model option {reserved[0]!r} is set by the "
                              f"{'run' if reserved[0] == 'dtype' else 'task'}, not in [model]")
        sizes = self._placeholder_task()
        model = self.build_model(**sizes)
        if self.embedding_dim is not None:  # the table's role is the run's too
            model = Embedded(self.build_model(**{**sizes, "input_size": self.embedding_dim}),
                             EmbeddingConfig(2, self.embedding_dim, self.quant_embedding))
        roles = {spec.role: spec for spec in model.param_specs().values()}
        for table in ("lr_scales", "weight_decay"):
            for role, value in getattr(self, table).items():
                if role not in ROLES:
                    raise ConfigError(f"{table}: unknown parameter role {role!r}; roles: "
                                      f"{', '.join(ROLES)}")
                if role not in roles:
                    raise ConfigError(
                        f"{table}.{role}: model {self.model!r} has no parameter with role "
                        f"{role!r} (its roles: {', '.join(sorted(roles))})"
                        + ("; --sign-lr-scale applies to models with latent signs"
                           if (table, role) == ("lr_scales", "signs") else ""))
                bad = value <= 0 if table == "lr_scales" else value < 0
                if bad or not math.isfinite(value):
                    raise ConfigError(f"{table}.{role} must be "
                                      f"{'> 0' if table == 'lr_scales' else '>= 0'} and "
                                      f"finite, got {value}")
        self._check_role_optimizers(roles)
        for role in self.clip_roles:
            if role not in roles:
                raise ConfigError(f"clip_roles: model {self.model!r} has no parameter with "
                                  f"role {role!r} (its roles: {', '.join(sorted(roles))})")
            unbounded = [name for name, spec in model.param_specs().items()
                         if spec.role == role and spec.bound is None]
            if unbounded:
                raise ConfigError(f"clip_roles: parameter(s) {', '.join(unbounded)} of role "
                                  f"{role!r} declare no clipping bound in model {self.model!r}")

    def _check_role_optimizers(self, roles):
        """Roles and optimizer names of ``role_optimizers`` (their arguments are checked
        when the training loop builds the optimizer, before it writes anything)."""
        for role, spec in self.role_optimizers.items():
            if role not in roles:
                raise ConfigError(f"role_optimizers.{role}: model {self.model!r} has no "
                                  f"parameter with role {role!r} (its roles: "
                                  f"{', '.join(sorted(roles))})")
            name = spec.partition(":")[0].strip()
            if name not in ROLE_OPTIMIZERS:
                raise ConfigError(f"role_optimizers.{role}: unknown optimizer {name!r}; "
                                  f"choose one of {', '.join(ROLE_OPTIMIZERS)}")
            allowed = ROLE_OPTIMIZERS[name]
            if allowed is not None and role not in allowed:
                raise ConfigError(f"role_optimizers.{role}: {name!r} trains parameters of "
                                  f"role {', '.join(allowed)} only")
            for table in ("lr_scales", "weight_decay", "clip_roles"):
                if role in getattr(self, table):
                    raise ConfigError(f"role {role!r} has its own optimizer ({spec!r}); "
                                      f"{table} does not apply to it")

    def _placeholder_task(self):
        """Task sizes to validate the model options with before any data is loaded: the
        built-in task's own (options that depend on them, e.g. a low-rank input matrix, are
        then judged on the real shapes), else small placeholders."""
        from hadamnp.runs.plumbing import builtin_task_sizes  # plumbing imports this module

        try:
            d_in, d_out, many = builtin_task_sizes(self.task)
        except ConfigError:
            return dict(_PLACEHOLDER_TASK)
        return {"input_size": d_in, "output_size": d_out, "many_to_many": many}

    def build_model(self, input_size, output_size, many_to_many):
        """The model of this run for a task of the given sizes (through the registry)."""
        return registry.build_model(self.model, **self.model_options, input_size=input_size,
                                    output_size=output_size, many_to_many=many_to_many,
                                    dtype=self.dtype)

    def to_dict(self):
        """All options as a JSON/TOML-friendly dict: the model as a ``model`` table
        (``name`` plus its options), ``lr_scales``/``weight_decay`` as tables, ``None`` for
        unset options. :meth:`from_dict` reads it back."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "model":
                out["model"] = {"name": value, **self.model_options}
            elif f.name == "model_options":
                continue
            elif isinstance(value, types.MappingProxyType):
                out[f.name] = dict(value)
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values):
        """Build from a dict in the :meth:`to_dict` form; unknown keys are a
        :class:`ConfigError`."""
        return cls(**_fields_from_tables(values, "configuration"))

    def replace(self, **changes):
        """A validated copy with ``changes`` (field names) applied; unknown keys are an error."""
        _check_keys(changes, "override", FIELDS)
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
# Keys of the dict/TOML form: the fields, with "model" a table and no "model_options".
KEYS = tuple(name for name in FIELDS if name != "model_options")

# Presets override the RunConfig defaults; the paper's recipes and a demo.
_PAPER = {"model": {"name": "hadamrnn", "quant_in": "uniform:4", "quant_out": "uniform:4"},
          "optimizer": "adam", "gamma": 0.98}


def _paper(hidden_size, **options):
    return {**_PAPER, "model": {**_PAPER["model"], "hidden_size": hidden_size}, **options}


_KEEP_LAST = 5
# Held out of an npz archive that has no validation / test split of its own.
NPZ_HOLDOUT = 0.1
# The recipes that train (README, "Training that converges"): the paper's, with the signs
# frozen at their random initial values, since a flip of a trained model destroys it.
_FROZEN_SIGNS = {"role_optimizers": {"signs": "frozen"}}

PRESETS = types.MappingProxyType({
    "base": {},
    "copy": _paper(128, task="copy", batch_size=128, epochs=20, steps_per_epoch=500, lr=3e-4,
                   seed=712, copy_length=1000, keep_last=_KEEP_LAST, **_FROZEN_SIGNS),
    "smnist": _paper(512, task="smnist", batch_size=64, epochs=100, lr=1e-3, seed=68,
                     keep_last=_KEEP_LAST, **_FROZEN_SIGNS),
    "pmnist": _paper(512, task="pmnist", batch_size=100, epochs=100, lr=1e-3, seed=8,
                     keep_last=_KEEP_LAST, **_FROZEN_SIGNS),
    "paper-copy": _paper(128, task="copy", batch_size=128, epochs=10, lr=1e-4, seed=712,
                         copy_length=1000, keep_last=_KEEP_LAST),
    "paper-smnist": _paper(512, task="smnist", batch_size=64, epochs=100, lr=1e-3, seed=68,
                           keep_last=_KEEP_LAST),
    "paper-pmnist": _paper(512, task="pmnist", batch_size=100, epochs=100, lr=1e-3, seed=8,
                           keep_last=_KEEP_LAST),
    "quick": _paper(128, task="pmnist", batch_size=100, epochs=3, steps_per_epoch=500,
                    lr=1e-3, gamma=0.9, lr_scales={"signs": 0.1}, seed=8, val_batches=2,
                    keep_last=_KEEP_LAST),
    "npz": _paper(128, task="npz", batch_size=64, epochs=20, lr=1e-3, gamma=0.95,
                  lr_scales={"signs": 0.1}, seed=0, keep_last=_KEEP_LAST,
                  npz_val_fraction=NPZ_HOLDOUT, npz_test_fraction=NPZ_HOLDOUT),
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
    if name in ("model_options", "lr_scales", "weight_decay", "role_optimizers"):
        if not isinstance(value, typing.Mapping):
            raise ConfigError(f"option {name} must be a table, got {value!r}")
        if name == "role_optimizers":
            for key, item in value.items():
                if not isinstance(item, str):
                    raise ConfigError(f"{name}.{key} must be an optimizer spec string such "
                                      f"as 'bop' or 'frozen', got {item!r}")
        elif name != "model_options":
            for key, item in value.items():
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise ConfigError(f"{name}.{key} must be a number, got {item!r}")
            value = {key: float(item) for key, item in value.items()}
        return _frozen(value)
    if name == "oialr":
        return None if value is None else _frozen(OIALROptions.from_table(value).to_dict())
    if name == "clip_roles":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) \
                or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"option clip_roles must be a list of role names, got {value!r}")
        return tuple(dict.fromkeys(value))
    base, nullable = _KINDS[name]
    if value is None and nullable:
        return None
    accepted = (int, float) if base is float else (base,)
    # bool is an int subclass: a TOML `true` must not pass as a number.
    if isinstance(value, bool) and base is not bool or not isinstance(value, accepted):
        raise ConfigError(f"option {name} must be {base.__name__}"
                          f"{' or unset' if nullable else ''}, got {value!r}")
    return float(value) if base is float else value


# The flat keys of the first run-config vocabulary, now model options or role tables.
_RENAMED = {"hidden": "[model] hidden_size (--hidden)", "block": "[model] block_size (--block)",
            "bits": "[model] quant_in and quant_out = 'uniform:K' (--bits)",
            "ste": "[model] quant_rec = 'sign:clipped' (--quant-rec)",
            "nonlinear": "[model] nonlinear (--nonlinear)",
            "sign_lr_scale": "[lr_scales] signs (--sign-lr-scale)"}


def _check_keys(values, what, allowed):
    if not isinstance(values, dict):
        raise ConfigError(f"{what} must be a table of options, got {type(values).__name__}")
    for key in values:
        if key not in allowed:
            if key in _RENAMED:
                raise ConfigError(f"unknown {what} key {key!r}: it is now {_RENAMED[key]}")
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {what} key {key!r}{hint}")


def _split_model_table(table, what):
    """``(name or None, options)`` of a ``[model]`` table."""
    if not isinstance(table, dict):
        raise ConfigError(f"{what}: 'model' must be a table with a 'name' (e.g. [model] "
                          f"name = \"hadamrnn\"), got {table!r}")
    options = dict(table)
    name = options.pop("name", None)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{what}: model name must be a string, got {name!r}")
    return name, options


def _fields_from_tables(values, what):
    """Field values of a dict in the table form (``model`` a table with ``name``)."""
    _check_keys(values, what, KEYS)
    fields = dict(values)
    if "model" in fields:
        name, options = _split_model_table(fields.pop("model"), what)
        if name is None:
            raise ConfigError(f"{what}: the [model] table needs a 'name'")
        fields["model"], fields["model_options"] = name, options
    return fields


def load_toml(path):
    """The options of a TOML configuration file, as a dict (keys checked, types not yet).

    Parameters
    ----------
    path : str or os.PathLike
        A TOML file with :class:`RunConfig` keys (the model as a ``[model]`` table, see
        the module docstring) and optionally ``preset``.

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
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a TOML text file (it is not valid UTF-8)") from None
    return _file_options(values, path)


def _file_options(values, path):
    """Checked options of a parsed TOML file (``preset`` kept as a key)."""
    options = dict(values)
    preset = options.pop("preset", None)
    try:
        _check_keys(options, "configuration", KEYS)
        if "model" in options:
            _split_model_table(options["model"], "configuration")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if preset is not None:
        options["preset"] = preset
    return options


def _merge_model(layers):
    """Model name and options from ``(source, table)`` layers, lowest first.

    The last layer naming a model wins. Options of the defaults and preset layers are kept
    only when that model accepts them; options of the file and overrides must be accepted.
    """
    name = "hadamrnn"
    for _, table in layers:
        name = table.get("name", name)
    accepted = set(registry.model_options(name))
    options = {}
    for source, table in layers:
        for key, value in table.items():
            if key == "name":
                continue
            if key in accepted:
                options[key] = value
            elif source not in ("defaults", "preset"):
                # Let the registry name the problem (unknown option, or one the name fixes).
                registry.build_config(name, **{key: value})
    return name, options


def resolve_config(preset=None, path=None, overrides=None):
    """Resolve a run configuration: defaults < preset < TOML file < ``overrides``.

    Parameters
    ----------
    preset : str, optional
        A key of :data:`PRESETS`. When absent: the ``preset`` key of ``overrides`` or of
        the file, else the preset named after the task (``copy``, ``smnist``, ``pmnist``,
        ``npz``) when the task is given, else :data:`DEFAULT_PRESET`.
    path : str or os.PathLike, optional
        TOML configuration file (see :func:`load_toml`).
    overrides : dict, optional
        Options set explicitly (e.g. on the command line), in the dict form of
        :meth:`RunConfig.to_dict`; ``model`` may be a table or just a name, and a partial
        ``model`` table without ``name`` keeps the model of the lower layers.

    Returns
    -------
    RunConfig
        With ``preset`` recording the preset used (``"base"``: none). For task ``npz``,
        a held-out fraction that only the preset set is dropped when the archive holds that
        split itself.

    Raises
    ------
    ConfigError
        Unknown preset, key or option value.
    """
    file_options = load_toml(path) if path is not None else {}
    return _resolve(preset, file_options, overrides)


def _resolve(preset, file_options, overrides):
    file_options = dict(file_options)
    overrides = dict(overrides or {})
    if isinstance(overrides.get("model"), str):
        overrides["model"] = {"name": overrides["model"]}
    _check_keys(overrides, "override", KEYS)
    for layer in (overrides, file_options):
        named = layer.pop("preset", None)
        preset = named if preset is None else preset
    if preset is None:
        task = overrides.get("task", file_options.get("task"))
        if task is None:
            preset = DEFAULT_PRESET
        elif task in PRESETS:
            preset = task
    preset = "base" if preset is None else preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = dict(PRESETS[preset])
    layers = [("defaults", _DEFAULT_MODEL), ("preset", base.pop("model", {})),
              ("file", file_options.pop("model", {})),
              ("override", overrides.pop("model", {}))]
    for source, table in layers:
        _split_model_table(table, source)
    name, model_options = _merge_model(layers)
    values = {**base, **file_options, **overrides}
    roles = _model_roles(name, model_options, values.get("dtype", "float32"))
    # A role configured by a later layer (its lr scale, weight decay or clipping) is
    # trained by the run's optimizer: the preset's optimizer for that role steps aside.
    configured = {role for layer in (file_options, overrides)
                  for table in ("lr_scales", "weight_decay") for role in layer.get(table, {})}
    configured |= {role for layer in (file_options, overrides)
                   for role in layer.get("clip_roles", ())}
    for table in ("lr_scales", "weight_decay", "role_optimizers"):
        merged = {}
        for layer in (base, file_options, overrides):
            merged.update({role: value for role, value in layer.get(table, {}).items()
                           if layer is not base or ((roles is None or role in roles) and not
                                                    (table == "role_optimizers"
                                                     and role in configured))})
        values[table] = merged
    if values.get("task") == "npz" and isinstance(values.get("npz"), str):
        for split in _archive_splits(values["npz"]):
            key = f"npz_{split}_fraction"
            if key not in file_options and key not in overrides:
                values.pop(key, None)
    return RunConfig(**values, model=name, model_options=model_options, preset=preset)


def _model_roles(name, options, dtype):
    """Parameter roles of the model (None when its options are invalid: RunConfig then
    reports the problem). A preset's per-role options apply only to roles the model has."""
    try:
        model = registry.build_model(name, **options, **_PLACEHOLDER_TASK, dtype=dtype)
    except (ConfigError, ValueError, TypeError):
        return None
    return {spec.role for spec in model.param_specs().values()}


def _archive_splits(path):
    """The splits (``"val"``, ``"test"``) an npz archive holds itself; none when it cannot
    be read (loading it later reports the problem)."""
    from hadamnp.io.sequences import archive_splits

    try:
        return archive_splits(path)
    except (OSError, ValueError):
        return ()


def preset_config(name):
    """The :class:`RunConfig` of preset ``name``."""
    return resolve_config(preset=name)


def preset_defaults(key):
    """The value every preset gives option ``key`` (without resolving any preset).

    Parameters
    ----------
    key : str
        A :class:`RunConfig` field (``"epochs"``), ``"model.<option>"`` (a model option,
        e.g. ``"model.hidden_size"``) or ``"<table>.<role>"`` (``"lr_scales.signs"``).

    Returns
    -------
    dict
        Preset name -> value (``None``: unset, i.e. the model's own default for a model
        option, 1 for an lr scale, 0 for a weight decay).
    """
    table, dot, name = key.partition(".")
    out = {}
    for preset, values in PRESETS.items():
        if not dot:
            default = next(f.default for f in dataclasses.fields(RunConfig) if f.name == key)
            out[preset] = values.get(key, default)
        elif table == "model":
            out[preset] = values.get("model", {}).get(name, _DEFAULT_MODEL.get(name))
        else:
            out[preset] = values.get(table, {}).get(name)
    return out


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # repr round-trips floats exactly and is valid TOML for finite values.
    return repr(value)


def config_to_toml(config):
    """``config`` as TOML text that :func:`resolve_config` reads back to an equal config.

    Every option is written; unset (``None``) options as comments, since TOML has no null.
    The first key names the preset the configuration was resolved from; when reading it
    back over that preset would not give ``config`` (an option the preset sets was unset
    through the Python API), the file names preset ``"base"`` and says so in a comment.
    """
    text = _toml_text(config, config.preset)
    if config.preset != "base":
        try:
            back = _resolve(None, _file_options(tomllib.loads(text), "configuration"), None)
        except ConfigError:
            back = None
        if back != config:
            text = _toml_text(config, "base", f"resolved from preset {config.preset!r}, "
                                              f"with options it sets unset")
    return text


def _toml_text(config, preset, note=None):
    lines = ["# hadamnp run configuration (read back with: hadamnp train --config FILE)"]
    if note:
        lines.append(f"# {note}")
    lines.append(f"preset = {_toml_value(preset)}")
    tables = []
    for name, value in config.to_dict().items():
        if name == "preset":
            continue
        if isinstance(value, dict):
            tables.append((name, value))
        elif value is None:
            lines.append(f"# {name} = (unset)")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        for key, value in table.items():
            lines.append(f"# {key} = (unset)" if value is None else
                         f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def run_config_from_checkpoint(values):
    """The :class:`RunConfig` stored in a checkpoint, reading the first vocabulary too.

    Checkpoints written before the model registry store flat keys (``hidden``, ``block``,
    ``bits``, ``ste``, ``nonlinear``, ``sign_lr_scale`` and ``model`` a name); they are
    converted to the same run, so such runs still resume bit for bit.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"the run configuration must be a table, got {values!r}")
    if not set(_RENAMED) & set(values):
        return RunConfig.from_dict(values)
    values = dict(values)
    name = values.pop("model", "hadamrnn")
    hadamard = name != "dense"
    options = {"hidden_size": values.pop("hidden", 128)}
    block = values.pop("block", None)
    if name == "block-hadamrnn" and block is not None:
        options["block_size"] = block
    bits = values.pop("bits", 4)
    options["quant_in"] = options["quant_out"] = uniform_spec(bits)
    ste = values.pop("ste", "identity")
    if hadamard:
        options["quant_rec"] = "sign" if ste == "identity" else f"sign:{ste}"
    options["nonlinear"] = values.pop("nonlinear", False)
    scale = values.pop("sign_lr_scale", 1.0)
    if hadamard and scale != 1.0:
        values["lr_scales"] = {"signs": scale}
    values["model"] = {"name": name, **options}
    return RunConfig.from_dict(values)
