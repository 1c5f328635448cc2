"""Helpers for tests that run the CLI in-process (shared by the CLI, document and exact-witness tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridq import Layer, Network
from hybridq.cli import main


def run_cli(capsys, *args):
    """Run ``hybridq ARGS`` in-process; returns ``(exit code, stdout, stderr)``."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_error_line(err: str) -> str:
    """The single ``hybridq: error: ...`` line of ``err`` (asserts there is exactly one, no traceback)."""
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("hybridq: error: ") and "Traceback" not in err, err
    return lines[0]


def save_tiny(tmp_path: Path) -> Path:
    """y = relu(x0 - x1) + 0.5 x0 (2 inputs, 1 output), saved as ``tiny.npz``."""
    net = Network((Layer([[1.0, -1.0], [0.5, 0.0]], [0.0, 0.0], "relu"), Layer([[1.0, 1.0]], [0.0], "identity")))
    p = tmp_path / "tiny.npz"
    net.save(p)
    return p
