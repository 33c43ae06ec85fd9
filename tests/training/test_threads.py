"""Training is bit-identical with one and with two threads (BLAS, OpenMP and Numba).

Each run is a fresh ``hadamnp train`` process whose thread counts are set in its
environment before NumPy and Numba load, as a user would set them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hadamnp.runs.plumbing import restore

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def train_with_threads(run_dir, threads, model_args):
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    args = [sys.executable, "-m", "hadamnp", "train", "--preset", "base", "--task", "copy",
            "--copy-length", "30", "--batch-size", "32", "--epochs", "1",
            "--steps-per-epoch", "4", "--val-batches", "1", "--test-batches", "1",
            "--out", str(run_dir), *model_args]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return restore(run_dir)[1]


@pytest.mark.parametrize("model_args", [
    ["--model", "hadamrnn", "--hidden", "64"],
    ["--model", "dense", "--hidden", "64", "--quant-in", "none", "--quant-out", "none"],
    ["--model", "lstm", "--hidden", "32"],
], ids=["hadamrnn", "dense", "lstm"])
def test_one_and_two_threads_give_the_same_parameters(tmp_path, model_args):
    one = train_with_threads(tmp_path / "one", 1, model_args)
    two = train_with_threads(tmp_path / "two", 2, model_args)
    assert sorted(one) == sorted(two)
    for name in one:
        assert np.array_equal(one[name], two[name]), name
