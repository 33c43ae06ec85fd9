"""Learning-rate schedules: the documented formulas, and resuming under them."""

import math

import pytest

from hadamnp.errors import ConfigError
from hadamnp.runs.config import resolve_config
from hadamnp.training.schedule import check_resume, learning_rate


def config(**changes):
    return resolve_config(preset="base", overrides={"task": "copy", "lr": 0.1,
                                                    "epochs": 4, **changes})


def test_step_schedule_is_steplr_per_epoch():
    c = config(gamma=0.5)
    assert [learning_rate(c, k, k // 3, 3) for k in range(12)] == \
        [0.1] * 3 + [0.05] * 3 + [0.025] * 3 + [0.0125] * 3


def test_cosine_schedule():
    c = config(schedule="cosine", gamma=0.5)  # gamma unused
    K = 4 * 5
    rates = [learning_rate(c, k, k // 5, 5) for k in range(K)]
    for k, rate in enumerate(rates):
        assert rate == pytest.approx(0.1 * (1 + math.cos(math.pi * k / K)) / 2, rel=1e-15)
    assert rates[0] == 0.1 and rates[K // 2] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_warmup_ramps_linearly(schedule):
    c = config(schedule=schedule, warmup_steps=4)
    plain = config(schedule=schedule)
    for k in range(10):
        assert learning_rate(c, k, 0, 10) == pytest.approx(
            learning_rate(plain, k, 0, 10) * min(1, (k + 1) / 4), rel=1e-15)
    assert learning_rate(c, 0, 0, 10) == pytest.approx(0.025)


def test_schedule_options_are_checked():
    with pytest.raises(ConfigError, match="unknown schedule 'linear'"):
        config(schedule="linear")
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        config(warmup_steps=-1)


def test_cosine_run_cannot_change_its_epochs_on_resume():
    c = config(schedule="cosine")
    check_resume(c, c.replace(val_batches=2))
    with pytest.raises(ConfigError, match="cosine schedule spans the run's 4 epochs"):
        check_resume(c, c.replace(epochs=5))
    check_resume(config(), config(epochs=9))  # StepLR: more epochs continue the run
