"""Issue 15: does having dReal importable make any run slower or less decided?

    python bench/with_dreal.py [--suite relu,sigmoid,mnist,precision] [--n 20] [--timeout 20] [--out bench/results/dreal.md]

Run it with a Python where ``import dreal`` works (a venv with the ``dreal`` wheel and dReal's
IBEX build, ``../shared/tools/build_dreal.sh``).  Every query is run in several modes one after
the other in the same process (same load), and the table compares verdicts and wall times:

* ``auto-`` -- ``backend="auto"`` with dReal made unimportable (``sys.modules["dreal"] = None``:
  ``import dreal`` raises ImportError exactly as on a machine without it);
* ``auto+`` -- ``backend="auto"`` with dReal importable;
* ``z3`` and ``dreal`` -- the backend forced (``--backend`` of the CLI).

Suites:

* ``relu``: the networks and thresholds of ``bench/random_vs_pure.py`` (random 2-input relu nets
  2-4-1 ... 2-16-16-1, ``abs:0.01``, box ``[-1, 1]^2``, logit deviation ``delta = f x`` the
  attack's deviation, f in 0.8, 1.1, 1.5, 3); modes auto-, auto+, z3, dreal.
* ``sigmoid``: the same construction with sigmoid and tanh hidden layers (2-4-1, 2-8-1, 2-8-8-1,
  2-16-1); modes auto- (z3 cannot express them: bounds and attacks only), auto+ (dReal).
* ``precision``: dReal alone on the whole query (one call, the root cell) at precisions 1e-3,
  1e-6, 1e-9, on 10 sigmoid / tanh nets (2-4-1 ... 2-8-8-1) at points and boxes of half-width 0.1,
  thresholds 0.98, 1.003, 1.05, 1.2 x the attack's deviation ("unconfirmed": a delta-sat answer
  that did not re-check exactly).
* ``mnist``: the ERAN MNIST sigmoid 6x200 net (``../shared/data/networks/eran_sigmoid``) at the
  image of its VNNLIB spec: decision (the label keeps winning) under ``fp16``, ``abs:1e-3`` and
  ``rel:0.01``, and the label's logit deviation at 1.02 x the attack's under ``fp16`` and
  ``abs:1e-3``; modes auto-, auto+.

A verdict is "decided" when it is robust or not_robust; every not_robust verdict comes with a
counterexample that hybridq re-checked exactly, and here the two modes' verdicts must agree
wherever both decided.  The summary counts, per mode, decided queries and total / median wall
time, and lists every query where ``auto+`` is slower than ``auto-`` by more than 20 % + 0.1 s or
decided less.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hybridq import Decision, Deviation, InputBox, Layer, Network, load_network, perturbation, verify  # noqa: E402
from hybridq.attack import attack  # noqa: E402
from random_vs_pure import FACTORS, SHAPES, make  # noqa: E402

DECIDED = ("robust", "not_robust")


@contextlib.contextmanager
def dreal_importable(on: bool):
    """Make ``import dreal`` fail (``on=False``) or work as installed (``on=True``) inside the block."""
    saved = sys.modules.get("dreal", "absent")
    if on:
        if saved is None:
            del sys.modules["dreal"]
    else:
        sys.modules["dreal"] = None
    try:
        yield
    finally:
        if saved == "absent":
            sys.modules.pop("dreal", None)
        else:
            sys.modules["dreal"] = saved


def run_mode(mode: str, net, pert, box, prop, timeout: float):
    backend = {"auto-": "auto", "auto+": "auto"}.get(mode, mode)
    with dreal_importable(mode != "auto-"):
        t = time.perf_counter()
        r = verify(net, pert, box, prop, backend=backend, jobs=1, timeout=timeout)
        wall = time.perf_counter() - t
    if r.verdict == "not_robust":  # hybridq re-checked it exactly; check once more here
        cx = r.counterexample
        x = cx.x if cx.x_exact is None else np.array(cx.x_exact, dtype=object)
        assert pert.contains(cx.params) and prop.check_exact(net, x, cx.params), (mode, prop)
    return r.verdict, wall, r.stats


def calls(r) -> str:
    """Exact-stage calls of a run (``-`` for a single dReal call)."""
    return "-" if r[2] is None else str(r[2].smt_calls)


def sig_make(seed, sizes, act):
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]), 0.1 * rng.normal(size=sizes[i + 1]),
                    act if i < len(sizes) - 2 else "identity") for i in range(len(sizes) - 1)]
    return Network(tuple(layers), name=f"{act}-" + "-".join(map(str, sizes)))


def shared() -> Path | None:
    for p in (ROOT.parent / "shared", Path(os.environ.get("HYBRIDQ_SHARED", "/nonexistent")), Path("/work/shared")):
        if (p / "data" / "networks").is_dir():
            return p / "data" / "networks"
    return None


def random_cases(kind: str, n: int):
    box = InputBox(-np.ones(2), np.ones(2))
    sig_shapes = ([2, 4, 1], [2, 8, 1], [2, 8, 8, 1], [2, 16, 1])
    for k in range(n):
        if kind == "relu":
            net = make(1000 + k, SHAPES[k % len(SHAPES)])
        else:
            act = ("sigmoid", "tanh")[k % 2]
            net = sig_make(2000 + k, sig_shapes[(k // 2) % len(sig_shapes)], act)
        pert = perturbation("abs:0.01", net)
        w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(k), 256, 30, 16, False).value
        prop = Deviation(FACTORS[k % len(FACTORS)] * w)
        yield f"{k}", net.name, f"delta {prop.delta:.4g}", net, pert, box, prop


def mnist_cases():
    from hybridq.io.vnnlib import decision_label, load_vnnlib

    d = shared()
    if d is None:
        print("note: ../shared/data/networks not found; mnist suite skipped", file=sys.stderr)
        return
    net = load_network(d / "eran_sigmoid" / "ffnnSIGMOID__Point_6x200.onnx")
    ((vbox, oc),) = load_vnnlib(d / "eran_sigmoid" / "mnist_spec_idx_7167_eps_0.01200.vnnlib", 784, 10)
    x = 0.5 * (vbox.lower + vbox.upper)
    label = decision_label(oc)
    for spec in ("fp16", "abs:1e-3", "rel:0.01"):
        yield f"m-{spec}", "mnist-sigmoid-6x200", f"{spec} decision", net, perturbation(spec, net), x, Decision(label)
    for spec in ("fp16", "abs:1e-3"):  # tight: the label's logit deviation at 1.02 x the attack's
        pert = perturbation(spec, net)
        w = attack(net, pert, Deviation(0.0, outputs=(label,)), x, x, np.random.default_rng(0), 256, 30, 16,
                   False).value
        yield (f"m-{spec}-dev", "mnist-sigmoid-6x200", f"{spec} deviation 1.02x", net, pert, x,
               Deviation(1.02 * w, outputs=(label,)))


def precision_cases(n: int):
    """Sigmoid / tanh nets at points and boxes (half-width 0.1), thresholds f x the attack's deviation."""
    shapes = ([2, 4, 1], [2, 8, 1], [2, 16, 1], [3, 8, 1], [2, 8, 8, 1])
    rng = np.random.default_rng(5)
    for k in range(n):
        act = ("sigmoid", "tanh")[k % 2]
        sizes = shapes[(k // 2) % len(shapes)]
        net = sig_make(3000 + k, sizes, act)
        pert = perturbation("abs:0.01", net)
        x = rng.uniform(-1, 1, sizes[0])
        box = InputBox(x, x) if k % 3 == 0 else InputBox(x - 0.1, x + 0.1)
        w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(k), 256, 30, 16, False).value
        for f in (0.98, 1.003, 1.05, 1.2):
            yield f"{k}/{f:g}", net.name, ("point" if k % 3 == 0 else "box") + f" {f:g}x", net, pert, box, Deviation(f * w)


PRECISIONS = (1e-3, 1e-6, 1e-9)


def run_precision(eps: float, net, pert, box, prop, timeout: float):
    """One dReal call on the whole query (root cell) at precision ``eps``."""
    from hybridq.cell import Cell
    from hybridq.smt import get_backend

    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
    t = time.perf_counter()
    out = get_backend("dreal", delta=eps).check(net, pert, cell, prop, timeout, box=box)
    verdict = {"Unsat": "robust", "Sat": "not_robust"}.get(type(out).__name__, getattr(out, "kind", "unknown"))
    return verdict, time.perf_counter() - t, None


SUITES = {"relu": ("auto-", "auto+", "z3", "dreal"), "sigmoid": ("auto-", "auto+"), "mnist": ("auto-", "auto+"),
          "precision": tuple(f"dreal {e:g}" for e in PRECISIONS)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="relu,sigmoid,mnist,precision")
    ap.add_argument("--n", type=int, default=20, help="random networks per random suite")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per verify run")
    ap.add_argument("--mnist-timeout", type=float, default=60.0)
    ap.add_argument("--precision-timeout", type=float, default=10.0, help="seconds per dReal call (suite precision)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dreal.md"))
    args = ap.parse_args()
    try:
        import dreal
        dver = dreal.__version__
    except Exception as err:  # noqa: BLE001
        raise SystemExit(f"this bench needs `import dreal` to work ({type(err).__name__}: {err})")
    suites = [s for s in args.suite.split(",") if s]
    # warm-up: compiled kernels, z3, HiGHS and the dReal worker, outside the timings
    warm = make(0, [2, 4, 1])
    wbox = InputBox(-np.ones(2), np.ones(2))
    for b in ("auto", "z3", "dreal"):
        verify(warm, perturbation("abs:0.01", warm), wbox, Deviation(1e-3), backend=b, jobs=1, timeout=5)
    wsig = sig_make(0, [2, 4, 1], "sigmoid")
    verify(wsig, perturbation("abs:0.01", wsig), wbox, Deviation(1e-3), backend="auto", jobs=1, timeout=5)
    rows = []
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    for suite in suites:
        modes = SUITES[suite]
        if suite == "mnist":
            cases, tlim = mnist_cases(), args.mnist_timeout
        elif suite == "precision":
            cases, tlim = precision_cases(min(args.n, 10)), args.precision_timeout
        else:
            cases, tlim = random_cases(suite, args.n), args.timeout
        for cid, name, what, net, pert, box, prop in cases:
            if suite == "precision":
                res = {m: run_precision(float(m.split()[1]), net, pert, box, prop, tlim) for m in modes}
            else:
                res = {m: run_mode(m, net, pert, box, prop, tlim) for m in modes}
            dec = [res[m][0] for m in modes if res[m][0] in DECIDED]
            assert len(set(dec)) <= 1, (suite, cid, {m: res[m][0] for m in modes})
            rows.append((suite, cid, name, what, modes, res))
            print(f"{suite:7} {cid:10} {name:20} {what:22} " + "  ".join(
                f"{m} {res[m][0]:10} {res[m][1]:6.2f}s ({calls(res[m])})" for m in modes), flush=True)
    load1 = os.getloadavg()
    wall_all = time.perf_counter() - t_all
    lines = ["# dReal importable or not: verdicts and times side by side", "",
             f"Command: `python bench/with_dreal.py --suite {args.suite} --n {args.n} --timeout {args.timeout:g} "
             f"--mnist-timeout {args.mnist_timeout:g} --precision-timeout {args.precision_timeout:g}` (dReal {dver}, Python {platform.python_version()}, jobs=1; "
             f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end; {wall_all:.0f} s in all).", "",
             "Modes: `auto-` auto with `import dreal` failing, `auto+` auto with dReal importable, `z3` / `dreal` "
             "the backend forced. Cells: verdict, wall seconds, exact-stage calls.", ""]
    worse = []
    for suite in suites:
        rs = [r for r in rows if r[0] == suite]
        if not rs:
            continue
        modes = SUITES[suite]
        lines += [f"## {suite}", "", "| # | net | query | " + " | ".join(modes) + " |",
                  "|---|---|---|" + "---|" * len(modes)]
        for _, cid, name, what, _, res in rs:
            lines.append(f"| {cid} | {name} | {what} | " + " | ".join(
                f"{res[m][0]} {res[m][1]:.2f} s ({calls(res[m])})" for m in modes) + " |")
            if "auto-" not in res:
                continue
            a, b = res["auto-"], res["auto+"]
            if (a[0] in DECIDED and b[0] not in DECIDED) or b[1] > 1.2 * a[1] + 0.1:
                worse.append(f"{suite} {cid} ({name}, {what}): auto- {a[0]} {a[1]:.2f} s, auto+ {b[0]} {b[1]:.2f} s")
        lines.append("")
        for m in modes:
            ts = [r[5][m][1] for r in rs]
            lines.append(f"- `{m}`: decided {sum(r[5][m][0] in DECIDED for r in rs)}/{len(rs)}, total "
                         f"{sum(ts):.2f} s, median {statistics.median(ts):.3f} s")
        lines.append("")
    lines += ["## auto+ against auto-", "",
              f"Queries where `auto+` decided less, or took more than 1.2 x + 0.1 s of `auto-`: {len(worse)}."]
    lines += [f"- {w}" for w in worse]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(worse) - 1:]))


if __name__ == "__main__":
    main()
