"""Every writer refuses a target that exists and is not a regular file (directory, FIFO,
device) and writes *through* a symbolic link (the link stays, the file it points to is
replaced atomically)."""

import os
import stat

import numpy as np
import pytest

from hadamnp.deploy.export import export_c, export_npz
from hadamnp.deploy.integer import IntegerModel
from hadamnp.errors import CheckpointError
from hadamnp.golden.vectors import make_golden, read_golden, write_golden
from hadamnp.io import atomic
from hadamnp.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from hadamnp.io.npzfile import read_npz_checked, write_npz_atomic
from hadamnp.training.metrics import MetricsLog


def integer_model():
    n = 4
    return IntegerModel(n=n, m=n, d_in=1, d_out=2, a=8, p_in=4, p_out=4,
                        signs=np.array([1, -1, 1, 1], np.int8),
                        U_int=np.ones((n, 1), np.int8), V_int=np.ones((2, n), np.int8),
                        b_fine=np.zeros(n, np.int64), c_int=np.zeros(2, np.int32),
                        exp_x=0, exp_h=0, M_rec=1 << 12, M_in=1 << 10, q=13,
                        logits_scale=1.0, many_to_many=False)


def checkpoint():
    return Checkpoint(params={"w": np.arange(3.0)}, optimizer_state={"step": 1},
                      position={"epoch": 0, "batch": 1, "global_step": 1}, rng_state={},
                      config={"run": {}})


# writer(path) writes a file; check(path) reads it back (raises unless it is the new file)
WRITERS = {
    "npz": (lambda p: write_npz_atomic(p, {"a": np.arange(3)}, {"format": "t"}),
            lambda p: read_npz_checked(p, expected_format="t")),
    "checkpoint": (lambda p: save_checkpoint(p, checkpoint()), load_checkpoint),
    "golden": (lambda p: write_golden(p, *make_golden(hidden_size=4)), read_golden),
    "export npz": (lambda p: export_npz(integer_model(), p),
                   lambda p: read_npz_checked(p, expected_format="hadamnp-integer-model")),
    "export c": (lambda p: export_c(integer_model(), p),
                 lambda p: p.read_text().index("HADAMRNN_N")),
    "text": (lambda p: atomic.write_atomic(p, lambda fh: fh.write(b"new\n")),
             lambda p: p.read_bytes().index(b"new")),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_fifo_and_directory_targets_are_refused(tmp_path, writer):
    write, _ = WRITERS[writer]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        write(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        write(folder)
    assert folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder"]  # no debris


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_symlink_target_is_written_through(tmp_path, writer):
    write, check = WRITERS[writer]
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "file.out"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.out"
    link.symlink_to(target)
    write(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    check(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600  # the replaced file keeps its mode
    dangling = tmp_path / "dangling.out"
    dangling.symlink_to(tmp_path / "real" / "new.out")
    write(dangling)  # as open() does: the file the link names is created
    assert dangling.is_symlink()
    check(tmp_path / "real" / "new.out")
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["file.out", "new.out"]


def test_symlink_to_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    with pytest.raises(CheckpointError, match="not a regular file"):
        atomic.write_atomic(tmp_path / "link", lambda fh: fh.write(b"x"))
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


def test_character_device_is_refused(tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"creating a device node needs root (CAP_MKNOD): {exc}")
    for write, _ in WRITERS.values():
        with pytest.raises(CheckpointError, match="not a regular file"):
            write(device)
        assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_metrics_log_refuses_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "metrics.jsonl")
    with pytest.raises(CheckpointError, match="not a regular file"):
        MetricsLog(tmp_path / "metrics.jsonl")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "metrics.jsonl").st_mode)


def test_run_directory_files_that_are_not_regular_files_stop_training(tmp_path):
    from hadamnp.runs.config import resolve_config
    from hadamnp.training.loop import train

    config = resolve_config(preset="base", overrides=dict(
        task="copy", copy_length=30, batch_size=4, epochs=1, steps_per_epoch=2,
        val_batches=1, test_batches=1, model={"name": "hadamrnn", "hidden_size": 8}))
    for name in ("config.toml", "checkpoint.npz", "metrics.jsonl"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        os.mkfifo(run_dir / name)
        with pytest.raises(CheckpointError, match="not a regular file"):
            train(config, run_dir)
        assert stat.S_ISFIFO(os.lstat(run_dir / name).st_mode), name
