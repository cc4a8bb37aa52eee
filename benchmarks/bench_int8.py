"""Integer-only inference vs float32: MLP([784, 64, 32, 10]) on 10,000 inputs.

Times, in one run:

    forward   float32 MLP.forward(x)           vs  QuantizedMLP.forward_int(x_q)
              (x_q already quantized: the integer network alone)
    predict   float32 MLP.predict(x)           vs  QuantizedMLP.predict(x)
              (input quantization, integer network, integer argmax)

each integer version with the fast exact path (``method="auto"``: int8 products through
float BLAS where provably exact) and the pure integer path (``method="int"``: int64
products; numpy has no integer BLAS, so this one is much slower). Acceptance targets for
the fast path (issue 9): forward_int <= 1.4x float32 forward, predict <= 2.0x float32
predict, on one thread (the script sets OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1 itself,
before numpy loads, unless they are already set).

The machine is shared and noisy, so comparisons are *paired*: in every round each float
variant is timed right next to its integer counterpart (best of a few repeats each,
``_timing.best_time``), and the ratio of that pair is recorded. The summary reports, per
comparison, the median of the paired ratios over ``--rounds`` rounds and their min..max;
the targets are judged on the medians. (Pairing best times from different rounds would
let one lucky float run decide the verdict.)

Random weights and random calibration data are enough: timing does not depend on values.

Run:  python benchmarks/bench_int8.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread: must happen before numpy is imported

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time  # noqa: E402

from nnref.mlp import MLP  # noqa: E402
from nnref.quant.convert import quantize_model  # noqa: E402

SIZES = [784, 64, 32, 10]
N = 10_000
TARGETS = {"forward": 1.4, "predict": 2.0}


def paired_round(model: MLP, qmodel, x: np.ndarray, x_q: np.ndarray) -> dict[str, tuple[float, float]]:
    """One round: ``{what: (float seconds, int8 fast-path seconds)}``, each pair timed back to back."""
    pairs = {
        "forward": (lambda: model.forward(x), lambda: qmodel.forward_int(x_q, method="auto")),
        "predict": (lambda: model.predict(x), lambda: qmodel.predict(x, method="auto")),
    }
    return {what: (best_time(f, number=3, repeat=3), best_time(q, number=3, repeat=3))
            for what, (f, q) in pairs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (the median decides)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected >= 1, got {args.rounds}")

    rng = np.random.default_rng(0)
    model = MLP(SIZES, seed=0)
    x = rng.random((N, SIZES[0]), dtype=np.float32)
    qmodel = quantize_model(model, rng.random((1_000, SIZES[0]), dtype=np.float32))
    x_q = qmodel.quantize_input(x)
    # The two paths must agree bit for bit before their speed means anything.
    assert np.array_equal(qmodel.forward_int(x_q, method="auto"), qmodel.forward_int(x_q, method="int"))
    assert np.array_equal(qmodel.predict(x[:2_000], method="auto"), qmodel.predict(x[:2_000], method="int"))

    threads = os.environ["OPENBLAS_NUM_THREADS"]
    print(f"MLP({SIZES}) on {N:,} inputs, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={threads}")
    print(qmodel)
    times: dict[str, list[tuple[float, float]]] = {"forward": [], "predict": []}
    for r in range(1, args.rounds + 1):
        for what, pair in paired_round(model, qmodel, x, x_q).items():
            times[what].append(pair)
        print(f"round {r}: int8/float32 forward {times['forward'][-1][1] / times['forward'][-1][0]:.2f}x, "
              f"predict {times['predict'][-1][1] / times['predict'][-1][0]:.2f}x")

    # The pure-integer path is slow: timed once per comparison, for the table only.
    int_path = {
        "forward": best_time(lambda: qmodel.forward_int(x_q, method="int"), number=1, repeat=2),
        "predict": best_time(lambda: qmodel.predict(x, method="int"), number=1, repeat=2),
    }

    print(f"\n{'variant':<26} {'median ms':>10} {'inputs/s':>12} {'vs float32 (median, min..max)':>32}")
    ok = True
    for what, limit in TARGETS.items():
        name = "forward_int" if what == "forward" else "predict"
        f_times = np.array([p[0] for p in times[what]])
        q_times = np.array([p[1] for p in times[what]])
        ratios = q_times / f_times  # paired: same round
        f_med = float(np.median(f_times))
        med, lo, hi = float(np.median(ratios)), float(ratios.min()), float(ratios.max())
        print(f"{'float ' + what:<26} {1e3 * f_med:>10.2f} {N / f_med:>12,.0f} {'1.00x':>32}")
        q_med = float(np.median(q_times))
        print(f"{'int8 ' + name + ' (auto)':<26} {1e3 * q_med:>10.2f} {N / q_med:>12,.0f} "
              f"{f'{med:.2f}x ({lo:.2f}..{hi:.2f})':>32}")
        t_int = int_path[what]
        print(f"{'int8 ' + name + ' (int)':<26} {1e3 * t_int:>10.2f} {N / t_int:>12,.0f} "
              f"{f'{t_int / f_med:.2f}x (one run)':>32}")
        verdict = "ok" if med <= limit else "MISSED"
        ok &= med <= limit
        print(f"target {what}: int8 fast path median {med:.2f}x float32 (<= {limit:g}x): {verdict}\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
