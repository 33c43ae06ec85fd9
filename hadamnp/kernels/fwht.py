"""Numba fast Walsh-Hadamard transform (FWHT) kernels.

Unnormalised, Sylvester-ordered, in independent blocks of ``m`` (see
:mod:`hadamnp.conventions`). Reference twin: :func:`hadamnp.reference.hadamard.fwht`.

Two memory layouts are served:

- :func:`fwht_columns_inplace` transforms along axis 0 of an ``(n, B)`` array. Every
  butterfly adds two contiguous rows of ``B`` values, so the work vectorises across the
  batch. The sequence kernels keep their state in this layout and call it from compiled
  code once per time step.
- :func:`fwht` is the public, validating transform along the last axis of any array
  (rows of length ``n``: the ``(batch, n)`` layout); :func:`fwht_rows_inplace` is its
  kernel without validation, for compiled code.

How it is fast
--------------
Stage ``h`` (``h = 1, 2, 4, ...``) maps each pair ``(x[i], x[i + h])`` to
``(x[i] + x[i + h], x[i] - x[i + h])``. A radix-2 loop streams the whole array through
memory once per stage; here stages are fused so that each element is loaded and stored
once per group of up to ``log2(8 W)`` stages, ``W`` being the lanes of a 512-bit vector
(16 float32 or 8 float64):

- *Contiguous block* (rows): ``8 W`` contiguous elements are held in 8 vector registers;
  the stages ``h < W`` run inside each register (a lane permutation and one exact
  multiply-add by ±1),
  the stages ``W <= h < 8 W`` between registers. This is the register-level base case;
  the small strides never touch memory. This pass also copies the input into the output
  buffer and checks it for NaN/Inf on the way.
- *Strided pass*: ``r`` = 2, 4 or 8 vectors lying ``h`` rows apart are loaded, the
  ``log2 r`` stages between them run in registers, and they are stored back. Rows are
  covered ``W`` lanes at a time; a ragged last chunk (``B`` not a multiple of ``W``) is
  handled by an overlapping chunk ending at lane ``B``, loaded together with the chunk it
  overlaps so that no lane is read after being written.
- *Cache blocking*: the stages that stay inside an L1-sized block of rows are finished
  block by block before the wider stages sweep the whole array.

Numba runs LLVM's loop vectoriser but not its SLP vectoriser, so the register-level
blocks are small LLVM-IR intrinsics on ``<W x float>`` vectors: generic vector IR that
LLVM lowers to AVX-512, AVX2, SSE or NEON. Single thread, no ``fastmath``: every output is
produced by the same IEEE additions and subtractions, in the same stage order, as the
reference. Inside a register the butterfly is computed as ``x[k ^ h] + sign_k * x[k]``
with a constant ``sign_k = ±1`` (``llvm.fmuladd``); the product by ±1 is exact, so the
fused and unfused forms both give the correctly rounded sum or difference.
"""

import operator

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import NumbaError
from numba.extending import intrinsic, overload

from hadamnp._checks import check_block_size, check_finite, check_float, check_power_of_two
from hadamnp.errors import ShapeError, SizeError

# Lanes W per vector: one 512-bit register. Narrower targets split each vector in LLVM.
_VECTOR_BYTES = 64
_LANES = {types.float32: 16, types.float64: 8}
# Data bytes in one cache block (leaves room in a 48 KiB L1 for lines straddling rows).
_L1_BLOCK_BYTES = 32768
# Stages fused in one strided pass at most (radix 8: 8 vectors in registers). Radix 16
# rarely saves a pass after cache blocking and doubles the compiled code.
_MAX_PASS_STAGES = 3


# ---------------------------------------------------------------------------------------
# Register-level building blocks: LLVM IR on <W x float> vectors
#
# The intrinsics and the compiled drivers below address the data through a typed pointer
# (``CPointer(float32 | float64)``) plus element offsets, taken once from the arrays by
# :func:`_address`. A pointer is a plain value, so passing it through the loops costs no
# reference counting (passing the array to helpers inside loops made Numba emit an
# ``NRT_incref`` call per iteration). Callers keep the arrays alive.
# ---------------------------------------------------------------------------------------


def _is_vector_pointer(p):
    return isinstance(p, types.CPointer) and p.dtype in _LANES


@intrinsic
def _address(typingctx, a):
    """Typed pointer to the first element of the C-contiguous float array ``a``."""
    if not (isinstance(a, types.Array) and a.layout == "C" and a.dtype in _LANES):
        return None

    def codegen(context, builder, signature, args):
        return context.make_array(a)(context, builder, value=args[0]).data

    return types.CPointer(a.dtype)(a), codegen


@intrinsic
def _lanes(typingctx, p):
    """The number ``W`` of lanes per vector for the pointer's dtype (a constant)."""
    if not _is_vector_pointer(p):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, _LANES[p.dtype])

    return types.intp(p), codegen


def _vector_pointers(builder, ptr, offsets, vecty):
    """Pointers to the ``<W x T>`` vectors starting at element ``offsets`` of ``ptr``."""
    return [builder.bitcast(builder.gep(ptr, [o], inbounds=True), vecty.as_pointer())
            for o in offsets]


def _offsets(builder, first, step, count):
    """IR values ``first, first + step, ..., first + (count - 1) * step`` (``step`` an IR int)."""
    offsets = [first]
    for _ in range(count - 1):
        offsets.append(builder.add(offsets[-1], step))
    return offsets


def _butterflies_across(builder, vecs):
    """All stages between ``len(vecs)`` vectors (a power of two), in place on the list.

    Stage ``hv`` maps vectors ``(v, v + hv)`` to ``(a + b, a - b)``.
    """
    hv = 1
    while hv < len(vecs):
        for v in range(len(vecs)):
            if v & hv == 0:
                a, b = vecs[v], vecs[v + hv]
                vecs[v] = builder.fadd(a, b)
                vecs[v + hv] = builder.fsub(a, b)
        hv *= 2


def _butterflies_within(builder, vec, stages):
    """Stages ``h = 1, 2, ..., 2**(stages - 1)`` between the lanes of one vector.

    Lane ``k`` becomes ``x[k ^ h] + x[k]`` when bit ``h`` of ``k`` is clear and
    ``x[k ^ h] - x[k]`` when it is set: one lane permutation and one exact ``fmuladd``.
    """
    vecty = vec.type
    W = vecty.count
    bits = 32 if isinstance(vecty.element, ir.FloatType) else 64
    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vecty, [vecty] * 3), f"llvm.fmuladd.v{W}f{bits}")
    undef = ir.Constant(vecty, ir.Undefined)
    for s in range(stages):
        h = 1 << s
        partner = ir.Constant(ir.VectorType(ir.IntType(32), W), [k ^ h for k in range(W)])
        sign = ir.Constant(vecty, [-1.0 if k & h else 1.0 for k in range(W)])
        vec = builder.call(fmuladd, [vec, sign, builder.shuffle_vector(vec, undef, partner)])
    return vec


def _any_nonfinite(builder, vecs):
    """IR ``i1``: whether any lane of ``vecs`` is NaN or ±Inf.

    ``llvm.is.fpclass`` (one ``vfpclassps`` on AVX-512, integer compares elsewhere) with
    the test mask ``fcNan | fcInf`` = 0x3 | 0x204.
    """
    vecty = vecs[0].type
    W = vecty.count
    bits = 32 if isinstance(vecty.element, ir.FloatType) else 64
    maskty = ir.VectorType(ir.IntType(1), W)
    is_fpclass = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(maskty, [vecty, ir.IntType(32)]),
        f"llvm.is.fpclass.v{W}f{bits}")
    found = None
    for v in vecs:
        lanes = builder.call(is_fpclass, [v, ir.Constant(ir.IntType(32), 0x207)])
        found = lanes if found is None else builder.or_(found, lanes)
    mask = builder.bitcast(found, ir.IntType(W))
    return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(W), 0))


def _contiguous_block(size):
    """Intrinsic ``(src, dst, off) -> bool``: blocks of ``size`` contiguous elements.

    Reads ``max(size, W)`` elements from ``src + off``, applies the full transform to
    every block of ``size`` (``size <= 8 W``: at most 8 registers), writes them to
    ``dst + off`` (``dst`` may be ``src``) and returns whether any element read was NaN or
    Inf. ``size = 1`` is a checked copy.
    """

    def typer(typingctx, src, dst, off):
        if not (_is_vector_pointer(src) and src == dst):
            return None
        W = _LANES[src.dtype]
        n_vec = max(size // W, 1)
        stages_within = min(size, W).bit_length() - 1
        align = src.dtype.bitwidth // 8

        def codegen(context, builder, signature, args):
            src_p, dst_p, off_v = args
            vecty = ir.VectorType(context.get_value_type(src.dtype), W)
            offs = _offsets(builder, off_v, ir.Constant(off_v.type, W), n_vec)
            vecs = [builder.load(p, align=align)
                    for p in _vector_pointers(builder, src_p, offs, vecty)]
            bad = _any_nonfinite(builder, vecs)
            vecs = [_butterflies_within(builder, v, stages_within) for v in vecs]
            _butterflies_across(builder, vecs)
            for v, p in zip(vecs, _vector_pointers(builder, dst_p, offs, vecty)):
                builder.store(v, p, align=align)
            return bad

        return types.boolean(src, dst, types.intp), codegen

    typer.__name__ = f"_contiguous_block_{size}"
    return intrinsic(typer)


def _strided_block(radix, chunks):
    """Intrinsic ``(p, off[, off2], stride)``: ``log2 radix`` stages across strided vectors.

    For each of the ``chunks`` (1 or 2) start offsets, the ``radix`` vectors at
    ``p + off + k * stride`` (``k < radix``) are transformed among themselves, in place.
    With two chunks every vector is loaded before any is stored, so the chunks may overlap.
    """

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        ptr, *starts, stride = args
        W = _LANES[dtype]
        align = dtype.bitwidth // 8
        vecty = ir.VectorType(context.get_value_type(dtype), W)
        groups = []
        for start in starts:
            ptrs = _vector_pointers(builder, ptr, _offsets(builder, start, stride, radix), vecty)
            groups.append((ptrs, [builder.load(q, align=align) for q in ptrs]))
        for ptrs, vecs in groups:
            _butterflies_across(builder, vecs)
            for v, q in zip(vecs, ptrs):
                builder.store(v, q, align=align)
        return context.get_dummy_value()

    if chunks == 1:
        def typer(typingctx, p, off, stride):
            if _is_vector_pointer(p):
                return types.none(p, types.intp, types.intp), codegen
            return None
    else:
        def typer(typingctx, p, off, off2, stride):
            if _is_vector_pointer(p):
                return types.none(p, types.intp, types.intp, types.intp), codegen
            return None

    typer.__name__ = f"_strided_block_{radix}x{chunks}"
    return intrinsic(typer)


@intrinsic
def _nonfinite_vector(typingctx, p, off):
    """Whether any of the ``W`` elements at ``p + off`` is NaN or Inf."""
    if not _is_vector_pointer(p):
        return None
    W = _LANES[p.dtype]

    def codegen(context, builder, signature, args):
        ptr, off_v = args
        vecty = ir.VectorType(context.get_value_type(p.dtype), W)
        (vptr,) = _vector_pointers(builder, ptr, [off_v], vecty)
        return _any_nonfinite(builder, [builder.load(vptr, align=p.dtype.bitwidth // 8)])

    return types.boolean(p, types.intp), codegen


_block1, _block2, _block4, _block8, _block16, _block32, _block64, _block128 = (
    _contiguous_block(1 << s) for s in range(8))
_strided2, _strided4, _strided8 = (_strided_block(r, 1) for r in (2, 4, 8))
_strided2_pair, _strided4_pair, _strided8_pair = (_strided_block(r, 2) for r in (2, 4, 8))


# ---------------------------------------------------------------------------------------
# Compiled drivers. ``p`` is a pointer from _address; "the matrix (rows, B) at base" is the
# elements p[base + i * B + j]; ``W`` lanes per vector (_lanes). Integer constants passed
# between compiled functions are wrapped in np.intp(): Numba would otherwise compile one
# specialisation per literal value.
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _contiguous_pass(src, dst, base, n, size):
    """``dst[base:base+n]`` = blocks of ``size`` of ``src[base:base+n]``, transformed.

    Needs ``n`` a multiple of ``max(size, W)`` and ``size <= 8 W`` (``size = 1``: a copy).
    Returns whether ``src[base:base+n]`` holds NaN/Inf.
    """
    step = max(size, _lanes(src))
    bad = False
    for off in range(base, base + n, step):
        if size == 128:
            found = _block128(src, dst, off)
        elif size == 64:
            found = _block64(src, dst, off)
        elif size == 32:
            found = _block32(src, dst, off)
        elif size == 16:
            found = _block16(src, dst, off)
        elif size == 8:
            found = _block8(src, dst, off)
        elif size == 4:
            found = _block4(src, dst, off)
        elif size == 2:
            found = _block2(src, dst, off)
        else:
            found = _block1(src, dst, off)
        bad |= found
    return bad


@numba.njit(cache=True)
def _strided_pass(p, base, rows, B, h, radix):
    """Stages ``h, 2h, ..., radix h / 2`` along the rows of the matrix ``(rows, B)`` at ``base``.

    Needs ``B >= W``; half-widths ``h`` count rows.
    """
    W = _lanes(p)
    last = B - B % W - W          # start of the last full chunk of a row
    ragged = B % W != 0           # then one more chunk ends at lane B, overlapping it
    stride = h * B
    for block in range(0, rows, radix * h):
        for i in range(block, block + h):
            row = base + i * B
            for j in range(row, row + last, W):
                if radix == 8:
                    _strided8(p, j, stride)
                elif radix == 4:
                    _strided4(p, j, stride)
                else:
                    _strided2(p, j, stride)
            j, j_end = row + last, row + B - W
            if radix == 8:
                if ragged:
                    _strided8_pair(p, j, j_end, stride)
                else:
                    _strided8(p, j, stride)
            elif radix == 4:
                if ragged:
                    _strided4_pair(p, j, j_end, stride)
                else:
                    _strided4(p, j, stride)
            elif ragged:
                _strided2_pair(p, j, j_end, stride)
            else:
                _strided2(p, j, stride)


@numba.njit(inline="always")
def _strided_stages(p, base, rows, B, h, h_end):
    """Stages ``h, 2h, ..., h_end / 2`` of the matrix ``(rows, B)`` at ``base``, fused.

    Groups of at most ``_MAX_PASS_STAGES`` stages, as even as possible (7 = 3+2+2).
    """
    k = 0
    while h << k < h_end:
        k += 1
    while k > 0:
        passes = (k + _MAX_PASS_STAGES - 1) // _MAX_PASS_STAGES
        s = (k + passes - 1) // passes
        _strided_pass(p, base, rows, B, h, 1 << s)
        h <<= s
        k -= s


@numba.njit(inline="always")
def _blocked_stages(p, base, rows, B, h, m):
    """Stages ``h .. m/2`` of the matrix ``(rows, B)`` at ``base``, cache-blocked.

    The stages narrower than the largest block of ``P <= m`` rows fitting
    ``_L1_BLOCK_BYTES`` are finished block by block, then the rest sweep all rows.
    """
    row_bytes = B * (_VECTOR_BYTES // _lanes(p))
    P = h
    while P < m and 2 * P * row_bytes <= _L1_BLOCK_BYTES:  # double while it still fits
        P *= 2
    if P > h:
        for r0 in range(0, rows, P):
            _strided_stages(p, base + r0 * B, P, B, h, P)
    if m > P:
        _strided_stages(p, base, rows, B, P, m)


@numba.njit(inline="always")
def _row_transform(src, dst, base, n, m):
    """``dst[base:base+n]`` = blocked FWHT of ``src[base:base+n]``; True if it held NaN/Inf.

    Needs ``n >= W``. The contiguous pass does the stages ``h < 8 W``; the rest are strided
    passes over the row seen as an ``(n / W, W)`` matrix (half-width ``h`` elements =
    ``h / W`` rows).
    """
    W = _lanes(src)
    size = min(m, 8 * W)
    bad = _contiguous_pass(src, dst, base, n, size)
    if m > size:
        _blocked_stages(dst, base, n // W, W, size // W, m // W)
    return bad


@numba.njit(cache=True)
def _radix2_inplace(p, base, n, B, m):
    """Plain radix-2 FWHT of the matrix ``(n, B)`` at ``base`` along its rows (small cases)."""
    h = 1
    while h < m:
        for block in range(0, n, 2 * h):
            for i in range(block, block + h):
                lo = base + i * B
                hi = lo + h * B
                for j in range(B):
                    x = p[lo + j]
                    y = p[hi + j]
                    p[lo + j] = x + y
                    p[hi + j] = x - y
        h *= 2


@numba.njit(cache=True)
def _rows(src, dst, n, m):
    """``dst`` = FWHT (blocks of ``m``) of every length-``n`` row of ``src``.

    ``src``, ``dst``: C-contiguous ``(R, n)`` arrays of one dtype; ``dst`` may be ``src``.
    Returns whether ``src`` holds NaN/Inf.
    """
    src_p, dst_p = _address(src), _address(dst)
    bad = False
    if n < _lanes(src_p):
        for i in range(src.size):
            v = src_p[i]
            bad |= not np.isfinite(v)
            dst_p[i] = v
        for base in range(0, dst.size, n):
            _radix2_inplace(dst_p, base, n, np.intp(1), m)
        return bad
    for base in range(0, src.size, n):
        bad |= _row_transform(src_p, dst_p, base, n, m)
    return bad


@numba.njit(cache=True)
def _has_nonfinite(a):
    """Whether the C-contiguous array ``a`` holds NaN or ±Inf (vector loads, scalar tail)."""
    p = _address(a)
    W = _lanes(p)
    n = a.size
    bad = False
    for off in range(0, n - W + 1, W):
        bad |= _nonfinite_vector(p, off)
    for i in range(n - n % W, n):
        bad |= not np.isfinite(p[i])
    return bad


@numba.njit(cache=True)
def _rows_inplace(a, m):
    n = a.shape[1]
    if m < 1 or m & (m - 1) != 0 or n % m != 0:
        raise SizeError("fwht_rows_inplace: block size m must be a power of two dividing n")
    _rows(a, a, n, m)


@numba.njit(cache=True)
def fwht_rows_inplace(a, m):
    """Transform each row of ``a`` in place, independently over column blocks of ``m``.

    The kernel behind :func:`fwht`, without its validation, for compiled code and for
    benchmarks: ``a[r, k*m:(k+1)*m] <- S_m a[r, k*m:(k+1)*m]``. NaN/Inf are not checked.

    Parameters
    ----------
    a : ndarray (R, n), float32 or float64, C-contiguous, ``n`` a power of two. Modified.
    m : int
        Block size: a power of two dividing ``n``.

    Raises
    ------
    SizeError
        If ``m`` is not a power of two dividing ``n``.
    """
    _rows_inplace(a, m)


@numba.njit(cache=True)
def _columns(a, m):
    n, B = a.shape
    if m < 1 or m & (m - 1) != 0 or n % m != 0:
        raise SizeError("fwht_columns_inplace: block size m must be a power of two dividing n")
    p = _address(a)
    W = _lanes(p)
    zero, one = np.intp(0), np.intp(1)
    if B >= W:
        _blocked_stages(p, zero, n, B, one, m)
    elif B == 1 and n >= W:
        _row_transform(p, p, zero, n, m)
    elif B > 0:
        _radix2_inplace(p, zero, n, B, m)


@numba.njit(cache=True, inline="always")
def fwht_columns_inplace(a, m):
    """Transform each column of ``a`` in place, independently over row blocks of ``m``.

    For use from compiled code (it is also callable from Python, without validation of
    ``a``). ``a[k*m:(k+1)*m, j] <- S_m a[k*m:(k+1)*m, j]`` for every block ``k`` and
    column ``j``: unnormalised, Sylvester order.

    Parameters
    ----------
    a : ndarray (n, B), float32 or float64, C-contiguous; ``n`` a power of two; any ``B``
        (1, odd, ...). Modified in place.
    m : int
        Block size: a power of two dividing ``n`` (``m = n`` for the full transform).

    Raises
    ------
    SizeError
        If ``m`` is not a power of two dividing ``n`` (checked in compiled code).

    Notes
    -----
    Inlining puts only a call into the caller: the transform itself is compiled (and
    cached) once per dtype in ``_columns``, so callers do not re-type it.
    """
    _columns(a, m)


# ---------------------------------------------------------------------------------------
# Public wrapper
# ---------------------------------------------------------------------------------------


def _check_out(out, x):
    """Raise unless ``out`` can receive the transform of ``x``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != x.dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {x.dtype} (the dtype of x)")
    if out.shape != x.shape:
        raise ShapeError(f"out has shape {out.shape}, expected {x.shape} (the shape of x)")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not flags.writeable:
        raise ValueError("out is read-only")


def _same_memory(a, b):
    """Whether C-contiguous ``a`` and ``b`` of equal shape and dtype are the same elements."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _fast_types_ok(src, dst):
    """Whether ``src`` and ``dst`` are C-contiguous arrays of one float dtype and ``dst`` is
    writable (a constant of their Numba types)."""


@overload(_fast_types_ok)
def _fast_types_ok_typed(src, dst):
    ok = (isinstance(src, types.Array) and isinstance(dst, types.Array)
          and src.dtype in _LANES and dst.dtype == src.dtype and src.layout == "C"
          and dst.layout == "C" and dst.mutable)
    return lambda src, dst: ok


def _rows_if_typed(src, dst, n, m):
    """:func:`_rows` where the types allow it (see :func:`_fast_types_ok`), else True."""


@overload(_rows_if_typed)
def _rows_if_typed_impl(src, dst, n, m):
    if isinstance(src, types.Array) and isinstance(dst, types.Array) and \
            src.dtype in _LANES and dst.dtype == src.dtype and src.layout == dst.layout == "C":
        return lambda src, dst, n, m: _rows(src, dst, n, m)
    return lambda src, dst, n, m: True


def _nonfinite_if_typed(a):
    """:func:`_has_nonfinite` for a C-contiguous float array, else True."""


@overload(_nonfinite_if_typed)
def _nonfinite_if_typed_impl(a):
    if isinstance(a, types.Array) and a.dtype in _LANES and a.layout == "C":
        return lambda a: _has_nonfinite(a)
    return lambda a: True


@numba.njit(cache=True)
def _fwht_fast(src, dst, m):
    """The usual call of :func:`fwht` in one compiled call: 0 when ``dst`` holds the result.

    Returns 1 when ``src`` holds NaN/Inf (``dst`` may have been written unless it is
    ``src``) and 2 for anything the full path must handle or reject (types, layouts,
    shapes, sizes, overlap, a read-only ``dst``); ``m = 0`` means ``m = n``.
    """
    if not _fast_types_ok(src, dst) or src.ndim == 0 or src.shape != dst.shape:
        return 2
    n = src.shape[src.ndim - 1]
    if m == 0:
        m = n
    if n < 1 or n & (n - 1) != 0 or m < 1 or m & (m - 1) != 0 or m > n:
        return 2
    a, b, nbytes = src.ctypes.data, dst.ctypes.data, src.size * src.itemsize
    if a == b:                       # in place: refuse NaN/Inf before writing
        if _nonfinite_if_typed(src):
            return 1
    elif a < b + nbytes and b < a + nbytes:
        return 2                     # partial overlap: the full path copies
    if src.size == 0:
        return 0
    return 1 if _rows_if_typed(src, dst, n, m) and a != b else 0


def fwht(x, block_size=None, out=None):
    """Unnormalised fast Walsh-Hadamard transform along the last axis.

    Parameters
    ----------
    x : array_like (..., n), float32 or float64, ``n`` a power of two
    block_size : int, optional
        Power of two ``m`` dividing ``n``; blocks of ``m`` consecutive entries are
        transformed independently (Block-HadamRNN). Default ``n``.
    out : ndarray (..., n), optional
        C-contiguous destination with the shape and dtype of ``x``; may be ``x`` itself
        (in place). If an error is raised after validation, ``out`` may have been written.

    Returns
    -------
    y : ndarray (..., n), C-contiguous, same dtype as ``x``: ``y = x @ (I_{n/m} ⊗ S_m)``
        (``S_m`` is symmetric, so each row is ``S_m`` times the row).

    Raises
    ------
    TypeError
        If ``x`` is not float32/float64, ``block_size`` is not an integer, or ``out`` is
        not an array of the dtype of ``x``.
    ShapeError
        If ``x`` is a scalar or ``out`` has another shape.
    SizeError
        If ``n`` or ``block_size`` is not a power of two, or the block exceeds ``n``.
    NonFiniteError
        If ``x`` holds NaN or Inf.

    Notes
    -----
    The usual call (a float32/float64 ndarray, ``out`` None or an ndarray of its dtype)
    is checked and transformed in one compiled call; anything else, including every
    error, takes the full path below, which raises the specific exception.
    """
    if type(x) is np.ndarray and (block_size is None or type(block_size) is int
                                  and block_size > 0):
        m = 0 if block_size is None else block_size
        try:
            if out is None:
                y = np.empty(x.shape, x.dtype)
                if _fwht_fast(x, y, m) == 0:
                    return y
            elif type(out) is np.ndarray and _fwht_fast(x, out, m) == 0:
                return out
        except (NotImplementedError, NumbaError):
            pass                     # a dtype Numba cannot type (float16, object, ...)
    x = check_float(x, "x")
    if x.ndim == 0:
        raise ShapeError("x must have at least one axis (the transform axis), got a scalar")
    n = check_power_of_two(x.shape[-1], "transform length n (last axis of x)")
    if block_size is None:
        m = n
    else:
        try:
            block_size = operator.index(block_size)
        except TypeError:
            raise TypeError(f"block_size must be an integer, got {block_size!r}") from None
        m = check_block_size(n, block_size)
    src = np.ascontiguousarray(x)
    in_place = False
    if out is None:
        out = np.empty_like(src)
    else:
        _check_out(out, x)
        in_place = out is x or np.may_share_memory(src, out)
        if in_place and not _same_memory(src, out):
            src = src.copy()                  # partial overlap: read from a private copy
            in_place = False
    # The kernel takes (rows, n): one compiled specialisation per dtype.
    src2, out2 = (src, out) if src.ndim == 2 else (src.reshape(-1, n), out.reshape(-1, n))
    # Out of place, the first pass checks for NaN/Inf as it copies, so x is read once;
    # in place the check must come first, so that a rejected x is left untouched.
    if in_place and _has_nonfinite(src2):
        check_finite(x, "x")
    if _rows(src2, out2, n, m) and not in_place:
        check_finite(x, "x")
    return out
