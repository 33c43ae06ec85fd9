"""Post-training conversion of a trained HadamRNN to an integer-only model.

The scheme (``docs/integer-inference.md``) rounds once per step (arithmetic and
rationale: :mod:`hadamnp.reference.integer`). The float model

    h_t = s * (S_m h_{t-1}) / sqrt(m) + U~ x_t + b,     y_t = V~ relu(h_t) + c,
    U~ = (alpha_U / levels_U) U_int,   V~ = (alpha_V / levels_V) V_int

(``levels = 2^(p-1)`` for ``p >= 2`` bits, 1 for ``p = 1``) becomes, with power-of-two
scales ``x ~ S_x x_int`` and ``h ~ S_h h_int``:

- ``U_int``, ``V_int``: the trained quantizer's integer codes (int8; ``p <= 8``);
- one shift ``q`` shared by the step's accumulator (:func:`fixed_point`) and
  ``M_rec = round(2^q / sqrt(m))`` (a power of two when ``m = 4^k``),
  ``M_in = round_half_even(2^q alpha_U S_x / (levels_U S_h))``,
  ``b_fine = round_half_even(2^q b / S_h)`` (int64: the bias at resolution ``2^-q``
  state units);
- ``c_int = round_half_even(c / logits_scale)``, ``logits_scale = alpha_V S_h / levels_V``
  (kept as a float for reference only: ``argmax`` needs no float).

Calibration (:func:`calibrate`) picks ``S_x`` and ``S_h`` from training-set statistics:
the smallest power of two ``S`` with ``stat <= S (2^(a-1) - 1)``, where ``stat`` is

- for ``S_x``: ``max |x|``; inputs that are all integers inside ``R_a`` (one-hot, tokens)
  use ``S_x = 1`` so they are represented exactly;
- for ``S_h``: by default ``max |h_t|`` over all sequences, steps and units of the float
  model's forward pass; with ``percentile=q``, the ``q``-th percentile over the calibration
  sequences of each sequence's peak ``max_{t,i} |h_t,i|`` (so about ``100 - q`` percent of
  those sequences saturate somewhere).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from hadamnp import conventions
from hadamnp._checks import check_finite
from hadamnp.errors import ConfigError, IntegerRangeError, ShapeError
from hadamnp.models.protocol import check_inputs
from hadamnp.reference.integer import (INT64_MAX, M_IN_LIMIT, MAX_SHIFT,
                                       accumulator_bound, activation_range, check_bounds,
                                       check_fixed_point, integer_bounds)

ENGINES = ("numba", "reference")


def power_of_two_exponent(stat, a):
    """Smallest ``e`` with ``stat <= 2^e (2^(a-1) - 1)`` (``e = 0`` when ``stat == 0``).

    Parameters
    ----------
    stat : float >= 0, the calibration statistic (a maximum magnitude)
    a : int, activation width

    Returns
    -------
    int
    """
    stat = float(stat)
    if not math.isfinite(stat) or stat < 0:
        raise ConfigError(f"calibration statistic must be finite and >= 0, got {stat}")
    if stat == 0:
        return 0
    top = activation_range(a)[1]
    e = math.ceil(math.log2(stat / top))
    # log2 is inexact near powers of two: settle the boundary with exact comparisons.
    while math.ldexp(top, e - 1) >= stat:
        e -= 1
    while math.ldexp(top, e) < stat:
        e += 1
    return e


def default_shift(m):
    """The shift ``q = 30 + ceil(log2(m) / 2)``: the one that puts ``M_rec`` in ``[2^30, 2^31)``.

    ``2^q / sqrt(m) = 2^(30 + ceil(k/2) - k/2)`` for ``m = 2^k``: ``2^30`` when ``k`` is even,
    ``2^30.5`` when it is odd.
    """
    k = int(m).bit_length() - 1
    return 30 + (k + 1) // 2


def recurrent_multiplier(m, q):
    """``M_rec = round(2^q / sqrt(m))``, the nearest integer, computed exactly.

    ``2^q / sqrt(m) = sqrt(N)`` with ``N = 2^(2q) / m`` an integer (``m = 2^k``, ``k <= 2q``);
    ``r = isqrt(N)`` and ``sqrt(N)`` is nearer to ``r + 1`` exactly when ``N - r^2 > r``
    (never a tie: the square root of an integer is not a half-integer).

    Parameters
    ----------
    m : int, block size (a power of two)
    q : int >= 0, with ``2^(2q) >= m``

    Returns
    -------
    int
    """
    N = 2 ** (2 * int(q)) // int(m)
    r = math.isqrt(N)
    return r + 1 if N - r * r > r else r


def fixed_point(m, a, r_in, b_state, U_int):
    """Choose the accumulator shift ``q`` and the integers ``M_rec``, ``M_in``, ``b_fine``.

    ``q`` starts at :func:`default_shift` (31 significant bits in ``M_rec``) and is lowered
    one bit at a time, only when needed, until ``M_in`` and ``b_fine`` fit int64 and so does
    the worst-case accumulator
    ``M_rec m 2^(a-1) + M_in max_i sum_j |U_int[i,j]| 2^(a-1) + max |b_fine| + 2^(q-1)``
    (:func:`hadamnp.reference.integer.accumulator_bound`).

    Parameters
    ----------
    m : int, block size
    a : int, activation width
    r_in : float >= 0, the input factor ``alpha_U S_x / (levels_U S_h)``
    b_state : (n,) float64, the bias in state units ``b / S_h``
    U_int : (n, d_in) integer input codes

    Returns
    -------
    M_rec : int, ``round(2^q / sqrt(m))`` in ``[1, 2^31)``
    M_in : int, ``round_half_even(2^q r_in)``
    b_fine : (n,) int64, ``round_half_even(2^q b_state)``
    q : int, ``1 <= q <= 62``

    Raises
    ------
    ConfigError
        ``r_in`` or ``b_state`` not finite, or ``r_in < 0``.
    IntegerRangeError
        No shift ``q >= 1`` keeps the accumulator within int64.
    """
    r_in = float(r_in)
    b_state = np.asarray(b_state, dtype=np.float64)
    if not math.isfinite(r_in) or r_in < 0:
        raise ConfigError(f"input factor must be finite and >= 0, got {r_in}")
    check_finite(b_state, "b_state")
    activation_range(a)
    for q in range(min(default_shift(m), MAX_SHIFT), 0, -1):
        M_rec = recurrent_multiplier(m, q)
        M_in = round(math.ldexp(r_in, q))  # ldexp is exact; round: half to even
        b_fine = conventions.round_half_even(np.ldexp(b_state, q))
        if M_in >= M_IN_LIMIT or float(np.abs(b_fine).max(initial=0.0)) > INT64_MAX:
            continue
        b_fine = b_fine.astype(np.int64)
        if accumulator_bound(m, U_int, b_fine, M_rec, M_in, q, a) <= INT64_MAX:
            return M_rec, M_in, b_fine, q
    raise IntegerRangeError(f"no accumulator shift q >= 1 keeps M_rec z + M_in U_int x + b_fine "
                            f"within int64 (m={m}, a={a}, input factor {r_in:.3g}, "
                            f"max |b / S_h| = {np.abs(b_state).max(initial=0.0):.3g})")


def quantize_inputs(x, exp_x, a):
    """Integer inputs ``x_int = sat_a(round_half_even(x / 2^exp_x))``.

    Parameters
    ----------
    x : (B, T, d_in) float inputs
    exp_x : int, exponent of ``S_x``
    a : int, activation width

    Returns
    -------
    (B, T, d_in) int32
    """
    x = np.asarray(x, dtype=np.float64)
    check_finite(x, "x")
    low, high = activation_range(a)
    return np.clip(conventions.round_half_even(np.ldexp(x, -int(exp_x))), low, high).astype(
        np.int32)


def _check_convertible(model):
    """The integer engine runs linear HadamRNNs with k-bit uniform U and V, k <= 8."""
    from hadamnp.models.hadamrnn import HadamRNN
    from hadamnp.models.quantizers import Uniform

    name = model.describe()["name"]
    if "embedding" in model.describe():
        raise ConfigError(f"integer inference takes feature inputs; model {name!r} sits behind "
                          f"an embedding table (token inputs) and cannot be exported")
    if not isinstance(model, HadamRNN) or model.config.recurrence != "hadamard":
        raise ConfigError(f"integer inference needs a HadamRNN with the Hadamard recurrence "
                          f"(hadamrnn, block-hadamrnn), got model {name!r}")
    config = model.config
    if config.nonlinear:
        raise ConfigError("integer inference implements the linear recurrence; "
                          "nonlinear=True models are not supported")
    for option, quantizer in (("quant_in", model.U.quantizer), ("quant_out", model.V.quantizer)):
        if not isinstance(quantizer, Uniform) or not 1 <= quantizer.bits <= 8:
            raise ConfigError(f"integer inference needs U and V quantized to 1..8 bits "
                              f"(int8 codes, 'uniform:1' .. 'uniform:8'); "
                              f"{option}={getattr(config, option)!r}")


def calibrate(model, params, x_calib, a, percentile=None, batch_size=256):
    """Choose the power-of-two scales ``S_x = 2^exp_x`` and ``S_h = 2^exp_h``.

    Parameters
    ----------
    model : HadamRNN (Hadamard recurrence, linear, U/V ``uniform:1`` .. ``uniform:8``)
    params : dict of the trained (latent) parameters
    x_calib : (B, T, d_in) calibration inputs (training-set sequences)
    a : int, activation width
    percentile : float in (0, 100], optional
        ``None`` (default): ``S_h`` covers ``max |h|``. Otherwise it covers this percentile
        of the per-sequence peaks ``max_{t,i} |h_t,i|`` (see the module docstring).
    batch_size : int, sequences per forward pass (memory only; results do not depend on it)

    Returns
    -------
    dict: ``exp_x``, ``exp_h`` (int), ``method`` (``"max"`` or ``"percentile"``),
    ``percentile``, ``max_abs_x``, ``stat_h`` (the covered ``|h|``), ``max_abs_h``,
    ``num_sequences``, ``inputs_integer`` (bool).
    """
    _check_convertible(model)
    low, high = activation_range(a)
    x = check_inputs(x_calib, model.config.input_size, np.float64, "x_calib")
    if percentile is not None and not 0 < float(percentile) <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    max_abs_x = float(np.max(np.abs(x)))
    inputs_integer = bool(np.all(x == np.round(x)) and x.min() >= low and x.max() <= high)
    exp_x = 0 if inputs_integer else power_of_two_exponent(max_abs_x, a)
    peaks = []
    for lo in range(0, x.shape[0], int(batch_size)):
        _, cache = model.forward(params, x[lo:lo + int(batch_size)])
        peaks.append(np.max(np.abs(model.states(cache)["h"]), axis=(1, 2)))
    peaks = np.concatenate(peaks).astype(np.float64)
    max_abs_h = float(peaks.max())
    stat_h = max_abs_h if percentile is None else float(np.percentile(peaks, float(percentile)))
    return {"exp_x": exp_x, "exp_h": power_of_two_exponent(stat_h, a),
            "method": "max" if percentile is None else "percentile",
            "percentile": None if percentile is None else float(percentile),
            "max_abs_x": max_abs_x, "stat_h": stat_h, "max_abs_h": max_abs_h,
            "num_sequences": int(x.shape[0]), "inputs_integer": inputs_integer}


@dataclass(frozen=True, eq=False)
class IntegerModel:
    """An integer-only HadamRNN (see the module docstring for the meaning of each field).

    Attributes
    ----------
    n, m, d_in, d_out, a, p_in, p_out : int
        Hidden size, block size, input and output sizes, activation width, bit widths of
        ``U`` and ``V``.
    signs : (n,) int8 in {-1, +1}
    U_int : (n, d_in) int8
    V_int : (d_out, n) int8
    b_fine : (n,) int64, the bias in units of ``S_h / 2^q``
    c_int : (d_out,) int32
    exp_x, exp_h : int, ``S_x = 2^exp_x``, ``S_h = 2^exp_h``
    M_rec : int, recurrent multiplier ``~ 2^q / sqrt(m)``, in ``[1, 2^31)``
    M_in : int, input multiplier ``~ 2^q alpha_U S_x / (levels_U S_h)``, in ``[0, 2^63)``
    q : int, the common shift of the accumulator, in ``[1, 62]``
    logits_scale : float, ``logits ~ logits_scale * logits_int`` (reference only)
    many_to_many : bool
    calibration : dict, how the scales were chosen (JSON-serialisable)
    """

    n: int
    m: int
    d_in: int
    d_out: int
    a: int
    p_in: int
    p_out: int
    signs: np.ndarray
    U_int: np.ndarray
    V_int: np.ndarray
    b_fine: np.ndarray
    c_int: np.ndarray
    exp_x: int
    exp_h: int
    M_rec: int
    M_in: int
    q: int
    logits_scale: float
    many_to_many: bool
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        self.check()

    def bounds(self):
        """Worst-case magnitudes of the intermediates (see
        :func:`hadamnp.reference.integer.integer_bounds`)."""
        return integer_bounds(self.m, self.U_int, self.V_int, self.b_fine, self.c_int,
                              self.M_rec, self.M_in, self.q, self.a)

    def check(self):
        """Validate dtypes, shapes and the int32 / int64 bounds; raise on any violation."""
        expected = {"signs": ((self.n,), np.int8), "U_int": ((self.n, self.d_in), np.int8),
                    "V_int": ((self.d_out, self.n), np.int8), "b_fine": ((self.n,), np.int64),
                    "c_int": ((self.d_out,), np.int32)}
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = (getattr(value, "shape", None), getattr(value, "dtype", None))
                raise ShapeError(f"IntegerModel.{name} must be {np.dtype(dtype)} of shape "
                                 f"{shape}, got shape {got[0]} dtype {got[1]}")
        if not np.all(np.abs(self.signs.astype(np.int64)) == 1):
            raise ConfigError("IntegerModel.signs must hold -1 and +1 only")
        for name, p in (("U_int", self.p_in), ("V_int", self.p_out)):
            low, high = (-1, 1) if p == 1 else (-(2 ** (p - 1)), 2 ** (p - 1) - 1)
            codes = getattr(self, name)
            if codes.size and (codes.min() < low or codes.max() > high):
                raise ConfigError(f"IntegerModel.{name} holds codes outside the {p}-bit "
                                  f"grid [{low}, {high}]")
        check_fixed_point(self.M_rec, self.M_in, self.q)
        check_bounds(self.bounds())

    def quantize_inputs(self, x):
        """``x_int`` (B, T, d_in) int32 for float inputs ``x`` (B, T, d_in)."""
        return quantize_inputs(x, self.exp_x, self.a)

    def run(self, x_int, engine="numba"):
        """Integer inference on integer inputs.

        Parameters
        ----------
        x_int : (B, T, d_in) integers within ``R_a``
        engine : {"numba", "reference"}
            The compiled engine or the float64 simulation (identical results).

        Returns
        -------
        h_int : (B, T, n) int32
        logits_int : (B, d_out) int32 (many-to-one) or (B, T, d_out) (many-to-many)
        """
        if engine == "numba":
            from hadamnp.kernels.integer import integer_forward
        elif engine == "reference":
            from hadamnp.reference.integer import integer_forward
        else:
            raise ConfigError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
        h, logits = integer_forward(self.signs, self.m, self.U_int, self.b_fine, self.V_int,
                                    self.c_int, self.M_rec, self.M_in, self.q, self.a, x_int,
                                    many_to_many=self.many_to_many)
        return h, (logits if self.many_to_many else logits[:, 0, :])

    def logits(self, logits_int):
        """Float logits ``logits_scale * logits_int`` (for comparison with the float model)."""
        return np.asarray(logits_int, dtype=np.float64) * self.logits_scale


def to_integer(model, params, a, calibration):
    """Convert a trained float HadamRNN to an :class:`IntegerModel`.

    Parameters
    ----------
    model : HadamRNN (Hadamard recurrence, linear, U/V ``uniform:1`` .. ``uniform:8``)
    params : dict of trained latent parameters (``u``, ``U``, ``b``, ``V``, ``c``)
    a : int, activation width (8, 12 and 16 are the useful choices)
    calibration : dict from :func:`calibrate` (at least ``exp_x`` and ``exp_h``)

    Returns
    -------
    IntegerModel

    Raises
    ------
    ConfigError
        Unsupported configuration or a multiplier out of range.
    IntegerRangeError
        A worst-case intermediate exceeds int32 (``z``, ``U_int x``, readout; e.g. ``a`` too
        large for ``m``) or, for every shift ``q``, the int64 accumulator.
    """
    _check_convertible(model)
    activation_range(a)
    model.check_params(params)
    config = model.config
    n, m = config.hidden_size, config.m
    exp_x, exp_h = int(calibration["exp_x"]), int(calibration["exp_h"])
    qU, qV = model.U.quantizer, model.V.quantizer
    U_codes, alpha_U = qU.codes(params["U"])
    V_codes, alpha_V = qV.codes(params["V"])
    levels_U, levels_V = qU.grid()[2], qV.grid()[2]
    r_in = math.ldexp(float(alpha_U) / levels_U, exp_x - exp_h)
    b_state = np.ldexp(params["b"].astype(np.float64), -exp_h)
    M_rec, M_in, b_fine, q = fixed_point(m, a, r_in, b_state, U_codes)
    logits_scale = math.ldexp(float(alpha_V) / levels_V, exp_h)
    c_int = conventions.round_half_even(params["c"].astype(np.float64) / logits_scale)
    if np.abs(c_int).max() > 2**31 - 1:
        raise ConfigError(f"c_int does not fit int32 (max |c_int| = {np.abs(c_int).max():.3g}); "
                          "the state scale is too small")
    return IntegerModel(
        n=n, m=m, d_in=config.input_size, d_out=config.output_size, a=int(a),
        p_in=int(qU.bits), p_out=int(qV.bits),
        signs=conventions.sign(params["u"].astype(np.float64)).astype(np.int8),
        U_int=U_codes.astype(np.int8), V_int=V_codes.astype(np.int8),
        b_fine=b_fine, c_int=c_int.astype(np.int32),
        exp_x=exp_x, exp_h=exp_h, M_rec=M_rec, M_in=M_in, q=q, logits_scale=logits_scale,
        many_to_many=bool(config.many_to_many), calibration=dict(calibration))


def convert(model, params, x_calib, a=8, percentile=None):
    """:func:`calibrate` on ``x_calib`` then :func:`to_integer`: the one-call conversion."""
    return to_integer(model, params, a, calibrate(model, params, x_calib, a, percentile))


def agreement(model, params, imodel, x, y=None, engine="numba", batch_size=250):
    """Compare the integer model with the float model on float inputs ``x``.

    Parameters
    ----------
    model, params : the float model
    imodel : IntegerModel converted from it
    x : (B, T, d_in) float inputs
    y : (B,) or (B, T) int targets, optional (adds the two accuracies)
    engine : {"numba", "reference"}
    batch_size : int, sequences per forward pass (memory only)

    Returns
    -------
    dict: ``argmax_agreement`` (fraction of scored positions where both argmaxes agree),
    ``max_abs_logit_error`` and ``rms_logit_error`` (of ``logits_scale * logits_int``
    against the float logits), ``max_abs_logit`` (float), ``saturated_fraction`` (of
    ``h_int`` entries at the edge of ``R_a``), ``final_state_error`` (``||S_h h_int_T -
    h_T|| / ||h_T||``, norms over all sequences and units at the last step),
    ``float_logits``, ``int_logits`` (arrays); with ``y``: ``float_accuracy`` and
    ``int_accuracy``.
    """
    low, high = activation_range(imodel.a)
    float_parts, int_parts = [], []
    saturated = 0
    state_err2 = state_norm2 = 0.0
    for lo in range(0, x.shape[0], int(batch_size)):
        xb = x[lo:lo + int(batch_size)]
        logits, cache = model.forward(params, xb)
        float_parts.append(np.asarray(logits, dtype=np.float64))
        h_int, logits_int = imodel.run(imodel.quantize_inputs(xb), engine=engine)
        int_parts.append(logits_int)
        saturated += int(np.count_nonzero((h_int == low) | (h_int == high)))
        h_last = model.states(cache)["h"][:, -1].astype(np.float64)
        state_err2 += float(np.sum((np.ldexp(h_int[:, -1], imodel.exp_h) - h_last) ** 2))
        state_norm2 += float(np.sum(h_last**2))
    float_logits = np.concatenate(float_parts)
    logits_int = np.concatenate(int_parts)
    err = imodel.logits(logits_int) - float_logits
    int_argmax = logits_int.argmax(-1)  # logits_scale > 0: no float needed
    result = {"argmax_agreement": float(np.mean(int_argmax == float_logits.argmax(-1))),
              "max_abs_logit_error": float(np.abs(err).max()),
              "rms_logit_error": float(np.sqrt(np.mean(err**2))),
              "max_abs_logit": float(np.abs(float_logits).max()),
              "saturated_fraction": saturated / (x.shape[0] * x.shape[1] * imodel.n),
              "final_state_error": math.sqrt(state_err2 / state_norm2) if state_norm2 else 0.0,
              "float_logits": float_logits, "int_logits": logits_int}
    if y is not None:
        y = np.asarray(y)
        result["float_accuracy"] = float(np.mean(float_logits.argmax(-1) == y))
        result["int_accuracy"] = float(np.mean(int_argmax == y))
    return result


def run_data(path, data_dir=None, npz=None, text=None):
    """The float model and task of a training run (``path``: run directory or checkpoint).

    ``data_dir`` / ``npz`` / ``text``: where the run's data are now, when they moved since
    training.

    Returns
    -------
    model : the trained model (built through the registry)
    params : dict of trained parameters
    task : hadamnp.io.datasets.TaskData
    """
    from hadamnp.runs.plumbing import build_task, relocate, restore

    model, params, run_config = restore(path)
    return model, params, build_task(relocate(run_config, data_dir, npz, text))


def convert_run(path, a, calib_size=1000, percentile=None, data_dir=None, *, npz=None,
                text=None, out=None):
    """Convert the checkpoint of a training run, calibrating on its first training batches.

    Parameters
    ----------
    path : str or os.PathLike, run directory or checkpoint file
    a : int, activation width
    calib_size : int, calibration sequences (epoch-0 training batches, in order)
    percentile : float, optional (see :func:`calibrate`)
    data_dir, npz, text : str, optional, MNIST directory, ``.npz`` archive or text file
        when it moved since training
    out : str or os.PathLike, optional
        The file the caller will write the result to: refused (``ConfigError``) before
        the conversion when it is the checkpoint, a file of the run directory or a data file of
        the run (:func:`hadamnp.runs.integrity.check_output`).

    Returns
    -------
    IntegerModel
    """
    from hadamnp.runs.integrity import check_output
    from hadamnp.runs.plumbing import task_inputs

    model, params, task = run_data(path, data_dir, npz, text)
    if out is not None:
        check_output(out, path, task)
    x, _ = task_inputs(task, model.config.dtype, int(calib_size))
    return convert(model, params, x, a=a, percentile=percentile)
