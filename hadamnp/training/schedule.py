"""Learning-rate schedules: the rate of every optimizer step, a pure function of its position.

With ``k`` the 0-based index of the optimizer step, ``e`` its epoch, ``K = epochs x
batches_per_epoch`` the run's length in steps and ``W = warmup_steps``::

    step    (StepLR, per epoch)   lr_k = lr * gamma^e
    cosine  (per step)            lr_k = lr * (1 + cos(pi * k / K)) / 2
    warm-up (either; W > 0)       lr_k <- lr_k * min(1, (k + 1) / W)

The rate depends on nothing but ``(k, e)`` and the configuration, so a resumed run uses
exactly the rates of an uninterrupted one and checkpoints store no schedule state. The
cosine schedule depends on ``epochs`` through ``K``: a resumed cosine run cannot change its
number of epochs (:func:`check_resume`). ``gamma`` is not used by the cosine schedule.
"""

import math

from hadamnp.errors import ConfigError
from hadamnp.training.optim import step_lr

__all__ = ["learning_rate", "check_resume"]


def learning_rate(config, step, epoch, batches_per_epoch):
    """Learning rate of optimizer step ``step`` (0-based), taken in epoch ``epoch``.

    Parameters
    ----------
    config : RunConfig
        ``lr``, ``gamma``, ``schedule``, ``warmup_steps`` and ``epochs`` are used.
    step, epoch : int >= 0
    batches_per_epoch : int >= 1
        Optimizer steps per epoch (``K = epochs * batches_per_epoch``).

    Returns
    -------
    float
    """
    if config.schedule == "cosine":
        total = config.epochs * batches_per_epoch
        lr = config.lr * (1.0 + math.cos(math.pi * min(step, total) / total)) / 2.0
    else:
        lr = step_lr(config.lr, epoch, config.gamma)
    if config.warmup_steps:
        lr *= min(1.0, (step + 1) / config.warmup_steps)
    return lr


def check_resume(stored, config):
    """Refuse resuming with a number of epochs that would change past rates.

    Raises
    ------
    ConfigError
        ``config`` (the resumed run's) changes ``epochs`` under the cosine schedule.
    """
    if config.schedule == "cosine" and config.epochs != stored.epochs:
        raise ConfigError(f"the cosine schedule spans the run's {stored.epochs} epochs; "
                          f"resuming with {config.epochs} would change the rates of the "
                          f"steps already taken (start a new run instead)")
