"""A sweep on a real Dask LocalCluster: a worker is killed mid-run, the sweep is run again,
and every final checkpoint equals the same run done alone with ``hadamnp train``."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs.config import config_to_toml
from hadamnp.sweeps.grid import parse_grid
from hadamnp.sweeps.runner import SINGLE_THREAD_ENV, plan, read_manifest, run_sweep

distributed = pytest.importorskip("distributed")

GRID = {"name": "kill", "base": {
    "task": "copy", "copy_length": 30, "epochs": 2, "steps_per_epoch": 30, "batch_size": 16,
    "lr": 0.03, "val_batches": 1, "test_batches": 1, "checkpoint_every": 5, "log_every": 1,
    "model": {"hidden_size": 16}},
    "axes": {"model.name": ["hadamrnn", "block-hadamrnn"], "seed": [1, 2]}}


def _step_of(run_dir):
    try:
        return load_checkpoint(checkpoint_path(run_dir)).position["global_step"]
    except Exception:  # not written yet, or being replaced
        return 0


def _kill_a_busy_worker(client, sweep_dir, grid, deadline):
    """Wait until a run is past its first checkpoint, then SIGKILL the worker running it."""
    while time.monotonic() < deadline:
        for run in grid.runs:
            run_dir = sweep_dir / run.run_id
            if 5 <= _step_of(run_dir) < 60:
                for address, keys in client.processing().items():
                    if any(key.endswith(run.run_id) for key in keys):
                        pid = client.run(os.getpid, workers=[address])[address]
                        os.kill(pid, signal.SIGKILL)
                        return run.run_id
        time.sleep(0.05)
    raise AssertionError("no run reached its first checkpoint in time")


def test_killed_worker_then_rerun_matches_solo_runs(tmp_path):
    grid = parse_grid(GRID)
    sweep_dir = tmp_path / "sweep"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, env=SINGLE_THREAD_ENV,
                                       silence_logs=50)
    client = distributed.Client(cluster)
    lines, outcomes = [], []
    try:
        worker = threading.Thread(target=lambda: outcomes.append(
            run_sweep(grid, sweep_dir, client=client, echo=lines.append, heartbeat=1.0)))
        worker.start()
        killed = _kill_a_busy_worker(client, sweep_dir, grid, time.monotonic() + 240)
        worker.join(timeout=600)
        assert not worker.is_alive(), "the sweep did not finish"
        (first,) = outcomes
        # Dask retried the lost task on a worker, which resumed from the last checkpoint.
        retried = next(r for r in first.runs if r.run_id == killed)
        assert retried.error is None, retried.error
        assert retried.summary["started_at_step"] >= 5, retried.summary
        again = run_sweep(grid, sweep_dir, client=client, echo=lines.append)
    finally:
        client.close()
        cluster.close()
    assert not first.failed and len(first.finished) == 4, lines
    assert all(r.summary["status"] == "finished" for r in again.runs)
    assert any("running" in line and "best" in line for line in lines), lines
    assert [e["id"] for e in read_manifest(sweep_dir)["runs"]] == [r.run_id for r in grid.runs]

    env = {**os.environ, **SINGLE_THREAD_ENV}
    for run in grid.runs:
        config_file = tmp_path / f"{run.run_id}.toml"
        config_file.write_text(config_to_toml(run.config))
        solo = tmp_path / "solo" / run.run_id
        subprocess.run([sys.executable, "-m", "hadamnp", "train", "--config",
                        str(config_file), "--out", str(solo)], env=env, check=True,
                       capture_output=True)
        expected = load_checkpoint(checkpoint_path(solo)).params
        got = load_checkpoint(checkpoint_path(sweep_dir / run.run_id)).params
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"{run.run_id} {name}")

    from hadamnp.sweeps.report import write_report

    plots = _has_matplotlib()
    table, files, missing = write_report([sweep_dir], tmp_path / "report", plots=plots)
    assert not missing
    lines = table.splitlines()
    assert len(lines) == 4 and "model.name=hadamrnn" in lines[2]
    assert all(" 2 (2) " in line for line in lines[2:]), table  # two seeds, both finished
    assert "±" in lines[2]
    names = sorted(f.name for f in files)
    expected_files = ["report.csv", "report.md"]
    if plots:
        expected_files = sorted(expected_files + ["curves-block-hadamrnn.png",
                                                  "curves-hadamrnn.png", "metric-vs-bits.png"])
        for f in files:
            if f.suffix == ".png":
                assert f.read_bytes()[:4] == b"\x89PNG" and f.stat().st_size > 10_000, f
    assert names == expected_files


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_failing_run_does_not_stop_the_others(tmp_path, monkeypatch):
    """One run's data file is missing: it fails with its error, the other run finishes."""
    grid = parse_grid({"base": {"task": "copy", "copy_length": 24, "epochs": 1,
                                "steps_per_epoch": 2, "val_batches": 1, "test_batches": 1,
                                "model": {"hidden_size": 8}},
                       "axes": {"seed": [1, 2]}})
    sweep_dir = tmp_path / "sweep"
    plan(grid, sweep_dir)
    (sweep_dir / grid.runs[1].run_id).write_text("not a directory")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    lines = []
    try:
        outcome = run_sweep(grid, sweep_dir, client=client, echo=lines.append)
    except Exception as exc:  # the planning step may refuse the broken run directory
        pytest.fail(f"the sweep raised instead of isolating the failure: {exc!r}")
    finally:
        client.close()
        cluster.close()
    assert [r.run_id for r in outcome.finished] == [grid.runs[0].run_id]
    assert [r.run_id for r in outcome.failed] == [grid.runs[1].run_id]
    assert "not a directory" in outcome.failed[0].error
    assert any("1 run(s) failed" in line for line in lines)


def test_another_grid_in_the_same_directory_is_refused(tmp_path):
    from hadamnp.errors import ConfigError

    grid = parse_grid({"base": {"task": "copy"}, "axes": {"seed": [1, 2]}})
    plan(grid, tmp_path)
    other = parse_grid({"base": {"task": "copy"}, "axes": {"seed": [1, 3]}})
    with pytest.raises(ConfigError, match="holds another grid.*r001"):
        plan(other, tmp_path)
