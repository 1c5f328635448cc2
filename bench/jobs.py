"""Issue 6 measurement (5): the same verify run with jobs=1 and jobs=2 (speedup, identical results).

    python bench/jobs.py [--delta 0.01]

ACAS Xu 1_1 (ONNX), prop_1's input box, fp16 on every weight and bias, logit deviation <= delta,
backend none (bounds + attacks + splitting only, so the work is deterministic).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "networks"

from hybridq import Deviation, load_network, load_vnnlib, perturbation, verify  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delta", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    net = load_network(DATA / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    box, _ = load_vnnlib(DATA / "acasxu" / "vnnlib" / "prop_1.vnnlib", net.n_in, net.n_out)[0]
    pert = perturbation("fp16", net)
    prop = Deviation(args.delta)
    verify(net, pert, box.center, prop, backend="none", jobs=1)  # warm the kernels
    out = {}
    for jobs in (1, 2):
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend="none", jobs=jobs, timeout=args.timeout)
        out[jobs] = (time.perf_counter() - t, r)
        print(f"jobs={jobs}: {r.summary()} [wall {out[jobs][0]:.2f} s]", flush=True)
    (t1, a), (t2, b) = out[1], out[2]
    same = (a.verdict, a.stats.cells, a.stats.proved_bounds, a.stats.splits_input, a.bound) == \
           (b.verdict, b.stats.cells, b.stats.proved_bounds, b.stats.splits_input, b.bound)
    print(f"speedup jobs=2 / jobs=1: {t1 / t2:.2f}x; identical verdict, cell counts and bound: {same}")


if __name__ == "__main__":
    main()
