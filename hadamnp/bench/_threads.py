"""Thread settings of a benchmark process.

Thread counts must be in the environment before NumPy/BLAS and Numba are imported, so a
benchmark module run as a script reads ``--threads N`` from ``sys.argv`` (before argparse)
and sets them with :func:`set_threads_from_argv`. This module imports neither NumPy nor
Numba.
"""

import os

__all__ = ["THREAD_ENV_VARS", "set_threads_from_argv"]

THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS")


def set_threads_from_argv(argv, default="1"):
    """Set every variable of :data:`THREAD_ENV_VARS` to the value after ``--threads`` in
    ``argv`` (``default`` when absent)."""
    value = argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else default
    for name in THREAD_ENV_VARS:
        os.environ[name] = value
