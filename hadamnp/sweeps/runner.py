"""Running a sweep on Dask: one task per run, resumable, failures isolated.

Each run trains in its own run directory under the sweep directory, through the same
library functions as ``hadamnp train`` (:func:`hadamnp.training.loop.train` and
:func:`~hadamnp.training.loop.resume`), so a run of a sweep is bit-identical to the same
run done alone with the same thread settings. A Dask worker is one single-threaded
process (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` set to 1): runs then neither compete for cores nor depend on the
machine's thread count.

Resumption. A run whose checkpoint is final is skipped; a run with a checkpoint is
resumed from it; others start fresh. A worker lost mid-run (killed, out of memory, a
machine gone) costs only the steps since the run's last checkpoint: Dask retries the task
on another worker, which resumes, and re-running the sweep resumes whatever did not finish.

The sweep directory holds ``sweep.json`` (the grid and its runs, written before anything
trains; a different grid in the same directory is refused) and one run directory per run.
Failures of one run never stop the others; they are listed with their error at the end.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.npzfile import dumps_json

__all__ = ["MANIFEST_NAME", "SINGLE_THREAD_ENV", "RunOutcome", "SweepOutcome", "plan",
           "run_status", "train_or_resume", "run_sweep", "read_manifest"]

MANIFEST_NAME = "sweep.json"
MANIFEST_FORMAT = "hadamnp-sweep"
MANIFEST_VERSION = 1
SINGLE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _write_json_atomic(path, value):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps_json(value) + "\n", encoding="ascii")
    os.replace(tmp, path)


def read_manifest(sweep_dir):
    """The ``sweep.json`` of a sweep directory, as a dict.

    Raises
    ------
    CheckpointError
        Missing or malformed manifest.
    """
    path = Path(sweep_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        raise CheckpointError(f"{sweep_dir} is not a sweep directory (no {MANIFEST_NAME})") \
            from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("runs"), list):
        raise CheckpointError(f"{path} is not a hadamnp sweep manifest")
    return manifest


def plan(grid, sweep_dir):
    """Create or check the sweep directory; return ``[(run, run_dir), ...]``.

    The manifest records the grid and every run's configuration. An existing manifest must
    describe the same runs (a sweep directory belongs to one grid).
    """
    sweep_dir = Path(sweep_dir)
    entries = [{"id": run.run_id, "dir": run.run_id, "settings": run.settings,
                "config": run.config.to_dict()} for run in grid.runs]
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "name": grid.name,
                "grid": grid.source, "runs": entries}
    if (sweep_dir / MANIFEST_NAME).exists():
        stored = read_manifest(sweep_dir)
        old = {entry["id"]: entry["config"] for entry in stored["runs"]}
        new = {entry["id"]: entry["config"] for entry in json.loads(dumps_json(entries))}
        if old != new:
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            raise ConfigError(f"{sweep_dir} holds another grid (runs differ: "
                              f"{', '.join(changed[:5])}); choose another --out")
    else:
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(sweep_dir / MANIFEST_NAME, manifest)
        except OSError as exc:
            raise CheckpointError(f"cannot create sweep directory {sweep_dir}: {exc}") \
                from None
    return [(run, sweep_dir / run.run_id) for run in grid.runs]


def run_status(run_dir):
    """``"finished"``, ``"partial"`` (a checkpoint to resume) or ``"new"``."""
    from hadamnp.io.checkpoint import latest_checkpoint, load_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        return "new"
    ckpt = load_checkpoint(path)
    finished = ckpt.metrics.get("test") is not None and \
        ckpt.position["epoch"] >= ckpt.config["run"]["epochs"]
    return "finished" if finished else "partial"


def _safe_status(run_dir):
    """:func:`run_status`, or ``"unreadable"`` (the worker will report the error)."""
    try:
        return run_status(run_dir)
    except CheckpointError:
        return "unreadable"


def train_or_resume(run_dir, config_dict):
    """Train the run in ``run_dir`` to the end: fresh, resumed, or already finished.

    Executed on Dask workers (importable by name). Returns a JSON-friendly summary:
    ``status`` before this call, ``started_at_step``, ``step``, ``test`` figures and
    ``seconds``.
    """
    from hadamnp.runs.config import RunConfig
    from hadamnp.training import loop

    run_dir = Path(run_dir)
    status = run_status(run_dir)  # raises for a broken run directory: the run fails alone
    started = {"step": 0}

    def note_start(event):
        if event["event"] == "start":
            started["step"] = event["step"]

    if status == "finished":
        from hadamnp.runs.plumbing import load_run

        ckpt, _, _ = load_run(run_dir)
        return {"status": status, "started_at_step": ckpt.position["global_step"],
                "step": ckpt.position["global_step"], "test": ckpt.metrics["test"],
                "seconds": 0.0}
    if status == "partial":
        result = loop.resume(run_dir, callback=note_start)
    else:
        result = loop.train(RunConfig.from_dict(config_dict), run_dir, callback=note_start)
    return {"status": status, "started_at_step": started["step"], "step": result.step,
            "test": result.test, "seconds": result.seconds}


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    summary: dict | None = None
    error: str | None = None


@dataclass
class SweepOutcome:
    """What a sweep invocation did: finished runs (with summaries), skipped and failed ones."""

    runs: list = field(default_factory=list)

    @property
    def failed(self):
        return [r for r in self.runs if r.error is not None]

    @property
    def finished(self):
        return [r for r in self.runs if r.error is None]


def _headline(test):
    """``(name, value, higher_is_better)`` of a run's main test figure."""
    if not test:
        return None
    if "accuracy" in test:
        return "accuracy", test["accuracy"], True
    if "loss" in test:
        return "loss", test["loss"], False
    return None


def _make_client(scheduler, workers):
    """A Dask client: on ``scheduler`` (an address), else a new single-threaded LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("hadamnp sweep needs Dask: pip install 'hadamnp[sweep]'") from None
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                           processes=True, dashboard_address=None, env=SINGLE_THREAD_ENV)
    return Client(cluster), cluster


def run_sweep(grid, sweep_dir, *, client=None, scheduler=None, workers=None, echo=print,
              heartbeat=30.0):
    """Run every unfinished run of ``grid`` under ``sweep_dir`` on Dask.

    Parameters
    ----------
    grid : Grid
    sweep_dir : str or os.PathLike
    client : distributed.Client, optional
        Use this client (e.g. in tests); else one is made from ``scheduler``/``workers``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); default: a LocalCluster
        with ``workers`` single-threaded worker processes (default: one per core).
    echo : callable, progress lines (``print`` by default)
    heartbeat : float, seconds between status lines while nothing completes

    Returns
    -------
    SweepOutcome
    """
    planned = plan(grid, sweep_dir)
    statuses = {run.run_id: _safe_status(run_dir) for run, run_dir in planned}
    outcome = SweepOutcome()
    todo = []
    for run, run_dir in planned:
        if statuses[run.run_id] == "finished":
            outcome.runs.append(RunOutcome(run.run_id, run_dir,
                                           train_or_resume(run_dir, None)))
        else:
            todo.append((run, run_dir))
    counts = {kind: sum(statuses[r.run_id] == kind for r, _ in todo)
              for kind in ("partial", "new", "unreadable")}
    echo(f"sweep {grid.name}: {len(planned)} runs, {len(planned) - len(todo)} finished "
         f"already, {counts['partial']} to resume, {counts['new']} to start"
         + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "")
         + f" -> {sweep_dir}")
    if not todo:
        return outcome
    own_cluster = None
    if client is None:
        client, own_cluster = _make_client(scheduler, workers)
    try:
        _execute(client, todo, outcome, len(planned), echo, heartbeat)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
    if outcome.failed:
        echo(f"{len(outcome.failed)} run(s) failed:")
        for run in outcome.failed:
            echo(f"  {run.run_id}: {run.error}")
    return outcome


def _execute(client, todo, outcome, total, echo, heartbeat):
    """Submit ``todo``, collect results as they complete, print progress lines."""
    from distributed import wait

    futures = {}
    for run, run_dir in todo:
        future = client.submit(train_or_resume, str(run_dir), run.config.to_dict(),
                               key=f"hadamnp-{run_dir.parent.name}-{run.run_id}", pure=False)
        futures[future] = (run, run_dir)
    best = None
    for result in outcome.runs:
        best = _better(best, result)
    remaining = set(futures)
    while remaining:
        try:
            done, remaining = wait(remaining, timeout=heartbeat, return_when="FIRST_COMPLETED")
        except TimeoutError:
            echo(_status_line(client, remaining, outcome, total, best))
            continue
        for future in done:
            run, run_dir = futures[future]
            try:
                result = RunOutcome(run.run_id, run_dir, summary=future.result())
            except Exception as exc:  # one run's failure must not stop the others
                result = RunOutcome(run.run_id, run_dir, error=f"{type(exc).__name__}: {exc}")
            outcome.runs.append(result)
            best = _better(best, result)
            echo(_status_line(client, remaining, outcome, total, best) + f"  {run.run_id}: "
                 + (f"failed ({result.error})" if result.error else _describe(result.summary)))


def _status_line(client, remaining, outcome, total, best):
    keys = {future.key for future in remaining}
    assigned = sum(key in keys for tasks in client.processing().values() for key in tasks)
    threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    running = min(assigned, threads)
    line = (f"[{len(outcome.finished)}/{total} done, {running} running, "
            f"{len(outcome.failed)} failed]")
    if best is not None:
        line += f" best {best[1]} {best[2]:.4g} ({best[0]})"
    return line


def _describe(summary):
    head = _headline(summary["test"])
    text = f"finished at step {summary['step']}"
    if summary["started_at_step"]:
        text += f" (resumed at step {summary['started_at_step']})"
    if head is not None:
        text += f", test {head[0]} {head[1]:.4g}"
    return text


def _better(best, result):
    """The best ``(run_id, metric, value, higher)`` so far, including ``result``."""
    if result.error is not None:
        return best
    head = _headline(result.summary["test"])
    if head is None:
        return best
    name, value, higher = head
    if best is None or (best[1] == name and (value > best[2] if higher else value < best[2])):
        return (result.run_id, name, value, higher)
    return best
