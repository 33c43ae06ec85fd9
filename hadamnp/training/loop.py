"""The training loop: resumable, bit-for-bit reproducible runs of a :class:`RunConfig`.

One optimizer step on batch ``i`` of epoch ``e``::

    logits, cache = model.forward(params, x)            x, y = batch (seed, e, i)
    loss, dlogits = softmax_cross_entropy(logits, y)    mean over scored positions
    grads = model.backward(params, cache, dlogits)      BPTT through the STEs
    [clip_grad_norm(grads, c)]
    optimizer.step(params, grads, state, lr_e)          lr_e = lr * gamma ** e  (StepLR)

Reproducibility. Batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``
(:mod:`hadamnp.io.datasets`), the initial parameters on ``seed`` (stream
``derived_rng(seed, INIT_STREAM)``) and the learning rate on ``e``; the loop draws no other
random numbers. A checkpoint therefore needs only the parameters, the optimizer state and
the position ``(epoch, batch, global_step)`` to continue exactly as an uninterrupted run.
It also records the state of the initialisation generator after drawing, the run
configuration, the model and task descriptions, the running sums of the epoch in progress
and the length of ``metrics.jsonl`` that belongs to it.

Interruption. Each step works on copies and then replaces the whole training state with
one assignment, so a ``KeyboardInterrupt`` (Ctrl-C) arriving anywhere leaves a consistent
state; it is checkpointed before the interrupt propagates.

Run directory: ``checkpoint.npz`` (latest, rewritten atomically at step 0, every epoch,
every ``checkpoint_every`` steps, on interrupt and at the end), ``checkpoint-epochNNN.npz``
(end of epoch NNN), ``metrics.jsonl`` (:mod:`hadamnp.training.metrics`),
``config.toml`` (the resolved configuration, readable by ``hadamnp train --config``) and,
while a process trains in it, ``run.lock`` (its pid).

Progress goes to an optional ``callback(event)`` (the library prints nothing); ``event`` is
a dict with ``"event"`` one of ``"start"``, ``"epoch_start"``, ``"step"``, ``"epoch_end"``,
``"test"``, and the figures of that moment (see :func:`train`).
"""

import dataclasses
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hadamnp.conventions import sign
from hadamnp.errors import CheckpointError, ConfigError, NonFiniteError
from hadamnp.io import checkpoint as ckpt_io
from hadamnp.io import copy_task, mnist
from hadamnp.io.datasets import ArrayTask, CopyTask, derived_rng, load_task
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.training.config import RunConfig, config_to_toml
from hadamnp.training.losses import accuracy, softmax_cross_entropy
from hadamnp.training.metrics import METRICS_NAME, MetricsLog, json_safe
from hadamnp.training.optim import clip_grad_norm, make_optimizer, step_lr

# Spawn key of the initial-parameter stream; the task streams use keys 0, 1, 2.
INIT_STREAM = 3
CONFIG_NAME = "config.toml"
LOCK_NAME = "run.lock"
# Options that may change when a run is resumed: none of them alters the trajectory.
RESUME_OVERRIDES = ("epochs", "data_dir", "checkpoint_every", "val_batches", "test_batches",
                    "eval_batch_size", "log_every")
# One-hot token inputs stand in for an embedding; larger vocabularies would not fit.
MAX_ONE_HOT_VOCAB = 1024


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
    return task


def model_config(config, input_size, output_size, many_to_many):
    """The :class:`HadamRNNConfig` of ``config`` for a task of the given sizes."""
    return HadamRNNConfig(
        input_size=input_size, hidden_size=config.hidden, output_size=output_size,
        block_size=config.block_size if config.model == "block-hadamrnn" else None,
        bits_in=config.bits, bits_out=config.bits,
        recurrent="dense" if config.model == "dense" else "hadamard",
        nonlinear=config.nonlinear, many_to_many=many_to_many, ste=config.ste,
        dtype=config.dtype)


def task_model_config(config, task):
    """The :class:`HadamRNNConfig` of ``config`` on a loaded ``task``."""
    return model_config(config, task.input_size, task.output_size, task.many_to_many)


def builtin_task_sizes(name):
    """``(d_in, d_out, many_to_many)`` of a built-in task, without loading its data."""
    sizes = {"copy": (copy_task.VOCABULARY, copy_task.NUM_CLASSES, True),
             "smnist": (1, mnist.NUM_CLASSES, False),
             "pmnist": (1, mnist.NUM_CLASSES, False)}
    if name not in sizes:
        raise ConfigError(f"the sizes of task {name!r} depend on its data; give them "
                          f"explicitly (input and output size)")
    return sizes[name]


def model_inputs(task, x, dtype):
    """Batch inputs as the model's ``(B, T, d_in)`` array.

    Token ids ``(B, T)`` become one-hot vectors (id 0, padding, becomes zeros), which is an
    embedding equal to the columns of ``Q(U)``.
    """
    if task.input_kind != "tokens":
        return x
    out = np.zeros(x.shape + (task.input_size,), dtype=dtype)
    np.put_along_axis(out, x[..., None], 1, axis=-1)
    out[..., 0] = 0
    return out


def reuse_state_buffer(model, buffer, x):
    """``buffer`` if it fits batch ``x`` (B, T, ...), else a new :meth:`HadamRNN.state_buffer`.

    One buffer serves every batch of a run: freshly mapped memory page-faults far below
    the memory bandwidth, and the states of one batch fill hundreds of MB.
    """
    B, T = x.shape[:2]
    if buffer is None or buffer.shape != (T, model.config.hidden_size, B):
        buffer = model.state_buffer(B, T)
    return buffer


def evaluate(model, params, task, split, batch_size, max_batches=None):
    """Mean loss and accuracy of ``params`` on ``split`` (over every scored position).

    Parameters
    ----------
    model : HadamRNN
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
    states = None
    for x, y in itertools.islice(batches, max_batches):
        states = reuse_state_buffer(model, states, x)
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


@dataclass(frozen=True)
class _State:
    """Everything that changes during training; replaced whole, never mutated."""

    params: dict
    opt_state: dict
    epoch: int       # epoch in progress (0-based)
    batch: int       # batches of that epoch done
    step: int        # optimizer steps done
    sums: tuple      # (loss x positions, correct positions, positions) of the epoch
    offset: int      # bytes of metrics.jsonl written up to this state
    history: tuple   # epoch records so far
    test: dict | None = None


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`train` / :func:`resume`.

    Attributes
    ----------
    run_dir : Path
    config : RunConfig
    params : dict of arrays
        Latent parameters at the end.
    epoch, batch, step : int
        Position reached.
    finished : bool
        All epochs done and the test split evaluated (False when ``max_steps`` stopped it).
    history : list of dict
        Epoch records (train and validation figures).
    test : dict or None
        Final test figures (see :func:`evaluate`).
    seconds : float
        Wall-clock time of this call.
    """

    run_dir: Path
    config: RunConfig
    params: dict
    epoch: int
    batch: int
    step: int
    finished: bool
    history: list
    test: dict | None
    seconds: float


def _optimizer(config):
    if config.optimizer == "sgd":
        return make_optimizer("sgd", momentum=config.momentum)
    return make_optimizer("adam")


def _opt_to_checkpoint(opt_state):
    # Optimizer keys are "<slot>.<param>" arrays plus 0-d scalars such as "step".
    out = {}
    for key, value in opt_state.items():
        slot, dot, name = key.partition(".")
        if dot:
            out.setdefault(slot, {})[name] = value
        else:
            out[key] = value.item()
    return out


def _opt_from_checkpoint(stored, template, path):
    out = {}
    for key, value in stored.items():
        if isinstance(value, dict):
            out.update({f"{key}.{name}": array for name, array in value.items()})
        else:
            out[key] = np.array(value, dtype=template.get(key, np.zeros(())).dtype)
    for key, ref in template.items():
        got = out.get(key)
        if got is None or got.shape != ref.shape or got.dtype != ref.dtype:
            raise CheckpointError(
                f"{path}: optimizer state {key!r} is missing or has the wrong shape/dtype "
                f"(expected {ref.shape} {ref.dtype})")
    extra = sorted(set(out) - set(template))
    if extra:
        raise CheckpointError(f"{path}: unexpected optimizer state {extra}")
    return out


def _check_restored_params(model, params, path):
    try:
        model.check_params(params)
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    for name, value in params.items():
        if value.dtype != np.dtype(model.config.dtype):
            raise CheckpointError(f"{path}: parameter {name} has dtype {value.dtype}, the "
                                  f"configuration says {model.config.dtype}")


class _RunLock:
    """``RUN_DIR/run.lock`` (holding the owner's pid) while a process trains in ``RUN_DIR``.

    Two processes writing one run directory would interleave checkpoints and metrics; the
    lock makes the second one fail with a clear message. A lock left by a process that no
    longer exists (POSIX) is taken over.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_NAME

    @staticmethod
    def _alive(pid):
        if os.name != "posix":
            return True  # no portable liveness probe; the user removes a stale lock
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __enter__(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text(encoding="ascii").strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and self._alive(pid):
                    raise CheckpointError(
                        f"{self.path.parent} is in use by process {pid} (lock file "
                        f"{self.path}); wait for it or remove the lock if it is stale")
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise CheckpointError(f"cannot create lock {self.path}: {exc}") from exc
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
            return self
        raise CheckpointError(f"cannot take the lock {self.path}")

    def __exit__(self, *exc_info):
        self.path.unlink(missing_ok=True)


class _Run:
    """One training session over a run directory (used by :func:`train` / :func:`resume`)."""

    def __init__(self, config, run_dir, task, model, init_rng_state):
        self.config = config
        self.run_dir = Path(run_dir)
        self.task = task
        self.model = model
        self.optimizer = _optimizer(config)
        self.init_rng_state = init_rng_state
        self.batches_per_epoch = task.num_batches(config.batch_size)
        if config.steps_per_epoch is not None:
            self.batches_per_epoch = min(self.batches_per_epoch, config.steps_per_epoch)
        self.states = None  # (T, n, B) buffer reused by every training batch

    def checkpoint_config(self):
        return {"run": self.config.to_dict(), "model": self.model.config.to_dict(),
                "task": self.task.describe()}

    def save(self, state, path=None):
        self.log.sync()
        metrics = json_safe({"sums": state.sums, "jsonl_offset": state.offset,
                             "history": state.history, "test": state.test})
        ckpt = ckpt_io.Checkpoint(
            params=state.params, optimizer_state=_opt_to_checkpoint(state.opt_state),
            position={"epoch": state.epoch, "batch": state.batch, "global_step": state.step},
            rng_state={"init": self.init_rng_state}, config=self.checkpoint_config(),
            metrics=metrics)
        ckpt_io.save_checkpoint(path or ckpt_io.checkpoint_path(self.run_dir), ckpt)

    def run(self, state, callback, max_steps, fresh):
        """Train from ``state`` to the end (or ``max_steps``); return a :class:`RunResult`."""
        emit = callback or (lambda event: None)
        start = time.perf_counter()
        # ``self.state`` is only ever replaced by one assignment, so whenever an interrupt
        # arrives it holds a committed, consistent state (see the module docstring).
        self.state = state
        with _RunLock(self.run_dir):
            return self._run_locked(emit, max_steps, fresh, start)

    def _run_locked(self, emit, max_steps, fresh, start):
        state = self.state
        self.log = MetricsLog(self.run_dir / METRICS_NAME, state.offset)
        try:
            if fresh:
                self.save(self.state)
            emit({"event": "start", "epoch": state.epoch, "batch": state.batch,
                  "step": state.step, "epochs": self.config.epochs,
                  "batches_per_epoch": self.batches_per_epoch})
            stopped = max_steps is not None and state.step >= max_steps
            while self.state.epoch < self.config.epochs and not stopped:
                stopped = self._epoch(emit, max_steps)
            if not stopped and self.state.test is None:
                self._test(emit)
            self.save(self.state)
        except KeyboardInterrupt:
            self.save(self.state)
            raise
        finally:
            self.log.close()
        state = self.state
        return RunResult(run_dir=self.run_dir, config=self.config, params=state.params,
                         epoch=state.epoch, batch=state.batch, step=state.step,
                         finished=state.test is not None, history=list(state.history),
                         test=state.test, seconds=time.perf_counter() - start)

    def _epoch(self, emit, max_steps):
        """Finish the epoch in progress; return True when ``max_steps`` stopped it."""
        config, epoch, first = self.config, self.state.epoch, self.state.batch
        lr = step_lr(config.lr, epoch, config.gamma)
        started = time.perf_counter()
        emit({"event": "epoch_start", "epoch": epoch, "epochs": config.epochs,
              "batch": first, "batches": self.batches_per_epoch, "lr": lr})
        batches = self.task.iter_batches(epoch, config.batch_size, start_batch=first,
                                         dtype=config.dtype)
        for x, y in itertools.islice(batches, self.batches_per_epoch - first):
            self.state, record = self._step(self.state, x, y, lr)
            emit({"event": "step", **record})
            step = self.state.step
            if config.checkpoint_every is not None and step % config.checkpoint_every == 0:
                self.save(self.state)
            if max_steps is not None and step >= max_steps:
                return True
        state = self.state
        val = None
        if "val" in self.task.split_names():
            val = evaluate(self.model, state.params, self.task, "val",
                           config.eval_batch_size, config.val_batches)
        loss_sum, correct, positions = state.sums
        record = {"kind": "epoch", "epoch": epoch, "step": state.step, "lr": lr,
                  "train_loss": loss_sum / positions, "train_accuracy": correct / positions,
                  "seconds": time.perf_counter() - started}
        if val is not None:
            record.update({f"val_{key}": value for key, value in val.items()})
        offset = self.log.write(record)
        self.state = dataclasses.replace(state, epoch=epoch + 1, batch=0, sums=(0.0, 0.0, 0),
                                         offset=offset, history=state.history + (record,))
        self.save(self.state)
        self.save(self.state, ckpt_io.checkpoint_path(self.run_dir, epoch))
        emit({"event": "epoch_end", **record})
        return False

    def _step(self, state, x, y, lr):
        """One optimizer step on copies; return the new state and its metrics record."""
        config, model = self.config, self.model
        self.states = reuse_state_buffer(model, self.states, x)
        logits, cache = model.forward(state.params, model_inputs(self.task, x, config.dtype),
                                      states_out=self.states)
        loss, dlogits = softmax_cross_entropy(logits, y)
        if not np.isfinite(loss):
            raise NonFiniteError(
                f"the training loss became {loss} at step {state.step + 1} (epoch "
                f"{state.epoch}, batch {state.batch}); lower the learning rate or clip "
                f"gradients (clip_grad_norm)")
        acc = accuracy(logits, y)
        grads = model.backward(state.params, cache, dlogits)
        grad_norm = (clip_grad_norm(grads, config.clip_grad_norm)
                     if config.clip_grad_norm is not None else None)
        params = {name: value.copy() for name, value in state.params.items()}
        opt_state = {name: value.copy() for name, value in state.opt_state.items()}
        self.optimizer.step(params, grads, opt_state, lr,
                            lr_scales={"u": config.sign_lr_scale})
        record = {"kind": "step", "epoch": state.epoch, "batch": state.batch,
                  "step": state.step + 1, "loss": loss, "accuracy": acc, "lr": lr}
        if "u" in params:
            record["flips"] = int(np.count_nonzero(sign(params["u"]) != sign(state.params["u"])))
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        offset = state.offset
        if (state.step + 1) % config.log_every == 0:
            offset = self.log.write(record)
        loss_sum, correct, positions = state.sums
        new = _State(params=params, opt_state=opt_state, epoch=state.epoch,
                     batch=state.batch + 1, step=state.step + 1,
                     sums=(loss_sum + loss * y.size, correct + acc * y.size,
                           positions + y.size),
                     offset=offset, history=state.history)
        return new, record

    def _test(self, emit):
        state = self.state
        if "test" not in self.task.split_names():
            self.state = dataclasses.replace(state, test={})
            return
        test = evaluate(self.model, state.params, self.task, "test",
                        self.config.eval_batch_size, self.config.test_batches)
        record = {"kind": "test", "epoch": state.epoch, "step": state.step, **test}
        offset = self.log.write(record)
        self.state = dataclasses.replace(state, offset=offset, test=test)
        emit({"event": "test", **record})


def train(config, run_dir, *, callback=None, max_steps=None):
    """Train a fresh model on ``config``'s task, writing to ``run_dir``.

    Parameters
    ----------
    config : RunConfig
    run_dir : str or os.PathLike
        Created if missing; must not already hold a checkpoint.
    callback : callable, optional
        Called with progress events (dicts, key ``"event"``): ``start`` (position,
        ``epochs``, ``batches_per_epoch``), ``epoch_start`` (``epoch``, ``batch``,
        ``batches``, ``lr``), ``step`` (``loss``, ``accuracy``, ``lr``, ``flips``...),
        ``epoch_end`` (train and ``val_`` figures), ``test``. An exception raised by the
        callback stops training; a ``KeyboardInterrupt`` is checkpointed first.
    max_steps : int, optional
        Stop (with a checkpoint, resumable) once this many optimizer steps are done.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, CheckpointError, DataFormatError
        Bad configuration or data; ``run_dir`` already holds a run.
    KeyboardInterrupt
        After writing a checkpoint of the last completed step.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    run_dir = Path(run_dir)
    existing = ckpt_io.latest_checkpoint(run_dir)
    if existing is not None:
        raise CheckpointError(f"{run_dir} already holds a run ({existing.name}); resume it "
                              f"or choose another output directory")
    task = build_task(config)
    model = HadamRNN(task_model_config(config, task))
    init_rng = derived_rng(config.seed, INIT_STREAM)
    params = model.init_params(init_rng)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_NAME).write_text(config_to_toml(config), encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"cannot create run directory {run_dir}: {exc}") from exc
    run = _Run(config, run_dir, task, model, ckpt_io.rng_to_state(init_rng))
    state = _State(params=params, opt_state=run.optimizer.init_state(params), epoch=0,
                   batch=0, step=0, sums=(0.0, 0.0, 0), offset=0, history=())
    return run.run(state, callback, max_steps, fresh=True)


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
    run = ckpt.config.get("run")
    try:
        config = RunConfig.from_dict(run)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{file}: invalid run configuration: {exc}") from None
    return ckpt, config, file


def resume(run_dir, *, callback=None, max_steps=None, **overrides):
    """Continue the run in ``run_dir`` from its latest checkpoint, exactly.

    Parameters
    ----------
    run_dir : str or os.PathLike
    callback, max_steps
        As in :func:`train`.
    **overrides
        Options of :data:`RESUME_OVERRIDES` (e.g. more ``epochs``); any other is a
        :class:`ConfigError`, since it would change the trajectory.

    Returns
    -------
    RunResult

    Raises
    ------
    CheckpointError
        Missing, corrupt or incompatible checkpoint (the files are left untouched).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    ckpt, config, path = load_run(run_dir)
    refused = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming (only "
                          f"{', '.join(RESUME_OVERRIDES)} may change)")
    config = config.replace(**overrides)
    task = build_task(config)
    described = {key: value for key, value in task.describe().items() if key != "path"}
    stored = {key: value for key, value in ckpt.config.get("task", {}).items()
              if key != "path"}
    if described != stored:
        raise CheckpointError(f"{path}: the task data differ from the checkpoint's "
                              f"(now {described}, then {stored})")
    model = HadamRNN(task_model_config(config, task))
    _check_restored_params(model, ckpt.params, path)
    if "init" not in ckpt.rng_state:
        raise CheckpointError(f"{path}: no 'init' generator state")
    run = _Run(config, run_dir, task, model, ckpt.rng_state["init"])
    opt_state = _opt_from_checkpoint(ckpt.optimizer_state,
                                     run.optimizer.init_state(ckpt.params), path)
    metrics = ckpt.metrics
    try:
        loss_sum, correct, positions = metrics["sums"]
        state = _State(params=ckpt.params, opt_state=opt_state,
                       epoch=ckpt.position["epoch"], batch=ckpt.position["batch"],
                       step=ckpt.position["global_step"],
                       sums=(float(loss_sum), float(correct), int(positions)),
                       offset=int(metrics["jsonl_offset"]),
                       history=tuple(metrics["history"]), test=metrics["test"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed training metrics in checkpoint: "
                              f"{exc!r}") from None
    if state.batch > run.batches_per_epoch:
        raise CheckpointError(f"{path}: position batch {state.batch} is past the "
                              f"{run.batches_per_epoch} batches of an epoch")
    if state.epoch < config.epochs and state.test is not None:
        state = dataclasses.replace(state, test=None)  # more epochs: test again at the end
    return run.run(state, callback, max_steps, fresh=False)


def evaluate_checkpoint(path, split="test", max_batches=None, batch_size=None, data_dir=None):
    """Evaluate the checkpoint of a run (``path``: run directory or checkpoint file).

    Parameters
    ----------
    path : str or os.PathLike
    split : {"test", "val"}
    max_batches : int, optional
        Only the first batches of the split.
    batch_size : int, optional
        Default: the run's ``eval_batch_size``.
    data_dir : str, optional
        MNIST directory, when it moved since training.

    Returns
    -------
    result : dict
        As :func:`evaluate`.
    config : RunConfig
    position : dict
        ``epoch``, ``batch``, ``global_step`` of the checkpoint.
    """
    ckpt, config, file = load_run(path)
    if data_dir is not None:
        config = config.replace(data_dir=str(data_dir))
    task = build_task(config)
    model = HadamRNN(task_model_config(config, task))
    _check_restored_params(model, ckpt.params, file)
    result = evaluate(model, ckpt.params, task, split, batch_size or config.eval_batch_size,
                      max_batches)
    return result, config, ckpt.position
