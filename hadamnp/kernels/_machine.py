"""The machine layer: all of hadamnp's hand-written LLVM IR, in one module to audit.

Every other kernel is ordinary Numba code. Two things Numba will not do on its own are done
here by small ``numba.extending.intrinsic`` functions that emit LLVM IR directly:

- keep a whole vector of floats in registers and permute its lanes, for the FWHT
  (:mod:`hadamnp.kernels.fwht`): Numba runs LLVM's loop vectoriser but not its SLP
  vectoriser, so register-level butterflies must be written as vector IR;
- work on 512-bit ``<8 x i64>`` vectors in the popcount products
  (:mod:`hadamnp.kernels.bitpack`): on AVX-512 machines LLVM's loop vectoriser prefers
  256-bit registers, and the 512-bit ``vpopcntq`` halves the work of popcount-bound loops.

The IR is generic (``<W x float>``, ``<8 x i64>``, ``llvm.fmuladd``, ``llvm.ctpop``,
``llvm.is.fpclass``): no target-specific intrinsic. LLVM lowers it to AVX-512 where the
CPU has it and splits the same vectors into AVX2, SSE or NEON registers elsewhere, with
identical results. Nothing here uses ``fastmath``.

How to audit an intrinsic
-------------------------
Each entry below gives the IR the intrinsic emits; the instructions it became on an AVX-512
host (Intel Rocket Lake, LLVM 22 from llvmlite 0.50, read with ``inspect_asm``); the
preconditions that its callers guarantee (the intrinsics check nothing at run time: no
bounds, no overlap); its meaning in NumPy or scalar Python; and the test in
``tests/kernels/test_machine.py`` that runs it from a small jitted harness against that
meaning. ``test_machine_asm`` greps the instructions on AVX-512 hosts. The kernels built on
the intrinsics are also compared with their reference twins (``tests/kernels/test_fwht.py``,
``test_bitpack.py``, ``test_xnor.py``).

FWHT layer: float vectors behind typed pointers
    ``W`` lanes per vector: 16 for float32, 8 for float64 (one 512-bit register,
    :data:`VECTOR_BYTES`). Data are reached through ``CPointer(float32 | float64)`` values
    plus element offsets, taken once from an array by :func:`address`: a pointer is a plain
    value, so passing it through loops costs no reference counting (passing the array
    itself to helpers inside loops made Numba emit an ``NRT_incref`` call per iteration).
    Callers keep the arrays alive. Vector loads and stores are marked with the element
    alignment only (4 or 8 bytes): any C-contiguous array is valid, and LLVM emits
    unaligned-tolerant moves (``vmovups``).

    ``address(a)``
        IR: the data field of the array structure (no instruction of its own).
        Pre: ``a`` is a C-contiguous float32/float64 array (typing refuses the rest).
        Meaning: ``a.ctypes.data`` as a ``float*`` / ``double*``.
        Test: ``test_address_and_lanes``.
    ``lanes(p)``
        IR: the integer constant ``W``. Meaning: ``VECTOR_BYTES // p.itemsize``.
        Test: ``test_address_and_lanes``.
    ``block1 ... block128`` = ``contiguous_block(size)``: ``(src, dst, off) -> bool``
        IR: ``max(size // W, 1)`` loads of ``<W x T>`` from ``src + off``; per vector,
        ``log2(min(size, W))`` lane stages, each one ``shufflevector`` (lane ``k`` takes
        lane ``k ^ h``) and one ``llvm.fmuladd(v, ±1 constant, shuffled)``; then
        ``log2(size / W)`` stages of ``fadd``/``fsub`` between vectors; stores to
        ``dst + off``. NaN/Inf test: ``llvm.is.fpclass(v, 0x207)`` (NaN | ±Inf) ORed over
        the vectors read, as an ``i1``.
        AVX-512: ``vmovups`` zmm loads and stores; lane stages ``vpshufd``/``vshufpd``/
        ``vpermpd``/``vshuff64x2`` and ``vfmadd231ps``/``pd``; vector stages
        ``vaddps``/``vsubps`` (``pd``) on zmm. The NaN/Inf test becomes integer compares on
        the bits: ``vpandd``/``q`` clears the signs, ``vpmaxsd``/``q`` merges the vectors
        and ``vpcmpgtd``/``q`` against the Inf pattern (0x7f800000 for float32) sets a mask
        register (``kortestw``/``b``): ``|x|`` has an all-ones exponent exactly when ``x``
        is NaN or ±Inf.
        Pre: ``size`` a power of two ``<= 8 W``; ``src[off : off + max(size, W)]`` in
        bounds (callers step ``off`` through a length that is a multiple of
        ``max(size, W)``); ``dst`` is ``src`` or does not overlap it (all loads come before
        any store).
        Meaning: ``L = max(size, W)``; ``dst[off:off+L] = reference.fwht(src[off:off+L],
        size)`` bit for bit (the product by ±1 is exact, so ``fmuladd`` gives the correctly
        rounded ``x[k ^ h] ± x[k]``, the reference's stage result); returns
        ``not np.isfinite(src[off:off+L]).all()``. ``block1`` is a checked copy.
        Test: ``test_contiguous_blocks``.
    ``strided2/4/8`` and ``strided2/4/8_pair`` = ``strided_block(radix, chunks)``:
    ``(p, off[, off2], stride) -> None``
        IR: per start offset, ``radix`` loads of ``<W x T>`` at ``p + off + k * stride``;
        ``log2(radix)`` stages of ``fadd``/``fsub`` between them; stores back. With two
        start offsets every load precedes every store.
        AVX-512: ``vmovups`` zmm, ``vaddps``/``vsubps`` (``pd``) zmm.
        Pre: every ``p[off + k * stride : off + k * stride + W]``, ``k < radix``, in bounds;
        ``stride >= W``. The two chunks of a pair may overlap (the ragged end of a row):
        overlapping lanes are read before any write and get identical results.
        Meaning: with ``V[k] = p[off + k*stride : off + k*stride + W]``,
        ``V <- S_radix @ V`` (unnormalised Sylvester), in the reference's stage order.
        Test: ``test_strided_blocks``.
    ``nonfinite_vector(p, off) -> bool``
        IR: one ``<W x T>`` load, ``llvm.is.fpclass(v, 0x207)``, the ``<W x i1>`` mask
        bitcast to ``iW`` and compared with 0. AVX-512: ``vpandd``/``q`` then
        ``vpcmpltd``/``q`` against the Inf pattern into a mask register, ``kortestw``/``b``.
        Pre: ``p[off : off + W]`` in bounds.
        Meaning: ``not np.isfinite(p[off:off+W]).all()``. Test: ``test_nonfinite_vector``.

Popcount layer: scalar popcount and ``<8 x i64>`` lanes
    ``popcount64(x) -> int64``
        IR: ``llvm.ctpop.i64``. AVX-512 and any x86-64-v2 CPU: ``popcnt``.
        Pre: ``x`` a 64-bit integer (int64 or uint64; the bits are counted).
        Meaning: ``bin(x % 2**64).count("1")`` (:func:`hadamnp.reference.bitpack.popcount`).
        The one popcount of hadamnp. Test: ``test_popcount64``.
    ``Lanes8``: the Numba type of an LLVM ``<8 x i64>`` value, kept in a register
        (a primitive data model: never boxed, never in memory unless LLVM spills it).
    ``v_splat(c)``: ``insertelement`` + zero-mask ``shufflevector``; ``vpbroadcastq`` or
        ``vbroadcastsd`` (the same 64 bits in every lane).
        Meaning: ``np.full(8, c, np.int64)``. Test: ``test_lanes8_load_store``.
    ``v_load(a, i)``: ``load <8 x i64>, align 8`` from ``&a[i]``; ``vmovdqu64``/``vmovups``
        zmm.
        Pre: ``a`` 1-D C-contiguous 64-bit integer array, ``i + 8 <= len(a)``.
        Meaning: ``a[i:i+8].view(np.int64)``. Test: ``test_lanes8_load_store``.
    ``v_broadcast(a, i)``: ``load i64`` + splat; ``vpbroadcastq``/``vbroadcastsd`` from
        memory.
        Pre: ``0 <= i < len(a)``. Meaning: ``np.full(8, a[i])``.
        Test: ``test_lanes8_load_store``.
    ``v_store(a, i, v)``: ``store <8 x i64>`` (int64 ``a``) or ``trunc`` to ``<8 x i32>``
        and store (int32 ``a``, ``vpmovqd``). Pre: ``i + 8 <= len(a)``.
        Meaning: ``a[i:i+8] = v`` (low 32 bits of each lane for int32).
        Test: ``test_lanes8_load_store``.
    ``v_xor_popcount_add(acc, a, x)``: ``xor``, ``llvm.ctpop.v8i64``, ``add``; ``a`` may be
        a scalar uint64, splatted. AVX512_VPOPCNTDQ: ``vpxorq`` + ``vpopcntq`` +
        ``vpaddq`` on zmm (elsewhere LLVM expands the ``ctpop`` with byte lookups).
        Meaning: ``acc + popcount(a ^ x)`` per lane. Test: ``test_lanes8_popcount``.
    ``v_scale_add(acc, v, c)``: splat, ``mul``, ``add``; ``vpmullq`` (AVX512DQ) + ``vpaddq``.
        Meaning: ``acc + c * v`` per lane, int64 wrap-around. Test: ``test_lanes8_arithmetic``.
    ``v_lane(v, k)``: ``extractelement``. Pre: ``0 <= k < 8`` (else the result is
        undefined). Meaning: ``v[k]``. Test: ``test_lanes8_arithmetic``.
    ``v_sum8(v0, ..., v7)``: a transpose-add tree, three levels of two ``shufflevector`` and
        one ``add``; ``vpermt2q``/``vpunpck*qdq`` + ``vpaddq``. Meaning: lane ``r`` is
        ``v_r.sum()``, i.e. ``np.stack([v0, ..., v7]).sum(axis=1)``.
        Test: ``test_lanes8_arithmetic``.

Editing this module
-------------------
Numba's on-disk cache (``cache=True``) checks only the source file of each cached function.
These intrinsics are compiled into the kernels of ``fwht.py``, ``bitpack.py``,
``ternary.py`` and ``recurrence.py``, whose cache entries therefore do not notice a change
here: after editing this file, delete the ``*.nbi``/``*.nbc`` files of
``hadamnp/kernels/__pycache__``.
``test_kernel_caches_are_younger_than_their_compiled_dependencies`` fails until then.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

# Bytes of one vector: a 512-bit register. Narrower targets split each vector in LLVM.
VECTOR_BYTES = 64
_FLOAT_LANES = {types.float32: VECTOR_BYTES // 4, types.float64: VECTOR_BYTES // 8}


# ---------------------------------------------------------------------------------------
# FWHT layer: <W x float> vectors behind typed pointers
# ---------------------------------------------------------------------------------------


def _is_vector_pointer(p):
    return isinstance(p, types.CPointer) and p.dtype in _FLOAT_LANES


@intrinsic
def address(typingctx, a):
    """Typed pointer to the first element of the C-contiguous float array ``a``."""
    if not (isinstance(a, types.Array) and a.layout == "C" and a.dtype in _FLOAT_LANES):
        return None

    def codegen(context, builder, signature, args):
        return context.make_array(a)(context, builder, value=args[0]).data

    return types.CPointer(a.dtype)(a), codegen


@intrinsic
def lanes(typingctx, p):
    """The number ``W`` of lanes per vector for the pointer's dtype (a constant)."""
    if not _is_vector_pointer(p):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, _FLOAT_LANES[p.dtype])

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

    ``llvm.is.fpclass`` with the test mask ``fcNan | fcInf`` = 0x3 | 0x204.
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
        lanes_found = builder.call(is_fpclass, [v, ir.Constant(ir.IntType(32), 0x207)])
        found = lanes_found if found is None else builder.or_(found, lanes_found)
    mask = builder.bitcast(found, ir.IntType(W))
    return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(W), 0))


def contiguous_block(size):
    """Intrinsic ``(src, dst, off) -> bool``: blocks of ``size`` contiguous elements.

    Reads ``max(size, W)`` elements from ``src + off``, applies the full transform to
    every block of ``size`` (``size <= 8 W``: at most 8 registers), writes them to
    ``dst + off`` (``dst`` may be ``src``) and returns whether any element read was NaN or
    Inf. ``size = 1`` is a checked copy.
    """

    def typer(typingctx, src, dst, off):
        if not (_is_vector_pointer(src) and src == dst):
            return None
        W = _FLOAT_LANES[src.dtype]
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

    typer.__name__ = f"contiguous_block_{size}"
    return intrinsic(typer)


def strided_block(radix, chunks):
    """Intrinsic ``(p, off[, off2], stride)``: ``log2 radix`` stages across strided vectors.

    For each of the ``chunks`` (1 or 2) start offsets, the ``radix`` vectors at
    ``p + off + k * stride`` (``k < radix``) are transformed among themselves, in place.
    With two chunks every vector is loaded before any is stored, so the chunks may overlap.
    """

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        ptr, *starts, stride = args
        W = _FLOAT_LANES[dtype]
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

    typer.__name__ = f"strided_block_{radix}x{chunks}"
    return intrinsic(typer)


@intrinsic
def nonfinite_vector(typingctx, p, off):
    """Whether any of the ``W`` elements at ``p + off`` is NaN or Inf."""
    if not _is_vector_pointer(p):
        return None
    W = _FLOAT_LANES[p.dtype]

    def codegen(context, builder, signature, args):
        ptr, off_v = args
        vecty = ir.VectorType(context.get_value_type(p.dtype), W)
        (vptr,) = _vector_pointers(builder, ptr, [off_v], vecty)
        return _any_nonfinite(builder, [builder.load(vptr, align=p.dtype.bitwidth // 8)])

    return types.boolean(p, types.intp), codegen


block1, block2, block4, block8, block16, block32, block64, block128 = (
    contiguous_block(1 << s) for s in range(8))
strided2, strided4, strided8 = (strided_block(r, 1) for r in (2, 4, 8))
strided2_pair, strided4_pair, strided8_pair = (strided_block(r, 2) for r in (2, 4, 8))


# ---------------------------------------------------------------------------------------
# Popcount layer: scalar popcount and <8 x i64> lanes
# ---------------------------------------------------------------------------------------

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_VEC = ir.VectorType(_I64, 8)


@intrinsic
def _ctpop_i64(typingctx, x):
    """LLVM ``ctpop`` of a 64-bit integer, returned as int64 (avoids uint64 -> float mixing)."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(x), codegen


@numba.njit(cache=True, inline="always")
def popcount64(x):
    """Number of set bits of a 64-bit integer ``x`` (int64). The one popcount of hadamnp."""
    return _ctpop_i64(x)


class Lanes8(types.Type):
    """Numba type of an LLVM ``<8 x i64>`` value (eight 64-bit lanes held in one register)."""

    def __init__(self):
        super().__init__(name="lanes8_i64")


lanes8 = Lanes8()


@register_model(Lanes8)
class _Lanes8Model(models.PrimitiveModel):
    """Data model: the value is the LLVM vector itself (kept in a register, not memory)."""

    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _is_i64_vector_array(arr):
    return (
        isinstance(arr, types.Array)
        and arr.ndim == 1
        and arr.layout == "C"
        and isinstance(arr.dtype, types.Integer)
        and arr.dtype.bitwidth == 64
    )


def _splat(builder, value):
    vec = builder.insert_element(ir.Constant(_VEC, ir.Undefined), value, ir.Constant(_I32, 0))
    zeros = ir.Constant(ir.VectorType(_I32, 8), [0] * 8)
    return builder.shuffle_vector(vec, ir.Constant(_VEC, ir.Undefined), zeros)


def _element_pointer(context, builder, arrty, arr, start):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [start])


@intrinsic
def v_splat(typingctx, value):
    """Eight copies of the integer ``value``."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.int64)
        return _splat(builder, v)

    return lanes8(value), codegen


@intrinsic
def v_load(typingctx, arr, start):
    """Lanes ``arr[start : start + 8]`` of a contiguous 1-D 64-bit integer array (unchecked)."""
    if not _is_i64_vector_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, _VEC.as_pointer()), align=8)

    return lanes8(arr, types.intp), codegen


@intrinsic
def v_broadcast(typingctx, arr, index):
    """Eight copies of ``arr[index]`` of a contiguous 1-D 64-bit integer array (unchecked)."""
    if not _is_i64_vector_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return _splat(builder, builder.load(ptr, align=8))

    return lanes8(arr, types.intp), codegen


@intrinsic
def v_store(typingctx, arr, start, v):
    """``arr[start : start + 8] = v``, truncating the lanes to int32 for an int32 ``arr``."""
    ok = (
        isinstance(arr, types.Array)
        and arr.ndim == 1
        and arr.layout == "C"
        and arr.dtype in (types.int32, types.int64)
    )
    if not ok:
        return None

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        ptr = _element_pointer(context, builder, arrty, args[0], args[1])
        value = args[2]
        if arrty.dtype == types.int32:
            value = builder.trunc(value, ir.VectorType(_I32, 8))
        builder.store(value, builder.bitcast(ptr, value.type.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(arr, types.intp, v), codegen


@intrinsic
def v_xor_popcount_add(typingctx, acc, a, x):
    """``acc + popcount(a XOR x)`` lane by lane; ``a`` is a vector or a broadcast uint64."""
    if not (acc == lanes8 and x == lanes8 and (a == lanes8 or a == types.uint64)):
        return None

    def codegen(context, builder, signature, args):
        acc_v, a_v, x_v = args
        if signature.args[1] != lanes8:
            a_v = _splat(builder, a_v)
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.ctpop.v8i64"
        )
        return builder.add(acc_v, builder.call(ctpop, [builder.xor(a_v, x_v)]))

    return lanes8(acc, a, x), codegen


@intrinsic
def v_scale_add(typingctx, acc, v, c):
    """``acc + c * v`` lane by lane (int64 wrap-around arithmetic), ``c`` a scalar."""
    if not (acc == lanes8 and v == lanes8 and isinstance(c, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        c_v = _splat(builder, context.cast(builder, args[2], signature.args[2], types.int64))
        return builder.add(args[0], builder.mul(args[1], c_v))

    return lanes8(acc, v, c), codegen


@intrinsic
def v_lane(typingctx, v, k):
    """Lane ``k`` of ``v`` as int64."""
    if v != lanes8 or not isinstance(k, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        k_i32 = builder.trunc(context.cast(builder, args[1], signature.args[1], types.int64), _I32)
        return builder.extract_element(args[0], k_i32)

    return types.int64(v, k), codegen


def _mask(indices):
    return ir.Constant(ir.VectorType(_I32, 8), indices)


@intrinsic
def v_sum8(typingctx, v0, v1, v2, v3, v4, v5, v6, v7):
    """Lane ``r`` of the result is the sum of the eight lanes of ``v_r`` (transpose-add)."""
    if any(v != lanes8 for v in (v0, v1, v2, v3, v4, v5, v6, v7)):
        return None

    def pairwise(builder, a, b, lo, hi):
        return builder.add(builder.shuffle_vector(a, b, _mask(lo)),
                           builder.shuffle_vector(a, b, _mask(hi)))

    def codegen(context, builder, signature, args):
        # Each level halves the number of vectors and doubles how many rows share one:
        # level 1 interleaves row pairs, level 2 row quadruples, level 3 all eight rows.
        even, odd = [0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]
        level1 = [pairwise(builder, args[r], args[r + 1], even, odd) for r in range(0, 8, 2)]
        lo2, hi2 = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        level2 = [pairwise(builder, level1[r], level1[r + 1], lo2, hi2) for r in (0, 2)]
        lo3, hi3 = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        return pairwise(builder, level2[0], level2[1], lo3, hi3)

    return lanes8(v0, v1, v2, v3, v4, v5, v6, v7), codegen
