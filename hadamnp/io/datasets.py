"""One small interface over every task, as the training loop sees it.

A task (:class:`TaskData`) states its sizes and yields batch-first batches:

- ``x``: ``(B, T, d_in)`` float32 (or ``dtype``), or ``(B, T)`` int64 token ids when
  ``input_kind == "tokens"`` (id ``padding_id`` is padding, if the task has one);
- ``y``: ``(B,)`` int64 (many-to-one) or ``(B, T)`` int64 (many-to-many) class labels, or
  ``(B, output_size)`` float (``dtype``) values for a regression task (``loss = "mse"``).

A task states its default loss (``loss``: ``"cross_entropy"`` or ``"mse"``, see
:mod:`hadamnp.models.losses`), the loss of the constant predictor it is judged against
(:meth:`TaskData.baseline`, or None) and the figures derived from the mean loss
(:meth:`TaskData.figures`, e.g. bits per character).

An epoch has ``ceil(num_train / batch_size)`` batches; the last one is smaller when
``batch_size`` does not divide ``num_train``.

Reproducibility. Every random stream is derived from the task ``seed`` alone, with
``numpy.random.SeedSequence(seed, spawn_key=key)`` — the same sequence as
``SeedSequence(seed).spawn(...)`` followed down the ``key`` path, e.g.
``SeedSequence(seed, spawn_key=(0, e, i)) == SeedSequence(seed).spawn(1)[0]
.spawn(e + 1)[e].spawn(i + 1)[i]`` — but built directly, so no stream depends on how many
others were drawn before it:

==================  ==============================================================
key                 stream
==================  ==============================================================
``(0, e)``          shuffle order of epoch ``e`` (array tasks): ``rng.permutation(N)``
``(0, e, i)``       batch ``i`` of epoch ``e`` (copy and adding tasks, generated on the fly)
``(1,)``            copy/adding-task validation set
``(2,)``            copy/adding-task test set
==================  ==============================================================

Hence ``iter_batches(e, B, start_batch=i)`` yields exactly the batches ``i, i+1, ...`` of
an uninterrupted ``iter_batches(e, B)``, at the cost of one permutation (array tasks) or
nothing (copy and adding tasks): resuming a run at (epoch, batch) is exact. The text task
shuffles its windows like an array task.

:func:`load_task` builds a task by name: ``copy``, ``smnist``, ``pmnist``, ``npz``,
``adding``, ``text``.
"""

import abc
import inspect
import math
from pathlib import Path

import numpy as np

from hadamnp._checks import check_int, float_dtype
from hadamnp.errors import ConfigError
from hadamnp.io import adding_task, copy_task, mnist, sequences, text

TRAIN_STREAM = 0
VAL_STREAM = 1
TEST_STREAM = 2

# The seeds of the paper's configs (docs/hadamrnn.md, training recipe), used as default data seeds.
COPY_SEED = 712
PMNIST_SEED = 8
SMNIST_SEED = 68
COPY_NUM_TRAIN = 512_000
COPY_NUM_EVAL = 2_000
ADDING_NUM_TRAIN = 100_000
ADDING_NUM_VAL = 1_000
ADDING_NUM_TEST = 10_000


def derived_rng(seed, *key):
    """``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))``.

    Parameters
    ----------
    seed : int
        Non-negative task seed.
    *key : int
        Path of the stream in the spawn tree (see the module docstring).

    Returns
    -------
    numpy.random.Generator
    """
    seed = check_int(seed, "seed", 0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class TaskData(abc.ABC):
    """Sizes and batches of one task. Attributes are read-only by convention.

    Attributes
    ----------
    name : str
        ``"copy"``, ``"smnist"``, ``"pmnist"``, ``"npz"``, ``"adding"`` or ``"text"``.
    input_kind : {"features", "tokens"}
    input_size : int
        ``d_in`` (features) or vocabulary size (tokens).
    output_size : int
        Number of classes (or of regression values per scored step).
    loss : str
        The task's default loss (``"cross_entropy"``; ``"mse"`` for regression).
    padding_id : int or None
        Token id that stands for "no input" (fed as a zero vector); None when every id is
        a real token (text bytes).
    seq_len : int
        ``T``.
    many_to_many : bool
        True when ``y`` is ``(B, T)``.
    num_train : int
        Training sequences per epoch.
    seed : int
        Root of every random stream of the task.
    """

    name: str
    input_kind: str
    input_size: int
    output_size: int
    seq_len: int
    many_to_many: bool
    num_train: int
    seed: int
    loss = "cross_entropy"
    padding_id = 0

    def baseline(self):
        """Loss of the task's constant (memoryless) predictor, or None when it has none."""
        return None

    def figures(self, loss):
        """Figures derived from a mean loss, e.g. ``{"bpc": ...}`` (none by default)."""
        return {}

    def num_batches(self, batch_size):
        """Batches per epoch: ``ceil(num_train / batch_size)``."""
        batch_size = check_int(batch_size, "batch_size", 1)
        return math.ceil(self.num_train / batch_size)

    def iter_batches(self, epoch, batch_size, start_batch=0, dtype=np.float32):
        """Training batches of one epoch, from batch ``start_batch`` on.

        Parameters
        ----------
        epoch : int
            ``>= 0``; the epoch's order depends only on ``(seed, epoch)``.
        batch_size : int
            ``B >= 1``.
        start_batch : int
            First batch index, ``0 <= start_batch <= num_batches(batch_size)``.
        dtype : float32 or float64
            Dtype of dense ``x``.

        Yields
        ------
        x : ndarray, shape (B, T, d_in), ``dtype`` — or (B, T) int64 for token tasks
        y : ndarray, shape (B,) or (B, T), int64
        """
        epoch = check_int(epoch, "epoch", 0)
        dtype = float_dtype(dtype)
        count = self.num_batches(batch_size)
        start_batch = check_int(start_batch, "start_batch", 0)
        if start_batch > count:
            raise ConfigError(
                f"start_batch={start_batch} is past the end of the epoch "
                f"({count} batches of {batch_size})"
            )
        return self._train_batches(epoch, int(batch_size), start_batch, count, dtype)

    def split_names(self):
        """Names of the evaluation splits this task holds (subset of ``("val", "test")``)."""
        return tuple(name for name in ("val", "test") if self._split_size(name) is not None)

    def split_size(self, name):
        """Number of sequences in split ``name``."""
        self._check_split(name)
        return self._split_size(name)

    def split(self, name, dtype=np.float32):
        """The whole split ``name`` (``"val"`` or ``"test"``) as ``(x, y)`` arrays.

        Large splits (copy task: ``2000 x 1000 x 10`` floats) are better read with
        :meth:`iter_split`.
        """
        size = self.split_size(name)
        return self._split_slice(name, 0, size, float_dtype(dtype))

    def iter_split(self, name, batch_size, dtype=np.float32):
        """Split ``name`` in order, in batches of ``batch_size`` (last one smaller)."""
        size = self.split_size(name)
        batch_size = check_int(batch_size, "batch_size", 1)
        dtype = float_dtype(dtype)
        return (
            self._split_slice(name, lo, min(lo + batch_size, size), dtype)
            for lo in range(0, size, batch_size)
        )

    def describe(self):
        """JSON-serialisable record of the task (for logs and checkpoints)."""
        return {
            "task": self.name,
            "input_kind": self.input_kind,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "seq_len": self.seq_len,
            "many_to_many": self.many_to_many,
            "num_train": self.num_train,
            "splits": {name: self._split_size(name) for name in self.split_names()},
            **self._options(),
        }

    def data_files(self):
        """The files the task's data were read from, as ``{role: Path}``.

        Empty for generated data (the base class). A task that reads files lists every one
        under a fixed role name: runs record their content digests and refuse to resume on
        changed data (:mod:`hadamnp.runs.integrity`), and commands reading a run refuse to
        overwrite them.
        """
        return {}

    def _check_split(self, name):
        if name not in ("val", "test"):
            raise ConfigError(f"split must be 'val' or 'test', got {name!r}")
        if self._split_size(name) is None:
            raise ConfigError(
                f"task {self.name} has no {name!r} split"
                + (f"; add x_{name}/y_{name} to the archive, or train with "
                   f"--npz-{name}-fraction F (npz_{name}_fraction in a TOML file)"
                   if self.name == "npz" else "")
            )

    @abc.abstractmethod
    def _train_batches(self, epoch, batch_size, start_batch, count, dtype):
        """Generator of the validated batches ``start_batch .. count-1`` of ``epoch``."""

    @abc.abstractmethod
    def _split_size(self, name):
        """Size of split ``name``, ``None`` when absent."""

    @abc.abstractmethod
    def _split_slice(self, name, lo, hi, dtype):
        """Sequences ``lo .. hi-1`` of split ``name`` as ``(x, y)``."""

    @abc.abstractmethod
    def _options(self):
        """The constructor options that define the task, as a dict."""


class CopyTask(TaskData):
    """The copy task (:mod:`hadamnp.io.copy_task`), generated on the fly.

    Training batch ``i`` of epoch ``e`` is ``copy_batch(derived_rng(seed, 0, e, i), ...)``;
    nothing is stored but the symbols of the fixed validation and test sets
    (``derived_rng(seed, 1)`` and ``derived_rng(seed, 2)``, ``(N, 10)`` int64 each).
    Departure from the reference, which draws 512,000 training sequences once and
    reshuffles them every epoch: here every epoch draws fresh sequences. A batch's content
    depends on ``batch_size``, so resume with the same batch size.

    Parameters
    ----------
    length : int
        Total sequence length ``L >= 21`` (default 1000).
    num_train : int
        Sequences per epoch (default 512000, the reference's training set size).
    num_val, num_test : int
        Fixed evaluation set sizes (default 2000 each).
    seed : int
        Default 712 (the paper's copy-task seed).
    """

    name = "copy"
    input_kind = "features"
    input_size = copy_task.VOCABULARY
    output_size = copy_task.NUM_CLASSES
    many_to_many = True

    def __init__(self, length=copy_task.DEFAULT_LENGTH, num_train=COPY_NUM_TRAIN,
                 num_val=COPY_NUM_EVAL, num_test=COPY_NUM_EVAL, seed=COPY_SEED):
        self.seq_len = copy_task.check_length(length)
        self.num_train = check_int(num_train, "num_train", 1)
        self.seed = check_int(seed, "seed", 0)
        self._symbols = {
            "val": copy_task.draw_symbols(derived_rng(self.seed, VAL_STREAM),
                                          check_int(num_val, "num_val", 1)),
            "test": copy_task.draw_symbols(derived_rng(self.seed, TEST_STREAM),
                                           check_int(num_test, "num_test", 1)),
        }

    def baseline(self):
        """Cross-entropy of the memoryless predictor, ``10 ln 8 / L``."""
        return copy_task.memoryless_baseline(self.seq_len)

    def _train_batches(self, epoch, batch_size, start_batch, count, dtype):
        for i in range(start_batch, count):
            size = min(batch_size, self.num_train - i * batch_size)
            rng = derived_rng(self.seed, TRAIN_STREAM, epoch, i)
            yield copy_task.copy_batch(rng, size, self.seq_len, dtype)

    def _split_size(self, name):
        return self._symbols[name].shape[0]

    def _split_slice(self, name, lo, hi, dtype):
        tokens, targets = copy_task.copy_tokens(self._symbols[name][lo:hi], self.seq_len)
        return copy_task.one_hot(tokens, copy_task.VOCABULARY, dtype), targets

    def _options(self):
        return {"length": self.seq_len, "num_val": self._split_size("val"),
                "num_test": self._split_size("test"), "seed": self.seed}


class ArrayTask(TaskData):
    """A task whose splits are in-memory arrays, reshuffled every epoch.

    Epoch ``e`` visits the training set in the order
    ``derived_rng(seed, 0, e).permutation(num_train)``.
    """

    def __init__(self, train, splits, seed):
        self._train = train
        self._splits = splits
        self.num_train = train[1].shape[0]
        self.seed = check_int(seed, "seed", 0)

    @abc.abstractmethod
    def _to_input(self, stored, dtype):
        """Stored inputs of a batch → model inputs."""

    def _train_batches(self, epoch, batch_size, start_batch, count, dtype):
        order = derived_rng(self.seed, TRAIN_STREAM, epoch).permutation(self.num_train)
        x, y = self._train
        for i in range(start_batch, count):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield self._to_input(x[idx], dtype), y[idx]

    def _split_size(self, name):
        arrays = self._splits.get(name)
        return None if arrays is None else arrays[1].shape[0]

    def _split_slice(self, name, lo, hi, dtype):
        x, y = self._splits[name]
        return self._to_input(x[lo:hi], dtype), y[lo:hi].copy()


class MnistTask(ArrayTask):
    """Sequential (``permuted=False``) or permuted MNIST, 784 steps of one pixel.

    Images are kept as uint8 ``(N, 784)`` (already in step order) and scaled to
    ``[0, 1]`` per batch. Splits: :func:`hadamnp.io.mnist.split_indices` of the official
    training set (train / ``val``), the official test set (``test``).

    Parameters
    ----------
    permuted : bool
    data_dir : str or Path or None
        See :func:`hadamnp.io.mnist.resolve_data_dir`.
    seed : int or None
        Shuffle seed; default the paper's (8 for pMNIST, 68 for sMNIST).
    num_val : int
        Validation images taken from the official training set (default 10000).
    """

    input_kind = "features"
    input_size = 1
    output_size = mnist.NUM_CLASSES
    seq_len = mnist.NUM_PIXELS
    many_to_many = False

    def __init__(self, permuted, data_dir=None, seed=None, num_val=mnist.NUM_VAL):
        self.name = "pmnist" if permuted else "smnist"
        if seed is None:
            seed = PMNIST_SEED if permuted else SMNIST_SEED
        num_val = check_int(num_val, "num_val", 1)
        arrays = mnist.load_mnist(data_dir)
        order = mnist.pmnist_permutation() if permuted else np.arange(mnist.NUM_PIXELS)

        def steps(images):
            return images.reshape(images.shape[0], mnist.NUM_PIXELS)[:, order]

        train_idx, val_idx = mnist.split_indices(arrays.train_labels.shape[0], num_val)
        train_images = steps(arrays.train_images)
        super().__init__(
            (train_images[train_idx], arrays.train_labels[train_idx]),
            {
                "val": (train_images[val_idx], arrays.train_labels[val_idx]),
                "test": (steps(arrays.test_images), arrays.test_labels),
            },
            seed,
        )
        self._num_val = num_val
        self._files = dict(arrays.files)

    def _to_input(self, stored, dtype):
        return mnist.pixels_to_steps(stored, None, dtype)

    def data_files(self):
        """The four IDX files, under the keys of :data:`hadamnp.io.mnist.FILES`."""
        return dict(self._files)

    def _options(self):
        return {"num_val": self._num_val, "seed": self.seed}


class NpzTask(ArrayTask):
    """A user ``.npz`` archive (:func:`hadamnp.io.sequences.load_npz`).

    Parameters
    ----------
    path : str or Path
    seed : int
        Shuffle seed (default 0).
    val_fraction, test_fraction, split_seed, num_classes, vocab_size
        Passed to :func:`hadamnp.io.sequences.load_npz`.
    """

    name = "npz"

    def __init__(self, path, seed=0, val_fraction=None, test_fraction=None, split_seed=0,
                 num_classes=None, vocab_size=None):
        data = sequences.load_npz(path, val_fraction, test_fraction, split_seed,
                                  num_classes, vocab_size)
        self.input_kind = data.input_kind
        self.input_size = data.input_size
        self.output_size = data.num_classes
        self.seq_len = data.seq_len
        self.many_to_many = data.many_to_many
        splits = {}
        if data.y_val is not None:
            splits["val"] = (data.x_val, data.y_val)
        if data.y_test is not None:
            splits["test"] = (data.x_test, data.y_test)
        super().__init__((data.x, data.y), splits, seed)
        self._record = {"path": str(data.path), "val_fraction": val_fraction,
                        "test_fraction": test_fraction, "split_seed": split_seed,
                        "seed": self.seed}

    def _to_input(self, stored, dtype):
        if self.input_kind == "tokens":
            return stored.copy()  # split slices are views of the stored arrays
        return stored.astype(dtype)

    def data_files(self):
        """The archive, under the role ``"npz"``."""
        return {"npz": Path(self._record["path"])}

    def _options(self):
        return dict(self._record)


class AddingTask(TaskData):
    """The adding problem (:mod:`hadamnp.io.adding_task`), generated on the fly.

    Regression, many-to-one: ``x`` (B, T, 2), ``y`` (B, 1) the sum of the two marked
    values; default loss ``mse``, baseline ``1/6`` (always predicting 1). Training batch
    ``i`` of epoch ``e`` is ``adding_batch(derived_rng(seed, 0, e, i), ...)``; the fixed
    validation and test sets are drawn once from ``derived_rng(seed, 1)`` and
    ``derived_rng(seed, 2)``. As for the copy task, a batch's content depends on
    ``batch_size``: resume with the same batch size.

    Parameters
    ----------
    length : int
        Sequence length ``T >= 2`` (default 200).
    num_train : int
        Sequences per epoch (default 100000, Arjovsky et al.'s training set size).
    num_val, num_test : int
        Fixed evaluation set sizes (default 1000 and 10000).
    seed : int
    """

    name = "adding"
    input_kind = "features"
    input_size = adding_task.INPUT_SIZE
    output_size = adding_task.OUTPUT_SIZE
    many_to_many = False
    loss = "mse"

    def __init__(self, length=adding_task.DEFAULT_LENGTH, num_train=ADDING_NUM_TRAIN,
                 num_val=ADDING_NUM_VAL, num_test=ADDING_NUM_TEST, seed=0):
        self.seq_len = adding_task.check_length(length)
        self.num_train = check_int(num_train, "num_train", 1)
        self.seed = check_int(seed, "seed", 0)
        self._sets = {
            "val": adding_task.draw_sequences(derived_rng(self.seed, VAL_STREAM),
                                              check_int(num_val, "num_val", 1), self.seq_len),
            "test": adding_task.draw_sequences(derived_rng(self.seed, TEST_STREAM),
                                               check_int(num_test, "num_test", 1),
                                               self.seq_len),
        }

    def baseline(self):
        """Mean squared error of always predicting 1: ``1/6``."""
        return adding_task.constant_baseline()

    def _train_batches(self, epoch, batch_size, start_batch, count, dtype):
        for i in range(start_batch, count):
            size = min(batch_size, self.num_train - i * batch_size)
            rng = derived_rng(self.seed, TRAIN_STREAM, epoch, i)
            yield adding_task.adding_batch(rng, size, self.seq_len, dtype)

    def _split_size(self, name):
        return self._sets[name][0].shape[0]

    def _split_slice(self, name, lo, hi, dtype):
        values, marks = self._sets[name]
        return adding_task.adding_inputs(values[lo:hi], marks[lo:hi], dtype)

    def _options(self):
        return {"length": self.seq_len, "num_val": self._split_size("val"),
                "num_test": self._split_size("test"), "seed": self.seed}


class TextTask(TaskData):
    """Byte-level language model over a text file (:mod:`hadamnp.io.text`).

    Token inputs (B, W) int64 (bytes, vocabulary 256, no padding id), next-byte targets
    (B, W) int64 at every step (many-to-many cross-entropy); figures: bits per character
    ``bpc = loss / ln 2``. Epoch ``e`` visits the training windows in the order
    ``derived_rng(seed, 0, e).permutation(num_train)``; each window starts from the zero
    state. The windows are cut from the bytes on demand (nothing but the file is stored).

    Parameters
    ----------
    path : str or Path
    window : int
        Steps per window ``W`` (default 128).
    seed : int
        Shuffle seed (default 0).
    val_fraction, test_fraction : float in (0, 0.5)
        Bytes held out at the end of the file (default 5 % each).
    """

    name = "text"
    input_kind = "tokens"
    input_size = text.VOCABULARY
    output_size = text.VOCABULARY
    many_to_many = True
    padding_id = None

    def __init__(self, path, window=text.DEFAULT_WINDOW, seed=0,
                 val_fraction=text.VAL_FRACTION, test_fraction=text.TEST_FRACTION):
        data, digest = text.read_text(path)
        n_train, n_val, n_test = text.split_sizes(data.size, val_fraction, test_fraction)
        self.seq_len = text.check_window(window, {"train": n_train, "val": n_val,
                                                  "test": n_test}, path)
        self.seed = check_int(seed, "seed", 0)
        self._data = {"train": data[:n_train], "val": data[n_train:n_train + n_val],
                      "test": data[n_train + n_val:]}
        self._starts = {name: text.window_starts(part.size, self.seq_len)
                        for name, part in self._data.items()}
        self.num_train = self._starts["train"].size
        self._record = {"path": str(path), "window": self.seq_len, "bytes": int(data.size),
                        "sha256": digest, "val_fraction": val_fraction,
                        "test_fraction": test_fraction, "seed": self.seed}

    def figures(self, loss):
        """Bits per character: the cross-entropy in nats divided by ``ln 2``."""
        return {"bpc": loss / math.log(2)}

    def _windows(self, name, starts):
        return text.windows(self._data[name], starts, self.seq_len)

    def _train_batches(self, epoch, batch_size, start_batch, count, dtype):
        order = derived_rng(self.seed, TRAIN_STREAM, epoch).permutation(self.num_train)
        starts = self._starts["train"]
        for i in range(start_batch, count):
            yield self._windows("train", starts[order[i * batch_size:(i + 1) * batch_size]])

    def _split_size(self, name):
        return self._starts[name].size

    def _split_slice(self, name, lo, hi, dtype):
        return self._windows(name, self._starts[name][lo:hi])

    def data_files(self):
        """The text file, under the role ``"text"``."""
        return {"text": Path(self._record["path"])}

    def _options(self):
        return dict(self._record)


# name -> (class, fixed constructor arguments)
_TASKS = {
    "copy": (CopyTask, {}),
    "smnist": (MnistTask, {"permuted": False}),
    "pmnist": (MnistTask, {"permuted": True}),
    "npz": (NpzTask, {}),
    "adding": (AddingTask, {}),
    "text": (TextTask, {}),
}


def task_options(name):
    """The option names :func:`load_task` accepts for task ``name``."""
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(_TASKS)}")
    cls, fixed = _TASKS[name]
    return tuple(p for p in inspect.signature(cls).parameters if p not in fixed)


def load_task(name, **options):
    """Build a task by name.

    Parameters
    ----------
    name : {"copy", "smnist", "pmnist", "npz", "adding", "text"}
    **options
        Constructor options of :class:`CopyTask`, :class:`MnistTask` (``data_dir``,
        ``seed``, ``num_val``), :class:`NpzTask` (``path`` required), :class:`AddingTask`
        or :class:`TextTask` (``path`` required). Unknown names are a :class:`ConfigError`.

    Returns
    -------
    TaskData
    """
    allowed = task_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for task {name!r}; "
            f"valid options: {', '.join(allowed)}"
        )
    cls, fixed = _TASKS[name]
    if name in ("npz", "text") and "path" not in options:
        raise ConfigError(f"task {name!r} needs the option path (the "
                          f"{'.npz archive' if name == 'npz' else 'text file'})")
    return cls(**fixed, **options)
