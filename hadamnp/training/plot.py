"""Learning curves of runs, from their ``metrics.jsonl``, as a PNG (``hadamnp plot``).

Any numeric field of the records can be drawn against the optimizer step (every record has
``step``): one panel per metric, one colour per run, one line style per record kind. Two
names stand for families:

- ``loss``: the step loss (``step`` records, every ``log_every`` steps), the epoch's mean
  training loss (``train_loss``), the validation loss (``val_loss``) and the final test
  loss (a marker);
- ``accuracy``: the same for the accuracies.

Any other name is looked up as a key in every record kind (``flips``, ``grad_norm``,
``val_ratio``, ...); nested tables are flattened to ``table.key``.
:func:`available_metrics` lists the names a set of runs offers.

matplotlib is optional (``pip install 'hadamnp[plot]'``); it is imported only to draw,
through its object-oriented API (no ``pyplot``, no global backend).
"""

import math
from pathlib import Path

from hadamnp.errors import ConfigError
from hadamnp.training.metrics import read_metrics

__all__ = ["FAMILIES", "DEFAULT_METRICS", "flatten", "available_metrics", "metric_series",
           "plot_runs"]

# name -> [(record kind, key, label)]
FAMILIES = {
    "loss": [("step", "loss", "train (step)"), ("epoch", "train_loss", "train (epoch mean)"),
             ("epoch", "val_loss", "validation"), ("test", "loss", "test")],
    "accuracy": [("step", "accuracy", "train (step)"),
                 ("epoch", "train_accuracy", "train (epoch mean)"),
                 ("epoch", "val_accuracy", "validation"), ("test", "accuracy", "test")],
}
DEFAULT_METRICS = ("loss", "accuracy")
# Line style of a series by label (families) or record kind (other metrics).
_STYLES = {"train (step)": "-", "train (epoch mean)": "o--", "validation": "s-", "test": "*",
           "step": "-", "epoch": "o-"}
INSTALL_HINT = "hadamnp plot needs matplotlib: pip install 'hadamnp[plot]'"


def flatten(record, prefix=""):
    """The numeric fields of a record, nested tables as ``table.key`` (bools excluded)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = value
    return out


def available_metrics(records):
    """Names :func:`metric_series` accepts for these records (families first)."""
    keys = sorted({key for record in records for key in flatten(record)} - {"step"})
    families = [name for name, parts in FAMILIES.items()
                if any(key in keys for _, key, _ in parts)]
    return families + keys


def metric_series(records, name):
    """The curves of metric ``name`` in a run's records.

    Parameters
    ----------
    records : list of dict
        The records of one ``metrics.jsonl`` (:func:`hadamnp.training.metrics.read_metrics`).
    name : str
        A family (``loss``, ``accuracy``) or a record key.

    Returns
    -------
    list of (label, kind, steps, values)
        Non-empty series only; values are finite floats (null / NaN points are dropped).
    """
    parts = FAMILIES.get(name) or [(kind, name, kind) for kind in ("step", "epoch", "test")]
    series = []
    for kind, key, label in parts:
        steps, values = [], []
        for record in records:
            if record.get("kind") != kind:
                continue
            value = flatten(record).get(key)
            if value is not None and math.isfinite(value):
                steps.append(record["step"])
                values.append(float(value))
        if steps:
            series.append((label, kind, steps, values))
    return series


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return Figure


def plot_runs(run_dirs, out, metrics=DEFAULT_METRICS, log_y=False):
    """Draw ``metrics`` of the runs in ``run_dirs`` into the PNG file ``out``.

    Parameters
    ----------
    run_dirs : sequence of str or os.PathLike
        Run directories (or ``metrics.jsonl`` files).
    out : str or os.PathLike
    metrics : sequence of str
        Panels, top to bottom (see the module docstring).
    log_y : bool
        Logarithmic y axes.

    Raises
    ------
    ConfigError
        A metric none of the runs has (the message lists the available ones), or no run.
    ImportError
        matplotlib is not installed (with the install command).
    """
    if not run_dirs or not metrics:
        raise ConfigError("give at least one run and one metric")
    runs = [(Path(path), read_metrics(path)) for path in run_dirs]
    curves = {name: [(path, metric_series(records, name)) for path, records in runs]
              for name in metrics}
    for name, found in curves.items():
        if not any(series for _, series in found):
            offered = sorted({m for _, records in runs for m in available_metrics(records)})
            raise ConfigError(f"no run has metric {name!r}; available: {', '.join(offered)}")
    Figure = _figure_class()
    fig = Figure(figsize=(8, 3 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, (name, found) in zip(axes, curves.items()):
        for r, (path, series) in enumerate(found):
            run_name = path.name if path.is_dir() else path.parent.name
            for i, (label, kind, steps, values) in enumerate(series):
                # One run: a colour per series; several: a colour per run.
                colour = f"C{(r if len(runs) > 1 else i) % 10}"
                ax.plot(steps, values, _STYLES.get(label, "-"), color=colour,
                        markersize=12 if kind == "test" else 4,
                        alpha=0.5 if kind == "step" and name in FAMILIES else 1.0,
                        label=f"{run_name}: {label}" if len(runs) > 1 else label)
        ax.set_ylabel(name)
        ax.set_xlabel("optimizer step")
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(", ".join(path.name if path.is_dir() else str(path) for path, _ in runs))
    fig.savefig(out, dpi=100)
