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
and must then follow the AWS-native lake layout
(see :func:`seclake_ml.scoring.lake_object.parse_lake_key`).

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

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from seclake_ml.scoring.lake_object import (
    KNOWN_VERSIONS,
    MAX_KEY_BYTES,
    InvalidLakeKey,
    LakeObject,
    check_key_safe,
    json_type,
    known_source_prefix,
    parse_lake_key,
    shown,
)

log = logging.getLogger(__name__)

#: SQS's limit on a message body; also the default of ``max_body_bytes``.
DEFAULT_MAX_BODY_BYTES = 262_144

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_MAX_RAW_KEY_CHARS = 3 * MAX_KEY_BYTES  # a fully percent-encoded 1024-byte key
_MAX_ID_CHARS = 512


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
                raise _Reject(f"message is not an object (got {json_type(msg)})")
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
            raise _Reject(f"body is not a JSON string or object (got {json_type(body)})")
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
            raise _Reject(f"{what} is a JSON {json_type(doc)}, not an object")
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
                raise _Reject(f"SNS envelope without a JSON Message (got {json_type(inner)})")
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
            raise _Reject(f"EventBridge detail is not an object (got {json_type(detail)})")
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
            raise _Reject(f"Records is not a list (got {json_type(records)})")
        if not records:
            raise _Reject("Records is empty")
        for i, rec in enumerate(records):
            try:
                if not isinstance(rec, Mapping):
                    raise _Reject(f"record {i} is not an object (got {json_type(rec)})")
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
            raise _Reject(f"bucket name is not a string (got {json_type(bucket)})")
        if not isinstance(raw_key, str):
            raise _Reject(f"object key is not a string (got {json_type(raw_key)})")
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
            check_key_safe(key)
        except InvalidLakeKey as exc:
            raise _Reject(str(exc), key_shown) from None
        if key.split("/")[0] == "ext":
            raise _Ignore("custom-source object under ext/ is not scored", key_shown)
        prefix = known_source_prefix(key)
        if prefix is not None:
            # A well-formed source/version prefix: decide on it before the rest of the layout, so that
            # objects of sources we do not score (whatever their inner layout) are only ignored.
            source, version = prefix
            if source not in self.lake_sources:
                raise _Ignore(f"source '{source}' is not enabled", key_shown)
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
