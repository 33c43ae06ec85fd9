"""Regenerate the shipped C example: model header, exported npz, input and expected output.

The model is a seeded random float64 HadamRNN (n = 128, so the recurrent factor
1/sqrt(128) needs a general fixed-point multiplier, and the signs fill two uint64 words)
converted to 12-bit integer activations; the expected output is the Python integer
engine's trace in the runner's text format. Run from anywhere::

    python examples/c/make_example.py

Files written next to this script (never edit them by hand): ``hadamrnn_model.h``,
``example_model.npz``, ``example_input.txt``, ``example_expected.txt``.
"""

from pathlib import Path

import numpy as np

from hadamnp.deploy.export import (export_c, export_npz, format_runner_output,
                                   write_runner_input)
from hadamnp.deploy.integer import convert
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig

HERE = Path(__file__).resolve().parent
SEED = 2025


def build(out_dir=HERE):
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
    paths = {"header": out_dir / "hadamrnn_model.h", "npz": out_dir / "example_model.npz",
             "input": out_dir / "example_input.txt",
             "expected": out_dir / "example_expected.txt"}
    export_c(imodel, paths["header"])
    export_npz(imodel, paths["npz"])
    write_runner_input(paths["input"], x_int)
    paths["expected"].write_text(format_runner_output(h_int, logits_int, imodel.many_to_many),
                                 encoding="ascii")
    return paths


if __name__ == "__main__":
    for role, path in build().items():
        print(f"wrote {role}: {path}")
