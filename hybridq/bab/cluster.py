"""Connecting the branch and bound to a Dask ``distributed`` cluster (``--cluster``).

:func:`open_cluster` turns a ``--cluster`` value into a connected ``distributed.Client``: a
scheduler address (``tcp://HOST:8786``, as printed by ``dask scheduler``) or ``local:N`` for a
``distributed.LocalCluster`` of ``N`` single-threaded worker processes on this machine.  The
client is handed to :func:`hybridq.verify` / :func:`hybridq.quantify` as ``executor=``, where
:class:`hybridq.bab.executors.DaskExecutor` runs the chunks on it.
"""

from __future__ import annotations

import contextlib
import os

from hybridq.errors import ClusterError

__all__ = ["open_cluster", "as_client", "CONNECT_TIMEOUT"]

#: Seconds to reach a scheduler before the address counts as unreachable.
CONNECT_TIMEOUT = 5.0

EXTRA = "pip install 'hybridq[dask]'"


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


@contextlib.contextmanager
def open_cluster(spec: str, connect_timeout: float = CONNECT_TIMEOUT):
    """Context manager yielding a connected ``distributed.Client`` for a ``--cluster`` value.

    Parameters
    ----------
    spec : str
        ``local:N`` (start a ``LocalCluster`` of ``N`` worker processes, one thread each, numba
        threads ``cores // N`` each; closed on exit) or a scheduler address such as
        ``tcp://10.0.0.5:8786`` (the cluster is left running on exit).
    connect_timeout : float
        Seconds to reach the scheduler.

    Raises
    ------
    ClusterError
        ``distributed`` is not installed, ``N`` is not a positive integer, or the scheduler
        cannot be reached within ``connect_timeout``.
    """
    distributed = _distributed()
    spec = spec.strip()
    cluster = None
    if spec.startswith("local:") or spec == "local":
        n = spec.partition(":")[2] or str(os.cpu_count() or 1)
        if not n.isdigit() or int(n) < 1:
            raise ClusterError(f"--cluster local:N needs a positive number of workers, got {spec!r}")
        n = int(n)
        env = {"NUMBA_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
        try:
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None, env=env)
            client = distributed.Client(cluster, timeout=connect_timeout)
        except Exception as e:  # noqa: BLE001 - one line, whatever went wrong
            if cluster is not None:
                cluster.close()
            raise ClusterError(f"could not start a local Dask cluster of {n} workers: {e}") from e
    else:
        if "://" not in spec and ":" not in spec:
            raise ClusterError(f"--cluster takes a scheduler address (tcp://HOST:8786) or local:N, got {spec!r}")
        try:
            client = distributed.Client(spec, timeout=connect_timeout)
        except Exception as e:  # noqa: BLE001
            raise ClusterError(f"cannot reach the Dask scheduler at {spec} within {connect_timeout:g} s") from e
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
