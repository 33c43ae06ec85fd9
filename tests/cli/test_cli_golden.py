"""``hadamnp golden`` through click's ``CliRunner``: the file it writes carries the keys,
shapes, dtypes and ``meta`` fields of the golden format v2 (docs/golden-format.md), and
user mistakes end with a message, not a traceback.

Whether the numbers in the file are right is checked independently in
``test_golden_autograd.py``.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from hadamnp.cli import main

REQUIRED_META = {"format", "version", "model", "param_roles", "loss", "dtype", "seed", "source",
                 "batch", "seq_len", "hadamnp_version", "sign_zero", "rounding",
                 "conventions_version"}


def invoke(*args):
    return CliRunner().invoke(main, ["golden", *map(str, args)])


def load(path):
    """Read the file with NumPy alone, as a port would."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(str(arrays.pop("meta")[()]))


def expected_shapes(n, d_in, d_out, T, B, many_to_many):
    return {"x": (B, T, d_in), "y": (B, T) if many_to_many else (B,),
            "param.u": (n,), "param.U": (n, d_in), "param.b": (n,), "param.V": (d_out, n),
            "param.c": (d_out,), "weight.W_signs": (n,), "weight.U_q": (n, d_in),
            "weight.V_q": (d_out, n), "state.h": (B, T, n),
            "logits": (B, T, d_out) if many_to_many else (B, d_out), "loss": (),
            "grad.u": (n,), "grad.U": (n, d_in), "grad.b": (n,), "grad.V": (d_out, n),
            "grad.c": (d_out,)}


CASES = [
    # (model, hidden, block option, expected block, bits, d_in, d_out, T, B, many_to_many)
    ("hadamrnn", 8, None, 8, 4, 3, 5, 7, 3, False),
    ("hadamrnn", 4, 4, 4, 0, 1, 2, 1, 1, True),
    ("block-hadamrnn", 16, None, 4, 4, 2, 3, 5, 2, True),
    ("block-hadamrnn", 8, 1, 1, 2, 2, 1, 3, 5, False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-n{c[1]}-m{c[3]}" for c in CASES])
def test_golden_writes_the_required_keys_and_meta(tmp_path, case):
    model, n, block, m, bits, d_in, d_out, T, B, mtm = case
    path = tmp_path / "golden.npz"
    args = ["--model", model, "--hidden", n, "--bits", bits, "--input-size", d_in,
            "--output-size", d_out, "--seq-len", T, "--batch", B, "--seed", 3, "--out", path]
    args += ["--block", block] if block is not None else []
    args += ["--many-to-many"] if mtm else []
    result = invoke(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}{result.exception!r}"
    assert str(path) in result.output
    arrays, meta = load(path)

    shapes = expected_shapes(n, d_in, d_out, T, B, mtm)
    assert set(arrays) == set(shapes), f"keys: missing {set(shapes) - set(arrays)}, " \
                                       f"unexpected {set(arrays) - set(shapes)}"
    for key, shape in shapes.items():
        assert arrays[key].shape == shape, f"{key}: shape {arrays[key].shape}, expected {shape}"
        expected_dtype = np.int64 if key == "y" else np.float64
        assert arrays[key].dtype == expected_dtype, f"{key}: dtype {arrays[key].dtype}"
        assert np.all(np.isfinite(arrays[key])), key
    assert np.all(np.abs(arrays["weight.W_signs"]) == 1)
    assert arrays["y"].min() >= 0 and arrays["y"].max() < d_out
    if bits == 0:
        np.testing.assert_array_equal(arrays["weight.U_q"], arrays["param.U"])

    missing = REQUIRED_META - set(meta)
    assert not missing, f"meta lacks {sorted(missing)}"
    assert (meta["format"], meta["version"], meta["dtype"]) == ("hadamnp-golden", 2, "float64")
    config = meta["model"]["config"]
    assert (meta["model"]["name"], config["hidden_size"], config["block_size"]) == (model, n, m)
    quant = "none" if bits == 0 else f"uniform:{bits}"
    assert (config["input_size"], config["output_size"], config["quant_in"],
            config["quant_out"], config["quant_rec"]) == (d_in, d_out, quant, quant, "sign")
    assert (config["many_to_many"], config["nonlinear"], meta["seed"]) == (mtm, False, 3)
    assert (meta["batch"], meta["seq_len"], meta["source"]) == (B, T, "random")
    assert meta["param_roles"] == {"u": "signs", "U": "weight", "b": "bias", "V": "weight",
                                   "c": "bias"}
    assert (meta["loss"], meta["sign_zero"], meta["rounding"]) == \
        ("cross_entropy", 1, "half-to-even")


def test_golden_files_are_byte_reproducible(tmp_path):
    """Same options, same bytes (golden files are regenerated, never edited); another seed
    gives another file."""
    paths = [tmp_path / f"{i}.npz" for i in range(3)]
    for path, seed in zip(paths, (5, 5, 6)):
        result = invoke("--model", "block-hadamrnn", "--hidden", 8, "--seed", seed, "--out", path)
        assert result.exit_code == 0, result.output
    first, second, other = (p.read_bytes() for p in paths)
    assert first == second
    assert first != other


BAD_ARGS = {
    "hidden not a power of two": (["--hidden", 12], ["12", "power of two"]),
    "block not a power of two": (["--model", "block-hadamrnn", "--hidden", 16, "--block", 3],
                                 ["3", "power of two"]),
    "block larger than hidden": (["--model", "block-hadamrnn", "--hidden", 16, "--block", 32],
                                 ["32", "16"]),
    "block-hadamrnn with the full block": (["--model", "block-hadamrnn", "--hidden", 16,
                                            "--block", 16], ["16"]),
    "hadamrnn with a block": (["--hidden", 16, "--block", 4], ["16", "4", "block-hadamrnn"]),
    "unknown model": (["--model", "lstmm"], ["lstmm", "hadamrnn"]),
    "unknown model option": (["-O", "depth=2"], ["depth", "hidden_size"]),
    "malformed model option": (["-O", "depth"], ["KEY=VALUE"]),
    "unknown quantizer": (["--quant-in", "ternery"], ["ternery", "uniform"]),
    "bits and quant-in": (["--bits", 2, "--quant-in", "none"], ["--bits", "--quant-in"]),
    "zero batch": (["--batch", 0], ["--batch"]),
    "zero seq-len": (["--seq-len", 0], ["--seq-len"]),
    "negative seed": (["--seed", -1], ["--seed", "-1"]),
    "bits out of range": (["--bits", 40], ["40"]),
    "checkpoint and model options": (["--from-checkpoint", ".", "--hidden", 8],
                                     ["--hidden", "checkpoint"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_golden_reports_user_mistakes_without_a_traceback(tmp_path, case):
    args, fragments = BAD_ARGS[case]
    path = tmp_path / "bad.npz"
    result = invoke(*args, "--out", path)
    assert result.exit_code != 0, f"accepted {args}: {result.output}"
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in message: {result.output!r}"
    assert not path.exists()


def test_golden_requires_out():
    result = invoke("--hidden", 8)
    assert result.exit_code != 0 and "--out" in result.output


def test_help_compiles_and_imports_nothing_heavy():
    """``hadamnp --help`` must not import Numba (nothing compiled at import time)."""
    code = ("import sys; from click.testing import CliRunner; from hadamnp.cli import main; "
            "r = CliRunner().invoke(main, ['golden', '--help']); "
            "assert r.exit_code == 0 and '--out' in r.output, r.output; "
            "print(sorted(m for m in ('numba', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", f"imported at --help: {out}"
