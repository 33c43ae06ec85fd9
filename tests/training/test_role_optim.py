"""Optimizers per parameter role (Bop, frozen) and BinaryConnect's latent clipping: each
against a plain transcription of its paper's update, and resumed bit-identically."""

import numpy as np
import pytest

from hadamnp.conventions import sign
from hadamnp.errors import ConfigError
from hadamnp.io.datasets import derived_rng
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import build_task, model_for, model_inputs
from hadamnp.training.loop import INIT_STREAM, QUANT_STREAM, resume, train
from hadamnp.training.metrics import read_metrics
from hadamnp.training.optim import Adam
from hadamnp.training.role_optim import (Bop, Frozen, RoleOptimizer, get_role_optimizer,
                                         role_optimizer_spec)
from run_compare import comparable_metrics


def bop_transcription(w, m, g, threshold, gamma):
    """Helwegen et al. (2019), Algorithm 1, one element at a time (w in {-1, +1})::

        m_t = (1 - gamma) m_{t-1} + gamma g_t
        w_t = -w_{t-1} if |m_t| > tau and sign(m_t) == sign(w_{t-1}) else w_{t-1}
    """
    w, m = w.copy(), m.copy()
    one, gamma = w.dtype.type(1), w.dtype.type(gamma)
    for i in range(w.size):
        m[i] = (one - gamma) * m[i] + gamma * g[i]
        if abs(m[i]) > threshold and (m[i] > 0) == (w[i] > 0):
            w[i] = -w[i]
    return w, m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_bop_matches_the_papers_update(rng, dtype, size):
    threshold, gamma = 0.05, 0.3
    bop = Bop(threshold=threshold, adaptivity=gamma)
    w = np.where(rng.random(size) < 0.5, -1, 1).astype(dtype)
    state = bop.init_state({"u": w})
    w_ref, m_ref = w.copy(), np.zeros_like(w)
    params = {"u": w.copy()}
    flips = 0
    for _ in range(30):
        g = rng.normal(scale=0.2, size=size).astype(dtype)
        w_ref_next, m_ref = bop_transcription(w_ref, m_ref, g, threshold, gamma)
        flips += int(np.count_nonzero(w_ref_next != w_ref))
        w_ref = w_ref_next
        bop.step(params, {"u": g}, state)
        np.testing.assert_array_equal(params["u"], w_ref)
        np.testing.assert_array_equal(state["bop_m.u"], m_ref)
        assert params["u"].dtype == dtype
    assert flips > 0, "vacuous: nothing flipped"


def test_bop_rule_edges():
    bop = Bop(threshold=0.5, adaptivity=1.0)  # m = g exactly
    w = np.array([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    g = np.array([0.5, 0.6, -0.6, 0.6, -0.6, 0.0])
    # |m| = tau: no flip (strict); same signs above tau: flip; opposite signs: keep
    params = {"u": w.copy()}
    bop.step(params, {"u": g}, bop.init_state(params))
    np.testing.assert_array_equal(params["u"], [1, -1, 1, -1, 1, -1])


def test_bop_replaces_latent_magnitudes_by_their_signs(rng):
    u = rng.normal(size=33).astype(np.float32)
    u[0] = 0.0  # sign(0) = +1
    params = {"u": u.copy()}
    Bop(threshold=1e9).step(params, {"u": rng.normal(size=33).astype(np.float32)},
                            {"bop_m.u": np.zeros(33, np.float32)})
    np.testing.assert_array_equal(params["u"], sign(u))


def test_bop_schedule_scales_the_adaptivity():
    bop = Bop(threshold=10.0, adaptivity=0.5)
    params, state = {"u": np.ones(1)}, {"bop_m.u": np.zeros(1)}
    bop.step(params, {"u": np.ones(1)}, state, schedule=0.1)
    assert state["bop_m.u"][0] == pytest.approx(0.05)


@pytest.mark.parametrize("spec, expected", [
    ("bop", Bop()), ("bop:1e-5,0.01", Bop(1e-5, 0.01)),
    ("bop:adaptivity=0.1", Bop(adaptivity=0.1)), ("frozen", Frozen())])
def test_specs_round_trip(spec, expected):
    optimizer = get_role_optimizer(spec)
    assert optimizer == expected
    assert get_role_optimizer(role_optimizer_spec(optimizer)) == optimizer


@pytest.mark.parametrize("spec, match", [
    ("bop:threshold=-1", "threshold"), ("bop:adaptivity=0", "adaptivity"),
    ("bop:adaptivity=1.5", "adaptivity"), ("adamw", "unknown role optimizer"),
    ("bop:speed=1", "no argument 'speed'")])
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        get_role_optimizer(spec)


def test_role_optimizer_leaves_the_other_parameters_to_adam(rng):
    params = {name: rng.normal(size=5) for name in ("u", "V")}
    grads = {name: rng.normal(size=5) for name in ("u", "V")}
    composite = RoleOptimizer(Adam(), {"u": Frozen()}, base_lr=0.1)
    state = composite.init_state(params)
    assert sorted(state) == ["m.V", "step", "v.V"]
    alone = {"V": params["V"].copy()}
    adam_state = Adam().init_state(alone)
    new = {name: value.copy() for name, value in params.items()}
    composite.step(new, grads, state, 0.1)
    Adam().step(alone, grads, adam_state, 0.1)
    np.testing.assert_array_equal(new["V"], alone["V"])
    np.testing.assert_array_equal(new["u"], params["u"])


# --------------------------------------------------------------------- through the loop

def copy_run(**changes):
    options = dict(task="copy", copy_length=24, batch_size=16, epochs=2, steps_per_epoch=6,
                   lr=0.05, val_batches=1, test_batches=1, log_every=1,
                   model={"name": "hadamrnn", "hidden_size": 16})
    return resolve_config(preset="base", overrides={**options, **changes})


def first_step_inputs(config):
    """Initial parameters and the gradients of the first step, computed as the loop does."""
    task = build_task(config)
    model = model_for(config, task)
    params = model.init_params(derived_rng(config.seed, INIT_STREAM))
    x, y = next(task.iter_batches(0, config.batch_size, dtype=config.dtype))
    logits, cache = model.forward(params, model_inputs(task, x, config.dtype),
                                  rng=derived_rng(config.seed, QUANT_STREAM, 0))
    _, dlogits = softmax_cross_entropy(logits, y)
    return params, model.backward(params, cache, dlogits)


def test_latent_clipping_is_binaryconnects_clamp(tmp_path):
    """BinaryConnect (Courbariaux et al., 2015, Algorithm 1): ``w <- clip(w - update,
    -1, 1)`` after every optimizer step; here the update is Adam's."""
    config = copy_run(lr=1.5, clip_roles=["signs"])
    params, grads = first_step_inputs(config)
    expected = {name: value.copy() for name, value in params.items()}
    Adam().step(expected, grads, Adam().init_state(params), config.lr)
    unclipped = expected["u"].copy()
    expected["u"] = np.minimum(np.maximum(expected["u"], -1), 1)
    assert np.any(np.abs(unclipped) > 1), "vacuous: nothing to clip"
    result = train(config, tmp_path, max_steps=1)
    for name in params:
        np.testing.assert_array_equal(result.params[name], expected[name], err_msg=name)


def test_bop_in_the_loop_is_the_papers_update(tmp_path):
    config = copy_run(role_optimizers={"signs": "bop:threshold=1e-3,adaptivity=0.5"})
    params, grads = first_step_inputs(config)
    w, m = bop_transcription(sign(params["u"]), np.zeros_like(params["u"]), grads["u"],
                             1e-3, 0.5)
    assert np.any(w != sign(params["u"])), "vacuous: no flip at the first step"
    expected = {name: params[name].copy() for name in ("U", "b", "V", "c")}
    Adam().step(expected, grads, Adam().init_state(expected), config.lr)
    result = train(config, tmp_path, max_steps=1)
    np.testing.assert_array_equal(result.params["u"], w)
    for name, value in expected.items():
        np.testing.assert_array_equal(result.params[name], value, err_msg=name)
    steps = read_metrics(tmp_path, "step")
    assert steps[0]["flips"] == int(np.count_nonzero(w != sign(params["u"])))


def interrupt_at(step):
    def callback(event):
        if event["event"] == "step" and event["step"] == step:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("role_optimizers", [
    {"signs": "bop:threshold=1e-3,adaptivity=0.2"}, {"signs": "frozen"}])
@pytest.mark.parametrize("stop", [4, 6])
def test_resume_with_a_role_optimizer_is_bit_identical(tmp_path, role_optimizers, stop):
    config = copy_run(role_optimizers=role_optimizers)
    expected = train(config, tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", callback=interrupt_at(stop))
    result = resume(tmp_path / "cut")
    for name in expected.params:
        np.testing.assert_array_equal(result.params[name], expected.params[name])
    assert comparable_metrics(tmp_path / "cut") == comparable_metrics(tmp_path / "ref")
    flips = [r["flips"] for r in read_metrics(tmp_path / "ref", "step")]
    if "frozen" in role_optimizers.values():
        assert flips == [0] * 12
        np.testing.assert_array_equal(
            expected.params["u"],
            model_init(config)["u"])
    else:
        assert sum(flips) > 0, "vacuous: Bop never flipped"
        assert set(np.unique(expected.params["u"])) <= {-1.0, 1.0}


def model_init(config):
    task = build_task(config)
    return model_for(config, task).init_params(derived_rng(config.seed, INIT_STREAM))


@pytest.mark.parametrize("changes, match", [
    ({"role_optimizers": {"weight": "bop"}}, "role signs only"),
    ({"role_optimizers": {"signs": "adamw"}}, "unknown optimizer"),
    ({"role_optimizers": {"signs": "bop"}, "lr_scales": {"signs": 0.1}},
     "lr_scales does not apply"),
    ({"role_optimizers": {"signs": "frozen"}, "clip_roles": ["signs"]},
     "clip_roles does not apply"),
    ({"role_optimizers": {"scale": "frozen"}}, "no parameter with role 'scale'"),
    ({"role_optimizers": {"signs": 3}}, "spec string"),
])
def test_role_optimizer_configuration_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        copy_run(**changes)


def test_bad_optimizer_arguments_fail_before_writing(tmp_path):
    config = copy_run(role_optimizers={"signs": "bop:threshold=-1"})
    with pytest.raises(ConfigError, match="threshold"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
