"""OIALR in the training loop: a training-time low-rank form of a model's weight matrices.

The mathematics and rules are in :mod:`hadamnp.models.lowrank`; this module runs the
schedule of an OIALR run (:class:`~hadamnp.models.lowrank.OIALROptions`) over any model
through its parameter specs, without naming a model.

Where the factors live. The model and its description never change: the run's parameters
(``params``, what the forward pass, evaluation, export and golden files read) always hold
the dense matrix ``W = U Σ Vᵀ`` of every factored weight, recomposed after each update. The
factors are training state, carried in the optimizer state beside the moments, under slots
named after the weight::

    oialr_U.<W>    U  (m, k)   frozen          oialr_Q.<W>     Q = U Vᵀ (m, N) of the
    oialr_S.<W>    Σ  (k, k)   trainable                       last check (stability)
    oialr_Vt.<W>   Vᵀ (k, N)   frozen          oialr_wait.<W>  checks left to skip
    m.<W>, v.<W>   Adam moments of Σ (k, k); SGD's buf.<W> likewise

so a checkpoint (:mod:`hadamnp.io.checkpoint`) carries the shapes of the moment of
interruption, and resuming rebuilds the same model from its description and continues bit
for bit. The optimizer updates ``Σ`` in place of ``W`` (the same name, so per-role learning
rate scales and weight decay apply to it).

One optimizer step of a run with factored weights::

    dW   = model.backward(...)[W]           dL/dW of the dense matrix
    dΣ   = Uᵀ dW V                          (tall orientation)
    [clip_grad_norm over the optimizer's gradients: dΣ in place of dW]
    optimizer.step(Σ, dΣ)                   moments m.<W>, v.<W> of shape (k, k)
    W    = U Σ Vᵀ                           recomposed into params

Schedule (``s`` = optimizer steps done). On the grid ``s ≡ delay (mod every)``, ``s >= 1``:

* ``s < delay`` (warm-up): the basis stability of every selected matrix is measured (SVD of
  ``W``).
* ``s = delay`` (the switch): every selected matrix becomes ``U diag(s) Vᵀ`` (thin SVD),
  ``Σ`` a full ``N x N`` trainable matrix, its optimizer moments zeros of shape ``N x N``
  (the full-rank moments are discarded; the optimizer's step count goes on, as the released
  code moves the weight's optimizer state to ``Σ``); then the first check.
* each check ``c = (s - delay) / every + 1``: stability measured on every selected matrix,
  then the included matrices (:func:`~hadamnp.models.lowrank.included`, deepest first) are
  re-orthogonalized and their rank pruned; on a rank change ``U``, ``Σ``, ``Vᵀ`` are
  truncated and the moments sliced to ``[:k, :k]`` (not rotated, as the released code).
  A matrix then skips the next ``stable_delay`` checks (the released code sets the delay
  after every update of a layer, its stability being fixed at 1).

Every grid step writes a ``"kind": "oialr"`` record to ``metrics.jsonl``: ``phase``
(``warmup``, ``switch``, ``check``), ``check``, ``updated`` (matrices re-orthogonalized),
``ranks`` (``k`` of every selected matrix, ``N`` before the switch), ``stability`` (None
at the first measurement) and ``trainable`` (values the optimizer updates: ``k²`` per
factored matrix).
"""

import numpy as np

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.models.lowrank import (OIALROptions, compose, factorize, included, is_wide,
                                    next_rank, reorthogonalize, select_weights, sigma_grad,
                                    stability)
from hadamnp.runs.plumbing import load_run

__all__ = ["SLOTS", "LowRankTraining", "checkpoint_ranks", "lowrank_size", "run_lowrank_size"]

SLOT_U, SLOT_S, SLOT_VT, SLOT_Q, SLOT_WAIT = ("oialr_U", "oialr_S", "oialr_Vt", "oialr_Q",
                                              "oialr_wait")
SLOTS = (SLOT_U, SLOT_S, SLOT_VT, SLOT_Q, SLOT_WAIT)


def _key(slot, name):
    return f"{slot}.{name}"


class LowRankTraining:
    """The OIALR schedule of one run (see the module docstring).

    Parameters
    ----------
    options : OIALROptions
    model : a :class:`hadamnp.models.protocol.Model`
    trainable : iterable of str
        The parameters the optimizer updates.
    bounds : dict name -> float
        Parameters clipped after every update (a factored matrix cannot be).

    Raises
    ------
    ConfigError
        No eligible matrix, a refused ``weights`` entry, or a selected matrix that the run
        clips.
    """

    def __init__(self, options, model, trainable, bounds):
        specs = model.param_specs()
        self.options = options
        self.names = select_weights(specs, options)
        clipped = [name for name in self.names if name in bounds]
        if clipped:
            raise ConfigError(f"oialr: {', '.join(clipped)} would be clipped to a bound after "
                              f"every update (clip_roles, or the model clips its quantized "
                              f"shadow weights), which breaks the low-rank form; turn that "
                              f"clipping off or leave these matrices out (oialr.weights)")
        self.shapes = {name: specs[name].shape for name in self.names}
        self.sizes = {name: int(np.prod(specs[name].shape)) for name in trainable}
        self.dtype = np.dtype(model.config.dtype)

    @classmethod
    def of(cls, model, config, trainable, bounds):
        """The schedule of run ``config`` (None when it does not use OIALR)."""
        if config.oialr is None:
            return None
        return cls(OIALROptions.from_table(config.oialr), model, trainable, bounds)

    # ------------------------------------------------------------------ every step

    def factored(self, opt_state):
        """The selected matrices already in low-rank form."""
        return [name for name in self.names if _key(SLOT_S, name) in opt_state]

    def variables(self, variables, opt_state):
        """The arrays the optimizer updates: ``Σ`` in place of each factored matrix."""
        return {name: opt_state.get(_key(SLOT_S, name), value)
                for name, value in variables.items()}

    def gradients(self, grads, opt_state):
        """``dL/dΣ = Uᵀ dW V`` in place of ``dL/dW`` of each factored matrix (new dict)."""
        out = dict(grads)
        for name in self.factored(opt_state):
            out[name] = sigma_grad(opt_state[_key(SLOT_U, name)],
                                   opt_state[_key(SLOT_VT, name)], grads[name],
                                   is_wide(self.shapes[name]))
        return out

    def compose(self, params, opt_state):
        """Write ``W = U Σ Vᵀ`` of each factored matrix into ``params`` (in place)."""
        for name in self.factored(opt_state):
            params[name] = self._dense(opt_state, name)

    def _dense(self, opt_state, name):
        return compose(opt_state[_key(SLOT_U, name)], opt_state[_key(SLOT_S, name)],
                       opt_state[_key(SLOT_VT, name)], is_wide(self.shapes[name]))

    # ------------------------------------------------------------------ the grid

    def due(self, step):
        """True when ``step`` (optimizer steps done) is on the schedule's grid."""
        return step >= 1 and (step - self.options.delay) % self.options.every == 0

    def first_grid_step(self):
        """The first step of the grid (the first stability measurement)."""
        o = self.options
        return o.delay - o.every * ((o.delay - 1) // o.every)

    def update(self, params, opt_state, step):
        """The schedule's work at grid step ``step``, in place; returns its metrics record.

        Parameters
        ----------
        params, opt_state : dicts of arrays (this step's own copies; modified in place)
        step : int, optimizer steps done (``due(step)`` is True)
        """
        o = self.options
        phase = "warmup" if step < o.delay else "switch" if step == o.delay else "check"
        if phase == "switch":
            for name in self.names:
                self._switch(params, opt_state, name)
        measured = {name: self._measure(params, opt_state, name) for name in self.names}
        check, updated = None, []
        if phase != "warmup":
            check = (step - o.delay) // o.every + 1
            for name in included(self.names, check, o.layer_step):
                if self._check(params, opt_state, name):
                    updated.append(name)
        return {"kind": "oialr", "step": step, "phase": phase, "check": check,
                "updated": updated, "ranks": self.ranks(opt_state), "stability": measured,
                "trainable": self.trainable(opt_state)}

    def ranks(self, opt_state):
        """``{name: k}`` of the selected matrices (``N`` before the switch)."""
        return {name: (opt_state[_key(SLOT_S, name)].shape[0]
                       if _key(SLOT_S, name) in opt_state else min(self.shapes[name]))
                for name in self.names}

    def trainable(self, opt_state):
        """Values the optimizer updates: ``k²`` for each factored matrix."""
        factored = {name: opt_state[_key(SLOT_S, name)].size
                    for name in self.factored(opt_state)}
        return sum(factored.get(name, size) for name, size in self.sizes.items())

    def _moment_keys(self, opt_state, name):
        # The optimizer's per-parameter slots of `name` (Adam m, v; SGD buf).
        return [key for key in opt_state
                if key.partition(".")[2] == name and key.partition(".")[0] not in SLOTS]

    def _switch(self, params, opt_state, name):
        U, s, Vt = factorize(params[name])
        N = s.size
        opt_state[_key(SLOT_U, name)] = U
        opt_state[_key(SLOT_S, name)] = np.diag(s)
        opt_state[_key(SLOT_VT, name)] = Vt
        opt_state[_key(SLOT_WAIT, name)] = np.zeros((), np.int64)
        for key in self._moment_keys(opt_state, name):
            opt_state[key] = np.zeros((N, N), opt_state[key].dtype)
        params[name] = self._dense(opt_state, name)

    def _measure(self, params, opt_state, name):
        """Stability of the singular bases since the last grid step (None the first time)."""
        if _key(SLOT_S, name) in opt_state:
            U, _, Vt = reorthogonalize(opt_state[_key(SLOT_U, name)],
                                       opt_state[_key(SLOT_S, name)],
                                       opt_state[_key(SLOT_VT, name)])
        else:
            U, _, Vt = factorize(params[name])
        Q = U @ Vt
        previous = opt_state.get(_key(SLOT_Q, name))
        opt_state[_key(SLOT_Q, name)] = Q
        return None if previous is None else stability(previous, Q)

    def _check(self, params, opt_state, name):
        """Re-orthogonalize and prune one matrix; False when it skips this check."""
        wait = opt_state[_key(SLOT_WAIT, name)]
        if wait > 0:
            opt_state[_key(SLOT_WAIT, name)] = np.array(wait - 1, np.int64)
            return False
        U, sigma, Vt = reorthogonalize(opt_state[_key(SLOT_U, name)],
                                       opt_state[_key(SLOT_S, name)],
                                       opt_state[_key(SLOT_VT, name)])
        k = next_rank(sigma, sigma.size, min(self.shapes[name]), self.options.beta)
        opt_state[_key(SLOT_U, name)] = np.ascontiguousarray(U[:, :k])
        opt_state[_key(SLOT_S, name)] = np.diag(sigma[:k])
        opt_state[_key(SLOT_VT, name)] = np.ascontiguousarray(Vt[:k])
        for key in self._moment_keys(opt_state, name):
            opt_state[key] = np.ascontiguousarray(opt_state[key][:k, :k])
        opt_state[_key(SLOT_WAIT, name)] = np.array(self.options.stable_delay, np.int64)
        params[name] = self._dense(opt_state, name)
        return True

    # ------------------------------------------------------------------ resume

    def restore_template(self, template, stored, step, path):
        """The optimizer-state template of a checkpoint at ``step`` (for the loop's check
        of the stored state): ``template`` (the optimizer's state of the dense parameters)
        with the factors and the ``(k, k)`` moments of the factored matrices, at the ranks
        the checkpoint ``stored`` (checkpoint form ``{slot: {name: array}}``) records.

        Raises
        ------
        CheckpointError
            Factors inconsistent with the step or the model's shapes.
        """
        template = dict(template)
        sigmas = stored.get(SLOT_S, {})
        grid_started = step >= self.first_grid_step()
        for name in self.names:
            factored = name in sigmas
            if factored != (step >= self.options.delay):
                raise CheckpointError(
                    f"{path}: at step {step} the OIALR matrix {name} should "
                    f"{'' if step >= self.options.delay else 'not '}be in low-rank form "
                    f"(switch at step {self.options.delay})")
            m, N = max(self.shapes[name]), min(self.shapes[name])
            if factored:
                shape = np.shape(sigmas[name])
                k = shape[0] if len(shape) == 2 and shape[0] == shape[1] else 0
                if not 1 <= k <= N:
                    raise CheckpointError(f"{path}: OIALR factor Σ of {name} has shape "
                                          f"{shape}, expected (k, k) with 1 <= k <= {N}")
                for key in self._moment_keys(template, name):
                    template[key] = np.zeros((k, k), template[key].dtype)
                template[_key(SLOT_U, name)] = np.zeros((m, k), self.dtype)
                template[_key(SLOT_S, name)] = np.zeros((k, k), self.dtype)
                template[_key(SLOT_VT, name)] = np.zeros((k, N), self.dtype)
                template[_key(SLOT_WAIT, name)] = np.zeros((), np.int64)
            if grid_started:
                template[_key(SLOT_Q, name)] = np.zeros((m, N), self.dtype)
        return template

    def check_restored(self, params, opt_state, path):
        """Each factored matrix in ``params`` must be exactly ``U Σ Vᵀ`` of its factors."""
        for name in self.factored(opt_state):
            if not np.array_equal(params[name], self._dense(opt_state, name)):
                raise CheckpointError(f"{path}: parameter {name} is not the product U Σ Vᵀ "
                                      f"of its OIALR factors in the checkpoint")


def checkpoint_ranks(optimizer_state):
    """``{name: k}`` of the factored matrices of a checkpoint's optimizer state (the
    checkpoint form ``{slot: {name: array}}``); empty for a run without factored ones."""
    return {name: np.shape(S)[0] for name, S in optimizer_state.get(SLOT_S, {}).items()}


def lowrank_size(model, ranks):
    """Parameter counts of ``model`` with the matrices of ``ranks`` factored.

    Returns
    -------
    dict
        ``trainable`` (values the optimizer updates: ``k²`` per factored matrix),
        ``stored`` (values kept while training: ``U``, ``Σ``, ``Vᵀ`` in place of ``W``),
        ``full_trainable`` (the model's trainable count at full rank), and ``ranks``
        ``{name: [k, N]}``.
    """
    specs = model.param_specs()
    size = model.size()
    trainable, stored, out = size.trainable, size.parameters, {}
    for name, k in ranks.items():
        m, N = max(specs[name].shape), min(specs[name].shape)
        trainable -= m * N - k * k
        stored -= m * N - (m * k + k * k + k * N)
        out[name] = [k, N]
    return {"trainable": trainable, "stored": stored, "full_trainable": size.trainable,
            "ranks": out}


def run_lowrank_size(path, model):
    """:func:`lowrank_size` of the latest checkpoint of a run (``path``: run directory or
    checkpoint file) trained with OIALR, ``model`` its model; None for a full-rank run."""
    ckpt, config, _ = load_run(path)
    if config.oialr is None:
        return None
    return lowrank_size(model, checkpoint_ranks(ckpt.optimizer_state))
