"""Model calls on every core (lib_multipass/parallel.py): same results, in order, one model
per thread, and no deadlock when a call made on a worker maps again."""

from __future__ import annotations

import threading

import pytest

from lib_multipass import parallel


@pytest.fixture(params=[1, 3])
def workers(request, monkeypatch):
    monkeypatch.setattr(parallel, "WORKERS", request.param)
    monkeypatch.setattr(parallel, "_pool", None)
    return request.param


def test_results_come_in_the_order_of_the_items(workers):
    assert parallel.parallel_map(lambda n: n * n, range(50)) == [n * n for n in range(50)]


def test_each_thread_gets_its_own_model_made_once(workers):
    made = []

    class Model:
        def __init__(self):
            made.append(threading.get_ident())

    models = parallel.PerThread(Model)
    owners = parallel.parallel_map(lambda _: (threading.get_ident(), id(models.get()), id(models.get())), range(40))
    assert all(first == second for _, first, second in owners)  # made once on each thread
    assert len(made) == len(set(made)) == len({thread for thread, _, _ in owners}) <= workers
    assert len({model for _, model, _ in owners}) == len(made)  # never one thread's model on another


def test_a_map_inside_a_mapped_call_runs_on_its_thread(workers):
    """A face search inside a pose call, say: the pool's threads are all busy waiting otherwise."""
    def inner(n):
        return sum(parallel.parallel_map(lambda m: m + n, range(5)))

    assert parallel.parallel_map(inner, range(8)) == [sum(range(5)) + 5 * n for n in range(8)]
