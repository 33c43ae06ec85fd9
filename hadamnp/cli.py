"""The ``hadamnp`` command line: one click group, each command a thin call into the library.

Imports of NumPy-heavy modules happen inside the commands, so ``hadamnp --help`` starts
fast and compiles nothing. Options whose default comes from the preset show every preset's
value in their help (read from :data:`hadamnp.runs.config.PRESETS` when the help is shown).
"""

import click

from hadamnp import __version__

# Presets in the order their defaults are listed in option help.
_PRESET_ORDER = ("quick", "copy", "smnist", "pmnist", "paper-copy", "paper-smnist",
                 "paper-pmnist", "npz", "base")


def _defaults_text(key, unset):
    """``default: ...`` text of an option whose default is preset ``key``'s value."""
    from hadamnp.runs.config import PRESETS, preset_defaults

    values = preset_defaults(key)
    groups = {}
    for name in sorted(PRESETS, key=lambda n: (_PRESET_ORDER + (n,)).index(n)):
        value = values[name]
        text = unset if value is None else f"{value:g}" if isinstance(value, float) \
            else str(value)
        groups.setdefault(text, []).append(name)
    if len(groups) == 1:
        return f"default: {next(iter(groups))}"
    return "default: " + "; ".join(f"{', '.join(names)}: {text}"
                                   for text, names in groups.items())


class _PresetOption(click.Option):
    """An option defaulting to the preset's value; its help lists the value of each preset.

    ``preset_key`` names the option (see :func:`hadamnp.runs.config.preset_defaults`);
    ``unset`` is how an unset value reads (e.g. ``all`` for a batch cap).
    """

    def __init__(self, *args, preset_key, unset="none", **kwargs):
        self.preset_key, self.unset = preset_key, unset
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx):
        names, text = super().get_help_record(ctx)
        return names, f"{text}  [{_defaults_text(self.preset_key, self.unset)}]"


def _preset_option(*decls, key, unset="none", **kwargs):
    return click.option(*decls, cls=_PresetOption, preset_key=key, unset=unset, default=None,
                        **kwargs)


def _checkpoint_option(func):
    return click.option(
        "--checkpoint", "which", default=None, metavar="last|best|epochN",
        help="Which checkpoint of a run directory: last (checkpoint.npz), best (best "
             "validation accuracy, or loss) or epochN (checkpoint-epochNNN.npz, N as in the "
             "file name).  [default: last]")(func)


def _work(text):
    """Say what a long step is doing (stderr, so that stdout stays the result)."""
    click.echo(text, err=True)


@click.group(context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="hadamnp")
def main():
    """hadamnp: binary and sparse-ternary orthogonal RNNs (HadamRNN) on the CPU.

    Start with `hadamnp train` (the quick demo, about a minute), then `hadamnp eval RUN`,
    `hadamnp plot RUN` and `hadamnp export RUN`. `hadamnp COMMAND --help` shows each
    command's options with their defaults.
    """


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
        _preset_option("--model", key="model.name", metavar="NAME",
                       help="Registered model name (list: hadamnp info --list)."),
        _preset_option("--hidden", key="model.hidden_size", type=int,
                       help="Model option hidden_size: hidden size n."),
        click.option("--block", type=int, default=None,
                     help="Model option block_size: block size m of block-hadamrnn  "
                          "[default: n/4]"),
        click.option("--bits", type=int, default=None,
                     help="Short for --quant-in uniform:K --quant-out uniform:K "
                          "(0 = full precision).  [default: the quantizers' defaults]"),
        _preset_option("--quant-in", key="model.quant_in", unset="the model's",
                       help="Quantizer of the input matrix U, e.g. uniform:4, none."),
        _preset_option("--quant-out", key="model.quant_out", unset="the model's",
                       help="Quantizer of the output matrix V, e.g. uniform:4, none."),
        click.option("--quant-rec", default=None,
                     help="Quantizer of the recurrent parameter(s), e.g. sign, sign:clipped "
                          "(hadamrnn), ternary-stochastic (rnn, gru, lstm).  "
                          "[default: sign (hadamrnn, block-hadamrnn)]"),
        click.option("--nonlinear/--linear", default=None,
                     help="Model option nonlinear: relu inside the recurrence.  "
                          "[default: linear, as the paper]"),
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
                     help="Sequence length T (with --from-checkpoint: the first T steps).  "
                          "[default: 7; --from-checkpoint: all]"),
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


@main.command(short_help="Write a golden test-vector file (float64 forward, states, grads).")
@_model_options
@_golden_options
@click.option("--from-checkpoint", "checkpoint", type=click.Path(exists=True), default=None,
              help="Golden vectors of a trained run (directory or checkpoint) on the first "
                   "--batch sequences of its task split, instead of a random model.")
@_checkpoint_option
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Split of --from-checkpoint's task.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory of --from-checkpoint, when it moved since training.  "
                   "[default: as training]")
@click.option("--loss", type=click.Choice(["cross_entropy", "bce", "mse"]),
              default="cross_entropy", show_default=True,
              help="Loss of the random model (bce: --output-size 1; mse: float targets).")
@click.option("--embedding-dim", type=int, default=None,
              help="Put the random model behind an embedding table of this width; "
                   "--input-size is then the vocabulary and x holds token ids.  "
                   "[default: none]")
@click.option("--quant-embedding", default="none", show_default=True,
              help="Quantizer of the embedding table, e.g. uniform:4.")
@_moved_data_options
def golden(checkpoint, which, split, data_dir, npz, text, out_path, **options):
    """Write a golden test-vector file (float64 forward pass, states and gradients).

    Any registered model: --model NAME with its options, random parameters from --seed;
    or a trained model with --from-checkpoint RUN.
    """
    from hadamnp.errors import HadamnpError
    from hadamnp.golden.vectors import golden_from_checkpoint, make_golden, write_golden
    from hadamnp.runs.plumbing import select_checkpoint

    if which is not None and checkpoint is None:
        raise click.BadParameter("chooses a checkpoint of --from-checkpoint RUN",
                                 param_hint="--checkpoint")
    _work("computing the golden vectors (the first call compiles the kernels, ~15 s)...")
    try:
        if checkpoint is not None:
            checkpoint = select_checkpoint(checkpoint, which)
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
        click.option("--preset", default=None, metavar="NAME",
                     help="Named configuration: quick (the demo, ~1 min), copy, smnist, "
                          "pmnist (the paper's recipes; hours), npz (your own sequences), "
                          "base (the bare defaults).  [default: the task's preset (base "
                          "for adding and text); without a task, quick]"),
        click.option("--task", type=click.Choice(["copy", "smnist", "pmnist", "npz", "adding",
                                                   "text"]),
                     default=None,
                     help="Task: the copy (memory) task, sequential or permuted "
                          "pixel-by-pixel MNIST, your own .npz sequences, the adding "
                          "problem or a byte-level text model (selects the preset of that "
                          "name, if any).  [default: the preset's; quick: pmnist]"),
        _preset_option("--copy-length", key="copy_length", type=int,
                       help="Copy task total sequence length L (paper: 1000)."),
        _preset_option("--adding-length", key="adding_length", type=int,
                       help="Adding problem sequence length T."),
        click.option("--text", type=click.Path(dir_okay=False), default=None,
                     help="Text file of the byte-level language model (implies --task text)."),
        _preset_option("--text-window", key="text_window", type=int,
                       help="Steps per window of the text task."),
        _preset_option("--loss", key="loss", unset="the task's",
                       type=click.Choice(["cross_entropy", "bce", "mse"]),
                       help="Loss (bce: one logit for binary labels)."),
        _preset_option("--embedding-dim", key="embedding_dim", type=int, unset="one-hot",
                       help="Feed token ids through a trainable embedding of this width."),
        _preset_option("--quant-embedding", key="quant_embedding",
                       help="Quantizer of the embedding table, e.g. uniform:4."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _training_options(func):
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML file of options (overrides the preset; the command line "
                          "overrides it). A run's config.toml is one."),
        _preset_option("--optimizer", key="optimizer", type=click.Choice(["adam", "sgd"]),
                       help="Optimizer (Adam with PyTorch's defaults, or SGD)."),
        _preset_option("--lr", key="lr", type=float, help="Initial learning rate."),
        _preset_option("--schedule", key="schedule", type=click.Choice(["step", "cosine"]),
                       help="Learning-rate schedule: step (StepLR, lr gamma^epoch) or cosine "
                            "(lr (1 + cos(pi k/K))/2 over the K steps of the run)."),
        _preset_option("--gamma", key="gamma", type=float,
                       help="StepLR factor per epoch (schedule step)."),
        _preset_option("--warmup-steps", key="warmup_steps", type=int,
                       help="Linear warm-up: scale the rate of step k by min(1, (k+1)/W)."),
        _preset_option("--sign-lr-scale", key="lr_scales.signs", type=float, unset="1",
                       help="Short for --lr-scale signs=X: learning-rate multiplier of latent "
                            "signs (1 = paper)."),
        click.option("--lr-scale", "lr_scale", multiple=True, metavar="ROLE=X",
                     help="Learning-rate multiplier of the parameters of a role (signs, "
                          "weight, binary, bias, scale, embedding); repeatable.  "
                          "[default: 1]"),
        click.option("--weight-decay", "weight_decay", multiple=True, metavar="ROLE=X",
                     help="Weight decay of the parameters of a role; repeatable. Binarized "
                          "latent weights (role binary) are not decayed unless named.  "
                          "[default: 0]"),
        _preset_option("--weight-decay-mode", key="weight_decay_mode",
                       type=click.Choice(["l2", "decoupled"]),
                       help="Weight decay as an L2 gradient term (Adam) or decoupled "
                            "(AdamW)."),
        click.option("--clip-latent", "clip_latent", multiple=True, metavar="ROLE",
                     help="Clamp the parameters of a role to the bound the model declares "
                          "after every update (signs: [-1, 1]); repeatable.  [default: none]"),
        click.option("--role-optimizer", "role_optimizer", multiple=True, metavar="ROLE=SPEC",
                     help="Train the parameters of a role with their own optimizer instead "
                          "of --optimizer: bop[:THRESHOLD,ADAPTIVITY] (signs) or frozen; "
                          "repeatable."),
        _preset_option("--optimizer-signs", key="role_optimizers.signs", metavar="SPEC",
                       unset="the run's optimizer",
                       help="Short for --role-optimizer signs=SPEC: bop (e.g. "
                            "bop:threshold=0.1,adaptivity=1e-3) or frozen."),
        _preset_option("--momentum", key="momentum", type=float, help="SGD momentum."),
        _preset_option("--clip-grad-norm", key="clip_grad_norm", type=float,
                       help="Clip the global gradient norm to this value."),
        _preset_option("--batch-size", key="batch_size", type=int,
                       help="Training sequences per optimizer step."),
        _preset_option("--epochs", key="epochs", type=int, help="Training epochs."),
        _preset_option("--steps-per-epoch", key="steps_per_epoch", type=int, unset="all",
                       help="Cap on the batches of an epoch."),
        _preset_option("--train-size", key="train_size", type=int, unset="all",
                       help="Train on a fixed subset of this many sequences."),
        _preset_option("--eval-batch-size", key="eval_batch_size", type=int,
                       help="Sequences per batch when evaluating (memory only)."),
        _preset_option("--val-batches", key="val_batches", type=int, unset="all",
                       help="Cap on validation batches per epoch (each --eval-batch-size "
                            "sequences; the epoch line shows the count)."),
        _preset_option("--test-batches", key="test_batches", type=int, unset="all",
                       help="Cap on test batches at the end (all: the whole test split, as "
                            "hadamnp eval)."),
        _preset_option("--seed", key="seed", type=int,
                       help="Seed of data order/generation and initial parameters."),
        _preset_option("--dtype", key="dtype", type=click.Choice(["float32", "float64"]),
                       help="Floating-point type of parameters and activations."),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="MNIST directory.  [default: $HADAMNP_DATA, the checkout's data/, "
                          "the installed share/hadamnp/data, ./data]"),
        click.option("--npz", type=click.Path(dir_okay=False), default=None,
                     help="Your own .npz sequence archive (implies --task npz and preset "
                          "npz; see the README for its keys)."),
        _preset_option("--npz-val-fraction", key="npz_val_fraction", type=float,
                       help="Fraction of the .npz training arrays held out for validation "
                            "(when the archive has no x_val/y_val)."),
        _preset_option("--npz-test-fraction", key="npz_test_fraction", type=float,
                       help="Fraction of the .npz training arrays held out for test (when "
                            "the archive has no x_test/y_test)."),
        _preset_option("--checkpoint-every", key="checkpoint_every", type=int,
                       help="Also checkpoint every N steps (always: every epoch)."),
        _preset_option("--keep-last", key="keep_last", type=int, unset="all",
                       help="Keep only the last K end-of-epoch checkpoints (checkpoint.npz "
                            "and checkpoint-best.npz are always kept)."),
        _preset_option("--patience", key="patience", type=int,
                       help="Early stopping: stop after this many epochs without a better "
                            "validation figure (accuracy, or loss for regression and "
                            "baseline tasks)."),
        _preset_option("--log-every", key="log_every", type=int,
                       help="Write a step line to metrics.jsonl every N steps."),
        _preset_option("--diagnostics/--no-diagnostics", key="diagnostics",
                       help="Training diagnostics in the logged step lines (gradient norms, "
                            "latent-sign magnitudes, quantizer scales and codes, max |h|)."),
        click.option("--oialr", default=None, metavar="delay=N,every=N[,beta=X,...]",
                     help="OIALR low-rank training after a full-rank warm-up of `delay` "
                          "steps, checks every `every` steps (options: beta, "
                          "keep_first_layer, keep_last_layer, stable_delay, layer_step, "
                          "weights=A:B; see "
                          "docs/oialr.md).  [default: full rank]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_NOT_CONFIG = ("preset", "config_file", "out", "resume_dir", "max_steps", "progress_every",
               "allow_data_change")


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
    role_optimizers = {}
    for text in options.pop("role_optimizer", ()):
        role, _, spec = text.partition("=")
        if not spec.strip() or not role.strip():
            raise click.BadParameter(f"expected ROLE=SPEC, got {text!r}",
                                     param_hint="--role-optimizer")
        role_optimizers[role.strip()] = spec.strip()
    signs_optimizer = options.pop("optimizer_signs", None)
    if signs_optimizer is not None:
        role_optimizers["signs"] = signs_optimizer
    clip = options.pop("clip_latent", ())
    oialr = options.pop("oialr", None)
    values = {key: value for key, value in options.items()
              if value is not None and key not in _NOT_CONFIG}
    for key, value in (("model", model), ("lr_scales", lr_scales),
                       ("weight_decay", weight_decay), ("clip_roles", list(clip)),
                       ("role_optimizers", role_optimizers)):
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


def _model_line(name, options):
    """``hadamrnn hidden_size=128 quant_in=uniform:4 ...``: a model and its options."""
    return " ".join([name] + [f"{k}={v}" for k, v in options.items() if v is not None])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@main.command(short_help="Train a model (default: the one-minute quick demo).")
@_run_options
@_model_options
@_training_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory.  [default: runs/<task>-<model>-n<hidden>-<time>]")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory from its latest checkpoint "
                   "(bit-identical to an uninterrupted run); --epochs may extend it.")
@click.option("--max-steps", type=int, default=None,
              help="Stop (checkpointed, resumable) after this many optimizer steps in "
                   "total.  [default: none]")
@click.option("--progress-every", type=float, default=30.0, show_default=True,
              metavar="SECONDS",
              help="When the output is not a terminal (a log file), print a progress line "
                   "every SECONDS (0: epoch lines only).")
@click.option("--allow-data-change", is_flag=True,
              help="With --resume: continue although a data file changed since the "
                   "checkpoint (logged in metrics.jsonl; the run is then no longer "
                   "bit-identical to an uninterrupted one).")
def train(**options):
    """Train a model; write checkpoints and metrics.jsonl to a run directory.

    With no options: the 'quick' preset, a 128-unit 4-bit HadamRNN on permuted MNIST
    (shipped data), about a minute on two cores. Ctrl-C (or SIGTERM) saves a checkpoint;
    continue with --resume RUN_DIR. The run directory keeps checkpoint.npz (latest),
    checkpoint-best.npz (best validation figure), the last --keep-last end-of-epoch
    checkpoints, config.toml and metrics.jsonl (hadamnp plot RUN draws it).
    """
    import signal
    import sys

    from hadamnp._progress import TrainingProgress
    from hadamnp.errors import HadamnpError
    from hadamnp.runs.config import resolve_config
    from hadamnp.runs.plumbing import default_run_dir
    from hadamnp.training import loop
    from hadamnp.training.metrics import primary_figure

    if options["max_steps"] is not None and options["max_steps"] < 1:
        raise click.BadParameter(f"must be >= 1, got {options['max_steps']}",
                                 param_hint="--max-steps")
    if options["progress_every"] < 0:
        raise click.BadParameter(f"must be >= 0, got {options['progress_every']}",
                                 param_hint="--progress-every")
    if options["allow_data_change"] and options["resume_dir"] is None:
        raise click.BadParameter("only with --resume", param_hint="--allow-data-change")
    overrides = _overrides(options)
    progress = TrainingProgress(click.echo, sys.stdout.isatty(), options["progress_every"])
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
                       (*loop.RESUME_OVERRIDES, "resume_dir", "max_steps", "progress_every",
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
                       f"{config.task} (preset {config.preset}, batch {config.batch_size}, "
                       f"{config.epochs} epochs, lr {config.lr:g}, seed {config.seed}) -> "
                       f"{run_dir}")
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
    if result.best_epoch is not None:
        name, _ = primary_figure(result.history[-1])
        click.echo(f"best validation {name} at epoch {result.best_epoch + 1}: hadamnp eval "
                   f"{result.run_dir} --checkpoint best")


def _integer_options(func):
    """Options of the conversion to integers, shared by ``eval`` and ``export``."""
    options = [
        click.option("--bits-act", type=int, default=16, show_default=True,
                     help="Activation width a of the integer inputs and state, 6..24 (the "
                          "quick model: a = 16 and 12 keep its accuracy, 8 loses about 25 "
                          "points)."),
        click.option("--calib-size", type=int, default=1000, show_default=True,
                     help="Training sequences used to choose the power-of-two scales."),
        click.option("--percentile", type=float, default=None,
                     help="Cover this percentile of per-sequence peak |h| instead of the "
                          "max.  [default: the max]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _convert(file, bits_act, calib_size, percentile, moved, out=None):
    """The float model, parameters, task and loss of a checkpoint file, and its integer
    model. ``moved``: ``(data_dir, npz, text)``, where the run's data are now; ``out``: a
    file about to be written (refused when it is an input or a file of the run)."""
    from hadamnp.deploy.check import check_bits_act
    from hadamnp.deploy.integer import convert
    from hadamnp.runs.integrity import check_output
    from hadamnp.runs.plumbing import build_task, relocate, restore, run_loss, task_inputs

    check_bits_act(bits_act)
    if calib_size < 1:
        raise click.BadParameter(f"must be >= 1, got {calib_size}", param_hint="--calib-size")
    model, params, config = restore(file)
    config = relocate(config, *moved)
    task = build_task(config)
    if out is not None:
        check_output(out, file, task)
    _work(f"converting to integers: a = {bits_act}, scales calibrated on {calib_size} "
          f"training sequences (the first call compiles the kernels)...")
    x, _ = task_inputs(task, model.config.dtype, calib_size)
    imodel = convert(model, params, x, a=bits_act, percentile=percentile)
    return model, params, task, run_loss(config, task), imodel


def _compare_lines(result, a):
    """The float and integer figures of a :func:`hadamnp.deploy.check.compare` result."""
    def metrics(kind):
        return "".join(f"  {name} {result[f'{kind}_{name}']:.4f}" for name in result["metrics"])

    agreement = ("" if result["agreement"] is None else
                 f"agreement {100 * result['agreement']:.2f} % of {result['positions']} "
                 f"scored predictions; ")
    return [f"float    loss {result['float_loss']:.4f}{metrics('float')}  "
            f"({result['sequences']} sequences)",
            f"integer  loss {result['int_loss']:.4f}{metrics('int')}  (a = {a})",
            f"{agreement}{100 * result['saturated_fraction']:.2f} % of integer states "
            f"saturated"]


@main.command(name="eval", short_help="Loss and accuracy of a run (float, integer or C engine).")
@click.argument("path", type=click.Path(exists=True))
@_checkpoint_option
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Task split to evaluate on.")
@click.option("--batches", type=int, default=None,
              help="Only the first N batches.  [default: the whole split]")
@click.option("--batch-size", type=int, default=None,
              help="Sequences per batch.  [default: the run's eval_batch_size]")
@click.option("--engine", type=click.Choice(["float", "packed", "integer", "c"]),
              default="float", show_default=True,
              help="float: the trained model; packed: its fully binary layers by "
                   "XNOR-popcount on packed bits (model binary-rnn; the same logits "
                   "exactly); integer: its integer-only conversion (as exported), next to "
                   "the float figures; c: also a runner built from the exported header "
                   "(--runner), checked against the Python engine.")
@_integer_options
@click.option("--runner", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --engine c: the runner executable (examples/c/hadamrnn_int.c "
                   "compiled with the header of hadamnp export RUN --format c and the same "
                   "--bits-act, --calib-size, --percentile).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory, if it moved since training.  [default: as training]")
@_moved_data_options
def eval_command(path, which, split, batches, batch_size, engine, bits_act, calib_size,
                 percentile, runner, data_dir, npz, text):
    """Loss and metrics of a run's checkpoint (PATH: run directory or checkpoint file).

    By default the whole split: the same test figure as the end of training. With --engine
    integer (or c) the model is converted as `hadamnp export` does and both the float and
    the integer figures are printed.
    """
    from hadamnp._progress import figures
    from hadamnp.errors import HadamnpError
    from hadamnp.runs.plumbing import evaluate_run, load_run, select_checkpoint

    for name, value in (("--batches", batches), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if (engine == "c") != (runner is not None):
        raise click.BadParameter("--engine c needs --runner, and --runner needs --engine c",
                                 param_hint="--runner")
    try:
        file = select_checkpoint(path, which)
        ckpt, config, resolved = load_run(file)
        position = ckpt.position
        click.echo(f"{_model_line(config.model, config.model_options)} on {config.task}, "
                   f"step {position['global_step']} (epoch {position['epoch']}), {resolved}")
        if engine in ("float", "packed"):
            packed = None
            if engine == "packed":
                from hadamnp.deploy.packed import packed_engine as packed
            result, _, _ = evaluate_run(file, split, batches, batch_size, data_dir,
                                        npz=npz, text=text, engine=packed)
            click.echo(f"{split}  " + figures(result)
                       + ("  [packed engine]" if engine == "packed" else ""))
            return
        from hadamnp.deploy.check import compare, run_runner

        model, params, task, loss, imodel = _convert(file, bits_act, calib_size, percentile,
                                                     (data_dir, npz, text))
        size = batch_size or config.eval_batch_size
        count = None if batches is None else batches * size
        _work(f"evaluating the float and integer models on {split}...")
        result = compare(model, params, imodel, task, split, count, size, loss)
        for line in _compare_lines(result, bits_act):
            click.echo(f"{split}  {line}")
        if engine == "c":
            _work(f"running {runner} on {result['sequences']} sequences...")
            ran = run_runner(runner, imodel, task, model.config.dtype, split, count,
                             loss=loss)
            scores = "  ".join(f"{name} {ran['runner'][name]:.4f}" for name in ran["metrics"])
            click.echo(f"{split}  C runner {scores}  ({ran['sequences']} sequences; outputs "
                       f"identical to the Python integer engine on {ran['identical']} of "
                       f"them)")
    except (HadamnpError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if engine == "c" and ran["identical"] != ran["sequences"]:
        raise click.ClickException(
            f"the runner's logits differ from the Python integer engine's on "
            f"{ran['sequences'] - ran['identical']} sequences: was {runner} built from "
            f"`hadamnp export {path} --format c` with the same --bits-act, --calib-size and "
            f"--percentile?")


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
    import hadamnp.models.structured  # noqa: F401  (registers ldr and lowrank)
    from hadamnp.models.weights import PARAMETRIZATIONS

    click.echo("weight parametrizations (spec name[:args]; options param_in, param_rec, "
               "param_out)")
    for name, cls in PARAMETRIZATIONS.items():
        fields = ", ".join(f.name for f in cls.__dataclass_fields__.values())
        click.echo(f"  {name:<16} {(cls.__doc__ or '').strip().splitlines()[0]}"
                   + (f"  [args: {fields}]" if fields else ""))


@main.command(short_help="Parameters, storage bits and compression ratio of a model.")
@click.argument("path", type=click.Path(exists=True), required=False)
@_run_options
@_model_options
@click.option("--input-size", type=int, default=None,
              help="Input size d_in; with --embedding-dim, the vocabulary size.  "
                   "[default: the task's]")
@click.option("--output-size", type=int, default=None,
              help="Output size d_out: classes or values.  [default: the task's]")
@click.option("--list", "list_registry", is_flag=True,
              help="List the registered models (with their options), quantizers and "
                   "weight parametrizations.")
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
    _echo_matrices(size.matrices)


def _echo_matrices(matrices):
    """Per-matrix parameter counts (``ModelSize.matrices``), with each one's ratio to its
    dense float32 count."""
    if not matrices:
        return
    click.echo(f"matrices       {'name':<14} {'shape':>11}  {'parametrization':<16} "
               f"{'quantizer':<12} {'parameters':>10} {'dense':>10} {'ratio':>8}")
    for name, m in matrices.items():
        shape = "x".join(str(d) for d in m["shape"])
        if m["parametrization"] == "shared":
            click.echo(f"               {name:<14} {shape:>11}  {'shared':<16} {'':<12} "
                       f"{m['parameters']:>10,} {'':>10} {'':>8}  read by "
                       f"{', '.join(m['readers'])}")
            continue
        ratio = m["dense"] / m["parameters"] if m["parameters"] else float("inf")
        extra = f"  + shared {', '.join(m['shared'])}" if m["shared"] else ""
        click.echo(f"               {name:<14} {shape:>11}  {m['parametrization']:<16} "
                   f"{m['quantizer']:<12} {m['parameters']:>10,} {m['dense']:>10,} "
                   f"{ratio:>7.1f}x{extra}")


# What each line of the deployed sizes counts (hadamnp.deploy.export.deployment_report).
_SIZE_LINES = (
    ("float32_reference", "float32 reference",
     "float32 weights, dense n x n recurrence (hadamnp info)"),
    ("float_model", "trained model", "{p}-bit U, V codes, n sign bits, float32 b, c, 2 scales"),
    ("integer_packed", "integer, packed", "same codes and signs, int64 b_fine, int32 c_int, "
                                          "scalars"),
    ("integer_exported", "integer, as exported", ".npz/.h arrays: int8 codes, uint64 sign "
                                                 "words, int64 b_fine"),
)


def _echo_deployment(report):
    """Print the deployed sizes (explained) and per-step operation counts of a report."""
    sizes, p = report["size_bytes"], report["shape"]["p_in"]
    click.echo("deployed size (bytes)")
    for key, label, what in _SIZE_LINES:
        click.echo(f"  {label:<21} {sizes[key]:>8,}  {what.format(p=p)}")
    click.echo("  (the integer model is larger than the trained one: it keeps the bias at 2^-q "
               "resolution\n  in int64, 8 B per unit, so that each step rounds once; "
               "docs/integer-inference.md)")
    click.echo("ops per step   additions / multiplications / popcounts / shifts "
               "(recurrent update, batch 1)")
    for path, ops in report["ops_per_step"].items():
        click.echo(f"  {path:<22} {ops['additions']:>10,} {ops['multiplications']:>10,} "
                   f"{ops['popcounts']:>10,} {ops['shifts']:>8,}")
    readout = report["readout_ops"]["integer"]
    click.echo(f"readout        {readout['additions']:,} additions, "
               f"{readout['multiplications']:,} multiplications per scored step")


@main.command(name="export",
              short_help="Convert a run to integers, check it on test data, write .npz/.h.")
@click.argument("checkpoint", type=click.Path(exists=True))
@_checkpoint_option
@click.option("--format", "fmt", type=click.Choice(["npz", "c"]), default="npz",
              show_default=True, help="Compact .npz or C99 header (examples/c runs it).")
@_integer_options
@click.option("--eval-split", type=click.Choice(["test", "val"]), default="test",
              show_default=True, help="Split on which the integer model is checked.")
@click.option("--eval-size", type=int, default=None,
              help="Check on the first N sequences of --eval-split (0: skip the check).  "
                   "[default: the whole split]")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="MNIST directory, when it moved since training.  [default: as training]")
@_moved_data_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True),
              required=True, help="Output file (.npz, or .h with --format c).")
def export(checkpoint, which, fmt, bits_act, calib_size, percentile, eval_split, eval_size,
           data_dir, npz, text, out_path):
    """Convert a trained CHECKPOINT (run directory or file) to integers and export it.

    The integer model is checked against the float model on the run's test split (both
    accuracies and losses, and how often their predictions agree); a loss of more than one
    accuracy point is reported as a WARNING. The deployed sizes are explained line by line.
    """
    from hadamnp.deploy.check import MAX_DROP, accuracy_lost, compare
    from hadamnp.deploy.export import deployment_report, export_c, export_npz
    from hadamnp.errors import HadamnpError
    from hadamnp.runs.plumbing import select_checkpoint

    if eval_size is not None and eval_size < 0:
        raise click.BadParameter(f"must be >= 0, got {eval_size}", param_hint="--eval-size")
    try:
        file = select_checkpoint(checkpoint, which)
        model, params, task, loss, imodel = _convert(file, bits_act, calib_size, percentile,
                                                     (data_dir, npz, text), out=out_path)
        result = None
        if eval_size != 0:
            _work(f"checking the integer model on the {eval_split} split...")
            result = compare(model, params, imodel, task, eval_split, eval_size, loss=loss)
        (export_npz if fmt == "npz" else export_c)(imodel, out_path)
    except (HadamnpError, OSError) as exc:  # OSError: e.g. the run's data file moved
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: n={imodel.n} m={imodel.m} a={imodel.a} "
               f"S_x=2^{imodel.exp_x} S_h=2^{imodel.exp_h} "
               f"({imodel.calibration['method']} over {imodel.calibration['num_sequences']} "
               f"sequences)")
    if result is not None:
        click.echo(f"checked on {eval_split} (--eval-size to change, 0 to skip):")
        for line in _compare_lines(result, bits_act):
            click.echo("  " + line)
        if accuracy_lost(result):
            click.secho(f"WARNING: the integer model loses "
                        f"{100 * (result['float_accuracy'] - result['int_accuracy']):.1f} "
                        f"accuracy points (more than {100 * MAX_DROP:g}); export with a "
                        f"larger --bits-act (16 keeps the quick model's accuracy)",
                        err=True, fg="red", bold=True)
    _echo_deployment(deployment_report(imodel))


@main.command(name="golden-int", short_help="Write integer golden traces of a random model.")
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


@main.command(short_help="Learning curves of runs (metrics.jsonl) as a PNG.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Panel to draw (repeatable): loss, accuracy (train, validation and test "
                   "together) or any numeric key of metrics.jsonl, e.g. flips, grad_norm, "
                   "val_ratio (--list shows them).  [default: loss, accuracy]")
@click.option("--log-y", is_flag=True, help="Logarithmic y axes.")
@click.option("--list", "list_metrics", is_flag=True,
              help="List the metrics the runs offer and exit (needs no matplotlib).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="PNG file.  [default: curves.png in the first RUN]")
def plot(runs, metrics, log_y, list_metrics, out):
    """Draw the learning curves of one or more RUNs (run directories) into a PNG.

    Needs matplotlib: pip install 'hadamnp[plot]'.
    """
    from pathlib import Path

    from hadamnp.errors import HadamnpError
    from hadamnp.training.metrics import read_metrics
    from hadamnp.training.plot import DEFAULT_METRICS, available_metrics, plot_runs

    try:
        if list_metrics:
            for run_dir in runs:
                names = available_metrics(read_metrics(run_dir))
                click.echo(f"{run_dir}: {', '.join(names)}")
            return
        target = Path(out) if out else Path(runs[0]) / "curves.png"
        plot_runs(runs, target, metrics or DEFAULT_METRICS, log_y)
    except (HadamnpError, OSError, ImportError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {target}")


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


@main.command(short_help="Run a grid of training runs on Dask (resumable).")
@click.argument("grid_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Sweep directory.  [default: sweeps/<grid name>]")
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786).  [default: a "
                   "local cluster of single-threaded worker processes]")
@click.option("--workers", type=int, default=None,
              help="Worker processes of the local cluster.  [default: one per core]")
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
              help="Where to write report.md, report.csv and the PNGs.  [default: the sweep "
                   "directory's report/, or ./report]")
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
