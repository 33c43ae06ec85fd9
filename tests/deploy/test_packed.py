"""The bit-packed engine of fully binary layers (:mod:`hadamnp.deploy.packed`): exactly the
float forward pass, on random awkward sizes and on a trained SiMaN model."""

import numpy as np
import pytest
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.deploy.packed import PackedModel, evaluate_packed_run, packed_products
from hadamnp.errors import ConfigError
from hadamnp.kernels import bitpack
from hadamnp.models.registry import build_model
from hadamnp.reference import bitpack as ref
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import evaluate_run
from hadamnp.training.loop import train


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 130])
def test_code_times_signs_identities(rng, n):
    """(2b - 1).a by the AND form and the XNOR form (reference popcounts) and by the packed
    kernel, all equal to the integer product."""
    B = 5
    code = rng.integers(0, 2, size=(7, n), dtype=np.uint8)
    a = rng.choice([-1, 1], size=(n, B))
    exact = (2 * code.astype(np.int64) - 1) @ a
    b_words = ref.pack_bits(code)                      # (7, nw)
    s_words = ref.pack_signs(a.T)                      # (B, nw): set bit = -1
    pc = lambda w: ref.popcount(w).sum(axis=-1)        # noqa: E731
    and_form = (2 * pc(b_words)[:, None] - 4 * pc(b_words[:, None, :] & s_words[None])
                - n + 2 * pc(s_words)[None, :])
    not_b = ref.pack_bits(1 - code)
    xnor_form = n - 2 * pc(not_b[:, None, :] ^ s_words[None])
    kernel = bitpack.xnor_matmul(bitpack.pack_bits(1 - code), bitpack.pack_signs(a.T), n)
    for name, got in (("AND", and_form), ("XNOR", xnor_form), ("kernel", kernel)):
        np.testing.assert_array_equal(got, exact, err_msg=name)


@pytest.mark.parametrize("n", [1, 63, 64, 65])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("quant_rec, standardize, mtm",
                         [("siman", True, False), ("siman:argmax", False, True),
                          ("sign", True, True)])
def test_packed_engine_equals_the_float_forward_exactly(rng, n, dtype, quant_rec, standardize,
                                                        mtm):
    net = build_model("binary-rnn", input_size=3, hidden_size=n, output_size=4,
                      quant_rec=quant_rec, standardize=standardize, many_to_many=mtm,
                      dtype=dtype)
    params = net.init_params(rng)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 9, 3)).astype(dtype)
        logits, cache = net.forward(params, x)
        packed, packed_cache = PackedModel(net).forward(params, x)
        np.testing.assert_array_equal(packed, logits)
        np.testing.assert_array_equal(packed_cache["h"], cache["h"])
    if n > 1:  # the activations really take both signs (n = 1 standardizes to 0: all +1)
        assert (cache["z"][1:] < 0).any() and (cache["z"][1:] >= 0).any()


def test_products_are_integers_of_the_model_dtype(rng):
    net = build_model("binary-rnn", input_size=1, hidden_size=65, output_size=2,
                      many_to_many=False, dtype="float32")
    params = net.init_params(rng)
    product = packed_products(net, params)["W"]
    a = rng.choice([-1.0, 1.0], size=(65, 3)).astype(np.float32)
    C, _ = net.W.factors(params)
    got = product(a)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, C @ a)


def test_models_without_a_fully_binary_layer_are_refused(rng):
    for name, options in (("dense", dict(quant_rec="siman")),
                          ("binary-rnn", dict(quant_rec="uniform:2"))):
        net = build_model(name, input_size=1, hidden_size=8, output_size=2,
                          many_to_many=False, dtype="float32", **options)
        with pytest.raises(ConfigError, match="no fully binary layer"):
            packed_products(net, net.init_params(rng))


@pytest.fixture(scope="module")
def trained_siman_run(tmp_path_factory):
    """A binary RNN (SiMaN W, n = 65) trained for a few dozen steps on the copy task."""
    run_dir = tmp_path_factory.mktemp("siman")
    config = resolve_config(preset="base", overrides=dict(
        task="copy", copy_length=24, batch_size=15, epochs=2, steps_per_epoch=12, lr=1e-2,
        val_batches=1, test_batches=2, eval_batch_size=33,
        model={"name": "binary-rnn", "hidden_size": 65,
               "quant_rec": "siman:clip=15,clip_steps=20"}))
    result = train(config, run_dir)
    return run_dir, result


def test_packed_engine_on_a_trained_model(trained_siman_run, rng):
    run_dir, result = trained_siman_run
    float_result, _, position = evaluate_run(run_dir, "test")
    packed_result, _, packed_position = evaluate_packed_run(run_dir, "test")
    assert position == packed_position and position["global_step"] == 24
    assert packed_result == float_result
    from hadamnp.runs.plumbing import restore

    net, params, _ = restore(run_dir)
    x = rng.integers(0, 2, size=(7, 24, 10)).astype(np.float32)
    np.testing.assert_array_equal(PackedModel(net).forward(params, x)[0],
                                  net.forward(params, x)[0])


def test_eval_command_engine_option(trained_siman_run):
    run_dir, _ = trained_siman_run
    runner = CliRunner()
    out = {}
    for engine in ("float", "packed"):
        result = runner.invoke(main, ["eval", str(run_dir), "--engine", engine])
        assert result.exit_code == 0, result.output
        out[engine] = result.output
    assert "[packed engine]" in out["packed"]
    assert out["packed"].replace("  [packed engine]", "") == out["float"]
