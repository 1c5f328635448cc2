"""Issue 15: why the one open query of ``bench/tight.py`` stays open (a measurement, not a test).

    python bench/tight_probe.py [--query 'mnist256x4 int8 point dev'] [--f 1.02] [--prove 20] [--highs 60]
    python bench/tight_probe.py --ref 0.131608 --cuts 20 [--cuts-after-obbt] [--prove 60 [--cut-rounds 20] [--probe]]

``--ref`` takes the true optimum instead of solving the plain MILP first (113 s on this query).
``--cuts N`` measures only the root LP of each objective with up to N rounds of ReLU cut
separation (:class:`hybridq.milp.cuts.ReluCuts`; float LP value and certified bound per round),
optionally after OBBT, and with ``--prove`` the certified branch and bound with those cuts
(``--cut-rounds`` per sweep) and, with ``--probe``, root probing (:func:`hybridq.milp.search.prove`).
Otherwise:

For the query's root cell (the bound pass's neuron bounds) it prints, each with its seconds:

1. the MILP's size (binaries = unstable ReLUs) and the certified root LP bound of each objective
   (:func:`hybridq.milp.search.root_bound`) against the threshold;
2. LP-based bound tightening (OBBT) of the unstable perturbed pre-activations, layer by layer
   (each LP's bound certified from its duals by :class:`hybridq.milp.certify.LpData`, the model
   rebuilt after each layer), then the same root bounds and the bound pass's deviation bound
   with the tightened bounds as phase clips;
3. the certified branch and bound (:func:`hybridq.milp.search.prove`) on the tightened model,
   ``--prove`` seconds per objective;
4. HiGHS's own MILP solver (float, uncertified) on the tightened model per objective, with and
   without an objective cutoff at the threshold (``objective_bound``), ``--highs`` seconds each.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hybridq import Deviation, InputBox, load_network, perturbation  # noqa: E402
from hybridq.bab.exact import ob_row  # noqa: E402
from hybridq.bounds import bounds  # noqa: E402
from hybridq.cell import Cell  # noqa: E402
from hybridq.milp import build_model  # noqa: E402
from hybridq.milp.certify import LpData  # noqa: E402
from hybridq.milp.search import _highspy, _new_highs, _pass, _time_limit, prove, root_bound  # noqa: E402
from hybridq.smt import encode as enc  # noqa: E402


def unstable(q):
    return [int(np.sum((lo < 0) & (hi > 0))) if l.activation == "relu" else 0
            for l, lo, hi in zip(q.network.layers, q.pre_lo, q.pre_hi)]


def obbt(q, layers):
    """Tighten q.pre_lo/pre_hi of the unstable ReLUs of ``layers`` in place; returns the LP count."""
    hs = _highspy()
    lps = 0
    for k in layers:
        todo = [i for i in range(len(q.pre_lo[k])) if q.pre_lo[k][i] < 0.0 < q.pre_hi[k][i]]
        if not todo:
            continue
        model = build_model(q)
        data = LpData(model.A, model.row_lo, model.row_hi)
        h = _new_highs()
        _pass(h, model, np.zeros(model.n), integer=False)
        h.setOptionValue("presolve", "off")
        last = None
        for i in todo:
            col = model.z_cols[k][i]
            for sign in (1.0, -1.0):
                if last is not None:
                    h.changeColCost(last, 0.0)
                h.changeColCost(col, sign)
                last = col
                _time_limit(h, 5.0)
                h.run()
                lps += 1
                if h.getModelStatus() != hs.HighsModelStatus.kOptimal:
                    continue
                c = np.zeros(model.n)
                c[col] = sign
                low = data.lower_bound(c, model.lb, model.ub, np.asarray(h.getSolution().row_dual))
                if not math.isfinite(low):
                    continue
                if sign > 0:
                    q.pre_lo[k][i] = max(q.pre_lo[k][i], low)
                else:
                    q.pre_hi[k][i] = min(q.pre_hi[k][i], -low)
                if not (q.pre_lo[k][i] < 0.0 < q.pre_hi[k][i]):
                    break
    return lps


def roots(q):
    model = build_model(q)
    data = LpData(model.A, model.row_lo, model.row_hi)
    return model, data, {o.label: root_bound(model, o, data) + float(o.const) for o in model.objectives}


def cut_rounds(model, obj, rounds, tol=1e-6):
    """Root LP of ``obj`` with up to ``rounds`` rounds of :class:`hybridq.milp.cuts.ReluCuts`
    separation.  Returns per round ``(cuts so far, float LP value, certified bound, seconds)``
    (values with ``obj.const``)."""
    import scipy.sparse as sp

    from hybridq.milp.cuts import ReluCuts

    hs = _highspy()
    sep = ReluCuts(model)
    c = -obj.vector(model.n)
    h = _new_highs()
    _pass(h, model, c, integer=False)
    rows_A, rows_hi = [], []
    out = []
    t0 = time.perf_counter()
    for rnd in range(rounds + 1):
        h.run()
        if h.getModelStatus() != hs.HighsModelStatus.kOptimal:
            out.append((len(rows_hi), math.nan, math.nan, time.perf_counter() - t0))
            break
        sol = h.getSolution()
        val = -h.getInfo().objective_function_value + float(obj.const)
        A = sp.vstack([model.A] + rows_A).tocsr() if rows_A else model.A
        data = LpData(A, np.concatenate([model.row_lo, np.full(len(rows_hi), -np.inf)]),
                      np.concatenate([model.row_hi, np.array(rows_hi)]))
        cert = -data.lower_bound(c, model.lb, model.ub, np.asarray(sol.row_dual)) + float(obj.const)
        out.append((len(rows_hi), val, cert, time.perf_counter() - t0))
        if rnd == rounds:
            break
        cuts = sep.separate(np.asarray(sol.col_value), tol)
        if not cuts:
            break
        for cut in cuts:
            rows_A.append(sp.csr_matrix((cut.vals, (np.zeros(cut.cols.size, dtype=np.int64), cut.cols)),
                                        shape=(1, model.n)))
            rows_hi.append(cut.rhs)
            h.addRow(-hs.kHighsInf, cut.rhs, cut.cols.size, cut.cols.astype(np.int32), cut.vals)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--query", default="mnist256x4 int8 point dev")
    ap.add_argument("--f", type=float, default=1.02)
    ap.add_argument("--prove", type=float, default=20.0)
    ap.add_argument("--highs", type=float, default=60.0)
    ap.add_argument("--ref", type=float, default=None, help="the true optimum (skips the plain MILP)")
    ap.add_argument("--cuts", type=int, default=0, help="only: root LP bounds with this many cut rounds")
    ap.add_argument("--cuts-after-obbt", action="store_true", help="with --cuts: OBBT first")
    ap.add_argument("--cut-rounds", type=int, default=20)
    ap.add_argument("--cut-depth", type=int, default=0)
    ap.add_argument("--probe", action="store_true", help="with --cuts and --prove: root probing")
    args = ap.parse_args()
    import tight

    root = tight.shared()
    name, path, spec, (lo, hi), kind = next(t for t in tight.queries(root) if t[0] == args.query)
    if kind != "dev":
        raise SystemExit("deviation queries only")
    net = load_network(path)
    pert = perturbation(spec, net)
    box = InputBox(lo, hi)
    j = int(np.argmax(net.forward(box.center))) if net.n_out == 10 else 0
    ref = (args.ref, 0.0) if args.ref else tight.plain_milp(net, pert, box, Deviation(0.0, outputs=(j,)), 300.0)
    thr = args.f * ref[0]
    prop = Deviation(thr, outputs=(j,))
    print(f"{name}: f={args.f} threshold {thr:.6g} (plain MILP optimum {ref[0]:.6g} in {ref[1]:.1f} s); "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    t = time.perf_counter()
    ob = bounds(net, pert, None, method="linear", cells=[cell], inter=2)
    print(f"bound pass {time.perf_counter() - t:.2f} s: deviation in [{ob.dev_logit_lo[0, j]:.6g}, "
          f"{ob.dev_logit_hi[0, j]:.6g}]", flush=True)
    q = enc.Query.build(net, pert, cell, prop, ob_row(ob, 0), "reduced", True, box)
    t = time.perf_counter()
    model, data, rb = roots(q)
    print(f"MILP: {model.binaries.size} binaries (unstable per layer {unstable(q)}), certified root LP bounds "
          f"{ {k: round(v, 6) for k, v in rb.items()} } ({time.perf_counter() - t:.2f} s)", flush=True)
    if args.cuts and args.cuts_after_obbt:
        t = time.perf_counter()
        lps = obbt(q, [k for k in range(1 if bool(np.all(lo == hi)) else 0, len(net.layers) - 1)
                       if net.layers[k].activation == "relu"])
        model, data, rb = roots(q)
        print(f"OBBT {time.perf_counter() - t:.2f} s ({lps} LPs): {model.binaries.size} binaries, root LP bounds "
              f"{ {k: round(v, 6) for k, v in rb.items()} }", flush=True)
    if args.cuts:
        for obj in model.objectives:
            for k, val, cert, sec in cut_rounds(model, obj, args.cuts):
                print(f"cuts, {obj.label}: {k} cuts, LP {val:.6g}, certified {cert:.6g}, {sec:.2f} s", flush=True)
        if args.prove > 0:
            from hybridq.milp.cuts import ReluCuts

            for obj in model.objectives:
                t = time.perf_counter()
                res = prove(model, obj, time.perf_counter() + args.prove, None, data,
                            cuts=ReluCuts(model) if args.cut_rounds else None,
                            cut_rounds=args.cut_rounds, cut_depth=args.cut_depth, probe=args.probe)
                print(f"certified branch and bound with cuts ({args.cut_rounds} rounds to depth {args.cut_depth}), probing {args.probe}, "
                      f"{obj.label}: {res.status} ({res.reason}) after {res.nodes} LPs, bound {res.bound:.6g}, "
                      f"frontier {res.frontier + float(obj.const):.6g}, "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
        print(f"load {os.getloadavg()[0]:.1f}")
        return
    t = time.perf_counter()
    point = bool(np.all(lo == hi))
    lps = obbt(q, [k for k in range(1 if point else 0, len(net.layers) - 1) if net.layers[k].activation == "relu"])
    t_obbt = time.perf_counter() - t
    model, data, rb = roots(q)
    print(f"OBBT {t_obbt:.2f} s ({lps} LPs): {model.binaries.size} binaries ({unstable(q)}), root LP bounds "
          f"{ {k: round(v, 6) for k, v in rb.items()} }; load {os.getloadavg()[0]:.1f}", flush=True)
    clipped = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    clipped.pre_lo, clipped.pre_hi = np.concatenate(q.pre_lo), np.concatenate(q.pre_hi)
    ob2 = bounds(net, pert, None, method="linear", cells=[clipped], inter=2)
    print(f"bound pass with the OBBT bounds as phase clips: deviation in [{ob2.dev_logit_lo[0, j]:.6g}, "
          f"{ob2.dev_logit_hi[0, j]:.6g}]", flush=True)
    for obj in model.objectives:
        t = time.perf_counter()
        res = prove(model, obj, time.perf_counter() + args.prove, None, data)
        print(f"certified branch and bound, {obj.label}: {res.status} ({res.reason}) after {res.nodes} nodes, "
              f"{time.perf_counter() - t:.1f} s", flush=True)
    for obj in model.objectives:
        for cut in (True, False):
            h = _new_highs()
            _pass(h, model, -obj.vector(model.n), integer=True)
            if cut:
                h.setOptionValue("objective_bound", -float(obj.threshold - obj.const))
            h.setOptionValue("mip_rel_gap", 1e-9)
            h.setOptionValue("mip_abs_gap", 1e-12)
            h.setOptionValue("time_limit", args.highs)
            t = time.perf_counter()
            h.run()
            info = h.getInfo()
            print(f"HiGHS MILP (float), {obj.label}, {'cutoff at the threshold' if cut else 'no cutoff'}: "
                  f"{h.modelStatusToString(h.getModelStatus())}, objective {-info.objective_function_value + float(obj.const):.6g}, "
                  f"dual bound {-info.mip_dual_bound + float(obj.const):.6g}, {info.mip_node_count} nodes, "
                  f"{time.perf_counter() - t:.1f} s; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
