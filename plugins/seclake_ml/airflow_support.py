"""Glue between Airflow and the package: run-time configuration and the DAGs' task defaults.

Cheap to import (standard library plus ``seclake_ml.config``): DAG files import this module while the
scheduler parses them. Airflow itself is imported inside the functions that need it, at task run time.
Data intervals live in :mod:`seclake_ml.interval`, output locations in :mod:`seclake_ml.locations`,
run planning and summaries in :mod:`seclake_ml.runs`.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Mapping

from seclake_ml.config import VARIABLE_KEY, SeclakeConfig, load_config
from seclake_ml.interval import iso

log = logging.getLogger(__name__)

# A retry only helps with transient faults (throttling, a worker lost mid-query); keep the delay short
# in local runs through this environment variable, long enough in production to ride out throttling.
DEFAULT_RETRY_DELAY = timedelta(minutes=5)


# --------------------------------------------------------------------------------------- config
def read_config_variable(key: str = VARIABLE_KEY) -> str | None:
    """The JSON text of the Airflow Variable ``key``, or ``None`` when it is not set.

    Call this at task run time only (never while a DAG file is parsed). Airflow's own lookup order
    applies: secrets backend, ``AIRFLOW_VAR_<KEY>`` environment variable, then the metadata database.
    """
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    if value is None:
        return None
    if not isinstance(value, str):  # a secrets backend may already hand back parsed JSON
        value = json.dumps(value)
    return value if value.strip() else None


def load_runtime_config(overrides: Mapping[str, Any] | str | None = None) -> SeclakeConfig:
    """The validated configuration for a running task.

    Precedence (highest first): ``overrides``; ``SECLAKE_ML_<FIELD>`` environment variables; the
    Airflow Variable ``seclake_ml_config``, or when that is unset the ``SECLAKE_ML_CONFIG`` environment
    variable; the built-in defaults.

    :param overrides: fields that win over every other source (an operator's ``config_overrides``: a
        mapping, or the JSON text a templated field renders to).
    """
    if isinstance(overrides, str):  # a templated ``config_overrides`` renders to JSON text
        from seclake_ml.handoff import decode_mapping

        overrides = decode_mapping(overrides, "config_overrides") if overrides.strip() else None
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"config_overrides must be a mapping of config fields, got {type(overrides).__name__}")
    return load_config(dict(overrides) if overrides else None, variable_json=read_config_variable())


def retry_delay_from_env(environ: Mapping[str, str] | None = None) -> timedelta:
    """Retry delay for the DAGs' ``default_args``: ``SECLAKE_ML_RETRY_DELAY_SECONDS`` or 5 minutes
    (read by the configuration loader, :func:`seclake_ml.config.retry_delay_seconds`)."""
    from seclake_ml.config import retry_delay_seconds

    seconds = retry_delay_seconds(environ)
    return DEFAULT_RETRY_DELAY if seconds is None else timedelta(seconds=seconds)


# ------------------------------------------------------------------------------------- callbacks
def default_task_args(retries: int = 2) -> dict[str, Any]:
    """``default_args`` of the package's DAGs: owner, retries with exponential backoff, failure log."""
    return {
        "owner": "security-analytics",
        "retries": retries,
        "retry_delay": retry_delay_from_env(),
        "retry_exponential_backoff": 2.0,
        "on_failure_callback": on_task_failure,
    }


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Failure callback: one log line naming the task, the run, its data interval and the error."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    window = f"[{iso(start)}, {iso(end)})" if start is not None and end is not None else "none"
    map_index = getattr(ti, "map_index", -1)
    log.error(
        "seclake_ml task failed: dag=%s task=%s%s try=%s run=%s data_interval=%s error=%r "
        "(fix the cause, then clear this task for the same run: outputs are keyed by the data interval "
        "and are overwritten)",
        getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        f"[{map_index}]" if map_index not in (None, -1) else "",
        getattr(ti, "try_number", "?"),
        getattr(dag_run, "run_id", None) or context.get("run_id", "?"),
        window,
        context.get("exception"),
    )
