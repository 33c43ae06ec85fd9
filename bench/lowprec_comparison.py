"""Measured comparison of Ott et al.'s low-precision RNNs (issue 9, item 6).

On permuted MNIST (n = 128, T = 784) and the adding problem (n = 128, T = 200), with one
equal step budget per task, train: full-precision LSTM, GRU and vanilla RNN; the LSTM and
the GRU with each quantizer of the method applied to every input matrix, recurrent matrix
and gate bias (the readout stays full precision); and HadamRNN at the same n (4-bit U and
V, binary Hadamard recurrence, its sign learning-rate scale 0.1). Reported per run: the
test accuracy (pMNIST) or test MSE (adding, baseline 1/6), the deployed model bits, the
training time, and the test figure of the deterministic (evaluation) model.

Every run: Adam, learning rate ``--lr`` (default 2e-3), no decay, batch ``--batch``,
gradient norm clipped to 1, seed 8, float32, shadow weights of quantized parameters clipped
to ``[-W0, W0]`` (the method). Training runs in ``--jobs`` worker processes (one thread
each, at the caller's niceness); each run's directory keeps ``config.toml`` and
``metrics.jsonl`` (checkpoints are deleted: they are reproducible from the configuration).

Outputs in ``--out``: ``results.jsonl`` (one record per run), ``table.md`` (the README
table), ``curves.png`` (training loss against steps, one panel per task and cell family).

Run (the committed results)::

    nice -n 5 python bench/lowprec_comparison.py --out bench/results/lowprec \\
        --tasks adding pmnist --adding-steps 200 --pmnist-steps 60 --batch 32 \\
        --eval-batch 250 --test-batches 2 --jobs 2
    nice -n 5 python bench/lowprec_comparison.py --out bench/results/lowprec-pmnist150 \\
        --tasks pmnist --pmnist-steps 150 --batch 32 --eval-batch 250 --test-batches 2 \\
        --jobs 2 --extra-quantizers binary:0.15
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

QUANTIZERS = ("binary", "binary-stochastic", "ternary", "ternary-stochastic",
              "pow2-ternary:f=3", "exponential", "exponential-stochastic")
HIDDEN = 128


def runs(tasks, quantizers=QUANTIZERS):
    """``(task, label, model table, extra options)`` of every run."""
    out = []
    for task in tasks:
        for cell in ("lstm", "gru", "rnn"):
            out.append((task, f"{cell} fp", {"name": cell, "hidden_size": HIDDEN}, {}))
        for cell in ("lstm", "gru"):
            for q in quantizers:
                model = {"name": cell, "hidden_size": HIDDEN, "quant_in": q, "quant_rec": q,
                         "quant_bias": q}
                out.append((task, f"{cell} {q}", model, {}))
        out.append((task, "hadamrnn 4-bit", {"name": "hadamrnn", "hidden_size": HIDDEN,
                                             "quant_in": "uniform:4", "quant_out": "uniform:4"},
                    {"lr_scales": {"signs": 0.1}}))
    return out


def run_one(job):
    """Train one configuration; return its result record."""
    import numpy as np

    from hadamnp.errors import NonFiniteError
    from hadamnp.runs.config import resolve_config
    from hadamnp.runs.plumbing import builtin_task_sizes, restore
    from hadamnp.training.loop import train

    task, label, model, extra, args, run_dir = job
    steps = args.pmnist_steps if task == "pmnist" else args.adding_steps
    overrides = dict(task=task, model=model, batch_size=args.batch, epochs=1,
                     steps_per_epoch=steps, lr=args.lr, gamma=1.0, clip_grad_norm=1.0,
                     seed=8, val_batches=1, eval_batch_size=args.eval_batch,
                     test_batches=args.test_batches, log_every=10, **extra)
    if task == "adding":
        overrides["adding_length"] = args.adding_length
    config = resolve_config(preset="base", overrides=overrides)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    try:
        result = train(config, run_dir)
        test, steps, failure = result.test, result.step, None
    except NonFiniteError as exc:  # a diverging run is a result, not a crash
        test, steps, failure = None, None, str(exc)
    seconds = time.perf_counter() - started
    model_obj, _, _ = restore(run_dir) if failure is None else (
        config.build_model(*builtin_task_sizes(task)), None, None)
    size = model_obj.size()
    for path in run_dir.glob("checkpoint*.npz"):
        path.unlink()
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["loss"]) for r in losses if r.get("kind") == "step"
             and np.isfinite(r["loss"])]
    if steps is None:  # diverged: the last step logged with a finite loss
        steps = curve[-1][0] if curve else 0
    return {"task": task, "label": label, "model": model_obj.describe(), "steps": steps,
            "test": test, "failure": failure, "train_seconds": seconds,
            "total_bits": size.total_bits, "float32_bits": size.float32_bits,
            "compression": size.compression_ratio, "curve": curve}


def _metric(record):
    """The test accuracy or MSE; NaN for a run that diverged."""
    test = record["test"]
    if test is None:
        return float("nan")
    return test.get("accuracy", test.get("mse", test["loss"]))


def _shown(record):
    if record["test"] is None:
        return f"diverged (non-finite values after step {record['steps']})"
    return f"{_metric(record):.4f}"


def write_table(records, path, args):
    lines = []
    for task in args.tasks:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        steps = args.pmnist_steps if task == "pmnist" else args.adding_steps
        metric = "test accuracy" if task == "pmnist" else "test MSE (baseline 0.167)"
        shape = "T = 784" if task == "pmnist" else f"T = {args.adding_length}"
        header = (f"| model | quantizer (W_x, W_h, b) | {metric} | model bits | "
                  "compression | run wall time |")
        lines += [f"**{task}** (n = {HIDDEN}, {shape}, {steps} steps of batch {args.batch}; "
                  f"test: {args.test_batches * args.eval_batch} sequences)",
                  "", header, "|---|---|---|---|---|---|"]
        for r in rows:
            name, _, quant = r["label"].partition(" ")
            lines.append(f"| {name} | {quant} | {_shown(r)} | {r['total_bits']:,} | "
                         f"{r['compression']:.1f}x | {r['train_seconds']:.0f} s |")
        lines.append("")
    path.write_text("\n".join(lines))


def plot(records, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("adding", "pmnist") if any(r["task"] == t for r in records)]
    families = ("lstm", "gru")
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.5 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, family in enumerate(families):
            ax = axes[i][j]
            for r in records:
                if r["task"] != task or not (r["label"].startswith(family)
                                             or r["label"].split()[0] in ("rnn", "hadamrnn")):
                    continue
                steps, losses = zip(*r["curve"]) if r["curve"] else ((), ())
                style = "--" if "fp" in r["label"] or "hadamrnn" in r["label"] else "-"
                ax.plot(steps, losses, style, label=r["label"], linewidth=1)
            if task == "adding":
                ax.axhline(1 / 6, color="k", linewidth=0.5)
            ax.set_title(f"{task}: {family} quantizers (dashed: FP, vanilla RNN, HadamRNN)")
            ax.set_xlabel("step")
            ax.set_ylabel("training loss (CE)" if task == "pmnist" else "training loss (MSE)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", default=["pmnist", "adding"])
    parser.add_argument("--pmnist-steps", type=int, default=150)
    parser.add_argument("--adding-steps", type=int, default=300)
    parser.add_argument("--adding-length", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-batch", type=int, default=500,
                        help="sequences per evaluation batch (validation: one batch)")
    parser.add_argument("--test-batches", type=int, default=4,
                        help="test batches of --eval-batch sequences")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="labels to (re)run")
    parser.add_argument("--extra-quantizers", nargs="*", default=[],
                        help="more quantizer specs, e.g. binary:0.15 (binarization at the "
                             "Glorot scale instead of the method's H = 1)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    args.out.mkdir(parents=True, exist_ok=True)
    quantizers = QUANTIZERS + tuple(args.extra_quantizers)
    results_path = args.out / "results.jsonl"
    done = {}
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            record = json.loads(line)
            done[(record["task"], record["label"])] = record
    jobs = [(task, label, model, extra, args,
             args.out / f"{task}-{label.replace(' ', '-').replace(':', '')}")
            for task, label, model, extra in runs(args.tasks, quantizers)
            if (task, label) not in done or (args.only and label in args.only)]
    print(f"{len(jobs)} runs to do, {len(done)} recorded; {args.jobs} worker(s)", flush=True)
    from multiprocessing import get_context

    with get_context("spawn").Pool(args.jobs) as pool:
        for record in pool.imap_unordered(run_one, jobs):
            done[(record["task"], record["label"])] = record
            with results_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"{record['task']:7s} {record['label']:32s} test {_shown(record)} "
                  f"bits {record['total_bits']:>9,} {record['train_seconds']:6.0f} s",
                  flush=True)
    order = {(t, label): k for k, (t, label, _, _) in enumerate(runs(args.tasks, quantizers))}
    records = sorted(done.values(), key=lambda r: order.get((r["task"], r["label"]), 1e9))
    results_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_table(records, args.out / "table.md", args)
    plot(records, args.out / "curves.png")
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
