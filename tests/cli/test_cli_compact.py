"""Compact models on the command line: ``hadamnp train --model lstm -O param_rec=ldr:2`` and
a stacked shared low-rank LSTM train and resume bit for bit after an interruption;
``hadamnp info`` reports the parameters of every matrix and the compression ratio."""

import numpy as np
import pytest

from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from cli_helpers import interrupted_at_step, params, run

COMMON = ["--task", "pmnist", "--model", "lstm", "--hidden", 8, "--batch-size", 8,
          "--epochs", 2, "--steps-per-epoch", 3, "--train-size", 48, "--lr", 0.02,
          "--val-batches", 1, "--test-batches", 1, "--eval-batch-size", 16, "--preset", "base"]
VARIANTS = {
    "ldr": ["-O", "param_rec=ldr:2"],
    "shared-lowrank": ["-O", "num_layers=2", "-O", 'param_in=["dense", "lowrank:3"]', "-O",
                       "param_rec=lowrank:3", "-O", "share=layers"],
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def finished(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    result = run("train", *COMMON, *VARIANTS[request.param], "--out", run_dir)
    assert result.exit_code == 0, result.output
    return request.param, run_dir, result.output


def test_trains_with_the_structured_parameters(finished):
    name, run_dir, output = finished
    assert "training lstm" in output and "finished in" in output
    trained = params(run_dir)
    if name == "ldr":
        assert trained["W_hi.G"].shape == (1, 2, 8) and "W_hi" not in trained
    else:
        assert trained["l0.P_h"].shape == (3, 8) and "l1.P_x" not in trained
        assert trained["l1.W_xi.A"].shape == (8, 3)
    first = load_checkpoint(checkpoint_path(run_dir))
    assert first.position["global_step"] == 6


def test_interrupted_run_resumes_bit_identically(finished, tmp_path):
    name, run_dir, _ = finished
    with interrupted_at_step(5):   # in the second epoch
        result = run("train", *COMMON, *VARIANTS[name], "--out", tmp_path)
    assert result.exit_code == 130, result.output
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 4
    resumed = run("train", "--resume", tmp_path)
    assert resumed.exit_code == 0, resumed.output
    a, b = params(run_dir), params(tmp_path)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_info_reports_every_matrix_and_the_ratio():
    result = run("info", "--task", "pmnist", "--model", "lstm", "--hidden", 128,
                 "-O", "param_rec=ldr:2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "W_h 65,536" in out          # 4 gates x 2 r n float32 values x 32 bits
    line = next(s for s in out.splitlines() if s.split()[:1] == ["W_hi"])
    assert line.split()[1:5] == ["128x128", "ldr:2", "none", "512"] and "32.0x" in line
    assert "compression    " in out
    shared = run("info", "--task", "pmnist", "--model", "lstm", "--hidden", 64,
                 "-O", "param_rec=lowrank:4", "-O", "share=gates")
    assert shared.exit_code == 0, shared.output
    assert "read by W_hi, W_hf, W_hg, W_ho" in shared.output


def test_bad_compact_options_are_clean_errors():
    result = run("train", "--task", "pmnist", "--model", "lstm", "-O", "param_in=ldr:2",
                 "--max-steps", 1)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "param_in" in result.output and "block of size 1" in result.output
    result = run("info", "--task", "pmnist", "--model", "lstm", "-O", "num_layers=2",
                 "-O", 'param_rec=["ldr:2"]')
    assert result.exit_code != 0 and "param_rec must be" in result.output


def test_info_list_names_the_parametrizations():
    result = run("info", "--list")
    assert result.exit_code == 0, result.output
    listing = result.output.split("weight parametrizations")[1]
    assert "ldr " in listing and "[args: r]" in listing and "lowrank " in listing
