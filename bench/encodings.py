"""Timing: the reduced (per-neuron-noise) vs the pure (every weight a variable) SMT encoding on z3.

Networks 2-4-1, 2-8-1, 2-8-8-1, 2-16-16-1 (ReLU hidden layers, seeded Glorot-scaled random weights),
absolute weight/bias radius ``eps``, two queries per network:

* ``point``: local deviation at one input ``x0`` (the seed paper's local robustness);
* ``box``: deviation over the box ``x0 +- w``.

``delta`` is calibrated to a tight, proved-unsat value: starting from the largest deviation found by
20,000 samples, the reduced encoding brackets the maximum deviation ``D*`` by doubling and 5
bisection steps, and ``delta`` is the bracket's upper end (unsat, within ~3 % of ``D*`` when
every step finishes): the solver
must prove a tight bound, the hard direction.  Same timeout for both encodings,
median wall time of ``--reps`` runs (a run that times out ends the repetitions of that cell: the
median of timeouts is the timeout).  Writes ``bench/results/encodings.md``.

Run:  python bench/encodings.py [--timeout 60] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridq.cell import Cell  # noqa: E402
from hybridq.inputs import InputBox  # noqa: E402
from hybridq.network import Layer, Network  # noqa: E402
from hybridq.perturbation import Perturbation  # noqa: E402
from hybridq.properties import Deviation  # noqa: E402
from hybridq.smt import Sat, Unknown, Unsat, get_backend, pure_smt  # noqa: E402

ARCHS = [(2, 4, 1), (2, 8, 1), (2, 8, 8, 1), (2, 16, 16, 1)]


def make_net(widths, seed=0) -> Network:
    rng = np.random.default_rng(seed)
    layers = []
    for k in range(len(widths) - 1):
        act = "identity" if k == len(widths) - 2 else "relu"
        W = rng.normal(size=(widths[k + 1], widths[k])) * np.sqrt(2.0 / (widths[k] + widths[k + 1]))
        layers.append(Layer(W, rng.normal(size=widths[k + 1]) * 0.1, act))
    return Network(tuple(layers), name="-".join(map(str, widths)))


def worst_sampled(net, pert, box, rng, n=20000) -> float:
    worst = 0.0
    for _ in range(n // 100):
        xs = rng.uniform(box.lower, box.upper, (100, net.n_in))
        worst = max(worst, float(np.max(np.abs(net.forward(xs, pert.sample(rng)) - net.forward(xs)))))
    for params in (pert.lower(), pert.upper()):
        xs = rng.uniform(box.lower, box.upper, (100, net.n_in))
        worst = max(worst, float(np.max(np.abs(net.forward(xs, pert.snap_inside(params)) - net.forward(xs)))))
    return worst


def calibrate(net, pert, box, timeout, rng) -> tuple[float, float]:
    """Bracket ``[lo, hi]`` of the maximum deviation: ``lo`` sat (violated), ``hi`` proved unsat."""
    z3b = get_backend("z3")
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    solve = lambda d: verdict(z3b.check(net, pert, cell, Deviation(d), timeout))  # noqa: E731
    lo = 0.0
    hi = max(worst_sampled(net, pert, box, rng), 1e-6)
    for _ in range(12):
        v = solve(hi)
        if v == "unsat":
            break
        if v == "sat":
            lo = hi
        hi = 2 * hi
    else:
        raise RuntimeError(f"{net.name}: no proved-unsat delta found")
    for _ in range(5):
        mid = 0.5 * (lo + hi)
        v = solve(mid)
        if v == "sat":
            lo = mid
        elif v == "unsat":
            hi = mid
        else:
            break
    return lo, hi


def verdict(out) -> str:
    if isinstance(out, Unsat):
        return "unsat"
    if isinstance(out, Sat):
        return "sat"
    return "timeout" if isinstance(out, Unknown) and out.kind == "timeout" else "unknown"


def run(timeout: float, reps: int, eps: float, width: float) -> list[dict]:
    z3b = get_backend("z3")
    rows = []
    for widths in ARCHS:
        net = make_net(widths)
        pert = Perturbation(net.params, tuple((np.full(W.shape, eps), np.full(b.shape, eps)) for W, b in net.params))
        x0 = np.array([0.3, -0.2])
        for query, box in (("point", InputBox.point(x0)), ("box", InputBox(x0 - width, x0 + width))):
            lo, delta = calibrate(net, pert, box, timeout, np.random.default_rng(1))
            prop = Deviation(delta)
            row = {"net": net.name, "query": query, "delta": delta, "lo": lo}
            for enc in ("reduced", "pure"):
                times, verdicts = [], []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    if enc == "reduced":
                        cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
                        out = z3b.check(net, pert, cell, prop, timeout)
                    else:
                        out = pure_smt(net, pert, box, prop, backend="z3", timeout=timeout)
                    times.append(time.perf_counter() - t0)
                    verdicts.append(verdict(out))
                    if verdicts[-1] == "timeout":
                        break
                row[enc] = (statistics.median(times), "/".join(sorted(set(verdicts))), len(times))
                print(net.name, query, enc, row[enc], flush=True)
            rows.append(row)
    return rows


def table(rows, timeout, reps, eps, width) -> str:
    lines = [
        "# Reduced vs pure SMT encoding (z3)",
        "",
        f"z3 {__import__('z3').get_version_string()}, timeout {timeout:g} s per query, median of up to {reps} runs "
        f"(a timeout ends the repetitions), absolute radius eps = {eps:g} on every weight and bias, "
        f"input box half-width {width:g} around x0 = (0.3, -0.2); delta = a proved-unsat upper end of a "
        "bracket [lo, delta] of the maximum deviation D* (lo violated), so every query is a tight unsat proof. "
        "Reduced = per-neuron noise with exact interval bounds (hybridq default); "
        "pure = every weight a variable, no bounds (the seed paper's encoding).",
        "",
        "| network | query | D* >= (sat) | delta (unsat) | reduced (s) | verdict | pure (s) | verdict | speed-up |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for r in rows:
        (tr, vr, _), (tp, vp, _) = r["reduced"], r["pure"]
        sp = f"{tp / tr:.1f}x" if tr > 0 else "-"
        if vp == "timeout":
            sp = f">{tp / tr:.0f}x"
        fmt = lambda t, v: f">{t:.0f}" if v == "timeout" else f"{t:.3f}"  # noqa: E731
        lines.append(f"| {r['net']} | {r['query']} | {r['lo']:.5g} | {r['delta']:.5g} | {fmt(tr, vr)} | {vr} | {fmt(tp, vp)} | {vp} | {sp} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--width", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "encodings.md")
    a = ap.parse_args(argv)
    rows = run(a.timeout, a.reps, a.eps, a.width)
    text = table(rows, a.timeout, a.reps, a.eps, a.width)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
