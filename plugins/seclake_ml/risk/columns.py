"""The event table every part of the risk engine reads: one row per CloudTrail sign-in or API call.

Columns (Arrow / pandas), produced by :func:`seclake_ml.backends.read_events`:

``uid``             ``metadata.uid`` (CloudTrail ``eventID``), string
``time``            event time, timestamp (ms, UTC)
``kind``            ``signin`` (OCSF 3002 ConsoleLogin) or ``api`` (3005 in version 1, 6003 in version 2)
``account``         account id (partition, else the actor's account), string
``region``          region (partition), string
``principal``       principal ARN (with the pair extraction's fallbacks), string
``principal_type``  ``IAMUser``, ``AssumedRole``, ``Root``, ``FederatedUser``, ... (``actor.user.type``)
``source_ip``       source address as written (may be IPv6, a service domain, or null)
``user_agent``      ``http_request.user_agent``
``service``         ``api.service.name`` (CloudTrail ``eventSource``, e.g. ``iam.amazonaws.com``)
``operation``       ``api.operation`` (CloudTrail ``eventName``)
``error_code``      ``api.response.error`` (null on success)
``status``          ``Success`` / ``Failure`` / null
``mfa``             MFA used (sign-in ``mfa``/``is_mfa``, API ``actor.session.mfa``/``is_mfa``), nullable bool
"""

from __future__ import annotations

from typing import Any

from seclake_ml.sources import get_source, placeholders, substitute

MAX_FIELD_LEN = 1024  # strings are cut to this many characters (counted)

EVENT_COLUMNS = (
    "uid", "time", "kind", "account", "region", "principal", "principal_type", "source_ip",
    "user_agent", "service", "operation", "error_code", "status", "mfa",
)  # fmt: skip

# The analysts' label CSV (a SIEM export of CloudTrail events plus their risk score): CloudTrail's own
# field names. ``eventID`` matches ``uid``; without it a row is matched on
# (``eventTime``, ``userIdentityArn``, ``eventName``, ``sourceIPAddress``). Only ``riskScore`` and
# either ``eventID`` or the four matching fields are required; the rest are kept as context.
LABEL_CSV_COLUMNS = (
    "eventID", "eventTime", "userIdentityArn", "eventSource", "eventName", "sourceIPAddress",
    "userAgent", "errorCode", "recipientAccountId", "awsRegion", "riskScore", "verdict", "analyst", "note",
)  # fmt: skip
VERDICTS = ("malicious", "benign", "unsure")


# ---------------------------------------------------------------- the projection, per source version
# SQL expressions of the event columns with ``{column.path}`` placeholders, shared by the DuckDB and
# the Athena query layers (each resolves the placeholders against its own tables).
_PRINCIPAL = get_source("cloudtrail_api").view("principal_ip").entity
_EXPRESSIONS: dict[int, dict[str, str]] = {
    1: {
        "uid": "{metadata.uid}",
        "class_uid": "{class_uid}",
        "account": "{actor.user.account_uid}",
        "principal": f"coalesce({_PRINCIPAL[1]}, {{actor.invoked_by}})",
        "principal_type": "{actor.user.type}",
        "source_ip": "{src_endpoint.ip}",
        "user_agent": "{http_request.user_agent}",
        "service": "{api.service.name}",
        "operation": "{api.operation}",
        "error_code": "{api.response.error}",
        "status": "{status}",
        "mfa": "coalesce({mfa}, {actor.session.mfa})",
        "time": "{time}",
    },
    2: {
        "uid": "{metadata.uid}",
        "class_uid": "{class_uid}",
        "account": "{actor.user.account.uid}",
        "principal": f"coalesce({_PRINCIPAL[2]}, {{actor.invoked_by}})",
        "principal_type": "{actor.user.type}",
        "source_ip": "{src_endpoint.ip}",
        "user_agent": "{http_request.user_agent}",
        "service": "{api.service.name}",
        "operation": "{api.operation}",
        "error_code": "{api.response.error}",
        "status": "{status}",
        "mfa": "coalesce({is_mfa}, {actor.session.is_mfa})",
        "time": "{time_dt}",
    },
}


def render_expressions(version: int, resolve: Any) -> dict[str, str]:
    """The event table's column expressions for ``version``, each ``{column.path}`` replaced by ``resolve(path)``."""
    return _render(version, resolve)


def _render(version: int, resolve: Any) -> dict[str, str]:
    exprs = _EXPRESSIONS[version]
    paths: dict[str, str] = {}
    for expr in exprs.values():
        for p in placeholders(expr):
            if p not in paths:
                paths[p] = resolve(p)
    return {k: substitute(v, paths) for k, v in exprs.items()}
