"""The training progress of the command line: phases, the whole-run ETA, periodic lines."""

import pytest

from hadamnp._progress import TrainingProgress, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def progress(tty, every=30.0, **start):
    out, clock = [], Clock()
    def echo(text, nl=True, err=False):
        out.append(text + ("\n" if nl else ""))

    bar = TrainingProgress(echo, tty, every, clock)
    event = {"event": "start", "epoch": 0, "batch": 0, "step": 0, "epochs": 2,
             "batches_per_epoch": 10, "batch_size": 100, "val_sequences": 1000,
             "test_sequences": 10000, **start}
    bar(event)
    return bar, out, clock


def step(bar, k, epochs=2, per_epoch=10, **extra):
    bar({"event": "step", "step": k, "epoch": (k - 1) // per_epoch,
         "batch": (k - 1) % per_epoch, "loss": 0.5, "accuracy": 0.75, "lr": 1e-3, **extra})


def text(out):
    return "".join(out)


def test_duration():
    assert [duration(s) for s in (0, 59.4, 61, 3600, 5025)] == \
        ["0:00", "0:59", "1:01", "1:00:00", "1:23:45"]


def test_compilation_is_its_own_phase_and_not_in_the_rate():
    bar, out, clock = progress(tty=False)
    assert "compiling kernels (first run only" in text(out)
    bar({"event": "epoch_start", "epoch": 0})
    clock.now = 14.0
    step(bar, 1)
    assert "kernels ready in 14.0 s" in text(out)
    for k in range(2, 6):
        clock.now += 0.5
        step(bar, k)
    assert bar.step_time() == pytest.approx(0.5)


def test_eta_covers_every_step_validation_and_test():
    bar, out, clock = progress(tty=False)
    bar({"event": "epoch_start", "epoch": 0})
    step(bar, 1)
    for k in range(2, 5):
        clock.now += 1.0
        step(bar, k)
    # 16 steps left at 1 s; before any evaluation, a sequence costs a third of a
    # training step per sequence: 2 validations of 1000 and a test of 10000 sequences.
    cost = 1.0 / 100 / 3
    assert bar.eta() == pytest.approx(16 + (2 * 1000 + 10000) * cost)
    for k in range(5, 11):
        clock.now += 1.0
        step(bar, k)
    bar({"event": "eval_start", "split": "val", "sequences": 1000})
    clock.now += 2.0  # validation: 2 ms per sequence
    bar({"event": "epoch_end", "epoch": 0, "step": 10, "lr": 1e-3, "train_loss": 0.5,
         "train_accuracy": 0.75, "seconds": 12.0, "val_loss": 0.4, "val_accuracy": 0.8,
         "val_sequences": 1000})
    assert bar.eta() == pytest.approx(10 + 1000 * 0.002 + 10000 * 0.002)
    assert "epoch 1  step 10" in text(out) and "(1000 sequences)" in text(out)


def test_periodic_lines_when_not_a_terminal():
    bar, out, clock = progress(tty=False, every=30.0)
    step(bar, 1)
    for k in range(2, 10):
        clock.now += 5.0
        step(bar, k)
    lines = [line for line in text(out).splitlines() if line.startswith("progress:")]
    assert len(lines) == 1 and "ETA" in lines[0] and "steps/s" in lines[0]
    quiet, out, clock = progress(tty=False, every=0)
    for k in range(1, 10):
        clock.now += 5.0
        step(quiet, k)
    assert "progress:" not in text(out)


def test_terminal_redraws_one_status_line_and_prints_results():
    bar, out, clock = progress(tty=True)
    step(bar, 1)
    clock.now += 1.0
    step(bar, 2)
    assert out[-1].startswith("\r\x1b[K") and not out[-1].endswith("\n")
    bar({"event": "eval_start", "split": "test", "sequences": 10000})
    assert "evaluating the test split (10000 sequences)..." in out[-1]
    bar({"event": "test", "loss": 0.3, "accuracy": 0.9, "sequences": 10000})
    assert out[-2] == "\r\x1b[K" and out[-1] == \
        "test  loss 0.3000  accuracy 0.9000  (10000 sequences)\n"
    bar.close()


def test_copy_task_step_loss_beside_the_baseline():
    bar, out, clock = progress(tty=True, baseline=0.02)
    step(bar, 1)
    assert "loss 0.5000 (25.00x baseline 0.0200)" in out[-1]


def test_early_stop_line():
    bar, out, _ = progress(tty=False)
    bar({"event": "early_stop", "epoch": 5, "best_epoch": 2})
    assert "early stop before epoch 6: no better validation figure since epoch 3" in text(out)


def test_eta_of_a_run_stopped_by_max_steps():
    bar, out, clock = progress(tty=False, max_steps=15)
    step(bar, 1)
    for k in range(2, 5):
        clock.now += 1.0
        step(bar, k)
    # 11 steps to step 15, one validation (end of epoch 1 at step 10), no test.
    assert bar.eta() == pytest.approx(11 + 1000 * (1.0 / 100 / 3))
