"""Integrity of a run directory: one trainer at a time, no debris, the same data on resume,
and no command overwriting what a run owns.

Files of a run directory (what the run owns)
--------------------------------------------
``checkpoint.npz``, ``checkpoint-epochNNN.npz``, ``checkpoint-best.npz``, ``config.toml``
(all written by
:func:`hadamnp.io.atomic.write_atomic`), their temporary files ``.<name>.<random>.tmp``,
``metrics.jsonl`` (appended) and ``run.lock``. :func:`is_run_file` tells them apart.

The lock (:class:`RunLock`)
---------------------------
POSIX: an exclusive ``flock`` on ``run.lock``, taken without waiting and held on the open
file for the whole session. The kernel drops it when the process ends, however it ends
(``kill -9`` included), so a lock is never stale and no process ever deletes a lock it
does not hold. The file holds the holder's pid, for the message of whoever is refused.
The holder unlinks the file on release while still holding the lock; a process that
opened the old file and locks it afterwards sees that the path no longer names that file
and starts over, so two processes can never both believe they hold the run.

Without ``fcntl`` (Windows) the lock is the exclusive creation of ``run.lock``
(``O_CREAT | O_EXCL``), removed on release. It is just as exclusive, but a process that
dies without releasing it (crash, kill) leaves the file behind, and the next trainer is
refused until the user deletes it (the message says so). This fallback is exercised on
Linux by the tests with ``fcntl`` hidden; it has not been run on Windows.

Data digests
------------
A run records the SHA-256 of every data file its task read (:meth:`TaskData.data_files
<hadamnp.io.datasets.TaskData.data_files>`: the user ``.npz``, the four MNIST IDX files;
generated tasks read none) in every checkpoint; resuming compares them with the files as
they are now and refuses a change unless told to accept it (:func:`data_changes`).
"""

import hashlib
import os
import re
import stat
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: see the module docstring
    fcntl = None

from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.atomic import file_kind, temp_pattern
from hadamnp.io.checkpoint import BEST_NAME, EPOCH_NAME, LATEST_NAME, latest_checkpoint

__all__ = ["CONFIG_NAME", "METRICS_NAME", "LOCK_NAME", "RunLock", "is_run_file",
           "file_digest", "data_record", "data_changes", "describe_data_changes",
           "check_output"]

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = "run.lock"

# Files the run replaces atomically, hence the names of its temporary files.
_ATOMIC_NAMES = "|".join([re.escape(LATEST_NAME), EPOCH_NAME.pattern, re.escape(BEST_NAME),
                          re.escape(CONFIG_NAME)])
_TEMP_FILE = temp_pattern(_ATOMIC_NAMES)
_RUN_FILE = re.compile("|".join([_ATOMIC_NAMES, re.escape(METRICS_NAME), re.escape(LOCK_NAME)]))


def is_run_file(name):
    """True when a file called ``name`` in a run directory belongs to the run."""
    return bool(_RUN_FILE.fullmatch(name) or _TEMP_FILE.fullmatch(name))


class RunLock:
    """Exclusive right to write the run directory ``run_dir`` (see the module docstring).

    Use as a context manager; entering raises :class:`CheckpointError` naming the holder's
    pid when another process holds the run.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing directory.
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd = None
        self._flock = False

    def __enter__(self):
        self._flock = fcntl is not None
        self._fd = self._lock() if self._flock else self._create()
        return self

    def __exit__(self, *exc_info):
        fd, self._fd = self._fd, None
        if self._flock:
            self._unlink()  # while still locked: see the module docstring
            os.close(fd)
        else:
            os.close(fd)  # first: Windows cannot delete an open file
            self._unlink()

    def _unlink(self):
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a leftover file is no lock under flock; without flock the user removes it

    def _in_use(self, pid, advice):
        who = f"process {pid}" if pid else "another process"
        return (f"{self.run_dir} is in use by {who} (lock file {self.path}); "
                f"{advice}")

    def _open(self, flags):
        # O_NONBLOCK: a FIFO planted as run.lock must not hang open().
        flags |= getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise
        except OSError as exc:
            raise CheckpointError(f"cannot open the lock file {self.path}: {exc}") from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise CheckpointError(f"cannot lock {self.run_dir}: {self.path} is "
                                  f"{file_kind(mode)}, not a regular file; remove it")
        return fd

    def _lock(self):
        while True:
            fd = self._open(os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _pid(os.pread(fd, 32, 0))
                os.close(fd)
                raise CheckpointError(self._in_use(pid, "wait for it to finish")) from None
            except OSError as exc:  # e.g. a file system without locks
                os.close(fd)
                raise CheckpointError(f"cannot lock {self.path}: {exc}") from exc
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                return fd
            os.close(fd)  # locked a file its holder had just unlinked: start over

    def _create(self):
        try:
            fd = self._open(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            try:
                pid = _pid(self.path.read_bytes())
            except OSError:
                pid = None
            raise CheckpointError(self._in_use(
                pid, "wait for it to finish; if no such process runs any more (it was "
                     "killed), delete the lock file")) from None
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        return fd

    def remove_stale_temp_files(self):
        """Delete the temporary files the run's writers left when a process was killed
        mid-write (only the lock holder may: a live writer's file would vanish).

        Returns
        -------
        list of Path
            The files removed.
        """
        if self._fd is None:
            raise RuntimeError(f"the lock of {self.run_dir} is not held")
        removed = []
        for entry in self.run_dir.iterdir():
            if _TEMP_FILE.fullmatch(entry.name) and stat.S_ISREG(entry.lstat().st_mode):
                entry.unlink(missing_ok=True)
                removed.append(entry)
        return removed


def _pid(raw):
    try:
        return int(raw.decode("ascii").strip()) or None
    except ValueError:
        return None  # empty: the holder has not written its pid yet


def file_digest(path, chunk_size=1 << 20):
    """``"sha256:<hex>"`` of the bytes of the file ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def data_record(task):
    """``{role: {"path": str, "sha256": digest}}`` of every data file ``task`` read.

    The digests are taken after the task loaded its data: a file changed in between goes
    unnoticed until the next resume.
    """
    return {role: {"path": str(path), "sha256": file_digest(path)}
            for role, path in sorted(task.data_files().items())}


def data_changes(then, now):
    """The data files whose content differs between two :func:`data_record` results.

    Returns
    -------
    dict
        ``{role: {"path", "then", "now"}}`` (a digest is None on the side that lacks the
        role); empty when nothing changed.
    """
    changes = {}
    for role in sorted(set(then) | set(now)):
        before, after = then.get(role, {}), now.get(role, {})
        if before.get("sha256") != after.get("sha256"):
            changes[role] = {"path": after.get("path", before.get("path")),
                             "then": before.get("sha256"), "now": after.get("sha256")}
    return changes


def describe_data_changes(changes):
    """One line naming every changed file of :func:`data_changes`."""
    def short(digest):
        return "none" if digest is None else digest.split(":")[-1][:12]

    return "; ".join(f"{role} {c['path']} (sha256 {short(c['then'])}... then, "
                     f"{short(c['now'])}... now)" for role, c in changes.items())


def _same_file(target, path):
    if Path(os.path.realpath(path)) == target:
        return True
    try:
        return os.path.samefile(target, path)  # hard links
    except OSError:
        return False


def check_output(out, run, task=None):
    """Refuse to write ``out`` when that would destroy what a command reading a run reads.

    Refused: the checkpoint read (under any name: symbolic or hard links), a data file of
    ``task``, and every file the run directory owns (:func:`is_run_file`, present or
    future), the run directory being ``run`` itself or the directory of the checkpoint
    file ``run``.

    Parameters
    ----------
    out : str or os.PathLike
        The file the command will write.
    run : str or os.PathLike
        Run directory or checkpoint file the command reads.
    task : TaskData, optional
        The run's task, when the command loads its data.

    Raises
    ------
    ConfigError
    """
    out, run = Path(out), Path(run)
    target = Path(os.path.realpath(out))
    checkpoint = latest_checkpoint(run) if run.is_dir() else run
    inputs = [] if checkpoint is None else [("the checkpoint this command reads", checkpoint)]
    if task is not None:
        inputs += [(f"a data file of the run ({role})", path)
                   for role, path in task.data_files().items()]
    for what, path in inputs:
        if _same_file(target, path):
            raise ConfigError(f"refusing to write {out}: it is {what}, {path}")
    run_dir = Path(os.path.realpath(run if run.is_dir() else run.parent))
    if target.parent == run_dir and is_run_file(target.name):
        raise ConfigError(
            f"refusing to write {out}: {target.name} belongs to the run directory {run_dir} "
            f"(checkpoints, {CONFIG_NAME}, {METRICS_NAME}, {LOCK_NAME}); choose another name "
            f"or directory")
