"""Timing helper shared by the benchmarks."""

import gc
import time


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of `repeat` runs of fn(), in seconds, each after a garbage collection."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
