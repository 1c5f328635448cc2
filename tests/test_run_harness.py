"""What batch harnesses rely on: SIGTERM ends a run like Ctrl-C (no worker outlives it, the
partial result is written), ``--timeout`` is kept by the whole command, every command has a
default budget, progress lines on a non-terminal stderr, bisection steps have their own budget
and report refuted steps as refuted, and the counts of a run add up (and match the plot)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from processes import alive as _alive, descendants as _children

from hybridq import Decision, Deviation, InputBox, Layer, Network, perturbation, quantify, verify

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from hybridq.cli import main; main()"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _hard_net(path: Path) -> Path:
    """8-64-64-64-1 relu net: a wide input box with a delta near its max deviation keeps the branch
    and bound busy for minutes (neither proved nor refuted quickly)."""
    rng = np.random.default_rng(0)
    dims = [8, 64, 64, 64, 1]
    layers = [Layer(rng.normal(size=(dims[k + 1], dims[k])) / np.sqrt(dims[k]), rng.normal(size=dims[k + 1]) * 0.1,
                    "relu" if k < len(dims) - 2 else "identity") for k in range(len(dims) - 1)]
    Network(tuple(layers)).save(path)
    return path


HARD = ["--perturb", "abs:2e-3", "--box", ",".join(["-1:1"] * 8), "--delta", "1.0", "--backend", "none"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to list child processes")
def test_sigterm_ends_workers_and_writes_the_partial_result(tmp_path):
    net = _hard_net(tmp_path / "hard.npz")
    out = tmp_path / "r.json"
    p = subprocess.Popen(CLI + ["verify", str(net), *HARD, "--jobs", "2", "--timeout", "600", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        t0, kids = time.monotonic(), set()
        while time.monotonic() - t0 < 240 and p.poll() is None:  # until both workers run
            kids = _children(p.pid)
            if len(kids) >= 3:  # resource tracker + 2 workers
                break
            time.sleep(0.5)
        assert p.poll() is None and len(kids) >= 3, "the run ended or started no workers"
        time.sleep(1.0)
        kids = _children(p.pid)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
        time.sleep(5.0)
        assert [k for k in kids if _alive(k)] == [], "a child process outlived the run"
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 2, (stdout, stderr)
    assert stdout.startswith("unknown:") and "interrupted" in stdout and "Traceback" not in stderr
    doc = json.loads(out.read_text())
    res = doc["result"]
    assert res["verdict"] == "unknown" and res["stats"]["interrupted"] and res["stats"]["cells"] >= 1


def test_worker_exits_when_its_parent_is_gone(tmp_path):
    """A worker whose parent died without shutting the pool down (SIGKILL) ends by itself."""
    script = tmp_path / "orphan.py"
    script.write_text(
        "import os, sys, time, threading\n"
        "from hybridq.bab.executors import _watch_parent\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.close(1)\n"
        "    os.close(2)\n"
        "    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()\n"
        "    time.sleep(60)\n"
        "    os._exit(3)\n"
        "print(pid, flush=True)\n"
        "os._exit(0)\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=_env())
    child = int(r.stdout.split()[0])
    while _alive(child) and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert not _alive(child) and time.monotonic() - t0 < 30  # long before its own 60 s sleep ends


def test_timeout_is_kept_by_the_whole_command(tmp_path):
    """The verdict line comes within T + 2 s of the start of the command (counted from the
    process start, imports and output writing included)."""
    net = _hard_net(tmp_path / "hard.npz")
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    r = subprocess.run(CLI + ["verify", str(net), *HARD, "--jobs", "2", "--timeout", "8", "--json", str(out),
                              "--no-progress"], capture_output=True, text=True, timeout=120, env=_env())
    took = time.monotonic() - t0
    assert r.returncode == 2 and r.stdout.startswith("unknown:") and "timeout after 8 s" in r.stdout, r
    assert out.exists()
    # the process itself keeps T + 2 s; 1 s more for the parent's fork/exec and interpreter launch
    assert took < 8 + 2 + 1.0, took


def test_every_command_has_a_documented_default_budget(capsys, tmp_path):
    from hybridq.cli import DEFAULT_TIMEOUT, _run_config, app
    from typer.testing import CliRunner

    assert _run_config({}, None, 1, None, None, "verify").timeout == DEFAULT_TIMEOUT["verify"] == 300.0
    assert _run_config({}, None, 1, None, None, "quantify").timeout == DEFAULT_TIMEOUT["quantify"] == 600.0
    assert _run_config({"timeout": 7}, None, 1, None, None, "verify").timeout == 7.0
    assert _run_config({}, None, 1, 9.0, None, "quantify").timeout == 9.0
    helps = {c: CliRunner().invoke(app, [c, "--help"], terminal_width=200).output for c in ("verify", "quantify", "run")}
    assert "300" in helps["verify"] and "600" in helps["quantify"] and "default 300" in helps["run"]
    assert DEFAULT_TIMEOUT["run"] == 300.0


def _nonterminal_progress(tmp_path, monkeypatch):
    import hybridq.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.0)
    _, cb = cli._progress_cb(True)
    return cb


def test_progress_lines_on_a_non_terminal_stderr(capfd, tmp_path, monkeypatch):
    net = _hard_net(tmp_path / "hard.npz")
    code = None
    with pytest.raises(SystemExit) as e:
        from hybridq.cli import main

        monkeypatch.setattr("hybridq.cli.PROGRESS_EVERY", 0.0)
        main(["verify", str(net), *HARD, "--jobs", "1", "--timeout", "4"])
    code = e.value.code
    out, err = capfd.readouterr()
    lines = [l for l in err.splitlines() if l.startswith("hybridq: progress: ")]
    assert code == 2 and len(lines) >= 2, err
    # cells, proved, pending, elapsed on every line; the counts grow
    import re

    pat = re.compile(r"(\d+) cells examined \((\d+) proved, (\d+) refuted, (\d+) split\), (\d+) pending, "
                     r"decided [\d.]+%, ([\d.]+) s")
    parsed = [pat.search(l) for l in lines]
    assert all(parsed), lines
    cells = [int(m.group(1)) for m in parsed]
    assert cells == sorted(cells) and cells[-1] > cells[0]


def _net2(seed=3):
    rng = np.random.default_rng(seed)
    w = (2, 6, 6, 1)
    return Network(tuple(Layer(rng.normal(0, 0.7, (w[k + 1], w[k])), rng.normal(0, 0.2, w[k + 1]),
                               "relu" if k < len(w) - 2 else "identity") for k in range(len(w) - 1)))


@pytest.mark.parametrize("delta, timeout", [(0.8, None), (0.74, 0.3)])  # max deviation 0.778628...
def test_counts_add_up_and_match_the_plot(tmp_path, delta, timeout):
    from hybridq.plot import plot_cells

    net = _net2()
    # the timed-out run: delta below the maximum (never proved) and only the root's one-sample attack
    # (which misses it, deterministically): unknown with cells pending, however fast the machine
    weak = dict(attack_samples=1, attack_steps=0, attack_restarts=1, attack_screen=0, attack_every=1000)
    res = verify(net, perturbation("abs:0.02", net), InputBox([-1.0, -1.0], [1.0, 1.0]), Deviation(delta),
                 backend="none", jobs=1, timeout=timeout, **(weak if timeout is not None else {}))
    if timeout is not None:
        assert res.verdict == "unknown" and res.stats.pending > 0
    s = res.stats
    assert s.cells == s.proved_bounds + s.proved_smt + s.refuted + s.splits_input + s.splits_phase + s.open
    assert s.splits_input + s.splits_phase >= 1  # a real branch and bound
    assert len(res.leaves) == s.leaves == s.cells - s.split + s.pending
    summary = plot_cells(res, tmp_path / "m.png")
    assert summary.counts == {"bounds": s.proved_bounds, "smt": s.proved_smt, "counterexample": s.refuted,
                              "open": s.open + s.pending}
    line = res.summary()
    assert f"{s.cells} cells examined ({s.proved_bounds} proved by bounds, {s.proved_smt} by SMT, " \
           f"{s.refuted} refuted, {s.split} split, {s.open} open)" in line
    d = res.to_dict()["stats"]
    assert d["cells"] == s.cells and d["pending"] == s.pending


def test_decided_fraction_and_undecided_share_on_784_inputs():
    rng = np.random.default_rng(1)
    net = Network((Layer(rng.normal(0, 0.05, (10, 784)), np.zeros(10), "relu"),
                   Layer(rng.normal(0, 0.3, (2, 10)), np.zeros(2), "identity")))
    x = rng.uniform(0, 1, 784)
    box = InputBox.ball(x, 0.01)
    assert box.volume == 0.0  # 0.02**784 underflows: why fractions are computed in log space
    res = verify(net, perturbation("abs:1e-4", net), box, Deviation(1.0), backend="none", jobs=1)
    assert res.verdict == "robust" and res.stats.decided_fraction == 1.0
    assert res.stats.undecided_fraction == 0.0
    assert res.stats.log10_total_volume == pytest.approx(784 * np.log10(0.02), rel=1e-9)
    res = verify(net, perturbation("abs:1e-4", net), box, Deviation(1.0), backend="none", jobs=1, timeout=1e-9)
    assert res.verdict == "unknown" and res.stats.pending == 1 and res.stats.undecided_fraction == 1.0


def test_bisection_steps_have_a_budget_and_refuted_steps_say_so():
    net = _net2()
    x = np.array([0.3, -0.2])
    label = int(net.predict(x))
    q = quantify(net, None, InputBox.ball(x, 0.05), Decision(label), what="epsilon", family="abs",
                 backend="none", jobs=1, eps_range=(1e-6, 10.0), step_timeout=5.0)
    # abs:10 flips the decision: a counterexample, reported as a refutation, not "not proved"
    assert q.steps[0]["epsilon"] == 10.0 and q.steps[0]["verdict"] == "not_robust"
    if q.not_proved_verdict == "not_robust":
        assert "refuted (counterexample) at" in q.summary()
    else:
        assert "not proved at" in q.summary()
    assert all(st["seconds"] < 5.0 + 2.0 for st in q.steps)
    from hybridq.errors import ConfigError

    with pytest.raises(ConfigError, match="step_timeout"):
        quantify(net, None, InputBox.ball(x, 0.05), Decision(label), what="epsilon", step_timeout=-1)


def test_default_step_budget_is_a_share_of_the_overall_budget(monkeypatch):
    import importlib

    qm = importlib.import_module("hybridq.quantify")  # the module (hybridq.quantify is the function)

    seen = []
    orig = qm._run_step

    def spy(network, spec, inputs, prop, cfg, t_end, progress, step_timeout=None, client=None):
        seen.append(step_timeout)
        return orig(network, spec, inputs, prop, cfg, t_end, progress, step_timeout, client)

    monkeypatch.setattr(qm, "_run_step", spy)
    net = _net2()
    x = np.array([0.3, -0.2])
    quantify(net, None, InputBox.point(x), Decision(int(net.predict(x))), what="epsilon", backend="none", jobs=1,
             timeout=80.0, max_steps=3)
    assert seen and all(s == 80.0 / qm.STEP_SHARE for s in seen)


def test_cache_marker_follows_numba_cache_dir(monkeypatch, tmp_path):
    """With ``NUMBA_CACHE_DIR`` set, numba caches elsewhere, so the marker that says "compiled before"
    must live there too: an empty cache folder then gets the compilation notice."""
    from numba.core import config

    from hybridq.kernels import common

    default = common._stamp_file()
    assert default.startswith(common._PKG_DIR)
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    moved = common._stamp_file()
    assert os.path.dirname(moved) == str(tmp_path) and moved != default
    assert common._cache_lines() == []  # nothing recorded in the new folder: not warm
    assert not common._cache_looks_warm("interval_pass_serial")


def test_kernel_compilation_is_announced_once_and_not_when_cached(monkeypatch, tmp_path, caplog):
    """An entry point that takes longer than COMPILE_NOTICE_AFTER to build logs one notice (the
    first call after install compiles for minutes); one recorded as cached under the same package
    stamp does not, however slowly it loads on a busy machine.  (numba's ``njit`` is replaced by a
    slow stand-in: the real cold compile takes minutes.)"""
    import logging

    from hybridq.kernels import common

    monkeypatch.setattr(common, "COMPILE_NOTICE_AFTER", 0.05)
    monkeypatch.setattr(common, "_announced", [])
    monkeypatch.setattr(common, "_stamp_file", lambda: str(tmp_path / "stamp"))

    def slow_njit(sig, **opts):
        def build(fn):
            time.sleep(0.3)
            return fn
        return build

    monkeypatch.setattr(common, "njit", slow_njit)

    def twice(x):
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="hybridq.kernels.common"):
        entry = common._Entry(twice, "f8(f8)", {})
        assert entry(2.0) == 4.0 and entry(3.0) == 6.0  # built once, then called directly
        notices = [r for r in caplog.records if "compiling the numba kernels" in r.getMessage()]
        assert len(notices) == 1
        assert common._cache_looks_warm("twice")  # recorded under the current package stamp
        caplog.clear()
        monkeypatch.setattr(common, "_announced", [])
        again = common._Entry(twice, "f8(f8)", {})
        assert again(1.0) == 2.0
        assert not [r for r in caplog.records if "compiling the numba kernels" in r.getMessage()]


def test_run_gives_instances_without_a_timeout_the_default_budget(tmp_path, monkeypatch):
    """``hybridq run``: an instance list without timeouts gets 300 s per instance (not unlimited)."""
    import importlib

    from hybridq.cli import DEFAULT_TIMEOUT, main

    batch = importlib.import_module("hybridq.batch")
    seen = {}

    def fake_run_batch(insts, results, cfg, defaults, cex_dir, on_result=None, **kw):
        seen.update(defaults)

    monkeypatch.setattr(batch, "run_batch", fake_run_batch)
    net = tmp_path / "n.npz"
    Network((Layer([[1.0]], [0.0], "identity"),)).save(net)
    lst = tmp_path / "list.csv"
    lst.write_text(f"id,network,box\na,{net},0:1\n")
    with pytest.raises(SystemExit) as e:
        main(["run", str(lst), "--perturb", "fp16", "--delta", "1", "-o", str(tmp_path / "r.csv")])
    assert e.value.code in (0, None) and seen["timeout"] == DEFAULT_TIMEOUT["run"] == 300.0
    seen.clear()
    with pytest.raises(SystemExit):
        main(["run", str(lst), "--perturb", "fp16", "--delta", "1", "-o", str(tmp_path / "r.csv"), "--timeout", "7"])
    assert seen["timeout"] == 7.0
