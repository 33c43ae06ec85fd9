"""Plot the training diagnostics of runs (``metrics.jsonl`` step records) with matplotlib.

Draws, against the step, one panel per figure for each run given: the loss, the sign
flips of the logged step (and the running total), the alignment of the ``u`` gradient
with ``sign(u)``, the mean / minimum latent magnitude ``|u|``, the gradient norm of every
parameter, the quantizer scales ``alpha.U``/``alpha.V``, the share of ``V`` codes at 0
and the largest state ``max |h|``. Keys a run lacks are skipped, so any model's run can be
drawn. matplotlib is optional for hadamnp; this script needs it.

Usage::

    python bench/plot_diagnostics.py RUN_DIR [RUN_DIR ...] --out FILE.png \\
        [--steps FIRST LAST] [--labels NAME ...]
"""

import argparse
import json
from pathlib import Path

PANELS = (
    ("loss", ["loss"], "log"),
    ("sign flips (logged step; running total)", ["flips", "flips_total"], "symlog"),
    ("cos(grad u, sign u)", ["align.u"], "linear"),
    ("latent |u|: mean, min", ["abs_mean.u", "abs_min.u"], "log"),
    ("gradient norms", ["grad_norm.u", "grad_norm.U", "grad_norm.b", "grad_norm.V",
                        "grad_norm.c"], "log"),
    ("quantizer scales alpha", ["alpha.U", "alpha.V"], "linear"),
    ("share of V codes at 0", ["zero_codes.V"], "linear"),
    ("max |h| over the batch and steps", ["h_absmax"], "linear"),
)


def read_steps(run_dir, first=None, last=None):
    records = []
    with open(Path(run_dir) / "metrics.jsonl", encoding="ascii") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("kind") != "step":
                continue
            if (first is not None and r["step"] < first) or (last is not None and
                                                               r["step"] > last):
                continue
            codes = r.get("codes.V")
            if codes:
                # codes lowest first: the zero level sits at index -low = len // 2
                r["zero_codes.V"] = codes[len(codes) // 2] / sum(codes)
            records.append(r)
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", nargs=2, type=int, default=None)
    parser.add_argument("--labels", nargs="+", default=None)
    args = parser.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, last = args.steps or (None, None)
    labels = args.labels or [Path(r).name for r in args.runs]
    runs = [(label, read_steps(run, first, last)) for label, run in zip(labels, args.runs)]
    panels = [p for p in PANELS if any(key in r for _, recs in runs for r in recs
                                       for key in p[1])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.1 * len(panels)), sharex=True,
                             squeeze=False)
    for ax, (title, keys, scale) in zip(axes[:, 0], panels):
        for label, records in runs:
            for key in keys:
                points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
                if points:
                    xs, ys = zip(*points)
                    name = label if len(keys) == 1 else f"{label} {key}"
                    ax.plot(xs, ys, lw=0.8, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
