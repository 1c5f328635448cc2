"""Executors: who runs the chunks of a round.

The scheduler hands a round's chunks (argument tuples of :meth:`CellEngine.process`) to an
executor and merges the outcomes in chunk order, so every executor gives the same result.

* :class:`InProcessExecutor` runs the chunks one after the other in the calling process (the
  serial path *is* the parallel code, as nnenum's ``FakeQueue``); it stops between chunks when
  asked, and the scheduler puts the unprocessed chunks back into the queue.
* :class:`PoolExecutor` runs them on a :class:`WorkerPool`: ``jobs`` spawned worker processes,
  started in a background thread (the run goes on in-process until they are up) and kept for
  many runs (a batch starts them at most once); each worker builds a :class:`CellEngine` the first
  time it gets a chunk of a run.  The workers run single-threaded BLAS (tiny matrices; several
  BLAS threads per worker process only fight over the cores) and ignore SIGINT (the scheduler
  decides when to stop).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
from concurrent import futures

from hybridq.bab.engine import CellEngine, Problem

__all__ = ["InProcessExecutor", "PoolExecutor", "WorkerPool"]


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


# ------------------------------------------------------------------ worker processes
_ENGINES: dict = {}  # problem key -> CellEngine, in a worker of a WorkerPool (the latest two)


def _init_shared(jobs: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // jobs)))
    except (ImportError, ValueError):  # pragma: no cover
        pass


def _ping(_):
    return os.getpid()


def _work_shared(task):
    key, path, args = task
    engine = _ENGINES.get(key)
    if engine is None:
        with open(path, "rb") as f:
            engine = CellEngine(pickle.load(f))
        while len(_ENGINES) >= 2:
            _ENGINES.pop(next(iter(_ENGINES)))
        _ENGINES[key] = engine
    return engine.process(*args)


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class WorkerPool:
    """``jobs`` spawned worker processes started in the background and kept for many runs.

    A run that grows long enough (see :func:`hybridq.bab.scheduler.run_bab`) starts the pool in a
    background thread and keeps working in-process until the workers are up; a batch
    (:mod:`hybridq.batch`) passes one pool to every run, so the workers start at most once per
    batch.  Each run binds its :class:`Problem` (:meth:`bind`): the problem is pickled once to a
    file and a worker loads it the first time it gets a chunk of that run (workers keep the last
    two problems' engines).
    """

    def __init__(self, jobs: int):
        self.jobs = int(jobs)
        self._pool = None
        self._thread = None
        self._error = None
        self._dir = None
        self._n = 0

    def _start(self) -> None:
        saved = {k: os.environ.get(k) for k in _BLAS_VARS}
        os.environ.update({k: "1" for k in _BLAS_VARS})
        try:
            pool = futures.ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_init_shared, initargs=(self.jobs,))
            self._pool = pool
            list(pool.map(_ping, range(self.jobs)))  # the workers are up (imports and kernels loaded)
        except Exception as e:  # pragma: no cover - a failed start leaves the run in-process
            self._error = e
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def start(self) -> None:
        """Start the workers in a background thread (no-op when started)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._start, name="hybridq-pool-start", daemon=True)
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def ready(self) -> bool:
        """The workers are up and can take chunks."""
        return self._thread is not None and not self._thread.is_alive() and self._pool is not None \
            and self._error is None

    def bind(self, problem: Problem) -> "PoolExecutor":
        """An executor running chunks of ``problem`` on this pool."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="hybridq-pool-")
        self._n += 1
        key = f"{os.getpid()}-{self._n}"
        path = os.path.join(self._dir, key + ".pkl")
        with open(path, "wb") as f:
            pickle.dump(problem, f, protocol=pickle.HIGHEST_PROTOCOL)
        return PoolExecutor(self, key, path)

    def close(self, interrupted: bool = False) -> None:
        """Stop the workers and remove the problem files.  Workers still starting (the run ended
        first) or interrupted ones are terminated at once, so closing never waits for a start."""
        starting = self._thread is not None and self._thread.is_alive()
        if starting:
            self._thread.join(0.5)  # the executor object exists within milliseconds of the start
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            quick = interrupted or starting
            self._pool.shutdown(wait=not quick, cancel_futures=True)
            if quick:
                for proc in procs:
                    proc.terminate()
        self._pool = self._thread = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class PoolExecutor:
    """One run's view of a :class:`WorkerPool` (the executor interface)."""

    def __init__(self, shared: WorkerPool, key: str, path: str):
        self.shared, self.key, self.path = shared, key, path

    def ready(self) -> bool:
        return self.shared.ready()

    def run(self, args: list, should_stop=None) -> list:
        """Outcome lists of all chunks, in order (a round in flight is always completed)."""
        return list(self.shared._pool.map(_work_shared, [(self.key, self.path, a) for a in args]))

    def close(self, interrupted: bool = False) -> None:
        """Release this run's problem file (the pool stays for the next run)."""
        try:
            os.remove(self.path)
        except OSError:
            pass
