"""The copy (memory) task, in the reference code's layout.

Source: the official HadamRNN ``copy_task.py`` (``SEQ_LENGTH = 1000``, ``SENT_LENGTH = 10``,
``VOCABULARY = 10``), see ``docs/hadamrnn.md`` (tasks).

The length parameter ``length`` (``L``) is the **total** sequence length, not the delay
between the symbols and the marker (other papers count the delay ``T = L - 20``; the
paper's ``L = 1000`` equals Arjovsky's ``T = 980``). With 0-based positions:

=========================  ==================================================
input position             token
=========================  ==================================================
``0 .. 9``                 ten symbols drawn uniformly from ``1 .. 8``
``10 .. L-11``             blank ``0`` (``L - 20`` of them)
``L-10``                   marker ``9``
``L-9 .. L-1``             blank ``0`` (nine of them)
=========================  ==================================================

The target is ``L - 10`` blank classes ``0`` followed by the ten symbols (classes
``1 .. 8``), so there are 9 output classes ``0 .. 8``. Inputs are one-hot over the 10
input tokens. The loss is the cross-entropy averaged over all ``B * L`` positions.

Batches are generated on the fly from an explicit :class:`numpy.random.Generator`; the
seeding scheme that makes epochs and batches reproducible lives in
:class:`hadamnp.io.datasets.CopyTask`.
"""

import math

import numpy as np

from hadamnp._checks import check_int, float_dtype
from hadamnp.errors import ConfigError, ShapeError, SizeError

NUM_SYMBOLS = 8          # tokens 1..8 are the symbols to copy
SENT_LENGTH = 10         # symbols per sequence
BLANK = 0
MARKER = 9
VOCABULARY = 10          # input tokens 0..9, one-hot input size
NUM_CLASSES = 9          # output classes 0..8 (blank + the 8 symbols)
DEFAULT_LENGTH = 1000
# 10 symbols + at least one blank between them and the marker + marker + 9 blanks.
MIN_LENGTH = 2 * SENT_LENGTH + 1


def check_length(length):
    """Return ``int(length)``; raise :class:`SizeError` if it is below :data:`MIN_LENGTH`."""
    length = check_int(length, "copy-task length", None)
    if length < MIN_LENGTH:
        raise SizeError(
            f"copy-task length is the total sequence length L (10 symbols, L-20 blanks, "
            f"the marker, 9 blanks) and must be at least {MIN_LENGTH}, got {length}"
        )
    return length


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def memoryless_baseline(length=DEFAULT_LENGTH):
    """Cross-entropy (nats per position) of the best memoryless predictor.

    It predicts blank where the target is blank and a uniform guess over the 8 symbols on
    the last 10 positions: ``10 * ln(8) / L`` (the reference code's ``naive_baseline``;
    ``0.0208`` for ``L = 1000``).

    Parameters
    ----------
    length : int
        Total sequence length ``L >= 21``.

    Returns
    -------
    float
    """
    length = check_length(length)
    return SENT_LENGTH * math.log(NUM_SYMBOLS) / length


def draw_symbols(rng, batch_size):
    """Draw the symbols to copy: ``rng.integers(1, 9, size=(batch_size, 10))``.

    Parameters
    ----------
    rng : numpy.random.Generator
    batch_size : int
        ``B >= 1``.

    Returns
    -------
    symbols : ndarray, shape (B, 10), int64, values in 1..8
    """
    _check_rng(rng)
    batch_size = check_int(batch_size, "batch_size", 1)
    return rng.integers(1, NUM_SYMBOLS + 1, size=(batch_size, SENT_LENGTH), dtype=np.int64)


def copy_tokens(symbols, length=DEFAULT_LENGTH):
    """Lay out input tokens and targets for given symbols.

    Parameters
    ----------
    symbols : ndarray, shape (B, 10), integer, values in 1..8
    length : int
        Total sequence length ``L >= 21``.

    Returns
    -------
    tokens : ndarray, shape (B, L), int64
        Input token ids in 0..9 (see the module docstring for the layout).
    targets : ndarray, shape (B, L), int64
        Target classes in 0..8: zeros, then the symbols on positions ``L-10 .. L-1``.
    """
    length = check_length(length)
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.shape[1] != SENT_LENGTH:
        raise ShapeError(f"symbols must have shape (B, {SENT_LENGTH}), got {symbols.shape}")
    if symbols.dtype.kind not in "iu":
        raise TypeError(f"symbols must be integers, got dtype {symbols.dtype}")
    if symbols.size and (symbols.min() < 1 or symbols.max() > NUM_SYMBOLS):
        raise ConfigError(
            f"symbols must lie in 1..{NUM_SYMBOLS}, got range "
            f"[{symbols.min()}, {symbols.max()}]"
        )
    batch = symbols.shape[0]
    tokens = np.zeros((batch, length), dtype=np.int64)
    tokens[:, :SENT_LENGTH] = symbols
    tokens[:, length - SENT_LENGTH] = MARKER
    targets = np.zeros((batch, length), dtype=np.int64)
    targets[:, length - SENT_LENGTH:] = symbols
    return tokens, targets


def one_hot(tokens, depth=VOCABULARY, dtype=np.float32):
    """One-hot encode integer tokens.

    Parameters
    ----------
    tokens : ndarray, shape (B, T), integer, values in ``0 .. depth-1``
    depth : int
    dtype : float32 or float64

    Returns
    -------
    ndarray, shape (B, T, depth), ``dtype``
    """
    dtype = float_dtype(dtype)
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens must be integers, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= depth):
        raise ConfigError(
            f"tokens must lie in 0..{depth - 1}, got range [{tokens.min()}, {tokens.max()}]"
        )
    out = np.zeros(tokens.shape + (depth,), dtype=dtype)
    np.put_along_axis(out, tokens[..., None], 1, axis=-1)
    return out


def copy_batch(rng, batch_size, length=DEFAULT_LENGTH, dtype=np.float32):
    """Generate one batch of the copy task.

    Draws the symbols with :func:`draw_symbols` (the only use of ``rng``), then lays them
    out with :func:`copy_tokens` and one-hot encodes them.

    Parameters
    ----------
    rng : numpy.random.Generator
    batch_size : int
        ``B >= 1``.
    length : int
        Total sequence length ``L >= 21`` (default 1000).
    dtype : float32 or float64
        Dtype of ``x``.

    Returns
    -------
    x : ndarray, shape (B, L, 10), ``dtype``
        One-hot inputs.
    y : ndarray, shape (B, L), int64
        Target classes in 0..8.
    """
    dtype = float_dtype(dtype)
    length = check_length(length)
    tokens, targets = copy_tokens(draw_symbols(rng, batch_size), length)
    return one_hot(tokens, VOCABULARY, dtype), targets
