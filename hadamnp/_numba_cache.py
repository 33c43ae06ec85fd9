"""Where Numba caches the compiled kernels: never inside an installed package.

Numba's default cache lives in ``__pycache__`` beside each source file when that directory
is writable. For a package installed into ``site-packages`` those files are not in the
installation record, so ``pip uninstall`` leaves a ``hadamnp/`` directory of cache files
behind, which Python then imports as an empty namespace package in place of a later
editable install (``cannot import name '__version__' from 'hadamnp' (unknown location)``).
:func:`set_default_cache_dir` therefore points ``NUMBA_CACHE_DIR`` at a per-user cache
directory for installed copies, unless the user chose one. It must run before Numba is
imported (Numba reads the variable at import); ``hadamnp/__init__.py`` calls it first.
Numba keys cache entries by the source path, so several installations share the directory
safely. When Numba was imported before hadamnp, its configuration is reloaded from the
environment (what Numba's compiler does before each compilation).
"""

import os
import sys
from pathlib import Path

ENV_VAR = "NUMBA_CACHE_DIR"
_INSTALL_DIRS = ("site-packages", "dist-packages")


def user_cache_dir(environ=None, platform=None):
    """The per-user cache directory of hadamnp's kernels.

    ``$XDG_CACHE_HOME/hadamnp/numba``, else ``~/.cache/hadamnp/numba``; on Windows
    ``%LOCALAPPDATA%\\hadamnp\\numba``.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables (default ``os.environ``).
    platform : str, optional
        ``sys.platform`` value (default the running one).

    Returns
    -------
    Path
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform == "win32" and environ.get("LOCALAPPDATA"):
        root = Path(environ["LOCALAPPDATA"])
    elif environ.get("XDG_CACHE_HOME"):
        root = Path(environ["XDG_CACHE_HOME"])
    else:
        root = Path(environ.get("HOME") or Path.home()) / ".cache"
    return root / "hadamnp" / "numba"


def default_cache_dir(package_dir, environ=None):
    """The ``NUMBA_CACHE_DIR`` hadamnp sets, or None to leave Numba's default.

    Parameters
    ----------
    package_dir : str or Path
        The directory of the ``hadamnp`` package.
    environ : mapping, optional
        Environment variables (default ``os.environ``).

    Returns
    -------
    Path or None
        None when the user set ``NUMBA_CACHE_DIR`` or the package is a writable directory
        outside ``site-packages``/``dist-packages`` (a source checkout); else
        :func:`user_cache_dir`.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        return None
    package_dir = Path(package_dir)
    parts = (*package_dir.parts, *package_dir.resolve().parts)
    installed = any(part in _INSTALL_DIRS for part in parts)
    if not installed and os.access(package_dir, os.W_OK):
        return None
    return user_cache_dir(environ)


def set_default_cache_dir():
    """Set ``NUMBA_CACHE_DIR`` per :func:`default_cache_dir` (no-op when it returns None)."""
    cache_dir = default_cache_dir(Path(__file__).parent)
    if cache_dir is None:
        return
    os.environ[ENV_VAR] = str(cache_dir)
    config = getattr(sys.modules.get("numba"), "config", None)
    if config is not None:
        # Numba was imported first and read the environment then: let it read it again
        # (what its compiler does before every compilation) so the kernels' caches, set
        # up when their modules are imported, use the directory.
        config.reload_config()
