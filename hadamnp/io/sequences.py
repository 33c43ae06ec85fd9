"""User sequence data sets stored as ``.npz`` archives.

An archive (loaded with ``allow_pickle=False``) holds either dense inputs or token ids:

==================================  =========================================================
key                                 content
==================================  =========================================================
``x``                               ``(N, T, d_in)`` float inputs, finite
``tokens``                          ``(N, T)`` integer token ids ``>= 0`` for an embedding
                                    input; id ``0`` is padding (its embedding row is zero
                                    and never updated)
``y``                               ``(N,)`` integer class per sequence (many-to-one) or
                                    ``(N, T)`` class per step (many-to-many), ``>= 0``
``x_val``/``tokens_val``, ``y_val``    optional validation split, same layout
``x_test``/``tokens_test``, ``y_test`` optional test split, same layout
==================================  =========================================================

Exactly one of ``x`` and ``tokens`` must be present, with ``y``; any other key is an
error. All splits share ``T``, ``d_in`` and the target layout. When a split is absent it
can be carved out of the training arrays with ``val_fraction`` / ``test_fraction`` (see
:func:`load_npz`). Every malformed archive raises :class:`DataFormatError` naming the file
and the key.
"""

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from hadamnp._checks import check_int
from hadamnp.errors import ConfigError, DataFormatError

SPLITS = ("train", "val", "test")
_SUFFIX = {"train": "", "val": "_val", "test": "_test"}
ALLOWED_KEYS = frozenset(
    base + _SUFFIX[split] for split in SPLITS for base in ("x", "tokens", "y")
)


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceData:
    """A validated sequence data set.

    Attributes
    ----------
    path : Path
        The archive it was read from.
    input_kind : {"features", "tokens"}
    x, y : ndarray
        Training inputs ``(N, T, d_in)`` float (as stored) or ``(N, T)`` int64 token ids,
        and targets ``(N,)`` or ``(N, T)`` int64.
    x_val, y_val, x_test, y_test : ndarray or None
        The other splits, same layouts; ``None`` when absent.
    input_size : int
        ``d_in`` for features, the vocabulary size (largest id + 1 unless given) for tokens.
    num_classes : int
        Largest label + 1 unless given.
    """

    path: Path
    input_kind: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    input_size: int
    num_classes: int

    @property
    def seq_len(self):
        """``T``."""
        return self.x.shape[1]

    @property
    def many_to_many(self):
        """True when targets are given per step, ``y`` ``(N, T)``."""
        return self.y.ndim == 2


def archive_splits(path):
    """The evaluation splits an archive holds itself, from its keys alone (no array read).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    tuple of str
        ``"val"`` when it has ``y_val``, ``"test"`` when it has ``y_test``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        ``path`` is not an ``.npz`` (zip) archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            keys = {name.removesuffix(".npy") for name in archive.namelist()}
    except FileNotFoundError:
        raise
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{path}: not a readable .npz archive ({exc})") from exc
    return tuple(split for split in ("val", "test") if "y" + _SUFFIX[split] in keys)


def _read_archive(path):
    """All arrays of the archive, as a dict."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"sequence file {path} does not exist; pass the path of an .npz archive "
            f"with keys x (or tokens) and y (CLI: --npz PATH, which also points eval, "
            f"export, golden --from-checkpoint and train --resume at a run's moved archive)"
        ) from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(
            f"{path}: holds a single .npy array, expected an .npz archive with keys x "
            f"(or tokens) and y (np.savez(path, x=..., y=...))"
        )
    with archive:
        unknown = sorted(set(archive.files) - ALLOWED_KEYS)
        if unknown:
            raise DataFormatError(
                f"{path}: unknown key(s) {', '.join(unknown)}; allowed keys are "
                f"{', '.join(sorted(ALLOWED_KEYS))}"
            )
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                # Object arrays (pickles) are refused by allow_pickle=False and land here.
                raise DataFormatError(f"{path}: key {key!r} cannot be read ({exc})") from exc
    return arrays


def _as_int64(a, key, path, what):
    """Integer array ``a`` as int64; unsigned values beyond int64 would wrap negative."""
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise DataFormatError(f"{path}: {key!r} holds {what} {int(a.max())}, beyond the int64 "
                              f"range")
    return a.astype(np.int64)


def _check_split(path, arrays, split, kind):
    """Validate one split; return ``(x, y)`` or ``None`` when the split is absent."""
    sfx = _SUFFIX[split]
    x_key = ("x" if kind == "features" else "tokens") + sfx
    other = ("tokens" if kind == "features" else "x") + sfx
    if other in arrays:
        raise DataFormatError(
            f"{path}: key {other!r} mixes token ids and dense inputs; this archive uses "
            f"{'x' if kind == 'features' else 'tokens'}"
        )
    y_key = "y" + sfx
    if x_key not in arrays and y_key not in arrays:
        return None
    for key, partner in ((x_key, y_key), (y_key, x_key)):
        if key not in arrays:
            raise DataFormatError(f"{path}: key {partner!r} is present but {key!r} is missing")
    x, y = arrays[x_key], arrays[y_key]
    if kind == "features":
        if x.dtype.kind != "f":
            raise DataFormatError(
                f"{path}: {x_key!r} must be a float array, got dtype {x.dtype} "
                f"(store integer token ids under 'tokens')"
            )
        if x.ndim != 3:
            raise DataFormatError(
                f"{path}: {x_key!r} must have shape (N, T, d_in), got {x.shape}"
            )
        finite = np.isfinite(x)
        if not finite.all():
            raise DataFormatError(
                f"{path}: {x_key!r} contains {int(x.size - np.count_nonzero(finite))} "
                f"NaN/Inf value(s)"
            )
    else:
        if x.dtype.kind not in "iu":
            raise DataFormatError(
                f"{path}: {x_key!r} must hold integer token ids, got dtype {x.dtype}"
            )
        if x.ndim != 2:
            raise DataFormatError(f"{path}: {x_key!r} must have shape (N, T), got {x.shape}")
        if x.size and x.min() < 0:
            raise DataFormatError(
                f"{path}: {x_key!r} holds negative token id {int(x.min())}"
            )
        x = _as_int64(x, x_key, path, "token id")
    if 0 in x.shape:
        raise DataFormatError(f"{path}: {x_key!r} is empty (shape {x.shape})")
    if y.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: {y_key!r} must hold integer labels, got dtype {y.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0] or (
        y.ndim == 2 and y.shape[1] != x.shape[1]
    ):
        raise DataFormatError(
            f"{path}: {y_key!r} has shape {y.shape}, expected ({x.shape[0]},) or "
            f"({x.shape[0]}, {x.shape[1]}) to match {x_key!r} of shape {x.shape}"
        )
    if y.min() < 0:
        raise DataFormatError(f"{path}: {y_key!r} holds negative label {int(y.min())}")
    return x, _as_int64(y, y_key, path, "label")


def _fraction_split(n, val_fraction, test_fraction, seed):
    """Index arrays (train, val, test) carving fractions out of ``n`` sequences."""
    counts = {}
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if frac is None:
            counts[name] = 0
            continue
        if isinstance(frac, bool) or not isinstance(frac, (int, float, np.floating)) \
                or not 0.0 < frac < 1.0:
            raise ConfigError(f"{name} must lie strictly between 0 and 1, got {frac}")
        counts[name] = int(round(frac * n))
        if counts[name] < 1:
            raise ConfigError(f"{name}={frac} of {n} sequences selects none")
    n_val, n_test = counts["val_fraction"], counts["test_fraction"]
    if n_val + n_test >= n:
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no "
            f"training sequences out of {n}"
        )
    order = np.random.default_rng(seed).permutation(n)
    test = np.sort(order[:n_test])
    val = np.sort(order[n_test:n_test + n_val])
    train = np.sort(order[n_test + n_val:])
    return train, val, test


def _label_count(path, ys, num_classes):
    top = max(int(y.max()) for y in ys)
    if num_classes is None:
        if top < 1:
            raise DataFormatError(
                f"{path}: all labels are 0; pass num_classes to state the number of classes"
            )
        return top + 1
    if top >= num_classes:
        raise DataFormatError(
            f"{path}: label {top} out of range 0..{num_classes - 1} (num_classes={num_classes})"
        )
    return int(num_classes)


def load_npz(path, val_fraction=None, test_fraction=None, split_seed=0, num_classes=None,
             vocab_size=None):
    """Read and validate a user ``.npz`` sequence archive.

    Parameters
    ----------
    path : str or Path
    val_fraction, test_fraction : float in (0, 1) or None
        Carve the validation / test split out of the training arrays. Only allowed when
        the archive lacks that split. With ``order = np.random.default_rng(split_seed)
        .permutation(N)``, test takes the first ``round(test_fraction * N)`` indices of
        ``order``, validation the next ``round(val_fraction * N)``, training the rest
        (each sorted).
    split_seed : int
    num_classes : int or None
        Number of classes; default largest label + 1 over all splits.
    vocab_size : int or None
        Token archives only: number of token ids; default largest id + 1.

    Returns
    -------
    SequenceData

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        Unknown or missing keys, wrong shapes or dtypes, NaN/Inf, labels or token ids out
        of range.
    ConfigError
        Invalid fractions, or a fraction given for a split the archive already holds.
    """
    path = Path(path)
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", 1)
    if vocab_size is not None:
        vocab_size = check_int(vocab_size, "vocab_size", 1)
    arrays = _read_archive(path)
    if ("x" in arrays) == ("tokens" in arrays):
        raise DataFormatError(
            f"{path}: needs exactly one of the keys 'x' (dense inputs) and 'tokens' "
            f"(token ids), found keys {', '.join(sorted(arrays)) or 'none'}"
        )
    kind = "features" if "x" in arrays else "tokens"
    if "y" not in arrays:
        raise DataFormatError(f"{path}: key 'y' (training targets) is missing")
    splits = {split: _check_split(path, arrays, split, kind) for split in SPLITS}
    train_x, train_y = splits["train"]
    for split in ("val", "test"):
        if splits[split] is None:
            continue
        x, y = splits[split]
        if x.shape[1:] != train_x.shape[1:] or y.ndim != train_y.ndim:
            raise DataFormatError(
                f"{path}: {split} split has inputs {x.shape} and targets {y.shape}, "
                f"incompatible with training inputs {train_x.shape} and targets "
                f"{train_y.shape} (T, d_in and the target layout must agree)"
            )
    for split, frac in (("val", val_fraction), ("test", test_fraction)):
        if frac is not None and splits[split] is not None:
            raise ConfigError(
                f"{split}_fraction={frac} given but {path} already holds a {split} split"
            )
    if val_fraction is not None or test_fraction is not None:
        train, val, test = _fraction_split(len(train_y), val_fraction, test_fraction,
                                           split_seed)
        if val_fraction is not None:
            splits["val"] = (train_x[val], train_y[val])
        if test_fraction is not None:
            splits["test"] = (train_x[test], train_y[test])
        train_x, train_y = train_x[train], train_y[train]
    present = [s for s in (splits["val"], splits["test"]) if s is not None]
    ys = [train_y] + [y for _, y in present]
    n_classes = _label_count(path, ys, num_classes)
    if kind == "features":
        if vocab_size is not None:
            raise ConfigError(f"vocab_size applies to token archives only; {path} holds 'x'")
        input_size = train_x.shape[2]
    else:
        top = max(int(x.max()) for x in [train_x] + [x for x, _ in present])
        if vocab_size is None:
            input_size = top + 1
        elif top >= vocab_size:
            raise DataFormatError(
                f"{path}: token id {top} out of range 0..{vocab_size - 1} "
                f"(vocab_size={vocab_size})"
            )
        else:
            input_size = int(vocab_size)
    val = splits["val"] or (None, None)
    test = splits["test"] or (None, None)
    return SequenceData(path, kind, train_x, train_y, val[0], val[1], test[0], test[1],
                        input_size, n_classes)
