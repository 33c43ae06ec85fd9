"""Accuracy (or MSE) against parameters and bits: full LSTM, Toeplitz-like LSTMs, shared
low-rank LSTMs and HadamRNN at the same hidden size, trained with equal step budgets.

A measurement, not a speed benchmark (not run by ``run_all``). Every run is a plain
``hadamnp train`` command (printed, and stored in the results), so each point can be
reproduced or continued by hand. Variants, for a one-layer model with hidden size ``n``
(the input matrices stay dense: they read ``d_in`` = 1 or 2 values):

==================  ===========================================================  ===========
variant             model options                                                recurrent
                                                                                 values
==================  ===========================================================  ===========
``lstm``            ``--model lstm``                                             ``4 n^2``
``lstm-ldr:r``      ``--model lstm -O param_rec=ldr:r`` (r = 1, 2, 4)            ``8 r n``
``lstm-shared:k``   ``--model lstm -O param_rec=lowrank:k -O share=gates``        ``5 k n``
                    (k = 2, 3, 6: the nearest counts to r = 1, 2, 4)
``hadamrnn``        ``--model hadamrnn --sign-lr-scale 0.1`` (4-bit ``U``, ``V``;  ``n`` bits
                    binary Hadamard recurrence; the sign learning rate of the
                    ``quick`` preset, without which it does not learn pMNIST)
==================  ===========================================================  ===========

Tasks: ``pmnist`` (permuted MNIST, T = 784, accuracy on the test split) and ``adding`` (the
adding problem, T = 50 by default, MSE on the test split; predicting 1 scores 0.167).
Budgets (hidden size, steps, epochs, batch, learning rate, evaluation batches) are options;
the commands below made the committed results (``bench/results/compact/``).

Every run uses one thread (the BLAS, OpenMP and Numba thread variables are set to 1 for the
training processes). Each run goes to ``ROOT/<task>-<variant>`` (``--root``, default ``~/.cache/hadamnp/
compact-curve``), with ``--checkpoint-every``; rerunning the script skips finished runs and
resumes interrupted ones (``hadamnp train --resume``: bit-identical). Finally it writes
``curve.json`` (one record per run: command, parameters, trainable values, deployed bits,
float32 reference size, test metric, wall time), ``curve.md`` (the table) and
``curve.png`` (metric against parameters and against bits; needs matplotlib) into
``--results`` (default ``~/.cache/hadamnp/compact-curve/results``; nothing is written into
the checkout unless asked, as the commands below do).

Usage::

    nice -n 5 python bench/compact_curve.py --task pmnist --hidden 64 --steps 500 \
        --results bench/results/compact
    nice -n 5 python bench/compact_curve.py --task adding --hidden 64 --steps 1000 \
        --epochs 2 --results bench/results/compact
    python bench/compact_curve.py --report-only --results bench/results/compact
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_ROOT = Path.home() / ".cache" / "hadamnp" / "compact-curve"
DEFAULT_RESULTS = DEFAULT_ROOT / "results"
TASKS = ("pmnist", "adding")
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS")


def variants(ranks=(1, 2, 4), shared=(2, 3, 6)):
    """``(variant name, model, [extra arguments])`` of the curve."""
    out = [("lstm", "lstm", [])]
    out += [(f"lstm-ldr:{r}", "lstm", ["-O", f"param_rec=ldr:{r}"]) for r in ranks]
    out += [(f"lstm-shared:{k}", "lstm", ["-O", f"param_rec=lowrank:{k}", "-O",
                                          "share=gates"]) for k in shared]
    out.append(("hadamrnn", "hadamrnn", ["--sign-lr-scale", "0.1"]))
    return out


def command(task, model, extra, run_dir, args):
    """The ``hadamnp train`` command line of one run."""
    cmd = ["hadamnp", "train", "--preset", "base", "--task", task, "--model", model,
           "--hidden", str(args.hidden), "--batch-size", str(args.batch_size),
           "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps),
           "--lr", str(args.lr),
           "--eval-batch-size", str(args.eval_batch_size),
           "--val-batches", str(args.val_batches), "--test-batches", str(args.test_batches),
           "--seed", str(args.seed), "--checkpoint-every", str(args.checkpoint_every),
           "--log-every", "10", "--out", str(run_dir)]
    if task == "adding":
        cmd += ["--adding-length", str(args.adding_length)]
    return cmd + list(extra)


def _records(run_dir, kind):
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == kind]


def run_dir_of(args, task, name):
    return Path(args.root) / f"{task}-{name.replace(':', '')}"


def run_one(task, name, model, extra, args):
    """Train (or resume, or skip) one variant; return its record."""
    run_dir = run_dir_of(args, task, name)
    if not _records(run_dir, "test"):
        if (run_dir / "checkpoint.npz").is_file():
            todo = ["hadamnp", "train", "--resume", str(run_dir)]
        else:
            todo = command(task, model, extra, run_dir, args)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "command.txt").write_text(shlex.join(todo) + "\n")
        print("$ " + shlex.join(todo), flush=True)
        started = time.perf_counter()
        # this interpreter and its import path (a checkout with PYTHONPATH) run the command,
        # on one thread: on a shared machine, idle BLAS threads spin and burn the share
        threads = {var: "1" for var in THREAD_ENV_VARS}
        subprocess.run([sys.executable, "-m", "hadamnp", *todo[1:]], check=True,
                       env={**os.environ, **threads, "PYTHONUNBUFFERED": "1"})
        print(f"[{task} {name}] {time.perf_counter() - started:.0f} s", flush=True)
    return summarize(task, name, run_dir)


def summarize(task, name, run_dir):
    """The record of a finished run: its command, sizes from its checkpoint, the test
    metric."""
    from hadamnp.runs.plumbing import restore

    model, _, _ = restore(run_dir)
    size = model.size()
    test = _records(run_dir, "test")[-1]
    epochs = _records(run_dir, "epoch")
    return {"task": task, "variant": name,
            "command": (Path(run_dir) / "command.txt").read_text().strip(),
            "model": model.describe(), "parameters": size.parameters,
            "trainable": size.trainable, "bits": size.total_bits,
            "float32_parameters": size.float32_parameters,
            "compression_ratio": size.compression_ratio,
            "recurrent_parameters": sum(m["parameters"] for key, m in size.matrices.items()
                                        if _recurrent(key, m)),
            "steps": test["step"], "test": {k: v for k, v in test.items()
                                            if k not in ("kind", "epoch", "step")},
            "train_seconds": sum(e.get("seconds", 0.0) for e in epochs)}


def _recurrent(key, matrix):
    """Recurrent matrices: ``W`` (HadamRNN), ``W_h*`` (cells), the shared recurrent
    projections ``P_h``."""
    base = key.rpartition(".")[2]
    return base == "W" or base.startswith("W_h") or base.startswith("P_h")


def metric(record):
    """``(name, value)``: test accuracy (classification) or test MSE (regression)."""
    test = record["test"]
    return ("accuracy", test["accuracy"]) if "accuracy" in test else ("mse", test["mse"])


def table(records):
    lines = ["| task | variant | parameters | recurrent values | deployed bits | "
             "compression (vs its float32 dense form) | test metric | train wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        name, value = metric(r)
        lines.append(f"| {r['task']} | {r['variant']} | {r['parameters']:,} | "
                     f"{r['recurrent_parameters']:,} | {r['bits']:,} | "
                     f"{r['compression_ratio']:.1f}x | {name} {value:.4f} | "
                     f"{r['train_seconds']:.0f} s |")
    return "\n".join(lines)


def plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -e .[plot])")
        return None
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4 * len(tasks)), squeeze=False)
    styles = {"lstm": ("k", "s"), "ldr": ("tab:blue", "o"), "shared": ("tab:orange", "^"),
              "hadamrnn": ("tab:green", "*")}
    for row, task in zip(axes, tasks):
        rs = [r for r in records if r["task"] == task]
        for ax, key, label in ((row[0], "parameters", "trained parameters"),
                               (row[1], "bits", "deployed bits")):
            for family, (color, marker) in styles.items():
                pts = sorted((r[key], metric(r)[1], r["variant"]) for r in rs
                             if _family(r["variant"]) == family)
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                        label=family, linestyle="-" if len(pts) > 1 else "none")
                for x, y, v in pts:
                    ax.annotate(v.split("-")[-1], (x, y), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
            if task == "adding":
                ax.axhline(1 / 6, color="gray", linestyle="--", linewidth=1,
                           label="predict 1 (0.167)")
            ax.set_xscale("log")
            if metric(rs[0])[0] == "mse":   # from ~1e-3 (solved) to the 0.167 baseline
                ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"test {metric(rs[0])[0]}")
            ax.set_title(f"{task}: test {metric(rs[0])[0]} vs {label}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _family(variant):
    if variant == "lstm":
        return "lstm"
    if variant.startswith("lstm-ldr"):
        return "ldr"
    if variant.startswith("lstm-shared"):
        return "shared"
    return "hadamrnn"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=TASKS + ("all",), default="all")
    parser.add_argument("--only", nargs="+", default=None, help="variants to run")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs (the adding task has 1000 batches per epoch)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-batch-size", type=int, default=500)
    parser.add_argument("--val-batches", type=int, default=1)
    parser.add_argument("--test-batches", type=int, default=4)
    parser.add_argument("--adding-length", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="run directories")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS),
                        help="where curve.json/.md/.png go")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: table and plot of the finished runs")
    args = parser.parse_args(argv)
    tasks = TASKS if args.task == "all" else (args.task,)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    store = results / "curve.json"
    for task in tasks:
        for name, model, extra in variants():
            if args.only and name not in args.only:
                continue
            if args.report_only:
                if _records(run_dir_of(args, task, name), "test"):
                    _store(store, summarize(task, name, run_dir_of(args, task, name)))
                continue
            _store(store, run_one(task, name, model, extra, args))
    ordered = _store(store)
    text = table(ordered)
    (results / "curve.md").write_text(text + "\n")
    print(text)
    png = plot(ordered, results / "curve.png")
    if png:
        print(f"plot: {png}")
    return ordered


def _store(store, record=None):
    """Add ``record`` to the records in ``store`` (read again first: the tasks may run in
    two processes); return them in table order."""
    records = {(r["task"], r["variant"]): r
               for r in (json.loads(store.read_text()) if store.is_file() else [])}
    if record is not None:
        records[(record["task"], record["variant"])] = record
    ordered = sorted(records.values(), key=lambda r: (TASKS.index(r["task"]),
                                                      _family_order(r["variant"])))
    store.write_text(json.dumps(ordered, indent=1))
    return ordered


def _family_order(variant):
    names = [name for name, _, _ in variants()]
    return names.index(variant) if variant in names else len(names)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
