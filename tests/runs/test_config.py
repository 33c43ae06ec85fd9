"""Tests of hadamnp.training.config: presets, TOML layering, validation."""

import pytest

from hadamnp.errors import ConfigError
from hadamnp.training.config import (
    DEFAULT_PRESET,
    PRESETS,
    RunConfig,
    config_to_toml,
    load_toml,
    preset_config,
    resolve_config,
)


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# The paper's hyperparameters, spec/hadamrnn.md section 1.b.
PAPER = {
    "copy": dict(task="copy", hidden=128, batch_size=128, epochs=10, lr=1e-4, gamma=0.98,
                 seed=712, copy_length=1000),
    "smnist": dict(task="smnist", hidden=512, batch_size=64, epochs=100, lr=1e-3, gamma=0.98,
                   seed=68),
    "pmnist": dict(task="pmnist", hidden=512, batch_size=100, epochs=100, lr=1e-3,
                   gamma=0.98, seed=8),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_match_spec_table(name):
    config = preset_config(name)
    for key, value in PAPER[name].items():
        assert getattr(config, key) == value, (name, key, getattr(config, key), value)
    assert (config.model, config.bits, config.optimizer) == ("hadamrnn", 4, "adam")
    assert config.clip_grad_norm is None and config.momentum == 0
    assert config.steps_per_epoch is None and config.train_size is None


def test_default_is_quick_preset_and_task_selects_its_preset():
    assert resolve_config() == preset_config(DEFAULT_PRESET)
    assert resolve_config(overrides={"task": "copy"}) == preset_config("copy")
    assert resolve_config(overrides={"task": "pmnist"}).hidden == 512


def test_layers_preset_then_file_then_overrides(tmp_path):
    path = write(tmp_path, 'preset = "copy"\nhidden = 64\nlr = 0.01\n')
    config = resolve_config(path=path, overrides={"lr": 0.5})
    assert (config.task, config.hidden, config.lr, config.seed) == ("copy", 64, 0.5, 712)
    # an explicit preset beats the file's
    assert resolve_config(preset="smnist", path=path).task == "smnist"


def test_unknown_toml_key_is_named(tmp_path):
    path = write(tmp_path, "hiden = 64\n")
    with pytest.raises(ConfigError, match=r"unknown configuration key 'hiden'.*'hidden'"):
        load_toml(path)
    with pytest.raises(ConfigError, match="hiden"):
        resolve_config(path=path)


def test_nested_table_is_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match="'train'"):
        resolve_config(path=write(tmp_path, "[train]\nlr = 0.1\n"))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(path=write(tmp_path, "lr = = 3\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_config(path=tmp_path / "absent.toml")


def test_unknown_preset_task_and_override():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        resolve_config(preset="fast")
    with pytest.raises(ConfigError, match="unknown task 'imdb'"):
        resolve_config(overrides={"task": "imdb"})
    with pytest.raises(ConfigError, match="unknown override key 'hiddn'"):
        resolve_config(overrides={"hiddn": 8})


@pytest.mark.parametrize("changes, message", [
    ({"hidden": 100}, "power of two"),
    ({"hidden": 0}, "hidden must be >= 1"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": float("nan")}, "lr must be finite"),
    ({"gamma": 1.5}, r"gamma must be in \(0, 1\]"),
    ({"bits": 17}, "bits must be in"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"epochs": -1}, "epochs must be >= 1"),
    ({"seed": -3}, "seed must be >= 0"),
    ({"block": 32}, "block applies to model 'block-hadamrnn' only"),
    ({"model": "block-hadamrnn", "block": 128}, "block must be smaller than hidden"),
    ({"model": "block-hadamrnn", "block": 24}, "block must be a power of two"),
    ({"momentum": 0.9}, "momentum applies to optimizer 'sgd' only"),
    ({"clip_grad_norm": -1.0}, "clip_grad_norm must be > 0"),
    ({"copy_length": 20}, "copy_length must be >= 21"),
    ({"task": "npz"}, "needs the option npz"),
    ({"npz": "x.npz"}, "option npz is for task 'npz' only"),
    ({"npz_val_fraction": 0.1}, "npz_val_fraction is for task 'npz' only"),
    ({"hidden": "64"}, "hidden must be int"),
    ({"hidden": True}, "hidden must be int"),
    ({"lr": "fast"}, "lr must be float"),
    ({"nonlinear": 1}, "nonlinear must be bool"),
    ({"steps_per_epoch": 2.5}, "steps_per_epoch must be int or unset"),
    ({"dtype": "float16"}, "unknown dtype 'float16'"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
])
def test_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_bad_value_from_toml(tmp_path):
    with pytest.raises(ConfigError, match="hidden must be int"):
        resolve_config(path=write(tmp_path, 'hidden = "big"\n'))


def test_ints_accepted_as_floats_and_block_default():
    config = RunConfig(lr=1, model="block-hadamrnn", hidden=64)
    assert isinstance(config.lr, float) and config.lr == 1.0
    assert config.block_size == 16
    assert RunConfig(hidden=64).block_size == 64
    assert RunConfig(model="block-hadamrnn", hidden=64, block=8).block_size == 8


def test_frozen_and_replace_validates():
    config = RunConfig()
    with pytest.raises(AttributeError):
        config.lr = 0.1
    assert config.replace(epochs=7).epochs == 7
    with pytest.raises(ConfigError):
        config.replace(epochs=0)
    with pytest.raises(ConfigError, match="unknown override key 'epoch'"):
        config.replace(epoch=3)


def test_from_dict_rejects_unknown_key():
    values = RunConfig().to_dict()
    assert RunConfig.from_dict(values) == RunConfig()
    with pytest.raises(ConfigError, match="'extra'"):
        RunConfig.from_dict({**values, "extra": 1})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_toml_round_trip(tmp_path, name):
    config = preset_config(name).replace(lr=0.1 + 0.2, data_dir='a "quoted" \\ dir')
    path = write(tmp_path, config_to_toml(config))
    assert resolve_config(path=path) == config
