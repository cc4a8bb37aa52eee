"""An epoch of ``fit`` against a lean hand-written NumPy loop doing the same work.

Setting: ``MLP([784, 64, 32, 10])`` (ReLU, float32) on random data of MNIST's shape
(60,000 x 784 inputs in [0, 1), labels 0-9), one thread (``OMP_NUM_THREADS=1``,
``OPENBLAS_NUM_THREADS=1``, set below before numpy starts). Two optimizers:

* ``SGD(lr=0.01, momentum=0.9)``, no clipping;
* ``Adam(lr=1e-3)`` with ``clip.GlobalNorm(1.0)`` (global L2 norm clipping, PyTorch's
  ``clip_grad_norm_``).

The lean loop is what one would write by hand for exactly this network: the same
shuffled batches (the same seed), the same arithmetic in the same order (so the same
bits), the loss of every step, the same end-of-epoch evaluation on the training set
(loss and accuracy in batches of 4,096), and nothing else: no checks, no records beyond
the loss, no layer objects. Before timing, the script checks that both give bitwise
identical parameters after an epoch.

Timing: CPU time of the process (``time.process_time``: with one thread it is the work
done, and other processes on a shared machine do not inflate it), in rounds of (fit
epoch, lean epoch) interleaved so that a slow spell hits both alike; the figure is the
median over rounds of fit / lean. Targets
(issue 9): at most 1.25 at batch 32 and 1.15 at batch 128.

Run:  python benchmarks/bench_train.py [--rounds N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from nnref import clip  # noqa: E402
from nnref.mlp import MLP  # noqa: E402
from nnref.optim import SGD, Adam  # noqa: E402
from nnref.train import fit  # noqa: E402

SIZES = [784, 64, 32, 10]
N = 60_000
LR_SGD, MOMENTUM = 0.01, 0.9
LR_ADAM, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
MAX_NORM, CLIP_EPS = 1.0, 1e-6


def _forward(x, p):
    """Logits and the pre-activations the backward needs."""
    z1 = x @ p[0]
    z1 += p[1]
    h1 = np.maximum(z1, 0)
    z2 = h1 @ p[2]
    z2 += p[3]
    h2 = np.maximum(z2, 0)
    z3 = h2 @ p[4]
    z3 += p[5]
    return z1, h1, z2, h2, z3


def _cross_entropy(z, y):
    """Mean softmax cross-entropy and its gradient (log-sum-exp shift)."""
    b, c = z.shape
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted) @ np.ones(c, dtype=z.dtype))[:, None]
    rows = np.arange(b)
    loss = -float(np.add.reduce(logp[rows, y])) / b
    d = np.exp(logp, out=logp)
    d[rows, y] -= 1
    d /= b
    return loss, d


def _grads(xb, yb, p):
    z1, h1, z2, h2, z3 = _forward(xb, p)
    loss, d = _cross_entropy(z3, yb)
    g2 = (d @ p[4].T) * (z2 > 0)
    g1 = (g2 @ p[2].T) * (z1 > 0)
    return loss, [xb.T @ g1, g1.sum(axis=0), h1.T @ g2, g2.sum(axis=0), h2.T @ d, d.sum(axis=0)]


def _evaluate(x, y, p):
    total, correct = 0.0, 0
    for start in range(0, x.shape[0], 4096):
        xb, yb = x[start:start + 4096], y[start:start + 4096]
        z3 = _forward(xb, p)[-1]
        loss, _ = _cross_entropy(z3, yb)
        total += loss * len(xb)
        correct += int(np.sum(np.argmax(z3, axis=1) == yb))
    return total / x.shape[0], correct / x.shape[0]


def lean_sgd_epoch(p, state, x, y, batch, rng):
    """One epoch of SGD with momentum (PyTorch's rule), in place on ``p``."""
    order = rng.permutation(x.shape[0])
    losses = []
    for start in range(0, x.shape[0], batch):
        idx = order[start:start + batch]
        loss, grads = _grads(x[idx], y[idx], p)
        losses.append(loss)
        for i, g in enumerate(grads):
            if i not in state:
                state[i] = g.copy()
            else:
                state[i] *= MOMENTUM
                state[i] += g
            p[i] -= LR_SGD * state[i]
    return losses, _evaluate(x, y, p)


def lean_adam_clip_epoch(p, state, x, y, batch, rng):
    """One epoch of Adam after global-norm clipping, in place on ``p``."""
    order = rng.permutation(x.shape[0])
    losses = []
    for start in range(0, x.shape[0], batch):
        idx = order[start:start + batch]
        loss, grads = _grads(x[idx], y[idx], p)
        losses.append(loss)
        total = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)))
        coef = min(MAX_NORM / (total + CLIP_EPS), 1.0)
        for i, g in enumerate(grads):
            g *= np.float32(coef)
            if i not in state:
                state[i] = [0, np.zeros_like(g), np.zeros_like(g)]
            st = state[i]
            st[0] += 1
            m, v = st[1], st[2]
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * (g * g)
            p[i] -= (LR_ADAM * (m / (1 - BETA1 ** st[0]))) / (np.sqrt(v / (1 - BETA2 ** st[0])) + EPS)
    return losses, _evaluate(x, y, p)


CASES = {
    "SGD(momentum 0.9)": (lambda: SGD(LR_SGD, momentum=MOMENTUM), None, lean_sgd_epoch),
    "Adam + GlobalNorm(1)": (lambda: Adam(LR_ADAM), lambda: clip.GlobalNorm(MAX_NORM), lean_adam_clip_epoch),
}


def run_fit(model, case, x, y, batch):
    make_opt, make_clip, _ = CASES[case]
    t0 = time.process_time()
    h = fit(model, make_opt(), x, y, epochs=1, batch_size=batch, seed=0, verbose=False,
            grad_transform=make_clip() if make_clip else None)
    return time.process_time() - t0, h


def run_lean(p, case, x, y, batch):
    t0 = time.process_time()
    out = CASES[case][2](p, {}, x, y, batch, np.random.default_rng(0))
    return time.process_time() - t0, out


def check_identical(case, x, y, batch) -> None:
    """One epoch each from the same start: parameters, step losses and evaluation equal."""
    model = MLP(SIZES, seed=0)
    p = [a.copy() for a in model.params.values()]
    _, h = run_fit(model, case, x, y, batch)
    _, (losses, (tl, ta)) = run_lean(p, case, x, y, batch)
    same = all(np.array_equal(a, b) for a, b in zip(model.params.values(), p))
    if not (same and h.loss == losses and h.train_loss == [tl] and h.train_acc == [ta]):
        raise SystemExit(f"{case}, batch {batch}: fit and the lean loop differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((N, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], N)
    print(f"MLP({SIZES}) float32, {N:,} x {SIZES[0]} random inputs, one epoch; numpy {np.__version__}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; median of {args.rounds} interleaved rounds")
    print(f"{'case':<22} {'batch':>5} {'fit (s)':>8} {'lean (s)':>9} {'fit/lean':>9} {'target':>7}")
    for batch, target in ((32, 1.25), (128, 1.15)):
        for case in CASES:
            check_identical(case, x, y, batch)
            t_fit, t_lean, ratios = [], [], []
            for _ in range(args.rounds):
                a, _ = run_fit(MLP(SIZES, seed=0), case, x, y, batch)
                b, _ = run_lean([w.copy() for w in MLP(SIZES, seed=0).params.values()], case, x, y, batch)
                t_fit.append(a)
                t_lean.append(b)
                ratios.append(a / b)
            print(f"{case:<22} {batch:>5} {np.median(t_fit):>8.3f} {np.median(t_lean):>9.3f} "
                  f"{np.median(ratios):>9.3f} {target:>7.2f}")


if __name__ == "__main__":
    main()
