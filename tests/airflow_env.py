"""The environment of a project-local Airflow run (``airflow dags test`` in a subprocess) for tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def airflow_env(home: Path, lake: Path, work: Path, config: dict[str, Any]) -> dict[str, str]:
    """This process' environment without Airflow/package settings, plus a private Airflow home,
    the repository's DAGs and plugins, and the package configuration ``config`` (JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SECLAKE_ML_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])),
        SECLAKE_ML_CONFIG=json.dumps(config),
        SECLAKE_ML_LAKE_ROOT=str(lake),
        SECLAKE_ML_WORK_LOCATION=str(work),
        SECLAKE_ML_RETRY_DELAY_SECONDS="1",
    )
    return env
