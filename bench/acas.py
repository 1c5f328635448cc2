"""Issue 6 measurements on the shipped real networks (ACAS Xu, mnistfc).

    python bench/acas.py centre          # (1) decision (argmin advisory) at prop_3's centre, all 45 ACAS Xu nets, fp16
    python bench/acas.py quantify [--jobs 2 --timeout 120]   # (2) ACAS 1_1, prop_1 box, fp16 deviation
    python bench/acas.py mnist           # (3) mnistfc 256x2, int8 per-channel, decision at the 3 VNNLIB centres

Networks are read from ../shared/data/networks (relative to the repository root; else from
$HYBRIDQ_SHARED/data/networks or /work/shared/data/networks).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = next((d / "data" / "networks" for d in (ROOT.parent / "shared", Path(os.environ.get("HYBRIDQ_SHARED", "/work/shared")))
             if (d / "data" / "networks").is_dir()), ROOT.parent / "shared" / "data" / "networks")

from hybridq import Decision, Deviation, InputBox, load_network, load_vnnlib, perturbation, quantify, verify  # noqa: E402


def acas_path(i, j):
    return DATA / "acasxu" / "onnx" / f"ACASXU_run2a_{i}_{j}_batch_2000.onnx"


def _centre_one(ij):
    i, j = ij
    net = load_network(acas_path(i, j))
    box, _ = load_vnnlib(DATA / "acasxu" / "vnnlib" / "prop_3.vnnlib", net.n_in, net.n_out)[0]
    x = box.center
    sense = SENSE or net.decision_sense  # the ACAS Xu advisory is the argmin (net.decision_sense == "min")
    label = int(net.predict(x, sense=sense))
    pert = perturbation("fp16", net)
    t = time.perf_counter()
    r = verify(net, pert, InputBox.point(x), Decision(label, sense=sense), jobs=1, timeout=TIMEOUT)
    return i, j, label, r.verdict, time.perf_counter() - t, r.stats.cells, r.stats.proved_bounds, r.stats.proved_smt


SENSE, TIMEOUT = None, None  # set by centre() (module globals so the spawned workers see them via _init)


def _init(sense, timeout):
    global SENSE, TIMEOUT
    SENSE, TIMEOUT = sense, timeout


def centre(args):
    _init(args.sense, args.timeout)
    nets = [(i, j) for i in range(1, 6) for j in range(1, 10)]
    _centre_one(nets[0])  # warm the compile cache / imports
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_init,
                                 initargs=(args.sense, args.timeout)) as ex:
            rows = list(ex.map(_centre_one, nets))
    else:
        rows = [_centre_one(ij) for ij in nets]
    wall = time.perf_counter() - t0
    for i, j, lab, v, dt, cells, pb, ps in rows:
        print(f"ACASXU_{i}_{j}  label {lab}  {v:10}  {dt:6.3f} s  cells {cells} (bounds {pb}, smt {ps})")
    verdicts = [r[3] for r in rows]
    print(f"decision sense {args.sense or 'the network file (ACAS Xu: min)'}, timeout {args.timeout} s per network")
    print(f"decided {sum(v != 'unknown' for v in verdicts)}/45: robust {verdicts.count('robust')}, "
          f"not_robust {verdicts.count('not_robust')}, unknown {verdicts.count('unknown')}; "
          f"sum of verify times {sum(r[4] for r in rows):.2f} s; wall {wall:.2f} s with {args.jobs} process(es)")


def quantify_acas(args):
    net = load_network(acas_path(1, 1))
    box, _ = load_vnnlib(DATA / "acasxu" / "vnnlib" / "prop_1.vnnlib", net.n_in, net.n_out)[0]
    pert = perturbation("fp16", net)
    t = time.perf_counter()
    q = quantify(net, pert, box, None, "deviation", tol=args.tol, jobs=args.jobs, timeout=args.timeout)
    dt = time.perf_counter() - t
    s = q.stats
    print(f"quantify: {q.summary()}")
    print(f"  wall {dt:.1f} s, cells {s.cells}, pruned by bounds {s.proved_bounds}, open {s.open}, "
          f"input splits {s.splits_input}, time per stage {({k: round(v, 1) for k, v in s.time.items()})}")
    above = q.upper * 1.01
    t = time.perf_counter()
    r = verify(net, pert, box, Deviation(above), jobs=args.jobs, timeout=args.verify_timeout)
    print(f"verify fp16 delta {above:.6g} (1.01 x proved): {r.summary()} [{time.perf_counter() - t:.1f} s]")
    pert2 = perturbation("abs:1e-2", net)
    below = q.lower * 0.9
    t = time.perf_counter()
    r = verify(net, pert2, box, Deviation(below), jobs=args.jobs, timeout=args.timeout)
    cx = r.counterexample
    ok = cx is not None and Deviation(below).check_exact(net, cx.x, cx.params) and pert2.contains(cx.params) \
        and box.contains(cx.x)
    print(f"verify abs:1e-2 delta {below:.6g} (0.9 x witnessed fp16): {r.summary()} "
          f"[{time.perf_counter() - t:.1f} s]; counterexample re-checked exactly: {ok}")


def mnist(args):
    net = load_network(DATA / "mnistfc" / "mnist-net_256x2.onnx")
    pert = perturbation("int8:per_channel", net)
    for spec in ("prop_0_0.03", "prop_0_0.05", "prop_1_0.03"):
        box, con = load_vnnlib(DATA / "mnistfc" / f"{spec}.vnnlib", net.n_in, net.n_out)[0]
        x = box.center
        label = int(np.argmax(net.forward(x)))
        t = time.perf_counter()
        r = verify(net, pert, InputBox.point(x), Decision(label), jobs=args.jobs, timeout=args.timeout)
        print(f"{spec} centre, label {label}: {r.summary()} [{time.perf_counter() - t:.2f} s]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("centre", "quantify", "mnist"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--tol", type=float, default=0.5)
    ap.add_argument("--verify-timeout", type=float, default=600.0)
    ap.add_argument("--sense", choices=("min", "max"), default=None,
                    help="centre: decision sense (default: the network's; ACAS Xu advisories are the argmin)")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"network data not found at {DATA}")
    {"centre": centre, "quantify": quantify_acas, "mnist": mnist}[args.what](args)


if __name__ == "__main__":
    main()
