"""Shared pytest fixtures.

``networks_dir``: the read-only real networks in ``../shared/data/networks`` (relative to the repo
root; else ``$HYBRIDQ_SHARED/data/networks`` or ``/work/shared/data/networks``); tests that use it are skipped, with the reason, when that directory is absent (e.g. a clone
outside the project workspace).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

def _networks_dir() -> Path:
    """``../shared/data/networks`` next to the repository; else under ``$HYBRIDQ_SHARED`` or
    ``/work/shared`` (a git worktree elsewhere in the workspace)."""
    candidates = [Path(__file__).resolve().parents[1] / ".." / "shared"]
    if os.environ.get("HYBRIDQ_SHARED"):
        candidates.append(Path(os.environ["HYBRIDQ_SHARED"]))
    candidates.append(Path("/work/shared"))
    for c in candidates:
        if (c / "data" / "networks").is_dir():
            return (c / "data" / "networks").resolve()
    return (candidates[0] / "data" / "networks").resolve()


NETWORKS_DIR = _networks_dir()


@pytest.fixture(scope="session")
def networks_dir() -> Path:
    """The shared network directory; skips the test when it is missing."""
    if not NETWORKS_DIR.is_dir():
        pytest.skip(f"real networks not available: {NETWORKS_DIR} is absent (needs ../shared/data/networks)")
    return NETWORKS_DIR
