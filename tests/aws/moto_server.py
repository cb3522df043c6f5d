"""Reusable pytest fixtures: one moto server on loopback per session, a clean AWS environment per test.

* ``moto_server`` (session): a :class:`ThreadedMotoServer` on ``127.0.0.1`` with a port chosen by the
  OS, wrapped in :class:`MotoServer` (endpoint URL plus helpers for moto's control API).
* ``aws_env`` (function): points boto3 and aiobotocore at that server (``AWS_ENDPOINT_URL``), sets
  fake credentials and ``AWS_DEFAULT_REGION``, removes profile/credential-file variables that could
  reach a real account, defines the ``aws_default`` Airflow connection as an environment variable;
  everything is restored afterwards. After the test the server's state is reset and any state
  transition configured by the test is removed, so tests cannot see each other's buckets, queries or
  queued results.

Both boto3 and aiobotocore honour ``AWS_ENDPOINT_URL``, so hooks, operators and deferrable triggers
all talk to the same server without any code change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for any fake credentials
ATHENA_EXECUTION_MODEL = "athena::execution"

# Variables that could make boto3 pick up real credentials, a real profile or another endpoint.
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
)


@dataclass
class MotoServer:
    """A running moto server and helpers for its control API (``/moto-api/…``)."""

    host: str
    port: int
    _transitions_set: set[str] = field(default_factory=set)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _post(self, path: str, body: Any = None) -> requests.Response:
        resp = requests.post(f"{self.endpoint}{path}", data=json.dumps(body) if body is not None else None, timeout=10)
        resp.raise_for_status()
        return resp

    def reset(self) -> None:
        """Drop every resource in every service (``POST /moto-api/reset``) and the transitions set here."""
        for model in sorted(self._transitions_set):
            self._post("/moto-api/state-manager/unset-transition", {"model_name": model})
        self._transitions_set.clear()
        self._post("/moto-api/reset")

    def set_transition(self, model_name: str, transition: dict[str, Any]) -> None:
        """Configure how a model's state advances, e.g. ``{"progression": "immediate"}``."""
        self._post("/moto-api/state-manager/set-transition", {"model_name": model_name, "transition": transition})
        self._transitions_set.add(model_name)

    def athena_immediate(self) -> None:
        """Athena executions go straight from QUEUED to SUCCEEDED when first described."""
        self.set_transition(ATHENA_EXECUTION_MODEL, {"progression": "immediate"})

    def athena_hold(self, polls: int = 1_000_000) -> None:
        """Athena executions stay QUEUED for ``polls`` descriptions (effectively: until cancelled)."""
        self.set_transition(ATHENA_EXECUTION_MODEL, {"progression": "manual", "times": polls})

    def queue_athena_results(
        self,
        results: Sequence[dict[str, Any]],
        *,
        account_id: str = DEFAULT_ACCOUNT,
        region: str = DEFAULT_REGION,
    ) -> None:
        """Queue canned query results, each ``{"rows": [...], "column_info": [...]}``.

        moto binds queued results to executions in the order the executions are *started*; an
        execution started when the queue is empty returns no rows.
        """
        self._post(
            "/moto-api/static/athena/query-results",
            {"account_id": account_id, "region": region, "results": list(results)},
        )


def athena_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, header: bool = True) -> dict[str, Any]:
    """A canned Athena result shaped like a real SELECT's: optional header row, all values as text."""
    data = [[str(c) for c in columns]] if header else []
    data += [[None if v is None else str(v) for v in row] for row in rows]
    return {
        "rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in data],
        "column_info": [
            {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": c, "Label": c,
             "Type": "varchar", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True}
            for c in columns
        ],
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto server on 127.0.0.1 (free port), shared by the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(host=host, port=port)
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[MotoServer]:
    """AWS clients of this test talk to ``moto_server`` with fake credentials; state is reset after."""
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path / "no-aws-files"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    moto_server.reset()
    try:
        yield moto_server
    finally:
        moto_server.reset()
