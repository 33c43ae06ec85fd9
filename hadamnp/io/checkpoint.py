"""Training checkpoints: everything needed to resume a run bit for bit, without pickle.

A checkpoint is an ``.npz`` written by :func:`hadamnp.io.npzfile.write_npz_atomic`
(format ``"hadamnp-checkpoint"``, version 1):

============================  ============================================================
array key                     content
============================  ============================================================
``param.<name>``              latent parameter ``<name>`` (``u``, ``U``, ``b``, ``V``, ``c``)
``opt.<slot>.<name>``         optimizer slot ``<slot>`` (e.g. Adam ``m``, ``v``) of ``<name>``
============================  ============================================================

and ``meta`` (JSON) holds ``position``, ``rng_state``, ``config``, ``metrics``,
``optimizer_slots`` (slot names, so empty slots survive), ``optimizer_scalars`` (e.g.
``step``), ``versions`` (hadamnp, numpy, numba, python, conventions version) and the
content checksum.

Run directory layout
--------------------
``RUN_DIR/checkpoint.npz``
    The latest checkpoint, rewritten atomically at every save, so it is always the newest
    complete one (a crash during a save leaves the previous one in place).
``RUN_DIR/checkpoint-epochNNN.npz``
    Optional snapshots at the end of epoch ``NNN`` (0-based, zero-padded to 3 digits, more
    when needed), kept for inspection or to go back to (a run may keep only the last few).
``RUN_DIR/checkpoint-best.npz``
    The end-of-epoch state with the best validation figure so far (accuracy for
    classification, else the loss).

See :func:`checkpoint_path`, :func:`epoch_checkpoints` and :func:`latest_checkpoint`.
"""

import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

import hadamnp
from hadamnp.conventions import CONVENTIONS_VERSION
from hadamnp.errors import CheckpointError
from hadamnp.io.npzfile import dumps_json, read_npz_checked, write_npz_atomic

FORMAT = "hadamnp-checkpoint"
VERSION = 1

LATEST_NAME = "checkpoint.npz"
BEST_NAME = "checkpoint-best.npz"
EPOCH_NAME = re.compile(r"checkpoint-epoch(\d+)\.npz")

POSITION_KEYS = ("epoch", "batch", "global_step")

PARAM_PREFIX = "param."
OPT_PREFIX = "opt."

# The bit generators NumPy ships; restoring looks names up here, never by getattr.
_BIT_GENERATORS = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
    "MT19937": np.random.MT19937,
}

_META_FIELDS = (
    "position",
    "rng_state",
    "config",
    "metrics",
    "optimizer_slots",
    "optimizer_scalars",
    "versions",
)


def _jsonable(obj):
    # bit_generator.state holds ndarrays for Philox, SFC64 and MT19937; lists of Python
    # ints round-trip exactly through JSON and the state setters accept them.
    if isinstance(obj, dict):
        return {key: _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def rng_to_state(rng):
    """The state of a ``numpy.random.Generator`` as a JSON-serialisable dict.

    Parameters
    ----------
    rng : numpy.random.Generator

    Returns
    -------
    dict
        ``rng.bit_generator.state`` with arrays turned into lists (PCG64's 128-bit state
        stays a Python int, which JSON stores exactly).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return _jsonable(rng.bit_generator.state)


def rng_from_state(state):
    """A new ``numpy.random.Generator`` in exactly the state ``state``.

    Parameters
    ----------
    state : dict
        As returned by :func:`rng_to_state` (or ``bit_generator.state``).

    Returns
    -------
    numpy.random.Generator
        Produces the same stream as the generator ``state`` was taken from.

    Raises
    ------
    CheckpointError
        Unknown bit generator or malformed state.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"RNG state names bit generator {name!r}; known: {sorted(_BIT_GENERATORS)}"
        )
    # Seed 0 only avoids drawing OS entropy; the state is overwritten just below.
    bit_generator = _BIT_GENERATORS[name](0)
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise CheckpointError(f"malformed {name} RNG state: {exc!r}") from None
    return np.random.Generator(bit_generator)


def _check_name(name, what):
    if not isinstance(name, str) or not name or "\0" in name:
        raise CheckpointError(f"{what} name {name!r} must be a non-empty string without NUL")


def _check_json(value, what):
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        dumps_json(value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{what} is not strict JSON ({exc}); use numbers, strings, bools, None, lists"
            " and dicts with string keys, and None instead of NaN/Inf"
        ) from None


def _is_scalar(value):
    return isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating))


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to resume training exactly.

    Parameters
    ----------
    params : dict[str, ndarray]
        Latent parameters by name (any shape; float32 or float64 kept bit for bit).
    optimizer_state : dict
        ``{slot: {param_name: ndarray}}`` for per-parameter slots (e.g. Adam ``"m"``,
        ``"v"``) plus scalar entries (e.g. ``"step": 12``). Slot names contain no ``"."``;
        every slot's parameter names are keys of ``params``.
    position : dict[str, int]
        Exactly ``epoch`` (0-based index of the epoch in progress), ``batch`` (batches of
        that epoch already done) and ``global_step`` (optimizer steps done in total); all
        non-negative.
    rng_state : dict[str, dict]
        Named generator states from :func:`rng_to_state` (e.g. ``{"data": ...}``); restore
        each with :func:`rng_from_state`.
    config : dict
        The run configuration (strict JSON).
    metrics : dict, optional
        History and summaries so far (strict JSON: store NaN/Inf as None).
    versions : dict or None
        Software that wrote the file, filled in by :func:`load_checkpoint`;
        :func:`save_checkpoint` ignores it and records the running versions.

    Raises
    ------
    CheckpointError
        Any field violates the rules above.
    """

    params: dict
    optimizer_state: dict
    position: dict
    rng_state: dict
    config: dict
    metrics: dict = field(default_factory=dict)
    versions: dict | None = None

    def __post_init__(self):
        if not isinstance(self.params, dict):
            raise CheckpointError(f"params must be a dict, got {type(self.params).__name__}")
        for name in self.params:
            _check_name(name, "parameter")
        self._check_optimizer_state()
        self._check_position()
        if not isinstance(self.rng_state, dict):
            raise CheckpointError(
                f"rng_state must be a dict, got {type(self.rng_state).__name__}"
            )
        for name, state in self.rng_state.items():
            _check_name(name, "RNG")
            if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
                raise CheckpointError(
                    f"rng_state[{name!r}] is not a bit generator state (use rng_to_state)"
                )
        _check_json(self.rng_state, "rng_state")
        _check_json(self.config, "config")
        _check_json(self.metrics, "metrics")

    def _check_optimizer_state(self):
        if not isinstance(self.optimizer_state, dict):
            raise CheckpointError(
                f"optimizer_state must be a dict, got {type(self.optimizer_state).__name__}"
            )
        for key, value in self.optimizer_state.items():
            _check_name(key, "optimizer state")
            if isinstance(value, dict):
                if "." in key:
                    raise CheckpointError(f"optimizer slot name {key!r} must not contain '.'")
                unknown = sorted(set(value) - set(self.params))
                if unknown:
                    raise CheckpointError(
                        f"optimizer slot {key!r} has entries {unknown} that are not parameters"
                        f" (parameters: {sorted(self.params)})"
                    )
            elif not _is_scalar(value):
                raise CheckpointError(
                    f"optimizer_state[{key!r}] must be a slot dict or a scalar,"
                    f" got {type(value).__name__}"
                )

    def _check_position(self):
        if not isinstance(self.position, dict) or set(self.position) != set(POSITION_KEYS):
            got = sorted(self.position) if isinstance(self.position, dict) else self.position
            raise CheckpointError(
                f"position must have exactly the keys {POSITION_KEYS}, got {got}"
            )
        for key, value in self.position.items():
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise CheckpointError(
                    f"position[{key!r}] must be an integer, got {type(value).__name__}"
                )
            if value < 0:
                raise CheckpointError(f"position[{key!r}] must be >= 0, got {value}")


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def current_versions():
    """Versions recorded in every checkpoint.

    Returns
    -------
    dict
        ``hadamnp``, ``numpy``, ``numba``, ``python`` (strings; ``numba`` is None when not
        installed) and ``conventions_version`` (int).
    """
    return {
        "hadamnp": hadamnp.__version__,
        "numpy": np.__version__,
        "numba": _package_version("numba"),
        "python": platform.python_version(),
        "conventions_version": CONVENTIONS_VERSION,
    }


def save_checkpoint(path, ckpt):
    """Atomically write ``ckpt`` to ``path`` (the previous file survives any failure).

    Parameters
    ----------
    path : str or os.PathLike
        Target ``.npz``; its directory must exist. See :func:`checkpoint_path`.
    ckpt : Checkpoint

    Raises
    ------
    CheckpointError
        The file cannot be written (see :func:`hadamnp.io.npzfile.write_npz_atomic`).
    """
    if not isinstance(ckpt, Checkpoint):
        raise TypeError(f"ckpt must be a Checkpoint, got {type(ckpt).__name__}")
    arrays = {PARAM_PREFIX + name: value for name, value in ckpt.params.items()}
    slots = []
    scalars = {}
    for key, value in ckpt.optimizer_state.items():
        if isinstance(value, dict):
            slots.append(key)
            for name, array in value.items():
                arrays[f"{OPT_PREFIX}{key}.{name}"] = array
        else:
            scalars[key] = value
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "position": {key: int(value) for key, value in ckpt.position.items()},
        "rng_state": ckpt.rng_state,
        "config": ckpt.config,
        "metrics": ckpt.metrics,
        "optimizer_slots": sorted(slots),
        "optimizer_scalars": scalars,
        "versions": current_versions(),
    }
    write_npz_atomic(path, arrays, meta)


def _split_arrays(arrays, slots, path):
    params = {}
    slot_arrays = {slot: {} for slot in slots}
    for key, value in arrays.items():
        if key.startswith(PARAM_PREFIX) and len(key) > len(PARAM_PREFIX):
            params[key[len(PARAM_PREFIX):]] = value
            continue
        if key.startswith(OPT_PREFIX):
            slot, _, name = key[len(OPT_PREFIX):].partition(".")
            if slot in slot_arrays and name:
                slot_arrays[slot][name] = value
                continue
        raise CheckpointError(
            f"{path}: unexpected array {key!r} (expected 'param.<name>' or"
            f" 'opt.<slot>.<name>' with a slot in {sorted(slots)})"
        )
    return params, slot_arrays


def load_checkpoint(path):
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Checkpoint
        Arrays bitwise equal to those saved (same dtypes and shapes); ``versions`` holds
        the versions recorded by the writer.

    Raises
    ------
    CheckpointError
        Naming the file: missing, truncated or corrupt file, checksum mismatch, not a
        checkpoint, unsupported format version, missing or malformed fields, or written
        under different numerical conventions.
    """
    arrays, meta = read_npz_checked(path, expected_format=FORMAT, expected_version=VERSION)
    missing = [field for field in _META_FIELDS if field not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint meta lacks field(s) {missing}")
    versions = meta["versions"]
    written = versions.get("conventions_version") if isinstance(versions, dict) else None
    if written != CONVENTIONS_VERSION:
        raise CheckpointError(
            f"{path} was written under conventions version {written!r};"
            f" this hadamnp uses version {CONVENTIONS_VERSION}"
        )
    slots = meta["optimizer_slots"]
    scalars = meta["optimizer_scalars"]
    if not isinstance(slots, list) or not all(isinstance(s, str) for s in slots):
        raise CheckpointError(f"{path}: optimizer_slots must be a list of names, got {slots!r}")
    if not isinstance(scalars, dict) or set(scalars) & set(slots):
        raise CheckpointError(
            f"{path}: optimizer_scalars must be a dict whose keys are not slot names,"
            f" got {scalars!r}"
        )
    params, slot_arrays = _split_arrays(arrays, slots, path)
    try:
        return Checkpoint(
            params=params,
            optimizer_state={**slot_arrays, **scalars},
            position=meta["position"],
            rng_state=meta["rng_state"],
            config=meta["config"],
            metrics=meta["metrics"],
            versions=versions,
        )
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def checkpoint_path(run_dir, epoch=None):
    """Where a run keeps its checkpoints.

    Parameters
    ----------
    run_dir : str or os.PathLike
    epoch : int, optional
        ``None`` for the latest checkpoint, else the end-of-epoch snapshot of ``epoch``.

    Returns
    -------
    pathlib.Path
        ``run_dir/checkpoint.npz`` or ``run_dir/checkpoint-epochNNN.npz``.
    """
    run_dir = Path(run_dir)
    if epoch is None:
        return run_dir / LATEST_NAME
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise CheckpointError(f"epoch must be a non-negative integer, got {epoch!r}")
    return run_dir / f"checkpoint-epoch{int(epoch):03d}.npz"


def epoch_checkpoints(run_dir):
    """The end-of-epoch snapshots of ``run_dir``, by epoch.

    Returns
    -------
    list of (int, pathlib.Path)
        ``(epoch, run_dir/checkpoint-epochNNN.npz)`` sorted by epoch (empty when the
        directory does not exist).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for entry in run_dir.iterdir():
        match = EPOCH_NAME.fullmatch(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(run_dir):
    """The checkpoint to resume ``run_dir`` from, or None when there is none.

    ``run_dir/checkpoint.npz`` when it exists (it is always the newest complete
    checkpoint); otherwise the end-of-epoch snapshot with the highest epoch number. The file
    is not read: :func:`load_checkpoint` verifies it.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A missing directory means a fresh run (returns None).

    Returns
    -------
    pathlib.Path or None

    Raises
    ------
    CheckpointError
        ``run_dir`` exists but is not a directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} is not a directory")
    latest = run_dir / LATEST_NAME
    if latest.is_file():
        return latest
    snapshots = epoch_checkpoints(run_dir)
    return snapshots[-1][1] if snapshots else None
