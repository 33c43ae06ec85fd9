"""Run every hadamnp benchmark in one process; print the tables and a summary against targets.

Modules run, in order (each exposes ``main(quick=False)`` returning its rows)::

    bench_fwht      FWHT vs dense BLAS ``H @ x`` and the PyPI FWHT packages
    bench_binary    XNOR-popcount / bit-plane vs float32 BLAS; sparse ternary vs CSR and BLAS
    bench_integer   integer inference step (batch 1) vs the float FWHT path vs dense sgemv
    bench_training  one training batch (forward + backward) vs dense NumPy and PyTorch

A module that is absent or fails is reported (and recorded in the JSON) without stopping the
others. The summary prints each figure next to its target from issue 2 (HadamRNN core) and
issue 4 (deployment path), with the alternative measured in the same run.

``--threads N`` sets ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` before NumPy is imported (BLAS and Numba read them once per process);
if NumPy is already loaded in this process, the run is re-executed in a fresh interpreter.

Usage::

    python bench/run_all.py [--quick] [--threads 1|2] [--json FILE] [--plot FILE.png]

Results go to ``bench/results/latest.jsonl`` (first line: machine facts) unless ``--json``.
"""

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
MODULES = ("bench_fwht", "bench_binary", "bench_integer", "bench_training")
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS")
DEFAULT_JSON = BENCH_DIR / "results" / "latest.jsonl"
if str(BENCH_DIR) not in sys.path:  # the bench modules and _harness import as top-level names
    sys.path.insert(0, str(BENCH_DIR))

# Speed targets of issues 2 and 4: (issue, job, bench, case, hadamnp impl, target seconds,
# what the issue author measured for the alternatives).
TARGETS = (
    (2, "FWHT n=512 batch 100 (float32)", "fwht", "fwht float32 n=512 B=100", "hadamnp", 17e-6,
     "ffht/fht-cpu 16.8 us; dense BLAS 545 us; plain njit loop 225 us"),
    (2, "FWHT n=4096 batch 100 (float32)", "fwht", "fwht float32 n=4096 B=100", "hadamnp",
     150e-6, "fht-cpu 142 us"),
    (2, "sMNIST-shape batch, fwd + bwd", "training", "smnist n=512 T=784 B=100 d_in=1",
     "hadamnp", 0.15, "PyTorch dense 1.49 s; PyTorch FWHT 0.35 s"),
    (2, "copy-shape batch, fwd + bwd", "training", "copy n=128 T=1000 B=128 d_in=10",
     "hadamnp", 0.05, "PyTorch dense 0.32 s"),
    (4, "+/-1 matvec n=512 batch 1", "binary", "xnor matvec n=512 B=1", "hadamnp", 1.5e-6,
     "BLAS sgemv 13.7 us; first Numba XNOR 1.9 us"),
    (4, "+/-1 matmul n=512 batch 100", "binary", "xnor matmul n=512 B=100", "hadamnp", 60e-6,
     "BLAS sgemm 615 us; numpy bitwise_count 1.76 ms"),
    (4, "+/-1 matmul n=4096 batch 100", "binary", "xnor matmul n=4096 B=100", "hadamnp",
     2.3e-3, "BLAS sgemm 46.8 ms"),
    (4, "integer step n=512 batch 1", "integer", "step n=512 B=1", "hadamnp-int", 2e-6,
     "dense float32 sgemv step 13.7 us"),
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short budgets (~0.15 s per figure, fewer sizes); < 2 minutes")
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1,
                        help="threads for Numba, OpenMP and BLAS (default 1)")
    parser.add_argument("--json", dest="json_path", default=str(DEFAULT_JSON),
                        help=f"JSON-lines output (default {DEFAULT_JSON})")
    parser.add_argument("--plot", dest="plot_path", default=None,
                        help="write a PNG of FWHT time vs n (needs matplotlib)")
    parser.add_argument("--only", nargs="+", choices=MODULES, default=None,
                        help="run only these modules")
    return parser.parse_args(argv)


def _env_matches(threads):
    return all(os.environ.get(v) == str(threads) for v in THREAD_ENV_VARS)


def run_module(name, quick):
    """Import and run one bench module; return ``(rows, status)``.

    ``status`` is ``"ok"``, ``"missing"`` (no such file) or ``"error: ..."``; a failing
    module's traceback is printed and the remaining modules still run.
    """
    if not (BENCH_DIR / f"{name}.py").exists():
        print(f"\n== {name}: MISSING (bench/{name}.py not found); its figures are not measured ==")
        return [], "missing"
    print(f"\n######## {name} ########", flush=True)
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(name)
        rows = list(module.main(quick=quick))
    except Exception as exc:  # a broken module must not hide the others' figures
        traceback.print_exc()
        print(f"== {name}: FAILED ({type(exc).__name__}: {exc}) ==")
        return [], f"error: {type(exc).__name__}: {exc}"
    print(f"[{name}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s]", flush=True)
    return rows, "ok"


def _measured(row):
    return row.get("median_s") is not None


def summary_rows(rows, statuses):
    """One row per target: hadamnp's figure, the target, and the alternatives of that case."""
    out = []
    for issue, job, bench, case, impl, target, author in TARGETS:
        module = f"bench_{bench}"
        same_case = [r for r in rows if r.get("bench") == bench and r.get("case") == case
                     and _measured(r)]
        ours = next((r for r in same_case if r["impl"] == impl), None)
        others = [r for r in same_case if r["impl"] != impl and not r["impl"].startswith(impl)]
        if ours is None:
            status = statuses.get(module, "not run")
            figure, verdict = "-", f"not measured ({module}: {status})"
        else:
            figure = _fmt(ours["median_s"])
            verdict = "MEETS" if ours["median_s"] <= target else \
                f"misses ({ours['median_s'] / target:.2f}x target)"
        alternatives = ", ".join(f"{r['impl']} {_fmt(r['median_s'])}"
                                 + (f" ({r['median_s'] / ours['median_s']:.3g}x)" if ours else "")
                                 for r in others) or "-"
        out.append({"issue": issue, "job": job, "hadamnp": figure, "target": _fmt(target),
                    "verdict": verdict, "alternatives measured here (x = alt / hadamnp)":
                    alternatives, "issue author measured": author})
    return out


def _fmt(seconds):
    from _harness import format_seconds
    return format_seconds(seconds)


def print_summary(summary):
    columns = list(summary[0])
    widths = [max(len(c), *(len(str(r[c])) for r in summary)) for c in columns]
    print("\n======== summary: figures vs targets (issues 2 and 4) ========")
    for line in [columns, ["-" * w for w in widths]] + [[str(r[c]) for c in columns]
                                                         for r in summary]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


def plot_fwht(rows, path):
    """PNG of FWHT median time vs n: one panel per batch size, one line per implementation
    (float32 solid; hadamnp's float64 dashed)."""
    try:
        import matplotlib
    except ImportError:
        print("--plot: matplotlib is not installed (pip install matplotlib); no plot written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for r in rows:
        if r.get("bench") == "fwht" and _measured(r) and r.get("n") and \
                (r.get("dtype") == "float32" or r["impl"] == "hadamnp"):
            key = (r.get("B"), r["impl"], r.get("dtype"))
            series.setdefault(key, []).append((r["n"], r["median_s"]))
    if not series:
        print("--plot: no FWHT rows to plot")
        return None
    batches = sorted({key[0] for key in series})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 5), squeeze=False)
    for ax, B in zip(axes[0], batches):
        for (b, impl, dtype), points in sorted(series.items()):
            if b != B:
                continue
            points.sort()
            ax.loglog([p[0] for p in points], [p[1] for p in points], marker="o", ms=3,
                      linestyle="--" if dtype == "float64" else "-", label=f"{impl} {dtype}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("transform length n")
        ax.set_ylabel("median time per call (s)")
        ax.set_title(f"FWHT of B={B} rows")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def main(argv=None):
    """Run the modules; return the process exit status (0, or 1 if a module failed)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if "numpy" in sys.modules and not _env_matches(args.threads):
        # BLAS and Numba have read their thread counts already: start afresh.
        env = {**os.environ, **{v: str(args.threads) for v in THREAD_ENV_VARS}}
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv],
                              env=env).returncode
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(args.threads)
    from _harness import format_facts, load_average, machine_facts, write_jsonl

    t0 = time.perf_counter()
    facts = machine_facts()
    facts.update(quick=args.quick, threads=args.threads)
    print(format_facts(facts))
    print("note: a noisy 2-core machine; figures are medians over repeats, compare ratios "
          "measured in the same run rather than absolute times across runs")
    rows, statuses = [], {}
    for name in args.only or MODULES:
        module_rows, statuses[name] = run_module(name, args.quick)
        rows += module_rows
    facts["modules"] = statuses
    facts["load_average_end"] = load_average()
    facts["wall_s"] = round(time.perf_counter() - t0, 1)
    summary = summary_rows(rows, statuses)
    print_summary(summary)
    print(f"\nload average (1, 5, 15 min): start {facts['load_average']}, end "
          f"{facts['load_average_end']}; wall time {facts['wall_s']} s; modules {statuses}")
    path = write_jsonl(args.json_path, rows + [{"bench": "summary", **s} for s in summary], facts)
    print(f"wrote {path}")
    if args.plot_path:
        plot_fwht(rows, args.plot_path)
    return 1 if any(s.startswith("error") for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
