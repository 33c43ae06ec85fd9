"""Toeplitz-like (low displacement rank) products through FFTs vs the dense BLAS product of
the same matrix.

Jobs (float32, single thread), for ``M = sum_j C(g_j) S(h_j)`` of size n x n and rank r:

- ``matmul n=N B=B r=R``: ``Y = X M^T`` for ``B`` rows (``B = 1``: a matrix-vector product).
  ``hadamnp-fft`` is :func:`hadamnp.kernels.ldr.ldr_matmul` on the generators (validation,
  ``2r + 2`` real FFTs per row); ``blas-dense`` is ``np.matmul(X, M.T, out=Y)`` on the
  dense matrix, formed beforehand (OpenBLAS sgemv/sgemm);
- ``backward n=N B=B r=R``: the gradients of that product: ``hadamnp-fft`` is
  ``ldr_matmul_backward`` (``dG``, ``dH``, ``dX``); ``blas-dense`` the dense layer's ``dX = dY
  M`` and ``dM = dY^T X`` (two BLAS products; the dense layer has no generators to map back);
- ``build n=N r=R``: the dense ``M`` from the generators, as the models do once per pass:
  ``hadamnp-fft`` (:func:`hadamnp.kernels.ldr.ldr_matrix`) vs ``reference-dense``, the twin
  in :mod:`hadamnp.reference.ldr` that multiplies the dense circulant and skew-circulant
  factors.

Full run: n = 256, 512, 1024, 2048, 4096; B = 1 and 100; r = 1, 2, 4 (matmul), r = 2
(backward); build for n = 128, 256, 512 (r = 2). ``--quick``: n = 256, 1024, 4096, r = 2.
Each FFT result is first checked against the dense product (``check``: the largest error
relative to the largest output).

Timing (:func:`hadamnp.bench.harness.time_call`): first call alone (``compile_s``; nothing is JIT-compiled
here, so this is first-touch cost), one warm-up call, then samples until ~1 s (quick:
0.15 s); median, IQR, min. ``hadamnp_speedup`` = dense median / FFT median (> 1: the FFT
wins). The summary gives, per (job, B, r), the crossover n (the smallest n from which the
FFT's median stays below the dense one) and the ratio at n = 4096.

Threads: run as a module, ``--threads N`` (default 1) sets the BLAS/OpenMP/Numba thread
variables before NumPy is imported; ``scipy.fft`` runs on one thread (``workers`` left at
its default). Not part of ``python -m hadamnp.bench`` (the runner's modules are the targets
of issues 2, 4 and 16); run it on its own.

Usage: ``python -m hadamnp.bench.ldr [--quick] [--threads N] [--json FILE]``; with
``--json`` the rows (first line: the machine facts) are written to ``FILE``.
"""

import os
import sys

if __name__ == "__main__":
    # Thread counts must be set before NumPy/BLAS and Numba are imported.
    from hadamnp.bench._threads import set_threads_from_argv

    set_threads_from_argv(sys.argv)

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, format_facts,  # noqa: E402
                                   machine_facts, make_row, print_table, time_call,
                                   write_jsonl)
from hadamnp.kernels import ldr  # noqa: E402
from hadamnp.reference import ldr as reference  # noqa: E402

BENCH = "ldr"
DTYPE = np.float32
FULL_SIZES = (256, 512, 1024, 2048, 4096)
QUICK_SIZES = (256, 1024, 4096)
BATCHES = (1, 100)
FULL_RANKS = (1, 2, 4)
BUILD_SIZES = (128, 256, 512)


def _generators(rng, n, r):
    shape = (1, r, n)
    # unit-variance matrix entries: Var(M_ab) = r n sigma^4
    sigma = (r * n) ** -0.25
    return (sigma * rng.standard_normal(shape)).astype(DTYPE), \
        (sigma * rng.standard_normal(shape)).astype(DTYPE)


def _rel_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def matmul_rows(n, B, r, quick, threads, backward=False):
    """``hadamnp-fft`` and ``blas-dense`` rows of one product (or backward) case."""
    rng = np.random.default_rng(n * 1000 + B * 10 + r)
    G, H = _generators(rng, n, r)
    M = ldr.ldr_matrix(G, H, (n, n))
    X = rng.standard_normal((B, n)).astype(DTYPE)
    dY = rng.standard_normal((B, n)).astype(DTYPE)
    shape = (n, n)
    job = "backward" if backward else "matmul"
    case = f"{job} n={n} B={B} r={r}"
    common = {"job": job, "n": n, "B": B, "r": r, "dtype": "float32", "threads": threads}
    b = budget(quick)
    if backward:
        M64 = M.astype(np.float64)
        check = _rel_error(ldr.ldr_matmul_backward(G, H, X, dY, shape)[2],
                           dY.astype(np.float64) @ M64)
        dX = np.empty_like(X)
        dM = np.empty_like(M)

        def fft():
            ldr.ldr_matmul_backward(G, H, X, dY, shape)

        def dense():
            np.matmul(dY, M, out=dX)
            np.matmul(dY.T, X, out=dM)
    else:
        check = _rel_error(ldr.ldr_matmul(G, H, X, shape),
                           X.astype(np.float64) @ M.astype(np.float64).T)
        Y = np.empty((B, n), dtype=DTYPE)

        def fft():
            ldr.ldr_matmul(G, H, X, shape)

        def dense():
            np.matmul(X, M.T, out=Y)

    rows = [make_row(BENCH, case, "hadamnp-fft", time_call(fft, budget_s=b), check=check,
                     note=f"{2 * r + 2} real FFTs per row", **common),
            make_row(BENCH, case, "blas-dense", time_call(dense, budget_s=b),
                     note="dense M, OpenBLAS", **common)]
    add_ratios(rows, subject_impl="hadamnp-fft")
    print(f"[{BENCH}] {case}: fft {rows[0]['median_s'] * 1e3:.3g} ms, dense "
          f"{rows[1]['median_s'] * 1e3:.3g} ms, dense/fft "
          f"{rows[1]['hadamnp_speedup']:.3g}x (check {check:.1e})", flush=True)
    return rows


def build_rows(n, r, quick, threads):
    """The dense matrix from the generators: FFT kernel vs the dense reference twin."""
    rng = np.random.default_rng(n + r)
    G, H = _generators(rng, n, r)
    shape = (n, n)
    case = f"build n={n} r={r}"
    common = {"job": "build", "n": n, "B": None, "r": r, "dtype": "float32",
              "threads": threads}
    check = _rel_error(ldr.ldr_matrix(G, H, shape),
                       reference.ldr_matrix(G.astype(np.float64), H.astype(np.float64), shape))
    b = budget(quick)
    rows = [make_row(BENCH, case, "hadamnp-fft",
                     time_call(lambda: ldr.ldr_matrix(G, H, shape), budget_s=b), check=check,
                     note="product with the identity through FFTs", **common),
            make_row(BENCH, case, "reference-dense",
                     time_call(lambda: reference.ldr_matrix(G, H, shape), budget_s=b,
                               min_repeats=3),
                     note="dense C(g_j) S(h_j) products", **common)]
    add_ratios(rows, subject_impl="hadamnp-fft")
    return rows


def crossovers(rows):
    """Per (job, B, r): the smallest n from which the FFT median stays below the dense one,
    and the dense/FFT ratio at the largest n."""
    out = []
    keys = sorted({(r["job"], r["B"], r["r"]) for r in rows if r["job"] != "build"},
                  key=lambda k: (k[0], k[1], k[2]))
    for job, B, rank in keys:
        ratios = {r["n"]: r["hadamnp_speedup"] for r in rows
                  if (r["job"], r["B"], r["r"]) == (job, B, rank) and r["impl"] == "blas-dense"}
        sizes = sorted(ratios)
        cross = None
        for i, n in enumerate(sizes):
            if all(ratios[m] > 1 for m in sizes[i:]):
                cross = n
                break
        largest = sizes[-1]
        out.append({"bench": BENCH, "case": f"summary {job} B={B} r={rank}", "impl": "summary",
                    "job": job, "B": B, "r": rank, "crossover_n": cross,
                    "largest_n": largest, "ratio_at_largest_n": ratios[largest],
                    "ratios": {str(n): round(ratios[n], 3) for n in sizes}})
    return out


def main(quick=False, json_path=None, threads=None):
    """Time every case; print the tables and the crossovers; return the rows.

    Parameters
    ----------
    quick : bool
        n = 256, 1024, 4096 and r = 2 only, ~0.15 s per figure.
    json_path : str or Path, optional
        Also write the rows as JSON lines (first line: machine facts).
    threads : str, optional
        Recorded in the rows (default: ``OPENBLAS_NUM_THREADS``).
    """
    threads = threads or os.environ.get("OPENBLAS_NUM_THREADS")
    facts = machine_facts()
    print(format_facts(facts))
    sizes = QUICK_SIZES if quick else FULL_SIZES
    ranks = (2,) if quick else FULL_RANKS
    rows = []
    for B in BATCHES:
        for r in ranks:
            for n in sizes:
                rows += matmul_rows(n, B, r, quick, threads)
        for n in sizes:
            rows += matmul_rows(n, B, 2, quick, threads, backward=True)
    for n in (BUILD_SIZES[:2] if quick else BUILD_SIZES):
        rows += build_rows(n, 2, quick, threads)
    summary = crossovers(rows)
    print_table(rows, title="Toeplitz-like products: FFT vs dense BLAS (float32)",
                columns=("case", "impl", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
                         "hadamnp_speedup", "check", "note"))
    print("\n== crossover (smallest n from which the FFT stays faster) ==")
    for s in summary:
        print(f"{s['job']:<9} B={s['B']:<4} r={s['r']}  crossover n = {s['crossover_n']}  "
              f"dense/fft at n={s['largest_n']}: {s['ratio_at_largest_n']:.3g}x   "
              f"(all: {s['ratios']})")
    if json_path:
        facts["load_average_end"] = machine_facts()["load_average"]
        facts["quick"] = quick
        print(f"\nwrote {write_jsonl(json_path, rows + summary, facts)}")
    return rows + summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m hadamnp.bench.ldr",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, short budgets")
    parser.add_argument("--threads", default="1", help="BLAS/OpenMP/Numba threads (default 1)")
    parser.add_argument("--json", default=None, help="JSON-lines output file")
    args = parser.parse_args()
    main(quick=args.quick, json_path=args.json, threads=args.threads)
