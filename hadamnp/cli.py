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


def _parse_assignment(text, option):
    """``KEY=VALUE`` with VALUE read as a TOML value (a bare word stays a string)."""
    import tomllib

    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=option)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.replace("-", "_"), value


def _model_options(func):
    """Options naming a model and setting its options (``train``, ``info``, ``golden``...).

    ``--hidden``, ``--block``, ``--bits``, ``--quant-*`` and ``--nonlinear`` are short forms
    of model options; ``-O KEY=VALUE`` sets any option of any registered model.
    """
    options = [
        click.option("--model", default=None,
                     help="Registered model name (list: hadamnp info --list). "
                          "Default: the preset's (hadamrnn)."),
        click.option("--hidden", type=int, default=None,
                     help="Model option hidden_size: hidden size n."),
        click.option("--block", type=int, default=None,
                     help="Model option block_size: block size m of block-hadamrnn "
                          "(default n/4)."),
        click.option("--bits", type=int, default=None,
                     help="Short for --quant-in uniform:K --quant-out uniform:K "
                          "(0 = full precision)."),
        click.option("--quant-in", default=None,
                     help="Quantizer of the input matrix U, e.g. uniform:4, none."),
        click.option("--quant-out", default=None,
                     help="Quantizer of the output matrix V, e.g. uniform:4, none."),
        click.option("--quant-rec", default=None,
                     help="Quantizer of the recurrent parameter, e.g. sign, sign:clipped."),
        click.option("--nonlinear/--linear", default=None,
                     help="Model option nonlinear: relu inside the recurrence "
                          "(default: linear, as the paper)."),
        click.option("-O", "--model-option", "model_option", multiple=True,
                     metavar="KEY=VALUE", help="Set any model option (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_MODEL_FLAGS = {"hidden": "hidden_size", "block": "block_size", "quant_in": "quant_in",
                "quant_out": "quant_out", "quant_rec": "quant_rec", "nonlinear": "nonlinear"}


def _model_table(options):
    """The model options given on the command line, as a ``[model]`` table (``name`` if
    ``--model`` was given). Consumes the model flags from ``options``."""
    from hadamnp.models.quantizers import uniform_spec

    table = {}
    name = options.pop("model", None)
    if name is not None:
        table["name"] = name
    for flag, key in _MODEL_FLAGS.items():
        value = options.pop(flag, None)
        if value is not None:
            table[key] = value
    bits = options.pop("bits", None)
    if bits is not None:
        for key in ("quant_in", "quant_out"):
            if key in table:
                raise click.BadParameter(f"cannot be combined with --{key.replace('_', '-')}",
                                         param_hint="--bits")
            try:
                table[key] = uniform_spec(bits)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--bits") from None
    for text in options.pop("model_option", ()):
        key, value = _parse_assignment(text, "-O/--model-option")
        table[key] = value
    return table


def _given(name):
    """True when option ``name`` was given on the command line (not a default)."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def _check_positive(**sizes):
    """``click.BadParameter`` for the first size below 1 (names as ``--input-size``)."""
    for name, value in sizes.items():
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}",
                                     param_hint="--" + name.replace("_", "-"))


def _golden_options(func):
    """Batch and output options shared by ``golden`` and ``golden-int``."""
    options = [
        click.option("--input-size", type=int, default=3, show_default=True,
                     help="d_in of the random model."),
        click.option("--output-size", type=int, default=5, show_default=True,
                     help="d_out of the random model."),
        click.option("--seq-len", type=int, default=None,
                     help="Sequence length T (random model: default 7; --from-checkpoint: "
                          "the first T steps, default all)."),
        click.option("--batch", type=int, default=3, show_default=True, help="Batch size B."),
        click.option("--many-to-many", is_flag=True,
                     help="Score every step (default: last step only)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the random parameters and batch (>= 0)."),
        click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True),
                     required=True, help="Output .npz file."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _moved_data_options(func):
    """``--npz`` and ``--text`` of commands reading a run: where its data file is now."""
    options = [
        click.option("--npz", type=click.Path(dir_okay=False), default=None,
                     help=".npz archive of an npz run, when it moved since training."),
        click.option("--text", type=click.Path(dir_okay=False), default=None,
                     help="Text file of a text run, when it moved since training."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _random_model_args(options):
    """Shared arguments of a random golden model, checked."""
    seq_len = options.pop("seq_len")
    args = {"seq_len": 7 if seq_len is None else seq_len}
    for key in ("input_size", "output_size", "batch"):
        args[key] = options.pop(key)
    _check_positive(**args)
    seed = options.pop("seed")
    if seed < 0:
        raise click.BadParameter(f"must be >= 0, got {seed}", param_hint="--seed")
    args["seed"] = seed
    args["many_to_many"] = options.pop("many_to_many")
    table = _model_table(options)
    args["model"] = table.pop("name", "hadamrnn")
    args.update(table)
    return args


@main.command()
@_model_options
@_golden_options
@click.option("--from-checkpoint", "checkpoint", type=click.Path(exists=True), default=None,
              help="Golden vectors of a trained run (directory or checkpoint) on the first "
                   "--batch sequences of its task split, instead of a random model.")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Split of --from-checkpoint's task.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory of --from-checkpoint, when it moved since training.")
@click.option("--loss", type=click.Choice(["cross_entropy", "bce", "mse"]),
              default="cross_entropy", show_default=True,
              help="Loss of the random model (bce: --output-size 1; mse: float targets).")
@click.option("--embedding-dim", type=int, default=None,
              help="Put the random model behind an embedding table of this width; "
                   "--input-size is then the vocabulary and x holds token ids.")
@click.option("--quant-embedding", default="none", show_default=True,
              help="Quantizer of the embedding table, e.g. uniform:4.")
@_moved_data_options
def golden(checkpoint, split, data_dir, npz, text, out_path, **options):
    """Write a golden test-vector file (float64 forward pass, states and gradients).

    Any registered model: --model NAME with its options, random parameters from --seed;
    or a trained model with --from-checkpoint RUN.
    """
    from hadamnp.errors import HadamnpError
    from hadamnp.golden.vectors import golden_from_checkpoint, make_golden, write_golden

    try:
        if checkpoint is not None:
            fixed = [name for name in options if name not in ("batch", "seq_len")
                     and _given(name)]
            if fixed:
                raise click.BadParameter("the model and its options come from the checkpoint",
                                         param_hint="--" + fixed[0].replace("_", "-"))
            _check_positive(batch=options["batch"])
            arrays, meta = golden_from_checkpoint(checkpoint, batch=options["batch"],
                                                  seq_len=options["seq_len"], split=split,
                                                  data_dir=data_dir, npz=npz, text=text,
                                                  out=out_path)
        else:
            for name, value in (("--data-dir", data_dir), ("--npz", npz), ("--text", text)):
                if value is not None:
                    raise click.BadParameter("only with --from-checkpoint", param_hint=name)
            table = {key: options.pop(key)
                     for key in ("loss", "embedding_dim", "quant_embedding")}
            if table["embedding_dim"] is not None:
                _check_positive(embedding_dim=table["embedding_dim"])
            arrays, meta = make_golden(**_random_model_args(options), **table)
        write_golden(out_path, arrays, meta)
    except (HadamnpError, OSError) as exc:  # OSError: e.g. the run's data file moved
        raise click.ClickException(str(exc)) from None
    config = meta["model"]["config"]
    click.echo(f"wrote {out_path}: {meta['model']['name']} n={config['hidden_size']} "
               f"B={meta['batch']} T={meta['seq_len']} loss={float(arrays['loss']):.6f}")


# ---------------------------------------------------------------------------- train/eval/info

def _run_options(func):
    """Options describing the task, shared by ``train`` and ``info``."""
    options = [
        click.option("--preset", default=None,
                     help="Named configuration: copy, smnist, pmnist (the paper's), quick "
                          "(default demo), base. Default: the task's preset, else quick."),
        click.option("--task", type=click.Choice(["copy", "smnist", "pmnist", "npz", "adding",
                                                   "text"]),
                     default=None, help="Task (default: the preset's)."),
        click.option("--copy-length", type=int, default=None,
                     help="Copy task total sequence length L (paper: 1000)."),
        click.option("--adding-length", type=int, default=None,
                     help="Adding problem sequence length T (default 200)."),
        click.option("--text", type=click.Path(dir_okay=False), default=None,
                     help="Text file of the byte-level language model (implies --task text)."),
        click.option("--text-window", type=int, default=None,
                     help="Steps per window of the text task (default 128)."),
        click.option("--loss", type=click.Choice(["cross_entropy", "bce", "mse"]), default=None,
                     help="Loss (default: the task's; bce: one logit for binary labels)."),
        click.option("--embedding-dim", type=int, default=None,
                     help="Feed token ids through a trainable embedding of this width "
                          "(default: one-hot)."),
        click.option("--quant-embedding", default=None,
                     help="Quantizer of the embedding table, e.g. uniform:4 (default none)."),
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
                     help="Short for --lr-scale signs=X: learning-rate multiplier of latent "
                          "signs (1 = paper)."),
        click.option("--lr-scale", "lr_scale", multiple=True, metavar="ROLE=X",
                     help="Learning-rate multiplier of the parameters of a role (signs, "
                          "weight, bias, scale, embedding); repeatable."),
        click.option("--weight-decay", "weight_decay", multiple=True, metavar="ROLE=X",
                     help="Weight decay of the parameters of a role; repeatable."),
        click.option("--weight-decay-mode", type=click.Choice(["l2", "decoupled"]),
                     default=None, help="Weight decay as an L2 gradient term (Adam) or "
                                        "decoupled (AdamW). Default l2."),
        click.option("--clip-latent", "clip_latent", multiple=True, metavar="ROLE",
                     help="Clamp the parameters of a role to the bound the model declares "
                          "after every update (signs: [-1, 1]); repeatable."),
        click.option("--momentum", type=float, default=None, help="SGD momentum."),
        click.option("--clip-grad-norm", type=float, default=None,
                     help="Clip the global gradient norm (default: no clipping)."),
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
        click.option("--oialr", default=None, metavar="delay=N,every=N[,beta=X,...]",
                     help="OIALR low-rank training after a full-rank warm-up of `delay` "
                          "steps, checks every `every` steps (options: beta, keep_first, "
                          "keep_last, stable_delay, layer_step, weights=A:B; see "
                          "docs/oialr.md)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_NOT_CONFIG = ("preset", "config_file", "out", "resume_dir", "max_steps", "allow_data_change")


def _role_table(assignments, option):
    table = {}
    for text in assignments:
        role, value = _parse_assignment(text, option)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise click.BadParameter(f"{role}: expected a number, got {value!r}",
                                     param_hint=option)
        table[role] = value
    return table


def _overrides(options):
    """The configuration options given explicitly, in the dict form of
    :meth:`RunConfig.to_dict` (model options as a ``model`` table)."""
    options = dict(options)
    model = _model_table(options)
    lr_scales = _role_table(options.pop("lr_scale", ()), "--lr-scale")
    sign_scale = options.pop("sign_lr_scale", None)
    if sign_scale is not None:
        lr_scales["signs"] = sign_scale
    weight_decay = _role_table(options.pop("weight_decay", ()), "--weight-decay")
    clip = options.pop("clip_latent", ())
    oialr = options.pop("oialr", None)
    values = {key: value for key, value in options.items()
              if value is not None and key not in _NOT_CONFIG}
    for key, value in (("model", model), ("lr_scales", lr_scales),
                       ("weight_decay", weight_decay), ("clip_roles", list(clip))):
        if value:
            values[key] = value
    if oialr is not None:
        from hadamnp.errors import ConfigError
        from hadamnp.models.lowrank import parse_oialr

        try:
            values["oialr"] = parse_oialr(oialr)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--oialr") from None
    if "npz" in values:
        values.setdefault("task", "npz")
    if "text" in values:
        values.setdefault("task", "text")
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
        metrics = "".join(f" {_SHORT.get(key, key)} {value:.3f}"
                          for key, value in _between(event, "loss", "lr"))
        return f"loss {event['loss']:.4f}{metrics} lr {event['lr']:.2e}"

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
        elif kind == "data_change":
            from hadamnp.runs.integrity import describe_data_changes

            click.echo(f"warning: data changed since the checkpoint, continuing as asked "
                       f"(--allow-data-change; logged in metrics.jsonl): "
                       f"{describe_data_changes(event['files'])}", err=True)


_SHORT = {"accuracy": "acc"}  # short names of the figures on progress and epoch lines


def _between(record, first, last):
    """``(key, value)`` of ``record`` after key ``first`` and before key ``last``: the
    loss's metric and the task's figures, which records place between the loss and the
    next fixed key (the loop and :func:`hadamnp.runs.plumbing.evaluate` build them so)."""
    keys = list(record)
    end = keys.index(last) if last in keys else len(keys)
    return [(key, record[key]) for key in keys[keys.index(first) + 1:end]]


def _figures(result, prefix=""):
    metrics = "".join(f"  {key[len(prefix):]} {value:.4f}"
                      for key, value in _between(result, prefix + "loss", prefix + "sequences"))
    text = (f"loss {result[prefix + 'loss']:.4f}{metrics}"
            f"  ({result[prefix + 'sequences']} sequences)")
    if prefix + "baseline" in result:
        text += (f"  baseline {result[prefix + 'baseline']:.4f}"
                 f"  ratio {result[prefix + 'ratio']:.4f}")
    return text


def _epoch_line(record):
    metrics = "".join(f" {_SHORT.get(key[6:], key[6:])} {value:.4f}"
                      for key, value in _between(record, "train_loss", "seconds"))
    line = (f"epoch {record['epoch'] + 1}  step {record['step']}  lr {record['lr']:.3g}  "
            f"train loss {record['train_loss']:.4f}{metrics}")
    if "val_loss" in record:
        line += "  |  val " + _figures(record, "val_")
    return line + f"  [{record['seconds']:.1f} s]"


def _model_line(name, options):
    """``hadamrnn hidden_size=128 quant_in=uniform:4 ...``: a model and its options."""
    return " ".join([name] + [f"{k}={v}" for k, v in options.items() if v is not None])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@main.command()
@_run_options
@_model_options
@_training_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<task>-<model>-n<hidden>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory from its latest checkpoint "
                   "(bit-identical to an uninterrupted run); --epochs may extend it.")
@click.option("--max-steps", type=int, default=None,
              help="Stop (checkpointed, resumable) after this many optimizer steps in total.")
@click.option("--allow-data-change", is_flag=True,
              help="With --resume: continue although a data file changed since the "
                   "checkpoint (logged in metrics.jsonl; the run is then no longer "
                   "bit-identical to an uninterrupted one).")
def train(**options):
    """Train a model; write checkpoints and metrics.jsonl to a run directory.

    With no options: the 'quick' preset, a 128-unit 4-bit HadamRNN on permuted MNIST
    (shipped data), about a minute on two cores. Ctrl-C (or SIGTERM) saves a checkpoint;
    continue with --resume RUN_DIR.
    """
    import signal
    import sys

    from hadamnp.errors import HadamnpError
    from hadamnp.runs.config import resolve_config
    from hadamnp.runs.plumbing import default_run_dir
    from hadamnp.training import loop

    if options["max_steps"] is not None and options["max_steps"] < 1:
        raise click.BadParameter(f"must be >= 1, got {options['max_steps']}",
                                 param_hint="--max-steps")
    if options["allow_data_change"] and options["resume_dir"] is None:
        raise click.BadParameter("only with --resume", param_hint="--allow-data-change")
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
            refused = [name for name in options if _given(name) and name not in
                       (*loop.RESUME_OVERRIDES, "resume_dir", "max_steps",
                        "allow_data_change")]
            if refused:
                raise click.BadParameter(
                    "cannot change a resumed run's trajectory; only "
                    f"{', '.join('--' + k.replace('_', '-') for k in loop.RESUME_OVERRIDES)}"
                    " may be given", param_hint="--" + refused[0].replace("_", "-"))
            if not _given("task"):
                overrides.pop("task", None)  # implied by --text, which may name a moved file
            click.echo(f"resuming {run_dir}")
            result = loop.resume(run_dir, callback=progress, max_steps=options["max_steps"],
                                 allow_data_change=options["allow_data_change"], **overrides)
        else:
            config = resolve_config(options["preset"], options["config_file"], overrides)
            run_dir = run_dir or default_run_dir(config)
            click.echo(f"training {_model_line(config.model, config.model_options)} on "
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


@main.command(name="eval")
@click.argument("path", type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--batches", type=int, default=None, help="Only the first N batches.")
@click.option("--batch-size", type=int, default=None)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory, if it moved since training.")
@_moved_data_options
def eval_command(path, split, batches, batch_size, data_dir, npz, text):
    """Loss and metrics of a run's checkpoint (PATH: run directory or checkpoint file)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.runs.plumbing import evaluate_run

    for name, value in (("--batches", batches), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    try:
        result, config, position = evaluate_run(path, split, batches, batch_size, data_dir,
                                                npz=npz, text=text)
    except (HadamnpError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{_model_line(config.model, config.model_options)} on {config.task}, "
               f"step {position['global_step']} (epoch {position['epoch']})")
    click.echo(f"{split}  " + _figures(result))


def _echo_registry():
    from hadamnp.models.quantizers import QUANTIZERS
    from hadamnp.models.registry import model_entry, model_names, model_options

    click.echo("models")
    for name in model_names():
        click.echo(f"  {name:<16} {model_entry(name).summary}")
        click.echo(f"  {'':<16} options: {', '.join(model_options(name))}")
    click.echo("quantizers (spec name[:args])")
    for name, cls in QUANTIZERS.items():
        fields = ", ".join(f.name for f in cls.__dataclass_fields__.values())
        click.echo(f"  {name:<16} {(cls.__doc__ or '').strip().splitlines()[0]}"
                   + (f"  [args: {fields}]" if fields else ""))


@main.command()
@click.argument("path", type=click.Path(exists=True), required=False)
@_run_options
@_model_options
@click.option("--input-size", type=int, default=None,
              help="d_in (default: the task's); with --embedding-dim, the vocabulary size.")
@click.option("--output-size", type=int, default=None,
              help="d_out: classes or values (default: the task's).")
@click.option("--list", "list_registry", is_flag=True,
              help="List the registered models (with their options) and quantizers.")
def info(path, input_size, output_size, list_registry, **options):
    """Parameter count, storage bits and compression ratio of a model.

    PATH (run directory or checkpoint) describes a trained model; without it, the model
    options (and the preset/task) describe one.
    """
    from hadamnp.errors import HadamnpError
    from hadamnp.runs.config import resolve_config
    from hadamnp.runs.plumbing import model_without_data, restore

    if list_registry:
        _echo_registry()
        return
    overrides = _overrides(options)
    lowrank = None
    try:
        if path is not None:
            if overrides or options["preset"] or input_size or output_size:
                raise click.BadParameter("model options describe a model without PATH; "
                                         "give one or the other", param_hint="PATH")
            from hadamnp.training.oialr import run_lowrank_size

            model, _, _ = restore(path)
            lowrank = run_lowrank_size(path, model)
            click.echo(f"checkpoint     {path}")
        else:
            config = resolve_config(options["preset"], None, overrides)
            model = model_without_data(config, input_size, output_size)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    description = model.describe()
    size = model.size()
    click.echo(f"model          {_model_line(description['name'], description['config'])}")
    if "embedding" in description:
        table = description["embedding"]
        click.echo(f"embedding      {table['vocab_size']:,} x {table['embedding_dim']} table, "
                   f"quantizer {table['quantizer']}, padding id {table['padding_id']}")
    click.echo(f"parameters     {size.parameters:,} ({size.trainable:,} trainable; "
               f"float32 reference model: {size.float32_parameters:,})")
    if lowrank is not None:
        ranks = ", ".join(f"{name} rank {k}/{N}" for name, (k, N) in lowrank["ranks"].items())
        click.echo("oialr          " + (
            f"{ranks}: {lowrank['trainable']:,} trainable of {size.parameters:,} (k² per "
            f"factored matrix), {lowrank['stored']:,} stored while training (U, Σ, Vᵀ)"
            if ranks else "full-rank warm-up (no matrix factored yet)"))
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
@_moved_data_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), required=True)
def export(checkpoint, fmt, bits_act, calib_size, percentile, data_dir, npz, text, out_path):
    """Convert a trained CHECKPOINT (run directory or file) to integers and export it."""
    from hadamnp.deploy.export import deployment_report, export_c, export_npz
    from hadamnp.deploy.integer import convert_run
    from hadamnp.errors import HadamnpError

    if calib_size < 1:
        raise click.BadParameter(f"must be >= 1, got {calib_size}", param_hint="--calib-size")
    try:
        imodel = convert_run(checkpoint, bits_act, calib_size, percentile, data_dir, npz=npz,
                             text=text, out=out_path)
        (export_npz if fmt == "npz" else export_c)(imodel, out_path)
    except (HadamnpError, OSError) as exc:  # OSError: e.g. the run's data file moved
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: n={imodel.n} m={imodel.m} a={imodel.a} "
               f"S_x=2^{imodel.exp_x} S_h=2^{imodel.exp_h} "
               f"({imodel.calibration['method']} over {imodel.calibration['num_sequences']} "
               f"sequences)")
    _echo_deployment(deployment_report(imodel))


@main.command(name="golden-int")
@_model_options
@_golden_options
@click.option("--bits-act", type=int, default=8, show_default=True,
              help="Activation width a.")
def golden_int(bits_act, out_path, **options):
    """Write integer golden traces (x_int, h_int, logits_int and the integer model)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.golden.integer import make_integer_golden, write_integer_golden

    try:
        arrays, meta = make_integer_golden(a=bits_act, **_random_model_args(options))
        write_integer_golden(out_path, arrays, meta)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: n={meta['n']} m={meta['m']} a={meta['a']}")


@main.command()
@click.option("--quick", is_flag=True, help="Short budgets: every comparison in under two minutes.")
@click.option("--threads", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="Threads for Numba, OpenMP and BLAS (set before NumPy loads).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="JSON-lines output (default bench/results/latest.jsonl).")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write a PNG of FWHT time vs n (needs matplotlib).")
def bench(quick, threads, json_path, plot):
    """Run the benchmarks in bench/ (a source checkout) and print figures vs targets."""
    import subprocess
    import sys
    from pathlib import Path

    import hadamnp

    # bench/ lives beside the package in the repository, not inside the installed package.
    runner = Path(hadamnp.__file__).resolve().parent.parent / "bench" / "run_all.py"
    if not runner.is_file():
        raise click.ClickException(
            f"benchmark scripts not found at {runner}: `hadamnp bench` needs a source checkout "
            "of hadamnp installed with `pip install -e .` (a wheel does not ship bench/)")
    args = [sys.executable, str(runner), "--threads", threads]
    args += ["--quick"] if quick else []
    args += ["--json", json_path] if json_path else []
    args += ["--plot", plot] if plot else []
    # A fresh interpreter, so the thread variables are set before NumPy is imported.
    returncode = subprocess.run(args).returncode
    if returncode:
        raise click.ClickException(f"a benchmark module failed (exit status {returncode}); "
                                   "see its traceback above")


@main.command(short_help="Run a grid of training runs on Dask (resumable).")
@click.argument("grid_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Sweep directory (default: sweeps/<grid name>).")
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786). Default: a "
                   "local cluster of single-threaded worker processes.")
@click.option("--workers", type=int, default=None,
              help="Worker processes of the local cluster (default: one per core).")
@click.option("--dry-run", is_flag=True, help="Validate the grid and list its runs only.")
def sweep(grid_file, out_dir, scheduler, workers, dry_run):
    """Train every run of GRID_FILE (a TOML grid: [base], [axes], [[runs]]) on Dask.

    Each run gets its own run directory under the sweep directory; re-running the same
    command skips finished runs and resumes interrupted ones from their checkpoints.
    Needs the sweep extra: pip install 'hadamnp[sweep]'.
    """
    from pathlib import Path

    from hadamnp.errors import HadamnpError
    from hadamnp.sweeps.grid import load_grid
    from hadamnp.sweeps.runner import run_sweep

    if workers is not None and workers < 1:
        raise click.BadParameter(f"must be >= 1, got {workers}", param_hint="--workers")
    if workers is not None and scheduler is not None:
        raise click.BadParameter("--workers sizes the local cluster; a remote scheduler "
                                 "has its own workers", param_hint="--workers")
    try:
        grid = load_grid(grid_file)
        out_dir = Path(out_dir) if out_dir is not None else Path("sweeps") / grid.name
        if dry_run:
            for run in grid.runs:
                click.echo(f"{run.run_id}: {_model_line(run.config.model, run.config.model_options)}"
                           f" on {run.config.task}, seed {run.config.seed}")
            click.echo(f"{len(grid.runs)} runs -> {out_dir}")
            return
        outcome = run_sweep(grid, out_dir, scheduler=scheduler, workers=workers,
                            echo=click.echo)
    except HadamnpError as exc:
        raise click.ClickException(str(exc)) from None
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} of {len(grid.runs)} runs failed "
                                   f"(listed above); re-run the command to retry them")
    click.echo(f"all {len(grid.runs)} runs finished; tables: hadamnp report {out_dir}")


@main.command(short_help="Table (Markdown, CSV) and plots of finished runs.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write report.md, report.csv and the PNGs (default: the sweep "
                   "directory's report/, or ./report).")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write PNG plots (needs matplotlib: pip install 'hadamnp[plot]').")
@click.option("--evaluate-best/--no-evaluate-best", default=True, show_default=True,
              help="Evaluate the best-validation checkpoint on the test split when it is not "
                   "the last one.")
def report(paths, out_dir, plots, evaluate_best):
    """Compare runs: PATHS are sweep directories or run directories.

    Runs differing only by seed are grouped (mean ± std over seeds).
    """
    from pathlib import Path

    from hadamnp.errors import HadamnpError
    from hadamnp.sweeps.report import write_report
    from hadamnp.sweeps.runner import MANIFEST_NAME

    if out_dir is None:
        first = Path(paths[0])
        out_dir = first / "report" if (first / MANIFEST_NAME).exists() else Path("report")
    try:
        table, files, missing = write_report(paths, out_dir, plots, evaluate_best)
    except (HadamnpError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table, nl=False)
    for path in missing:
        click.echo(f"(no checkpoint yet: {path})")
    click.echo("wrote " + ", ".join(str(f) for f in files))
