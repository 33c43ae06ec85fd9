"""Sweep grids (:mod:`hadamnp.sweeps.grid`): products, explicit runs, validation."""

import pytest

from hadamnp.errors import ConfigError
from hadamnp.sweeps.grid import load_grid, parse_grid

BASE = {"task": "copy", "copy_length": 30, "epochs": 1, "model": {"hidden_size": 16}}


def test_axes_product_then_explicit_runs_in_order():
    grid = parse_grid({"name": "g", "base": BASE,
                       "axes": {"model.name": ["hadamrnn", "block-hadamrnn"], "seed": [1, 2]},
                       "runs": [{"model.name": "dense", "model.quant_in": "none"}]})
    assert [r.run_id for r in grid.runs] == [
        "r000-name=hadamrnn-seed=1", "r001-name=hadamrnn-seed=2",
        "r002-name=block-hadamrnn-seed=1", "r003-name=block-hadamrnn-seed=2",
        "r004-name=dense-quant_in=none"]
    assert [r.config.seed for r in grid.runs[:4]] == [1, 2, 1, 2]
    dense = grid.runs[4].config
    assert (dense.model, dense.model_options["quant_in"], dense.task) == ("dense", "none", "copy")
    assert all(r.config.model_options["hidden_size"] == 16 for r in grid.runs)
    assert grid.group_keys() == ("model.name", "model.quant_in")


def test_preset_in_the_base_and_a_single_run_grid():
    grid = parse_grid({"base": {"preset": "quick", "epochs": 1}}, default_name="one")
    (run,) = grid.runs
    assert grid.name == "one" and run.run_id == "r000" and run.config.task == "pmnist"
    assert dict(run.config.lr_scales) == {"signs": 0.1}


def test_labels_name_runs_and_report_groups(tmp_path):
    from hadamnp.sweeps.report import _label

    grid = parse_grid({"base": BASE, "axes": {"seed": [1, 2]},
                       "runs": [{"label": "fp dense", "model.name": "dense", "seed": 5}]})
    assert [r.run_id for r in grid.runs] == ["r000-seed=1", "r001-seed=2",
                                             "r002-fp_dense-seed=5"]
    run = grid.runs[2]
    assert (run.config.model, run.config.seed) == ("dense", 5)
    assert "label" not in run.config.to_dict()
    assert _label(run.config, run.settings) == "fp dense"


@pytest.mark.parametrize("values, words", [
    ({"base": BASE, "axis": {}}, ["unknown grid key 'axis'"]),
    ({"name": "a b", "base": BASE}, ["grid name"]),
    ({"base": BASE, "axes": {"seed": []}}, ["axis 'seed'", "non-empty list"]),
    ({"base": BASE, "axes": {"seed": 3}}, ["axis 'seed'"]),
    ({"base": BASE, "axes": {"lr": [0.1, -1.0]}}, ["run r001-lr=-1.0", "lr must be > 0"]),
    ({"base": BASE, "axes": {"model.hiden_size": [8]}}, ["r000", "hiden_size"]),
    ({"base": BASE, "axes": {"task.name": [1]}}, ["'task'", "not a table"]),
    ({"base": BASE, "axes": {"seed": [1, 1]}}, ["same configuration"]),
    ({"base": BASE, "runs": {"seed": 1}}, ["[[runs]] must be a list"]),
])
def test_bad_grids_name_the_problem(values, words):
    with pytest.raises(ConfigError) as info:
        parse_grid(values)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_grid_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe not toml")
    with pytest.raises(ConfigError, match="not a valid TOML grid"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="cannot read grid file"):
        load_grid(tmp_path / "absent.toml")
    good = tmp_path / "fine.toml"
    good.write_text('[base]\ntask = "copy"\n[axes]\nseed = [1, 2]\n')
    assert load_grid(good).name == "fine"
