"""Losses returning the loss value and its gradient with respect to the model outputs.

Every loss averages over the scored values (batch entries, or batch x time for
many-to-many), as ``torch.nn.functional.cross_entropy``, ``mse_loss`` and
``binary_cross_entropy_with_logits`` with ``reduction='mean'``.

A run scores its model with one :class:`Loss` object, chosen by name (:func:`get_loss`),
which also states what the targets are, how many outputs the model needs and which
metrics accompany the loss:

=================  ==================  =========================  ============  ==========
name               outputs             targets ``y``              model d_out   metrics
=================  ==================  =========================  ============  ==========
``cross_entropy``  ``(..., C)``        ``(...)`` int classes      ``C``         accuracy
``bce``            ``(..., 1)``        ``(...)`` int in {0, 1}    1 (C = 2)     accuracy
``mse``            ``(..., d)``        ``(..., d)`` float         ``d``         mse
=================  ==================  =========================  ============  ==========

``(...)`` is ``(B,)`` (many-to-one) or ``(B, T)`` (many-to-many).
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hadamnp.errors import ConfigError, ShapeError


def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy over all positions.

    Parameters
    ----------
    logits : (..., C) float32/float64 (any strides)
    y : (...) integer class targets in ``[0, C)``

    Returns
    -------
    loss : float
    dlogits : (..., C) same dtype as ``logits``, gradient of ``loss``.
    """
    y = np.asarray(y)
    if logits.shape[:-1] != y.shape:
        raise ShapeError(f"targets have shape {y.shape}, logits {logits.shape}: "
                         f"expected targets of shape {logits.shape[:-1]}")
    if y.size == 0:
        raise ShapeError(f"no positions to score: logits have shape {logits.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"class targets must be integers, got dtype {y.dtype}")
    C = logits.shape[-1]
    if y.size and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"targets must lie in [0, {C}), got range [{y.min()}, {y.max()}]")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, y[..., None], axis=-1)[..., 0]
    count = y.size
    loss = float(np.sum(np.log(total[..., 0]) - picked) / count)
    dlogits = exp / total
    np.put_along_axis(dlogits, y[..., None],
                      np.take_along_axis(dlogits, y[..., None], axis=-1) - 1, axis=-1)
    dlogits /= count
    return loss, dlogits.astype(logits.dtype, copy=False)


def bce_with_logits(logits, y):
    """Mean binary cross-entropy with logits (one logit per position).

    Parameters
    ----------
    logits : (..., 1) float
    y : (...) targets in {0, 1} (or probabilities)

    Returns
    -------
    loss : float
    dlogits : (..., 1) same dtype as ``logits``.
    """
    y = np.asarray(y, dtype=logits.dtype)
    if logits.shape != y.shape + (1,):
        raise ShapeError(f"targets have shape {y.shape}, logits {logits.shape}: "
                         f"expected logits of shape {y.shape + (1,)}")
    if y.size == 0:
        raise ShapeError(f"no positions to score: logits have shape {logits.shape}")
    if not np.all((y >= 0) & (y <= 1)):
        raise ValueError("binary targets must lie in [0, 1] (and not be NaN)")
    # Imported here: the command line's help reads the presets through this module and
    # must not load SciPy (tests/cli/test_cli_golden.py).
    from scipy.special import expit

    z = logits[..., 0]
    # max(z, 0) - z y + log(1 + exp(-|z|)) is stable for large |z|.
    loss = float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    grad = (expit(z) - y) / y.size
    return loss, grad[..., None].astype(logits.dtype, copy=False)


def accuracy(logits, y):
    """Fraction of correctly classified positions.

    ``logits`` (..., C) with integer targets ``y`` (...): argmax for ``C > 1``; sign of the
    single logit against {0, 1} targets for ``C == 1`` (binary cross-entropy models).
    """
    y = np.asarray(y)
    predicted = (logits[..., 0] > 0) if logits.shape[-1] == 1 else np.argmax(logits, axis=-1)
    return float(np.mean(predicted == y))


def mean_squared_error(outputs, y):
    """Mean squared error over every output value.

    ``loss = mean((outputs - y)^2)`` over all ``N = y.size`` values, gradient
    ``2 (outputs - y) / N``.

    Parameters
    ----------
    outputs : (..., d) float32/float64 (any strides)
    y : (..., d) real targets, finite (the shape of ``outputs``)

    Returns
    -------
    loss : float
    doutputs : (..., d) same dtype as ``outputs``, gradient of ``loss``.
    """
    y = np.asarray(y)
    if y.shape != outputs.shape:
        raise ShapeError(f"targets have shape {y.shape}, outputs {outputs.shape}: "
                         f"regression targets must have the shape of the outputs")
    if y.size == 0:
        raise ShapeError(f"no values to score: outputs have shape {outputs.shape}")
    if y.dtype.kind not in "fiu":
        raise TypeError(f"regression targets must be real numbers, got dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        raise ValueError("regression targets must be finite (no NaN/Inf)")
    diff = outputs - y.astype(outputs.dtype, copy=False)
    loss = float(np.mean(np.square(diff)))
    return loss, (diff * (outputs.dtype.type(2) / y.size)).astype(outputs.dtype, copy=False)


def squared_error(outputs, y):
    """Mean squared error of ``outputs`` against ``y`` (the ``mse`` metric), a float."""
    return float(np.mean(np.square(outputs - np.asarray(y, dtype=outputs.dtype))))


@dataclass(frozen=True)
class Loss:
    """The objective of a run: a loss function with its targets, output size and metric.

    Attributes
    ----------
    name : str
        ``"cross_entropy"``, ``"bce"`` or ``"mse"`` (see the module docstring).
    targets : {"classes", "values"}
        Integer class labels or real regression values.
    function : callable ``function(outputs, y) -> (loss, doutputs)``
    metric : str
        Name of the figure :meth:`score` returns beside the loss.
    measure : callable ``measure(outputs, y) -> float``, the metric of one batch (a mean
        over the scored values).
    binary : bool
        One logit for two classes (``bce``): the model has one output.
    """

    name: str
    targets: str
    function: Callable
    metric: str
    measure: Callable
    binary: bool = False

    @property
    def metrics(self):
        """Names of the figures :meth:`score` returns."""
        return (self.metric,)

    def __call__(self, outputs, y):
        """``(loss, doutputs)``: the mean loss and its gradient w.r.t. ``outputs``."""
        return self.function(outputs, y)

    def score(self, outputs, y):
        """The metrics of one batch, ``{name: mean over the scored values}``."""
        return {self.metric: self.measure(outputs, y)}

    def output_size(self, num_outputs, what="the task"):
        """Outputs the model needs for a task with ``num_outputs`` classes (or values).

        Raises
        ------
        ConfigError
            A binary loss for a task whose labels are not binary.
        """
        if not self.binary:
            return int(num_outputs)
        if num_outputs != 2:
            raise ConfigError(f"loss {self.name!r} needs binary labels (y in {{0, 1}}); "
                              f"{what} has {num_outputs} classes (use loss 'cross_entropy')")
        return 1


LOSSES = {
    "cross_entropy": Loss("cross_entropy", "classes", softmax_cross_entropy, "accuracy",
                          accuracy),
    "bce": Loss("bce", "classes", bce_with_logits, "accuracy", accuracy, binary=True),
    "mse": Loss("mse", "values", mean_squared_error, "mse", squared_error),
}


def get_loss(name):
    """The :class:`Loss` named ``name`` (a key of :data:`LOSSES`); a :class:`ConfigError`
    lists the names otherwise."""
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
