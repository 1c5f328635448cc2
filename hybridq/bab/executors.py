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
  BLAS threads per worker process only fight over the cores), ignore SIGINT (the scheduler
  decides when to stop) and end by themselves when the process that started them is gone.
* :class:`DaskExecutor` runs them as tasks on the workers of a Dask ``distributed`` cluster
  (:mod:`hybridq.bab.cluster` connects to one or starts a ``LocalCluster``).

All share ``run(args, should_stop) -> list of outcome lists`` (a prefix of the chunks, in order),
``ready()`` and ``close(interrupted)``.  An executor that loses its workers raises
:class:`ExecutorLost` carrying the outcomes of the chunks it did finish.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent import futures

from hybridq.bab.engine import CellEngine, Problem

__all__ = ["InProcessExecutor", "PoolExecutor", "WorkerPool", "DaskExecutor", "ExecutorLost", "EngineCache",
           "cluster_threads"]


class ExecutorLost(RuntimeError):
    """The executor's workers are gone (cluster shut down, scheduler unreachable, every worker
    dead); ``results`` holds the outcome lists of the first chunks, which did finish."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


class InProcessExecutor:
    """Runs chunks sequentially in this process with one shared :class:`CellEngine`.

    A chunk cannot be cut short (compiled kernels), so before each chunk it estimates the chunk's
    time and does not start it when it would end after the chunk's deadline (``out_of_time`` is
    then set): the run's timeout holds.  The estimate is the most seconds per cell of the last
    round's chunks (those of a round differ severalfold), without the parts that keep the deadline
    on their own (attacks, exact re-checks and exact-stage calls, :attr:`CellEngine.guarded_total`):
    what is left is the bound pass and the split decisions.
    Only runs that come within one chunk of their deadline see this; the others keep their result.
    """

    def __init__(self, engine: CellEngine):
        self.engine = engine
        self.cell_seconds: float | None = None  # the most wall seconds per cell of the last round's chunks
        self.out_of_time = False  # the last run() left a chunk out because it would end past its deadline

    def chunk_estimate(self, n_cells: int) -> float:
        """Seconds a chunk of ``n_cells`` cells is expected to take (0 before any chunk ran)."""
        return 0.0 if self.cell_seconds is None else self.cell_seconds * n_cells

    def run(self, args: list, should_stop=None) -> list:
        """Outcome lists of the chunks, in order; stops before a chunk (not the first) when
        ``should_stop()`` is true, and before any chunk that is expected to end after its
        deadline (``args[k][3]``, ``time.time()`` seconds; sets ``out_of_time``), so the result
        may be shorter than ``args``."""
        results = []
        self.out_of_time = False
        worst = None  # this round's most seconds per cell so far
        for k, a in enumerate(args):
            if k and should_stop is not None and should_stop():
                break
            deadline = a[3]
            if deadline is not None and time.time() + self.chunk_estimate(len(a[0])) > deadline:
                self.out_of_time = True
                break
            t, g = time.perf_counter(), self.engine.guarded_total
            results.append(self.engine.process(*a))
            # attacks, exact re-checks and exact calls are left out: each keeps the deadline on its own
            spent = max(0.0, time.perf_counter() - t - (self.engine.guarded_total - g)) / max(1, len(a[0]))
            worst = spent if worst is None else max(worst, spent)
            self.cell_seconds = worst
        return results

    def close(self, interrupted: bool = False) -> None:
        """Nothing to release."""


# ------------------------------------------------------------------ worker side (pool and Dask)
class EngineCache(threading.local):
    """A worker thread's :class:`CellEngine` per problem key, the ``keep`` most recently used.

    One per thread (a :class:`threading.local`): an engine is never shared between the threads
    of a Dask worker.  Used by the worker processes of a :class:`WorkerPool` (one thread) and by
    Dask workers alike; which problems are cached never changes an outcome (a chunk's outcomes
    depend only on its arguments and the problem).
    """

    def __init__(self, keep: int):
        self.keep = keep
        self.engines: OrderedDict = OrderedDict()

    def get(self, key, load) -> CellEngine:
        """The engine of problem ``key``, built from ``load()`` (a :class:`Problem`) if not cached."""
        eng = self.engines.get(key)
        if eng is not None:
            self.engines.move_to_end(key)
            return eng
        eng = self.engines[key] = CellEngine(load())
        while len(self.engines) > self.keep:
            self.engines.popitem(last=False)
        return eng


#: This worker's engines (a worker process of a WorkerPool, or a Dask worker's thread): the
#: current run's problem and the previous one (a batch's runs follow each other).
_ENGINES = EngineCache(keep=2)


def _watch_parent(parent: int) -> None:
    """End this worker when the process that started it is gone (killed, or exited without
    shutting the pool down): a worker must never outlive its run holding memory and stdout."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _init_shared(jobs: int, parent: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent or os.getppid(),), daemon=True).start()
    try:
        import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // jobs)))
    except (ImportError, ValueError):  # pragma: no cover
        pass


def _ping(_):
    return os.getpid()


def _load(path: str) -> Problem:
    with open(path, "rb") as f:
        return pickle.load(f)


def _work_shared(task):
    key, path, args = task
    return _ENGINES.get(key, lambda: _load(path)).process(*args)


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
                                               initializer=_init_shared, initargs=(self.jobs, os.getpid()))
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
        # the executor object exists within milliseconds of the start: wait for it (at most 0.5 s),
        # not for the workers to come up (a timed-out run must not wait past its deadline)
        t_end = time.perf_counter() + 0.5
        while starting and self._pool is None and self._thread.is_alive() and time.perf_counter() < t_end:
            time.sleep(0.005)
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            manager = getattr(self._pool, "_executor_manager_thread", None)
            quick = interrupted or starting
            self._pool.shutdown(wait=not quick, cancel_futures=True)
            if quick:
                for proc in procs:
                    proc.terminate()
                if manager is not None:
                    # the executor's manager thread notices the terminated workers; let it finish
                    # (at most 0.5 s) rather than die with a traceback at the interpreter's exit
                    manager.join(0.5)
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
        """Outcome lists of the chunks, in order.  When ``should_stop()`` turns true (interrupt,
        SIGTERM, deadline) the chunks not yet finished are cancelled and the longest finished
        prefix is returned (the scheduler puts the rest back into the queue)."""
        fs = [self.shared._pool.submit(_work_shared, (self.key, self.path, a)) for a in args]
        pending = set(fs)
        while pending:
            _, pending = futures.wait(pending, timeout=0.1, return_when=futures.FIRST_COMPLETED)
            if pending and should_stop is not None and should_stop():
                for f in pending:
                    f.cancel()
                break
        results = []
        for f in fs:
            if not f.done() or f.cancelled():
                break
            results.append(f.result())
        return results

    def close(self, interrupted: bool = False) -> None:
        """Release this run's problem file (the pool stays for the next run)."""
        try:
            os.remove(self.path)
        except OSError:
            pass


# ------------------------------------------------------------------ Dask
def _dask_work(problem: Problem, key: str, group: list) -> list:
    """A Dask task: consecutive chunks (argument tuples) on this worker thread's engine for the
    scattered problem; their outcome lists, in order."""
    engine = _ENGINES.get(key, lambda: problem)
    return [engine.process(*a) for a in group]


class DaskExecutor:
    """Chunks as tasks on a Dask ``distributed`` cluster.

    The :class:`Problem` is scattered once to every worker (``broadcast=True``); each task names
    it, so a chunk carries only its cells.  A round's chunks go out as at most ``per_thread``
    tasks per worker thread, each a run of consecutive chunks (every chunk still gets its own
    :meth:`CellEngine.process` call, so the outcomes are those of ``jobs = 1``): a Dask task costs
    a few milliseconds of CPU in the client, scheduler and worker, which a round of 8 one-chunk
    tasks on 2 workers paid 8 times.  Each worker thread builds one :class:`CellEngine` per
    problem (kernels are compiled or loaded from numba's cache once per worker process).  A worker
    that dies mid-chunk has its task re-run on another worker by the Dask scheduler (a chunk's
    outcomes depend only on its arguments, so the result does not change); ``retries`` re-runs a
    chunk that raised on a worker.  When no worker has been seen for ``grace`` seconds, or the
    client lost its scheduler, :meth:`run` raises :class:`ExecutorLost` with the finished prefix.

    Parameters
    ----------
    problem : Problem
    client : distributed.Client
        Connected client; the caller owns it (it is not closed here).
    grace : float
        Seconds without a worker (or a scheduler connection) before the cluster counts as lost.
    poll : float
        Seconds between checks of ``should_stop`` (and of the client's connection).
    check : float
        Seconds between two questions to the scheduler about its workers while a round waits
        (each is a round trip; asking at every poll took CPU from the workers on a small machine).
    per_thread : int
        Tasks per worker thread and round (more balance the load, fewer cost less).

    Attributes
    ----------
    workers : int
        Worker threads of the cluster when the run started (``stats.jobs``).
    """

    def __init__(self, problem: Problem, client, grace: float = 20.0, poll: float = 0.25, retries: int = 1,
                 check: float = 2.0, per_thread: int = 2):
        import distributed

        self._distributed = distributed
        self.client = client
        self.grace, self.poll, self.retries, self.check, self.per_thread = grace, poll, retries, check, per_thread
        self.run_id = uuid.uuid4().hex[:12]
        self.pending: list = []
        self.rounds = 0
        try:
            self.workers = cluster_threads(client)
            self.problem = client.scatter(problem, broadcast=True, hash=False)
        except Exception as e:  # noqa: BLE001 - any failure to reach the cluster
            raise ExecutorLost(f"cluster lost: {_why(e)}", []) from e

    def run(self, args: list, should_stop=None) -> list:
        """Outcome lists of the chunks, in order; the finished prefix when ``should_stop()``
        becomes true.  Raises :class:`ExecutorLost` (with the finished prefix) when the cluster
        is gone, and re-raises an error a chunk raised on a worker."""
        dd = self._distributed
        self.rounds += 1
        size = -(-len(args) // max(1, self.per_thread * self.workers))  # chunks per task
        groups = [args[i:i + size] for i in range(0, len(args), size)]
        n = len(groups)
        try:
            # one message to the scheduler for the whole round (``map``, not a ``submit`` per task)
            futs = self.client.map(_dask_work, [self.problem] * n, [self.problem.key] * n, groups,
                                   key=[f"hybridq-chunk-{self.run_id}-{self.rounds}-{k}" for k in range(n)],
                                   pure=False, retries=self.retries)
        except Exception as e:  # noqa: BLE001
            raise ExecutorLost(f"cluster lost: {_why(e)}", []) from e
        self.pending = futs
        alone_since = None
        checked = time.monotonic()
        while True:
            try:
                dd.wait(futs, timeout=self.poll)
                break
            except TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - cancelled or lost futures: judged below
                break
            if should_stop is not None and should_stop():
                break
            if any(f.status in ("error", "cancelled", "lost") for f in futs):
                break
            if self.client.status == "running" and time.monotonic() - checked < self.check:
                continue
            checked = time.monotonic()
            healthy = self.client.status == "running" and cluster_threads(self.client) > 0
            if healthy:
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > self.grace:
                why = "no scheduler" if self.client.status != "running" else "no workers"
                raise ExecutorLost(f"cluster lost ({why} for {self.grace:g} s)", _flat(self._prefix(futs)))
        done = self._prefix(futs)
        self.pending = futs[len(done):]
        if len(done) < len(futs) and not (should_stop is not None and should_stop()):
            f = futs[len(done)]
            err = f.exception(timeout=self.grace) if f.status == "error" else None
            if err is not None and not _is_lost(err):
                raise err
            raise ExecutorLost(f"cluster lost: {_why(err) if err is not None else 'a chunk was ' + f.status}",
                               _flat(done))
        self._cancel()
        return _flat(done)

    def ready(self) -> bool:
        """The cluster's workers take chunks as soon as they are submitted."""
        return True

    def _prefix(self, futs) -> list:
        if all(f.status == "finished" for f in futs):
            try:
                return self.client.gather(futs)  # one round trip for the whole round
            except Exception:  # noqa: BLE001 - a result lost meanwhile: fetch the prefix one by one
                pass
        out = []
        for f in futs:
            if f.status != "finished":
                break
            try:
                out.append(f.result(timeout=self.grace))
            except Exception:  # noqa: BLE001 - gone between the status check and the fetch
                break
        return out

    def _cancel(self) -> None:
        if self.pending:
            try:
                self.client.cancel(self.pending, force=True)
            except Exception:  # noqa: BLE001 - the cluster is gone anyway
                pass
        self.pending = []

    def close(self, interrupted: bool = False) -> None:
        """Cancel chunks still in flight and release the scattered problem (the client stays open)."""
        self._cancel()
        try:
            self.client.cancel([self.problem], force=True)
        except Exception:  # noqa: BLE001
            pass


def _flat(groups: list) -> list:
    """The outcome lists of the chunks of consecutive tasks, in order."""
    return [outs for group in groups for outs in group]


def cluster_threads(client) -> int:
    """Worker threads (chunks run at once) a Dask cluster has now: one light round trip to the
    scheduler; 0 when it cannot be reached."""
    try:
        return sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - the scheduler is unreachable
        return 0


def _is_lost(err: BaseException) -> bool:
    """Whether a task's exception means the cluster failed (not the chunk's own computation)."""
    import distributed

    lost = (distributed.client.FutureCancelledError if hasattr(distributed.client, "FutureCancelledError") else (),
            futures.CancelledError, OSError, TimeoutError)
    return isinstance(err, lost) or type(err).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError")


def _why(err: BaseException | None) -> str:
    text = str(err).strip().splitlines()[0] if err is not None and str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
