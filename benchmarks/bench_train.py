"""Training and inference throughput of MLP([784, 64, 32, 10]) in float32.

For each batch size the benchmark times one full training step (forward, manual
backward, SGD update) and, in the same run, the bare matrix products that step needs
(its BLAS floor):

    forward   x @ W1, h1 @ W2, h2 @ W3
    backward  x^T @ g1, h1^T @ g2, h2^T @ g3   (weight gradients)
              g3 @ W3^T, g2 @ W2^T             (input gradients; none for the first layer)

The ratio step / floor is what nnref's Python-level bookkeeping costs on top of BLAS.

Run:  python benchmarks/bench_train.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time  # noqa: E402

from nnref.mlp import MLP  # noqa: E402
from nnref.optim import SGD  # noqa: E402

SIZES = [784, 64, 32, 10]


def blas_floor(x: np.ndarray, model: MLP) -> float:
    """Seconds for the eight matrix products of one training step, nothing else."""
    W1, W2, W3 = (lin.W for lin in model.linears)
    b = x.shape[0]
    rng = np.random.default_rng(1)
    h1 = rng.standard_normal((b, 64), dtype=np.float32)
    h2 = rng.standard_normal((b, 32), dtype=np.float32)
    g1 = rng.standard_normal((b, 64), dtype=np.float32)
    g2 = rng.standard_normal((b, 32), dtype=np.float32)
    g3 = rng.standard_normal((b, 10), dtype=np.float32)

    def products():
        x @ W1, h1 @ W2, h2 @ W3
        x.T @ g1, h1.T @ g2, h2.T @ g3
        g3 @ W3.T, g2 @ W2.T

    return best_time(products, number=50)


def main() -> None:
    rng = np.random.default_rng(0)
    model = MLP(SIZES, seed=0)
    opt = SGD(lr=1e-3)
    print(f"MLP({SIZES}) float32, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"{'batch':>6} {'step (us)':>10} {'samples/s':>11} {'BLAS floor (us)':>16} {'step/floor':>11}")
    for batch in (32, 128, 512):
        x = rng.random((batch, 784), dtype=np.float32)
        y = rng.integers(0, 10, batch)

        def step():
            _, grads = model.loss_and_grads(x, y)
            opt.step(model.params, grads)

        t_step = best_time(step, number=50)
        t_floor = blas_floor(x, model)
        print(f"{batch:>6} {1e6 * t_step:>10.1f} {batch / t_step:>11,.0f} {1e6 * t_floor:>16.1f} {t_step / t_floor:>11.2f}")
    x = rng.random((10_000, 784), dtype=np.float32)
    t_inf = best_time(lambda: model.predict(x), number=5)
    print(f"inference: predict on 10,000 inputs {1e3 * t_inf:.2f} ms = {10_000 / t_inf:,.0f} samples/s")


if __name__ == "__main__":
    main()
