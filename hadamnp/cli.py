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


@main.command()
@click.option("--model", type=click.Choice(["hadamrnn", "block-hadamrnn"]), default="hadamrnn",
              show_default=True, help="Full binary Hadamard or block (sparse ternary) recurrence.")
@click.option("--hidden", "hidden_size", type=int, default=16, show_default=True,
              help="Hidden size n (a power of two).")
@click.option("--block", "block_size", type=int, default=None,
              help="Block size m (power of two dividing n). Default: n for hadamrnn, n/4 for "
                   "block-hadamrnn.")
@click.option("--bits", type=int, default=4, show_default=True,
              help="Bit width of Q(U) and Q(V); 0 = unquantized.")
@click.option("--input-size", type=int, default=3, show_default=True)
@click.option("--output-size", type=int, default=5, show_default=True)
@click.option("--seq-len", type=int, default=7, show_default=True)
@click.option("--batch", type=int, default=3, show_default=True)
@click.option("--many-to-many", is_flag=True, help="Score every step (default: last step only).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Output .npz file.")
def golden(model, hidden_size, block_size, bits, input_size, output_size, seq_len, batch,
           many_to_many, seed, out_path):
    """Write a golden test-vector file (float64 forward pass and STE gradients)."""
    from hadamnp.errors import HadamnpError
    from hadamnp.io.golden import make_golden, write_golden

    for name, value in (("--input-size", input_size), ("--output-size", output_size),
                        ("--seq-len", seq_len), ("--batch", batch)):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
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
