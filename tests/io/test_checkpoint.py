"""Tests of hadamnp.io.npzfile (checked atomic npz) and hadamnp.io.checkpoint."""

import errno
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hadamnp.conventions import CONVENTIONS_VERSION
from hadamnp.errors import CheckpointError
from hadamnp.io.checkpoint import (
    Checkpoint,
    checkpoint_path,
    current_versions,
    latest_checkpoint,
    load_checkpoint,
    rng_from_state,
    rng_to_state,
    save_checkpoint,
)
from hadamnp.io.npzfile import array_checksum, read_npz_checked, write_npz_atomic

BIT_GENERATORS = ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"]


def assert_bitwise_equal(got, want, name):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    assert got.tobytes() == want.tobytes(), f"{name}: bytes differ\ngot  {got!r}\nwant {want!r}"


def awkward_floats(rng, shape, dtype):
    """Random floats plus values a lossy round trip would change: -0.0, subnormals, NaN, Inf."""
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    finfo = np.finfo(dtype)
    specials = [-0.0, finfo.smallest_subnormal, -finfo.smallest_subnormal, np.nan, np.inf]
    flat[: len(specials)] = np.array(specials, dtype=dtype)[: flat.size]
    return a


def make_checkpoint(seed=0, n=8, d_in=3, d_out=5):
    rng = np.random.default_rng(seed)
    params = {
        "u": awkward_floats(rng, (n,), np.float32),
        "U": awkward_floats(rng, (n, d_in), np.float32),
        "b": awkward_floats(rng, (n,), np.float64),
        "V": awkward_floats(rng, (d_out, n), np.float64),
        "c": np.zeros(d_out, dtype=np.float64),
    }
    optimizer_state = {
        "m": {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()},
        "v": {k: rng.random(v.shape).astype(v.dtype) for k, v in params.items()},
        "empty": {},
        "step": 17,
        "lr": 1e-3,
    }
    data_rng = np.random.default_rng(seed + 1)
    data_rng.random(11)  # advance, so the state is not a fresh seed
    init_rng = np.random.Generator(np.random.Philox(seed + 2))
    init_rng.integers(0, 10, size=3)
    return Checkpoint(
        params=params,
        optimizer_state=optimizer_state,
        position={"epoch": 2, "batch": 5, "global_step": 17},
        rng_state={"data": rng_to_state(data_rng), "init": rng_to_state(init_rng)},
        config={"model": "hadamrnn", "hidden_size": n, "lr": 1e-3, "bits": [2, None]},
        metrics={"train_loss": [2.3, 1.9], "best_val": None},
    ), {"data": data_rng, "init": init_rng}


def temp_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- round trips


def test_checkpoint_round_trip_is_exact(tmp_path):
    ckpt, generators = make_checkpoint()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, ckpt)
    got = load_checkpoint(path)

    assert sorted(got.params) == sorted(ckpt.params)
    for name, value in ckpt.params.items():
        assert_bitwise_equal(got.params[name], value, f"param {name}")
    assert sorted(got.optimizer_state) == sorted(ckpt.optimizer_state)
    for slot in ("m", "v"):
        for name, value in ckpt.optimizer_state[slot].items():
            assert_bitwise_equal(got.optimizer_state[slot][name], value, f"opt {slot}.{name}")
    assert got.optimizer_state["empty"] == {}
    assert got.optimizer_state["step"] == 17 and isinstance(got.optimizer_state["step"], int)
    assert got.optimizer_state["lr"] == 1e-3
    assert got.position == ckpt.position
    assert got.config == ckpt.config
    assert got.metrics == ckpt.metrics
    assert got.rng_state == ckpt.rng_state
    assert got.versions == current_versions()
    assert got.versions["conventions_version"] == CONVENTIONS_VERSION
    assert temp_files(tmp_path) == []

    # The restored generators continue exactly where the saved ones were.
    for name, original in generators.items():
        restored = rng_from_state(got.rng_state[name])
        want, have = original.random(1000), restored.random(1000)
        assert np.array_equal(have, want), f"RNG {name!r} stream differs: {have[:3]} vs {want[:3]}"


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_rng_state_survives_json(name):
    original = np.random.Generator(getattr(np.random, name)(1234))
    original.standard_normal(7)
    original.integers(0, 2**32, size=1, dtype=np.uint32)  # leaves a buffered half word
    state = json.loads(json.dumps(rng_to_state(original)))
    restored = rng_from_state(state)
    want = original.integers(0, 2**63, size=500)
    have = restored.integers(0, 2**63, size=500)
    assert np.array_equal(have, want), f"{name}: {have[:3]} vs {want[:3]}"


def test_rng_from_state_rejects_unknown_generator():
    with pytest.raises(CheckpointError, match="bit generator 'os.system'"):
        rng_from_state({"bit_generator": "os.system", "state": {}})
    with pytest.raises(CheckpointError, match="malformed PCG64"):
        rng_from_state({"bit_generator": "PCG64", "state": {"state": 1}})


def test_npz_round_trip_keeps_dtype_shape_order_and_meta(tmp_path):
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        "scalar": np.float64(-0.0),
        "flags": np.array([True, False, True]),
        "words": np.array([2**64 - 1, 0, 5], dtype=np.uint64),
        "text": np.array(["sign(0)=+1", "ü"]),
        "empty": np.zeros((0, 4), dtype=np.int8),
        "strided": np.arange(20, dtype=np.int32)[::3],
        "big_endian": np.arange(3, dtype=">f8"),
        "key with.dots and spaces": np.array([1 + 2j]),
    }
    meta = {"format": "test", "version": 3, "nested": {"a": [1, 2.5, None, True]}}
    path = tmp_path / "a.npz"
    write_npz_atomic(path, arrays, meta)
    got, got_meta = read_npz_checked(path, expected_format="test", expected_version=3)
    assert got_meta == meta
    assert sorted(got) == sorted(arrays)
    for key, value in arrays.items():
        assert_bitwise_equal(got[key], value, key)
    # The file is a plain npz: numpy reads it without pickle.
    with np.load(path, allow_pickle=False) as plain:
        assert_bitwise_equal(plain["fortran"], arrays["fortran"], "np.load fortran")
        assert json.loads(str(plain["meta"]))["checksum"] == array_checksum(arrays)


@settings(max_examples=40, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.one_of(
            hnp.boolean_dtypes(),
            hnp.integer_dtypes(endianness="="),
            hnp.unsigned_integer_dtypes(endianness="="),
            hnp.floating_dtypes(endianness="="),
            hnp.complex_number_dtypes(endianness="="),
            hnp.unicode_string_dtypes(endianness="="),
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    )
)
def test_npz_round_trip_property(array):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "p.npz"
        write_npz_atomic(path, {"a": array}, {})
        got, meta = read_npz_checked(path)
        assert meta == {}
        assert_bitwise_equal(got["a"], array, "a")


def test_same_content_gives_same_bytes(tmp_path):
    ckpt, _ = make_checkpoint()
    first, second = tmp_path / "1.npz", tmp_path / "2.npz"
    save_checkpoint(first, ckpt)
    save_checkpoint(second, ckpt)
    assert first.read_bytes() == second.read_bytes()


def test_checksum_ignores_dict_order_but_not_content():
    a = {"x": np.arange(3.0), "y": np.ones(2, dtype=np.int64)}
    b = {"y": np.ones(2, dtype=np.int64), "x": np.arange(3.0)}
    assert array_checksum(a) == array_checksum(b)
    for changed in (
        {"x": np.arange(3.0), "y": np.ones(2, dtype=np.int32)},  # dtype
        {"x": np.arange(3.0).reshape(3, 1), "y": np.ones(2, dtype=np.int64)},  # shape
        {"z": np.arange(3.0), "y": np.ones(2, dtype=np.int64)},  # key
        {"x": np.array([0.0, 1.0, 2.5]), "y": np.ones(2, dtype=np.int64)},  # bytes
    ):
        assert array_checksum(changed) != array_checksum(a), changed


def test_new_file_is_world_readable_and_existing_mode_is_kept(tmp_path):
    if sys.platform.startswith("win"):
        pytest.skip("POSIX file modes")
    path = tmp_path / "m.npz"
    write_npz_atomic(path, {"a": np.zeros(1)}, {})
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    write_npz_atomic(path, {"a": np.ones(1)}, {})
    assert path.stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------- damaged files


@pytest.fixture
def saved(tmp_path):
    ckpt, _ = make_checkpoint()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, ckpt)
    return path


def member_data_ranges(path):
    """(name, start, stop) of every member's stored bytes (its .npy header and data)."""
    ranges = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            offset = info.header_offset
            name_len = int.from_bytes(raw[offset + 26 : offset + 28], "little")
            extra_len = int.from_bytes(raw[offset + 28 : offset + 30], "little")
            start = offset + 30 + name_len + extra_len
            ranges.append((info.filename, start, start + info.compress_size))
    return ranges


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9, "all but one"])
def test_truncated_file_is_rejected(saved, keep):
    raw = saved.read_bytes()
    cut = len(raw) - 1 if keep == "all but one" else int(len(raw) * keep)
    saved.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="not a valid npz") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_flipped_byte_anywhere_in_member_data_is_detected(saved):
    raw = saved.read_bytes()
    rng = np.random.default_rng(42)
    ranges = member_data_ranges(saved)
    assert {name for name, _, _ in ranges} >= {"meta.npy", "param.u.npy", "opt.m.V.npy"}
    for name, start, stop in ranges:
        for pos in rng.integers(start, stop, size=4):
            damaged = bytearray(raw)
            damaged[pos] ^= int(rng.integers(1, 256))
            saved.write_bytes(bytes(damaged))
            with pytest.raises(CheckpointError, match="corrupt") as info:
                load_checkpoint(saved)
            assert str(saved) in str(info.value), (name, pos, str(info.value))


def rewrite_zip(path, replace):
    """Rewrite ``path`` with valid CRCs, arrays passed through ``replace``."""
    with zipfile.ZipFile(path) as zf:
        members = {
            info.filename[:-4]: np.lib.format.read_array(io.BytesIO(zf.read(info)))
            for info in zf.infolist()
        }
    members = replace(members)
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in members.items():
            with zf.open(key + ".npy", "w") as member:
                np.lib.format.write_array(member, value)


def test_checksum_catches_changes_the_zip_crc_cannot(saved):
    def tamper(members):
        members["param.U"] = members["param.U"].copy()
        members["param.U"][0, 0] += 1
        return members

    rewrite_zip(saved, tamper)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(saved)


def test_arrays_swapped_in_from_another_file_are_detected(saved, tmp_path):
    other = tmp_path / "other.npz"
    save_checkpoint(other, make_checkpoint(seed=7)[0])
    other_arrays, _ = read_npz_checked(other)
    rewrite_zip(saved, lambda m: {**m, "opt.v.b": other_arrays["opt.v.b"]})
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(saved)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hidden_size: 64\n")
    with pytest.raises(CheckpointError, match="not a valid npz") as info:
        read_npz_checked(path)
    assert str(path) in str(info.value)


def test_bare_npy_is_not_an_npz(tmp_path):
    path = tmp_path / "a.npz"
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)
    with pytest.raises(CheckpointError, match="not a valid npz"):
        read_npz_checked(path)


def test_missing_meta(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta' entry"):
        read_npz_checked(path)


@pytest.mark.parametrize(
    "meta, message",
    [
        (np.array("{not json"), "not valid JSON"),
        (np.array("[1, 2]"), "must hold a JSON object"),
        (np.array(["{}"]), "0-d unicode"),
        (np.array(json.dumps({"format": "x"})), "no 'checksum'"),
    ],
)
def test_bad_meta(tmp_path, meta, message):
    path = tmp_path / "bad.npz"
    np.savez(path, meta=meta, x=np.zeros(3))
    with pytest.raises(CheckpointError, match=message) as info:
        read_npz_checked(path)
    assert str(path) in str(info.value)


def test_pickled_object_array_is_never_loaded(tmp_path):
    path = tmp_path / "pickle.npz"
    meta = json.dumps({"checksum": "sha256:0"})
    np.savez(path, meta=np.array(meta), x=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="not a valid .npy array"):
        read_npz_checked(path)


def test_foreign_member_is_rejected(tmp_path):
    path = tmp_path / "a.npz"
    write_npz_atomic(path, {"x": np.zeros(2)}, {})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("README.txt", "hello")
    with pytest.raises(CheckpointError, match="unexpected member 'README.txt'"):
        read_npz_checked(path)


def test_wrong_format_and_version(tmp_path):
    path = tmp_path / "golden.npz"
    write_npz_atomic(path, {"x": np.zeros(2)}, {"format": "hadamnp-golden", "version": 1})
    wrong = "format 'hadamnp-golden', expected 'hadamnp-checkpoint'"
    with pytest.raises(CheckpointError, match=wrong):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="version 1; this hadamnp reads version 2"):
        read_npz_checked(path, expected_format="hadamnp-golden", expected_version=2)


def write_checkpoint_meta(path, arrays, **changes):
    """A checkpoint file whose meta is that of a valid one with ``changes`` applied."""
    ckpt, _ = make_checkpoint()
    save_checkpoint(path, ckpt)
    good_arrays, meta = read_npz_checked(path)
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    write_npz_atomic(path, arrays if arrays is not None else good_arrays, meta)


def test_checkpoint_missing_meta_field(tmp_path):
    path = tmp_path / "c.npz"
    write_checkpoint_meta(path, None, position=None)
    with pytest.raises(CheckpointError, match=r"lacks field\(s\) \['position'\]"):
        load_checkpoint(path)


def test_checkpoint_with_other_conventions_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    write_checkpoint_meta(path, None, versions={"conventions_version": CONVENTIONS_VERSION + 1})
    with pytest.raises(CheckpointError, match="conventions version"):
        load_checkpoint(path)


def test_checkpoint_unexpected_or_invalid_content(tmp_path):
    path = tmp_path / "c.npz"
    write_checkpoint_meta(path, {"param.u": np.zeros(2), "grad.u": np.zeros(2)})
    with pytest.raises(CheckpointError, match="unexpected array 'grad.u'"):
        load_checkpoint(path)
    write_checkpoint_meta(path, {"opt.nosuchslot.u": np.zeros(2)})
    with pytest.raises(CheckpointError, match="unexpected array 'opt.nosuchslot.u'"):
        load_checkpoint(path)
    write_checkpoint_meta(path, None, position={"epoch": 1})
    with pytest.raises(CheckpointError, match=f"{path}: position must have exactly"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------ writing


@pytest.mark.parametrize(
    "value, kind",
    [
        (np.array([{"a": 1}, None], dtype=object), "object"),
        (np.array([b"raw"]), "bytes"),
        (np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]), "structured"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime"),
    ],
)
def test_refused_dtypes(tmp_path, value, kind):
    path = tmp_path / "x.npz"
    with pytest.raises(CheckpointError, match=r"array 'bad' has dtype .* refused"):
        write_npz_atomic(path, {"ok": np.zeros(2), "bad": value}, {})
    assert not path.exists(), kind
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    "arrays, meta, message",
    [
        ({"meta": np.zeros(1)}, {}, "'meta' is reserved"),
        ({"": np.zeros(1)}, {}, "non-empty string"),
        ({"x": np.zeros(1)}, {"checksum": "mine"}, "'checksum' is reserved"),
        ({"x": np.zeros(1)}, {"loss": float("nan")}, "not strict JSON"),
        ({"x": np.zeros(1)}, {"w": np.zeros(2)}, "not strict JSON"),
        ({"x": np.zeros(1)}, [1], "meta must be a dict"),
    ],
)
def test_invalid_write_arguments(tmp_path, arrays, meta, message):
    with pytest.raises(CheckpointError, match=message):
        write_npz_atomic(tmp_path / "x.npz", arrays, meta)
    assert list(tmp_path.iterdir()) == []


def test_numpy_scalars_in_meta_are_stored_as_numbers(tmp_path):
    path = tmp_path / "x.npz"
    write_npz_atomic(path, {}, {"step": np.int64(3), "loss": np.float32(0.5)})
    assert read_npz_checked(path)[1] == {"step": 3, "loss": 0.5}


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="cannot create a temporary file"):
        write_npz_atomic(tmp_path / "no" / "x.npz", {"x": np.zeros(1)}, {})


class SimulatedCrash(BaseException):
    """Stands for a kill or KeyboardInterrupt: not an Exception, so nothing may swallow it."""


def test_interrupted_write_keeps_previous_checkpoint(saved, monkeypatch):
    before = saved.read_bytes()
    real_write_array = np.lib.format.write_array
    seen_partial = []

    def write_half_then_fail(fp, array, *args, **kwargs):
        buffer = io.BytesIO()
        real_write_array(buffer, array, *args, **kwargs)
        if array.dtype.kind == "f":  # the first parameter array, after meta went through
            fp.write(buffer.getvalue()[: buffer.tell() // 2])
            fp.flush()
            seen_partial.extend(temp_files(saved.parent))
            raise OSError(errno.ENOSPC, "No space left on device")
        fp.write(buffer.getvalue())

    monkeypatch.setattr(np.lib.format, "write_array", write_half_then_fail)
    newer, _ = make_checkpoint(seed=5)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        save_checkpoint(saved, newer)
    assert str(saved) in str(info.value)
    monkeypatch.undo()

    assert len(seen_partial) == 1, f"the crash must come with a temp file on disk: {seen_partial}"
    assert temp_files(saved.parent) == []
    assert saved.read_bytes() == before
    old, _ = make_checkpoint()
    assert_bitwise_equal(load_checkpoint(saved).params["V"], old.params["V"], "param V")


@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_crash_before_rename_keeps_previous_checkpoint(saved, monkeypatch, target):
    before = saved.read_bytes()

    def crash(*args, **kwargs):
        raise SimulatedCrash

    monkeypatch.setattr(os, target, crash)
    with pytest.raises(SimulatedCrash):
        save_checkpoint(saved, make_checkpoint(seed=5)[0])
    monkeypatch.undo()
    assert temp_files(saved.parent) == []
    assert saved.read_bytes() == before
    load_checkpoint(saved)


def test_successful_overwrite_leaves_only_the_new_file(saved):
    newer, _ = make_checkpoint(seed=5)
    save_checkpoint(saved, newer)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["checkpoint.npz"]
    assert_bitwise_equal(load_checkpoint(saved).params["u"], newer.params["u"], "param u")


# ------------------------------------------------------------------ checkpoint contents


@pytest.mark.parametrize(
    "change, message",
    [
        ({"position": {"epoch": 0, "batch": 0}}, "exactly the keys"),
        (
            {"position": {"epoch": 0, "batch": -1, "global_step": 0}},
            r"position\['batch'\] must be >= 0",
        ),
        ({"position": {"epoch": 0.5, "batch": 0, "global_step": 0}}, "must be an integer"),
        ({"optimizer_state": {"m": {"W": np.zeros(2)}}}, r"not parameters"),
        ({"optimizer_state": {"adam.m": {}}}, "must not contain '.'"),
        ({"optimizer_state": {"step": [1]}}, "slot dict or a scalar"),
        ({"rng_state": {"data": {"seed": 1}}}, "use rng_to_state"),
        # The raw MT19937 state holds an ndarray; rng_to_state makes it JSON.
        ({"rng_state": {"data": np.random.MT19937(0).state}}, "rng_state is not strict JSON"),
        ({"config": {"lr": float("inf")}}, "config is not strict JSON"),
        ({"metrics": [1.0]}, "metrics must be a dict"),
        ({"params": {"": np.zeros(1)}}, "parameter name"),
    ],
)
def test_checkpoint_fields_are_validated(change, message):
    ckpt, _ = make_checkpoint()
    fields = {
        "params": ckpt.params,
        "optimizer_state": {},
        "position": ckpt.position,
        "rng_state": ckpt.rng_state,
        "config": ckpt.config,
        "metrics": ckpt.metrics,
    }
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(**{**fields, **change})


def test_minimal_checkpoint_round_trip(tmp_path):
    ckpt = Checkpoint(
        params={"u": np.ones(1, dtype=np.float32)},
        optimizer_state={},
        position={"epoch": 0, "batch": 0, "global_step": 0},
        rng_state={},
        config={},
    )
    path = checkpoint_path(tmp_path)
    save_checkpoint(path, ckpt)
    got = load_checkpoint(path)
    assert got.optimizer_state == {} and got.metrics == {} and got.rng_state == {}
    assert_bitwise_equal(got.params["u"], ckpt.params["u"], "u")


# ------------------------------------------------------------------------ run directory


def test_checkpoint_paths(tmp_path):
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint.npz"
    assert checkpoint_path(tmp_path, 7) == tmp_path / "checkpoint-epoch007.npz"
    assert checkpoint_path(tmp_path, 1234) == tmp_path / "checkpoint-epoch1234.npz"
    with pytest.raises(CheckpointError, match="non-negative integer"):
        checkpoint_path(tmp_path, -1)


def test_latest_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    assert latest_checkpoint(run_dir) is None
    run_dir.mkdir()
    assert latest_checkpoint(run_dir) is None

    ckpt, _ = make_checkpoint()
    for epoch in (999, 1000, 3):
        save_checkpoint(checkpoint_path(run_dir, epoch), ckpt)
    (run_dir / ".checkpoint.npz.abc123.tmp").write_bytes(b"debris of a crash")
    (run_dir / "checkpoint-epochX.npz").write_bytes(b"")
    # Numeric order, not string order ("epoch999" sorts after "epoch1000").
    assert latest_checkpoint(run_dir) == checkpoint_path(run_dir, 1000)

    save_checkpoint(checkpoint_path(run_dir), ckpt)
    assert latest_checkpoint(run_dir) == run_dir / "checkpoint.npz"

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(CheckpointError, match="not a directory"):
        latest_checkpoint(not_a_dir)
