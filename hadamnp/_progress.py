"""Training progress for the command line: phases, a whole-run ETA, periodic lines.

:class:`TrainingProgress` is the ``callback`` the ``hadamnp train`` command gives the
training loop (:func:`hadamnp.training.loop.train`); it only formats and prints.

- The first optimizer step of a process compiles the Numba kernels (or loads them from the
  on-disk cache) and is shown as its own phase, ``compiling kernels (first run only ...)``,
  with its duration; it is left out of the step rate.
- The ETA covers the whole run (up to ``max_steps`` when given): the remaining optimizer
  steps at the measured step rate, plus the remaining validations and the final test at
  the measured evaluation cost per sequence (before the first evaluation: a third of a
  training step per sequence, the forward pass's share of forward + backward).
- On a terminal one status line is redrawn; otherwise (a log file, a pipe) a line is
  printed every ``every`` seconds. Epoch results, the test figures and the phases are
  always printed as lines.
- For tasks with a constant baseline (the copy task's memoryless ``10 ln 8 / L``, the
  adding problem's 1/6) the step loss is shown next to it, as a ratio.
"""

import time

__all__ = ["TrainingProgress", "figures", "epoch_line", "duration"]

# Forward pass / (forward + backward): the cost of evaluating a sequence relative to
# training on it, used until an evaluation has been timed.
_FORWARD_SHARE = 1 / 3
_REDRAW_SECONDS = 0.2


def duration(seconds):
    """``seconds`` as ``M:SS`` or ``H:MM:SS``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_SHORT = {"accuracy": "acc"}  # short names of the figures on progress and epoch lines


def between(record, first, last):
    """``(key, value)`` of ``record`` after key ``first`` and before key ``last``: the
    loss's metric and the task's figures, which records place between the loss and the
    next fixed key (the loop and :func:`hadamnp.runs.plumbing.evaluate` build them so)."""
    keys = list(record)
    end = keys.index(last) if last in keys else len(keys)
    return [(key, record[key]) for key in keys[keys.index(first) + 1:end]]


def figures(result, prefix=""):
    """``loss ... <metrics> (N sequences)`` of an evaluation (``prefix``: e.g. ``val_``),
    with the copy task's baseline and ratio."""
    metrics = "".join(f"  {key[len(prefix):]} {value:.4f}"
                      for key, value in between(result, prefix + "loss", prefix + "sequences"))
    text = (f"loss {result[prefix + 'loss']:.4f}{metrics}"
            f"  ({result[prefix + 'sequences']} sequences)")
    if prefix + "baseline" in result:
        text += (f"  baseline {result[prefix + 'baseline']:.4f}"
                 f"  ratio {result[prefix + 'ratio']:.4f}")
    return text


def epoch_line(record):
    """The line printed at the end of an epoch (its metrics record)."""
    metrics = "".join(f" {_SHORT.get(key[6:], key[6:])} {value:.4f}"
                      for key, value in between(record, "train_loss", "seconds"))
    line = (f"epoch {record['epoch'] + 1}  step {record['step']}  lr {record['lr']:.3g}  "
            f"train loss {record['train_loss']:.4f}{metrics}")
    if "val_loss" in record:
        line += "  |  val " + figures(record, "val_")
    return line + f"  [{record['seconds']:.1f} s]"


class TrainingProgress:
    """Progress callback of ``hadamnp train`` (see the module docstring).

    Parameters
    ----------
    echo : callable(text, nl=True, err=False)
        Writes text (``click.echo``).
    tty : bool
        Redraw one status line (a terminal) instead of printing periodic lines.
    every : float
        Seconds between progress lines when not a terminal (0: none).
    clock : callable
        Monotonic time in seconds.
    """

    def __init__(self, echo, tty, every=30.0, clock=time.monotonic):
        self.echo, self.tty, self.every, self.clock = echo, tty, every, clock
        self.status = False        # a status line is drawn (terminal)
        self.last_draw = self.last_line = None
        self.step_seconds = 0.0    # time of timed steps (the first one excluded)
        self.timed_steps = 0
        self.eval_cost = None      # measured seconds per evaluated sequence
        self.last_step_time = None
        self.eval_started = None
        self.compiling = None
        self.run = None
        self.event = None

    # ------------------------------------------------------------------ output helpers
    def _line(self, text):
        self._clear()
        self.echo(text)

    def _clear(self):
        if self.status:
            self.echo("\r\x1b[K", nl=False)
            self.status = False

    def _draw(self, text, force=False):
        now = self.clock()
        if self.tty:
            if force or self.last_draw is None or now - self.last_draw >= _REDRAW_SECONDS:
                self.echo("\r\x1b[K" + text, nl=False)
                self.status, self.last_draw = True, now
        elif self.every and now - self.last_line >= self.every:
            self.echo("progress: " + text)
            self.last_line = now

    def close(self):
        """Clear the status line (call when training ends or fails)."""
        self._clear()

    # ------------------------------------------------------------------ estimates
    def step_time(self):
        """Measured seconds per optimizer step, or None before two steps."""
        return self.step_seconds / self.timed_steps if self.timed_steps else None

    def eta(self):
        """Seconds left for the whole run (steps, validations, test), or None."""
        step_time = self.step_time()
        if step_time is None:
            return None
        run = self.run
        cost = self.eval_cost
        if cost is None:
            cost = step_time / run["batch_size"] * _FORWARD_SHARE
        end = run["end_step"]
        steps_left = end - self.event_step
        # Validations at the epoch ends up to `end`; the test only when the run finishes.
        evals_left = end // run["batches_per_epoch"] - self.epoch - (1 if self.validated else 0)
        testing = end == run["total_steps"] and not self.tested
        return (steps_left * step_time + max(evals_left, 0) * run["val_sequences"] * cost
                + (run["test_sequences"] * cost if testing else 0))

    # ------------------------------------------------------------------ events
    def __call__(self, event):
        handler = getattr(self, "_on_" + event["event"], None)
        if handler is not None:
            handler(event)

    def _on_start(self, event):
        self.run = {key: event.get(key, 0) for key in
                    ("epochs", "batches_per_epoch", "batch_size", "val_sequences",
                     "test_sequences")}
        self.run["total_steps"] = event["epochs"] * event["batches_per_epoch"]
        # A run stopped by max_steps ends there (no test).
        self.run["end_step"] = min(self.run["total_steps"],
                                   event.get("max_steps") or self.run["total_steps"])
        self.baseline = event.get("baseline")
        self.epoch, self.event_step = event["epoch"], event["step"]
        self.validated = self.tested = False
        self.last_line = self.clock()  # periodic lines start ``every`` seconds from now
        if event["step"] < self.run["end_step"]:
            self.compiling = self.clock()
            self._line("compiling kernels (first run only; later runs load them from "
                       "the cache)...")

    def _on_epoch_start(self, event):
        self.epoch, self.validated = event["epoch"], False
        self.last_step_time = None  # the pause before this epoch is not step time

    def _on_step(self, event):
        now = self.clock()
        if self.compiling is not None:
            self._line(f"kernels ready in {now - self.compiling:.1f} s (first step)")
            self.compiling = None
        elif self.last_step_time is not None:
            self.step_seconds += now - self.last_step_time
            self.timed_steps += 1
        self.last_step_time = now
        self.event_step = event["step"]
        if self.tty or self.timed_steps:  # a log line waits for a measured rate
            self._draw(self._step_text(event))

    def _step_text(self, event):
        run = self.run
        done = event["batch"] + 1
        loss = f"loss {event['loss']:.4f}"
        if self.baseline:
            loss += f" ({event['loss'] / self.baseline:.2f}x baseline {self.baseline:.4f})"
        metrics = "".join(f"  {_SHORT.get(key, key)} {value:.3f}"
                          for key, value in between(event, "loss", "lr"))
        text = (f"epoch {event['epoch'] + 1}/{run['epochs']}  step {done}/"
                f"{run['batches_per_epoch']}  {loss}{metrics}  lr {event['lr']:.2e}")
        step_time = self.step_time()
        if step_time:
            text += f"  |  {1 / step_time:.1f} steps/s  ETA {duration(self.eta())} (run)"
        return text

    def _on_eval_start(self, event):
        self.eval_started = (self.clock(), event["sequences"])
        self.last_step_time = None
        name = "validation" if event["split"] == "val" else "test"
        text = f"evaluating the {name} split ({event['sequences']} sequences)..."
        if self.tty:
            self._draw(text, force=True)
        elif event["split"] == "test":
            self.echo(text)

    def _finish_eval(self):
        if self.eval_started is not None:
            started, sequences = self.eval_started
            if sequences:
                self.eval_cost = (self.clock() - started) / sequences
            self.eval_started = None

    def _on_epoch_end(self, event):
        self._finish_eval()
        self.validated = True
        self._line(epoch_line(event))

    def _on_early_stop(self, event):
        self._line(f"early stop before epoch {event['epoch'] + 1}: no better validation "
                   f"figure since epoch {event['best_epoch'] + 1} (checkpoint-best.npz)")

    def _on_data_change(self, event):
        from hadamnp.runs.integrity import describe_data_changes

        self._clear()
        self.echo(f"warning: data changed since the checkpoint, continuing as asked "
                  f"(--allow-data-change; logged in metrics.jsonl): "
                  f"{describe_data_changes(event['files'])}", err=True)

    def _on_test(self, event):
        self._finish_eval()
        self.tested = True
        self._line("test  " + figures(event))
