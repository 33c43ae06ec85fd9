"""Accuracy of the integer-only model against its float model, a = 8, 12, 16 bits.

A measurement, not a speed benchmark. Takes a trained run (``--checkpoint PATH``: run
directory or checkpoint file); without one it first trains the ``quick`` preset (sequential
MNIST, HadamRNN n = 64, 4-bit U/V, 1000 steps of batch 32 per epoch; ``--quick``: one
epoch of 300 steps) into ``runs/integer-accuracy`` (reused when already there).

For each activation width ``a`` the checkpoint is converted with
:func:`hadamnp.deploy.integer.convert_run` (scales from the first 1000 training sequences,
max rule; plus the 99.9th-percentile rule at a = 8) and compared with the float model on the
first test sequences: argmax agreement, logit error (max and RMS, of
``logits_scale * logits_int`` against the float logits, relative to ``max |logit|``), the
relative error of the final state ``||S_h h_int_T - h_T|| / ||h_T||``, the fraction of
saturated state entries, and both models' test accuracy. On the copy task, whose accuracy
is dominated by the blank targets, the same figures are also given over the ten recall
positions (the last ten steps): ``recall_agreement``, ``recall_float_accuracy``,
``recall_int_accuracy``.

Run: ``python bench/integer_accuracy.py [--quick] [--checkpoint PATH] [--test N]``.
"""

import argparse
import os
from pathlib import Path

if __name__ == "__main__":
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402

from hadamnp.bench.harness import format_facts, machine_facts, print_table  # noqa: E402

BENCH = "integer-accuracy"
RECALL_STEPS = 10  # copy task: the symbols are recalled over the last ten steps
DEFAULT_RUN = Path(__file__).resolve().parent.parent / "runs" / "integer-accuracy"
WIDTHS = ((8, None), (8, 99.9), (12, None), (16, None))
COLUMNS = ("case", "a", "calibration", "argmax_agreement", "rel_max_logit_error",
           "rel_rms_logit_error", "final_state_error", "saturated_fraction", "float_accuracy",
           "int_accuracy", "recall_agreement", "recall_int_accuracy", "S_h", "q")


def trained_run(quick, run_dir=DEFAULT_RUN):
    """The run directory of a trained quick-preset model (trained here when absent)."""
    from hadamnp.io.checkpoint import latest_checkpoint
    from hadamnp.runs.config import resolve_config
    from hadamnp.training.loop import train

    run_dir = Path(run_dir)
    if latest_checkpoint(run_dir) is None:
        overrides = {"epochs": 1, "steps_per_epoch": 300} if quick else {}
        print(f"[{BENCH}] training the quick preset into {run_dir} ...", flush=True)
        train(resolve_config("quick", None, overrides), run_dir)
    return run_dir


def measure(path, test_size, calib_size=1000):
    """Rows (dicts) of the integer-vs-float comparison for every width in WIDTHS."""
    from hadamnp.deploy.integer import agreement, convert, run_data
    from hadamnp.runs.plumbing import task_inputs

    model, params, task = run_data(path)
    config = model.config
    x_cal, _ = task_inputs(task, config.dtype, calib_size)
    x, y = task_inputs(task, config.dtype, test_size, source="test")
    case = f"{config.model_name} n={config.hidden_size} m={config.m} on {task.name}"
    rows = []
    for a, percentile in WIDTHS:
        imodel = convert(model, params, x_cal, a=a, percentile=percentile)
        r = agreement(model, params, imodel, x, y)
        rows.append({
            "bench": BENCH, "case": case, "a": a,
            "calibration": "max" if percentile is None else f"p{percentile:g}",
            "argmax_agreement": r["argmax_agreement"],
            "rel_max_logit_error": r["max_abs_logit_error"] / r["max_abs_logit"],
            "rel_rms_logit_error": r["rms_logit_error"] / r["max_abs_logit"],
            "max_abs_logit": r["max_abs_logit"], "final_state_error": r["final_state_error"],
            "saturated_fraction": r["saturated_fraction"],
            "float_accuracy": r["float_accuracy"], "int_accuracy": r["int_accuracy"],
            "S_h": f"2^{imodel.exp_h}", "S_x": f"2^{imodel.exp_x}",
            "q": imodel.q, "M_rec": imodel.M_rec, "M_in": imodel.M_in,
            "test_sequences": int(x.shape[0]),
            "checkpoint": str(path)})
        if task.name == "copy":
            rows[-1].update(recall_figures(r, y))
    return rows


def recall_figures(report, y):
    """Agreement and accuracies over the copy task's recall steps (many-to-many logits)."""
    f = report["float_logits"][:, -RECALL_STEPS:].argmax(-1)
    i = report["int_logits"][:, -RECALL_STEPS:].argmax(-1)
    target = y[:, -RECALL_STEPS:]
    return {"recall_agreement": float(np.mean(f == i)),
            "recall_float_accuracy": float(np.mean(f == target)),
            "recall_int_accuracy": float(np.mean(i == target))}


def main(quick=False, checkpoint=None, test_size=None):
    """Train (if needed), measure, print the table; return the rows."""
    path = checkpoint or trained_run(quick)
    rows = measure(path, test_size or (500 if quick else 2000))
    print_table(rows, "integer (a bits) vs float model on test sequences; logit errors "
                      "relative to max |float logit|", columns=COLUMNS)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--test", type=int, default=None, help="test sequences")
    args = parser.parse_args()
    print(format_facts(machine_facts()))
    main(args.quick, args.checkpoint, args.test)
