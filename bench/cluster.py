"""Issue 13: the same branch and bound on one process, the local process pool and a Dask cluster.

    python bench/cluster.py [--delta 0.00156] [--workers 2] [--repeat 1] [--timeout 900] [--out bench/results/cluster.md]

The run: ACAS Xu 1_1 (ONNX), prop_1's input box, fp16 on every weight and bias, logit deviation
<= delta (just above the proved maximum 0.00154, as in ``bench/jobs.py acas``), backend none (the
bound kernels dominate, no SMT time limits, so the three runs must agree exactly).  Executors:
``jobs=1`` in-process (numba's kernels use every core), the ``spawn`` process pool with
``--workers`` processes and a ``distributed.LocalCluster`` of ``--workers`` single-threaded worker
processes as ``--cluster local:N`` starts it (:func:`hybridq.bab.cluster.local_cluster`; one numba
thread per worker in both).  The pool and the cluster are started before their run (as a batch's
pool or a running cluster), and their start times are reported apart.  Reported per run: wall time,
cells, rounds, the worker time per cell (sum over cells of the bound/attack/split time), the time
the scheduler spends outside the executor (queue, merge, confirmation of candidates) per cell, the
time per round spent waiting for the executor, the CPU seconds of this process (hybridq's scheduler,
and for Dask its scheduler, nannies and client) and of the worker processes, the peak resident
memory of this process and the peak queue length.
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


def cpu_seconds():
    """(CPU seconds of this process, of its child processes now alive): user + system."""
    import psutil

    me = psutil.Process()
    kids = 0.0
    for c in me.children(recursive=True):
        try:
            kids += sum(c.cpu_times()[:2])
        except psutil.Error:
            pass
    return sum(me.cpu_times()[:2]), kids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delta", type=float, default=0.00156)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--repeat", type=int, default=1, help="pool and Dask runs, alternating")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cluster.md"))
    args = ap.parse_args()
    import distributed

    from hybridq import Deviation, load_network, load_vnnlib, perturbation, verify
    from hybridq.bab.cluster import local_cluster
    from hybridq.bab.executors import WorkerPool

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
        c0 = cpu_seconds()
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend="none", timeout=args.timeout, progress=prog, **kw)
        wall = time.perf_counter() - t
        c1 = cpu_seconds()
        work = sum(v for k, v in r.stats.time.items() if k != "total")
        rows.append(dict(name=name, wall=wall, r=r, work=work, sched=wall - spent["run"], chunks=spent["chunks"],
                         queue=peak[0], rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         load=os.getloadavg()[0], cpu_main=c1[0] - c0[0], cpu_workers=c1[1] - c0[1]))
        print(f"{name}: {r.summary()} [wall {wall:.2f} s, scheduler {wall - spent['run']:.2f} s, "
              f"load {os.getloadavg()[0]:.1f}]", flush=True)
        return r

    one("jobs=1", jobs=1)
    t = time.perf_counter()
    pool = WorkerPool(args.workers)
    pool.start()
    pool._thread.join()
    t_pool = time.perf_counter() - t
    t = time.perf_counter()
    cluster = local_cluster(args.workers)
    client = distributed.Client(cluster)
    t_start = time.perf_counter() - t
    try:  # side by side, alternating, so that the other engineers' load drifts over both alike
        for k in range(args.repeat):
            tag = f" (run {k + 1})" if args.repeat > 1 else ""
            one(f"process pool, {args.workers} workers{tag}", jobs=args.workers, workers=pool)
            one(f"Dask LocalCluster, {args.workers} workers{tag}", executor=client)
    finally:
        pool.close()
        client.close()
        cluster.close()

    base = rows[0]
    fp = [(x["r"].verdict, x["r"].stats.cells, x["r"].stats.rounds, x["r"].bound) for x in rows]
    same = all(f == fp[0] for f in fp)
    pools, dasks = rows[1::2], rows[2::2]

    def total(xs, key):
        return sum(x[key] for x in xs)

    pool = dict(wall=total(pools, "wall"), cpu=total(pools, "cpu_main") + total(pools, "cpu_workers"))
    dask = dict(wall=total(dasks, "wall"), cpu=total(dasks, "cpu_main") + total(dasks, "cpu_workers"))
    pairs = ", ".join(f"{100 * (d['wall'] / q['wall'] - 1):+.0f} %" for q, d in zip(pools, dasks))
    lines = [
        "# Branch and bound on one process, the process pool and a Dask cluster (issue 13)",
        "",
        f"`python bench/cluster.py --delta {args.delta} --workers {args.workers} --repeat {args.repeat}`: ACAS Xu 1_1, prop_1's box, fp16, "
        f"logit deviation <= {args.delta}, backend none.  Machine: {os.cpu_count()} cores shared with other "
        f"engineers (load average {load0:.1f} at the start).",
        "",
        "| executor | verdict | cells | rounds | chunks | wall (s) | speed-up vs jobs=1 | worker ms/cell | "
        "scheduler ms/cell | waiting ms/round | CPU s: this process | CPU s: workers | peak queue | "
        "peak RSS (MiB) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        r = x["r"]
        lines.append(f"| {x['name']} | {r.verdict} | {r.stats.cells} | {r.stats.rounds} | {x['chunks']} | "
                     f"{x['wall']:.1f} | {base['wall'] / x['wall']:.2f}x | {1e3 * x['work'] / r.stats.cells:.2f} | "
                     f"{1e3 * x['sched'] / r.stats.cells:.3f} | {1e3 * (x['wall'] - x['sched']) / r.stats.rounds:.1f} | "
                     f"{x['cpu_main']:.1f} | {x['cpu_workers']:.1f} | {x['queue']} | {x['rss']:.0f} | {x['load']:.1f} |")
    lines += [
        "",
        f"Identical verdict, cell count, rounds and bound across all runs: **{same}**.",
        f"Dask overhead against the process pool: **{100 * (dask['wall'] / pool['wall'] - 1):+.1f} %** "
        f"(wall {dask['wall']:.1f} s vs {pool['wall']:.1f} s over {args.repeat} run(s) each; per pair {pairs}); "
        f"CPU seconds of all processes {dask['cpu']:.1f} vs {pool['cpu']:.1f} "
        f"({100 * (dask['cpu'] / pool['cpu'] - 1):+.1f} %).  "
        f"Starting the pool took {t_pool:.1f} s and the LocalCluster {t_start:.1f} s (neither in the wall "
        "times; `--cluster local:N` pays it once per command, a batch once).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
