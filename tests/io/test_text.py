"""The byte-level text task (:mod:`hadamnp.io.text`, :class:`TextTask`) on generated text:
positional splits, windows and next-byte targets, the digest, bits per character,
reproducible epochs and bad files."""

import hashlib
import math

import numpy as np
import pytest

from hadamnp.errors import ConfigError, DataFormatError
from hadamnp.io import text
from hadamnp.io.datasets import TextTask, load_task


def generated_text(size, seed=0):
    """Bytes of a made-up language: words from a small vocabulary, spaces, newlines and a
    few non-ASCII bytes (UTF-8 'é') and a NUL, so every code path meets unusual bytes."""
    rng = np.random.default_rng(seed)
    words = [b"hadamard", b"sign", b"orthogonal", b"caf\xc3\xa9", b"rnn", b"\x00", b"bit"]
    out = bytearray()
    while len(out) < size:
        out += words[rng.integers(len(words))] + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(generated_text(2000))
    return path


def test_splits_windows_and_targets(text_file):
    raw = text_file.read_bytes()
    task = TextTask(text_file, window=16, seed=1)
    n_val = n_test = int(math.floor(0.05 * 2000))
    n_train = 2000 - n_val - n_test
    assert (n_train, n_val, n_test) == text.split_sizes(2000)
    assert (task.input_kind, task.input_size, task.output_size) == ("tokens", 256, 256)
    assert task.many_to_many and task.seq_len == 16 and task.padding_id is None
    assert task.num_train == math.ceil((n_train - 16) / 16)
    assert task.split_size("val") == math.ceil((n_val - 16) / 16)
    x, y = task.split("test")
    assert x.dtype == y.dtype == np.int64 and x.shape == y.shape == (task.split_size("test"), 16)
    test_bytes = np.frombuffer(raw[n_train + n_val:], dtype=np.uint8)
    for k in range(x.shape[0]):  # window k: bytes 16k .. 16k+15, targets shifted by one
        np.testing.assert_array_equal(x[k], test_bytes[16 * k:16 * k + 16])
        np.testing.assert_array_equal(y[k], test_bytes[16 * k + 1:16 * k + 17])
    # training windows never read past the training bytes
    train_bytes = np.frombuffer(raw[:n_train], dtype=np.uint8)
    every = np.concatenate([np.concatenate(b) for b in task.iter_batches(0, 7)])
    assert every.max() <= 255 and task.num_batches(7) == math.ceil(task.num_train / 7)
    starts = sorted(int(s) for s in text.window_starts(n_train, 16))
    first_x, first_y = next(task.iter_batches(0, task.num_train))
    windows = {bytes(row.astype(np.uint8)) for row in first_x}
    assert windows == {train_bytes[s:s + 16].tobytes() for s in starts}
    assert np.all(first_y[:, :-1] == first_x[:, 1:])


def test_epochs_are_reproducible_and_resumable(text_file):
    task = TextTask(text_file, window=8, seed=4)
    first = list(task.iter_batches(2, 10))
    again = list(TextTask(text_file, window=8, seed=4).iter_batches(2, 10))
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    resumed = list(task.iter_batches(2, 10, start_batch=3))
    np.testing.assert_array_equal(resumed[0][0], first[3][0])
    other = next(TextTask(text_file, window=8, seed=5).iter_batches(2, 10))[0]
    assert not np.array_equal(other, first[0][0])


def test_description_records_the_digest(text_file, tmp_path):
    task = TextTask(text_file, window=16)
    record = task.describe()
    assert record["sha256"] == hashlib.sha256(text_file.read_bytes()).hexdigest()
    assert (record["bytes"], record["window"], record["path"]) == (2000, 16, str(text_file))
    changed = tmp_path / "changed.txt"
    changed.write_bytes(b"X" + text_file.read_bytes()[1:])
    assert TextTask(changed, window=16).describe()["sha256"] != record["sha256"]


def test_bits_per_character(text_file):
    task = TextTask(text_file, window=16)
    assert task.figures(math.log(2)) == {"bpc": pytest.approx(1.0)}
    assert task.figures(math.log(256))["bpc"] == pytest.approx(8.0)
    assert task.baseline() is None and task.loss == "cross_entropy"


def test_bad_files_and_options_name_the_problem(tmp_path, text_file):
    with pytest.raises(ConfigError, match="text: the text file .*missing.txt does not exist"):
        TextTask(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="is a directory"):
        TextTask(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty"):
        TextTask(empty)
    # 2000 bytes: the val and test splits hold 100 bytes, one window needs W + 1
    with pytest.raises(DataFormatError, match="text_window=100 .*val split has 100 bytes"):
        TextTask(text_file, window=100)
    assert TextTask(text_file, window=99).split_size("val") == 1
    with pytest.raises(ConfigError, match="text_window must be an integer >= 1"):
        TextTask(text_file, window=0)
    with pytest.raises(ConfigError, match="val_fraction"):
        TextTask(text_file, val_fraction=0.6)
    with pytest.raises(ConfigError, match="task 'text' needs the option path"):
        load_task("text")
    with pytest.raises(ConfigError, match="unknown option.*length"):
        load_task("text", path=text_file, length=3)
