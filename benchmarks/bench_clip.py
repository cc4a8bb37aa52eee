"""Cost of gradient clipping inside training, for MLP([784, 64, 32, 10]) at batch 128.

Measured in one run, on random float32 data (8,192 examples = 64 steps an epoch):

* ``fit`` step time without a transform and with ``clip.GlobalNorm(1.0)`` (which scales
  the gradients in place by ``clip_by_global_norm``'s coefficient, from the norms ``fit``
  measured, and reports what it did), per step;
* the clipper's call as ``fit`` makes it, and the bare ``clip_by_global_norm`` call
  (which computes the norms itself), on one step's gradients.

The overhead is reported as a fraction of the unclipped step time (target: under 5%).

Run:  python benchmarks/bench_clip.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time  # noqa: E402

from nnref import clip  # noqa: E402
from nnref.mlp import MLP  # noqa: E402
from nnref.optim import SGD  # noqa: E402
from nnref.train import fit  # noqa: E402

SIZES = [784, 64, 32, 10]
N, BATCH, EPOCHS = 8192, 128, 3


def fit_step_time(x, y, transform) -> float:
    """Seconds per training step inside ``fit``: ``History.step_time`` counts the steps
    alone, without the per-epoch evaluation passes."""
    model = MLP(SIZES, seed=0)
    h = fit(model, SGD(lr=1e-3), x, y, epochs=EPOCHS, batch_size=BATCH, seed=0,
            grad_transform=transform, verbose=False)
    return sum(h.step_time) / h.n_steps


def paired_step_times(x, y, repeat: int = 15) -> tuple[float, float, float]:
    """Per-step times without and with ``clip.GlobalNorm(1.0)``, the two runs interleaved
    so that a slow spell of the (shared) machine hits both alike: the best of each, and the
    median of the paired differences (robust to drift)."""
    plain, clipped, diffs = [], [], []
    for _ in range(repeat):
        plain.append(fit_step_time(x, y, None))
        clipped.append(fit_step_time(x, y, clip.GlobalNorm(1.0)))
        diffs.append(clipped[-1] - plain[-1])
    return min(plain), min(clipped), float(np.median(diffs))


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((N, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], N)
    model = MLP(SIZES, seed=0)
    _, grads = model.loss_and_grads(x[:BATCH], y[:BATCH])
    grads = {k: v.copy() for k, v in grads.items()}

    t_plain, t_clipped, t_diff = paired_step_times(x, y)
    params = model.params
    measured = clip.grad_norms(grads)  # fit measures the norms once, for its History
    clipper = clip.GlobalNorm(1.0)
    t_clipper = best_time(lambda: clipper.clip(grads, params, norms=measured), number=200)
    t_call = best_time(lambda: clip.clip_by_global_norm(grads, 1.0), number=200)
    print(f"MLP({SIZES}) float32, batch {BATCH}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"fit step, no transform                       {1e6 * t_plain:8.1f} us")
    print(f"fit step, clip.GlobalNorm(1.0)               {1e6 * t_clipped:8.1f} us")
    print(f"GlobalNorm call as fit makes it (norm known) {1e6 * t_clipper:8.1f} us"
          f"  ({100 * t_clipper / t_plain:.1f}% of the step)")
    print(f"clip_by_global_norm function (computes norm) {1e6 * t_call:8.1f} us"
          f"  ({100 * t_call / t_plain:.1f}% of the step)")
    print(f"overhead in fit: {100 * t_diff / t_plain:.1f}% of the step (median paired difference; "
          f"best vs best {100 * (t_clipped - t_plain) / t_plain:.1f}%); target under 5%")
    print("(clipping acts at every step here: random labels keep the gradient norm above 1)")


if __name__ == "__main__":
    main()
