"""OCSF 1.1.0 Detection Findings (class 2004) for flagged ``(entity, ip)`` pairs, and their Parquet form.

One finding is written per flagged distinct ``(entity, ip)`` pair of a *scope* (a source object or a
data interval). The record is a plain JSON-able ``dict`` shaped like the OCSF 1.1.0 Detection Finding
that Security Lake and Security Hub use, so the same record can be published on SNS, written to a
Security Lake custom source as Parquet, and checked offline against the compiled OCSF schema.

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
  are replaced by their ``\\udXXX`` escape. Partition values that do not look like an AWS region or a
  12-digit account fall back to ``unknown`` / ``external`` (the Security Lake convention for non-AWS
  accounts) so a key can never escape its prefix.

Parquet encoding (``FINDINGS_SCHEMA``)
--------------------------------------
Security Lake's own writer (parquet-mr via Avro) stores OCSF objects as nested structs, arrays as
lists, ``unmapped`` as ``map<string, string>``, ``timestamp_t`` attributes (``time``, ``start_time``,
``finding_info.created_time`` ...) as **int64 epoch milliseconds** (identical in source version 1 and in
the 1.1.0 EKS sample), ``*_dt`` attributes as ``timestamp[ms, tz=UTC]`` (1.1.0 sample), ``integer_t``
as int32 and ``type_uid`` (``long_t``) as int64. This module follows that. Two choices of our own:
``evidences[].data`` (OCSF ``json_t``) is stored as a JSON string (Athena has no "any" type; this is
also how Security Hub findings carry ``resources[].data``), and ``*_dt`` strings in records are the
canonical RFC 3339 form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` so a Parquet round trip gives equal records.
Attributes that OCSF marks required are non-nullable columns. Files are zstd-compressed and sorted by
``time`` then ``finding_info.uid``, under
``ext/<custom source>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/<stem>.parquet``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
_SOURCE_NAME_MAX = 64
_CUSTOM_SOURCE_PREFIX = "ipinsights-"
# unmapped.detector of a finding -> its custom sources' prefix (absent: an IP Insights finding)
DETECTOR_PREFIXES = {"ipinsights": _CUSTOM_SOURCE_PREFIX, "cloudtrail_risk": "risk-"}


# ----------------------------------------------------------------------------- small helpers
def one_line(value: object, limit: int = SHOWN_VALUE_MAX_CHARS) -> str:
    """``value`` as text fit for a single log/UI line.

    Control, format and line/paragraph separator characters are escaped (``\\n``, ``\\x1b``,
    ``\\u2028`` ...), other non-ASCII text is kept, and the result is cut to at most ``limit``
    characters with a ``…(+N chars)`` marker. Only a prefix of huge inputs is ever processed.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[: limit + 1]
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


def _rfc3339_to_datetime(text: str, path: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected an RFC 3339 datetime string, got {one_line(repr(text), 60)}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"{path}: RFC 3339 datetime needs an offset or 'Z', got {one_line(text, 60)}")
    return dt.astimezone(timezone.utc)


def _finite_or_none(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _json_canonical(value: Any) -> Any:
    """A JSON-equivalent copy of ``value``: tuples become lists, keys strings, NaN/inf ``None``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, str):
            return _storable(v)
        return v

    return json.loads(json.dumps(clean(value), ensure_ascii=False, allow_nan=False, default=str))


# ----------------------------------------------------------------------------- public helpers
def custom_source_name(source: str, prefix: str = _CUSTOM_SOURCE_PREFIX) -> str:
    """The Security Lake custom source name for one of our sources: ``vpc_flow`` -> ``ipinsights-vpc-flow``.

    :param source: our source name (lower-case letters, digits, ``_``/``-``).
    :param prefix: the detector's prefix (``ipinsights-``; the CloudTrail risk detector's is ``risk-``).
    """
    _require_str(source, "source")
    slug = re.sub(r"[^a-z0-9]+", "-", source.strip().lower()).strip("-")
    name = prefix + slug
    if not slug or len(name) > _SOURCE_NAME_MAX:
        raise ValueError(
            f"source {one_line(repr(source), 80)} does not give a custom source name of 1-"
            f"{_SOURCE_NAME_MAX - len(prefix)} letters/digits after {prefix!r}"
        )
    return name


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


@dataclass
class ModelInfo:
    """The model that scored the candidates.

    :param version: model version (also ``finding_info.analytic.uid``).
    :param threshold: calibrated score threshold; scores above it are flagged.
    :param backend: ``local`` or ``aws``.
    :param severity_scale: score distance per severity band unit (see :func:`severity_for`).
    :param endpoint_name: SageMaker endpoint name for the ``aws`` backend.
    """

    version: str
    threshold: float
    backend: str
    severity_scale: float = 1.0
    endpoint_name: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("local", "aws"):
            raise ValueError(f"ModelInfo.backend must be one of 'local', 'aws'; got {one_line(repr(self.backend), 60)}")
        _require_str(self.version, "ModelInfo.version")
        if not self.version:
            raise ValueError("ModelInfo.version must not be empty")


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
    model: ModelInfo,
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

    ent_s, ip_s = one_line(entity), one_line(ip, 64)
    title = one_line(f"Unusual IP {ip_s} for {ent_s} ({source}/{view})", TITLE_MAX_CHARS)
    message = one_line(
        f"{ent_s} with {ip_s}: score {_fmt(score)} > threshold {_fmt(threshold)} "
        f"({sev_name}, {source}/{view}, model {one_line(model.version, 64)})"
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


def build_findings(
    candidates: list[Candidate],
    *,
    model: ModelInfo,
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


# ----------------------------------------------------------------------------- Parquet schema
def _f(name: str, type_: pa.DataType, required: bool = False, *, ocsf: str | None = None) -> pa.Field:
    meta = {b"ocsf_type": ocsf.encode()} if ocsf else None
    return pa.field(name, type_, nullable=not required, metadata=meta)


def _list(type_: pa.DataType) -> pa.DataType:
    return pa.list_(pa.field("element", type_, nullable=False))


_TS_DT = pa.timestamp("ms", tz="UTC")

FINDINGS_SCHEMA = pa.schema(
    [
        _f("activity_id", pa.int32(), True),
        _f("activity_name", pa.string()),
        _f("category_uid", pa.int32(), True),
        _f("category_name", pa.string()),
        _f("class_uid", pa.int32(), True),
        _f("class_name", pa.string()),
        _f("type_uid", pa.int64(), True),
        _f("type_name", pa.string()),
        _f("severity_id", pa.int32(), True),
        _f("severity", pa.string()),
        _f("status_id", pa.int32()),
        _f("status", pa.string()),
        _f("time", pa.int64(), True),
        _f("time_dt", _TS_DT, ocsf="datetime_t"),
        _f("start_time", pa.int64()),
        _f("start_time_dt", _TS_DT, ocsf="datetime_t"),
        _f("end_time", pa.int64()),
        _f("end_time_dt", _TS_DT, ocsf="datetime_t"),
        _f("timezone_offset", pa.int32()),
        _f("count", pa.int32()),
        _f("message", pa.string()),
        _f(
            "metadata",
            pa.struct(
                [
                    _f("version", pa.string(), True),
                    _f("uid", pa.string()),
                    _f("profiles", _list(pa.string())),
                    _f(
                        "product",
                        pa.struct(
                            [
                                _f("name", pa.string()),
                                _f("vendor_name", pa.string(), True),
                                _f("version", pa.string()),
                            ]
                        ),
                        True,
                    ),
                ]
            ),
            True,
        ),
        _f(
            "cloud",
            pa.struct(
                [
                    _f("provider", pa.string(), True),
                    _f("region", pa.string()),
                    _f("account", pa.struct([_f("uid", pa.string())])),
                ]
            ),
            True,
        ),
        _f(
            "finding_info",
            pa.struct(
                [
                    _f("uid", pa.string(), True),
                    _f("title", pa.string(), True),
                    _f("desc", pa.string()),
                    _f("types", _list(pa.string())),
                    _f(
                        "analytic",
                        pa.struct(
                            [
                                _f("name", pa.string()),
                                _f("type", pa.string()),
                                _f("type_id", pa.int32(), True),
                                _f("uid", pa.string()),
                                _f("version", pa.string()),
                                _f("desc", pa.string()),
                            ]
                        ),
                    ),
                    _f("created_time", pa.int64()),
                    _f("first_seen_time", pa.int64()),
                    _f("last_seen_time", pa.int64()),
                    _f("data_sources", _list(pa.string())),
                ]
            ),
            True,
        ),
        _f("evidences", _list(pa.struct([_f("data", pa.string(), ocsf="json_t")]))),
        _f(
            "observables",
            _list(
                pa.struct(
                    [
                        _f("name", pa.string(), True),
                        _f("type", pa.string()),
                        _f("type_id", pa.int32(), True),
                        _f("value", pa.string()),
                    ]
                )
            ),
        ),
        _f("unmapped", pa.map_(pa.string(), pa.string())),
    ],
    metadata={b"ocsf_version": OCSF_VERSION.encode(), b"ocsf_class_uid": str(CLASS_UID).encode()},
)


def _ocsf_type(field: pa.Field) -> str | None:
    meta = field.metadata or {}
    raw = meta.get(b"ocsf_type")
    return raw.decode() if raw else None


def _to_arrow_value(value: Any, field: pa.Field, path: str) -> Any:
    """Check ``value`` against ``field`` and convert it to what pyarrow expects (JSON/datetime/map)."""
    if value is None:
        if not field.nullable:
            raise ValueError(f"{path}: required attribute missing")
        return None
    kind = _ocsf_type(field)
    if kind == "json_t":
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if kind == "datetime_t":
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected an RFC 3339 string, got {type(value).__name__}")
        return _rfc3339_to_datetime(value, path)
    t = field.type
    if pa.types.is_struct(t):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
        names = {t.field(i).name for i in range(t.num_fields)}
        extra = [k for k in value if k not in names]
        if extra:
            shown = one_line(", ".join(map(str, extra)), 200)
            raise ValueError(f"{path or 'record'}: attribute(s) not in FINDINGS_SCHEMA: {shown}")
        out = {}
        for i in range(t.num_fields):
            sub = t.field(i)
            out[sub.name] = _to_arrow_value(value.get(sub.name), sub, f"{path}.{sub.name}" if path else sub.name)
        return out
    if pa.types.is_map(t):
        flat = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if not flat:
            raise ValueError(f"{path}: expected a flat string-to-string map")
        return list(value.items())
    if pa.types.is_list(t):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected an array, got {type(value).__name__}")
        return [_to_arrow_value(x, t.value_field, f"{path}[{i}]") for i, x in enumerate(value)]
    return value


def _from_arrow_value(value: Any, field: pa.Field) -> Any:
    """Inverse of :func:`_to_arrow_value`: nulls dropped, maps to dicts, JSON and datetimes decoded."""
    if value is None:
        return None
    kind = _ocsf_type(field)
    if kind == "json_t":
        return json.loads(value)
    if kind == "datetime_t":
        return ms_to_rfc3339(epoch_ms(value))
    t = field.type
    if pa.types.is_struct(t):
        out = {}
        for i in range(t.num_fields):
            sub = t.field(i)
            v = _from_arrow_value(value.get(sub.name), sub)
            if v is not None:
                out[sub.name] = v
        return out
    if pa.types.is_map(t):
        return dict(value)
    if pa.types.is_list(t):
        return [_from_arrow_value(x, t.value_field) for x in value]
    return value


_RECORD_FIELD = pa.field("record", pa.struct(list(FINDINGS_SCHEMA)), nullable=False)


def findings_table(records: list[dict]) -> pa.Table:
    """The records as a ``pyarrow.Table`` with :data:`FINDINGS_SCHEMA`, in the given order.

    Raises ``ValueError`` naming the record and attribute when a record has an attribute outside the
    schema, lacks a required one, or has the wrong shape.

    :param records: OCSF finding records (as made by :func:`build_findings`).
    """
    rows = []
    for i, rec in enumerate(records):
        try:
            rows.append(_to_arrow_value(rec, _RECORD_FIELD, ""))
        except ValueError as exc:
            raise ValueError(f"finding record {i}: {exc}") from None
    try:
        return pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as exc:
        raise ValueError(f"finding records do not fit FINDINGS_SCHEMA: {one_line(str(exc), 300)}") from exc


def partition_values(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """``(custom source name, region, accountId, eventDay)`` a record is filed under.

    Region and account are used only when they look like an AWS region / a 12-digit account;
    otherwise ``unknown`` / ``external`` (Security Lake's value for non-AWS accounts).
    """
    unmapped = record.get("unmapped") or {}
    source = unmapped.get("source") if isinstance(unmapped, Mapping) else None
    if not isinstance(source, str):
        raise ValueError("finding record has no unmapped.source to choose its custom source")
    cloud = record.get("cloud") or {}
    region = cloud.get("region") if isinstance(cloud, Mapping) else None
    account_obj = cloud.get("account") if isinstance(cloud, Mapping) else None
    account = account_obj.get("uid") if isinstance(account_obj, Mapping) else None
    time_ms = record.get("time")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int):
        raise ValueError("finding record has no integer 'time' (epoch ms)")
    day = (_EPOCH + timedelta(milliseconds=time_ms)).strftime("%Y%m%d")
    prefix = DETECTOR_PREFIXES.get(unmapped.get("detector", "ipinsights"), _CUSTOM_SOURCE_PREFIX)
    return (
        custom_source_name(source, prefix),
        region if isinstance(region, str) and _REGION_RE.fullmatch(region) else "unknown",
        account if isinstance(account, str) and _ACCOUNT_RE.fullmatch(account) else "external",
        day,
    )


def _sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    info = record.get("finding_info") or {}
    return int(record.get("time", 0)), str(info.get("uid", ""))


def findings_parquet_bytes(records: list[dict]) -> bytes:
    """One zstd Parquet file (bytes) holding ``records`` sorted by ``time`` then ``finding_info.uid``."""
    table = findings_table(sorted(records, key=_sort_key))
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        data_page_size=1 << 20,  # Security Lake: data pages <= 1 MB uncompressed
        row_group_size=64 * 1024,
        write_statistics=True,
    )
    return sink.getvalue().to_pybytes()


def findings_parquet_parts(records: list[dict], *, file_stem: str) -> list[tuple[str, bytes]]:
    """Findings split into Security Lake custom-source partitions, one Parquet file each.

    Keys are ``ext/<custom_source_name>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/<file_stem>.parquet``
    (eventDay of ``time``, UTC), returned sorted by key; no records gives no parts.

    :param records: finding records.
    :param file_stem: file name without extension; letters, digits, ``._=-``, at most 200 chars.
    """
    if not isinstance(file_stem, str) or not _STEM_RE.fullmatch(file_stem) or ".." in file_stem:
        raise ValueError(
            f"file_stem {one_line(repr(file_stem), 80)} must be 1-200 of [A-Za-z0-9._=-], "
            "start with a letter or digit and not contain '..'"
        )
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for rec in records:
        groups.setdefault(partition_values(rec), []).append(rec)
    parts = []
    for (source, region, account, day), recs in sorted(groups.items()):
        key = f"ext/{source}/region={region}/accountId={account}/eventDay={day}/{file_stem}.parquet"
        parts.append((key, findings_parquet_bytes(recs)))
    return parts


def read_findings(paths_or_root: str | Path | bytes | Iterable[str | Path | bytes]) -> list[dict]:
    """Finding records read back from Parquet written by :func:`findings_parquet_parts`.

    :param paths_or_root: a file, a directory (all ``*.parquet`` below it, in path order), Parquet
        bytes, or an iterable of those.
    """
    if isinstance(paths_or_root, (str, Path, bytes, bytearray)):
        items: list[str | Path | bytes] = [paths_or_root]
    else:
        items = list(paths_or_root)
    sources: list[Any] = []
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            sources.append(pa.BufferReader(bytes(item)))
            continue
        p = Path(item)
        if p.is_dir():
            sources.extend(sorted(str(x) for x in p.rglob("*.parquet") if x.is_file()))
        elif p.is_file():
            sources.append(str(p))
        else:
            raise FileNotFoundError(f"no findings Parquet file or directory at {p}")
    out: list[dict] = []
    for src in sources:
        table = pq.read_table(src)
        for row in table.to_pylist():
            rec = {}
            for field in FINDINGS_SCHEMA:
                v = _from_arrow_value(row.get(field.name), field)
                if v is not None:
                    rec[field.name] = v
            out.append(rec)
    return out


# ----------------------------------------------------------------------------- validation
def load_ocsf_schema(path: str | Path) -> dict:
    """The compiled OCSF schema JSON (e.g. ``reference/ocsf-1.1.0-schema.json``)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


_INT_RANGES = {"integer_t": (-(2**31), 2**31 - 1), "long_t": (-(2**63), 2**63 - 1)}
_BASE_TYPES = {"string_t", "integer_t", "long_t", "float_t", "boolean_t", "json_t"}
_MAX_DEPTH = 48


class _Validator:
    """Recursive checker of one record against a compiled OCSF schema (see :func:`validate_finding`)."""

    def __init__(self, schema: dict, profiles: set[str]) -> None:
        self.types: dict = schema.get("types") or {}
        self.objects: dict = schema.get("objects") or {}
        self.profiles = profiles
        self.errors: list[str] = []
        self._regex: dict[str, re.Pattern[str]] = {}

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path or 'record'}: {msg}")

    # -- primitive types
    def _chain(self, type_name: str) -> tuple[str | None, int | None, list[str], list | None]:
        """Base type, smallest max_len, regexes and range along ``type_name``'s derivation chain."""
        max_len: int | None = None
        regexes: list[str] = []
        rng = None
        seen = set()
        t: str | None = type_name
        while t is not None and t not in _BASE_TYPES:
            if t in seen or t not in self.types:
                return None, None, [], None
            seen.add(t)
            info = self.types[t]
            if info.get("max_len") is not None:
                max_len = info["max_len"] if max_len is None else min(max_len, info["max_len"])
            if info.get("regex"):
                regexes.append(info["regex"])
            if info.get("range") and rng is None:
                rng = info["range"]
            t = info.get("type")
        if t is not None and t in self.types:
            base = self.types[t]
            if base.get("max_len") is not None:
                max_len = base["max_len"] if max_len is None else min(max_len, base["max_len"])
        return t, max_len, regexes, rng

    def check_primitive(self, value: Any, type_name: str, path: str) -> None:
        base, max_len, regexes, rng = self._chain(type_name)
        if base is None:
            self.err(path, f"unknown OCSF type {type_name!r}")
            return
        if base == "string_t":
            if not isinstance(value, str):
                self.err(path, f"expected {type_name} (string), got {type(value).__name__}")
                return
            if max_len is not None and len(value) > max_len:
                self.err(path, f"{type_name} longer than {max_len} characters ({len(value)})")
            for rx in regexes:
                pat = self._regex.get(rx)
                if pat is None:
                    pat = self._regex[rx] = re.compile(rx)
                if not pat.search(value):
                    self.err(path, f"{one_line(repr(value), 80)} is not a valid {type_name}")
                    break
        elif base in _INT_RANGES:
            if isinstance(value, bool) or not isinstance(value, int):
                self.err(path, f"expected {type_name} (integer), got {type(value).__name__}")
                return
            lo, hi = _INT_RANGES[base]
            if not lo <= value <= hi:
                self.err(path, f"{value} is out of range for {type_name}")
            if rng and not rng[0] <= value <= rng[1]:
                self.err(path, f"{value} is outside {type_name} range {rng[0]}..{rng[1]}")
        elif base == "float_t":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.err(path, f"expected {type_name} (number), got {type(value).__name__}")
            elif not math.isfinite(value):
                self.err(path, f"{type_name} must be finite, got {value}")
        elif base == "boolean_t":
            if not isinstance(value, bool):
                self.err(path, f"expected {type_name} (boolean), got {type(value).__name__}")
        elif base == "json_t":
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                self.err(path, f"not JSON-serialisable: {one_line(str(exc), 120)}")

    # -- objects
    def check_object(self, value: Any, obj: dict, path: str, depth: int) -> None:
        if not isinstance(value, dict):
            self.err(path, f"expected object {obj.get('name')!r}, got {type(value).__name__}")
            return
        if depth > _MAX_DEPTH:
            self.err(path, "nested too deeply")
            return
        attrs: dict = obj.get("attributes") or {}
        if not attrs:  # the generic 'object' type (e.g. unmapped): any JSON object
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                self.err(path, f"not JSON-serialisable: {one_line(str(exc), 120)}")
            return
        for key, v in value.items():
            sub = f"{path}.{key}" if path else str(key)
            attr = attrs.get(key)
            if attr is None:
                self.err(one_line(sub, 120), f"unknown attribute of {obj.get('name')!r}")
                continue
            profile = attr.get("profile")
            if profile and profile not in self.profiles:
                self.err(sub, f"attribute of profile {profile!r}, which metadata.profiles does not declare")
            if v is None:
                self.err(sub, "null value (omit the attribute instead)")
                continue
            self.check_attribute(v, attr, sub, depth)
        for key, attr in attrs.items():
            profile = attr.get("profile")
            if attr.get("requirement") == "required" and (not profile or profile in self.profiles):
                if value.get(key) is None:
                    sub = f"{path}.{key}" if path else key
                    self.err(sub, "required attribute missing")
        self.check_constraints(value, obj, path)
        self.check_siblings(value, attrs, path)

    def check_constraints(self, value: dict, obj: dict, path: str) -> None:
        cons = obj.get("constraints") or {}
        present = [k for k in cons.get("at_least_one") or [] if value.get(k) is not None]
        if cons.get("at_least_one") and not present:
            self.err(path, f"needs at least one of {', '.join(cons['at_least_one'])}")
        just = cons.get("just_one") or []
        if just and sum(value.get(k) is not None for k in just) != 1:
            self.err(path, f"needs exactly one of {', '.join(just)}")

    def check_siblings(self, value: dict, attrs: dict, path: str) -> None:
        for key, attr in attrs.items():
            sib, enum = attr.get("sibling"), attr.get("enum")
            if not sib or not enum or key not in value or sib not in value:
                continue
            item = enum.get(str(value[key])) if not isinstance(value[key], bool) else None
            if item is None or str(value[key]) == "99":
                continue
            if value[sib] != item.get("caption"):
                sub = f"{path}.{sib}" if path else sib
                shown = one_line(repr(value[sib]), 60)
                self.err(sub, f"{shown} does not match {key}={value[key]} ({item.get('caption')!r})")

    def check_attribute(self, value: Any, attr: dict, path: str, depth: int) -> None:
        if attr.get("is_array"):
            if not isinstance(value, list):
                self.err(path, f"expected an array of {attr.get('type')}, got {type(value).__name__}")
                return
            for i, item in enumerate(value):
                self.check_single(item, attr, f"{path}[{i}]", depth)
        else:
            if isinstance(value, list):
                self.err(path, f"expected a single {attr.get('type')}, got an array")
                return
            self.check_single(value, attr, path, depth)

    def check_single(self, value: Any, attr: dict, path: str, depth: int) -> None:
        type_name = attr.get("type")
        if type_name in self.types:
            self.check_primitive(value, type_name, path)
            enum = attr.get("enum")
            if enum and not isinstance(value, (bool, dict, list)) and str(value) not in enum:
                allowed = ", ".join(sorted(enum, key=lambda k: (len(k), k)))
                self.err(path, f"{one_line(repr(value), 60)} is not an allowed value ({allowed})")
        elif type_name in self.objects:
            self.check_object(value, self.objects[type_name], path, depth + 1)
        else:
            self.err(path, f"attribute has unknown type {type_name!r} in the schema")


def _find_class(schema: dict, class_uid: Any) -> dict | None:
    classes = schema.get("classes") or {}
    for cls in classes.values():
        if isinstance(cls, dict) and cls.get("uid") == class_uid:
            return cls
    return None


def validate_finding(record: dict, schema: dict) -> list[str]:
    """Errors of ``record`` against the compiled OCSF schema for Detection Finding (class 2004).

    Checked recursively for every object the record uses: unknown attribute names, required
    attributes (including those of declared profiles), JSON types per OCSF type (``string_t`` length,
    ``ip_t``/``datetime_t`` patterns, 32/64-bit integer ranges, ``timestamp_t`` as integer ms ...),
    arrays where ``is_array``, enum values, ``at_least_one``/``just_one`` constraints, enum captions
    of sibling names (``severity`` for ``severity_id`` ...), ``metadata.version`` against the schema
    version and ``type_uid = class_uid * 100 + activity_id``. An empty list means valid.

    :param record: the finding record.
    :param schema: the compiled schema (:func:`load_ocsf_schema`).
    """
    if not isinstance(record, dict):
        return [f"record: expected a JSON object, got {type(record).__name__}"]
    cls = _find_class(schema, CLASS_UID)
    if cls is None:
        return [f"schema: no class with uid {CLASS_UID} (is this a compiled OCSF schema?)"]
    errors: list[str] = []
    if record.get("class_uid") != CLASS_UID:
        shown = one_line(repr(record.get("class_uid")), 40)
        errors.append(f"class_uid: expected {CLASS_UID} (Detection Finding), got {shown}")

    known_profiles = set((schema.get("profiles") or {}).keys())
    declared: set[str] = set()
    metadata = record.get("metadata")
    profiles = metadata.get("profiles") if isinstance(metadata, dict) else None
    if isinstance(profiles, list):
        for p in profiles:
            if isinstance(p, str) and p in known_profiles:
                declared.add(p)
            else:
                errors.append(f"metadata.profiles: unknown profile {one_line(repr(p), 60)}")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if isinstance(version, str) and schema.get("version") and version != schema["version"]:
        shown = one_line(repr(version), 40)
        errors.append(f"metadata.version: {shown} differs from schema version {schema['version']!r}")

    v = _Validator(schema, declared)
    v.check_object(record, cls, "", 0)
    errors.extend(v.errors)

    cu, ai, tu = record.get("class_uid"), record.get("activity_id"), record.get("type_uid")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (cu, ai, tu)) and tu != cu * 100 + ai:
        errors.append(f"type_uid: {tu} != class_uid * 100 + activity_id ({cu * 100 + ai})")
    category = (schema.get("categories") or {}).get(cls.get("category") or "")
    cat_uid = record.get("category_uid")
    if isinstance(category, dict) and isinstance(cat_uid, int) and cat_uid != category.get("uid"):
        errors.append(f"category_uid: {cat_uid} is not the class's category ({category.get('uid')})")
    return errors
