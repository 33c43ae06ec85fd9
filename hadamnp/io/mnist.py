"""MNIST: IDX file parsing, the sequential / permuted layouts and the fixed splits.

IDX format (LeCun): a big-endian header ``0x00 0x00 <type code> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data in C order, big-endian. MNIST images have magic
``0x00000803`` (unsigned byte, 3 dimensions: N, 28, 28) and labels ``0x00000801``
(unsigned byte, 1 dimension: N). Files may be gzip-compressed (detected from the gzip
magic bytes, not from the file name).

Data directory resolution (first that applies):

1. the ``data_dir`` argument;
2. the environment variable ``HADAMNP_DATA``;
3. ``<repo root>/data``, i.e. ``Path(hadamnp.__file__).parent.parent / "data"``, when it
   holds the MNIST files (a source checkout: the repository ships them there);
4. ``<prefix>/share/hadamnp/data``, where ``pip install`` puts the same files (the
   ``data_files`` of ``setup.cfg``), found through the installation record of the
   ``hadamnp`` distribution, so an installed hadamnp finds them from any directory;
5. ``./data``.

Inside it, each file is looked up as ``NAME.gz`` then ``NAME``, first in the directory
itself and then in its ``mnist/`` subdirectory.

Task conventions (``docs/hadamrnn.md``, tasks):

- pixels are scaled to [0, 1] as ``float(value) / 255`` (torchvision ``ToTensor``, no
  mean/std normalisation), one pixel per step in row-major order: ``x`` ``(B, 784, 1)``;
- permuted MNIST reorders the steps with ``np.random.RandomState(92916).permutation(784)``
  (the reference code's permutation; ``RandomState`` is used only to reproduce it):
  step ``t`` shows pixel ``perm[t]``;
- the 60k training images are split 50k train / 10k validation with
  ``np.random.default_rng(5544).permutation(60000)``: the first 50k indices are training,
  the last 10k validation (each sorted). The reference uses torch ``random_split`` with
  seed 5544, which draws a different split; that one cannot be reproduced without torch.
  The official 10k test set is the test split.
"""

import dataclasses
import gzip
import os
import zlib
from importlib import metadata
from pathlib import Path

import numpy as np

import hadamnp
from hadamnp._checks import float_dtype
from hadamnp.errors import ConfigError, DataFormatError, ShapeError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
ROWS = COLS = 28
NUM_PIXELS = ROWS * COLS
NUM_CLASSES = 10
PERMUTATION_SEED = 92916
SPLIT_SEED = 5544
NUM_VAL = 10000
ENV_VAR = "HADAMNP_DATA"

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type code -> big-endian NumPy dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def resolve_data_dir(data_dir=None):
    """The data directory, by the precedence in the module docstring.

    Parameters
    ----------
    data_dir : str or Path or None

    Returns
    -------
    Path
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    checkout = Path(hadamnp.__file__).resolve().parent.parent / "data"
    for folder in (checkout, installed_data_dir()):
        if folder is not None and _holds_mnist(folder):
            return folder
    return Path("data")


def _holds_mnist(folder):
    name = FILES["train_images"]
    return any((place / (name + suffix)).is_file() for place in (folder, folder / "mnist")
               for suffix in (".gz", ""))


def installed_data_dir():
    """The ``share/hadamnp/data`` directory of the installed ``hadamnp`` distribution.

    Returns
    -------
    Path or None
        The directory holding the installed copy of ``train-images-idx3-ubyte.gz`` (as
        listed in the distribution's installation record), or None when hadamnp is not
        installed or was installed without the data files.
    """
    try:
        files = metadata.files("hadamnp") or ()
    except metadata.PackageNotFoundError:
        return None
    wanted = FILES["train_images"] + ".gz"
    for file in files:
        if file.name == wanted and file.parts[-4:-1] == ("share", "hadamnp", "data"):
            return Path(file.locate()).resolve().parent
    return None


def _read_bytes(path):
    """Whole file contents, gunzipped when the file starts with the gzip magic."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path, expected_magic=None):
    """Parse an IDX file (raw or gzip).

    Parameters
    ----------
    path : str or Path
    expected_magic : int or None
        When given, the file's magic number must equal it (e.g. :data:`IMAGES_MAGIC`).

    Returns
    -------
    ndarray
        Shape from the header, native-endian dtype from the type code (uint8 for MNIST),
        writable, owning its data.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        Wrong magic number, unknown type code, truncated file or trailing bytes; the
        message names the file.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(
            f"{path}: {len(data)} bytes, too short for an IDX header (4 bytes of magic)"
        )
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise DataFormatError(f"{path}: 0x{magic:08x} is not a valid IDX magic number")
    dtype = _IDX_TYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
            f"file has {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    # Python integers: a corrupt header cannot overflow the size computation.
    expected = header + dtype.itemsize * int(np.prod(dims, dtype=object))
    if len(data) < expected:
        raise DataFormatError(
            f"{path}: truncated: header announces shape {dims} ({expected} bytes in all), "
            f"file has {len(data)} bytes"
        )
    if len(data) > expected:
        raise DataFormatError(
            f"{path}: {len(data) - expected} trailing bytes after the {expected} bytes "
            f"announced by the header (shape {dims})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_images(path):
    """Read an MNIST image file.

    Returns
    -------
    ndarray, shape (N, 28, 28), uint8
    """
    images = read_idx(path, IMAGES_MAGIC)
    if images.shape[1:] != (ROWS, COLS):
        raise DataFormatError(
            f"{path}: images have shape {images.shape}, expected (N, {ROWS}, {COLS})"
        )
    return images


def read_labels(path):
    """Read an MNIST label file.

    Returns
    -------
    ndarray, shape (N,), int64, values in 0..9
    """
    labels = read_idx(path, LABELS_MAGIC)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataFormatError(
            f"{path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}"
        )
    return labels.astype(np.int64)


def find_file(data_dir, key):
    """Path of one MNIST file (``key`` in :data:`FILES`) in the data directory.

    Raises
    ------
    FileNotFoundError
        Naming every path tried and how to point hadamnp at the files.
    """
    data_dir = resolve_data_dir(data_dir)
    name = FILES[key]
    candidates = [
        folder / (name + suffix)
        for folder in (data_dir, data_dir / "mnist")
        for suffix in (".gz", "")
    ]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"MNIST file {name}[.gz] not found (tried {tried}); pass the directory holding "
        f"the IDX files as data_dir (CLI: --data-dir) or set {ENV_VAR}"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class MnistArrays:
    """The four MNIST arrays as stored on disk (no scaling, no split).

    Attributes
    ----------
    train_images : ndarray, shape (N_train, 28, 28), uint8
    train_labels : ndarray, shape (N_train,), int64
    test_images : ndarray, shape (N_test, 28, 28), uint8
    test_labels : ndarray, shape (N_test,), int64
    files : dict
        The file each array was read from, under the same keys.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: dict = dataclasses.field(default_factory=dict)


def load_mnist(data_dir=None):
    """Read the four MNIST IDX files.

    Parameters
    ----------
    data_dir : str or Path or None
        See the module docstring for how ``None`` is resolved.

    Returns
    -------
    MnistArrays
    """
    paths = {key: find_file(data_dir, key) for key in FILES}
    arrays = {}
    for part in ("train", "test"):
        images = read_images(paths[f"{part}_images"])
        labels = read_labels(paths[f"{part}_labels"])
        if labels.shape[0] != images.shape[0]:
            raise DataFormatError(
                f"{paths[f'{part}_labels']} holds {labels.shape[0]} labels but "
                f"{paths[f'{part}_images']} holds {images.shape[0]} images"
            )
        arrays[f"{part}_images"] = images
        arrays[f"{part}_labels"] = labels
    return MnistArrays(**arrays, files=paths)


def pmnist_permutation():
    """The fixed pixel order of permuted MNIST.

    Returns
    -------
    ndarray, shape (784,), int64
        ``np.random.RandomState(92916).permutation(784)``: step ``t`` shows pixel
        ``perm[t]`` (row-major pixel index).
    """
    # RandomState only reproduces the reference code's permutation; it is not global state.
    return np.random.RandomState(PERMUTATION_SEED).permutation(NUM_PIXELS).astype(np.int64)


def split_indices(num_images, num_val=NUM_VAL, seed=SPLIT_SEED):
    """Train/validation split of the official training set.

    Parameters
    ----------
    num_images : int
        Size of the official training set (60000 for MNIST).
    num_val : int
        Validation size, ``1 <= num_val < num_images``.
    seed : int

    Returns
    -------
    train : ndarray, shape (num_images - num_val,), int64, sorted
        ``np.random.default_rng(seed).permutation(num_images)[:num_images - num_val]``.
    val : ndarray, shape (num_val,), int64, sorted
        The remaining indices.
    """
    if not 1 <= num_val < num_images:
        raise ConfigError(
            f"num_val must be between 1 and {num_images - 1} (training set of "
            f"{num_images} images), got {num_val}"
        )
    order = np.random.default_rng(seed).permutation(num_images)
    cut = num_images - num_val
    return np.sort(order[:cut]), np.sort(order[cut:])


def pixels_to_steps(images, permutation=None, dtype=np.float32):
    """Turn uint8 images into pixel sequences scaled to [0, 1].

    Parameters
    ----------
    images : ndarray, shape (B, 28, 28) or (B, 784), uint8
    permutation : ndarray, shape (784,), int, or None
        Step ``t`` shows pixel ``permutation[t]``; ``None`` keeps row-major order.
    dtype : float32 or float64

    Returns
    -------
    ndarray, shape (B, 784, 1), ``dtype``
        ``float(pixel) / 255`` computed in ``dtype`` (as ``ToTensor`` in float32).
    """
    dtype = float_dtype(dtype)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got dtype {images.dtype}")
    if images.ndim not in (2, 3) or int(np.prod(images.shape[1:])) != NUM_PIXELS:
        raise ShapeError(f"images must have shape (B, 28, 28) or (B, 784), got {images.shape}")
    flat = images.reshape(images.shape[0], NUM_PIXELS)
    if permutation is not None:
        permutation = np.asarray(permutation)
        if permutation.shape != (NUM_PIXELS,):
            raise ShapeError(f"permutation must have shape (784,), got {permutation.shape}")
        flat = flat[:, permutation]
    return (flat.astype(dtype) / dtype.type(255))[:, :, None]
