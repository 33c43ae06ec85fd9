"""hadamnp: binary and sparse-ternary orthogonal RNNs (HadamRNN, Block-HadamRNN) in NumPy + Numba.

Layout (dependencies point downwards only):

- ``hadamnp.conventions`` — sign(0), Hadamard ordering, rounding, tensor layout, bit packing.
- ``hadamnp.reference``   — plain-NumPy reference twins of every kernel (readable, float64).
- ``hadamnp.kernels``     — Numba kernels; never import ``models``.
- ``hadamnp.models``      — quantizers (with straight-through estimators), recurrences, models.
- ``hadamnp.training``    — losses, optimizers, schedules, training loop.
- ``hadamnp.io``          — data sets, checkpoints, golden files.
- ``hadamnp.deploy``      — integer-only inference and export.
- ``hadamnp.cli``         — the ``hadamnp`` command line (thin wrappers over the library).

Nothing is compiled at import time: Numba kernels compile (and cache) on first call.
"""

__version__ = "0.1.0"
