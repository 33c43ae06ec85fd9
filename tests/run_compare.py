"""Comparing two training runs: parameters bit for bit, metrics but for wall-clock time."""

import numpy as np

from hadamnp.training.metrics import read_metrics


def same_params(a, b):
    """True when the parameter dicts ``a`` and ``b`` have the same names and equal arrays."""
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def comparable_metrics(run_dir):
    """The run's ``metrics.jsonl`` records without ``seconds``, the only field allowed to
    differ between two runs of the same configuration."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(run_dir)]
