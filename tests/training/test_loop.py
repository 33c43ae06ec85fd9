"""Tests of hadamnp.training.loop: learning, checkpoints, exact resume, run directories."""

import numpy as np
import pytest

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import evaluate_run, load_run
from hadamnp.training.loop import resume, train
from hadamnp.training.metrics import read_metrics
from run_compare import comparable_metrics, same_params


def tiny(model=None, **changes):
    """A copy-task run of a few dozen steps (L = 30, n = 16); ``model`` a model table."""
    options = dict(task="copy", copy_length=30, batch_size=16, epochs=3,
                   steps_per_epoch=8, lr=3e-2, log_every=1, val_batches=1, test_batches=1,
                   model={"name": "hadamrnn", "hidden_size": 16, **(model or {})})
    return resolve_config(preset="base", overrides={**options, **changes})


def interrupt_at(step):
    def callback(event):
        if event["event"] == "step" and event["step"] == step:
            raise KeyboardInterrupt
    return callback


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per optimizer setting, shared by the resume tests."""
    runs = {}
    for name, changes in (("adam", {}),
                          ("sgd", dict(optimizer="sgd", momentum=0.9, lr=0.05,
                                       clip_grad_norm=1.0))):
        run_dir = tmp_path_factory.mktemp(name)
        runs[name] = (train(tiny(**changes), run_dir), run_dir, changes)
    return runs


def test_loss_falls_and_run_directory(reference):
    result, run_dir, _ = reference["adam"]
    assert result.finished and result.step == 24 and (result.epoch, result.batch) == (3, 0)
    steps = read_metrics(run_dir, "step")
    assert [r["step"] for r in steps] == list(range(1, 25))
    first = steps[0]["loss"]
    assert result.test["loss"] < 0.8 * first, (result.test["loss"], first)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert result.test["baseline"] == pytest.approx(10 * np.log(8) / 30)
    assert [r["epoch"] for r in read_metrics(run_dir, "epoch")] == [0, 1, 2]
    assert len(read_metrics(run_dir, "test")) == 1
    for epoch in range(3):
        assert checkpoint_path(run_dir, epoch).is_file()
    assert (run_dir / "config.toml").is_file()
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    assert same_params(ckpt.params, result.params)
    assert ckpt.position == {"epoch": 3, "batch": 0, "global_step": 24}
    assert ckpt.optimizer_state["step"] == 24
    assert set(ckpt.rng_state) == {"init"}
    assert ckpt.config["run"] == tiny().to_dict()


@pytest.mark.parametrize("name, stop_step", [
    ("adam", 11),   # mid-epoch
    ("adam", 8),    # last step of epoch 0: validation still to do
    ("sgd", 13),
])
def test_interrupt_and_resume_is_bit_identical(reference, tmp_path, name, stop_step):
    expected, ref_dir, changes = reference[name]
    with pytest.raises(KeyboardInterrupt):
        train(tiny(**changes), tmp_path, callback=interrupt_at(stop_step))
    position = load_checkpoint(checkpoint_path(tmp_path)).position
    assert position["global_step"] == stop_step
    result = resume(tmp_path)
    assert result.finished and result.step == expected.step
    assert same_params(result.params, expected.params)
    assert result.test == expected.test
    assert comparable_metrics(tmp_path) == comparable_metrics(ref_dir)


def test_max_steps_at_epoch_boundary_then_resume(reference, tmp_path):
    expected, ref_dir, _ = reference["adam"]
    stopped = train(tiny(), tmp_path, max_steps=16)
    assert not stopped.finished and (stopped.epoch, stopped.batch, stopped.step) == (1, 8, 16)
    assert len(read_metrics(tmp_path, "epoch")) == 1
    again = resume(tmp_path, max_steps=10)  # already past: nothing to do
    assert not again.finished and again.step == 16
    # a second interruption, this time during the evaluation of epoch 1
    def stop_at_validation(event):
        if event["event"] == "epoch_end":
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        resume(tmp_path, callback=stop_at_validation)
    result = resume(tmp_path)
    assert same_params(result.params, expected.params)
    assert comparable_metrics(tmp_path) == comparable_metrics(ref_dir)


def test_checkpoint_every_and_extending_epochs(reference, tmp_path):
    expected, _, _ = reference["adam"]
    short = train(tiny(epochs=2, checkpoint_every=5), tmp_path, max_steps=7)
    assert load_checkpoint(checkpoint_path(tmp_path)).position["global_step"] == 7
    assert short.step == 7
    first = resume(tmp_path)
    assert first.finished and first.step == 16
    # StepLR depends on the epoch only, so adding an epoch continues the 3-epoch run
    longer = resume(tmp_path, epochs=3)
    assert longer.finished and same_params(longer.params, expected.params)
    assert longer.test == expected.test
    assert len(read_metrics(tmp_path, "test")) == 2


def test_resuming_a_finished_run_does_nothing(reference, tmp_path):
    expected, _, _ = reference["adam"]
    train(tiny(epochs=1), tmp_path)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    again = resume(tmp_path)
    assert again.finished and again.step == 8
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_corrupt_checkpoint_is_refused_and_kept(tmp_path):
    train(tiny(epochs=1), tmp_path)
    latest = checkpoint_path(tmp_path)
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    latest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        resume(tmp_path)
    assert latest.read_bytes() == bytes(data)
    latest.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="truncated"):
        resume(tmp_path)
    assert latest.read_bytes() == bytes(data[:100])


def test_run_directory_rules(tmp_path):
    train(tiny(epochs=1, steps_per_epoch=2), tmp_path)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(tiny(), tmp_path)
    with pytest.raises(ConfigError, match="cannot change lr"):
        resume(tmp_path, lr=0.1)
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_run(empty)


def test_checkpoint_with_other_config_is_refused(tmp_path):
    train(tiny(epochs=1, steps_per_epoch=2), tmp_path)
    ckpt = load_checkpoint(checkpoint_path(tmp_path))
    from hadamnp.io.checkpoint import Checkpoint, save_checkpoint
    bad_run = ckpt.config["run"]
    bad = {**ckpt.config, "run": {**bad_run, "model": {**bad_run["model"], "hidden_size": 32}}}
    save_checkpoint(checkpoint_path(tmp_path), Checkpoint(
        params=ckpt.params, optimizer_state=ckpt.optimizer_state, position=ckpt.position,
        rng_state=ckpt.rng_state, config=bad, metrics=ckpt.metrics))
    with pytest.raises(CheckpointError, match="not the model its run configuration builds"):
        resume(tmp_path)


@pytest.mark.parametrize("changes", [
    dict(model={"name": "block-hadamrnn", "block_size": 4}),
    dict(model={"name": "dense", "nonlinear": True, "quant_in": "none", "quant_out": "none"},
         dtype="float64"),
])
def test_other_models_train(tmp_path, changes):
    result = train(tiny(epochs=1, **changes), tmp_path)
    assert result.finished and np.isfinite(result.test["loss"])
    assert ("flips" in read_metrics(tmp_path, "step")[0]) == (changes["model"]["name"] != "dense")
    for value in result.params.values():
        assert value.dtype == np.dtype(changes.get("dtype", "float32"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_loss_is_a_clear_error(tmp_path):
    from hadamnp.errors import NonFiniteError
    with pytest.raises(NonFiniteError, match="lower the learning rate"):
        train(tiny(lr=1e30, epochs=1, model={"name": "dense", "quant_in": "none",
                                              "quant_out": "none"}), tmp_path)


def test_evaluate_run(reference):
    expected, run_dir, _ = reference["adam"]
    result, config, position = evaluate_run(run_dir, "test", max_batches=1)
    assert result == expected.test and position["global_step"] == 24
    val, _, _ = evaluate_run(run_dir / "checkpoint-epoch002.npz", "val", 1)
    assert val["loss"] == pytest.approx(expected.history[-1]["val_loss"])


def test_mnist_subset(tmp_path):
    config = resolve_config(preset="quick", overrides=dict(
        model={"hidden_size": 8}, batch_size=8, train_size=20, epochs=1, steps_per_epoch=2,
        eval_batch_size=4, val_batches=1, test_batches=1))
    result = train(config, tmp_path)
    assert result.step == 2 and result.test["sequences"] == 4
    ckpt, _, _ = load_run(tmp_path)
    assert ckpt.config["task"]["train_size"] == 20 and ckpt.config["task"]["num_train"] == 20
    with pytest.raises(ConfigError, match="exceeds"):
        train(config.replace(train_size=10 ** 6), tmp_path / "big")


def test_npz_tokens_one_hot(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 6, size=(40, 5))
    path = tmp_path / "data.npz"
    np.savez(path, tokens=tokens, y=(tokens[:, 0] > 2).astype(np.int64))
    config = tiny(task="npz", npz=str(path), npz_test_fraction=0.25, copy_length=30,
                  epochs=2, steps_per_epoch=None, batch_size=10, lr=0.05)
    result = train(config, tmp_path / "run")
    assert result.step == 6 and result.test["sequences"] == 10
    assert result.params["U"].shape == (16, 6)


def test_a_run_of_the_first_checkpoint_format_resumes_bit_identically(tmp_path):
    """A copy-task run written by hadamnp 0.1 (flat run configuration: hidden, bits,
    sign_lr_scale ...), stopped at step 5 of 12, resumed by this version: the final
    parameters equal those of the same run done uninterrupted by hadamnp 0.1."""
    import shutil
    from pathlib import Path

    data = Path(__file__).resolve().parent / "data"
    run_dir = tmp_path / "v1-run"
    shutil.copytree(data / "v1-run", run_dir)
    result = resume(run_dir)
    assert result.finished and result.step == 12
    assert dict(result.config.lr_scales) == {"signs": 0.5}
    with np.load(data / "v1-run-final-params.npz") as expected:
        for name in expected.files:
            np.testing.assert_array_equal(result.params[name], expected[name], err_msg=name)
