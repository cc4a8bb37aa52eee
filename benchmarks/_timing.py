"""Timing helper shared by the benchmarks: best of several repeats of a batch of calls."""

from __future__ import annotations

import time


def best_time(fn, number: int = 20, repeat: int = 7) -> float:
    """Seconds per call of ``fn()``: the minimum over ``repeat`` runs of ``number`` calls.

    The minimum is the least noisy estimate on a shared machine (other processes only ever
    add time), as ``timeit``'s documentation recommends.
    """
    fn()  # warm-up: first-call allocations and BLAS thread start-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best
