"""Argument validation shared by kernels wrappers, models and I/O.

Each helper raises a specific :mod:`hadamnp.errors` exception whose message names
the argument and the offending value.
"""

import numpy as np

from hadamnp.errors import ConfigError, NonFiniteError, ShapeError, SizeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_power_of_two(n):
    """True when the integer ``n`` is 1, 2, 4, 8, ..."""
    return n >= 1 and (n & (n - 1)) == 0


def check_power_of_two(n, name):
    """Return ``int(n)``; raise :class:`SizeError` unless it is an integer power of two."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise SizeError(f"{name} must be an integer power of two (1, 2, 4, ...), got {n!r}")
    n = int(n)
    if not is_power_of_two(n):
        raise SizeError(f"{name} must be a power of two (1, 2, 4, ...), got {n}")
    return n


def check_block_size(n, m):
    """Validate a Block-HadamRNN block size ``m`` for hidden size ``n``; return ``int(m)``."""
    n = check_power_of_two(n, "hidden size n")
    m = check_power_of_two(m, "block size m")
    if m > n:
        raise SizeError(f"block size m={m} must not exceed hidden size n={n}")
    return m


def check_finite(a, name):
    """Raise :class:`NonFiniteError` when array ``a`` holds NaN or Inf."""
    a = np.asarray(a)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise NonFiniteError(f"{name} contains {bad} NaN/Inf value(s)")


def check_float(a, name):
    """Return ``a`` as an array; raise :class:`TypeError` unless it is float32 or float64."""
    a = np.asarray(a)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    return a


def check_ndim(a, ndim, name, layout):
    """Raise :class:`ShapeError` unless ``a.ndim == ndim``; ``layout`` documents the axes."""
    if a.ndim != ndim:
        raise ShapeError(f"{name} must have shape {layout}, got shape {a.shape}")


def check_axis(a, axis, size, name, what):
    """Raise :class:`ShapeError` unless ``a.shape[axis] == size``."""
    if a.shape[axis] != size:
        raise ShapeError(
            f"{name} has {a.shape[axis]} {what} (shape {a.shape}), expected {size}"
        )


def check_int(value, name, minimum):
    """Return ``int(value)``; raise :class:`ConfigError` unless it is an integer (not a
    bool) and, when ``minimum`` is not None, ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def float_dtype(dtype):
    """Return ``np.dtype(dtype)``; raise :class:`ConfigError` unless float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_sign_vector(s, name="s"):
    """Return the sign vector ``s`` as int64; raise unless it is ±1 of a power-of-two length.

    Raises :class:`ShapeError` for a wrong shape, :class:`SizeError` for a length that is not
    a power of two, ``TypeError`` for a bool or non-numeric dtype, :class:`NonFiniteError`
    for NaN/Inf and ``ValueError`` naming the first value that is not -1 or +1.
    """
    s = np.asarray(s)
    if s.ndim != 1:
        raise ShapeError(f"{name} must have shape (n,), got shape {s.shape}")
    check_power_of_two(s.shape[0], f"length n of {name}")
    if s.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have an integer or float dtype, got {s.dtype}")
    check_finite(s, name)
    bad = (s != 1) & (s != -1)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must hold only -1 and +1; found {int(np.count_nonzero(bad))} other "
            f"value(s), first {s[first].item()!r} at index {first}"
        )
    return s.astype(np.int64)
