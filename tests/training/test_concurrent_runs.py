"""Many trainers started at once on one run directory: exactly one trains, the others
refuse with a clear message, and the run on disk is the one an undisturbed run writes."""

import json

import numpy as np
import pytest

from hadamnp.errors import CheckpointError
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs.config import resolve_config
from hadamnp.runs.integrity import RunLock
from hadamnp.training.loop import train
from workers import broadcast, start_workers, stop_workers
from run_compare import comparable_metrics

OPTIONS = dict(task="copy", copy_length=30, batch_size=16, epochs=2, steps_per_epoch=4,
               lr=3e-2, log_every=1, val_batches=1, test_batches=1,
               model={"name": "hadamrnn", "hidden_size": 8})

# Answers "ok STEP" when its train/resume call returned, "refused MESSAGE" for a
# CheckpointError (the expected refusals), "error ..." for anything else.
TRAINER = r"""
import json, os, sys
from hadamnp.errors import CheckpointError
from hadamnp.runs.config import resolve_config
from hadamnp.training.loop import resume, train
config = resolve_config(preset="base", overrides=json.loads(sys.argv[1]))
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    command, run_dir = line.split(maxsplit=1)
    try:
        result = train(config, run_dir.strip()) if command == "train" else resume(run_dir.strip())
        print("ok", result.step, flush=True)
    except CheckpointError as exc:
        print("refused", str(exc).replace("\n", " "), flush=True)
    except Exception as exc:
        print("error", repr(exc).replace("\n", " "), flush=True)
"""

REFUSALS = ("in use by process", "in use by another process", "already holds a run")


def same_run(run_dir, reference_dir):
    a = load_checkpoint(checkpoint_path(run_dir)).params
    b = load_checkpoint(checkpoint_path(reference_dir)).params
    return (all(np.array_equal(a[k], b[k]) for k in b)
            and comparable_metrics(run_dir) == comparable_metrics(reference_dir))


def race(tmp_path, reps, count=8):
    """``count`` trainer processes start ``train`` on one fresh directory, then ``resume``
    on one stopped after its first step, ``reps`` times each: every time exactly one
    trains (fresh) or at least one and no two at once (resume; a resume that starts after
    the winner finished finds a finished run), the others refuse, and the directory ends
    as an undisturbed run."""
    reference = tmp_path / "reference"
    config = resolve_config(preset="base", overrides=OPTIONS)
    steps = train(config, reference).step
    procs, _ = start_workers(TRAINER, count, json.dumps(OPTIONS))
    try:
        for rep in range(reps):
            for command in ("train", "resume"):
                run_dir = tmp_path / f"{command}{rep}"
                if command == "resume":
                    train(config, run_dir, max_steps=1)
                answers = broadcast(procs, f"{command} {run_dir}")
                unexpected = [a for a in answers if not a.startswith(("ok", "refused"))]
                assert not unexpected, answers
                refused = [a for a in answers if a.startswith("refused")]
                assert all(any(r in a for r in REFUSALS) for a in refused), refused
                done = [a for a in answers if a.startswith("ok")]
                if command == "train":
                    assert done == [f"ok {steps}"], answers  # never two
                else:
                    assert done and set(done) == {f"ok {steps}"}, answers
                assert same_run(run_dir, reference), f"{command} {rep}: {answers}"
                assert not (run_dir / "run.lock").exists()
    finally:
        assert stop_workers(procs) == [0] * count


# Starting eight trainer processes (NumPy, Numba and the cached kernels each) takes about
# 6 s of two idle cores, 14 s on the shared test machine: these runs are marked slow. The
# default run races eight lock-only processes (tests/runs/test_integrity.py) and keeps
# the in-process checks below.
@pytest.mark.slow
def test_eight_concurrent_trainers(tmp_path):
    race(tmp_path, reps=1)


@pytest.mark.slow
def test_eight_concurrent_trainers_twenty_times(tmp_path):
    race(tmp_path, reps=20)


def test_a_trainer_refused_by_the_lock_writes_nothing(tmp_path):
    """The loser of a race used to write config.toml before it looked at the lock,
    replacing the winner's configuration with its own."""
    config = resolve_config(preset="base", overrides=OPTIONS)
    other = config.replace(lr=0.5)
    with RunLock(tmp_path):
        with pytest.raises(CheckpointError, match="in use by process"):
            train(other, tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]
    train(config, tmp_path, max_steps=1)
    before = (tmp_path / "config.toml").read_bytes()
    with RunLock(tmp_path):
        with pytest.raises(CheckpointError, match="already holds a run|in use"):
            train(other, tmp_path)
    assert (tmp_path / "config.toml").read_bytes() == before
