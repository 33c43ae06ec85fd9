"""MNIST: IDX parsing (synthetic files), fixed permutation and split, tasks, real files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hadamnp.errors import ConfigError, DataFormatError
from hadamnp.io import mnist
from hadamnp.io.datasets import MnistTask, load_task


def idx_bytes(array, magic=None):
    """Encode a uint8 array as IDX (big-endian header)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.tobytes()


def write(path, payload, compress=False):
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def fake_images(n, offset=0):
    """Images whose pixel 0 encodes their index, so rows can be traced through splits."""
    rng = np.random.default_rng(n + offset)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(offset, offset + n)
    return images


def fake_dir(tmp_path, n_train=30, n_test=7, compress=True):
    """A directory holding the four MNIST files, small."""
    arrays = {
        "train_images": fake_images(n_train),
        "train_labels": np.arange(n_train) % 10,
        "test_images": fake_images(n_test, offset=100),
        "test_labels": (np.arange(n_test) * 3) % 10,
    }
    for key, array in arrays.items():
        name = mnist.FILES[key] + (".gz" if compress else "")
        write(tmp_path / name, idx_bytes(array), compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_read_good_files(tmp_path, compress):
    images = fake_images(5)
    labels = np.array([0, 9, 3, 3, 1])
    ipath = write(tmp_path / "i", idx_bytes(images), compress)
    lpath = write(tmp_path / "l", idx_bytes(labels), compress)
    got = mnist.read_images(ipath)
    assert got.dtype == np.uint8 and got.flags.writeable
    assert np.array_equal(got, images)
    got_labels = mnist.read_labels(lpath)
    assert got_labels.dtype == np.int64 and np.array_equal(got_labels, labels)


def test_read_idx_other_types_big_endian(tmp_path):
    values = np.array([[1, -2, 300], [70000, 5, -6]], dtype=">i4")
    payload = struct.pack(">I", 0x00000C02) + struct.pack(">2I", 2, 3) + values.tobytes()
    got = mnist.read_idx(write(tmp_path / "a", payload))
    assert got.dtype == np.int32 and np.array_equal(got, values)


def test_wrong_magic(tmp_path):
    path = write(tmp_path / "labels-as-images", idx_bytes(np.zeros(4)))
    with pytest.raises(DataFormatError, match="labels-as-images.*wrong magic number "
                       "0x00000801, expected 0x00000803"):
        mnist.read_images(path)
    little = write(tmp_path / "little", struct.pack("<I", 0x803) + b"\0" * 12)
    with pytest.raises(DataFormatError, match="not a valid IDX magic"):
        mnist.read_idx(little)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_and_trailing(tmp_path, compress):
    payload = idx_bytes(fake_images(3))
    short = write(tmp_path / "short", payload[:-1], compress)
    with pytest.raises(DataFormatError, match="short.*truncated.*shape \\(3, 28, 28\\)"):
        mnist.read_images(short)
    header = write(tmp_path / "header", payload[:9], compress)
    with pytest.raises(DataFormatError, match="truncated header"):
        mnist.read_images(header)
    tiny = write(tmp_path / "tiny", payload[:2], compress)
    with pytest.raises(DataFormatError, match="too short"):
        mnist.read_images(tiny)
    long = write(tmp_path / "long", payload + b"\0\0", compress)
    with pytest.raises(DataFormatError, match="2 trailing bytes"):
        mnist.read_images(long)


def test_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(fake_images(3)))
    path = write(tmp_path / "cut.gz", packed[: len(packed) // 2])
    with pytest.raises(DataFormatError, match="cut.gz.*gzip"):
        mnist.read_images(path)


def test_wrong_dims(tmp_path):
    path = write(tmp_path / "small", idx_bytes(np.zeros((2, 27, 28))))
    with pytest.raises(DataFormatError, match="small.*shape \\(2, 27, 28\\).*\\(N, 28, 28\\)"):
        mnist.read_images(path)
    # A 2-D array under the 3-D magic: the first pixels are read as a third size.
    flat = write(tmp_path / "flat", idx_bytes(np.zeros((2, 784)), magic=0x803))
    with pytest.raises(DataFormatError, match="trailing bytes.*shape \\(2, 784, 0\\)"):
        mnist.read_images(flat)


def test_label_checks(tmp_path):
    path = write(tmp_path / "lab", idx_bytes(np.array([1, 10])))
    with pytest.raises(DataFormatError, match="lab.*label 10 out of range"):
        mnist.read_labels(path)
    fake_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(29)), compress=True)
    with pytest.raises(DataFormatError, match="29 labels but .* 30 images"):
        mnist.load_mnist(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images|train-images") as info:
        mnist.load_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "data_dir" in message and "HADAMNP_DATA" in message
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mnist.read_idx(tmp_path / "nowhere")


def test_raw_files_and_mnist_subdirectory(tmp_path):
    sub = tmp_path / "mnist"
    sub.mkdir()
    arrays = fake_dir(sub, compress=False)
    loaded = mnist.load_mnist(tmp_path)
    for key, array in arrays.items():
        assert np.array_equal(getattr(loaded, key), array), key


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "env"))
    assert mnist.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(mnist.ENV_VAR)
    shipped = mnist.resolve_data_dir()
    assert shipped.name == "data" and (shipped.parent / "hadamnp").is_dir()


def test_permutation_is_fixed_permutation():
    perm = mnist.pmnist_permutation()
    assert perm.shape == (784,) and perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(784))
    assert np.array_equal(perm, mnist.pmnist_permutation())
    # First entries of np.random.RandomState(92916).permutation(784), the reference's.
    assert perm[:10].tolist() == [319, 576, 323, 107, 355, 716, 197, 20, 625, 60]


def test_split_indices():
    train, val = mnist.split_indices(60000)
    assert train.shape == (50000,) and val.shape == (10000,)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    order = np.random.default_rng(5544).permutation(60000)
    assert np.array_equal(val, np.sort(order[50000:]))
    with pytest.raises(ConfigError, match="num_val"):
        mnist.split_indices(100, num_val=100)


def test_pixel_scaling_matches_float32_division():
    values = np.arange(256, dtype=np.uint8).reshape(1, 256).repeat(784 // 256 + 1, 0)
    images = values.ravel()[:784].reshape(1, 28, 28)
    for dtype in (np.float32, np.float64):
        steps = mnist.pixels_to_steps(images, dtype=dtype)
        assert steps.shape == (1, 784, 1) and steps.dtype == dtype
        expected = images.reshape(784).astype(dtype) / dtype(255)
        assert np.array_equal(steps[0, :, 0], expected)
    assert steps.min() == 0.0 and steps.max() == 1.0


@pytest.mark.parametrize("permuted", [False, True])
def test_task_on_synthetic_files(tmp_path, permuted):
    arrays = fake_dir(tmp_path)
    task = MnistTask(permuted, data_dir=tmp_path, num_val=10, seed=3)
    assert task.name == ("pmnist" if permuted else "smnist")
    assert (task.input_size, task.output_size, task.seq_len) == (1, 10, 784)
    assert not task.many_to_many and task.num_train == 20
    perm = mnist.pmnist_permutation() if permuted else np.arange(784)
    tx, ty = task.split("test")
    expected = arrays["test_images"].reshape(7, 784)[:, perm].astype(np.float32) / 255
    assert np.array_equal(tx[:, :, 0], expected)
    assert np.array_equal(ty, arrays["test_labels"])
    # Every training image lands in exactly one of train / val; labels travel along.
    train_idx, val_idx = mnist.split_indices(30, num_val=10)
    vx, vy = task.split("val")
    assert np.array_equal(vy, arrays["train_labels"][val_idx])
    batches = list(task.iter_batches(1, 6))
    seen = np.concatenate([x[:, :, 0] for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    ids = np.rint(seen[:, np.argsort(perm)][:, 0] * 255).astype(int)
    assert np.array_equal(np.sort(ids), train_idx)
    assert np.array_equal(labels, arrays["train_labels"][ids])
    resumed = list(task.iter_batches(1, 6, start_batch=2))
    for (xr, yr), (xf, yf) in zip(resumed, batches[2:], strict=True):
        assert np.array_equal(xr, xf) and np.array_equal(yr, yf)
    other_epoch = np.concatenate([y for _, y in task.iter_batches(2, 6)])
    assert not np.array_equal(other_epoch, labels)


def test_load_task_mnist_options(tmp_path):
    fake_dir(tmp_path)
    task = load_task("smnist", data_dir=tmp_path, num_val=5)
    assert task.seed == 68 and task.num_train == 25
    assert load_task("pmnist", data_dir=tmp_path, num_val=5).seed == 8
    with pytest.raises(ConfigError, match="unknown option.*permuted"):
        load_task("smnist", permuted=True)


def test_real_mnist_files():
    arrays = mnist.load_mnist()
    assert arrays.train_images.shape == (60000, 28, 28)
    assert arrays.test_images.shape == (10000, 28, 28)
    assert arrays.train_labels.shape == (60000,) and arrays.test_labels.shape == (10000,)
    for images in (arrays.train_images, arrays.test_images):
        assert images.dtype == np.uint8 and images.min() == 0 and images.max() == 255
    for labels in (arrays.train_labels, arrays.test_labels):
        assert np.array_equal(np.unique(labels), np.arange(10))
    # Well-known facts of the official files: first training label 5, first test label 7.
    assert arrays.train_labels[0] == 5 and arrays.test_labels[0] == 7


class _RecordedFile:
    """An entry of an installation record (``importlib.metadata.PackagePath``-like)."""

    def __init__(self, root, relative):
        self.root, self.relative = root, Path(relative)
        self.name, self.parts = self.relative.name, self.relative.parts

    def locate(self):
        return self.root / self.relative


def test_installed_data_is_found_outside_a_checkout(tmp_path, monkeypatch):
    # A wheel install records the data files relative to site-packages.
    site = tmp_path / "lib" / "site-packages"
    share = tmp_path / "share" / "hadamnp" / "data"
    site.mkdir(parents=True)
    share.mkdir(parents=True)
    arrays = fake_dir(share)
    record = [_RecordedFile(site, "hadamnp/__init__.py")]
    record += [_RecordedFile(site, f"../../share/hadamnp/data/{name}.gz")
               for name in mnist.FILES.values()]
    monkeypatch.setattr(mnist.metadata, "files", lambda name: record)
    assert mnist.installed_data_dir() == share.resolve()
    # The checkout's data/ comes first; without it the installed copy is used.
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist.hadamnp, "__file__", str(site / "hadamnp" / "__init__.py"))
    assert mnist.resolve_data_dir() == share.resolve()
    loaded = mnist.load_mnist()
    assert np.array_equal(loaded.test_labels, arrays["test_labels"])


def test_no_installed_data(monkeypatch):
    def missing(name):
        raise mnist.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist.metadata, "files", missing)
    assert mnist.installed_data_dir() is None
    monkeypatch.setattr(mnist.metadata, "files", lambda name: None)
    assert mnist.installed_data_dir() is None
