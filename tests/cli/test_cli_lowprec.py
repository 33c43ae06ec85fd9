"""``hadamnp train --model lstm --quant-rec ternary-stochastic --task pmnist``: a tiny run
trains, clips its shadow weights, and resumes bit for bit after an interruption (the
stochastic draws come from the run's seed and the step, not from stored generator state)."""

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.models.lowprec_quantizers import glorot_bound
from cli_helpers import interrupted_at_step, params, run

HIDDEN = 8
TINY = ["--task", "pmnist", "--model", "lstm", "--hidden", HIDDEN,
        "--quant-rec", "ternary-stochastic", "-O", "quant_in=exponential-stochastic",
        "-O", "quant_bias=binary-stochastic:H=0.25", "--batch-size", 8, "--epochs", 2,
        "--steps-per-epoch", 3, "--train-size", 48, "--lr", 0.05, "--val-batches", 1,
        "--test-batches", 1, "--eval-batch-size", 16, "--preset", "base"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lowprec") / "run"
    result = run("train", *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_trains_and_clips_the_shadow_weights(finished):
    run_dir, output = finished
    assert "training lstm" in output and "quant_rec=ternary-stochastic" in output
    assert "finished in" in output
    trained = params(run_dir)
    W0_rec, W0_in = glorot_bound(HIDDEN, HIDDEN), glorot_bound(1, HIDDEN)
    recurrent = np.concatenate([trained[f"W_h{g}"].ravel() for g in "ifgo"])
    biases = np.concatenate([trained[f"b_{g}"].ravel() for g in "ifgo"])
    assert np.max(np.abs(recurrent)) <= np.float32(W0_rec)
    assert np.max(np.abs(biases)) <= np.float32(W0_in)
    # lr 0.05 pushes some shadow weights onto the bound: the clip really acted
    assert np.sum(np.abs(recurrent) == np.float32(W0_rec)) > 0
    # the readout V is not quantized, hence not clipped
    assert load_checkpoint(checkpoint_path(run_dir)).config["model"]["config"]["quant_out"] \
        == "none"


def test_interrupted_run_resumes_bit_identically(finished, tmp_path):
    run_dir, _ = finished
    with interrupted_at_step(4):   # in the second epoch
        result = run("train", *TINY, "--out", tmp_path)
    assert result.exit_code == 130, result.output
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 3
    resumed = run("train", "--resume", tmp_path)
    assert resumed.exit_code == 0, resumed.output
    a, b = params(run_dir), params(tmp_path)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_stochastic_draws_differ_between_steps_and_follow_the_seed(finished, tmp_path):
    """Another seed gives another trajectory (the draws and data depend on it)."""
    run_dir, _ = finished
    other = run("train", *TINY, "--seed", 3, "--out", tmp_path, "--max-steps", 6)
    assert other.exit_code == 0, other.output
    a, b = params(run_dir), params(tmp_path)
    assert not np.array_equal(a["W_hi"], b["W_hi"])


def test_bad_quantizer_options_are_clean_errors():
    result = run("train", "--task", "pmnist", "--model", "gru", "--quant-rec", "ternery",
                 "--max-steps", 1)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "quant_rec" in result.output and "unknown quantizer 'ternery'" in result.output
    result = run("train", "--task", "pmnist", "--model", "lstm", "-O",
                 "quant_bias=pow2-ternary:20,1", "--max-steps", 1)
    assert result.exit_code != 0 and "quant_bias" in result.output and "i + f" in result.output
    result = run("info", "--model", "lstm", "--quant-rec", "pow2-ternary")
    assert result.exit_code != 0 and "maps every value" in result.output


def test_info_reports_the_quantized_size():
    result = run("info", "--task", "pmnist", "--model", "gru", "--hidden", 128,
                 "--quant-rec", "ternary", "-O", "quant_in=ternary", "-O",
                 "quant_bias=ternary")
    assert result.exit_code == 0, result.output
    assert "model          gru" in result.output and "W_h 98,304" in result.output
