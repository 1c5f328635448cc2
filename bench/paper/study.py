"""The seed paper's study (Murthy, Das, Islam, arXiv:1903.10672), rebuilt with hybridq.

Two 2-8-8-1 networks trained on the same 2-D data (``bench/paper/train.py``), one with ReLU and
one with linear (identity) hidden activations, sigmoid output.  For each parameter perturbation

* ``abs:EPS`` for EPS in 1e-5 .. 1e-1 (every weight and bias anywhere in ``[t - EPS, t + EPS]``),
* ``rel:EPS`` for EPS in 1e-4 .. 1e-1 (``[t - EPS |t|, t + EPS |t|]``: a control that does not
  penalise the network with the larger weights),
* fixed point ``q2.N`` (signed, 2 integer and N fractional bits; radius ``2^-(N+1)``),
* ``point:q2.N``: the concrete network rounded to ``q2.N`` (radius 0; its actual deviation),

we compute with :func:`hybridq.quantify` the maximum *confidence* deviation
``max |sigmoid(y(x; theta)) - sigmoid(y(x; theta0))|`` as a certified interval
``[witnessed, proved]``

* locally: at each of the first ``--points`` test points (the table reports the largest and the
  mean of the proved values over the points), and
* globally: over the whole input box ``[-1, 1]^2``.

Run from the repo root (one command, about 2-4 minutes on 2 cores)::

    python3 bench/paper/study.py

It writes ``bench/results/paper_study.md`` (tables), ``bench/results/paper_study.json`` (every
number) and ``bench/results/paper_study.png`` (deviation against perturbation radius, ReLU vs
linear, local and global), plus the cell map of one global run
(``bench/results/paper_global_relu.png``, ``paper_global_linear.png``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import hybridq  # noqa: E402
from hybridq.inputs import InputBox  # noqa: E402
from hybridq.plot import plot_cells, plot_study  # noqa: E402
from hybridq.quantify import quantify  # noqa: E402

BOX = InputBox([-1.0, -1.0], [1.0, 1.0])
EPS = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
REL = (1e-4, 1e-3, 1e-2, 1e-1)
FRAC_BITS = (4, 6, 8, 10, 12, 14)
INT_BITS = 2


def perturbations():
    """``(family, spec, radius, bits)`` for every perturbation of the study."""
    out = [("abs", f"abs:{e:g}", e, None) for e in EPS]
    out += [("rel", f"rel:{e:g}", e, None) for e in REL]
    for n in FRAC_BITS:
        out.append(("fixed", f"q{INT_BITS}.{n}", 2.0 ** -(n + 1), 1 + INT_BITS + n))
    for n in FRAC_BITS:
        out.append(("point", f"point:q{INT_BITS}.{n}", 2.0 ** -(n + 1), 1 + INT_BITS + n))
    return out


def run(args) -> dict:
    data = np.load(HERE / "data.npz")
    points = data["x_test"][: args.points]
    nets = {name: hybridq.load_network(HERE / f"{name}.npz") for name in ("relu", "linear")}
    rows = []
    common = dict(space="score", tol=args.tol, backend=args.backend, jobs=args.jobs, seed=0)
    # warm-up (numba compile cache, imports) so the first timing is not the compile time
    quantify(nets["relu"], "abs:1e-3", InputBox.point(points[0]), **common)
    for name, net in nets.items():
        for fam, spec, radius, bits in perturbations():
            t0 = time.perf_counter()
            loc = [quantify(net, spec, InputBox.point(x), timeout=args.local_timeout, **common) for x in points]
            t_loc = time.perf_counter() - t0
            t0 = time.perf_counter()
            glob = quantify(net, spec, BOX, timeout=args.global_timeout, **common)
            t_glob = time.perf_counter() - t0
            row = {
                "network": name, "family": fam, "spec": spec, "radius": radius, "bits": bits,
                "local_max_proved": max(q.upper for q in loc),
                "local_max_witnessed": max(q.lower for q in loc),
                "local_mean_proved": statistics.fmean(q.upper for q in loc),
                "local_s": t_loc, "local_unfinished": sum(bool(q.message) for q in loc),
                "global_witnessed": glob.lower, "global_proved": glob.upper,
                "global_cells": glob.stats.cells, "global_s": t_glob, "global_message": glob.message,
                "global_witness_x": None if glob.witness is None else np.asarray(glob.witness.x).tolist(),
            }
            rows.append(row)
            print(f"{name:6s} {spec:12s} local max [{row['local_max_witnessed']:.3g}, {row['local_max_proved']:.3g}] "
                  f"({t_loc:5.1f} s)  global [{glob.lower:.3g}, {glob.upper:.3g}] ({t_glob:5.1f} s, "
                  f"{glob.stats.cells} cells){' ' + glob.message if glob.message else ''}", flush=True)
            if fam == "abs" and spec == args.map_spec:
                plot_cells(glob, args.out / f"paper_global_{name}.png", box=BOX,
                           title=f"{name} 2-8-8-1, {spec}, confidence deviation over [-1,1]^2: "
                                 f"[{glob.lower:.3g}, {glob.upper:.3g}]")
    g = np.linspace(-1.0, 1.0, 201)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    context = {}
    for name, net in nets.items():
        y_grid, y_pts = net.forward(grid)[:, 0], net.forward(points)[:, 0]
        h = grid
        for layer in net.layers[:-1]:  # hidden activations: the perturbation noise grows with sum |h|
            h = np.maximum(h @ layer.W.T + layer.b, 0.0) if layer.activation == "relu" else h @ layer.W.T + layer.b
        context[name] = {"max_abs_logit_box": float(np.max(np.abs(y_grid))),
                         "median_abs_logit_test": float(np.median(np.abs(y_pts))),
                         "max_l1_last_hidden_box": float(np.max(np.sum(np.abs(h), axis=1))),
                         # induced inf-norm (max row L1 norm) of each W_k: how much a layer can amplify
                         "layer_gain": [float(np.max(np.sum(np.abs(W), axis=1))) for W, _ in net.params]}
    return {"rows": rows, "points": points.tolist(), "context": context,
            "train": json.loads((HERE / "train_report.json").read_text())}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "inf" if a > 0 else "-"


def render(res: dict, args, elapsed: float) -> str:
    rows = res["rows"]
    tr = res["train"]
    by = {(r["network"], r["spec"]): r for r in rows}
    specs = [p[1] for p in perturbations()]
    L = [
        "# Seed-paper study: ReLU vs linear hidden activations under parameter perturbation",
        "",
        f"Command: `python3 bench/paper/study.py` ({elapsed:.0f} s on this machine; networks from "
        "`python3 bench/paper/train.py`).",
        "",
        "Networks: 2-8-8-1, sigmoid output, trained on 400 two-moons points in [-1,1]^2 (300 train / 100 test), "
        f"same seed and optimiser. ReLU: test accuracy {tr['relu']['test_acc']:.2f}, max |w| "
        f"{tr['relu']['max_abs_weight']:.2f}; linear: test accuracy {tr['linear']['test_acc']:.2f}, max |w| "
        f"{tr['linear']['max_abs_weight']:.2f}.",
        "",
        "Quantity: the maximum confidence deviation `max |sigmoid(y(x; theta)) - sigmoid(y(x; theta0))|` over every "
        "parameter set theta in the box, certified as `[witnessed, proved]` by `hybridq.quantify` "
        f"(relative tolerance {args.tol:g}). Local: at each of {len(res['points'])} test points (max and mean of the "
        "proved values). Global: over all x in [-1,1]^2.",
        "",
        "| perturbation | size | ReLU local max | linear local max | ReLU local mean | linear local mean "
        "| ReLU global [witnessed, proved] | linear global [witnessed, proved] | linear/ReLU global |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for spec in specs:
        a, b = by[("relu", spec)], by[("linear", spec)]
        flag = lambda r: " (tol not reached)" if r["global_message"] else ""  # noqa: E731
        L.append(
            f"| `{spec}` | {a['radius']:.3g} | {a['local_max_proved']:.3g} | {b['local_max_proved']:.3g} "
            f"| {a['local_mean_proved']:.3g} | {b['local_mean_proved']:.3g} "
            f"| [{a['global_witnessed']:.3g}, {a['global_proved']:.3g}]{flag(a)} "
            f"| [{b['global_witnessed']:.3g}, {b['global_proved']:.3g}]{flag(b)} "
            f"| {_ratio(b['global_proved'], a['global_proved'])} |"
        )
    L += ["", "## Finding", ""] + finding(rows)
    c = res["context"]
    L += ["", "Context (a 201 x 201 grid over the box; the test points): max |logit| over the box ReLU "
          f"{c['relu']['max_abs_logit_box']:.3g}, linear {c['linear']['max_abs_logit_box']:.3g}; median |logit| at "
          f"the test points ReLU {c['relu']['median_abs_logit_test']:.3g}, linear "
          f"{c['linear']['median_abs_logit_test']:.3g}; max L1 norm of the last hidden layer over the box ReLU "
          f"{c['relu']['max_l1_last_hidden_box']:.3g}, linear {c['linear']['max_l1_last_hidden_box']:.3g}; "
          "max row L1 norm of W_1, W_2, W_3 (the gain by which a layer can amplify a deviation) ReLU "
          f"{', '.join(f'{g:.2f}' for g in c['relu']['layer_gain'])}, linear "
          f"{', '.join(f'{g:.2f}' for g in c['linear']['layer_gain'])}."]
    L += ["", "![deviation vs radius](paper_study.png)", ""]
    return "\n".join(L) + "\n"


def finding(rows) -> list[str]:
    """The ReLU-vs-linear comparison, computed from the numbers (no pre-written conclusion): per
    scope and perturbation family, in how many perturbations the ReLU network's proved maximum
    deviation is the smaller one, and the median and range of linear / ReLU."""
    out = ["Ratio linear / ReLU of the proved maximum confidence deviation (> 1: ReLU more robust).", "",
           "| scope | family | ReLU smaller in | median linear/ReLU | range |", "|---|---|---|---:|---|"]
    for scope, key in (("global", "global_proved"), ("local, max over test points", "local_max_proved"),
                       ("local, mean over test points", "local_mean_proved")):
        for fam in ("abs", "rel", "fixed", "point", "all"):
            rel = {r["spec"]: r for r in rows if r["network"] == "relu" and fam in (r["family"], "all")}
            lin = {r["spec"]: r for r in rows if r["network"] == "linear" and fam in (r["family"], "all")}
            ratios = [lin[s][key] / rel[s][key] for s in rel if s in lin and rel[s][key] > 0 and lin[s][key] > 0]
            if not ratios:
                continue
            wins = sum(r > 1 for r in ratios)
            out.append(f"| {scope} | {fam} | {wins} of {len(ratios)} | {statistics.median(ratios):.2f} "
                       f"| {min(ratios):.2f} to {max(ratios):.2f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="seed-paper study: ReLU vs linear under parameter perturbation")
    ap.add_argument("--points", type=int, default=50, help="test points for local robustness (default 50)")
    ap.add_argument("--tol", type=float, default=0.02, help="relative tolerance of quantify (default 0.02)")
    ap.add_argument("--local-timeout", type=float, default=10.0)
    ap.add_argument("--global-timeout", type=float, default=60.0)
    ap.add_argument("--backend", default="z3")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--map-spec", default="abs:0.01", help="perturbation whose global cell map is drawn")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = run(args)
    elapsed = time.perf_counter() - t0
    plot_study([dict(network=r["network"], scope=s, family=r["family"], radius=r["radius"],
                     proved=r[f"{s}_max_proved" if s == "local" else "global_proved"],
                     witnessed=r[f"{s}_max_witnessed" if s == "local" else "global_witnessed"])
                for r in res["rows"] for s in ("local", "global")],
               args.out / "paper_study.png",
               title="Max confidence deviation of the 2-8-8-1 moons networks under parameter perturbation")
    (args.out / "paper_study.md").write_text(render(res, args, elapsed))
    (args.out / "paper_study.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out / 'paper_study.md'} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
