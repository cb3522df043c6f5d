"""Setup shared by the package's operators: runtime configuration, backend, scoring site, work store.

Everything heavy (the configuration loader, the backends, boto3 clients) is imported inside the
methods, so DAG files that use the operators parse fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from seclake_ml.backends import Backend
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.handoff import Wait


class _Configured:
    """Helpers of a task with ``config_overrides`` and ``aws_conn_id`` attributes (operators and sensors)."""

    config_overrides: Mapping[str, Any] | None
    aws_conn_id: str | None

    def runtime_config(self) -> SeclakeConfig:
        from seclake_ml.airflow_support import load_runtime_config

        return load_runtime_config(self.config_overrides)

    def backend(self, cfg: SeclakeConfig | None = None) -> Backend:
        from seclake_ml.backends import backend_of

        return backend_of(cfg or self.runtime_config(), self.aws_conn_id)

    def scoring_site(self, cfg: SeclakeConfig) -> Any:
        """The backend's scoring site (local folders, or AWS with clients built now)."""
        return self.backend(cfg).scoring_site()

    def work_store(self, cfg: SeclakeConfig, site: Any) -> Any:
        """The work location's store, through the clients of ``site`` (none: local)."""
        from seclake_ml.scoring.service import work_store

        return work_store(cfg, site.clients)

    def ledger(self, cfg: SeclakeConfig, site: Any) -> Any:
        """The scoring ledger in the work location of ``site``."""
        from seclake_ml.scoring.ledger import Ledger

        return Ledger(self.work_store(cfg, site))


class _ConfiguredOperator(_Configured, BaseOperator):
    """Shared plumbing: runtime configuration with per-task overrides, and the backend it names."""

    def __init__(self, *, config_overrides: Mapping[str, Any] | None = None,
                 aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_overrides = config_overrides
        self.aws_conn_id = aws_conn_id

    def defer_on(self, wait: Wait) -> None:
        """Hand the wait to the triggerer; the task resumes in ``wait.method_name``."""
        self.log.info("deferring to %s for at most %.0f s", type(wait.trigger).__name__, wait.timeout_seconds)
        self.defer(trigger=wait.trigger, method_name=wait.method_name, kwargs=wait.kwargs or None,
                   timeout=timedelta(seconds=wait.timeout_seconds))
