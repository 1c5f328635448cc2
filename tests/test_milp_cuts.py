"""ReLU cuts (hybridq.milp.cuts) and root probing in the certified branch and bound: valid at every
exactly evaluated feasible point, and the certified search stays a proof."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hybridq.cell import Cell
from hybridq.inputs import InputBox
from hybridq.milp import search
from hybridq.milp.cuts import ReluCuts
from hybridq.milp.model import build_model
from hybridq.network import Layer, Network
from hybridq.perturbation import perturbation
from hybridq.properties import Deviation
from hybridq.smt import encode as enc
from hybridq.smt.milp import _fill_bounds

sys.path.insert(0, str(Path(__file__).parent))
from test_smt_crosscheck import random_case, sample_pairs  # noqa: E402

F = Fraction


def _deep_case(seed: int):
    """A 3-16-16-1 relu network (many unstable neurons) under abs:0.05 on a small box or a point."""
    rng = np.random.default_rng(100 + seed)
    dims = (3, 16, 16, 1)
    net = Network(tuple(Layer(rng.normal(size=(dims[i + 1], dims[i])) / np.sqrt(dims[i]),
                              rng.normal(size=dims[i + 1]) * 0.3, "relu" if i < len(dims) - 2 else "identity")
                        for i in range(len(dims) - 1)))
    pert = perturbation("abs:0.05", net)
    x0 = rng.uniform(-1, 1, 3)
    w = 0.0 if seed % 2 == 0 else 0.05
    return rng, net, pert, InputBox(x0 - w, x0 + w)


def _model(net, pert, box, prop):
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    q = enc.Query.build(net, pert, cell, prop)
    _fill_bounds(q, cell)
    return build_model(q)


def _exact_columns(net, x, params) -> dict:
    """Exact value of every pre-activation, ReLU and phase column (by name) and of the normalized
    inputs at ``(x, params)`` (perturbed ``p``) and ``(x, theta0)`` (nominal ``n``)."""
    xs = [F(float(v)) for v in x]
    if net.input_lower is not None:
        xs = [min(max(v, F(float(a))), F(float(b))) for v, a, b in zip(xs, net.input_lower, net.input_upper)]
    h0 = [(v - F(float(m))) / F(float(s)) for v, m, s in zip(xs, net.input_mean, net.input_std)]
    out = {f"h0_{i}": v for i, v in enumerate(h0)}

    def unit(name, z):
        out[f"relu({name})"] = max(z, F(0))
        out[f"phase({name})"] = F(1) if z > 0 else F(0)

    for tag, ps in (("p", params), ("n", net.params)):
        h = h0
        for i, v in enumerate(h):
            unit(f"abs {tag}-1_{i}", v)
        for k, (layer, (W, b)) in enumerate(zip(net.layers, ps)):
            W, b = np.asarray(W), np.asarray(b)
            z = [sum((F(float(W[j, i])) * h[i] for i in range(len(h))), F(float(b[j]))) for j in range(W.shape[0])]
            for j, v in enumerate(z):
                out[f"{tag}z{k}_{j}"] = v
                unit(f"{tag}z{k}_{j}", v)
                unit(f"abs {tag}{k}_{j}", v)
            h = [max(v, F(0)) for v in z] if layer.activation == "relu" else z
    return out


@pytest.mark.parametrize("case", [("random", s) for s in (0, 2, 3, 5, 8, 11, 13)] + [("deep", s) for s in (0, 1)])
def test_cuts_hold_at_every_exactly_evaluated_point(case):
    kind, seed = case
    rng, net, pert, box = (random_case if kind == "random" else _deep_case)(seed)
    model = _model(net, pert, box, Deviation(0.0))
    sep = ReluCuts(model)
    # cuts from the LP optimum of each objective and from random points of the column box (every
    # unit then yields its most violated cut there, violated or not: many subsets I)
    points = []
    for obj in model.objectives:
        h = search._new_highs()
        search._pass(h, model, -obj.vector(model.n), integer=False)
        h.run()
        points.append(np.asarray(h.getSolution().col_value))
    points += [rng.uniform(model.lb, model.ub) for _ in range(6)]
    cuts = [c for v in points for c in sep.separate(v, tol=-math.inf)]
    if kind == "deep":
        assert len(sep.units) >= 10 and len(cuts) >= 10 * len(points)
    names = model.names
    checked = 0
    for xs, params in sample_pairs(rng, net, pert, box, n_theta=8, n_x=3):
        for x in xs:
            val = _exact_columns(net, x, params)
            for cut in cuts:
                vals = [val[names[j]] for j in cut.cols.tolist()]
                for j, v in zip(cut.cols.tolist(), vals):  # the point lies in the column box
                    assert F(float(model.lb[j])) <= v <= F(float(model.ub[j])), names[j]
                lhs = sum((F(float(a)) * v for a, v in zip(cut.vals.tolist(), vals)), F(0))
                assert lhs <= F(cut.rhs), (names[cut.cols[0]], float(lhs - F(cut.rhs)))
                checked += 1
    assert checked > 0 or not cuts


@pytest.mark.parametrize("case", [("random", s) for s in (0, 2, 3, 5, 8)] + [("deep", s) for s in (0, 1)])
def test_every_row_of_the_program_holds_at_every_exactly_evaluated_point(case):
    """The program is a relaxation of the exact problem (hybridq.milp.model: rounded C + R
    coefficients with their error in the right-hand side, outward-rounded constants)."""
    kind, seed = case
    rng, net, pert, box = (random_case if kind == "random" else _deep_case)(seed)
    model = _model(net, pert, box, Deviation(0.0))
    names = model.names
    A = model.A.tocsr()
    checked = 0
    for xs, params in sample_pairs(rng, net, pert, box, n_theta=8, n_x=3):
        for x in xs:
            val = _exact_columns(net, x, params)
            for tag in ("p", "n"):
                last = len(net.layers) - 1
                for r in range(net.n_out):
                    z = val[f"{tag}z{last}_{r}"]
                    h = max(z, F(0)) if net.layers[-1].activation == "relu" else z
                    val[f"{tag}y{r}"] = h * F(float(net.output_std[r])) + F(float(net.output_mean[r]))
            v = [val[nm] for nm in names]
            for j, vj in enumerate(v):
                assert F(float(model.lb[j])) <= vj <= F(float(model.ub[j])), names[j]
            for i in range(model.m):
                lo, hi = A.indptr[i], A.indptr[i + 1]
                lhs = sum((F(float(a)) * v[j] for j, a in zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist())), F(0))
                if math.isfinite(model.row_hi[i]):
                    assert lhs <= F(float(model.row_hi[i])), (i, float(lhs - F(float(model.row_hi[i]))))
                if math.isfinite(model.row_lo[i]):
                    assert lhs >= F(float(model.row_lo[i])), (i, float(F(float(model.row_lo[i])) - lhs))
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("seed", range(6))
def test_rounded_coefficient_sums_carry_their_whole_error_into_the_right_hand_side(seed, monkeypatch):
    """``S = fl(P + Q)`` with ``err``: at the corner of the column box where the rounding hurts
    most, ``S v - (P + Q) v <= err`` exactly (hybridq.milp.model._rounded_sum)."""
    import scipy.sparse as sp

    from hybridq.milp.model import _Builder, _rounded_sum

    rng = np.random.default_rng(seed)
    m, n = 5, 12
    b = _Builder()
    for j in range(n):
        lo = -rng.uniform(0, 10) * 10.0 ** rng.integers(-3, 4)
        b.col(lo, lo + rng.uniform(0, 20) * 10.0 ** rng.integers(-3, 4), f"c{j}")
    P = rng.normal(size=(m, n)) * 10.0 ** rng.integers(-8, 3, size=(m, n))
    Q = rng.normal(size=(m, n)) * 10.0 ** rng.integers(-8, 3, size=(m, n))
    P[rng.random((m, n)) < 0.3] = 0.0
    from hybridq.milp import model as mm

    inexact = 0
    for block in (None, 2 * n):  # one dense block; blocks of two rows (large layers)
        if block is not None:
            monkeypatch.setattr(mm, "_BLOCK_ENTRIES", block)
        S, err = _rounded_sum(sp.csr_matrix(P), sp.csr_matrix(Q), b)
        S = S.toarray()
        for i in range(m):
            gap = F(0)
            for j in range(n):
                d = F(float(S[i, j])) - F(float(P[i, j])) - F(float(Q[i, j]))
                inexact += d != 0
                gap += d * F(b.ub[j] if d > 0 else b.lb[j])  # the worst corner
            assert gap <= F(float(err[i])), (block, i, float(gap), err[i])
    assert inexact > 0  # the case exercises rounding


def _sampled_max(net, pert, box, obj, rng) -> Fraction:
    """The largest exact value of a deviation objective ``s (y'_j - y_j)`` over sampled points."""
    j, up = int(obj.label.split()[0][1:]), obj.label.endswith("up")
    best = None
    for xs, params in sample_pairs(rng, net, pert, box, n_theta=10, n_x=3):
        for x in xs:
            d = Deviation(0.0, outputs=(j,)).exact_deviations(net, x, params)[0]
            d = d if up else -d
            best = d if best is None else max(best, d)
    return best


def _above_optimum(model, obj, rel) -> Fraction:
    """HiGHS's float MILP optimum of ``obj`` (with its constant) raised by ``rel (1 + |opt|)``."""
    h = search._new_highs()
    search._pass(h, model, -obj.vector(model.n), integer=True)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.run()
    opt = F(-h.getInfo().objective_function_value) + obj.const
    return opt + rel * (1 + abs(opt))


@pytest.mark.parametrize("case", [("random", s) for s in (1, 4, 9)] + [("deep", s) for s in (0, 1, 2, 3)])
def test_probing_with_cuts_never_proves_a_violated_objective_and_its_bound_encloses(case):
    kind, seed = case
    rng, net, pert, box = (random_case if kind == "random" else _deep_case)(seed)
    model = _model(net, pert, box, Deviation(0.0))
    kw = dict(cuts=ReluCuts(model), cut_rounds=3, cut_depth=2, probe=True)
    for obj in model.objectives:
        best = _sampled_max(net, pert, box, obj, rng)
        # below an exact point's value: never proved
        below = dataclasses.replace(obj, threshold=best - F(1, 10**9) * (1 + abs(best)))
        res = search.prove(model, below, math.inf, None, max_nodes=300, **kw)
        assert res.status != "proved", (obj.label, res)
        # above HiGHS's MILP optimum: proved, and the certified bound is at least the exact value
        above = dataclasses.replace(obj, threshold=_above_optimum(model, obj, F(1, 10**6)))
        res = search.prove(model, above, math.inf, None, max_nodes=20_000, **kw)
        assert res.status == "proved", (obj.label, res)
        assert res.bound == -math.inf or F(res.bound) + obj.const >= best
        assert res.bound == -math.inf or F(res.bound) + obj.const <= above.threshold


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_proof_paused_at_every_few_lps_ends_as_an_uninterrupted_one_would(seed):
    """hybridq.milp.search.Proof in slices of 2 ms: it pauses (open, 'time limit', no result) and
    resumes where it stopped; a violated threshold is never proved, a safe one is, with a
    certified bound between the exact sampled value and the threshold."""
    rng, net, pert, box = _deep_case(seed)
    model = _model(net, pert, box, Deviation(0.0))
    kw = dict(cuts=ReluCuts(model), cut_rounds=3, cut_depth=2, probe=True)
    pauses = 0
    for obj in model.objectives:
        best = _sampled_max(net, pert, box, obj, rng)
        below = dataclasses.replace(obj, threshold=best - F(1, 10**9) * (1 + abs(best)))
        above = dataclasses.replace(obj, threshold=_above_optimum(model, obj, F(1, 10**6)))
        for o, max_nodes in ((below, 300), (above, 20_000)):
            proof = search.Proof(model, o, math.inf, None, max_nodes=max_nodes, **kw)
            while True:
                res = proof.run(time.perf_counter() + 0.002)
                if proof.result is not None:
                    break
                assert res.status == "open" and res.reason == "time limit"
                pauses += 1
            assert proof.run(time.perf_counter() + 1.0) is proof.result  # ended: stays ended
            if o is below:
                assert res.status != "proved", (obj.label, res)
            else:
                assert res.status == "proved", (obj.label, res)
                assert res.bound == -math.inf or best <= F(res.bound) + obj.const <= above.threshold
    assert pauses > 0


def test_probing_and_cuts_are_deterministic_and_fix_phases():
    rng, net, pert, box = _deep_case(0)
    model = _model(net, pert, box, Deviation(0.0))
    obj = model.objectives[0]
    # a threshold a little above the optimum: a proof that needs the search
    thr = dataclasses.replace(obj, threshold=_above_optimum(model, obj, F(1, 10**3)))
    runs = [search.prove(model, thr, math.inf, None, max_nodes=5_000, cuts=ReluCuts(model), cut_rounds=3,
                         probe=True) for _ in range(2)]
    assert runs[0] == runs[1]
    plain = search.prove(model, thr, math.inf, None, max_nodes=5_000)
    assert {r.status for r in runs + [plain]} == {"proved"}
    assert runs[0].nodes < plain.nodes  # here the cuts prove it at the root (1 LP against 11)


def test_a_point_root_too_large_for_ordinary_calls_gets_one_proof_call():
    """``milp_root_max_unstable``: the root of a point query with more unstable ReLUs than
    ``milp_max_unstable`` is proved by one milp call instead of being split."""
    from hybridq import verify

    rng, net, pert, box = _deep_case(0)
    model = _model(net, pert, box, Deviation(0.0))
    assert model.binaries.size >= 4
    thr = max(float(_above_optimum(model, o, F(1, 10**3))) for o in model.objectives)
    # every unstable cell is too large for the ordinary calls (milp_max_unstable = 0)
    kw = dict(backend="milp", jobs=1, timeout=60, milp_max_unstable=0)
    r = verify(net, pert, box, Deviation(thr), milp_root_max_unstable=1000, **kw)
    assert r.verdict == "robust" and r.stats.cells == 1 and r.stats.smt_calls == 1, r.stats
    kw["timeout"] = 3
    r0 = verify(net, pert, box, Deviation(thr), milp_root_max_unstable=0, **kw)
    assert r0.verdict != "not_robust" and r0.stats.cells > 1, r0.stats  # split instead
