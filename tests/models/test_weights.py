"""Weight matrices (:mod:`hadamnp.models.weights`): parametrization then quantizer."""

import numpy as np
import pytest

from hadamnp.errors import ConfigError
from hadamnp.models.init import xavier_uniform
from hadamnp.models.quantizers import Uniform
from hadamnp.models.weights import Dense, Weight, get_parametrization, parametrization_spec


def test_dense_weight_is_its_own_parameter_then_quantized(rng):
    weight = Weight("V", (3, 5), xavier_uniform, quantizer="uniform:2", bound=2.0)
    specs = weight.param_specs()
    assert list(specs) == ["V"] and specs["V"].shape == (3, 5) and specs["V"].bound == 2.0
    params = weight.init(rng, "float64")
    np.testing.assert_array_equal(weight.latent(params), params["V"])
    np.testing.assert_array_equal(weight.effective(params), Uniform(2).forward(params["V"]))
    dMq = rng.standard_normal((3, 5))
    grads = weight.backward(params, dMq)
    assert list(grads) == ["V"]
    np.testing.assert_array_equal(grads["V"], dMq)  # identity STE, dense parametrization
    assert weight.code_bits() == 2 * 15 and weight.scale_bits() == 32
    assert weight.describe() == {"quantizer": "uniform:2", "parametrization": "dense"}


def test_parametrization_specs():
    assert get_parametrization("dense") == Dense() == get_parametrization(None)
    assert parametrization_spec(Dense()) == "dense"
    with pytest.raises(ConfigError, match="unknown parametrization 'toeplitz'.*dense"):
        get_parametrization("toeplitz:2")
    with pytest.raises(ConfigError, match="parametrization spec must be a string"):
        get_parametrization(3)
