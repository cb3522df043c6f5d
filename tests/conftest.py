"""Shared test fixtures: paths to the repository and to the shared reference material."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

SHARED = Path(os.environ.get("SECLAKE_SHARED_DIR", REPO.parent / "shared")).resolve()
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference material not found at {REFERENCE} (set SECLAKE_SHARED_DIR)")
    return REFERENCE


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED
