"""Training diagnostics in metrics.jsonl: the figures are right, they never change the
trajectory, and the flip counts add up."""

import numpy as np
import pytest

from hadamnp.conventions import sign
from hadamnp.io.datasets import derived_rng
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.models.quantizers import Uniform
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import build_task, model_for, model_inputs
from hadamnp.training.loop import INIT_STREAM, QUANT_STREAM, resume, train
from hadamnp.training.metrics import read_metrics

DIAGNOSTIC_PREFIXES = ("grad_norm.", "update_rms.", "abs_mean.", "abs_min.", "abs_max.",
                       "align.", "alpha.", "codes.", "h_")


def copy_run(**changes):
    options = dict(task="copy", copy_length=24, batch_size=16, epochs=2, steps_per_epoch=5,
                   lr=0.05, val_batches=1, test_batches=1, log_every=1,
                   model={"name": "hadamrnn", "hidden_size": 16})
    return resolve_config(preset="base", overrides={**options, **changes})


def without_diagnostics(records):
    return [{k: v for k, v in r.items() if k != "seconds" and not k.startswith(
        DIAGNOSTIC_PREFIXES)} for r in records]


def test_diagnostics_do_not_change_the_run(tmp_path):
    on = train(copy_run(clip_grad_norm=0.5), tmp_path / "on")
    off = train(copy_run(clip_grad_norm=0.5, diagnostics=False), tmp_path / "off")
    for name in on.params:
        np.testing.assert_array_equal(on.params[name], off.params[name])
    records_on, records_off = read_metrics(tmp_path / "on"), read_metrics(tmp_path / "off")
    assert without_diagnostics(records_on) == without_diagnostics(records_off)
    assert "align.u" in records_on[0] and "align.u" not in records_off[0]


def test_resuming_may_switch_diagnostics(tmp_path):
    config = copy_run()
    expected = train(config, tmp_path / "ref")
    train(config, tmp_path / "cut", max_steps=3)
    result = resume(tmp_path / "cut", diagnostics=False)
    for name in expected.params:
        np.testing.assert_array_equal(result.params[name], expected.params[name])
    steps = read_metrics(tmp_path / "cut", "step")
    assert "h_absmax" in steps[2] and "h_absmax" not in steps[3]


def test_first_step_figures(tmp_path):
    """Every figure of the first logged step, recomputed from the step's own arrays."""
    config = copy_run(clip_grad_norm=0.5)
    task = build_task(config)
    model = model_for(config, task)
    params = model.init_params(derived_rng(config.seed, INIT_STREAM))
    x, y = next(task.iter_batches(0, config.batch_size, dtype=config.dtype))
    logits, cache = model.forward(params, model_inputs(task, x, config.dtype),
                                  rng=derived_rng(config.seed, QUANT_STREAM, 0))
    _, dlogits = softmax_cross_entropy(logits, y)
    grads = model.backward(params, cache, dlogits)
    h = model.states(cache)["h"].astype(np.float64)

    result = train(config, tmp_path, max_steps=1)
    record = read_metrics(tmp_path, "step")[0]
    g = grads["u"].astype(np.float64)
    s = sign(params["u"]).astype(np.float64)
    expected = {
        "abs_mean.u": np.mean(np.abs(params["u"].astype(np.float64))),
        "abs_min.u": np.min(np.abs(params["u"].astype(np.float64))),
        "abs_max.u": np.max(np.abs(params["u"].astype(np.float64))),
        "align.u": g @ s / (np.linalg.norm(g) * np.linalg.norm(s)),
        "alpha.U": np.max(np.abs(params["U"])), "alpha.V": np.max(np.abs(params["V"])),
        "h_absmax": np.max(np.abs(h)), "h_rms_last": np.sqrt(np.mean(h[:, -1] ** 2)),
    }
    for name in ("u", "U", "b", "V", "c"):
        expected[f"grad_norm.{name}"] = np.linalg.norm(grads[name].astype(np.float64))
        delta = result.params[name].astype(np.float64) - params[name]
        expected[f"update_rms.{name}"] = np.sqrt(np.mean(delta ** 2))
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, rel=1e-6), key
    # gradient norms are taken before clipping (the global norm exceeds 0.5 here)
    assert record["grad_norm"] > 0.5
    assert record["grad_norm"] == pytest.approx(np.sqrt(sum(
        record[f"grad_norm.{name}"] ** 2 for name in ("u", "U", "b", "V", "c"))), rel=1e-9)
    for name in ("U", "V"):
        codes, _ = Uniform(4).codes(params[name])
        assert record[f"codes.{name}"] == np.bincount(codes.ravel() + 8, minlength=16).tolist()


def test_flip_counts_add_up_and_survive_a_resume(tmp_path):
    config = copy_run(lr=0.3)
    train(config, tmp_path / "ref")
    steps = read_metrics(tmp_path / "ref", "step")
    flips = [r["flips"] for r in steps]
    assert sum(flips) > 0, "vacuous: no flips"
    assert [r["flips_total"] for r in steps] == np.cumsum(flips).tolist()
    epochs = read_metrics(tmp_path / "ref", "epoch")
    assert [r["flips"] for r in epochs] == [sum(flips[:5]), sum(flips[5:])]
    assert epochs[-1]["flips_total"] == sum(flips)
    train(config, tmp_path / "cut", max_steps=7)
    resume(tmp_path / "cut")
    def comparable(run_dir):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]
    assert comparable(tmp_path / "cut") == comparable(tmp_path / "ref")


def test_log_every_spaces_the_diagnostics(tmp_path):
    train(copy_run(log_every=3), tmp_path)
    steps = read_metrics(tmp_path, "step")
    assert [r["step"] for r in steps] == [3, 6, 9]
    assert all("align.u" in r for r in steps)
