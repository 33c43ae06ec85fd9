"""The model registry (:mod:`hadamnp.models.registry`) and the protocol helpers."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, NonFiniteError, ShapeError
from hadamnp.models import protocol
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.models.protocol import Model, ParamSpec
from hadamnp.models.registry import (build_config, build_model, model_entry,
                                     model_from_description, model_names, model_options,
                                     register_model, unregister_model)

SIZES = dict(input_size=3, output_size=5, many_to_many=False, dtype="float64")


@pytest.mark.parametrize("name", ["hadamrnn", "block-hadamrnn", "dense"])
def test_builtins_implement_the_protocol_and_round_trip(name, rng):
    model = build_model(name, hidden_size=16, **SIZES)
    assert isinstance(model, Model) and model.describe()["name"] == name
    again = model_from_description(model.describe())
    assert again.describe() == model.describe()
    params = model.init_params(rng)
    again.check_params(params)
    assert list(params) == list(model.param_specs())


def test_names_fixed_options_and_defaults():
    assert model_names()[:3] == ("hadamrnn", "block-hadamrnn", "dense")
    assert build_config("block-hadamrnn", hidden_size=64, **SIZES).block_size == 16
    assert build_config("hadamrnn", hidden_size=64, block_size=64, **SIZES).block_size == 64
    assert build_config("dense", hidden_size=8, **SIZES).quant_rec == "none"
    assert "recurrence" not in model_options("hadamrnn")
    assert set(model_options("dense")) >= {"hidden_size", "quant_in", "quant_rec"}
    assert not set(model_options("dense")) & {"input_size", "output_size", "dtype"}


@pytest.mark.parametrize("name, options, words", [
    ("hadamrn", {}, ["unknown model 'hadamrn'", "did you mean 'hadamrnn'"]),
    ("hadamrnn", {"hiden_size": 8}, ["no option 'hiden_size'", "did you mean 'hidden_size'"]),
    ("hadamrnn", {"recurrence": "dense"}, ["recurrence = 'hadamard'"]),
    ("hadamrnn", {"block_size": 4}, ["block-hadamrnn"]),
    ("block-hadamrnn", {"block_size": 16}, ["smaller than n=16"]),
    ("block-hadamrnn", {"hidden_size": 1}, ["hidden_size >= 2"]),
    ("hadamrnn", {"hidden_size": 12}, ["model 'hadamrnn'", "power of two"]),
    ("dense", {"quant_rec": "uniform:99"}, ["quant_rec", "99"]),
])
def test_bad_names_and_options_are_config_errors(name, options, words):
    options = {"hidden_size": 16, **SIZES, **options}
    with pytest.raises(ConfigError) as info:
        build_model(name, **options)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_register_and_unregister():
    with pytest.raises(ConfigError, match="already registered"):
        register_model("hadamrnn", HadamRNN, HadamRNNConfig)
    with pytest.raises(ConfigError, match="dataclass"):
        register_model("bad", HadamRNN, dict)
    entry = register_model("hadamrnn-copy", HadamRNN, HadamRNNConfig,
                           fixed={"recurrence": "hadamard"}, summary="same class, new name")
    try:
        assert model_entry("hadamrnn-copy") is entry and "hadamrnn-copy" in model_names()
    finally:
        unregister_model("hadamrnn-copy")
    assert "hadamrnn-copy" not in model_names()
    with pytest.raises(ConfigError, match="unknown model"):
        unregister_model("hadamrnn-copy")
    with pytest.raises(ConfigError, match="'name' and 'config'"):
        model_from_description({"config": {}})


def test_param_spec_and_check_params_messages():
    with pytest.raises(ConfigError, match="unknown parameter role 'sign'"):
        ParamSpec((3,), "sign")
    with pytest.raises(ConfigError, match="bound must be > 0"):
        ParamSpec((3,), "signs", bound=0)
    specs = {"u": ParamSpec((3,), "signs", 1.0), "F": ParamSpec((2, 2), "frozen")}
    assert protocol.param_count(specs) == 7 and protocol.param_count(specs, True) == 3
    good = {"u": np.zeros(3), "F": np.eye(2)}
    protocol.check_params(specs, good, "float64")
    for params, error, words in (
            ({"u": np.zeros(3)}, ConfigError, "missing ['F']"),
            ({**good, "G": np.zeros(1)}, ConfigError, "unexpected ['G']"),
            ({**good, "u": np.zeros(4)}, ShapeError, "u has shape (4,)"),
            ({**good, "u": np.zeros(3, np.float32)}, ConfigError, "dtype float32"),
            ({**good, "u": [0.0, 0.0, 0.0]}, ConfigError, "numpy array"),
            ({**good, "F": np.full((2, 2), np.nan)}, NonFiniteError, "parameter F")):
        with pytest.raises(error) as info:
            protocol.check_params(specs, params, "float64")
        assert words in str(info.value)
