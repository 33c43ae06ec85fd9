"""OIALR against full-rank training on permuted MNIST: accuracy, trainable values, time.

A measurement, not a speed benchmark (not run by ``run_all``). For one model (``dense``: a
full-precision dense-``W`` RNN with a linear recurrence; ``lstm``), trains runs from the
same seed (same initialisation and batches): full rank, and OIALR (``hadamnp train
--oialr``) at each cutoff fraction ``β`` of ``--betas``, with the same ``delay`` and
``every``. Defaults per model (``DEFAULTS``): the budgets of the README table. Each run is
an ordinary hadamnp run directory under ``--out`` (``NAME/`` with ``metrics.jsonl`` and
checkpoints every ``--checkpoint-every`` steps); rerunning the script resumes unfinished
runs (bit for bit) and skips finished ones. Reported per run: test accuracy (first
``--test-batches`` x 500 test sequences), trainable values at the end (OIALR: ``k²`` per
factored matrix), the factored matrices' ranks, wall-clock and CPU (process) seconds
summed over the script's calls, the CPU model and the load average.

Usage (the figures in README.md)::

    nice -n 5 python bench/oialr_pmnist.py --model dense --out bench/results/oialr
    nice -n 5 python bench/oialr_pmnist.py --model dense --lr 1e-3 --steps 600 --delay 200 \
        --every 100 --betas 0.15 0.5 --out bench/results/oialr     # the switch at lr 1e-3
    nice -n 5 python bench/oialr_pmnist.py --model lstm --out bench/results/oialr
    python bench/oialr_pmnist.py --report --out bench/results/oialr   # table + PNG

Results: ``OUT/results.jsonl`` (one line per finished run), ``OUT/oialr_ranks.png``
(rank of every factored matrix over the steps) with ``--report``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

DEFAULTS = {  # model -> budget (the machine: 2 shared cores) and cutoff fractions
    "dense": dict(hidden=128, steps=3000, batch_size=50, delay=1000, every=500, lr=3e-4,
                  betas=[0.15, 0.8]),
    "lstm": dict(hidden=128, steps=1000, batch_size=50, delay=300, every=100, lr=1e-3,
                 betas=[0.15, 0.5]),
}


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_commit():
    """The git commit of the hadamnp package that runs (None outside a checkout)."""
    import subprocess

    import hadamnp

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(hadamnp.__file__).parent, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def run_config(args, beta):
    """``args.steps`` steps as whole epochs of at most one pass over the 50k training
    images each, constant learning rate."""
    from hadamnp.runs.config import resolve_config

    per_epoch = min(args.steps, 50_000 // args.batch_size)
    if args.steps % per_epoch:
        raise SystemExit(f"--steps {args.steps} is not a whole number of epochs of "
                         f"{per_epoch} batches")
    overrides = dict(task="pmnist", model={"name": args.model, "hidden_size": args.hidden,
                                           "quant_in": "none", "quant_out": "none"},
                     batch_size=args.batch_size, epochs=args.steps // per_epoch,
                     steps_per_epoch=per_epoch, lr=args.lr, gamma=1.0, seed=args.seed,
                     val_batches=1, test_batches=args.test_batches,
                     checkpoint_every=args.checkpoint_every, log_every=10)
    if beta is not None:
        overrides["oialr"] = {"delay": args.delay, "every": args.every, "beta": beta}
    return resolve_config(preset="base", overrides=overrides)


def train_one(args, name, beta):
    """Train (or resume) run ``name``; return its result record (None if unfinished)."""
    from hadamnp.io.checkpoint import latest_checkpoint
    from hadamnp.runs.plumbing import restore
    from hadamnp.training.loop import resume, train
    from hadamnp.training.metrics import read_metrics

    run_dir = args.out / name
    clock = args.out / f"{name}.time.json"
    spent = json.loads(clock.read_text()) if clock.is_file() else {"wall": 0.0, "cpu": 0.0}
    wall, cpu = time.perf_counter(), time.process_time()
    load = os.getloadavg()
    if latest_checkpoint(run_dir) is None:
        result = train(run_config(args, beta), run_dir)
    else:
        result = resume(run_dir)
    spent = {"wall": spent["wall"] + time.perf_counter() - wall,
             "cpu": spent["cpu"] + time.process_time() - cpu}
    clock.write_text(json.dumps(spent))
    if not result.finished:
        return None
    model, _, config = restore(run_dir)
    lowrank = read_metrics(run_dir, "oialr")
    return {"run": name, "model": args.model, "hidden": args.hidden, "beta": beta,
            "steps": result.step, "batch_size": config.batch_size, "lr": config.lr,
            "delay": args.delay if beta is not None else None,
            "every": args.every if beta is not None else None,
            "test_accuracy": result.test["accuracy"], "test_loss": result.test["loss"],
            "test_sequences": result.test["sequences"],
            "trainable": lowrank[-1]["trainable"] if lowrank else model.size().trainable,
            "full_trainable": model.size().trainable,
            "ranks": lowrank[-1]["ranks"] if lowrank else None,
            "wall_s": spent["wall"], "cpu_s": spent["cpu"], "cpu_model": cpu_model(),
            "load_avg_at_start": load, "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
            "commit": args.commit}


def report(out):
    """Print the Markdown table of ``out/results.jsonl`` and plot the ranks over steps."""
    from hadamnp.training.metrics import read_metrics

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    print("| model, budget | training | test accuracy | trainable at the end (full rank) "
          "| final ranks | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ranks = ", ".join(f"{k} {v}" for k, v in (r["ranks"] or {}).items()) or "full"
        how = "full rank" if r["beta"] is None else \
            f"OIALR β = {r['beta']:g} (delay {r['delay']}, every {r['every']})"
        print(f"| {r['model']} n = {r['hidden']}, {r['steps']} steps x {r['batch_size']}, "
              f"lr {r['lr']:g} | {how} | {r['test_accuracy']:.4f} | {r['trainable']:,} "
              f"({r['full_trainable']:,}) | {ranks} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    groups = sorted({(r["model"], r["hidden"], r["lr"]) for r in rows
                     if r["beta"] is not None})
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (model, hidden, lr) in zip(axes[0], groups):
        for r in rows:
            if (r["model"], r["hidden"], r["lr"]) != (model, hidden, lr) or r["beta"] is None:
                continue
            records = read_metrics(out / r["run"], "oialr")
            for weight in records[0]["ranks"]:
                ax.step([rec["step"] for rec in records],
                        [rec["ranks"][weight] for rec in records], where="post",
                        label=f"β={r['beta']} {weight}")
        ax.set(title=f"{model} n={hidden}, lr {lr:g}: rank of each factored matrix",
               xlabel="optimizer step", ylabel="rank k")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "oialr_ranks.png", dpi=100)
    print(f"wrote {out / 'oialr_ranks.png'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="dense")
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP/Numba threads of the training (default 1)")
    parser.add_argument("--betas", type=float, nargs="+", default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--test-batches", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--skip-full", action="store_true",
                        help="only the OIALR runs (e.g. a second process beside the first)")
    parser.add_argument("--report", action="store_true",
                        help="only print the table and write the PNG")
    for key in ("hidden", "steps", "batch_size", "delay", "every"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    args = parser.parse_args()
    # before NumPy and Numba are imported (only the functions below import hadamnp's modules)
    from hadamnp.bench._threads import THREAD_ENV_VARS

    for name in THREAD_ENV_VARS:
        os.environ[name] = str(args.threads)
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out.mkdir(parents=True, exist_ok=True)
    args.commit = source_commit()  # the code imported now is the code that runs
    if args.report:
        report(args.out)
        return
    results = args.out / "results.jsonl"
    done = set()
    if results.is_file():
        done = {json.loads(line)["run"] for line in results.read_text().splitlines()}
    for beta in (() if args.skip_full else (None,)) + tuple(args.betas):
        name = (f"{args.model}-n{args.hidden}-lr{args.lr:g}-"
                + ("full" if beta is None else f"oialr-b{beta:g}"))
        if name in done:
            continue
        print(f"{name}: {args.steps} steps of batch {args.batch_size}", flush=True)
        record = train_one(args, name, beta)
        if record is not None:
            with open(results, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
