"""Bit-packed inference of fully binary layers (``hadamnp eval --engine packed``).

A *fully binary* layer multiplies a {0, 1}-coded weight matrix (SiMaN's ``B``, used as
``C = 2B - 1``; or a sign-quantized matrix, ``B = [W >= 0]``) by ±1 activations ``a``
(``sign`` of the layer input). The packed engine computes the integer product ``C a`` from
packed bits with the XNOR-popcount kernel of :mod:`hadamnp.kernels.bitpack`, and the model
does everything else exactly as in its float forward pass.

The identities (row ``b`` of ``B`` and the activations ``a``, both of length ``n``; the sign
bits ``s_j = 1`` where ``a_j = -1``, as :func:`~hadamnp.kernels.bitpack.pack_signs` packs
them)::

    b . a          = sum_j b_j (1 - 2 s_j)        = popcount(b) - 2 popcount(b AND s)
    1 . a          = n - 2 popcount(s)
    (2b - 1) . a   = 2 (b . a) - 1 . a
                   = 2 popcount(b) - 4 popcount(b AND s) - n + 2 popcount(s)      (AND form)
                   = n - 2 popcount(NOT b XOR s)                                  (XNOR form)

The XNOR form holds because ``2b - 1`` is the ±1 vector whose sign bits are ``NOT b``
(``b = 0`` codes -1), and two ±1 entries multiply to -1 exactly where their sign bits differ.
The engine packs ``NOT b`` once per call (:func:`~hadamnp.kernels.bitpack.pack_bits` of
``1 - B``: the padding stays zero, and the kernel masks it) and uses
:func:`~hadamnp.kernels.bitpack.xnor_matmul`: one popcount per 64-bit word instead of the
AND form's three. Both forms are exact integers; the tests check them against each other
and against the float product.

Exactness. The float forward evaluates the layer as ``s * (C @ a)``: with ±1 entries every
partial sum of ``C @ a`` is an integer of magnitude at most ``n``, exact in float32 for
``n < 2^24`` whatever the summation order, so the packed integers converted to the model
dtype are the same numbers and the logits agree bit for bit.
"""

import numpy as np

from hadamnp.errors import ConfigError
from hadamnp.kernels.bitpack import pack_bits, pack_signs, xnor_matmul

__all__ = ["packed_products", "PackedModel", "packed_engine", "evaluate_packed_run"]


def packed_products(model, params):
    """``{layer: f}`` computing each fully binary layer's ``C @ a`` by XNOR-popcount.

    Parameters
    ----------
    model : a model with the optional ``binary_layers(params)`` member
    params : dict of parameters

    Returns
    -------
    dict : layer name -> ``f(a)``, ``a`` (n_in, B) ±1 in the model dtype, returning
        ``C @ a`` (n_out, B) in that dtype.

    Raises
    ------
    ConfigError
        The model has no fully binary layer.
    """
    layers = getattr(model, "binary_layers", None)
    codes = layers(params) if layers is not None else {}
    if not codes:
        name = model.describe()["name"]
        raise ConfigError(f"model {name!r} has no fully binary layer (binary weight codes "
                          f"times sign activations); the packed engine needs one, e.g. "
                          f"model 'binary-rnn' with quant_rec 'siman' or 'sign'")
    products = {}
    for layer, code in codes.items():
        n_in = code.shape[1]
        # Sign bits of C = 2B - 1: set (= -1) where B = 0.
        negated = pack_bits(1 - np.asarray(code, dtype=np.uint8))

        def product(a, negated=negated, n_in=n_in):
            return xnor_matmul(negated, pack_signs(a.T), n_in).astype(a.dtype)

        products[layer] = product
    return products


class PackedModel:
    """A model evaluated with its fully binary layers on packed bits.

    Offers what :func:`hadamnp.runs.plumbing.evaluate` uses (``config``, ``state_buffer``,
    ``forward``); the codes are packed from the parameters of each ``forward`` call.
    """

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.input_kind = getattr(model, "input_kind", "features")

    def describe(self):
        return self.model.describe()

    def state_buffer(self, batch, seq_len):
        return self.model.state_buffer(batch, seq_len)

    def forward(self, params, x, *, states_out=None, rng=None):
        return self.model.forward(params, x, states_out=states_out, rng=rng,
                                  products=packed_products(self.model, params))


def packed_engine(model, params):
    """The :class:`PackedModel` of ``model`` (the ``engine`` of
    :func:`hadamnp.runs.plumbing.evaluate_run`); a :class:`ConfigError` if it has no fully
    binary layer."""
    packed_products(model, params)
    return PackedModel(model)


def evaluate_packed_run(path, split="test", max_batches=None, batch_size=None, data_dir=None,
                        **options):
    """:func:`hadamnp.runs.plumbing.evaluate_run` with the packed engine (same arguments).

    Raises
    ------
    CheckpointError, ConfigError
        Unreadable run, or a model without a fully binary layer (before any data is read).
    """
    from hadamnp.runs.plumbing import evaluate_run

    return evaluate_run(path, split, max_batches, batch_size, data_dir, engine=packed_engine,
                        **options)
