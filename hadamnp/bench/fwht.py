"""FWHT speed: hadamnp's Numba kernels vs dense BLAS ``x @ H``, a plain radix-2 njit loop and,
when installed, the C SIMD packages ``fht-cpu`` (``import fht_cpu``) and ``ffht``
(``pip install ffht-unofficial``; it needs ``numpy`` and ``pybind11`` at build time, so
``pip install pybind11 wheel && pip install --no-build-isolation ffht-unofficial``).

Jobs: the unnormalised transform of ``B`` rows of length ``n`` (float32 and float64; ``B`` =
1 and 100; full run n = 2^6 .. 2^20, with ``B = 100`` up to n = 2^16 to bound memory and
run time; ``--quick``: n = 64, 512, 4096), and the small batches B = 2..15 at n = 512
(float32) in both layouts. Every row of one case does the same job, single thread:

- ``hadamnp``: the public ``fwht(x, out=y)`` on the ``(B, n)`` layout: validation (dtype,
  sizes, NaN/Inf), out of place into a preallocated ``y``. This is the figure held against
  the targets of issue 2 (n=512: 17 us; n=4096: 150 us; float32, B=100);
- ``hadamnp-alloc``: ``fwht(x)``, allocating its result;
- ``hadamnp-rows-inplace``: the kernel ``fwht_rows_inplace`` (no validation), in place;
- ``hadamnp-overhead`` (B = 1): ``hadamnp`` minus ``hadamnp-rows-inplace``, what the public
  call adds to the kernel call (issue 16 target: at most 0.3x the kernel);
- ``hadamnp-columns``: ``fwht_columns_inplace`` on the ``(n, B)`` layout of the sequence
  kernels, in place (issue 16 target for B = 2..15: within 1.2x of the row layout);
- ``blas-dense``: ``np.matmul(x, H, out=y)`` with ``H = scipy.linalg.hadamard(n)`` (n <= 4096);
- ``njit-radix2``: the textbook three-loop radix-2 FWHT under ``@njit``, in place;
- ``fht-cpu``: ``fht_cpu.fht`` in place, ``num_threads=1`` (a 1-D call for B = 1);
- ``ffht``: ``ffht.fht_`` in place, one 2-D call (``nthreads=1``).

In-place calls are repeated on the same buffer, so its values grow by sqrt(n) per call and
end as Inf/NaN; additions cost the same on any values here (no subnormals can arise), and
the out-of-place rows show the same work on finite data. Each implementation's output is
first checked against the NumPy reference (``check`` column).

Bound: ``bound_s`` is the time to copy ``B n`` elements between two buffers (``np.copyto``,
measured in the same run at the same working-set size): any out-of-place transform reads
its input and writes its output once, so ``bound_fraction`` = copy time / median says how
close a row comes to the bandwidth of the cache level the data lives in.

Timing (:func:`hadamnp.bench.harness.time_call`): the first call is timed alone
(``compile_s`` = first call minus the warm median: JIT compile or on-disk cache load); the
cold JIT compile time of the kernels is measured separately in a fresh interpreter with an
empty Numba cache. Then one warm-up call and samples until ~1 s (quick: ~0.15 s); median,
IQR, min, elements/s, and ``hadamnp_speedup`` = alternative / hadamnp median.

Threads: every row is single-threaded (``threads`` column); run as a module, ``--threads N``
(default 1) sets the thread variables before NumPy is imported. No 2-thread BLAS row: on a
2-core machine shared with other jobs it measured contention, not BLAS (a 2-thread
comparison is made for the training step, where both runs share one process and data).

Usage: ``python -m hadamnp.bench.fwht [--quick] [--json FILE]``.
"""

import json
import os
import subprocess
import sys
import tempfile

if __name__ == "__main__":
    # Thread counts must be set before NumPy/BLAS and Numba are imported.
    from hadamnp.bench._threads import set_threads_from_argv

    set_threads_from_argv(sys.argv)

import argparse  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, copy_time, format_facts,  # noqa: E402
                                   machine_facts, make_row, print_table, skip_row, time_call,
                                   write_jsonl)
from hadamnp.kernels.fwht import fwht, fwht_columns_inplace, fwht_rows_inplace  # noqa: E402
from hadamnp.reference.hadamard import fwht as reference_fwht  # noqa: E402

BENCH = "fwht"
TARGETS = {("float32", 512, 100): 17e-6, ("float32", 4096, 100): 150e-6}
DENSE_MAX_N = 4096
BATCH100_MAX_N = 1 << 16
SMALL_BATCHES = tuple(range(2, 16))
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
COLUMNS = ("case", "impl", "threads", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
           "elements_per_s", "bound_fraction", "hadamnp_speedup", "target_s", "meets_target",
           "check", "note")


def case_name(dtype, n, B):
    return f"fwht {dtype} n={n} B={B}"


def sizes(quick):
    """``(dtype, n, B)`` cases of the run (all implementations)."""
    ns = [64, 512, 4096] if quick else [1 << k for k in range(6, 21)]
    return [(dtype, n, B) for dtype in ("float32", "float64") for n in ns for B in (1, 100)
            if B == 1 or n <= BATCH100_MAX_N]


@numba.njit(cache=True)
def njit_radix2(a):
    """Textbook radix-2 FWHT of each row of ``a`` (R, n), in place: the plain-loop baseline."""
    R, n = a.shape
    for r in range(R):
        h = 1
        while h < n:
            for start in range(0, n, 2 * h):
                for i in range(start, start + h):
                    x = a[r, i]
                    y = a[r, i + h]
                    a[r, i] = x + y
                    a[r, i + h] = x - y
            h *= 2


def _check(fn, x, want, dtype):
    """Run ``fn`` on a copy of ``x`` (B, n) and compare with ``want``: "ok" or what differs."""
    got = np.asarray(fn(x.copy()), dtype=np.float64)
    if got.shape != want.shape:
        return f"MISMATCH: shape {got.shape}"
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max()) / scale
    if err <= TOLERANCE[dtype]:
        return "ok"
    if float(np.abs(got * np.sqrt(x.shape[-1]) - want).max()) / scale <= TOLERANCE[dtype]:
        return "MISMATCH: normalised by 1/sqrt(n)"
    return f"MISMATCH: relative error {err:.2g}"


def _optional(module_name):
    try:
        return __import__(module_name)
    except ImportError:
        return None


def _package_calls(B):
    """``{impl: (in-place call on a (B, n) array returning it, note) or None}``.

    Each package is called the fastest documented way: ``fht_cpu.fht`` with
    ``num_threads=1`` (its 1-D entry point for one row) and one 2-D ``ffht.fht_`` call.
    """
    calls = {"fht-cpu": None, "ffht": None}
    fht_cpu = _optional("fht_cpu")
    if fht_cpu is not None:
        def fht_cpu_call(a):
            if B == 1:
                fht_cpu.fht(a[0])
            else:
                fht_cpu.fht(a, axis=-1, num_threads=1)
            return a
        calls["fht-cpu"] = (fht_cpu_call, "fht_cpu.fht in place, num_threads=1")
    ffht = _optional("ffht")
    if ffht is not None and hasattr(ffht, "fht_"):
        def ffht_call(a):
            ffht.fht_(a, 1)
            return a
        calls["ffht"] = (ffht_call, "ffht.fht_ in place, one 2-D call, nthreads=1")
    return calls


def _in_place(kernel, *args):
    """``f(a)``: run ``kernel(a, *args)`` in place and return ``a`` (for the output check)."""
    def call(a):
        kernel(a, *args)
        return a
    return call


def _via_columns(n):
    """``f(a)``: transform ``a`` (B, n) through the (n, B) column kernel; return (B, n)."""
    def call(a):
        cols = a.T.copy()
        fwht_columns_inplace(cols, n)
        return cols.T
    return call


class _Case:
    """Shared inputs and the row builder of one ``(dtype, n, B)`` case."""

    def __init__(self, dtype, n, B, quick):
        rng = np.random.default_rng(n + B)
        self.x = rng.standard_normal((B, n)).astype(dtype)
        self.want = reference_fwht(self.x.astype(np.float64))
        self.dtype, self.n, self.B, self.quick = dtype, n, B, quick
        self.case = case_name(dtype, n, B)
        self.bound_s = copy_time(self.x.nbytes, quick)
        self.rows = []

    def add(self, impl, fn_timed, fn_checked, note=None, **extra):
        check = _check(fn_checked, self.x, self.want, self.dtype)
        timing = time_call(fn_timed, budget_s=budget(self.quick),
                           min_repeats=3 if self.quick else 5)
        self.rows.append(make_row(BENCH, self.case, impl, timing, elements=self.n * self.B,
                                  bound_s=self.bound_s, check=check,
                                  **({"note": note} if note else {}), n=self.n, B=self.B,
                                  dtype=self.dtype, threads=1, **extra))
        return self.rows[-1]


def run_case(dtype, n, B, quick, announced):
    """Rows of every implementation for one ``(dtype, n, B)`` case.

    ``announced``: set of the packages whose absence was already printed (updated).
    """
    c = _Case(dtype, n, B, quick)
    x = c.x
    out = np.empty_like(x)
    public = c.add("hadamnp", lambda: fwht(x, out=out), fwht, target_s=TARGETS.get((dtype, n, B)))
    c.add("hadamnp-alloc", lambda: fwht(x), fwht)
    rows_buf = x.copy()
    kernel = c.add("hadamnp-rows-inplace", lambda: fwht_rows_inplace(rows_buf, n),
                   _in_place(fwht_rows_inplace, n), note="kernel, no validation")
    if B == 1:
        overhead = max(public["median_s"] - kernel["median_s"], 0.0)
        c.rows.append({"bench": BENCH, "case": c.case, "impl": "hadamnp-overhead",
                       "median_s": overhead, "n": n, "B": B, "dtype": dtype, "threads": 1,
                       "note": "hadamnp - hadamnp-rows-inplace (medians of this run)"})
    cols = x.T.copy()  # a copy even for B = 1, where x.T is already C-contiguous
    c.add("hadamnp-columns", lambda: fwht_columns_inplace(cols, n), _via_columns(n),
          note="(n, B) layout, in place")
    if n <= DENSE_MAX_N:
        H = scipy.linalg.hadamard(n).astype(dtype)
        c.add("blas-dense", lambda: np.matmul(x, H, out=out), lambda a: a @ H,
              note="x @ H, BLAS, 1 thread")
    radix2_buf = x.copy()
    c.add("njit-radix2", lambda: njit_radix2(radix2_buf), _in_place(njit_radix2),
          note="plain radix-2 loops")
    for impl, call in _package_calls(B).items():
        if call is None:
            reason = f"{impl} not importable (optional, not installed)"
            if impl in announced:  # print the message once per run
                c.rows.append({"bench": BENCH, "case": c.case, "impl": impl, "median_s": None,
                               "note": reason, "skipped": True})
            else:
                c.rows.append(skip_row(BENCH, c.case, impl, reason))
                announced.add(impl)
            continue
        fn, note = call
        package_buf = x.copy()
        c.add(impl, lambda: fn(package_buf), fn, note=note)
    print(f"[{BENCH}] {c.case}: hadamnp median {public['median_s'] * 1e6:.3g} us, min "
          f"{public['min_s'] * 1e6:.3g} us (check {public['check']})", flush=True)
    return c.rows


def small_batch_rows(quick):
    """Row vs column layout, n = 512 float32, B = 2..15 (in place, kernels only)."""
    rows = []
    for B in SMALL_BATCHES:
        c = _Case("float32", 512, B, quick)
        rows_buf, cols = c.x.copy(), c.x.T.copy()
        c.add("hadamnp-rows-inplace", lambda: fwht_rows_inplace(rows_buf, 512),
              _in_place(fwht_rows_inplace, 512), note="(B, n) layout, in place")
        c.add("hadamnp-columns", lambda: fwht_columns_inplace(cols, 512), _via_columns(512),
              note="(n, B) layout, in place")
        rows += c.rows
    return rows


_COLD_COMPILE_SCRIPT = """
import json, sys, time
import numpy as np
from hadamnp.kernels.fwht import fwht, fwht_columns_inplace
out = {}
for dtype in ("float32", "float64"):
    x = np.ones((3, 512), dtype)
    t0 = time.perf_counter(); fwht(x); out[f"fwht {dtype}"] = time.perf_counter() - t0
    a = np.ones((512, 100), dtype)
    t0 = time.perf_counter(); fwht_columns_inplace(a, 512)
    out[f"fwht_columns_inplace {dtype}"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def cold_compile_rows():
    """JIT compile time of the kernels with an empty Numba cache, in a fresh interpreter.

    Each figure is the first call's time: type inference, LLVM optimisation and machine
    code for that entry point (later entry points reuse what the earlier ones compiled).
    """
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        result = subprocess.run([sys.executable, "-c", _COLD_COMPILE_SCRIPT], env=env,
                                capture_output=True, text=True)
    if result.returncode != 0:
        return [skip_row(BENCH, "jit compile (cold cache)", "hadamnp",
                         f"child run failed: {result.stderr[-300:]}")]
    return [{"bench": BENCH, "case": f"jit compile (cold cache): {what}", "impl": "hadamnp",
             "median_s": None, "compile_s": seconds,
             "note": "first call in a fresh interpreter, empty cache"}
            for what, seconds in json.loads(result.stdout).items()]


def main(quick=False, json_path=None):
    """Time every case; print the tables; return the rows (list of dicts).

    Parameters
    ----------
    quick : bool
        n = 64, 512, 4096 only and ~0.15 s per figure.
    json_path : str or Path, optional
        Also write the rows as JSON lines (first line: machine facts).
    """
    rows = cold_compile_rows()
    announced = set()
    print_table(rows, "FWHT: JIT compile time, cold cache",
                columns=("case", "impl", "compile_s", "note"))
    for dtype, n, B in sizes(quick):
        rows += add_ratios(run_case(dtype, n, B, quick, announced))
    rows += small_batch_rows(quick)
    measured = [r for r in rows if r.get("n") is not None]
    for dtype in ("float32", "float64"):
        print_table([r for r in measured if r["dtype"] == dtype and r["B"] in (1, 100)],
                    f"FWHT {dtype}, 1 thread; hadamnp_speedup = other / hadamnp (public fwht, "
                    "out=); bound = copy of the same bytes", columns=COLUMNS)
    print_table([r for r in measured if r["B"] in SMALL_BATCHES],
                "FWHT float32 n=512, small batches: (B, n) rows vs (n, B) columns, 1 thread",
                columns=COLUMNS)
    if json_path:
        facts = machine_facts()
        facts["quick"] = quick
        print(f"wrote {write_jsonl(json_path, rows, facts)}")
    return rows


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m hadamnp.bench.fwht",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 64, 512, 4096; short budgets")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS/OpenMP/Numba, set before NumPy loads (default 1)")
    parser.add_argument("--json", dest="json_path", default=None, help="JSON-lines output file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    print(format_facts(machine_facts()))
    main(quick=args.quick, json_path=args.json_path)
