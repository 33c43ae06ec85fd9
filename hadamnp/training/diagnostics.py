"""Training diagnostics: what a logged step record of ``metrics.jsonl`` says about training.

With ``diagnostics = true`` (the default) every logged step record (one every
``log_every`` steps) carries, besides the loss, the accuracy and the step's sign flips:

======================  =================================================================
key                     meaning
======================  =================================================================
``grad_norm.<p>``       L2 norm of the gradient of trainable parameter ``p`` (before any
                        gradient clipping)
``update_rms.<p>``      root mean square of the change of ``p`` made by the step
``abs_mean.<s>``,       mean, minimum and maximum of ``|s|`` for the parameters ``s`` of
``abs_min.<s>``,        role ``signs`` (their latent magnitudes: the distance to a flip;
``abs_max.<s>``         whether a clipping bound is ever reached)
``align.<s>``           cosine between the gradient of ``s`` and ``sign(s)``. Gradient
                        descent moves ``s`` by ``-lr g``, so ``align > 0`` means the
                        step shrinks the latent magnitudes overall (towards flips)
model keys              the model's optional ``diagnostics(params, cache, grads)`` hook
                        (:mod:`hadamnp.models.protocol`), e.g. HadamRNN's quantizer
                        scales ``alpha.U``/``alpha.V``, code histograms ``codes.V`` and
                        the largest state ``h_absmax``
======================  =================================================================

Everything here is derived from the parameter roles; the loop names no parameter. The
figures are computed only on logged steps from arrays the step has anyway (no extra
forward or backward pass), and they read but never change the training state, so a run
is bit-identical with and without them.
"""

import numpy as np

from hadamnp.conventions import sign

__all__ = ["gradient_diagnostics", "update_diagnostics"]


def _norm(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.dot(a.ravel(), a.ravel())))


def gradient_diagnostics(model, groups, params, grads, cache):
    """Diagnostics of one step from its parameters, gradients (before clipping) and cache.

    Parameters
    ----------
    model : a model (:mod:`hadamnp.models.protocol`); its ``diagnostics`` hook is used
        when it has one
    groups : :class:`hadamnp.training.loop.ParamGroups`
    params : dict of arrays, the parameters of the step's forward pass
    grads : dict of arrays, their gradients (trainable parameters)
    cache : the forward pass's cache

    Returns
    -------
    dict of JSON numbers and lists (see the module docstring).
    """
    out = {f"grad_norm.{name}": _norm(grads[name]) for name in groups.trainable}
    for name in groups.signs:
        u, g = params[name], grads[name]
        magnitude = np.abs(u.astype(np.float64))
        out[f"abs_mean.{name}"] = float(magnitude.mean())
        out[f"abs_min.{name}"] = float(magnitude.min())
        out[f"abs_max.{name}"] = float(magnitude.max())
        g_norm = _norm(g)
        # |sign(u)| = sqrt(size) since sign(0) = +1
        dot = float(np.dot(g.astype(np.float64).ravel(), sign(u).astype(np.float64).ravel()))
        out[f"align.{name}"] = dot / (g_norm * np.sqrt(u.size)) if g_norm > 0 else 0.0
    hook = getattr(model, "diagnostics", None)
    if hook is not None:
        out.update(hook(params, cache, grads))
    return out


def update_diagnostics(groups, before, after):
    """``update_rms.<p>``: root mean square of ``after[p] - before[p]`` per trainable ``p``."""
    out = {}
    for name in groups.trainable:
        delta = after[name].astype(np.float64) - before[name]
        out[f"update_rms.{name}"] = float(np.sqrt(np.mean(delta * delta)))
    return out
