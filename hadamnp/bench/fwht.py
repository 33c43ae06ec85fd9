"""FWHT speed: hadamnp's Numba kernels vs dense BLAS ``x @ H``, a plain radix-2 njit loop and,
when importable, the C SIMD packages ``fht-cpu`` (``from fht import fht``) and ``ffht``.

Jobs: the unnormalised transform of ``B`` rows of length ``n`` (float32 and float64; ``B`` =
1 and 100; full run n = 2^6 .. 2^20, with ``B = 100`` up to n = 2^16 to bound memory and
run time; ``--quick``: n = 64, 512, 4096). Every row of one case does the same job:

- ``hadamnp``: the public ``fwht(x, out=y)`` on the ``(B, n)`` layout: validation (dtype,
  sizes, NaN/Inf), out of place into a preallocated ``y``. This is the figure held against
  the targets of issue 2 (n=512: 17 us; n=4096: 150 us; float32, B=100);
- ``hadamnp-alloc``: ``fwht(x)``, allocating its result;
- ``hadamnp-rows-inplace``: the kernel ``fwht_rows_inplace`` (no validation), in place;
- ``hadamnp-columns``: ``fwht_columns_inplace`` on the ``(n, B)`` layout of the sequence
  kernels, in place;
- ``blas-dense``: ``np.matmul(x, H, out=y)`` with ``H = scipy.linalg.hadamard(n)`` (n <= 4096);
- ``njit-radix2``: the textbook three-loop radix-2 FWHT under ``@njit``, in place;
- ``fht-cpu`` / ``ffht``: the packages' in-place calls, skipped with a message when absent.

In-place calls are repeated on the same buffer, so its values grow by sqrt(n) per call and
end as Inf/NaN; additions cost the same on any values here (no subnormals can arise), and
the out-of-place rows show the same work on finite data. Each implementation's output is
first checked against the NumPy reference (``check`` column).

Timing (``_harness.time_call``): the first call is timed alone (``compile_s`` = first call
minus the warm median: JIT compile or on-disk cache load); the cold JIT compile time of the
kernels is measured separately in a fresh interpreter with an empty Numba cache. Then one
warm-up call and samples until ~1 s (quick: ~0.15 s); median, IQR, min, elements/s, and
``hadamnp_speedup`` = alternative / hadamnp median.

Threads: single thread. Run as a script, ``--threads N`` (default 1) sets
``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
before NumPy is imported; imported as a module (``bench/run_all.py``), the caller's
settings apply. The hadamnp kernels are single-threaded either way. A 2-thread BLAS figure
for n = 512 and 4096 (float32, B = 100) is measured in a child interpreter
(``blas-dense-2thr``).

Usage: ``python bench/bench_fwht.py [--quick] [--threads N] [--json FILE]``.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS")


def _arg_value(argv, flag, default):
    """Value following ``flag`` in ``argv`` (read before argparse: NumPy is not loaded yet)."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else default


if __name__ == "__main__":
    # Thread counts must be set before NumPy/BLAS and Numba are imported.
    for _var in THREAD_ENV_VARS:
        os.environ[_var] = _arg_value(sys.argv, "--threads", "1")
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import argparse  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
from _harness import (add_ratios, budget, format_facts, machine_facts, make_row,  # noqa: E402
                      print_table, skip_row, time_call, write_jsonl)

from hadamnp.kernels.fwht import fwht, fwht_columns_inplace, fwht_rows_inplace  # noqa: E402
from hadamnp.reference.hadamard import fwht as reference_fwht  # noqa: E402

BENCH = "fwht"
TARGETS = {("float32", 512, 100): 17e-6, ("float32", 4096, 100): 150e-6}
DENSE_MAX_N = 4096
BATCH100_MAX_N = 1 << 16
TWO_THREAD_CASES = (("float32", 512, 100), ("float32", 4096, 100))
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
COLUMNS = ("case", "impl", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
           "elements_per_s", "hadamnp_speedup", "target_s", "meets_target", "check", "note")


def case_name(dtype, n, B):
    return f"fwht {dtype} n={n} B={B}"


def sizes(quick):
    """``(dtype, n, B)`` cases of the run."""
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
    """``{impl: (in-place call on a (B, n) array returning the result, note)}`` of the packages.

    ``fht-cpu``: ``fht(x)`` transforms in place (2-D: along the last axis). ``ffht``: the
    in-place ``fht_`` of the FFHT-unofficial fork, else the original ``fht`` (1-D only: rows
    one by one from Python).
    """
    calls = {"fht-cpu": None, "ffht": None}
    fht_cpu = _optional("fht")
    if fht_cpu is not None and hasattr(fht_cpu, "fht"):
        def fht_cpu_call(a):
            fht_cpu.fht(a[0]) if B == 1 else fht_cpu.fht(a, axis=-1)
            return a
        calls["fht-cpu"] = (fht_cpu_call, "in place")
    ffht = _optional("ffht")
    if ffht is not None:
        inplace = getattr(ffht, "fht_", None) or ffht.fht

        def ffht_call(a):
            for row in a:
                inplace(row)
            return a
        calls["ffht"] = (ffht_call, "in place, rows from a Python loop")
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


def run_case(dtype, n, B, quick, threads, announced):
    """Rows of every implementation for one ``(dtype, n, B)`` case.

    ``announced``: set of the packages whose absence was already printed (updated).
    """
    rng = np.random.default_rng(n + B)
    x = rng.standard_normal((B, n)).astype(dtype)
    want = reference_fwht(x.astype(np.float64))
    case = case_name(dtype, n, B)
    common = {"n": n, "B": B, "dtype": dtype, "threads": threads}
    elements = n * B
    b = budget(quick)
    rows = []

    def add(impl, fn_timed, fn_checked, note=None, **extra):
        check = _check(fn_checked, x, want, dtype)
        timing = time_call(fn_timed, budget_s=b, min_repeats=3 if quick else 5)
        rows.append(make_row(BENCH, case, impl, timing, elements=elements, check=check,
                             **({"note": note} if note else {}), **common, **extra))

    out = np.empty_like(x)
    add("hadamnp", lambda: fwht(x, out=out), fwht, target_s=TARGETS.get((dtype, n, B)))
    add("hadamnp-alloc", lambda: fwht(x), fwht)
    rows_buf = x.copy()
    add("hadamnp-rows-inplace", lambda: fwht_rows_inplace(rows_buf, n),
        _in_place(fwht_rows_inplace, n), note="kernel, no validation")
    cols = x.T.copy()  # a copy even for B = 1, where x.T is already C-contiguous
    add("hadamnp-columns", lambda: fwht_columns_inplace(cols, n), _via_columns(n),
        note="(n, B) layout, in place")
    if n <= DENSE_MAX_N:
        H = scipy.linalg.hadamard(n).astype(dtype)
        add("blas-dense", lambda: np.matmul(x, H, out=out), lambda a: a @ H,
            note="x @ H, BLAS")
    radix2_buf = x.copy()
    add("njit-radix2", lambda: njit_radix2(radix2_buf), _in_place(njit_radix2),
        note="plain radix-2 loops")
    for impl, call in _package_calls(B).items():
        if call is None:
            reason = f"{impl} not importable (optional, not installed)"
            if impl in announced:  # print the message once per run
                rows.append({"bench": BENCH, "case": case, "impl": impl, "median_s": None,
                             "note": reason, "skipped": True})
            else:
                rows.append(skip_row(BENCH, case, impl, reason))
                announced.add(impl)
            continue
        fn, note = call
        package_buf = x.copy()
        add(impl, lambda: fn(package_buf), fn, note=note)
    ours = rows[0]
    print(f"[{BENCH}] {case}: hadamnp median {ours['median_s'] * 1e6:.3g} us, min "
          f"{ours['min_s'] * 1e6:.3g} us (check {ours['check']})",
          flush=True)
    return rows


def dense_rows(cases, quick, threads):
    """``blas-dense`` rows only (for the child interpreter measuring 2-thread BLAS)."""
    rows = []
    for dtype, n, B in cases:
        x = np.random.default_rng(n + B).standard_normal((B, n)).astype(dtype)
        H = scipy.linalg.hadamard(n).astype(dtype)
        out = np.empty_like(x)
        timing = time_call(lambda: np.matmul(x, H, out=out), budget_s=budget(quick))
        rows.append(make_row(BENCH, case_name(dtype, n, B), f"blas-dense-{threads}thr", timing,
                             elements=n * B, n=n, B=B, dtype=dtype, threads=threads,
                             note=f"x @ H, BLAS with {threads} threads"))
    return rows


def two_thread_blas_rows(quick):
    """Run :func:`dense_rows` with 2 BLAS threads in a child interpreter; return its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"
        env = {**os.environ, **{v: "2" for v in THREAD_ENV_VARS}}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--dense-only", "--threads", "2",
               "--rows-out", str(path)] + (["--quick"] if quick else [])
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"[{BENCH}] 2-thread BLAS run failed:\n{result.stderr[-2000:]}")
            return [skip_row(BENCH, case_name(*c), "blas-dense-2thr", "child run failed")
                    for c in TWO_THREAD_CASES]
        return json.loads(path.read_text())


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


def _threads():
    value = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return int(value) if value and value.isdigit() else None


def main(quick=False, json_path=None):
    """Time every case; print the tables; return the rows (list of dicts).

    Parameters
    ----------
    quick : bool
        n = 64, 512, 4096 only and ~0.15 s per figure.
    json_path : str or Path, optional
        Also write the rows as JSON lines (first line: machine facts).
    """
    threads = _threads()
    rows = cold_compile_rows()
    announced = set()
    print_table(rows, "FWHT: JIT compile time, cold cache",
                columns=("case", "impl", "compile_s", "note"))
    for dtype, n, B in sizes(quick):
        rows += add_ratios(run_case(dtype, n, B, quick, threads, announced))
    if threads != 2:
        rows += two_thread_blas_rows(quick)
    measured = [r for r in rows if r.get("n") is not None]
    for dtype in ("float32", "float64"):
        print_table([r for r in measured if r["dtype"] == dtype],
                    f"FWHT {dtype}, {threads or 'default'} BLAS thread(s); "
                    f"hadamnp_speedup = other / hadamnp (public fwht, out=)", columns=COLUMNS)
    if json_path:
        facts = machine_facts()
        facts["quick"] = quick
        print(f"wrote {write_jsonl(json_path, rows, facts)}")
    return rows


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 64, 512, 4096; short budgets")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS/OpenMP/Numba, set before NumPy loads (default 1)")
    parser.add_argument("--json", dest="json_path", default=None, help="JSON-lines output file")
    parser.add_argument("--dense-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows-out", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    if args.dense_only:
        Path(args.rows_out).write_text(json.dumps(dense_rows(TWO_THREAD_CASES, args.quick,
                                                             args.threads)))
    else:
        print(format_facts(machine_facts()))
        main(quick=args.quick, json_path=args.json_path)
