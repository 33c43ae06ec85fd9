"""Optimizers, schedule and clipping (:mod:`hadamnp.training.optim`) against hand-written
transcriptions of PyTorch's update rules (``torch.optim.Adam``/``SGD`` single-tensor path,
``StepLR``, ``clip_grad_norm_``), in float64 over several steps."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.training.optim import SGD, Adam, clip_grad_norm, make_optimizer, step_lr

STEPS = 7
RTOL = 1e-13


def problem(seed=0, dtype=np.float64):
    """Parameters and a deterministic gradient sequence (several shapes, incl. a scalar-like
    (1,) vector and exact zeros)."""
    rng = np.random.default_rng(seed)
    params = {"u": rng.standard_normal(5), "U": rng.standard_normal((4, 3)),
              "c": rng.standard_normal(1)}
    grads = []
    for _ in range(STEPS):
        g = {k: rng.standard_normal(v.shape) * 10.0 ** rng.integers(-3, 2)
             for k, v in params.items()}
        g["U"][0, 0] = 0.0
        grads.append(g)
    def cast(arrays):
        return {k: v.astype(dtype) for k, v in arrays.items()}

    return cast(params), [cast(g) for g in grads]


def torch_adam(params, grads, lrs, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=None,
               decoupled=False):
    """``torch.optim.Adam`` (amsgrad=False, maximize=False), per tensor; ``weight_decay``
    maps names to decays (``torch.optim.AdamW`` when ``decoupled``)."""
    params = {k: v.copy() for k, v in params.items()}
    exp_avg = {k: np.zeros_like(v) for k, v in params.items()}
    exp_avg_sq = {k: np.zeros_like(v) for k, v in params.items()}
    for step, (g, lr) in enumerate(zip(grads, lrs), start=1):
        for k in params:
            grad, wd = g[k], (weight_decay or {}).get(k, 0.0)
            if decoupled:
                params[k] = params[k] * (1 - lr * wd)                      # AdamW: mul_
            else:
                grad = grad + wd * params[k]                               # Adam: add
            exp_avg[k] = exp_avg[k] + (grad - exp_avg[k]) * (1 - beta1)    # lerp_
            exp_avg_sq[k] = exp_avg_sq[k] * beta2 + (1 - beta2) * grad * grad
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = lr / bias_correction1
            denom = np.sqrt(exp_avg_sq[k]) / np.sqrt(bias_correction2) + eps
            params[k] = params[k] - step_size * exp_avg[k] / denom
    return params


def torch_sgd(params, grads, lrs, momentum=0.0, nesterov=False, weight_decay=None):
    """``torch.optim.SGD`` (dampening=0), per tensor; ``weight_decay`` maps names to decays."""
    params = {k: v.copy() for k, v in params.items()}
    bufs = {}
    for g, lr in zip(grads, lrs):
        for k in params:
            d_p = g[k] + (weight_decay or {}).get(k, 0.0) * params[k]
            if momentum != 0:
                bufs[k] = d_p.copy() if k not in bufs else bufs[k] * momentum + d_p
                d_p = d_p + momentum * bufs[k] if nesterov else bufs[k]
            params[k] = params[k] - lr * d_p
    return params


def run(optimizer, params, grads, lrs, weight_decay=None):
    params = {k: v.copy() for k, v in params.items()}
    state = optimizer.init_state(params)
    for g, lr in zip(grads, lrs):
        assert optimizer.step(params, g, state, lr, weight_decay=weight_decay) is None
    return params, state


def assert_params_close(got, expected, rtol, what):
    for k in expected:
        err = np.max(np.abs(got[k] - expected[k]) / np.maximum(np.abs(expected[k]), 1e-300))
        assert err <= rtol, (f"{what}: {k} relative error {err:.2e}\n"
                             f"got {got[k]}\nexpected {expected[k]}")


LRS = [1e-2 * 0.9 ** (i // 2) for i in range(STEPS)]  # a changing learning rate


@pytest.mark.parametrize("options", [{}, {"beta1": 0.5, "beta2": 0.9, "eps": 1e-4}])
def test_adam_matches_pytorch(options):
    params, grads = problem()
    got, state = run(Adam(**options), params, grads, LRS)
    assert_params_close(got, torch_adam(params, grads, LRS, **options), RTOL, f"Adam {options}")
    assert int(state["step"]) == STEPS


def test_adam_defaults_are_pytorchs():
    assert Adam() == Adam(beta1=0.9, beta2=0.999, eps=1e-8)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.5, True)])
def test_sgd_matches_pytorch(momentum, nesterov):
    params, grads = problem(1)
    got, state = run(SGD(momentum=momentum, nesterov=nesterov), params, grads, LRS)
    assert_params_close(got, torch_sgd(params, grads, LRS, momentum, nesterov), RTOL,
                        f"SGD momentum={momentum} nesterov={nesterov}")
    assert int(state["step"]) == STEPS


@pytest.mark.parametrize("optimizer", [Adam(), SGD(momentum=0.9, nesterov=True)],
                         ids=["adam", "sgd"])
def test_float32_parameters_stay_float32(optimizer):
    params, grads = problem(2, np.float32)
    got, state = run(optimizer, params, grads, LRS)
    assert all(v.dtype == np.float32 for v in got.values())
    assert all(v.dtype == np.float32 for k, v in state.items() if k != "step")
    reference = torch_adam if isinstance(optimizer, Adam) else (
        lambda p, g, lr: torch_sgd(p, g, lr, 0.9, True))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    g64 = [{k: v.astype(np.float64) for k, v in g.items()} for g in grads]
    assert_params_close(got, reference(p64, g64, LRS), 1e-5, "float32 vs float64 transcription")


@pytest.mark.parametrize("optimizer", [Adam(), SGD(momentum=0.9)], ids=["adam", "sgd"])
def test_state_round_trip_continues_identically(optimizer):
    """Copy the parameters and the state after 3 steps; continuing from the copies gives
    bit-identical results to continuing from the originals."""
    params, grads = problem(3)
    params = {k: v.copy() for k, v in params.items()}
    state = optimizer.init_state(params)
    for g in grads[:3]:
        optimizer.step(params, g, state, 1e-2)
    params_copy = {k: v.copy() for k, v in params.items()}
    state_copy = {k: np.array(v, copy=True) for k, v in state.items()}
    for g in grads[3:]:
        optimizer.step(params, g, state, 1e-2)
        optimizer.step(params_copy, g, state_copy, 1e-2)
    for k in params:
        np.testing.assert_array_equal(params_copy[k], params[k], err_msg=k)
    assert sorted(state_copy) == sorted(state)
    for k in state:
        np.testing.assert_array_equal(state_copy[k], state[k], err_msg=k)


def test_state_keys():
    params, _ = problem()
    assert set(Adam().init_state(params)) == {"step"} | {f"{s}.{k}" for s in "mv" for k in params}
    assert set(SGD(momentum=0.9).init_state(params)) == {"step"} | {f"buf.{k}" for k in params}


def test_step_does_not_write_into_gradients():
    params, grads = problem(4)
    before = [{k: v.copy() for k, v in g.items()} for g in grads]
    run(Adam(), params, grads, LRS)
    run(SGD(momentum=0.9), params, grads, LRS)
    for g, g0 in zip(grads, before):
        for k in g:
            np.testing.assert_array_equal(g[k], g0[k])


def test_make_optimizer():
    assert make_optimizer("adam") == Adam()
    assert make_optimizer("sgd", momentum=0.9, nesterov=True) == SGD(0.9, True)
    with pytest.raises(ConfigError, match="rmsprop"):
        make_optimizer("rmsprop")
    with pytest.raises(ConfigError, match="momentum"):
        make_optimizer("adam", momentum=0.9)


@pytest.mark.parametrize("options", [{"momentum": -0.1}, {"nesterov": True},
                                     {"momentum": 0.0, "nesterov": True}])
def test_sgd_rejects_bad_options(options):
    with pytest.raises(ConfigError):
        SGD(**options)


def test_step_lr():
    """``StepLR``: lr * gamma ** (epoch // step_size), epoch 0-based."""
    assert step_lr(1e-3, 0, 0.98) == 1e-3
    assert step_lr(1e-3, 1, 0.98) == pytest.approx(0.98e-3, rel=1e-15)
    assert step_lr(1e-3, 10, 0.98) == pytest.approx(1e-3 * 0.98 ** 10, rel=1e-15)
    assert [step_lr(1.0, e, 0.5, step_size=3) for e in range(7)] == [1, 1, 1, .5, .5, .5, .25]


def test_clip_grad_norm_scales_only_above_the_threshold():
    rng = np.random.default_rng(5)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5).astype(np.float32)}
    norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))

    below = {k: v.copy() for k, v in grads.items()}
    assert clip_grad_norm(below, norm * 1.5) == pytest.approx(norm, rel=1e-12)
    for k in grads:
        np.testing.assert_array_equal(below[k], grads[k], err_msg=f"{k} changed below the limit")

    above = {k: v.copy() for k, v in grads.items()}
    assert clip_grad_norm(above, norm / 4) == pytest.approx(norm, rel=1e-12)
    factor = (norm / 4) / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
    for k in grads:
        assert above[k].dtype == grads[k].dtype
        np.testing.assert_allclose(above[k], grads[k] * factor,
                                   rtol=1e-6 if grads[k].dtype == np.float32 else 1e-14)
    new_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in above.values()))
    assert new_norm == pytest.approx(norm / 4, rel=1e-5)


def test_clip_grad_norm_of_zero_gradients():
    grads = {"a": np.zeros(3)}
    assert clip_grad_norm(grads, 1.0) == 0.0
    np.testing.assert_array_equal(grads["a"], np.zeros(3))


@pytest.mark.parametrize("make", [lambda: Adam(), lambda: SGD(momentum=0.9)])
def test_lr_scales_act_as_a_per_parameter_learning_rate(make):
    """A parameter with lr scale k follows the trajectory of a run with learning rate k*lr."""
    rng = np.random.default_rng(3)
    start = {"u": rng.standard_normal(5), "U": rng.standard_normal((3, 2))}
    grads = [{name: rng.standard_normal(p.shape) for name, p in start.items()} for _ in range(4)]
    opt = make()
    scaled = {name: p.copy() for name, p in start.items()}
    plain = {name: p.copy() for name, p in start.items()}
    state_scaled, state_plain = opt.init_state(scaled), opt.init_state(plain)
    for g in grads:
        opt.step(scaled, g, state_scaled, 0.01, lr_scales={"u": 0.1})
        opt.step(plain, g, state_plain, 0.001)
    np.testing.assert_allclose(scaled["u"], plain["u"], rtol=1e-12)
    assert not np.allclose(scaled["U"], plain["U"])


DECAY = {"u": 0.1, "U": 1e-3}  # "c" not decayed


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam-l2", "adamw"])
def test_adam_weight_decay_matches_pytorch(decoupled):
    params, grads = problem(2)
    got, _ = run(Adam(decoupled_weight_decay=decoupled), params, grads, LRS, DECAY)
    expected = torch_adam(params, grads, LRS, weight_decay=DECAY, decoupled=decoupled)
    assert_params_close(got, expected, RTOL, f"Adam decoupled={decoupled}")
    plain = torch_adam(params, grads, LRS)
    assert not np.allclose(expected["u"], plain["u"]) and np.allclose(expected["c"], plain["c"])


def test_sgd_weight_decay_matches_pytorch():
    params, grads = problem(3)
    got, _ = run(SGD(momentum=0.9), params, grads, LRS, DECAY)
    assert_params_close(got, torch_sgd(params, grads, LRS, 0.9, weight_decay=DECAY), RTOL,
                        "SGD weight decay")


def test_decoupled_sgd_shrinks_before_the_step():
    params = {"w": np.array([2.0, -4.0])}
    SGD(decoupled_weight_decay=True).step(params, {"w": np.array([1.0, 1.0])},
                                          {"step": np.zeros((), np.int64)}, 0.1,
                                          weight_decay={"w": 0.5})
    np.testing.assert_array_equal(params["w"], np.array([2.0, -4.0]) * 0.95 - 0.1)
