"""Best-validation checkpoint, keeping the last K snapshots, early stopping, and schedules,
all reproduced exactly by resuming."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.io.checkpoint import (BEST_NAME, checkpoint_path, epoch_checkpoints,
                                   load_checkpoint)
from hadamnp.training.loop import best_epoch, patience_exhausted, resume, train
from hadamnp.training.metrics import read_metrics

from training.test_loop import comparable_metrics, interrupt_at, same_params, tiny


def test_best_epoch_and_patience_rules():
    history = [{"val_loss": 3.0}, {"val_loss": 2.0}, {"val_loss": None},
               {"val_loss": 2.5}, {"val_loss": float("nan")}]
    assert best_epoch(history) == 1 and best_epoch([{}]) is None
    assert not patience_exhausted(history, None)
    assert patience_exhausted(history, 3) and not patience_exhausted(history, 4)
    assert best_epoch([{"val_loss": 1.0}, {"val_loss": 1.0}]) == 0  # ties: the first


def test_best_checkpoint_and_keep_last(tmp_path):
    result = train(tiny(epochs=4, keep_last=2), tmp_path)
    assert [n for n, _ in epoch_checkpoints(tmp_path)] == [2, 3]
    best = result.best_epoch
    losses = [r["val_loss"] for r in read_metrics(tmp_path, "epoch")]
    assert best == int(np.argmin(losses))
    ckpt = load_checkpoint(tmp_path / BEST_NAME)
    assert ckpt.position["epoch"] == best + 1 and ckpt.position["batch"] == 0
    assert ckpt.metrics["history"][-1]["val_loss"] == losses[best]


def test_early_stopping_stops_tests_and_resumes_identically(tmp_path):
    # lr 0.3 makes this tiny run's validation loss worsen after its first epochs
    config = tiny(epochs=8, lr=0.3, patience=1)
    result = train(config, tmp_path / "a")
    assert result.stopped_early and result.finished, [r["val_loss"] for r in result.history]
    assert result.epoch == result.best_epoch + 2 < 8
    assert len(read_metrics(tmp_path / "a", "test")) == 1
    # resuming a stopped run does nothing; an interrupted one stops at the same place
    before = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    assert resume(tmp_path / "a").step == result.step
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == before
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", callback=interrupt_at(5))
    again = resume(tmp_path / "b")
    assert again.stopped_early and again.step == result.step
    assert same_params(again.params, result.params)
    assert comparable_metrics(tmp_path / "b") == comparable_metrics(tmp_path / "a")


def test_patience_needs_a_validation_split(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 3, 2)), y=np.arange(8) % 2)
    config = tiny(task="npz", npz=str(tmp_path / "d.npz"), patience=2,
                  npz_test_fraction=0.25)
    with pytest.raises(ConfigError, match="patience .* needs a validation split"):
        train(config, tmp_path / "run")


@pytest.mark.parametrize("changes", [dict(schedule="cosine"),
                                     dict(warmup_steps=5, gamma=0.9)])
def test_schedules_resume_bit_identically(tmp_path, changes):
    expected = train(tiny(**changes), tmp_path / "ref")
    rates = [r["lr"] for r in read_metrics(tmp_path / "ref", "step")]
    assert len(set(rates)) > 3  # the rate changes within epochs
    with pytest.raises(KeyboardInterrupt):
        train(tiny(**changes), tmp_path / "run", callback=interrupt_at(11))
    result = resume(tmp_path / "run")
    assert same_params(result.params, expected.params) and result.test == expected.test
    assert comparable_metrics(tmp_path / "run") == comparable_metrics(tmp_path / "ref")


def test_interrupt_while_writing_the_epoch_files_redoes_them(tmp_path):
    expected = train(tiny(), tmp_path / "ref")
    calls = []

    def stop_on_best(event):
        if event["event"] == "eval_start" and event["split"] == "val":
            calls.append(event)
            if len(calls) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(), tmp_path / "run", callback=stop_on_best)
    assert load_checkpoint(checkpoint_path(tmp_path / "run")).position["epoch"] == 1
    result = resume(tmp_path / "run")
    assert same_params(result.params, expected.params)
    assert comparable_metrics(tmp_path / "run") == comparable_metrics(tmp_path / "ref")
    assert load_checkpoint(tmp_path / "run" / BEST_NAME).position == \
        load_checkpoint(tmp_path / "ref" / BEST_NAME).position
