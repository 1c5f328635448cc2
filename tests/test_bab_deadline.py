"""The branch and bound keeps its deadline (hybridq.bab): an exact re-check of an attack's
candidate, or a chunk of cells, that is not expected to end before the deadline is not started
(a compiled kernel or an exact evaluation is never cut short)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hybridq import Deviation, InputBox, Layer, Network, verify
from hybridq.bab.engine import CellEngine, Problem
from hybridq.bab.executors import InProcessExecutor
from hybridq.cell import Cell
from hybridq.config import RunConfig
from hybridq.perturbation import perturbation


def _engine():
    """y = w x on x in [0, 1] with |w - 1| <= 0.1: the deviation reaches 0.1 > delta = 0.05."""
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    box = InputBox(["0"], ["1"])
    prob = Problem(net, perturbation("abs:0.1", net), Deviation(0.05), RunConfig(), "verify", box.lower, box.upper, box)
    return CellEngine(prob), box


def test_exact_recheck_left_out_when_it_cannot_end_before_the_deadline():
    eng, _ = _engine()
    res = eng.root_attack()
    assert res.margin >= 0 and res.counterexample is not None  # no deadline: re-checked, refuted
    assert res.counterexample.value > 0.05
    assert eng.confirm_cost is not None and eng.confirm_cost >= 0.0
    eng.confirm_cost = 1e6  # a re-check is now expected to take longer than any budget below
    res = eng.root_attack(deadline=time.time() + 1000.0)
    assert res.margin >= 0 and res.counterexample is None
    res = eng.root_attack(deadline=time.time() + 1e7)
    assert res.counterexample is not None


def test_in_process_chunk_not_started_when_it_would_end_past_the_deadline():
    eng, box = _engine()
    ex = InProcessExecutor(eng)
    root = Cell.root(box.lower, box.upper, 1)
    root.priority = np.inf  # no parent bound (as the scheduler pushes it)
    args = lambda deadline: [([(0, root)], 0.0, 0.0, deadline)]  # noqa: E731
    out = ex.run(args(None))
    assert len(out) == 1 and out[0][0].status == "counterexample" and not ex.out_of_time
    assert ex.cell_seconds is not None
    ex.cell_seconds = 1e6
    assert ex.run(args(time.time() + 1000.0)) == [] and ex.out_of_time
    out = ex.run(args(None))
    assert len(out) == 1 and not ex.out_of_time


def test_attack_left_out_when_it_cannot_end_before_the_deadline():
    """A cell's attack is not started when the longest one so far would end past the deadline;
    the cell is split instead (no exact stage here, so only the attack could refute it)."""
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    box = InputBox(["0"], ["1"])
    prob = Problem(net, perturbation("abs:0.1", net), Deviation(0.05), RunConfig(backend="none"), "verify",
                   box.lower, box.upper, box)
    eng = CellEngine(prob)
    root = Cell.root(box.lower, box.upper, 1)
    root.priority = np.inf
    out = eng.process([(0, root)], 0.0, 0.0, None)
    assert out[0].status == "counterexample" and out[0].counterexample.value > 0.05
    assert eng.attack_cost is not None
    eng.attack_cost = 1e6  # an attack is now expected to take longer than the budget below
    out = eng.process([(0, root)], 0.0, 0.0, time.time() + 1000.0)
    assert out[0].status == "split" and len(out[0].children) == 2 and out[0].times["attack"] == 0.0
    out = eng.process([(0, root)], 0.0, 0.0, time.time() + 1e7)
    assert out[0].status == "counterexample"


@pytest.mark.requires_shared
def test_sigmoid_6x200_timeout_holds(networks_dir):
    """The root cell's attack finds a float candidate whose exact re-check (mpmath intervals through
    the 6x200 sigmoid net) takes about 25 s at load 4: before the fix a 5 s run took over 30 s."""
    from hybridq import load_network
    from hybridq.io.vnnlib import load_vnnlib

    d = networks_dir / "eran_sigmoid"
    net = load_network(d / "ffnnSIGMOID__Point_6x200.onnx")
    box, _ = load_vnnlib(d / "mnist_spec_idx_7167_eps_0.01200.vnnlib", net.n_in, net.n_out)[0]
    pert = perturbation("int8", net)
    verify(net, pert, box, Deviation(0.5), jobs=1, timeout=1e-3, backend="none")  # kernels compiled/loaded
    t = time.perf_counter()
    res = verify(net, pert, box, Deviation(0.5), jobs=1, timeout=5.0, backend="none")
    elapsed = time.perf_counter() - t
    assert res.verdict == "unknown" and res.stats.timed_out
    assert elapsed < 5.0 + 10.0, elapsed  # generous margin for a loaded machine; the overrun was > 25 s
