"""The certified MILP/LP stage: rigorous LP bounds, the exact MILP encoding, agreement with z3 and
no wrong verdict at the threshold."""

from __future__ import annotations

import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hybridq.cell import Cell
from hybridq.inputs import InputBox
from hybridq.milp.certify import LpData
from hybridq.milp.model import MilpModel, ModelUnsupported, Objective, build_model
from hybridq.milp import search
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation, perturbation
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.smt import Sat, Unknown, Unsat, get_backend
from hybridq.smt import encode as enc

sys.path.insert(0, str(Path(__file__).parent))
from test_smt_crosscheck import assert_sat_rechecks, pick_property, random_case, sample_pairs  # noqa: E402


# ------------------------------------------------------------------ certify
def _exact_bound(A, row_lo, row_hi, c, lb, ub, y) -> Fraction:
    """The Neumaier-Shcherbina bound of the same (cleaned) y in exact rational arithmetic."""
    A = sp.csr_matrix(A).toarray()
    m, n = A.shape
    total = Fraction(0)
    for i in range(m):
        if y[i] > 0:
            total += Fraction(y[i]) * Fraction(row_lo[i])
        elif y[i] < 0:
            total += Fraction(y[i]) * Fraction(row_hi[i])
    for j in range(n):
        r = Fraction(c[j]) - sum((Fraction(A[i, j]) * Fraction(y[i]) for i in range(m) if A[i, j] != 0 and y[i] != 0),
                                 Fraction(0))
        total += min(r * Fraction(lb[j]), r * Fraction(ub[j]))
    return total


@pytest.mark.parametrize("seed", range(30))
def test_certified_bound_is_below_the_exact_bound_of_the_same_dual(seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    scale = 10.0 ** rng.integers(-8, 9, size=(m, n))
    A = rng.normal(size=(m, n)) * scale * (rng.random((m, n)) < 0.6)
    row_lo = np.where(rng.random(m) < 0.5, rng.normal(size=m) * 1e3, -np.inf)
    row_hi = np.where(rng.random(m) < 0.7, rng.normal(size=m) * 1e3, np.inf)
    lb = rng.normal(size=n) * 10.0 ** rng.integers(-5, 5, n)
    ub = lb + rng.uniform(0, 10, n)
    y = rng.normal(size=m) * 10.0 ** rng.integers(-6, 6, m)
    # residuals that cancel almost exactly (the hard case for float evaluation)
    c = A.T @ y + rng.normal(size=n) * 1e-12
    d = LpData(A, row_lo, row_hi)
    lo = d.lower_bound(c, lb, ub, y)
    exact = _exact_bound(A, row_lo, row_hi, c, lb, ub, d.clean(y))
    assert lo == -math.inf or Fraction(lo) <= exact
    # and it is tight: its slack is a tiny fraction of the magnitude of the terms it sums
    yc = d.clean(y)
    side = np.where(yc > 0, row_lo, row_hi)
    size = float(np.sum(np.abs(yc[yc != 0] * side[yc != 0]))) + float(
        np.sum((np.abs(c) + np.abs(A).T @ np.abs(yc)) * np.maximum(np.abs(lb), np.abs(ub))))
    assert math.isfinite(lo) and float(exact) - lo <= 1e-12 * size


def test_certified_bound_from_highs_duals_matches_the_lp_optimum():
    rng = np.random.default_rng(1)
    m, n = 30, 20
    A = sp.random(m, n, density=0.3, random_state=3, format="csr")
    x0 = rng.uniform(-1, 1, n)
    ax = A @ x0
    row_lo = np.where(rng.random(m) < 0.5, ax - rng.uniform(0, 1, m), -np.inf)
    row_hi = ax + rng.uniform(0, 1, m)
    lb, ub = np.full(n, -2.0), np.full(n, 2.0)
    c = rng.normal(size=n)
    model = MilpModel(lb, ub, A, row_lo, row_hi, np.zeros(0, dtype=np.int64), [], [], [], [])
    h = search._new_highs()
    search._pass(h, model, c, integer=False)
    h.run()
    val = h.getInfo().objective_function_value
    lo = LpData(A, row_lo, row_hi).lower_bound(c, lb, ub, np.array(h.getSolution().row_dual))
    assert lo <= val and val - lo < 1e-9 * (1 + abs(val))


def test_time_limit_moves_on_with_the_highs_run_clock():
    """HiGHS compares ``time_limit`` with the object's run time summed over all its ``run()``
    calls: one object that solves LP after LP (the certified branch and bound) must set the limit
    from its clock, or every LP after that stops at once without an answer."""
    rng = np.random.default_rng(5)
    m, n = 40, 30
    A = sp.random(m, n, density=0.3, random_state=4, format="csr")
    x0 = rng.uniform(-1, 1, n)
    model = MilpModel(np.full(n, -2.0), np.full(n, 2.0), A, A @ x0 - 1.0, A @ x0 + 1.0,
                      np.zeros(0, dtype=np.int64), [], [], [], [])
    h = search._new_highs()
    search._pass(h, model, np.zeros(n), integer=False)
    h.setOptionValue("presolve", "off")
    j = 0
    while h.getRunTime() < 0.05:  # many small LPs (a new objective each) until the clock passes 0.05 s
        h.changeColCost(j % n, 0.0)
        j += 1
        h.changeColCost(j % n, 1.0)
        h.run()
    status = search._highspy().HighsModelStatus
    h.changeColCost(j % n, -1.0)
    h.setOptionValue("time_limit", 0.5 * h.getRunTime())  # a limit for this call alone: already spent
    h.run()
    assert h.getModelStatus() == status.kTimeLimit
    search._time_limit(h, 30.0)
    h.run()
    assert h.getModelStatus() == status.kOptimal


def test_farkas_ray_certifies_an_infeasible_lp_and_nothing_else():
    # v0 + v1 >= 3 with v in [0, 1]^2: infeasible; ray y = (1) proves it
    A = np.array([[1.0, 1.0]])
    d = LpData(A, np.array([3.0]), np.array([np.inf]))
    lb, ub = np.zeros(2), np.ones(2)
    assert d.infeasible(lb, ub, np.array([1.0]))
    assert d.infeasible(lb, ub, np.array([-1.0]))  # either sign convention
    # feasible once the box allows it: no ray can prove infeasibility
    assert not d.infeasible(lb, np.full(2, 2.0), np.array([1.0]))
    assert not d.infeasible(lb, ub, np.array([0.0]))


# ------------------------------------------------------------------ the stage on networks
def _one_layer_case(x: float, w: float, b: float, r: float, rb: float, relu_hidden: bool = False):
    """y = w x + b (or a relu layer of positive pre-activations followed by identity) with radii."""
    if not relu_hidden:
        net = Network((Layer(np.array([[w]]), np.array([b]), "identity"),))
        pert = Perturbation(((np.array([[w]]), np.array([b])),), ((np.array([[r]]), np.array([rb])),))
        dmax = Fraction(r) * abs(Fraction(x)) + Fraction(rb)
        return net, pert, dmax
    W1, b1 = np.array([[w], [0.5 * w]]), np.array([b, b])
    W2, b2 = np.array([[1.0, -2.0]]), np.array([0.25])
    net = Network((Layer(W1, b1, "relu"), Layer(W2, b2, "identity")))
    R1, rb1 = np.full((2, 1), r), np.full(2, rb)
    R2, rb2 = np.full((1, 2), r), np.array([rb])
    pert = Perturbation(((W1, b1), (W2, b2)), ((R1, rb1), (R2, rb2)))
    # all hidden pre-activations stay positive: y' - y is maximised at the extreme h' (exact)
    X = Fraction(x)
    hmax = [Fraction(W1[j, 0]) * X + Fraction(b1[j]) + Fraction(r) * abs(X) + Fraction(rb) for j in range(2)]
    hmin = [Fraction(W1[j, 0]) * X + Fraction(b1[j]) - Fraction(r) * abs(X) - Fraction(rb) for j in range(2)]
    assert min(hmin) > 0
    up = Fraction(b2[0]) + Fraction(rb)
    for j in range(2):
        cp = Fraction(W2[0, j]) + Fraction(r)  # the largest coefficient, applied to h' >= 0
        up += cp * (hmax[j] if cp > 0 else hmin[j])
    y0 = sum(Fraction(W2[0, j]) * (Fraction(W1[j, 0]) * X + Fraction(b1[j])) for j in range(2)) + Fraction(b2[0])
    return net, pert, up - y0


@pytest.mark.parametrize("relu_hidden", [False, True])
@pytest.mark.parametrize("x", [0.7, 1.3])
def test_threshold_at_the_exact_maximum_never_gives_a_wrong_verdict(relu_hidden, x):
    net, pert, dmax = _one_layer_case(x, 1.1, 0.3, 1e-3, 2e-4, relu_hidden)
    mb = get_backend("milp")
    cell = Cell.root(np.array([x]), np.array([x]), sum(l.n_out for l in net.layers))
    for rel, allowed in ((Fraction(0), (Unsat, Unknown)),                    # delta == max: robust
                         (Fraction(1, 10**12), (Unsat, Unknown)),            # just above: robust
                         (Fraction(-1, 10**12), (Sat, Unknown)),             # just below: violated
                         (Fraction(1, 10**6), (Unsat,)),                     # clear cases are decided
                         (Fraction(-1, 10**6), (Sat,))):
        delta_exact = dmax * (1 + rel)
        delta = float(delta_exact)
        truth_robust = Fraction(delta) >= dmax  # the float delta the property really holds
        prop = Deviation(delta, outputs=(0,))
        out = mb.check(net, pert, cell, prop, 20.0)
        assert isinstance(out, allowed) or (isinstance(out, Unknown)), (rel, out)
        if isinstance(out, Sat):
            assert not truth_robust
            assert_sat_rechecks(net, pert, InputBox(np.array([x]), np.array([x])), prop, out)
        if isinstance(out, Unsat):
            assert truth_robust, (rel, out)
        if rel in (Fraction(1, 10**6), Fraction(-1, 10**6)):
            assert isinstance(out, allowed), (rel, out)


def test_near_degenerate_rows_at_a_tie_never_give_a_wrong_verdict():
    """Two outputs that tie exactly at the worst point (the decision margin is exactly kappa)."""
    W = np.array([[1.0, 1.0], [1.0, 1.0 - 2.0 ** -40]])
    net = Network((Layer(W, np.zeros(2), "identity"),))
    pert = Perturbation(((W, np.zeros(2)),), ((np.zeros((2, 2)), np.array([0.0, 2.0 ** -41])),))
    x = np.array([1.0, 1.0])
    cell = Cell.root(x, x, 2)
    # y0 - y1 = 2^-40 - lam * 2^-41 >= 2^-41 for lam in [-1, 1]: kappa = 2^-41 is exactly reached
    for kappa, robust in ((2.0 ** -41, False), (2.0 ** -41 * (1 - 2.0 ** -30), True)):
        out = get_backend("milp").check(net, pert, cell, Decision(0, kappa), 10.0)
        assert not isinstance(out, Sat if robust else Unsat), (kappa, out)
        if isinstance(out, Sat):
            assert Decision(0, kappa).check_exact(net, out.x, out.params)


def _exact_max_dev_on_samples(net, pert, box, prop, rng):
    best = Fraction(-10**9)
    for xs, params in sample_pairs(rng, net, pert, box, n_theta=12, n_x=4):
        for x in xs:
            for dv in prop.exact_deviations(net, x, params):
                best = max(best, abs(dv))
    return best


@pytest.mark.parametrize("seed", [s for s in range(60) if s % 3 == 0])
def test_certified_bound_encloses_the_exact_deviation(seed):
    rng, net, pert, box = random_case(seed)
    prop = Deviation(1e6)  # never violated: the stage proves it and reports its certified bounds
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    out = get_backend("milp").check(net, pert, cell, prop, 20.0)
    assert isinstance(out, Unsat), out
    bound = max(out.stats["bounds"])
    assert Fraction(bound) >= _exact_max_dev_on_samples(net, pert, box, prop, rng)
    # and tight: the proof at the sampled maximum itself
    q = enc.Query.build(net, pert, cell, prop)
    from hybridq.smt.milp import _fill_bounds

    _fill_bounds(q, cell)
    model = build_model(q)
    assert model.objectives and all(o.strict for o in model.objectives)


@pytest.mark.parametrize("start", [0, 20])
def test_milp_agrees_with_z3_on_random_networks(start):
    """A fast slice of the 200-network cross-check (the full one is marked slow below)."""
    _crosscheck(range(start, start + 20))


@pytest.mark.slow
def test_milp_agrees_with_z3_on_200_random_networks():
    _crosscheck(range(40, 200))


def _crosscheck(seeds):
    z3b = get_backend("z3", rlimit=150_000, logic="QF_NRA")
    mb = get_backend("milp")
    counts = {"both": 0, "milp_decided": 0}
    for seed in seeds:
        rng, net, pert, box = random_case(seed)
        prop = pick_property(rng, net, pert, box)
        cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
        m = mb.check(net, pert, cell, prop, 20.0)
        z = z3b.check(net, pert, cell, prop, 20.0)
        if isinstance(m, Sat):
            assert_sat_rechecks(net, pert, box, prop, m)
        if not isinstance(m, Unknown):
            counts["milp_decided"] += 1
            if not isinstance(z, Unknown):
                counts["both"] += 1
                assert type(m) is type(z), f"seed {seed}: milp {m} vs z3 {z}"
    # the MILP stage decides (nearly) every one of these small queries
    assert counts["milp_decided"] >= 0.95 * len(seeds), counts


def test_unsupported_activations_and_encodings_are_unknown_not_errors():
    net = Network((Layer(np.ones((2, 2)), np.zeros(2), "sigmoid"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    pert = perturbation("abs:0.01", net)
    cell = Cell.root(np.zeros(2), np.ones(2), 3)
    out = get_backend("milp").check(net, pert, cell, Deviation(0.1), 5.0)
    assert isinstance(out, Unknown) and out.kind == "unsupported" and "sigmoid" in out.reason
    net2 = Network((Layer(np.ones((1, 2)), np.zeros(1), "identity"),))
    out = get_backend("milp").check(net2, perturbation("abs:0.01", net2), Cell.root(np.zeros(2), np.ones(2), 1),
                                    Deviation(0.1), 5.0, encoding="pure")
    assert isinstance(out, Unknown) and out.kind == "unsupported"


def test_a_program_highs_refuses_is_unknown_not_a_crash():
    """Inputs of magnitude 1e14 and weights of 100: the big-M of the unstable ReLUs (1e16) is
    beyond HiGHS's coefficient limit (1e15), so HiGHS loads nothing.  It was an IndexError in the
    root probing (an empty LP solution), also through ``verify``; now an Unknown that says why."""
    W1 = np.array([[100.0], [-100.0]])
    net = Network((Layer(W1, np.array([1.0, 1.0]), "relu"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    pert = perturbation("rel:0.01", net)
    cell = Cell.root(np.array([-1e14]), np.array([1e14]), 3)
    out = get_backend("milp").check(net, pert, cell, Deviation(1e3), 10.0)
    assert isinstance(out, Unknown) and out.kind == "unsupported", out
    assert "HiGHS refused the program" in out.reason and "1e+16" in out.reason
    q = enc.Query.build(net, pert, cell, Deviation(1e3))
    from hybridq.smt.milp import _fill_bounds

    _fill_bounds(q, cell)
    model = build_model(q)
    with pytest.raises(ModelUnsupported, match="HiGHS refused"):
        search.prove(model, model.objectives[0], time.perf_counter() + 5.0, probe=True)


def test_root_bounds_stop_at_the_deadline(monkeypatch):
    """The objectives' root LPs (tens of ms each on MNIST 256x4, 20 objectives: the stage overran a
    2 s limit by 0.3 s, ``verify`` a 3 s one by 0.6 s): past the deadline no further root LP starts."""
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(6, 3)), rng.normal(size=(10, 6))
    net = Network((Layer(W1, rng.normal(size=6), "relu"), Layer(W2, rng.normal(size=10), "identity")))
    pert = perturbation("rel:0.01", net)
    cell = Cell.root(np.full(3, -0.5), np.full(3, 0.5), 16)
    mb = get_backend("milp")
    mb.check(net, pert, cell, Deviation(1e-9), 20.0)  # imports and the bound pass warm
    calls = []
    bound = search.RootBounds.bound

    def slow(*args, **kw):
        calls.append(time.perf_counter())
        time.sleep(0.05)
        return bound(*args, **kw)

    monkeypatch.setattr(search.RootBounds, "bound", slow)
    t0 = time.perf_counter()
    out = mb.check(net, pert, cell, Deviation(1e-9), 0.3)
    took = time.perf_counter() - t0
    assert isinstance(out, Unknown) and out.kind == "timeout", out
    assert 2 <= len(calls) <= 8 and all(t < t0 + 0.3 for t in calls), (len(calls), took)  # of 20 objectives
    assert took < 0.3 + 0.3, took


def test_output_constraint_disjuncts():
    net = Network((Layer(np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2), "identity"),))
    pert = perturbation("abs:0.01", net)
    cell = Cell.root(np.array([0.0, 0.0]), np.array([1.0, 1.0]), 2)
    mb = get_backend("milp")
    # y0 = (1 +- .01) x0 + (+-.01) x1 +- .01 reaches 1.03 at x = (1, 1); y1 reaches -0.02 at x = (1, 0)
    hit = mb.check(net, pert, cell, OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-1.025])),)), 10.0)
    assert isinstance(hit, Sat)
    assert OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-1.025])),)).check_exact(net, hit.x, hit.params)
    # y0 >= 1.035 or (y0 >= 0.5 and y1 <= -0.025) are not
    miss = OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-1.035])),
                             (np.array([[-1.0, 0.0], [0.0, 1.0]]), np.array([-0.5, -0.025]))))
    assert isinstance(mb.check(net, pert, cell, miss, 10.0), Unsat)


def test_certified_search_prunes_an_infeasible_phase_by_a_farkas_ray():
    """r = relu(v), v in [-1, 1], a row v <= -1/2: the active phase is infeasible (pruned only by a
    checked Farkas ray), the inactive one has r = 0; the root LP (triangle) alone allows r = 1/4."""
    from hybridq.milp.model import _Builder

    b = _Builder()
    b._empty = False
    v = b.col(-1.0, 1.0, "v")
    r = b.relu(v, -1.0, 1.0, "v")
    b.row({v: 1.0}, None, Fraction(-1, 2))
    A = sp.csr_matrix((b.rows_v, (b.rows_i, b.rows_j)), shape=(len(b.row_lo), len(b.lb)))
    model = MilpModel(np.array(b.lb), np.array(b.ub), A, np.array(b.row_lo), np.array(b.row_hi),
                      np.array(b.binaries), b.relus, [], [], [])
    import time

    res = search.prove(model, Objective({r: 1.0}, Fraction(0), Fraction(1, 10), True, "r"), time.perf_counter() + 10)
    assert res.status == "proved" and res.nodes >= 2 and res.bound <= 0.1
    # at a threshold the phase pattern reaches (r = 0 >= 0, non-strict) nothing is proved
    res = search.prove(model, Objective({r: 1.0}, Fraction(0), Fraction(0), False, "r"), time.perf_counter() + 10)
    assert res.status == "open"


def test_z3_unsat_is_confirmed_independently_and_overruled_by_a_checked_violation(monkeypatch):
    rng, net, pert, box = random_case(3)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    z3b = get_backend("z3")
    out = z3b.check(net, pert, cell, Deviation(1e3), 20.0)
    assert isinstance(out, Unsat) and out.stats["confirmed"] == "milp"
    # a z3 that wrongly answers unsat (simulated) is overruled by the exactly re-checked violation
    from hybridq.smt.base import SolverAnswer
    from hybridq.smt.z3 import Z3Backend

    monkeypatch.setattr(Z3Backend, "solve", lambda self, ar, f, t: SolverAnswer("unsat"))
    prop = Deviation(1e-9)
    out = get_backend("z3").check(net, pert, cell, prop, 20.0)
    assert isinstance(out, Sat) and out.stats["overruled"] == "z3 unsat"
    assert_sat_rechecks(net, pert, box, prop, out)
    # a leaky relu network: confirmed by z3's linear-arithmetic solver instead
    lk = Network(tuple(Layer(l.W, l.b, "leaky_relu" if k == 0 else l.activation, 0.1) for k, l in enumerate(net.layers)),
                 input_mean=net.input_mean, input_std=net.input_std, output_mean=net.output_mean,
                 output_std=net.output_std)
    monkeypatch.undo()
    out = get_backend("z3").check(lk, pert, cell, Deviation(1e3), 20.0)
    assert isinstance(out, Unsat) and out.stats["confirmed"] == "z3-lra"


@pytest.mark.requires_shared
def test_acas_fp16_point_query_of_issue_15_is_decided_both_sides(networks_dir):
    """The reproduction of issue 15 (a counterexample just above delta; landed main stopped at 18 s
    with 4 open cells): decided on both sides of the true maximum (about 2.3232e-4)."""
    from hybridq import load_network, verify

    net = load_network(networks_dir / "acasxu" / "onnx" / "ACASXU_run2a_2_3_batch_2000.onnx")
    pert = perturbation("fp16", net)
    x = np.array([0.6399288845, 0.0, 0.0, 0.475, -0.475])
    prop = Deviation(0.0002276774401499664, outputs=(1,))
    r = verify(net, pert, x, prop, jobs=1, timeout=60)
    assert r.verdict == "not_robust"
    assert pert.contains(r.counterexample.params) and prop.check_exact(net, r.counterexample.x, r.counterexample.params)
    r = verify(net, pert, x, Deviation(0.000237, outputs=(1,)), jobs=1, timeout=60)
    assert r.verdict == "robust"
    # cells proved by the exact stage count at delta: the certified deviation printed with
    # ``robust`` is never above delta (it was the looser bound pass's, 2.5e-4)
    assert r.stats.proved_smt >= 1 and r.deviation_bound <= 0.000237


def test_cells_that_cannot_be_split_go_to_the_exact_stage_instead_of_staying_open():
    """max_depth=1 and no exact call by size: the depth-1 cells cannot be split and used to stay
    open (unknown); they now go to the exact stage with the run's time left and are decided."""
    from hybridq import verify

    rng = np.random.default_rng(5)
    net = Network((Layer(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.1, "relu"),
                   Layer(rng.normal(size=(1, 8)) / 3, np.zeros(1), "identity")))
    pert = perturbation("abs:0.05", net)
    box = InputBox(-np.ones(2), np.ones(2))
    cell = Cell.root(box.lower, box.upper, 9)
    dmax = max(_milp_optimum(net, pert, cell, Deviation(0.0), obj) for obj in range(2))
    prop = Deviation(1.05 * dmax)  # robust, but the bounds alone do not close it at depth 1
    plain = verify(net, pert, box, prop, backend="none", jobs=1, timeout=60, max_depth=1)
    assert plain.verdict == "unknown"
    for backend in ("milp", "z3"):
        kw = dict(backend=backend, jobs=1, timeout=60, max_depth=1, smt_max_unstable=0, milp_max_unstable=0,
                  milp_box_max_unstable=0)
        r = verify(net, pert, box, prop, **kw)
        assert r.verdict == "robust", (backend, r.message)
        assert r.stats.smt_calls >= 1


def _milp_optimum(net, pert, cell, prop, k):
    """HiGHS's float optimum of objective ``k`` of the query (a reference value for tests)."""
    from hybridq.smt.milp import _fill_bounds

    q = enc.Query.build(net, pert, cell, prop)
    _fill_bounds(q, cell)
    model = build_model(q)
    obj = model.objectives[k]
    h = search._new_highs()
    search._pass(h, model, -obj.vector(model.n), integer=True)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.run()
    return -h.getInfo().objective_function_value + float(obj.const)


@pytest.mark.parametrize("seed", [1, 4, 7])
def test_assignment_of_a_point_is_feasible_and_starts_the_search(seed):
    from hybridq.milp.model import assignment
    from hybridq.smt.milp import _fill_bounds

    rng, net, pert, box = random_case(seed)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    prop = Deviation(0.0)
    q = enc.Query.build(net, pert, cell, prop)
    _fill_bounds(q, cell)
    model = build_model(q)
    params = pert.snap_inside(pert.sample(rng))
    v = assignment(model, q, box.center, params)
    Av = model.A @ v
    scale = 1 + np.abs(model.A) @ np.abs(v)
    assert np.all(Av <= model.row_hi + 1e-9 * scale) and np.all(Av >= model.row_lo - 1e-9 * scale)
    assert np.all(v >= model.lb) and np.all(v <= model.ub)
    # the objective at the assignment is the float deviation at that point
    yp, yn = net.forward(box.center[None, :], params)[0], net.forward(box.center[None, :])[0]
    obj = model.objectives[0]
    assert obj.vector(model.n) @ v + float(obj.const) == pytest.approx(yp[0] - yn[0], abs=1e-9)
    found = search.find(model, obj, 2.0, start=v)
    assert found is None or obj.vector(model.n) @ found + float(obj.const) >= -1e-9


def test_quantify_uses_the_milp_stage_and_brackets_the_true_maximum():
    from hybridq import quantify

    rng = np.random.default_rng(3)
    net = Network((Layer(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.1, "relu"),
                   Layer(rng.normal(size=(1, 8)) / 3, np.zeros(1), "identity")))
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    dmax = max(_milp_optimum(net, pert, Cell.root(box.lower, box.upper, 9), Deviation(0.0), k) for k in range(2))
    q = quantify(net, pert, box, backend="milp", jobs=1, tol=0.01, timeout=60)
    assert q.lower <= dmax + 1e-9 and dmax <= q.upper + 1e-9
    assert q.upper <= q.lower * 1.01 + 1e-12  # the tolerance was reached
    assert q.witness is not None and q.witness.value == q.lower


# ------------------------------------------------------------------ neighbourhood search and seeds
def _deep_net(seed, dims=(4, 24, 24, 24, 1)):
    rng = np.random.default_rng(seed)
    return Network(tuple(Layer(rng.normal(size=(dims[i + 1], dims[i])) / np.sqrt(dims[i]), rng.normal(size=dims[i + 1]) * 0.3,
                               "relu" if i < len(dims) - 2 else "identity") for i in range(len(dims) - 1)))


@pytest.mark.parametrize("seed", [0, 5])
def test_neighbourhood_search_seeds_an_attack_that_finds_what_the_unseeded_one_misses(seed):
    """A weak attack's best point starts the milp stage's search-only call (the neighbourhood of its
    ReLU phases); the call's best point (a seed, not a witness) beats the attack's, and an attack
    seeded with it finds an exactly re-checked counterexample at a threshold between the two, which
    the same attack without the seed misses.  Between the attack's value and 1.02x it, the search
    itself returns a violation that re-checks exactly."""
    from hybridq.attack import attack

    net = _deep_net(seed)
    pert = perturbation("abs:0.05", net)
    x = np.random.default_rng(100 + seed).uniform(-1, 1, 4)
    weak = dict(samples=4, steps=2, restarts=1)
    a = attack(net, pert, Deviation(0.0), x, x, np.random.default_rng(0), **weak)
    cell = Cell.root(x, x, sum(l.n_out for l in net.layers))
    mb = get_backend("milp")
    out = mb.check(net, pert, cell, Deviation(1.5 * a.value), 20, start=(a.x, a.params), prove_it=False)
    assert isinstance(out, Unknown) and "seed" in out.stats
    s_val, s_x, s_params = out.stats["seed"]
    assert s_val > 1.05 * a.value and pert.contains(s_params) and np.array_equal(s_x, x)
    prop = Deviation(0.5 * (a.value + s_val))
    plain = attack(net, pert, prop, x, x, np.random.default_rng(0), **weak)
    assert plain.counterexample is None
    seeded = attack(net, pert, prop, x, x, np.random.default_rng(0), **weak, starts=[(s_x, s_params)])
    cx = seeded.counterexample
    assert cx is not None and pert.contains(cx.params) and prop.check_exact(net, cx.x, cx.params)
    # just above the attack's value: the neighbourhood search finds a violation itself
    prop = Deviation(1.02 * a.value)
    found = mb.check(net, pert, cell, prop, 20, start=(a.x, a.params), prove_it=False)
    assert isinstance(found, Sat) and found.stats["found_by"] == "neighbourhood"
    assert pert.contains(found.params) and prop.check_exact(net, found.x, found.params)


def test_search_only_call_never_claims_more_than_its_root_bound():
    """``prove_it=False`` proves only what the certified root bound proves (Unsat where the
    threshold is above it), and never runs the branch and bound (no nodes)."""
    net = _deep_net(1)
    pert = perturbation("abs:0.05", net)
    x = np.random.default_rng(101).uniform(-1, 1, 4)
    cell = Cell.root(x, x, sum(l.n_out for l in net.layers))
    mb = get_backend("milp")
    full = mb.check(net, pert, cell, Deviation(0.0), 20)
    assert isinstance(full, Sat)
    out = mb.check(net, pert, cell, Deviation(1e6), 20, prove_it=False)
    assert isinstance(out, Unsat) and max(out.stats["bounds"]) < 1e6
    out = mb.check(net, pert, cell, Deviation(1.0), 20, prove_it=False)  # no start: no search, no proof
    assert isinstance(out, Unknown) and out.stats["nodes"] == 0


def test_engine_attacks_start_from_the_seeds_of_the_milp_stage():
    """``CellEngine.process(seeds=...)``: a seed inside the cell joins the attack's starts (the same
    attack without it misses the violation; with it the cell is refuted by an exactly re-checked
    counterexample); a seed outside the cell is not used."""
    from hybridq.bab.engine import CellEngine, Outcome, Problem
    from hybridq.config import make_config

    net = _deep_net(0)
    pert = perturbation("abs:0.05", net)
    x = np.random.default_rng(100).uniform(-1, 1, 4)
    box = InputBox(x, x)
    cfg = make_config(None, backend="none", attack_samples=4, attack_steps=2, attack_restarts=1)
    n = sum(l.n_out for l in net.layers)

    def engine(prop):
        return CellEngine(Problem(net, pert, prop, cfg, "verify", box.lower, box.upper, box))

    def root():
        c = Cell.root(x, x, n)
        c.priority = np.inf
        return c

    a = engine(Deviation(0.0))._attack(Outcome(0, "open", np.inf), root(), 0, 0.0)
    prop = Deviation(1.02 * a.value)
    found = get_backend("milp").check(net, pert, root(), prop, 20, start=(a.x, a.params), prove_it=False)
    assert isinstance(found, Sat)
    seed = (1.02 * a.value, np.asarray(found.x, dtype=np.float64), found.params)
    (plain,) = engine(prop).process([(0, root())], 0.0, 0.0, None)
    assert plain.status != "counterexample"
    (seeded,) = engine(prop).process([(0, root())], 0.0, 0.0, None, seeds=(seed,))
    assert seeded.status == "counterexample"
    cx = seeded.counterexample
    assert pert.contains(cx.params) and prop.check_exact(net, cx.x, cx.params)
    away = (seed[0], x + 1.0, seed[2])  # input outside the (point) cell: ignored
    (other,) = engine(prop).process([(0, root())], 0.0, 0.0, None, seeds=(away,))
    assert other.status != "counterexample"


def test_search_only_call_needs_an_attack_close_to_delta():
    """The search-only milp call is worth it only when the attack came within POLISH_GAP of the
    threshold, measured against the gap to the cell's bound and against ``delta``: on a loose
    cell (bound 1e5 times delta) an attack at 0.1 % of delta is not close (it was, by the gap
    alone, and those calls ate NeuroDiff's ACAS Xu property-1 budgets)."""
    from types import SimpleNamespace

    from hybridq.bab.exact import POLISH_GAP, ExactStage
    from hybridq.config import make_config

    st = ExactStage(SimpleNamespace(config=make_config(None, backend="milp"), network=None,
                                    prop=Deviation(1.0), mode="verify"))
    delta = 1.0
    far, near = 0.001 - delta, (1 - 0.5 * POLISH_GAP) * delta - delta  # the attack's margins
    assert st.worth_polish(far, 1e5)  # by the gap to a loose bound alone
    assert not st.worth_polish(far, 1e5, delta)
    assert st.worth_polish(near, 1e5, delta)
    assert not st.worth_polish(near, 1e5, 0.1 * POLISH_GAP * delta)
    assert not st.worth_polish(far, float("inf"), delta)


def test_box_cells_get_the_milp_call_only_near_the_threshold():
    """``ExactStage.box_call_due``: a box cell of a verify run gets the milp call only when its
    attack came within BOX_EXACT_GAP of the threshold (deviation: of ``delta``; other properties:
    of the gap to the cell's bound); a point cell, a cell without an attack on a point, and
    maximize mode are unaffected; a box cell without an attack is split."""
    from types import SimpleNamespace

    from hybridq.bab.exact import BOX_EXACT_GAP, ExactStage
    from hybridq.config import make_config

    def stage(mode, prop=Deviation(1.0)):
        return ExactStage(SimpleNamespace(config=make_config(None, backend="milp"), network=None, prop=prop, mode=mode))

    box = Cell.root(np.zeros(2), np.ones(2), 4)
    point = Cell.root(np.full(2, 0.5), np.full(2, 0.5), 4)
    delta = 1.0
    near, far = -0.9 * BOX_EXACT_GAP * delta, -1.1 * BOX_EXACT_GAP * delta  # attack margins (>= 0 violates)
    st = stage("verify")
    assert st.box_call_due(box, near, 0.3, delta) and not st.box_call_due(box, far, 0.3, delta)
    assert not st.box_call_due(box, None, 0.3, delta)
    assert st.box_call_due(point, None, 0.3, delta) and st.box_call_due(point, far, 0.3, delta)
    assert stage("maximize").box_call_due(box, None, 0.3, delta)
    # no delta (a decision): the shortfall against the gap between the attack and the bound
    gap = 0.4
    assert st.box_call_due(box, -0.9 * BOX_EXACT_GAP * gap, gap * (1 - 0.9 * BOX_EXACT_GAP), float("inf"))
    assert not st.box_call_due(box, -1.1 * BOX_EXACT_GAP * gap, gap * (1 - 1.1 * BOX_EXACT_GAP), float("inf"))



def test_objectives_share_the_proof_time_by_need(monkeypatch):
    """The certified search's objectives take turns (hybridq.smt.milp): one that needs more than
    its equal share is paused and resumed with the time the others left.  Stand-in proofs that
    spend a set number of seconds (sleeping) replace hybridq.milp.search.Proof: the first needs
    60 % of the time left for them, the second 10 %; the earlier policy (half each, the first failing at
    its half) gave Unknown."""
    from hybridq.smt.milp import MilpBackend

    from test_milp_cuts import _deep_case

    _, net, pert, box = _deep_case(0)  # a point input
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    budget = 2.0
    slices, made = [], []

    class Timed:
        def __init__(self, model, obj, deadline, *args, **kw):
            self.need = (0.6 if not made else 0.1) * (deadline - time.perf_counter())
            self.label = obj.label
            self.used, self.result = 0.0, None
            self.last = search.ProofResult("open", 0, -math.inf, "not started")
            made.append(self)

        def run(self, until):
            now = time.perf_counter()
            work = max(0.0, min(self.need - self.used, until - now))
            time.sleep(work)
            self.used += work
            slices.append((self.label, round(until - now, 2)))
            if self.used >= self.need - 1e-9:
                self.result = self.last = search.ProofResult("proved", 1, -math.inf)
            else:
                self.last = search.ProofResult("open", 1, -math.inf, "time limit")
            return self.last

    monkeypatch.setattr(search, "Proof", Timed)
    # a tiny delta: no root bound proves either objective, both reach the certified search
    out = MilpBackend(find_share=0.0).check(net, pert, cell, Deviation(1e-9), budget)
    assert len(made) == 2, slices
    assert isinstance(out, Unsat), (out, slices)
    first, second = made[0].label, made[1].label
    assert [s[0] for s in slices] == [first, second, first], slices
    assert slices[0][1] < made[0].need  # its first share was not enough: paused, then resumed


def test_objective_held_below_reads_a_certified_bound():
    """One reading of a certified upper bound (const left out) for the root bounds and the proof:
    -inf (empty program) holds, inf / NaN (no bound) do not, a finite one by the exact comparison
    with the threshold (strict: equal holds; not strict: equal violates)."""
    import dataclasses

    strict = Objective({0: 1.0}, Fraction(1, 10), Fraction(1, 2), True, "t")
    loose = Objective({0: 1.0}, Fraction(1, 10), Fraction(1, 2), False, "t")
    at = float(Fraction(1, 2) - Fraction(1, 10))  # 0.4 rounded: not exactly 0.4
    for o in (strict, loose):
        assert o.held_below(-math.inf) and not o.held_below(math.inf) and not o.held_below(math.nan)
        assert o.held_below(0.3) and not o.held_below(0.5)
    # 0.4 (float) + 1/10 vs 1/2, exactly: the float 0.4 lies above 2/5
    assert (Fraction(at) + Fraction(1, 10) > Fraction(1, 2)) and not strict.held_below(at) and not loose.held_below(at)
    exact = Objective({0: 1.0}, Fraction(0), Fraction(1, 2), True, "t")
    assert exact.held_below(0.5) and not dataclasses.replace(exact, strict=False).held_below(0.5)
