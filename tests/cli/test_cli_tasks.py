"""The adding and text tasks, ``--loss`` and the embedding options through click's runner:
``train`` (and ``--resume``), ``eval``, ``info``, ``golden`` and the error messages."""

import re

import numpy as np
import pytest

from hadamnp.golden.vectors import read_golden
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from cli_helpers import assert_user_error, run

COMMON = ["--preset", "base", "--model", "dense", "--hidden", "8", "--batch-size", "8",
          "--epochs", "2", "--steps-per-epoch", "4", "--lr", "0.01", "--val-batches", "1",
          "--test-batches", "1", "--eval-batch-size", "16"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [b"orthogonal", b"hadamard", b"rnn", b"sign", b"\xc3\xa9"]
    body = b" ".join(words[i] for i in rng.integers(0, len(words), size=1500))
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(body)
    return path


def test_adding_task_lines_show_mse_and_the_baseline(tmp_path):
    result = run("train", *COMMON, "--task", "adding", "--adding-length", 10,
                 "--train-size", 200, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    epoch = next(line for line in result.output.splitlines() if line.startswith("epoch 1"))
    assert re.search(r"train loss \d\.\d{4} mse \d\.\d{4}  \|  val loss \d\.\d{4}  "
                     r"mse \d\.\d{4}  \(16 sequences\)  baseline 0\.1667  ratio", epoch), epoch
    assert "training dense hidden_size=8" in result.output and "on adding" in result.output
    test_line = next(line for line in result.output.splitlines() if line.startswith("test"))
    assert "baseline 0.1667" in test_line and "accuracy" not in test_line
    evaluated = run("eval", tmp_path, "--batches", 1)
    assert evaluated.exit_code == 0 and evaluated.output.splitlines()[-1] == test_line
    info = run("info", tmp_path)
    assert "input_size=2 hidden_size=8 output_size=1" in info.output


def test_text_task_with_an_embedding(tmp_path, text_file):
    out = tmp_path / "run"
    args = ["train", *COMMON, "--text", text_file, "--text-window", 16, "--embedding-dim", 4,
            "--quant-embedding", "uniform:4", "--out", out]
    stopped = run(*args, "--max-steps", 3)
    assert stopped.exit_code == 0 and "stopped at step 3" in stopped.output
    resumed = run("train", "--resume", out, "--text", text_file)  # a moved file may be given
    assert resumed.exit_code == 0, resumed.output
    assert re.search(r"train loss \d\.\d{4} acc \d\.\d{4} bpc \d\.\d{4}", resumed.output)
    test_line = next(line for line in resumed.output.splitlines() if line.startswith("test"))
    assert "bpc" in test_line and "accuracy" in test_line
    reference = tmp_path / "reference"
    assert run(*args[:-1], reference).exit_code == 0
    a = load_checkpoint(checkpoint_path(out)).params
    b = load_checkpoint(checkpoint_path(reference)).params
    assert all(np.array_equal(a[k], b[k]) for k in a) and "E" in a
    info = run("info", out)
    assert info.exit_code == 0, info.output
    assert "embedding      256 x 4 table, quantizer uniform:4, padding id None" in info.output
    assert f"E {256 * 4 * 4:,}" in info.output
    assert "bpc" in run("eval", out, "--split", "val").output
    assert_user_error(run("export", out, "--out", tmp_path / "int.npz"),
                      "sits behind an embedding table")


def test_info_describes_an_embedding_without_data():
    result = run("info", "--input-size", 20000, "--output-size", 2, "--loss", "bce",
                 "--embedding-dim", 64, "--quant-embedding", "uniform:4", "--hidden", 128)
    assert result.exit_code == 0, result.output
    assert "output_size=1" in result.output
    assert "embedding      20,000 x 64 table, quantizer uniform:4, padding id 0" in result.output
    assert f"E {20000 * 64 * 4:,}" in result.output


def test_bce_on_binary_labels(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "binary.npz"
    np.savez(path, x=rng.standard_normal((40, 5, 3)), y=rng.integers(0, 2, 40),
             x_test=rng.standard_normal((8, 5, 3)), y_test=rng.integers(0, 2, 8))
    result = run("train", *COMMON, "--npz", path, "--loss", "bce", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(checkpoint_path(tmp_path / "r")).config["model"]["config"][
        "output_size"] == 1
    bad = tmp_path / "three.npz"
    np.savez(bad, x=rng.standard_normal((40, 5, 3)), y=np.arange(40) % 3)
    assert_user_error(run("train", *COMMON, "--npz", bad, "--loss", "bce"),
                      "loss 'bce' needs binary labels", "3 classes")


def test_errors_name_the_option(tmp_path, text_file):
    assert_user_error(run("train", *COMMON, "--task", "adding", "--adding-length", 1),
                      "adding_length must be >= 2")
    assert_user_error(run("train", *COMMON, "--text", tmp_path / "none.txt"),
                      "text: the text file", "none.txt does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert_user_error(run("train", *COMMON, "--text", empty), "empty")
    assert_user_error(run("train", *COMMON, "--text", text_file, "--text-window", 5000),
                      "text_window=5000")
    assert_user_error(run("train", *COMMON, "--task", "copy", "--loss", "mse"),
                      "loss 'mse' needs real-valued targets")
    assert_user_error(run("train", *COMMON, "--task", "copy", "--embedding-dim", 4),
                      "embedding_dim applies to token inputs")
    assert_user_error(run("train", *COMMON, "--text", text_file, "--embedding-dim", 4,
                          "--quant-embedding", "int4"), "quant_embedding", "'int4'")
    assert_user_error(run("train", *COMMON, "--task", "adding", "--loss", "l1"),
                      "Invalid value for '--loss'")


def test_golden_with_an_embedding_and_other_losses(tmp_path):
    path = tmp_path / "embedded.npz"
    result = run("golden", "--embedding-dim", 4, "--quant-embedding", "uniform:4",
                 "--input-size", 11, "--many-to-many", "--out", path)
    assert result.exit_code == 0, result.output
    arrays, meta = read_golden(path)
    assert arrays["x"].dtype == np.int64 and arrays["x"].shape == (3, 7)
    assert arrays["param.E"].shape == arrays["weight.E_q"].shape == (11, 4)
    assert arrays["state.embedded"].shape == (3, 7, 4)
    assert meta["model"]["embedding"]["quantizer"] == "uniform:4"
    assert meta["param_roles"]["E"] == "embedding" and meta["loss"] == "cross_entropy"
    mse = tmp_path / "mse.npz"
    assert run("golden", "--loss", "mse", "--out", mse).exit_code == 0
    arrays, meta = read_golden(mse)
    assert meta["loss"] == "mse" and arrays["y"].dtype == np.float64
    assert arrays["y"].shape == arrays["logits"].shape == (3, 5)
    assert_user_error(run("golden", "--loss", "bce", "--out", tmp_path / "b.npz"),
                      "output_size must be 1")
    assert_user_error(run("golden", "--quant-embedding", "uniform:4", "--out",
                          tmp_path / "q.npz"), "set embedding_dim")
    assert_user_error(run("golden", "--embedding-dim", 0, "--out", tmp_path / "z.npz"),
                      "--embedding-dim")


def test_golden_from_an_embedding_checkpoint_refuses_model_options(tmp_path, text_file):
    out = tmp_path / "run"
    assert run("train", *COMMON, "--text", text_file, "--text-window", 8, "--embedding-dim",
               3, "--max-steps", 2, "--dtype", "float64", "--out", out).exit_code == 0
    golden = tmp_path / "trained.npz"
    result = run("golden", "--from-checkpoint", out, "--batch", 2, "--out", golden)
    assert result.exit_code == 0, result.output
    arrays, meta = read_golden(golden)
    assert meta["source"] == "checkpoint" and "embedding" in meta["model"]
    assert arrays["x"].dtype == np.int64 and arrays["x"].shape == (2, 8)
    assert_user_error(run("golden", "--from-checkpoint", out, "--loss", "mse", "--out",
                          golden), "--loss")
