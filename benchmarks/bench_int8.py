"""Integer-only inference vs float32: MLP([784, 64, 32, 10]) on 10,000 inputs.

Times, in one run:

    forward   float32 MLP.forward(x)           vs  QuantizedMLP.forward_int(x_q)
              (x_q already quantized: the integer network alone)
    predict   float32 MLP.predict(x)           vs  QuantizedMLP.predict(x)
              (input quantization, integer network, integer argmax)

each integer version with the fast exact path (``method="auto"``: int8 products through
float BLAS where provably exact) and the pure integer path (``method="int"``: int64
products; numpy has no integer BLAS, so this one is much slower). Acceptance targets for
the fast path: forward_int <= 2x float32 forward, predict <= 3x float32 predict.

Random weights and random calibration data are enough: timing does not depend on values.
The machine is shared, so every number is the best of several repeats
(``_timing.best_time``) and the whole measurement is repeated ``--rounds`` times.

Run:  python benchmarks/bench_int8.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time  # noqa: E402

from nnref.mlp import MLP  # noqa: E402
from nnref.quant.convert import quantize_model  # noqa: E402

SIZES = [784, 64, 32, 10]
N = 10_000
TARGETS = {"forward": 2.0, "predict": 3.0}


def measure(model: MLP, qmodel, x: np.ndarray, x_q: np.ndarray, int_path: bool) -> dict[str, float]:
    """Seconds per call of each variant (the pure-integer ones only when ``int_path``)."""
    t = {
        "float forward": best_time(lambda: model.forward(x), number=5, repeat=5),
        "int8 forward_int (auto)": best_time(lambda: qmodel.forward_int(x_q, method="auto"), number=5, repeat=5),
        "float predict": best_time(lambda: model.predict(x), number=5, repeat=5),
        "int8 predict (auto)": best_time(lambda: qmodel.predict(x, method="auto"), number=5, repeat=5),
    }
    if int_path:
        t["int8 forward_int (int)"] = best_time(lambda: qmodel.forward_int(x_q, method="int"), number=1, repeat=2)
        t["int8 predict (int)"] = best_time(lambda: qmodel.predict(x, method="int"), number=1, repeat=2)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="repeat the whole measurement")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    model = MLP(SIZES, seed=0)
    x = rng.random((N, SIZES[0]), dtype=np.float32)
    qmodel = quantize_model(model, rng.random((1_000, SIZES[0]), dtype=np.float32))
    x_q = qmodel.quantize_input(x)
    # The two paths must agree bit for bit before their speed means anything.
    assert np.array_equal(qmodel.forward_int(x_q, method="auto"), qmodel.forward_int(x_q, method="int"))

    print(f"MLP({SIZES}) on {N:,} inputs, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(qmodel)
    best: dict[str, float] = {}
    for r in range(1, args.rounds + 1):
        t = measure(model, qmodel, x, x_q, int_path=(r == 1))
        for k, v in t.items():
            best[k] = min(best.get(k, float("inf")), v)
        print(f"round {r}: int8/float32 forward {t['int8 forward_int (auto)'] / t['float forward']:.2f}x, "
              f"predict {t['int8 predict (auto)'] / t['float predict']:.2f}x")

    print(f"\n{'variant':<26} {'ms':>9} {'inputs/s':>12} {'vs float32':>11}")
    for what in ("forward", "predict"):
        base = best[f"float {what}"]
        name = "forward_int" if what == "forward" else "predict"
        for key in (f"float {what}", f"int8 {name} (auto)", f"int8 {name} (int)"):
            v = best[key]
            print(f"{key:<26} {1e3 * v:>9.2f} {N / v:>12,.0f} {v / base:>10.2f}x")
    ok = True
    for what, limit in TARGETS.items():
        name = "forward_int" if what == "forward" else "predict"
        ratio = best[f"int8 {name} (auto)"] / best[f"float {what}"]
        verdict = "ok" if ratio <= limit else "MISSED"
        ok &= ratio <= limit
        print(f"target {what}: int8 fast path {ratio:.2f}x float32 (<= {limit:g}x): {verdict}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
