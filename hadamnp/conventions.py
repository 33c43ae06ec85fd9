"""The numerical conventions of hadamnp, decided once.

These are public API: golden files, checkpoints and exported models record
``CONVENTIONS_VERSION`` and the dictionary returned by :func:`as_dict`, and any port of
hadamnp must follow them to match bit for bit.

Sign
    ``sign(0) = +1``. The recurrent matrix ``diag(sign(u)) H`` is therefore orthogonal for
    every latent ``u`` (the reference PyTorch code uses ``torch.sign``, where sign(0) = 0).
Hadamard matrix
    Sylvester ordering: ``S_1 = [1]``, ``S_2m = S_m ⊗ [[1, 1], [1, -1]]``, i.e.
    ``S[i, j] = (-1) ** popcount(i & j)`` (0-based). The FWHT is *unnormalised*
    (computes ``S x``); the normalisation ``1/sqrt(m)`` (``m`` = block size, ``n`` for the
    full HadamRNN) is applied exactly once, when ``W h`` is formed.
Block-Hadamard
    Block-diagonal form ``B = I_{n/m} ⊗ S_m / sqrt(m)``: independent transforms over
    contiguous blocks of ``m`` hidden units.
Rounding
    Round half to even (``numpy.rint``), as ``torch.round`` in the reference code.
Tensor layout
    Public arrays are batch-first: inputs ``x`` ``(B, T, d_in)``, hidden states
    ``(B, T, n)``, logits ``(B, d_out)`` (many-to-one) or ``(B, T, d_out)`` (many-to-many).
    Weight matrices act on column vectors: ``U`` ``(n, d_in)``, ``V`` ``(d_out, n)``.
    Inside the sequence kernels the layout is time-major and batch-last, ``(T, n, B)``, so
    every FWHT butterfly runs over ``B`` contiguous values (SIMD across the batch).
Bit packing
    ±1 values are packed into ``uint64`` words, LSB first: bit ``j % 64`` of word
    ``j // 64`` holds element ``j``; a set bit means -1 (0 means +1); padding bits are 0.
    {0, 1} vectors pack the value itself (set bit = 1).
Ternary encoding
    A {-1, 0, +1} matrix is stored as two index lists per row: the columns of its +1
    entries and the columns of its -1 entries.
"""

import numpy as np

CONVENTIONS_VERSION = 1

SIGN_ZERO = 1
HADAMARD_ORDERING = "sylvester"
NORMALISATION = "1/sqrt(block size), applied once in W h"
ROUNDING = "half-to-even"
LAYOUT = "batch-first (B, T, features); kernels (T, features, B)"
BIT_ORDER = "lsb-first uint64, bit 1 = -1, zero padding"
TERNARY = "per-row index lists of +1 and -1 columns"


def sign(x):
    """Elementwise sign with ``sign(0) = +1``.

    Parameters
    ----------
    x : ndarray, any shape, float dtype

    Returns
    -------
    ndarray, same shape and dtype as ``x``, values in {-1, +1}.
    """
    x = np.asarray(x)
    s = (x >= 0).astype(x.dtype)  # 2 [x >= 0] - 1: several times faster than np.where
    s *= 2
    s -= 1
    return s


def round_half_even(x):
    """Round to the nearest integer, ties to even (same dtype as ``x``)."""
    return np.rint(x)


def as_dict():
    """The conventions in force, as a JSON-serialisable dict (recorded in every file).

    Straight-through estimators are not conventions but choices of each quantizer; files
    record them in the model's configuration (e.g. ``quant_rec = "sign:clipped"``).
    """
    return {
        "conventions_version": CONVENTIONS_VERSION,
        "sign_zero": SIGN_ZERO,
        "hadamard": HADAMARD_ORDERING,
        "normalisation": NORMALISATION,
        "rounding": ROUNDING,
        "layout": LAYOUT,
        "bit_order": BIT_ORDER,
    }
