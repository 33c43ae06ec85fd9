"""Tests of OIALR in training (hadamnp.training.oialr): the gradient of Σ through the whole
unroll, the schedule on a constructed spectrum, exact resume across rank changes, and the
checkpoint consumers (eval, golden, export, info) of an OIALR run."""

import types

import numpy as np
import pytest
from click.testing import CliRunner

from hadamnp.cli import main
from hadamnp.errors import CheckpointError, ConfigError
from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from hadamnp.models.lowrank import OIALROptions, compose, factorize
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.registry import build_model
from hadamnp.runs.config import resolve_config
from hadamnp.runs.plumbing import evaluate_run, load_run, restore
from hadamnp.training.loop import resume, train
from hadamnp.training.metrics import read_metrics
from hadamnp.training.oialr import LowRankTraining, checkpoint_ranks
from hadamnp.training.optim import make_optimizer
from gradcheck import numeric_grad, rel_err
from run_compare import comparable_metrics, same_params

FD_RTOL = 1e-7


# (model name, options, factored weights): square W, tall U (8, 3), wide U (4, 6) and a
# wide readout V (keep_last_layer = false), each truncated below full rank.
GRAD_CASES = [
    ("dense", dict(hidden_size=4, input_size=6, output_size=3), ("U", "W", "V")),
    ("hadamrnn", dict(hidden_size=8, input_size=3, output_size=5), ("U", "V")),
    ("dense", dict(hidden_size=8, input_size=3, output_size=5, nonlinear=True), ("W",)),
    ("lstm", dict(hidden_size=4, input_size=3, output_size=2), ("W_xi", "W_hf", "W_hg", "V")),
    ("gru", dict(hidden_size=4, input_size=6, output_size=2), ("W_xr", "W_hu", "W_hc")),
    ("rnn", dict(hidden_size=5, input_size=3, output_size=2), ("W_x", "W_h")),
]


@pytest.mark.parametrize("many_to_many", [False, True])
@pytest.mark.parametrize("name, sizes, weights", GRAD_CASES)
def test_sigma_gradient_through_the_unroll(name, sizes, weights, many_to_many):
    """dL/dΣ = Uᵀ dL/dW V (the loop's gradient of a factored matrix) against central
    differences in Σ of L = <outputs, G>, float64, through the whole BPTT (quantizers
    off)."""
    model = build_model(name, quant_in="none", quant_out="none", many_to_many=many_to_many,
                        dtype="float64", **sizes)
    rng = np.random.default_rng(3)
    params = model.init_params(rng)
    B, T = 2, 5
    x = rng.standard_normal((B, T, sizes["input_size"]))
    # A linear functional of the outputs: its gradient is not averaged down to the
    # rounding level of the loss, so central differences resolve it to ~1e-10.
    G = rng.standard_normal((B, T, sizes["output_size"]) if many_to_many
                            else (B, sizes["output_size"]))
    lowrank = LowRankTraining(OIALROptions(1, 1, keep_last_layer=False, weights=weights),
                              model, trainable=list(params), bounds={})
    opt_state = {}
    for w in weights:  # factors below full rank, with a full (non-diagonal) Σ
        U, s, Vt = factorize(params[w])
        k = s.size - 1
        opt_state[f"oialr_U.{w}"] = U[:, :k].copy()
        opt_state[f"oialr_S.{w}"] = np.diag(s[:k]) + 0.1 * rng.standard_normal((k, k))
        opt_state[f"oialr_Vt.{w}"] = Vt[:k].copy()
    lowrank.compose(params, opt_state)

    def loss():
        composed = dict(params)
        lowrank.compose(composed, opt_state)
        return float(np.sum(model.forward(composed, x)[0] * G))

    _, cache = model.forward(params, x)
    grads = lowrank.gradients(model.backward(params, cache, G), opt_state)
    for w in weights:
        S = opt_state[f"oialr_S.{w}"]
        assert grads[w].shape == S.shape
        err = rel_err(grads[w], numeric_grad(loss, S))
        assert err < FD_RTOL, f"{name} {w}: worst relative error {err:.2e}"


# ---------------------------------------------------------------------------- schedule

class Matrices:
    """A stand-in model with one (300, 300) matrix at depth 1 and a readout at depth 2."""

    config = types.SimpleNamespace(dtype="float64")

    def __init__(self, n=300):
        self.n = n

    def param_specs(self):
        return {"W": ParamSpec((self.n, self.n), "weight", depth=1),
                "V": ParamSpec((2, self.n), "weight", depth=2)}


def rotated(rng, sigma):
    """A full square matrix with singular values ``sigma``."""
    k = sigma.size
    qa = np.linalg.qr(rng.standard_normal((k, k)))[0]
    qb = np.linalg.qr(rng.standard_normal((k, k)))[0]
    return qa @ np.diag(sigma) @ qb.T


def spectrum(k, above, top=10.0, beta=0.2):
    """``k`` descending values of which exactly ``above`` are >= ``beta * top``, none
    within 1% of the cutoff (the SVD of a rotated matrix returns them to rounding)."""
    cutoff = beta * top
    high = np.linspace(top, 1.01 * cutoff, above) if above > 1 else np.array([top])
    return np.concatenate([high, np.linspace(cutoff * 0.99, cutoff * 0.01, k - above)])


def test_schedule_prunes_a_constructed_spectrum_exactly(rng):
    """W and then Σ are set before each check to rotated matrices whose spectrum has a
    chosen number of values above β σ₁; the ranks the schedule reports follow the rule
    exactly (halving safeguard; 1% floor: N = 300 -> 3), the moments are zeroed at the
    switch and sliced to (k, k) after, and W = U Σ Vᵀ with orthonormal factors."""
    N = 300
    lowrank = LowRankTraining(OIALROptions(delay=4, every=3, beta=0.2), Matrices(N),
                              trainable=["W", "V"], bounds={})
    assert lowrank.names == ("W",)                   # V: the last layer
    assert [s for s in range(1, 20) if lowrank.due(s)] == [1, 4, 7, 10, 13, 16, 19]
    params = {"W": rotated(rng, spectrum(N, 200)), "V": rng.standard_normal((2, N))}
    opt_state = make_optimizer("adam").init_state(params)
    opt_state["step"] = np.array(4, np.int64)
    record = lowrank.update(params, opt_state, 1)
    assert (record["phase"], record["ranks"], record["stability"]) == \
        ("warmup", {"W": N}, {"W": None})
    record = lowrank.update(params, opt_state, 4)
    assert (record["phase"], record["check"], record["updated"]) == ("switch", 1, ["W"])
    assert record["ranks"] == {"W": 200}
    assert record["stability"]["W"] == pytest.approx(1.0)   # W did not move since step 1
    assert not np.any(opt_state["m.W"]) and opt_state["m.W"].shape == (200, 200)
    assert int(opt_state["step"]) == 4                      # the step count goes on
    ranks = []
    for check, above in enumerate([40, 60, 1, 1, 1, 1, 1], start=2):
        k = opt_state["oialr_S.W"].shape[0]
        opt_state["oialr_S.W"] = rotated(rng, spectrum(k, above))
        lowrank.compose(params, opt_state)
        moments = {key: rng.random((k, k)) for key in ("m.W", "v.W")}
        opt_state.update({key: value.copy() for key, value in moments.items()})
        before = params["W"].copy()
        record = lowrank.update(params, opt_state, 4 + 3 * (check - 1))
        assert record["check"] == check and record["updated"] == ["W"]
        new = record["ranks"]["W"]
        ranks.append(new)
        U, S, Vt = (opt_state[f"oialr_{part}.W"] for part in ("U", "S", "Vt"))
        assert U.shape == (N, new) and S.shape == (new, new) and Vt.shape == (new, N)
        np.testing.assert_allclose(U.T @ U, np.eye(new), atol=1e-10)
        np.testing.assert_allclose(Vt @ Vt.T, np.eye(new), atol=1e-10)
        assert np.array_equal(S, np.diag(np.diag(S)))
        assert np.array_equal(params["W"], compose(U, S, Vt, False))
        for key, value in moments.items():
            assert np.array_equal(opt_state[key], value[:new, :new])
        if new == k:  # no pruning: re-orthogonalization keeps the product
            np.testing.assert_allclose(params["W"], before, atol=1e-10)
        assert record["trainable"] == new * new + 2 * N
    assert ranks == [100, 60, 30, 15, 7, 3, 3]


def test_stable_delay_skips_checks(rng):
    lowrank = LowRankTraining(OIALROptions(delay=2, every=2, beta=0.01, stable_delay=1),
                              Matrices(20), trainable=["W", "V"], bounds={})
    params = {"W": rng.standard_normal((20, 20)), "V": rng.standard_normal((2, 20))}
    opt_state = make_optimizer("sgd", momentum=0.9).init_state(params)
    updated = [lowrank.update(params, opt_state, step)["updated"] for step in (2, 4, 6, 8)]
    assert updated == [["W"], [], ["W"], []]
    assert opt_state["buf.W"].shape == (20, 20)   # SGD's momentum follows Σ too


def test_clipped_matrices_are_refused():
    with pytest.raises(ConfigError, match="clipped to a bound"):
        LowRankTraining(OIALROptions(1, 1), Matrices(8), trainable=["W", "V"],
                        bounds={"W": 0.5})


# ---------------------------------------------------------------------------- runs

def tiny(model="dense", oialr=None, **changes):
    """A copy-task run (L = 30, n = 16) whose U (16, 10) and W (16, 16) are factored at
    step 6 and pruned at steps 6 and 14 (β = 0.3)."""
    options = dict(task="copy", copy_length=30, batch_size=16, epochs=3, steps_per_epoch=8,
                   lr=3e-2, log_every=1, val_batches=1, test_batches=1,
                   model={"name": model, "hidden_size": 16},
                   oialr={"delay": 6, "every": 4, "beta": 0.3, **(oialr or {})})
    return resolve_config(preset="base", overrides={**options, **changes})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = {}
    for name, changes in (("adam", {}),
                          ("sgd", dict(optimizer="sgd", momentum=0.9, lr=0.05,
                                       clip_grad_norm=1.0))):
        run_dir = tmp_path_factory.mktemp(name)
        runs[name] = (train(tiny(**changes), run_dir), run_dir, changes)
    return runs


def test_ranks_and_stability_are_logged(reference):
    result, run_dir, _ = reference["adam"]
    records = read_metrics(run_dir, "oialr")
    assert [(r["step"], r["phase"], r["check"]) for r in records] == [
        (2, "warmup", None), (6, "switch", 1), (10, "check", 2), (14, "check", 3),
        (18, "check", 4), (22, "check", 5)]
    ranks = [r["ranks"] for r in records]
    assert ranks[0] == {"U": 10, "W": 16}
    assert ranks[1]["U"] < 10 and ranks[-1]["W"] < 16          # pruned on this run
    assert all(a[w] >= b[w] for a, b in zip(ranks, ranks[1:]) for w in a)
    assert records[0]["stability"] == {"U": None, "W": None}
    assert all(-1 <= r["stability"][w] <= 1 for r in records[1:] for w in ("U", "W"))
    assert records[-1]["trainable"] == sum(k * k for k in ranks[-1].values()) + 16 + 9 * 16 + 9
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    assert checkpoint_ranks(ckpt.optimizer_state) == ranks[-1]
    assert ckpt.optimizer_state["m"]["W"].shape == (ranks[-1]["W"],) * 2
    for w in ("U", "W"):
        parts = [ckpt.optimizer_state[f"oialr_{p}"][w] for p in ("U", "S", "Vt")]
        assert np.array_equal(result.params[w], compose(*parts, False))


@pytest.mark.parametrize("name, stop_step", [
    ("adam", 2),    # after the first stability measurement of the warm-up
    ("adam", 5),    # just before the switch
    ("adam", 6),    # at the switch (and its rank change)
    ("adam", 13),   # before the second rank change
    ("adam", 14),   # at it
    ("sgd", 7),
    ("sgd", 15),
])
def test_resume_is_bit_identical_across_rank_changes(reference, tmp_path, name, stop_step):
    expected, ref_dir, changes = reference[name]
    stopped = train(tiny(**changes), tmp_path, max_steps=stop_step)
    assert stopped.step == stop_step
    result = resume(tmp_path)
    assert result.finished and same_params(result.params, expected.params)
    assert result.test == expected.test
    assert comparable_metrics(tmp_path) == comparable_metrics(ref_dir)
    final = load_checkpoint(checkpoint_path(tmp_path)).optimizer_state
    for slot, arrays in load_checkpoint(checkpoint_path(ref_dir)).optimizer_state.items():
        if isinstance(arrays, dict):
            assert same_params(final[slot], arrays), slot


def test_off_is_the_plain_run(tmp_path):
    """Without OIALR nothing of it appears: same trajectory as before, no records."""
    config = tiny().replace(oialr=None)
    result = train(config, tmp_path)
    assert not read_metrics(tmp_path, "oialr")
    assert not any(key.startswith("oialr") for key in
                   load_checkpoint(checkpoint_path(tmp_path)).optimizer_state)
    assert result.finished


def test_tampered_checkpoints_are_refused(reference, tmp_path):
    _, ref_dir, _ = reference["adam"]
    path = checkpoint_path(ref_dir, 1)                  # end of epoch 1: step 16
    ckpt = load_checkpoint(path)

    def resumed_with(params=None, optimizer_state=None):
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        save_checkpoint(checkpoint_path(run), type(ckpt)(
            params=params or ckpt.params, optimizer_state=optimizer_state or
            ckpt.optimizer_state, position=ckpt.position, rng_state=ckpt.rng_state,
            config=ckpt.config, metrics={**ckpt.metrics, "jsonl_offset": 0}))
        (run / "metrics.jsonl").write_text("")
        return resume(run)

    moved = dict(ckpt.params, W=ckpt.params["W"] + np.float32(1e-3))
    with pytest.raises(CheckpointError, match="not the product U Σ Vᵀ"):
        resumed_with(params=moved)
    state = {slot: (dict(value) if isinstance(value, dict) else value)
             for slot, value in ckpt.optimizer_state.items()}
    state["oialr_U"]["W"] = state["oialr_U"]["W"][:, :-1]
    with pytest.raises(CheckpointError, match="oialr_U.W"):
        resumed_with(optimizer_state=state)
    plain = {slot: value for slot, value in ckpt.optimizer_state.items()
             if not slot.startswith("oialr")}
    with pytest.raises(CheckpointError, match="should be in low-rank form"):
        resumed_with(optimizer_state=plain)


def test_checkpoint_consumers_see_the_composed_model(reference, tmp_path):
    """eval, golden and info of an OIALR run read the dense U Σ Vᵀ matrices: the
    evaluation equals the run's own final test."""
    from hadamnp.golden.vectors import golden_from_checkpoint

    expected, run_dir, _ = reference["adam"]
    result, _, _ = evaluate_run(run_dir, "test", 1)
    assert result == expected.test
    arrays, meta = golden_from_checkpoint(run_dir, batch=2, seq_len=None, split="test",
                                          data_dir=None)
    assert meta["model"]["name"] == "dense"
    out = CliRunner().invoke(main, ["info", str(run_dir)])
    assert out.exit_code == 0, out.output
    ranks = read_metrics(run_dir, "oialr")[-1]["ranks"]
    assert f"W rank {ranks['W']}/16" in out.output and "oialr" in out.output
    assert f"{read_metrics(run_dir, 'oialr')[-1]['trainable']:,} trainable" in out.output


def test_hadamrnn_input_matrix_and_export(tmp_path):
    """HadamRNN's U is factored (u never is); the integer export of the run works on the
    composed U."""
    from hadamnp.deploy.export import export_npz
    from hadamnp.deploy.integer import convert_run

    result = train(tiny("hadamrnn", epochs=2), tmp_path)
    records = read_metrics(tmp_path, "oialr")
    assert set(records[-1]["ranks"]) == {"U"}
    model, params, _ = restore(tmp_path)
    imodel = convert_run(tmp_path, 8, 64, None, None)
    export_npz(imodel, tmp_path / "model.npz")
    assert (tmp_path / "model.npz").is_file()
    assert same_params(params, result.params)


def test_cli_train_toml_and_resume_rules(tmp_path):
    runner = CliRunner()
    base = ["train", "--preset", "base", "--task", "copy", "--copy-length", "30",
            "--model", "dense", "--hidden", "16", "--batch-size", "16", "--epochs", "1",
            "--steps-per-epoch", "8", "--lr", "0.03"]
    out = runner.invoke(main, base + ["--oialr", "delay=6,every=4,beta=0.3",
                                      "--out", str(tmp_path / "a"), "--max-steps", "7"])
    assert out.exit_code == 0, out.output
    _, config, _ = load_run(tmp_path / "a")
    assert config.oialr["delay"] == 6 and config.oialr["beta"] == 0.3
    out = runner.invoke(main, ["train", "--resume", str(tmp_path / "a"), "--oialr",
                               "delay=1,every=1"])
    assert out.exit_code != 0 and "--oialr" in out.output
    out = runner.invoke(main, ["train", "--resume", str(tmp_path / "a")])
    assert out.exit_code == 0, out.output
    toml = tmp_path / "run.toml"
    toml.write_text('[oialr]\ndelay = 6\nevery = 4\nbeta = 0.3\n')
    out = runner.invoke(main, base + ["--config", str(toml), "--out", str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    assert comparable_metrics(tmp_path / "a") == comparable_metrics(tmp_path / "b")
    for args, message in ((["--oialr", "delay=6"], "needs every"),
                          (["--oialr", "delay"], "key=value"),
                          (["--oialr", "delay=6,every=2,weights=b"],
                           "not a dense weight matrix")):
        out = runner.invoke(main, base + args + ["--out", str(tmp_path / "c")])
        assert out.exit_code != 0 and message in out.output, out.output
    assert not (tmp_path / "c").exists()            # refused before the run directory


def test_no_eligible_matrix_is_refused(tmp_path):
    config = resolve_config(preset="base", overrides=dict(
        task="pmnist", model={"name": "hadamrnn", "hidden_size": 16},
        oialr={"delay": 2, "every": 2}))
    with pytest.raises(ConfigError, match="too skinny"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_lstm_gate_matrices_prune_and_resume(tmp_path):
    """`hadamnp train --model lstm --oialr ...`: every gate matrix is factored on its own,
    pruned by the rule, and an interrupted run resumes bit-identically across rank
    changes."""
    runner = CliRunner()
    args = ["train", "--preset", "base", "--task", "copy", "--copy-length", "30",
            "--model", "lstm", "--hidden", "16", "--batch-size", "16", "--epochs", "2",
            "--steps-per-epoch", "8", "--lr", "0.03", "--log-every", "1",
            "--val-batches", "1", "--test-batches", "1", "--oialr", "delay=6,every=4,beta=0.3"]
    out = runner.invoke(main, args + ["--out", str(tmp_path / "ref")])
    assert out.exit_code == 0, out.output
    records = read_metrics(tmp_path / "ref", "oialr")
    gates = {f"W_{kind}{g}" for kind in "xh" for g in "ifgo"}
    assert set(records[-1]["ranks"]) == gates
    assert any(records[1]["ranks"][w] < records[0]["ranks"][w] for w in gates)
    for stop in (6, 10):
        run = tmp_path / f"stop{stop}"
        out = runner.invoke(main, args + ["--out", str(run), "--max-steps", str(stop)])
        assert out.exit_code == 0, out.output
        out = runner.invoke(main, ["train", "--resume", str(run)])
        assert out.exit_code == 0, out.output
        assert comparable_metrics(run) == comparable_metrics(tmp_path / "ref")
        assert same_params(restore(run)[1], restore(tmp_path / "ref")[1])


def test_lstm_clipped_shadow_weights_are_refused(tmp_path):
    config = tiny("lstm").replace(model_options={"hidden_size": 16, "quant_rec": "ternary"})
    with pytest.raises(ConfigError, match="W_hi, W_hf, W_hg, W_ho would be clipped"):
        train(config, tmp_path / "run")


def test_stacked_lstm_orders_its_layers_by_depth(tmp_path):
    """Two LSTM layers: layer 0's input matrices at depth 0, its recurrent ones at 1, layer
    1's at 2 and 3, the readout at 4; the inclusion order follows the stack."""
    model = build_model("lstm", input_size=10, hidden_size=16, output_size=9, num_layers=2)
    specs = model.param_specs()
    depths = {name: spec.depth for name, spec in specs.items() if spec.depth is not None}
    assert depths["V"] == 4
    for layer in (0, 1):
        for g in "ifgo":
            assert depths[f"l{layer}.W_x{g}"] == 2 * layer
            assert depths[f"l{layer}.W_h{g}"] == 2 * layer + 1
    config = tiny("lstm").replace(model_options={"hidden_size": 16, "num_layers": 2})
    train(config, tmp_path / "run", max_steps=7)
    ranks = read_metrics(tmp_path / "run", "oialr")[-1]["ranks"]
    assert list(ranks) == [f"l{layer}.W_{kind}{g}" for layer in (0, 1) for kind in "xh"
                           for g in "ifgo"]


def test_structured_matrices_are_not_factored(tmp_path):
    config = tiny("lstm", oialr={"weights": ["W_hi"]}).replace(
        model_options={"hidden_size": 16, "param_rec": "lowrank:4"})
    with pytest.raises(ConfigError, match="W_hi.*not a dense weight matrix"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_frozen_signs_with_a_factored_input_matrix_resume_exactly(tmp_path):
    """OIALR on HadamRNN's U next to a role optimizer on its signs: u never moves, U is
    factored, and an interrupted run resumes bit for bit."""
    config = tiny("hadamrnn", oialr={"weights": ["U"]},
                  role_optimizers={"signs": "frozen"})
    expected = train(config, tmp_path / "ref")
    initial = load_checkpoint(checkpoint_path(tmp_path / "ref", 0)).params
    np.testing.assert_array_equal(expected.params["u"], initial["u"])
    assert read_metrics(tmp_path / "ref", "oialr")[-1]["ranks"]["U"] < 10
    train(config, tmp_path / "stopped", max_steps=9)
    result = resume(tmp_path / "stopped")
    assert same_params(result.params, expected.params)
    assert comparable_metrics(tmp_path / "stopped") == comparable_metrics(tmp_path / "ref")
