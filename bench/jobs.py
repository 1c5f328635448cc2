"""Issue 6 measurement (5): the same verify run with jobs=1 and jobs=2 (speedup, identical results).

    python bench/jobs.py acas [--delta 0.00156] [--threads N]
    python bench/jobs.py smt [--threads N]

``acas``: ACAS Xu 1_1 (ONNX), prop_1's input box, fp16 on every weight and bias, logit deviation
<= delta (default just above the proved maximum 0.00154, so the run takes 25-40 s), backend none
(bounds + attacks + splitting; the bound kernels dominate).
``smt``: a random 2-16-16-1 ReLU net, abs:0.01, box [-1, 1]^2, deviation just above the attack's
value, backend z3 (SMT calls dominate).
``--threads N`` sets NUMBA_NUM_THREADS (by default numba uses every core inside one process, so
jobs=1 is already parallel in the bound kernels; ``--threads 1`` measures how the process pool
scales with one core per process).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "--threads" in sys.argv:
    os.environ["NUMBA_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "networks"

from hybridq import Deviation, InputBox, Layer, Network, load_network, load_vnnlib, perturbation, verify  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("acas", "smt"))
    ap.add_argument("--delta", type=float, default=0.00156)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--threads", default=None)
    args = ap.parse_args()
    if args.what == "acas":
        net = load_network(DATA / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
        box, _ = load_vnnlib(DATA / "acasxu" / "vnnlib" / "prop_1.vnnlib", net.n_in, net.n_out)[0]
        pert = perturbation("fp16", net)
        prop, backend = Deviation(args.delta), "none"
    else:
        from hybridq.attack import attack
        import numpy as np

        rng = np.random.default_rng(1234)
        sizes = [2, 16, 16, 1]
        net = Network(tuple(Layer(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                                  0.1 * rng.normal(size=sizes[i + 1]), "relu" if i < 2 else "identity")
                            for i in range(3)))
        pert = perturbation("abs:0.01", net)
        box = InputBox(-np.ones(2), np.ones(2))
        w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(0), 256, 30, 16, False).value
        prop, backend = Deviation(1.05 * w), "z3"
    verify(net, pert, box.center, prop, backend=backend, jobs=1)  # warm the kernels
    out = {}
    for jobs in (1, 2):
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend=backend, jobs=jobs, timeout=args.timeout)
        out[jobs] = (time.perf_counter() - t, r)
        print(f"jobs={jobs}: {r.summary()} [wall {out[jobs][0]:.2f} s]", flush=True)
    (t1, a), (t2, b) = out[1], out[2]
    same = (a.verdict, a.stats.cells, a.stats.proved_bounds, a.stats.splits_input, a.bound) == \
           (b.verdict, b.stats.cells, b.stats.proved_bounds, b.stats.splits_input, b.bound)
    print(f"speedup jobs=2 / jobs=1: {t1 / t2:.2f}x; identical verdict, cell counts and bound: {same}")


if __name__ == "__main__":
    main()
