"""The training loop: resumable, bit-for-bit reproducible runs of a :class:`RunConfig`.

The loop talks to the model only through the model protocol
(:mod:`hadamnp.models.protocol`). One optimizer step on batch ``i`` of epoch ``e``, global
step ``k``::

    [params |= model.project_params(params, k)]         optional: e.g. SiMaN clipping
    logits, cache = model.forward(params, x, rng=r_k)   x, y = batch (seed, e, i)
    loss, dlogits = L(logits, y)                        the run's loss (run_loss: the
                                                        task's by default), a mean over
                                                        the scored values
    grads = model.backward(params, cache, dlogits)      BPTT through the STEs
    [clip_grad_norm(grads, c)]                          trainable parameters only
    optimizer.step(params, grads, state, lr_k, ...)     lr_k from the schedule (StepLR
                                                        lr * gamma ** e, or cosine, with an
                                                        optional warm-up:
                                                        :mod:`hadamnp.training.schedule`),
                                                        per-role lr scales, weight decay;
                                                        role optimizers (e.g. Bop) for
                                                        the roles that have one
    [clip latent parameters of the clipped roles (and those the model always
     clips, ParamSpec.clip) to their declared bound]

Logged steps (every ``log_every``) record the loss, accuracy, learning rate, the sign
flips of the step and the running flip count (``flips_total``; epoch records carry the
epoch's ``flips``) and, with ``diagnostics`` on, :mod:`hadamnp.training.diagnostics`.
Epoch records also count loss spikes (``spikes``, ``flip_spikes``), and the collapse
detector (:mod:`hadamnp.training.guard`) adds ``warning`` records and events.

With OIALR (``config.oialr``, :mod:`hadamnp.training.oialr`) the optimizer updates the
trainable factor ``Σ`` of each factored matrix ``W = U Σ Vᵀ`` from ``dΣ = Uᵀ dW V``, ``W``
is recomposed after the update, and the schedule's grid steps switch, re-orthogonalize and
prune; the factors are carried in the optimizer state.

Reproducibility. Batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``
(:mod:`hadamnp.io.datasets`), the initial parameters on ``seed`` (stream
``derived_rng(seed, INIT_STREAM)``), the draws of stochastic quantizers on ``(seed, k)``
(``r_k = derived_rng(seed, QUANT_STREAM, k)``) and the learning rate on ``(k, e)``; the
loop draws no other random numbers. A checkpoint therefore needs only the parameters, the
optimizer state and the position ``(epoch, batch, global_step)`` to continue exactly as
an uninterrupted run.
It also records the state of the initialisation generator after drawing, the run
configuration, the model and task descriptions, the running sums of the epoch in progress
and the length of ``metrics.jsonl`` that belongs to it.

Optional model members (:mod:`hadamnp.models.protocol`). ``project_params(params, k)``
rewrites parameters before the forward pass of step ``k`` (a deterministic function of the
parameters and ``k``, so the schedule needs no state of its own and resumes exactly);
``diagnostics(params, cache=None, grads=None)`` adds its figures (flat keys such as
``alpha.U``, ``ones.W``, ``h_absmax``) to the logged step records (the step's forward
parameters, cache and gradients) and, without a cache, to the epoch records (the epoch's
final parameters).

Interruption. Each step works on copies and then replaces the whole training state with
one assignment, so a ``KeyboardInterrupt`` (Ctrl-C) arriving anywhere leaves a consistent
state; it is checkpointed before the interrupt propagates.

Run directory: ``checkpoint.npz`` (latest, rewritten atomically at step 0, every epoch,
every ``checkpoint_every`` steps, on interrupt and at the end), ``checkpoint-epochNNN.npz``
(end of epoch NNN, 0-based; only the last ``keep_last`` are kept when it is set),
``checkpoint-best.npz`` (the end of the epoch with the best validation figure so far:
accuracy for classification, else the loss; :func:`best_epoch`),
``metrics.jsonl`` (:mod:`hadamnp.training.metrics`), ``config.toml`` (the resolved
configuration, readable by ``hadamnp train --config``) and, while a process trains in it,
``run.lock``. An epoch's files are written before the state moves past the epoch, so an
interrupt while writing them makes the resumed run redo (identically) the epoch's
validation and files.

Early stopping. With ``patience = P``, training ends once the last ``P`` epochs brought no
validation figure better than the best before them; the test split is then evaluated on the last
parameters (``checkpoint-best.npz`` holds the best ones). The decision depends only on
the recorded epoch history, so resuming reproduces it.

Integrity (:mod:`hadamnp.runs.integrity`). :func:`train` and :func:`resume` hold the run's
lock for the whole session and decide whether the directory is fresh or which checkpoint
to continue only once they hold it; then they delete the temporary files a killed writer
left. Checkpoints record the SHA-256 of every data file the task read; :func:`resume`
refuses changed data unless ``allow_data_change`` (then a ``data_change`` record goes to
``metrics.jsonl``).

Progress goes to an optional ``callback(event)`` (the library prints nothing); ``event`` is
a dict with ``"event"`` one of ``"start"``, ``"epoch_start"``, ``"step"``, ``"eval_start"``,
``"epoch_end"``, ``"early_stop"``, ``"test"``, and the figures of that moment (see
:func:`train`).
"""

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hadamnp.conventions import sign
from hadamnp.errors import CheckpointError, ConfigError, NonFiniteError
from hadamnp.io import checkpoint as ckpt_io
from hadamnp.io.atomic import write_atomic
from hadamnp.io.datasets import derived_rng
from hadamnp.runs.config import RunConfig, config_to_toml
from hadamnp.runs.integrity import (CONFIG_NAME, RunLock, data_changes, data_record,
                                    describe_data_changes)
from hadamnp.runs.plumbing import (build_task, check_restored_params, evaluate, load_run,
                                   model_for, model_from_checkpoint, model_inputs, run_loss)
from hadamnp.training.diagnostics import gradient_diagnostics, update_diagnostics
from hadamnp.training.guard import epoch_warnings, is_spike
from hadamnp.training.metrics import METRICS_NAME, MetricsLog, json_safe, primary_figure
from hadamnp.training.oialr import LowRankTraining
from hadamnp.training.optim import clip_grad_norm, make_optimizer
from hadamnp.training.role_optim import RoleOptimizer, get_role_optimizer
from hadamnp.training.schedule import check_resume, learning_rate

__all__ = ["train", "resume", "RunResult", "RESUME_OVERRIDES", "ParamGroups"]

# Spawn keys of the run's own streams; the task streams use keys 0, 1, 2.
INIT_STREAM = 3    # initial parameters
QUANT_STREAM = 4   # stochastic quantizers: stream (4, step) for optimizer step `step`
# Options that may change when a run is resumed: none of them alters the trajectory (the
# data files, found anew through data_dir, npz or text, are checked by their digests).
RESUME_OVERRIDES = ("epochs", "data_dir", "npz", "text", "checkpoint_every", "val_batches",
                    "test_batches", "eval_batch_size", "log_every", "keep_last", "patience",
                    "diagnostics")


@dataclass(frozen=True)
class ParamGroups:
    """Per-parameter training options derived from the model's parameter roles.

    Attributes
    ----------
    trainable : tuple of str
        Parameters the optimizer updates (every role but ``frozen``).
    lr_scales, weight_decay : dict name -> float
        From the run's per-role tables (1 and 0 when a role is absent).
    bounds : dict name -> float
        Clipping bounds of the parameters whose role the run clips, and of those the
        model always clips (``ParamSpec.clip``).
    signs : tuple of str
        Parameters of role ``signs`` (their sign flips are counted).
    optimizers : dict name -> role optimizer
        Parameters whose role has its own optimizer (``role_optimizers``).
    """

    trainable: tuple
    lr_scales: dict
    weight_decay: dict
    bounds: dict
    signs: tuple
    optimizers: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, model, config):
        specs = model.param_specs()
        trainable = tuple(name for name, spec in specs.items() if spec.trainable)
        return cls(
            trainable=trainable,
            lr_scales={name: config.lr_scales.get(specs[name].role, 1.0) for name in trainable},
            weight_decay={name: config.weight_decay.get(specs[name].role, 0.0)
                          for name in trainable},
            bounds={name: specs[name].bound for name in trainable
                    if specs[name].role in config.clip_roles or specs[name].clip},
            signs=tuple(name for name in trainable if specs[name].role == "signs"),
            optimizers={name: get_role_optimizer(config.role_optimizers[specs[name].role])
                        for name in trainable if specs[name].role in config.role_optimizers})


@dataclass(frozen=True)
class _State:
    """Everything that changes during training; replaced whole, never mutated."""

    params: dict
    opt_state: dict
    epoch: int       # epoch in progress (0-based)
    batch: int       # batches of that epoch done
    step: int        # optimizer steps done
    sums: tuple      # (loss x positions, metric x positions per metric, positions) of
                     # the epoch; classification: (loss, correct positions, positions)
    offset: int      # bytes of metrics.jsonl written up to this state
    history: tuple   # epoch records so far
    test: dict | None = None
    flips: tuple = (0, 0)  # sign flips (of the run, of the epoch in progress)
    watch: tuple = (0, 0, 0)  # epoch's spikes, spikes right after flips; last step's flips


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
        All epochs done (or stopped early) and the test split evaluated (False when
        ``max_steps`` stopped it).
    history : list of dict
        Epoch records (train and validation figures).
    test : dict or None
        Final test figures (see :func:`evaluate`).
    seconds : float
        Wall-clock time of this call.
    best_epoch : int or None
        Epoch (0-based) of the best validation figure, saved in ``checkpoint-best.npz``.
    stopped_early : bool
        Early stopping (``patience``) ended the run before its last epoch.
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
    best_epoch: int | None = None
    stopped_early: bool = False


def best_epoch(history):
    """Index of the epoch record with the best validation figure (first on ties), or None
    when no record has one. The figure is :func:`~hadamnp.training.metrics.primary_figure`'s:
    the accuracy for classification, else the loss."""
    if not history:
        return None
    name, higher = primary_figure(history[-1])
    values = [(record.get(f"val_{name}"), i) for i, record in enumerate(history)]
    finite = [(-value if higher else value, i) for value, i in values
              if isinstance(value, (int, float)) and math.isfinite(value)]
    return min(finite)[1] if finite else None


def patience_exhausted(history, patience):
    """True when the last ``patience`` epochs of ``history`` brought no new best
    validation figure (never when ``patience`` is None)."""
    best = best_epoch(history)
    return patience is not None and best is not None and len(history) - 1 - best >= patience


def _optimizer(config, groups):
    decoupled = config.weight_decay_mode == "decoupled"
    if config.optimizer == "sgd":
        optimizer = make_optimizer("sgd", momentum=config.momentum,
                                   decoupled_weight_decay=decoupled)
    else:
        optimizer = make_optimizer("adam", decoupled_weight_decay=decoupled)
    if groups.optimizers:
        return RoleOptimizer(optimizer, groups.optimizers, config.lr)
    return optimizer


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


class _Run:
    """One training session over a run directory (used by :func:`train` / :func:`resume`)."""

    def __init__(self, config, run_dir, task, model, init_rng_state, data):
        self.config = config
        self.run_dir = Path(run_dir)
        self.task = task
        self.model = model
        self.groups = ParamGroups.of(model, config)
        self.optimizer = _optimizer(config, self.groups)
        self.lowrank = LowRankTraining.of(model, config, self.groups.trainable,
                                          self.groups.bounds)
        self.loss = run_loss(config, task)
        self.zero_sums = (0.0,) * (1 + len(self.loss.metrics)) + (0,)
        self.init_rng_state = init_rng_state
        self.data = data  # data_record(task), stored in every checkpoint
        self.batches_per_epoch = task.num_batches(config.batch_size)
        if config.steps_per_epoch is not None:
            self.batches_per_epoch = min(self.batches_per_epoch, config.steps_per_epoch)
        self.states = None  # the model's state buffer, reused by every batch of one shape
        if config.patience is not None and "val" not in task.split_names():
            raise ConfigError(f"patience (early stopping) needs a validation split; task "
                              f"{task.name} has none")

    def lr(self, step, epoch):
        """Learning rate of optimizer step ``step`` (0-based) in epoch ``epoch``."""
        return learning_rate(self.config, step, epoch, self.batches_per_epoch)

    def _eval_sequences(self, split, max_batches):
        """Sequences an evaluation of ``split`` covers (0 when the task lacks it)."""
        if split not in self.task.split_names():
            return 0
        size = self.task.split_size(split)
        return size if max_batches is None else min(
            size, max_batches * self.config.eval_batch_size)

    def init_optimizer_state(self, params):
        """Fresh optimizer state for the trainable parameters (frozen ones have none)."""
        return self.optimizer.init_state({name: params[name] for name in self.groups.trainable})

    def checkpoint_config(self):
        return {"run": self.config.to_dict(), "model": self.model.describe(),
                "task": self.task.describe(), "data": self.data}

    def _state_buffer(self, x):
        # Freshly mapped memory page-faults far below the memory bandwidth, and the states
        # of one batch fill hundreds of MB: reuse one buffer while the batch shape holds.
        if self.states is None or self.states[0] != x.shape[:2]:
            self.states = (x.shape[:2], self.model.state_buffer(*x.shape[:2]))
        return self.states[1]

    def save(self, state, path=None):
        self.log.sync()
        metrics = json_safe({"sums": state.sums, "jsonl_offset": state.offset,
                             "history": state.history, "test": state.test,
                             "flips": state.flips, "watch": state.watch})
        ckpt = ckpt_io.Checkpoint(
            params=state.params, optimizer_state=_opt_to_checkpoint(state.opt_state),
            position={"epoch": state.epoch, "batch": state.batch, "global_step": state.step},
            rng_state={"init": self.init_rng_state}, config=self.checkpoint_config(),
            metrics=metrics)
        ckpt_io.save_checkpoint(path or ckpt_io.checkpoint_path(self.run_dir), ckpt)

    def run(self, state, callback, max_steps, fresh, changed_data=None):
        """Train from ``state`` to the end (or ``max_steps``); return a :class:`RunResult`.

        The caller holds the run's lock. ``changed_data`` (:func:`data_changes`), accepted
        by a resume, is logged and checkpointed before anything else.
        """
        emit = callback or (lambda event: None)
        start = time.perf_counter()
        # ``self.state`` is only ever replaced by one assignment, so whenever an interrupt
        # arrives it holds a committed, consistent state (see the module docstring).
        self.state = state
        self.log = MetricsLog(self.run_dir / METRICS_NAME, state.offset)
        try:
            if fresh:
                self.save(self.state)
            if changed_data:
                record = {"kind": "data_change", "epoch": state.epoch, "step": state.step,
                          "files": changed_data}
                self.state = state = dataclasses.replace(state, offset=self.log.write(record))
                self.save(self.state)
                emit({"event": "data_change", **record})
            config = self.config
            start_event = {"event": "start", "epoch": state.epoch, "batch": state.batch,
                           "step": state.step, "epochs": config.epochs,
                           "batches_per_epoch": self.batches_per_epoch,
                           "batch_size": config.batch_size, "max_steps": max_steps,
                           "val_sequences": self._eval_sequences("val", config.val_batches),
                           "test_sequences": self._eval_sequences("test",
                                                                  config.test_batches)}
            if self.task.baseline() is not None:
                start_event["baseline"] = self.task.baseline()
            emit(start_event)
            stopped = max_steps is not None and state.step >= max_steps
            while self.state.epoch < config.epochs and not stopped:
                if patience_exhausted(self.state.history, config.patience):
                    emit({"event": "early_stop", "epoch": self.state.epoch,
                          "best_epoch": best_epoch(self.state.history)})
                    break
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
                         test=state.test, seconds=time.perf_counter() - start,
                         best_epoch=best_epoch(state.history),
                         stopped_early=state.test is not None
                         and state.epoch < self.config.epochs)

    def _epoch(self, emit, max_steps):
        """Finish the epoch in progress; return True when ``max_steps`` stopped it."""
        config, epoch, first = self.config, self.state.epoch, self.state.batch
        started = time.perf_counter()
        emit({"event": "epoch_start", "epoch": epoch, "epochs": config.epochs,
              "batch": first, "batches": self.batches_per_epoch,
              "lr": self.lr(self.state.step, epoch)})
        batches = self.task.iter_batches(epoch, config.batch_size, start_batch=first,
                                         dtype=config.dtype)
        for x, y in itertools.islice(batches, self.batches_per_epoch - first):
            lr = self.lr(self.state.step, epoch)
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
            emit({"event": "eval_start", "split": "val",
                  "sequences": self._eval_sequences("val", config.val_batches)})
            val = evaluate(self.model, state.params, self.task, "val",
                           config.eval_batch_size, config.val_batches, loss=self.loss)
        loss_sum, *metric_sums, positions = state.sums
        train_loss = loss_sum / positions
        record = {"kind": "epoch", "epoch": epoch, "step": state.step,
                  "lr": self.lr(max(state.step - 1, 0), epoch),
                  "train_loss": train_loss,
                  **{f"train_{name}": total / positions
                     for name, total in zip(self.loss.metrics, metric_sums)},
                  **{f"train_{name}": value
                     for name, value in self.task.figures(train_loss).items()},
                  "seconds": time.perf_counter() - started}
        if self.groups.signs:
            record.update(flips=state.flips[1], flips_total=state.flips[0])
        record.update(spikes=state.watch[0], flip_spikes=state.watch[1])
        if val is not None:
            record.update({f"val_{key}": value for key, value in val.items()})
        if self.config.diagnostics:
            record.update(self._diagnostics(state.params))
        offset = self.log.write(record)
        warnings = epoch_warnings(record, state.history)
        for message in warnings:
            offset = self.log.write({"kind": "warning", "epoch": epoch, "step": state.step,
                                     "message": message})
        new = dataclasses.replace(state, epoch=epoch + 1, batch=0, sums=self.zero_sums,
                                  offset=offset, history=state.history + (record,),
                                  flips=(state.flips[0], 0), watch=(0, 0, state.watch[2]))
        # The epoch's files first, the state last (see "Run directory" above).
        self.save(new, ckpt_io.checkpoint_path(self.run_dir, epoch))
        if best_epoch(new.history) == epoch:
            self.save(new, self.run_dir / ckpt_io.BEST_NAME)
        self.save(new)
        self._prune(epoch)
        self.state = new
        emit({"event": "epoch_end", **record})
        for message in warnings:
            emit({"event": "warning", "epoch": epoch, "step": state.step, "message": message})
        return False

    def _diagnostics(self, params):
        """The model's optional ``diagnostics`` figures of the epoch's final parameters
        (no cache: weight figures only), or ``{}``."""
        diagnostics = getattr(self.model, "diagnostics", None)
        return diagnostics(params) if diagnostics is not None else {}

    def _prune(self, epoch):
        """Delete the end-of-epoch snapshots older than the last ``keep_last``."""
        keep = self.config.keep_last
        if keep is None:
            return
        for number, path in ckpt_io.epoch_checkpoints(self.run_dir):
            if number <= epoch - keep:
                path.unlink(missing_ok=True)

    def _step(self, state, x, y, lr):
        """One optimizer step on copies; return the new state and its metrics record."""
        config, model, groups = self.config, self.model, self.groups
        rng = derived_rng(config.seed, QUANT_STREAM, state.step)  # stochastic quantizers
        current = state.params
        project = getattr(model, "project_params", None)  # optional protocol member
        if project is not None:
            current = {**current, **project(current, state.step)}
        logits, cache = model.forward(current, model_inputs(self.task, x, config.dtype, model),
                                      states_out=self._state_buffer(x), rng=rng)
        loss, dlogits = self.loss(logits, y)
        if not np.isfinite(loss):
            raise NonFiniteError(
                f"the training loss became {loss} at step {state.step + 1} (epoch "
                f"{state.epoch}, batch {state.batch}); lower the learning rate or clip "
                f"gradients (clip_grad_norm)")
        metrics = self.loss.score(logits, y)
        grads = model.backward(current, cache, dlogits)
        grads = {name: grads[name] for name in groups.trainable}
        logged = (state.step + 1) % config.log_every == 0
        diagnostics = (gradient_diagnostics(model, groups, current, grads, cache)
                       if logged and config.diagnostics else None)
        if self.lowrank is not None:  # dL/dW -> dL/dΣ of the factored matrices
            grads = self.lowrank.gradients(grads, state.opt_state)
        grad_norm = (clip_grad_norm(grads, config.clip_grad_norm)
                     if config.clip_grad_norm is not None else None)
        params = {name: value.copy() for name, value in current.items()}
        opt_state = {name: value.copy() for name, value in state.opt_state.items()}
        variables = {name: params[name] for name in groups.trainable}
        if self.lowrank is not None:
            variables = self.lowrank.variables(variables, opt_state)
        self.optimizer.step(variables, grads, opt_state, lr, lr_scales=groups.lr_scales,
                            weight_decay=groups.weight_decay)
        for name, bound in groups.bounds.items():
            np.clip(params[name], -bound, bound, out=params[name])
        if self.lowrank is not None:
            self.lowrank.compose(params, opt_state)
        record = {"kind": "step", "epoch": state.epoch, "batch": state.batch,
                  "step": state.step + 1, "loss": loss, **metrics, "lr": lr}
        flips = state.flips
        if groups.signs:
            record["flips"] = sum(int(np.count_nonzero(sign(params[name])
                                                       != sign(state.params[name])))
                                  for name in groups.signs)
            flips = (flips[0] + record["flips"], flips[1] + record["flips"])
            record["flips_total"] = flips[0]
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if diagnostics is not None:
            record.update(diagnostics)
            record.update(update_diagnostics(groups, current, params))
        offset = state.offset
        if logged:
            offset = self.log.write(record)
        if self.lowrank is not None and self.lowrank.due(state.step + 1):
            event = self.lowrank.update(params, opt_state, state.step + 1)
            offset = self.log.write({**event, "epoch": state.epoch})
        loss_sum, *metric_sums, positions = state.sums
        spike = positions > 0 and bool(is_spike(loss, loss_sum / positions, state.batch))
        watch = (state.watch[0] + spike, state.watch[1] + (spike and state.watch[2] > 0),
                 record.get("flips", 0))
        new = _State(params=params, opt_state=opt_state, epoch=state.epoch,
                     batch=state.batch + 1, step=state.step + 1,
                     sums=(loss_sum + loss * y.size,
                           *(total + metrics[name] * y.size
                             for name, total in zip(self.loss.metrics, metric_sums)),
                           positions + y.size),
                     offset=offset, history=state.history, flips=flips, watch=watch)
        return new, record

    def _test(self, emit):
        state = self.state
        if "test" not in self.task.split_names():
            self.state = dataclasses.replace(state, test={})
            return
        emit({"event": "eval_start", "split": "test",
              "sequences": self._eval_sequences("test", self.config.test_batches)})
        test = evaluate(self.model, state.params, self.task, "test",
                        self.config.eval_batch_size, self.config.test_batches, loss=self.loss)
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
        ``epochs``, ``batches_per_epoch``, ``batch_size``, ``max_steps``, ``val_sequences`` and
        ``test_sequences`` (per evaluation, 0 without the split), the copy task's
        ``baseline``), ``epoch_start`` (``epoch``, ``batch``, ``batches``, ``lr``), ``step``
        (``loss``, the loss's metric ``accuracy`` or ``mse``, ``lr``, ``flips``...),
        ``eval_start`` (``split``, ``sequences``), ``epoch_end`` (train and ``val_``
        figures), ``warning`` (``message``: a collapse or loss spikes after sign flips,
        :mod:`hadamnp.training.guard`), ``early_stop`` (``epoch``, ``best_epoch``),
        ``data_change``, ``test``. An exception raised by the callback stops training; a
        ``KeyboardInterrupt`` is checkpointed first.
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
    _check_fresh(run_dir)  # before loading any data, for a quick answer
    task = build_task(config)
    model = model_for(config, task)
    init_rng = derived_rng(config.seed, INIT_STREAM)
    params = model.init_params(init_rng)
    # The run's checks (role optimizers' specs, OIALR's choice of matrices) before the
    # directory exists.
    run = _Run(config, run_dir, task, model, ckpt_io.rng_to_state(init_rng), data_record(task))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create run directory {run_dir}: {exc}") from exc
    with RunLock(run_dir) as lock:
        _check_fresh(run_dir)  # again: another trainer may have started it meanwhile
        lock.remove_stale_temp_files()
        text = config_to_toml(config).encode("utf-8")
        write_atomic(run_dir / CONFIG_NAME, lambda fileobj: fileobj.write(text))
        state = _State(params=params, opt_state=run.init_optimizer_state(params), epoch=0,
                       batch=0, step=0, sums=run.zero_sums, offset=0, history=())
        return run.run(state, callback, max_steps, fresh=True)


def _check_fresh(run_dir):
    existing = ckpt_io.latest_checkpoint(run_dir)
    if existing is not None:
        raise CheckpointError(f"{run_dir} already holds a run ({existing.name}); resume it "
                              f"or choose another output directory")


def resume(run_dir, *, callback=None, max_steps=None, allow_data_change=False, **overrides):
    """Continue the run in ``run_dir`` from its latest checkpoint, exactly.

    Parameters
    ----------
    run_dir : str or os.PathLike
    callback, max_steps
        As in :func:`train`.
    allow_data_change : bool
        Continue even though a data file's content differs from the one the checkpoint
        recorded (the run then no longer equals an uninterrupted one); the change is
        logged in ``metrics.jsonl`` (``kind = "data_change"``).
    **overrides
        Options of :data:`RESUME_OVERRIDES` (e.g. more ``epochs``); any other is a
        :class:`ConfigError`, since it would change the trajectory.

    Returns
    -------
    RunResult

    Raises
    ------
    CheckpointError
        Missing, corrupt or incompatible checkpoint, changed data, or another process
        training in ``run_dir`` (the files are left untouched).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    refused = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming (only "
                          f"{', '.join(RESUME_OVERRIDES)} may change)")
    with RunLock(run_dir) as lock:
        lock.remove_stale_temp_files()
        return _resume(run_dir, callback, max_steps, allow_data_change, overrides)


def _resume(run_dir, callback, max_steps, allow_data_change, overrides):
    ckpt, config, path = load_run(run_dir)
    previous = config
    config = config.replace(**overrides)
    check_resume(previous, config)
    task = build_task(config)
    data = data_record(task)
    # Checkpoints written before digests were recorded have no "data": nothing to compare.
    changed = data_changes(ckpt.config.get("data", data), data)
    if changed and not allow_data_change:
        raise CheckpointError(
            f"{path}: the run's data changed since this checkpoint: "
            f"{describe_data_changes(changed)}; resuming would not continue the same run. "
            f"Restore the data, or accept the change with allow_data_change=True (CLI: "
            f"--allow-data-change), logged in {METRICS_NAME}")
    # The data may move ("path"); a task that describes its file by digest ("sha256",
    # text) must match too, unless a change of content was accepted above.
    ignored = {"path", "sha256"} if changed else {"path"}
    described = {key: value for key, value in task.describe().items() if key not in ignored}
    stored = {key: value for key, value in ckpt.config.get("task", {}).items()
              if key not in ignored}
    if described != stored:
        raise CheckpointError(f"{path}: the task data differ from the checkpoint's "
                              f"(now {described}, then {stored})")
    model = model_from_checkpoint(ckpt, config, path)
    if model.describe() != model_for(config, task).describe():
        raise CheckpointError(f"{path}: the checkpoint's model {model.describe()} is not the "
                              f"model its run configuration builds on this task")
    check_restored_params(model, ckpt.params, path)
    if "init" not in ckpt.rng_state:
        raise CheckpointError(f"{path}: no 'init' generator state")
    run = _Run(config, run_dir, task, model, ckpt.rng_state["init"], data)
    template = run.init_optimizer_state(ckpt.params)
    if run.lowrank is not None:  # the factors' shapes are those of the checkpoint
        template = run.lowrank.restore_template(template, ckpt.optimizer_state,
                                                ckpt.position["global_step"], path)
    opt_state = _opt_from_checkpoint(ckpt.optimizer_state, template, path)
    if run.lowrank is not None:
        run.lowrank.check_restored(ckpt.params, opt_state, path)
    metrics = ckpt.metrics
    try:
        *sums, positions = metrics["sums"]
        if len(sums) != len(run.zero_sums) - 1:
            raise ValueError(f"sums {metrics['sums']} do not fit loss {run.loss.name!r}")
        # Checkpoints written before the flip count resume with it at zero.
        run_flips, epoch_flips = metrics.get("flips", (0, 0))
        watch = tuple(int(v) for v in metrics.get("watch", (0, 0, 0)))
        state = _State(params=ckpt.params, opt_state=opt_state,
                       epoch=ckpt.position["epoch"], batch=ckpt.position["batch"],
                       step=ckpt.position["global_step"],
                       sums=(*(float(value) for value in sums), int(positions)),
                       offset=int(metrics["jsonl_offset"]),
                       history=tuple(metrics["history"]), test=metrics["test"],
                       flips=(int(run_flips), int(epoch_flips)), watch=watch)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed training metrics in checkpoint: "
                              f"{exc!r}") from None
    if state.batch > run.batches_per_epoch:
        raise CheckpointError(f"{path}: position batch {state.batch} is past the "
                              f"{run.batches_per_epoch} batches of an epoch")
    if (state.epoch < config.epochs and state.test is not None
            and not patience_exhausted(state.history, config.patience)):
        state = dataclasses.replace(state, test=None)  # more epochs: test again at the end
    return run.run(state, callback, max_steps, fresh=False, changed_data=changed)
