"""NeuroDiff's ACAS Xu fp16 benchmark (143 pairs) through the batch runner, against NeuroDiff's figures.

    python bench/neurodiff.py [--timeout 60] [--only ID,ID,...] [--per-process N] [--box-timeout 60]
                              [--skip-box] [--fresh] [--jobs 1] [--no-server]

Per pair (``../shared/data/benchmarks/neurodiff_acas_fp16/pairs.json``): the ACAS Xu ``.nnet``
network, the property's input box in raw units, ``--perturb point:fp16`` (every weight and bias
rounded to float16, compared with the original), ``|y_j(x; fp16) - y_j(x)| <= 3.7394992`` on the
pair's output ``j`` (NeuroDiff's eps = 0.01 on normalized outputs, times the output scale).

Three measurements, each written as a results CSV under ``bench/results/neurodiff_acas_fp16/``:

* ``batch``: all pairs in one ``hybridq run`` process (the time per pair is the instance's own wall
  time, loading included; the process start is reported separately);
* ``process``: ``N`` pairs (evenly spread over the list; all with ``--per-process 0``) each as its own
  ``hybridq verify`` process (the console entry point, ``python -m hybridq``), wall time from
  ``subprocess`` start to exit, as a user would run it: once without a server (``HYBRIDQ_SERVER=off``,
  ``process.csv``) and once with a ``hybridq serve`` running on a temporary socket
  (``process_server.csv``; ``--no-server`` skips that);
* ``box``: the same pairs with the full fp16 rounding box (``--perturb fp16``: every parameter
  anywhere in its rounding interval, a question NeuroDiff cannot ask).

Every ``sat`` counterexample is re-checked twice more here in exact arithmetic (Fractions, from
the ``.npz`` hybridq wrote), and any that contradicts a NeuroDiff "proved" is listed with the exact
violation.  The report goes to ``bench/results/neurodiff_acas_fp16.md``.  Results CSVs are
resumable (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "neurodiff_acas_fp16"
TMP = ROOT / "bench" / "results" / "tmp" / "neurodiff"  # instance lists (absolute paths; not committed)
REPORT = ROOT / "bench" / "results" / "neurodiff_acas_fp16.md"
#: Hand-written notes on the latest run, inserted into the report before its counterexamples (edit this file,
#: not the report: the report is rewritten by every run and by --report-only).
NOTES = OUT / "notes.md"


def shared_dir() -> Path:
    """``../shared`` next to the repository, else ``$HYBRIDQ_SHARED``, else ``/work/shared``."""
    for cand in (ROOT.parent / "shared", Path(os.environ.get("HYBRIDQ_SHARED", "/nonexistent")), Path("/work/shared")):
        if (cand / "data" / "benchmarks" / "neurodiff_acas_fp16" / "pairs.json").is_file():
            return cand
    sys.exit("neurodiff bench: ../shared/data/benchmarks/neurodiff_acas_fp16/pairs.json not found "
             "(set HYBRIDQ_SHARED to the shared folder)")


def load_pairs(only: str | None) -> tuple[list[dict], Path]:
    sh = shared_dir()
    pairs = json.loads((sh / "data" / "benchmarks" / "neurodiff_acas_fp16" / "pairs.json").read_text())
    if only:
        keep = set(only.split(","))
        pairs = [p for p in pairs if p["id"] in keep]
    return pairs, sh / "data" / "networks"


def instance_list(pairs, nets: Path, perturb: str, timeout: float, path: Path) -> Path:
    items = [{"id": p["id"], "network": str(nets / p["network_nnet"]), "box": p["box_raw"], "perturb": perturb,
              "property": "deviation", "delta": p["delta_raw_output"], "outputs": str(p["output"]),
              "timeout": timeout} for p in pairs]
    path.write_text(json.dumps(items, indent=1))
    return path


def run_batch_process(lst: Path, results: Path, jobs: int) -> float:
    """``hybridq run`` in its own process; returns its wall time."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hybridq.cli", "run", str(lst), "-o", str(results), "--jobs", str(jobs),
                    "--backend", "auto"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def read_csv(path: Path) -> dict:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def _server_cpu(server: str) -> float:
    """User + system seconds of the server's children so far (its ``status``); 0 without a server."""
    if server == "off":
        return 0.0
    from hybridq import client

    st = client.control("status", server)
    return st["children_cpu_s"] if st else float("nan")


def per_process(pairs, nets: Path, timeout: float, n: int, path: Path, server: str = "off") -> dict:
    """One ``hybridq verify`` process per pair (``n`` pairs spread evenly; 0: all), with the default
    ``--jobs`` (all cores), as a user would run it; ``server``: the ``HYBRIDQ_SERVER`` socket of a
    running ``hybridq serve`` (``off``: none).  ``wall_s`` from start to exit; ``cpu_s``: user +
    system seconds of the process and its workers, plus the server's child with a server (roughly
    what the wall time would be on an idle machine)."""
    done = read_csv(path)
    pick = pairs if n <= 0 or n >= len(pairs) else [pairs[round(i * (len(pairs) - 1) / (n - 1))] for i in range(n)]
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "exit", "verdict", "wall_s", "cpu_s"])
        if new:
            w.writeheader()
        for p in pick:
            if p["id"] in done:
                continue
            box = ",".join(f"{lo!r}:{hi!r}" for lo, hi in zip(p["box_raw"]["lo"], p["box_raw"]["hi"]))
            cmd = [sys.executable, "-m", "hybridq", "verify", str(nets / p["network_nnet"]), "--perturb",
                   "point:fp16", f"--box={box}", "--delta", repr(p["delta_raw_output"]), "--outputs", str(p["output"]),
                   "--timeout", str(timeout), "--no-progress"]
            c0, b = _server_cpu(server), os.times()
            t = time.perf_counter()
            r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HYBRIDQ_SERVER": server},
                               capture_output=True, text=True)
            wall = time.perf_counter() - t
            a = os.times()
            cpu = (a.children_user - b.children_user) + (a.children_system - b.children_system)
            cpu += _server_cpu(server) - c0
            verdict = (r.stdout.split(":", 1)[0].strip() or "error") if r.returncode in (0, 1, 2) else "error"
            row = {"id": p["id"], "exit": r.returncode, "verdict": verdict, "wall_s": f"{wall:.3f}", "cpu_s": f"{cpu:.3f}"}
            w.writerow(row)
            f.flush()
            done[p["id"]] = row
    return done


def exact_recheck(pair, nets: Path, npz: Path) -> dict:
    """Re-check a counterexample from its ``.npz`` in Fractions (independently of the run):
    the fp16 parameters are recomputed from the network, compared with the file, and the exact
    deviation of the pair's output is evaluated."""
    import numpy as np

    from hybridq import load_network, perturbation

    net = load_network(nets / pair["network_nnet"])
    pert = perturbation("point:fp16", net)
    if npz.is_file():
        z = np.load(npz)
        x = z["x"]
        params = tuple((z[f"W{k}"], z[f"b{k}"]) for k in range(len(net.layers)))
    else:  # the parameter file is not committed: x from the VNN-COMP answer; point:fp16 has one parameter point
        txt = npz.with_suffix(".counterexample").read_text()
        x = np.array([float(m) for m in re.findall(r"\(X_\d+ ([^)\s]+)\)", txt)])
        params = pert.center
    same = all(np.array_equal(W, Wc) and np.array_equal(b, bc) for (W, b), (Wc, bc) in zip(params, pert.center))
    lo, hi = pair["box_raw"]["lo"], pair["box_raw"]["hi"]
    inside = all(Fraction(a) <= Fraction(float(v)) <= Fraction(b) for a, v, b in zip(lo, x, hi))
    j = pair["output"]
    dev = net.exact_logits(x, params)[j] - net.exact_logits(x)[j]
    delta = Fraction(pair["delta_raw_output"])
    return {"x": [float(v) for v in x], "params_are_fp16_copy": same, "inside_box": inside, "deviation": dev,
            "violates": abs(dev) > delta, "normalized": float(dev) / 373.94992}


def med(v):
    return statistics.median(v) if v else float("nan")


def fnum(v, d=3):
    return "" if v is None or v != v else f"{v:.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per pair (default 60)")
    ap.add_argument("--box-timeout", type=float, default=None, help="seconds per pair of the fp16-box run (default: --timeout)")
    ap.add_argument("--only", default=None, help="comma-separated pair ids (default: all 143)")
    ap.add_argument("--per-process", type=int, default=20, help="pairs run as one process each (0: all; -1: none)")
    ap.add_argument("--no-server", action="store_true", help="per-process runs without a server only")
    ap.add_argument("--skip-box", action="store_true", help="skip the fp16-box run")
    ap.add_argument("--skip-point", action="store_true", help="skip the point:fp16 batch run (e.g. box run only)")
    ap.add_argument("--fresh", action="store_true", help="delete earlier results first")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes per query (default 1)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the CSVs (no runs)")
    args = ap.parse_args()
    pairs, nets = load_pairs(args.only)
    OUT.mkdir(parents=True, exist_ok=True)
    TMP.mkdir(parents=True, exist_ok=True)
    files = {k: OUT / f"{k}.csv" for k in ("batch", "process", "process_server", "box")}
    if args.fresh:  # only the CSVs of the runs done now
        for k in [k for k, skip in (("batch", args.skip_point), ("process", args.per_process < 0),
                                    ("process_server", args.per_process < 0 or args.no_server),
                                    ("box", args.skip_box)) if not skip]:
            files[k].unlink(missing_ok=True)
    walls = json.loads((OUT / "walls.json").read_text()) if (OUT / "walls.json").is_file() else {}
    load_before = os.getloadavg()
    t0 = time.time()
    if args.report_only:
        write_report(pairs, nets, read_csv(files["batch"]), read_csv(files["process"]), read_csv(files["box"]), args,
                     walls, 0.0, read_csv(files["process_server"]))
        return
    if not args.skip_point:
        lst = instance_list(pairs, nets, "point:fp16", args.timeout, TMP / "instances_point.json")
        walls["batch"] = run_batch_process(lst, files["batch"], args.jobs)
        walls["batch_load"] = [load_before[0], os.getloadavg()[0]]
        walls["batch_timeout"] = args.timeout
    if args.per_process >= 0:
        la = os.getloadavg()[0]
        per_process(pairs, nets, args.timeout, args.per_process, files["process"])
        walls["process_load"] = [la, os.getloadavg()[0]]
        if not args.no_server:
            la = os.getloadavg()[0]
            with _server() as sock:
                per_process(pairs, nets, args.timeout, args.per_process, files["process_server"], sock)
            walls["process_server_load"] = [la, os.getloadavg()[0]]
    if not args.skip_box:
        la = os.getloadavg()[0]
        lst = instance_list(pairs, nets, "fp16", args.box_timeout or args.timeout, TMP / "instances_box.json")
        walls["box"] = run_batch_process(lst, files["box"], args.jobs)
        walls["box_load"] = [la, os.getloadavg()[0]]
        walls["box_timeout"] = args.box_timeout or args.timeout
    (OUT / "walls.json").write_text(json.dumps(walls, indent=1))
    write_report(pairs, nets, read_csv(files["batch"]), read_csv(files["process"]), read_csv(files["box"]), args,
                 walls, time.time() - t0, read_csv(files["process_server"]))


@contextlib.contextmanager
def _server():
    """A ``hybridq serve`` on a socket in a temporary folder for the duration (stopped after)."""
    folder = Path(tempfile.mkdtemp(prefix="hq-nd-"))
    sock = str(folder / "s.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYBRIDQ_SERVER": sock}
    r = subprocess.run([sys.executable, "-m", "hybridq", "serve", "--idle-timeout", "3600"], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"neurodiff bench: could not start the server: {r.stderr.strip()}")
    try:
        yield sock
    finally:
        subprocess.run([sys.executable, "-m", "hybridq", "serve", "stop"], env=env, cwd=ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def write_report(pairs, nets, batch, proc, box, args, walls, elapsed, proc_srv=None):
    proc_srv = proc_srv or {}
    rows, both_h, both_n, easy_h, easy_n, both_p, both_pn = [], [], [], [], [], [], []
    both_s, both_sn, cpu_p, cpu_s = [], [], [], []
    decided = sum(1 for p in pairs if batch.get(p["id"], {}).get("result") in ("unsat", "sat"))
    proved = sum(1 for p in pairs if batch.get(p["id"], {}).get("result") == "unsat")
    sats = [p for p in pairs if batch.get(p["id"], {}).get("result") == "sat"]
    nd_here = [p for p in pairs if p["neurodiff_here_60s"]]
    nd_proved = sum(1 for p in nd_here if p["neurodiff_here_60s"]["verdict"] == "proved")
    for p in pairs:
        b = batch.get(p["id"], {})
        nh = p["neurodiff_here_60s"] or {}
        nl = p["neurodiff_logged_1800s"]
        t = float(b["time_s"]) if b.get("time_s") else None
        if nh.get("verdict") == "proved" and b.get("result") in ("unsat", "sat"):
            both_h.append(t)
            both_n.append(nh["wall_s"])
            if p["neurodiff_property"] in (3, 4):
                easy_h.append(t)
                easy_n.append(nh["wall_s"])
            if p["id"] in proc and proc[p["id"]]["verdict"] in ("robust", "not_robust"):
                both_p.append(float(proc[p["id"]]["wall_s"]))
                both_pn.append(nh["wall_s"])
                if proc[p["id"]].get("cpu_s"):
                    cpu_p.append(float(proc[p["id"]]["cpu_s"]))
            if p["id"] in proc_srv and proc_srv[p["id"]]["verdict"] in ("robust", "not_robust"):
                both_s.append(float(proc_srv[p["id"]]["wall_s"]))
                both_sn.append(nh["wall_s"])
                if proc_srv[p["id"]].get("cpu_s"):
                    cpu_s.append(float(proc_srv[p["id"]]["cpu_s"]))
        rows.append(p)
    L = []
    L.append("# NeuroDiff's ACAS Xu fp16 benchmark (143 pairs): hybridq vs NeuroDiff\n")
    bl, pl, xl = walls.get("batch_load"), walls.get("process_load"), walls.get("box_load")
    sl = walls.get("process_server_load")
    L.append(f"Generated by `python bench/neurodiff.py` (batch: `hybridq run --jobs {args.jobs}`, "
             f"{walls.get('batch_timeout', args.timeout):g} s per pair; one process per pair: default `--jobs`; "
             f"backend auto), report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(pairs)} pairs.")
    L.append("Load average (1 min) before / after, on " f"{os.cpu_count()} cores shared with other engineers' jobs: "
             + "; ".join(f"{name} {v[0]:.1f} / {v[1]:.1f}" for name, v in (("batch run", bl), ("per-process runs", pl),
                                                                            ("per-process runs with a server", sl),
                                                                            ("fp16-box run", xl)) if v) + ".\n")
    L.append("Question per pair: `--perturb point:fp16` (every weight and bias rounded to float16), the property's "
             "input box in raw units, `|y_j(x; fp16) - y_j(x)| <= 3.7394992` (NeuroDiff's eps 0.01 on normalized "
             "outputs). hybridq's `unsat` is a certificate (outward-rounded bounds), `sat` an exactly re-checked "
             "counterexample. NeuroDiff figures from `pairs.json`: `here` = its 60 s runs on this kind of machine "
             "(2 threads, load 4-7), `logged` = its authors' logs (1800 s, 12 threads).\n")
    L.append("## Summary\n")
    L.append("| | hybridq (batch, one process) | NeuroDiff here (60 s) |")
    L.append("|---|---|---|")
    L.append(f"| decided | {decided} of {len(pairs)} ({proved} proved, {len(sats)} exact counterexamples) | "
             f"{nd_proved} proved of {len(nd_here)} run |")
    if both_h:
        L.append(f"| median per pair, {len(both_h)} pairs both decide | {med(both_h):.3f} s | {med(both_n):.3f} s |")
        L.append(f"| total over those pairs | {sum(both_h):.1f} s | {sum(both_n):.1f} s |")
    if easy_h:
        L.append(f"| median, {len(easy_h)} property 3/4 pairs both decide | {med(easy_h):.3f} s | {med(easy_n):.3f} s |")
    for mode, total, cpu_label, h, n, cpu in (
            ("no server ({k} pairs of those, start-up included)", "no server",
             "median CPU (user + system) per pair, no server", both_p, both_pn, cpu_p),
            ("`hybridq serve` running ({k} pairs, start-up included)", "server running",
             "median CPU per pair, server running (the client's and the server child's)", both_s, both_sn, cpu_s)):
        if h:
            L.append(f"| median per pair, one `hybridq verify` process per pair, {mode.format(k=len(h))} | "
                     f"{med(h):.3f} s | {med(n):.3f} s (same pairs) |")
            L.append(f"| total over those pairs, {total} | {sum(h):.1f} s | {sum(n):.1f} s |")
            if cpu:
                L.append(f"| {cpu_label} | {med(cpu):.3f} s | |")
    L.append("")
    if both_h:
        L.append(f"Ratios against `neurodiff_here_60s` (pairs both decide): median {med(both_n) / med(both_h):.2f}x, "
                 f"total {sum(both_n) / max(sum(both_h), 1e-9):.2f}x (> 1: hybridq faster); "
                 f"hybridq faster on {sum(h < n for h, n in zip(both_h, both_n))} of {len(both_h)} pairs."
                 + (f" One process per pair: median ratio {med(both_pn) / med(both_p):.2f}x without a server"
                    if both_p else "")
                 + (f", {med(both_sn) / med(both_s):.2f}x with `hybridq serve` running (total "
                    f"{sum(both_sn) / max(sum(both_s), 1e-9):.2f}x; faster on "
                    f"{sum(h < n for h, n in zip(both_s, both_sn))} of {len(both_s)})" if both_s else "")
                 + ("." if both_p or both_s else ""))
    L.append(f"The `hybridq run` process took {walls.get('batch', float('nan')):.1f} s in all for {len(pairs)} pairs "
             f"(sum of per-pair times {sum(float(batch[p['id']]['time_s']) for p in pairs if p['id'] in batch):.1f} s; "
             "the rest is process start, imports and loading the kernels, once).\n")
    if box:
        bd = sum(1 for p in pairs if box.get(p["id"], {}).get("result") in ("unsat", "sat"))
        bt = [float(box[p["id"]]["time_s"]) for p in pairs if p["id"] in box]
        L.append(f"Full fp16 rounding box (`--perturb fp16`, every parameter anywhere in its rounding interval; "
                 f"NeuroDiff cannot ask this): decided {bd} of {len(pairs)} "
                 f"({sum(1 for p in pairs if box.get(p['id'], {}).get('result') == 'unsat')} proved, "
                 f"{sum(1 for p in pairs if box.get(p['id'], {}).get('result') == 'sat')} counterexamples), "
                 f"median {med(bt):.3f} s, total {sum(bt):.1f} s, {walls.get('box_timeout', 0):g} s per pair "
                 f"(box run wall {walls.get('box', float('nan')):.1f} s).\n")
    if NOTES.is_file():  # hand-written reading of the run: kept across runs and --report-only
        L.append(NOTES.read_text().rstrip() + "\n")
    L.append("## Counterexamples\n")
    if not sats:
        L.append("None.\n")
    for p in sats:
        npz = Path(batch[p["id"]]["counterexample"][: -len(".counterexample")] + ".npz")
        if not npz.is_file():  # the CSV names the checkout that ran it: the same file in this one
            npz = OUT / npz.parent.name / npz.name
        nd = (p["neurodiff_here_60s"] or {}).get("verdict"), p["neurodiff_logged_1800s"]["verdict"]
        try:
            chk = [exact_recheck(p, nets, npz) for _ in range(2)]
            c = chk[0]
            ok = all(k["violates"] and k["inside_box"] and k["params_are_fp16_copy"] for k in chk)
            L.append(f"- `{p['id']}` (output {p['output']}): x = {c['x']}; exact deviation "
                     f"{float(c['deviation']):.9g} raw ({c['normalized']:.6g} normalized) vs delta "
                     f"{p['delta_raw_output']}; re-checked twice in Fractions: "
                     f"{'violation confirmed, x inside the box, parameters = the fp16 copy' if ok else 'NOT CONFIRMED'}. "
                     f"NeuroDiff here: {nd[0]}, logged: {nd[1]}"
                     + (" -- **contradicts NeuroDiff's logged 'proved'** (its logs used 4-digit decimals of the "
                        "fp16 weights, see the shared README)" if "proved" in nd else "") + ".")
        except (OSError, KeyError, ValueError) as e:
            L.append(f"- `{p['id']}`: could not re-check ({e})")
    L.append("")
    L.append("## Per pair\n")
    L.append("| pair | ND logged 1800 s | ND here 60 s | hybridq batch | s | cells | own process s | with server s | "
             "fp16 box | s |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for p in rows:
        b = batch.get(p["id"], {})
        nh = p["neurodiff_here_60s"] or {}
        nl = p["neurodiff_logged_1800s"]
        pr = proc.get(p["id"], {})
        ps = proc_srv.get(p["id"], {})
        bx = box.get(p["id"], {})
        L.append(f"| {p['id']} | {nl['verdict']} {fnum(nl['time_s'], 2)} | {nh.get('verdict', '-')} "
                 f"{fnum(nh.get('wall_s'), 2)} | {b.get('result', '-')} | {b.get('time_s', '')[:6]} | {b.get('cells', '')} | "
                 f"{pr.get('wall_s', '')[:6]} | {ps.get('wall_s', '')[:6]} | {bx.get('result', '-')} | "
                 f"{bx.get('time_s', '')[:6]} |")
    REPORT.write_text("\n".join(L) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
