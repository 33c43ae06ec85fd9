"""Losses returning the loss value and its gradient with respect to the logits.

Both losses average over every scored position (batch entries, or batch x time for
many-to-many), as ``torch.nn.functional.cross_entropy`` and
``binary_cross_entropy_with_logits`` with ``reduction='mean'``.
"""

import numpy as np
from scipy.special import expit

from hadamnp.errors import ShapeError


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


LOSSES = {"cross_entropy": softmax_cross_entropy, "bce_with_logits": bce_with_logits}
