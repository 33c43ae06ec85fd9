"""What one sign flip does to a trained HadamRNN: the mechanism of the late collapses.

A measurement, not a speed benchmark (not run by ``run_all``). Given a run checkpoint
taken before a loss spike and the step ``K`` whose update flipped signs (read from a run
with ``--log-every 1`` diagnostics: ``flips > 0`` at step ``K``, the loss jump at
``K + 1``), the probe

1. resumes the run exactly (:func:`hadamnp.training.loop.resume`) to step ``K - 1`` and
   then to step ``K``, giving the parameters before and after the flipping update;
2. evaluates on the first ``--val`` validation sequences: before, after, after with the
   flipped latent signs put back (every other parameter updated: the flip's share of the
   damage), and before with only the flips applied;
3. measures the sensitivity to one flip in general: the validation loss of the ``before``
   model with one sign flipped, for ``--singles`` random units, and with ``U``, ``b``,
   ``V`` moved by one Adam-sized step (``lr`` per entry, random signs) for comparison;
4. summarizes the run's per-step diagnostics around flips (``--metrics``): how often a
   flip is followed by a loss spike and how the gradient of ``u`` aligns with ``sign(u)``
   after one (``align.u > 0``: gradient descent shrinks every ``|u|``).

Usage::

    python bench/collapse_probe.py --from CKPT --metrics METRICS.jsonl --step K \\
        --work DIR [--val 2000] [--singles 16] [--json OUT]

``--from`` is a checkpoint of the run at a step below ``K`` (e.g. an epoch checkpoint);
``--metrics`` the ``metrics.jsonl`` it belongs to (needed to resume; summarized in part 4
unless ``--summary-metrics`` names another file of the same trajectory).
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np


def _resume_to(work, step):
    from hadamnp.io.checkpoint import load_checkpoint
    from hadamnp.training.loop import resume

    resume(work, max_steps=step, diagnostics=False, checkpoint_every=None)
    ckpt = load_checkpoint(work / "checkpoint.npz")
    assert ckpt.position["global_step"] == step, ckpt.position
    return ckpt.params


def _flip(params, index):
    out = {name: value.copy() for name, value in params.items()}
    out["u"][index] = -out["u"][index]
    return out


def spike_summary(metrics, window=1, factor=3.0):
    """Flips, the loss after them, and ``align.u`` after flips vs. other steps."""
    steps = [r for r in (json.loads(line) for line in open(metrics))
             if r["kind"] == "step" and "align.u" in r]
    by_step = {r["step"]: r for r in steps}
    if len(by_step) < 2 or any(b - a != 1 for a, b in zip(sorted(by_step), sorted(by_step)[1:])):
        return {"note": "needs consecutive step records (--log-every 1)"}
    flip_steps = [s for s, r in by_step.items() if r["flips"] > 0]
    spikes = after_flip = 0
    align_after, align_other = [], []
    for s, r in by_step.items():
        prev = by_step.get(s - 1)
        if prev is None:
            continue
        (align_after if prev["flips"] > 0 else align_other).append(r["align.u"])
        spike = r["loss"] > factor * prev["loss"]
        spikes += spike
        after_flip += spike and prev["flips"] > 0
    return {"steps": len(by_step), "steps_with_flips": len(flip_steps),
            "loss_spikes_x3": int(spikes), "spikes_right_after_a_flip": int(after_flip),
            "mean_align_after_flip": float(np.mean(align_after)) if align_after else None,
            "mean_align_otherwise": float(np.mean(align_other)) if align_other else None,
            "first_flip_step": min(flip_steps) if flip_steps else None}


def main():
    from hadamnp.runs.plumbing import build_task, evaluate, load_run, model_from_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--singles", type=int, default=16)
    parser.add_argument("--json", default=None)
    parser.add_argument("--summary-metrics", default=None,
                        help="metrics.jsonl with --log-every 1 diagnostics to summarize "
                             "(default: --metrics)")
    args = parser.parse_args()

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copy(args.source, work / "checkpoint.npz")
    shutil.copy(args.metrics, work / "metrics.jsonl")
    before = _resume_to(work, args.step - 1)
    after = _resume_to(work, args.step)
    ckpt, config, _ = load_run(work)
    model = model_from_checkpoint(ckpt, config, work / "checkpoint.npz")
    task = build_task(config)
    batch = min(500, args.val)

    def val(params):
        r = evaluate(model, params, task, "val", batch, max(1, args.val // batch))
        return {"loss": r["loss"], "accuracy": r["accuracy"]}

    flipped = np.flatnonzero(np.signbit(before["u"]) != np.signbit(after["u"]))
    undone = {name: value.copy() for name, value in after.items()}
    undone["u"][flipped] = before["u"][flipped]
    only_flips = _flip(before, flipped)
    out = {"step": args.step, "flipped_units": flipped.tolist(),
           "latent_u_before": before["u"][flipped].tolist(),
           "before": val(before), "after": val(after),
           "after_without_its_flips": val(undone),
           "before_with_only_the_flips": val(only_flips)}
    rng = np.random.default_rng(0)
    n = before["u"].size
    singles = [val(_flip(before, int(i)))["loss"]
               for i in rng.choice(n, size=min(args.singles, n), replace=False)]
    out["one_random_flip_val_loss"] = {"median": float(np.median(singles)),
                                       "min": float(np.min(singles)),
                                       "max": float(np.max(singles)), "all": singles}
    lr = config.lr
    moved = {}
    for name in ("U", "b", "V"):
        params = {k: v.copy() for k, v in before.items()}
        params[name] = params[name] + lr * rng.choice([-1.0, 1.0], size=params[name].shape
                                                      ).astype(params[name].dtype)
        moved[name] = val(params)["loss"]
    out["one_adam_sized_step_val_loss"] = moved
    out["diagnostics_around_flips"] = spike_summary(args.summary_metrics or args.metrics)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
