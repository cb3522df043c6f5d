"""Security Lake object notifications: from SQS messages to the lake objects worth scoring.

Security Lake tells a data-access subscriber about every new object it writes. This module turns a
batch of such notifications into a :class:`MessagePlan`: the Parquet objects to score, grouped by the
message that announced them, and everything that was rejected or ignored, with a short reason each.
It only uses the standard library, so the scoring Lambda and the Airflow sensor can both import it.

Message containers
    * boto3 ``ReceiveMessage`` messages: ``{"MessageId", "ReceiptHandle", "Body"}``;
    * Lambda SQS event records: ``{"messageId", "receiptHandle", "body"}``.

    The body is a JSON **string** (that is what SQS delivers). A body that is already a decoded
    ``dict`` (hand-written test events) or UTF-8 ``bytes`` is accepted as well. A body is never
    skipped because of its type without being recorded.

Body shapes
    * EventBridge "Object Created" events, the shape of the sample AWS documents for Security Lake
      subscribers: ``detail.bucket.name``, ``detail.object.key``, ``detail.object.size`` and
      ``detail.object.etag``. ``detail-type`` and ``source`` are optional; when present they must be
      ``"Object Created"`` (other detail types are ignored) and ``"aws.s3"``.
    * S3 event notifications: ``Records[].s3.bucket.name``, ``Records[].s3.object.key/size/eTag``.
      Only records whose ``eventName`` starts with ``ObjectCreated`` count; others are ignored.
    * Either of the above wrapped in an SNS envelope (``Type == "Notification"``, ``Message`` is a
      JSON string). SNS subscription confirmations are ignored. Only one level of wrapping is read.
    * ``{"Event": "s3:TestEvent"}``, which S3 sends when a notification is configured: ignored.

Keys are URL-decoded once with :func:`urllib.parse.unquote_plus` (``%3D`` -> ``=``, ``+`` -> space)
and must then follow the AWS-native lake layout (see :func:`parse_lake_key`).

Poison-message policy
    Nothing in a message's content makes :func:`parse_messages` raise. A message (or a record inside
    one) that cannot be used is listed in :attr:`MessagePlan.rejected` with its message id and a
    reason, and a warning is logged. Objects that are fine but not ours (a source that is not enabled,
    another source version, a custom source under ``ext/``, a deletion event, a test event) are listed
    in :attr:`MessagePlan.ignored`. The caller records both in its batch manifest and then **deletes**
    those messages from the queue: a malformed message is never retried forever. A message that holds
    both good and bad records keeps its good objects; only the bad records are rejected.

Logging never prints whole bodies: one summary line per call, one warning per rejected item, and keys
or names in reasons are truncated (about 200 characters) with control characters escaped.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from seclake_ml.display import escape, is_unsafe_char

log = logging.getLogger(__name__)

#: Known Security Lake source versions (the ``<major>.0`` folder).
KNOWN_VERSIONS: frozenset[int] = frozenset({1, 2})
#: S3's own limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: SQS's limit on a message body; also the default of ``max_body_bytes``.
DEFAULT_MAX_BODY_BYTES = 262_144
#: How much of a key, bucket or id goes into reasons and log lines.
SHOWN_CHARS = 200

LAKE_KEY_LAYOUT = "aws/<SOURCE>/<major>.0/region=<region>/accountId=<12 digits>/eventDay=<YYYYMMDD>/<file>.parquet"

_SOURCE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_VERSION_RE = re.compile(r"[0-9]{1,3}\.0")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+-[0-9]{1,2}")
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_DAY_RE = re.compile(r"[0-9]{8}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_ETAG_RE = re.compile(r"[0-9A-Za-z\-\"]{1,128}")
_PARTITIONS = ("region", "accountId", "eventDay")
_N_SEGMENTS = 7
_MAX_RAW_KEY_CHARS = 3 * MAX_KEY_BYTES  # a fully percent-encoded 1024-byte key
_MAX_ID_CHARS = 512


# ----------------------------------------------------------------------------- helpers
def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as a short, printable string for reasons and log lines.

    Strings are truncated to ``limit`` characters (with ``...`` appended) and control, format and
    surrogate characters are written as ``\\xNN`` / ``\\uNNNN`` escapes; backslashes are doubled so
    that an escape cannot be forged. Non-strings are shown by type name only.
    """
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    return escape(value, limit)[0]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# ----------------------------------------------------------------------------- lake keys
class InvalidLakeKey(ValueError):
    """A key that is not an AWS-native Security Lake object key; the message says what is wrong."""


@dataclass(frozen=True)
class LakeObject:
    """One Parquet object of the lake, as announced by a notification (or found on local disk).

    :param bucket: the S3 bucket, ``""`` for the local backend.
    :param key: the URL-decoded key, relative to the bucket (or to the local lake root).
    :param lake_source: the source folder, e.g. ``VPC_FLOW``, ``ROUTE53``, ``CLOUD_TRAIL_MGMT``.
    :param version: the source version (1 or 2).
    :param region: the ``region=`` partition.
    :param account: the ``accountId=`` partition (12 digits).
    :param event_day: the ``eventDay=`` partition (``YYYYMMDD``).
    :param size: object size in bytes, when the notification gave one.
    :param etag: object ETag, when the notification gave one.
    """

    bucket: str
    key: str
    lake_source: str
    version: int
    region: str
    account: str
    event_day: str
    size: int | None = None
    etag: str | None = None

    @property
    def uri(self) -> str:
        """``s3://bucket/key``, or the bare key for the local backend."""
        return f"s3://{self.bucket}/{self.key}" if self.bucket else self.key

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for batch manifests); :meth:`from_dict` reads it back."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "lake_source": self.lake_source,
            "version": self.version,
            "region": self.region,
            "account": self.account,
            "event_day": self.event_day,
            "size": self.size,
            "etag": self.etag,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LakeObject:
        """Rebuild from :meth:`to_dict` output.

        The key is parsed again, so a hand-edited manifest cannot smuggle in a key outside the lake
        layout; partition fields given in ``d`` must agree with the key.

        :raises InvalidLakeKey: bad key, or fields that contradict it.
        """
        if not isinstance(d, Mapping):
            raise InvalidLakeKey(f"lake object must be a mapping, got {type(d).__name__}")
        bucket = d.get("bucket") or ""
        if not isinstance(bucket, str):
            raise InvalidLakeKey(f"lake object bucket must be a string, got {type(bucket).__name__}")
        obj = parse_lake_key(d.get("key"), bucket=bucket, size=d.get("size"), etag=d.get("etag"))
        for name in ("lake_source", "version", "region", "account", "event_day"):
            if name in d and d[name] != getattr(obj, name):
                raise InvalidLakeKey(
                    f"lake object field {name}={shown(str(d[name]), 80)} does not match its key "
                    f"({shown(str(getattr(obj, name)), 80)})"
                )
        return obj


def _check_key_safe(key: Any) -> str:
    """Checks every key must pass whatever its layout; returns the key."""
    if not isinstance(key, str):
        raise InvalidLakeKey(f"object key is not a string (got {_json_type(key)})")
    if not key:
        raise InvalidLakeKey("object key is empty")
    if len(key) > MAX_KEY_BYTES or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidLakeKey(f"key longer than {MAX_KEY_BYTES} bytes")
    for ch in key:
        if is_unsafe_char(ch):
            kind = "control" if unicodedata.category(ch) == "Cc" else "invisible or invalid"
            raise InvalidLakeKey(f"key contains {kind} character U+{ord(ch):04X}: {shown(key)}")
    if "\\" in key:
        raise InvalidLakeKey(f"key contains a backslash: {shown(key)}")
    if key.startswith("/"):
        raise InvalidLakeKey(f"key is absolute (starts with '/'): {shown(key)}")
    segments = key.split("/")
    if any(s == ".." for s in segments):
        raise InvalidLakeKey(f"key has a '..' segment: {shown(key)}")
    if any(s == "." for s in segments):
        raise InvalidLakeKey(f"key has a '.' segment: {shown(key)}")
    if key.endswith("/"):
        raise InvalidLakeKey(f"key is a folder marker (ends with '/'): {shown(key)}")
    if any(s == "" for s in segments):
        raise InvalidLakeKey(f"key has an empty path segment: {shown(key)}")
    return key


def _clean_size(size: Any) -> int | None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63:
        return None
    return size


def _clean_etag(etag: Any) -> str | None:
    if not isinstance(etag, str) or not _ETAG_RE.fullmatch(etag):
        return None
    return etag


def parse_lake_key(key: str, *, bucket: str = "", size: Any = None, etag: Any = None) -> LakeObject:
    """Parse an (already URL-decoded) AWS-native lake key into a :class:`LakeObject`.

    Layout: ``aws/<SOURCE>/<major>.0/region=<region>/accountId=<12 digits>/eventDay=<YYYYMMDD>/<file>.parquet``
    (``<file>`` may end in ``.gz.parquet``, ``.zstd.parquet`` or plain ``.parquet``).

    ``size`` and ``etag`` are informational: a value of the wrong type is dropped (``None``).

    :raises InvalidLakeKey: ``..``/``.``/empty segments, a leading ``/``, backslashes, control
        characters, more than 1024 bytes, a non-Parquet file name, wrong partition names, an account
        that is not 12 digits, an impossible day, or an unknown major version.
    """
    _check_key_safe(key)
    segments = key.split("/")
    if segments[0] != "aws":
        raise InvalidLakeKey(f"key outside the lake layout: does not start with 'aws/': {shown(key)}")
    if len(segments) != _N_SEGMENTS:
        raise InvalidLakeKey(
            f"key outside the lake layout: {len(segments)} path segments, expected {_N_SEGMENTS} "
            f"({LAKE_KEY_LAYOUT}): {shown(key)}"
        )
    _root, source, version_s, *partitions, filename = segments
    if not _SOURCE_RE.fullmatch(source):
        raise InvalidLakeKey(f"key outside the lake layout: bad source folder '{shown(source, 80)}'")
    if not _VERSION_RE.fullmatch(version_s):
        raise InvalidLakeKey(f"key outside the lake layout: bad version folder '{shown(version_s, 80)}'")
    version = int(version_s.split(".")[0])
    if version not in KNOWN_VERSIONS:
        raise InvalidLakeKey(f"unknown source version '{version_s}'")
    values: dict[str, str] = {}
    for expected, segment in zip(_PARTITIONS, partitions):
        name, sep, value = segment.partition("=")
        if not sep or name != expected:
            raise InvalidLakeKey(
                f"key outside the lake layout: '{shown(segment, 80)}' where {expected}=... was expected"
            )
        values[expected] = value
    region, account, day = values["region"], values["accountId"], values["eventDay"]
    if not _REGION_RE.fullmatch(region):
        raise InvalidLakeKey(f"bad region '{shown(region, 80)}'")
    if not _ACCOUNT_RE.fullmatch(account):
        raise InvalidLakeKey(f"account '{shown(account, 80)}' is not 12 digits")
    if not _DAY_RE.fullmatch(day):
        raise InvalidLakeKey(f"bad eventDay '{shown(day, 80)}' (expected YYYYMMDD)")
    try:
        _dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        raise InvalidLakeKey(f"bad eventDay '{day}' (no such date)") from None
    if not filename.endswith(".parquet") or filename.startswith("."):
        raise InvalidLakeKey(f"not a Parquet object: '{shown(filename, 120)}'")
    if not isinstance(bucket, str):
        raise InvalidLakeKey(f"bucket is not a string (got {type(bucket).__name__})")
    return LakeObject(
        bucket=bucket,
        key=key,
        lake_source=source,
        version=version,
        region=region,
        account=account,
        event_day=day,
        size=_clean_size(size),
        etag=_clean_etag(etag),
    )


# ----------------------------------------------------------------------------- message plans
def is_notable_ignore(reason: str) -> bool:
    """Ignored because the configured source version differs from the announced object's: unlike a
    test event or a source that is not enabled, this usually means the configuration is out of date
    (e.g. the lake moved to source version 2), so the objects are worth a durable record."""
    return reason.startswith("source version ")


@dataclass
class MessagePlan:
    """What a batch of notifications asks for.

    :param objects: the accepted objects, de-duplicated on ``(bucket, key)``, in order of first appearance.
    :param by_message: every message id seen -> its accepted objects (an empty list when it had none).
        An object announced by several messages is listed under each of them. A message without a
        usable id (missing, not a printable string) is keyed ``"<message N>"``, N being its position
        in the batch.
    :param rejected: ``{"message_id", "reason"[, "key"]}`` for unusable messages or records (poison:
        the caller deletes them, they are never retried). ``key`` is shown truncated and escaped.
    :param ignored: ``{"message_id", "reason"[, "key"]}`` for well-formed notifications that are not
        ours to score (test events, deletions, disabled sources, other source versions, ``ext/``).
    """

    objects: list[LakeObject] = field(default_factory=list)
    by_message: dict[str, list[LakeObject]] = field(default_factory=dict)
    rejected: list[dict[str, str]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{"messages", "objects", "rejected", "ignored"}``."""
        return {
            "messages": len(self.by_message),
            "objects": len(self.objects),
            "rejected": len(self.rejected),
            "ignored": len(self.ignored),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; objects under ``by_message`` are given as indexes into ``objects``."""
        index = {(o.bucket, o.key): i for i, o in enumerate(self.objects)}
        return {
            "objects": [o.to_dict() for o in self.objects],
            "by_message": {mid: [index[(o.bucket, o.key)] for o in objs] for mid, objs in self.by_message.items()},
            "rejected": [dict(r) for r in self.rejected],
            "ignored": [dict(r) for r in self.ignored],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MessagePlan:
        """Rebuild from :meth:`to_dict` output (keys are validated again)."""
        objects = [LakeObject.from_dict(o) for o in d.get("objects", [])]
        by_message: dict[str, list[LakeObject]] = {}
        for mid, idxs in d.get("by_message", {}).items():
            by_message[str(mid)] = [objects[int(i)] for i in idxs]
        return cls(
            objects=objects,
            by_message=by_message,
            rejected=[dict(r) for r in d.get("rejected", [])],
            ignored=[dict(r) for r in d.get("ignored", [])],
        )


class _Reject(Exception):
    """Internal: this message (or record) is unusable."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


class _Ignore(Exception):
    """Internal: this message (or record) is fine but not ours."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


@dataclass
class _Announced:
    """One object reference as found in a notification, before any checks."""

    bucket: Any
    key: Any
    size: Any = None
    etag: Any = None


class _Parser:
    def __init__(self, *, lake_bucket: str | None, lake_sources: frozenset[str], source_version: int,
                 max_body_bytes: int) -> None:
        self.lake_bucket = lake_bucket or None
        self.lake_sources = lake_sources
        self.source_version = source_version
        self.max_body_bytes = max_body_bytes
        self.plan = MessagePlan()
        self._seen: dict[tuple[str, str], LakeObject] = {}
        self._mine: dict[str, set[tuple[str, str]]] = {}  # per message: objects listed (linear, not quadratic)

    # -- recording
    def _record(self, target: list[dict[str, str]], mid: str, reason: str, key: str | None) -> None:
        item = {"message_id": mid, "reason": reason}
        if key is not None:
            item["key"] = key
        target.append(item)

    def reject(self, mid: str, reason: str, key: str | None = None) -> None:
        self._record(self.plan.rejected, mid, reason, key)
        log.warning("rejected notification (message %s): %s%s", shown(mid, 100), reason,
                    f" [key {key}]" if key is not None and key not in reason else "")

    def ignore(self, mid: str, reason: str, key: str | None = None) -> None:
        self._record(self.plan.ignored, mid, reason, key)
        if is_notable_ignore(reason):  # a configuration that disagrees with the lake: say so loudly
            log.warning("ignored notification (message %s): %s [key %s]", shown(mid, 100), reason, key)
        else:
            log.debug("ignored notification (message %s): %s", shown(mid, 100), reason)

    def accept(self, mid: str, obj: LakeObject) -> None:
        ident = (obj.bucket, obj.key)
        first = self._seen.get(ident)
        if first is None:
            self._seen[ident] = first = obj
            self.plan.objects.append(obj)
        mine = self.plan.by_message.setdefault(mid, [])
        listed = self._mine.setdefault(mid, set())
        if ident not in listed:
            listed.add(ident)
            mine.append(first)

    # -- one message
    def message(self, msg: Any, position: int) -> None:
        mid = f"<message {position}>"
        try:
            if not isinstance(msg, Mapping):
                self.plan.by_message.setdefault(mid, [])
                raise _Reject(f"message is not an object (got {_json_type(msg)})")
            raw_id = msg.get("MessageId", msg.get("messageId"))
            if isinstance(raw_id, str) and raw_id and len(raw_id) <= _MAX_ID_CHARS and raw_id.isprintable():
                mid = raw_id
            self.plan.by_message.setdefault(mid, [])
            if "Body" in msg:
                body = msg["Body"]
            elif "body" in msg:
                body = msg["body"]
            else:
                raise _Reject("message has no body")
            doc = self._decode_body(body)
            self._document(mid, doc, wrapped=False)
        except _Reject as exc:
            self.reject(mid, exc.reason, exc.key)
        except _Ignore as exc:
            self.ignore(mid, exc.reason, exc.key)
        except Exception as exc:  # last resort: message content must never break the batch
            self.reject(mid, f"internal error while reading the message ({type(exc).__name__})")

    def _decode_body(self, body: Any) -> Mapping[str, Any]:
        if isinstance(body, Mapping):
            return body
        if isinstance(body, (bytes, bytearray)):
            if len(body) > self.max_body_bytes:
                raise _Reject(f"body over {self.max_body_bytes} bytes")
            try:
                body = bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject("body is not valid UTF-8") from None
        if not isinstance(body, str):
            raise _Reject(f"body is not a JSON string or object (got {_json_type(body)})")
        if len(body) > self.max_body_bytes or len(body.encode("utf-8", "surrogatepass")) > self.max_body_bytes:
            raise _Reject(f"body over {self.max_body_bytes} bytes")
        if not body.strip():
            raise _Reject("empty body")
        return self._load_object(body, "body")

    @staticmethod
    def _load_object(text: str, what: str) -> Mapping[str, Any]:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise _Reject(f"JSON {what} nested too deeply") from None
        except ValueError:
            raise _Reject(f"malformed JSON {what}") from None
        if not isinstance(doc, dict):
            raise _Reject(f"{what} is a JSON {_json_type(doc)}, not an object")
        return doc

    def _document(self, mid: str, doc: Mapping[str, Any], *, wrapped: bool) -> None:
        sns_type = doc.get("Type")
        if isinstance(sns_type, str) and ("TopicArn" in doc or "Message" in doc):
            if wrapped:
                raise _Reject("SNS envelope inside an SNS envelope")
            if sns_type != "Notification":
                raise _Ignore(f"SNS {shown(sns_type, 40)} message")
            inner = doc.get("Message")
            if isinstance(inner, str):
                if not inner.strip():
                    raise _Reject("SNS envelope with an empty Message")
                inner_doc = self._load_object(inner, "SNS Message")
            elif isinstance(inner, Mapping):
                inner_doc = inner
            else:
                raise _Reject(f"SNS envelope without a JSON Message (got {_json_type(inner)})")
            self._document(mid, inner_doc, wrapped=True)
            return
        if doc.get("Event") == "s3:TestEvent":
            raise _Ignore("s3:TestEvent")
        if "detail" in doc:
            self._eventbridge(mid, doc)
            return
        if "Records" in doc:
            self._s3_records(mid, doc["Records"])
            return
        raise _Reject("unrecognised notification shape (no detail, Records or s3:TestEvent)")

    def _eventbridge(self, mid: str, doc: Mapping[str, Any]) -> None:
        source = doc.get("source")
        if source is not None and source != "aws.s3":
            raise _Reject(f"EventBridge event from source '{shown(source, 60)}', not aws.s3")
        detail_type = doc.get("detail-type")
        if detail_type is not None and detail_type != "Object Created":
            raise _Ignore(f"EventBridge '{shown(detail_type, 60)}' event is not an object creation")
        detail = doc.get("detail")
        if not isinstance(detail, Mapping):
            raise _Reject(f"EventBridge detail is not an object (got {_json_type(detail)})")
        bucket = detail.get("bucket")
        obj = detail.get("object")
        if not isinstance(bucket, Mapping) or "name" not in bucket:
            raise _Reject("EventBridge detail without bucket name")
        if not isinstance(obj, Mapping) or "key" not in obj:
            raise _Reject("EventBridge detail without object key")
        self._announced(mid, _Announced(bucket["name"], obj["key"], obj.get("size"),
                                        obj.get("etag", obj.get("eTag"))))

    def _s3_records(self, mid: str, records: Any) -> None:
        if not isinstance(records, list):
            raise _Reject(f"Records is not a list (got {_json_type(records)})")
        if not records:
            raise _Reject("Records is empty")
        for i, rec in enumerate(records):
            try:
                if not isinstance(rec, Mapping):
                    raise _Reject(f"record {i} is not an object (got {_json_type(rec)})")
                event = rec.get("eventName")
                if not isinstance(event, str):
                    raise _Reject(f"record {i} without eventName")
                s3 = rec.get("s3")
                if not isinstance(s3, Mapping):
                    raise _Reject(f"record {i} without an s3 section")
                bucket = s3.get("bucket")
                obj = s3.get("object")
                key_shown = shown(obj.get("key")) if isinstance(obj, Mapping) and isinstance(obj.get("key"), str) else None
                if not event.startswith("ObjectCreated"):
                    raise _Ignore(f"event '{shown(event, 60)}' is not an object creation", key_shown)
                if not isinstance(bucket, Mapping) or "name" not in bucket:
                    raise _Reject(f"record {i} without bucket name")
                if not isinstance(obj, Mapping) or "key" not in obj:
                    raise _Reject(f"record {i} without object key")
                self._announced(mid, _Announced(bucket["name"], obj["key"], obj.get("size"),
                                                obj.get("eTag", obj.get("etag"))))
            except _Reject as exc:
                self.reject(mid, exc.reason, exc.key)
            except _Ignore as exc:
                self.ignore(mid, exc.reason, exc.key)

    # -- one object reference
    def _announced(self, mid: str, ann: _Announced) -> None:
        try:
            self.accept(mid, self._check_object(ann))
        except _Reject as exc:
            self.reject(mid, exc.reason, exc.key)
        except _Ignore as exc:
            self.ignore(mid, exc.reason, exc.key)

    def _check_object(self, ann: _Announced) -> LakeObject:
        bucket, raw_key = ann.bucket, ann.key
        if not isinstance(bucket, str):
            raise _Reject(f"bucket name is not a string (got {_json_type(bucket)})")
        if not isinstance(raw_key, str):
            raise _Reject(f"object key is not a string (got {_json_type(raw_key)})")
        shown_raw = shown(raw_key)
        if self.lake_bucket is not None and bucket != self.lake_bucket:
            raise _Reject(f"bucket '{shown(bucket, 80)}' is not the lake bucket '{shown(self.lake_bucket, 80)}'",
                          shown_raw)
        if self.lake_bucket is None and not _BUCKET_RE.fullmatch(bucket):
            raise _Reject(f"invalid bucket name '{shown(bucket, 80)}'", shown_raw)
        if not raw_key:
            raise _Reject("object key is empty")
        if len(raw_key) > _MAX_RAW_KEY_CHARS:
            raise _Reject(f"key longer than {MAX_KEY_BYTES} bytes", shown_raw)
        try:
            key = unquote_plus(raw_key, errors="strict")
        except UnicodeDecodeError:
            raise _Reject("object key is not valid percent-encoded UTF-8", shown_raw) from None
        key_shown = shown(key)
        try:
            _check_key_safe(key)
        except InvalidLakeKey as exc:
            raise _Reject(str(exc), key_shown) from None
        segments = key.split("/")
        if segments[0] == "ext":
            raise _Ignore("custom-source object under ext/ is not scored", key_shown)
        if (len(segments) >= 3 and segments[0] == "aws" and _SOURCE_RE.fullmatch(segments[1])
                and _VERSION_RE.fullmatch(segments[2]) and int(segments[2].split(".")[0]) in KNOWN_VERSIONS):
            # A well-formed source/version prefix: decide on it before the rest of the layout, so that
            # objects of sources we do not score (whatever their inner layout) are only ignored.
            if segments[1] not in self.lake_sources:
                raise _Ignore(f"source '{segments[1]}' is not enabled", key_shown)
            version = int(segments[2].split(".")[0])
            if version != self.source_version:
                raise _Ignore(f"source version {version} is not the configured version {self.source_version}",
                              key_shown)
        try:
            return parse_lake_key(key, bucket=bucket, size=ann.size, etag=ann.etag)
        except InvalidLakeKey as exc:
            raise _Reject(str(exc), key_shown) from None


def parse_messages(
    messages: Iterable[Mapping[str, Any]],
    *,
    lake_bucket: str | None,
    lake_sources: set[str] | frozenset[str] | Iterable[str],
    source_version: int,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> MessagePlan:
    """Read a batch of SQS messages (boto3 or Lambda shape) into a :class:`MessagePlan`.

    :param messages: boto3 ``ReceiveMessage`` messages or Lambda ``event["Records"]``.
    :param lake_bucket: the lake bucket; objects of other buckets are rejected. ``None`` or ``""``
        accepts any (well-formed) bucket name.
    :param lake_sources: the enabled lake source folders (``VPC_FLOW``, ...); others are ignored.
    :param source_version: the configured source version (1 or 2); other versions are ignored.
    :param max_body_bytes: bodies larger than this (UTF-8 bytes) are rejected without parsing.
    :raises ValueError: on bad *arguments* only; message content never raises.
    """
    if isinstance(messages, (str, bytes, bytearray, Mapping)) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be an iterable of SQS messages, got {type(messages).__name__}")
    if isinstance(lake_sources, str):
        raise TypeError("lake_sources must be a collection of source names, not a string")
    if isinstance(source_version, bool) or source_version not in KNOWN_VERSIONS:
        raise ValueError(f"source_version: got {source_version!r}; allowed: {sorted(KNOWN_VERSIONS)}")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes: got {max_body_bytes!r}; allowed: a positive integer")
    if lake_bucket is not None and not isinstance(lake_bucket, str):
        raise TypeError(f"lake_bucket must be a string or None, got {type(lake_bucket).__name__}")
    parser = _Parser(lake_bucket=lake_bucket, lake_sources=frozenset(lake_sources),
                     source_version=source_version, max_body_bytes=max_body_bytes)
    for position, msg in enumerate(messages):
        parser.message(msg, position)
    c = parser.plan.counts()
    log.info("notifications: %d message(s), %d object(s) to score, %d rejected, %d ignored",
             c["messages"], c["objects"], c["rejected"], c["ignored"])
    return parser.plan
