"""Golden test vectors: one small model, one batch, everything a port must reproduce.

Format v1 (``shared/spec/golden-format.md``, documented in the README): an ``.npz`` written
by :func:`hadamnp.io.npzfile.write_npz_atomic` holding ``x``, ``y``, ``param.*``, ``weight.*``,
``h``, ``logits``, ``loss``, ``grad.*`` in float64 and a JSON ``meta``. Files are generated
by ``hadamnp golden`` (never edited by hand) and are byte-reproducible for a given seed.
"""

import numpy as np

from hadamnp import __version__, conventions
from hadamnp.errors import ConfigError
from hadamnp.io.npzfile import read_npz_checked, write_npz_atomic
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.training.losses import softmax_cross_entropy

GOLDEN_FORMAT = "hadamnp-golden"
GOLDEN_VERSION = 1
GOLDEN_MODELS = ("hadamrnn", "block-hadamrnn")


def default_block_size(model, hidden_size):
    """``n`` for ``hadamrnn``; ``n/4`` (at least 1) for ``block-hadamrnn``."""
    return hidden_size if model == "hadamrnn" else max(1, hidden_size // 4)


def make_golden(model="hadamrnn", hidden_size=16, block_size=None, bits=4, input_size=3,
                output_size=5, seq_len=7, batch=3, many_to_many=False, seed=0):
    """Build the golden arrays and metadata for one float64 model and batch.

    Random draws, all from ``numpy.random.default_rng(seed)`` in this order: parameters
    (see :meth:`HadamRNN.init_params`), then ``x ~ N(0, 1)`` of shape (B, T, d_in), then
    integer targets ``y`` uniform in ``[0, d_out)`` of shape (B,) or (B, T).

    Returns
    -------
    arrays : dict[str, ndarray] with the golden-format keys
    meta : dict (the ``meta`` JSON)
    """
    if model not in GOLDEN_MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {list(GOLDEN_MODELS)}")
    if block_size is None:
        block_size = default_block_size(model, hidden_size)
    if model == "hadamrnn" and block_size != hidden_size:
        raise ConfigError(f"hadamrnn uses the full Hadamard matrix: block size must be "
                          f"{hidden_size}, got {block_size} (use --model block-hadamrnn)")
    if model == "block-hadamrnn" and block_size == hidden_size:
        raise ConfigError(f"block-hadamrnn needs a block size smaller than n={hidden_size}")
    config = HadamRNNConfig(input_size=input_size, hidden_size=hidden_size,
                            output_size=output_size, block_size=block_size, bits_in=bits,
                            bits_out=bits, many_to_many=many_to_many, dtype="float64")
    net = HadamRNN(config)
    rng = np.random.default_rng(seed)
    params = net.init_params(rng)
    x = rng.standard_normal((batch, seq_len, input_size))
    y = rng.integers(0, output_size, size=(batch, seq_len) if many_to_many else (batch,))
    logits, cache = net.forward(params, x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    grads = net.backward(params, cache, dlogits)
    arrays = {"x": x, "y": y.astype(np.int64), "h": np.ascontiguousarray(net.states(cache)),
              "logits": np.ascontiguousarray(logits), "loss": np.float64(loss)}
    arrays.update({f"param.{k}": v for k, v in params.items()})
    arrays.update({f"weight.{k}": v for k, v in net.weights(params).items()})
    arrays.update({f"grad.{k}": v for k, v in grads.items()})
    meta = {
        "format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "model": model,
        "hidden_size": hidden_size, "block_size": block_size, "input_size": input_size,
        "output_size": output_size, "bits_in": bits, "bits_out": bits,
        "many_to_many": bool(many_to_many), "activation": "relu", "recurrence": "linear",
        "loss": "cross_entropy", "dtype": "float64", "seed": seed,
        "seq_len": seq_len, "batch": batch, "hadamnp_version": __version__,
        **conventions.as_dict(ste="identity"),
    }
    return arrays, meta


def write_golden(path, arrays, meta):
    """Write golden arrays and metadata atomically to ``path`` (``.npz``)."""
    write_npz_atomic(path, arrays, meta)


def read_golden(path):
    """Read and verify a golden file; returns ``(arrays, meta)``."""
    return read_npz_checked(path, expected_format=GOLDEN_FORMAT, expected_version=GOLDEN_VERSION)
