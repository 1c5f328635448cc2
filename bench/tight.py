"""Issue 15: tight queries on real networks, decided by ``verify`` and cross-checked.

    python bench/tight.py [--timeout 60] [--milp-timeout 300] [--only SUBSTR] [--merge] [--out bench/results/tight.md]

``--merge`` (with ``--only``): the queries run now replace the rows (and left-out entries) of the
same name in the existing results, the others are kept as they were (their load may differ; the
load of each run is recorded per row).

Queries (60, in pairs): ACAS Xu 1_1, 2_3 and 3_3 (ONNX, normalized inputs) at seeded random
points and small boxes (half-width 1e-3) under ``fp16`` / ``abs:1e-3``: logit deviation of output 0
on points and boxes, decision (argmax class kept) on points and fp16 boxes (a decision pair whose
class already flips has no tight threshold and is listed as left out); ACAS Xu ``int8`` points (per-tensor
int8 is a large box on ACAS Xu: these are kept only where the plain MILP reaches its optimum);
MNIST 256x2 and 256x4 at the centre of
``prop_0_0.03.vnnlib`` under ``int8`` / ``fp16`` (deviation of the label's logit; decision for
256x2).  Each threshold is set at 0.98x and 1.02x a maximum established independently first:
for a deviation ``D* = max |y'_j - y_j|``, for a decision ``m* = min (y'_c - y'_j)`` (delta =
f D*, kappa = f m* with f = 1.02 / 0.98 so that each pair has one robust and one violated query),
by HiGHS's MILP solved to optimality on the exact per-neuron-noise program with the bound pass's
neuron bounds (a float optimum, *not* a certificate -- that is what the bench compares against).

ACAS Xu under per-tensor ``int8`` has no independent reference here: besides the two seeded points
of the query list, plain HiGHS (one thread) reached no optimum on 11 more seeded random points
(``default_rng(1515)``: 4 on 1_1, 4 on 2_3, 3 on 3_3, 120 s each), nor on 1_1's point in 600 s, nor
under ``int8:per_channel`` in 300 s; its incumbent mostly stayed the nominal start (deviation
~1e-16).  Those pairs are listed as left out; at the same points, int8 in the last three layers only
(``layer5=int8;layer6=int8;layer7=int8``, a mixed-precision deployment: hidden layers 5 and 6
and the output layer under int8 noise, the first four exact) has a reference (HiGHS optimal in 3-4 s), so those pairs are in the table (with
int8 from layer 4 on, HiGHS is optimal in 120 s on 2_3 only; from layer 3 on, on neither).

Every verdict is cross-checked: ``not_robust`` -- the counterexample re-checks exactly
(``prop.check_exact``) and its input and weights lie in the boxes; ``robust`` -- it agrees with the
side of the threshold the MILP optimum is on.  ``verify`` runs with ``jobs=1``, ``backend=auto``
(the milp stage for these relu networks).  Times: ``verify`` wall time (after a warm-up), and the
plain MILP's time to its optimum for the same query (the issue's baseline).
``bench/tight_probe.py`` takes one query apart (MILP size, certified root bounds, LP bound
tightening, the certified branch and bound, HiGHS's own MILP with and without a cutoff).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Hand-written notes appended to the report (edit this file, not the report: every run rewrites it).
NOTES = ROOT / "bench" / "results" / "tight_notes.md"
sys.path.insert(0, str(ROOT))

from hybridq import Decision, Deviation, InputBox, load_network, perturbation, verify  # noqa: E402
from hybridq.bounds import bounds  # noqa: E402
from hybridq.cell import Cell  # noqa: E402
import highspy  # noqa: E402

from hybridq.milp import build_model  # noqa: E402
from hybridq.milp.model import assignment  # noqa: E402
from hybridq.milp.search import _new_highs, _pass  # noqa: E402
from hybridq.smt import encode as enc  # noqa: E402


def shared() -> Path:
    import os

    for p in (ROOT.parent / "shared", Path(os.environ.get("HYBRIDQ_SHARED", "/nonexistent")), Path("/work/shared")):
        if (p / "data" / "networks").is_dir():
            return p / "data" / "networks"
    raise SystemExit("shared networks not found (set HYBRIDQ_SHARED)")


def plain_milp(net, pert, box, prop, timeout):
    """HiGHS's MILP optimum of the property's objectives over the exact program (float; uncertified).

    Returns (optimum, seconds, optimal?) with optimum = max deviation (Deviation) or min margin
    (Decision, as -max(-margin))."""
    t0 = time.perf_counter()
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    ob = bounds(net, pert, None, method="linear", cells=[cell])
    row = type("Row", (), {a: [v[0] for v in getattr(ob, a)] for a in ("pre_lo", "pre_hi", "nom_pre_lo", "nom_pre_hi")})
    q = enc.Query.build(net, pert, cell, prop, row)
    model = build_model(q)
    start = assignment(model, q, box.center, net.params)  # the nominal network: a feasible start
    best, optimal = -np.inf, True
    for obj in model.objectives:
        h = _new_highs()
        c = obj.vector(model.n)
        _pass(h, model, -c, integer=True)
        sol = highspy.HighsSolution()
        sol.col_value = start
        sol.value_valid = True
        h.setSolution(sol)
        h.setOptionValue("mip_rel_gap", 1e-9)
        h.setOptionValue("mip_abs_gap", 1e-12)
        h.setOptionValue("time_limit", max(1.0, timeout - (time.perf_counter() - t0)))
        h.run()
        info = h.getInfo()
        optimal &= h.modelStatusToString(h.getModelStatus()) == "Optimal"
        best = max(best, -info.objective_function_value + float(obj.const))
    return best, time.perf_counter() - t0, optimal


def queries(root: Path):
    """(name, network path, perturbation spec, (lower, upper), kind) of every query pair."""
    out = []
    rng = np.random.default_rng(2026)
    acas = {n: root / "acasxu" / "onnx" / f"ACASXU_run2a_{n}_batch_2000.onnx" for n in ("1_1", "2_3", "3_3")}
    lo = np.array([-0.3284, -0.5, -0.5, -0.5, -0.5])
    hi = np.array([0.6799, 0.5, 0.5, 0.5, 0.5])
    for name, path in acas.items():
        for spec in ("fp16", "abs:1e-3"):
            x = rng.uniform(lo, hi)
            out.append((f"acas{name} {spec} point dev", path, spec, (x, x), "dev"))
            out.append((f"acas{name} {spec} point dec", path, spec, (x, x), "dec"))
            xb = rng.uniform(lo + 1e-3, hi - 1e-3)
            out.append((f"acas{name} {spec} box dev", path, spec, (xb - 1e-3, xb + 1e-3), "dev"))
        xb = rng.uniform(lo + 1e-3, hi - 1e-3)
        out.append((f"acas{name} fp16 box dec", path, "fp16", (xb - 1e-3, xb + 1e-3), "dec"))
    for name in ("1_1", "2_3"):
        x = rng.uniform(lo, hi)
        out.append((f"acas{name} int8 point dev", acas[name], "int8", (x, x), "dev"))
        # mixed precision: int8 in the last three layers only (where HiGHS reaches its optimum)
        out.append((f"acas{name} int8 L5-7 point dev", acas[name], "layer5=int8;layer6=int8;layer7=int8", (x, x),
                    "dev"))
    from hybridq.io.vnnlib import load_vnnlib

    (ibox, _), = load_vnnlib(root / "mnistfc" / "prop_0_0.03.vnnlib", 784, 10)
    x = 0.5 * (ibox.lower + ibox.upper)
    for name in ("256x2", "256x4"):
        path = root / "mnistfc" / f"mnist-net_{name}.onnx"
        for spec in ("int8", "fp16"):
            out.append((f"mnist{name} {spec} point dev", path, spec, (x, x), "dev"))
        if name == "256x2":
            out.append((f"mnist{name} int8 point dec", path, "int8", (x, x), "dec"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--milp-timeout", type=float, default=300.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tight.md"))
    ap.add_argument("--merge", action="store_true")
    args = ap.parse_args()
    root = shared()
    rows, skipped = [], []
    nets = {}
    warm = True
    for name, path, spec, (lo, hi), kind in queries(root):
        if args.only and args.only not in name:
            continue
        net = nets.setdefault(path, load_network(path))
        pert = perturbation(spec, net)
        box = InputBox(lo, hi)
        y0 = net.forward(box.center)
        if kind == "dev":
            j = int(np.argmax(y0)) if net.n_out == 10 else 0
            base = Deviation(0.0, outputs=(j,))
        else:
            label = int(np.argmax(y0))
            base = Decision(label, 0.0, "max")  # the argmax question (an ACAS Xu network would default to argmin)
        opt, t_milp, optimal = plain_milp(net, pert, box, base, args.milp_timeout)
        if kind == "dec":
            opt = -opt  # the objectives are -(y'_c - y'_j): the optimum is -m*
            if opt <= 0:
                print(f"{name}: the decision already flips (m* = {opt:.6g}); skipped", flush=True)
                skipped.append((name, f"the decision already flips (m* = {opt:.6g})"))
                continue
        if not optimal or not np.isfinite(opt) or opt <= 0:
            print(f"{name}: no reference maximum (plain MILP not optimal in {args.milp_timeout:g} s); skipped",
                  flush=True)
            skipped.append((name, f"no reference maximum: plain MILP not optimal in {args.milp_timeout:g} s"))
            continue
        if warm:  # compiled kernels and solvers loaded once, outside the timings
            verify(net, pert, box, Deviation(1e9, outputs=(0,)), backend=args.backend, jobs=1, timeout=30)
            # the batched (parallel) passes load when a batch first needs them: load them here too
            for inter in (1, 2):
                cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
                bounds(net, pert, None, method="linear", cells=[cell, cell], inter=inter)
            warm = False
        for f in (0.98, 1.02):
            thr = f * opt
            prop = Deviation(thr, outputs=base.outputs) if kind == "dev" else Decision(base.label, thr, base.sense)
            # which side of the threshold the property is on, by the MILP optimum
            expect = ("robust" if f > 1 else "not_robust") if kind == "dev" else ("robust" if f < 1 else "not_robust")
            t = time.perf_counter()
            r = verify(net, pert, box, prop, backend=args.backend, jobs=1, timeout=args.timeout)
            wall = time.perf_counter() - t
            check = ""
            if r.verdict == "not_robust":
                cx = r.counterexample
                ok = box.contains(cx.x) and pert.contains(cx.params) and prop.check_exact(net, cx.x, cx.params)
                check = "cx exact" if ok else "CX FAILED"
            if r.verdict != "unknown" and r.verdict != expect:
                check += " DISAGREES WITH MILP" if optimal else " (MILP not optimal)"
            elif r.verdict == expect:
                check = (check + " agrees").strip()
            s = r.stats
            rows.append(dict(name=name, kind=kind, f=f, threshold=thr, optimum=opt, milp_s=t_milp, milp_optimal=optimal,
                             verdict=r.verdict, wall=wall, check=check,
                             cells=getattr(s, "cells", None), smt_calls=getattr(s, "smt_calls", None),
                             load=os.getloadavg()[0]))
            print(f"{name:34s} x{f:.2f} thr={thr:.6g} -> {r.verdict:10s} {wall:6.2f}s  "
                  f"(plain MILP {t_milp:6.2f}s{'' if optimal else ' NOT OPTIMAL'}) {check}", flush=True)
    if args.merge and Path(args.out).with_suffix(".json").exists():
        old = json.loads(Path(args.out).with_suffix(".json").read_text())
        if isinstance(old, dict):
            old_rows, old_skipped = old["rows"], [tuple(t) for t in old["skipped"]]
        else:  # the first format: rows only
            old_rows, old_skipped = old, []
        now = {r["name"] for r in rows} | {n for n, _ in skipped}
        order = [n for n, *_ in queries(root)]
        rows = sorted([r for r in old_rows if r["name"] not in now] + rows,
                      key=lambda r: (order.index(r["name"]) if r["name"] in order else len(order), r["f"]))
        skipped = [t for t in old_skipped if t[0] not in now] + skipped
    write(rows, skipped, args)


def write(rows, skipped, args):
    dec = [r for r in rows if r["verdict"] != "unknown"]
    bad = [r for r in rows if "FAILED" in r["check"] or "DISAGREES" in r["check"]]
    med_v = statistics.median(r["wall"] for r in rows) if rows else float("nan")
    med_m = statistics.median({(r["name"]): r["milp_s"] for r in rows}.values()) if rows else float("nan")
    lines = [
        "# Tight queries (issue 15)", "",
        f"`python bench/tight.py --timeout {args.timeout:g} --milp-timeout {args.milp_timeout:g}"
        f"{' --backend ' + args.backend if args.backend != 'auto' else ''}"
        f"{' --only ' + repr(args.only) + ' --merge' if args.merge else ''}`, jobs=1, "
        f"load average at the end {os.getloadavg()[0]:.1f} (2 cores, shared)"
        f"{'; the other rows are kept from the previous run (load column: the load average when each ran)' if args.merge else ''}.",
        "",
        f"Decided {len(dec)} of {len(rows)}; wrong verdicts or failed re-checks: {len(bad)}. "
        f"Median verify wall time {med_v:.2f} s; median plain-MILP time to its float optimum "
        f"(per query pair, the baseline) {med_m:.2f} s.", "",
        "| query | f | threshold | MILP optimum | plain MILP s | verdict | verify s | cross-check | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['f']:.2f} | {r['threshold']:.6g} | {r['optimum']:.6g}"
                     f"{'' if r['milp_optimal'] else ' (not optimal)'} | {r['milp_s']:.2f} | {r['verdict']} | "
                     f"{r['wall']:.2f} | {r['check']} | {r.get('load', float('nan')):.1f} |")
    if skipped:
        lines += ["", "Query pairs left out (no tight threshold could be set independently):", ""]
        lines += [f"- {n}: {why}" for n, why in skipped]
        lines += ["", "ACAS Xu int8: plain HiGHS reached no optimum on 11 more seeded random points either "
                  "(4 on 1_1, 4 on 2_3, 3 on 3_3, 120 s each), nor on 1_1's point in 600 s, nor under "
                  "int8:per_channel in 300 s (see the module docstring)."]
    if NOTES.is_file():  # hand-written reading of the runs: kept across runs and --merge
        lines += ["", NOTES.read_text().rstrip()]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=1,
                                                              default=float))
    print("\n".join(lines[:6]))


if __name__ == "__main__":
    main()
