"""Connecting the branch and bound to a Dask ``distributed`` cluster (``--cluster``).

:func:`open_cluster` turns a ``--cluster`` value into a connected ``distributed.Client``: a
scheduler address (``tcp://HOST:8786``, as printed by ``dask scheduler``) or ``local:N`` for a
``distributed.LocalCluster`` of ``N`` single-threaded worker processes on this machine.  The
client is handed to :func:`hybridq.verify` / :func:`hybridq.quantify` as ``executor=``, where
:class:`hybridq.bab.executors.DaskExecutor` runs the chunks on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading

from hybridq.errors import ClusterError

__all__ = ["open_cluster", "as_client", "local_cluster", "CONNECT_TIMEOUT", "PROBE_TIMEOUT", "LEAN_CONFIG"]

#: Seconds for the TCP handshake with a scheduler's host (a refused connection answers at once, a
#: host that drops packets is given up after this long).
PROBE_TIMEOUT = 3.0
#: Seconds for Dask's own handshake once the scheduler's port answered.
CONNECT_TIMEOUT = 10.0

EXTRA = "pip install 'hybridq[dask]'"

#: Dask settings of a ``local:N`` cluster.  Dask's defaults suit long task graphs on big machines;
#: here a round of 8 short tasks is followed by a merge, and every periodic job of the scheduler,
#: nannies and workers takes CPU from the workers when the machine has few cores (bench/cluster.py:
#: these settings brought the workers' CPU time from 1.3-1.45x that of the process pool's workers
#: to 1.05-1.1x on 2 cores).  None of them changes what a task computes.
LEAN_CONFIG = {
    "distributed.worker.profile.enabled": False,  # statistical profiler sampling the task thread every 10 ms
    "distributed.scheduler.work-stealing": False,  # rounds are 8 tasks; the queue decides who runs what
    "distributed.admin.tick.interval": "1s",  # event-loop health check (20 ms) in every server
    "distributed.worker.memory.monitor-interval": "1s",  # psutil every 100 ms in workers and nannies
    "distributed.admin.system-monitor.interval": "5s",  # psutil every 500 ms in every server
}


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise ClusterError(f"--cluster needs Dask's distributed package: {EXTRA}") from e
    return distributed


def as_client(executor):
    """The ``distributed.Client`` given as ``executor=`` (None stays None).

    Raises
    ------
    ClusterError
        ``distributed`` missing, or a client that is not connected.
    TypeError
        Anything else than a client or None.
    """
    if executor is None:
        return None
    distributed = _distributed()
    if not isinstance(executor, distributed.Client):
        raise TypeError(f"executor must be a distributed.Client or None, got {type(executor).__name__}")
    if executor.status != "running":
        raise ClusterError(f"the Dask client is not connected (status {executor.status!r})")
    return executor


def local_cluster(n: int):
    """A ``distributed.LocalCluster`` of ``n`` worker processes for the branch and bound.

    One thread per worker, numba threads ``cores // n`` each, no dashboard, :data:`LEAN_CONFIG`,
    no ``MALLOC_TRIM_THRESHOLD_`` (Dask sets it to give memory back to the system at every free,
    which costs the many small NumPy arrays of a cell a system call each), worker logs at error
    level (hybridq reports a lost worker or cluster itself), and SIGINT ignored by the workers
    (:func:`dask_setup`).

    Parameters
    ----------
    n : int
        Worker processes (>= 1).

    Returns
    -------
    distributed.LocalCluster
        Started; the caller closes it.
    """
    import dask

    distributed = _distributed()
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    environ["DASK_LOGGING__DISTRIBUTED"] = "error"
    env = {"NUMBA_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
    # SIGINT blocked while the cluster starts: the threads Dask starts now and the worker processes
    # they spawn inherit the mask, so a Ctrl-C to the process group during the start does not kill
    # half-started workers with tracebacks (the preload ignores it only once they are up); a
    # press meanwhile is taken from the pending set and raised here once the cluster is closed.
    # (multiprocessing's resource tracker is started first: starting it unblocks SIGINT again.)
    # SIGTERM, which the CLI turns into a KeyboardInterrupt, cannot be blocked the same way (the
    # workers would inherit the mask, and Dask stops them with SIGTERM): while the cluster starts,
    # a Python handler of it is replaced by one that only records the signal; it is raised after.
    block = threading.current_thread() is threading.main_thread()
    terms: list = []
    if block:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        old_term = signal.getsignal(signal.SIGTERM)
        if callable(old_term):
            signal.signal(signal.SIGTERM, lambda signum, frame: terms.append(signum))
    cluster, closed = None, False
    try:
        try:
            with dask.config.set({**LEAN_CONFIG, "distributed.nanny.pre-spawn-environ": environ}):
                cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                   dashboard_address=None, env=env, preload=[__name__])
            # the scheduler, in this process, installs Dask's gc diagnosis (warnings about long
            # collections); a Ctrl-C landing inside its gc callback is swallowed by Python ("Exception
            # ignored"), and the run went on to its timeout: turned off
            from distributed.gc import disable_gc_diagnosis

            disable_gc_diagnosis(force=True)
            if block and signal.SIGINT in signal.sigpending():
                signal.sigtimedwait({signal.SIGINT}, 0)  # taken here and raised below: delivered on
                terms.append(signal.SIGINT)  # unblocking, it could land in a gc callback of Dask's and be lost
            if terms:
                cluster.close()
                closed = True
                _INTERRUPTED_START.append(True)
        finally:
            if block:
                if callable(old_term):
                    signal.signal(signal.SIGTERM, old_term)
                signal.pthread_sigmask(signal.SIG_SETMASK, old)  # (a Ctrl-C since the check above: raised now)
    except KeyboardInterrupt:
        # a Ctrl-C that reached a thread with SIGINT unblocked (a native thread started before the
        # mask was set, e.g. OpenBLAS's pool: Python raises it in the main thread whatever the main
        # thread's mask; it interrupted Dask's start inside LocalCluster), or one delivered on
        # unblocking above: recorded, so that the CLI exits through the interpreter and the
        # started workers' semaphores are released (os._exit left them to the resource tracker,
        # which warned "leaked semaphore objects" on stderr after the "interrupted" line)
        _INTERRUPTED_START.append(True)
        if cluster is not None and not closed:  # (a SIGTERM recorded before it does not close it)
            cluster.close()
        raise
    if terms:
        if signal.SIGTERM in terms:
            old_term(signal.SIGTERM, None)  # the handler's own action (the CLI's raises KeyboardInterrupt)
        raise KeyboardInterrupt
    return cluster


#: Non-empty once a local cluster's start was interrupted in this process: the worker processes'
#: semaphores are released only by the interpreter's own exit (see :func:`start_interrupted`).
_INTERRUPTED_START: list = []


def start_interrupted() -> bool:
    """Whether a Ctrl-C / SIGTERM interrupted the start of a local cluster in this process (the
    CLI then exits through the interpreter, so that multiprocessing's resource tracker finds no
    leaked semaphores to warn about)."""
    return bool(_INTERRUPTED_START)


def dask_setup(worker) -> None:
    """Dask preload hook (``dask worker --preload hybridq.bab.cluster``; :func:`local_cluster`
    uses it): the worker process ignores SIGINT.  A Ctrl-C reaches the whole process group; the
    hybridq process then stops the run with its partial result, and the workers, like those of
    the process pool, must not die printing tracebacks first."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _probe(address: str, timeout: float) -> None:
    """Open and close a TCP connection to a ``tcp://`` / ``tls://`` scheduler address, so that an
    unreachable one fails at once (a refused connection) or after ``timeout`` seconds (a host that
    drops packets), where Dask would retry until its connect timeout.  Other schemes are left to
    Dask.  Raises :class:`ClusterError`."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme, _ = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = get_address_host_port(address)
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError as e:
        raise ClusterError(f"--cluster takes a scheduler address (tcp://HOST:8786) or local:N, got {address!r}") from e
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: no answer within {timeout:g} s") from e
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {why.lower()}") from e


@contextlib.contextmanager
def _quiet():
    """Dask's own log lines off on this process's stderr (hybridq reports a lost or unreachable
    cluster in one line; the library's loggers are restored on exit)."""
    names = ["distributed"] + [n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed.")]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def open_cluster(spec: str, connect_timeout: float = CONNECT_TIMEOUT, probe_timeout: float = PROBE_TIMEOUT):
    """Context manager yielding a connected ``distributed.Client`` for a ``--cluster`` value.

    Dask's log lines are silenced on this process's stderr while the client is open.

    Parameters
    ----------
    spec : str
        ``local:N`` (start :func:`local_cluster` of ``N`` worker processes; closed on exit) or a
        scheduler address such as ``tcp://10.0.0.5:8786`` (the cluster is left running on exit).
    connect_timeout : float
        Seconds for Dask's handshake once the scheduler's port answered.
    probe_timeout : float
        Seconds for the TCP connection to the scheduler's host (a refused one fails at once).

    Raises
    ------
    ClusterError
        ``distributed`` is not installed, ``N`` is not a positive integer, or the scheduler
        cannot be reached.
    """
    distributed = _distributed()
    spec = spec.strip()
    cluster = None
    with _quiet():
        if spec.startswith("local:") or spec == "local":
            n = spec.partition(":")[2] or str(os.cpu_count() or 1)
            if not n.isdigit() or int(n) < 1:
                raise ClusterError(f"--cluster local:N needs a positive number of workers, got {spec!r}")
            n = int(n)
            try:
                cluster = local_cluster(n)
                client = distributed.Client(cluster, timeout=connect_timeout)
            except Exception as e:  # noqa: BLE001 - one line, whatever went wrong
                if cluster is not None:
                    cluster.close()
                raise ClusterError(f"could not start a local Dask cluster of {n} workers: {e}") from e
        else:
            if "://" not in spec and ":" not in spec:
                raise ClusterError(f"--cluster takes a scheduler address (tcp://HOST:8786) or local:N, got {spec!r}")
            _probe(spec, probe_timeout)
            try:
                client = distributed.Client(spec, timeout=connect_timeout)
            except Exception as e:  # noqa: BLE001 - the port answered, the handshake did not
                why = (f"no Dask handshake within {connect_timeout:g} s" if isinstance(e, (TimeoutError, OSError))
                       else f"the port answered, but not as a Dask scheduler ({type(e).__name__})")
                raise ClusterError(f"cannot reach the Dask scheduler at {spec}: {why}") from e
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()
