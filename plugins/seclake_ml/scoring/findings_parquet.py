"""OCSF finding records as Parquet: the Arrow schema, the Security Lake custom-source layout, writing and reading.

The records are those of :mod:`seclake_ml.scoring.findings` (and :mod:`seclake_ml.risk.findings`).
:func:`findings_parquet_parts` files them under
``ext/<custom source>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/<stem>.parquet``;
:func:`read_findings` reads such files back into equal records.

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
``time`` then ``finding_info.uid``.

Partitions
----------
The custom source is ``<detector prefix><source slug>`` (``ipinsights-vpc-flow``, ``risk-cloudtrail``),
chosen by ``unmapped.detector``. Partition values that do not look like an AWS region or a 12-digit
account fall back to ``unknown`` / ``external`` (the Security Lake convention for non-AWS accounts), so
a key can never escape its prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from seclake_ml.scoring.findings import CLASS_UID, OCSF_VERSION, epoch_ms, ms_to_rfc3339, one_line

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
_SOURCE_NAME_MAX = 64
_CUSTOM_SOURCE_PREFIX = "ipinsights-"
# unmapped.detector of a finding -> its custom sources' prefix (absent: an IP Insights finding)
DETECTOR_PREFIXES = {"ipinsights": _CUSTOM_SOURCE_PREFIX, "cloudtrail_risk": "risk-"}


# ----------------------------------------------------------------------------- helpers
def _rfc3339_to_datetime(text: str, path: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected an RFC 3339 datetime string, got {one_line(repr(text), 60)}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"{path}: RFC 3339 datetime needs an offset or 'Z', got {one_line(text, 60)}")
    return dt.astimezone(timezone.utc)


def custom_source_name(source: str, prefix: str = _CUSTOM_SOURCE_PREFIX) -> str:
    """The Security Lake custom source name for one of our sources: ``vpc_flow`` -> ``ipinsights-vpc-flow``.

    :param source: our source name (lower-case letters, digits, ``_``/``-``).
    :param prefix: the detector's prefix (``ipinsights-``; the CloudTrail risk detector's is ``risk-``).
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a string, got {type(source).__name__}")
    slug = re.sub(r"[^a-z0-9]+", "-", source.strip().lower()).strip("-")
    name = prefix + slug
    if not slug or len(name) > _SOURCE_NAME_MAX:
        raise ValueError(
            f"source {one_line(repr(source), 80)} does not give a custom source name of 1-"
            f"{_SOURCE_NAME_MAX - len(prefix)} letters/digits after {prefix!r}"
        )
    return name


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
        _f("status_detail", pa.string()),  # set on suppressed findings only (the allow-list entry)
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


class _Node:
    """One attribute of :data:`FINDINGS_SCHEMA`, with what :func:`_to_arrow_value` needs to know
    about it worked out once (the schema is walked for every record of every batch)."""

    __slots__ = ("name", "nullable", "kind", "children", "names", "element")

    def __init__(self, field: pa.Field) -> None:
        t = field.type
        self.name = field.name
        self.nullable = field.nullable
        kind = _ocsf_type(field)
        if kind not in ("json_t", "datetime_t"):
            kind = ("struct" if pa.types.is_struct(t) else "map" if pa.types.is_map(t)
                    else "list" if pa.types.is_list(t) else None)
        self.kind = kind
        self.children = [_Node(t.field(i)) for i in range(t.num_fields)] if kind == "struct" else []
        self.names = frozenset(c.name for c in self.children)
        self.element = _Node(t.value_field) if kind == "list" else None


def _to_arrow_value(value: Any, node: _Node, path: str) -> Any:
    """Check ``value`` against ``node`` and convert it to what pyarrow expects (JSON/datetime/map)."""
    if value is None:
        if not node.nullable:
            raise ValueError(f"{path}: required attribute missing")
        return None
    kind = node.kind
    if kind is None:
        return value
    if kind == "json_t":
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if kind == "datetime_t":
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected an RFC 3339 string, got {type(value).__name__}")
        return _rfc3339_to_datetime(value, path)
    if kind == "struct":
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
        extra = [k for k in value if k not in node.names]
        if extra:
            shown = one_line(", ".join(map(str, extra)), 200)
            raise ValueError(f"{path or 'record'}: attribute(s) not in FINDINGS_SCHEMA: {shown}")
        return {c.name: _to_arrow_value(value.get(c.name), c, f"{path}.{c.name}" if path else c.name)
                for c in node.children}
    if kind == "map":
        flat = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if not flat:
            raise ValueError(f"{path}: expected a flat string-to-string map")
        return list(value.items())
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{path}: expected an array, got {type(value).__name__}")
    return [_to_arrow_value(x, node.element, f"{path}[{i}]") for i, x in enumerate(value)]


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


_RECORD = _Node(pa.field("record", pa.struct(list(FINDINGS_SCHEMA)), nullable=False))


def findings_table(records: list[dict]) -> pa.Table:
    """The records as a ``pyarrow.Table`` with :data:`FINDINGS_SCHEMA`, in the given order.

    Raises ``ValueError`` naming the record and attribute when a record has an attribute outside the
    schema, lacks a required one, or has the wrong shape.

    :param records: OCSF finding records (as made by :func:`seclake_ml.scoring.findings.build_findings`).
    """
    rows = []
    for i, rec in enumerate(records):
        try:
            rows.append(_to_arrow_value(rec, _RECORD, ""))
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


