"""Executors: who runs the chunks of a round.

The scheduler hands a round's chunks (argument tuples of :meth:`CellEngine.process`) to an
executor and merges the outcomes in chunk order, so every executor gives the same result.

* :class:`InProcessExecutor` runs the chunks one after the other in the calling process (the
  serial path *is* the parallel code, as nnenum's ``FakeQueue``); it stops between chunks when
  asked, and the scheduler puts the unprocessed chunks back into the queue.
* :class:`ProcessPoolExecutor` runs them on ``jobs`` spawned worker processes, each holding one
  :class:`CellEngine` built once from the :class:`Problem`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent import futures

from hybridq.bab.engine import CellEngine, Problem

__all__ = ["InProcessExecutor", "ProcessPoolExecutor"]


class InProcessExecutor:
    """Runs chunks sequentially in this process with one shared :class:`CellEngine`."""

    def __init__(self, engine: CellEngine):
        self.engine = engine

    def run(self, args: list, should_stop=None) -> list:
        """Outcome lists of the chunks, in order; stops before a chunk (not the first) when
        ``should_stop()`` is true, so the result may be shorter than ``args``."""
        results = []
        for k, a in enumerate(args):
            if k and should_stop is not None and should_stop():
                break
            results.append(self.engine.process(*a))
        return results

    def close(self, interrupted: bool = False) -> None:
        """Nothing to release."""


# ------------------------------------------------------------------ worker process side
_WORKER: CellEngine | None = None


def _init_worker(problem: Problem) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # share the cores among the workers instead of oversubscribing numba's thread pool
        import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // problem.config.jobs)))
    except (ImportError, ValueError):  # pragma: no cover
        pass
    _WORKER = CellEngine(problem)


def _ping(_):
    return os.getpid()


def _work(args):
    return _WORKER.process(*args)


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class ProcessPoolExecutor:
    """``jobs`` spawned worker processes; the problem is sent once per worker (initializer).

    The workers run single-threaded BLAS (tiny matrices; several BLAS threads per worker process
    only fight over the cores) and ignore SIGINT (the scheduler decides when to stop).
    """

    def __init__(self, problem: Problem, jobs: int):
        saved = {k: os.environ.get(k) for k in _BLAS_VARS}
        os.environ.update({k: "1" for k in _BLAS_VARS})
        try:
            self.pool = futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_init_worker, initargs=(problem,))
            list(self.pool.map(_ping, range(jobs)))  # start the workers now, with the environment above
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def run(self, args: list, should_stop=None) -> list:
        """Outcome lists of all chunks, in order (a round in flight is always completed)."""
        return list(self.pool.map(_work, args))

    def close(self, interrupted: bool = False) -> None:
        """Shut the pool down; after an interruption the workers are terminated at once."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())  # None after shutdown
        self.pool.shutdown(wait=not interrupted, cancel_futures=True)
        if interrupted:
            for proc in procs:
                proc.terminate()
