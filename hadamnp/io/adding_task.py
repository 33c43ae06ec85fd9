"""The adding problem: a long-memory regression task for recurrent networks.

Source: Hochreiter & Schmidhuber (1997); the layout of Le, Jaitly & Hinton (2015) and
Arjovsky, Shah & Bengio (2016), used to compare orthogonal RNNs. A sequence of length
``T`` has two input channels (0-based positions):

=============  ==========================================================================
channel        content
=============  ==========================================================================
``0`` value    ``T`` numbers drawn uniformly from ``[0, 1)``
``1`` marker   ``1`` at exactly two positions, ``0`` elsewhere: one position drawn
               uniformly from the first half ``0 .. T//2 - 1``, one from the second half
               ``T//2 .. T-1``
=============  ==========================================================================

The target, read at the last step only (many-to-one), is the sum of the two marked values,
in ``[0, 2)``. The loss is the mean squared error. Predicting ``1`` whatever the input
scores ``E[(v1 + v2 - 1)^2] = Var(v1 + v2) = 2/12 = 1/6 ≈ 0.167``: the baseline a model
must beat to show that it remembers (:func:`constant_baseline`).

Batches are generated on the fly from an explicit :class:`numpy.random.Generator`; the
seeding scheme that makes epochs and batches reproducible lives in
:class:`hadamnp.io.datasets.AddingTask`.
"""

import numpy as np

from hadamnp._checks import check_int, float_dtype
from hadamnp.errors import ConfigError, ShapeError

INPUT_SIZE = 2           # value and marker channels
OUTPUT_SIZE = 1          # the sum
DEFAULT_LENGTH = 200     # Arjovsky et al. (2016) report T = 100, 200, 400, 750
MIN_LENGTH = 2           # one position in each half
BASELINE = 1.0 / 6.0     # MSE of always predicting 1


def check_length(length):
    """Return ``int(length)``; raise :class:`ConfigError` naming ``adding_length`` if it is
    below :data:`MIN_LENGTH`."""
    length = check_int(length, "adding_length", None)
    if length < MIN_LENGTH:
        raise ConfigError(f"adding_length is the sequence length T and must be at least "
                          f"{MIN_LENGTH} (one marked position in each half), got {length}")
    return length


def constant_baseline():
    """Mean squared error of the constant prediction 1: ``Var(v1 + v2) = 1/6``."""
    return BASELINE


def draw_sequences(rng, batch_size, length=DEFAULT_LENGTH):
    """Draw the values and the marked positions of ``batch_size`` sequences.

    Draws, in this order: ``values = rng.random((B, T), dtype=float32)``, ``first =
    rng.integers(0, T//2, B)``, ``second = rng.integers(T//2, T, B)``. The values are drawn
    in float32 so that float32 and float64 runs see the same numbers, all in ``[0, 1)``.

    Parameters
    ----------
    rng : numpy.random.Generator
    batch_size : int
        ``B >= 1``.
    length : int
        ``T >= 2``.

    Returns
    -------
    values : ndarray, shape (B, T), float32 in [0, 1)
    marks : ndarray, shape (B, 2), int64
        The marked positions, ``marks[:, 0] < T//2 <= marks[:, 1]``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    batch_size = check_int(batch_size, "batch_size", 1)
    length = check_length(length)
    half = length // 2
    values = rng.random((batch_size, length), dtype=np.float32)
    first = rng.integers(0, half, size=batch_size, dtype=np.int64)
    second = rng.integers(half, length, size=batch_size, dtype=np.int64)
    return values, np.stack([first, second], axis=1)


def adding_inputs(values, marks, dtype=np.float32):
    """Lay out inputs and targets for given values and marked positions.

    Parameters
    ----------
    values : ndarray, shape (B, T), real
    marks : ndarray, shape (B, 2), integer positions in ``0 .. T-1``, distinct per row
    dtype : float32 or float64

    Returns
    -------
    x : ndarray, shape (B, T, 2), ``dtype``
        Channel 0 the values, channel 1 the two markers.
    y : ndarray, shape (B, 1), ``dtype``
        The sum of the two marked values (computed from ``x``, so exactly consistent with
        the inputs the model sees).
    """
    dtype = float_dtype(dtype)
    values = np.asarray(values)
    marks = np.asarray(marks)
    if values.ndim != 2 or marks.shape != (values.shape[0], 2):
        raise ShapeError(f"values must be (B, T) and marks (B, 2), got {values.shape} and "
                         f"{marks.shape}")
    if marks.dtype.kind not in "iu":
        raise TypeError(f"marks must be integer positions, got dtype {marks.dtype}")
    length = values.shape[1]
    if marks.size and (marks.min() < 0 or marks.max() >= length
                       or np.any(marks[:, 0] == marks[:, 1])):
        raise ConfigError(f"marks must be two distinct positions in 0..{length - 1} per row")
    x = np.zeros(values.shape + (INPUT_SIZE,), dtype=dtype)
    x[:, :, 0] = values
    np.put_along_axis(x[:, :, 1], marks, 1, axis=1)
    y = np.sum(x[:, :, 0] * x[:, :, 1], axis=1, keepdims=True)
    return x, y


def adding_batch(rng, batch_size, length=DEFAULT_LENGTH, dtype=np.float32):
    """One batch of the adding problem: :func:`draw_sequences` then :func:`adding_inputs`.

    Returns
    -------
    x : ndarray, shape (B, T, 2), ``dtype``
    y : ndarray, shape (B, 1), ``dtype``
    """
    return adding_inputs(*draw_sequences(rng, batch_size, length), dtype)
