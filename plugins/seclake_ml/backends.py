"""The backends, chosen in one place: :func:`backend_of` turns ``cfg.backend`` into an object.

``local`` is the embedded default: a Security Lake-shaped folder queried with DuckDB. ``aws`` is the
Glue tables queried with Athena (``UNLOAD`` to the work location). Each backend object answers what
the steps built on it ask: which lake root guards local outputs, how to name the lake in a log line,
how to extract pairs, how to read the risk engine's CloudTrail events. A new backend is one more
class here and one more entry in :data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from seclake_ml.config import SeclakeConfig


@dataclass(frozen=True)
class LocalBackend:
    """DuckDB over a local lake folder."""

    cfg: SeclakeConfig
    name: str = "local"

    @property
    def local_lake_root(self) -> str | None:
        """The lake folder that local outputs must stay out of."""
        return self.cfg.lake_root

    def lake_label(self) -> str:
        return self.cfg.lake_root

    def extract_pairs(self, source: str, view: str, start: datetime, end: datetime, out: str,
                      aws_conn_id: str | None) -> Any:
        from seclake_ml.lake.duck import DuckDBLake

        root = Path(self.cfg.lake_root).expanduser()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise ValueError(f"lake_root {self.cfg.lake_root}: {what}; point --root (or lake_root) at the local lake")
        return DuckDBLake(self.cfg).extract(source, view, start, end, out)

    def read_events(self, start: datetime, end: datetime, keys: list[str] | None, aws_conn_id: str | None) -> Any:
        from seclake_ml.risk.events import read_events_local

        return read_events_local(self.cfg, start, end, keys)


@dataclass(frozen=True)
class AwsBackend:
    """Athena over the Security Lake Glue tables; outputs and state in an ``s3://`` work location."""

    cfg: SeclakeConfig
    name: str = "aws"

    @property
    def local_lake_root(self) -> str | None:
        return None  # the lake is in S3: no local folder to protect

    def lake_label(self) -> str:
        return f"glue:{self.cfg.glue_db} workgroup:{self.cfg.athena_workgroup}"

    def extract_pairs(self, source: str, view: str, start: datetime, end: datetime, out: str,
                      aws_conn_id: str | None) -> Any:
        from seclake_ml.lake.athena import AthenaLake

        return AthenaLake(self.cfg, aws_conn_id=aws_conn_id).extract(source, view, start, end, out)

    def read_events(self, start: datetime, end: datetime, keys: list[str] | None, aws_conn_id: str | None) -> Any:
        from seclake_ml.risk.events import read_events_aws

        return read_events_aws(self.cfg, start, end, keys, aws_conn_id)


BACKENDS: dict[str, type] = {"local": LocalBackend, "aws": AwsBackend}


def backend_of(cfg: SeclakeConfig) -> LocalBackend | AwsBackend:
    """The backend object of a validated configuration."""
    return BACKENDS[cfg.backend](cfg)


def local_lake_root_of_config() -> str | None:
    """The local lake root of the loaded configuration (``None`` on a backend without one)."""
    from seclake_ml.config import load_config

    return backend_of(load_config()).local_lake_root


def read_events(cfg: SeclakeConfig, start: datetime, end: datetime, *, keys: list[str] | None = None,
                aws_conn_id: str | None = "aws_default") -> Any:
    """CloudTrail events of ``[start, end)`` for the risk engine (:mod:`seclake_ml.risk.events`), from
    the configured backend's lake; with ``keys``, only those lake objects."""
    return backend_of(cfg).read_events(start, end, keys, aws_conn_id)
