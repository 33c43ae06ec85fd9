"""How to train the latent signs of HadamRNN: a measured comparison (issue 13).

A measurement, not a speed benchmark (not run by ``run_all``). Every run is a plain
``hadamnp train`` of a 4-bit HadamRNN; the methods differ only in how the signs ``u``
are trained, everything else is the paper's recipe of the task (``paper-*`` presets:
Adam with PyTorch defaults on every other parameter, StepLR 0.98 per epoch, no
clipping, the paper's batch size, learning rate and seed):

===========  ==============================================================================
method       options added to ``hadamnp train --preset paper-TASK``
===========  ==============================================================================
paper        none: Adam on ``u`` at the full learning rate (the paper's recipe)
slr0.1       ``--sign-lr-scale 0.1``: Adam on ``u`` at a tenth of the learning rate
clip         ``--clip-latent signs``: Adam, ``u`` clamped to [-1, 1] after every step
bop          ``--optimizer-signs bop:...``: Bop (no latent magnitudes), see ``METHODS``
frozen       ``--optimizer-signs frozen``: the initial random signs, never trained
===========  ==============================================================================

plus the recipes chosen from the data (``METHODS``; the README names the default).

Two commands:

``run``
    starts (or resumes, extending to ``--epochs``) the runs of the chosen tasks and
    methods under ``ROOT/<task>-<method>``, ``--jobs`` at a time, each one process of one
    thread at ``nice -n 5``, checkpointing every 100 steps; rerunning the command
    continues where the runs stopped (bit-identical to an uninterrupted run).
``report``
    reads the run directories: per epoch the validation figures and the sign flips, the
    test figures of every end-of-epoch checkpoint and of the latest checkpoint (evaluated
    once, cached in the run directory as ``test_per_epoch.json``), collapses (below);
    writes ``table.md``, ``summary.json`` and, when matplotlib is installed,
    ``curves.png``. "final" is the latest checkpoint; "best" the best of all evaluated
    checkpoints (chosen on the test split: optimistic); "at best val." the epoch
    checkpoint with the best validation figure.

Collapse: an epoch whose validation accuracy is below 20 % after an earlier epoch above
50 % (MNIST), or whose validation loss is above the memoryless baseline after an earlier
epoch below half of it (copy task). The memoryless baselines: a constant prediction of
the class frequencies, cross-entropy ``ln 10 = 2.303`` and accuracy 11.35 % (the most
frequent test digit, 1135/10000) for MNIST; ``10 ln 8 / L`` for the copy task.

Usage::

    python bench/converge_compare.py run ROOT --tasks pmnist smnist --methods paper slr0.1 \\
        --epochs 3 --jobs 4
    python bench/converge_compare.py report ROOT --out bench/results/converge
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

TASKS = {
    # task: (preset, extra options, steps per epoch cap, validation batches of 500)
    "pmnist": ("paper-pmnist", [], None, 4),
    "smnist": ("paper-smnist", [], None, 4),
    # lr 3e-4: at the paper's 1e-4 the copy task was not solved in 8190 steps (README)
    "copy": ("paper-copy", ["--lr", "3e-4"], 500, 1),
}
METHODS = {
    "paper": [],
    "slr0.1": ["--sign-lr-scale", "0.1"],
    "clip": ["--clip-latent", "signs"],
    "bop": ["--optimizer-signs", "bop:threshold=0.1,adaptivity=1e-3"],
    "frozen": ["--optimizer-signs", "frozen"],
}
MNIST_MEMORYLESS = {"loss": math.log(10), "accuracy": 0.1135}


def _train_command(root, task, method, epochs):
    preset, extra, steps, val_batches = TASKS[task]
    run_dir = Path(root) / f"{task}-{method}"
    base = ["nice", "-n", "5", sys.executable, "-c", "from hadamnp.cli import main; main()",
            "train"]
    if (run_dir / "checkpoint.npz").is_file():
        return run_dir, base + ["--resume", str(run_dir), "--epochs", str(epochs)]
    options = ["--preset", preset, *extra, *METHODS[method], "--epochs", str(epochs),
               "--val-batches", str(val_batches), "--eval-batch-size", "200",
               "--checkpoint-every", "100",
               "--out", str(run_dir)]
    if steps is not None:
        options += ["--steps-per-epoch", str(steps)]
    return run_dir, base + options


def run(root, tasks, methods, epochs, jobs):
    """Run (or extend) every (task, method) run, ``jobs`` processes at a time."""
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        env[var] = "1"
    Path(root).mkdir(parents=True, exist_ok=True)
    queue = [(task, method) for task in tasks for method in methods]
    running = []
    while queue or running:
        while queue and len(running) < jobs:
            task, method = queue.pop(0)
            run_dir, command = _train_command(root, task, method, epochs)
            log = open(Path(root) / f"{task}-{method}.log", "a")
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            running.append((task, method, subprocess.Popen(command, stdout=log,
                                                           stderr=subprocess.STDOUT,
                                                           env=env), log))
            print(f"started {task}-{method}", flush=True)
        time.sleep(5)
        for entry in list(running):
            task, method, process, log = entry
            if process.poll() is not None:
                log.close()
                running.remove(entry)
                print(f"finished {task}-{method}: exit status {process.returncode}",
                      flush=True)


def _tests(run_dir):
    """Test figures of every end-of-epoch checkpoint (``{epoch: result}``) and of the latest
    checkpoint (``"last"``), each evaluated once and cached in ``test_per_epoch.json``."""
    from hadamnp.io.checkpoint import checkpoint_path, epoch_checkpoints, load_checkpoint
    from hadamnp.runs.plumbing import evaluate_run

    cache = run_dir / "test_per_epoch.json"
    results = json.loads(cache.read_text()) if cache.is_file() else {}
    targets = [(str(epoch), path) for epoch, path in epoch_checkpoints(run_dir)]
    latest = checkpoint_path(run_dir)
    if latest.is_file():
        step = load_checkpoint(latest).position["global_step"]
        targets.append((f"last:{step}", latest))
    for key, path in targets:
        if key not in results:
            result, _, _ = evaluate_run(path, "test")
            results[key] = result
            cache.write_text(json.dumps(results, indent=1))
    last = max((k for k in results if k.startswith("last:")),
               key=lambda k: int(k.split(":")[1]), default=None)
    epochs = {int(k): v for k, v in results.items() if not k.startswith("last:")}
    return epochs, results.get(last), int(last.split(":")[1]) if last else None


def _collapses(epochs, task):
    """Number of collapse onsets (module docstring) in the epoch records."""
    count, armed, collapsed = 0, False, False
    for record in epochs:
        if task == "copy":
            ratio = record["val_loss"] / record["val_baseline"]
            healthy, broken = ratio < 0.5, ratio > 1
        else:
            healthy, broken = record["val_accuracy"] > 0.5, record["val_accuracy"] < 0.2
        if broken and armed and not collapsed:
            count += 1
        collapsed = broken
        armed = armed or healthy
    return count


def summarize(run_dir, task):
    """One row of the table for a run directory."""
    from hadamnp.training.metrics import read_metrics

    records = read_metrics(run_dir)
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    tests, last, last_step = _tests(run_dir)
    key = "ratio" if task == "copy" else "accuracy"
    pick = min if task == "copy" else max
    row = {"run": run_dir.name, "epochs": len(epochs), "collapses": _collapses(epochs, task),
           "steps": last_step or (steps[-1]["step"] if steps else 0),
           "flips_per_epoch": [r.get("flips") for r in epochs]}
    evaluated = list(tests.values()) + ([last] if last else [])
    if evaluated:
        final = last or tests[max(tests)]
        best_val = (min if task == "copy" else max)(
            range(len(epochs)), key=lambda e: epochs[e]["val_loss" if task == "copy"
                                                       else "val_accuracy"])
        row.update(final_test=final[key], final_test_loss=final["loss"],
                   best_test=pick(t[key] for t in evaluated),
                   test_at_best_val=tests.get(best_val, {}).get(key),
                   best_val_epoch=best_val + 1)
    row["val_curve"] = [r["val_ratio"] if task == "copy" else r["val_accuracy"]
                        for r in epochs]
    return row


def report(root, out):
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in TASKS:
        for method in list(METHODS) + sorted({p.name.split("-", 1)[1] for p in
                                              root.glob(f"{task}-*") if p.is_dir()}
                                             - set(METHODS)):
            run_dir = root / f"{task}-{method}"
            if (run_dir / "metrics.jsonl").is_file():
                rows.append({"task": task, "method": method, **summarize(run_dir, task)})
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = ["| task | method | epochs (steps) | final test | best test (epoch ckpts) | "
             "test at best val | final test CE | collapses | sign flips per epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = (lambda v: "-" if v is None else f"{v:.4f}") if r["task"] == "copy" else \
            (lambda v: "-" if v is None else f"{100 * v:.2f} %")
        flips = r["flips_per_epoch"]
        flips_text = ("-" if not flips or flips[0] is None else
                      ", ".join(str(f) for f in flips[:12]) + (" ..." if len(flips) > 12 else ""))
        lines.append(f"| {r['task']} | {r['method']} | {r['epochs']} ({r['steps']}) | "
                     f"{fmt(r.get('final_test'))} | {fmt(r.get('best_test'))} | "
                     f"{fmt(r.get('test_at_best_val'))} | "
                     f"{r.get('final_test_loss', float('nan')):.4f} | {r['collapses']} | "
                     f"{flips_text} |")
    lines += ["", "MNIST memoryless baseline: test CE ln 10 = 2.3026, accuracy 11.35 %. "
              "Copy task: figures are test cross-entropy / memoryless baseline "
              "(10 ln 8 / L)."]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(root, rows, out / "curves.png")


def _plot(root, rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no curves.png")
        return
    from hadamnp.training.metrics import read_metrics

    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(3, len(tasks), figsize=(5 * len(tasks), 10), squeeze=False)
    for column, task in enumerate(tasks):
        for r in (r for r in rows if r["task"] == task):
            steps = read_metrics(root / r["run"], "step")
            epochs = read_metrics(root / r["run"], "epoch")
            xs = [s["step"] for s in steps]
            loss = [s["loss"] for s in steps]
            window = 20
            smooth = [sum(loss[max(0, i - window + 1):i + 1]) / len(loss[max(0, i - window + 1):i + 1])
                      for i in range(len(loss))]
            axes[0][column].plot(xs, smooth, label=r["method"], lw=1)
            axes[1][column].plot([e["step"] for e in epochs], r["val_curve"], "o-",
                                 label=r["method"], ms=3)
            if r["flips_per_epoch"] and r["flips_per_epoch"][0] is not None:
                axes[2][column].plot([e["step"] for e in epochs], r["flips_per_epoch"], "o-",
                                     label=r["method"], ms=3)
        axes[0][column].set(title=f"{task}: training loss (mean of 20 logged steps)",
                            yscale="log", xlabel="step")
        axes[1][column].set(title=f"{task}: validation " + ("loss / baseline" if task == "copy"
                                                            else "accuracy"),
                            yscale="log" if task == "copy" else "linear", xlabel="step")
        axes[2][column].set(title=f"{task}: sign flips per epoch", xlabel="step",
                            yscale="symlog")
        for ax in axes[:, column]:
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("root")
    p_run.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p_run.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p_run.add_argument("--epochs", type=int, default=10)
    p_run.add_argument("--jobs", type=int, default=2)
    p_report = sub.add_parser("report")
    p_report.add_argument("root")
    p_report.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "run":
        run(args.root, args.tasks, args.methods, args.epochs, args.jobs)
    else:
        report(args.root, args.out)


if __name__ == "__main__":
    main()
