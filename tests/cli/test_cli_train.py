"""Tests of the ``hadamnp train``, ``eval`` and ``info`` commands through click's runner."""

import os

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from cli_helpers import assert_user_error, interrupted_at_step, params, run

TINY = ["--task", "copy", "--copy-length", "30", "--hidden", "16", "--batch-size", "16",
        "--epochs", "2", "--steps-per-epoch", "6", "--lr", "0.03", "--val-batches", "1",
        "--test-batches", "1", "--preset", "base"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run("train", *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_train_writes_run_and_prints_epochs(finished):
    run_dir, output = finished
    # not a TTY: no bar, one line per epoch, then the test figures
    assert output.count("\nepoch ") == 2 and "val loss" in output
    assert "test  loss" in output and "baseline 0.6931" in output and "finished in" in output
    for name in ("checkpoint.npz", "checkpoint-epoch001.npz", "metrics.jsonl", "config.toml"):
        assert (run_dir / name).is_file(), name


def test_max_steps_then_resume_matches(finished, tmp_path):
    run_dir, _ = finished
    stopped = run("train", *TINY, "--out", tmp_path, "--max-steps", 4)
    assert stopped.exit_code == 0 and "stopped at step 4" in stopped.output
    resumed = run("train", "--resume", tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output and "finished" in resumed.output
    a, b = params(run_dir), params(tmp_path)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_ctrl_c_saves_and_exits(finished, tmp_path):
    with interrupted_at_step(5):
        result = run("train", *TINY, "--out", tmp_path)
    assert result.exit_code == 130
    assert "--resume" in result.output
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 4
    assert run("train", "--resume", tmp_path).exit_code == 0
    a, b = params(finished[0]), params(tmp_path)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_on_resume(tmp_path):
    assert run("train", *TINY, "--out", tmp_path, "--max-steps", 2).exit_code == 0
    latest = checkpoint_path(tmp_path)
    damaged = latest.read_bytes()[:-40]
    latest.write_bytes(damaged)
    result = run("train", "--resume", tmp_path)
    assert_user_error(result, "Error:", "checkpoint.npz")
    assert latest.read_bytes() == damaged


def test_config_file_and_errors(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('preset = "base"\ntask = "copy"\ncopy_length = 30\n'
                    'batch_size = 4\nepochs = 1\nsteps_per_epoch = 2\nval_batches = 1\n'
                    'test_batches = 1\neval_batch_size = 4\n[model]\nname = "hadamrnn"\n'
                    'hidden_size = 8\n')
    result = run("train", "--config", good, "--hidden", 16, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "hadamrnn hidden_size=16" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 0.1\n")
    assert_user_error(run("train", "--config", bad), "unknown configuration key",
                      "'learning_rate'")
    assert_user_error(run("train", "--hidden", 100), "power of two")
    assert_user_error(run("train", "--preset", "nope"), "unknown preset 'nope'")
    assert_user_error(run("train", "--task", "imdb"), "Invalid value for '--task'")
    assert_user_error(run("train", "--max-steps", 0), "--max-steps")
    assert_user_error(run("train", "--npz", tmp_path / "missing.npz"), "missing.npz")


def test_resume_refuses_trajectory_changes(finished):
    run_dir, _ = finished
    assert_user_error(run("train", "--resume", run_dir, "--hidden", 32), "--hidden")
    assert_user_error(run("train", "--resume", run_dir, "--preset", "copy"), "--preset")
    assert_user_error(run("train", "--resume", run_dir.parent / "none"), "does not exist")


def test_existing_run_is_not_overwritten(finished):
    run_dir, _ = finished
    before = checkpoint_path(run_dir).read_bytes()
    assert_user_error(run("train", *TINY, "--out", run_dir), "already holds a run")
    assert checkpoint_path(run_dir).read_bytes() == before


def test_eval(finished):
    run_dir, output = finished
    result = run("eval", run_dir, "--batches", 1)  # as the run's --test-batches 1
    assert result.exit_code == 0, result.output
    assert "2000 sequences" in run("eval", run_dir).output
    test_line = next(line for line in output.splitlines() if line.startswith("test  "))
    assert result.output.splitlines()[-1] == test_line
    val = run("eval", checkpoint_path(run_dir, 0), "--split", "val", "--batches", 1)
    assert val.exit_code == 0 and "val  loss" in val.output and "epoch 1" in val.output
    assert_user_error(run("eval", run_dir / "config.toml"), "Error:")


def test_info(finished):
    run_dir, _ = finished
    result = run("info", run_dir)
    assert result.exit_code == 0, result.output
    assert "input_size=10 hidden_size=16 output_size=9" in result.output
    assert "2,096 bits" in result.output
    paper = run("info", "--task", "copy")
    assert "14,304 bits" in paper.output and "42.40x" in paper.output
    mnist = run("info", "--preset", "smnist")
    assert "39,808 bits" in mnist.output and "215.67x" in mnist.output
    block = run("info", "--input-size", 256, "--output-size", 1, "--hidden", 512,
                "--model", "block-hadamrnn", "--block", 128)
    assert "543,328 bits" in block.output and "block_size=128" in block.output
    assert_user_error(run("info", run_dir, "--hidden", 8), "PATH")
    assert_user_error(run("info", "--hidden", 12), "power of two")


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM cannot be caught on Windows")
def test_sigterm_checkpoints_like_ctrl_c(tmp_path, monkeypatch):
    import signal

    from hadamnp.training import loop

    original = loop._Run._step

    def terminated(self, state, *args):
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, state, *args)

    monkeypatch.setattr(loop._Run, "_step", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = run("train", *TINY, "--out", tmp_path)
    assert result.exit_code == 130 and "--resume" in result.output
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before
