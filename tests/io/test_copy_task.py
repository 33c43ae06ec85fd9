"""Copy task: reference layout, baseline, reproducible and resumable batches."""

import math

import numpy as np
import pytest

from hadamnp.errors import ConfigError, SizeError
from hadamnp.io import copy_task
from hadamnp.io.datasets import CopyTask, derived_rng, load_task, task_options


@pytest.mark.parametrize("length", [21, 22, 64, 1000])
def test_layout_matches_reference(length):
    x, y = copy_task.copy_batch(np.random.default_rng(3), 5, length)
    assert x.shape == (5, length, 10) and x.dtype == np.float32
    assert y.shape == (5, length) and y.dtype == np.int64
    # One-hot: exactly one 1 per position, everything else 0.
    assert np.array_equal(x.sum(axis=-1), np.ones((5, length), np.float32))
    assert set(np.unique(x)) == {0.0, 1.0}
    tokens = x.argmax(axis=-1)
    symbols = tokens[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert np.all(tokens[:, 10:length - 10] == 0), "blanks between symbols and marker"
    assert np.all(tokens[:, length - 10] == 9), "marker at L-10"
    assert np.all(tokens[:, length - 9:] == 0), "nine trailing blanks"
    assert np.count_nonzero(tokens == 0) == 5 * (length - 11)
    assert np.all(y[:, :length - 10] == 0), "L-10 blank targets"
    assert np.array_equal(y[:, length - 10:], symbols), "then the ten symbols"
    assert y.max() < copy_task.NUM_CLASSES


def test_reference_positions_for_length_1000():
    symbols = np.arange(10).reshape(1, 10) % 8 + 1
    tokens, targets = copy_task.copy_tokens(symbols, 1000)
    assert np.array_equal(tokens[0, :10], symbols[0])
    assert np.count_nonzero(tokens[0, 10:990]) == 0 and tokens[0, 10:990].size == 980
    assert tokens[0, 990] == 9
    assert np.count_nonzero(tokens[0, 991:]) == 0 and tokens[0, 991:].size == 9
    assert np.count_nonzero(targets[0, :990]) == 0
    assert np.array_equal(targets[0, 990:], symbols[0])


def test_symbols_are_uniform_over_1_to_8():
    symbols = copy_task.draw_symbols(np.random.default_rng(0), 4000)
    counts = np.bincount(symbols.ravel(), minlength=9)
    assert counts[0] == 0 and counts[9:].sum() == 0
    expected = symbols.size / 8
    # 40000 draws: each count within 5 standard deviations of 5000.
    assert np.all(np.abs(counts[1:] - expected) < 5 * math.sqrt(expected * 7 / 8)), counts


def test_dtype_argument():
    x, _ = copy_task.copy_batch(np.random.default_rng(0), 2, 30, dtype=np.float64)
    assert x.dtype == np.float64
    with pytest.raises(ConfigError, match="dtype"):
        copy_task.copy_batch(np.random.default_rng(0), 2, 30, dtype=np.int32)


def test_baseline():
    assert copy_task.memoryless_baseline(1000) == pytest.approx(0.0208, abs=5e-5)
    assert copy_task.memoryless_baseline(1000) == 10 * math.log(8) / 1000
    assert CopyTask(length=200, num_val=1, num_test=1).baseline() == 10 * math.log(8) / 200


@pytest.mark.parametrize("length", [20, 0, -5])
def test_short_length_rejected(length):
    with pytest.raises(SizeError, match="at least 21"):
        copy_task.copy_batch(np.random.default_rng(0), 1, length)
    with pytest.raises(SizeError, match="total sequence length"):
        CopyTask(length=length)


def test_bad_arguments():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        copy_task.copy_batch(np.random.RandomState(0), 1, 30)
    with pytest.raises(ConfigError, match="batch_size"):
        copy_task.copy_batch(np.random.default_rng(0), 0, 30)
    with pytest.raises(ConfigError, match="symbols must lie"):
        copy_task.copy_tokens(np.zeros((1, 10), np.int64), 30)


def test_same_seed_same_batches_other_seed_differs():
    a = CopyTask(length=40, num_train=50, seed=5)
    b = CopyTask(length=40, num_train=50, seed=5)
    c = CopyTask(length=40, num_train=50, seed=6)
    for (xa, ya), (xb, yb), (_, yc) in zip(a.iter_batches(2, 16), b.iter_batches(2, 16),
                                           c.iter_batches(2, 16)):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        assert not np.array_equal(ya, yc)
    first = [y for _, y in a.iter_batches(0, 16)]
    second = [y for _, y in a.iter_batches(1, 16)]
    assert not any(np.array_equal(f, s) for f, s in zip(first, second)), "epochs differ"


def test_resume_equals_uninterrupted_run():
    task = CopyTask(length=30, num_train=100, seed=11)
    full = list(task.iter_batches(3, 16))
    assert len(full) == task.num_batches(16) == 7
    assert [y.shape[0] for _, y in full] == [16] * 6 + [4], "last batch is partial"
    for start in (0, 1, 5, 6, 7):
        resumed = list(task.iter_batches(3, 16, start_batch=start))
        assert len(resumed) == 7 - start
        for (xr, yr), (xf, yf) in zip(resumed, full[start:]):
            assert np.array_equal(xr, xf) and np.array_equal(yr, yf)
    with pytest.raises(ConfigError, match="past the end"):
        task.iter_batches(3, 16, start_batch=8)


def test_batch_stream_is_the_documented_spawn_path():
    seed, epoch, batch = 712, 2, 4
    spawned = np.random.SeedSequence(seed).spawn(1)[0].spawn(epoch + 1)[epoch]
    spawned = spawned.spawn(batch + 1)[batch]
    task = CopyTask(length=25, num_train=100, seed=seed)
    _, y = next(task.iter_batches(epoch, 8, start_batch=batch))
    _, expected = copy_task.copy_batch(np.random.default_rng(spawned), 8, 25)
    assert np.array_equal(y, expected)
    assert np.array_equal(derived_rng(seed, 0, epoch, batch).integers(0, 2**62, 4),
                          np.random.default_rng(spawned).integers(0, 2**62, 4))


def test_validation_and_test_sets_fixed_and_distinct():
    task = CopyTask(length=30, num_train=200, num_val=40, num_test=30, seed=9)
    again = CopyTask(length=30, num_val=40, num_test=30, seed=9)
    vx, vy = task.split("val")
    tx, ty = task.split("test")
    assert vx.shape == (40, 30, 10) and ty.shape == (30, 30)
    assert np.array_equal(vy, again.split("val")[1])
    assert not np.array_equal(vy[:30], ty)
    # Evaluation sets do not depend on how much training data was drawn before.
    list(task.iter_batches(0, 64))
    assert np.array_equal(task.split("val")[1], vy)
    parts = list(task.iter_split("val", 16))
    assert [p[0].shape[0] for p in parts] == [16, 16, 8]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), vx)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), vy)


def test_load_task_copy_and_errors():
    task = load_task("copy", length=50, num_train=10, num_val=3, num_test=3, seed=1)
    assert (task.input_size, task.output_size, task.seq_len) == (10, 9, 50)
    assert task.many_to_many and task.num_train == 10
    assert task.describe()["length"] == 50
    assert set(task_options("copy")) == {"length", "num_train", "num_val", "num_test", "seed"}
    with pytest.raises(ConfigError, match="unknown option.*delay"):
        load_task("copy", delay=100)
    with pytest.raises(ConfigError, match="unknown task 'parity'"):
        load_task("parity")
    with pytest.raises(ConfigError, match="split must be"):
        task.split("train")
    with pytest.raises(ConfigError, match="seed"):
        load_task("copy", seed=-1)
