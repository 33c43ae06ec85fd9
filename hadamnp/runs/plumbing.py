"""Run plumbing shared by training, evaluation, golden files and deploy.

One place turns a :class:`~hadamnp.runs.config.RunConfig` into its task and model, reads a
run back from its checkpoint, and evaluates a model on a task split::

    task = build_task(config)                     # loads or generates the data
    loss = run_loss(config, task)                 # the run's loss (the task's by default)
    model = model_for(config, task)               # through the model registry
    ckpt, config, file = load_run(run_dir)        # latest checkpoint of a run
    model, params, config = restore(run_dir)      # ... as a ready model (no data loaded)
    evaluate(model, params, task, "test", 500, loss=loss)   # mean loss and metrics

Neither :mod:`hadamnp.training` nor :mod:`hadamnp.deploy` is imported here; both import
this module.
"""

import itertools
import re
import time
from pathlib import Path

import numpy as np

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io import checkpoint as ckpt_io
from hadamnp.io import adding_task, copy_task, mnist, text
from hadamnp.io.datasets import ArrayTask, load_task
from hadamnp.models.embedding import Embedded, EmbeddingConfig
from hadamnp.models.losses import get_loss
from hadamnp.models.registry import model_from_description
from hadamnp.runs.config import run_config_from_checkpoint

__all__ = ["TrainSubset", "build_task", "builtin_task_sizes", "run_loss", "run_model",
           "model_for", "model_without_data", "model_inputs", "evaluate", "load_run",
           "model_from_checkpoint", "check_restored_params", "restore", "task_inputs",
           "default_run_dir", "evaluate_run", "relocate", "select_checkpoint",
           "MAX_ONE_HOT_VOCAB", "MAX_CLASSES"]

# One-hot token inputs stand in for an embedding; larger vocabularies would not fit (the
# embedding path, option embedding_dim, has no such cap).
MAX_ONE_HOT_VOCAB = 1024
# Classes of a task (largest label + 1): a label beyond this is far likelier a mistake in
# the data than a task, and would allocate an output layer of that many rows.
MAX_CLASSES = 65536


class TrainSubset(ArrayTask):
    """A fixed training subset of ``size`` sequences of another task.

    The subset is the first batch of ``size`` of the inner task's epoch 0 (so it depends
    only on the inner task's seed); epochs then shuffle the subset as any
    :class:`ArrayTask`. Validation and test splits are the inner task's, unchanged.

    Parameters
    ----------
    task : TaskData
    size : int
        ``1 <= size <= task.num_train``.
    dtype : str or numpy dtype
        Dtype of the stored (already converted) inputs.
    """

    def __init__(self, task, size, dtype):
        if size > task.num_train:
            raise ConfigError(f"train_size={size} exceeds the {task.num_train} training "
                              f"sequences of task {task.name}")
        self.name = task.name
        self.input_kind = task.input_kind
        self.input_size = task.input_size
        self.output_size = task.output_size
        self.seq_len = task.seq_len
        self.many_to_many = task.many_to_many
        self.loss = task.loss
        self.padding_id = task.padding_id
        self._inner = task
        train = next(task.iter_batches(0, size, dtype=dtype))
        splits = {name: task.split(name, dtype) for name in task.split_names()}
        super().__init__(train, splits, task.seed)

    def baseline(self):
        return self._inner.baseline()

    def figures(self, loss):
        return self._inner.figures(loss)

    def _to_input(self, stored, dtype):
        return stored if self.input_kind == "tokens" else stored.astype(dtype, copy=False)

    def _options(self):
        return {**self._inner._options(), "train_size": self.num_train}

    def data_files(self):
        return self._inner.data_files()


def build_task(config):
    """The :class:`~hadamnp.io.datasets.TaskData` of ``config`` (loads or generates data)."""
    if config.task in ("copy", "adding"):  # generated tasks: train_size = sequences per epoch
        length = config.copy_length if config.task == "copy" else config.adding_length
        options = {"length": length, "seed": config.seed}
        if config.train_size is not None:
            options["num_train"] = config.train_size
        return load_task(config.task, **options)
    if config.task == "npz":
        task = load_task("npz", path=config.npz, seed=config.seed,
                         val_fraction=config.npz_val_fraction,
                         test_fraction=config.npz_test_fraction)
    elif config.task == "text":
        task = load_task("text", path=config.text, window=config.text_window, seed=config.seed)
    else:
        task = load_task(config.task, data_dir=config.data_dir, seed=config.seed)
    if config.train_size is not None:
        task = TrainSubset(task, config.train_size, config.dtype)
    if (task.input_kind == "tokens" and task.input_size > MAX_ONE_HOT_VOCAB
            and config.embedding_dim is None):
        raise ConfigError(f"token inputs are fed one-hot without an embedding; vocabulary "
                          f"{task.input_size} exceeds {MAX_ONE_HOT_VOCAB}: set embedding_dim "
                          f"(--embedding-dim) to feed them through an embedding table")
    if task.output_size > MAX_CLASSES:
        files = ", ".join(str(path) for path in task.data_files().values())
        raise ConfigError(f"task {task.name}{' (' + files + ')' if files else ''}: "
                          f"{task.output_size} classes (largest label + 1) exceeds "
                          f"{MAX_CLASSES}; check the labels")
    return task


def relocate(config, data_dir=None, npz=None, text=None):
    """``config`` reading its data from a new place (the data moved since training).

    Parameters
    ----------
    config : RunConfig
    data_dir : str or os.PathLike, optional
        MNIST directory.
    npz, text : str or os.PathLike, optional
        The ``.npz`` archive of an ``npz`` run, the text file of a ``text`` run (a
        :class:`ConfigError` for other tasks).
    """
    changes = {key: str(value) for key, value in (("data_dir", data_dir), ("npz", npz),
                                                  ("text", text)) if value is not None}
    return config.replace(**changes) if changes else config


def builtin_task_sizes(name):
    """``(d_in, d_out, many_to_many)`` of a built-in task, without loading its data."""
    sizes = {"copy": (copy_task.VOCABULARY, copy_task.NUM_CLASSES, True),
             "smnist": (1, mnist.NUM_CLASSES, False),
             "pmnist": (1, mnist.NUM_CLASSES, False),
             "adding": (adding_task.INPUT_SIZE, adding_task.OUTPUT_SIZE, False),
             "text": (text.VOCABULARY, text.VOCABULARY, True)}
    if name not in sizes:
        raise ConfigError(f"the sizes of task {name!r} depend on its data; give them "
                          f"explicitly (input and output size)")
    return sizes[name]


def run_loss(config, task):
    """The :class:`~hadamnp.models.losses.Loss` of run ``config`` on a loaded ``task``.

    The run's ``loss`` option, else the task's default loss; it must fit the task's
    targets (class labels or real values), and ``bce`` needs binary labels.

    Raises
    ------
    ConfigError
        A loss that does not fit the task, naming the option ``loss``.
    """
    loss = get_loss(task.loss if config.loss is None else config.loss)
    targets = get_loss(task.loss).targets
    if loss.targets != targets:
        raise ConfigError(f"loss {loss.name!r} does not fit task {task.name!r}, whose targets "
                          f"are {'class labels' if targets == 'classes' else 'real values'}")
    loss.output_size(task.output_size, f"task {task.name!r}")
    return loss


def run_model(config, input_size, output_size, many_to_many, input_kind="features",
              padding_id=0):
    """The model of run ``config`` for inputs and outputs of the given sizes.

    Without ``embedding_dim`` this is the registry's model of ``input_size`` inputs (token
    ids are then fed one-hot, :func:`model_inputs`); with it, the registry's model of
    ``embedding_dim`` inputs wrapped in an :class:`~hadamnp.models.embedding.Embedded`
    table of ``input_size`` (the vocabulary) rows.

    Raises
    ------
    ConfigError
        ``embedding_dim`` for feature inputs.
    """
    if config.embedding_dim is None:
        return config.build_model(input_size, output_size, many_to_many)
    if input_kind != "tokens":
        raise ConfigError(f"embedding_dim applies to token inputs; task {config.task!r} has "
                          f"feature inputs")
    inner = config.build_model(config.embedding_dim, output_size, many_to_many)
    return Embedded(inner, EmbeddingConfig(input_size, config.embedding_dim,
                                           config.quant_embedding, padding_id))


def model_for(config, task):
    """The model of run ``config`` for a loaded ``task`` (built through the registry): its
    outputs follow the run's loss (one logit for ``bce``), token inputs get the run's
    embedding if it has one."""
    output_size = run_loss(config, task).output_size(task.output_size)
    return run_model(config, task.input_size, output_size, task.many_to_many,
                     task.input_kind, task.padding_id)


def model_without_data(config, input_size=None, output_size=None):
    """The model of run ``config`` without loading its task (``hadamnp info``).

    Sizes not given come from :func:`builtin_task_sizes`. An ``input_size`` given with an
    ``embedding_dim`` is the vocabulary of token inputs (padding id 0, as ``.npz`` tokens);
    ``output_size`` counts classes (``bce`` then has one output).
    """
    if input_size is None or output_size is None:
        d_in, d_out, many = builtin_task_sizes(config.task)
    else:
        d_in, d_out, many = input_size, output_size, False
    text_task = config.task == "text" and input_size is None
    output_size = output_size or d_out
    if config.loss is not None:
        output_size = get_loss(config.loss).output_size(output_size, "the model")
    return run_model(config, input_size or d_in, output_size, many,
                     "tokens" if text_task or input_size is not None else "features",
                     None if text_task else 0)


def model_inputs(task, x, dtype, model=None):
    """Batch inputs as ``model`` takes them.

    Feature inputs and token ids for a model that takes tokens (``model.input_kind ==
    "tokens"``, e.g. an embedding model) pass unchanged. Otherwise token ids ``(B, T)``
    become one-hot vectors ``(B, T, V)`` (the task's padding id, if any, becomes zeros),
    which is an embedding equal to the columns of the input matrix.
    """
    if task.input_kind != "tokens" or getattr(model, "input_kind", "features") == "tokens":
        return x
    out = np.zeros(x.shape + (task.input_size,), dtype=dtype)
    np.put_along_axis(out, x[..., None], 1, axis=-1)
    if task.padding_id is not None:
        out[..., task.padding_id] = 0
    return out


def evaluate(model, params, task, split, batch_size, max_batches=None, loss=None):
    """Mean loss and metrics of ``params`` on ``split`` (over every scored value).

    Evaluation is deterministic: stochastic quantizers use their deterministic form.

    Parameters
    ----------
    model : a :class:`hadamnp.models.protocol.Model`
    params : dict of arrays
    task : TaskData
    split : {"val", "test"}
    batch_size : int
    max_batches : int, optional
        Evaluate only the first ``max_batches`` batches of the split.
    loss : str or Loss, optional
        Default: the task's loss (a run's is :func:`run_loss`).

    Returns
    -------
    dict
        ``loss``, the loss's metric (``accuracy`` or ``mse``), the task's figures of the
        loss (``bpc`` for the text task), ``sequences``; for tasks with a constant
        baseline (copy: ``10 ln 8 / L``, adding: ``1/6``) also ``baseline`` and ``ratio``
        (loss / baseline).
    """
    loss_fn = get_loss(task.loss if loss is None else loss)
    dtype = model.config.dtype
    loss_sum, sums = 0.0, dict.fromkeys(loss_fn.metrics, 0.0)
    positions = sequences = 0
    batches = task.iter_split(split, batch_size, dtype=dtype)
    shape = states = None
    for x, y in itertools.islice(batches, max_batches):
        if x.shape[:2] != shape:  # one state buffer per batch shape
            shape, states = x.shape[:2], model.state_buffer(*x.shape[:2])
        logits, _ = model.forward(params, model_inputs(task, x, dtype, model),
                                  states_out=states)
        value, _ = loss_fn(logits, y)
        loss_sum += value * y.size
        for name, metric in loss_fn.score(logits, y).items():
            sums[name] += metric * y.size
        positions += y.size
        sequences += y.shape[0]
    mean = loss_sum / positions
    result = {"loss": mean, **{name: total / positions for name, total in sums.items()},
              **task.figures(mean), "sequences": sequences}
    baseline = task.baseline()
    if baseline is not None:
        result["baseline"] = baseline
        result["ratio"] = mean / baseline
    return result


def select_checkpoint(path, which=None):
    """The checkpoint file of a run chosen by name.

    Parameters
    ----------
    path : str or os.PathLike
        A run directory (or, with ``which=None``, a checkpoint file).
    which : {None, "last", "best", "epochN"}
        ``"last"``: ``checkpoint.npz``, the latest state (what None means for a directory);
        ``"best"``: ``checkpoint-best.npz``, the end of the epoch with the lowest validation
        loss; ``"epochN"``: the end-of-epoch snapshot ``checkpoint-epochNNN.npz`` (``N`` as
        in the file name, 0-based).

    Returns
    -------
    Path
        ``path`` itself when ``which`` is None, else the chosen file.

    Raises
    ------
    CheckpointError
        ``which`` given for a file, or the run has no such checkpoint (the message lists
        the ones it has).
    ConfigError
        ``which`` is not one of the forms above.
    """
    path = Path(path)
    if which is None:
        return path
    match = re.fullmatch(r"epoch(\d+)", which)
    if which not in ("last", "best") and match is None:
        raise ConfigError(f"checkpoint must be 'last', 'best' or 'epochN' (e.g. epoch2), "
                          f"got {which!r}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a checkpoint file; choosing the {which!r} "
                              f"checkpoint needs a run directory")
    if which == "last":
        file = ckpt_io.latest_checkpoint(path)
    elif which == "best":
        file = path / ckpt_io.BEST_NAME
    else:
        file = ckpt_io.checkpoint_path(path, int(match.group(1)))
    if file is None or not file.is_file():
        names = (["last"] if ckpt_io.latest_checkpoint(path) else []) \
            + (["best"] if (path / ckpt_io.BEST_NAME).is_file() else []) \
            + [f"epoch{number}" for number, _ in ckpt_io.epoch_checkpoints(path)]
        raise CheckpointError(f"{path} has no {which!r} checkpoint"
                              + (" (no validation split, or no epoch finished yet)"
                                 if which == "best" else "")
                              + f"; it has: {', '.join(names) or 'none'}")
    return file


def load_run(path):
    """Read a run's checkpoint: ``path`` is a run directory or a checkpoint file.

    Returns
    -------
    checkpoint : hadamnp.io.checkpoint.Checkpoint
    config : RunConfig
    path : Path
        The checkpoint file read.

    Raises
    ------
    CheckpointError
        No checkpoint, or a corrupt one, or one whose configuration is invalid.
    """
    path = Path(path)
    file = ckpt_io.latest_checkpoint(path) if path.is_dir() else path
    if file is None:
        raise CheckpointError(f"{path} holds no checkpoint")
    ckpt = ckpt_io.load_checkpoint(file)
    try:
        config = run_config_from_checkpoint(ckpt.config.get("run"))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{file}: invalid run configuration: {exc}") from None
    return ckpt, config, file


def model_from_checkpoint(ckpt, config, path):
    """The model a checkpoint was trained with, without loading the task's data.

    The checkpoint's ``model`` record is the model's description (name and full
    configuration); checkpoints of the first format record the bare HadamRNN configuration,
    from which the task sizes are taken.
    """
    stored = ckpt.config.get("model")
    try:
        if isinstance(stored, dict) and "name" in stored:
            model = model_from_description(stored)
        elif isinstance(stored, dict):
            return config.build_model(stored["input_size"], stored["output_size"],
                                      stored["many_to_many"])
        else:
            raise CheckpointError(f"{path}: the checkpoint holds no model description")
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model description: {exc}") from None
    # Every reader (resume, eval, export, info, golden) holds the model to its run
    # configuration, so a checkpoint edited on one side is refused everywhere alike.
    sizes = model.config
    embedding = getattr(sizes, "embedding", None)  # an Embedded model reads token ids
    try:
        expected = run_model(config, sizes.input_size, sizes.output_size, sizes.many_to_many,
                             "features" if embedding is None else "tokens",
                             0 if embedding is None else embedding.padding_id).describe()
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the run configuration does not build the "
                              f"checkpoint's model: {exc}") from None
    if model.describe() != expected:
        raise CheckpointError(f"{path}: the checkpoint's model {model.describe()} is not the "
                              f"model its run configuration builds ({expected})")
    return model


def check_restored_params(model, params, path):
    """:meth:`Model.check_params` as a :class:`CheckpointError` naming the file."""
    try:
        model.check_params(params)
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def restore(path):
    """``(model, params, config)`` of a run directory or checkpoint file (no data loaded).

    Raises
    ------
    CheckpointError
        Missing, corrupt or inconsistent checkpoint.
    """
    ckpt, config, file = load_run(path)
    model = model_from_checkpoint(ckpt, config, file)
    check_restored_params(model, ckpt.params, file)
    return model, ckpt.params, config


def task_inputs(task, dtype, count, source="train", batch_size=250, model=None):
    """The first ``count`` input sequences of a task, as ``model`` sees them
    (:func:`model_inputs`).

    Parameters
    ----------
    task : TaskData
    dtype : float dtype of the inputs
    count : int >= 1
    source : {"train", "val", "test"}
        ``"train"``: epoch-0 training batches (calibration data); else that split.
    batch_size : int
    model : a model, optional
        Token ids stay ids for a model that takes tokens; default: one-hot.

    Returns
    -------
    x : (B, T, d_in) inputs (token tasks one-hot) or (B, T) int64 ids, ``B <= count``
    y : (B,) or (B, T) int64 targets, or (B, d_out) float values
    """
    if source == "train":
        batches = task.iter_batches(0, batch_size, dtype=dtype)
    else:
        batches = task.iter_split(source, batch_size, dtype=dtype)
    xs, ys, total = [], [], 0
    for x, y in itertools.takewhile(lambda _: total < count, batches):
        xs.append(model_inputs(task, x, dtype, model))
        ys.append(y)
        total += y.shape[0]
    return np.concatenate(xs)[:count], np.concatenate(ys)[:count]


def default_run_dir(config, root="runs"):
    """A new ``root/<task>-<model>-n<hidden>-<time>`` path (suffixed if it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    hidden = config.model_options.get("hidden_size", "")
    base = Path(root) / f"{config.task}-{config.model}-n{hidden}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path



def evaluate_run(path, split="test", max_batches=None, batch_size=None, data_dir=None, *,
                 npz=None, text=None):
    """Evaluate the checkpoint of a run (``path``: run directory or checkpoint file).

    Parameters
    ----------
    path : str or os.PathLike
    split : {"test", "val"}
    max_batches : int, optional
        Only the first batches of the split.
    batch_size : int, optional
        Default: the run's ``eval_batch_size``.
    data_dir, npz, text : str, optional
        MNIST directory, ``.npz`` archive or text file, when it moved since training
        (:func:`relocate`).

    Returns
    -------
    result : dict
        As :func:`evaluate`.
    config : RunConfig
    position : dict
        ``epoch``, ``batch``, ``global_step`` of the checkpoint.
    """
    ckpt, config, file = load_run(path)
    config = relocate(config, data_dir, npz, text)
    model = model_from_checkpoint(ckpt, config, file)
    check_restored_params(model, ckpt.params, file)
    task = build_task(config)
    result = evaluate(model, ckpt.params, task, split, batch_size or config.eval_batch_size,
                      max_batches, loss=run_loss(config, task))
    return result, config, ckpt.position
