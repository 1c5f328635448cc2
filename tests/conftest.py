"""Shared pytest fixtures.

``networks_dir``: the read-only real networks in ``../shared/data/networks`` (relative to the repo
root); tests that use it are skipped, with the reason, when that directory is absent (e.g. a clone
outside the project workspace).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NETWORKS_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "networks").resolve()


@pytest.fixture(scope="session")
def networks_dir() -> Path:
    """The shared network directory; skips the test when it is missing."""
    if not NETWORKS_DIR.is_dir():
        pytest.skip(f"real networks not available: {NETWORKS_DIR} is absent (needs ../shared/data/networks)")
    return NETWORKS_DIR
