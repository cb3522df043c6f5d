"""The event table every part of the risk engine reads: one row per CloudTrail sign-in or API call.

Columns (Arrow / pandas), produced by :func:`seclake_ml.risk.events.read_events`:

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
