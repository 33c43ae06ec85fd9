"""Run every hadamnp benchmark in one process; print the tables and a summary against targets.

Modules run, in order (each exposes ``main(quick=False)`` returning its rows)::

    fwht      FWHT (row and column layouts) vs dense BLAS ``x @ H``, fht-cpu and ffht
    binary    XNOR-popcount / bit-plane vs float32 BLAS; sparse ternary vs CSR, BLAS and
              hadamnp's own block FWHT
    integer   inference step (batch 1): integer engine, lean float step, float and dense paths
    training  one training batch (forward + loss + backward) vs dense NumPy and PyTorch;
              1 and 2 threads; checkpointed states at n = 4096

A module that fails is reported (and recorded in the JSON) without stopping the others. The
summary prints each figure next to its target (issues 2, 4 and 16), with the alternative
measured in the same run.

``--threads N`` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
before NumPy is imported (BLAS reads them once per process) and Numba's thread count
(``numba.set_num_threads``; its pool, ``NUMBA_NUM_THREADS``, keeps every core so that the
training module can measure its 2-thread rows beside the 1-thread ones). If NumPy is
already loaded in this process, the run is re-executed in a fresh interpreter.

Usage::

    python -m hadamnp.bench [--quick] [--threads 1|2] [--json FILE] [--plot FILE.png]

Results (JSON lines, first line: machine facts) go to ``--json FILE``, else to a new file
``hadamnp-bench-<UTC time>.jsonl`` in the temporary directory; the path is printed.
"""

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

MODULES = ("fwht", "binary", "integer", "training")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _row(rows, bench, case, impl):
    """The measured row of ``(bench, case, impl)``, or None."""
    return next((r for r in rows if r.get("bench") == bench and r.get("case") == case
                 and r.get("impl") == impl and r.get("median_s") is not None), None)


def _time_target(bench, case, impl, target_s):
    """Target ``median_s <= target_s`` on one row; the other rows of the case are shown."""
    def judge(rows):
        ours = _row(rows, bench, case, impl)
        if ours is None:
            return None
        others = [r for r in rows if r.get("bench") == bench and r.get("case") == case
                  and r.get("impl") != impl and r.get("median_s") is not None]
        alternatives = ", ".join(f"{r['impl']} {_fmt(r['median_s'])} "
                                 f"({r['median_s'] / ours['median_s']:.3g}x)" for r in others)
        return _fmt(ours["median_s"]), ours["median_s"] <= target_s, \
            f"{ours['median_s'] / target_s:.2f}x target", alternatives or "-"
    return judge


def _ratio_target(bench, num, den, limit, what):
    """Target ``num median / den median <= limit`` (rows given as ``(case, impl)``)."""
    def judge(rows):
        a, b = _row(rows, bench, *num), _row(rows, bench, *den)
        if a is None or b is None:
            return None
        ratio = a["median_s"] / b["median_s"]
        return f"{ratio:.3g}x", ratio <= limit, f"{what} = {ratio:.3g}", \
            f"{num[1]} {_fmt(a['median_s'])}, {den[1]} {_fmt(b['median_s'])}"
    return judge


def _worst_ratio_target(bench, pairs, limit, what):
    """Target ``max over pairs of num/den <= limit`` (the worst case must meet it)."""
    def judge(rows):
        ratios = []
        for num, den in pairs:
            a, b = _row(rows, bench, *num), _row(rows, bench, *den)
            if a is not None and b is not None:
                ratios.append((a["median_s"] / b["median_s"], num[0]))
        if not ratios:
            return None
        worst, case = max(ratios)
        return f"{worst:.3g}x", worst <= limit, f"worst {what} {worst:.3g} ({case})", \
            ", ".join(f"{r:.2f}" for r, _ in ratios)
    return judge


def _field_target(bench, case, impl, field, limit, unit, scale):
    """Target ``row[field] <= limit`` (e.g. bytes of stored state)."""
    def judge(rows):
        ours = _row(rows, bench, case, impl)
        if ours is None or ours.get(field) is None:
            return None
        value = ours[field]
        return f"{value / scale:.4g} {unit}", value <= limit, \
            f"{value / limit:.2f}x limit", "-"
    return judge


def _not_available(reason):
    """A judge for a target no implementation addresses: always missed, with the reason."""
    def judge(rows):
        return "-", False, reason, "-"
    return judge


_SMNIST = "smnist n=512 T=784 B=100 d_in=1"
_COPY = "copy n=128 T=1000 B=128 d_in=10"
_BIG = "smnist-shape n=4096 T=784 B=100 d_in=1"
# (issue, job, bench module, target text, judge(rows) -> (figure, met, verdict detail,
#  context) or None, what the issue author measured).
TARGETS = (
    (2, "FWHT n=512 batch 100 (float32)", "fwht", "17 us",
     _time_target("fwht", "fwht float32 n=512 B=100", "hadamnp", 17e-6),
     "ffht/fht-cpu 16.8 us; dense BLAS 545 us"),
    (2, "FWHT n=4096 batch 100 (float32)", "fwht", "150 us",
     _time_target("fwht", "fwht float32 n=4096 B=100", "hadamnp", 150e-6), "fht-cpu 142 us"),
    (4, "+/-1 matvec n=512 batch 1", "binary", "1.5 us",
     _time_target("binary", "xnor matvec n=512 B=1", "hadamnp", 1.5e-6), "BLAS sgemv 13.7 us"),
    (4, "+/-1 matmul n=512 batch 100", "binary", "60 us",
     _time_target("binary", "xnor matmul n=512 B=100", "hadamnp", 60e-6), "BLAS sgemm 615 us"),
    (4, "+/-1 matmul n=4096 batch 100", "binary", "2.3 ms",
     _time_target("binary", "xnor matmul n=4096 B=100", "hadamnp", 2.3e-3),
     "BLAS sgemm 46.8 ms"),
    (4, "integer step n=512 batch 1", "integer", "2 us",
     _time_target("integer", "step n=512 B=1", "hadamnp-int", 2e-6), "dense sgemv step 13.7 us"),
    (16, "training step, sMNIST shape, 1 thread", "training", "30 ms",
     _time_target("training", _SMNIST, "hadamnp-model", 30e-3),
     "47.5 ms; PyTorch FWHT 8x, dense 30x slower"),
    (16, "same, 2 threads vs 1", "training", ">= 1.7x",
     _not_available("no parallel path: the sequence kernels run on one thread"), "1.00x"),
    (16, "training step, copy shape, 1 thread", "training", "25 ms",
     _time_target("training", _COPY, "hadamnp-model", 25e-3), "63 ms"),
    (16, "float HadamRNN step n=512 B=1", "integer", "1 us",
     _time_target("integer", "step n=512 B=1 (one call per step)", "hadamnp-float-step", 1e-6),
     "5.9 us"),
    (16, "FWHT columns n=512 B=2..15 vs rows", "fwht", "<= 1.2x",
     _worst_ratio_target("fwht", [((f"fwht float32 n=512 B={B}", "hadamnp-columns"),
                                   (f"fwht float32 n=512 B={B}", "hadamnp-rows-inplace"))
                                  for B in range(2, 16)], 1.2, "columns / rows"),
     "2-12x slower than rows"),
    (16, "FWHT public call at B=1: overhead vs kernel", "fwht", "<= 0.3x",
     _worst_ratio_target("fwht", [((f"fwht {d} n={n} B=1", "hadamnp-overhead"),
                                   (f"fwht {d} n={n} B=1", "hadamnp-rows-inplace"))
                                  for d in ("float32", "float64") for n in (64, 512, 4096)],
                         0.3, "overhead / kernel"), "4.6-4.8x"),
    (16, "state memory n=4096 T=784 B=100 (checkpointed)", "training", "<= 200 MB",
     _field_target("training", _BIG, "hadamnp-checkpointed", "state_bytes", 200e6, "MB", 1e6),
     "1.28 GB"),
    (16, "same, time vs all states stored", "training", "<= 1.4x",
     _ratio_target("training", (_BIG, "hadamnp-checkpointed"), (_BIG, "hadamnp-all-states"),
                   1.4, "checkpointed / all-states time"), "-"),
)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m hadamnp.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short budgets (~0.15 s per figure, fewer sizes); a few minutes")
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1,
                        help="threads for Numba, OpenMP and BLAS (default 1)")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="JSON-lines output (default: a new file in the temporary directory)")
    parser.add_argument("--plot", dest="plot_path", default=None,
                        help="write a PNG of FWHT time vs n (needs matplotlib)")
    parser.add_argument("--only", nargs="+", choices=MODULES, default=None,
                        help="run only these modules")
    return parser.parse_args(argv)


def default_json_path():
    """A new file ``hadamnp-bench-<UTC time>.jsonl`` in the temporary directory."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.gettempdir()) / f"hadamnp-bench-{stamp}.jsonl"


def _env_matches(threads):
    return all(os.environ.get(v) == str(threads) for v in THREAD_ENV_VARS)


def run_module(name, quick):
    """Import and run one bench module; return ``(rows, status)``.

    ``status`` is ``"ok"`` or ``"error: ..."``; a failing module's traceback is printed and
    the remaining modules still run.
    """
    print(f"\n######## {name} ########", flush=True)
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"hadamnp.bench.{name}")
        rows = list(module.main(quick=quick))
    except Exception as exc:  # a broken module must not hide the others' figures
        traceback.print_exc()
        print(f"== {name}: FAILED ({type(exc).__name__}: {exc}) ==")
        return [], f"error: {type(exc).__name__}: {exc}"
    print(f"[{name}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s]", flush=True)
    return rows, "ok"


def summary_rows(rows, statuses):
    """One row per target: hadamnp's figure, the target, the verdict and the context."""
    out = []
    for issue, job, module, target, judge, author in TARGETS:
        result = judge(rows)
        if result is None:
            figure, verdict, context = "-", f"not measured ({module}: "\
                f"{statuses.get(module, 'not run')})", "-"
        else:
            figure, met, detail, context = result
            verdict = f"MEETS ({detail})" if met else f"misses ({detail})"
        out.append({"issue": issue, "job": job, "hadamnp": figure, "target": target,
                    "verdict": verdict, "measured here": context, "issue author measured": author})
    return out


def _fmt(seconds):
    from hadamnp.bench.harness import format_seconds
    return format_seconds(seconds)


def print_summary(summary):
    columns = list(summary[0])
    widths = [max(len(c), *(len(str(r[c])) for r in summary)) for c in columns]
    print("\n======== summary: figures vs targets (issues 2, 4 and 16) ========")
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
        if r.get("bench") == "fwht" and r.get("median_s") is not None and r.get("n") and \
                r.get("B") in (1, 100) and (r.get("dtype") == "float32" or r["impl"] == "hadamnp"):
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
        ax.set_title(f"FWHT of B={B} rows, 1 thread")
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
        return subprocess.run([sys.executable, "-m", "hadamnp.bench", *argv],
                              env=env).returncode
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    from hadamnp.bench.harness import format_facts, load_average, machine_facts, write_jsonl

    t0 = time.perf_counter()
    facts = machine_facts()
    facts.update(quick=args.quick, threads=args.threads)
    print(format_facts(facts))
    print("note: figures are medians over repeats; on a shared machine compare the ratios "
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
    path = write_jsonl(args.json_path or default_json_path(),
                       rows + [{"bench": "summary", **s} for s in summary], facts)
    print(f"wrote {path}")
    if args.plot_path:
        plot_fwht(rows, args.plot_path)
    return 1 if any(s.startswith("error") for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
