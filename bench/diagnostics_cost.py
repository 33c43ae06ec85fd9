"""Cost of the training diagnostics on the sequential-MNIST shape (issue 13).

One training step of a 4-bit HadamRNN (n = 512, T = 784, B = 64, d_in = 1, many-to-one,
float32; forward + cross-entropy + backward + Adam) is timed beside the diagnostics the
loop adds on a logged step (:func:`hadamnp.training.diagnostics.gradient_diagnostics`
and :func:`~hadamnp.training.diagnostics.update_diagnostics`, including HadamRNN's hook:
quantizer scales and code counts, ``max |h|`` over the 25.7 M states). The loop computes
them only on logged steps, so the overhead per step is ``diagnostics / log_every``.

Run: ``python bench/diagnostics_cost.py [--quick]`` (one thread; medians of repeats, the
first call timed apart).
"""

import os
import sys

if __name__ == "__main__":
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from hadamnp.bench.harness import budget, format_facts, machine_facts, time_call  # noqa: E402


def main(quick=False):
    from hadamnp.models.losses import softmax_cross_entropy
    from hadamnp.models.registry import build_model
    from hadamnp.runs.config import RunConfig
    from hadamnp.training.diagnostics import gradient_diagnostics, update_diagnostics
    from hadamnp.training.loop import ParamGroups
    from hadamnp.training.optim import make_optimizer

    n, T, B = 512, 784, 64
    rng = np.random.default_rng(0)
    model = build_model("hadamrnn", input_size=1, hidden_size=n, output_size=10,
                        many_to_many=False, dtype="float32")
    params = model.init_params(rng)
    groups = ParamGroups.of(model, RunConfig(task="smnist", model_options={"hidden_size": n}))
    x = rng.random((B, T, 1), dtype=np.float32)
    y = rng.integers(0, 10, size=B)
    buffer = model.state_buffer(B, T)
    adam = make_optimizer("adam")
    state = adam.init_state(params)
    last = {}

    def step():
        logits, cache = model.forward(params, x, states_out=buffer)
        _, dlogits = softmax_cross_entropy(logits, y)
        grads = model.backward(params, cache, dlogits)
        new = {name: value.copy() for name, value in params.items()}
        adam.step(new, grads, {k: v.copy() for k, v in state.items()}, 1e-3)
        last.update(cache=cache, grads=grads, new=new)

    def diagnostics():
        out = gradient_diagnostics(model, groups, params, last["grads"], last["cache"])
        out.update(update_diagnostics(groups, params, last["new"]))
        return out

    seconds = budget(quick) * 3
    t_step = time_call(step, budget_s=seconds, min_repeats=3)
    t_diag = time_call(diagnostics, budget_s=seconds, min_repeats=5)
    keys = sorted(diagnostics())
    print(format_facts(machine_facts()))
    print(f"shape: n={n} T={T} B={B} float32, one thread; diagnostics keys: {len(keys)}")
    print(f"training step        median {t_step['median_s'] * 1e3:8.1f} ms  "
          f"(IQR {t_step['iqr_s'] * 1e3:.1f} ms, {t_step['repeats']} repeats, "
          f"first call {t_step['first_call_s']:.2f} s)")
    print(f"diagnostics          median {t_diag['median_s'] * 1e3:8.2f} ms  "
          f"(IQR {t_diag['iqr_s'] * 1e3:.2f} ms, {t_diag['repeats']} repeats)")
    for log_every in (1, 10):
        share = t_diag["median_s"] / log_every / t_step["median_s"]
        print(f"overhead per step at log_every={log_every:<3d} {100 * share:6.2f} %")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
