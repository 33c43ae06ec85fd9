"""Check a deployed integer model on real data: against its float model, and through a runner.

:func:`compare` runs the float model and the integer model on the same sequences of a task
split and reports both losses and metrics (the run's loss: accuracy for the classification
losses, mse for regression) and, for classifiers, how often their predictions agree (over
the scored positions: the last step of every sequence, or every step for many-to-many
tasks). The integer model's loss and metrics are those of its outputs scaled back to float
(``logits_scale * logits_int``, a positive factor: its predictions are those of the
integer outputs).

:func:`run_runner` checks an external integer runner (the C99 program of ``examples/c``,
built from ``hadamnp export --format c``): it writes the runner's input file for the same
sequences (``x_int = sat_a(round(x / S_x))``), runs the executable as ``RUNNER -l INPUT
OUTPUT``, reads its logits and scores them, and counts the sequences whose logits equal the
Python integer engine's bit for bit.

Thresholds. :data:`MIN_BITS_ACT`: below 6 bits the state has at most 31 positive levels;
rounding once per step at that resolution over hundreds of steps swamps the state (the
128-unit quick model keeps 21 % accuracy at a = 6, chance level below). :data:`MAX_DROP`:
an integer accuracy more than one percentage point below the float model's is reported
as a loss of accuracy (``hadamnp export`` warns; regression runs report both mse).
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.models.losses import get_loss
from hadamnp.runs.plumbing import model_inputs

__all__ = ["MIN_BITS_ACT", "MAX_DROP", "check_bits_act", "split_batches", "predictions", "compare",
           "accuracy_lost", "run_runner"]

MIN_BITS_ACT = 6
MAX_DROP = 0.01


def check_bits_act(a, max_a=24):
    """Raise :class:`ConfigError` with the reason when ``a`` cannot give a useful model.

    Parameters
    ----------
    a : int, activation width
    max_a : int, the engine's limit (:func:`hadamnp.reference.integer.activation_range`)
    """
    if not MIN_BITS_ACT <= a <= max_a:
        reason = (f"below {MIN_BITS_ACT} bits the state has at most "
                  f"{2 ** (MIN_BITS_ACT - 1) - 1} positive levels and the per-step "
                  f"rounding swamps it over long sequences" if a < MIN_BITS_ACT else
                  f"the integer engine holds activations and FWHT sums in int32 and "
                  f"supports at most {max_a} bits")
        raise ConfigError(f"activation width a = {a} is outside [{MIN_BITS_ACT}, {max_a}]: "
                          f"{reason}; 12 or 16 keep the float model's accuracy")


def split_batches(task, split, dtype, count=None, batch_size=250):
    """The first ``count`` sequences (all when None) of a split, as model inputs.

    Yields
    ------
    x : (B, T, d_in) float inputs (token tasks one-hot)
    y : (B,) or (B, T) int64 targets
    """
    remaining = task.split_size(split) if count is None else int(count)
    for x, y in task.iter_split(split, batch_size, dtype=dtype):
        if remaining <= 0:
            return
        x, y = x[:remaining], y[:remaining]
        remaining -= y.shape[0]
        yield model_inputs(task, x, dtype), y


def predictions(outputs, loss):
    """Class predictions of ``outputs`` under ``loss`` (None for regression): the argmax,
    or for one logit (``bce``) whether it is positive."""
    if "accuracy" not in loss.metrics:
        return None
    return outputs[..., 0] > 0 if outputs.shape[-1] == 1 else outputs.argmax(-1)


def compare(model, params, imodel, task, split="test", count=None, batch_size=250, loss=None):
    """The float and the integer model on the same sequences of ``split``.

    Parameters
    ----------
    model, params : the trained float model and its parameters
    imodel : IntegerModel converted from them
    task : TaskData of the run
    split : {"test", "val"}
    count : int, optional
        Only the first ``count`` sequences (default: the whole split).
    batch_size : int, sequences per forward pass (memory only)
    loss : str or Loss, optional
        The run's loss (:func:`hadamnp.runs.plumbing.run_loss`); default the task's.

    Returns
    -------
    dict: ``sequences``, ``positions`` (scored values), ``metrics`` (the loss's metric
    names), ``float_loss``, ``int_loss``, ``float_<metric>`` and ``int_<metric>`` (e.g.
    ``float_accuracy``), ``agreement`` (fraction of scored positions where both predict
    the same class; None for regression), ``saturated_fraction`` (of the integer states at
    the edge of the ``a``-bit range).
    """
    from hadamnp.reference.integer import activation_range

    loss = get_loss(task.loss if loss is None else loss)
    low, high = activation_range(imodel.a)
    sums = dict.fromkeys(["float_loss", "int_loss", "agree"]
                         + [f"{kind}_{name}" for kind in ("float", "int")
                            for name in loss.metrics], 0.0)
    sequences = positions = saturated = states = 0
    for x, y in split_batches(task, split, model.config.dtype, count, batch_size):
        logits, _ = model.forward(params, x)
        h_int, logits_int = imodel.run(imodel.quantize_inputs(x))
        for kind, outputs in (("float", logits.astype(np.float64)),
                              ("int", imodel.logits(logits_int))):
            sums[f"{kind}_loss"] += loss(outputs, y)[0] * y.size
            for name, value in loss.score(outputs, y).items():
                sums[f"{kind}_{name}"] += value * y.size
        classes = predictions(logits, loss)
        if classes is not None:
            sums["agree"] += np.count_nonzero(classes == predictions(logits_int, loss))
        saturated += int(np.count_nonzero((h_int == low) | (h_int == high)))
        states += h_int.size
        positions += y.size
        sequences += y.shape[0]
    if not sequences:
        raise ConfigError(f"no sequences to compare in split {split!r}")
    result = {key: value / positions for key, value in sums.items() if key != "agree"}
    result.update(sequences=sequences, positions=positions, metrics=loss.metrics,
                  saturated_fraction=saturated / states,
                  agreement=sums["agree"] / positions if "accuracy" in loss.metrics else None)
    return result


def accuracy_lost(result, max_drop=None):
    """True when the integer accuracy of a :func:`compare` result is more than
    ``max_drop`` (default :data:`MAX_DROP`) below the float accuracy (never for a result
    without accuracy)."""
    max_drop = MAX_DROP if max_drop is None else max_drop
    if "float_accuracy" not in result:
        return False
    return result["float_accuracy"] - result["int_accuracy"] > max_drop


def run_runner(runner, imodel, task, dtype, split="test", count=None, work_dir=None,
               timeout=None, loss=None):
    """Score an integer runner executable on a split and compare it with the Python engine.

    Parameters
    ----------
    runner : str or os.PathLike
        Executable called as ``runner -l INPUT OUTPUT`` (``examples/c/hadamrnn_int.c``
        built with the header of ``imodel``).
    imodel : IntegerModel
        The model the runner was built from (its input scale quantizes the inputs).
    task : TaskData
    dtype : the float model's dtype (the inputs are formed in it before quantization, as in
        :func:`compare`)
    split : {"test", "val"}
    count : int, optional
        Only the first ``count`` sequences (default: the whole split).
    work_dir : str or os.PathLike, optional
        Where to keep ``runner_input.txt`` and ``runner_output.txt`` (default: a temporary
        directory, removed afterwards).
    timeout : float, optional
        Seconds before the runner is stopped.
    loss : str or Loss, optional
        The run's loss; default the task's.

    Returns
    -------
    dict: ``sequences``, ``positions``, ``metrics`` (the loss's metric names), ``runner``
    and ``python`` (the metrics of the runner's outputs and of the Python integer engine's
    on the same inputs, by name), ``identical`` (sequences whose runner outputs equal the
    engine's exactly).

    Raises
    ------
    CheckpointError
        The runner cannot be started, fails, times out, or writes unreadable output.
    """
    from hadamnp.deploy.export import read_runner_output, write_runner_input

    xs, ys = zip(*split_batches(task, split, dtype, count))
    x_int = imodel.quantize_inputs(np.concatenate(xs))
    y = np.concatenate(ys)
    _, expected = imodel.run(x_int)
    with tempfile.TemporaryDirectory(prefix="hadamnp-runner-") as tmp:
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        inp, out = folder / "runner_input.txt", folder / "runner_output.txt"
        write_runner_input(inp, x_int)
        command = [str(runner), "-l", str(inp), str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckpointError(f"cannot run {runner}: {exc}") from None
        if done.returncode != 0:
            raise CheckpointError(f"{runner} failed (exit status {done.returncode}): "
                                  f"{done.stderr.strip()[:500]}")
        B, T, _ = x_int.shape
        _, logits = read_runner_output(out, B, T, imodel.n, imodel.d_out, imodel.many_to_many,
                                       states=False)
    loss = get_loss(task.loss if loss is None else loss)
    same = (logits == expected).reshape(B, -1).all(axis=1)
    return {"sequences": int(B), "positions": int(y.size), "metrics": loss.metrics,
            "runner": loss.score(imodel.logits(logits), y),
            "python": loss.score(imodel.logits(expected), y),
            "identical": int(np.count_nonzero(same))}
