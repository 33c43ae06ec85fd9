"""User mistakes and hostile inputs through the CLI: one-line errors (no traceback), no
run damaged, no command overwriting what it reads."""

import copy
import dataclasses
import shutil

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from hadamnp.training.metrics import read_metrics
from cli_helpers import assert_user_error, run

TINY = ["--hidden", "8", "--batch-size", "10", "--epochs", "1", "--lr", "0.01",
        "--npz-test-fraction", "0.25", "--log-every", "1"]


def write_npz(path, seed=0, labels=None, **arrays):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 5, 2))
    y = (x[:, 0, 0] > 0).astype(np.int64) if labels is None else labels
    np.savez(path, **({"x": x, "y": y} | arrays))


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """A finished npz run (its archive in the same temporary directory)."""
    root = tmp_path_factory.mktemp("npzrun")
    write_npz(root / "d.npz")
    result = run("train", "--npz", root / "d.npz", *TINY, "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root


def copy_run(npz_run, tmp_path):
    shutil.copytree(npz_run / "run", tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------ 5: one-line errors

def test_binary_junk_as_toml_config(tmp_path):
    junk = tmp_path / "junk.toml"
    junk.write_bytes(bytes(range(256)))
    assert_user_error(run("train", "--config", junk, "--out", tmp_path / "r"), "junk.toml",
                      "not valid UTF-8")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["golden", "golden-int"])
def test_negative_seed_for_golden_files(tmp_path, command):
    assert_user_error(run(command, "--seed", -1, "--out", tmp_path / "g.npz"), "--seed", ">= 0")
    assert not (tmp_path / "g.npz").exists()


def test_export_eval_golden_of_a_run_whose_archive_moved(npz_run, tmp_path):
    run_dir = copy_run(npz_run, tmp_path)
    moved = tmp_path / "moved.npz"
    shutil.copyfile(npz_run / "d.npz", tmp_path / "d.npz")
    config = load_checkpoint(checkpoint_path(run_dir)).config
    config["run"]["npz"] = str(tmp_path / "d.npz")  # the run's archive is the copy, ...
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    save_checkpoint(checkpoint_path(run_dir), dataclasses.replace(ckpt, config=config))
    (tmp_path / "d.npz").rename(moved)  # ... which then moves
    for args in (["export", run_dir, "--out", tmp_path / "e.npz"], ["eval", run_dir],
                 ["golden", "--from-checkpoint", run_dir, "--out", tmp_path / "g.npz"],
                 ["train", "--resume", run_dir]):
        assert_user_error(run(*args), str(tmp_path / "d.npz"), "--npz")
        result = run(*args, "--npz", moved)
        assert result.exit_code == 0, result.output


def test_uint64_labels_near_two_to_the_64(tmp_path):
    labels = np.zeros(40, np.uint64)
    labels[::2] = 1
    labels[3] = 2 ** 64 - 1  # int64 would read -1
    write_npz(tmp_path / "u.npz", labels=labels)
    assert_user_error(run("train", "--npz", tmp_path / "u.npz", *TINY, "--out", tmp_path / "r"),
                      "u.npz", "18446744073709551615")
    assert not (tmp_path / "r").exists()


def test_uint64_token_ids_near_two_to_the_64(tmp_path):
    tokens = np.ones((40, 5), np.uint64)
    tokens[1, 2] = 2 ** 64 - 2
    np.savez(tmp_path / "t.npz", tokens=tokens, y=np.arange(40) % 2)
    assert_user_error(run("train", "--npz", tmp_path / "t.npz", *TINY, "--out", tmp_path / "r"),
                      "t.npz", "18446744073709551614")
    assert not (tmp_path / "r").exists()


def test_a_huge_label_is_refused_before_anything_is_created(tmp_path):
    labels = np.arange(40) % 2
    labels[3] = 10 ** 12
    write_npz(tmp_path / "big.npz", labels=labels)
    assert_user_error(run("train", "--npz", tmp_path / "big.npz", *TINY, "--out", tmp_path / "r"),
                      "1000000000001 classes", "exceeds")
    assert not (tmp_path / "r").exists()


def damaged(npz_run, tmp_path, how):
    """A copy of the run whose checkpoint disagrees with its configuration."""
    run_dir = copy_run(npz_run, tmp_path)
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    params, config = dict(ckpt.params), copy.deepcopy(ckpt.config)
    if how == "param dtype":
        params = {k: v.astype(np.float64) for k, v in params.items()}
    elif how == "model dtype":  # the model record says float64, the run float32
        params = {k: v.astype(np.float64) for k, v in params.items()}
        config["model"]["config"]["dtype"] = "float64"
    elif how == "model size":
        config["model"]["config"].update(hidden_size=16, block_size=16)
    elif how == "param shape":
        params["b"] = np.zeros(3, np.float32)
    save_checkpoint(checkpoint_path(run_dir), dataclasses.replace(
        ckpt, params=params, config=config, versions=None))
    return run_dir


HOWS = {"param dtype": "dtype float64", "model dtype": "run configuration",
        "model size": "run configuration", "param shape": "shape (3,)"}


@pytest.mark.parametrize("how", sorted(HOWS))
def test_checkpoints_that_disagree_with_their_config(npz_run, tmp_path, how):
    """5 (export) and 6 (info): every command reading a run refuses an inconsistent
    checkpoint as resume does."""
    run_dir = damaged(npz_run, tmp_path, how)
    for args in (["export", run_dir, "--out", tmp_path / "e.npz"],
                 ["export", run_dir, "--format", "c", "--out", tmp_path / "e.h"],
                 ["info", run_dir], ["eval", run_dir],
                 ["golden", "--from-checkpoint", run_dir, "--out", tmp_path / "g.npz"],
                 ["train", "--resume", run_dir]):
        assert_user_error(run(*args), "checkpoint.npz", HOWS[how])
    assert not list(tmp_path.glob("e.*")) and not (tmp_path / "g.npz").exists()


# -------------------------------------------- 3: a command never overwrites its inputs

def test_export_and_golden_refuse_to_overwrite_the_run(npz_run, tmp_path):
    run_dir = copy_run(npz_run, tmp_path)
    shutil.copyfile(npz_run / "d.npz", tmp_path / "d.npz")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    (tmp_path / "link.npz").symlink_to(run_dir / "checkpoint.npz")
    targets = [run_dir / name for name in before] + [
        run_dir / "checkpoint-epoch007.npz", run_dir / "run.lock", tmp_path / "link.npz"]
    for out in targets:
        for args in (["export", run_dir], ["export", run_dir, "--format", "c"],
                     ["export", run_dir / "checkpoint.npz"],
                     ["golden", "--from-checkpoint", run_dir]):
            assert_user_error(run(*args, "--out", out), str(out), "refusing to write")
    assert_user_error(run("export", run_dir, "--npz", tmp_path / "d.npz", "--out",
                          tmp_path / "d.npz"), "data file")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    result = run("export", run_dir, "--out", run_dir / "model.npz")
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------- 2: resume on changed data

def test_resume_on_changed_data_is_refused_then_allowed_and_logged(tmp_path):
    data = tmp_path / "d.npz"
    write_npz(data)
    run_dir = tmp_path / "run"
    assert run("train", "--npz", data, *TINY, "--out", run_dir, "--max-steps", 1).exit_code == 0
    write_npz(data, seed=1)
    before = checkpoint_path(run_dir).read_bytes()
    assert_user_error(run("train", "--resume", run_dir), "d.npz", "--allow-data-change")
    assert checkpoint_path(run_dir).read_bytes() == before
    assert_user_error(run("train", "--npz", data, *TINY, "--allow-data-change"),
                      "--allow-data-change", "--resume")
    result = run("train", "--resume", run_dir, "--allow-data-change")
    assert result.exit_code == 0, result.output
    assert "data changed" in result.output
    assert [r["kind"] for r in read_metrics(run_dir)][:2] == ["step", "data_change"]
