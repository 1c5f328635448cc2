"""Issue 13: the same branch and bound on one process, the local process pool and a Dask cluster.

    python bench/cluster.py [--delta 0.00156] [--workers 2] [--timeout 900] [--out bench/results/cluster.md]

The run: ACAS Xu 1_1 (ONNX), prop_1's input box, fp16 on every weight and bias, logit deviation
<= delta (just above the proved maximum 0.00154, as in ``bench/jobs.py acas``), backend none (the
bound kernels dominate, no SMT time limits, so the three runs must agree exactly).  Executors:
``jobs=1`` in-process (numba's kernels use every core), the ``spawn`` process pool with
``--workers`` processes and a ``distributed.LocalCluster`` of ``--workers`` single-threaded worker
processes (one numba thread per worker in both).  Reported per run: wall time, cells, rounds, the
worker time per cell (sum over cells of the bound/attack/split time), the time the scheduler spends
outside the executor (queue, merge, confirmation of candidates) per cell, the time per round spent
waiting for the executor, and the peak resident
memory of this (scheduler) process and the peak queue length.  The cluster's start (seconds) is
reported apart: ``--cluster local:N`` pays it once per command.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = next((p for p in (ROOT.parent / "shared", Path(os.environ.get("HYBRIDQ_SHARED", "/work/shared")))
               if (p / "data" / "networks").is_dir()), ROOT.parent / "shared")
DATA = SHARED / "data" / "networks"


def timed_executors():
    """Wrap every executor's ``run`` to add up the time the scheduler waits for chunks."""
    from hybridq.bab import executors

    spent = {"run": 0.0, "chunks": 0}
    for cls in (executors.InProcessExecutor, executors.PoolExecutor, executors.DaskExecutor):
        orig = cls.run

        def run(self, args, should_stop=None, _orig=orig):
            t = time.perf_counter()
            try:
                return _orig(self, args, should_stop)
            finally:
                spent["run"] += time.perf_counter() - t
                spent["chunks"] += len(args)

        cls.run = run
    return spent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delta", type=float, default=0.00156)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cluster.md"))
    args = ap.parse_args()
    import distributed

    from hybridq import Deviation, load_network, load_vnnlib, perturbation, verify

    net = load_network(DATA / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    box, _ = load_vnnlib(DATA / "acasxu" / "vnnlib" / "prop_1.vnnlib", net.n_in, net.n_out)[0]
    pert = perturbation("fp16", net)
    prop = Deviation(args.delta)
    verify(net, pert, box.center, prop, backend="none", jobs=1)  # warm the kernels
    spent = timed_executors()
    load0 = os.getloadavg()[0]
    rows = []

    def one(name, **kw):
        peak = [0]

        def prog(stats, pending):
            peak[0] = max(peak[0], pending)

        spent.update(run=0.0, chunks=0)
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend="none", timeout=args.timeout, progress=prog, **kw)
        wall = time.perf_counter() - t
        work = sum(v for k, v in r.stats.time.items() if k != "total")
        rows.append(dict(name=name, wall=wall, r=r, work=work, sched=wall - spent["run"], chunks=spent["chunks"],
                         queue=peak[0], rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         load=os.getloadavg()[0]))
        print(f"{name}: {r.summary()} [wall {wall:.2f} s, scheduler {wall - spent['run']:.2f} s, "
              f"load {os.getloadavg()[0]:.1f}]", flush=True)
        return r

    one("jobs=1", jobs=1)
    one(f"process pool, {args.workers} workers", jobs=args.workers)
    t = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
    client = distributed.Client(cluster)
    t_start = time.perf_counter() - t
    try:
        one(f"Dask LocalCluster, {args.workers} workers", executor=client)
    finally:
        client.close()
        cluster.close()

    base = rows[0]
    fp = [(x["r"].verdict, x["r"].stats.cells, x["r"].stats.rounds, x["r"].bound) for x in rows]
    same = all(f == fp[0] for f in fp)
    pool, dask = rows[1], rows[2]
    lines = [
        "# Branch and bound on one process, the process pool and a Dask cluster (issue 13)",
        "",
        f"`python bench/cluster.py --delta {args.delta} --workers {args.workers}`: ACAS Xu 1_1, prop_1's box, fp16, "
        f"logit deviation <= {args.delta}, backend none.  Machine: {os.cpu_count()} cores shared with other "
        f"engineers (load average {load0:.1f} at the start).",
        "",
        "| executor | verdict | cells | rounds | chunks | wall (s) | speed-up vs jobs=1 | worker ms/cell | "
        "scheduler ms/cell | waiting ms/round | peak queue | peak RSS (MiB) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        r = x["r"]
        lines.append(f"| {x['name']} | {r.verdict} | {r.stats.cells} | {r.stats.rounds} | {x['chunks']} | "
                     f"{x['wall']:.1f} | {base['wall'] / x['wall']:.2f}x | {1e3 * x['work'] / r.stats.cells:.2f} | "
                     f"{1e3 * x['sched'] / r.stats.cells:.3f} | {1e3 * (x['wall'] - x['sched']) / r.stats.rounds:.1f} | "
                     f"{x['queue']} | {x['rss']:.0f} | {x['load']:.1f} |")
    lines += [
        "",
        f"Identical verdict, cell count, rounds and bound across the three: **{same}**.",
        f"Dask overhead against the process pool: **{100 * (dask['wall'] / pool['wall'] - 1):+.1f} %** "
        f"(wall {dask['wall']:.1f} s vs {pool['wall']:.1f} s); starting the LocalCluster took {t_start:.1f} s "
        "(not in the wall time; `--cluster local:N` pays it once per command).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
