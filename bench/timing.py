"""Shared by the benchmarks: the least disturbed of a few runs (this machine is shared)."""

import time


def best(fn, repeat: int = 3) -> float:
    """Minimum wall time of `repeat` calls of `fn`, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)
