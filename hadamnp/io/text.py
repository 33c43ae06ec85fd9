"""Byte-level language modelling over any text file: the bytes, the splits, the windows.

The file is read as raw bytes (no decoding, so any file works; the vocabulary is the 256
byte values). It is split **by position**, never shuffled across the cut:

==========  ===============================================================
split       bytes
==========  ===============================================================
train       the first ``N - n_val - n_test`` bytes
val         the next ``n_val = floor(val_fraction * N)`` (default 5 %)
test        the last ``n_test = floor(test_fraction * N)`` (default 5 %)
==========  ===============================================================

A split of ``S`` bytes is cut into non-overlapping **windows** of ``W`` steps starting at
``0, W, 2W, ...`` while a whole window fits: the input of the window at ``s`` is the bytes
``s .. s+W-1`` and its target the bytes ``s+1 .. s+W`` (next-byte prediction at every step,
many-to-many), so a split holds ``ceil((S - W) / W)`` windows and needs ``S >= W + 1``
bytes. The last bytes of a split that do not fill a window are not scored.

Windows are independent sequences: the model starts every window from its zero state
(see ``docs/tasks.md``, "Truncated BPTT" for why the state is not carried across windows).

The SHA-256 digest of the file is part of the task description, so a resumed run whose
file changed is refused.
"""

import hashlib
from pathlib import Path

import numpy as np

from hadamnp._checks import check_int
from hadamnp.errors import ConfigError, DataFormatError

VOCABULARY = 256
DEFAULT_WINDOW = 128
VAL_FRACTION = 0.05
TEST_FRACTION = 0.05


def read_text(path):
    """The bytes of ``path`` and their SHA-256 digest.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    data : ndarray, shape (N,), uint8
    digest : str, hexadecimal SHA-256 of the file

    Raises
    ------
    ConfigError
        The file (option ``text``) does not exist, is a directory or cannot be read.
    DataFormatError
        The file is empty.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"text: the text file {path} {what}; pass the path of a text file "
                          f"(--text FILE)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"text: cannot read {path}: {exc.strerror or exc}") from None
    if not raw:
        raise DataFormatError(f"{path}: the text file is empty")
    return np.frombuffer(raw, dtype=np.uint8), hashlib.sha256(raw).hexdigest()


def split_sizes(size, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION):
    """``(n_train, n_val, n_test)`` bytes of a file of ``size`` bytes (see the module
    docstring)."""
    fractions = {}
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not 0.0 < value < 0.5:
            raise ConfigError(f"{name} must lie strictly between 0 and 0.5, got {value!r}")
        fractions[name] = float(value)
    n_val = int(np.floor(fractions["val_fraction"] * size))
    n_test = int(np.floor(fractions["test_fraction"] * size))
    return size - n_val - n_test, n_val, n_test


def window_starts(size, window):
    """Start positions of the windows of a split of ``size`` bytes, ``(M,)`` int64."""
    return np.arange(0, max(size - window, 0), window, dtype=np.int64)


def windows(data, starts, window):
    """Inputs and next-byte targets of the windows starting at ``starts``.

    Parameters
    ----------
    data : ndarray, shape (S,), uint8, the bytes of one split
    starts : ndarray, shape (M,), int, each ``<= S - W - 1``
    window : int, ``W``

    Returns
    -------
    x : ndarray, shape (M, W), int64, bytes ``s .. s+W-1``
    y : ndarray, shape (M, W), int64, bytes ``s+1 .. s+W``
    """
    chunk = data[np.asarray(starts)[:, None] + np.arange(window + 1)].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def check_window(window, sizes, path):
    """Raise :class:`DataFormatError` unless every split of ``sizes`` (a dict name -> bytes)
    holds one window of ``window`` steps (``W + 1`` bytes)."""
    window = check_int(window, "text_window", 1)
    for name, size in sizes.items():
        if size < window + 1:
            raise DataFormatError(
                f"{path}: {sum(sizes.values())} bytes are too short for one window of "
                f"text_window={window} steps ({window + 1} bytes) in every split: the {name} "
                f"split has {size} bytes; lower text_window or use a longer file")
    return window
