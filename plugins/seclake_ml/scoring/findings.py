"""OCSF 1.1.0 Detection Findings (class 2004) for flagged ``(entity, ip)`` pairs: building the records.

One finding is written per flagged distinct ``(entity, ip)`` pair of a *scope* (a source object or a
data interval). The record is a plain JSON-able ``dict`` shaped like the OCSF 1.1.0 Detection Finding
that Security Lake and Security Hub use, so the same record can be published on SNS, written to a
Security Lake custom source as Parquet (:mod:`seclake_ml.scoring.findings_parquet`), and checked
offline against the compiled OCSF schema (:mod:`seclake_ml.scoring.ocsf_validate`). This module needs
the standard library only.

Design decisions
----------------
* **Idempotent identity.** ``finding_info.uid`` is a SHA-256 digest of the model version, the scope,
  the source, the pair view, the entity and the IP (JSON-array encoded, so no separator ambiguity).
  Re-scoring the same object with the same model gives the same uid; any change of input gives another.
* **Severity** measures how far the score (``-dot_product``, higher = more anomalous) is past the
  calibrated threshold, in units of ``severity_scale``: ``margin/scale`` < 0.5 Low, < 1 Medium,
  < 2 High, otherwise Critical.
* **Profiles.** Records declare the ``cloud`` and ``datetime`` OCSF profiles; they carry ``cloud`` and
  the top-level ``*_dt`` twins of ``time``/``start_time``/``end_time``. They do not declare
  ``security_control`` (no action was taken), so ``action_id`` is absent by design.
* **Hostile values.** Entities, IPs and accounts come from log data. Their full values are kept in
  ``evidences[0].data`` and ``unmapped``; human text (``message``, ``finding_info.title``/``desc``) shows
  them escaped to one line and truncated. Lone UTF-16 surrogates (which no Parquet writer can store)
  are replaced by their ``\\udXXX`` escape.
* **Times.** ``timestamp_t`` attributes are integer epoch milliseconds; ``*_dt`` strings are the
  canonical RFC 3339 form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (:func:`ms_to_rfc3339`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seclake_ml.scoring.model_record import ActiveModel

OCSF_VERSION = "1.1.0"
CLASS_UID = 2004
CLASS_NAME = "Detection Finding"
CATEGORY_UID = 2
CATEGORY_NAME = "Findings"
ACTIVITY_ID = 1
ACTIVITY_NAME = "Create"
TYPE_UID = CLASS_UID * 100 + ACTIVITY_ID
TYPE_NAME = f"{CLASS_NAME}: {ACTIVITY_NAME}"
STATUS_ID_NEW = 1
STATUS_ID_SUPPRESSED = 3  # OCSF 1.1.0 Detection Finding status_id 3 "Suppressed"
ANALYTIC_TYPE_ID_ML = 4  # "Learning (ML/DL)"
PROFILES = ["cloud", "datetime"]

PRODUCT_NAME = "seclake_ml IP Insights"
VENDOR_NAME = "seclake_ml"

SEVERITY_NAMES: dict[int, str] = {
    0: "Unknown",
    1: "Informational",
    2: "Low",
    3: "Medium",
    4: "High",
    5: "Critical",
    6: "Fatal",
    99: "Other",
}

OBSERVABLE_IP = (2, "IP Address")
OBSERVABLE_RESOURCE_UID = (10, "Resource UID")
OBSERVABLE_OTHER = (99, "Other")

# Finding types in Security Hub's "namespace/category" style, per source; others get the IP one.
FINDING_TYPES: dict[str, str] = {
    "vpc_flow": "Unusual Behaviors/Network Flow",
    "route53": "Unusual Behaviors/Network Flow",
    "cloudtrail_signin": "Unusual Behaviors/User",
    "cloudtrail_api": "Unusual Behaviors/User",
}
DEFAULT_FINDING_TYPE = "Unusual Behaviors/IP address"

MESSAGE_MAX_CHARS = 1000
TITLE_MAX_CHARS = 256
DESC_MAX_CHARS = 4000
SHOWN_VALUE_MAX_CHARS = 160
OCSF_STRING_MAX_CHARS = 65535  # string_t max_len in the compiled 1.1.0 schema
INT32_MAX = 2**31 - 1

_UID_DOMAIN = "seclake_ml/finding/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- small helpers
def one_line(value: object, limit: int = SHOWN_VALUE_MAX_CHARS) -> str:
    """``value`` as text fit for a single log/UI line.

    Control, format and line/paragraph separator characters are escaped (``\\n``, ``\\x1b``,
    ``\\u2028`` ...), other non-ASCII text is kept, and the result is cut to at most ``limit``
    characters with a ``…(+N chars)`` marker. Only a prefix of huge inputs is ever processed.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[: limit + 1]
    if head.isprintable():  # the common case: nothing to escape
        shown = head
    else:
        out: list[str] = []
        for ch in head:
            if ch.isprintable() or ch == " ":
                out.append(ch)
            elif ch in "\n\r\t":
                out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif unicodedata.category(ch) == "Cs":
                out.append(f"\\u{ord(ch):04x}")
            else:
                code = ord(ch)
                out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        shown = "".join(out)
    if len(shown) <= limit and len(text) <= limit:
        return shown
    # Keep room for the marker; count what was left out of the *original* text.
    marker_room = 24
    cut = shown[: max(limit - marker_room, 1)]
    return f"{cut}…(+{max(len(text) - len(cut), 1)} chars)"


def _storable(value: str) -> str:
    """``value`` with lone surrogates replaced by their escape (UTF-8 cannot carry them)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def epoch_ms(value: datetime, name: str = "time") -> int:
    """Milliseconds since the epoch for a timezone-aware ``datetime`` (exact integer arithmetic)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return (value - _EPOCH) // timedelta(milliseconds=1)


def ms_to_rfc3339(ms: int) -> str:
    """Canonical RFC 3339 text (``YYYY-MM-DDTHH:MM:SS.mmmZ``) for epoch milliseconds."""
    dt = _EPOCH + timedelta(milliseconds=int(ms))
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _finite_or_none(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _json_canonical(value: Any) -> Any:
    """A JSON-equivalent copy of ``value``: tuples become lists, keys strings, NaN/inf ``None``,
    strings storable; any other type as a JSON round trip gives it (``default=str``)."""

    def clean(v: Any) -> Any:
        t = type(v)
        if t is str:
            return _storable(v)
        if v is None or t is bool or t is int:
            return v
        if t is float:
            return v if math.isfinite(v) else None
        if t is dict:
            return {str(k): clean(x) for k, x in v.items()}
        if t is list or t is tuple:
            return [clean(x) for x in v]
        return json.loads(json.dumps(_round_trip_ready(v), ensure_ascii=False, allow_nan=False, default=str))

    return clean(value)


def _round_trip_ready(v: Any) -> Any:
    """``v`` ready for ``json.dumps``: non-finite floats ``None``, keys strings, strings storable
    (subclasses and other types included; the round trip then makes them plain)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {str(k): _round_trip_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round_trip_ready(x) for x in v]
    if isinstance(v, str):
        return _storable(v)
    return v


# ----------------------------------------------------------------------------- public helpers
def finding_uid(model_version: str, scope: str, source: str, view: str, entity: str, ip: str) -> str:
    """Deterministic finding id: 32 hex chars of SHA-256 over the JSON array of all inputs.

    :param model_version: the scoring model's version.
    :param scope: what was scored (a source object URI or a data interval).
    :param source: our source name.
    :param view: the pair view name.
    :param entity: the entity, exactly as scored.
    :param ip: the IP, exactly as scored.
    """
    parts = [model_version, scope, source, view, entity, ip]
    for name, value in zip(("model_version", "scope", "source", "view", "entity", "ip"), parts):
        _require_str(value, name)
    payload = json.dumps([_UID_DOMAIN, *parts], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def severity_for(score: float, threshold: float, scale: float) -> tuple[int, str]:
    """OCSF ``(severity_id, severity)`` from how far ``score`` is past ``threshold``.

    ``ratio = (score - threshold) / scale``: < 0.5 Low (2), < 1 Medium (3), < 2 High (4), else
    Critical (5). A ``scale`` that is not a positive finite number counts as 1.0. A NaN score or
    threshold gives Unknown (0).

    :param score: anomaly score, higher = more anomalous (``-dot_product``).
    :param threshold: the calibrated score threshold.
    :param scale: the score distance that counts as one severity unit.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        scale = 1.0
    margin = float(score) - float(threshold)
    if math.isnan(margin):
        return 0, SEVERITY_NAMES[0]
    ratio = margin / scale
    if ratio < 0.5:
        sid = 2
    elif ratio < 1.0:
        sid = 3
    elif ratio < 2.0:
        sid = 4
    else:
        sid = 5
    return sid, SEVERITY_NAMES[sid]


@dataclass
class Candidate:
    """One flagged distinct ``(entity, ip)`` pair within a scope.

    :param source: our source name (``vpc_flow`` ...).
    :param view: the pair view that produced the pair.
    :param entity: the entity as scored (log data: may be anything).
    :param ip: the IP as scored.
    :param account: AWS account of the lake partition the pair came from.
    :param region: AWS region of that partition.
    :param first_seen: first event time of the pair in the scope (tz-aware UTC).
    :param last_seen: last event time of the pair in the scope (tz-aware UTC).
    :param events: number of events of the pair in the scope.
    :param dot_product: IP Insights' raw output (higher = more normal).
    :param score: anomaly score, ``-dot_product`` (higher = more anomalous).
    :param context_name: the view's categorical context (``bucket`` for S3 data events), empty if none.
    :param context: its first distinct values for the pair in the scope (sorted).
    """

    source: str
    view: str
    entity: str
    ip: str
    account: str
    region: str
    first_seen: datetime
    last_seen: datetime
    events: int
    dot_product: float
    score: float
    context_name: str = ""
    context: tuple[str, ...] = ()


def _observable_for(name: str, value: str, *, is_ip: bool) -> dict[str, Any] | None:
    if len(value) > OCSF_STRING_MAX_CHARS:
        return None  # cannot be a valid string_t; the full value stays in evidences/unmapped
    try:
        ipaddress.ip_address(value)
        type_id, type_name = OBSERVABLE_IP
    except ValueError:
        type_id, type_name = OBSERVABLE_OTHER if is_ip else OBSERVABLE_RESOURCE_UID
    return {"name": name, "type": type_name, "type_id": type_id, "value": value}


def _fmt(x: float) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) and math.isfinite(x) else str(x)


def _build_one(
    c: Candidate,
    *,
    model: ActiveModel,
    scope: str,
    explanation: Mapping[str, Any] | None,
    created_ms: int,
    product_version: str,
) -> dict[str, Any]:
    for name in ("source", "view", "entity", "ip", "account", "region"):
        _require_str(getattr(c, name), f"Candidate.{name}")
    first_ms = epoch_ms(c.first_seen, "Candidate.first_seen")
    last_ms = epoch_ms(c.last_seen, "Candidate.last_seen")
    if last_ms < first_ms:
        raise ValueError(
            f"Candidate.last_seen ({c.last_seen.isoformat()}) is before first_seen ({c.first_seen.isoformat()})"
        )
    if isinstance(c.events, bool) or not isinstance(c.events, int) or c.events < 0:
        raise ValueError(f"Candidate.events must be a non-negative int, got {c.events!r}")

    entity, ip = _storable(c.entity), _storable(c.ip)
    account, region = _storable(c.account), _storable(c.region)
    source, view = _storable(c.source), _storable(c.view)
    score, dot, threshold = float(c.score), float(c.dot_product), float(model.threshold)
    sev_id, sev_name = severity_for(score, threshold, model.severity_scale)
    uid = finding_uid(model.version, scope, c.source, c.view, c.entity, c.ip)

    expl = _json_canonical(dict(explanation)) if isinstance(explanation, Mapping) else None
    expl_text = expl.get("text") if isinstance(expl, dict) and isinstance(expl.get("text"), str) else None
    # the view's categorical context (log data, so made storable and one-line like the entity)
    context = [_storable(v) for v in c.context if isinstance(v, str)] if c.context_name else []
    context_text = (f"{one_line(c.context_name, 32)}: {', '.join(one_line(v, 120) for v in context)}"
                    if context else "")

    ent_s, ip_s = one_line(entity), one_line(ip, 64)
    title = one_line(f"Unusual IP {ip_s} for {ent_s} ({source}/{view})", TITLE_MAX_CHARS)
    message = one_line(
        f"{ent_s} with {ip_s}: score {_fmt(score)} > threshold {_fmt(threshold)} "
        f"({sev_name}, {source}/{view}, model {one_line(model.version, 64)})"
        + (f"; {context_text}" if context_text else "")
        + (f"; {expl_text}" if expl_text else "; no training profile available for an explanation"),
        MESSAGE_MAX_CHARS,
    )
    judged_by = ("The model never saw the entity; its peer group's known networks placed the pair"
                 if isinstance(expl, dict) and isinstance(expl.get("reason"), str) else "IP Insights scored the pair")
    desc = one_line(
        f"{judged_by} ({ent_s}, {ip_s}) seen {c.events} time(s) in {one_line(scope, 300)} "
        f"at {_fmt(score)} (dot product {_fmt(dot)}), above the calibrated threshold {_fmt(threshold)} of model "
        f"{one_line(model.version, 64)} ({model.backend} backend). "
        + (f"Usual behaviour: {expl_text}." if expl_text else "No training profile was available."),
        DESC_MAX_CHARS,
    )

    data = _json_canonical(
        {
            "entity": entity,
            "ip": ip,
            "score": _finite_or_none(score),
            "dot_product": _finite_or_none(dot),
            "threshold": _finite_or_none(threshold),
            "margin": _finite_or_none(score - threshold),
            "severity_scale": _finite_or_none(float(model.severity_scale)),
            "model_version": model.version,
            "backend": model.backend,
            "endpoint_name": model.endpoint_name,
            "source": source,
            "view": view,
            "scope": _storable(scope),
            "account": account,
            "region": region,
            "events": c.events,
            "explanation": expl,
            **({"context": {c.context_name: context}} if context else {}),
        }
    )
    unmapped = {
        "entity": entity,
        "ip": ip,
        "score": repr(score),
        "dot_product": repr(dot),
        "threshold": repr(threshold),
        "model_version": _storable(model.version),
        "backend": model.backend,
        "source": source,
        "view": view,
        "scope": _storable(scope),
        "events": str(c.events),
    }
    if model.endpoint_name:
        unmapped["endpoint_name"] = _storable(model.endpoint_name)
    if context:
        unmapped[f"context_{one_line(c.context_name, 32)}"] = _storable(", ".join(context))
    if isinstance(expl, dict) and isinstance(expl.get("reason"), str):  # why a pair of an unknown entity fired
        unmapped["reason"] = _storable(expl["reason"])
        if isinstance(expl.get("peer_group"), str):
            unmapped["peer_group"] = _storable(expl["peer_group"])

    observables = [
        o
        for o in (
            _observable_for("unmapped.ip", ip, is_ip=True),
            _observable_for("unmapped.entity", entity, is_ip=False),
        )
        if o is not None
    ]

    return {
        "activity_id": ACTIVITY_ID,
        "activity_name": ACTIVITY_NAME,
        "category_uid": CATEGORY_UID,
        "category_name": CATEGORY_NAME,
        "class_uid": CLASS_UID,
        "class_name": CLASS_NAME,
        "type_uid": TYPE_UID,
        "type_name": TYPE_NAME,
        "severity_id": sev_id,
        "severity": sev_name,
        "status_id": STATUS_ID_NEW,
        "status": "New",
        "time": first_ms,
        "time_dt": ms_to_rfc3339(first_ms),
        "start_time": first_ms,
        "start_time_dt": ms_to_rfc3339(first_ms),
        "end_time": last_ms,
        "end_time_dt": ms_to_rfc3339(last_ms),
        "timezone_offset": 0,
        "count": min(c.events, INT32_MAX),
        "message": message,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": uid,
            "profiles": list(PROFILES),
            "product": {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": _storable(product_version)},
        },
        "cloud": {"provider": "AWS", "region": region, "account": {"uid": account}},
        "finding_info": {
            "uid": uid,
            "title": title,
            "desc": desc,
            "types": [FINDING_TYPES.get(c.source, DEFAULT_FINDING_TYPE)],
            "analytic": {
                "name": one_line(f"IP Insights {source}/{view}", 128),
                "type": "Learning (ML/DL)",
                "type_id": ANALYTIC_TYPE_ID_ML,
                "uid": _storable(model.version),
                "version": _storable(model.version),
                "desc": one_line(
                    f"IP Insights entity/IP embedding model ({model.backend} backend); pairs whose score "
                    f"(-dot_product) exceeds {_fmt(threshold)} are flagged",
                    DESC_MAX_CHARS,
                ),
            },
            "created_time": created_ms,
            "first_seen_time": first_ms,
            "last_seen_time": last_ms,
            "data_sources": [f"{source}/{view}"],
        },
        "evidences": [{"data": data}],
        "observables": observables,
        "unmapped": unmapped,
    }


def suppress_finding(record: dict[str, Any], *, entry_id: str, kind: str, reason: str,
                     expires_at: str | None = None) -> dict[str, Any]:
    """Mark ``record`` (in place, and return it) as suppressed by an analyst allow-list entry.

    ``status_id``/``status`` become 3 / ``Suppressed`` (the OCSF 1.1.0 enum), ``status_detail`` names the
    entry, and ``unmapped`` gains ``allowlist_entry_id``, ``allowlist_kind``, ``allowlist_reason`` and,
    when the entry expires, ``allowlist_expires_at``. The reason is the analyst's text, kept verbatim
    (HTML included: whoever renders it escapes it). Everything else of the record is unchanged.

    :param entry_id: the entry's id (:class:`seclake_ml.feedback.allowlist.AllowEntry`).
    :param kind: the entry's kind (``entity`` | ``cidr`` | ``pair``).
    :param reason: why the analyst accepts such pairs.
    :param expires_at: when the entry expires (UTC ISO text), ``None`` for never.
    """
    for name, value in (("entry_id", entry_id), ("kind", kind), ("reason", reason)):
        _require_str(value, name)
    record["status_id"] = STATUS_ID_SUPPRESSED
    record["status"] = "Suppressed"
    record["status_detail"] = one_line(f"Suppressed by analyst allow-list entry {entry_id} ({kind})", 256)
    unmapped = record.setdefault("unmapped", {})
    unmapped["allowlist_entry_id"] = _storable(entry_id)
    unmapped["allowlist_kind"] = _storable(kind)
    unmapped["allowlist_reason"] = _storable(reason)
    if expires_at is not None:
        unmapped["allowlist_expires_at"] = _storable(_require_str(expires_at, "expires_at"))
    return record


def build_findings(
    candidates: list[Candidate],
    *,
    model: ActiveModel,
    scope: str,
    explanations: dict[tuple[str, str], dict],
    created_time: datetime,
    product_version: str,
) -> list[dict]:
    """OCSF 1.1.0 Detection Finding records, one per candidate, in candidate order.

    :param candidates: flagged distinct pairs of one scope.
    :param model: the model that scored them.
    :param scope: what was scored (source object URI or data interval); part of the finding uid.
    :param explanations: ``(entity, ip)`` -> :meth:`EntityProfile.explain` result; missing pairs get none.
    :param created_time: when the findings are created (tz-aware).
    :param product_version: version of this package, for ``metadata.product.version``.
    """
    _require_str(scope, "scope")
    _require_str(product_version, "product_version")
    created_ms = epoch_ms(created_time, "created_time")
    explanations = explanations or {}
    return [
        _build_one(
            c,
            model=model,
            scope=scope,
            explanation=explanations.get((c.entity, c.ip)),
            created_ms=created_ms,
            product_version=product_version,
        )
        for c in candidates
    ]
