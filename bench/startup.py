"""Start-up times of the ``hybridq`` command (issue 11, issue 12).

Measures, each as a fresh process (median of ``--repeat`` runs, warm file-system and numba caches):

* ``--version`` and ``--help``;
* an input error (a missing network file): one line on stderr, exit 3;
* a small ``verify`` (a 2-4-1 network, a point, ``--jobs 1``): the whole wall time, and the time
  from the process start to the moment the branch and bound starts its own work (when
  :func:`hybridq.bounds.load_kernels`, the last start-up step of
  :func:`hybridq.bab.scheduler.run_bab`, returns; stamped by a wrapper; the process start is read
  from ``/proc/self/stat``), in wall and CPU seconds;
* with ``--cold``: the first call after install, i.e. with an empty numba cache (a copy of the
  package in a temporary folder, so the project's cache is left alone); this takes minutes;
* the console entry point (``python -m hybridq``, what the ``hybridq`` command runs) without a server
  (``HYBRIDQ_SERVER=off``: the client module, then the CLI in-process) and with a ``hybridq serve``
  running on a temporary socket (the command is forwarded to a forked child of the warm server): the
  small verify and the input error.  CPU there is the client's plus the server child's (from the
  server's ``status``: ``children_cpu_s``).

Targets: --version / --help / input error under 0.3 s; a small verify starts its work within 1 s.
Usage: ``python bench/startup.py [--repeat 5] [--cold] [--out bench/results/startup.md]``.
The machine's load (``os.getloadavg``) is printed with the numbers: on a shared 2-core machine
they move with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# runs the CLI like the console script, with run_bab wrapped to print when its work starts
_STAMP = r"""
import os, sys, time
def _age():
    with open('/proc/self/stat') as f:
        ticks = int(f.read().rpartition(')')[2].split()[19])
    with open('/proc/uptime') as f:
        return float(f.read().split()[0]) - ticks / os.sysconf('SC_CLK_TCK')
import importlib
bounds = importlib.import_module('hybridq.bounds')
_orig = bounds.load_kernels
def load_kernels(*a, **k):  # the run's own work starts once its kernels are loaded
    _orig(*a, **k)
    sys.stderr.write(f'BENCH work starts at {_age():.3f} s cpu {time.process_time():.3f} s\n')
bounds.load_kernels = load_kernels
from hybridq.cli import main
sys.argv[0] = 'hybridq'
main()
"""


def _net(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from hybridq import Layer, Network

    Network((Layer([[1.0, -1.0], [0.5, 0.25], [-0.3, 0.8], [0.2, 0.1]], [0.0, 0.1, 0.0, -0.1], "relu"),
             Layer([[1.0, 1.0, -0.5, 0.3]], [0.0], "identity"))).save(path)


def _server_cpu(env: dict) -> float:
    from hybridq import client

    old = os.environ.get("HYBRIDQ_SERVER")
    os.environ["HYBRIDQ_SERVER"] = env["HYBRIDQ_SERVER"]
    try:
        st = client.control("status")
    finally:
        if old is None:
            os.environ.pop("HYBRIDQ_SERVER")
        else:
            os.environ["HYBRIDQ_SERVER"] = old
    return st["children_cpu_s"] if st else 0.0


def _time(cmd: list[str], env: dict, stamp: bool = False, cwd=None):
    """``(wall s, work start s, work start CPU s, CPU s of the whole process, exit code, output)``."""
    t0 = time.perf_counter()
    before = os.times()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    work = work_cpu = None
    if stamp:
        for line in r.stderr.splitlines():
            if line.startswith("BENCH work starts at"):
                work, work_cpu = float(line.split()[4]), float(line.split()[7])
    return wall, work, work_cpu, cpu, r.returncode, r.stdout + r.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="also time the first call with an empty numba cache")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    py = sys.executable
    cli = [py, "-c", "import sys; sys.argv[0] = 'hybridq'; from hybridq.cli import main; main()"]
    tmp = Path(tempfile.mkdtemp(prefix="hq-startup-"))
    net = tmp / "small.npz"
    _net(net)
    small = ["verify", str(net), "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1",
             "--no-progress"]
    cases = {
        "--version": (cli + ["--version"], False),
        "--help": (cli + ["--help"], False),
        "input error (missing network)": (cli + ["verify", str(tmp / "missing.nnet"), "--perturb", "fp16",
                                                  "--point", "0", "--delta", "1"], False),
        "small verify (2-4-1, point, --jobs 1)": ([py, "-c", _STAMP] + small, True),
    }
    entry = [py, "-m", "hybridq"]
    error = ["verify", str(tmp / "missing.nnet"), "--perturb", "fp16", "--point", "0", "--delta", "1"]
    sock_dir = Path(tempfile.mkdtemp(prefix="hq-serve-"))
    senv = dict(env, HYBRIDQ_SERVER=str(sock_dir / "s.sock"))
    offenv = dict(env, HYBRIDQ_SERVER="off")
    served = {  # name -> (command, environment, server running)
        "console entry, no server: small verify": (entry + small, offenv, False),
        "console entry, no server: input error": (entry + error, offenv, False),
        "server running: small verify": (entry + small, senv, True),
        "server running: input error": (entry + error, senv, True),
    }
    _time(cli + ["--version"], env)  # warm the file-system and numba caches
    _time([py, "-c", _STAMP] + small, env, True)
    rows = []
    med = statistics.median
    load0 = os.getloadavg()[0]
    for name, (cmd, stamp) in cases.items():
        walls, works, wcpus, cpus, code = [], [], [], [], 0
        for _ in range(args.repeat):
            w, k, kc, c, code, text = _time(cmd, env, stamp)
            walls.append(w)
            cpus.append(c)
            if k is not None:
                works.append(k)
                wcpus.append(kc)
        rows.append((name, med(walls), min(walls), med(cpus), med(works) if works else None,
                     med(wcpus) if wcpus else None, code))
    r = subprocess.run(entry + ["serve", "--idle-timeout", "600"], env=senv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"could not start the server: {r.stderr.strip()}")
    try:
        for name, (cmd, cenv, server) in served.items():
            _time(cmd, cenv)  # the first forwarded command (or the first fallback) is not special, but keep it out
            walls, cpus, code = [], [], 0
            for _ in range(args.repeat):
                c0 = _server_cpu(senv) if server else 0.0
                w, k, kc, c, code, text = _time(cmd, cenv)
                walls.append(w)
                cpus.append(c + ((_server_cpu(senv) - c0) if server else 0.0))
            rows.append((name, med(walls), min(walls), med(cpus), None, None, code))
    finally:
        subprocess.run(entry + ["serve", "stop"], env=senv, capture_output=True)
        shutil.rmtree(sock_dir, ignore_errors=True)
    if args.cold:
        pkg = tmp / "cold"
        shutil.copytree(ROOT / "hybridq", pkg / "hybridq", ignore=shutil.ignore_patterns("__pycache__"))
        cenv = dict(os.environ, PYTHONPATH=str(pkg))
        # run from the copy's folder: ``python -c`` puts the working directory first on sys.path
        w, k, kc, c, code, text = _time([py, "-c", _STAMP] + small, cenv, True, cwd=pkg)
        notice = "compiling the numba kernels" in text
        rows.append((f"cold first call (empty numba cache; notice on stderr: {'yes' if notice else 'no'})",
                     w, w, c, k, kc, code))
    load1 = os.getloadavg()[0]
    lines = [f"hybridq start-up, {time.strftime('%Y-%m-%d %H:%M')}, load average {load0:.1f} -> {load1:.1f} "
             f"on {os.cpu_count()} cores, median of {args.repeat} (min in brackets); CPU = user + system "
             "seconds of the process (what an idle machine's wall time would be, roughly; with a server: "
             "the client's plus the server child's)", "",
             "| command | wall s (min) | CPU s | work starts at s (CPU s) | exit |", "|---|---|---|---|---|"]
    for name, med, mn, cpu, work, wcpu, code in rows:
        ws = "" if work is None else f"{work:.3f} ({wcpu:.3f})"
        lines.append(f"| {name} | {med:.3f} ({mn:.3f}) | {cpu:.3f} | {ws} | {code} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
