"""Fixtures of the MWAA-shaped tests: the bundle, the MWAA package set on Python 3.12, the runtime."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from .runtime import HOW_TO_GET_PYTHON312, REPO, SKIP_VARIABLE, MwaaRuntime, load_builder, mwaa_venv


@pytest.fixture(scope="session")
def python312() -> str:
    """A CPython 3.12 interpreter; without one the tests fail (or are skipped where SECLAKE_SKIP_MWAA=1)."""
    found = load_builder().find_python312()
    if found is None:
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(f"{SKIP_VARIABLE}=1: MWAA-shaped tests skipped on purpose")
        pytest.fail(HOW_TO_GET_PYTHON312, pytrace=False)
    return found


@pytest.fixture(scope="session")
def mwaa_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The bundle as ``make mwaa-bundle`` writes it (into a temporary folder) and the builder's summary."""
    out = tmp_path_factory.mktemp("mwaa-dist") / "mwaa"
    summary = load_builder().build(out)
    return out, summary


@pytest.fixture(scope="session")
def mwaa_env_dir(python312: str) -> tuple[Path, dict[str, float]]:
    """The cached MWAA-shaped virtual environment (see :mod:`tests.mwaa.runtime`) and, when made now, timings."""
    t0 = time.perf_counter()
    venv, timings = mwaa_venv(python312, REPO / "var" / "mwaa-venv", REPO / "var" / "mwaa-wheels")
    timings["ready_s"] = time.perf_counter() - t0
    print(f"\nMWAA environment {venv.name}: {'created' if len(timings) > 1 else 'cached'} "
          + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return venv, timings


@pytest.fixture(scope="session")
def dag_runtime(mwaa_env_dir: tuple[Path, dict[str, float]], mwaa_bundle: tuple[Path, dict[str, Any]]) -> MwaaRuntime:
    """End-to-end tests in this folder run their Airflow processes MWAA-shaped."""
    return MwaaRuntime(mwaa_env_dir[0], mwaa_bundle[0])
