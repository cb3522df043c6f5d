"""Shared test fixtures: paths to the repository and to the reference samples under ``tests/data``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

# Reference samples (AWS-written Parquet, OCSF schema and examples) copied into the repository;
# tests/data/SOURCES.md says where each came from.
REFERENCE = REPO / "tests" / "data" / "reference"


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def dag_runtime():
    """Where end-to-end tests run their child Airflow processes (overridden by ``tests/mwaa``)."""
    from tests.airflow_env import AirflowRuntime

    return AirflowRuntime()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference samples not found at {REFERENCE}")
    return REFERENCE
