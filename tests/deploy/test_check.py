"""Checking deployed integer models on real data: hadamnp.deploy.check and the eval/export
commands (--engine integer, --engine c with a compiled runner)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.deploy.check import accuracy_lost, check_bits_act, compare
from hadamnp.deploy.integer import agreement, convert, run_data
from hadamnp.errors import ConfigError
from hadamnp.runs.plumbing import task_inputs

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "c"
CC = shutil.which("cc") or shutil.which("gcc")
TINY = ["--preset", "base", "--task", "copy", "--copy-length", "40", "--hidden", "16",
        "--batch-size", "16", "--epochs", "1", "--steps-per-epoch", "20", "--lr", "0.03",
        "--val-batches", "1", "--test-batches", "1"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("check") / "run"
    run("train", *TINY, "--out", run_dir)
    return run_dir


def test_check_bits_act():
    check_bits_act(6)
    check_bits_act(24)
    with pytest.raises(ConfigError, match="a = 4 is outside .*31 positive levels"):
        check_bits_act(4)
    with pytest.raises(ConfigError, match="a = 25 .*at most 24 bits"):
        check_bits_act(25)


def test_compare_matches_the_agreement_of_the_converted_model(trained):
    model, params, task = run_data(trained)
    x, _ = task_inputs(task, model.config.dtype, 64)
    imodel = convert(model, params, x, a=12)
    result = compare(model, params, imodel, task, "test", count=70, batch_size=32)
    assert result["sequences"] == 70 and result["positions"] == 70 * 40
    x_test, y_test = task_inputs(task, model.config.dtype, 70, source="test")
    direct = agreement(model, params, imodel, x_test, y_test)
    assert result["int_accuracy"] == pytest.approx(direct["int_accuracy"], abs=1e-12)
    assert result["float_accuracy"] == pytest.approx(direct["float_accuracy"], abs=1e-12)
    assert result["agreement"] == pytest.approx(direct["argmax_agreement"], abs=1e-12)
    assert result["metrics"] == ("accuracy",) and result["int_loss"] > 0


def figure(output, pattern):
    return float(re.search(pattern, output).group(1))


def test_export_checks_the_integer_model_and_refuses_useless_widths(trained, tmp_path):
    out = run("export", trained, "--out", tmp_path / "m.npz", "--eval-size", 30)
    assert "float    loss" in out and "integer  loss" in out and "(30 sequences)" in out
    assert "a = 16" in out and "deployed size (bytes)" in out and "float32 reference" in out
    bad = CliRunner().invoke(main, ["export", str(trained), "--out", str(tmp_path / "x.npz"),
                                    "--bits-act", "4"])
    assert bad.exit_code != 0 and "outside [6, 24]" in bad.output
    assert not (tmp_path / "x.npz").exists()
    skipped = run("export", trained, "--out", tmp_path / "s.npz", "--eval-size", 0)
    assert "checked on" not in skipped


def test_accuracy_lost_threshold():
    assert accuracy_lost({"float_accuracy": 0.90, "int_accuracy": 0.885})
    assert not accuracy_lost({"float_accuracy": 0.90, "int_accuracy": 0.895})
    assert not accuracy_lost({"float_accuracy": 0.90, "int_accuracy": 0.885}, max_drop=0.02)


def test_export_warns_loudly_when_accuracy_is_lost(trained, tmp_path, monkeypatch):
    from hadamnp.deploy import check

    monkeypatch.setattr(check, "MAX_DROP", -1.0)  # any result counts as a loss
    result = CliRunner().invoke(main, ["export", str(trained), "--out",
                                       str(tmp_path / "m.npz"), "--eval-size", "20"])
    assert result.exit_code == 0 and "WARNING: the integer model loses" in result.output


def test_eval_integer_engine(trained):
    out = run("eval", trained, "--engine", "integer", "--bits-act", 12, "--batches", 1,
              "--batch-size", 50)
    assert "test  float" in out and "test  integer" in out and "a = 12" in out
    plain = run("eval", trained, "--batches", 1, "--batch-size", 50)
    assert figure(plain, r"accuracy (\S+)") == figure(out, r"float .*accuracy (\S+)")


@pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc) on PATH: the C runner "
                                       "cannot be built here")
def test_c_runner_accuracy_equals_the_integer_engine(trained, tmp_path):
    run("export", trained, "--format", "c", "--bits-act", 12, "--out", tmp_path / "model.h",
        "--eval-size", 0)
    exe = tmp_path / "hadamrnn_int"
    subprocess.run([CC, "-std=c99", "-O2", f"-I{EXAMPLE_DIR}", f"-I{tmp_path}",
                    '-DHADAMRNN_MODEL_HEADER="model.h"', str(EXAMPLE_DIR / "hadamrnn_int.c"),
                    "-o", str(exe)], check=True)
    out = run("eval", trained, "--engine", "c", "--runner", exe, "--bits-act", 12,
              "--batches", 2, "--batch-size", 40)
    integer = figure(out, r"test  integer .*accuracy (\S+)")
    assert figure(out, r"C runner accuracy (\S+)") == integer
    assert "(80 sequences; outputs identical to the Python integer engine on 80 of them)" in out
    # a runner built for another width is caught
    mismatch = CliRunner().invoke(main, ["eval", str(trained), "--engine", "c", "--runner",
                                         str(exe), "--bits-act", "16", "--batches", "1"])
    assert mismatch.exit_code != 0 and "differ from the Python integer engine" in \
        mismatch.output


def test_eval_engine_options_are_checked(trained):
    result = CliRunner().invoke(main, ["eval", str(trained), "--engine", "c"])
    assert result.exit_code != 0 and "--engine c needs --runner" in result.output


def test_compare_on_a_regression_task(tmp_path):
    run("train", "--preset", "base", "--task", "adding", "--adding-length", "10", "--hidden",
        "16", "--train-size", "64", "--batch-size", "16", "--epochs", "1", "--val-batches", "1",
        "--test-batches", "1", "--out", tmp_path / "run")
    model, params, task = run_data(tmp_path / "run")
    x, _ = task_inputs(task, model.config.dtype, 32)
    result = compare(model, params, convert(model, params, x, a=16), task, "test", count=20)
    assert result["metrics"] == ("mse",) and result["agreement"] is None
    assert result["int_mse"] == pytest.approx(result["float_mse"], rel=0.05)
    assert not accuracy_lost(result)
    out = run("eval", tmp_path / "run", "--engine", "integer", "--batches", 1)
    assert "test  float    loss" in out and "mse" in out and "agreement" not in out
