"""The collapse detector: spike counts in epoch records, warnings, and that it only watches."""

import numpy as np
import pytest

from hadamnp.runs.config import resolve_config
from hadamnp.training import guard, loop
from hadamnp.training.loop import resume, train
from hadamnp.training.metrics import read_metrics


def copy_run(**changes):
    options = dict(task="copy", copy_length=24, batch_size=16, epochs=2, steps_per_epoch=30,
                   lr=0.3, val_batches=1, test_batches=1, log_every=1,
                   model={"name": "hadamrnn", "hidden_size": 16})
    return resolve_config(preset="base", overrides={**options, **changes})


def test_is_spike():
    assert not guard.is_spike(5.0, 1.0, guard.MIN_BATCHES - 1)
    assert guard.is_spike(4.01, 1.0, guard.MIN_BATCHES)
    assert not guard.is_spike(4.0, 1.0, guard.MIN_BATCHES)


def test_epoch_warnings():
    history = [{"epoch": 0, "val_loss": 0.3}, {"epoch": 1, "val_loss": 0.2}]
    quiet = {"epoch": 2, "val_loss": 0.25, "spikes": 3, "flip_spikes": 0}
    assert guard.epoch_warnings(quiet, history) == []
    collapsed = {"epoch": 2, "val_loss": 2.3, "spikes": 9, "flip_spikes": 4}
    messages = guard.epoch_warnings(collapsed, history)
    assert len(messages) == 2
    assert messages[0].startswith("collapse: validation loss 2.3 after a best of 0.2 in "
                                  "epoch 2 (checkpoint-epoch001.npz)")
    assert messages[1].startswith("4 loss spike(s) right after sign flips in epoch 3")
    # a tiny loss tripling by noise (copy task scale) is no collapse
    assert guard.epoch_warnings({"epoch": 2, "val_loss": 0.0009},
                                [{"epoch": 0, "val_loss": 0.0002}]) == []
    assert guard.epoch_warnings({"epoch": 0, "val_loss": 9.0}, []) == []
    # reported once, at the first epoch of a collapse
    still = {"epoch": 3, "val_loss": 2.2, "spikes": 0, "flip_spikes": 0}
    assert guard.epoch_warnings(still, history + [collapsed]) == []
    again = guard.epoch_warnings(still, history + [collapsed, quiet])
    assert len(again) == 1 and again[0].startswith("collapse")


def test_spike_counts_follow_the_definition(tmp_path, monkeypatch):
    # A tiny run has no 4x spikes: count "spikes" of 1.1x the epoch mean instead.
    monkeypatch.setattr(loop, "is_spike", lambda loss, mean, batches: batches >= 3
                        and loss > 1.1 * mean)
    train(copy_run(), tmp_path)
    steps = read_metrics(tmp_path, "step")
    counted = flip_counted = 0
    for epoch, record in enumerate(read_metrics(tmp_path, "epoch")):
        losses = [r["loss"] for r in steps if r["epoch"] == epoch]
        flips = [r["flips"] for r in steps if r["epoch"] == epoch]
        previous_flips = [steps[epoch * 30 - 1]["flips"] if epoch else 0] + flips[:-1]
        spikes = [b >= 3 and loss > 1.1 * np.mean(losses[:b]) for b, loss in enumerate(losses)]
        assert record["spikes"] == sum(spikes)
        assert record["flip_spikes"] == sum(s and f > 0 for s, f in zip(spikes,
                                                                        previous_flips))
        counted += record["spikes"]
        flip_counted += record["flip_spikes"]
    assert counted >= flip_counted > 0, "vacuous"


def test_warnings_are_written_reported_and_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "epoch_warnings",
                        lambda record, history: [f"epoch {record['epoch']} looks odd"])
    events = []
    expected = train(copy_run(), tmp_path / "ref", callback=events.append)
    assert [e["message"] for e in events if e["event"] == "warning"] == \
        ["epoch 0 looks odd", "epoch 1 looks odd"]
    warnings = read_metrics(tmp_path / "ref", "warning")
    assert [(w["epoch"], w["step"]) for w in warnings] == [(0, 30), (1, 60)]
    train(copy_run(), tmp_path / "cut", max_steps=40)
    result = resume(tmp_path / "cut")
    for name in expected.params:
        np.testing.assert_array_equal(result.params[name], expected.params[name])

    def comparable(run_dir):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]
    assert comparable(tmp_path / "cut") == comparable(tmp_path / "ref")


def test_the_detector_only_watches(tmp_path, monkeypatch):
    watched = train(copy_run(epochs=1), tmp_path / "a")
    monkeypatch.setattr(loop, "is_spike", lambda *args: False)
    monkeypatch.setattr(loop, "epoch_warnings", lambda *args: [])
    blind = train(copy_run(epochs=1), tmp_path / "b")
    for name in watched.params:
        np.testing.assert_array_equal(watched.params[name], blind.params[name])


@pytest.mark.parametrize("kind", ["epoch"])
def test_epoch_records_carry_the_counts(tmp_path, kind):
    train(copy_run(epochs=1, steps_per_epoch=5), tmp_path)
    record = read_metrics(tmp_path, kind)[0]
    assert record["spikes"] == 0 and record["flip_spikes"] == 0
