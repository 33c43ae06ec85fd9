"""Tests of hadamnp.runs.config: presets, TOML layering, the model table, role tables,
validation, and reading the first run-config vocabulary from old checkpoints."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.runs.config import (
    DEFAULT_PRESET,
    PRESETS,
    RunConfig,
    config_to_toml,
    load_toml,
    preset_config,
    resolve_config,
    run_config_from_checkpoint,
)


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def hidden(config):
    return config.model_options["hidden_size"]


# The paper's hyperparameters (docs/hadamrnn.md, "Training recipe").
PAPER = {
    "copy": dict(task="copy", batch_size=128, epochs=10, lr=1e-4, gamma=0.98, seed=712,
                 copy_length=1000),
    "smnist": dict(task="smnist", batch_size=64, epochs=100, lr=1e-3, gamma=0.98, seed=68),
    "pmnist": dict(task="pmnist", batch_size=100, epochs=100, lr=1e-3, gamma=0.98, seed=8),
}
PAPER_HIDDEN = {"copy": 128, "smnist": 512, "pmnist": 512}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_match_spec_table(name):
    config = preset_config(name)
    for key, value in PAPER[name].items():
        assert getattr(config, key) == value, (name, key, getattr(config, key), value)
    assert (config.model, config.optimizer) == ("hadamrnn", "adam")
    assert dict(config.model_options) == {"hidden_size": PAPER_HIDDEN[name],
                                          "quant_in": "uniform:4", "quant_out": "uniform:4"}
    assert config.clip_grad_norm is None and config.momentum == 0
    assert config.steps_per_epoch is None and config.train_size is None
    assert dict(config.lr_scales) == {} and dict(config.weight_decay) == {}


def test_default_is_quick_preset_and_task_selects_its_preset():
    assert resolve_config() == preset_config(DEFAULT_PRESET)
    assert dict(preset_config("quick").lr_scales) == {"signs": 0.1}
    assert resolve_config(overrides={"task": "copy"}) == preset_config("copy")
    assert hidden(resolve_config(overrides={"task": "pmnist"})) == 512


def test_layers_preset_then_file_then_overrides(tmp_path):
    path = write(tmp_path, 'preset = "copy"\nlr = 0.01\n[model]\nhidden_size = 64\n')
    config = resolve_config(path=path, overrides={"lr": 0.5})
    assert (config.task, hidden(config), config.lr, config.seed) == ("copy", 64, 0.5, 712)
    assert config.model_options["quant_in"] == "uniform:4"  # from the preset
    # an explicit preset beats the file's
    assert resolve_config(preset="smnist", path=path).task == "smnist"
    # a partial model table in the overrides keeps the lower layers' model and options
    config = resolve_config(path=path, overrides={"model": {"quant_out": "none"}})
    assert (config.model, hidden(config), config.model_options["quant_out"]) == \
        ("hadamrnn", 64, "none")


def test_changing_the_model_drops_preset_options_it_does_not_accept():
    config = resolve_config(preset="copy", overrides={"model": {"name": "dense"}})
    assert config.model == "dense" and hidden(config) == 128
    assert config.build_model(10, 9, True).describe()["config"]["quant_rec"] == "none"
    block = resolve_config(preset="pmnist", overrides={"model": "block-hadamrnn"})
    assert block.build_model(1, 10, False).config.block_size == 128


def test_role_tables_merge_across_layers(tmp_path):
    path = write(tmp_path, '[lr_scales]\nbias = 2.0\n[weight_decay]\nweight = 1e-4\n')
    config = resolve_config(preset="quick", path=path,
                            overrides={"weight_decay": {"bias": 0.5}})
    assert dict(config.lr_scales) == {"signs": 0.1, "bias": 2.0}
    assert dict(config.weight_decay) == {"weight": 1e-4, "bias": 0.5}


def test_unknown_toml_key_is_named(tmp_path):
    path = write(tmp_path, "lrr = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown configuration key 'lrr'.*'lr'"):
        load_toml(path)
    with pytest.raises(ConfigError, match="lrr"):
        resolve_config(path=path)


def test_first_vocabulary_keys_say_where_they_went(tmp_path):
    with pytest.raises(ConfigError, match=r"'hidden'.*\[model\] hidden_size"):
        load_toml(write(tmp_path, "hidden = 64\n"))
    with pytest.raises(ConfigError, match=r"'sign_lr_scale'.*\[lr_scales\] signs"):
        resolve_config(overrides={"sign_lr_scale": 0.1})


def test_unknown_table_and_unknown_model_option(tmp_path):
    with pytest.raises(ConfigError, match="'train'"):
        resolve_config(path=write(tmp_path, "[train]\nlr = 0.1\n"))
    with pytest.raises(ConfigError, match=r"no option 'hiden_size'.*'hidden_size'"):
        resolve_config(path=write(tmp_path, "[model]\nhiden_size = 64\n", "b.toml"))
    with pytest.raises(ConfigError, match="needs a 'name'"):
        RunConfig.from_dict({"model": {"hidden_size": 8}})
    with pytest.raises(ConfigError, match="unknown model 'lsmt'.*'lstm'|unknown model 'lsmt'"):
        resolve_config(overrides={"model": "lsmt"})


def test_invalid_toml_binary_file_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(path=write(tmp_path, "lr = = 3\n"))
    binary = tmp_path / "junk.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not valid TOML|not a TOML text file"):
        resolve_config(path=binary)
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_config(path=tmp_path / "absent.toml")


def test_unknown_preset_task_and_override():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        resolve_config(preset="fast")
    with pytest.raises(ConfigError, match="unknown task 'imdb'"):
        resolve_config(overrides={"task": "imdb"})
    with pytest.raises(ConfigError, match="unknown override key 'lrr'"):
        resolve_config(overrides={"lrr": 8})


def model(**options):
    return {"model": "hadamrnn", "model_options": {"hidden_size": 64, **options}}


@pytest.mark.parametrize("changes, message", [
    (model(hidden_size=100), "power of two"),
    (model(hidden_size=0), "power of two"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": float("nan")}, "lr must be finite"),
    ({"gamma": 1.5}, r"gamma must be in \(0, 1\]"),
    (model(quant_in="uniform:17"), r"quant_in.*\[1, 16\]"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"epochs": -1}, "epochs must be >= 1"),
    ({"seed": -3}, "seed must be >= 0"),
    (model(block_size=32), "hadamrnn uses the full Hadamard matrix"),
    ({"model": "block-hadamrnn", "model_options": {"hidden_size": 128, "block_size": 128}},
     "smaller than n=128"),
    ({"model": "block-hadamrnn", "model_options": {"hidden_size": 128, "block_size": 24}},
     "power of two"),
    (model(input_size=3), "set by the task"),
    (model(dtype="float64"), "set by the run"),
    ({"momentum": 0.9}, "momentum applies to optimizer 'sgd' only"),
    ({"clip_grad_norm": -1.0}, "clip_grad_norm must be > 0"),
    ({"copy_length": 20}, "copy_length must be >= 21"),
    ({"task": "npz"}, "needs the option npz"),
    ({"npz": "x.npz"}, "option npz is for task 'npz' only"),
    ({"npz_val_fraction": 0.1}, "npz_val_fraction is for task 'npz' only"),
    ({"lr": "fast"}, "lr must be float"),
    ({"steps_per_epoch": 2.5}, "steps_per_epoch must be int or unset"),
    ({"dtype": "float16"}, "unknown dtype 'float16'"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ({"model_options": [1]}, "model_options must be a table"),
    ({"lr_scales": {"signs": "slow"}}, "lr_scales.signs must be a number"),
    ({"lr_scales": {"sign": 0.1}}, "unknown parameter role 'sign'"),
    ({"lr_scales": {"signs": 0.0}}, r"lr_scales.signs must be > 0"),
    ({"weight_decay": {"weight": -1.0}}, r"weight_decay.weight must be >= 0"),
    ({"model": "dense", "lr_scales": {"signs": 0.1}},
     r"model 'dense' has no parameter with role 'signs'.*--sign-lr-scale"),
    ({"clip_roles": ["weight"]}, "declare no clipping bound"),
    ({"clip_roles": "signs"}, "list of role names"),
    ({"model": "dense", "clip_roles": ["signs"]}, "no parameter with role 'signs'"),
    ({"weight_decay_mode": "adamw"}, "unknown weight_decay_mode"),
])
def test_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_bad_value_from_toml(tmp_path):
    with pytest.raises(ConfigError, match="hidden size n must be an integer"):
        resolve_config(path=write(tmp_path, '[model]\nhidden_size = "big"\n'))


def test_ints_accepted_as_floats_and_block_default():
    config = RunConfig(lr=1, model="block-hadamrnn")
    assert isinstance(config.lr, float) and config.lr == 1.0
    assert config.build_model(1, 10, False).config.block_size == 32
    assert RunConfig().build_model(1, 10, False).config.block_size == 128
    assert RunConfig(clip_roles=["signs", "signs"]).clip_roles == ("signs",)


def test_frozen_and_replace_validates():
    config = RunConfig()
    with pytest.raises(AttributeError):
        config.lr = 0.1
    with pytest.raises(TypeError):
        config.model_options["hidden_size"] = 8  # a read-only mapping
    assert config.replace(epochs=7).epochs == 7
    with pytest.raises(ConfigError):
        config.replace(epochs=0)
    with pytest.raises(ConfigError, match="unknown override key 'epoch'"):
        config.replace(epoch=3)


def test_from_dict_rejects_unknown_key():
    values = RunConfig().to_dict()
    assert values["model"] == {"name": "hadamrnn", "hidden_size": 128}
    assert RunConfig.from_dict(values) == RunConfig()
    with pytest.raises(ConfigError, match="'extra'"):
        RunConfig.from_dict({**values, "extra": 1})


def npz_archive(path, splits=()):
    arrays = {"x": np.zeros((10, 3, 2)), "y": np.zeros(10, dtype=np.int64)}
    for split in splits:
        arrays.update({f"x_{split}": np.zeros((2, 3, 2)),
                       f"y_{split}": np.zeros(2, dtype=np.int64)})
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_toml_round_trip(tmp_path, name):
    overrides = {"npz": npz_archive(tmp_path / "d.npz")} if name == "npz" else {}
    config = resolve_config(preset=name, overrides=overrides).replace(
        lr=0.1 + 0.2, data_dir='a "quoted" \\ dir', clip_roles=("signs",),
        weight_decay={"bias": 1e-3})
    text = config_to_toml(config)
    assert f'\npreset = "{name}"\n' in text
    path = write(tmp_path, text)
    back = resolve_config(path=path)
    assert back == config and back.preset == name


def test_config_records_the_preset_used():
    assert resolve_config().preset == "quick"
    assert resolve_config(overrides={"task": "copy"}).preset == "copy"
    assert resolve_config(preset="base").preset == "base"
    assert resolve_config(overrides={"preset": "smnist"}).task == "smnist"
    # a record, not part of the configuration's identity
    assert preset_config("quick").replace(preset="base") == preset_config("quick")


def test_toml_of_a_config_unsetting_a_preset_option_names_base(tmp_path):
    config = preset_config("quick").replace(steps_per_epoch=None)
    text = config_to_toml(config)
    assert '\npreset = "base"\n' in text and "resolved from preset 'quick'" in text
    assert resolve_config(path=write(tmp_path, text)) == config


def test_npz_defaults_hold_out_validation_and_test(tmp_path):
    plain = npz_archive(tmp_path / "plain.npz")
    config = resolve_config(overrides={"npz": plain, "task": "npz"})
    assert config.preset == "npz" and config.epochs == 20 and config.keep_last == 5
    assert (config.npz_val_fraction, config.npz_test_fraction) == (0.1, 0.1)
    # an archive with its own test split keeps it; the explicit option wins
    own = npz_archive(tmp_path / "own.npz", ["test"])
    config = resolve_config(overrides={"npz": own, "task": "npz"})
    assert (config.npz_val_fraction, config.npz_test_fraction) == (0.1, None)
    config = resolve_config(overrides={"npz": plain, "task": "npz", "npz_val_fraction": 0.25})
    assert config.npz_val_fraction == 0.25


def test_quick_preset_tests_on_the_whole_test_split():
    assert preset_config("quick").test_batches is None


FIRST_VOCABULARY = {
    "task": "copy", "model": "hadamrnn", "hidden": 16, "block": None, "bits": 4,
    "nonlinear": False, "ste": "clipped", "dtype": "float32", "optimizer": "adam", "lr": 0.03,
    "gamma": 0.98, "sign_lr_scale": 0.1, "momentum": 0.0, "clip_grad_norm": None,
    "batch_size": 16, "epochs": 3, "steps_per_epoch": 8, "train_size": None,
    "eval_batch_size": 500, "val_batches": 1, "test_batches": 1, "seed": 68,
    "copy_length": 30, "data_dir": None, "npz": None, "npz_val_fraction": None,
    "npz_test_fraction": None, "checkpoint_every": None, "log_every": 1}


def test_first_vocabulary_checkpoint_configs_are_converted():
    config = run_config_from_checkpoint(FIRST_VOCABULARY)
    assert config.model == "hadamrnn" and dict(config.lr_scales) == {"signs": 0.1}
    assert dict(config.model_options) == {"hidden_size": 16, "quant_in": "uniform:4",
                                          "quant_out": "uniform:4", "quant_rec": "sign:clipped",
                                          "nonlinear": False}
    dense = run_config_from_checkpoint({**FIRST_VOCABULARY, "model": "dense", "bits": 0,
                                        "sign_lr_scale": 1.0, "ste": "identity"})
    assert dense.model == "dense" and dict(dense.lr_scales) == {}
    assert dense.model_options["quant_in"] == "none"
    assert "quant_rec" not in dense.model_options
    block = run_config_from_checkpoint({**FIRST_VOCABULARY, "model": "block-hadamrnn",
                                        "block": 4})
    assert block.model_options["block_size"] == 4
    assert run_config_from_checkpoint(config.to_dict()) == config


def test_preset_role_options_apply_only_to_roles_the_model_has():
    dense = resolve_config(overrides={"model": {"name": "dense"}})
    assert dense.preset == "quick" and dict(dense.lr_scales) == {}
    assert dict(resolve_config().lr_scales) == {"signs": 0.1}
    with pytest.raises(ConfigError, match="model 'dense' has no parameter with role 'signs'"):
        resolve_config(overrides={"model": {"name": "dense"}, "lr_scales": {"signs": 0.5}})
