"""Objects of the AWS-native Security Lake layout: :class:`LakeObject` and the key parser.

A lake object is one Parquet file under
``aws/<SOURCE>/<major>.0/region=<region>/accountId=<12 digits>/eventDay=<YYYYMMDD>/<file>.parquet``.
:func:`parse_lake_key` turns an (already URL-decoded) key into a :class:`LakeObject` or raises
:class:`InvalidLakeKey` with a short reason; :meth:`LakeObject.from_dict` parses the key again, so a
batch manifest cannot name an object outside the layout. Keys and names in reasons are truncated
(about 200 characters) with control characters escaped (:func:`shown`). The module uses the standard
library only, so the scoring Lambda, the notification parser, the ledger and the scoring engine can
all import it.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seclake_ml.display import escape, is_unsafe_char

#: Known Security Lake source versions (the ``<major>.0`` folder).
KNOWN_VERSIONS: frozenset[int] = frozenset({1, 2})
#: S3's own limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: How much of a key, bucket or id goes into reasons and log lines.
SHOWN_CHARS = 200

LAKE_KEY_LAYOUT = "aws/<SOURCE>/<major>.0/region=<region>/accountId=<12 digits>/eventDay=<YYYYMMDD>/<file>.parquet"

_SOURCE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_VERSION_RE = re.compile(r"[0-9]{1,3}\.0")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+-[0-9]{1,2}")
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_DAY_RE = re.compile(r"[0-9]{8}")
_ETAG_RE = re.compile(r"[0-9A-Za-z\-\"]{1,128}")
_PARTITIONS = ("region", "accountId", "eventDay")
_N_SEGMENTS = 7


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


def json_type(value: Any) -> str:
    """The JSON type name of ``value`` (``null``, ``string``, ``object`` ...), for messages."""
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


def check_key_safe(key: Any) -> str:
    """``key`` if it passes the checks every key must pass whatever its layout.

    :raises InvalidLakeKey: not a string, empty, over 1024 bytes, control or invisible characters, a
        backslash, a leading ``/``, ``..``/``.``/empty segments, or a folder marker.
    """
    if not isinstance(key, str):
        raise InvalidLakeKey(f"object key is not a string (got {json_type(key)})")
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
    check_key_safe(key)
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


def known_source_prefix(key: str) -> tuple[str, int] | None:
    """``(source folder, version)`` when ``key`` starts with ``aws/<SOURCE>/<major>.0`` of a known version.

    Only the first three segments are looked at, so a caller can tell objects of a source or version
    it does not score from malformed keys before checking the rest of the layout.
    """
    segments = key.split("/")
    if (len(segments) >= 3 and segments[0] == "aws" and _SOURCE_RE.fullmatch(segments[1])
            and _VERSION_RE.fullmatch(segments[2]) and int(segments[2].split(".")[0]) in KNOWN_VERSIONS):
        return segments[1], int(segments[2].split(".")[0])
    return None
