"""One HadamRNN training batch (forward + loss + backward), hadamnp vs the alternatives.

Jobs (float32, 4-bit ``Q(U)``/``Q(V)``, linear recurrence):

- sequential-MNIST shape: n = 512, T = 784, B = 100, d_in = 1, d_out = 10, many-to-one;
- copy-task shape: n = 128, L = 1000, B = 128, one-hot d_in = 10, 9 classes at every step;
- state memory: the sMNIST shape with n = 4096, all states stored vs every k-th one.

One "batch" is the forward pass, the mean softmax cross-entropy and the backward pass (all
parameter gradients), i.e. a training step without the optimizer update. Rows:

- ``hadamnp-model``: :class:`hadamnp.models.hadamrnn.HadamRNN` ``forward`` + the training
  loss + ``backward``, exactly what ``hadamnp train`` runs (all states stored), 1 thread
  (the sequence kernels are single-threaded);
- ``numpy-dense``: the same model with ``kernels="reference"``: the plain-NumPy twin, a dense
  ``W`` (BLAS ``W @ h``) and a Python loop over time;
- ``torch-dense`` (when ``torch`` is importable): PyTorch CPU autograd with a dense
  ``W = diag(sign u) H / sqrt(n)`` and ``F.linear`` per step, as the official code does;
- ``torch-fwht`` (same condition): PyTorch autograd with a fast Hadamard recurrence: a
  two-stage mixed-radix transform ``H_n = H_a ⊗ H_b`` (n = 512: 32 x 16), each stage one
  large 2-D matmul plus a transpose. Both PyTorch rows run with ``torch.set_num_threads(1)``.

Every row records the batch loss, so one can check that all computed the same model.

Bound (``bound_s``, ``bound_fraction``) of the hadamnp rows: the least time the step needs
for its three column FWHTs per time step (forward, the recomputed ``S h_{t-1}``, the
backward), each at the speed measured here for the ``(n, B)`` state, plus its state traffic
(the stored states written once and read once) at the copy bandwidth measured here.

Memory job: the model with ``store_every = 1`` (``hadamnp-all-states``) and with
``store_every = k ~ sqrt(T)`` (``hadamnp-checkpointed``: ``T // k`` stored states plus one
segment of ``k`` recomputed in the backward); ``state_bytes`` counts both; the gradients of
the two are compared byte for byte.

Run: ``python -m hadamnp.bench.training [--quick]``.
"""

import os
import sys

if __name__ == "__main__":
    # Single-thread BLAS; must precede the NumPy import (BLAS reads it once).
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, format_facts,  # noqa: E402
                                   import_torch, machine_facts, make_row, memory_bandwidth,
                                   print_table, skip_row, time_call)

BENCH = "training"

SHAPES = {
    "smnist": {"n": 512, "T": 784, "B": 100, "d_in": 1, "d_out": 10, "many_to_many": False,
               "target_s": 30e-3, "author": {"hadamnp-model": 47.5e-3}},
    "copy": {"n": 128, "T": 1000, "B": 128, "d_in": 10, "d_out": 9, "many_to_many": True,
             "target_s": 25e-3, "author": {"hadamnp-model": 63e-3}},
}
MEMORY_SHAPE = {"n": 4096, "T": 784, "B": 100, "d_in": 1, "d_out": 10, "many_to_many": False}
BITS = 4
COLUMNS = ("case", "impl", "threads", "median_s", "iqr_s", "min_s", "compile_s", "repeats",
           "bound_fraction", "hadamnp_speedup", "target_s", "meets_target", "store_every",
           "state_bytes", "loss", "note")


def case_name(shape_name, shape=None):
    s = shape or SHAPES[shape_name]
    return f"{shape_name} n={s['n']} T={s['T']} B={s['B']} d_in={s['d_in']}"


def make_batch(shape_name, shape, rng):
    """Inputs ``x`` (B, T, d_in) float32 and integer targets of one batch of the job."""
    if shape_name == "copy":
        from hadamnp.io.copy_task import copy_batch
        return copy_batch(rng, shape["B"], shape["T"], dtype=np.float32)
    x = rng.random((shape["B"], shape["T"], shape["d_in"]), dtype=np.float32)
    return x, rng.integers(0, shape["d_out"], size=shape["B"])


def make_model(shape, kernels="numba", store_every=1):
    """A float32 HadamRNN of the job's shape and its parameters (seeded)."""
    from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig

    config = HadamRNNConfig(input_size=shape["d_in"], hidden_size=shape["n"],
                            output_size=shape["d_out"], quant_in=f"uniform:{BITS}",
                            quant_out=f"uniform:{BITS}", many_to_many=shape["many_to_many"],
                            store_every=store_every, dtype="float32")
    model = HadamRNN(config, kernels=kernels)
    return model, model.init_params(np.random.default_rng(1))


def model_step(model, params, x, y):
    """A no-argument callable: one batch through the model's forward/loss/backward."""
    from hadamnp.models.losses import softmax_cross_entropy

    buffer = model.state_buffer(x.shape[0], x.shape[1])
    result = {}

    def step():
        logits, cache = model.forward(params, x, states_out=buffer)
        result["loss"], dlogits = softmax_cross_entropy(logits, y)
        result["grads"] = model.backward(params, cache, dlogits)

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
    """``h @ H_n`` for ``h`` (B, n) via the Kronecker factors, one 2-D matmul per factor."""
    B, n = h.shape
    for H_f in reversed(factors):
        f = H_f.shape[0]
        h = (h.reshape(-1, f) @ H_f).reshape(B, -1, f).transpose(1, 2)
    return h.reshape(B, n)


def torch_step(shape, recurrence, params, x, y):
    """A no-argument callable doing one training batch with PyTorch autograd (``recurrence``
    ``"dense"`` or ``"fwht"``; ``params`` are hadamnp's, so both train the same model)."""
    import torch
    import torch.nn.functional as F
    from scipy.linalg import hadamard

    n = shape["n"]
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
        # unbind: one backward node for all steps (indexing would be O(T^2)).
        drive = F.linear(xt, U_q, p["b"]).unbind(1)
        if recurrence == "dense":
            W = (sign[:, None] * H) * scale
        h = torch.zeros(x.shape[0], n)
        states = []
        for drive_t in drive:
            if recurrence == "dense":
                h = F.linear(h, W) + drive_t
            else:
                h = _torch_fwht(torch, h, factors) * (sign * scale) + drive_t
            if shape["many_to_many"]:
                states.append(h)
        scored = torch.stack(states, dim=1) if shape["many_to_many"] else h
        logits = F.linear(torch.relu(scored), V_q, p["c"])
        loss = F.cross_entropy(logits.reshape(-1, shape["d_out"]), yt.reshape(-1))
        torch.autograd.grad(loss, list(p.values()))
        result["loss"] = float(loss.detach())

    return step, result


def fwht_step_time(n, B, quick):
    """Measured seconds of one in-place column FWHT of an ``(n, B)`` float32 state."""
    from hadamnp.kernels.fwht import fwht_columns_inplace

    a = np.random.default_rng(0).standard_normal((n, B)).astype(np.float32)
    return time_call(lambda: fwht_columns_inplace(a, n), budget_s=budget(quick))["min_s"]


def _bound(shape, store_every, fwht_s, bandwidth):
    """Three FWHTs per step plus the stored states written and read once."""
    stored = (shape["T"] // store_every) * shape["n"] * shape["B"] * 4
    return 3 * shape["T"] * fwht_s + 2 * stored / bandwidth


def _grad_bytes(grads):
    return {k: v.tobytes() for k, v in grads.items()}


def run_shape(shape_name, quick, bandwidth):
    """Rows for one job."""
    shape = SHAPES[shape_name]
    case = case_name(shape_name)
    x, y = make_batch(shape_name, shape, np.random.default_rng(0))
    model, params = make_model(shape)
    common = {"elements": shape["B"] * shape["T"], "n": shape["n"], "T": shape["T"],
              "B": shape["B"], "dtype": "float32"}
    b = budget(quick)
    slow = {"warmup": 0 if quick else 1, "min_repeats": 1 if quick else 3}
    fwht_s = fwht_step_time(shape["n"], shape["B"], quick)
    rows = []

    step, result = model_step(model, params, x, y)
    timing = time_call(step, budget_s=b, min_repeats=3 if quick else 5)
    rows.append(make_row(BENCH, case, "hadamnp-model", timing, loss=result["loss"], threads=1,
                         target_s=shape["target_s"], bound_s=_bound(shape, 1, fwht_s, bandwidth),
                         store_every=1, author_s=shape["author"].get("hadamnp-model"),
                         note="what hadamnp train runs", **common))

    ref_model, _ = make_model(shape, kernels="reference")
    step, result = model_step(ref_model, params, x, y)
    timing = time_call(step, budget_s=b, **slow)
    rows.append(make_row(BENCH, case, "numpy-dense", timing, loss=result["loss"], threads=1,
                         **common))

    torch = import_torch()
    for recurrence in ("dense", "fwht"):
        impl = f"torch-{recurrence}"
        if torch is None:
            rows.append(skip_row(BENCH, case, impl, "torch not importable"))
            continue
        torch.set_num_threads(1)
        step, result = torch_step(shape, recurrence, params, x, y)
        timing = time_call(step, budget_s=b, **slow)
        rows.append(make_row(BENCH, case, impl, timing, loss=result["loss"], threads=1,
                             torch=torch.__version__, **common))
    return add_ratios(rows, subject_impl="hadamnp-model")


def memory_rows(quick, bandwidth):
    """All states stored vs every k-th one at n = 4096 (the model, 1 thread)."""
    shape = MEMORY_SHAPE
    case = case_name("smnist-shape", shape)
    x, y = make_batch("smnist", shape, np.random.default_rng(0))
    n, T, B = shape["n"], shape["T"], shape["B"]
    k_min = max(1, int(round(np.sqrt(T))))
    fwht_s = fwht_step_time(n, B, quick)
    rows, grads = [], {}
    for impl, k in (("hadamnp-all-states", 1), ("hadamnp-checkpointed", k_min)):
        model, params = make_model(shape, store_every=k)
        step, result = model_step(model, params, x, y)
        timing = time_call(step, budget_s=budget(quick), warmup=0,
                           min_repeats=1 if quick else 3)
        grads[k] = _grad_bytes(result["grads"])
        # Stored states, plus (k > 1) the segment of k states recomputed in the backward.
        state_bytes = (T // k + (k if k > 1 else 0)) * n * B * 4
        rows.append(make_row(BENCH, case, impl, timing, threads=1, store_every=k,
                             state_bytes=state_bytes, loss=result["loss"],
                             bound_s=_bound(shape, k, fwht_s, bandwidth), n=n, T=T, B=B,
                             dtype="float32"))
    rows[-1]["note"] = "gradients bit-identical to all states: " + \
        ("yes" if grads[1] == grads[rows[-1]["store_every"]] else "NO")
    return add_ratios(rows, subject_impl="hadamnp-checkpointed")


def main(quick=False):
    """Time every job; print the table; return the rows (list of dicts)."""
    bandwidth = memory_bandwidth(quick)
    rows = []
    for shape_name in SHAPES:
        rows += run_shape(shape_name, quick, bandwidth)
    rows += memory_rows(quick, bandwidth)
    print_table(rows, f"training batch, forward + loss + backward, float32; threads per row; "
                      f"hadamnp_speedup = other / hadamnp-model; bound = 3 FWHTs per "
                      f"step + stored-state traffic at {bandwidth / 1e9:.1f} GB/s",
                columns=COLUMNS)
    return rows


if __name__ == "__main__":
    print(format_facts(machine_facts()))
    main(quick="--quick" in sys.argv[1:])
