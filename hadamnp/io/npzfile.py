"""Safe, atomic, checked ``.npz`` files: the container of checkpoints, golden files and exports.

File layout
-----------
A plain, uncompressed NumPy ``.npz`` (a zip of ``.npy`` members, one per array, readable
with ``numpy.load(path, allow_pickle=False)`` and simple to parse from C or Rust):

- ``meta`` — a 0-d unicode array holding one JSON object (ASCII, strict JSON: no NaN/Inf).
  It always carries ``checksum`` and, by convention, ``format`` and ``version``.
- every other member is a numeric, bool or unicode array; object, bytes, structured and
  datetime arrays are refused, so nothing is ever unpickled.

Members are written with a fixed zip timestamp, ``meta`` first and the arrays in sorted key
order, so the same content always gives the same bytes (golden files regenerate to identical
files).

Checksum
--------
``meta["checksum"] = "sha256:" + hexdigest`` where the SHA-256 runs over the arrays (not
``meta``) in sorted key order, feeding for each array the UTF-8 bytes of
``f"{key}\\0{dtype.str}\\0{shape}\\0"`` (``shape`` = the dimensions joined by ``","``, empty for
0-d) followed by the array's bytes in C order. Together with the zip CRC-32 of every member
(``meta`` included) this detects truncation, bit rot and arrays swapped between files.

Atomicity
---------
:func:`write_npz_atomic` writes through :func:`hadamnp.io.atomic.write_atomic`: a temporary
file in the target's directory, fsynced, then ``os.replace``-d onto the target. A crash at
any point leaves either the previous file or the new one, never a mixture; the temporary
file is removed on every failure. A target that exists and is not a regular file is
refused; a symbolic link is followed (the file it points to is replaced).
"""

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hadamnp.errors import CheckpointError
from hadamnp.io.atomic import write_atomic

META_KEY = "meta"
CHECKSUM_KEY = "checksum"

# bool, signed/unsigned integers, floats, complex, unicode strings: everything NumPy can
# store and load without pickle and without platform-specific meaning.
_ALLOWED_KINDS = "biufcU"

# A fixed timestamp (the zip epoch) keeps files byte-reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

# What a damaged zip member can raise while being read or parsed.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


def _check_key(key, path):
    if not isinstance(key, str) or not key or "\0" in key:
        raise CheckpointError(
            f"cannot write {path}: array key {key!r} must be a non-empty string without NUL"
        )
    if key == META_KEY:
        raise CheckpointError(
            f"cannot write {path}: array key {META_KEY!r} is reserved for the metadata"
        )


def _check_dtype(key, a, path, action):
    if a.dtype.kind not in _ALLOWED_KINDS:
        raise CheckpointError(
            f"cannot {action} {path}: array {key!r} has dtype {a.dtype} (kind {a.dtype.kind!r});"
            " only bool, integer, float, complex and unicode arrays are allowed"
            " (object, bytes, structured and datetime arrays are refused)"
        )


def array_checksum(arrays):
    """SHA-256 content checksum of a dict of arrays, as stored in ``meta["checksum"]``.

    Parameters
    ----------
    arrays : dict[str, ndarray]
        Any shapes; the ``meta`` entry, if present, is not covered.

    Returns
    -------
    str
        ``"sha256:"`` followed by 64 lowercase hex digits.
    """
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == META_KEY:
            continue
        a = np.asarray(arrays[key])
        shape = ",".join(str(d) for d in a.shape)
        h.update(f"{key}\0{a.dtype.str}\0{shape}\0".encode("utf-8"))
        h.update(a.tobytes(order="C"))
    return "sha256:" + h.hexdigest()


def _json_default(obj):
    # NumPy scalars (np.float32 losses, np.int64 counters) are JSON numbers in disguise.
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, (bool, int, float, str)):
            return value
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def dumps_json(obj):
    """Serialise ``obj`` as strict, ASCII, key-sorted JSON (NumPy scalars become numbers).

    Raises
    ------
    TypeError, ValueError
        ``obj`` holds something JSON cannot represent (arrays, objects, NaN, Inf).
    """
    return json.dumps(
        obj, sort_keys=True, ensure_ascii=True, allow_nan=False, default=_json_default
    )


def _encode_meta(meta, checksum, path):
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"cannot write {path}: meta must be a dict, got {type(meta).__name__}"
        )
    if CHECKSUM_KEY in meta:
        raise CheckpointError(
            f"cannot write {path}: meta key {CHECKSUM_KEY!r} is reserved (it is computed)"
        )
    try:
        return dumps_json({**meta, CHECKSUM_KEY: checksum})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot write {path}: meta is not strict JSON ({exc});"
            " use numbers, strings, bools, None, lists and dicts with string keys,"
            " and None instead of NaN/Inf"
        ) from None


def _write_zip(fileobj, arrays, meta_text):
    with zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_STORED) as zf:
        members = [(META_KEY, np.array(meta_text))]
        members += [(key, arrays[key]) for key in sorted(arrays)]
        for key, a in members:
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            # force_zip64 as numpy.savez does: members larger than 2 GiB stay valid.
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)


def write_npz_atomic(path, arrays, meta):
    """Atomically write ``arrays`` and ``meta`` to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its directory must exist. An existing file is replaced only once the
        new one is completely on disk (see :func:`hadamnp.io.atomic.write_atomic` for
        symbolic links and non-regular files).
    arrays : dict[str, array_like]
        Arrays of any shape with bool, integer, float, complex or unicode dtype. Keys are
        non-empty strings without NUL; ``"meta"`` is reserved. Dtype, shape and bytes are
        preserved exactly.
    meta : dict
        JSON-serialisable metadata (strict JSON: no NaN/Inf; NumPy scalars are accepted and
        stored as numbers). ``"checksum"`` is reserved: it is computed and added here.

    Raises
    ------
    CheckpointError
        An array has a refused dtype, a key is invalid, ``meta`` is not JSON, the target
        exists and is not a regular file, or the file cannot be written (missing
        directory, disk full, permissions). The previous file, if any, is left untouched
        and no temporary file remains.
    """
    path = Path(path)
    if not isinstance(arrays, dict):
        raise CheckpointError(
            f"cannot write {path}: arrays must be a dict, got {type(arrays).__name__}"
        )
    checked = {}
    for key, value in arrays.items():
        _check_key(key, path)
        a = np.asarray(value)
        _check_dtype(key, a, path, "write")
        checked[key] = a
    meta_text = _encode_meta(meta, array_checksum(checked), path)

    write_atomic(path, lambda fileobj: _write_zip(fileobj, checked, meta_text))


def _read_member(zf, info, key, path):
    # Read the raw bytes first: zipfile verifies the CRC-32 before anything is parsed, so a
    # damaged header can never make read_array allocate a nonsense size.
    try:
        raw = zf.read(info)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path} is corrupt: member {info.filename!r}: {exc}") from None
    buffer = io.BytesIO(raw)
    try:
        a = np.lib.format.read_array(buffer, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise CheckpointError(
            f"{path}: member {info.filename!r} is not a valid .npy array: {exc}"
        ) from None
    if buffer.tell() != len(raw):
        raise CheckpointError(
            f"{path} is corrupt: member {info.filename!r} has {len(raw) - buffer.tell()}"
            " bytes after the array data"
        )
    _check_dtype(key, a, path, "read")
    return a


def _decode_meta(a, path):
    if a.ndim != 0 or a.dtype.kind != "U":
        raise CheckpointError(
            f"{path}: 'meta' must be a 0-d unicode array holding JSON,"
            f" got dtype {a.dtype} shape {a.shape}"
        )
    try:
        meta = json.loads(str(a[()]))
    except ValueError as exc:
        raise CheckpointError(f"{path}: 'meta' is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: 'meta' must hold a JSON object, got {type(meta).__name__}"
        )
    return meta


def read_npz_checked(path, expected_format=None, expected_version=None):
    """Read and verify a file written by :func:`write_npz_atomic`.

    Parameters
    ----------
    path : str or os.PathLike
    expected_format : str, optional
        Required value of ``meta["format"]`` (e.g. ``"hadamnp-checkpoint"``).
    expected_version : int or tuple of int, optional
        Required value (or accepted values) of ``meta["version"]``.

    Returns
    -------
    arrays : dict[str, ndarray]
        Every member except ``meta``, with the dtype and shape it was written with.
    meta : dict
        The decoded metadata without ``"checksum"`` (so reading returns what was written).

    Raises
    ------
    CheckpointError
        Naming the file and the problem: missing file, not a zip (e.g. truncated), corrupt
        member (zip CRC), refused dtype, missing or invalid ``meta``, wrong format or
        version, missing or mismatching checksum.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise CheckpointError(f"{path} {what}")
    try:
        zf = zipfile.ZipFile(path, mode="r")
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a valid npz (zip) file, it may be truncated: {exc}"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    arrays = {}
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise CheckpointError(
                    f"{path}: unexpected member {info.filename!r} (an npz holds only .npy files)"
                )
            key = info.filename[: -len(".npy")]
            if key in arrays:
                raise CheckpointError(f"{path} is corrupt: member {info.filename!r} repeated")
            arrays[key] = _read_member(zf, info, key, path)
    if META_KEY not in arrays:
        raise CheckpointError(f"{path} has no 'meta' entry; it was not written by hadamnp")
    meta = _decode_meta(arrays.pop(META_KEY), path)

    if expected_format is not None and meta.get("format") != expected_format:
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}, expected {expected_format!r}"
        )
    versions = expected_version if isinstance(expected_version, tuple) else (expected_version,)
    if expected_version is not None and meta.get("version") not in versions:
        raise CheckpointError(
            f"{path} has {meta.get('format')!r} version {meta.get('version')!r};"
            f" this hadamnp reads version {' or '.join(map(repr, versions))}"
        )
    stored = meta.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise CheckpointError(f"{path}: 'meta' has no {CHECKSUM_KEY!r} field")
    computed = array_checksum(arrays)
    if stored != computed:
        raise CheckpointError(
            f"{path} is corrupt: checksum mismatch (stored {stored}, computed {computed})"
        )
    return arrays, meta

