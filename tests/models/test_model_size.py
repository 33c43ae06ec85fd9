"""Model sizes (``HadamRNN.size()``, :mod:`hadamnp.models.size`) against the HadamRNN
paper's model-size table (docs/hadamrnn.md)."""

import pytest

from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig


def model_size(config):
    return HadamRNN(config).size()

# (d_in, n, d_out, block) -> per-component bits and total, from the spec's table (p = 4).
SPEC_TABLE = [
    ("copy", (10, 128, 9, None), dict(U=5120, V=4608, W=128, b=4096, c=288), 14_304),
    ("mnist", (1, 512, 10, None), dict(U=2048, V=20480, W=512, b=16384, c=320), 39_808),
    ("imdb", (512, 128, 1, None), dict(U=262144, V=512, W=128, b=4096, c=32), 266_976),
    ("sst2", (256, 128, 1, None), dict(U=131072, V=512, W=128, b=4096, c=32), 135_904),
    ("qqp", (256, 512, 1, 128), dict(U=524288, V=2048, W=512, b=16384, c=32), 543_328),
]


@pytest.mark.parametrize("name, sizes, parts, total", SPEC_TABLE, ids=[r[0] for r in SPEC_TABLE])
def test_spec_table(name, sizes, parts, total):
    d_in, n, d_out, block = sizes
    size = model_size(HadamRNNConfig(d_in, n, d_out, block_size=block))
    assert {k: size.bits[k] for k in parts} == parts
    assert size.bits["alpha"] == 64
    assert size.total_bits == total, (size.total_bits, total)


def test_copy_counts_and_ratio():
    size = model_size(HadamRNNConfig(10, 128, 9))
    assert size.parameters == size.trainable == 128 + 1280 + 128 + 1152 + 9
    assert size.float32_parameters == 1280 + 1152 + 128 * 128 + 128 + 9
    assert size.float32_bits == 606_496
    assert size.compression_ratio == pytest.approx(606_496 / 14_304, rel=1e-15)


def test_dense_and_unquantized():
    size = model_size(HadamRNNConfig(10, 16, 9, recurrence="dense", quant_in="none",
                                     quant_out="none"))
    assert size.bits == dict(U=32 * 160, V=32 * 144, W=32 * 256, b=32 * 16, c=32 * 9, alpha=0)
    # the dense float32 model is its own reference
    assert size.total_bits == size.float32_bits and size.compression_ratio == 1.0
    assert size.parameters == size.float32_parameters


def test_mixed_bits():
    size = model_size(HadamRNNConfig(3, 8, 2, quant_in="uniform:2", quant_out="none"))
    assert size.bits["U"] == 2 * 24 and size.bits["V"] == 32 * 16 and size.bits["alpha"] == 32
