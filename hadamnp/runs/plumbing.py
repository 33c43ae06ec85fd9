"""Run plumbing shared by training, evaluation, golden files and deploy.

One place turns a :class:`~hadamnp.runs.config.RunConfig` into its task and model, reads a
run back from its checkpoint, and evaluates a model on a task split::

    task = build_task(config)                     # loads or generates the data
    model = model_for(config, task)               # through the model registry
    ckpt, config, file = load_run(run_dir)        # latest checkpoint of a run
    model, params, config = restore(run_dir)      # ... as a ready model (no data loaded)
    evaluate(model, params, task, "test", 500)    # mean loss / accuracy over a split

Neither :mod:`hadamnp.training` nor :mod:`hadamnp.deploy` is imported here; both import
this module.
"""

import itertools
import time
from pathlib import Path

import numpy as np

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io import checkpoint as ckpt_io
from hadamnp.io import copy_task, mnist
from hadamnp.io.datasets import ArrayTask, CopyTask, load_task
from hadamnp.models.losses import accuracy, softmax_cross_entropy
from hadamnp.models.registry import model_from_description
from hadamnp.runs.config import run_config_from_checkpoint

__all__ = ["TrainSubset", "build_task", "builtin_task_sizes", "model_for", "model_inputs",
           "evaluate", "load_run", "model_from_checkpoint", "check_restored_params",
           "restore", "task_inputs", "default_run_dir", "evaluate_run", "relocate",
           "MAX_ONE_HOT_VOCAB", "MAX_CLASSES"]

# One-hot token inputs stand in for an embedding; larger vocabularies would not fit.
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
        self._inner = task
        train = next(task.iter_batches(0, size, dtype=dtype))
        splits = {name: task.split(name, dtype) for name in task.split_names()}
        super().__init__(train, splits, task.seed)

    def _to_input(self, stored, dtype):
        return stored if self.input_kind == "tokens" else stored.astype(dtype, copy=False)

    def _options(self):
        return {**self._inner._options(), "train_size": self.num_train}

    def data_files(self):
        return self._inner.data_files()


def build_task(config):
    """The :class:`~hadamnp.io.datasets.TaskData` of ``config`` (loads or generates data)."""
    if config.task == "copy":
        options = {"length": config.copy_length, "seed": config.seed}
        if config.train_size is not None:
            options["num_train"] = config.train_size
        return load_task("copy", **options)
    if config.task == "npz":
        task = load_task("npz", path=config.npz, seed=config.seed,
                         val_fraction=config.npz_val_fraction,
                         test_fraction=config.npz_test_fraction)
    else:
        task = load_task(config.task, data_dir=config.data_dir, seed=config.seed)
    if config.train_size is not None:
        task = TrainSubset(task, config.train_size, config.dtype)
    if task.input_kind == "tokens" and task.input_size > MAX_ONE_HOT_VOCAB:
        raise ConfigError(f"token inputs are fed one-hot; vocabulary {task.input_size} "
                          f"exceeds {MAX_ONE_HOT_VOCAB} (no embedding layer yet)")
    if task.output_size > MAX_CLASSES:
        files = ", ".join(str(path) for path in task.data_files().values())
        raise ConfigError(f"task {task.name}{' (' + files + ')' if files else ''}: "
                          f"{task.output_size} classes (largest label + 1) exceeds "
                          f"{MAX_CLASSES}; check the labels")
    return task


def relocate(config, data_dir=None, npz=None):
    """``config`` reading its data from a new place (the data moved since training).

    Parameters
    ----------
    config : RunConfig
    data_dir : str or os.PathLike, optional
        MNIST directory.
    npz : str or os.PathLike, optional
        The ``.npz`` archive of an ``npz`` run (a :class:`ConfigError` for other tasks).
    """
    changes = {key: str(value) for key, value in (("data_dir", data_dir), ("npz", npz))
               if value is not None}
    return config.replace(**changes) if changes else config


def builtin_task_sizes(name):
    """``(d_in, d_out, many_to_many)`` of a built-in task, without loading its data."""
    sizes = {"copy": (copy_task.VOCABULARY, copy_task.NUM_CLASSES, True),
             "smnist": (1, mnist.NUM_CLASSES, False),
             "pmnist": (1, mnist.NUM_CLASSES, False)}
    if name not in sizes:
        raise ConfigError(f"the sizes of task {name!r} depend on its data; give them "
                          f"explicitly (input and output size)")
    return sizes[name]


def model_for(config, task):
    """The model of run ``config`` for a loaded ``task`` (built through the registry)."""
    return config.build_model(task.input_size, task.output_size, task.many_to_many)


def model_inputs(task, x, dtype):
    """Batch inputs as the model's ``(B, T, d_in)`` array.

    Token ids ``(B, T)`` become one-hot vectors (id 0, padding, becomes zeros), which is an
    embedding equal to the columns of the input matrix.
    """
    if task.input_kind != "tokens":
        return x
    out = np.zeros(x.shape + (task.input_size,), dtype=dtype)
    np.put_along_axis(out, x[..., None], 1, axis=-1)
    out[..., 0] = 0
    return out


def evaluate(model, params, task, split, batch_size, max_batches=None):
    """Mean loss and accuracy of ``params`` on ``split`` (over every scored position).

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

    Returns
    -------
    dict
        ``loss``, ``accuracy``, ``sequences``; for the copy task also ``baseline``
        (``10 ln 8 / L``) and ``ratio`` (loss / baseline).
    """
    dtype = model.config.dtype
    loss_sum = correct_sum = 0.0
    positions = sequences = 0
    batches = task.iter_split(split, batch_size, dtype=dtype)
    shape = states = None
    for x, y in itertools.islice(batches, max_batches):
        if x.shape[:2] != shape:  # one state buffer per batch shape
            shape, states = x.shape[:2], model.state_buffer(*x.shape[:2])
        logits, _ = model.forward(params, model_inputs(task, x, dtype), states_out=states)
        loss, _ = softmax_cross_entropy(logits, y)
        loss_sum += loss * y.size
        correct_sum += accuracy(logits, y) * y.size
        positions += y.size
        sequences += y.shape[0]
    result = {"loss": loss_sum / positions, "accuracy": correct_sum / positions,
              "sequences": sequences}
    if isinstance(task, CopyTask):
        result["baseline"] = task.baseline()
        result["ratio"] = result["loss"] / result["baseline"]
    return result


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
    try:
        expected = config.build_model(sizes.input_size, sizes.output_size,
                                      sizes.many_to_many).describe()
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


def task_inputs(task, dtype, count, source="train", batch_size=250):
    """The first ``count`` input sequences of a task, as the model sees them.

    Parameters
    ----------
    task : TaskData
    dtype : float dtype of the inputs
    count : int >= 1
    source : {"train", "val", "test"}
        ``"train"``: epoch-0 training batches (calibration data); else that split.
    batch_size : int

    Returns
    -------
    x : (B, T, d_in) inputs (token tasks one-hot), ``B <= count``
    y : (B,) or (B, T) int64 targets
    """
    if source == "train":
        batches = task.iter_batches(0, batch_size, dtype=dtype)
    else:
        batches = task.iter_split(source, batch_size, dtype=dtype)
    xs, ys, total = [], [], 0
    for x, y in itertools.takewhile(lambda _: total < count, batches):
        xs.append(model_inputs(task, x, dtype))
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



def evaluate_run(path, split="test", max_batches=None, batch_size=None, data_dir=None,
                 npz=None):
    """Evaluate the checkpoint of a run (``path``: run directory or checkpoint file).

    Parameters
    ----------
    path : str or os.PathLike
    split : {"test", "val"}
    max_batches : int, optional
        Only the first batches of the split.
    batch_size : int, optional
        Default: the run's ``eval_batch_size``.
    data_dir, npz : str, optional
        MNIST directory or ``.npz`` archive, when it moved since training
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
    config = relocate(config, data_dir, npz)
    model = model_from_checkpoint(ckpt, config, file)
    check_restored_params(model, ckpt.params, file)
    task = build_task(config)
    result = evaluate(model, ckpt.params, task, split, batch_size or config.eval_batch_size,
                      max_batches)
    return result, config, ckpt.position
