"""The ``hadamnp`` command line: one click group, each command a thin call into the library.

Imports of NumPy-heavy modules happen inside the commands, so ``hadamnp --help`` starts
fast and compiles nothing.
"""

import click

from hadamnp import __version__


@click.group()
@click.version_option(__version__, prog_name="hadamnp")
def main():
    """hadamnp: binary and sparse-ternary orthogonal RNNs (HadamRNN) on the CPU."""


def _golden_options(func):
    """Model and batch options shared by ``golden`` and ``golden-int``."""
    options = [
        click.option("--model", type=click.Choice(["hadamrnn", "block-hadamrnn"]),
                     default="hadamrnn", show_default=True,
                     help="Full binary Hadamard or block (sparse ternary) recurrence."),
        click.option("--hidden", "hidden_size", type=int, default=16, show_default=True,
                     help="Hidden size n (a power of two)."),
        click.option("--block", "block_size", type=int, default=None,
                     help="Block size m (power of two dividing n). Default: n for hadamrnn, "
                          "n/4 for block-hadamrnn."),
        click.option("--bits", type=int, default=4, show_default=True,
                     help="Bit width of Q(U) and Q(V); 0 = unquantized."),
        click.option("--input-size", type=int, default=3, show_default=True),
        click.option("--output-size", type=int, default=5, show_default=True),
        click.option("--seq-len", type=int, default=7, show_default=True),
        click.option("--batch", type=int, default=3, show_default=True),
        click.option("--many-to-many", is_flag=True,
                     help="Score every step (default: last step only)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True),
                     required=True, help="Output .npz file."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _check_positive(**sizes):
    """``click.BadParameter`` for the first size below 1 (names as ``--input-size``)."""
    for name, value in sizes.items():
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}",
                                     param_hint="--" + name.replace("_", "-"))


@main.command()
@_golden_options
def golden(model, hidden_size, block_size, bits, input_size, output_size, seq_len, batch,
           many_to_many, seed, out_path):
    """Write a golden test-vector file (float64 forward pass and STE gradients)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.io.golden import make_golden, write_golden

    _check_positive(input_size=input_size, output_size=output_size, seq_len=seq_len,
                    batch=batch)
    try:
        arrays, meta = make_golden(model=model, hidden_size=hidden_size, block_size=block_size,
                                   bits=bits, input_size=input_size, output_size=output_size,
                                   seq_len=seq_len, batch=batch, many_to_many=many_to_many,
                                   seed=seed)
        write_golden(out_path, arrays, meta)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: {meta['model']} n={meta['hidden_size']} "
               f"m={meta['block_size']} loss={float(arrays['loss']):.6f}")


# ---------------------------------------------------------------------------- train/eval/info

def _model_options(func):
    """Options describing the task and model, shared by ``train`` and ``info``."""
    options = [
        click.option("--preset", default=None,
                     help="Named configuration: copy, smnist, pmnist (the paper's), quick "
                          "(default demo), base. Default: the task's preset, else quick."),
        click.option("--task", type=click.Choice(["copy", "smnist", "pmnist", "npz"]),
                     default=None, help="Task (default: the preset's)."),
        click.option("--model", type=click.Choice(["hadamrnn", "block-hadamrnn", "dense"]),
                     default=None, help="Binary Hadamard W, block (sparse ternary) W, or a "
                                        "dense full-precision W baseline."),
        click.option("--hidden", type=int, default=None, help="Hidden size n (power of two)."),
        click.option("--block", type=int, default=None,
                     help="Block size m of block-hadamrnn (default n/4)."),
        click.option("--bits", type=int, default=None,
                     help="Bit width of Q(U), Q(V); 0 = full precision."),
        click.option("--nonlinear/--linear", default=None,
                     help="relu inside the recurrence (default: linear, as the paper)."),
        click.option("--copy-length", type=int, default=None,
                     help="Copy task total sequence length L (paper: 1000)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _training_options(func):
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML file of options (overrides the preset; the command line "
                          "overrides it)."),
        click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=None),
        click.option("--lr", type=float, default=None, help="Initial learning rate."),
        click.option("--gamma", type=float, default=None, help="StepLR factor per epoch."),
        click.option("--sign-lr-scale", type=float, default=None,
                     help="Learning-rate multiplier of the latent signs u (1 = paper)."),
        click.option("--momentum", type=float, default=None, help="SGD momentum."),
        click.option("--clip-grad-norm", type=float, default=None,
                     help="Clip the global gradient norm (default: no clipping)."),
        click.option("--ste", type=click.Choice(["identity", "clipped"]), default=None,
                     help="Straight-through estimator of sign(u)."),
        click.option("--batch-size", type=int, default=None),
        click.option("--epochs", type=int, default=None),
        click.option("--steps-per-epoch", type=int, default=None,
                     help="Cap on the batches of an epoch."),
        click.option("--train-size", type=int, default=None,
                     help="Train on a fixed subset of this many sequences."),
        click.option("--eval-batch-size", type=int, default=None),
        click.option("--val-batches", type=int, default=None,
                     help="Cap on validation batches per epoch."),
        click.option("--test-batches", type=int, default=None,
                     help="Cap on test batches at the end."),
        click.option("--seed", type=int, default=None,
                     help="Seed of data order/generation and initial parameters."),
        click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="MNIST directory (default: the shipped data/ or $HADAMNP_DATA)."),
        click.option("--npz", type=click.Path(dir_okay=False), default=None,
                     help="User .npz sequence archive (implies --task npz)."),
        click.option("--npz-val-fraction", type=float, default=None),
        click.option("--npz-test-fraction", type=float, default=None),
        click.option("--checkpoint-every", type=int, default=None,
                     help="Also checkpoint every N steps (always: every epoch)."),
        click.option("--log-every", type=int, default=None,
                     help="Write a step line to metrics.jsonl every N steps."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_NOT_CONFIG = ("preset", "config_file", "out", "resume_dir", "max_steps")


def _overrides(options):
    """The configuration options given explicitly (not None), by RunConfig field name."""
    values = {key: value for key, value in options.items()
              if value is not None and key not in _NOT_CONFIG}
    if "npz" in values:
        values.setdefault("task", "npz")
    return values


class _Progress:
    """Training callback: a click progress bar per epoch on a TTY, one line per epoch."""

    def __init__(self, tty):
        self.tty = tty
        self.bar = None

    @staticmethod
    def _show(event):
        if event is None:
            return ""
        return f"loss {event['loss']:.4f} acc {event['accuracy']:.3f} lr {event['lr']:.2e}"

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __call__(self, event):
        kind = event["event"]
        if kind == "epoch_start" and self.tty:
            self.bar = click.progressbar(
                length=event["batches"], label=f"epoch {event['epoch'] + 1}/{event['epochs']}",
                item_show_func=self._show, show_pos=True, show_eta=True)
            self.bar.__enter__()
            self.bar.update(event["batch"])
        elif kind == "step" and self.bar is not None:
            self.bar.update(1, event)
        elif kind == "epoch_end":
            self.close()
            click.echo(_epoch_line(event))
        elif kind == "test":
            click.echo("test  " + _figures(event))


def _figures(result, prefix=""):
    text = (f"loss {result[prefix + 'loss']:.4f}  accuracy {result[prefix + 'accuracy']:.4f}"
            f"  ({result[prefix + 'sequences']} sequences)")
    if prefix + "baseline" in result:
        text += (f"  baseline {result[prefix + 'baseline']:.4f}"
                 f"  ratio {result[prefix + 'ratio']:.4f}")
    return text


def _epoch_line(record):
    line = (f"epoch {record['epoch'] + 1}  step {record['step']}  lr {record['lr']:.3g}  "
            f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}")
    if "val_loss" in record:
        line += "  |  val " + _figures(record, "val_")
    return line + f"  [{record['seconds']:.1f} s]"


def _default_run_dir(config):
    import time
    from pathlib import Path

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config.task}-{config.model}-n{config.hidden}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@main.command()
@_model_options
@_training_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<task>-<model>-n<hidden>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory from its latest checkpoint "
                   "(bit-identical to an uninterrupted run); --epochs may extend it.")
@click.option("--max-steps", type=int, default=None,
              help="Stop (checkpointed, resumable) after this many optimizer steps in total.")
def train(**options):
    """Train a HadamRNN; write checkpoints and metrics.jsonl to a run directory.

    With no options: the 'quick' preset, a 128-unit 4-bit HadamRNN on permuted MNIST
    (shipped data), about a minute on two cores. Ctrl-C (or SIGTERM) saves a checkpoint;
    continue with --resume RUN_DIR.
    """
    import signal
    import sys

    from hadamnp.errors import HadamnpError
    from hadamnp.training import loop
    from hadamnp.training.config import resolve_config

    if options["max_steps"] is not None and options["max_steps"] < 1:
        raise click.BadParameter(f"must be >= 1, got {options['max_steps']}",
                                 param_hint="--max-steps")
    overrides = _overrides(options)
    progress = _Progress(sys.stdout.isatty())
    run_dir = options["resume_dir"] or options["out"]
    # `kill` and job schedulers send SIGTERM: checkpoint as on Ctrl-C instead of dying.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if options["resume_dir"] is not None:
            for name in ("preset", "config_file", "out"):
                if options[name] is not None:
                    raise click.BadParameter("cannot be combined with --resume (the run's "
                                             "configuration is in its checkpoint)",
                                             param_hint="--" + name.replace("_file", ""))
            refused = sorted(set(overrides) - set(loop.RESUME_OVERRIDES))
            if refused:
                raise click.BadParameter(
                    "cannot change a resumed run's trajectory; only "
                    f"{', '.join('--' + k.replace('_', '-') for k in loop.RESUME_OVERRIDES)}"
                    " may be given", param_hint="--" + refused[0].replace("_", "-"))
            click.echo(f"resuming {run_dir}")
            result = loop.resume(run_dir, callback=progress, max_steps=options["max_steps"],
                                 **overrides)
        else:
            config = resolve_config(options["preset"], options["config_file"], overrides)
            run_dir = run_dir or _default_run_dir(config)
            click.echo(f"training {config.model} n={config.hidden} bits={config.bits} on "
                       f"{config.task} (batch {config.batch_size}, {config.epochs} epochs, "
                       f"lr {config.lr:g}, seed {config.seed}) -> {run_dir}")
            result = loop.train(config, run_dir, callback=progress,
                                max_steps=options["max_steps"])
    except KeyboardInterrupt:
        progress.close()
        from pathlib import Path

        if run_dir is not None and (Path(run_dir) / "checkpoint.npz").is_file():
            click.echo(f"\ninterrupted: checkpoint saved; continue with "
                       f"hadamnp train --resume {run_dir}", err=True)
        else:
            click.echo("\ninterrupted before the first checkpoint", err=True)
        sys.exit(130)
    except (HadamnpError, OSError) as exc:  # OSError: e.g. a missing or unreadable data file
        progress.close()
        raise click.ClickException(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.close()
    status = "finished" if result.finished else f"stopped at step {result.step}"
    click.echo(f"{status} in {result.seconds:.1f} s; checkpoint and metrics.jsonl in "
               f"{result.run_dir}")


def _load_checkpoint_or_fail(path):
    from hadamnp.errors import HadamnpError
    from hadamnp.training.loop import load_run

    try:
        return load_run(path)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None


@main.command(name="eval")
@click.argument("path", type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--batches", type=int, default=None, help="Only the first N batches.")
@click.option("--batch-size", type=int, default=None)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory, if it moved since training.")
def eval_command(path, split, batches, batch_size, data_dir):
    """Loss and accuracy of a run's checkpoint (PATH: run directory or checkpoint file)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.training.loop import evaluate_checkpoint

    for name, value in (("--batches", batches), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    try:
        result, config, position = evaluate_checkpoint(path, split, batches, batch_size,
                                                       data_dir)
    except (HadamnpError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{config.model} n={config.hidden} bits={config.bits} on {config.task}, "
               f"step {position['global_step']} (epoch {position['epoch']})")
    click.echo(f"{split}  " + _figures(result))


@main.command()
@click.argument("path", type=click.Path(exists=True), required=False)
@_model_options
@click.option("--input-size", type=int, default=None, help="d_in (default: the task's).")
@click.option("--output-size", type=int, default=None, help="d_out (default: the task's).")
def info(path, input_size, output_size, **options):
    """Parameter count, storage bits and compression ratio of a model.

    PATH (run directory or checkpoint) describes a trained model; without it, the model
    options (and the preset/task) describe one.
    """
    from hadamnp.errors import HadamnpError
    from hadamnp.models.hadamrnn import HadamRNNConfig
    from hadamnp.models.size import model_size
    from hadamnp.training.config import resolve_config
    from hadamnp.training.loop import builtin_task_sizes, model_config

    overrides = _overrides(options)
    try:
        if path is not None:
            if overrides or options["preset"] or input_size or output_size:
                raise click.BadParameter("model options describe a model without PATH; "
                                         "give one or the other", param_hint="PATH")
            ckpt, config, file = _load_checkpoint_or_fail(path)
            try:
                mconfig = HadamRNNConfig(**ckpt.config["model"])
            except (KeyError, TypeError) as exc:
                raise click.ClickException(f"{file}: no valid model description: {exc}") \
                    from None
            click.echo(f"checkpoint     {file} (step {ckpt.position['global_step']}, "
                       f"epoch {ckpt.position['epoch']})")
        else:
            config = resolve_config(options["preset"], None, overrides)
            if input_size is None or output_size is None:
                d_in, d_out, many = builtin_task_sizes(config.task)
            else:
                d_in, d_out, many = input_size, output_size, False
            mconfig = model_config(config, input_size or d_in, output_size or d_out, many)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    size = model_size(mconfig)
    n, m = mconfig.hidden_size, mconfig.m
    recurrent = ("dense float32 W" if mconfig.recurrent == "dense" else
                 "binary W (n sign bits)" if m == n else
                 f"block-ternary W, {n // m} blocks of {m} (n sign bits)")
    click.echo(f"model          {mconfig.model_name}: d_in={mconfig.input_size} n={n} "
               f"d_out={mconfig.output_size}, {recurrent}, "
               f"U/V {mconfig.bits_in}/{mconfig.bits_out} bits")
    click.echo(f"parameters     {size.parameters:,} "
               f"(float32 dense-W model: {size.float32_parameters:,})")
    parts = "  ".join(f"{key} {value:,}" for key, value in size.bits.items())
    click.echo(f"storage        {size.total_bits:,} bits = {size.total_bits / 8192:.2f} KiB  "
               f"[{parts}]")
    click.echo(f"float32        {size.float32_bits:,} bits = {size.float32_bits / 8192:.2f} KiB")
    click.echo(f"compression    {size.compression_ratio:.2f}x smaller than float32")


def _echo_deployment(report):
    """Print the deployed sizes and per-step operation counts of a deployment report."""
    sizes = report["size_bytes"]
    click.echo("deployed size  " + "  ".join(f"{k} {v:,} B" for k, v in sizes.items()))
    click.echo("ops per step   additions / multiplications / popcounts / shifts "
               "(recurrent update, batch 1)")
    for path, ops in report["ops_per_step"].items():
        click.echo(f"  {path:<22} {ops['additions']:>10,} {ops['multiplications']:>10,} "
                   f"{ops['popcounts']:>10,} {ops['shifts']:>8,}")
    readout = report["readout_ops"]["integer"]
    click.echo(f"readout        {readout['additions']:,} additions, "
               f"{readout['multiplications']:,} multiplications per scored step")


@main.command(name="export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["npz", "c"]), default="npz",
              show_default=True, help="Compact .npz or C99 header (examples/c runs it).")
@click.option("--bits-act", type=int, default=8, show_default=True,
              help="Activation width a of the integer inputs and state (8, 12, 16 useful).")
@click.option("--calib-size", type=int, default=1000, show_default=True,
              help="Training sequences used to choose the power-of-two scales.")
@click.option("--percentile", type=float, default=None,
              help="Cover this percentile of per-sequence peak |h| instead of the max.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory, when it moved since training.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), required=True)
def export(checkpoint, fmt, bits_act, calib_size, percentile, data_dir, out_path):
    """Convert a trained CHECKPOINT (run directory or file) to integers and export it."""
    from hadamnp.deploy.export import deployment_report, export_c, export_npz
    from hadamnp.deploy.integer import convert_run
    from hadamnp.errors import HadamnpError

    if calib_size < 1:
        raise click.BadParameter(f"must be >= 1, got {calib_size}", param_hint="--calib-size")
    try:
        imodel = convert_run(checkpoint, bits_act, calib_size, percentile, data_dir)
        (export_npz if fmt == "npz" else export_c)(imodel, out_path)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: n={imodel.n} m={imodel.m} a={imodel.a} "
               f"S_x=2^{imodel.exp_x} S_h=2^{imodel.exp_h} "
               f"({imodel.calibration['method']} over {imodel.calibration['num_sequences']} "
               f"sequences)")
    _echo_deployment(deployment_report(imodel))


@main.command(name="golden-int")
@_golden_options
@click.option("--bits-act", type=int, default=8, show_default=True,
              help="Activation width a.")
def golden_int(model, hidden_size, block_size, bits, bits_act, input_size, output_size, seq_len,
               batch, many_to_many, seed, out_path):
    """Write integer golden traces (x_int, h_int, logits_int and the integer model)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.io.golden_int import make_integer_golden, write_integer_golden

    _check_positive(input_size=input_size, output_size=output_size, seq_len=seq_len,
                    batch=batch)
    try:
        arrays, meta = make_integer_golden(
            model=model, hidden_size=hidden_size, block_size=block_size, bits=bits,
            a=bits_act, input_size=input_size, output_size=output_size, seq_len=seq_len,
            batch=batch, many_to_many=many_to_many, seed=seed)
        write_integer_golden(out_path, arrays, meta)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: {meta['model']} n={meta['n']} m={meta['m']} a={meta['a']}")


@main.command()
@click.option("--quick", is_flag=True, help="Short budgets: every comparison in a few minutes.")
@click.option("--threads", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="Threads for Numba, OpenMP and BLAS (set before NumPy loads).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="JSON-lines output (default: a new file in the temporary directory).")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write a PNG of FWHT time vs n (needs matplotlib).")
def bench(quick, threads, json_path, plot):
    """Run the benchmarks (hadamnp.bench) and print figures vs targets."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "hadamnp.bench", "--threads", threads]
    args += ["--quick"] if quick else []
    args += ["--json", json_path] if json_path else []
    args += ["--plot", plot] if plot else []
    # A fresh interpreter, so the thread variables are set before NumPy is imported.
    returncode = subprocess.run(args).returncode
    if returncode:
        raise click.ClickException(f"a benchmark module failed (exit status {returncode}); "
                                   "see its traceback above")
