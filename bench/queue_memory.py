"""Issue 13 (memory): peak memory of a long branch and bound whose queue would grow without bound.

    python bench/queue_memory.py [--seconds 120] [--max-queue 2000]

A run that never finishes: a random 2-8-8-1 ReLU net (seed 7 as in ``tests/test_cluster.py``),
abs:0.01, box [-1, 1]^2, deviation threshold 1.005x the attack's value (the bound pass keeps
splitting near the maximum), backend none, jobs 1, leaves not recorded.  Run twice for
``--seconds``: with the default ``max_queue`` (100,000) and with ``--max-queue``; reported: cells,
the peak queue length, the peak resident memory of the process (``ru_maxrss``, growth over the
run), and the queue's internal entries (heaps + weights) at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--max-queue", type=int, default=2000)
    args = ap.parse_args()
    import numpy as np

    from hybridq import Deviation, InputBox, Layer, Network, perturbation, verify
    from hybridq.attack import attack
    from hybridq.bab import queue as queue_mod

    rng = np.random.default_rng(7)
    sizes = [2, 8, 8, 1]
    net = Network(tuple(Layer(rng.normal(size=(sizes[i + 1], sizes[i])), 0.3 * rng.normal(size=sizes[i + 1]),
                              "relu" if i < len(sizes) - 2 else "identity") for i in range(len(sizes) - 1)))
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(0), 256, 30, 16, False).value
    made = []
    orig_init = queue_mod.CellQueue.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        made.append(self)

    queue_mod.CellQueue.__init__ = init
    verify(net, pert, box.center, Deviation(w), backend="none", jobs=1)  # warm the kernels
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    for mq in (100_000, args.max_queue):
        peak = [0]

        def prog(stats, pending):
            peak[0] = max(peak[0], pending)

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        r = verify(net, pert, box, Deviation(1.005 * w), backend="none", jobs=1, timeout=args.seconds,
                   record_leaves=False, max_queue=mq, progress=prog)
        q = made[-1]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"max_queue {mq}: {r.verdict}, {r.stats.cells} cells, max depth {r.stats.max_depth}, peak queue "
              f"{peak[0]}, queue entries at the end (heap {len(q.heap)}, deep {len(q.deep)}, weights "
              f"{len(q.weight)}, live {len(q)}), peak RSS {rss:.0f} MiB (was {rss0:.0f} MiB before the run)",
              flush=True)


if __name__ == "__main__":
    main()
