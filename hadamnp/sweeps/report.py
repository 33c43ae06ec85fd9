"""Results reports: one table (Markdown and CSV) and plots over finished runs.

A report reads run directories (those of a sweep directory, listed in its ``sweep.json``,
or any run directories given one by one) and groups runs that differ only by their seed.
For each group it gives mean ± standard deviation over seeds of:

- the final and the best validation figure (the *primary* figure of the task: accuracy
  for classification; the loss for tasks scored against a baseline, such as the copy task,
  where the loss / baseline ratio is also shown);
- the test figure at the best-validation checkpoint (the epoch checkpoint with the best
  validation figure, evaluated on the test split with the run's own test settings);
- the model's deployed bits, compression ratio against float32 and trainable parameters
  (from the model's ``size()``), and the training wall time (the sum of the epochs'
  seconds in ``metrics.jsonl``, so the first run of a process includes JIT compilation).

Plots (PNG, matplotlib: ``pip install 'hadamnp[plot]'``): the validation curve of every
group per model family, and the best test figure against model bits.
"""

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.sweeps.grid import LABEL

__all__ = ["RunRecord", "collect", "group_runs", "markdown_table", "write_report"]


@dataclass
class RunRecord:
    """What a report knows about one run."""

    run_dir: Path
    label: str          # the settings that distinguish its group (seed excluded)
    family: str         # registered model name
    seed: int
    metric: str         # primary figure: "accuracy" (higher is better) or "loss" (lower)
    higher: bool
    curve: list         # [(step, validation figure)]
    final_val: float | None
    best_val: float | None
    best_epoch: int | None
    test_at_best: float | None
    ratio_at_best: float | None
    finished: bool
    bits: int
    compression: float
    trainable: int
    seconds: float




def _run_dirs(paths):
    """``[(run_dir, settings or None)]`` of sweep directories and run directories."""
    from hadamnp.sweeps.runner import MANIFEST_NAME, read_manifest

    out = []
    for path in map(Path, paths):
        if (path / MANIFEST_NAME).exists():
            manifest = read_manifest(path)
            out += [(path / entry["dir"], entry["settings"]) for entry in manifest["runs"]]
        elif path.is_dir():
            out.append((path, None))
        else:
            raise ConfigError(f"{path} is neither a sweep directory nor a run directory")
    return out


def _label(config, settings):
    if settings is not None and LABEL in settings:
        return str(settings[LABEL])
    if settings is not None:
        shown = {k: v for k, v in settings.items() if k != "seed"}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or config.model
    options = ", ".join(f"{k}={v}" for k, v in config.model_options.items())
    return f"{config.task} {config.model} {options}"


def _record(run_dir, settings, evaluate_best):
    from hadamnp.io.checkpoint import BEST_NAME, checkpoint_path
    from hadamnp.runs.plumbing import evaluate_run, load_run, restore
    from hadamnp.training.metrics import primary_figure, read_metrics

    model, _, config = restore(run_dir)
    ckpt, _, _ = load_run(run_dir)
    records = read_metrics(run_dir)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    test = ckpt.metrics.get("test")
    metric, higher = primary_figure(epochs[-1] if epochs else (test or {}))
    curve = [(r["step"], r[f"val_{metric}"]) for r in epochs if f"val_{metric}" in r]
    best_epoch = best_val = None
    if curve:
        values = [v for _, v in curve]
        index = values.index(max(values) if higher else min(values))
        best_epoch, best_val = epochs[index]["epoch"], values[index]
    finished = test is not None
    test_at_best = ratio_at_best = None
    if finished and best_epoch is not None:
        if best_epoch == epochs[-1]["epoch"]:
            result = test
        elif evaluate_best:
            path = checkpoint_path(run_dir, best_epoch)
            best = Path(run_dir) / BEST_NAME
            if not path.exists() and best.exists() and \
                    load_run(best)[0].position["epoch"] == best_epoch + 1:
                path = best  # the epoch's own file was pruned (keep_last)
            result = evaluate_run(path, "test", config.test_batches,
                                  config.eval_batch_size)[0] if path.exists() else None
        else:
            result = None
        if result is not None:
            test_at_best = result.get(metric)
            ratio_at_best = result.get("ratio")
    size = model.size()
    return RunRecord(
        run_dir=Path(run_dir), label=_label(config, settings), family=config.model,
        seed=config.seed, metric=metric, higher=higher, curve=curve,
        final_val=curve[-1][1] if curve else None, best_val=best_val, best_epoch=best_epoch,
        test_at_best=test_at_best, ratio_at_best=ratio_at_best, finished=finished,
        bits=size.total_bits, compression=size.compression_ratio, trainable=size.trainable,
        seconds=sum(r.get("seconds", 0.0) for r in epochs))


def collect(paths, evaluate_best=True):
    """:class:`RunRecord` of every run under ``paths`` (sweep or run directories).

    Runs without a checkpoint are skipped (listed in the second result).

    Returns
    -------
    records : list of RunRecord
    missing : list of Path
    """
    records, missing = [], []
    for run_dir, settings in _run_dirs(paths):
        try:
            records.append(_record(run_dir, settings, evaluate_best))
        except CheckpointError:
            missing.append(run_dir)
    return records, missing


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def group_runs(records):
    """Rows, one per group of runs differing only by seed (dicts, in first-seen order)."""
    groups = {}
    for record in records:
        groups.setdefault(record.label, []).append(record)
    rows = []
    for label, runs in groups.items():
        row = {"group": label, "family": runs[0].family, "metric": runs[0].metric,
               "seeds": len(runs), "finished": sum(r.finished for r in runs)}
        for key in ("final_val", "best_val", "test_at_best", "ratio_at_best", "seconds"):
            row[key], row[key + "_std"] = _mean_std([getattr(r, key) for r in runs])
        row.update(bits=runs[0].bits, compression=runs[0].compression,
                   trainable=runs[0].trainable)
        rows.append(row)
    return rows


def _fmt(mean, std, digits=4):
    if mean is None:
        return "n/a"
    text = f"{mean:.{digits}g}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def markdown_table(rows):
    """The report table in Markdown."""
    lines = ["| group | figure | seeds (finished) | final val | best val | test at best val "
             "| loss/baseline | bits | compression | trainable | wall time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['group']} | {row['metric']} | {row['seeds']} ({row['finished']}) | "
            f"{_fmt(row['final_val'], row['final_val_std'])} | "
            f"{_fmt(row['best_val'], row['best_val_std'])} | "
            f"{_fmt(row['test_at_best'], row['test_at_best_std'])} | "
            f"{_fmt(row['ratio_at_best'], row['ratio_at_best_std'], 3)} | {row['bits']:,} | "
            f"{row['compression']:.1f}x | {row['trainable']:,} | "
            f"{_fmt(row['seconds'], row['seconds_std'], 3)} |")
    return "\n".join(lines) + "\n"


def _csv(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["group"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plots(records, rows, out_dir):
    """Write the PNGs; return their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'hadamnp[plot]' "
                          "(or run hadamnp report with --no-plots)") from None
    paths = []
    for family in dict.fromkeys(r.family for r in records):
        runs = [r for r in records if r.family == family]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for k, label in enumerate(dict.fromkeys(r.label for r in runs)):
            for i, run in enumerate(r for r in runs if r.label == label):
                if run.curve:
                    steps, values = zip(*run.curve)
                    ax.plot(steps, values, color=f"C{k % 10}", alpha=0.8,
                            label=label if i == 0 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"validation {runs[0].metric}")
        ax.set_title(f"{family}: validation curves (one line per run)")
        ax.legend(fontsize=7)
        path = out_dir / f"curves-{family}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(r for r in rows if r["test_at_best"] is not None):
        ax.errorbar(row["bits"], row["test_at_best"], yerr=row["test_at_best_std"] or 0,
                    fmt="o", color=f"C{i % 10}", label=row["group"], capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("deployed model bits")
    ax.set_ylabel(f"test {rows[0]['metric'] if rows else ''} at best validation")
    ax.legend(fontsize=7)
    path = out_dir / "metric-vs-bits.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths + [path]


def write_report(paths, out_dir, plots=True, evaluate_best=True):
    """Write ``report.md``, ``report.csv`` (and PNGs) into ``out_dir``; return the Markdown
    table, the files written and the run directories without a checkpoint."""
    records, missing = collect(paths, evaluate_best)
    if not records:
        raise ConfigError("no finished or started run found under "
                          + ", ".join(map(str, paths)))
    rows = group_runs(records)
    table = markdown_table(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(table, encoding="utf-8")
    (out_dir / "report.csv").write_text(_csv(rows), encoding="utf-8")
    files = [out_dir / "report.md", out_dir / "report.csv"]
    if plots:
        files += _plots(records, rows, out_dir)
    return table, files, missing
