"""The dReal backend's glue (term builder, box read-back, float enclosures of constants, the
timeout child process) exercised against a stand-in ``dreal`` module built on z3.

This does not test dReal itself (``tests/test_smt.py`` runs the real one where ``import dreal``
works); it checks that our side of the interface builds the formulas and maps the answers back.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from hybridq.cell import Cell
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation
from hybridq.properties import Decision, Deviation
from hybridq.smt import Sat, Unknown, Unsat, backends_table, get_backend

FAKE_DREAL = textwrap.dedent('''
    """Stand-in for dReal's Python API (the names hybridq uses), backed by z3 -- tests only."""
    import z3

    CALLS = {"check": 0}

    def Variable(name):
        return z3.Real(name)

    def Expression(v):
        return z3.RealVal(v)

    def if_then_else(c, a, b):
        return z3.If(c, a, b)

    def Max(a, b):
        CALLS["max"] = CALLS.get("max", 0) + 1
        return z3.If(a >= b, a, b)

    def And(*fs):
        return z3.And(*fs)

    def Or(*fs):
        return z3.Or(*fs)

    def exp(t):  # uninterpreted: enough for the glue (never used for a verdict)
        return z3.Function("exp_", z3.RealSort(), z3.RealSort())(t)

    def tanh(t):
        return z3.Function("tanh_", z3.RealSort(), z3.RealSort())(t)

    import os as _os, time as _time
    _time.sleep(float(_os.environ.get("FAKE_DREAL_IMPORT_SLEEP", "0")))  # a slow interpreter start

    class _Interval:
        def __init__(self, v):
            self.v = v

        def mid(self):
            return self.v

    class Box:
        def __init__(self, model):
            self.model = model

        def __getitem__(self, var):
            v = self.model.eval(var, model_completion=True)
            return _Interval(float(v.numerator_as_long()) / float(v.denominator_as_long()))

    def CheckSatisfiability(f, delta):
        CALLS["check"] += 1
        if delta == 0.125:  # a solver that hangs
            import time
            time.sleep(60)
        if delta == 0.25:  # a solver that fails
            raise RuntimeError("ibex contractor failure")
        s = z3.Solver()
        s.add(f)
        return Box(s.model()) if s.check() == z3.sat else None
''')


@pytest.fixture
def fake_dreal(tmp_path, monkeypatch):
    from hybridq.smt import dreal as mod

    # the shared worker may have loaded the real dReal (tests/test_smt.py): start a fresh one that
    # imports the stand-in, and leave none behind that has it
    mod._WORKER.stop()
    (tmp_path / "dreal.py").write_text(FAKE_DREAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dreal", raising=False)
    yield
    mod._WORKER.stop()
    sys.modules.pop("dreal", None)


def net_and_box():
    W1 = np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.25]])
    W2 = np.array([[1.0, -0.5, 0.75], [-1.0, 1.0, 0.5]])
    net = Network((Layer(W1, np.array([0.1, -0.2, 0.3]), "relu"), Layer(W2, np.array([0.2, -0.1]), "identity")),
                  input_mean=[0.1, 0.0], input_std=[3.0, 1.0])  # 1/3 is not a float: an enclosed constant
    pert = Perturbation(net.params, tuple((np.full(W.shape, 0.05), np.full(b.shape, 0.05)) for W, b in net.params))
    cell = Cell.root([0.5, -0.6], [0.7, -0.4], 5)
    return net, pert, cell


def test_dreal_glue_matches_z3_in_process(fake_dreal):
    assert dict((r[0], r[1]) for r in backends_table())["dreal"] is True
    net, pert, cell = net_and_box()
    # installing dReal never changes how a piecewise-linear cell is decided
    auto = get_backend("auto")
    assert auto.choose(net, Deviation(0.01)) == ("milp", "z3")
    assert auto.check(net, pert, cell, Deviation(5.0), 20).stats["backend"] == "milp"
    dr = get_backend("dreal", delta=1e-3, subprocess=False)
    z3b = get_backend("z3")
    for prop in (Deviation(0.01), Deviation(5.0), Decision(0, 0.0), Decision(1, 0.0)):
        for encoding in ("reduced", "pure"):
            a = dr.check(net, pert, cell, prop, 20, encoding=encoding)
            b = z3b.check(net, pert, cell, prop, 20, encoding=encoding)
            assert type(a) is type(b), (prop, encoding, a, b)
            assert a.stats["backend"] == "dreal"
            if isinstance(a, Sat):
                assert pert.contains(a.params) and prop.check_exact(net, a.x, a.params)
    import dreal

    assert dreal.CALLS["check"] >= 8


def test_dreal_glue_child_process_and_bad_delta(fake_dreal):
    net, pert, cell = net_and_box()
    dr = get_backend("dreal", delta=1e-3)  # subprocess=True: the timeout is enforced
    assert isinstance(dr.check(net, pert, cell, Deviation(5.0), 60), Unsat)
    out = dr.check(net, pert, cell, Deviation(0.01), 60)
    assert isinstance(out, Sat) and Deviation(0.01).check_exact(net, out.x, out.params)
    with pytest.raises(ValueError, match="delta"):
        get_backend("dreal", delta=0.0)
    import time

    t0 = time.perf_counter()
    out = get_backend("dreal", delta=0.125).check(net, pert, cell, Deviation(5.0), 0.5)
    assert isinstance(out, Unknown) and out.kind == "timeout"
    assert time.perf_counter() - t0 < 0.5 + 2.0  # the limit, plus killing the worker: no grace period
    # an error inside the worker is reported as that error, and the worker goes on serving
    out = get_backend("dreal", delta=0.25).check(net, pert, cell, Deviation(5.0), 20)
    assert isinstance(out, Unknown) and "RuntimeError: ibex contractor failure" in out.reason
    assert isinstance(dr.check(net, pert, cell, Deviation(5.0), 20), Unsat)


def test_dreal_worker_is_reused_and_unaffected_by_threads(fake_dreal, tmp_path):
    """One worker process serves many queries (no interpreter start per call), also while the
    caller runs other threads (a progress bar), and ReLU goes to dReal as Max.  A folder on the
    caller's path with a module named like the standard library's (bench/encodings.py) does not
    break the worker's start-up."""
    import threading
    import time

    from hybridq.smt import dreal as mod

    (tmp_path / "encodings.py").write_text("raise SystemExit('the worker imported a shadowing encodings.py')\n")

    net, pert, cell = net_and_box()
    dr = get_backend("dreal", delta=1e-3)
    stop = threading.Event()
    th = threading.Thread(target=stop.wait, daemon=True)
    th.start()
    try:
        dr.check(net, pert, cell, Deviation(5.0), 20)
        pid = mod._WORKER.proc.pid
        t0 = time.perf_counter()
        for _ in range(5):
            assert isinstance(dr.check(net, pert, cell, Deviation(5.0), 20), Unsat)
        assert mod._WORKER.proc.pid == pid
        assert time.perf_counter() - t0 < 10
    finally:
        stop.set()
    # in-process, the ReLU of the unstable neurons is built with Max
    import dreal

    before = dreal.CALLS.get("max", 0)
    get_backend("dreal", delta=1e-3, subprocess=False).check(net, pert, cell, Deviation(5.0), 20)
    assert dreal.CALLS.get("max", 0) > before


def test_dreal_worker_start_counts_in_the_limit_and_is_not_wasted(fake_dreal, monkeypatch):
    """A call that ends while the worker is still starting returns at its limit and leaves the
    worker starting; the next call uses it (the query's own time does not include the start)."""
    import time

    from hybridq.smt import dreal as mod

    monkeypatch.setenv("FAKE_DREAL_IMPORT_SLEEP", "2.0")
    net, pert, cell = net_and_box()
    dr = get_backend("dreal", delta=1e-3)
    t0 = time.perf_counter()
    out = dr.check(net, pert, cell, Deviation(5.0), 0.3)
    assert isinstance(out, Unknown) and out.kind == "timeout"
    assert time.perf_counter() - t0 < 0.3 + 1.0
    pid = mod._WORKER.proc.pid
    assert isinstance(dr.check(net, pert, cell, Deviation(5.0), 30), Unsat)
    assert mod._WORKER.proc.pid == pid


def test_auto_caps_the_time_dreal_calls_without_an_answer_take(fake_dreal):
    """``auto`` sends sigmoid cells to dReal, but calls that end without an answer may use only
    ``dreal_first`` seconds plus ``dreal_share`` of the time since the first call; past that it
    answers Unknown at once (the scheduler charges it like any call without an answer)."""
    import time

    net = Network((Layer(np.eye(2), np.zeros(2), "sigmoid"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    pert = Perturbation(net.params, tuple((np.full(W.shape, 0.01), np.full(b.shape, 0.01)) for W, b in net.params))
    cell = Cell.root([0.0, 0.0], [1.0, 1.0], 3)
    auto = get_backend("auto", delta=0.125, dreal_share=0.1, dreal_first=0.6)  # the stand-in hangs
    assert auto.choose(net, Deviation(0.01)) == ("dreal", "z3")
    get_backend("dreal", delta=1e-3).check(*net_and_box(), Deviation(5.0), 30)  # worker started
    t0 = time.perf_counter()
    first = auto.check(net, pert, cell, Deviation(0.01), 10)
    t1 = time.perf_counter()
    assert isinstance(first, Unknown) and first.kind == "timeout" and first.stats["backend"] == "dreal"
    assert 0.5 <= t1 - t0 < 0.6 + 1.0  # cut from 10 s to the allowance
    from hybridq.smt import dreal as mod

    assert mod._WORKER.proc is None  # auto does not restart the killed worker before its next call
    outs = [auto.check(net, pert, cell, Deviation(0.01), 10) for _ in range(3)]
    assert time.perf_counter() - t1 < 1.0  # nothing left (and no worker start for 0.06 s): no call is made
    assert mod._WORKER.proc is None
    assert all(isinstance(o, Unknown) for o in outs)
    with pytest.raises(ValueError, match="dreal_share"):
        get_backend("auto", dreal_share=2.0)


def test_stop_request_ends_a_dreal_call_at_once_and_kills_its_worker(fake_dreal):
    """A stop request (Ctrl-C / SIGTERM in a run, :mod:`hybridq.interrupt`) ends the wait for the
    worker: Unknown within a fraction of a second (the stand-in hangs for 60 s), the worker that
    holds the query is killed, and the next call (request withdrawn) starts a fresh one."""
    import threading
    import time

    from hybridq import interrupt
    from hybridq.smt import dreal as mod

    net, pert, cell = net_and_box()
    assert isinstance(get_backend("dreal", delta=1e-3).check(net, pert, cell, Deviation(5.0), 30), Unsat)  # started
    busy = mod._WORKER.proc
    threading.Timer(0.3, interrupt.request).start()
    t0 = time.perf_counter()
    try:
        out = get_backend("dreal", delta=0.125).check(net, pert, cell, Deviation(5.0), 30)
        took = time.perf_counter() - t0
    finally:
        interrupt.clear()
    assert isinstance(out, Unknown) and "interrupted" in out.reason and took < 2.0
    assert mod._WORKER.proc is None and busy.wait(10) is not None
    assert isinstance(get_backend("dreal", delta=1e-3).check(net, pert, cell, Deviation(5.0), 30), Unsat)
