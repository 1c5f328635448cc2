"""The ``hybridq`` console entry point: forward a command to a warm ``hybridq serve`` process.

A fresh Python process spends about a second importing numpy, numba, scipy and typer and loading
the kernels before a run does any work of its own; a run on a small problem takes a tenth of that.
``hybridq serve`` (:mod:`hybridq.server`) pays the imports once and forks a child per request,
like ``dmypy`` or the Gradle daemon.  This module is what the ``hybridq`` command runs first; it
imports only the standard library, so a forwarded command costs the interpreter's start and a
round trip over a Unix socket.

Protocol (one connection per command, standard library only):

1. the client connects to the server's socket (:func:`socket_path`) and checks with
   ``SO_PEERCRED`` that the server runs as the same user;
2. it sends one JSON line (the *header*: argv, working directory, environment, umask, resource
   limits, its process start time, how its standard streams are configured, and the :func:`stamp`
   of its hybridq) with
   its descriptors 0, 1, 2 attached (``socket.send_fds``, ``SCM_RIGHTS``);
3. the server answers ``{"ok": true}`` or ``{"refused": REASON}`` (a stale server, another
   checkout, a different numba/OpenMP/Python environment, a resource limit above the server's); on
   a refusal, a timeout or any error
   up to here the client runs the command in-process, silently (one line on stderr with
   ``HYBRIDQ_VERBOSE=1``);
4. the client answers ``go`` (from here on it is committed: the server forks only after ``go``, so
   a command never runs twice), the server forks a child and sends ``{"pid": PID}``;
5. the child takes over the client's cwd, environment and descriptors and runs the ordinary CLI
   (:func:`hybridq.cli.invoke`); the client forwards SIGINT, SIGTERM and SIGHUP to it (same user),
   and a Ctrl-Z (SIGTSTP) stops the child with the client until it is continued;
6. the server sends ``{"exit": CODE}`` (``-N``: killed by signal N) when the child ends; the client
   exits with that code (or dies by the same signal).

Environment: ``HYBRIDQ_SERVER`` is the socket path (default: ``$XDG_RUNTIME_DIR/hybridq/server.sock``,
else ``<tmp>/hybridq-<uid>/server.sock`` in a 0700 folder); ``HYBRIDQ_SERVER=off`` never forwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time

__all__ = ["FORWARDED", "main", "forward", "control", "socket_path", "stamp", "process_start", "ignored_signals", "discard_closed_output",
           "ServerPathError"]

#: The commands a running server takes over (the others, e.g. ``serve``, ``backends``, ``--help``,
#: always run in-process).
FORWARDED = frozenset({"verify", "bounds", "quantify", "run"})
#: Environment variables whose values must agree between client and server: they are read when
#: numba, OpenMP, BLAS or Python itself start, so a warm server cannot take a client's new value.
ENV_MUST_MATCH = ("NUMBA_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "PYTHON")
#: Resource limits (``ulimit``) the child takes over from the client (``resource.RLIMIT_*`` names).
RLIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK")
#: Seconds the client waits for the server's first answer before it runs the command itself.
HANDSHAKE_TIMEOUT = 10.0
#: Signals the client passes on to the child.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PROTOCOL = 1
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class ServerPathError(OSError):
    """The socket's folder is not safe to use (not ours, or writable by others)."""


def _verbose() -> bool:
    return os.environ.get("HYBRIDQ_VERBOSE", "") not in ("", "0")


def socket_path(create: bool = False) -> str | None:
    """The server's socket path: ``$HYBRIDQ_SERVER``, else ``server.sock`` in a per-user folder
    (``$XDG_RUNTIME_DIR/hybridq``, else ``<tempdir>/hybridq-<uid>``, mode 0700).

    Parameters
    ----------
    create : bool
        Create the default folder (mode 0700) when it is missing (the server; a client only looks).

    Returns
    -------
    str or None
        None when ``HYBRIDQ_SERVER`` is ``off`` (or ``0``, or empty).

    Raises
    ------
    ServerPathError
        The folder exists but is not a directory owned by this user that others cannot write to;
        with ``create``, the folder of ``$HYBRIDQ_SERVER`` does not exist.
    """
    env = os.environ.get("HYBRIDQ_SERVER")
    if env is not None:
        if env.strip().lower() in ("", "off", "0", "no", "none"):
            return None
        path = os.path.abspath(env)
        if create and not os.path.isdir(os.path.dirname(path)):  # the server's log and socket go there
            raise ServerPathError(f"HYBRIDQ_SERVER={env}: the folder {os.path.dirname(path)} does not exist")
        _check_dir(os.path.dirname(path), create=False)
        return path
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        folder = os.path.join(base, "hybridq")
    else:
        import tempfile

        folder = os.path.join(tempfile.gettempdir(), f"hybridq-{os.getuid()}")
    _check_dir(folder, create=create)
    return os.path.join(folder, "server.sock")


def _check_dir(folder: str, create: bool) -> None:
    if create and not os.path.lexists(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return  # no folder, no server: the client finds nothing to connect to
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ServerPathError(f"{folder} must be a directory of user {os.getuid()} that others cannot write to")


def stamp() -> dict:
    """What a server must share with a client to run its commands: hybridq's version and folder,
    the newest modification time of its ``.py`` files, the interpreter and its warning options.

    Returns
    -------
    dict
        JSON-serializable; equal dicts mean the server runs the same code as the client would.
    """
    from hybridq import __version__

    newest = 0
    for dirpath, dirnames, filenames in os.walk(_PKG_DIR):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                try:
                    newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime_ns)
                except OSError:
                    pass
    return {"version": __version__, "package": _PKG_DIR, "mtime_ns": newest, "python": sys.version,
            "executable": os.path.realpath(sys.executable), "warnoptions": list(sys.warnoptions)}


def env_mismatch(env: dict, own: dict | None = None) -> str | None:
    """The first variable of :data:`ENV_MUST_MATCH` whose value differs between ``env`` (a
    client's) and ``own`` (default: this process's environment), or None."""
    own = os.environ if own is None else own
    for key in sorted(set(env) | set(own)):
        if key.startswith(ENV_MUST_MATCH) and env.get(key) != own.get(key):
            return key
    return None


def process_start() -> float:
    """``time.monotonic()`` at the start of this process (Linux: from ``/proc``; elsewhere now),
    so that ``--timeout`` counts the interpreter's start-up too.  ``CLOCK_MONOTONIC`` is the same
    clock in every process of the machine, so a server's child can count from its client's start."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0.0 <= age < 60.0:
            return now - age
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return now


def _streams() -> list:
    """How this process's stdin, stdout and stderr are set up (encoding, errors, line buffering,
    write-through), for the child to build the same text streams over the passed descriptors."""
    out = []
    for s in (sys.stdin, sys.stdout, sys.stderr):
        out.append(None if s is None else [getattr(s, "encoding", None), getattr(s, "errors", None),
                                           bool(getattr(s, "line_buffering", False)),
                                           bool(getattr(s, "write_through", False))])
    return out


def rlimits() -> dict:
    """This process's :data:`RLIMITS` as ``{name: [soft, hard]}`` (``-1``: unlimited)."""
    import resource

    return {name: list(resource.getrlimit(getattr(resource, name))) for name in RLIMITS if hasattr(resource, name)}


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class _Lines:
    """JSON lines over a connected socket (the reply side of the protocol)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def read(self) -> dict | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if peer_uid(sock) != os.getuid():
            raise ConnectionRefusedError(f"{path}: the server runs as another user")
    except BaseException:
        sock.close()
        raise
    return sock


def control(command: str, path: str | None = None, timeout: float = 5.0) -> dict | None:
    """Ask a running server for ``status`` (its pid, stamp, uptime, requests served, children
    running) or to ``stop``; None when no server answers at ``path`` (default :func:`socket_path`)."""
    path = path or socket_path()
    if path is None or not os.path.exists(path):
        return None
    try:
        sock = _connect(path, timeout)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(json.dumps({"protocol": PROTOCOL, "control": command}).encode() + b"\n")
            return _Lines(sock).read()
        except (OSError, ValueError):
            return None


def forward(args: list[str], path: str | None = None, header_stamp: dict | None = None) -> int | None:
    """Run ``hybridq ARGS`` in a child of the server at ``path`` (default :func:`socket_path`).

    Parameters
    ----------
    args : list of str
        The command line after ``hybridq``.
    path : str, optional
        The server's socket.
    header_stamp : dict, optional
        The stamp to present (default :func:`stamp`; another value makes the server refuse).

    Returns
    -------
    int or None
        The child's exit status (``-N``: it was killed by signal N), or None when no server took
        the command (absent, stale, refused, or any failure before it was accepted): then the
        caller runs it in-process.
    """
    try:
        path = path or socket_path()
    except ServerPathError as e:
        _note(f"server not used: {e}")
        return None
    if path is None or not os.path.exists(path):
        return None
    for fd in (0, 1, 2):  # a closed standard descriptor would be reused by the socket itself
        try:
            os.fstat(fd)
        except OSError:
            _note(f"descriptor {fd} is closed")
            return None
    try:
        sock = _connect(path, HANDSHAKE_TIMEOUT)
    except OSError as e:
        _note(f"no server at {path} ({e})")
        return None
    with sock:
        lines = _Lines(sock)
        try:
            umask = os.umask(0)
            os.umask(umask)
            header = {"protocol": PROTOCOL, "argv": list(args), "cwd": os.getcwd(), "env": dict(os.environ),
                      "umask": umask, "rlimits": rlimits(), "start": process_start(), "streams": _streams(),
                      "ignored_signals": ignored_signals(),
                      "stamp": stamp() if header_stamp is None else header_stamp}
            for s in (sys.stdout, sys.stderr):
                if s is not None:
                    s.flush()
            socket.send_fds(sock, [json.dumps(header).encode() + b"\n"], [0, 1, 2])
            reply = lines.read()
            if not reply or not reply.get("ok"):
                _note(f"server at {path} not used: {(reply or {}).get('refused', 'no answer')}")
                return None
        except (OSError, ValueError) as e:
            _note(f"server at {path} not used ({e})")
            return None
        # committed: the server runs the command after this ``go``
        pending: list = []
        child = [None]

        def relay(signum, frame):
            if child[0] is None:
                pending.append(signum)
            else:
                try:
                    os.kill(child[0], signum)
                except OSError:
                    pass

        def suspend(signum, frame):
            # Ctrl-Z: the child (the server's, outside this terminal's process group) stops with
            # this process and continues with it (``fg`` / ``bg``)
            if child[0] is not None:
                with contextlib.suppress(OSError):
                    os.kill(child[0], signal.SIGSTOP)
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until SIGCONT
            signal.signal(signal.SIGTSTP, suspend)
            if child[0] is not None:
                with contextlib.suppress(OSError):
                    os.kill(child[0], signal.SIGCONT)

        # a signal this process ignores (nohup, a background job of a script) stays ignored: the
        # child ignores it too (``ignored_signals`` in the header), and it is not relayed
        old = {s: signal.signal(s, relay) for s in FORWARDED_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
        if signal.getsignal(signal.SIGTSTP) is signal.SIG_DFL:
            old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
        try:
            sock.settimeout(None)
            sock.sendall(b"go\n")
            try:
                msg = lines.read()
                if msg and "pid" in msg:
                    child[0] = int(msg["pid"])
                    for s in pending:
                        relay(s, None)
                    msg = lines.read()
            except (OSError, ValueError):
                msg = None
            if not msg or "exit" not in msg:
                sys.stderr.write("hybridq: error: lost the connection to the hybridq server\n")
                return 2
            return int(msg["exit"])
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _note(msg: str) -> None:
    if _verbose():
        sys.stderr.write(f"hybridq: {msg}; running in-process\n")


def _exit_with(code: int) -> None:
    """Exit like the child did: with its code, or by the signal that ended it (SIGKILL included,
    whose disposition cannot be set)."""
    for s in (sys.stdout, sys.stderr):
        if s is not None:
            try:
                s.flush()
            except (OSError, ValueError):
                pass
    if code < 0:
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL / SIGSTOP: their default action is all there is
            pass
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def ignored_signals() -> list[int]:
    """The signals of :data:`FORWARDED_SIGNALS` this process ignores (``SIG_IGN``)."""
    return [int(s) for s in FORWARDED_SIGNALS if signal.getsignal(s) is signal.SIG_IGN]


def discard_closed_output() -> None:
    """Point a closed (or not writable) standard output or error (``>&-``, ``2>&-``) at
    ``/dev/null``, before any file of ours could take its descriptor number: the output is discarded, the exit code still says the
    verdict (without this, the first write raised and the command ended with a traceback, exit 1)."""
    import fcntl

    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:  # closed, or taken by a read-only file the launcher opened (e.g. a shell shim's script)
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        except OSError:
            writable = False
        if not writable:
            nul = os.open(os.devnull, os.O_WRONLY)
            if nul != fd:
                os.dup2(nul, fd)
                os.close(nul)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 - the process's own stream


def main() -> None:
    """Console entry point: forward ``verify``/``bounds``/``quantify``/``run`` to a running server,
    else (no server, a stale one, any failure before it accepted) run :func:`hybridq.cli.main`."""
    discard_closed_output()
    args = sys.argv[1:]
    if args and args[0] in FORWARDED:
        code = forward(args)
        if code is not None:
            _exit_with(code)
    try:  # a Ctrl-C / SIGTERM while the CLI's libraries are still being imported
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        from hybridq.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("hybridq: interrupted\n")
        sys.stderr.flush()
        os._exit(2)
    cli_main()


if __name__ == "__main__":  # pragma: no cover
    main()
