"""The models' optional ``diagnostics`` hook and the quantizer statistics behind it."""

import numpy as np
import pytest

from hadamnp.models.quantizers import Uniform
from hadamnp.models.registry import build_model


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_uniform_stats_count_every_code_level(rng, bits):
    M = rng.normal(size=(7, 5)).astype(np.float32)
    q = Uniform(bits)
    stats = q.stats(M)
    low, high, _ = q.grid()
    codes, alpha = q.codes(M)
    assert stats["alpha"] == float(alpha) == float(np.max(np.abs(M)))
    assert len(stats["codes"]) == high - low + 1 and sum(stats["codes"]) == M.size
    for level, count in zip(range(low, high + 1), stats["codes"]):
        assert count == np.count_nonzero(codes == level), level


@pytest.mark.parametrize("name, options, weights", [
    ("hadamrnn", {}, ("U", "V")),
    ("dense", {"quant_rec": "uniform:3"}, ("U", "V", "W")),
    ("hadamrnn", {"quant_in": "none"}, ("V",)),
])
def test_hadamrnn_hook(rng, name, options, weights):
    model = build_model(name, input_size=3, hidden_size=8, output_size=4, many_to_many=True,
                        dtype="float64", **options)
    params = model.init_params(rng)
    x = rng.normal(size=(2, 5, 3))
    logits, cache = model.forward(params, x)
    grads = model.backward(params, cache, np.ones_like(logits))
    out = model.diagnostics(params, cache, grads)
    assert sorted(k for k in out if k.startswith("alpha.")) == sorted(f"alpha.{w}"
                                                                      for w in weights)
    for w in weights:
        assert out[f"alpha.{w}"] == np.max(np.abs(params[w]))
    h = model.states(cache)["h"]
    assert out["h_absmax"] == np.max(np.abs(h))
    assert out["h_rms_last"] == pytest.approx(np.sqrt(np.mean(h[:, -1] ** 2)))


@pytest.mark.parametrize("T", [12, 13])
def test_hook_with_checkpointed_states_reads_the_stored_ones(rng, T):
    model = build_model("hadamrnn", input_size=2, hidden_size=8, output_size=3,
                        many_to_many=False, dtype="float64", store_every=4)
    params = model.init_params(rng)
    logits, cache = model.forward(params, rng.normal(size=(2, T, 2)))
    out = model.diagnostics(params, cache, model.backward(params, cache,
                                                          np.ones_like(logits)))
    h = model.states(cache)["h"]  # all T states, recomputed
    stored = h[:, 3::4]
    assert out["h_absmax"] == np.max(np.abs(stored))
    if T == 12:
        assert out["h_rms_last"] == pytest.approx(np.sqrt(np.mean(h[:, -1] ** 2)))
    else:
        assert "h_rms_last" not in out
