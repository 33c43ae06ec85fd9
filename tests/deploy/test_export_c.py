"""The C99 runner (examples/c), compiled from exported headers, equals the Python integer
engine bit for bit; the header and npz exports carry the same model."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hadamnp.deploy.export import (c_header, export_c, export_npz, read_export_npz,
                                   read_runner_output, write_runner_input)
from hadamnp.deploy.integer import IntegerModel, convert, default_shift, recurrent_multiplier
from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
from hadamnp.reference.integer import activation_range

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "c"
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc) on PATH: the C "
                                                 "runner cannot be built here")


def compile_runner(header, out_dir):
    """Build examples/c/hadamrnn_int.c against ``header``; return the executable path."""
    exe = Path(out_dir) / "hadamrnn_int"
    cmd = [CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
           f"-I{EXAMPLE_DIR}", f"-I{Path(header).parent}",
           f'-DHADAMRNN_MODEL_HEADER="{Path(header).name}"',
           str(EXAMPLE_DIR / "hadamrnn_int.c"), "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"compile failed: {' '.join(cmd)}\n{result.stderr}"
    return exe


def run_runner(exe, x_int, out_dir):
    inp, out = Path(out_dir) / "in.txt", Path(out_dir) / "out.txt"
    write_runner_input(inp, x_int)
    result = subprocess.run([str(exe), str(inp), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


def random_model(rng, n, m, d_in, d_out, a, many_to_many, q=None, M_in=None, bias=40.0):
    """An IntegerModel with random fields (exercises negative accumulators, saturation,
    multipliers with every bit set, large and small shifts).

    Defaults: the conversion's shift and ``M_rec`` for ``m``; an odd input multiplier
    ``M_in / 2^q`` in [0, 1/8); biases of up to ``bias`` state units, fractional parts
    kept to ``2^-q``.
    """
    q = default_shift(m) if q is None else q
    M_in = int(rng.integers(0, 2 ** (q - 3))) | 1 if M_in is None else M_in
    return IntegerModel(
        n=n, m=m, d_in=d_in, d_out=d_out, a=a, p_in=4, p_out=4,
        signs=rng.choice(np.array([-1, 1], np.int8), n),
        U_int=rng.integers(-8, 8, (n, d_in)).astype(np.int8),
        V_int=rng.integers(-8, 8, (d_out, n)).astype(np.int8),
        b_fine=np.rint(rng.uniform(-bias, bias, n) * 2.0**q).astype(np.int64),
        c_int=rng.integers(-40, 41, d_out).astype(np.int32),
        exp_x=0, exp_h=0, M_rec=recurrent_multiplier(m, q), M_in=M_in, q=q,
        logits_scale=1.0, many_to_many=many_to_many)


CASES = {
    "n1": dict(n=1, m=1, d_in=1, d_out=1, a=8, many_to_many=True),
    "n2-general": dict(n=2, m=2, d_in=2, d_out=3, a=8, many_to_many=False),
    "n64-blocks-small-shift": dict(n=64, m=16, d_in=1, d_out=4, a=12, many_to_many=True, q=5),
    "n128-two-words": dict(n=128, m=128, d_in=3, d_out=5, a=16, many_to_many=False),
    "n32-saturating": dict(n=32, m=32, d_in=2, d_out=3, a=8, many_to_many=True,
                           M_in=4 * 2**33, bias=200.0),
}


@needs_cc
@pytest.mark.parametrize("name", sorted(CASES))
def test_c_runner_equals_python_engine(name, tmp_path):
    rng = np.random.default_rng(sorted(CASES).index(name))
    imodel = random_model(rng, **CASES[name])
    export_c(imodel, tmp_path / "model.h")
    exe = compile_runner(tmp_path / "model.h", tmp_path)
    low, high = activation_range(imodel.a)
    for B, T in ((1, 1), (3, 9)):
        x_int = rng.integers(low, high + 1, (B, T, imodel.d_in)).astype(np.int32)
        out = run_runner(exe, x_int, tmp_path)
        h_c, logits_c = read_runner_output(out, B, T, imodel.n, imodel.d_out,
                                           imodel.many_to_many)
        h_py, logits_py = imodel.run(x_int)
        assert np.array_equal(h_c, h_py), f"h_int differs (C vs Python):\n{h_c}\n{h_py}"
        assert np.array_equal(logits_c, logits_py), f"logits:\n{logits_c}\n{logits_py}"
    if name == "n32-saturating":
        assert (h_py == high).any() and (h_py == low).any()


@needs_cc
def test_c_runner_on_a_converted_model(tmp_path):
    model = HadamRNN(HadamRNNConfig(input_size=1, hidden_size=256, output_size=10,
                                    block_size=32, dtype="float64"))
    rng = np.random.default_rng(11)
    params = model.init_params(rng)
    x = rng.random((2, 30, 1))
    imodel = convert(model, params, x, a=8)
    export_c(imodel, tmp_path / "model.h")
    exe = compile_runner(tmp_path / "model.h", tmp_path)
    x_int = imodel.quantize_inputs(x)
    h_c, logits_c = read_runner_output(run_runner(exe, x_int, tmp_path), 2, 30, 256, 10, False)
    h_py, logits_py = imodel.run(x_int)
    assert np.array_equal(h_c, h_py) and np.array_equal(logits_c, logits_py)


@needs_cc
def test_shipped_example(tmp_path):
    exe = compile_runner(EXAMPLE_DIR / "hadamrnn_model.h", tmp_path)
    out = tmp_path / "out.txt"
    result = subprocess.run([str(exe), str(EXAMPLE_DIR / "example_input.txt"), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = (EXAMPLE_DIR / "example_expected.txt").read_text()
    assert out.read_text() == expected, "C runner output differs from example_expected.txt"
    imodel = read_export_npz(EXAMPLE_DIR / "example_model.npz")
    x_int = np.loadtxt(EXAMPLE_DIR / "example_input.txt", skiprows=1, dtype=np.int64, ndmin=2)
    B, T, d_in = (int(v) for v in
                  (EXAMPLE_DIR / "example_input.txt").read_text().split("\n")[0].split())
    h_py, logits_py = imodel.run(x_int.reshape(B, T, d_in))
    h_exp, logits_exp = read_runner_output(EXAMPLE_DIR / "example_expected.txt", B, T,
                                           imodel.n, imodel.d_out, imodel.many_to_many)
    assert np.array_equal(h_py, h_exp) and np.array_equal(logits_py, logits_exp)
    assert c_header(imodel) == (EXAMPLE_DIR / "hadamrnn_model.h").read_text(), \
        "the shipped header and the shipped npz hold different models"


@needs_cc
def test_c_runner_rejects_out_of_range_inputs(tmp_path):
    imodel = random_model(np.random.default_rng(0), **CASES["n2-general"])
    export_c(imodel, tmp_path / "model.h")
    exe = compile_runner(tmp_path / "model.h", tmp_path)
    inp = tmp_path / "bad.txt"
    inp.write_text("1 1 2\n5 128\n")
    result = subprocess.run([str(exe), str(inp), str(tmp_path / "o.txt")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "range" in result.stderr


def test_header_and_npz_carry_the_same_fields(tmp_path):
    imodel = random_model(np.random.default_rng(5), **CASES["n128-two-words"])
    text = c_header(imodel)
    for name, value in (("N", 128), ("M", 128), ("D_IN", 3), ("A", 16), ("Q", 34),
                        ("M_REC", "INT64_C(1518500250)"), ("M_IN", f"INT64_C({imodel.M_in})"),
                        ("CONVENTIONS_VERSION", 1)):
        assert f"#define HADAMRNN_{name} {value}\n" in text
    b_text = [f"{'-' if v < 0 else ''}INT64_C({abs(int(v))})" for v in imodel.b_fine[:2]]
    assert f"hadamrnn_b_fine[128] = {{\n    {b_text[0]}, {b_text[1]}," in text
    export_npz(imodel, tmp_path / "m.npz")
    back = read_export_npz(tmp_path / "m.npz")
    assert c_header(back) == text
    # sign bits: LSB-first, bit 1 = -1.
    words = [int(w, 16) for w in
             text.split("hadamrnn_sign_bits[2] = {")[1].split("}")[0].replace(
                 "UINT64_C(", "").replace(")", "").replace(",", " ").split()]
    bits = [(words[i // 64] >> (i % 64)) & 1 for i in range(128)]
    assert bits == [int(s == -1) for s in imodel.signs]
