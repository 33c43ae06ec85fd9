"""Many trainers started at once on one run directory: exactly one trains, the others
refuse with a clear message, and the run on disk is the one an undisturbed run writes."""

import json

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs.config import resolve_config
from hadamnp.training.loop import train
from hadamnp.training.metrics import read_metrics
from workers import broadcast, start_workers, stop_workers

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


def comparable(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]


def same_run(run_dir, reference_dir):
    a = load_checkpoint(checkpoint_path(run_dir)).params
    b = load_checkpoint(checkpoint_path(reference_dir)).params
    return (all(np.array_equal(a[k], b[k]) for k in b)
            and comparable(run_dir) == comparable(reference_dir))


def race(tmp_path, command, reps, count=8):
    """``count`` trainers run ``command`` on a fresh directory, ``reps`` times; each time
    the directory must end as the undisturbed reference run."""
    reference = tmp_path / "reference"
    config = resolve_config(preset="base", overrides=OPTIONS)
    steps = train(config, reference).step
    procs, _ = start_workers(TRAINER, count, json.dumps(OPTIONS))
    try:
        for rep in range(reps):
            run_dir = tmp_path / f"run{rep}"
            if command == "resume":
                train(config, run_dir, max_steps=1)
            answers = broadcast(procs, f"{command} {run_dir}")
            assert not [a for a in answers if not a.startswith(("ok", "refused"))], answers
            refused = [a for a in answers if a.startswith("refused")]
            assert all(any(r in a for r in REFUSALS) for a in refused), refused
            done = [a for a in answers if a.startswith("ok")]
            if command == "train":
                assert done == [f"ok {steps}"], answers  # never two
            else:
                # a resume that starts after the winner finished finds a finished run
                assert done and set(done) == {f"ok {steps}"}, answers
            assert same_run(run_dir, reference), f"rep {rep}: {answers}"
            assert not (run_dir / "run.lock").exists()
    finally:
        assert stop_workers(procs) == [0] * count


@pytest.mark.parametrize("command", ["train", "resume"])
def test_eight_concurrent_trainers(tmp_path, command):
    race(tmp_path, command, reps=3)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "resume"])
def test_eight_concurrent_trainers_twenty_times(tmp_path, command):
    race(tmp_path, command, reps=20)
