"""Run options of the adding and text tasks, the loss and the embedding: validation with
errors naming the option, TOML round trip, and the plumbing that turns them into a loss and
a model (:func:`run_loss`, :func:`model_for`, :func:`model_without_data`)."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.models.embedding import Embedded
from hadamnp.runs.config import RunConfig, config_to_toml, resolve_config
from hadamnp.runs.plumbing import (build_task, evaluate, model_for, model_inputs,
                                   model_without_data, run_loss)


def cfg(**changes):
    return resolve_config(preset="base", overrides={"model": {"name": "dense",
                                                              "hidden_size": 8}, **changes})


@pytest.mark.parametrize("changes, fragment", [
    (dict(task="adding", adding_length=1), "adding_length must be >= 2"),
    (dict(task="text"), "task 'text' needs the option text"),
    (dict(task="copy", text="a.txt"), "option text is for task 'text' only"),
    (dict(task="text", text="a.txt", text_window=0), "text_window must be >= 1"),
    (dict(task="copy", loss="hinge"), "unknown loss 'hinge'"),
    (dict(task="copy", loss="mse"), "loss 'mse' needs real-valued targets; task 'copy' has "
                                    "class labels"),
    (dict(task="adding", loss="cross_entropy"), "loss 'cross_entropy' needs class labels; "
                                                "task 'adding' has real-valued targets"),
    (dict(task="adding", loss="bce"), "loss 'bce' needs class labels"),
    (dict(task="text", text="a.txt", embedding_dim=0), "embedding_dim must be >= 1"),
    (dict(task="text", text="a.txt", embedding_dim=4, quant_embedding="int4"),
     "quant_embedding: unknown quantizer 'int4'"),
    (dict(task="text", text="a.txt", quant_embedding="uniform:4"),
     "quant_embedding quantizes the embedding table: set embedding_dim"),
    (dict(task="text", text="a.txt", lr_scales={"embedding": 0.1}),
     "lr_scales.embedding: model 'dense' has no parameter with role 'embedding'"),
    (dict(task="text", text="a.txt", embedding_dim=4, clip_roles=["embedding"]),
     "parameter(s) E of role 'embedding' declare no clipping bound"),
    (dict(task="adding", adding_length="long"), "option adding_length must be int"),
])
def test_bad_options_name_the_option(changes, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        cfg(**changes)


def test_options_round_trip_through_toml(tmp_path):
    config = cfg(task="text", text="corpus.txt", text_window=64, embedding_dim=16,
                 quant_embedding="uniform:4", lr_scales={"embedding": 0.5})
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    assert resolve_config(path=path) == config
    assert RunConfig.from_dict(config.to_dict()) == config
    adding = cfg(task="adding", adding_length=400, loss="mse")
    assert RunConfig.from_dict(adding.to_dict()) == adding


def test_run_loss_and_model_follow_the_task(tmp_path):
    adding = cfg(task="adding", adding_length=5)
    task = build_task(adding)
    assert (run_loss(adding, task).name, model_for(adding, task).config.output_size) == \
        ("mse", 1)
    path = tmp_path / "tokens.npz"
    rng = np.random.default_rng(0)
    np.savez(path, tokens=rng.integers(0, 30, size=(20, 4)), y=rng.integers(0, 2, size=20))
    for loss, outputs in ((None, 2), ("cross_entropy", 2), ("bce", 1)):
        config = cfg(task="npz", npz=str(path), loss=loss, embedding_dim=3,
                     npz_val_fraction=0.25)
        task = build_task(config)
        model = model_for(config, task)
        assert isinstance(model, Embedded) and model.config.output_size == outputs
        assert model.config.input_size == task.input_size == 30
        x, _ = next(task.iter_batches(0, 4))
        assert model_inputs(task, x, np.float32, model) is x
        result = evaluate(model, model.init_params(rng), task, "val", 2,
                          loss=run_loss(config, task))
        assert set(result) == {"loss", "accuracy", "sequences"} and result["sequences"] == 5
    one_hot = cfg(task="npz", npz=str(path))
    task = build_task(one_hot)
    x, _ = next(task.iter_batches(0, 4))
    inputs = model_inputs(task, x, np.float32, model_for(one_hot, task))
    assert inputs.shape == (4, 4, 30) and not inputs[..., 0].any()  # id 0: padding


def test_model_without_data():
    model = model_without_data(cfg(task="text", text="a.txt", embedding_dim=12))
    assert isinstance(model, Embedded)
    assert model.describe()["embedding"] == {"vocab_size": 256, "embedding_dim": 12,
                                             "quantizer": "none", "padding_id": None}
    assert model_without_data(cfg(task="adding")).config.output_size == 1
    explicit = model_without_data(cfg(embedding_dim=8, loss="bce"), 10_000, 2)
    assert explicit.config.input_size == 10_000 and explicit.config.output_size == 1
    assert explicit.describe()["embedding"]["padding_id"] == 0
    with pytest.raises(ConfigError, match="embedding_dim applies to token inputs; task "
                                          "'copy'"):
        model_without_data(cfg(task="copy", embedding_dim=8))
    with pytest.raises(ConfigError, match="sizes of task 'npz' depend on its data"):
        model_without_data(cfg(task="npz", npz="a.npz"))
