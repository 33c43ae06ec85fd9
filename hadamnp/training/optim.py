"""Optimizers and learning-rate schedules, with explicit state.

An optimizer holds only hyperparameters. Its state is a plain dict of arrays created by
:meth:`init_state` and updated by :meth:`step`, so it can be checkpointed and restored
exactly. ``step`` updates the parameter arrays and the state in place (it is the one
place where training mutates arrays) and follows PyTorch's update formulas, so a port can
be checked against ``torch.optim`` step for step.

Per-parameter options (the training loop derives them from parameter roles):
``lr_scales[name]`` multiplies the learning rate, ``weight_decay[name]`` is the decay
``wd`` of that parameter, applied either as an L2 term added to the gradient
(``g += wd * p``, as ``torch.optim.Adam``/``SGD`` with ``weight_decay``) or, with
``decoupled_weight_decay=True``, as a shrink before the update (``p *= 1 - lr_p * wd``,
as ``torch.optim.AdamW``; ``lr_p`` the parameter's scaled learning rate).
"""

from dataclasses import dataclass

import numpy as np

from hadamnp.errors import ConfigError


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba), PyTorch defaults ``betas=(0.9, 0.999)``, ``eps=1e-8``.

    Update at step ``k`` (1-based), as ``torch.optim.Adam`` (``AdamW`` when decoupled)::

        g += wd p                              (L2 weight decay)   or
        p *= 1 - lr wd                         (decoupled weight decay)
        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        p -= (lr / (1 - b1^k)) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decoupled_weight_decay: bool = False

    def init_state(self, params):
        """State dict: ``step`` (0-d int64), ``m.<name>`` and ``v.<name>`` zeros."""
        state = {"step": np.zeros((), np.int64)}
        for name, p in params.items():
            state[f"m.{name}"] = np.zeros_like(p)
            state[f"v.{name}"] = np.zeros_like(p)
        return state

    def step(self, params, grads, state, lr, lr_scales=None, weight_decay=None):
        """Apply one update (in place) with learning rate ``lr``.

        ``lr_scales`` and ``weight_decay`` map parameter names to their learning-rate
        multiplier (default 1) and weight decay (default 0).
        """
        state["step"] += 1
        k = int(state["step"])
        lr_scales = lr_scales or {}
        bias1 = 1 - self.beta1 ** k
        bias2_sqrt = np.sqrt(1 - self.beta2 ** k)
        for name, p in params.items():
            rate = lr * lr_scales.get(name, 1.0)
            g = _decay(p, grads[name], rate, (weight_decay or {}).get(name, 0.0),
                       self.decoupled_weight_decay)
            m, v = state[f"m.{name}"], state[f"v.{name}"]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            denom = np.sqrt(v) / p.dtype.type(bias2_sqrt) + p.dtype.type(self.eps)
            p -= p.dtype.type(rate / bias1) * m / denom


@dataclass(frozen=True)
class SGD:
    """SGD with momentum as ``torch.optim.SGD`` (dampening 0)::

        g  += wd p   (L2 weight decay)   or   p *= 1 - lr wd   (decoupled)
        buf = momentum * buf + g        (buf = g at the first step)
        p  -= lr * (g + momentum * buf  if nesterov else buf)
    """

    momentum: float = 0.0
    nesterov: bool = False
    decoupled_weight_decay: bool = False

    def __post_init__(self):
        if self.momentum < 0:
            raise ConfigError(f"momentum must be >= 0, got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov momentum requires momentum > 0")

    def init_state(self, params):
        """State dict: ``step`` and ``buf.<name>`` zeros."""
        state = {"step": np.zeros((), np.int64)}
        for name, p in params.items():
            state[f"buf.{name}"] = np.zeros_like(p)
        return state

    def step(self, params, grads, state, lr, lr_scales=None, weight_decay=None):
        """Apply one update (in place) with learning rate ``lr``.

        ``lr_scales`` and ``weight_decay`` map parameter names to their learning-rate
        multiplier (default 1) and weight decay (default 0).
        """
        first = int(state["step"]) == 0
        lr_scales = lr_scales or {}
        state["step"] += 1
        for name, p in params.items():
            g = _decay(p, grads[name], lr * lr_scales.get(name, 1.0),
                       (weight_decay or {}).get(name, 0.0), self.decoupled_weight_decay)
            rate = p.dtype.type(lr * lr_scales.get(name, 1.0))
            if self.momentum == 0:
                p -= rate * g
                continue
            buf = state[f"buf.{name}"]
            if first:
                buf[...] = g
            else:
                buf *= self.momentum
                buf += g
            update = g + self.momentum * buf if self.nesterov else buf
            p -= rate * update


def _decay(p, g, rate, wd, decoupled):
    """Apply weight decay ``wd`` of one parameter; return the gradient to use.

    Decoupled: ``p *= 1 - rate * wd`` in place, ``g`` unchanged. L2: ``g + wd * p`` (a new
    array; ``g`` is not modified).
    """
    if wd == 0:
        return g
    if decoupled:
        p *= p.dtype.type(1 - rate * wd)
        return g
    return g + p.dtype.type(wd) * p


def make_optimizer(name, **options):
    """``make_optimizer("adam" | "sgd", **hyperparameters)``; unknown names are an error."""
    kinds = {"adam": Adam, "sgd": SGD}
    if name not in kinds:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {sorted(kinds)}")
    try:
        return kinds[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad option for optimizer {name!r}: {exc}") from None


def step_lr(base_lr, epoch, gamma, step_size=1):
    """``StepLR``: ``base_lr * gamma ** (epoch // step_size)`` (``epoch`` 0-based)."""
    return base_lr * gamma ** (epoch // step_size)


def clip_grad_norm(grads, max_norm):
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the factor ``max_norm / (norm + 1e-6)`` is
    applied when it is below 1. Returns the norm before clipping.
    """
    norm = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64)))
                             for g in grads.values())))
    factor = max_norm / (norm + 1e-6)
    if factor < 1:
        for g in grads.values():
            g *= g.dtype.type(factor)
    return norm
