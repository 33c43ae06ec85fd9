"""Collapse detector: loss spikes, spikes caused by sign flips, and collapses, flagged.

A trained HadamRNN is destroyed by a single flip of one of its ``n`` signs (README,
"Training that converges": one flip of a 92 %-accurate pMNIST model raises the
validation loss several-fold; the gradient that follows is aligned with ``sign(u)``, so
gradient descent shrinks every latent ``|u|`` and the next flips follow). The training
loop counts, per epoch,

- ``spikes``: steps whose loss exceeds ``SPIKE_FACTOR`` times the mean loss of the
  epoch so far (from the ``MIN_BATCHES``-th batch of the epoch on);
- ``flip_spikes``: those of them that come right after a step that flipped signs;

and at the end of every epoch :func:`epoch_warnings` turns the epoch record and the
earlier ones into warnings: a collapse (the validation loss above ``COLLAPSE_FACTOR``
times the best earlier one, and at least ``COLLAPSE_MARGIN`` nats above it; reported at
the first epoch of a collapse), and spikes after flips. The loop writes each as a ``{"kind": "warning", ...}`` line of
``metrics.jsonl`` and reports it to the progress callback (``hadamnp train`` prints it).
The detector only watches: it never changes the trajectory.
"""

from hadamnp.io.checkpoint import checkpoint_path

__all__ = ["SPIKE_FACTOR", "MIN_BATCHES", "COLLAPSE_FACTOR", "COLLAPSE_MARGIN", "is_spike",
           "epoch_warnings"]

SPIKE_FACTOR = 4.0
MIN_BATCHES = 20
COLLAPSE_FACTOR = 3.0
COLLAPSE_MARGIN = 0.1


def is_spike(loss, epoch_mean, batches):
    """True when ``loss`` exceeds ``SPIKE_FACTOR`` times the epoch's mean loss so far,
    once ``batches >= MIN_BATCHES`` batches of the epoch are done."""
    return batches >= MIN_BATCHES and loss > SPIKE_FACTOR * epoch_mean


def epoch_warnings(record, history):
    """Warning messages of the epoch ``record`` given the earlier epoch records.

    Parameters
    ----------
    record : dict
        The epoch record (``val_loss`` when the task has a validation split;
        ``spikes``, ``flip_spikes`` when the loop counted them).
    history : sequence of dict
        The records of the earlier epochs.

    Returns
    -------
    list of str
    """
    messages = []
    best = _best(history)
    loss = record.get("val_loss")
    if _collapsed(loss, best) and not (history and _collapsed(history[-1].get("val_loss"),
                                                              _best(history[:-1]))):
        snapshot = checkpoint_path(".", best["epoch"]).name
        messages.append(f"collapse: validation loss {loss:.4g} after a best of "
                        f"{best['val_loss']:.4g} in epoch {best['epoch'] + 1} ({snapshot}); "
                        f"train the signs frozen or with Bop (README, 'Training that "
                        f"converges')")
    if record.get("flip_spikes"):
        messages.append(f"{record['flip_spikes']} loss spike(s) right after sign flips in "
                        f"epoch {record['epoch'] + 1} ({record['spikes']} spikes in all): "
                        f"flips of a trained model are destructive; freeze or slow down "
                        f"the signs (README, 'Training that converges')")
    return messages


def _best(history):
    """The epoch record of the lowest validation loss (None without one)."""
    return min((r for r in history if r.get("val_loss") is not None),
               key=lambda r: r["val_loss"], default=None)


def _collapsed(loss, best):
    return best is not None and loss is not None and \
        loss > COLLAPSE_FACTOR * best["val_loss"] and loss > best["val_loss"] + COLLAPSE_MARGIN
