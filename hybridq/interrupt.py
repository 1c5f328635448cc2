"""The stop request of a run (Ctrl-C, SIGTERM), as the exact stage's solver calls see it.

Python runs a signal handler in the main thread only, between two bytecodes: a solver call in C
(HiGHS's ``run()``, z3's ``check()``) holds the handler off until it returns, at the end of its
time limit (seconds to minutes later).  The branch and bound's handler
(:func:`hybridq.bab.scheduler.run_bab`) calls :func:`request`, and each solver call ends as soon
as it sees the request, without an answer:

* HiGHS (:mod:`hybridq.milp.search`): an interrupt callback, which HiGHS calls from its MIP and
  simplex loops in the thread of ``run()``; a signal that arrived during the call has its Python
  handler run when the callback is entered, so the callback sees the request at once.  The next
  ``run()`` of the call is not started (:class:`Interrupted`).  The callback is installed only
  while such a handler is (:func:`set_handled`): an exception that a handler raises inside a
  HiGHS callback (Python's own Ctrl-C handler, ``KeyboardInterrupt``) is swallowed by highspy
  (the run ends as "Solve error", the Ctrl-C is lost), where without the callback it comes when
  ``run()`` returns.
* z3 (:mod:`hybridq.smt.z3`): ``check()`` runs in a helper thread while the caller waits in
  :func:`call` (the wait lets the handler run), which calls ``Context.interrupt()`` on a request.
* dReal (:mod:`hybridq.smt.dreal`): the wait for the worker process ends and the worker is killed.

An interrupted call is ``Unknown``, never a proof.  The request holds until :func:`clear` (the
scheduler clears it when a run starts and when it ends).
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["Interrupted", "request", "clear", "requested", "set_handled", "handled", "call"]

_STOP = threading.Event()
_HANDLED = threading.Event()

#: Seconds between two looks at the request while :func:`call` waits.
POLL = 0.02


class Interrupted(Exception):
    """A solver call ended by a stop request (:func:`request`): it has no answer."""


def request() -> None:
    """Ask the solver calls in flight, and every later one until :func:`clear`, to stop at once.
    Safe in a signal handler (sets a ``threading.Event``)."""
    _STOP.set()


def clear() -> None:
    """Withdraw the stop request (a new run starts)."""
    _STOP.clear()


def requested() -> bool:
    """Whether a stop was requested."""
    return _STOP.is_set()


def set_handled(on: bool) -> None:
    """Say whether the signal handlers of this process (Ctrl-C, SIGTERM) call :func:`request`
    instead of raising (the scheduler's, while a run is on; see the module docstring)."""
    if on:
        _HANDLED.set()
    else:
        _HANDLED.clear()


def handled() -> bool:
    """Whether the signal handlers call :func:`request` (:func:`set_handled`)."""
    return _HANDLED.is_set()


def call(fn, cancel, deadline: float = math.inf):
    """``fn()`` in a helper thread, the calling thread waiting (so that its signal handlers run);
    ``cancel()`` (from the calling thread) every :data:`POLL` seconds once a stop is requested, a
    ``KeyboardInterrupt`` reached the wait or ``time.perf_counter()`` passed ``deadline``, until
    ``fn`` returns (``fn`` must end soon after a ``cancel``, e.g. ``z3.Context.interrupt``;
    repeated, a cancel that came before ``fn`` started its work is not lost).

    Returns
    -------
    Whatever ``fn()`` returns.

    Raises
    ------
    Whatever ``fn()`` raises; a ``KeyboardInterrupt`` that reached the wait, once ``fn`` has returned.
    """
    done = threading.Event()
    box: list = [None, None]

    def run():
        try:
            box[0] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            box[1] = err
        finally:
            done.set()

    threading.Thread(target=run, name="hybridq-solver", daemon=True).start()
    caught = None
    while not done.is_set():
        try:
            if caught is not None or _STOP.is_set() or time.perf_counter() >= deadline:
                cancel()
            done.wait(POLL)
        except KeyboardInterrupt as err:  # a second Ctrl-C, or a handler that raises: stop the call first
            caught = err
    if caught is not None:
        raise caught
    if box[1] is not None:
        raise box[1]
    return box[0]
