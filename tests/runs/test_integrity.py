"""Tests of hadamnp.runs.integrity: the run lock, stale temporary files, the data a run
read (content digests) and the outputs a command reading a run may not overwrite."""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs import integrity
from hadamnp.runs.config import resolve_config
from hadamnp.runs.integrity import RunLock
from hadamnp.runs.plumbing import build_task
from hadamnp.training.loop import resume, train
from hadamnp.training.metrics import read_metrics
from workers import broadcast, start_workers, stop_workers

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def tiny(**changes):
    options = dict(task="copy", copy_length=30, batch_size=16, epochs=2, steps_per_epoch=3,
                   lr=3e-2, log_every=1, val_batches=1, test_batches=1,
                   model={"name": "hadamrnn", "hidden_size": 8})
    return resolve_config(preset="base", overrides={**options, **changes})


# ------------------------------------------------------------------------------ the lock

# A process that takes the lock of the directory named on each stdin line, proves it is
# the only holder (exclusive creation of a marker file) for a moment, and reports.
LOCKER = r"""
import os, sys, time
from pathlib import Path
from hadamnp.errors import CheckpointError
from hadamnp.runs.integrity import RunLock
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    run_dir = Path(line.strip())
    try:
        with RunLock(run_dir):
            marker = os.open(run_dir / "holder", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            time.sleep(0.002)
            os.close(marker)
            os.unlink(run_dir / "holder")
        print("held", flush=True)
    except CheckpointError as exc:
        print("refused", str(exc).replace("\n", " "), flush=True)
    except Exception as exc:
        print("error", repr(exc).replace("\n", " "), flush=True)
"""


def test_lock_is_mutually_exclusive_under_contention(tmp_path):
    """8 processes race for one directory's lock, 100 times: never two holders at once,
    every refusal names a live contender's pid, no lock file left behind. (The lock this
    replaced, with its stale-lock takeover, let two processes in about once in 50.)"""
    procs, pids = start_workers(LOCKER, 8)
    try:
        for rep in range(100):
            run_dir = tmp_path / f"r{rep}"
            run_dir.mkdir()
            answers = broadcast(procs, str(run_dir))
            assert not [a for a in answers if a.startswith("error")], answers
            assert any(a == "held" for a in answers), answers
            for answer in answers:
                if "in use by process" in answer:
                    pid = int(answer.split("in use by process ")[1].split()[0].strip("(),;"))
                    assert pid in pids, answer
                elif answer != "held":  # a holder that has not yet written its pid
                    assert "in use by another process" in answer, answer
            assert not (run_dir / integrity.LOCK_NAME).exists()
    finally:
        assert stop_workers(procs) == [0] * len(procs)


def test_a_held_lock_refuses_resume_and_names_the_holder(tmp_path):
    train(tiny(), tmp_path, max_steps=1)
    with RunLock(tmp_path):
        lock = tmp_path / integrity.LOCK_NAME
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(CheckpointError, match=f"in use by process {os.getpid()}"):
            resume(tmp_path)
        # What a holder has between creating the file and writing its pid: an empty file.
        # The old lock took it for stale and deleted it; an flock is never stale.
        lock.write_text("")
        with pytest.raises(CheckpointError, match="in use by another process"):
            resume(tmp_path)
        assert lock.exists()
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 1
    assert resume(tmp_path).finished


def test_a_lock_file_left_by_a_dead_process_is_not_a_lock(tmp_path):
    """kill -9 leaves run.lock behind; the kernel released the flock, so a new process
    takes the run without deleting anything another process could hold."""
    train(tiny(), tmp_path, max_steps=1)
    (tmp_path / integrity.LOCK_NAME).write_text("999999999\n")
    assert resume(tmp_path).finished
    assert not (tmp_path / integrity.LOCK_NAME).exists()


def test_lock_without_fcntl_is_an_exclusive_file(tmp_path, monkeypatch):
    """Windows has no fcntl: the lock is the exclusive creation of run.lock; a file left
    by a crash must be removed by hand (the message says how)."""
    monkeypatch.setattr(integrity, "fcntl", None)
    with RunLock(tmp_path):
        with pytest.raises(CheckpointError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / integrity.LOCK_NAME).exists()
    (tmp_path / integrity.LOCK_NAME).write_text("12345\n")
    with pytest.raises(CheckpointError, match="delete the lock file"):
        RunLock(tmp_path).__enter__()
    assert (tmp_path / integrity.LOCK_NAME).exists()


def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / integrity.LOCK_NAME)
    with pytest.raises(CheckpointError, match="not a regular file"):
        RunLock(tmp_path).__enter__()


# ---------------------------------------------------------------------- stale temp files

WRITER_TEMPS = (".checkpoint.npz.k3x_9qab.tmp", ".checkpoint-epoch000.npz.abcdefgh.tmp",
                ".config.toml.zz0011yy.tmp")
OTHER_FILES = (".export.npz.abcdefgh.tmp", "notes.tmp", ".checkpoint.npz.tmp",
               "checkpoint.npz.abcdefgh.tmp")


def test_stale_temp_files_of_the_run_are_removed_on_resume_only(tmp_path):
    train(tiny(), tmp_path, max_steps=1)
    for name in WRITER_TEMPS + OTHER_FILES:
        (tmp_path / name).write_bytes(b"partial")
    with RunLock(tmp_path):  # another process owns the run: nothing may be touched
        with pytest.raises(CheckpointError, match="in use"):
            resume(tmp_path)
    assert all((tmp_path / name).exists() for name in WRITER_TEMPS + OTHER_FILES)
    assert resume(tmp_path).finished
    assert not any((tmp_path / name).exists() for name in WRITER_TEMPS)
    assert all((tmp_path / name).read_bytes() == b"partial" for name in OTHER_FILES)


def test_stale_temp_files_are_removed_on_a_fresh_start(tmp_path):
    tmp_path.joinpath(WRITER_TEMPS[0]).write_bytes(b"partial")
    train(tiny(), tmp_path, max_steps=1)
    assert not tmp_path.joinpath(WRITER_TEMPS[0]).exists()


def test_run_file_names():
    for name in ("checkpoint.npz", "checkpoint-epoch000.npz", "checkpoint-epoch1234.npz",
                 "config.toml", "metrics.jsonl", "run.lock") + WRITER_TEMPS:
        assert integrity.is_run_file(name), name
    for name in ("export.npz", "model.h", "checkpoint-epochx.npz", "golden.npz") + OTHER_FILES:
        assert not integrity.is_run_file(name), name


# ------------------------------------------------------------------------- data digests

def write_npz(path, seed, n=40):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 2))
    np.savez(path, x=x, y=(x[:, 0, 0] > 0).astype(np.int64))


def npz_config(path, **changes):
    return tiny(task="npz", npz=str(path), npz_test_fraction=0.25, batch_size=10,
                steps_per_epoch=None, **changes)


def test_resume_refuses_changed_npz_data_unless_allowed(tmp_path):
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    run_dir = tmp_path / "run"
    train(npz_config(data), run_dir, max_steps=2)
    stored = load_checkpoint(checkpoint_path(run_dir)).config["data"]
    assert set(stored) == {"npz"} and stored["npz"]["sha256"].startswith("sha256:")
    write_npz(data, 1)  # same shapes, other contents
    before = checkpoint_path(run_dir).read_bytes()
    with pytest.raises(CheckpointError, match=r"data changed.*d\.npz.*allow_data_change"):
        resume(run_dir)
    assert checkpoint_path(run_dir).read_bytes() == before
    result = resume(run_dir, allow_data_change=True)
    assert result.finished
    changes = read_metrics(run_dir, kind="data_change")
    assert len(changes) == 1 and changes[0]["step"] == 2
    assert changes[0]["files"]["npz"]["then"] == stored["npz"]["sha256"]
    now = load_checkpoint(checkpoint_path(run_dir)).config["data"]["npz"]["sha256"]
    assert changes[0]["files"]["npz"]["now"] == now != stored["npz"]["sha256"]


def test_resume_on_moved_but_identical_data_is_bit_identical(tmp_path):
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    whole = train(npz_config(data), tmp_path / "whole")
    train(npz_config(data), tmp_path / "part", max_steps=3)
    moved = tmp_path / "elsewhere.npz"
    shutil.copyfile(data, moved)
    data.unlink()
    with pytest.raises(FileNotFoundError, match="d.npz"):
        resume(tmp_path / "part")
    result = resume(tmp_path / "part", npz=str(moved))
    assert all(np.array_equal(whole.params[k], result.params[k]) for k in whole.params)
    assert not read_metrics(tmp_path / "part", kind="data_change")


@pytest.fixture
def mnist_copy(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("mnist")
    for path in REPO_DATA.glob("*-ubyte.gz"):
        shutil.copyfile(path, data_dir / path.name)
    return data_dir


def mnist_config(data_dir):
    return resolve_config(preset="quick", overrides=dict(
        task="smnist", model={"hidden_size": 8}, batch_size=4, train_size=8, epochs=1,
        steps_per_epoch=2, eval_batch_size=4, val_batches=1, test_batches=1,
        data_dir=str(data_dir)))


def test_mnist_runs_record_the_four_idx_files(mnist_copy, tmp_path):
    train(mnist_config(mnist_copy), tmp_path / "run", max_steps=1)
    stored = load_checkpoint(checkpoint_path(tmp_path / "run")).config["data"]
    assert sorted(stored) == ["test_images", "test_labels", "train_images", "train_labels"]
    labels = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    assert stored["test_labels"]["path"] == str(labels)
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # one test label changes
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(CheckpointError, match="test_labels .*t10k-labels-idx1-ubyte"):
        resume(tmp_path / "run")


# ---------------------------------------------------------------- outputs of run readers

def test_check_output_refuses_inputs_and_run_files(tmp_path):
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    run_dir = tmp_path / "run"
    train(npz_config(data), run_dir, max_steps=1)
    task = build_task(npz_config(data))
    ckpt = checkpoint_path(run_dir)
    (tmp_path / "link.npz").symlink_to(ckpt)
    os.link(data, tmp_path / "hard.npz")
    refused = {ckpt: "checkpoint", run_dir / "config.toml": "run directory",
               run_dir / "checkpoint-epoch009.npz": "run directory",
               run_dir / "metrics.jsonl": "run directory", run_dir / "run.lock": "run directory",
               tmp_path / "link.npz": "checkpoint", data: "data file",
               tmp_path / "hard.npz": "data file"}
    for out, what in refused.items():
        with pytest.raises(ConfigError, match=what):
            integrity.check_output(out, ckpt, task)
    for out in (run_dir / "export.npz", tmp_path / "model.h", tmp_path / "config.toml"):
        integrity.check_output(out, ckpt, task)
    # a checkpoint file given directly: its directory is the run directory
    epoch = checkpoint_path(run_dir, 0)
    with pytest.raises(ConfigError, match="run directory"):
        integrity.check_output(ckpt, epoch, task)
