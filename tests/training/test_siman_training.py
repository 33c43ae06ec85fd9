"""SiMaN in the training loop: exact resume with the clipping schedule, the code diagnostics
in metrics.jsonl, and weight decay that spares binarized latent weights by default."""

import numpy as np
import pytest
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.runs.config import resolve_config
from hadamnp.training.loop import ParamGroups, resume, train
from hadamnp.training.metrics import read_metrics
from run_compare import comparable_metrics

MODELS = {
    "dense": {"name": "dense", "hidden_size": 16, "quant_in": "none", "quant_out": "none",
              "quant_rec": "siman:clip=15,clip_steps=12"},
    "hadamrnn-uv": {"name": "hadamrnn", "hidden_size": 16, "quant_in": "siman",
                    "quant_out": "siman:argmax"},
    "binary-rnn": {"name": "binary-rnn", "hidden_size": 16},
    "lstm": {"name": "lstm", "hidden_size": 16, "quant_rec": "siman:clip=15,clip_steps=12",
             "clip_shadow": False},
}


def run(model, **changes):
    options = dict(task="copy", copy_length=24, batch_size=16, epochs=2, steps_per_epoch=8,
                   lr=2e-2, log_every=1, val_batches=1, test_batches=1, model=model)
    return resolve_config(preset="base", overrides={**options, **changes})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = {}
    for key, model in MODELS.items():
        run_dir = tmp_path_factory.mktemp(key)
        runs[key] = (train(run(model), run_dir), run_dir)
    return runs


@pytest.mark.parametrize("key, stop", [("dense", 5), ("dense", 8), ("hadamrnn-uv", 11),
                                       ("binary-rnn", 6), ("lstm", 7)])
def test_interrupt_and_resume_is_bit_identical(reference, tmp_path, key, stop):
    expected, ref_dir = reference[key]

    def interrupt(event):
        if event["event"] == "step" and event["step"] == stop:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(run(MODELS[key]), tmp_path, callback=interrupt)
    result = resume(tmp_path)
    assert result.finished and result.step == expected.step == 16
    for name, value in expected.params.items():
        np.testing.assert_array_equal(result.params[name], value, err_msg=name)
    assert comparable_metrics(tmp_path) == comparable_metrics(ref_dir)


@pytest.mark.parametrize("key, weights", [("dense", ["W"]), ("hadamrnn-uv", ["U", "V"]),
                                          ("binary-rnn", ["W"]),
                                          ("lstm", ["W_hi", "W_hf", "W_hg", "W_ho"])])
def test_metrics_report_the_code_statistics(reference, key, weights):
    _, run_dir = reference[key]
    for kind in ("step", "epoch"):
        records = read_metrics(run_dir, kind)
        keys = [f"{k}.{w}" for w in weights for k in ("ones", "entropy", "kstar")]
        assert records and all(set(keys) <= set(r) for r in records), kind
        figures = records[-1]
        for w in weights:
            assert 0 <= figures[f"ones.{w}"] <= 1 and 0 <= figures[f"entropy.{w}"] <= 1
            assert 0 < figures[f"kstar.{w}"] <= 1
    # the fixed-half rule keeps half ones, hence one bit of entropy (rows of 16 or 10)
    figures = read_metrics(run_dir, "epoch")[-1]
    assert (figures[f"ones.{weights[0]}"], figures[f"entropy.{weights[0]}"]) == (0.5, 1.0)


def test_models_without_binary_weights_log_no_diagnostics(tmp_path):
    config = run({"name": "hadamrnn", "hidden_size": 16}, epochs=1, steps_per_epoch=2)
    train(config, tmp_path)
    assert not any(key.startswith(("ones.", "entropy.", "kstar."))
                   for r in read_metrics(tmp_path) for key in r)


def test_clipping_rewrites_the_stored_matrix(tmp_path):
    clipped = train(run(MODELS["dense"]), tmp_path / "clip", max_steps=1)
    plain = train(run({**MODELS["dense"], "quant_rec": "siman"}), tmp_path / "plain",
                  max_steps=1)
    W = clipped.params["W"]
    assert not np.array_equal(W, plain.params["W"])
    # step 0 clipped |W - row mean| to its 15th..85th percentiles, then one Adam step moved
    # every entry by about lr: the spread of magnitudes is far below the unclipped one
    spread = lambda M: np.ptp(np.abs(M - M.mean(axis=1, keepdims=True)))  # noqa: E731
    assert spread(W) < 0.8 * spread(plain.params["W"])


def test_weight_decay_spares_binarized_weights_unless_named(tmp_path):
    model = {"name": "dense", "hidden_size": 16, "quant_in": "none", "quant_out": "none",
             "quant_rec": "siman"}
    config = run(model, weight_decay={"weight": 0.5}, weight_decay_mode="decoupled")
    groups = ParamGroups.of(config.build_model(10, 9, True), config)
    assert groups.weight_decay == {"W": 0.0, "W.alpha": 0.0, "U": 0.5, "b": 0.0, "V": 0.5,
                                   "c": 0.0}
    base = train(run(model), tmp_path / "base", max_steps=1)
    decayed = train(config, tmp_path / "decayed", max_steps=1)
    np.testing.assert_array_equal(decayed.params["W"], base.params["W"])
    assert not np.array_equal(decayed.params["U"], base.params["U"])
    named = train(run(model, weight_decay={"binary": 0.5}, weight_decay_mode="decoupled"),
                  tmp_path / "named", max_steps=1)
    assert not np.array_equal(named.params["W"], base.params["W"])
    np.testing.assert_array_equal(named.params["U"], base.params["U"])


def test_train_command_with_a_siman_recurrent_matrix(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, [
        "train", "--preset", "base", "--task", "copy", "--copy-length", "24", "--model",
        "dense", "--hidden", "16", "--quant-rec", "siman:argmax", "--quant-in", "none",
        "--quant-out", "none", "--weight-decay", "weight=1e-4", "--epochs", "1",
        "--steps-per-epoch", "4", "--batch-size", "8", "--val-batches", "1",
        "--test-batches", "1", "--log-every", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    steps = read_metrics(out, "step")
    assert [r["step"] for r in steps] == [2, 4]
    assert {"ones.W", "entropy.W", "kstar.W"} <= set(steps[-1])
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0 and "alpha 512" in info.output, info.output
