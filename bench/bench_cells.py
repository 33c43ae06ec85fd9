"""One LSTM / GRU training batch (forward + loss + backward), hadamnp vs PyTorch autograd.

Job (issue 9's speed target): the sequential-MNIST shape, n = 128, T = 784, B = 100,
d_in = 1, d_out = 10, many-to-one, float32, full precision (the quantizers cost one pass
over the weights per batch, nothing per step). One "batch" is ``forward`` + softmax
cross-entropy + ``backward`` (every parameter gradient), as a training step without the
optimizer update. Implementations, all on the same parameters and batch (the ``loss``
column shows they compute the same model):

- ``hadamnp``: :class:`hadamnp.models.lowprec.LowPrecisionRNN` (``lstm`` / ``gru``) with the
  Numba time loop, reusing its state buffer across batches as the training loop does;
- ``numpy-reference``: the same model on the plain-NumPy twins (``kernels="reference"``);
- ``torch``: ``torch.nn.LSTM`` / ``torch.nn.GRU`` plus ``nn.Linear`` on the last state,
  ``F.cross_entropy``, ``torch.autograd.grad`` (CPU, default settings, i.e. the oneDNN RNN
  path where PyTorch picks it);
- ``torch-native``: the same with ``torch.backends.mkldnn`` disabled (PyTorch's own
  per-step kernels), reported because it was the faster PyTorch path on the measuring machine.

PyTorch's GRU writes ``h' = (1 - z) n + z h``; hadamnp's (the Lasagne form) writes
``h' = (1 - u) h + u c``, so ``z = 1 - u``: the torch update-gate weights and bias are the
negated hadamnp ones, and ``bias_hh`` is zero except that (torch adds ``b_hn`` inside the
reset product; hadamnp has no such bias). Both are then the same function.

Single thread by default (set before NumPy loads), ``torch.set_num_threads`` alike.
Run: ``python bench/bench_cells.py [--quick] [--json FILE]``.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, format_facts,  # noqa: E402
                                   import_torch, machine_facts, make_row, print_table,
                                   skip_row, time_call, write_jsonl)

BENCH = "cells"
SHAPE = {"n": 128, "T": 784, "B": 100, "d_in": 1, "d_out": 10}
CELLS = ("lstm", "gru")


def case_name(cell):
    return f"{cell} smnist n={SHAPE['n']} T={SHAPE['T']} B={SHAPE['B']} d_in={SHAPE['d_in']}"


def make_batch(rng):
    """Pixel-like inputs ``x`` (B, T, 1) in [0, 1) and class targets (B,)."""
    x = rng.random((SHAPE["B"], SHAPE["T"], SHAPE["d_in"]), dtype=np.float32)
    return x, rng.integers(0, SHAPE["d_out"], size=SHAPE["B"])


def hadamnp_model(cell, kernels):
    from hadamnp.models.lowprec import LowPrecisionRNN
    from hadamnp.models.registry import build_config

    config = build_config(cell, input_size=SHAPE["d_in"], hidden_size=SHAPE["n"],
                          output_size=SHAPE["d_out"], many_to_many=False, dtype="float32")
    return LowPrecisionRNN(config, kernels=kernels)


def hadamnp_step(model, params, x, y):
    from hadamnp.models.losses import softmax_cross_entropy

    buffer = model.state_buffer(x.shape[0], x.shape[1])
    result = {}

    def step():
        logits, cache = model.forward(params, x, states_out=buffer)
        result["loss"], dlogits = softmax_cross_entropy(logits, y)
        model.backward(params, cache, dlogits)

    return step, result


def _stack(params, prefix, gates, negate=()):
    return np.concatenate([(-1 if g in negate else 1) * params[f"{prefix}{g}"] for g in gates])


def torch_step(torch, cell, params, x, y):
    """One training batch with ``nn.LSTM`` / ``nn.GRU`` holding hadamnp's parameters."""
    import torch.nn.functional as F

    n, d_in = SHAPE["n"], SHAPE["d_in"]
    if cell == "lstm":
        rnn = torch.nn.LSTM(d_in, n, batch_first=True)
        gates, negate = "ifgo", ()
    else:
        rnn = torch.nn.GRU(d_in, n, batch_first=True)
        gates, negate = "ruc", ("u",)  # torch's z = 1 - u: negate the update gate
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(_stack(params, "W_x", gates, negate)))
        rnn.weight_hh_l0.copy_(torch.tensor(_stack(params, "W_h", gates, negate)))
        rnn.bias_ih_l0.copy_(torch.tensor(_stack(params, "b_", gates, negate)))
        rnn.bias_hh_l0.zero_()
    V = torch.tensor(params["V"], requires_grad=True)
    c = torch.tensor(params["c"], requires_grad=True)
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.long)
    leaves = [*rnn.parameters(), V, c]
    result = {}

    def step():
        out, _ = rnn(xt)
        loss = F.cross_entropy(F.linear(out[:, -1], V, c), yt)
        torch.autograd.grad(loss, leaves)
        result["loss"] = float(loss.detach())

    return step, result


def run_cell(cell, quick, threads):
    """Rows of one cell: hadamnp, numpy-reference and (if importable) both PyTorch paths."""
    case = case_name(cell)
    x, y = make_batch(np.random.default_rng(0))
    model = hadamnp_model(cell, "numba")
    params = model.init_params(np.random.default_rng(1))
    common = {"threads": threads, "dtype": "float32", **SHAPE}
    b = budget(quick) * 10  # one batch takes ~1 s: 10x the harness budget gives >= 5 samples
    slow = {"warmup": 0 if quick else 1, "min_repeats": 1 if quick else 3}
    rows = []
    step, result = hadamnp_step(model, params, x, y)
    timing = time_call(step, budget_s=b, min_repeats=3 if quick else 5)
    rows.append(make_row(BENCH, case, "hadamnp", timing, loss=result["loss"], **common))

    step, result = hadamnp_step(hadamnp_model(cell, "reference"), params, x, y)
    timing = time_call(step, budget_s=0, **slow)
    rows.append(make_row(BENCH, case, "numpy-reference", timing, loss=result["loss"],
                         **common))

    torch = import_torch()
    for impl, mkldnn in (("torch", True), ("torch-native", False)):
        if torch is None:
            rows.append(skip_row(BENCH, case, impl, "torch not importable"))
            continue
        torch.set_num_threads(threads)
        with torch.backends.mkldnn.flags(enabled=mkldnn and torch.backends.mkldnn.enabled):
            step, result = torch_step(torch, cell, params, x, y)
            timing = time_call(step, budget_s=0, **slow)
        rows.append(make_row(BENCH, case, impl, timing, loss=result["loss"],
                             torch=torch.__version__, mkldnn=mkldnn, **common))
    return add_ratios(rows)


def _threads():
    value = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
    return int(value) if value and value.isdigit() else os.cpu_count()


def main(quick=False):
    """Time every job; print the table; return the rows (list of dicts)."""
    threads = _threads()
    rows = []
    for cell in CELLS:
        rows += run_cell(cell, quick, threads)
    print_table(rows, f"LSTM / GRU training batch (forward + loss + backward), float32, "
                      f"{threads} thread(s); hadamnp_speedup = other / hadamnp",
                columns=("case", "impl", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
                         "hadamnp_speedup", "loss", "note"))
    return rows


if __name__ == "__main__":
    facts = machine_facts()
    print(format_facts(facts))
    rows = main(quick="--quick" in sys.argv[1:])
    if "--json" in sys.argv[1:]:
        path = sys.argv[sys.argv.index("--json") + 1]
        print(f"wrote {write_jsonl(path, rows, {**facts, 'load_end': machine_facts()['uptime']})}")
