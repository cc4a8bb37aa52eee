"""Time every check of nnref.laws at its default example count, on nnref's own functions
(the acceptance bound: all checks under 60 s on 2 cores), and screen the catalogue of
wrong implementations in tests/wrong_implementations.py with the full check.

    python benchmarks/bench_laws.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nnref import laws  # noqa: E402
from wrong_implementations import WRONG  # noqa: E402


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    total_wall = total_cpu = 0.0
    print(f"{'exercise':32s} {'laws':>4s} {'wall s':>7s} {'cpu s':>6s}  reference")
    for name in laws.names():
        report, wall, cpu = timed(lambda: laws.check(name, laws.reference(name)))
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        print(f"{name:32s} {len(report.results):4d} {wall:7.2f} {cpu:6.2f}  {'passed' if report.passed else 'FAILED'}")
    print(f"all {len(laws.names())} checks: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU (bound: 60 s)")
    caught = n = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for name in laws.names():
        for label, fn in WRONG[name].items():
            n += 1
            caught += not laws.check(name, fn).passed
    print(f"catalogue: {caught} of {n} wrong implementations caught by the full check "
          f"({time.perf_counter() - w0:.1f} s wall, {time.process_time() - c0:.1f} s CPU)")


if __name__ == "__main__":
    main()
