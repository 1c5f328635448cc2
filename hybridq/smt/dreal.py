"""The dReal backend (optional): delta-complete decisions over the reals, sigmoid/tanh/exp included.

``pip install dreal`` installs the Python module, but importing it needs ``libibex.so`` from dReal's
IBEX 2.7.4 build (dReal's install scripts / Ubuntu PPA / Homebrew tap); where the import fails the
backend raises :class:`~hybridq.errors.BackendUnavailableError` saying what to install.  This module
itself always imports.

Soundness: an ``unsat`` from dReal is a proof for the formula it was given.  Constants that are not
float64 values (``1/std``, folded exact sums) are passed as a fresh variable inside the enclosing
pair of floats, so the formula dReal sees over-approximates the exact one and its ``unsat`` stays a
proof.  A ``delta-sat`` box is never reported as a violation by itself: its midpoint is mapped to
weights (:func:`hybridq.smt.encode.pullback`) and re-checked exactly, then the corners of its input
box, then the driver's retries (input fixed, small margins); otherwise the outcome is
``Unknown(kind="unconfirmed")``.

Each ``check`` runs in a long-lived worker process (:mod:`hybridq.smt.dreal_worker`, started
once with ``python -I -c`` and the caller's ``sys.path``, and reused; killed and restarted when a query exceeds its limit) so that
``timeout`` is enforced (dReal's API has no timeout) without an interpreter start per query; the
call returns within ``timeout`` plus the time to send the kill signal (the killed worker is reaped
later, and the next worker is started at once, so the next query does not pay the interpreter start
inside its own limit).  An exception inside the worker
comes back as ``Unknown`` carrying that error.  Pass ``subprocess=False`` to run in-process
without a time limit.  ReLU is ``dreal.Max(z, 0)`` and ``|t|`` is dReal's ``abs`` (``abs(term)`` in
its Python API), several times faster than ``if_then_else`` in dReal's contractors.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import math
import os
import pickle
import select
import struct
import subprocess as sp
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from hybridq.errors import BackendUnavailableError
from hybridq.smt.base import Backend, SolverAnswer, Unknown

__all__ = ["DrealBackend", "DrealArith", "DREAL_INSTALL"]

logger = logging.getLogger(__name__)

DREAL_INSTALL = (
    "install the Python module with `pip install dreal` (or `pip install 'hybridq[dreal]'`) and dReal's "
    "IBEX 2.7.4 build, which provides libibex.so: on Ubuntu run dReal's installer "
    "`curl -fsSL https://raw.githubusercontent.com/dreal/dreal4/master/setup/ubuntu/22.04/install.sh | sudo bash` "
    "(it adds dReal's PPA and installs libibex-dev), on macOS "
    "`curl -fsSL https://raw.githubusercontent.com/dreal/dreal4/master/setup/mac/install.sh | bash` "
    "(Homebrew tap dreal/dreal); see https://github.com/dreal/dreal4#how-to-install. "
    "Without dReal use the z3 backend (`--backend z3`)."
)


def _import_dreal():
    try:
        import dreal  # noqa: PLC0415 - optional dependency, imported lazily
    except ImportError as err:
        msg = str(err)
        if "libibex" in msg or "ibex" in msg.lower():
            raise BackendUnavailableError(
                f"dReal backend unavailable: the dreal module is installed but cannot load libibex.so ({msg}); "
                + DREAL_INSTALL
            ) from None
        raise BackendUnavailableError(f"dReal backend unavailable: `import dreal` failed ({msg}); " + DREAL_INSTALL) from None
    except OSError as err:  # a broken shared library
        raise BackendUnavailableError(f"dReal backend unavailable: loading dreal failed ({err}); " + DREAL_INSTALL) from None
    return dreal


def _f(name: str, dr):
    for n in (name, "logical_" + name.lower()):
        if hasattr(dr, n):
            return getattr(dr, n)
    raise BackendUnavailableError(f"the installed dreal module has no {name}; " + DREAL_INSTALL)


class DrealArith:
    """Term builder for dReal; non-float constants become variables in their float enclosure."""

    def __init__(self) -> None:
        self.dr = _import_dreal()
        self.side: list = []
        self._n = itertools.count()
        self._and, self._or = _f("And", self.dr), _f("Or", self.dr)

    def real(self, name: str):
        return self.dr.Variable(name)

    def const(self, q: Fraction):
        q = Fraction(q)
        f = float(q)
        if Fraction(f) == q:
            return self.dr.Expression(f)
        lo = f if Fraction(f) < q else float(np.nextafter(f, -math.inf))
        hi = f if Fraction(f) > q else float(np.nextafter(f, math.inf))
        v = self.dr.Variable(f"k{next(self._n)}")
        self.side += [lo <= v, v <= hi]
        return v

    def sum(self, terms: list):
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        return acc

    def scale(self, q: Fraction, t):
        return t if q == 1 else self.const(q) * t

    def mul(self, a, b):
        return a * b

    def ite(self, c, a, b):
        return self.dr.if_then_else(c, a, b)

    def max(self, a, b):
        """``max(a, b)`` (dReal's ``Max``; ``if_then_else`` where the module lacks it)."""
        fn = getattr(self.dr, "Max", None)
        return fn(a, b) if fn is not None else self.dr.if_then_else(a >= b, a, b)

    def and_(self, fs: list):
        return fs[0] if len(fs) == 1 else self._and(*fs)

    def or_(self, fs: list):
        return fs[0] if len(fs) == 1 else self._or(*fs)

    def abs(self, t):
        """``|t|``: dReal's ``abs`` function (its Python API exposes it as ``abs(term)``, the
        ``__abs__`` of an expression; ``if_then_else`` where a term lacks it)."""
        if hasattr(type(t), "__abs__"):
            return abs(t)
        return self.dr.if_then_else(t >= 0, t, -t)

    def boolval(self, b: bool):
        v = self.dr.Variable("true_")
        return (v == v) if b else (v != v)

    def sigmoid(self, t):
        return 1 / (1 + self.dr.exp(-t))

    def tanh(self, t):
        return self.dr.tanh(t)

    def exp(self, t):
        return self.dr.exp(t)


class DrealBackend(Backend):
    """dReal (optional extra; see the module docstring).

    Parameters
    ----------
    delta : float
        dReal's precision ``delta > 0`` (its answers are unsat or delta-sat); default 1e-6, as
        :attr:`hybridq.config.RunConfig.dreal_precision`.
    subprocess : bool
        Run each check in the worker process so that the timeout is enforced.
    restart : bool
        After a query that passed its limit (the worker is killed), start the next worker at
        once (its interpreter start then overlaps the caller's work) rather than at the next query
        (``auto`` uses ``False``: its next dReal call may never come, and a start costs about
        0.6 s of CPU).

    Raises
    ------
    BackendUnavailableError
        ``import dreal`` fails (the message says what to install).
    """

    name = "dreal"
    capabilities = frozenset({"LRA", "NRA", "delta", "transcendental"})

    def __init__(self, delta: float = 1e-6, subprocess: bool = True, restart: bool = True) -> None:
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"dReal delta must be finite and > 0, got {delta}")
        _import_dreal()
        self.delta = float(delta)
        self.subprocess = bool(subprocess)
        self.restart = bool(restart)

    @staticmethod
    def worker_ready() -> bool:
        """Whether the shared worker process has started and finished its imports."""
        return _WORKER.proc is not None and _WORKER.ready and _WORKER.proc.poll() is None

    def arith(self) -> DrealArith:
        return DrealArith()

    def solve(self, ar: DrealArith, formula, timeout: float) -> SolverAnswer:
        full = ar.and_([formula] + ar.side) if ar.side else formula
        box = ar.dr.CheckSatisfiability(full, self.delta)
        if box is None:
            return SolverAnswer("unsat")

        def value(term):
            try:
                return Fraction(float(box[term].mid()))
            except Exception:  # noqa: BLE001 - a variable missing from the box
                return None

        return SolverAnswer("sat", value=value)

    def _confirm(self, q, e, ans):
        x0, hit = super()._confirm(q, e, ans)
        if hit is not None or not any(not isinstance(v, Fraction) for v in e.x_terms):
            return x0, hit
        # the delta-box midpoint failed: try the box's input corners (at most 16)
        from hybridq.smt.encode import pullback

        z_model = [[v if isinstance(v, Fraction) else ans.value(v) for v in layer] for layer in e.z_terms]
        free = [i for i, v in enumerate(e.x_terms) if not isinstance(v, Fraction)][:4]
        mids = [v if isinstance(v, Fraction) else ans.value(v) for v in e.x_terms]
        for signs in itertools.product((-1, 1), repeat=len(free)):
            x_try = list(mids)
            for s, i in zip(signs, free):
                x_try[i] = q.xhi[i] if s > 0 else q.xlo[i]
            x, params = pullback(q, x_try, z_model)
            if q.confirm(x, params):
                return x, (x, params)
        return x0, None

    def check(self, network, perturbation, cell, prop, timeout, neuron_bounds=None, encoding="reduced", ibp=None,
              box=None):
        """See :meth:`hybridq.smt.base.Backend.check`; a delta-sat answer is re-checked exactly."""
        if not self.subprocess:
            return super().check(network, perturbation, cell, prop, timeout, neuron_bounds, encoding, ibp, box)
        t0 = time.perf_counter()
        args = (self.delta, network, perturbation, cell, prop, timeout, neuron_bounds, encoding, ibp, box)
        kind, val = _WORKER.ask(args, max(float(timeout), 0.0), restart=self.restart)
        if kind == "ok":
            return val
        stats = {"backend": self.name, "encoding": encoding}
        if kind == "timeout":
            return Unknown(f"dReal exceeded the {timeout} s timeout", "timeout", time.perf_counter() - t0, stats)
        if kind == "stopped":
            return Unknown("dReal interrupted (stop requested)", "unknown", time.perf_counter() - t0, stats)
        return Unknown(val, "unknown", time.perf_counter() - t0, stats)


#: The worker's command (``python -I -c``): isolated start (no PYTHONPATH, no current folder), then
#: the caller's ``sys.path``, then :func:`hybridq.smt.dreal_worker.main`.
_WORKER_MAIN = ("import json, os, sys; sys.path[:] = json.loads(os.environ['HYBRIDQ_WORKER_PATH']); "
                "from hybridq.smt.dreal_worker import main; main()")


class _Worker:
    """The shared dReal worker process (see the module docstring)."""

    def __init__(self) -> None:
        self.proc: sp.Popen | None = None
        self.ready, self._partial = False, b""
        self._killed: list[sp.Popen] = []  # killed workers not yet reaped (tearing down takes time)

    def _start(self) -> None:
        self._reap()
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        # the caller's import path, set only after the interpreter has started: as PYTHONPATH it
        # would come before the standard library, and a script folder holding e.g. an encodings.py
        # (bench/) then broke the child's start-up
        env["HYBRIDQ_WORKER_PATH"] = json.dumps([root] + [p for p in sys.path if p != root])
        self.proc = sp.Popen([sys.executable, "-I", "-c", _WORKER_MAIN], stdin=sp.PIPE, stdout=sp.PIPE,
                             env=env, close_fds=True)
        self.ready, self._partial = False, b""  # until its ("ready", None) message

    def _reap(self) -> None:
        self._killed = [p for p in self._killed if p.poll() is None]

    def stop(self, wait: bool = True) -> None:
        """Kill the worker; ``wait=False`` returns at once (the process is reaped later: waiting
        for a killed process to release its memory took up to 0.5 s under load, which a call
        past its limit must not add)."""
        p, self.proc = self.proc, None
        if p is not None:
            if p.poll() is None:
                p.kill()
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:  # pragma: no cover
                    pass
            self._killed.append(p)
        if wait:
            for q in self._killed:
                try:
                    q.wait(5.0)
                except sp.TimeoutExpired:  # pragma: no cover - a kernel that does not reap
                    pass
        self._reap()

    def _recv(self, t_end: float):
        """The worker's next message, or ``("timeout", None)`` at ``t_end``, ``("stopped", None)``
        at a stop request (:mod:`hybridq.interrupt`, looked at every ``interrupt.POLL`` seconds),
        or ``("died", message)``."""
        from hybridq import interrupt

        fd = self.proc.stdout.fileno()
        buf, need = self._partial, 8
        if len(buf) >= 8:
            need = 8 + struct.unpack("<Q", buf[:8])[0]
        while len(buf) < need:
            if interrupt.requested():
                self._partial = buf
                return "stopped", None
            left = t_end - time.perf_counter()
            ready, _, _ = select.select([fd], [], [], min(max(left, 0.0), interrupt.POLL))
            if not ready:
                if left > interrupt.POLL:
                    continue
                self._partial = buf
                return "timeout", None
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                try:
                    code = self.proc.wait(2.0)
                except sp.TimeoutExpired:  # pragma: no cover - closed its output but lives on
                    code = None
                return "died", f"the dReal worker process died (exit code {code})"
            buf += chunk
            if need == 8 and len(buf) == 8:
                need = 8 + struct.unpack("<Q", buf)[0]
        self._partial = b""
        return pickle.loads(buf[8:need])

    def ask(self, args, timeout: float, restart: bool = True):
        """``("ok", outcome)``, ``("timeout", None)``, ``("stopped", None)`` (a stop request,
        :mod:`hybridq.interrupt`) or ``("error", message)`` within ``timeout`` seconds, the wait
        for a worker that is still starting included (a worker that is not ready in time is left
        starting for the next call, not killed; one that has a query is killed when its answer is
        not waited for: past the limit, at a stop request, or a ``KeyboardInterrupt``)."""
        t_end = time.perf_counter() + timeout
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        if not self.ready:
            kind, val = self._recv(t_end)
            if kind in ("timeout", "stopped"):
                return kind, None
            if kind != "ready":  # died, or could not import dReal: report it as it is
                self.stop()
                return "error", val
            self.ready = True
        try:
            return self._query(args, t_end, restart)
        except KeyboardInterrupt:  # the query is not waited for: the worker must not go on with it
            self.stop(wait=False)
            raise

    def _query(self, args, t_end: float, restart: bool):
        from hybridq.smt.dreal_worker import _write

        try:
            _write(self.proc.stdin, args)
        except (BrokenPipeError, OSError) as err:
            self.stop()
            return "error", f"the dReal worker process could not be reached ({err})"
        kind, val = self._recv(t_end)
        if kind in ("timeout", "stopped"):
            # not waited for: kill the worker without waiting for it; past the limit with
            # ``restart``: start the next one now, so that the next query does not spend its own
            # time on the interpreter start
            self.stop(wait=False)
            if restart and kind == "timeout":
                self._start()
            return kind, None
        if kind == "died":
            self.stop()
            return "error", val
        return kind, val


_WORKER = _Worker()
atexit.register(_WORKER.stop)
