"""User .npz sequence archives: validation, splits, and the npz task."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, DataFormatError
from hadamnp.io import sequences
from hadamnp.io.datasets import NpzTask, load_task


def save(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def dense(n=12, t=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, t, d)), rng.integers(0, 4, size=n)


def test_dense_many_to_one(tmp_path):
    x, y = dense()
    xv, yv = dense(4, seed=1)
    path = save(tmp_path, x=x, y=y, x_val=xv, y_val=yv)
    data = sequences.load_npz(path)
    assert data.input_kind == "features" and data.input_size == 3
    assert data.num_classes == int(max(y.max(), yv.max())) + 1
    assert data.seq_len == 5 and not data.many_to_many
    assert data.x_test is None and data.y_test is None
    task = load_task("npz", path=path, seed=4)
    assert (task.input_size, task.seq_len, task.num_train) == (3, 5, 12)
    assert task.split_names() == ("val",)
    vx, vy = task.split("val", dtype=np.float64)
    assert np.array_equal(vx, xv) and np.array_equal(vy, yv) and vy.dtype == np.int64
    batches = list(task.iter_batches(0, 5))
    assert [b[0].shape for b in batches] == [(5, 5, 3), (5, 5, 3), (2, 5, 3)]
    assert all(b[0].dtype == np.float32 for b in batches)
    # The epoch is a permutation of the training set, pairs (x, y) kept together.
    seen_x = np.concatenate([b[0] for b in batches])
    seen_y = np.concatenate([b[1] for b in batches])
    rows = [int(np.argmin(np.abs(x.astype(np.float32) - row).sum(axis=(1, 2)))) for row in seen_x]
    assert sorted(rows) == list(range(12))
    assert np.array_equal(seen_y, y[rows])
    resumed = list(task.iter_batches(0, 5, start_batch=1))
    for (xr, yr), (xf, yf) in zip(resumed, batches[1:], strict=True):
        assert np.array_equal(xr, xf) and np.array_equal(yr, yf)
    with pytest.raises(ConfigError, match="no 'test' split.*test_fraction"):
        task.split("test")


def test_tokens_many_to_many(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, size=(6, 9)).astype(np.int32)
    y = rng.integers(0, 2, size=(6, 9)).astype(np.uint8)
    y[0, 0] = 1
    path = save(tmp_path, tokens=tokens, y=y)
    task = NpzTask(path)
    assert task.input_kind == "tokens" and task.input_size == int(tokens.max()) + 1
    assert task.many_to_many and task.output_size == 2
    x, yb = next(task.iter_batches(0, 6))
    assert x.dtype == np.int64 and x.shape == (6, 9) and yb.shape == (6, 9)
    assert NpzTask(path, vocab_size=50).input_size == 50
    task = NpzTask(path, val_fraction=0.5)
    vx, _ = task.split("val")
    vx[:] = -1  # callers may write into what they get; the task must not change
    assert task.split("val")[0].min() >= 0
    with pytest.raises(DataFormatError, match="token id 6 out of range.*vocab_size=5"):
        NpzTask(path, vocab_size=5)
    with pytest.raises(ConfigError, match="vocab_size applies to token archives"):
        NpzTask(save(tmp_path, "d.npz", x=np.zeros((2, 3, 1)), y=np.array([0, 1])),
                vocab_size=3)


def test_fraction_split(tmp_path):
    x, y = dense(n=20)
    x[:, 0, 0] = np.arange(20)  # row id, to trace rows through the split
    path = save(tmp_path, x=x, y=y)
    data = sequences.load_npz(path, val_fraction=0.2, test_fraction=0.25, split_seed=3)
    assert (len(data.y), len(data.y_val), len(data.y_test)) == (11, 4, 5)
    ids = [d[:, 0, 0].astype(int) for d in (data.x, data.x_val, data.x_test)]
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(20))
    order = np.random.default_rng(3).permutation(20)
    assert np.array_equal(ids[2], np.sort(order[:5]))
    assert np.array_equal(ids[1], np.sort(order[5:9]))
    assert np.array_equal(data.y_val, y[ids[1]])
    again = sequences.load_npz(path, val_fraction=0.2, test_fraction=0.25, split_seed=3)
    assert np.array_equal(again.x_val, data.x_val)
    with pytest.raises(ConfigError, match="val_fraction must lie"):
        sequences.load_npz(path, val_fraction=1.0)
    with pytest.raises(ConfigError, match="selects none"):
        sequences.load_npz(path, val_fraction=0.01)
    with pytest.raises(ConfigError, match="val_fraction must lie"):
        sequences.load_npz(path, val_fraction="0.2")
    with pytest.raises(ConfigError, match="leave no training"):
        sequences.load_npz(path, val_fraction=0.5, test_fraction=0.5)
    with_val = save(tmp_path, "v.npz", x=x, y=y, x_val=x[:2], y_val=y[:2])
    with pytest.raises(ConfigError, match="already holds a val split"):
        sequences.load_npz(with_val, val_fraction=0.1)


BAD_ARCHIVES = {
    "unknown key": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]), labels=np.zeros(2),
                         extra=np.zeros(1)), "unknown key\\(s\\) extra, labels"),
    "x and tokens": (dict(x=np.zeros((2, 3, 1)), tokens=np.zeros((2, 3), int),
                          y=np.array([0, 1])), "exactly one of the keys 'x'"),
    "neither": (dict(y=np.array([0, 1])), "exactly one of the keys 'x'"),
    "no y": (dict(x=np.zeros((2, 3, 1))), "'y' .* missing"),
    "x_val without y_val": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]),
                                 x_val=np.zeros((2, 3, 1))), "'x_val' is present but 'y_val'"),
    "tokens_val in dense": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]),
                                 tokens_val=np.zeros((2, 3), int)), "'tokens_val' mixes"),
    "integer x": (dict(x=np.zeros((2, 3, 1), int), y=np.array([0, 1])),
                  "'x' must be a float array.*tokens"),
    "2-D x": (dict(x=np.zeros((2, 3)), y=np.array([0, 1])),
              "'x' must have shape \\(N, T, d_in\\)"),
    "NaN": (dict(x=np.array([[[np.nan]], [[np.inf]]]), y=np.array([0, 1])),
            "'x' contains 2 NaN/Inf"),
    "empty": (dict(x=np.zeros((0, 3, 1)), y=np.zeros(0, int)), "'x' is empty"),
    "float y": (dict(x=np.zeros((2, 3, 1)), y=np.array([0.0, 1.0])), "'y' must hold integer"),
    "y length": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1, 1])),
                 "'y' has shape \\(3,\\), expected \\(2,\\) or \\(2, 3\\)"),
    "y steps": (dict(x=np.zeros((2, 3, 1)), y=np.zeros((2, 4), int)), "'y' has shape \\(2, 4\\)"),
    "negative label": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, -1])), "negative label -1"),
    "single class": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 0])), "pass num_classes"),
    "negative token": (dict(tokens=np.array([[0, -3]]), y=np.array([1])), "negative token id -3"),
    "float tokens": (dict(tokens=np.zeros((1, 2)), y=np.array([1])), "integer token ids"),
    "val T mismatch": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]),
                            x_val=np.zeros((2, 4, 1)), y_val=np.array([0, 1])),
                       "val split has inputs \\(2, 4, 1\\).*incompatible"),
    "val layout mismatch": (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]),
                                 x_val=np.zeros((2, 3, 1)), y_val=np.zeros((2, 3), int)),
                            "target layout"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives(tmp_path, case):
    arrays, pattern = BAD_ARCHIVES[case]
    path = save(tmp_path, **arrays)
    with pytest.raises(DataFormatError, match=pattern) as info:
        sequences.load_npz(path)
    assert str(path) in str(info.value)


def test_label_range_with_num_classes(tmp_path):
    path = save(tmp_path, x=np.zeros((2, 3, 1)), y=np.array([0, 3]))
    assert sequences.load_npz(path, num_classes=10).num_classes == 10
    with pytest.raises(DataFormatError, match="label 3 out of range 0..2"):
        sequences.load_npz(path, num_classes=3)
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        sequences.load_npz(path, num_classes=0)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        sequences.load_npz(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(DataFormatError, match="text.npz: not a readable .npz"):
        sequences.load_npz(text)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DataFormatError, match="single .npy array"):
        sequences.load_npz(npy)
    pickled = save(tmp_path, "obj.npz", x=np.array([None, 1], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataFormatError, match="obj.npz: key 'x' cannot be read"):
        sequences.load_npz(pickled)


def test_load_task_npz_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs the option path"):
        load_task("npz")
    with pytest.raises(ConfigError, match="unknown option.*length"):
        load_task("npz", path=tmp_path / "a.npz", length=3)
