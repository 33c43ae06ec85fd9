"""Optimizers chosen per parameter role, beside the run's optimizer (Adam or SGD).

A run may give the parameters of a role their own optimizer (``[role_optimizers]`` table,
``--role-optimizer ROLE=SPEC``); every other trainable parameter keeps the run's
optimizer, as larq's ``CaseOptimizer`` does for binary and real-valued variables::

    [role_optimizers]
    signs = "bop:threshold=1e-6,adaptivity=1e-3"    # or "frozen"

Specs are ``name[:arg,...,key=value]`` strings as for quantizers
(:func:`hadamnp.models.quantizers.parse_spec`):

==========  ===============================================================  ============
spec        update of each parameter ``w`` of the role                       roles
==========  ===============================================================  ============
``bop``     Bop (Helwegen et al., 2019, *Latent Weights Do Not Exist*),      ``signs``
            arguments ``threshold`` (τ) and ``adaptivity`` (γ)
``frozen``  none: the parameters keep their initial values                   any
==========  ===============================================================  ============

Bop. The paper's Algorithm 1 for a binary weight ``w ∈ {-1, +1}`` and its gradient ``g``
(``g = dL/dw``; for HadamRNN's latent ``u`` the identity straight-through estimator makes
``dL/du = dL/dsign(u)``)::

    m_t = (1 - γ) m_{t-1} + γ g_t                       exponential moving average, m_0 = 0
    w_t = -w_{t-1}   if |m_t| > τ and sign(m_t) = sign(w_{t-1})
          w_{t-1}    otherwise

A flip happens when the averaged gradient is consistently strong (``|m| > τ``) and points
along ``w``, i.e. descent wants ``w`` to change sign. ``m`` is not reset after a flip (the
flipped ``w`` then disagrees with ``sign(m)``, so it is not flipped straight back). Bop has
no latent magnitudes: its parameter *is* the binary weight. For a latent-sign parameter
such as HadamRNN's ``u`` (of which only ``sign(u)``, sign(0) = +1, is used) the first Bop
step replaces ``u`` by ``sign(u)`` (flipped where the rule says so), after which ``u``
stays in {-1, +1}; the model's forward pass and sign flips are the same as if ``u`` had
kept its magnitudes. The adaptivity follows the run's learning-rate schedule
(``γ_e = γ · lr_e / lr``, StepLR), as the paper decays γ during training; the run's
per-role learning-rate scales, weight decay and latent clipping do not apply to a role
with its own optimizer (combining them is a configuration error).

State (checkpointed with the run's optimizer state): ``bop_m.<name>``, the moving average
``m`` of each parameter, in its dtype.
"""

from dataclasses import dataclass

import numpy as np

from hadamnp.conventions import sign
from hadamnp.errors import ConfigError
from hadamnp.models.quantizers import parse_spec, quantizer_spec

__all__ = ["Bop", "Frozen", "ROLE_OPTIMIZERS", "get_role_optimizer", "role_optimizer_spec",
           "RoleOptimizer"]


@dataclass(frozen=True)
class Bop:
    """Bop (Helwegen et al., 2019) for parameters of role ``signs`` (module docstring).

    Parameters
    ----------
    threshold : float >= 0
        τ: flip when ``|m| > τ`` (in units of the gradient).
    adaptivity : float in (0, 1]
        γ: weight of the new gradient in the moving average ``m``.
    """

    threshold: float = 1e-6
    adaptivity: float = 1e-3

    name = "bop"
    roles = ("signs",)

    def __post_init__(self):
        for field in ("threshold", "adaptivity"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not np.isfinite(value):
                raise ConfigError(f"bop: {field} must be a finite number, got {value!r}")
        if self.threshold < 0:
            raise ConfigError(f"bop: threshold must be >= 0, got {self.threshold}")
        if not 0 < self.adaptivity <= 1:
            raise ConfigError(f"bop: adaptivity must be in (0, 1], got {self.adaptivity}")

    def init_state(self, params):
        """State dict: ``bop_m.<name>`` zeros of each parameter's shape and dtype."""
        return {f"bop_m.{name}": np.zeros_like(p) for name, p in params.items()}

    def step(self, params, grads, state, schedule=1.0):
        """One Bop update of ``params`` (in place) and of ``state``.

        Parameters
        ----------
        params, grads : dict name -> array
        state : dict from :meth:`init_state`
        schedule : float
            Factor of the learning-rate schedule at this step (``lr_e / lr``); the
            adaptivity used is ``adaptivity * schedule``.
        """
        for name, p in params.items():
            gamma = p.dtype.type(self.adaptivity * schedule)
            m = state[f"bop_m.{name}"]
            m *= p.dtype.type(1) - gamma
            m += gamma * grads[name]
            w = sign(p)
            flip = (np.abs(m) > self.threshold) & (sign(m) == w)
            p[...] = np.where(flip, -w, w)


@dataclass(frozen=True)
class Frozen:
    """No update: the parameters of the role keep their initial values."""

    name = "frozen"
    roles = None  # any role

    def init_state(self, params):
        return {}

    def step(self, params, grads, state, schedule=1.0):
        """Nothing to do."""


ROLE_OPTIMIZERS = {cls.name: cls for cls in (Bop, Frozen)}


def get_role_optimizer(spec):
    """The role optimizer described by ``spec`` (``"bop"``, ``"bop:1e-6,1e-3"``,
    ``"bop:threshold=1e-6"``, ``"frozen"``); :class:`ConfigError` names a bad spec."""
    if not isinstance(spec, str):
        raise ConfigError(f"a role optimizer spec must be a string such as 'bop', got {spec!r}")
    return parse_spec(spec, ROLE_OPTIMIZERS, "role optimizer")


def role_optimizer_spec(optimizer):
    """Canonical spec string of a role optimizer."""
    return quantizer_spec(optimizer)


class RoleOptimizer:
    """The run's optimizer for most parameters, role optimizers for the others.

    Parameters
    ----------
    default : the run's optimizer (:mod:`hadamnp.training.optim`)
    assigned : dict name -> role optimizer (:data:`ROLE_OPTIMIZERS`)
        Parameters trained by a role optimizer instead of ``default``.
    base_lr : float
        The run's initial learning rate; ``lr / base_lr`` is the schedule factor passed
        to the role optimizers.

    The state is one flat dict: the default optimizer's keys (unchanged, so a run
    without role optimizers keeps its checkpoint layout) plus each role optimizer's
    (e.g. ``bop_m.u``).
    """

    def __init__(self, default, assigned, base_lr):
        self.default = default
        self.assigned = dict(assigned)
        self.base_lr = base_lr

    def init_state(self, params):
        state = self.default.init_state({name: p for name, p in params.items()
                                         if name not in self.assigned})
        for name, optimizer in self.assigned.items():
            part = optimizer.init_state({name: params[name]})
            clash = sorted(set(part) & set(state))
            if clash:
                raise ConfigError(f"optimizer state keys {clash} are used twice")
            state.update(part)
        return state

    def step(self, params, grads, state, lr, lr_scales=None, weight_decay=None):
        """Update ``params`` in place: the default optimizer with ``lr`` and the per-name
        scales and decay, then each role optimizer with the schedule ``lr / base_lr``."""
        self.default.step({name: p for name, p in params.items()
                           if name not in self.assigned}, grads, state, lr,
                          lr_scales=lr_scales, weight_decay=weight_decay)
        for name, optimizer in self.assigned.items():
            if name in params:
                optimizer.step({name: params[name]}, grads, state, lr / self.base_lr)
