"""One HadamRNN training batch (forward + backward), hadamnp vs the alternatives.

Jobs (float32, 4-bit ``Q(U)``/``Q(V)``, linear recurrence, issue 2's speed table):

- sequential-MNIST shape: n = 512, T = 784, B = 100, d_in = 1, d_out = 10, many-to-one;
- copy-task shape: n = 128, L = 1000, B = 128, one-hot d_in = 10, 9 classes at every step.

One "batch" is ``forward`` + softmax cross-entropy + ``backward`` (all parameter gradients),
i.e. everything of a training step except the optimizer update. Implementations:

- ``hadamnp``: :class:`hadamnp.models.hadamrnn.HadamRNN` with the Numba sequence kernels
  (FWHT recurrence), reusing one ``(T, n, B)`` state buffer across batches as a training loop
  does (fresh 160 MB buffers would otherwise be dominated by first-touch page faults);
- ``numpy-dense``: the same model with ``kernels="reference"``: the plain-NumPy twin, a dense
  ``W`` (BLAS ``W @ h``) and a Python loop over time;
- ``torch-dense`` (when ``torch`` is importable): PyTorch CPU autograd with a dense
  ``W = diag(sign u) H / sqrt(n)`` and ``F.linear`` per step, as the official code does;
- ``torch-fwht`` (same condition): PyTorch autograd with a fast Hadamard recurrence: a
  two-stage mixed-radix transform ``H_n = H_a ⊗ H_b`` (``a ≈ b ≈ sqrt(n)``; n = 512: 32 x 16),
  each stage one large 2-D matmul plus a transpose. That is O(n sqrt(n)) work but only a few
  large ops per step, which under autograd beats both radix-8 stages (log_8 n matmuls) and
  per-butterfly ops (9 stages of small ops per step for n = 512), measured here.

All run single-threaded when launched as a script or by ``run_all.py`` (default
``--threads 1``); PyTorch is set to ``torch.set_num_threads`` of the same value. Each row
records the batch loss, so one can check that every implementation computed the same model.
The bound is memory: the forward pass writes the ``T n B`` float32 states and the backward
pass reads them back; ``bound_s`` is that traffic at the bandwidth measured by the script.

Run: ``python bench/bench_training.py [--quick]``.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Single-thread figure by default; must precede the NumPy import (BLAS reads it once).
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _harness import (add_ratios, budget, machine_facts, format_facts, make_row,  # noqa: E402
                      memory_bandwidth, print_table, skip_row, time_call)

BENCH = "training"

# Targets and the PyTorch figures measured by the issue author (issue 2, speed table).
SHAPES = {
    "smnist": {"n": 512, "T": 784, "B": 100, "d_in": 1, "d_out": 10, "many_to_many": False,
               "target_s": 0.15, "author": {"torch-dense": 1.49, "torch-fwht": 0.35}},
    "copy": {"n": 128, "T": 1000, "B": 128, "d_in": 10, "d_out": 9, "many_to_many": True,
             "target_s": 0.05, "author": {"torch-dense": 0.32}},
}
BITS = 4


def case_name(shape_name):
    s = SHAPES[shape_name]
    return f"{shape_name} n={s['n']} T={s['T']} B={s['B']} d_in={s['d_in']}"


def make_batch(shape_name, rng):
    """Inputs ``x`` (B, T, d_in) float32 and integer targets of one batch of the job."""
    s = SHAPES[shape_name]
    if shape_name == "copy":
        from hadamnp.io.copy_task import copy_batch
        return copy_batch(rng, s["B"], s["T"], dtype=np.float32)
    x = rng.random((s["B"], s["T"], s["d_in"]), dtype=np.float32)
    return x, rng.integers(0, s["d_out"], size=s["B"])


def hadamnp_step(shape_name, kernels, params_rng):
    """A no-argument callable doing one training batch with hadamnp, and its model/params."""
    from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig
    from hadamnp.training.losses import softmax_cross_entropy

    s = SHAPES[shape_name]
    config = HadamRNNConfig(input_size=s["d_in"], hidden_size=s["n"], output_size=s["d_out"],
                            bits_in=BITS, bits_out=BITS, many_to_many=s["many_to_many"],
                            dtype="float32")
    model = HadamRNN(config, kernels=kernels)
    params = model.init_params(params_rng)
    return model, params, softmax_cross_entropy


def _hadamnp_callable(model, params, loss_fn, x, y):
    buffer = model.state_buffer(x.shape[0], x.shape[1])
    result = {}

    def step():
        logits, cache = model.forward(params, x, states_out=buffer)
        result["loss"], dlogits = loss_fn(logits, y)
        model.backward(params, cache, dlogits)

    return step, result


def _torch_quantize_ste(torch, M, bits):
    """Uniform ``bits``-bit quantizer (half-to-even rounding), identity STE, alpha constant."""
    c = 2 ** (bits - 1)
    alpha = M.detach().abs().max().clamp_min(1e-30)
    q = torch.clamp(torch.round(M.detach() * (c / alpha)), -c, c - 1) * (alpha / c)
    return M + (q - M.detach())


def _torch_hadamard_factors(torch, n):
    """Sylvester factors ``H_a``, ``H_b`` with ``H_n = H_a ⊗ H_b``, ``a = b`` or ``2b``."""
    from scipy.linalg import hadamard
    a = 2 ** ((n.bit_length()) // 2)
    return [torch.tensor(hadamard(f), dtype=torch.float32) for f in (a, n // a) if f > 1]


def _torch_fwht(torch, h, factors):
    """``h @ H_n`` for ``h`` (B, n) via the Kronecker factors, one 2-D matmul per factor.

    ``h`` is viewed as (B, f_1, ..., f_k); each stage multiplies the last axis by its factor
    and rotates it to the front, so after k stages the axes are back in order.
    """
    B, n = h.shape
    for H_f in reversed(factors):
        f = H_f.shape[0]
        h = (h.reshape(-1, f) @ H_f).reshape(B, -1, f).transpose(1, 2)
    return h.reshape(B, n)


def torch_step(shape_name, recurrence, params, x, y):
    """A no-argument callable doing one training batch with PyTorch autograd.

    ``recurrence`` is ``"dense"`` or ``"fwht"``; ``params`` are hadamnp's initial
    parameters (so both frameworks train the same model).
    """
    import torch
    import torch.nn.functional as F
    from scipy.linalg import hadamard

    s = SHAPES[shape_name]
    n = s["n"]
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x)
    yt = torch.tensor(y, dtype=torch.long)
    H = torch.tensor(hadamard(n), dtype=torch.float32)
    factors = _torch_hadamard_factors(torch, n)
    scale = 1.0 / np.sqrt(n)
    result = {}

    def step():
        u = p["u"]
        sign = u + (torch.where(u >= 0, 1.0, -1.0) - u).detach()  # sign(0) = +1, identity STE
        U_q = _torch_quantize_ste(torch, p["U"], BITS)
        V_q = _torch_quantize_ste(torch, p["V"], BITS)
        # The input projection of every step at once (one big matmul, favours PyTorch).
        # unbind: one backward node for all steps (indexing drive[:, t] would make every
        # step's backward allocate a full (B, T, n) zero tensor, O(T^2) work).
        drive = F.linear(xt, U_q, p["b"]).unbind(1)  # T tensors (B, n)
        if recurrence == "dense":
            W = (sign[:, None] * H) * scale
        h = torch.zeros(x.shape[0], n)
        states = []
        for drive_t in drive:
            if recurrence == "dense":
                h = F.linear(h, W) + drive_t
            else:
                h = _torch_fwht(torch, h, factors) * (sign * scale) + drive_t
            if s["many_to_many"]:
                states.append(h)
        scored = torch.stack(states, dim=1) if s["many_to_many"] else h
        logits = F.linear(torch.relu(scored), V_q, p["c"])
        loss = F.cross_entropy(logits.reshape(-1, s["d_out"]), yt.reshape(-1))
        torch.autograd.grad(loss, list(p.values()))
        result["loss"] = float(loss.detach())

    return step, result


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def run_shape(shape_name, quick, bandwidth, threads):
    """Rows for one job: hadamnp, numpy-dense and (if importable) the two PyTorch variants."""
    s = SHAPES[shape_name]
    case = case_name(shape_name)
    x, y = make_batch(shape_name, np.random.default_rng(0))
    model, params, loss_fn = hadamnp_step(shape_name, "numba", np.random.default_rng(1))
    ref_model, _, _ = hadamnp_step(shape_name, "reference", np.random.default_rng(1))
    state_bytes = s["T"] * s["n"] * s["B"] * 4
    common = {"elements": s["B"] * s["T"], "threads": threads, "n": s["n"], "T": s["T"],
              "B": s["B"], "dtype": "float32"}
    b = budget(quick)
    # Slow alternatives: one warm-up and few repeats (quick: the first call plus one).
    slow = {"warmup": 0 if quick else 1, "min_repeats": 1 if quick else 3}

    rows = []
    step, result = _hadamnp_callable(model, params, loss_fn, x, y)
    timing = time_call(step, budget_s=b, min_repeats=3 if quick else 5)
    rows.append(make_row(BENCH, case, "hadamnp", timing, target_s=s["target_s"],
                         bound_s=2 * state_bytes / bandwidth, loss=result["loss"], **common))

    step, result = _hadamnp_callable(ref_model, params, loss_fn, x, y)
    timing = time_call(step, budget_s=b, **slow)
    rows.append(make_row(BENCH, case, "numpy-dense", timing, loss=result["loss"], **common))

    torch = _import_torch()
    for recurrence in ("dense", "fwht"):
        impl = f"torch-{recurrence}"
        if torch is None:
            rows.append(skip_row(BENCH, case, impl, "torch not importable"))
            continue
        torch.set_num_threads(threads)
        step, result = torch_step(shape_name, recurrence, params, x, y)
        timing = time_call(step, budget_s=b, **slow)
        rows.append(make_row(BENCH, case, impl, timing, loss=result["loss"],
                             author_s=s["author"].get(impl), torch=torch.__version__,
                             **common))
    return add_ratios(rows)


def _threads():
    value = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
    return int(value) if value and value.isdigit() else os.cpu_count()


def main(quick=False):
    """Time every job; print the table; return the rows (list of dicts)."""
    threads = _threads()
    bandwidth = memory_bandwidth(quick)
    rows = []
    for shape_name in SHAPES:
        rows += run_shape(shape_name, quick, bandwidth, threads)
    print_table(rows, f"training batch, forward + backward, float32, {threads} thread(s); "
                      f"hadamnp_speedup = other / hadamnp; bound = state write+read at "
                      f"{bandwidth / 1e9:.1f} GB/s",
                columns=("case", "impl", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
                         "elements_per_s", "bound_fraction", "hadamnp_speedup", "target_s",
                         "meets_target", "author_s", "loss", "note"))
    return rows


if __name__ == "__main__":
    print(format_facts(machine_facts()))
    main(quick="--quick" in sys.argv[1:])
