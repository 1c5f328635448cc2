"""Worker processes kept across runs (hybridq.bab.executors.WorkerPool): same results as in-process,
started once for many runs, closed without waiting for a start in progress."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hybridq import Deviation, InputBox, Layer, Network, verify
from hybridq.bab.executors import WorkerPool


@pytest.fixture(scope="module")
def net():
    rng = np.random.default_rng(0)
    w = [4, 40, 40, 40, 2]
    return Network(tuple(Layer(rng.normal(size=(w[i + 1], w[i])) / np.sqrt(w[i]), rng.normal(size=w[i + 1]) * 0.1,
                               "relu" if i < len(w) - 2 else "identity") for i in range(len(w) - 1)))


def _run(net, r, **kw):
    return verify(net, "rel:0.01", InputBox(-r * np.ones(4), r * np.ones(4)), Deviation(0.1, "logit", None),
                  backend="none", **kw)


def _pids(pool: WorkerPool) -> set:
    return {p.pid for p in pool._pool._processes.values()}


def test_shared_workers_same_result_and_started_once(net):
    ref = [_run(net, r, jobs=1) for r in (0.1, 0.12)]
    assert all(r.verdict == "robust" and r.stats.cells > 8 for r in ref)
    pool = WorkerPool(2)
    try:
        pool.start()
        t = time.time()
        while not pool.ready():
            assert time.time() - t < 300, "workers did not start"
            time.sleep(0.1)
        pids = _pids(pool)
        got = [_run(net, r, jobs=2, workers=pool) for r in (0.1, 0.12)]
        assert pool._n == 2  # both runs handed chunks to the pool (one problem bound per run)
        assert _pids(pool) == pids  # the same two worker processes served both runs
        for a, b in zip(ref, got):
            assert (a.verdict, a.stats.cells, a.stats.rounds, a.bound) == (b.verdict, b.stats.cells, b.stats.rounds,
                                                                            b.bound)
    finally:
        pool.close()
    assert pool._pool is None and pool._dir is None


def test_close_during_start_does_not_wait():
    pool = WorkerPool(2)
    pool.start()
    t = time.perf_counter()
    pool.close()
    assert time.perf_counter() - t < 3.0  # terminated, not waited for (a start takes several seconds)
    assert not pool.ready()
