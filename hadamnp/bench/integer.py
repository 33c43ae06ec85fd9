"""Per-step latency, batch 1, of the integer engine vs the float FWHT path vs a dense step.

Job: one HadamRNN recurrent step for one sequence (batch 1), n = 128, 512, 2048 (full
Hadamard recurrence, m = n), d_in = 1, d_out = 10, many-to-one, single thread. Each call
runs T steps inside compiled code; the figures are per step (call time / T), so the
Python call and argument checks are amortised over T. Implementations:

- ``hadamnp-int``: :func:`hadamnp.kernels.integer.integer_forward`, 12-bit activations,
  int32 block FWHT, one int64 accumulator and one rounding shift per step (issue 4 target:
  <= 2 us for n = 512);
- ``hadamnp-float-fwht``: :func:`hadamnp.kernels.recurrence.hadamard_forward`, float32;
- ``dense-f32-blas``: :func:`hadamnp.kernels.recurrence.dense_forward`, float32 dense
  ``W`` (one BLAS sgemv per step from compiled code);
- ``sgemv-only``: one ``W @ h`` float32 NumPy/BLAS call (the issue's 13.7 us
  alternative for n = 512), timed per call.

A second job, ``step n=N B=1 (one call per step)``, times what an application stepping a
model in real time pays per step, Python call included: ``hadamnp-float-step`` is
:func:`hadamnp.kernels.recurrence.hadamard_step` (weights validated and packed once by
``hadamard_step_weights``; issue 16 target <= 1 us for n = 512, float32), beside one
``hadamard_forward`` call of T = 1 (all checks, every call) and one sgemv.

``compile_s`` is the first call's excess over the warm median (JIT compile or cache load),
reported separately and not divided by T. Every row is single-threaded (``threads``).
Run: ``python -m hadamnp.bench.integer [--quick]``.
"""

import os
import sys

if __name__ == "__main__":
    # Single-thread figures; must precede the NumPy import (BLAS reads it once).
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hadamnp.bench.harness import (add_ratios, budget, format_facts,  # noqa: E402
                                   machine_facts, make_row, print_table, time_call)

BENCH = "integer"
SIZES = (128, 512, 2048)
TARGETS_S = {512: 2e-6}
STEP_TARGETS_S = {512: 1e-6}
D_IN, D_OUT, A = 1, 10, 12
PER_STEP_FIELDS = ("median_s", "min_s", "q1_s", "q3_s", "iqr_s")


def per_step(timing, T):
    """The per-call timing fields divided by the ``T`` steps of a call."""
    return {**timing, **{k: timing[k] / T for k in PER_STEP_FIELDS}, "steps_per_call": T}


def models(n, rng):
    """A float32 HadamRNN and its integer conversion (random parameters, calibrated)."""
    from hadamnp.deploy.integer import convert
    from hadamnp.models.hadamrnn import HadamRNN, HadamRNNConfig

    model = HadamRNN(HadamRNNConfig(input_size=D_IN, hidden_size=n, output_size=D_OUT))
    params = model.init_params(rng)
    calib = rng.random((8, 50, D_IN)).astype(np.float32)
    return model, params, convert(model, params, calib, a=A)


def run_size(n, T, quick, threads):
    """Rows for one hidden size."""
    from hadamnp.kernels import integer as kint
    from hadamnp.kernels import recurrence
    from hadamnp.reference.hadamard import sylvester

    rng = np.random.default_rng(n)
    model, params, im = models(n, rng)
    x = rng.random((1, T, D_IN)).astype(np.float32)
    x_int = im.quantize_inputs(x)
    x_k = np.ascontiguousarray(x.transpose(1, 2, 0))  # (T, d_in, B) for the float kernels
    w = model.weights(params)
    s, U, V = w["W_signs"], w["U_q"], w["V_q"]
    b, c = params["b"], params["c"]
    W = (s[:, None] * sylvester(n) / np.sqrt(n)).astype(np.float32)  # diag(s) S / sqrt(n)
    h0 = rng.standard_normal(n).astype(np.float32)
    case = f"step n={n} B=1"
    common = {"n": n, "threads": threads}
    b_s = budget(quick)
    jobs = [
        ("hadamnp-int", T, lambda: kint.integer_forward(
            im.signs, im.m, im.U_int, im.b_fine, im.V_int, im.c_int, im.M_rec, im.M_in,
            im.q, im.a, x_int, many_to_many=False)),
        ("hadamnp-float-fwht", T, lambda: recurrence.hadamard_forward(
            s, n, U, b, V, c, x_k, nonlinear=False, many_to_many=False)),
        ("dense-f32-blas", T, lambda: recurrence.dense_forward(
            W, U, b, V, c, x_k, nonlinear=False, many_to_many=False)),
        ("sgemv-only", 1, lambda: W @ h0),
    ]
    rows = []
    for impl, steps, fn in jobs:
        timing = per_step(time_call(fn, budget_s=b_s, min_repeats=3 if quick else 7), steps)
        rows.append(make_row(BENCH, case, impl, timing, target_s=TARGETS_S.get(n)
                             if impl == "hadamnp-int" else None, **common))
    rows = add_ratios(rows, subject_impl="hadamnp-int")
    # One call per step, from Python.
    weights = recurrence.hadamard_step_weights(s, n, U, b, V, c, nonlinear=False)
    h, logits, x1 = np.zeros(n, np.float32), np.empty(D_OUT, np.float32), x_k[0, :, 0].copy()
    x_one = x_k[:1]
    step_case = f"step n={n} B=1 (one call per step)"
    step_jobs = [
        ("hadamnp-float-step", lambda: recurrence.hadamard_step(weights, h, x1, logits),
         STEP_TARGETS_S.get(n), "hadamard_step: weights packed once, state in place"),
        ("hadamnp-forward-T1", lambda: recurrence.hadamard_forward(
            s, n, U, b, V, c, x_one, nonlinear=False, many_to_many=False), None,
         "hadamard_forward with T = 1: validates every call"),
        ("sgemv-only", lambda: W @ h0, None, "W @ h, one BLAS call"),
    ]
    step_rows = []
    for impl, fn, target, note in step_jobs:
        timing = time_call(fn, budget_s=b_s, min_repeats=3 if quick else 7)
        step_rows.append(make_row(BENCH, step_case, impl, timing, target_s=target, note=note,
                                  **common))
    return rows + add_ratios(step_rows, subject_impl="hadamnp-float-step")


def main(quick=False):
    """Time every size; print the table; return the rows (list of dicts)."""
    threads = 1
    T = 200 if quick else 1000
    rows = []
    for n in SIZES:
        rows += run_size(n, T, quick, threads)
    print_table(rows, f"recurrent step latency, batch 1, {threads} thread, per step "
                      f"(T={T} steps per call, or one call per step); hadamnp_speedup = "
                      "other / hadamnp-int (or / hadamnp-float-step)")
    return rows


if __name__ == "__main__":
    print(format_facts(machine_facts()))
    main(quick="--quick" in sys.argv[1:])
