"""Does the learning rate of the latent signs decide whether a HadamRNN learns pMNIST?

A measurement, not a speed benchmark (not run by ``run_all``). Trains four 4-bit models
(n = 128, batch 100, Adam lr 1e-3, the same data and initialisation) for a few hundred
steps on permuted MNIST and prints the mean training accuracy over the last 50 steps:

- ``dense``: a full-precision dense orthogonal ``W`` (the baseline);
- ``hadamard, sign lr x1``: the paper's recipe, ``u`` updated at the full learning rate;
- ``hadamard, sign lr x0.1``: ``u`` at a tenth of it (``hadamnp train --sign-lr-scale 0.1``);
- ``hadamard, signs frozen``: ``u`` never updated (a fixed random-sign Hadamard ``W``).

Usage: ``python bench/sign_lr_ablation.py [--steps 200]``.
"""

import argparse
import time

import numpy as np

from hadamnp.io.datasets import load_task
from hadamnp.models.losses import accuracy, softmax_cross_entropy
from hadamnp.models.registry import build_model
from hadamnp.training.optim import Adam

VARIANTS = (("dense", "dense", 1.0), ("hadamard, sign lr x1", "hadamrnn", 1.0),
            ("hadamard, sign lr x0.1", "hadamrnn", 0.1),
            ("hadamard, signs frozen", "hadamrnn", 0.0))


def run(model_name, sign_lr_scale, task, steps, seed=0):
    """Train one variant; return (mean accuracy, mean loss) over the last 50 steps, seconds."""
    model = build_model(model_name, input_size=1, hidden_size=128, output_size=10,
                        many_to_many=False, dtype="float32")
    params = model.init_params(np.random.default_rng(seed))
    optimizer = Adam()
    state = optimizer.init_state(params)
    states, accs, losses = None, [], []
    started = time.perf_counter()
    for step, (x, y) in enumerate(task.iter_batches(0, 100)):
        if step == steps:
            break
        if states is None:
            states = model.state_buffer(x.shape[0], x.shape[1])
        logits, cache = model.forward(params, x, states_out=states)
        loss, dlogits = softmax_cross_entropy(logits, y)
        accs.append(accuracy(logits, y))
        losses.append(loss)
        grads = model.backward(params, cache, dlogits)
        optimizer.step(params, grads, state, 1e-3, lr_scales={"u": sign_lr_scale})
    return np.mean(accs[-50:]), np.mean(losses[-50:]), time.perf_counter() - started


def main(steps=200):
    task = load_task("pmnist")
    print(f"pMNIST, n = 128, 4-bit U/V, batch 100, Adam lr 1e-3, {steps} steps")
    for name, model_name, scale in VARIANTS:
        acc, loss, seconds = run(model_name, scale, task, steps)
        print(f"{name:26s} train accuracy {acc:.3f}  loss {loss:.3f}  (last 50 steps, {seconds:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    main(parser.parse_args().steps)
