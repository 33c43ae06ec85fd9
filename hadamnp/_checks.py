"""Argument validation shared by kernels wrappers, models and I/O.

Each helper raises a specific :mod:`hadamnp.errors` exception whose message names
the argument and the offending value.
"""

import operator

import numpy as np

from hadamnp.errors import ConfigError, NonFiniteError, ShapeError, SizeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_power_of_two(n):
    """True when the integer ``n`` is 1, 2, 4, 8, ..."""
    return n >= 1 and (n & (n - 1)) == 0


def check_integer(value, name):
    """Return ``value`` as a Python int; raise ``TypeError`` unless it is an integer.

    Accepts ``int``, NumPy integer scalars and 0-d integer arrays (whatever has
    ``__index__``); refuses bools (flags, not counts) and floats, even integral ones such as
    ``70.0``, so that a size is never truncated or guessed.
    """
    if type(value) is int:  # the usual case (a bool's type is bool, not int)
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


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


def check_unpacked_dtype(dtype, signs):
    """Return ``np.dtype(dtype)``; raise ``TypeError`` unless it holds unpacked values exactly:
    -1 and +1 (``signs``: signed integer, float or complex) or 0 and 1 (also bool and
    unsigned). An unsigned dtype would turn -1 into 255 silently."""
    dt = np.dtype(dtype)
    if dt.kind not in ("ifc" if signs else "biufc"):
        held = ("-1 and +1 (a signed integer or float dtype)" if signs
                else "0 and 1 (a bool, integer or float dtype)")
        raise TypeError(f"dtype must hold {held}, got {dt}")
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


def check_sequence_args(x, V, n, store_every=1, **arrays):
    """Validate sequence-kernel arguments against ``x`` (T, d_in, B) and ``V`` (d_out, n).

    The shared contract of :mod:`hadamnp.kernels.recurrence` and its reference twin.
    ``arrays`` maps argument names (``s``, ``W``, ``U``, ``b``, ``c``, ``h``, ``g``) to
    arrays; each must be an ndarray with its documented shape (:class:`ShapeError`; ``h``
    holds ``T // store_every`` states) and the dtype of ``x``, which must be float32 or
    float64 (``TypeError``); ``x`` must be finite (:class:`NonFiniteError`). Returns
    ``(T, d_in, B)``.
    """
    for name, a in (("x", x), ("V", V), *arrays.items()):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    check_float(x, "x")
    check_ndim(x, 3, "x", "(T, d_in, B)")
    check_finite(x, "x")
    T, d_in, B = x.shape
    check_ndim(V, 2, "V", "(d_out, n)")
    d_out = V.shape[0]
    expected = {"s": [(n,)], "W": [(n, n)], "U": [(n, d_in)], "b": [(n,)], "c": [(d_out,)],
                "h": [(T // store_every, n, B)], "g": [(T, d_out, B), (1, d_out, B)]}
    for name, a in (("V", V), *arrays.items()):
        shapes = expected.get(name, [(d_out, n)])
        if a.shape not in shapes:
            raise ShapeError(f"{name} has shape {a.shape}, expected "
                             + " or ".join(str(shape) for shape in shapes))
        if a.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x has dtype {x.dtype}")
    return T, d_in, B


def check_store_every(store_every):
    """Return ``int(store_every)``; raise unless it is an integer >= 1 (``TypeError`` for a
    non-integer, :class:`ConfigError` below 1)."""
    if isinstance(store_every, bool) or not isinstance(store_every, (int, np.integer)):
        raise TypeError(f"store_every must be an integer >= 1, got {store_every!r}")
    if store_every < 1:
        raise ConfigError(f"store_every must be >= 1, got {store_every}")
    return int(store_every)


def check_state_buffer(h_out, shape, dtype):
    """Raise unless ``h_out`` can receive the states: an ndarray of ``dtype`` (``TypeError``)
    and ``shape`` (:class:`ShapeError`), C-contiguous and writable (``ValueError``)."""
    if not isinstance(h_out, np.ndarray):
        raise TypeError(f"h_out must be a numpy.ndarray, got {type(h_out).__name__}")
    if h_out.dtype != dtype:
        raise TypeError(f"h_out has dtype {h_out.dtype}, expected {np.dtype(dtype)} (the dtype "
                        "of x)")
    if h_out.shape != shape:
        raise ShapeError(f"h_out has shape {h_out.shape}, expected {shape}")
    if not h_out.flags.c_contiguous:
        raise ValueError(f"h_out must be C-contiguous, got strides {h_out.strides}")
    if not h_out.flags.writeable:
        raise ValueError("h_out is read-only")
