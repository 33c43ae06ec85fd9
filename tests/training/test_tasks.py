"""The training loop on the adding problem, the byte-level text task, binary labels (BCE)
and token inputs behind an embedding: the task's loss and metrics everywhere, and exact
resume mid-epoch."""

import json

import numpy as np
import pytest

import hadamnp
from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import build_task, evaluate_run, model_for, restore, run_loss
from hadamnp.training.loop import resume, train
from hadamnp.training.metrics import read_metrics
from run_compare import comparable_metrics, same_params


def generated_text(size, seed=0):
    rng = np.random.default_rng(seed)
    words = [b"the", b"sign", b"of", b"hadamard", b"\xc3\xa9t\xc3\xa9", b"rnn", b"bits"]
    out = bytearray()
    while len(out) < size:
        out += words[rng.integers(len(words))] + (b".\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(generated_text(6000))
    return path


def config(**changes):
    options = dict(batch_size=8, epochs=2, steps_per_epoch=5, lr=1e-2, log_every=1,
                   val_batches=1, test_batches=1, eval_batch_size=16,
                   model={"name": "dense", "hidden_size": 8})
    return resolve_config(preset="base", overrides={**options, **changes})


def stop_at(step):
    def callback(event):
        if event["event"] == "step" and event["step"] == step:
            raise KeyboardInterrupt
    return callback


def assert_resume_is_bit_identical(cfg, tmp_path, stop_step):
    reference = train(cfg, tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", callback=stop_at(stop_step))
    assert load_checkpoint(checkpoint_path(tmp_path / "resumed")).position["global_step"] \
        == stop_step
    result = resume(tmp_path / "resumed")
    assert result.finished and result.step == reference.step
    assert same_params(result.params, reference.params)
    assert result.test == reference.test
    assert comparable_metrics(tmp_path / "resumed") == comparable_metrics(tmp_path /
                                                                         "reference")
    return reference


def test_adding_task_trains_with_mse_and_resumes_exactly(tmp_path):
    cfg = config(task="adding", adding_length=10, train_size=400)
    reference = assert_resume_is_bit_identical(cfg, tmp_path, stop_step=3)  # mid-epoch
    steps = read_metrics(tmp_path / "reference", "step")
    assert {"loss", "mse", "lr"} <= set(steps[0]) and "accuracy" not in steps[0]
    assert all(step["mse"] == step["loss"] for step in steps)
    epoch = read_metrics(tmp_path / "reference", "epoch")[0]
    assert {"train_loss", "train_mse", "val_loss", "val_mse", "val_baseline",
            "val_ratio"} <= set(epoch)
    assert epoch["val_baseline"] == pytest.approx(1 / 6)
    test = reference.test
    assert test["ratio"] == pytest.approx(test["loss"] / test["baseline"])
    assert test["sequences"] == 16 and test["mse"] == test["loss"]
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "reference"))
    assert ckpt.config["model"]["config"]["output_size"] == 1
    assert ckpt.config["task"]["task"] == "adding"
    assert len(json.loads(json.dumps(ckpt.metrics))["sums"]) == 3  # loss, mse, positions
    again, _, _ = evaluate_run(tmp_path / "reference", "test", max_batches=1)
    assert again == test
    model, params, run_config = hadamnp.load(tmp_path / "reference")
    assert hadamnp.evaluate(model, params, run_config, batch_size=16, max_batches=1) == test


def test_adding_task_learns_below_the_baseline(tmp_path):
    """A small dense RNN on T = 6 beats always predicting 1 within a few hundred steps."""
    cfg = config(task="adding", adding_length=6, batch_size=32, epochs=1,
                 steps_per_epoch=300, lr=1e-2, log_every=50, test_batches=4,
                 eval_batch_size=250, model={"name": "dense", "hidden_size": 16,
                                             "quant_in": "none", "quant_out": "none",
                                             "nonlinear": True})
    result = train(cfg, tmp_path)
    assert result.test["ratio"] < 0.1, result.test  # measured: 0.011


def test_text_task_one_hot_trains_with_bpc_and_resumes_exactly(tmp_path, text_file):
    cfg = config(task="text", text=str(text_file), text_window=12)
    reference = assert_resume_is_bit_identical(cfg, tmp_path, stop_step=7)
    epoch = read_metrics(tmp_path / "reference", "epoch")[0]
    assert epoch["train_bpc"] == pytest.approx(epoch["train_loss"] / np.log(2))
    assert epoch["val_bpc"] == pytest.approx(epoch["val_loss"] / np.log(2))
    assert "train_accuracy" in epoch and "val_baseline" not in epoch
    assert reference.test["bpc"] == pytest.approx(reference.test["loss"] / np.log(2))
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "reference"))
    assert ckpt.config["model"]["config"]["input_size"] == 256
    assert "embedding" not in ckpt.config["model"]
    assert ckpt.config["task"]["sha256"] == build_task(cfg).describe()["sha256"]


def test_text_task_with_a_quantized_embedding_resumes_exactly(tmp_path, text_file):
    cfg = config(task="text", text=str(text_file), text_window=12, embedding_dim=6,
                 quant_embedding="uniform:4", model={"name": "hadamrnn", "hidden_size": 8},
                 lr_scales={"embedding": 0.5})
    assert_resume_is_bit_identical(cfg, tmp_path, stop_step=6)
    model, params, _ = restore(tmp_path / "reference")
    assert model.describe()["embedding"] == {"vocab_size": 256, "embedding_dim": 6,
                                             "quantizer": "uniform:4", "padding_id": None}
    assert params["E"].shape == (256, 6)
    first = load_checkpoint(checkpoint_path(tmp_path / "reference", 0)).params["E"]
    assert not np.array_equal(first, params["E"]), "the table was not trained"


def test_resume_refuses_a_changed_text_file_and_accepts_a_moved_one(tmp_path, text_file):
    path = tmp_path / "corpus.txt"
    path.write_bytes(text_file.read_bytes())
    cfg = config(task="text", text=str(path), text_window=12)
    train(cfg, tmp_path / "run", max_steps=3)
    moved = tmp_path / "moved.txt"
    path.rename(moved)
    with pytest.raises(ConfigError, match="does not exist"):
        resume(tmp_path / "run")
    result = resume(tmp_path / "run", text=str(moved), max_steps=4)
    assert result.step == 4
    moved.write_bytes(b"?" + moved.read_bytes()[1:])
    with pytest.raises(CheckpointError, match=r"data changed.*text .*moved\.txt"):
        resume(tmp_path / "run", text=str(moved))
    # accepted knowingly: same length, so the windows and the position still fit
    assert resume(tmp_path / "run", text=str(moved), allow_data_change=True).finished


def binary_npz(tmp_path, labels=(0, 1), tokens=False, vocab=5, n=64, T=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(np.asarray(labels), size=n)
    if tokens:
        x = rng.integers(1, vocab, size=(n, T))
        x[:, 0] = np.where(y == 1, vocab - 1, 1)  # the label is readable from step 0
        arrays = {"tokens": x}
    else:
        x = rng.standard_normal((n, T, 2)).astype(np.float32)
        x[:, 0, 0] += 2 * y
        arrays = {"x": x}
    path = tmp_path / "data.npz"
    np.savez(path, **arrays, y=y, **{k + "_test": v[:16] for k, v in arrays.items()},
             y_test=y[:16])
    return path


def test_bce_trains_one_logit_on_binary_labels(tmp_path):
    cfg = config(task="npz", npz=str(binary_npz(tmp_path)), loss="bce", epochs=1)
    task = build_task(cfg)
    assert run_loss(cfg, task).name == "bce" and model_for(cfg, task).config.output_size == 1
    result = train(cfg, tmp_path / "run")
    step = read_metrics(tmp_path / "run", "step")[0]
    assert {"loss", "accuracy"} <= set(step)
    assert set(result.test) == {"loss", "accuracy", "sequences"}
    two_class = config(task="npz", npz=str(binary_npz(tmp_path)), epochs=1)
    assert model_for(two_class, build_task(two_class)).config.output_size == 2  # softmax


def test_bce_refuses_labels_that_are_not_binary(tmp_path):
    cfg = config(task="npz", npz=str(binary_npz(tmp_path, labels=(0, 1, 2))), loss="bce")
    with pytest.raises(ConfigError, match="loss 'bce' needs binary labels.*3 classes"):
        train(cfg, tmp_path / "run")


def test_large_vocabulary_needs_the_embedding(tmp_path):
    path = binary_npz(tmp_path, tokens=True, vocab=20_000)
    with pytest.raises(ConfigError, match="vocabulary 20000 exceeds 1024.*embedding_dim"):
        build_task(config(task="npz", npz=str(path)))
    cfg = config(task="npz", npz=str(path), embedding_dim=8, quant_embedding="uniform:4",
                 loss="bce", epochs=1, steps_per_epoch=3, model={"name": "hadamrnn",
                                                                  "hidden_size": 8})
    result = train(cfg, tmp_path / "run")
    model, params, _ = restore(tmp_path / "run")
    assert params["E"].shape == (20_000, 8) and model.config.input_size == 20_000
    assert model.describe()["embedding"]["padding_id"] == 0
    assert not params["E"][0].any(), "the padding row changed"
    assert result.finished and set(result.test) == {"loss", "accuracy", "sequences"}


def test_embedding_refuses_feature_inputs(tmp_path):
    cfg = config(task="adding", embedding_dim=4)
    with pytest.raises(ConfigError, match="embedding_dim applies to token inputs; task "
                                          "'adding'"):
        train(cfg, tmp_path)
