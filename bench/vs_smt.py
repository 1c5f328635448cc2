"""Hybrid (bounds + branch and bound + SMT on small cells) against pure SMT, query by query.

Pure SMT is the seed paper's encoding (Murthy, Das, Islam, arXiv:1903.10672): every weight and
bias a real variable in its box, products ``w * h``, one query for the whole input set
(:func:`hybridq.smt.pure_smt`).  The hybrid is :func:`hybridq.verify` with the same backend, one
worker process (``jobs=1``) and the same timeout.

Suite (17 queries with ``../shared`` present, 14 without):

* the two paper networks (``bench/paper/relu.npz``, ``linear.npz``), local (a test point) and
  global (the whole input box ``[-1, 1]^2``), ``abs:1e-2``, logit-space deviation;
* random ReLU MLPs 2-4-1, 2-8-1, 2-8-8-1, 2-16-16-1, 2-32-32-1 (fixed seeds) over ``[-1, 1]^2``,
  ``abs:1e-2``, logit-space deviation;
* ACAS Xu ``1_1`` at the centre of property 3's input box: deviation of the logits under
  ``fp16``, and the kept argmax under ``fp16`` and ``fp32`` (skipped with a note when
  ``../shared/data/networks`` is absent).

Tolerances: :func:`hybridq.quantify` first brackets the maximum deviation as
``[witnessed, proved]`` (tol 0.1); a "robust" query uses ``delta = 1.25 x proved`` and a "tight"
one ``delta = 0.8 x witnessed``, so each query's expected verdict is known from certified numbers
and pure SMT checks it independently.  The verdicts must agree wherever both finish (the script
exits 1 otherwise).

Each query runs ``--runs`` times (default 3) per method and the median wall time is reported;
a pure-SMT query that hits the timeout on its first run is not repeated (its median is ``> T``).
Run from the repo root::

    python3 bench/vs_smt.py                 # writes bench/results/vs_smt.md (and .json, maps/*.png)
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
from hybridq.plot import plot_cells  # noqa: E402
from hybridq.quantify import quantify  # noqa: E402
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


def max_deviation(net: Network, spec: str, box: InputBox, space: str = "logit") -> tuple[float, float]:
    """``[witnessed, proved]`` maximum deviation from :func:`hybridq.quantify` (tol 0.1, 30 s):
    ``proved`` is certified, ``witnessed`` is reached by an exactly evaluated pair."""
    q = quantify(net, spec, box, space=space, tol=0.1, backend="z3", jobs=1, timeout=30.0, seed=0)
    return q.lower, q.upper


def _up(v: float) -> float:
    """``v`` rounded up to 3 significant digits (keeps the tolerance above a certified bound)."""
    r = float(f"{v:.3g}")
    return r if r >= v else float(f"{v * (1 + 1e-3):.3g}")


def _down(v: float) -> float:
    r = float(f"{v:.3g}")
    return r if r <= v else float(f"{v * (1 - 1e-3):.3g}")


def _pair(qs: list, name: str, net: Network, spec: str, box: InputBox, robust=True, not_robust=True) -> None:
    """Append the robust (``1.25 x proved``) and / or not-robust (``0.8 x witnessed``) query."""
    w, p = max_deviation(net, spec, box)
    if robust:
        qs.append(Query(f"{name} (robust)", net, spec, box, Deviation(_up(1.25 * p), "logit"),
                        f"delta = 1.25 x proved max {p:.4g}"))
    if not_robust:
        qs.append(Query(f"{name} (tight)", net, spec, box, Deviation(_down(0.8 * w), "logit"),
                        f"delta = 0.8 x witnessed max {w:.4g}"))


def build_suite() -> list[Query]:
    """The queries (see the module docstring); tolerances from :func:`max_deviation`."""
    qs: list[Query] = []
    data = np.load(PAPER / "data.npz")
    x_test = data["x_test"][0]
    for name in ("relu", "linear"):
        net = hybridq.load_network(PAPER / f"{name}.npz")
        _pair(qs, f"paper {name} local", net, "abs:1e-2", InputBox.point(x_test), not_robust=False)
        _pair(qs, f"paper {name} global", net, "abs:1e-2", BOX, not_robust=name == "relu")
    for widths, seed in (((2, 4, 1), 1), ((2, 8, 1), 2), ((2, 8, 8, 1), 3), ((2, 16, 16, 1), 4),
                         ((2, 32, 32, 1), 5)):
        net = random_mlp(widths, seed)
        label = "-".join(map(str, widths))
        _pair(qs, f"random {label} global", net, "abs:1e-2", BOX, not_robust=widths in ((2, 4, 1), (2, 8, 1), (2, 16, 16, 1)))
    if ACAS.exists():
        net = hybridq.load_network(ACAS)
        x = np.array([1650.0, 0.0, 3.12, 1090.0, 1080.0])  # centre of property 3's input box
        pt = InputBox.point(x)
        _pair(qs, "ACAS Xu 1_1 local, fp16", net, "fp16", pt, not_robust=False)
        label = int(np.argmax(net.forward(x)))
        for spec in ("fp16", "fp32"):
            qs.append(Query(f"ACAS Xu 1_1 local argmax kept, {spec}", net, spec, pt, Decision(label, sense="max"),
                            f"label {label} (nominal margin {np.sort(net.forward(x))[-1] - np.sort(net.forward(x))[-2]:.3g})"))
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
    ap.add_argument("--maps", type=Path, default=ROOT / "bench" / "results" / "maps",
                    help="folder for the cell maps of the hybrid's multi-cell 2-input runs")
    ap.add_argument("--only", default="", help="run only queries whose name contains this text")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="only re-render the markdown table from a JSON file written by an earlier run")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        args.out.write_text(render(json.loads(args.from_json.read_text()), args))
        print(f"wrote {args.out}")
        return 0

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
            if args.maps is not None and res.leaves is not None and len(res.leaves) > 1:
                args.maps.mkdir(parents=True, exist_ok=True)
                slug = "".join(c if c.isalnum() else "_" for c in q.name).strip("_")
                plot_cells(res, args.maps / f"{slug}.png", box=q.inputs,
                           title=f"{q.name}: {res.verdict}, {len(res.leaves)} leaf cells "
                                 f"({res.stats.proved_bounds} bounds, {res.stats.proved_smt} SMT)")
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
        return f"deviation <= {p.delta:g} ({p.space})"
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
        ps = f"> {r['pure_s']:.1f}" if r["pure_timed_out"] else f"{r['pure_s']:.3g}"
        sp = f">= {r['ratio']:.3g}x" if r["pure_timed_out"] else f"{r['ratio']:.3g}x"
        lines.append(
            f"| {r['backend']} | {r['query']} | {r['net']} | `{r['perturb']}` | {r['property']} | {r['hybrid']} "
            f"| {r['hybrid_s']:.3g} | {r['hybrid_cells']} ({r['hybrid_bounds']}/{r['hybrid_smt']}) | {r['pure']} "
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
    lines.append("- deltas: \"robust\" queries use 1.25 x the proved maximum deviation, \"tight\" ones 0.8 x the "
                 "witnessed one (both from `hybridq.quantify`, tol 0.1); see the note field in the JSON file.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
