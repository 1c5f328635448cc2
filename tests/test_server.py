"""``hybridq serve``: forwarded commands behave exactly like in-process ones (outputs, files, exit
codes, SIGTERM), and every failure of the handshake falls back to an in-process run.

One server (module fixture) on a socket in a private temporary folder (``HYBRIDQ_SERVER``); the
teardown stops it and checks that its process is gone.  Forwarded runs are ``python -m hybridq``
subprocesses (the console entry point); the server's ``served`` count tells whether a command was
really forwarded.  The in-process reference runs call :func:`hybridq.cli.main` in this process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from processes import alive as _alive, as_in_a_terminal
from hybridq import Layer, Network
from hybridq import client as C

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/stat").exists(),
                                reason="the server forks per request and reads /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]
HARD = ["--perturb", "abs:2e-3", "--box", ",".join(["-1:1"] * 8), "--delta", "1.0", "--backend", "none", "--jobs", "1"]


def _env(sock: str | Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDQ_VERBOSE"}
    env.update(HYBRIDQ_SERVER=str(sock), **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _hybridq(args, env, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hybridq", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def server():
    """A running server: ``(socket path, its pid)``; stopped (and checked gone) at the end."""
    folder = Path(tempfile.mkdtemp(prefix="hqs-"))  # short: a Unix socket path has at most 107 bytes
    sock = folder / "s.sock"
    r = _hybridq(["serve", "--idle-timeout", "600"], _env(sock), timeout=900)
    assert r.returncode == 0, r.stderr
    st = C.control("status", str(sock))
    assert st is not None and st["stamp"]["package"] == str(ROOT / "hybridq")
    pid = st["pid"]
    try:
        yield sock, pid
    finally:
        r = _hybridq(["serve", "stop"], _env(sock))
        t0 = time.monotonic()
        while _alive(pid) and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        assert not _alive(pid) and r.returncode == 0, "the server outlived 'hybridq serve stop'"
        assert not sock.exists()
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def _served(sock) -> int:
    return C.control("status", str(sock))["served"]


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("nets")
    small = Network((Layer([[1.0, -1.0], [0.5, 0.25], [-0.3, 0.8], [0.2, 0.1]], [0.0, 0.1, 0.0, -0.1], "relu"),
                     Layer([[1.0, 1.0, -0.5, 0.3]], [0.0], "identity")))
    small.save(d / "small.npz")
    rng = np.random.default_rng(0)
    dims = [8, 64, 64, 64, 1]  # keeps the branch and bound busy for minutes on HARD
    Network(tuple(Layer(rng.normal(size=(dims[k + 1], dims[k])) / np.sqrt(dims[k]), rng.normal(size=dims[k + 1]) * 0.1,
                        "relu" if k < len(dims) - 2 else "identity") for k in range(len(dims) - 1))).save(d / "hard.npz")
    return {"small": d / "small.npz", "hard": d / "hard.npz", "dir": d}


_SECONDS = re.compile(r"\d+\.\d+ s\b")


def _mask(text: str) -> str:
    """The run's own timings are the only thing that may differ between two runs."""
    return _SECONDS.sub("T s", text)


def _doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    res = doc["result"]
    if "stats" in res:  # verify / quantify: the stages' seconds
        res["stats"].pop("time")
        res["summary"] = _mask(res["summary"])
    return doc


CASES = {  # name -> (argv with {small} / {out}, exit code)
    "robust": (["verify", "{small}", "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1",
                "--json", "{out}.json"], 0),
    "not_robust": (["verify", "{small}", "--perturb", "abs:0.2", "--box", "0:1,0:1", "--delta", "0.05", "--jobs", "1",
                    "--json", "{out}.json", "--counterexample", "{out}.npz"], 1),
    "bounds": (["bounds", "{small}", "--perturb", "int8", "--box", "0:1,-1:1", "--json", "{out}.json"], 0),
    "missing network": (["verify", "{out}.nnet", "--perturb", "fp16", "--point", "0", "--delta", "1"], 3),
    "bad option": (["verify", "{small}", "--perturb", "fp16", "--point", "0,0", "--delta", "x"], 3),
    "usage error": (["bounds", "{small}", "--no-such-option"], 3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forwarded_command_matches_in_process(server, nets, capsys, name):
    sock, _ = server
    argv, code = CASES[name]
    d = nets["dir"]

    def fill(tag):
        return [a.format(small=nets["small"], out=d / f"{name.replace(' ', '_')}_{tag}") for a in argv]

    n0 = _served(sock)
    fwd = _hybridq(fill("server"), _env(sock))
    assert _served(sock) == n0 + 1, "the command was not forwarded"
    ref_code, ref_out, ref_err = run_cli(capsys, *fill("local"))
    assert (fwd.returncode, ref_code) == (code, code), (fwd.stdout, fwd.stderr, ref_err)
    assert _mask(fwd.stdout.replace("_server", "_local")) == _mask(ref_out)
    assert fwd.stderr.replace("_server", "_local") == ref_err
    if "{out}.json" in argv:
        a, b = _doc(d / f"{name}_server.json"), _doc(d / f"{name}_local.json")
        assert json.dumps(a).replace("_server", "_local") == json.dumps(b)
    if "{out}.npz" in argv:
        with np.load(d / f"{name}_server.npz") as za, np.load(d / f"{name}_local.npz") as zb:
            assert sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)


def test_relative_paths_and_files_use_the_clients_directory(server, nets, tmp_path):
    sock, _ = server
    (tmp_path / "net.npz").write_bytes(nets["small"].read_bytes())
    r = _hybridq(["verify", "net.npz", "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1",
                  "--json", "out.json"], _env(sock), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("robust:"), r.stderr
    assert json.loads((tmp_path / "out.json").read_text())["result"]["verdict"] == "robust"


def _wait_running(sock, n: int, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while C.control("status", str(sock))["running"] != n:
        assert time.monotonic() - t0 < timeout, f"the server never had {n} command(s) running"
        time.sleep(0.05)


def test_sigterm_to_the_client_ends_the_command_like_in_process(server, nets, tmp_path):
    sock, _ = server
    out = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "hybridq", "verify", str(nets["hard"]), *HARD, "--timeout", "300",
                          "--json", str(out)], env=_env(sock), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_running(sock, 1)
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 2, (stdout, stderr)
    assert stdout.startswith("unknown:") and "interrupted (SIGTERM)" in stdout and "Traceback" not in stderr
    res = json.loads(out.read_text())["result"]
    assert res["verdict"] == "unknown" and res["stats"]["interrupted"] and res["stats"]["cells"] >= 1
    _wait_running(sock, 0, 10)


def test_a_killed_client_takes_its_command_with_it(server, nets):
    sock, _ = server
    p = subprocess.Popen([sys.executable, "-m", "hybridq", "verify", str(nets["hard"]), *HARD, "--timeout", "300"],
                         env=_env(sock), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_running(sock, 1)
        p.kill()  # no chance to forward anything: the server sees the connection close
        p.wait(10)
        _wait_running(sock, 0, 30)
    finally:
        if p.poll() is None:
            p.kill()


def test_absent_server_runs_in_process(nets, tmp_path):
    folder = tmp_path / "none"
    folder.mkdir(mode=0o700)
    for sock in (folder / "s.sock", "off"):
        r = _hybridq(["verify", nets["small"], "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01",
                      "--jobs", "1"], _env(sock, HYBRIDQ_VERBOSE="1" if sock != "off" else "0"))
        assert r.returncode == 0 and r.stdout.startswith("robust:"), r.stderr
        assert r.stderr == ""  # nothing to say: there is no server


def test_a_dead_servers_socket_is_ignored(nets, tmp_path):
    import socket

    folder = Path(tempfile.mkdtemp(prefix="hqd-"))
    sock = folder / "s.sock"
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(sock))
        s.close()  # the socket file stays, nobody listens (a killed server)
        r = _hybridq(["verify", nets["small"], "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01",
                      "--jobs", "1"], _env(sock, HYBRIDQ_VERBOSE="1"))
        assert r.returncode == 0 and r.stdout.startswith("robust:")
        assert r.stderr.startswith("hybridq: no server at") and r.stderr.strip().endswith("running in-process")
    finally:
        sock.unlink()
        folder.rmdir()


def test_refused_commands_run_in_process(server, nets):
    """Another hybridq (stamp) or another numba environment: the server refuses, the client runs the
    command itself, and the result is the same."""
    sock, _ = server
    n0 = _served(sock)
    stamp = dict(C.stamp(), mtime_ns=1)
    assert C.forward(["verify", str(nets["small"])], str(sock), header_stamp=stamp) is None
    r = _hybridq(["verify", nets["small"], "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1"],
                 _env(sock, NUMBA_NUM_THREADS="1", HYBRIDQ_VERBOSE="1"))
    assert r.returncode == 0 and r.stdout.startswith("robust:")
    assert "NUMBA_NUM_THREADS differs" in r.stderr and r.stderr.count("\n") == 1
    assert _served(sock) == n0
    assert C.control("status", str(sock)) is not None  # a foreign client does not stop the server


def test_unsafe_socket_folder_is_not_used(nets, tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    env = _env(folder / "s.sock", HYBRIDQ_VERBOSE="1")
    r = _hybridq(["verify", nets["small"], "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1"],
                 env)
    assert r.returncode == 0 and "others cannot write to" in r.stderr
    r = _hybridq(["serve"], env)
    assert r.returncode == 3 and r.stderr.startswith("hybridq: error:") and "others cannot write to" in r.stderr


def test_serve_status_start_again_and_stop(server):
    sock, pid = server
    r = _hybridq(["serve", "status"], _env(sock))
    assert r.returncode == 0 and f"pid {pid}" in r.stdout
    r = _hybridq(["serve"], _env(sock))  # a second start finds the running one
    assert r.returncode == 0 and "already running" in r.stdout and f"pid {pid}" in r.stdout
    folder = Path(tempfile.mkdtemp(prefix="hqn-"))
    try:
        r = _hybridq(["serve", "status"], _env(folder / "s.sock"))
        assert r.returncode == 1 and "no hybridq server" in r.stdout
        r = _hybridq(["serve", "stop"], _env(folder / "s.sock"))
        assert r.returncode == 1
    finally:
        folder.rmdir()


def test_a_terminal_stays_a_terminal(server, nets):
    """The child writes to the client's own terminal: the progress bar (drawn only on a terminal
    stderr) reaches it."""
    import pty
    import select

    sock, _ = server
    n0 = _served(sock)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "hybridq", "verify", str(nets["small"]), "--perturb", "fp16", "--point",
                          "0.5,0.25", "--delta", "0.01", "--jobs", "1"], env=_env(sock), stdout=subprocess.PIPE,
                         stderr=slave)
    os.close(slave)
    seen = b""
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the last writer closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif p.poll() is not None:
                break
        out = p.stdout.read()
        p.wait(30)
    finally:
        os.close(master)
        p.stdout.close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and out.startswith(b"robust:") and _served(sock) == n0 + 1
    assert b"\x1b[?25l" in seen and b"branch and bound" in seen  # rich hid the cursor and drew its bar


def test_a_server_refuses_stale_sources_and_other_checkouts(nets):
    """The server compares the client's stamp with its own: its own sources edited since it started
    is 'stale' (it then exits), another folder or Python is 'a different hybridq'."""
    from hybridq.server import Server, _Request

    req = _Request(None)
    req.fds = [0, 1, 2]
    req.header = {"protocol": C.PROTOCOL, "stamp": C.stamp(), "env": dict(os.environ)}
    srv = Server("/nonexistent/s.sock", None)
    assert srv._refusal(req) is None
    srv.stamp = dict(srv.stamp, mtime_ns=srv.stamp["mtime_ns"] - 1)  # started before the last edit
    assert srv._refusal(req).startswith("stale")
    srv = Server("/nonexistent/s.sock", None)
    req.header["stamp"] = dict(C.stamp(), package="/elsewhere/hybridq")
    assert srv._refusal(req) == "a different hybridq or Python (package)"
    req.header["stamp"] = C.stamp()
    req.header["env"] = dict(os.environ, OMP_NUM_THREADS="7")
    assert srv._refusal(req) == "environment variable OMP_NUM_THREADS differs from the server's"
    req.header["env"] = dict(os.environ)
    soft, hard = C.rlimits()["RLIMIT_NOFILE"]
    if hard != -1:  # a child cannot raise its hard limit above the server's
        req.header["rlimits"] = {"RLIMIT_NOFILE": [soft, hard + 1]}
        assert srv._refusal(req) == "RLIMIT_NOFILE is above the server's hard limit (a child cannot raise it)"
    req.header["rlimits"] = {"RLIMIT_NOFILE": [min(soft, 64), min(hard, 64) if hard != -1 else 64]}
    assert srv._refusal(req) is None  # lower limits are the child's to take


def test_a_foreground_server_exits_when_idle():
    folder = Path(tempfile.mkdtemp(prefix="hqi-"))
    sock = folder / "s.sock"
    p = subprocess.Popen([sys.executable, "-m", "hybridq", "serve", "--foreground", "--idle-timeout", "1"],
                         env=_env(sock), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while C.control("status", str(sock)) is None:
            assert p.poll() is None and time.monotonic() - t0 < 600, "the server did not come up"
            time.sleep(0.05)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "idle for 1 s: exiting" in err and not sock.exists()
    finally:
        if p.poll() is None:
            p.kill()
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def test_the_clients_resource_limits_hold_for_the_command(server, nets):
    """``ulimit -t 1`` (RLIMIT_CPU) on the client: the command is killed by SIGXCPU after one CPU
    second, as it would be in the client's own process, and the client dies by the same signal."""
    import resource

    sock, _ = server
    n0 = _served(sock)

    def limit():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (1, 2))

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hybridq", "verify", str(nets["hard"]), *HARD, "--timeout", "300"],
                       env=_env(sock), capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.returncode == -signal.SIGXCPU and _served(sock) == n0 + 1, (r.returncode, r.stderr)
    assert time.monotonic() - t0 < 60
    _wait_running(sock, 0, 10)


def test_the_forwarding_client_imports_nothing_heavy(server, nets):
    """Before (and while) forwarding, the client imports the standard library and hybridq.client
    only: no numpy, numba, scipy, typer (``python -X importtime`` lists every module it imports)."""
    sock, _ = server
    n0 = _served(sock)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "hybridq", "verify", str(nets["small"]), "--perturb",
                        "fp16", "--point", "0.5,0.25", "--delta", "0.01", "--jobs", "1"], env=_env(sock),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("robust:") and _served(sock) == n0 + 1
    mods = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "hybridq.client" in mods
    heavy = {m for m in mods if m.split(".")[0] in ("numpy", "numba", "scipy", "typer", "click", "pydantic", "rich")}
    assert not heavy, heavy
    ours = {m for m in mods if m.startswith("hybridq")}
    assert ours <= {"hybridq", "hybridq.errors", "hybridq.client", "hybridq.__main__"}, ours


def test_client_exits_like_a_child_killed_by_sigkill():
    """A forwarded child killed by SIGKILL (the OOM killer, ``ulimit -t``'s hard limit): the client
    dies by SIGKILL too, as the command would have in its own process (it crashed with exit 1:
    SIGKILL's disposition cannot be set)."""
    r = subprocess.run([sys.executable, "-c", "from hybridq.client import _exit_with; _exit_with(-9)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL and "Traceback" not in r.stderr


def test_closed_stdout_or_stderr_keeps_the_exit_code(tmp_path):
    """``>&-`` / ``2>&-``: the output is discarded, the exit code still says the verdict (0 robust,
    3 bad input); it was a traceback and exit 1."""
    net = Network((Layer(np.array([[1.0, -1.0]]), np.array([0.1]), "identity"),))
    path = tmp_path / "n.npz"
    net.save(path)
    env = dict(os.environ, HYBRIDQ_SERVER="off")
    for close in (1, 2):
        for delta, code in (("10", 0), ("-1", 3)):
            r = subprocess.run([sys.executable, "-m", "hybridq", "verify", str(path), "--perturb", "fp16",
                                "--point", "0.1,0.2", "--delta", delta], env=env, timeout=300,
                               stdout=subprocess.PIPE if close == 2 else None,
                               stderr=subprocess.PIPE if close == 1 else None,
                               preexec_fn=lambda fd=close: os.close(fd))
            assert r.returncode == code, (close, delta, r)


def _server_pids(sock: Path) -> list[int]:
    """Processes serving (or warming up for) ``sock``, by their command line."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"hybridq.server" in cmd and str(sock).encode() in cmd:
                pids.append(int(d.name))
    return pids


def test_two_starts_at_once_give_one_server():
    folder = Path(tempfile.mkdtemp(prefix="hq2-"))
    sock = folder / "s.sock"
    try:
        ps = [subprocess.Popen([sys.executable, "-m", "hybridq", "serve", "--idle-timeout", "30"], env=_env(sock),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in ps]
        assert [p.returncode for p in ps] == [0, 0], outs
        st = C.control("status", str(sock))
        assert st is not None and sorted(o[0].split(":")[0] for o in outs) == [
            "hybridq server already running", "hybridq server started"], outs
        assert all(f"pid {st['pid']}," in o[0] for o in outs) and _server_pids(sock) == [st["pid"]]
    finally:
        _hybridq(["serve", "stop"], _env(sock))
        for pid in _server_pids(sock):
            os.kill(pid, signal.SIGKILL)
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def test_ctrl_c_while_the_server_warms_up_leaves_no_server():
    from hybridq.server import _lock_held

    folder = Path(tempfile.mkdtemp(prefix="hqc-"))
    sock = folder / "s.sock"
    try:
        p = subprocess.Popen([sys.executable, "-m", "hybridq", "serve", "--idle-timeout", "30"], env=_env(sock),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal)
        t0 = time.monotonic()
        while not _lock_held(str(sock)):  # the detached server process is warming up
            assert p.poll() is None and time.monotonic() - t0 < 120, p.communicate()
            time.sleep(0.02)
        assert C.control("status", str(sock)) is None  # not serving yet
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2 and err.strip().splitlines()[-1] == "hybridq: interrupted", err
        assert _server_pids(sock) == [] and not _lock_held(str(sock))
    finally:
        for pid in _server_pids(sock):
            os.kill(pid, signal.SIGKILL)
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def _state(pid: int) -> str:
    return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]


def test_ctrl_z_stops_the_forwarded_command_with_the_client(server, nets):
    """SIGTSTP (Ctrl-Z) reaches only the terminal's process group, not the server's child: the
    client stops it with itself, and continues it with itself (it ran on in the background)."""
    from processes import descendants

    sock, spid = server
    before = descendants(spid)
    p = subprocess.Popen([sys.executable, "-m", "hybridq", "verify", str(nets["hard"]), *HARD, "--timeout", "300"],
                         env=_env(sock), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=as_in_a_terminal)
    try:
        _wait_running(sock, 1)
        (child,) = descendants(spid) - before
        p.send_signal(signal.SIGTSTP)
        t0 = time.monotonic()
        while not (_state(p.pid) == "T" and _state(child) == "T"):
            assert time.monotonic() - t0 < 10, (_state(p.pid), _state(child))
            time.sleep(0.02)
        p.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        while _state(child) == "T" or _state(p.pid) == "T":
            assert time.monotonic() - t0 < 10, (_state(p.pid), _state(child))
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 2 and stdout.startswith("unknown:") and "Traceback" not in stderr, (stdout, stderr)
    _wait_running(sock, 0, 10)
