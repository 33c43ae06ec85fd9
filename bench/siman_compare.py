"""Weight binarizers on permuted MNIST: full precision, sign (unscaled), Ott et al.'s binary
at the Glorot scale, SiMaN fixed-half, SiMaN argmax-k (and SiMaN fixed-half with the released
code's progressive clipping, 15 -> 0 over the run),
each without and with weight decay. A measurement, not a speed benchmark (not run by
``run_all``).

Every arm trains the same model (n = 128, the same seed, data order and budget of optimizer
steps) through ``hadamnp.training.loop.train``; only the quantizer of the binarized matrix
and the weight decay change. Reported per arm: test accuracy, the binarized matrix's code
statistics (fraction of ones, bit entropy), the angle-alignment fraction ``k*/N`` of its
latent weights at the end (about 0.54 for Gaussian rows, 0.37 for Laplacian ones: the
paper's L2 -> Laplacian -> k* argument), the latent weights' excess kurtosis (0 Gaussian,
3 Laplacian) and the deployed model bits.

Suites (``--suite``):

``readout``  HadamRNN (binary Hadamard recurrence, full-precision U, sign learning rate
             x0.1 as the ``quick`` preset): the readout matrix ``V`` (10 x 128) is binarized.
``binary``   The binary RNN (``binary-rnn``): the recurrent matrix ``W`` (128 x 128) of the
             fully binary recurrent layer (sign activations of the standardized state).

"With weight decay" decays every weight matrix (roles ``weight`` and ``binary``) with the
decoupled (AdamW) rule ``p *= 1 - lr wd``; "without" decays nothing. Each arm's run
directory is ``OUT/<suite>/<arm>``; a finished arm is not retrained, an interrupted one
resumes. Results: ``OUT/<suite>/summary.json`` and a Markdown table on stdout.

Usage: ``python bench/siman_compare.py --suite readout --epochs 6 --out DIR`` (pMNIST:
500 batches of 100 per epoch, so 3000 optimizer steps).
Threads: one (set before NumPy loads; the machine is shared).
"""

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hadamnp.io.checkpoint import latest_checkpoint  # noqa: E402
from hadamnp.models.binary import code_statistics, magnitude_statistics  # noqa: E402
from hadamnp.runs.config import resolve_config  # noqa: E402
from hadamnp.runs.plumbing import restore  # noqa: E402
from hadamnp.training.loop import resume, train  # noqa: E402

METHODS = (("fp", "none"), ("sign", "sign"),
           # Ott et al.'s binarization at the matrix's Glorot scale, +-sqrt(6/(fan_in+fan_out))
           ("ott-binary", "binary:H={glorot:.6g}"), ("siman-half", "siman"),
           ("siman-argmax", "siman:argmax"),
           # the released code's progressive magnitude clipping, 15 -> 0 over the whole run
           ("siman-half-clip", "siman:clip=15,clip_steps={steps}"))
SUITES = {
    "readout": {"matrix": "V", "option": "quant_out",
                "model": {"name": "hadamrnn", "hidden_size": 128, "quant_in": "none"},
                "lr_scales": {"signs": 0.1}},
    "binary": {"matrix": "W", "option": "quant_rec",
               "model": {"name": "binary-rnn", "hidden_size": 128}, "lr_scales": {}},
}


def arm_options(suite, spec, decay, args):
    """The run configuration (TOML/dict form) of one arm."""
    s = SUITES[suite]
    options = dict(task="pmnist", batch_size=args.batch_size, lr=args.lr, gamma=1.0,
                   epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                   val_batches=1,
                   test_batches=args.test_batches, eval_batch_size=500, log_every=50,
                   checkpoint_every=100, model={**s["model"], s["option"]: spec})
    if s["lr_scales"]:
        options["lr_scales"] = dict(s["lr_scales"])
    if decay:
        roles = {"weight": args.weight_decay}
        if spec == "sign" or spec.startswith(("siman", "binary")):
            roles["binary"] = args.weight_decay
        options.update(weight_decay=roles, weight_decay_mode="decoupled")
    return options


def command_line(options):
    """The ``hadamnp train`` command equivalent to ``options``."""
    model = options["model"]
    parts = ["hadamnp train --preset base --task pmnist", f"--model {model['name']}",
             f"--hidden {model['hidden_size']}"]
    parts += [f"-O {key}={value}" for key, value in model.items()
              if key not in ("name", "hidden_size")]
    parts += [f"--batch-size {options['batch_size']}", f"--lr {options['lr']:g}",
              f"--gamma 1 --epochs {options['epochs']}",
              f"--steps-per-epoch {options['steps_per_epoch']}",
              f"--seed {options['seed']}", "--val-batches 1",
              f"--test-batches {options['test_batches']}", "--log-every 50"]
    parts += [f"--lr-scale {role}={value:g}" for role, value in
              options.get("lr_scales", {}).items()]
    parts += [f"--weight-decay {role}={value:g}" for role, value in
              options.get("weight_decay", {}).items()]
    if "weight_decay_mode" in options:
        parts.append(f"--weight-decay-mode {options['weight_decay_mode']}")
    return " ".join(parts)


def excess_kurtosis(M):
    """Mean over rows of the excess kurtosis of the row-centred entries."""
    c = M - M.mean(axis=1, keepdims=True)
    return float(np.mean(np.mean(c ** 4, axis=1) / np.mean(c ** 2, axis=1) ** 2 - 3))


def run_arm(run_dir, options):
    """Train (or resume, or reuse) one arm: ``(model, params, result, seconds)``."""
    started = time.perf_counter()
    if latest_checkpoint(run_dir) is None:
        result = train(resolve_config(preset="base", overrides=options), run_dir)
    else:
        result = resume(run_dir)
    model, params, _ = restore(run_dir)
    return model, params, result, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="readout")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=500,
                        help="batches per epoch (pMNIST has 500 batches of 100)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.5)
    parser.add_argument("--test-batches", type=int, default=4,
                        help="test batches of 500 sequences (default 4: 2000 images)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=None, help="arm names to run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    suite = SUITES[args.suite]
    out = args.out / args.suite
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    steps = args.epochs * args.steps_per_epoch
    rows_out, cols_in = {"V": (10, 128), "W": (128, 128)}[suite["matrix"]]
    glorot = (6 / (rows_out + cols_in)) ** 0.5
    for method, spec in METHODS:
        spec = spec.format(steps=steps, glorot=glorot)
        for decay in (False, True):
            arm = f"{method}-{'wd' if decay else 'nowd'}"
            if args.only is not None and arm not in args.only:
                continue
            options = arm_options(args.suite, spec, decay, args)
            model, params, result, seconds = run_arm(out / arm, options)
            weight = getattr(model, suite["matrix"])
            latent = weight.latent(params)
            code = weight.code(params)
            row = {"arm": arm, "method": method, "quantizer": spec, "weight_decay": decay,
                   "test_accuracy": result.test["accuracy"], "test_loss": result.test["loss"],
                   "test_sequences": result.test["sequences"], "steps": result.step,
                   "kstar": magnitude_statistics(latent)["kstar"], "kurtosis": excess_kurtosis(latent),
                   "latent_rms": float(np.sqrt(np.mean(latent ** 2))),
                   "model_bits": model.size().total_bits, "seconds": seconds,
                   "command": command_line(options)}
            if code is not None:
                row.update(code_statistics(code))
            rows.append(row)
            print(json.dumps(row), flush=True)
    facts = {"suite": args.suite, "matrix": suite["matrix"], "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(), "threads": os.environ["OPENBLAS_NUM_THREADS"]}
    (out / "summary.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=1))
    print(f"\n{args.suite}: binarized matrix {suite['matrix']}, {rows[0]['steps'] if rows else 0}"
          f" steps, batch "
          f"{args.batch_size}, lr {args.lr:g}, wd {args.weight_decay:g} (decoupled)\n")
    print("| arm | test acc | ones | entropy | k*/N latent | kurtosis | model bits |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ones = f"{r['ones']:.3f}" if "ones" in r else "-"
        entropy = f"{r['entropy']:.3f}" if "entropy" in r else "-"
        print(f"| {r['arm']} | {100 * r['test_accuracy']:.1f} % | {ones} | {entropy} | "
              f"{r['kstar']:.3f} | {r['kurtosis']:.2f} | {r['model_bits']:,} |")


if __name__ == "__main__":
    main()
