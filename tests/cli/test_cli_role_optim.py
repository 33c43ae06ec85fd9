"""``hadamnp train`` options of issue 13: role optimizers and diagnostics."""


from hadamnp.io.checkpoint import checkpoint_path, load_checkpoint
from hadamnp.training.metrics import read_metrics
from cli_helpers import run

TINY = ["--task", "copy", "--copy-length", "30", "--hidden", "16", "--batch-size", "16",
        "--epochs", "1", "--steps-per-epoch", "4", "--lr", "0.03", "--val-batches", "1",
        "--test-batches", "1", "--preset", "base", "--log-every", "1"]


def test_optimizer_signs_and_no_diagnostics(tmp_path):
    result = run("train", *TINY, "--optimizer-signs", "bop:threshold=1e-4,adaptivity=0.1",
                 "--no-diagnostics", "--out", tmp_path / "bop")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "bop"))
    assert ckpt.config["run"]["role_optimizers"] == {
        "signs": "bop:threshold=1e-4,adaptivity=0.1"}
    assert ckpt.config["run"]["diagnostics"] is False
    assert "bop_m" in ckpt.optimizer_state
    assert "align.u" not in read_metrics(tmp_path / "bop", "step")[0]
    # resuming may switch diagnostics on (it does not change the trajectory)
    resumed = run("train", "--resume", tmp_path / "bop", "--diagnostics", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    assert "align.u" in read_metrics(tmp_path / "bop", "step")[-1]


def test_role_optimizer_option_and_errors(tmp_path):
    result = run("train", *TINY, "--role-optimizer", "signs=frozen", "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert {r["flips"] for r in read_metrics(tmp_path / "f", "step")} == {0}
    for args, fragment in ((["--role-optimizer", "signs"], "ROLE=SPEC"),
                           (["--optimizer-signs", "bop", "--sign-lr-scale", "0.1"],
                            "lr_scales does not apply"),
                           (["--role-optimizer", "weight=bop"], "role signs only")):
        result = run("train", *TINY, *args, "--out", tmp_path / "bad")
        assert result.exit_code != 0 and fragment in result.output, result.output
        assert "Traceback" not in result.output
