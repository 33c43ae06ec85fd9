"""Integer-only HadamRNN inference, simulated in float64 (reference twin of
:mod:`hadamnp.kernels.integer`).

The scheme is documented in ``docs/integer-inference.md``; its one departure from the
paper-style three-rounding step: the two rescalings and the bias of a step share one
64-bit accumulator and one rounding. Every quantity below is an integer; this module holds
them in float64, where integers are exact below 2**53, and writes every floor out, so it
can be read as the definition of the arithmetic::

    z       = FWHT_m(h_{t-1})                        block FWHT, exact adds; |z| <= m 2^(a-1)
    u       = U_int x_t                              |u| <= max_i sum_j |U_int[i,j]| 2^(a-1)
    acc     = M_rec (s * z) + M_in u + b_fine        one int64 accumulator
    h_t     = sat_a(floor((acc + 2^(q-1)) / 2^q))    one rounding (half up); h_0 = 0
    logits  = V_int relu(h_t) + c_int                every step, or the last one only

``M_rec ~ 2^q / sqrt(m)``, ``M_in ~ 2^q alpha_U S_x / (levels_U S_h)`` and
``b_fine ~ 2^q b / S_h`` share the shift ``q`` (chosen at conversion,
:func:`hadamnp.deploy.integer.fixed_point`). The bias is thus kept at resolution
``2^-q`` state units instead of being rounded to whole state units: a whole-unit rounding
error would be added at every step and, along the eigenvalue-1 directions of the
orthogonal ``W``, grow linearly with ``T``.

Ranges, checked by :func:`integer_bounds` / :func:`check_bounds` for every input in ``R_a``:
``|z|``, ``|u|`` and the readout fit int32; ``|acc| + 2^(q-1)`` fits int64.

``M_rec z`` and ``M_in u`` reach 2**63, beyond float64's exact range, so
:func:`rescale` splits ``M_rec``, ``M_in`` and ``b_fine`` into a high part and a 20-bit low
part and carries between them by hand; every intermediate stays below 2**53.

Layout: batch-first, as the public arrays (see :mod:`hadamnp.conventions`): ``x_int``
``(B, T, d_in)``, ``h_int`` ``(B, T, n)``, ``logits_int`` ``(B, T_out, d_out)``.
"""

import numpy as np

from hadamnp._checks import check_block_size, check_ndim, check_power_of_two
from hadamnp.errors import ConfigError, IntegerRangeError, ShapeError
from hadamnp.reference.hadamard import fwht

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Limits of the fixed-point parameters: M_rec fits int32 (so M_rec z is a 32 x 32 -> 64-bit
# product), M_in fits int64, and 1 <= q <= 62 (2^(q-1) and the accumulator fit int64).
M_REC_LIMIT = 2**31
M_IN_LIMIT = 2**63
MAX_SHIFT = 62

# Width of the low part in :func:`rescale`: 2 * 2^20 * 2^31 + 2^21 < 2^53.
_SPLIT = 20


def activation_range(a):
    """Signed range ``R_a = [-2^(a-1), 2^(a-1) - 1]`` of ``a``-bit activations.

    Parameters
    ----------
    a : int, 2 <= a <= 24

    Returns
    -------
    (low, high) : tuple of int
    """
    if not isinstance(a, (int, np.integer)) or not 2 <= a <= 24:
        raise ConfigError(f"activation width a must be an integer in [2, 24], got {a!r}")
    return -(2 ** (int(a) - 1)), 2 ** (int(a) - 1) - 1


def check_fixed_point(M_rec, M_in, q):
    """Validate the fixed-point parameters of a step; return ``(int(M_rec), int(M_in), int(q))``.

    ``1 <= M_rec < 2^31``, ``0 <= M_in < 2^63``, ``1 <= q <= 62``.
    """
    M_rec, M_in, q = int(M_rec), int(M_in), int(q)
    if not 1 <= M_rec < M_REC_LIMIT:
        raise ConfigError(f"recurrent multiplier M_rec={M_rec} must lie in [1, 2^31)")
    if not 0 <= M_in < M_IN_LIMIT:
        raise ConfigError(f"input multiplier M_in={M_in} must lie in [0, 2^63)")
    if not 1 <= q <= MAX_SHIFT:
        raise ConfigError(f"accumulator shift q={q} must lie in [1, {MAX_SHIFT}]")
    return M_rec, M_in, q


def _split(value):
    """``value = hi 2^20 + lo`` with ``0 <= lo < 2^20`` (int or int64 array), as float64."""
    value = np.asarray(value, dtype=np.int64)
    return (value >> _SPLIT).astype(np.float64), (value & (2**_SPLIT - 1)).astype(np.float64)


def rescale(z, u, M_rec, M_in, b_fine, q):
    """``floor((M_rec z + M_in u + b_fine + 2^(q-1)) / 2^q)``, exactly, in float64.

    Parameters
    ----------
    z, u : ndarray, float64 integers with ``|z|, |u| < 2^31``, broadcastable together
    M_rec, M_in : int, multipliers (see :func:`check_fixed_point`)
    b_fine : int or int64 ndarray broadcastable with ``z``
    q : int, ``1 <= q <= 62``

    Returns
    -------
    ndarray float64, the broadcast shape. Exact whenever ``|result| < 2^53`` and the
    accumulator fits int64 (:func:`check_bounds`); a larger result is off by less than
    ``2^-52`` relative, far outside every ``R_a``, so it saturates all the same.

    Notes
    -----
    Write ``X = X_hi 2^20 + X_lo`` (``0 <= X_lo < 2^20``) for ``M_rec``, ``M_in``,
    ``b_fine`` and ``2^(q-1)``. Then ``acc + 2^(q-1) = 2^20 high + low`` with::

        low  = M_rec_lo z + M_in_lo u + b_lo + half_lo       |low|  < 2^53
        high = M_rec_hi z + M_in_hi u + b_hi + half_hi       |high| < 2^44 (acc < 2^63)

    and with ``carry = floor(low / 2^20)``, ``H = high + carry``, ``r = low - carry 2^20``
    (``0 <= r < 2^20``): ``acc + 2^(q-1) = 2^20 H + r``. Dividing by ``2^q``: for ``q >= 20``
    ``r`` cannot change the floor and the result is ``floor(H / 2^(q-20))``; for ``q < 20``
    it is ``H 2^(20-q) + floor(r / 2^q)``.
    """
    z = np.asarray(z, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    M_rec, M_in, q = check_fixed_point(M_rec, M_in, q)
    rec_hi, rec_lo = _split(M_rec)
    in_hi, in_lo = _split(M_in)
    b_hi, b_lo = _split(b_fine)
    half_hi, half_lo = _split(2 ** (q - 1))
    low = rec_lo * z + in_lo * u + b_lo + half_lo
    high = rec_hi * z + in_hi * u + b_hi + half_hi
    carry = np.floor(low / 2.0**_SPLIT)
    H = high + carry
    if q >= _SPLIT:
        return np.floor(H / 2.0 ** (q - _SPLIT))
    r = low - carry * 2.0**_SPLIT
    return H * 2.0 ** (_SPLIT - q) + np.floor(r / 2.0**q)


def saturate(v, a):
    """Clamp float64 integers to the ``a``-bit signed range ``R_a``."""
    low, high = activation_range(a)
    return np.clip(v, low, high)


def integer_bounds(m, U_int, V_int, b_fine, c_int, M_rec, M_in, q, a):
    """Worst-case magnitudes of every intermediate of one step, for any input in ``R_a``.

    Parameters
    ----------
    m : int, block size
    U_int : (n, d_in) integer codes
    V_int : (d_out, n) integer codes
    b_fine : (n,) integers, the bias at accumulator resolution
    c_int : (d_out,) integers
    M_rec, M_in, q : int, the multipliers and their common shift
    a : int, activation width

    Returns
    -------
    dict of int: ``fwht`` (``m 2^(a-1)``, the bound on ``|z|``), ``input_acc``
    (``max_i sum_j |U_int[i, j]| 2^(a-1)``, on ``|u|``), ``accumulator`` (on
    ``|acc| + 2^(q-1)``), ``readout`` (on ``|V_int relu(h) + c_int|``). ``fwht``,
    ``input_acc`` and ``readout`` must stay at most ``2^31 - 1`` (int32),
    ``accumulator`` at most ``2^63 - 1`` (int64); see :func:`check_bounds`.
    """
    high = activation_range(a)[1]
    V_int = np.asarray(V_int, dtype=np.int64)
    c_int = np.asarray(c_int, dtype=np.int64)
    fwht_bound, input_acc = _step_bounds(m, U_int, a)
    readout = (int(np.abs(V_int).sum(axis=1).max(initial=0)) * high
               + int(np.abs(c_int).max(initial=0)))
    return {"fwht": fwht_bound, "input_acc": input_acc,
            "accumulator": accumulator_bound(m, U_int, b_fine, M_rec, M_in, q, a),
            "readout": readout}


def _step_bounds(m, U_int, a):
    """Bounds on ``|z|`` (``m 2^(a-1)``) and ``|U_int x|`` for inputs in ``R_a``."""
    x_max = -activation_range(a)[0]
    U_int = np.asarray(U_int, dtype=np.int64)
    return int(m) * x_max, int(np.abs(U_int).sum(axis=1).max(initial=0)) * x_max


def accumulator_bound(m, U_int, b_fine, M_rec, M_in, q, a):
    """Worst case of ``|M_rec (s * z) + M_in U_int x + b_fine| + 2^(q-1)`` (a Python int).

    Parameters as in :func:`integer_bounds`. Computed with Python integers, so it can be
    compared with ``2^63 - 1`` without overflowing.
    """
    fwht_bound, input_acc = _step_bounds(m, U_int, a)
    b_max = max((abs(int(v)) for v in np.asarray(b_fine).ravel()), default=0)
    return int(M_rec) * fwht_bound + int(M_in) * input_acc + b_max + 2 ** (int(q) - 1)


BOUND_LIMITS = {"fwht": ("int32", INT32_MAX), "input_acc": ("int32", INT32_MAX),
                "accumulator": ("int64", INT64_MAX), "readout": ("int32", INT32_MAX)}


def check_bounds(bounds):
    """Raise :class:`IntegerRangeError` when a bound of :func:`integer_bounds` exceeds its type."""
    over = [f"{k} <= {v} (2^{np.log2(float(v)):.1f}) exceeds {BOUND_LIMITS[k][0]}"
            for k, v in bounds.items() if v > BOUND_LIMITS[k][1]]
    if over:
        raise IntegerRangeError(
            "integer model rejected: worst-case intermediates overflow: " + "; ".join(over)
            + "; use fewer activation bits a, smaller blocks or a smaller shift q")
    return bounds


def check_integer_args(s, m, U_int, b_fine, V_int, c_int, M_rec, M_in, q, a, x_int,
                       many_to_many):
    """Shared validation of the integer forward pass arguments (both engines).

    Returns
    -------
    dict with the validated arrays (``x_int`` checked within ``R_a``) and ``n``, ``m``,
    ``T_out``, ``low``, ``high``, ``M_rec``, ``M_in``, ``q`` as ints, and ``bounds``.
    """
    arrays = {}
    for name, value, ndim, layout in (("s", s, 1, "(n,)"), ("U_int", U_int, 2, "(n, d_in)"),
                                      ("b_fine", b_fine, 1, "(n,)"),
                                      ("V_int", V_int, 2, "(d_out, n)"),
                                      ("c_int", c_int, 1, "(d_out,)"),
                                      ("x_int", x_int, 3, "(B, T, d_in)")):
        value = np.asarray(value)
        if value.dtype.kind not in "iu" or value.dtype == np.uint64:
            raise TypeError(f"{name} must hold integers of at most 64 bits (signed), got "
                            f"dtype {value.dtype}")
        check_ndim(value, ndim, name, layout)
        arrays[name] = value
    n = check_power_of_two(arrays["s"].shape[0], "hidden size n (length of s)")
    m = check_block_size(n, m)
    if not np.all(np.abs(arrays["s"].astype(np.int64)) == 1):
        raise ConfigError("s must hold signs in {-1, +1}")
    d_in = arrays["U_int"].shape[1]
    d_out = arrays["V_int"].shape[0]
    for name, shape in (("U_int", (n, d_in)), ("b_fine", (n,)), ("V_int", (d_out, n)),
                        ("c_int", (d_out,))):
        if arrays[name].shape != shape:
            raise ShapeError(f"{name} has shape {arrays[name].shape}, expected {shape} "
                             f"(n = {n} from s)")
    x = arrays["x_int"]
    if x.shape[2] != d_in:
        raise ShapeError(f"x_int has {x.shape[2]} input features (shape {x.shape}), "
                         f"U_int expects d_in = {d_in}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ShapeError(f"x_int must hold at least one sequence of one step, got {x.shape}")
    low, high = activation_range(a)
    if x.min() < low or x.max() > high:
        raise IntegerRangeError(f"x_int holds values in [{x.min()}, {x.max()}], outside the "
                                f"{a}-bit range [{low}, {high}]")
    M_rec, M_in, q = check_fixed_point(M_rec, M_in, q)
    bounds = check_bounds(integer_bounds(m, arrays["U_int"], arrays["V_int"], arrays["b_fine"],
                                         arrays["c_int"], M_rec, M_in, q, a))
    T_out = x.shape[1] if many_to_many else 1
    return {**arrays, "n": n, "m": m, "T_out": T_out, "low": low, "high": high,
            "M_rec": M_rec, "M_in": M_in, "q": q, "bounds": bounds}


def integer_forward(s, m, U_int, b_fine, V_int, c_int, M_rec, M_in, q, a, x_int, *,
                    many_to_many):
    """Integer HadamRNN over whole sequences, simulated exactly in float64.

    Parameters
    ----------
    s : (n,) integer signs in {-1, +1}
    m : int, block size (power of two dividing ``n``)
    U_int : (n, d_in) integer input codes (int8 in exported models)
    b_fine : (n,) integer recurrent bias in units of ``S_h / 2^q`` (int64 in exported models)
    V_int : (d_out, n) integer output codes
    c_int : (d_out,) integer output bias, in logit units
    M_rec : int, recurrent multiplier, ``~ 2^q / sqrt(m)``
    M_in : int, input multiplier, ``~ 2^q alpha_U S_x / (levels_U S_h)``
    q : int, the common shift of the accumulator
    a : int, activation width
    x_int : (B, T, d_in) integer inputs within ``R_a``
    many_to_many : bool, logits at every step (else at the last step only)

    Returns
    -------
    h_int : (B, T, n) int32 states after every step
    logits_int : (B, T_out, d_out) int32, ``T_out = T`` or 1

    Raises
    ------
    IntegerRangeError
        ``x_int`` outside ``R_a``, or a worst-case intermediate beyond int32 / int64.
    """
    args = check_integer_args(s, m, U_int, b_fine, V_int, c_int, M_rec, M_in, q, a, x_int,
                              many_to_many)
    s = args["s"].astype(np.float64)
    U = args["U_int"].astype(np.float64)
    V = args["V_int"].astype(np.float64)
    c = args["c_int"].astype(np.float64)
    x = args["x_int"].astype(np.float64)
    B, T, _ = x.shape
    n, T_out = args["n"], args["T_out"]
    h = np.zeros((B, T, n))
    logits = np.zeros((B, T_out, V.shape[0]))
    prev = np.zeros((B, n))
    for t in range(T):
        z = s * fwht(prev, block_size=args["m"])
        u = x[:, t] @ U.T
        prev = saturate(rescale(z, u, args["M_rec"], args["M_in"], args["b_fine"], args["q"]), a)
        h[:, t] = prev
        if t >= T - T_out:
            logits[:, t - (T - T_out)] = np.maximum(prev, 0) @ V.T + c
    return h.astype(np.int32), logits.astype(np.int32)
