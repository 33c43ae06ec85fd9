"""Metrics of a run as JSON lines (``RUN_DIR/metrics.jsonl``), one object per line.

Records have a ``kind``: ``"step"`` (every ``log_every`` optimizer steps), ``"epoch"``
(end of an epoch, with validation figures) and ``"test"`` (final evaluation). Non-finite
numbers are written as ``null`` (strict JSON).

The file is append-only, and a checkpoint records how many bytes of it belong to the run
up to that point; resuming truncates the file there, so lines written after the last
checkpoint by an interrupted process are not duplicated.
"""

import json
import math
import os
from pathlib import Path

from hadamnp.errors import CheckpointError
from hadamnp.io.atomic import regular_target
from hadamnp.runs.integrity import METRICS_NAME


def json_safe(value):
    """``value`` (nested dicts/lists of numbers and strings) with NaN/Inf replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def encode_record(record):
    """One metrics record as a line of strict JSON (NaN/Inf become ``null``)."""
    return json.dumps(json_safe(record), allow_nan=False, separators=(", ", ": ")) + "\n"


class MetricsLog:
    """Appends records to a JSON-lines file, keeping only its first ``offset`` bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The ``metrics.jsonl`` file (created when missing).
    offset : int
        Bytes of the existing file to keep (0 for a new run).

    Raises
    ------
    CheckpointError
        The file is shorter than ``offset`` (it does not belong to the checkpoint), is not
        a regular file (a symbolic link is followed) or cannot be opened.
    """

    def __init__(self, path, offset=0):
        self.path = Path(path)
        regular_target(self.path)
        try:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size < offset:
                raise CheckpointError(
                    f"{self.path} holds {size} bytes but the checkpoint expects at least "
                    f"{offset}: the metrics file does not belong to this checkpoint")
            self._file = open(self.path, "r+b" if self.path.exists() else "w+b")
            self._file.truncate(offset)
            self._file.seek(offset)
        except OSError as exc:
            raise CheckpointError(f"cannot open {self.path}: {exc}") from exc
        self.offset = offset

    def write(self, record):
        """Append ``record`` (a dict) and flush; return the new file size in bytes."""
        self._file.write(encode_record(record).encode("ascii"))
        self._file.flush()
        self.offset = self._file.tell()
        return self.offset

    def sync(self):
        """Force the lines written so far to disk (before a checkpoint that counts them)."""
        os.fsync(self._file.fileno())

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def primary_figure(record):
    """``(name, higher_is_better)`` of the figure that ranks a run's epochs.

    Accuracy (higher is better) for classification; the loss (lower) for tasks scored
    against a baseline (copy, adding: their loss / baseline ratio is the result) and for
    tasks without accuracy. ``record`` is an evaluation result or a metrics record (keys
    with or without the ``val_`` prefix). Used for the best-validation checkpoint, early
    stopping and ``hadamnp report``.
    """
    if "baseline" in record or "val_baseline" in record or "accuracy" not in record and \
            "val_accuracy" not in record:
        return "loss", False
    return "accuracy", True


def read_metrics(path, kind=None):
    """The records of a ``metrics.jsonl`` file (or of ``RUN_DIR/metrics.jsonl``).

    Parameters
    ----------
    path : str or os.PathLike
        The file or its run directory.
    kind : str, optional
        Keep only records of this kind (``"step"``, ``"epoch"``, ``"test"``).

    Returns
    -------
    list of dict
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    records = []
    with open(path, encoding="ascii") as fh:
        for line in fh:
            record = json.loads(line)
            if kind is None or record.get("kind") == kind:
                records.append(record)
    return records

