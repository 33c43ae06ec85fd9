"""Shared timing harness of the :mod:`hadamnp.bench` modules.

Every figure is measured the same way (STYLE.md, "Honest benchmarks"):

1. the **first call** is timed on its own; its excess over the warm median is reported as
   ``compile_s`` (Numba JIT compile, or loading the on-disk cache, plus first-touch costs);
2. ``warmup`` further calls are made and discarded;
3. samples are then taken until about ``budget`` seconds have been spent (at least
   ``min_repeats``). A sample times ``number`` back-to-back calls, with ``number`` chosen so
   one sample lasts at least ~20 us, which keeps the timer's own overhead small for
   microsecond kernels;
4. the row reports the median, min, quartiles and IQR of the per-call time, elements per
   second and, where a bound is known (``bound_s``: the least time the machine's limit
   allows), the fraction ``bound_s / median_s`` of that limit reached.

Rows are plain dicts (JSON-serialisable), so scripts can return them, :func:`print_table`
can show them and :func:`write_jsonl` can store them next to :func:`machine_facts`.

Only NumPy is imported at module level; thread-count environment variables must therefore
be set (as ``python -m hadamnp.bench --threads N`` does) before this module is imported.
"""

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hadamnp.bench._threads import THREAD_ENV_VARS

FULL_BUDGET_S = 1.0
QUICK_BUDGET_S = 0.15
_MIN_SAMPLE_S = 20e-6
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vpopcntdq", "popcnt",
              "bmi2")


def budget(quick):
    """Seconds to spend sampling one figure: ~1 s, or ~0.15 s in quick mode."""
    return QUICK_BUDGET_S if quick else FULL_BUDGET_S


def time_call(fn, *, budget_s=FULL_BUDGET_S, warmup=1, min_repeats=5, max_repeats=100_000):
    """Time ``fn()`` (no arguments) with a separate first call, warm-up and repeats.

    Parameters
    ----------
    fn : callable
        Called with no arguments; its result is discarded.
    budget_s : float
        Approximate total seconds spent on the repeated samples.
    warmup : int
        Calls after the first one that are made and discarded.
    min_repeats, max_repeats : int
        Bounds on the number of samples.

    Returns
    -------
    dict with ``median_s``, ``min_s``, ``q1_s``, ``q3_s``, ``iqr_s`` (per-call seconds),
    ``repeats`` (samples), ``number`` (calls per sample), ``first_call_s`` and
    ``compile_s`` (first call minus the warm median, floored at 0).
    """
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    warm = first
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        warm = time.perf_counter() - t0
    # Calls per sample: enough to make one sample >= _MIN_SAMPLE_S.
    number = 1 if warm >= _MIN_SAMPLE_S else \
        int(min(10_000, np.ceil(_MIN_SAMPLE_S / max(warm, 1e-9))))
    samples = []
    spent = 0.0
    while len(samples) < max_repeats and (len(samples) < min_repeats or spent < budget_s):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        spent += elapsed
        samples.append(elapsed / number)
    s = np.asarray(samples)
    q1, median, q3 = np.percentile(s, [25, 50, 75])
    return {"median_s": float(median), "min_s": float(s.min()), "q1_s": float(q1),
            "q3_s": float(q3), "iqr_s": float(q3 - q1), "repeats": len(samples),
            "number": number, "first_call_s": first, "compile_s": max(first - float(median), 0.0)}


def make_row(bench, case, impl, timing, *, elements=None, bound_s=None, target_s=None, **extra):
    """One result row: identification, the :func:`time_call` fields and derived figures.

    Parameters
    ----------
    bench : str
        Script name, e.g. ``"training"``.
    case : str
        The job measured, e.g. ``"smnist n=512 T=784 B=100"``; rows of different ``impl``
        with the same ``case`` are comparable.
    impl : str
        Who did the job, e.g. ``"hadamnp"``, ``"numpy-dense"``, ``"torch-dense"``.
    timing : dict from :func:`time_call`
    elements : int, optional
        Elements processed per call (gives ``elements_per_s``).
    bound_s : float, optional
        Least time the machine's limit allows for one call (gives ``bound_fraction``).
    target_s : float, optional
        Target time for this job (from the issues), printed next to the figure.
    **extra
        Further JSON-serialisable fields (sizes, dtype, threads, notes).
    """
    row = {"bench": bench, "case": case, "impl": impl, **timing}
    median = timing["median_s"]
    if elements is not None:
        row["elements"] = int(elements)
        row["elements_per_s"] = elements / median if median > 0 else None
    if bound_s is not None:
        row["bound_s"] = float(bound_s)
        row["bound_fraction"] = float(bound_s) / median if median > 0 else None
    if target_s is not None:
        row["target_s"] = float(target_s)
        row["meets_target"] = median <= target_s
    row.update(extra)
    return row


def skip_row(bench, case, impl, reason):
    """Row standing for a measurement that could not be made (e.g. an optional package)."""
    print(f"[{bench}] skipped {impl} for {case}: {reason}")
    return {"bench": bench, "case": case, "impl": impl, "median_s": None, "note": reason,
            "skipped": True}


def add_ratios(rows, subject_impl="hadamnp"):
    """Set ``hadamnp_speedup`` on the alternatives' rows: their time / the subject's time.

    For each ``case`` with a measured ``subject_impl`` row, every other measured row of that
    case gets ``hadamnp_speedup = row median / subject median`` (> 1: hadamnp is faster).
    Returns ``rows`` (modified in place).
    """
    subject = {r["case"]: r["median_s"] for r in rows
               if r["impl"] == subject_impl and r.get("median_s")}
    for r in rows:
        if r["case"] in subject and r["impl"] != subject_impl and r.get("median_s"):
            r["hadamnp_speedup"] = r["median_s"] / subject[r["case"]]
    return rows


def memory_bandwidth(quick=False, nbytes=None):
    """Measured copy bandwidth in bytes/s (read + write counted), single thread.

    Copies a float64 array far larger than the last-level cache with ``np.copyto`` and
    takes the best of the repeats (the least disturbed by other load).
    """
    nbytes = nbytes or (64 if quick else 256) * 2**20
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(3 if quick else 10))
    return 2 * nbytes / best


def copy_time(nbytes, quick=False):
    """Least seconds to copy ``nbytes`` between two buffers of that size (``np.copyto``).

    The bandwidth bound of a pass that reads its input and writes its output once, at the
    cache level where a working set of that size lives; measured in the calling run, best
    of repeats (the least disturbed by other load).
    """
    src = np.ones(max(nbytes // 8, 1))
    dst = np.empty_like(src)
    np.copyto(dst, src)
    reps = max(1, min(10_000, int(2e6 // max(nbytes, 1))))

    def copies():
        for _ in range(reps):
            np.copyto(dst, src)

    return min(_timed(copies) for _ in range(5 if quick else 20)) / reps


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def load_average():
    """``(1, 5, 15)``-minute load averages, or ``None`` where unavailable."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return None


def _cpuinfo():
    """CPU model name and flag list from /proc/cpuinfo (first processor)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
    return model or platform.machine(), flags


def _blas_info():
    """BLAS/LAPACK library names as NumPy reports them (and threadpoolctl when installed)."""
    info = {}
    try:
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        for key in ("blas", "lapack"):
            if key in deps:
                info[key] = {k: deps[key].get(k)
                             for k in ("name", "version", "openblas configuration")
                             if deps[key].get(k) is not None}
    except (TypeError, AttributeError):
        pass
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version",
                                                      "architecture")}
                               for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def import_torch():
    """The ``torch`` module, or ``None`` when PyTorch is not installed (its rows are then
    skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def _optional_versions():
    """Installed versions of the optional comparison packages (read from metadata, so
    nothing heavy is imported), ``None`` for those absent."""
    from importlib import metadata
    versions = {}
    for dist in ("torch", "fht-cpu", "ffht-unofficial", "ffht", "threadpoolctl", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def machine_facts():
    """Facts about this machine and run, for the JSON lines and the table header.

    Returns
    -------
    dict: CPU model and relevant flags, logical cores and affinity, thread environment
    variables and Numba's thread count, Python/NumPy/Numba/SciPy versions and those of the
    optional comparison packages, BLAS,
    load averages, and a UTC timestamp.
    """
    model, flags = _cpuinfo()
    facts = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpu_flags": [f for f in _CPU_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "scipy": _version("scipy"),
        "optional_packages": _optional_versions(),
        "blas": _blas_info(),
        "load_average": load_average(),
    }
    try:
        import numba
        facts["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    try:
        facts["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True,
                                         timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        facts["uptime"] = None
    return facts


def format_facts(facts):
    """A few header lines summarising :func:`machine_facts`."""
    blas = facts.get("blas", {}).get("blas", {})
    return "\n".join([
        f"machine: {facts['cpu_model']} | {facts['cpu_count']} logical cores "
        f"(affinity {facts['affinity']}) | flags: {' '.join(facts['cpu_flags'])}",
        f"versions: python {facts['python']}, numpy {facts['numpy']}, numba {facts['numba']}, "
        f"scipy {facts['scipy']} | BLAS: {blas.get('name')} {blas.get('version', '')}",
        "optional: " + ", ".join(f"{k} {v}" for k, v in facts["optional_packages"].items()
                                 if v is not None),
        f"threads: {facts['thread_env']} numba={facts.get('numba_threads')}",
        f"load: {facts.get('uptime') or facts['load_average']}",
    ])


def format_seconds(s):
    """``1.23e-5`` -> ``"12.3 us"``; ``None`` -> ``"-"``."""
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _cell(row, key):
    value = row.get(key)
    if value is None:
        return "-"
    if key == "elements_per_s":
        return f"{value:.3g}/s"
    if key.endswith("_s"):
        return format_seconds(value)
    if key in ("bound_fraction",):
        return f"{100 * value:.1f}%"
    if key == "hadamnp_speedup":
        return f"{value:.3g}x"
    if key == "meets_target":
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


DEFAULT_COLUMNS = ("case", "impl", "threads", "median_s", "iqr_s", "min_s", "compile_s",
                   "repeats", "elements_per_s", "bound_fraction", "hadamnp_speedup", "target_s",
                   "meets_target", "note")


def format_table(rows, columns=None):
    """A fixed-width text table of ``rows``; columns absent from every row are dropped."""
    columns = [c for c in (columns or DEFAULT_COLUMNS) if any(c in r for r in rows)]
    cells = [[_cell(r, c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = [columns, ["-" * w for w in widths]] + cells
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()
                     for line in lines)


def print_table(rows, title=None, columns=None):
    """Print :func:`format_table` under an optional title."""
    if title:
        print(f"\n== {title} ==")
    print(format_table(rows, columns) if rows else "(no rows)")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_jsonl(path, rows, facts=None):
    """Write one JSON object per row (each carrying ``facts`` under ``"machine"``).

    The first line is ``{"machine": facts}`` alone, so a file with no rows still records
    where it was made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(json.dumps({"machine": facts}, default=_json_default) + "\n")
        for row in rows:
            f.write(json.dumps({**row, "machine": facts}, default=_json_default) + "\n")
    return path
