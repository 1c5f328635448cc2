"""Issue 6 measurement (4): hybrid verify vs the pure-SMT baseline on 50 random 2-input ReLU nets.

    python bench/random_vs_pure.py [--n 50] [--timeout 20] [--backend z3] [--out bench/results/random_vs_pure.md]

Networks 2-4-1, 2-8-1, 2-8-8-1, 2-16-1, 2-16-16-1 (cycled), weights N(0,1) / sqrt(fan_in), biases
N(0, 0.1); perturbation abs:0.01 on every weight and bias; input box [-1, 1]^2; property: logit
deviation <= delta with delta = f x (the deviation a strong attack finds), f cycling through
0.8, 1.1, 1.5, 3 (so both verdicts occur).  The hybrid runs with ``--backend`` (default z3; ``auto``
picks the certified milp stage for these relu nets, ``dreal`` where it imports), the pure-SMT
baseline always on z3, with the same timeout; the hybrid's time includes everything (bounds,
attacks, exact stage, splitting).  Verdicts must agree wherever pure SMT finishes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridq import Deviation, InputBox, Layer, Network, perturbation, verify  # noqa: E402
from hybridq.attack import attack  # noqa: E402
from hybridq.smt import Sat, Unsat, pure_smt  # noqa: E402

SHAPES = ([2, 4, 1], [2, 8, 1], [2, 8, 8, 1], [2, 16, 1], [2, 16, 16, 1])
FACTORS = (0.8, 1.1, 1.5, 3.0)


def make(seed, sizes):
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]), 0.1 * rng.normal(size=sizes[i + 1]),
                    "relu" if i < len(sizes) - 2 else "identity") for i in range(len(sizes) - 1)]
    return Network(tuple(layers), name="-".join(map(str, sizes)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--backend", default="z3", help="the hybrid's exact backend (auto, milp, z3, dreal)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "random_vs_pure.md"))
    args = ap.parse_args()
    rows = []
    box = InputBox(-np.ones(2), np.ones(2))
    warm = make(0, [2, 4, 1])  # load the compiled kernels and z3 once, outside the timings
    verify(warm, perturbation("abs:0.01", warm), box, Deviation(1.0), backend=args.backend, jobs=1)
    pure_smt(warm, perturbation("abs:0.01", warm), box, Deviation(1.0), "z3", 5.0)
    for k in range(args.n):
        sizes = SHAPES[k % len(SHAPES)]
        net = make(1000 + k, sizes)
        pert = perturbation("abs:0.01", net)
        w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(k), 256, 30, 16, False).value
        prop = Deviation(FACTORS[k % len(FACTORS)] * w)
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend=args.backend, jobs=1, timeout=args.timeout)
        th = time.perf_counter() - t
        t = time.perf_counter()
        ref = pure_smt(net, pert, box, prop, "z3", args.timeout)
        tp = time.perf_counter() - t
        pv = "robust" if isinstance(ref, Unsat) else "not_robust" if isinstance(ref, Sat) else "unknown"
        agree = pv == "unknown" or r.verdict == "unknown" or pv == r.verdict
        rows.append((k, net.name, prop.delta, r.verdict, th, pv, tp, agree, r.stats.cells, r.stats.proved_smt))
        print(f"{k:2d} {net.name:10} delta {prop.delta:.4g}  hybrid {r.verdict:10} {th:7.2f} s  "
              f"pure {pv:10} {tp:7.2f} s  agree {agree}  cells {r.stats.cells} smt {r.stats.proved_smt}", flush=True)
    both = [r for r in rows if r[5] != "unknown" and r[3] != "unknown"]
    med_h = statistics.median(r[4] for r in rows)
    med_p = statistics.median(r[6] for r in rows)
    disagree = [r for r in rows if not r[7]]
    lines = [
        f"# Hybrid ({args.backend}) vs pure SMT (z3) on random 2-input ReLU networks", "",
        f"Command: `python bench/random_vs_pure.py --n {args.n} --timeout {args.timeout:g} --backend {args.backend}`", "",
        "| # | net | delta | hybrid | s | pure SMT | s | agree | cells | SMT-proved cells |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.4g} | {r[3]} | {r[4]:.2f} | {r[5]} | {r[6]:.2f} | {r[7]} | {r[8]} | {r[9]} |"
              for r in rows]
    lines += ["", f"Both finished on {len(both)}/{len(rows)}; disagreements: {len(disagree)}; hybrid unknown: "
              f"{sum(r[3] == 'unknown' for r in rows)}; pure SMT unknown (timeout {args.timeout:g} s): "
              f"{sum(r[5] == 'unknown' for r in rows)}.",
              f"Median time: hybrid {med_h:.3f} s, pure SMT {med_p:.3f} s (timeouts counted at the timeout), "
              f"ratio {med_h / med_p:.3f}."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))


if __name__ == "__main__":
    main()
