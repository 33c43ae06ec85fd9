"""HadamRNN's U and V under compact parametrizations (``param_in``, ``param_out``): the
binary Hadamard recurrence is unchanged; gradients reach the factors / generators
(finite differences, float64, quantization off); sizes and errors."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.models.registry import build_model

EPS = 1e-6


def test_default_is_dense_and_unchanged():
    config = HadamRNNConfig(input_size=2, hidden_size=8, output_size=3)
    assert config.param_in == config.param_out == "dense"
    model = HadamRNN(config)
    assert {"u", "U", "b", "V", "c"} == set(model.param_specs())


@pytest.mark.parametrize("param_in,param_out,parts",
                         [("lowrank:2", "ldr:1", ("U.A", "U.B", "V.G", "V.H")),
                          ("ldr:2", "lowrank:1", ("U.G", "U.H", "V.A", "V.B"))])
def test_gradients_reach_the_parametrization(param_in, param_out, parts):
    model = build_model("hadamrnn", input_size=6, hidden_size=8, output_size=3,
                        quant_in="none", quant_out="none", param_in=param_in,
                        param_out=param_out, dtype="float64")
    assert set(parts) <= set(model.param_specs())
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    x = rng.standard_normal((2, 4, 6))
    y = np.array([0, 2])

    def loss():
        return softmax_cross_entropy(model.forward(params, x)[0], y)[0]

    logits, cache = model.forward(params, x)
    grads = model.backward(params, cache, softmax_cross_entropy(logits, y)[1])
    for name in parts:
        numeric = np.zeros_like(params[name])
        for idx in np.ndindex(numeric.shape):
            orig = params[name][idx]
            params[name][idx] = orig + EPS
            up = loss()
            params[name][idx] = orig - EPS
            down = loss()
            params[name][idx] = orig
            numeric[idx] = (up - down) / (2 * EPS)
        err = np.abs(grads[name] - numeric).max() / np.abs(numeric).max()
        assert err < 1e-7, f"{name}: relative error {err:.3g}"


def test_sizes_count_the_stored_factors():
    model = build_model("hadamrnn", input_size=16, hidden_size=64, output_size=10,
                        quant_in="none", quant_out="none", param_in="lowrank:4")
    size = model.size()
    assert size.bits["U"] == 32 * 4 * (64 + 16)
    assert size.float32_parameters == 64 * 16 + 10 * 64 + 64 * 64 + 64 + 10
    quantized = build_model("hadamrnn", input_size=16, hidden_size=64, output_size=10,
                            param_in="lowrank:4")
    assert quantized.size().bits["U"] == 4 * 64 * 16     # Q(A B) is deployed, 4-bit codes


def test_unrepresentable_parametrizations_name_the_option():
    with pytest.raises(ConfigError, match="param_in: rank k=1 of lowrank:1.*one row or column"):
        HadamRNNConfig(input_size=1, hidden_size=8, output_size=10, param_in="lowrank:1")
    with pytest.raises(ConfigError, match="param_out: displacement rank r=3 must be < the "
                                          "block size 2"):
        HadamRNNConfig(input_size=1, hidden_size=8, output_size=2, param_out="ldr:3")
    with pytest.raises(ConfigError, match="param_in: unknown parametrization 'toeplitz'"):
        HadamRNNConfig(input_size=4, hidden_size=8, output_size=2, param_in="toeplitz:2")
