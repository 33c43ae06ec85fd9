"""Training on your own sequences from the command line: the npz preset's defaults."""

import numpy as np
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.io.checkpoint import epoch_checkpoints
from hadamnp.runs.config import resolve_config


def archive(path, n=200):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((n, 6, 2)), y=rng.integers(0, 3, n))
    return path


def test_npz_holds_out_validation_and_test_and_keeps_few_checkpoints(tmp_path):
    data = archive(tmp_path / "d.npz")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--npz", str(data), "--hidden", "8",
                                       "--epochs", "7", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "preset npz" in result.output and "(20 sequences)" in result.output
    text = (run_dir / "config.toml").read_text()
    assert '\npreset = "npz"\n' in text and "npz_test_fraction = 0.1" in text
    config = resolve_config(path=run_dir / "config.toml")
    assert config.preset == "npz" and config.keep_last == 5
    assert [n for n, _ in epoch_checkpoints(run_dir)] == [2, 3, 4, 5, 6]
    assert (run_dir / "checkpoint-best.npz").is_file()


def test_eval_of_a_run_without_test_split_names_the_flag(tmp_path):
    data = archive(tmp_path / "d.npz")
    run_dir = tmp_path / "run"
    trained = CliRunner().invoke(main, ["train", "--preset", "base", "--npz", str(data),
                                        "--hidden", "8", "--epochs", "1", "--out",
                                        str(run_dir)])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(main, ["eval", str(run_dir)])
    assert result.exit_code == 1
    assert "no 'test' split" in result.output and "--npz-test-fraction" in result.output
