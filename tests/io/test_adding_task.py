"""The adding problem (:mod:`hadamnp.io.adding_task`, :class:`AddingTask`): layout, targets,
the constant baseline, reproducible streams and bad options."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.io import adding_task
from hadamnp.io.datasets import AddingTask, load_task, task_options


@pytest.mark.parametrize("length", [2, 3, 8, 201])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_layout_and_target(length, dtype):
    x, y = adding_task.adding_batch(np.random.default_rng(0), 64, length, dtype)
    assert x.shape == (64, length, 2) and y.shape == (64, 1)
    assert x.dtype == dtype and y.dtype == dtype
    values, markers = x[:, :, 0], x[:, :, 1]
    assert np.all((values >= 0) & (values < 1))
    assert set(np.unique(markers)) <= {0, 1}
    np.testing.assert_array_equal(markers.sum(axis=1), 2)
    half = length // 2
    np.testing.assert_array_equal(markers[:, :half].sum(axis=1), 1)  # one in each half
    np.testing.assert_array_equal(markers[:, half:].sum(axis=1), 1)
    np.testing.assert_array_equal(y[:, 0], np.sum(values * markers, axis=1))


def test_float32_and_float64_see_the_same_numbers():
    x32, y32 = adding_task.adding_batch(np.random.default_rng(2), 5, 9, np.float32)
    x64, y64 = adding_task.adding_batch(np.random.default_rng(2), 5, 9, np.float64)
    np.testing.assert_array_equal(x32, x64)
    np.testing.assert_array_equal(y32, y64.astype(np.float32))


def test_hand_case():
    values = np.array([[0.25, 0.5, 0.125, 0.75]])
    x, y = adding_task.adding_inputs(values, np.array([[1, 3]]), np.float64)
    np.testing.assert_array_equal(x[0, :, 1], [0, 1, 0, 1])
    assert y[0, 0] == 1.25


def test_constant_baseline_is_the_variance_of_the_sum():
    assert adding_task.constant_baseline() == pytest.approx(1 / 6)
    _, y = adding_task.adding_batch(np.random.default_rng(1), 200_000, 10, np.float64)
    assert np.mean((y - 1) ** 2) == pytest.approx(1 / 6, rel=0.01)


def test_task_streams_are_reproducible_and_resumable():
    task = AddingTask(length=12, num_train=50, num_val=7, num_test=9, seed=3)
    assert (task.input_size, task.output_size, task.seq_len, task.many_to_many) == (2, 1, 12,
                                                                                    False)
    assert task.loss == "mse" and task.baseline() == pytest.approx(1 / 6)
    first = list(task.iter_batches(1, 16))
    again = list(AddingTask(length=12, num_train=50, num_val=7, num_test=9,
                            seed=3).iter_batches(1, 16))
    assert [b[0].shape[0] for b in first] == [16, 16, 16, 2]
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    resumed = list(task.iter_batches(1, 16, start_batch=2))
    np.testing.assert_array_equal(resumed[0][0], first[2][0])
    other_epoch = next(task.iter_batches(2, 16))
    assert not np.array_equal(other_epoch[0], first[0][0])
    x_val, y_val = task.split("val", np.float64)
    assert x_val.shape == (7, 12, 2) and y_val.shape == (7, 1)
    batches = list(task.iter_split("val", 4, np.float64))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x_val)
    assert not np.array_equal(task.split("test")[0][:7], task.split("val")[0])
    assert task.describe() == {"task": "adding", "input_kind": "features", "input_size": 2,
                               "output_size": 1, "seq_len": 12, "many_to_many": False,
                               "num_train": 50, "splits": {"val": 7, "test": 9},
                               "length": 12, "num_val": 7, "num_test": 9, "seed": 3}


def test_bad_options_name_the_option():
    with pytest.raises(ConfigError, match="adding_length .*at least 2.* got 1"):
        AddingTask(length=1)
    with pytest.raises(ConfigError, match="adding_length must be an integer"):
        adding_task.check_length(2.5)
    with pytest.raises(ConfigError, match="num_val"):
        AddingTask(length=4, num_val=0)
    with pytest.raises(ConfigError, match="unknown option.*delay.*length, num_train"):
        load_task("adding", delay=3)
    assert set(task_options("adding")) == {"length", "num_train", "num_val", "num_test", "seed"}
    with pytest.raises(ShapeError):
        adding_task.adding_inputs(np.zeros((2, 4)), np.zeros((2, 3), dtype=int))
    with pytest.raises(ConfigError, match="distinct"):
        adding_task.adding_inputs(np.zeros((1, 4)), np.array([[2, 2]]))
    with pytest.raises(TypeError, match="Generator"):
        adding_task.draw_sequences(np.random.RandomState(0), 2, 4)
