"""hadamnp: binary and sparse-ternary orthogonal RNNs (HadamRNN, Block-HadamRNN) in NumPy + Numba.

Public API (loaded lazily: ``import hadamnp`` imports no NumPy-heavy module and compiles
nothing)::

    hadamnp.train(config, run_dir)      train a model (RunConfig, dict of options or preset)
    hadamnp.resume(run_dir)             continue a run bit for bit
    hadamnp.load(run_or_checkpoint)     -> (model, params, config)
    hadamnp.predict(model, params, x)   -> logits
    hadamnp.evaluate(model, params, config_or_task, split)
    hadamnp.build_model(name, **options), hadamnp.register_model(...), hadamnp.model_names()
    hadamnp.RunConfig, hadamnp.HadamRNN, hadamnp.HadamRNNConfig, hadamnp.fwht

Layout (dependencies point downwards only):

- ``hadamnp.conventions``, ``errors`` — sign(0), Hadamard ordering, rounding, layout, bits.
- ``hadamnp.reference``   — plain-NumPy reference twins of every kernel (readable, float64).
- ``hadamnp.kernels``     — Numba kernels (``_machine``: the audited SIMD intrinsics);
  never import ``models``.
- ``hadamnp.models``      — the model protocol and registry, quantizers (with their
  surrogate gradients), recurrences, losses, model families.
- ``hadamnp.io``          — data sets, checked ``.npz`` files, checkpoints.
- ``hadamnp.runs``        — run configuration; config -> task -> model; run dir -> model.
- ``hadamnp.training``    — optimizers, schedules, metrics, the training loop.
- ``hadamnp.deploy``      — integer-only inference and export.
- ``hadamnp.golden``      — golden test vectors (float, any model) and integer traces.
- ``hadamnp.api``, ``hadamnp.cli`` — the public functions and the ``hadamnp`` command.

Numba cache. Kernels are compiled on first use and cached on disk (``cache=True``). When
hadamnp is installed into ``site-packages`` (or its directory is read-only) and
``NUMBA_CACHE_DIR`` is not set, importing hadamnp sets ``NUMBA_CACHE_DIR`` to
``$XDG_CACHE_HOME/hadamnp/numba`` (``~/.cache/hadamnp/numba``; ``%LOCALAPPDATA%`` on
Windows): cache files written inside ``site-packages/hadamnp`` would outlive ``pip
uninstall`` and shadow a later editable install. A source checkout keeps Numba's default
(``__pycache__`` beside the sources). This environment default is the only side effect of
``import hadamnp`` (:mod:`hadamnp._numba_cache`).
"""

from hadamnp._numba_cache import set_default_cache_dir as _set_default_cache_dir

__version__ = "0.2.0"

_set_default_cache_dir()

_EXPORTS = {
    "train": "hadamnp.api", "resume": "hadamnp.api", "load": "hadamnp.api",
    "predict": "hadamnp.api", "evaluate": "hadamnp.api",
    "build_model": "hadamnp.models.registry", "register_model": "hadamnp.models.registry",
    "model_names": "hadamnp.models.registry",
    "RunConfig": "hadamnp.runs.config",
    "HadamRNN": "hadamnp.models.hadamrnn", "HadamRNNConfig": "hadamnp.models.hadamrnn",
    "fwht": "hadamnp.kernels.fwht",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hadamnp' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
