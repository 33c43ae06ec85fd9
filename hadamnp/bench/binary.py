"""Binary (XNOR-popcount, bit-plane) and sparse-ternary products vs float32 BLAS and SciPy.

Jobs (single thread; the ±1 / ternary matrices are the same for every implementation):

- ``xnor matvec n=512 B=1``: :func:`hadamnp.kernels.bitpack.xnor_matvec` (issue 4 target
  <= 1.5 us) vs float32 BLAS ``W @ x`` (sgemv through NumPy). Also timed: the same call with
  a preallocated ``out=`` and the bare kernel ``_xnor_rows`` (no argument checks), to show
  where the time goes.
- ``xnor matmul n=512 B=100`` (target <= 60 us) and ``n=4096 B=100`` (target <= 2.3 ms):
  :func:`~hadamnp.kernels.bitpack.xnor_matmul` vs float32 BLAS ``W @ X`` (sgemm).
- ``bitplane ... k=8``: :func:`~hadamnp.kernels.bitpack.bitplane_matvec` / ``_matmul`` with
  8-bit signed activations vs float32 BLAS on the same values.
- ``pack ...``: the cost of packing the activations (:func:`pack_signs`,
  :func:`pack_bitplanes`), which a per-step caller pays on top of the product.
- ``ternary block n=512 m=128``: the Block-HadamRNN step ``diag(s) (I ⊗ S_m) h`` (QQP
  configuration, 25 % nonzeros) with :func:`hadamnp.kernels.ternary.ternary_matvec` /
  ``_matmul`` (float32) vs ``scipy.sparse`` CSR, dense float32 BLAS and hadamnp's own block
  FWHT (``s * fwht(x, block_size=m)``, or the column kernel for B = 100), which computes the
  same product with ``n log2 m`` additions.

Threads: run as a script, ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``
default to 1 *before* NumPy is imported (BLAS reads them once; an ``OPENBLAS_CORETYPE``
already set is left alone). When this module is imported by a process that already loaded
NumPy, the variables come too late: BLAS is then pinned with ``threadpoolctl`` if it is
installed, and the row field ``blas_threads`` says which of the two applied.

``compile_s`` is the first call's excess over the warm median (JIT compile or Numba cache
load). ``hadamnp_speedup`` = the alternative's median / hadamnp's median.
Run: ``python -m hadamnp.bench.binary [--quick]``.
"""

import contextlib
import os
import sys

if __name__ == "__main__":
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, format_facts,  # noqa: E402
                                   machine_facts, make_row, print_table, time_call)

BENCH = "binary"
TARGETS_S = {
    "xnor matvec n=512 B=1": 1.5e-6,
    "xnor matmul n=512 B=100": 60e-6,
    "xnor matmul n=4096 B=100": 2.3e-3,
}
PLANES = 8
BLOCK_N, BLOCK_M = 512, 128


def _blas_single_thread():
    """Context pinning BLAS to one thread, and a label saying how (see module docstring)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threads = os.environ.get("OPENBLAS_NUM_THREADS")
        return contextlib.nullcontext(), f"env OPENBLAS_NUM_THREADS={threads}"
    return threadpool_limits(limits=1, user_api="blas"), "threadpoolctl limit 1"


def _signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


def _measure(rows, case, impl, fn, quick, **extra):
    """Time ``fn`` and append its row (the hadamnp row carries the case's target)."""
    timing = time_call(fn, budget_s=budget(quick), min_repeats=3 if quick else 7)
    target = TARGETS_S.get(case) if impl == "hadamnp" else None
    rows.append(make_row(BENCH, case, impl, timing, target_s=target, **extra))


def xnor_rows(quick, common):
    """XNOR-popcount products vs float32 BLAS on the same ±1 matrices."""
    from hadamnp.kernels import bitpack

    rng = np.random.default_rng(0)
    rows = []
    n = 512
    W = _signs(rng, (n, n))
    x = _signs(rng, n)
    Wp, xp = bitpack.pack_signs(W), bitpack.pack_signs(x)
    Wf, xf = W.astype(np.float32), x.astype(np.float32)
    out = np.empty(n, dtype=np.int32)
    case = "xnor matvec n=512 B=1"
    _measure(rows, case, "hadamnp", lambda: bitpack.xnor_matvec(Wp, xp, n), quick, **common)
    _measure(rows, case, "hadamnp out=", lambda: bitpack.xnor_matvec(Wp, xp, n, out=out), quick,
             **common)
    _measure(rows, case, "hadamnp kernel only", lambda: bitpack._xnor_rows(Wp, xp, n, out), quick,
             note="no argument checks", **common)
    _measure(rows, case, "f32-blas sgemv", lambda: Wf @ xf, quick, **common)
    for n, B in ((512, 100), (4096, 100)):
        W = _signs(rng, (n, n))
        X = _signs(rng, (B, n))
        Wp, Xp = bitpack.pack_signs(W), bitpack.pack_signs(X)
        Wf, Xf = W.astype(np.float32), np.ascontiguousarray(X.T, dtype=np.float32)
        case = f"xnor matmul n={n} B={B}"
        _measure(rows, case, "hadamnp", lambda: bitpack.xnor_matmul(Wp, Xp, n), quick, **common)
        _measure(rows, case, "f32-blas sgemm", lambda: Wf @ Xf, quick, **common)
    return rows


def bitplane_rows(quick, common):
    """±1 matrix times 8-bit integer activations (bit-planes) vs float32 BLAS, and packing."""
    from hadamnp.kernels import bitpack

    rng = np.random.default_rng(1)
    n = 512
    lo, hi = -(1 << (PLANES - 1)), (1 << (PLANES - 1)) - 1
    W = _signs(rng, (n, n))
    Wp, Wf = bitpack.pack_signs(W), W.astype(np.float32)
    rows = []
    for B in (1, 100):
        X = rng.integers(lo, hi, (B, n), endpoint=True)
        P = bitpack.pack_bitplanes(X, PLANES)
        Xf = np.ascontiguousarray(X.T, dtype=np.float32)
        case = f"bitplane k={PLANES} n={n} B={B}"
        if B == 1:
            _measure(rows, case, "hadamnp", lambda: bitpack.bitplane_matvec(Wp, P[0], n), quick,
                     **common)
            _measure(rows, case, "f32-blas sgemv", lambda: Wf @ Xf[:, 0], quick, **common)
        else:
            _measure(rows, case, "hadamnp", lambda: bitpack.bitplane_matmul(Wp, P, n), quick,
                     **common)
            _measure(rows, case, "f32-blas sgemm", lambda: Wf @ Xf, quick, **common)
        _measure(rows, f"pack_bitplanes k={PLANES} n={n} B={B}", "hadamnp",
                 lambda: bitpack.pack_bitplanes(X, PLANES), quick, **common)
    x = _signs(rng, n)
    _measure(rows, f"pack_signs n={n} B=1", "hadamnp", lambda: bitpack.pack_signs(x), quick,
             **common)
    return rows


def ternary_rows(quick, common):
    """Block-HadamRNN step with index lists vs SciPy CSR and dense float32 BLAS."""
    import scipy.sparse

    from hadamnp.kernels import ternary
    from hadamnp.kernels.fwht import fwht, fwht_columns_inplace
    from hadamnp.reference.ternary import rows_to_dense

    rng = np.random.default_rng(2)
    s = _signs(rng, BLOCK_N)
    T = ternary.block_hadamard_rows(s, BLOCK_M)
    M = rows_to_dense(T, dtype=np.float32)
    csr = scipy.sparse.csr_matrix(M)
    rows = []
    for B in (1, 100):
        X = rng.standard_normal((BLOCK_N, B)).astype(np.float32)
        x = np.ascontiguousarray(X[:, 0])
        case = f"ternary block n={BLOCK_N} m={BLOCK_M} B={B} f32"
        extra = {**common, "nonzeros": int(csr.nnz)}
        s_f = s.astype(np.float32)
        if B == 1:
            y = np.empty_like(x)

            def block_fwht():
                np.multiply(s_f, fwht(x, block_size=BLOCK_M, out=y), out=y)

            _measure(rows, case, "hadamnp", lambda: ternary.ternary_matvec(T, x), quick, **extra)
            _measure(rows, case, "hadamnp-block-fwht", block_fwht, quick,
                     note="s * fwht(x, block_size=m, out=y)", **extra)
            _measure(rows, case, "scipy-csr", lambda: csr @ x, quick, **extra)
            _measure(rows, case, "f32-blas sgemv", lambda: M @ x, quick, **extra)
        else:
            Y = np.empty_like(X)
            s_col = s_f[:, None]

            def block_fwht():
                np.copyto(Y, X)
                fwht_columns_inplace(Y, BLOCK_M)
                np.multiply(s_col, Y, out=Y)

            _measure(rows, case, "hadamnp", lambda: ternary.ternary_matmul(T, X), quick, **extra)
            _measure(rows, case, "hadamnp-block-fwht", block_fwht, quick,
                     note="copy, fwht_columns_inplace(m), times s", **extra)
            _measure(rows, case, "scipy-csr", lambda: csr @ X, quick, **extra)
            _measure(rows, case, "f32-blas sgemm", lambda: M @ X, quick, **extra)
    return rows


def main(quick=False):
    """Time every job; print the table; return the rows (list of dicts)."""
    limit, how = _blas_single_thread()
    common = {"threads": 1, "blas_threads": how}
    with limit:
        rows = xnor_rows(quick, common) + bitplane_rows(quick, common) + ternary_rows(quick, common)
    add_ratios(rows, subject_impl="hadamnp")
    print_table(rows, "binary and sparse-ternary products, single thread; "
                      "hadamnp_speedup = other / hadamnp")
    return rows


if __name__ == "__main__":
    print(format_facts(machine_facts()))
    main(quick="--quick" in sys.argv[1:])
