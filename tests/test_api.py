"""The public API (``import hadamnp``) and the model seam.

The seam is proven, not asserted: a model family written here in plain NumPy (a dense tanh
RNN), registered from this file without editing any hadamnp module, trains through
``hadamnp.train``, the training loop and the ``hadamnp train`` command, resumes bit for
bit, and is read back by ``hadamnp.load``.
"""

import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from click.testing import CliRunner

import hadamnp
from hadamnp.cli import main
from hadamnp.errors import ConfigError
from hadamnp.models import protocol
from hadamnp.models.losses import softmax_cross_entropy
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.registry import register_model, unregister_model
from hadamnp.models.size import FLOAT_BITS, ModelSize


@dataclass(frozen=True)
class ToyConfig:
    input_size: int
    hidden_size: int
    output_size: int
    many_to_many: bool = False
    dtype: str = "float64"
    init_scale: float = 0.3

    def to_dict(self):
        return asdict(self)


class ToyTanhRNN:
    """``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``, ``y_t = V h_t + c``: plain NumPy."""

    def __init__(self, config):
        self.config = config

    def param_specs(self):
        n, d, o = self.config.hidden_size, self.config.input_size, self.config.output_size
        return {"W_x": ParamSpec((n, d), "weight"), "W_h": ParamSpec((n, n), "weight"),
                "b": ParamSpec((n,), "bias"), "V": ParamSpec((o, n), "weight"),
                "c": ParamSpec((o,), "bias")}

    def init_params(self, rng):
        return {name: (self.config.init_scale * rng.standard_normal(spec.shape)).astype(
            self.config.dtype) for name, spec in self.param_specs().items()}

    def check_params(self, params):
        protocol.check_params(self.param_specs(), params, self.config.dtype)

    def state_buffer(self, batch, seq_len):
        return None

    def forward(self, params, x, *, states_out=None, rng=None):
        self.check_params(params)
        x = protocol.check_inputs(x, self.config.input_size, self.config.dtype)
        h = np.zeros((x.shape[0], self.config.hidden_size), dtype=x.dtype)
        states = []
        for t in range(x.shape[1]):
            h = np.tanh(x[:, t] @ params["W_x"].T + h @ params["W_h"].T + params["b"])
            states.append(h)
        H = np.stack(states, axis=1)
        scored = H if self.config.many_to_many else H[:, -1]
        return scored @ params["V"].T + params["c"], {"x": x, "h": H}

    def backward(self, params, cache, dout):
        x, H = cache["x"], cache["h"]
        B, T, n = H.shape
        g = dout if self.config.many_to_many else np.zeros(
            (B, T, self.config.output_size), dtype=H.dtype)
        if not self.config.many_to_many:
            g[:, -1] = dout
        grads = {name: np.zeros_like(value) for name, value in params.items()}
        grads["V"] = np.einsum("bto,btn->on", g, H)
        grads["c"] = g.sum(axis=(0, 1))
        delta = np.zeros((B, n), dtype=H.dtype)
        for t in range(T - 1, -1, -1):
            delta = delta + g[:, t] @ params["V"]
            dpre = delta * (1 - H[:, t] ** 2)
            prev = H[:, t - 1] if t > 0 else np.zeros_like(H[:, 0])
            grads["W_x"] += dpre.T @ x[:, t]
            grads["W_h"] += dpre.T @ prev
            grads["b"] += dpre.sum(axis=0)
            delta = dpre @ params["W_h"]
        return grads

    def weights(self, params):
        return {}

    def states(self, cache):
        return {"h": cache["h"]}

    def size(self):
        count = protocol.param_count(self.param_specs())
        return ModelSize(parameters=count, trainable=count,
                         bits={"all": FLOAT_BITS * count}, float32_parameters=count)

    def describe(self):
        return {"name": "toy-tanh", "config": self.config.to_dict()}


@pytest.fixture
def toy():
    register_model("toy-tanh", ToyTanhRNN, ToyConfig, summary="a test family")
    yield
    unregister_model("toy-tanh")


def toy_run(**changes):
    return {"task": "copy", "copy_length": 24, "batch_size": 16, "epochs": 2,
            "steps_per_epoch": 12, "lr": 0.02, "val_batches": 1, "test_batches": 1,
            "eval_batch_size": 64, "dtype": "float64", "log_every": 1,
            "model": {"name": "toy-tanh", "hidden_size": 16}, **changes}


def test_toy_backward_matches_finite_differences(toy, rng):
    model = hadamnp.build_model("toy-tanh", input_size=3, hidden_size=4, output_size=2,
                                many_to_many=True, dtype="float64")
    params = model.init_params(rng)
    x = rng.standard_normal((2, 5, 3))
    y = rng.integers(0, 2, (2, 5))
    logits, cache = model.forward(params, x)
    grads = model.backward(params, cache, softmax_cross_entropy(logits, y)[1])
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            orig = value[idx]
            losses = []
            for step in (1e-6, -1e-6):
                value[idx] = orig + step
                losses.append(softmax_cross_entropy(model.forward(params, x)[0], y)[0])
            value[idx] = orig
            numeric[idx] = (losses[0] - losses[1]) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-9, err_msg=name)


def test_registered_family_trains_resumes_and_loads(toy, tmp_path):
    full = hadamnp.train(toy_run(), tmp_path / "full")
    assert full.finished and full.step == 24
    losses = [r["loss"] for r in hadamnp.training.metrics.read_metrics(tmp_path / "full",
                                                                       "step")]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]), "the toy family did not learn"
    stopped = hadamnp.train(toy_run(), tmp_path / "split", max_steps=7)
    assert stopped.step == 7 and not stopped.finished
    resumed = hadamnp.resume(tmp_path / "split")
    for name, value in full.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)
    model, params, config = hadamnp.load(tmp_path / "full")
    assert isinstance(model, ToyTanhRNN) and config.model == "toy-tanh"
    assert model.config == ToyConfig(input_size=10, hidden_size=16, output_size=9,
                                     many_to_many=True)
    result = hadamnp.evaluate(model, params, config, split="test",
                              batch_size=config.eval_batch_size, max_batches=1)
    assert result == full.test


def test_registered_family_through_the_cli(toy, tmp_path):
    args = ["train", "--task", "copy", "--copy-length", "24", "--model", "toy-tanh",
            "--hidden", "8", "-O", "init_scale=0.5", "--dtype", "float64", "--epochs", "1",
            "--steps-per-epoch", "5", "--batch-size", "8", "--val-batches", "1",
            "--test-batches", "1", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "toy-tanh hidden_size=8 init_scale=0.5" in result.output
    model, _, _ = hadamnp.load(tmp_path / "run")
    assert (model.config.hidden_size, model.config.init_scale) == (8, 0.5)
    info = CliRunner().invoke(main, ["info", str(tmp_path / "run")])
    assert info.exit_code == 0 and "toy-tanh" in info.output, info.output
    listing = CliRunner().invoke(main, ["info", "--list"])
    assert "toy-tanh" in listing.output and "a test family" in listing.output
    # a role the toy does not have is refused with a message naming the option
    refused = CliRunner().invoke(main, [*args[:-2], "--sign-lr-scale", "0.1",
                                        "--out", str(tmp_path / "other")])
    assert refused.exit_code != 0 and "--sign-lr-scale" in refused.output
    assert "no parameter with role 'signs'" in refused.output
    assert not (tmp_path / "other").exists()


def test_predict_is_deterministic_and_a_copy(rng):
    model = hadamnp.build_model("hadamrnn", input_size=2, hidden_size=8, output_size=3,
                                many_to_many=False, dtype="float64")
    params = model.init_params(rng)
    x = rng.standard_normal((4, 5, 2))
    out = hadamnp.predict(model, params, x)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out, hadamnp.predict(model, params, x))
    with pytest.raises(ConfigError, match="RunConfig or a TaskData"):
        hadamnp.evaluate(model, params, "pmnist")


def test_public_names_and_lazy_import():
    assert set(hadamnp.__all__) == {"__version__", "train", "resume", "load", "predict",
                                    "evaluate", "build_model", "register_model",
                                    "model_names", "RunConfig", "HadamRNN", "HadamRNNConfig",
                                    "fwht"}
    for name in hadamnp.__all__:
        assert getattr(hadamnp, name) is not None
    assert {"hadamrnn", "block-hadamrnn", "dense"} <= set(hadamnp.model_names())
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        hadamnp.trian  # noqa: B018
    code = "import sys, hadamnp; print(sorted(m for m in ('numpy', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", f"import hadamnp loaded {out}"


def test_train_accepts_presets_and_refuses_other_configs(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        hadamnp.train("fastest", tmp_path)
    with pytest.raises(ConfigError, match="config must be"):
        hadamnp.train(42, tmp_path)
