"""Independent model calls on every core.

mediapipe's graphs run one image at a time and release the GIL while they do, so N threads
holding a graph each look at N tiles at once (pose over 60 tiles: 0.85 s on one thread,
0.43 s on two, on 2 cores). A graph is not safe to share between threads: `PerThread` makes
one for each thread that asks. The threads are kept (a graph takes 50-100 ms to build), and
only they hold graphs: memory grows by a set of graphs per thread (a pose graph is about
85 MB, a face graph 5 MB: the offline mask stage peaks at 567 MB on 2 threads, 347 MB on one).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: threads for model calls: the cores, at most 4 (each holds its own graphs)
WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_PREFIX = "multipass-model"


def parallel_map(call: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`[call(item) for item in items]`, in that order, on WORKERS threads."""
    items = list(items)
    # on the pool even for one item: only its threads hold graphs (a pose graph is 85 MB)
    if WORKERS == 1 or not items or threading.current_thread().name.startswith(_PREFIX):  # nested: no deadlock
        return [call(item) for item in items]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix=_PREFIX)
    return list(_pool.map(call, items))


class PerThread(Generic[T]):
    """One instance of a model for each thread, made by `make` on that thread's first use."""

    def __init__(self, make: Callable[[], T]):
        self.make = make
        self._local = threading.local()

    def get(self) -> T:
        model: T | None = getattr(self._local, "model", None)
        if model is None:
            model = self._local.model = self.make()
        return model
