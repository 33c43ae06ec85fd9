"""Atomic replacement of a file: the one write path of checkpoints, golden files, exports
and ``config.toml``.

:func:`write_atomic` writes a temporary file ``.<name>.<random>.tmp`` in the target's
directory, flushes and fsyncs it, gives it the target's mode (``0o644`` for a new file),
``os.replace``-s it onto the target and fsyncs the directory. A crash at any point leaves
either the previous file or the new one, never a mixture; a failure removes the temporary
file (a ``kill -9`` cannot: the run directory's own writers clean theirs up, see
:mod:`hadamnp.runs.integrity`).

What the target may be
----------------------
- missing, or a regular file: written as above;
- a symbolic link: followed (every level), as ``open()`` would: the file it points to is
  replaced (or created, when the link dangles) and the link stays a link;
- anything else (directory, FIFO, character or block device, socket): refused with a
  :class:`~hadamnp.errors.CheckpointError`. ``os.replace`` would otherwise swap the node
  itself for a regular file, e.g. turn ``/dev/null`` into a zip archive when run as root.

The check and the rename are two system calls: a target swapped for a device in between
by another process is not detected (no portable way exists).
"""

import os
import re
import stat
import tempfile
from pathlib import Path

from hadamnp.errors import CheckpointError

TEMP_SUFFIX = ".tmp"

# Mode of a newly created file: ``tempfile`` creates 0o600, a written file should be as
# readable as one made with ``open``. A replaced file keeps its own mode.
NEW_FILE_MODE = 0o644

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode):
    """What a non-regular ``st_mode`` is, in words (``"a FIFO (named pipe)"``...)."""
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def regular_target(path):
    """The file a write to ``path`` replaces, and the mode it must keep.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    target : Path
        ``path`` with symbolic links resolved.
    mode : int
        Permission bits of the existing file, :data:`NEW_FILE_MODE` when it is missing.

    Raises
    ------
    CheckpointError
        ``path`` (or what it links to) exists and is not a regular file, or cannot be
        examined (e.g. a symbolic link loop).
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return target, NEW_FILE_MODE
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        via = f" (a link to {target})" if os.path.islink(path) else ""
        raise CheckpointError(f"cannot write {path}: it is {file_kind(info.st_mode)}{via}, "
                              f"not a regular file; choose a file path")
    return target, stat.S_IMODE(info.st_mode)


def temp_pattern(name_pattern):
    """Regular expression of the temporary files of targets named by ``name_pattern``."""
    return re.compile(r"\." + f"(?:{name_pattern})" + r"\.[A-Za-z0-9_]+" + re.escape(TEMP_SUFFIX))


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        # Some platforms (Windows) cannot open a directory; the rename is still atomic there.
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems refuse fsync on a directory; nothing more can be done portably.
        pass
    finally:
        os.close(fd)


def write_atomic(path, write):
    """Atomically replace the file ``path`` with what ``write(fileobj)`` writes.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (see the module docstring for links and non-regular files); its
        directory must exist.
    write : callable
        Called once with a binary file object open for writing.

    Raises
    ------
    CheckpointError
        The target is not a regular file, or the file cannot be written (missing
        directory, disk full, permissions). The previous file, if any, is left untouched
        and no temporary file remains. Exceptions raised by ``write`` propagate as they
        are, after the same clean-up.
    """
    path = Path(path)
    target, mode = regular_target(path)
    directory = target.parent
    try:
        tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{target.name}.",
                                          suffix=TEMP_SUFFIX, delete=False)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {path}: cannot create a temporary file in {directory}: {exc}"
        ) from exc
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, target)
    except BaseException as exc:
        # Any failure, including KeyboardInterrupt, must leave the old file and no debris.
        Path(tmp.name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {path}: {exc}") from exc
        raise
    _fsync_directory(directory)
