"""Regenerate the shipped C example: model header, exported npz, input and expected output.

The model is a seeded random float64 HadamRNN (n = 128, so the recurrent factor
1/sqrt(128) needs a general fixed-point multiplier, and the signs fill two uint64 words)
converted to 12-bit integer activations; the expected output is the Python integer
engine's trace in the runner's text format. Run from anywhere::

    python examples/c/make_example.py                  # writes into a new temporary directory
    python examples/c/make_example.py --check          # compares with the shipped files
    python examples/c/make_example.py --out examples/c # maintainers: replace the shipped files

Files (never edit them by hand): ``hadamrnn_model.h``, ``example_model.npz``,
``example_input.txt``, ``example_expected.txt``. Regenerating with the same hadamnp gives
the same bytes (measured: repeated runs, fresh and warm Numba caches, 1 and 2 threads). What
changes them: the hadamnp version, recorded in the header comment and the npz meta, and the
export format. The npz meta also records float calibration statistics (``max_abs_x``,
``max_abs_h``) from a float64 forward pass that goes through BLAS, whose last bits may
differ with another BLAS build or CPU; the integer fields never depend on them.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from hadamnp.deploy.export import (export_c, export_npz, format_runner_output,
                                   write_runner_input)
from hadamnp.deploy.integer import convert
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig

HERE = Path(__file__).resolve().parent
SEED = 2025
NAMES = {"header": "hadamrnn_model.h", "npz": "example_model.npz",
         "input": "example_input.txt", "expected": "example_expected.txt"}


def build(out_dir):
    """Write the four example files into ``out_dir``; return their paths by role."""
    out_dir = Path(out_dir)
    model = HadamRNN(HadamRNNConfig(input_size=3, hidden_size=128, output_size=5,
                                    dtype="float64"))
    rng = np.random.default_rng(SEED)
    params = model.init_params(rng)
    x = rng.standard_normal((4, 20, 3))
    imodel = convert(model, params, x, a=12)
    x_int = imodel.quantize_inputs(x)
    h_int, logits_int = imodel.run(x_int)
    paths = {role: out_dir / name for role, name in NAMES.items()}
    export_c(imodel, paths["header"])
    export_npz(imodel, paths["npz"])
    write_runner_input(paths["input"], x_int)
    paths["expected"].write_text(format_runner_output(h_int, logits_int, imodel.many_to_many),
                                 encoding="ascii")
    return paths


def differences(out_dir, shipped_dir=HERE):
    """Names of the files in ``out_dir`` whose bytes differ from the shipped ones."""
    return [name for name in NAMES.values()
            if (Path(out_dir) / name).read_bytes() != (Path(shipped_dir) / name).read_bytes()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="directory to write into (default: a new temporary directory; "
                             "examples/c replaces the shipped files)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary directory and compare with the "
                             "shipped files byte for byte (exit status 1 if any differs)")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="hadamnp-c-example-") as tmp:
            build(tmp)
            changed = differences(tmp)
        print("differs from the shipped file: " + ", ".join(changed) if changed
              else "the shipped example files are reproduced byte for byte")
        return 1 if changed else 0
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="hadamnp-c-example-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for role, path in build(out_dir).items():
        print(f"wrote {role}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
