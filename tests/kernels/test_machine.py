"""The machine layer (:mod:`hadamnp.kernels._machine`): every intrinsic against its meaning.

Each intrinsic runs from a small jitted harness (cached) and is compared exactly with the
NumPy or scalar meaning stated in the module docstring, on random data and edge values,
including what must stay untouched around the addressed elements. The kernels built on the
intrinsics are compared with their reference twins in ``test_fwht.py``, ``test_bitpack.py``
and ``test_xnor.py``; ``test_machine_asm`` and ``test_kernels_use_hardware_popcount`` read
the instructions LLVM chose, on hosts that have them. The last test guards Numba's on-disk
cache, which does not notice edits of this module in the kernels compiled from it.
"""

from pathlib import Path

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest
from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher
from numba.core.errors import TypingError

from hadamnp.kernels import _machine as mc
from hadamnp.kernels import bitpack as kb
from hadamnp.kernels import fwht as kf
from hadamnp.kernels import recurrence as kr
from hadamnp.kernels import ternary as kt
from hadamnp.reference import bitpack as rb
from hadamnp.reference.hadamard import fwht as reference_fwht

DTYPES = [np.float32, np.float64]
BLOCK_SIZES = [1 << s for s in range(8)]


def width(dtype):
    """Lanes ``W`` of one vector for ``dtype``."""
    return mc.VECTOR_BYTES // np.dtype(dtype).itemsize


def assert_bits_equal(got, want, what):
    """Exact equality, NaN payloads aside; the message shows the first differing entry."""
    bad = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))
    assert bad.size == 0, (f"{what}: {bad.size} entries differ, first at {bad[0]}: "
                           f"got {got.flat[bad[0]]!r}, expected {want.flat[bad[0]]!r}")


# --- harnesses -----------------------------------------------------------------------------


@numba.njit(cache=True)
def address_lanes(a, i, value):
    """``(W, a[i] read through the pointer)``, then ``a[i + 1] = value`` through it."""
    p = mc.address(a)
    old = p[i]
    p[i + 1] = value
    return mc.lanes(p), old


@numba.njit(cache=True)
def contiguous(src, dst, off, size):
    p, q = mc.address(src), mc.address(dst)
    if size == 128:
        return mc.block128(p, q, off)
    if size == 64:
        return mc.block64(p, q, off)
    if size == 32:
        return mc.block32(p, q, off)
    if size == 16:
        return mc.block16(p, q, off)
    if size == 8:
        return mc.block8(p, q, off)
    if size == 4:
        return mc.block4(p, q, off)
    if size == 2:
        return mc.block2(p, q, off)
    return mc.block1(p, q, off)


@numba.njit(cache=True)
def strided(a, off, off2, stride, radix, pair):
    p = mc.address(a)
    if pair:
        if radix == 8:
            mc.strided8_pair(p, off, off2, stride)
        elif radix == 4:
            mc.strided4_pair(p, off, off2, stride)
        else:
            mc.strided2_pair(p, off, off2, stride)
    elif radix == 8:
        mc.strided8(p, off, stride)
    elif radix == 4:
        mc.strided4(p, off, stride)
    else:
        mc.strided2(p, off, stride)


@numba.njit(cache=True)
def nonfinite(a, off):
    return mc.nonfinite_vector(mc.address(a), off)


@numba.njit(cache=True)
def popcounts(words, out):
    for i in range(words.shape[0]):
        out[i] = mc.popcount64(words[i])


@numba.njit(cache=True)
def lanes8_load_store(a, i, j, c, out64, out32):
    """out64 = [a[i:i+8], c x 8, a[j] x 8]; out32 = the int32 store of a[i:i+8]."""
    v = mc.v_load(a, i)
    mc.v_store(out64, 0, v)
    mc.v_store(out64, 8, mc.v_splat(c))
    mc.v_store(out64, 16, mc.v_broadcast(a, j))
    mc.v_store(out32, 0, v)


@numba.njit(cache=True)
def lanes8_popcount(acc, a, x, scalar, out):
    """out = [acc + popcount(a ^ x), acc + popcount(scalar ^ x)] (two rows of 8 lanes)."""
    mc.v_store(out, 0, mc.v_xor_popcount_add(mc.v_load(acc, 0), mc.v_load(a, 0), mc.v_load(x, 0)))
    mc.v_store(out, 8, mc.v_xor_popcount_add(mc.v_load(acc, 0), scalar, mc.v_load(x, 0)))


@numba.njit(cache=True)
def lanes8_arithmetic(vs, acc, c, out):
    """vs (64,) holds eight vectors; out = [v_sum8(...), acc + c * v0, lanes of v3]."""
    v0 = mc.v_load(vs, 0)
    v3 = mc.v_load(vs, 24)
    total = mc.v_sum8(v0, mc.v_load(vs, 8), mc.v_load(vs, 16), v3, mc.v_load(vs, 32),
                      mc.v_load(vs, 40), mc.v_load(vs, 48), mc.v_load(vs, 56))
    mc.v_store(out, 0, total)
    mc.v_store(out, 8, mc.v_scale_add(mc.v_load(acc, 0), v0, c))
    for k in range(8):
        out[16 + k] = mc.v_lane(v3, k)


# --- FWHT layer ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_address_and_lanes(dtype, rng):
    a = rng.standard_normal(20).astype(dtype)
    keep = a.copy()
    W, old = address_lanes(a, 5, dtype(7.5))
    assert W == width(dtype) and W * a.itemsize == 64, f"lanes {W} for {np.dtype(dtype)}"
    assert old == keep[5], f"p[5] read {old!r}, a[5] is {keep[5]!r}"
    keep[6] = 7.5
    assert_bits_equal(a, keep, "write through the pointer")
    with pytest.raises(TypingError):
        address_lanes(np.asfortranarray(np.ones((4, 3), dtype)), 0, dtype(0))
    with pytest.raises(TypingError):
        address_lanes(np.ones(4, np.int64), 0, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", BLOCK_SIZES)
def test_contiguous_blocks(size, dtype, rng):
    """``dst[off:off+L] = fwht(src[off:off+L], size)`` bit for bit, ``L = max(size, W)``;
    nothing else is written; the flag says whether ``src[off:off+L]`` held NaN/Inf."""
    L = max(size, width(dtype))
    off = L + 3  # an offset that is not a multiple of the vector width
    src = rng.standard_normal(3 * L + 3).astype(dtype)
    src_keep = src.copy()
    dst = np.full_like(src, 99.0)
    want = dst.copy()
    want[off:off + L] = reference_fwht(src[off:off + L], size)
    assert not contiguous(src, dst, off, size)
    assert_bits_equal(dst, want, f"block{size} out of place")
    assert_bits_equal(src, src_keep, f"block{size}: src modified")
    inplace = src.copy()
    assert not contiguous(inplace, inplace, off, size)
    want_in = src.copy()
    want_in[off:off + L] = want[off:off + L]
    assert_bits_equal(inplace, want_in, f"block{size} in place")
    for bad in (np.nan, np.inf, -np.inf):
        for where, flagged in ((off, True), (off + L - 1, True), (off - 1, False),
                               (off + L, False)):
            x = src.copy()
            x[where] = bad
            got = contiguous(x, dst, off, size)
            assert got == flagged, f"block{size}: {bad} at {where} gave flag {got}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("radix", [2, 4, 8])
def test_strided_blocks(radix, dtype, rng):
    """Vectors ``V[k] = a[off + k*stride : +W]`` become ``S_radix V`` (reference stage order);
    a pair of chunks may overlap; nothing outside the chunks is written."""
    W = width(dtype)
    C = 3 * W + 5  # row length = stride
    a0 = rng.standard_normal((radix + 1, C)).astype(dtype)  # the last row is never addressed
    cases = [((1,), False), ((W + 2,), False), ((0, 3), True), ((1, W + 1), True),
             ((2, 2 * W + 5), True), ((W, W), True)]
    for starts, pair in cases:
        a = a0.copy()
        strided(a.reshape(-1), starts[0], starts[-1], C, radix, pair)
        want = a0.copy()
        cols = sorted({j + lane for j in starts for lane in range(W)})
        want[:radix, cols] = reference_fwht(a0[:radix, cols].T, radix).T
        assert_bits_equal(a, want, f"strided{radix} starts={starts} pair={pair}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_vector(dtype, rng):
    W = width(dtype)
    info = np.finfo(dtype)
    a = rng.standard_normal(3 * W).astype(dtype)
    extremes = [info.max, -info.max, info.tiny / 4, -0.0, info.tiny, 0.0]
    a[W:W + len(extremes)] = extremes
    assert not nonfinite(a, W), "finite extremes (max, subnormal, -0) flagged"
    for bad in (np.nan, np.inf, -np.inf):
        for where in range(3 * W):
            x = a.copy()
            x[where] = bad
            got = nonfinite(x, W)
            assert got == (W <= where < 2 * W), f"{bad} at {where}: flag {got}, window [W, 2W)"


# --- popcount layer ------------------------------------------------------------------------


def test_popcount64(rng):
    words = rng.integers(0, 2**63, 200, dtype=np.uint64) | (
        rng.integers(0, 2, 200, dtype=np.uint64) << np.uint64(63))
    words[:4] = [0, ~np.uint64(0), np.uint64(1) << np.uint64(63), 1]
    out = np.empty(words.shape[0], dtype=np.int64)
    popcounts(words, out)
    assert np.array_equal(out, rb.popcount(words)), "uint64 popcounts differ"
    assert list(out[:4]) == [0, 64, 1, 1]
    signed = words.view(np.int64)  # the same bits as int64 (negative where bit 63 is set)
    popcounts(signed, out)
    assert np.array_equal(out, rb.popcount(words)), "int64 popcounts differ"


def test_lanes8_load_store(rng):
    a = rng.integers(-2**63, 2**63 - 1, 30, dtype=np.int64, endpoint=True)
    out64 = np.zeros(24, dtype=np.int64)
    out32 = np.zeros(10, dtype=np.int32)
    for i, j, c in ((0, 29, -5), (3, 0, 2**40 + 7), (22, 11, -2**63)):
        lanes8_load_store(a, i, j, c, out64, out32)
        assert np.array_equal(out64[:8], a[i:i + 8]), f"v_load/v_store at {i}"
        assert np.all(out64[8:16] == c), f"v_splat({c})"
        assert np.all(out64[16:] == a[j]), f"v_broadcast at {j}"
        low32 = (a[i:i + 8].view(np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        assert np.array_equal(out32[:8], low32.view(np.int32)), "int32 store keeps the low bits"
        assert np.all(out32[8:] == 0), "int32 store wrote past 8 lanes"
    words = a.view(np.uint64)
    lanes8_load_store(words, 1, 2, 0, out64, out32)
    assert np.array_equal(out64[:8].view(np.uint64), words[1:9]), "uint64 lanes keep the bits"


def test_lanes8_popcount(rng):
    acc = rng.integers(0, 1000, 8, dtype=np.int64)
    a = rng.integers(0, 2**64 - 1, 8, dtype=np.uint64, endpoint=True)
    x = rng.integers(0, 2**64 - 1, 8, dtype=np.uint64, endpoint=True)
    a[0], x[0] = ~np.uint64(0), np.uint64(0)  # all 64 bits differ
    scalar = np.uint64(0xF0F0F0F0F0F0F0F1)
    out = np.empty(16, dtype=np.int64)
    lanes8_popcount(acc, a, x, scalar, out)
    assert np.array_equal(out[:8], acc + rb.popcount(a ^ x)), "vector operand"
    assert np.array_equal(out[8:], acc + rb.popcount(scalar ^ x)), "broadcast scalar operand"
    assert out[0] == acc[0] + 64


def test_lanes8_arithmetic(rng):
    vs = rng.integers(-2**62, 2**62, 64, dtype=np.int64)
    acc = rng.integers(-2**62, 2**62, 8, dtype=np.int64)
    out = np.empty(24, dtype=np.int64)
    with np.errstate(over="ignore"):
        for c in (-2, 3, 2**40 + 1):
            lanes8_arithmetic(vs, acc, c, out)
            rows = vs.reshape(8, 8)
            assert np.array_equal(out[:8], rows.sum(axis=1)), "v_sum8: lane r = sum of v_r"
            want = acc + np.int64(c) * rows[0]  # int64 wrap-around, as in the lanes
            assert np.array_equal(out[8:16], want), f"v_scale_add c={c}"
            assert np.array_equal(out[16:], rows[3]), "v_lane"


# --- instructions --------------------------------------------------------------------------


def host_has(feature):
    return f"+{feature}" in llvm.get_host_cpu_features().flatten().split(",")


def fresh_asm(kernel, *args):
    """Assembly of a non-cached copy of ``kernel`` (cached code cannot be inspected)."""
    copy = numba.njit(kernel.py_func)
    copy(*args)
    return copy.inspect_asm(copy.signatures[0])


def assert_instructions(asm, patterns, what):
    import re

    missing = [p for p in patterns if not re.search(p, asm)]
    assert not missing, f"{what}: no instruction matching {missing} in the assembly"


def test_machine_asm():
    """On AVX-512 hosts each intrinsic becomes the instructions its audit note names."""
    if not host_has("avx512f"):
        pytest.skip("host CPU has no AVX-512F: LLVM splits the vectors (no zmm to look for)")
    for dtype, s, q in ((np.float32, "s", "d"), (np.float64, "d", "q")):
        a = np.ones(256, dtype)
        asm = fresh_asm(contiguous, a, a.copy(), 0, 128)
        assert_instructions(asm, [rf"vaddp{s}\s+%zmm", rf"vsubp{s}\s+%zmm",
                                  rf"vfmadd\d+p{s}\s+%zmm", rf"vpand{q}", rf"vpcmpgt{q}"],
                            f"contiguous blocks {np.dtype(dtype)}")
        asm = fresh_asm(strided, a, 0, 0, 16, 8, False)
        assert_instructions(asm, [rf"vmovup{s}\s+\S+, %zmm", rf"vaddp{s}\s+%zmm",
                                  rf"vsubp{s}\s+%zmm"], f"strided blocks {np.dtype(dtype)}")
        asm = fresh_asm(nonfinite, a, 0)
        assert_instructions(asm, [rf"vpand{q}", rf"vpcmplt{q}\s.*%k", r"kortest"],
                            f"nonfinite {np.dtype(dtype)}")
    words = np.ones(32, np.int64)
    assert_instructions(fresh_asm(popcounts, words, words.copy()), [r"popcnt"], "popcount64")
    asm = fresh_asm(lanes8_load_store, words, 0, 1, 2, np.empty(24, np.int64),
                    np.empty(8, np.int32))
    assert_instructions(asm, [r"vpmovqd", r"vpbroadcastq|vbroadcastsd"],
                        "v_store int32, v_splat, v_broadcast")
    asm = fresh_asm(lanes8_arithmetic, np.ones(64, np.int64), np.ones(8, np.int64), 3,
                    np.empty(24, np.int64))
    assert_instructions(asm, [r"vpaddq\s+%zmm"] + ([r"vpmullq"] if host_has("avx512dq") else []),
                        "v_sum8, v_scale_add")
    if host_has("avx512vpopcntdq"):
        u = np.ones(8, np.uint64)
        asm = fresh_asm(lanes8_popcount, np.ones(8, np.int64), u, u, np.uint64(1),
                        np.empty(16, np.int64))
        assert_instructions(asm, [r"vpopcntq\s+%zmm"], "v_xor_popcount_add")


def test_kernels_use_hardware_popcount():
    if not host_has("popcnt"):
        pytest.skip("host CPU has no popcnt instruction")
    rng = np.random.default_rng(5)
    W = rng.integers(0, 2**63, (16, 8), dtype=np.uint64)
    X = rng.integers(0, 2**63, (3, 1, 8), dtype=np.uint64)
    rows_asm = fresh_asm(kb._xnor_rows, W, X[0, 0], 512, np.empty(16, dtype=np.int32))
    lanes_asm = fresh_asm(kb._lanes_product, W, X, kb._XNOR_WEIGHTS, 512, True,
                          np.empty((16, 3), dtype=np.int32))
    if host_has("avx512vpopcntdq"):
        for name, asm in (("_xnor_rows", rows_asm), ("_lanes_product", lanes_asm)):
            assert "vpopcntq" in asm and "zmm" in asm, f"{name}: no 512-bit vpopcntq emitted"
    else:
        for name, asm in (("_xnor_rows", rows_asm), ("_lanes_product", lanes_asm)):
            assert "popcnt" in asm, f"{name}: no popcnt instruction emitted"


# --- the on-disk cache ---------------------------------------------------------------------


# Kernel modules whose compiled code includes code from other files: Numba's cache checks
# only a function's own file, so their cache entries must be younger than those files.
COMPILED_DEPENDENCIES = {kf: [mc], kb: [mc], kt: [mc], kr: [mc, kf]}


def test_kernel_caches_are_younger_than_their_compiled_dependencies():
    """Kernels cached before an edit of ``_machine.py`` (or of ``fwht.py`` for the sequence
    kernels) would still run the old code: fail until those cache files are deleted."""
    kf.fwht(np.ones((2, 16), np.float32))  # load or compile a kernel of each module
    kb.xnor_matvec(kb.pack_signs(np.ones((8, 64))), kb.pack_signs(np.ones(64)), 64)
    kt.block_hadamard_rows(np.ones(4), 2)
    kr.hadamard_forward(np.ones(4, np.float32), 4, np.ones((4, 1), np.float32),
                        np.zeros(4, np.float32), np.ones((1, 4), np.float32),
                        np.zeros(1, np.float32), np.ones((2, 1, 1), np.float32),
                        nonlinear=True, many_to_many=False)
    if not hasattr(getattr(kf._rows._cache, "_cache_file", None), "_load_index"):
        pytest.skip("this Numba version keeps its cache index elsewhere")
    for module, dependencies in COMPILED_DEPENDENCIES.items():
        # The index files Numba would read now (it discards those whose stamp, a hash of
        # the module's own source, does not match); only their age tells about the others.
        files = [d._cache._cache_file for d in vars(module).values()
                 if isinstance(d, Dispatcher) and isinstance(d._cache, FunctionCache)]
        indexes = [Path(f._index_path) for f in files if f._load_index()]
        assert indexes, f"no live cache index of {module.__name__}"
        newest = max(dependencies, key=lambda m: Path(m.__file__).stat().st_mtime)
        stale = [p.name for p in indexes
                 if p.stat().st_mtime < Path(newest.__file__).stat().st_mtime]
        assert not stale, (
            f"cached kernels of {module.__name__} are older than {Path(newest.__file__).name} "
            f"and may run its old code ({stale[:3]}): rm {indexes[0].parent}/*.nb[ic]")
