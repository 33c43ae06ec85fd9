"""Parameter roles drive the training loop: per-role learning-rate scales, weight decay,
latent clipping, frozen parameters, and the sign-flip count."""

import numpy as np
import pytest

from hadamnp.models.hadamrnn import HadamRNN
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.registry import build_model, register_model, unregister_model
from hadamnp.runs.config import RunConfig, resolve_config
from hadamnp.training.loop import ParamGroups, train
from hadamnp.training.metrics import read_metrics


def copy_run(**changes):
    options = dict(task="copy", copy_length=24, batch_size=16, epochs=1, steps_per_epoch=10,
                   lr=0.05, val_batches=1, test_batches=1, log_every=1,
                   model={"name": "hadamrnn", "hidden_size": 16})
    return resolve_config(preset="base", overrides={**options, **changes})


def test_param_groups_follow_the_roles():
    model = build_model("hadamrnn", hidden_size=8, input_size=2, output_size=3,
                        many_to_many=False, dtype="float32")
    config = RunConfig(lr_scales={"signs": 0.1, "bias": 2}, weight_decay={"weight": 1e-3},
                       clip_roles=["signs"])
    groups = ParamGroups.of(model, config)
    assert groups.trainable == ("u", "U", "b", "V", "c")
    assert groups.lr_scales == {"u": 0.1, "U": 1.0, "b": 2.0, "V": 1.0, "c": 2.0}
    assert groups.weight_decay == {"u": 0.0, "U": 1e-3, "b": 0.0, "V": 1e-3, "c": 0.0}
    assert groups.bounds == {"u": 1.0} and groups.signs == ("u",)


def test_clipping_the_signs_role_keeps_u_in_the_unit_interval(tmp_path):
    free = train(copy_run(lr=0.5), tmp_path / "free")
    clipped = train(copy_run(lr=0.5, clip_roles=["signs"]), tmp_path / "clipped")
    assert np.max(np.abs(free.params["u"])) > 1, "vacuous: u never left [-1, 1]"
    assert np.max(np.abs(clipped.params["u"])) <= 1


def test_a_tiny_sign_learning_rate_freezes_the_signs(tmp_path):
    result = train(copy_run(lr_scales={"signs": 1e-12}), tmp_path / "slow")
    flips = [r["flips"] for r in read_metrics(tmp_path / "slow", "step")]
    assert flips == [0] * 10
    normal = [r["flips"] for r in read_metrics(train(copy_run(lr=0.5), tmp_path / "fast")
                                               .run_dir, "step")]
    assert sum(normal) > 0, "vacuous: the signs never flip at lr 0.5"
    assert result.finished


def test_weight_decay_of_one_role_changes_only_that_role_at_the_first_step(tmp_path):
    base = train(copy_run(), tmp_path / "base", max_steps=1)
    decayed = train(copy_run(weight_decay={"bias": 0.5}, weight_decay_mode="decoupled"),
                    tmp_path / "decayed", max_steps=1)
    for name in ("u", "U", "V"):
        np.testing.assert_array_equal(decayed.params[name], base.params[name], err_msg=name)
    assert not np.array_equal(decayed.params["b"], base.params["b"])


class FrozenReadoutBias(HadamRNN):
    """A HadamRNN whose readout bias ``c`` is carried but never trained."""

    def param_specs(self):
        specs = super().param_specs()
        specs["c"] = ParamSpec(specs["c"].shape, "frozen")
        return specs


@pytest.fixture
def frozen_family():
    from hadamnp.models.hadamrnn import HadamRNNConfig

    register_model("hadamrnn-frozen-c", FrozenReadoutBias, HadamRNNConfig,
                   fixed={"recurrence": "hadamard"})
    yield
    unregister_model("hadamrnn-frozen-c")


def test_frozen_parameters_are_never_updated(frozen_family, tmp_path):
    config = copy_run(model={"name": "hadamrnn-frozen-c", "hidden_size": 16})
    start = train(config, tmp_path / "start", max_steps=1)
    from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint

    first = load_checkpoint(checkpoint_path(tmp_path / "start"))
    assert "c" not in first.optimizer_state["m"]
    end = train(config, tmp_path / "end")
    np.testing.assert_array_equal(end.params["c"], start.params["c"])
    assert not np.array_equal(end.params["V"], start.params["V"])
