"""Hybrid (bounds + branch and bound + SMT on small cells) against pure SMT, query by query.

Pure SMT is the seed paper's encoding (Murthy, Das, Islam, arXiv:1903.10672): every weight and
bias a real variable in its box, products ``w * h``, one query for the whole input set
(:func:`hybridq.smt.pure_smt`).  The hybrid is :func:`hybridq.verify` with the same backend, one
worker process (``jobs=1``) and the same timeout.

Suite (13 queries):

* the two paper networks (``bench/paper/relu.npz``, ``linear.npz``), local (a test point) and
  global (the whole input box ``[-1, 1]^2``), ``abs:1e-2``, logit-space deviation;
* random ReLU MLPs 2-4-1, 2-8-1, 2-8-8-1, 2-16-16-1, 2-32-32-1 (fixed seeds) over ``[-1, 1]^2``,
  ``abs:1e-2``, logit-space deviation; the two smallest also with a tolerance below the deviation
  the sampling reaches (a ``not_robust`` query);
* ACAS Xu ``1_1`` at the centre of property 3's input box under ``fp16``: the deviation of the
  logits and the kept argmax (skipped with a note when ``../shared/data/networks`` is absent).

Tolerances ``delta`` are set from a sampled estimate of the maximum deviation (random inputs,
random corners of the parameter box; fixed seed): ``2x`` the estimate for the "robust" queries,
``0.5x`` for the "not robust" ones.  The verdicts are whatever the tools prove; they must agree
wherever both finish (the script exits 1 otherwise).

Each query runs ``--runs`` times (default 3) per method and the median wall time is reported;
a pure-SMT query that hits the timeout on its first run is not repeated (its median is ``> T``).
Run from the repo root::

    python3 bench/vs_smt.py                 # writes bench/results/vs_smt.md (and .json)
    python3 bench/vs_smt.py --timeout 60 --runs 3 --backend z3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hybridq  # noqa: E402
from hybridq.inputs import InputBox  # noqa: E402
from hybridq.network import Layer, Network  # noqa: E402
from hybridq.perturbation import perturbation as make_perturbation  # noqa: E402
from hybridq.properties import Decision, Deviation  # noqa: E402
from hybridq.smt import Sat, Unsat, pure_smt  # noqa: E402

ACAS = ROOT.parent / "shared" / "data" / "networks" / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
PAPER = ROOT / "bench" / "paper"
BOX = InputBox([-1.0, -1.0], [1.0, 1.0])


@dataclass
class Query:
    name: str
    network: Network
    spec: str
    inputs: InputBox
    prop: object
    note: str = ""


def random_mlp(widths, seed: int) -> Network:
    """A random ReLU MLP with Glorot-uniform weights and small biases (fixed seed)."""
    rng = np.random.default_rng(seed)
    layers = []
    for k in range(len(widths) - 1):
        lim = np.sqrt(6.0 / (widths[k] + widths[k + 1]))
        W = rng.uniform(-lim, lim, (widths[k + 1], widths[k]))
        b = rng.uniform(-0.1, 0.1, widths[k + 1])
        layers.append(Layer(W, b, "relu" if k < len(widths) - 2 else "identity"))
    return Network(tuple(layers), name="random-" + "-".join(map(str, widths)))


def sampled_max_deviation(net: Network, pert, box: InputBox, space: str = "logit", seed: int = 0,
                          n_x: int = 512, n_theta: int = 24) -> float:
    """A sampled (lower) estimate of ``max |y(x; theta) - y(x; theta0)|``: random inputs in the box
    (plus its corners) against random corners of the parameter box."""
    rng = np.random.default_rng(seed)
    if box.is_point:
        xs = box.lower[None, :]
    else:
        xs = rng.uniform(box.lower, box.upper, (n_x, box.n_in))
    y0 = net.scores(xs) if space == "score" else net.forward(xs)
    best = 0.0
    for _ in range(n_theta):
        params = tuple((c + r * rng.choice([-1.0, 1.0], c.shape), cb + rb * rng.choice([-1.0, 1.0], cb.shape))
                       for (c, cb), (r, rb) in zip(pert.center, pert.radius))
        y = net.scores(xs, params) if space == "score" else net.forward(xs, params)
        best = max(best, float(np.max(np.abs(y - y0))))
    return best


def build_suite() -> list[Query]:
    qs: list[Query] = []
    data = np.load(PAPER / "data.npz")
    x_test = data["x_test"][0]
    for name in ("relu", "linear"):
        net = hybridq.load_network(PAPER / f"{name}.npz")
        pert = make_perturbation("abs:1e-2", net)
        for scope, inputs in (("local", InputBox.point(x_test)), ("global", BOX)):
            est = sampled_max_deviation(net, pert, inputs)
            qs.append(Query(f"paper {name} {scope}", net, "abs:1e-2", inputs,
                            Deviation(float(f"{2 * est:.3g}"), "logit"), f"2x sampled max {est:.3g}"))
    for widths, seed in (((2, 4, 1), 1), ((2, 8, 1), 2), ((2, 8, 8, 1), 3), ((2, 16, 16, 1), 4),
                         ((2, 32, 32, 1), 5)):
        net = random_mlp(widths, seed)
        pert = make_perturbation("abs:1e-2", net)
        est = sampled_max_deviation(net, pert, BOX)
        label = "-".join(map(str, widths))
        qs.append(Query(f"random {label} global", net, "abs:1e-2", BOX,
                        Deviation(float(f"{2 * est:.3g}"), "logit"), f"2x sampled max {est:.3g}"))
        if len(widths) == 3 and widths[1] <= 8:
            qs.append(Query(f"random {label} global (tight)", net, "abs:1e-2", BOX,
                            Deviation(float(f"{0.5 * est:.3g}"), "logit"), f"0.5x sampled max {est:.3g}"))
    if ACAS.exists():
        net = hybridq.load_network(ACAS)
        x = np.array([1650.0, 0.0, 3.12, 1090.0, 1080.0])  # centre of property 3's input box
        pert = make_perturbation("fp16", net)
        pt = InputBox.point(x)
        est = sampled_max_deviation(net, pert, pt)
        qs.append(Query("ACAS Xu 1_1 local deviation", net, "fp16", pt,
                        Deviation(float(f"{2 * est:.3g}"), "logit"), f"2x sampled max {est:.3g}"))
        label = int(np.argmax(net.forward(x)))
        qs.append(Query("ACAS Xu 1_1 local argmax kept", net, "fp16", pt, Decision(label),
                        f"label {label}"))
    else:
        print(f"note: {ACAS} absent, ACAS Xu queries skipped", file=sys.stderr)
    return qs


def _verdict_pure(out) -> str:
    if isinstance(out, Unsat):
        return "robust"
    if isinstance(out, Sat):
        return "not_robust"
    kind = getattr(out, "kind", "unknown")
    return "timeout" if kind == "timeout" else f"unknown ({kind})"


def run_hybrid(q: Query, backend: str, timeout: float):
    pert = make_perturbation(q.spec, q.network)
    t = time.perf_counter()
    r = hybridq.verify(q.network, pert, q.inputs, q.prop, backend=backend, jobs=1, timeout=timeout, seed=0)
    dt = time.perf_counter() - t
    v = r.verdict if not (r.verdict == "unknown" and r.stats.timed_out) else "timeout"
    return v, dt, r


def run_pure(q: Query, backend: str, timeout: float):
    pert = make_perturbation(q.spec, q.network)
    t = time.perf_counter()
    out = pure_smt(q.network, pert, q.inputs, q.prop, backend=backend, timeout=timeout)
    dt = time.perf_counter() - t
    return _verdict_pure(out), dt, out


def _decided(v: str) -> bool:
    return v in ("robust", "not_robust")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="hybrid vs pure SMT benchmark")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per query and method (default 60)")
    ap.add_argument("--runs", type=int, default=3, help="runs per query and method; the median is reported")
    ap.add_argument("--backend", default="z3", help="SMT backend for both methods (z3; dreal when importable)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vs_smt.md")
    ap.add_argument("--only", default="", help="run only queries whose name contains this text")
    args = ap.parse_args(argv)

    backends = [args.backend]
    if args.backend == "z3":
        try:
            hybridq.smt.get_backend("dreal")
            backends.append("dreal")
        except Exception as err:  # noqa: BLE001 - any import failure means: not available
            print(f"note: dReal not available ({str(err).splitlines()[0][:120]}); z3 only", file=sys.stderr)

    suite = [q for q in build_suite() if args.only in q.name]
    # warm the numba cache / imports so the first query does not pay the compile time
    run_hybrid(suite[0], args.backend, args.timeout)

    rows, disagreements = [], []
    for be in backends:
        for q in suite:
            hv, ht = [], []
            for _ in range(args.runs):
                v, dt, res = run_hybrid(q, be, args.timeout)
                hv.append(v)
                ht.append(dt)
            pv, pt = [], []
            for i in range(args.runs):
                v, dt, _ = run_pure(q, be, args.timeout)
                pv.append(v)
                pt.append(dt)
                if v == "timeout":
                    break
            h_med, p_med = statistics.median(ht), statistics.median(pt)
            h_v, p_v = hv[0], pv[0]
            if len(set(hv)) > 1 or len(set(pv)) > 1:
                print(f"warning: {q.name}: verdicts differ between runs: hybrid {hv}, pure {pv}", file=sys.stderr)
            agree = (not _decided(h_v)) or (not _decided(p_v)) or h_v == p_v
            if not agree:
                disagreements.append(q.name)
            p_timed_out = p_v == "timeout"
            ratio = p_med / h_med if h_med > 0 else float("inf")
            row = {"backend": be, "query": q.name, "net": "-".join(map(str, q.network.widths)),
                   "perturb": q.spec, "property": _prop_text(q.prop), "note": q.note,
                   "hybrid": h_v, "hybrid_s": h_med, "pure": p_v, "pure_s": p_med,
                   "pure_timed_out": p_timed_out, "ratio": ratio, "agree": agree,
                   "hybrid_cells": res.stats.cells, "hybrid_bounds": res.stats.proved_bounds,
                   "hybrid_smt": res.stats.proved_smt, "hybrid_smt_calls": res.stats.smt_calls}
            rows.append(row)
            print(f"[{be}] {q.name:38s} hybrid {h_v:10s} {h_med:8.3f} s | pure {p_v:10s} "
                  f"{'>' if p_timed_out else ' '}{p_med:8.3f} s | x{ratio:.1f}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    if disagreements:
        print(f"VERDICTS DISAGREE on: {', '.join(disagreements)}", file=sys.stderr)
        return 1
    return 0


def _prop_text(p) -> str:
    if isinstance(p, Deviation):
        return f"|dy| <= {p.delta:g} ({p.space})"
    if isinstance(p, Decision):
        return f"argmax {p.label} kept"
    return type(p).__name__


def render(rows: list[dict], args) -> str:
    """The markdown table and summary."""
    lines = [
        "# Hybrid vs pure SMT",
        "",
        f"Command: `python3 bench/vs_smt.py --timeout {args.timeout:g} --runs {args.runs} --backend {args.backend}` "
        f"(median of {args.runs} runs; hybrid = `hybridq.verify(..., jobs=1)`; pure SMT = the seed paper's "
        f"encoding, every weight a variable, `hybridq.smt.pure_smt`; same backend and timeout "
        f"{args.timeout:g} s; a pure-SMT run that timed out is not repeated).",
        "",
        "| backend | query | net | perturbation | property | hybrid verdict | hybrid s | cells (bounds/SMT) "
        "| pure-SMT verdict | pure s | speedup | agree |",
        "|---|---|---|---|---|---|---:|---|---|---:|---:|---|",
    ]
    for r in rows:
        ps = f"> {r['pure_s']:.1f}" if r["pure_timed_out"] else f"{r['pure_s']:.3f}"
        sp = f">= {r['ratio']:.1f}x" if r["pure_timed_out"] else f"{r['ratio']:.1f}x"
        lines.append(
            f"| {r['backend']} | {r['query']} | {r['net']} | `{r['perturb']}` | {r['property']} | {r['hybrid']} "
            f"| {r['hybrid_s']:.3f} | {r['hybrid_cells']} ({r['hybrid_bounds']}/{r['hybrid_smt']}) | {r['pure']} "
            f"| {ps} | {sp} | {'yes' if r['agree'] else '**NO**'} |"
        )
    both = [r for r in rows if _decided(r["hybrid"]) and _decided(r["pure"])]
    all_ratios = [r["ratio"] for r in rows if _decided(r["hybrid"])]
    slow = [r for r in rows if r["pure_s"] > 1.0]
    faster = [r for r in slow if r["hybrid_s"] < r["pure_s"]]
    lines += [
        "",
        f"- queries: {len(rows)}; both finished: {len(both)}, verdicts agree on all of them: "
        f"{'yes' if all(r['agree'] for r in rows) else 'NO'}.",
    ]
    if both:
        lines.append(f"- median speedup (pure / hybrid time) where both finished: "
                     f"{statistics.median(r['ratio'] for r in both):.1f}x")
    if all_ratios:
        lines.append(f"- median speedup over all queries the hybrid decided (pure-SMT timeouts counted at the "
                     f"timeout, so a lower bound): {statistics.median(all_ratios):.1f}x")
    lines.append(f"- queries where pure SMT took > 1 s: {len(slow)}; hybrid faster on {len(faster)} of them.")
    lines.append("- deltas: `2x` (or `0.5x` for the tight queries) a sampled estimate of the maximum "
                 "deviation (random inputs x random corners of the parameter box), see the note column "
                 "in the JSON file.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
