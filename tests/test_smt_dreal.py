"""The real dReal backend (where ``import dreal`` works; skipped with the import error elsewhere):
agreement with z3 on random small relu networks, soundness on sigmoid / tanh networks against
dense sampling, and its time limit.  The glue alone is tested against a stand-in in
``tests/test_smt_dreal_glue.py``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hybridq.cell import Cell
from hybridq.inputs import InputBox
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation
from hybridq.properties import Deviation
from hybridq.smt import Sat, Unknown, Unsat, get_backend
from test_smt import DREAL_ERR
from test_smt_crosscheck import assert_sat_rechecks, pick_property, random_case, sample_pairs

pytestmark = pytest.mark.skipif(DREAL_ERR is not None, reason=f"dReal not importable ({DREAL_ERR})")


def root(net, box):
    return Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))


def test_dreal_agrees_with_z3_on_random_networks():
    """Where both decide, dReal and z3 give the same verdict; every Sat re-checks exactly; and
    dReal decides a fair share of these small queries within 2 s each."""
    z3b = get_backend("z3", rlimit=150_000, logic="QF_NRA")
    dr = get_backend("dreal", delta=1e-6)
    both = decided = 0
    for seed in range(18, 38):  # the z3 cross-check's cases 18-37 (mostly decisions, quick for both)
        rng, net, pert, box = random_case(seed)
        prop = pick_property(rng, net, pert, box)
        a = z3b.check(net, pert, root(net, box), prop, 3)
        b = dr.check(net, pert, root(net, box), prop, 2, box=box)
        for out in (a, b):
            if isinstance(out, Sat):
                assert_sat_rechecks(net, pert, box, prop, out)
        assert b.stats["backend"] == "dreal"
        decided += not isinstance(b, Unknown)
        if not isinstance(a, Unknown) and not isinstance(b, Unknown):
            both += 1
            assert type(a) is type(b), (seed, a, b)
    assert both >= 12 and decided >= 12, (both, decided)  # 16 and 17 of 20 when written


def sig_net(seed, sizes, act):
    rng = np.random.default_rng(seed)
    return Network(tuple(Layer(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                               0.1 * rng.normal(size=sizes[i + 1]), act if i < len(sizes) - 2 else "identity")
                         for i in range(len(sizes) - 1)))


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_dreal_on_sigmoid_tanh_networks_is_consistent(act):
    """Small sigmoid / tanh networks at points and small boxes, thresholds 0.97 ... 3 x the worst
    deviation dense sampling finds: below it dReal never answers Unsat; every Sat is an exactly
    re-checked violation (dReal finds many above the sampled worst case), and its deviation is
    below every threshold dReal proved; and dReal proves some of them."""
    dr = get_backend("dreal", delta=1e-6)
    rng = np.random.default_rng(11)
    n_unsat = n_sat = 0
    for k in range(6):
        net = sig_net(100 + k, [2, 4, 1] if k % 2 else [3, 3, 1], act)
        pert = Perturbation(net.params, tuple((np.full(W.shape, 0.01), np.full(b.shape, 0.01)) for W, b in net.params))
        x = rng.uniform(-1, 1, net.n_in)
        box = InputBox(x, x) if k < 3 else InputBox(x - 0.05, x + 0.05)
        worst = 0.0
        for xs, params in sample_pairs(rng, net, pert, box, n_theta=60, n_x=10):
            worst = max(worst, float(np.max(np.abs(net.forward(xs, params) - net.forward(xs)))))
        found, proved = 0.0, np.inf
        for f in (0.97, 1.2, 1.5, 2.0, 3.0):
            prop = Deviation(f * worst)
            out = dr.check(net, pert, root(net, box), prop, 5, box=box)
            if isinstance(out, Sat):
                assert_sat_rechecks(net, pert, box, prop, out)
                x_sat = np.asarray(out.x, dtype=np.float64)
                found = max(found, float(np.max(np.abs(net.forward(x_sat, out.params) - net.forward(x_sat)))))
                n_sat += 1
            elif isinstance(out, Unsat):
                assert f > 0.97, (k, worst)
                proved = min(proved, prop.delta)
                n_unsat += 1
        assert found <= proved * (1 + 1e-9), (k, found, proved)
    assert n_unsat >= 4 and n_sat >= 6, (n_unsat, n_sat)


def test_dreal_time_limit_holds():
    """A query dReal cannot finish (a tanh 2-16-16-1 net on a box, delta below the maximum) ends
    at its limit: the worker is killed, not waited for, and the next query gets a fresh one."""
    from hybridq.smt import dreal as mod

    net = sig_net(7, [2, 16, 16, 1], "tanh")
    pert = Perturbation(net.params, tuple((np.full(W.shape, 0.02), np.full(b.shape, 0.02)) for W, b in net.params))
    box = InputBox(-np.ones(2), np.ones(2))
    dr = get_backend("dreal", delta=1e-6)
    dr.check(net, pert, root(net, InputBox(np.zeros(2), np.zeros(2))), Deviation(10.0), 30)  # worker started
    for limit in (0.5, 1.5):
        t0 = time.perf_counter()
        out = dr.check(net, pert, root(net, box), Deviation(0.05), limit, box=box)
        took = time.perf_counter() - t0
        assert isinstance(out, Unknown) and out.kind == "timeout", out
        assert took < limit + 0.5, took
    assert mod._WORKER.proc is not None and mod._WORKER.proc.poll() is None  # the next one is starting
