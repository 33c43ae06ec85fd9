"""Learning curves from metrics.jsonl: the series, the PNG, the missing-matplotlib message."""

import sys

import pytest
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.errors import ConfigError
from hadamnp.training.metrics import encode_record
from hadamnp.training.plot import (INSTALL_HINT, available_metrics, flatten, metric_series,
                                   plot_runs)

RECORDS = [
    {"kind": "step", "epoch": 0, "batch": 0, "step": 1, "loss": 2.0, "accuracy": 0.1,
     "lr": 0.1, "flips": 3, "alpha": {"U": 0.5, "V": 0.25}},
    {"kind": "step", "epoch": 0, "batch": 1, "step": 2, "loss": None, "accuracy": 0.2,
     "lr": 0.1, "flips": 0, "alpha": {"U": 0.6, "V": 0.2}},
    {"kind": "epoch", "epoch": 0, "step": 2, "lr": 0.1, "train_loss": 1.5,
     "train_accuracy": 0.15, "val_loss": 1.2, "val_accuracy": 0.3, "seconds": 1.0},
    {"kind": "test", "epoch": 1, "step": 2, "loss": 1.1, "accuracy": 0.35, "sequences": 9},
]


def write_run(path, records=RECORDS):
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(encode_record(r) for r in records))
    return path


def test_series_families_and_any_key():
    loss = {label: (steps, values) for label, _, steps, values in metric_series(RECORDS, "loss")}
    assert loss == {"train (step)": ([1], [2.0]), "train (epoch mean)": ([2], [1.5]),
                    "validation": ([2], [1.2]), "test": ([2], [1.1])}
    flips = metric_series(RECORDS, "flips")
    assert [(label, steps, values) for label, _, steps, values in flips] == \
        [("step", [1, 2], [3.0, 0.0])]
    assert [s[3] for s in metric_series(RECORDS, "alpha.U")] == [[0.5, 0.6]]
    assert metric_series(RECORDS, "nothing") == []
    assert flatten({"a": {"b": 1, "c": True}, "d": "x"}) == {"a.b": 1}
    names = available_metrics(RECORDS)
    assert names[:2] == ["loss", "accuracy"] and {"flips", "alpha.V", "val_loss"} <= set(names)
    assert "step" not in names


def test_png_of_two_runs(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [write_run(tmp_path / "a"), write_run(tmp_path / "b", RECORDS[2:])]
    plot_runs(runs, tmp_path / "c.png", ["loss", "flips"], log_y=True)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="no run has metric 'grad_norm'; available: .*flips"):
        plot_runs(runs, tmp_path / "d.png", ["grad_norm"])


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install 'hadamnp\\[plot\\]'"):
        plot_runs([write_run(tmp_path / "a")], tmp_path / "c.png")
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "a")])
    assert result.exit_code == 1 and INSTALL_HINT in result.output


def test_plot_command(tmp_path):
    run_dir = write_run(tmp_path / "run")
    listed = CliRunner().invoke(main, ["plot", str(run_dir), "--list"])
    assert listed.exit_code == 0 and "loss, accuracy" in listed.output
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(main, ["plot", str(run_dir), "--metric", "alpha.U"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "curves.png").is_file()
    bad = CliRunner().invoke(main, ["plot", str(run_dir), "--metric", "nope"])
    assert bad.exit_code == 1 and "no run has metric 'nope'" in bad.output
