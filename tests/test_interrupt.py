"""A stop request (Ctrl-C, SIGTERM) ends the exact stage's solver calls at once, without an answer
(:mod:`hybridq.interrupt`): HiGHS through its interrupt callback, z3 through
``Context.interrupt``, and the CLI's run ends within a fraction of a second of the signal with its
partial result (exit 2), where it used to wait for the call (19 s with HiGHS, 56 s with z3 here)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from processes import as_in_a_terminal

from hybridq import Deviation, InputBox, Layer, Network, interrupt, perturbation
from hybridq.cell import Cell
from hybridq.milp import search
from hybridq.smt import Unknown, Unsat, get_backend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_request_left():
    interrupt.clear()
    yield
    interrupt.clear()
    interrupt.set_handled(False)


def _request_after(seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, interrupt.request)
    t.start()
    return t


def test_call_returns_raises_and_cancels():
    assert interrupt.call(lambda: 42, lambda: None) == 42
    with pytest.raises(ZeroDivisionError):
        interrupt.call(lambda: 1 / 0, lambda: None)
    gate = threading.Event()
    cancels = []

    def cancel():
        cancels.append(time.perf_counter())
        gate.set()

    t0 = time.perf_counter()
    _request_after(0.2)
    assert interrupt.call(lambda: gate.wait(30) and "cancelled", cancel) == "cancelled"
    assert cancels and time.perf_counter() - t0 < 5.0


def _market_split(m: int = 4, seed: int = 0):
    """A market split instance (Cornuejols and Dawande 1999) in a ``search._new_highs()`` object:
    m equality rows over 10 (m - 1) binaries with slacks, minimise the slacks; m = 4 keeps
    HiGHS busy far longer than these tests wait (its 6 s limit is reached)."""
    import highspy

    rng = np.random.default_rng(seed)
    n = 10 * (m - 1)
    A = rng.integers(0, 100, size=(m, n)).astype(float)
    d = np.floor(A.sum(axis=1) / 2)
    h = search._new_highs()
    for _ in range(n + 2 * m):
        h.addVar(0.0, 1.0 if _ < n else highspy.kHighsInf)
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.array([highspy.HighsVarType.kInteger] * n))
    h.changeColsCost(n + 2 * m, np.arange(n + 2 * m, dtype=np.int32), np.array([0.0] * n + [1.0] * (2 * m)))
    for i in range(m):
        idx = np.array(list(range(n)) + [n + 2 * i, n + 2 * i + 1], dtype=np.int32)
        h.addRow(d[i], d[i], idx.size, idx, np.concatenate([A[i], [1.0, -1.0]]))
    return h


def test_highs_run_stops_at_a_request_and_the_next_run_is_not_started():
    import highspy

    interrupt.set_handled(True)  # as in a run of the scheduler (its handlers call request)
    h = _market_split()
    search._time_limit(h, 30.0)
    t0 = time.perf_counter()
    _request_after(0.3)
    h.run()
    took = time.perf_counter() - t0
    assert h.getModelStatus() == highspy.HighsModelStatus.kInterrupt and took < 5.0
    with pytest.raises(interrupt.Interrupted):
        search._time_limit(h, 30.0)
    interrupt.clear()
    search._time_limit(h, 0.2)  # withdrawn: runs again (to its time limit)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit


def test_without_a_requesting_handler_highs_has_no_callback_that_would_swallow_a_ctrl_c():
    """Python's own Ctrl-C handler raising inside a HiGHS callback: highspy swallows the
    KeyboardInterrupt (the run ends as "Solve error").  Outside a run of the scheduler there is no
    callback, and the KeyboardInterrupt comes when ``run()`` returns."""
    import highspy

    h = _market_split()
    search._time_limit(h, 1.0)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            h.run()
            time.sleep(1.0)  # (where the KeyboardInterrupt would come if run() had ended first)
    finally:
        signal.signal(signal.SIGINT, outer)
    assert h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit


def _relu_case():
    net = Network((Layer(np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.25]]), np.array([0.1, -0.2, 0.3]), "relu"),
                   Layer(np.array([[1.0, -0.5, 0.75]]), np.array([0.2]), "identity")))
    return net, perturbation("abs:0.05", net), Cell.root(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 4)


@pytest.mark.parametrize("backend", ["milp", "z3"])
def test_an_interrupted_exact_call_is_unknown_never_unsat(backend):
    """The same query is Unsat when it runs, Unknown when a stop was requested."""
    net, pert, cell = _relu_case()
    b = get_backend(backend)
    assert isinstance(b.check(net, pert, cell, Deviation(10.0), 30.0), Unsat)
    interrupt.request()
    t0 = time.perf_counter()
    out = b.check(net, pert, cell, Deviation(10.0), 30.0)
    assert isinstance(out, Unknown) and "interrupted" in out.reason and time.perf_counter() - t0 < 5.0


def test_z3_check_in_flight_stops_at_a_request():
    sys.path.insert(0, str(Path(__file__).parent))
    from test_smt_crosscheck import pick_property, random_case

    rng, net, pert, box = random_case(37)  # a hard instance (z3 needs seconds)
    prop = pick_property(rng, net, pert, box)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    t0 = time.perf_counter()
    _request_after(0.3)
    out = get_backend("z3").check(net, pert, cell, prop, 30.0)
    assert isinstance(out, Unknown) and "interrupted" in out.reason and time.perf_counter() - t0 < 2.0


def test_z3_check_ends_at_its_budget_without_z3s_own_timeout(monkeypatch):
    """z3's timeout alone can be late (its nlsat preprocessing does not look at it); the wait
    interrupts the check at the end of its budget too, and that is a timeout."""
    import z3

    sys.path.insert(0, str(Path(__file__).parent))
    from test_smt_crosscheck import pick_property, random_case

    set_ = z3.Solver.set
    monkeypatch.setattr(z3.Solver, "set", lambda self, *a, **k: None if a and a[0] == "timeout" else set_(self, *a, **k))
    rng, net, pert, box = random_case(37)
    prop = pick_property(rng, net, pert, box)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    t0 = time.perf_counter()
    out = get_backend("z3").check(net, pert, cell, prop, 0.3)
    assert isinstance(out, Unknown) and out.kind == "timeout" and time.perf_counter() - t0 < 3.0


# ------------------------------------------------------------------ the CLI, a signal during a solver call
#: The command, with a line on stderr when the exact stage's first solver call starts (HiGHS's
#: MILP search, z3's check), so that the signal is sent while it runs.
WRAPPED = (
    "import sys\n"
    "import hybridq.milp.search as s, hybridq.smt.z3 as z\n"
    "def mark(f):\n"
    "    def g(*a, **k):\n"
    "        print('test: solver call', file=sys.stderr, flush=True)\n"
    "        return f(*a, **k)\n"
    "    return g\n"
    "s.find = mark(s.find)\n"
    "z.Z3Backend.solve = mark(z.Z3Backend.solve)\n"
    "from hybridq.cli import main\n"
    "main()\n")

#: Exact-stage settings that send the root cell (120 unstable ReLUs) to one long call.
CONFIG = {
    "milp": "milp_max_unstable = 1000\nmilp_first_timeout = 60.0\nmilp_timeout = 60.0\nmilp_budget = 2000.0\n",
    "z3": "smt_max_unstable = 1000\nsmt_first_timeout = 60.0\nsmt_timeout = 60.0\nsmt_budget = 2000.0\n",
}


def _hard_net(path: Path) -> Path:
    """tests/test_run_harness.py's 8-64-64-64-1 relu net: at the point 0.25 under abs:2e-2 the
    attack's best deviation is about 1.07, the root's certified bound 2.9, so delta 1.3 leaves the
    root cell to the exact stage, whose calls run for their whole limit."""
    from test_run_harness import _hard_net as make

    return make(path)


def _signal_at_the_call(p, sig) -> tuple[str, float, list]:
    """Send ``sig`` to ``p`` half a second after its solver call started; (stdout, seconds from
    the signal to the end, stderr lines)."""
    lines: queue.Queue = queue.Queue()
    err: list = []

    def read():
        for line in p.stderr:
            err.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        t_end = time.monotonic() + 300  # a fresh checkout compiles the kernels first (minutes)
        while True:
            line = lines.get(timeout=max(1.0, t_end - time.monotonic()))
            assert line is not None, f"the run ended before its solver call: {''.join(err)}"
            if line.startswith("test: solver call"):
                break
        time.sleep(0.5)  # well inside the call (it has tens of seconds)
        assert p.poll() is None
        t_sig = time.monotonic()
        p.send_signal(sig)
        p.wait(timeout=60)  # (one line of output: the pipe does not fill)
        took = time.monotonic() - t_sig
        stdout = p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(5)
    return stdout, took, err


@pytest.mark.parametrize("backend, sig", [("milp", signal.SIGINT), ("milp", signal.SIGTERM),
                                          ("z3", signal.SIGINT), ("z3", signal.SIGTERM)])
def test_signal_during_a_solver_call_ends_the_run_at_once(tmp_path, backend, sig):
    net = _hard_net(tmp_path / "hard.npz")
    cfg = tmp_path / "exact.toml"
    cfg.write_text(CONFIG[backend])
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with subprocess.Popen([sys.executable, "-c", WRAPPED, "verify", str(net), "--perturb", "abs:2e-2", "--point",
                           ",".join(["0.25"] * 8), "--delta", "1.3", "--backend", backend, "--config", str(cfg),
                           "--jobs", "1", "--timeout", "120", "--no-progress"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          preexec_fn=as_in_a_terminal) as p:
        stdout, took, err = _signal_at_the_call(p, sig)
    stderr = "".join(err)
    assert p.returncode == 2, (stdout, stderr)
    assert stdout.startswith("unknown:") and "interrupted" in stdout and "Traceback" not in stderr, (stdout, stderr)
    if sig == signal.SIGTERM:
        assert "interrupted (SIGTERM)" in stdout
    # 0.07-0.5 s at load 3-4 on 2 cores; the bound leaves room for a loaded machine, where HiGHS's
    # root steps and z3's preprocessing (which do not look at the request) take a few times longer
    assert took < 5.0, f"the run ended {took:.2f} s after the signal"


def test_root_bounds_without_a_timeout_start_no_lp_after_a_request():
    """Every HiGHS ``run()`` of hybridq.milp.search is preceded by ``_time_limit``, which raises
    Interrupted at a stop request; ``RootBounds.bound`` with its default (no) timeout skipped it
    and solved the LP anyway (also leaving the instance's previous time limit in force)."""
    from hybridq.milp.model import build_model
    from hybridq.smt import encode as enc
    from hybridq.smt.milp import _fill_bounds

    net, pert, cell = _relu_case()
    q = enc.Query.build(net, pert, cell, Deviation(10.0))
    _fill_bounds(q, cell)
    model = build_model(q)
    roots = search.RootBounds(model)
    first = roots.bound(model.objectives[0], 30.0)
    assert np.isfinite(first)
    interrupt.request()
    with pytest.raises(interrupt.Interrupted):
        roots.bound(model.objectives[1])
    with pytest.raises(interrupt.Interrupted):
        search.root_bound(model, model.objectives[0])
    interrupt.clear()
    assert roots.bound(model.objectives[0]) == first  # no request: the same certified bound
