"""``hybridq serve``: one warm process that runs the CLI's commands for :mod:`hybridq.client`.

The server imports hybridq and its libraries and loads the serial numba kernels once, then
listens on a Unix socket (:func:`hybridq.client.socket_path`, mode 0600 in a folder of the user;
``SO_PEERCRED`` checked on both ends).  Per request it forks a child, which keeps the warm imports:
the child takes the client's working directory, environment, umask and standard descriptors
(passed with ``SCM_RIGHTS``), so terminal detection, progress output and files behave as in the
client's own process, runs :func:`hybridq.cli.invoke` on the client's argv and exits with the
command's code, which the server sends back.  The protocol is described in :mod:`hybridq.client`.

Fork safety: the server itself never runs a parallel numba kernel (it loads the serial entry
points only, so numba's threading layer is not started) and starts no Python thread; children
load what else they need.  The server is single-threaded: one ``selectors`` loop over the
listening socket, the open connections and a wake-up socket for signals (SIGCHLD reaps children,
SIGTERM / SIGINT stop the server: running children get SIGTERM, end with their partial result and
their clients get the exit codes).

A server whose own sources changed on disk since it started (another stamp from the same
package folder) refuses the request, so the client runs it in-process, and exits.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import io
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from hybridq import client as C

__all__ = ["warm_up", "serve_forever", "start_background", "stop", "WARM_MODULES"]

#: Libraries the server imports before it listens, besides every module of hybridq (what
#: ``verify``, ``bounds``, ``quantify`` and ``run`` import on their way; optional ones are skipped
#: when missing).  ``matplotlib`` (``--plot``, :mod:`hybridq.plot`) and Dask (``--cluster``) are left
#: to the children that need them.
WARM_MODULES = ("mpmath", "z3", "highspy", "onnx", "scipy.sparse", "scipy.optimize", "rich.progress", "rich.console")
#: hybridq modules not imported ahead.
COLD_MODULES = ("hybridq.plot", "hybridq.__main__")

#: Seconds ``start_background`` waits for a new server to listen (a first start after an install
#: compiles the kernels: minutes).
START_WAIT = 900.0


def _log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} hybridq server[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def warm_up() -> list[str]:
    """Import :data:`WARM_MODULES` and load the serial kernels (compiling them on a first run).

    Returns
    -------
    list of str
        The modules that could not be imported (optional dependencies), with the reason.
    """
    import importlib
    import pkgutil

    import hybridq

    ours = [m.name for m in pkgutil.walk_packages(hybridq.__path__, "hybridq.") if m.name not in COLD_MODULES]
    missing = []
    for name in ours + list(WARM_MODULES):
        try:
            importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    import hybridq.kernels as K

    for entry in (K.linear_pass_serial, K.interval_pass_serial, K.score_sigmoid, K.score_softmax):
        entry.load()  # the parallel passes stay unloaded: they would start numba's threading layer
    _rehearse()
    gc.collect()
    gc.freeze()  # the children's collections then skip (and do not copy) the server's objects
    return missing


def _rehearse() -> None:
    """Run a few small commands in this process (output discarded): what a first command pays once
    per process (typer's click command, pydantic's adapters, numba's dispatch, the attack and the
    exact re-check's first calls) is then paid here, not in every child.  ``--jobs 1`` and one-cell
    or tiny batches: no worker process, no parallel kernel, no thread."""
    import contextlib
    import tempfile

    from hybridq.cli import invoke
    from hybridq.network import Layer, Network

    net = Network((Layer([[1.0, -1.0], [0.5, 0.25], [-0.3, 0.8]], [0.0, 0.1, -0.1], "relu"),
                   Layer([[1.0, 1.0, -0.5], [0.2, -0.4, 0.3]], [0.0, 0.1], "identity")))
    with tempfile.TemporaryDirectory(prefix="hybridq-warm-") as tmp:
        path = os.path.join(tmp, "warm.npz")
        net.save(path)
        common = ["--jobs", "1", "--no-progress", "--timeout", "20"]
        for argv in (["verify", path, "--perturb", "fp16", "--point", "0.5,0.25", "--delta", "0.01"] + common,
                     ["verify", path, "--perturb", "abs:0.05", "--box", "0:1,0:1", "--delta", "0.05"] + common,
                     ["verify", path, "--perturb", "point:fp16", "--box", "0:1,0:1", "--delta", "0.01",
                      "--outputs", "0"] + common,
                     ["bounds", path, "--perturb", "fp16", "--box", "0:1,0:1"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                invoke(argv)


class _Request:
    """One client connection: its header, descriptors and child."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buf, self.fds, self.header, self.pid = conn, b"", [], None, None

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


class Server:
    """The accept / fork / reap loop (see the module docstring)."""

    def __init__(self, path: str, idle_timeout: float | None):
        self.path, self.idle_timeout = path, idle_timeout
        self.stamp = C.stamp()
        self.started = time.time()
        self.served = 0
        self.children_cpu = 0.0  # user + system seconds of the children that ended
        self.children: dict[int, _Request] = {}
        self.stopping = False  # stop: running commands get SIGTERM
        self.draining = False  # stale: no new commands, exit once the running ones end
        self.terminated = False
        self.last_active = time.monotonic()
        self.lock = None  # the open lock file (closed in children)

    # ---------------------------------------------------------------- set-up
    def listen(self) -> None:
        if os.path.lexists(self.path):
            os.unlink(self.path)  # a dead server's socket: we hold the lock, so no server is alive
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(s, self._on_signal)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_signal(self, signum, frame):
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.stopping = True

    # ---------------------------------------------------------------- loop
    def run(self) -> None:
        _log(f"listening on {self.path} (hybridq {self.stamp['version']} from {self.stamp['package']})")
        try:
            while True:
                if (self.stopping or self.draining) and self.sock is not None:
                    self._stop_listening()
                if self.stopping and not self.terminated:  # stopped: running commands end as interrupted
                    self.terminated = True
                    self._terminate_children()
                if (self.stopping or self.draining) and not self.children:
                    break
                if (self.idle_timeout and not self.children
                        and time.monotonic() - self.last_active > self.idle_timeout):
                    _log(f"idle for {self.idle_timeout:g} s: exiting")
                    break
                for key, _ in self.sel.select(timeout=1.0):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            while self.wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    else:
                        self._on_conn(key.data)
                self._reap()
        finally:
            self._stop_listening()
            self._terminate_children()
            _log("stopped")

    def _stop_listening(self) -> None:
        if self.sock is None:
            return
        self.sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _terminate_children(self) -> None:
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.last_active = time.monotonic()
        try:
            if C.peer_uid(conn) != os.getuid():
                conn.close()
                return
        except OSError:
            conn.close()
            return
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, _Request(conn))

    def _drop(self, req: _Request) -> None:
        try:
            self.sel.unregister(req.conn)
        except (KeyError, ValueError):
            pass
        req.conn.close()
        req.close_fds()

    def _send(self, req: _Request, msg: dict) -> bool:
        try:
            req.conn.setblocking(True)
            req.conn.settimeout(5.0)
            req.conn.sendall(json.dumps(msg).encode() + b"\n")
            req.conn.setblocking(False)
            return True
        except OSError:
            return False

    def _on_conn(self, req: _Request) -> None:
        if req.pid is not None:  # after the fork only EOF can come: the client is gone
            try:
                data = req.conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(req.conn)
                _kill(req.pid, signal.SIGKILL)  # at once, as the client's own process died
            return
        try:
            data, fds, _, _ = socket.recv_fds(req.conn, 65536, 3)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        req.fds += fds
        if not data:
            self._drop(req)
            return
        req.buf += data
        if req.header is None:
            if b"\n" not in req.buf:
                return
            line, _, req.buf = req.buf.partition(b"\n")
            try:
                req.header = json.loads(line)
            except ValueError:
                self._drop(req)
                return
            if "control" in req.header:
                self._control(req)
                return
            why = self._refusal(req)
            if why:
                self._send(req, {"refused": why})
                self._drop(req)
                if why.startswith("stale"):  # no new commands; the running ones finish first
                    _log(f"{why}: exiting once the {len(self.children)} running command(s) end")
                    self.draining = True
                return
            if not self._send(req, {"ok": True}):
                self._drop(req)
                return
        if req.buf.startswith(b"go\n"):
            self._fork(req)
        elif b"\n" in req.buf:
            self._drop(req)

    def _refusal(self, req: _Request) -> str | None:
        h = req.header
        if h.get("protocol") != C.PROTOCOL:
            return f"protocol {h.get('protocol')} (server: {C.PROTOCOL})"
        if len(req.fds) != 3:
            return "the client's standard descriptors did not arrive"
        if self.stopping:
            return "the server is stopping"
        theirs = h.get("stamp") or {}
        if theirs != self.stamp:
            diff = sorted(k for k in set(theirs) | set(self.stamp) if theirs.get(k) != self.stamp.get(k))
            now = C.stamp()
            if now != self.stamp and now.get("package") == self.stamp["package"]:
                return "stale: hybridq's sources changed since the server started"
            return "a different hybridq or Python (" + ", ".join(diff) + ")"
        key = C.env_mismatch(h.get("env") or {})
        if key:
            return f"environment variable {key} differs from the server's"
        own = C.rlimits()
        for name, (soft, hard) in (h.get("rlimits") or {}).items():
            if name in own and _above(hard, own[name][1]):
                return f"{name} is above the server's hard limit (a child cannot raise it)"
        return None

    def _control(self, req: _Request) -> None:
        cmd = req.header.get("control")
        if cmd == "status":
            self._send(req, {"pid": os.getpid(), "stamp": self.stamp, "path": self.path, "served": self.served,
                             "running": len(self.children), "uptime_s": round(time.time() - self.started, 3),
                             "children_cpu_s": round(self.children_cpu, 4)})
        elif cmd == "stop":
            self.stopping = True
            self._send(req, {"stopping": True, "pid": os.getpid(), "running": len(self.children)})
        else:
            self._send(req, {"error": f"unknown control command {cmd!r}"})
        self._drop(req)

    def _fork(self, req: _Request) -> None:
        req.buf = b""
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(req, [self.sock, self.wake_r, self.wake_w, self.lock]
                   + [k.fileobj for k in self.sel.get_map().values()], self.sel)
        self.served += 1
        req.pid = pid
        self.children[pid] = req
        req.close_fds()
        if not self._send(req, {"pid": pid}):
            _kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            req = self.children.pop(pid, None)
            self.last_active = time.monotonic()
            self.children_cpu += usage.ru_utime + usage.ru_stime
            if req is not None:
                self._send(req, {"exit": os.waitstatus_to_exitcode(status),
                                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 4)})
                self._drop(req)


def _above(a: int, b: int) -> bool:
    """``a > b`` for resource limits (``-1`` = ``RLIM_INFINITY`` is the largest)."""
    inf = -1
    if b == inf:
        return False
    return a == inf or a > b


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _child(req: _Request, close: list, sel) -> None:
    """After the fork: become the client's process and run its command (never returns)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for s in req.header.get("ignored_signals") or []:  # as the client (nohup, a script's background job)
            signal.signal(int(s), signal.SIG_IGN)
        try:
            sel.close()
        except OSError:
            pass
        for obj in close:
            if obj is not None:
                try:
                    obj.close()
                except OSError:
                    pass
        h = req.header
        for target, fd in enumerate(req.fds):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        req.fds = []
        _std_streams(h.get("streams") or [None, None, None])
        os.chdir(h["cwd"])
        os.umask(int(h["umask"]))
        _set_rlimits(h.get("rlimits") or {})
        os.environ.clear()
        os.environ.update(h["env"])
        import tempfile

        tempfile.tempdir = None  # recomputed from the client's TMPDIR
        time.tzset()  # the client's TZ
        sys.argv = ["hybridq"] + list(h["argv"])
        from hybridq.cli import invoke

        code = invoke(list(h["argv"]), float(h["start"]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as an uncaught exception would end the in-process command
        try:
            traceback.print_exc()
        except BaseException:
            pass
        code = 1
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except BaseException:
                pass
        os._exit(code)


def _set_rlimits(limits: dict) -> None:
    """The client's resource limits (the server refused clients whose limits it cannot give)."""
    import resource

    for name, (soft, hard) in limits.items():
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (soft, hard))


def _std_streams(conf: list) -> None:
    """Text streams over descriptors 0, 1, 2 configured like the client's (encoding, errors,
    line buffering), so output reaches a terminal or a pipe exactly as it would have."""
    for fd, name, c in ((0, "stdin", conf[0]), (1, "stdout", conf[1]), (2, "stderr", conf[2])):
        if c is None:
            continue
        enc, errors, line, through = c
        try:
            raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
            buf = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
            stream = io.TextIOWrapper(buf, encoding=enc, errors=errors, line_buffering=line, write_through=through)
        except (OSError, ValueError, LookupError):
            continue
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def serve_forever(path: str | None = None, idle_timeout: float | None = 3600.0) -> int:
    """Warm up and serve at ``path`` (default :func:`hybridq.client.socket_path`) until stopped
    (``hybridq serve stop``, SIGTERM, SIGINT), idle for ``idle_timeout`` seconds (None: never),
    or stale.

    Returns
    -------
    int
        0 after a normal stop; 3 when another server holds the socket's lock or the path is unusable.
    """
    path = path or C.socket_path(create=True)
    if path is None:
        _log("HYBRIDQ_SERVER is off: nothing to serve")
        return 3
    lock = _take_lock(path)
    if lock is None:
        _log(f"another server holds {path}.lock")
        return 3
    try:
        t = time.monotonic()
        missing = warm_up()
        _log(f"warm in {time.monotonic() - t:.2f} s" + (f"; not available: {', '.join(missing)}" if missing else ""))
        import threading

        if threading.active_count() != 1:  # a thread would not survive the fork of each request
            _log(f"{threading.active_count()} threads after warm-up: refusing to serve")
            return 3
        srv = Server(path, idle_timeout)
        srv.lock = lock
        srv.listen()
        srv.run()
        return 0
    finally:
        lock.close()


def start_background(path: str | None = None, idle_timeout: float | None = 3600.0) -> dict:
    """Start a server as a detached process (its own session; log in ``PATH.log``) and wait until
    it answers ``status``.

    Returns
    -------
    dict
        The server's status (``pid``, ``path``, ...); ``already`` is True when one was running.

    Two starts at once: the one whose process loses the socket's lock waits for the winner and
    returns its status with ``already`` True. A Ctrl-C (or SIGTERM turned into KeyboardInterrupt
    by the caller) while waiting terminates the new process: nothing is left running detached.

    Raises
    ------
    RuntimeError
        The new process exited or did not answer within :data:`START_WAIT` seconds (the log's last
        line is in the message).
    """
    import subprocess

    path = path or C.socket_path(create=True)
    st = C.control("status", path)
    if st is not None:
        return dict(st, already=True)
    log = path + ".log"
    cmd = [sys.executable, "-m", "hybridq.server", "--socket", path,
           "--idle-timeout", str(idle_timeout if idle_timeout else 0)]
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True,
                                close_fds=True)
    t = time.monotonic()
    try:
        while time.monotonic() - t < START_WAIT:
            st = C.control("status", path)
            if st is not None:
                return dict(st, already=st.get("pid") != proc.pid, log=log)
            if proc.poll() is not None and not _lock_held(path):
                raise RuntimeError(f"the server exited ({proc.returncode}): {_last_line(log)}")
            time.sleep(0.05)  # ours is warming up, or another start holds the lock and is warming up
    except BaseException:
        _end(proc)
        raise
    _end(proc)
    raise RuntimeError(f"the server did not answer within {START_WAIT:g} s: {_last_line(log)}")


def _take_lock(path: str):
    """``PATH.lock`` opened and locked (exclusive, without waiting): the server holds it from its
    warm-up to its exit.  None when another process holds it.

    Raises
    ------
    OSError
        The file cannot be opened, or locked for another reason.
    """
    f = open(path + ".lock", "a")  # noqa: SIM115 - kept open by the caller while it holds the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return f


def _lock_held(path: str) -> bool:
    """Whether a live process holds ``PATH.lock`` (a server warming up or serving)."""
    try:
        f = _take_lock(path)
    except OSError:
        return False
    if f is None:
        return True
    f.close()  # releases it
    return False


def _end(proc) -> None:
    """Terminate a server process this call started and reap it (SIGKILL after 5 s)."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _last_line(log: str) -> str:
    try:
        with open(log, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"


def stop(path: str | None = None, wait: float = 30.0) -> dict | None:
    """Ask the server at ``path`` to stop and wait (at most ``wait`` s) until its process is gone.

    Returns
    -------
    dict or None
        Its last status (``pid``, ``running``: children it let finish), None when none answered.
    """
    ans = C.control("stop", path)
    if ans is None:
        return None
    pid = ans.get("pid")
    t = time.monotonic()
    while pid and time.monotonic() - t < wait:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        time.sleep(0.02)
    return ans


def _main(argv: list[str] | None = None) -> int:
    """``python -m hybridq.server --socket PATH [--idle-timeout S]``: serve in the foreground
    (what ``hybridq serve`` starts in the background)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hybridq.server", description=_main.__doc__)
    ap.add_argument("--socket", default=None)
    ap.add_argument("--idle-timeout", type=float, default=3600.0, help="seconds; 0: never")
    a = ap.parse_args(argv)
    return serve_forever(a.socket, a.idle_timeout or None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
