"""Export an :class:`~hadamnp.deploy.integer.IntegerModel` as a compact ``.npz`` or a C header.

Both files carry the same fields (the scheme: :mod:`hadamnp.reference.integer`; one step is
``h = sat_a((M_rec (s * FWHT_m(h)) + M_in U_int x + b_fine + 2^(q-1)) >> q)``):

=====================  ===========================  =========================================
field                  npz                          C header
=====================  ===========================  =========================================
conventions version    ``meta.conventions_version`` ``HADAMRNN_CONVENTIONS_VERSION``
n, m, d_in, d_out      ``meta.n`` ...               ``HADAMRNN_N``, ``HADAMRNN_M`` ...
a, p_in, p_out         ``meta.a`` ...               ``HADAMRNN_A``, ``HADAMRNN_P_IN`` ...
sign bits of s         ``sign_bits`` (ceil(n/64),)  ``hadamrnn_sign_bits[]`` uint64
                       uint64, LSB-first, bit 1=-1
U_int                  ``U_int`` (n, d_in) int8     ``hadamrnn_U_int[]`` row-major
V_int                  ``V_int`` (d_out, n) int8    ``hadamrnn_V_int[]`` row-major
b_fine                 ``b_fine`` (n,) int64        ``hadamrnn_b_fine[]`` int64_t
c_int                  ``c_int`` (d_out,) int32     ``hadamrnn_c_int[]`` int32_t
S_x, S_h exponents     ``meta.exp_x``, ``exp_h``    ``HADAMRNN_EXP_X``, ``HADAMRNN_EXP_H``
M_rec (< 2^31)         ``meta.M_rec``               ``HADAMRNN_M_REC`` (``INT64_C``)
M_in (< 2^63)          ``meta.M_in``                ``HADAMRNN_M_IN`` (``INT64_C``)
shift q                ``meta.q``                   ``HADAMRNN_Q``
logits scale (float)   ``meta.logits_scale``        ``HADAMRNN_LOGITS_SCALE``
many_to_many           ``meta.many_to_many``        ``HADAMRNN_MANY_TO_MANY``
=====================  ===========================  =========================================

``M_rec`` is a power of two when ``m = 4^k`` (the multiply is a shift). The exporter
validates every bound (``z``, ``U_int x``, readout in int32; the accumulator in int64) and
refuses a model that could overflow.

The npz is written by :func:`hadamnp.io.npzfile.write_npz_atomic` (format
``"hadamnp-integer-model"``, version 1, content checksum).
"""

import math

import numpy as np

from hadamnp import __version__, conventions
from hadamnp.deploy.integer import IntegerModel
from hadamnp.errors import CheckpointError
from hadamnp.io.atomic import write_atomic
from hadamnp.io.npzfile import read_npz_checked, write_npz_atomic

EXPORT_FORMAT = "hadamnp-integer-model"
EXPORT_VERSION = 1

SCALAR_FIELDS = ("n", "m", "d_in", "d_out", "a", "p_in", "p_out", "exp_x", "exp_h",
                 "M_rec", "M_in", "q", "logits_scale", "many_to_many")
ARRAY_FIELDS = ("sign_bits", "U_int", "V_int", "b_fine", "c_int")


def _pack_signs(signs):
    from hadamnp.reference.bitpack import pack_signs

    return pack_signs(signs)


def _unpack_signs(words, n):
    from hadamnp.reference.bitpack import unpack_signs

    return unpack_signs(words, n)


def export_fields(imodel):
    """The exported fields of an integer model.

    Parameters
    ----------
    imodel : IntegerModel

    Returns
    -------
    arrays : dict: ``sign_bits`` (ceil(n/64),) uint64, ``U_int``, ``V_int`` int8,
        ``b_fine`` int64, ``c_int`` int32
    meta : dict: format, version, the scalar fields, conventions, calibration, hadamnp
        version
    """
    imodel.check()
    arrays = {"sign_bits": np.asarray(_pack_signs(imodel.signs), dtype=np.uint64),
              "U_int": imodel.U_int, "V_int": imodel.V_int, "b_fine": imodel.b_fine,
              "c_int": imodel.c_int}
    scalars = {}
    for name in SCALAR_FIELDS:
        value = getattr(imodel, name)
        scalars[name] = (bool(value) if isinstance(value, (bool, np.bool_))
                         else float(value) if name == "logits_scale" else int(value))
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **scalars,
            "model": "hadamrnn" if imodel.m == imodel.n else "block-hadamrnn",
            "calibration": imodel.calibration, "hadamnp_version": __version__,
            **conventions.as_dict()}
    return arrays, meta


def model_from_fields(arrays, meta):
    """Rebuild an :class:`IntegerModel` from exported fields (inverse of :func:`export_fields`)."""
    missing = [k for k in ARRAY_FIELDS if k not in arrays] + \
        [k for k in SCALAR_FIELDS if k not in meta]
    if missing:
        raise CheckpointError(f"exported integer model lacks field(s) {missing}")
    if meta.get("conventions_version") != conventions.CONVENTIONS_VERSION:
        raise CheckpointError(f"exported model uses conventions version "
                              f"{meta.get('conventions_version')!r}; this hadamnp follows "
                              f"version {conventions.CONVENTIONS_VERSION}")
    n = int(meta["n"])
    signs = np.asarray(_unpack_signs(arrays["sign_bits"], n)).astype(np.int8)
    return IntegerModel(**{k: meta[k] for k in SCALAR_FIELDS}, signs=signs,
                        U_int=arrays["U_int"], V_int=arrays["V_int"], b_fine=arrays["b_fine"],
                        c_int=arrays["c_int"], calibration=meta.get("calibration", {}))


def export_npz(imodel, path):
    """Write ``imodel`` to the ``.npz`` file ``path`` (atomically; see the module docstring)."""
    arrays, meta = export_fields(imodel)
    write_npz_atomic(path, arrays, meta)


def read_export_npz(path):
    """Read an exported ``.npz`` back into an :class:`IntegerModel` (checksum verified)."""
    arrays, meta = read_npz_checked(path, expected_format=EXPORT_FORMAT,
                                    expected_version=EXPORT_VERSION)
    return model_from_fields(arrays, meta)


def _c_array(ctype, name, values, per_line, fmt):
    # Never empty: n, d_in, d_out >= 1 (C forbids zero-length arrays).
    values = np.asarray(values).ravel()
    lines = ["    " + ", ".join(fmt(v) for v in values[lo:lo + per_line]) + ","
             for lo in range(0, values.size, per_line)]
    body = "\n".join(lines)
    return f"static const {ctype} {name}[{values.size}] = {{\n{body}\n}};\n"


def c_header(imodel, guard="HADAMRNN_MODEL_H"):
    """The C99 header text for ``imodel`` (see the module docstring for the names).

    Parameters
    ----------
    imodel : IntegerModel
    guard : str, include-guard macro

    Returns
    -------
    str
    """
    arrays, meta = export_fields(imodel)
    defines = [("CONVENTIONS_VERSION", meta["conventions_version"])]
    for name in SCALAR_FIELDS:
        value = meta[name]
        if name == "logits_scale":
            text = repr(float(value))
        elif isinstance(value, bool):
            text = str(int(value))
        elif name in ("M_rec", "M_in"):
            text = f"INT64_C({value})"
        else:
            text = f"({value})" if value < 0 else str(value)
        defines.append((name.upper(), text))
    out = [f"/* Integer-only HadamRNN model, generated by hadamnp {__version__} "
           "(hadamnp.deploy.export). Do not edit: regenerate with `hadamnp export`.",
           f" * {meta['model']} n={imodel.n} m={imodel.m} d_in={imodel.d_in} "
           f"d_out={imodel.d_out} a={imodel.a} p_in={imodel.p_in} p_out={imodel.p_out}",
           " * Conventions: sign bits LSB-first uint64, bit 1 = -1; matrices row-major.",
           " * Step: h = sat_a((M_REC (s * FWHT_m(h)) + M_IN U_int x + b_fine + 2^(Q-1)) >> Q)",
           " * in int64. HADAMRNN_LOGITS_SCALE is for reference only. */",
           f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", ""]
    out += [f"#define HADAMRNN_{name} {text}" for name, text in defines]
    out.append("")
    out.append(_c_array("uint64_t", "hadamrnn_sign_bits", arrays["sign_bits"], 4,
                        lambda v: f"UINT64_C(0x{int(v):016x})"))
    out.append(_c_array("int8_t", "hadamrnn_U_int", arrays["U_int"], 16, lambda v: str(int(v))))
    out.append(_c_array("int8_t", "hadamrnn_V_int", arrays["V_int"], 16, lambda v: str(int(v))))
    # C99 wants INT64_C's argument unsigned and unsuffixed: the sign goes outside.
    out.append(_c_array("int64_t", "hadamrnn_b_fine", arrays["b_fine"], 4,
                        lambda v: f"{'-' if v < 0 else ''}INT64_C({abs(int(v))})"))
    out.append(_c_array("int32_t", "hadamrnn_c_int", arrays["c_int"], 8, lambda v: str(int(v))))
    out.append(f"#endif /* {guard} */\n")
    return "\n".join(out)


def export_c(imodel, path, guard="HADAMRNN_MODEL_H"):
    """Write the C header of ``imodel`` to ``path`` (text, replaced atomically by
    :func:`hadamnp.io.atomic.write_atomic`)."""
    text = c_header(imodel, guard).encode("ascii")
    write_atomic(path, lambda fileobj: fileobj.write(text))


def deployment_report(imodel):
    """Deployed size and operation counts per step of the float and integer paths.

    Counts are per time step and per sequence (batch 1), for the recurrent update; the
    readout ``V relu(h) + c`` is counted separately (once per scored step). An
    "addition" is an add or subtract, a "multiplication" a real multiply (sign flips,
    shifts and clamps are listed separately and cost no multiply).

    Parameters
    ----------
    imodel : IntegerModel

    Returns
    -------
    dict with
    ``size_bytes``: ``float32_reference`` (the same architecture in float32 with a dense
    ``n x n`` recurrent matrix, the reference of ``HadamRNN.size()``), ``float_model`` (the bits of ``HadamRNN.size()``, docs/hadamrnn.md:
    p-bit U and V, n sign bits, FP32 b, c, two FP32 alphas, rounded up to bytes), ``integer_packed`` (p-bit U and V codes and sign bits packed, int64 ``b_fine``,
    int32 ``c_int``, the scalar fields as 4-byte words, two for the 64-bit ``M_in``),
    ``integer_exported`` (as the exported arrays store them: int8 codes, uint64 sign
    words, int64 ``b_fine``, int32 ``c_int``, the scalars as in ``integer_packed``);
    ``ops_per_step``: for ``float_fwht`` (float FWHT path), ``float_dense`` (dense float
    W), ``integer_fwht`` (this engine) and ``integer_xnor_popcount`` (dense binary W by
    XNOR-popcount over the ``a`` bit-planes of ``h_int``): ``additions``,
    ``multiplications``, ``popcounts``, ``shifts``;
    ``readout_ops``: per scored step, float and integer.
    """
    n, m, d_in, d_out, a = imodel.n, imodel.m, imodel.d_in, imodel.d_out, imodel.a
    log_m = int(math.log2(m))
    scalars = len(SCALAR_FIELDS) + 1  # 4-byte words on the device; M_in takes two
    float_bits = (imodel.p_in * n * d_in + imodel.p_out * d_out * n + n + 32 * (n + d_out)
                  + 2 * 32)
    packed_bits = (imodel.p_in * n * d_in + imodel.p_out * d_out * n + n + 64 * n + 32 * d_out
                   + 32 * scalars)
    exported = (n * d_in + d_out * n + 8 * math.ceil(n / 64) + 8 * n + 4 * d_out + 4 * scalars)
    words = math.ceil(m / 64)
    input_mults = n * d_in
    # U_int x, then the accumulator: M_in u always, M_rec z unless M_rec is a power of two.
    rec_power_of_two = (imodel.M_rec & (imodel.M_rec - 1)) == 0
    integer_mults = input_mults + n + (0 if rec_power_of_two else n)
    # Accumulator: + M_in u, + b_fine, + 2^(q-1) (an engine may fold it into b_fine).
    accumulate = 3 * n
    ops = {
        "float_fwht": {"additions": n * log_m + n * d_in + n, "multiplications": n + input_mults,
                       "popcounts": 0, "shifts": 0},
        "float_dense": {"additions": n * (n - 1) + n * d_in + n,
                        "multiplications": n * n + input_mults, "popcounts": 0, "shifts": 0},
        "integer_fwht": {
            "additions": n * log_m + n * d_in + accumulate,
            "multiplications": integer_mults, "popcounts": 0, "shifts": n},
        "integer_xnor_popcount": {
            # n rows x a bit-planes x ceil(m/64) words; weighted sum of the plane counts.
            "additions": n * a * words + n * d_in + accumulate,
            "multiplications": integer_mults, "popcounts": n * a * words,
            "shifts": n * a + n},
    }
    readout = {"float": {"additions": d_out * n, "multiplications": d_out * n},
               "integer": {"additions": d_out * n, "multiplications": d_out * n}}
    return {"size_bytes": {"float32_reference": 4 * (n * d_in + d_out * n + n * n + n + d_out),
                           "float_model": math.ceil(float_bits / 8),
                           "integer_packed": math.ceil(packed_bits / 8),
                           "integer_exported": exported},
            "ops_per_step": ops, "readout_ops": readout,
            "shape": {"n": n, "m": m, "d_in": d_in, "d_out": d_out, "a": a,
                      "p_in": imodel.p_in, "p_out": imodel.p_out}}


def write_runner_input(path, x_int):
    """Write integer input sequences for the C runner (``examples/c/hadamrnn_int.c``).

    Text format: a first line ``B T d_in``, then one line per step of each sequence
    holding its ``d_in`` integers (sequence-major, then time).

    Parameters
    ----------
    path : str or os.PathLike
    x_int : (B, T, d_in) integers
    """
    x_int = np.asarray(x_int)
    if x_int.ndim != 3 or x_int.dtype.kind not in "iu":
        raise TypeError(f"x_int must be a (B, T, d_in) integer array, got dtype {x_int.dtype} "
                        f"shape {x_int.shape}")
    B, T, d_in = x_int.shape
    lines = [f"{B} {T} {d_in}"]
    # tolist() first: formatting Python ints is several times faster than NumPy scalars.
    lines += [" ".join(map(str, row)) for row in x_int.reshape(B * T, d_in).tolist()]
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def read_runner_output(path, B, T, n, d_out, many_to_many, states=True):
    """Parse the C runner's output into ``(h_int, logits_int)``.

    Output format: one line ``h b t v_0 ... v_{n-1}`` per step and one line
    ``logits b t v_0 ... v_{d_out-1}`` per scored step (every step, or the last one); the
    runner's ``-l`` option writes the logits lines only (``states=False``).

    Returns
    -------
    h_int : (B, T, n) int32, or None when ``states`` is False
    logits_int : (B, d_out) or (B, T, d_out) int32
    """
    T_out = T if many_to_many else 1
    h = np.zeros((B, T, n) if states else (0, 0, n), dtype=np.int64)
    logits = np.zeros((B, T_out, d_out), dtype=np.int64)
    seen_h = np.zeros((B, T) if states else (0, 0), dtype=bool)
    seen_l = np.zeros((B, T_out), dtype=bool)
    with open(path, encoding="ascii") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            kind, b, t, values = parts[0], int(parts[1]), int(parts[2]), parts[3:]
            if kind == "h" and len(values) == n and states:
                h[b, t] = [int(v) for v in values]
                seen_h[b, t] = True
            elif kind == "logits" and len(values) == d_out:
                slot = t - (T - T_out)
                logits[b, slot] = [int(v) for v in values]
                seen_l[b, slot] = True
            else:
                raise CheckpointError(f"{path}:{number}: unexpected line {line.strip()[:60]!r}")
    if not (seen_h.all() and seen_l.all()):
        raise CheckpointError(f"{path}: incomplete output ({int(seen_h.sum())}/"
                              f"{B * T if states else 0} states, "
                              f"{int(seen_l.sum())}/{B * T_out} logits)")
    logits = logits.astype(np.int32)
    return (h.astype(np.int32) if states else None,
            logits if many_to_many else logits[:, 0, :])


def format_runner_output(h_int, logits_int, many_to_many):
    """The C runner's output text for given traces (inverse of :func:`read_runner_output`).

    Parameters
    ----------
    h_int : (B, T, n) integers
    logits_int : (B, d_out) (many-to-one) or (B, T, d_out) integers
    many_to_many : bool

    Returns
    -------
    str
    """
    h_int = np.asarray(h_int)
    logits_int = np.asarray(logits_int)
    if not many_to_many:
        logits_int = logits_int[:, None, :]
    B, T, _ = h_int.shape
    first = T - logits_int.shape[1]
    lines = []
    for b in range(B):
        for t in range(T):
            lines.append(f"h {b} {t} " + " ".join(str(int(v)) for v in h_int[b, t]))
            if t >= first:
                lines.append(f"logits {b} {t} "
                             + " ".join(str(int(v)) for v in logits_int[b, t - first]))
    return "\n".join(lines) + "\n"
