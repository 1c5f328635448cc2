"""Benchmark of the bound pass (issue 7): throughput, tightness, cold start, auto_LiRPA anchor.

Run from the repository root::

    python3 bench/bounds.py            # writes bench/results/bounds.md
    python3 bench/bounds.py --parts throughput,cold --out /tmp/b.md   # only those parts
    HYBRIDQ_ROOT=/path/to/other/tree python3 bench/bounds.py ...      # benchmark another checkout

1. ACAS Xu 1_1 (.nnet, with its normalization), ``fp16`` parameter box, 4096 input cells tiling
   prop_1's box: cells per second per method and the ratio to a floor measured in the same run
   (a plain float64 NumPy forward pass of the same batch, repeated 4 times).
2. Tightness on 100 of those cells: each method's deviation bound ``max_j |dev_j|`` against the
   largest deviation found by 10^5 samples per cell (sign corners of the parameter box x random
   inputs of the cell; a lower bound on the truth).
3. Cold start: first call of every method in a new process with a warm numba cache.
4. Anchor: ACAS Xu 1_1 ONNX, input fixed at the centre of prop_3's box, every weight and bias
   +- eps (absolute); bound all five outputs.  auto_LiRPA 0.7.1 numbers (issue 7, same machine):
   CROWN y0 widths 0.0174 / 0.0631 / 0.231 / 290 at ~56 ms per call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # BLAS single-threaded: numba's threads are the parallelism
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("HYBRIDQ_ROOT", HERE)).resolve()
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402

from hybridq import Perturbation  # noqa: E402
from hybridq.bounds import bounds  # noqa: E402
from hybridq.io import load_network  # noqa: E402
from hybridq.perturbation import perturbation  # noqa: E402

NETS = HERE / ".." / "shared" / "data" / "networks" / "acasxu"
NNET = NETS / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
ONNX = NETS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
OUT = HERE / "bench" / "results" / "bounds.md"
# prop_1 and prop_3 boxes in normalized input space (acasxu/vnnlib/prop_1.vnnlib, prop_3.vnnlib)
P1_LO = np.array([0.6, -0.5, -0.5, 0.45, -0.5])
P1_HI = np.array([0.679857769, 0.5, 0.5, 0.5, -0.45])
P3_LO = np.array([-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3])
P3_HI = np.array([-0.298552812, 0.009549297, 0.5, 0.5, 0.5])
CROWN = {1e-4: 0.0174, 4.9e-4: 0.0631, 1e-3: 0.231, 1e-2: 290.0}
ALPHA = {1e-4: 0.0104, 4.9e-4: 0.0599, 1e-3: 0.212, 1e-2: 125.0}
ATTACK = {1e-4: 0.0090, 4.9e-4: 0.0357, 1e-3: 0.070, 1e-2: 5.80}
VARIANTS = [
    ("interval", dict(method="interval")),
    ("diff", dict(method="diff")),
    ("linear (refine=unstable)", dict(method="linear", refine="unstable")),
    ("linear", dict(method="linear")),
    ("linear (inter=2)", dict(method="linear", inter=2)),
]


def _cells(net, splits=(4, 8, 8, 4, 4)):
    """Raw-space cells tiling prop_1's box (normalized box mapped through mean / std)."""
    lo = P1_LO * net.input_std + net.input_mean
    hi = P1_HI * net.input_std + net.input_mean
    edges = [np.linspace(a, b, s + 1) for a, b, s in zip(lo, hi, splits)]
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in splits], indexing="ij"), -1).reshape(-1, 5)
    clo = np.stack([edges[d][idx[:, d]] for d in range(5)], 1)
    chi = np.stack([edges[d][idx[:, d] + 1] for d in range(5)], 1)
    return clo, chi


def _best(f, reps=3, cpu=False):
    """Best wall time of ``reps`` runs (and, with ``cpu``, the process CPU time of that run)."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        c = time.process_time()
        f()
        ts.append((time.perf_counter() - t, time.process_time() - c))
    best = min(ts)
    return best if cpu else best[0]


def throughput(net, pert, lo, hi, lines, threads):
    numba.set_num_threads(threads)
    xs = 0.5 * (lo + hi)
    for _, kw in VARIANTS:  # warm up (cache load)
        bounds(net, pert, (lo[:4], hi[:4]), **kw)
    floor = _best(lambda: [net.forward(xs) for _ in range(4)], 5)
    lines += [f"## Throughput: ACAS Xu 1_1, fp16, {len(lo)} cells in prop_1's box, {threads} thread(s)\n",
              f"numba threads: {threads}, BLAS threads: 1; the 2-core machine is shared with other jobs "
              "(best of a few runs; wall per core = time x threads / cells; CPU = process CPU time / cells, "
              "the fairer per-core figure under load).\n",
              f"Floor (4 x float64 NumPy forward of the batch): {floor * 1e3:.1f} ms\n",
              "| method | time (s) | cells/s | ratio to floor | ms per cell per core (wall) | CPU ms per cell |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, kw in VARIANTS:
        reps = 3 if kw["method"] != "linear" else 1
        t, cpu = _best(lambda: bounds(net, pert, (lo, hi), **kw), reps, cpu=True)
        lines.append(f"| {name} | {t:.3f} | {len(lo) / t:.0f} | {t / floor:.2f} | {t * threads / len(lo) * 1e3:.3f} "
                     f"| {cpu / len(lo) * 1e3:.3f} |")
        print(lines[-1], flush=True)
    lines.append("")


def tightness(net, pert, lo, hi, lines, n_cells=100, n_theta=200, n_x=500, seed=0):
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(lo), n_cells, replace=False)
    lo, hi = lo[pick], hi[pick]
    res = {name: bounds(net, pert, (lo, hi), **kw) for name, kw in VARIANTS}
    found = np.zeros(n_cells)
    theta0 = net.params
    t0 = time.perf_counter()
    for c in range(n_cells):
        xs = rng.uniform(lo[c], hi[c], (n_x, 5))
        y0 = net.forward(xs)
        best = 0.0
        for t in range(n_theta):
            if t < 2:
                th = pert.lower() if t == 0 else pert.upper()
            else:
                th = tuple((W + rng.choice([-1.0, 1.0], W.shape) * R, b + rng.choice([-1.0, 1.0], b.shape) * r)
                           for (W, b), (R, r) in zip(pert.center, pert.radius))
            best = max(best, float(np.max(np.abs(net.forward(xs, th) - y0))))
        found[c] = best
    lines += [f"## Tightness: {n_cells} cells, deviation bound vs largest deviation found",
              f"{n_theta * n_x:.0e} samples per cell ({n_theta} parameter sign-corners x {n_x} inputs), "
              f"{time.perf_counter() - t0:.0f} s.  `bound` = max_j max(|dev_lo_j|, |dev_hi_j|) (logits); "
              "`width` = mean over outputs of dev_hi - dev_lo.\n",
              "| method | median bound / found | mean bound / found | median width | median found |",
              "| --- | --- | --- | --- | --- |"]
    for name, B in res.items():
        bnd = np.max(np.maximum(np.abs(B.dev_logit_lo), np.abs(B.dev_logit_hi)), axis=1)
        width = np.mean(B.dev_logit_hi - B.dev_logit_lo, axis=1)
        r = bnd / found
        lines.append(f"| {name} | {np.median(r):.2f} | {np.mean(r):.2f} | {np.median(width):.4g} "
                     f"| {np.median(found):.4g} |")
        print(lines[-1], flush=True)
    lines.append("")


COLD = """
import time
t0 = time.perf_counter()
import numpy as np
import numba
ta = time.perf_counter()
import hybridq.kernels
tb = time.perf_counter()
from hybridq.io import load_network
from hybridq.perturbation import perturbation
from hybridq.bounds import bounds
net = load_network({path!r})
pert = perturbation("fp16", net)
t1 = time.perf_counter()
x = np.array([[60000.0, 0.1, 0.2, 1150.0, 10.0]])
for m in ("interval", "diff", "linear"):
    bounds(net, pert, (x, x + 1.0), method=m)
t2 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}} {{ta - t0:.3f}} {{tb - ta:.3f}}")
"""


def cold_start(lines):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = COLD.format(path=str(NNET))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # warm the cache
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        runs.append(tuple(float(v) for v in out.stdout.split()))
    imp, first, np_nb, kern = min(runs, key=lambda r: r[0] + r[1])
    lines += ["## Cold start (new process, warm numba cache; best of 3)\n",
              f"total {imp + first:.2f} s = imports + network load + fp16 spec {imp:.2f} s (of which numpy + numba "
              f"{np_nb:.2f} s, loading the cached kernels at `import hybridq.kernels` {kern:.2f} s: explicit "
              f"signatures load eagerly) + first call of all three methods {first:.2f} s\n"]
    print(lines[-1], flush=True)


def anchor(lines):
    net = load_network(ONNX)
    x = 0.5 * (P3_LO + P3_HI)
    lines += ["## Anchor: ACAS Xu 1_1 ONNX, x = centre of prop_3's box, every weight and bias +- eps\n",
              "auto_LiRPA 0.7.1 on this machine (issue 7): CROWN / alpha-CROWN y0 width, ~56 ms / ~13 s per call; "
              "attack = widest y0 range found by projected gradient (a lower bound on the truth).\n",
              "| eps | method | y0 | y1 | y2 | y3 | y4 | ms/call | CROWN y0 | alpha-CROWN y0 | attack y0 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for eps in CROWN:
        pert = Perturbation(net.params, tuple((np.full(W.shape, eps), np.full(b.shape, eps)) for W, b in net.params))
        for name, kw in VARIANTS + [("linear (noise=concretize)", dict(method="linear", noise="concretize"))]:
            bounds(net, pert, x, **kw)
            t = _best(lambda: bounds(net, pert, x, **kw), 7)
            B = bounds(net, pert, x, **kw)
            w = B.logit_hi[0] - B.logit_lo[0]
            lines.append(f"| {eps:g} | {name} | " + " | ".join(f"{v:.4g}" for v in w)
                         + f" | {t * 1e3:.2f} | {CROWN[eps]} | {ALPHA[eps]} | {ATTACK[eps]} |")
            print(lines[-1], flush=True)
    lines.append("")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="anchor,throughput,tightness,cold",
                    help="comma-separated subset of anchor,throughput,tightness,cold")
    ap.add_argument("--out", default=str(OUT), help="markdown file to write")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not NNET.is_file() or not ONNX.is_file():
        sys.exit(f"ACAS Xu networks not found under {NETS}")
    lines = ["# Bound pass benchmark (bench/bounds.py)\n",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, numba {numba.__version__}, "
             f"{os.cpu_count()} CPUs, hybridq from {ROOT}.\n"]
    net = load_network(NNET)
    pert = perturbation("fp16", net)
    lo, hi = _cells(net)
    if "anchor" in parts:
        anchor(lines)
    if "throughput" in parts:
        throughput(net, pert, lo, hi, lines, 1)
        throughput(net, pert, lo, hi, lines, numba.config.NUMBA_NUM_THREADS)
    if "tightness" in parts:
        tightness(net, pert, lo, hi, lines)
    if "cold" in parts:
        cold_start(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
