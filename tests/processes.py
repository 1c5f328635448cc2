"""Child processes of a test's subprocess, read from /proc (Linux): what a run leaves behind."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> set[int]:
    """The descendants of ``pid`` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        st = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return st.rpartition(")")[2].split()[0] != "Z"


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a test's subprocess that receives a Ctrl-C or Ctrl-Z: SIGINT at its default (a
    background job of a non-interactive shell, e.g. a CI script's ``cmd &``, starts with it ignored, and
    the child would inherit that) and a process group of its own in this session (a stop signal sent
    to an orphaned process group is discarded by the kernel)."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgrp()
