"""The environment of a project-local Airflow run (``airflow dags test`` in a subprocess) for tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def airflow_env(home: Path, lake: Path | None, work: Path | None, config: dict[str, Any], *,
                aws_connection: bool = False) -> dict[str, str]:
    """This process' environment without Airflow/package settings, plus a private Airflow home,
    the repository's DAGs and plugins, and the package configuration ``config`` (JSON).

    ``lake``/``work``: the local lake root and work location (left to ``config`` when ``None``).
    ``aws_connection``: an ``aws_default`` connection with no settings of its own, so hooks take
    credentials and endpoint from the environment (the moto server of the aws tests).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SECLAKE_ML_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])),
    )
    env.update(package_env(lake, work, config, aws_connection=aws_connection))
    return env


def package_env(lake: Path | None, work: Path | None, config: dict[str, Any], *,
                aws_connection: bool = False) -> dict[str, str]:
    """The package's settings for a child Airflow process (shared by every runtime's environment):
    configuration JSON, a short retry delay, the lake root and work location when given, and an
    empty ``aws_default`` connection when ``aws_connection``."""
    env = {"SECLAKE_ML_CONFIG": json.dumps(config), "SECLAKE_ML_RETRY_DELAY_SECONDS": "1"}
    if lake is not None:
        env["SECLAKE_ML_LAKE_ROOT"] = str(lake)
    if work is not None:
        env["SECLAKE_ML_WORK_LOCATION"] = str(work)
    if aws_connection:
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps({"conn_type": "aws"})
    return env


class AirflowRuntime:
    """Where a child Airflow process runs: its interpreter, DAG files, working folder and environment.

    This one is the development checkout (``.venv``, the repository's ``dags/`` and ``plugins/``);
    ``tests/mwaa`` provides one shaped like an MWAA environment, so the same end-to-end tests run there.
    """

    name = "dev"

    @property
    def python(self) -> str:
        import sys

        return sys.executable

    @property
    def cwd(self) -> Path:
        return REPO

    def dag_file(self, home: Path, name: str) -> Path:
        """The DAG file ``name`` (e.g. ``seclake_ipinsights_training.py``) the child process loads."""
        return REPO / "dags" / name

    def env(self, home: Path, lake: Path | None, work: Path | None, config: dict[str, Any], *,
            aws_connection: bool = False) -> dict[str, str]:
        """The child's environment (see :func:`airflow_env`)."""
        return airflow_env(home, lake, work, config, aws_connection=aws_connection)
