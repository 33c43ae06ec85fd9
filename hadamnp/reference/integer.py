"""Integer-only HadamRNN inference, simulated in float64 (reference twin of
:mod:`hadamnp.kernels.integer`).

The scheme is ``shared/spec/integer-inference.md``. Every quantity below is an integer;
this module holds them in float64, where integers are exact below 2**53, and writes every
floor and rounding out, so it can be read as the definition of the arithmetic::

    z       = FWHT_m(h_{t-1})                       block FWHT, exact adds; |z| <= m 2^(a-1)
    z       = s * z                                 sign flips
    r_rec   = mul_round(z, M_rec, q_rec)            factor 1/sqrt(m)
    r_in    = mul_round(U_int x_t, M_in, q_in)      factor alpha_U S_x / (levels_U S_h)
    h_t     = sat_a(r_rec + r_in + b_int)           h_0 = 0
    logits  = V_int relu(h_t) + c_int               every step, or the last one only

with ``mul_round(v, M, q) = floor((v M + 2^(q-1)) / 2^q)`` (the ``2^(q-1)`` term is 0
when ``q = 0``): round half up. A factor that is an exact power of two is stored as
``M = 2^e``, ``q = 0`` (``e >= 0``) or ``M = 1``, ``q = k`` (a rounding shift by ``k``),
so the same formula covers both and an engine may skip the multiply.

``v M`` reaches 2**62 (``|v| < 2^31``, ``M < 2^31``), beyond float64's exact range, so
:func:`mul_round` splits ``M`` into 16-bit halves; every intermediate stays below 2**48.

Layout: batch-first, as the public arrays (see :mod:`hadamnp.conventions`): ``x_int``
``(B, T, d_in)``, ``h_int`` ``(B, T, n)``, ``logits_int`` ``(B, T_out, d_out)``.
"""

import numpy as np

from hadamnp._checks import check_block_size, check_ndim, check_power_of_two
from hadamnp.errors import ConfigError, HadamnpError, ShapeError
from hadamnp.reference.hadamard import fwht

INT32_MAX = 2**31 - 1

# The largest shift q for which v * M + 2^(q-1) still fits int64 (|v M| < 2^62).
MAX_SHIFT = 62


class IntegerRangeError(HadamnpError, ValueError):
    """An integer value or a worst-case intermediate bound leaves its allowed range."""


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


def check_multiplier(M, q, name):
    """Validate a fixed-point multiplier ``M / 2^q``; return ``(int(M), int(q))``.

    ``M`` is either in ``[2^30, 2^31)`` (a general factor) or a power of two ``<= 2^30``
    (an exact power-of-two factor, applied as a shift); ``0 <= q <= 62``.
    """
    M, q = int(M), int(q)
    general = 2**30 <= M < 2**31
    power = 1 <= M <= 2**30 and (M & (M - 1)) == 0
    if not (general or power):
        raise ConfigError(f"{name}: multiplier M={M} must lie in [2^30, 2^31) "
                          "or be a power of two <= 2^30")
    if not 0 <= q <= MAX_SHIFT:
        raise ConfigError(f"{name}: shift q={q} must lie in [0, {MAX_SHIFT}]")
    return M, q


def mul_round(v, M, q):
    """Fixed-point rescaling ``floor((v M + 2^(q-1)) / 2^q)``, exactly, in float64.

    Parameters
    ----------
    v : ndarray, any shape, float64 holding integers with ``|v| < 2^31``
    M : int, ``0 <= M < 2^31``
    q : int, ``0 <= q <= 62``

    Returns
    -------
    ndarray, same shape, float64 integers (exact whenever the result is below 2^53).

    Notes
    -----
    With ``M = M_hi 2^16 + M_lo`` and ``low = v M_lo + 2^(q-1)`` (both products below
    2^47)::

        v M + 2^(q-1) = 2^16 (v M_hi + floor(low / 2^16)) + (low mod 2^16)

    For ``q >= 16`` the last term (in ``[0, 2^16)``) cannot change the floor of the
    division by ``2^q``; for ``q < 16`` the division is split term by term.
    """
    v = np.asarray(v, dtype=np.float64)
    M, q = int(M), int(q)
    M_hi, M_lo = float(M >> 16), float(M & 0xFFFF)
    half = float(2 ** (q - 1)) if q > 0 else 0.0
    low = v * M_lo + half
    if q >= 16:
        carry = np.floor(low / 2.0**16)
        return np.floor((v * M_hi + carry) / 2.0 ** (q - 16))
    return v * M_hi * 2.0 ** (16 - q) + np.floor(low / 2.0**q)


def saturate(v, a):
    """Clamp float64 integers to the ``a``-bit signed range ``R_a``."""
    low, high = activation_range(a)
    return np.clip(v, low, high)


def integer_bounds(m, U_int, V_int, b_int, c_int, M_rec, q_rec, M_in, q_in, a):
    """Worst-case magnitudes of every intermediate of one step, for any input in ``R_a``.

    Parameters
    ----------
    m : int, block size
    U_int : (n, d_in) integer codes
    V_int : (d_out, n) integer codes
    b_int : (n,) integers
    c_int : (d_out,) integers
    M_rec, q_rec, M_in, q_in : int, the two fixed-point multipliers
    a : int, activation width

    Returns
    -------
    dict of int: ``fwht`` (``m 2^(a-1)``, the bound on ``|z|``), ``input_acc``
    (``max_i sum_j |U_int[i, j]| 2^(a-1)``), ``pre_saturation`` (bound on
    ``|r_rec + r_in + b_int|``), ``readout`` (bound on ``|V_int relu(h) + c_int|``).
    Each must stay at most ``2^31 - 1`` (int32); see :func:`check_bounds`.
    """
    low, high = activation_range(a)
    U_int = np.asarray(U_int, dtype=np.int64)
    V_int = np.asarray(V_int, dtype=np.int64)
    b_int = np.asarray(b_int, dtype=np.int64)
    c_int = np.asarray(c_int, dtype=np.int64)
    x_max = -low
    fwht_bound = int(m) * x_max
    input_acc = int(np.abs(U_int).sum(axis=1).max(initial=0)) * x_max

    def rescaled(bound, M, q):
        # |mul_round(v)| <= floor((|v| M + 2^(q-1)) / 2^q) for |v| <= bound.
        return (bound * int(M) + (2 ** (q - 1) if q > 0 else 0)) >> int(q)

    pre = (rescaled(fwht_bound, M_rec, q_rec) + rescaled(input_acc, M_in, q_in)
           + int(np.abs(b_int).max(initial=0)))
    readout = (int(np.abs(V_int).sum(axis=1).max(initial=0)) * high
               + int(np.abs(c_int).max(initial=0)))
    return {"fwht": fwht_bound, "input_acc": input_acc, "pre_saturation": pre,
            "readout": readout}


def check_bounds(bounds):
    """Raise :class:`IntegerRangeError` when a bound of :func:`integer_bounds` exceeds int32."""
    over = {k: v for k, v in bounds.items() if v > INT32_MAX}
    if over:
        detail = ", ".join(f"{k} <= {v} (2^{np.log2(v):.1f})" for k, v in over.items())
        raise IntegerRangeError(
            f"integer model rejected: worst-case intermediates exceed int32 (2^31 - 1) "
            f"before requantisation: {detail}; use fewer activation bits a or smaller "
            "blocks, or rescale")
    return bounds


def check_integer_args(s, m, U_int, b_int, V_int, c_int, M_rec, q_rec, M_in, q_in, a, x_int,
                       many_to_many):
    """Shared validation of the integer forward pass arguments (both engines).

    Returns
    -------
    dict with the validated arrays (int64 views, ``x_int`` checked within ``R_a``) and
    ``n``, ``m``, ``T_out``, ``low``, ``high``, the multipliers as ints, and ``bounds``.
    """
    arrays = {}
    for name, value, ndim, layout in (("s", s, 1, "(n,)"), ("U_int", U_int, 2, "(n, d_in)"),
                                      ("b_int", b_int, 1, "(n,)"),
                                      ("V_int", V_int, 2, "(d_out, n)"),
                                      ("c_int", c_int, 1, "(d_out,)"),
                                      ("x_int", x_int, 3, "(B, T, d_in)")):
        value = np.asarray(value)
        if value.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {value.dtype}")
        check_ndim(value, ndim, name, layout)
        arrays[name] = value
    n = check_power_of_two(arrays["s"].shape[0], "hidden size n (length of s)")
    m = check_block_size(n, m)
    if not np.all(np.abs(arrays["s"].astype(np.int64)) == 1):
        raise ConfigError("s must hold signs in {-1, +1}")
    d_in = arrays["U_int"].shape[1]
    d_out = arrays["V_int"].shape[0]
    for name, shape in (("U_int", (n, d_in)), ("b_int", (n,)), ("V_int", (d_out, n)),
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
    if x.size and (x.min() < low or x.max() > high):
        raise IntegerRangeError(f"x_int holds values in [{x.min()}, {x.max()}], outside the "
                                f"{a}-bit range [{low}, {high}]")
    M_rec, q_rec = check_multiplier(M_rec, q_rec, "recurrent multiplier (M_rec, q_rec)")
    M_in, q_in = check_multiplier(M_in, q_in, "input multiplier (M_in, q_in)")
    bounds = check_bounds(integer_bounds(m, arrays["U_int"], arrays["V_int"], arrays["b_int"],
                                         arrays["c_int"], M_rec, q_rec, M_in, q_in, a))
    T_out = x.shape[1] if many_to_many else 1
    return {**arrays, "n": n, "m": m, "T_out": T_out, "low": low, "high": high,
            "M_rec": M_rec, "q_rec": q_rec, "M_in": M_in, "q_in": q_in, "bounds": bounds}


def integer_forward(s, m, U_int, b_int, V_int, c_int, M_rec, q_rec, M_in, q_in, a, x_int, *,
                    many_to_many):
    """Integer HadamRNN over whole sequences, simulated exactly in float64.

    Parameters
    ----------
    s : (n,) integer signs in {-1, +1}
    m : int, block size (power of two dividing ``n``)
    U_int : (n, d_in) integer input codes (int8 in exported models)
    b_int : (n,) integer recurrent bias, in state units ``S_h``
    V_int : (d_out, n) integer output codes
    c_int : (d_out,) integer output bias, in logit units
    M_rec, q_rec : int, recurrent multiplier (factor ``1/sqrt(m)``)
    M_in, q_in : int, input multiplier (factor ``alpha_U S_x / (levels_U S_h)``)
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
        ``x_int`` outside ``R_a``, or worst-case intermediates beyond int32.
    """
    args = check_integer_args(s, m, U_int, b_int, V_int, c_int, M_rec, q_rec, M_in, q_in, a,
                              x_int, many_to_many)
    s = args["s"].astype(np.float64)
    U = args["U_int"].astype(np.float64)
    b = args["b_int"].astype(np.float64)
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
        r_rec = mul_round(z, args["M_rec"], args["q_rec"])
        r_in = mul_round(x[:, t] @ U.T, args["M_in"], args["q_in"])
        prev = saturate(r_rec + r_in + b, a)
        h[:, t] = prev
        if t >= T - T_out:
            logits[:, t - (T - T_out)] = np.maximum(prev, 0) @ V.T + c
    return h.astype(np.int32), logits.astype(np.int32)
