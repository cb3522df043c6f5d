"""The data layer of the analyst workspace: findings, models and scoring batches as JSON-safe dicts.

Pure functions of a :class:`~seclake_ml.config.SeclakeConfig` (and, on aws, the site's boto3 S3
client); no Airflow, no web framework. The page on top escapes what it shows: every value here comes
back verbatim, as stored (entities and IPs are log data and may hold markup).

Findings (:func:`list_findings`, :func:`finding_detail`)
--------------------------------------------------------
The findings tree is the OCSF 2004 layout of :mod:`seclake_ml.scoring.findings_parquet`,
``<findings location>/ext/<custom source>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/*.parquet``
(``extra.scoring.findings_location``, else the local lake root, or ``s3://<lake_bucket>`` on aws).

1. **Files.** Partitions are pruned from the path before anything is read: the custom source by the
   ``source`` / ``detector`` filters (``ipinsights-*`` / ``risk-*``), ``accountId=`` by ``account``
   (a 12-digit account's folder, else ``external``), ``eventDay=`` by ``since``/``until``. Locally the tree is walked (links are not followed; hidden files, files at other depths
   and names not ending in ``.parquet`` are ignored). On aws the same levels are listed with delimiter
   listings, under the prefixes the MWAA execution role may list (``ListSecurityLakeSources`` of
   ``include/iam/mwaa-execution-role-policy.json``: ``ext/ipinsights-*`` and ``ext/risk-cloudtrail/*``,
   see :data:`AWS_SOURCE_PREFIXES` / :data:`AWS_FIXED_SOURCES`; never ``ext/`` itself); an S3 error while
   listing gives an empty result with ``error`` set. Object listing goes newest ``eventDay`` first and
   stops at ``max_files`` objects (default :data:`AWS_MAX_FILES`) or once the listed objects' sizes
   pass :data:`AWS_MAX_BYTES` (the result then says ``"truncated": true`` and ``total`` counts the
   files read); objects over :data:`MAX_OBJECT_BYTES` are skipped. Objects are streamed once into a
   process-wide cache folder (named by the SHA-256 of bucket, key and ETag, so a replaced object is
   fetched again) and read from there; the folder (``<temp>/seclake_ml-workspace-<uid>``, used only
   when it is a real directory owned by this user with mode 0700, else a private ``mkdtemp`` folder)
   is swept of files unused for :data:`CACHE_MAX_AGE_SECONDS`.
   :func:`finding_detail` given the row's ``key`` reads that one file only.
2. **Query.** One DuckDB pass of ``read_parquet`` (``filename``, ``file_row_number``) over the files
   reads only the filter's columns and the sort keys, and returns the page's keys together with the
   total (``count(*) OVER ()``; the cursor condition is a ``QUALIFY``, so the total counts every match);
   a second pass reads the page's columns from the (at most ``page_size + 1``) files holding its rows.
   Order: ``time DESC, uid ASC``, then the file read (locally the findings root + key, so key order).
   Paging is keyset paging: the opaque cursor carries the last row's ``(time, uid, file key)`` and a
   digest of the filter (a cursor is refused with another filter), never an offset, so a deep page
   costs what the first one does. Parquet footers are cached by a process-wide DuckDB database.
3. **Bad files.** Empty files are skipped from their size; when DuckDB refuses the batch (a corrupt or
   truncated file, one of another schema), each file is checked alone, the bad ones are skipped, and
   remembered per ``(path, size, mtime)`` for the life of the process when the refusal is about the
   content (a file that vanished or could not be read is skipped for this call only). Reasons given
   to the caller are short and generic; DuckDB's messages and paths go to the log. The result reports
   ``skipped_files`` (a count) and ``skipped`` (up to :data:`MAX_REPORTED` ``{"key", "reason"}``).

Models (:func:`models_overview`) and batches (:func:`batches_overview`) read the JSON documents the
training and scoring steps write in the work location (a folder, or ``s3://`` through the S3 client).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import stat
import tempfile
import time
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from seclake_ml.aws_errors import error_code
from seclake_ml.config import SeclakeConfig
from seclake_ml.interval import DataInterval, parse_utc
from seclake_ml.locations import work_root
from seclake_ml.scoring.findings import SEVERITY_NAMES, ms_to_rfc3339
from seclake_ml.uris import is_s3, join_location, s3_subfolders, split_s3_uri

log = logging.getLogger(__name__)

DETECTORS = {"ipinsights": "ipinsights-", "risk": "risk-"}  # filter value -> custom source prefix
#: aws: custom sources are found by listing ``ext/<prefix>`` (delimiter ``/``) for these prefixes, and the
#: fixed sources are listed by name: exactly what the MWAA role's ``s3:prefix`` condition allows.
AWS_SOURCE_PREFIXES = ("ipinsights-",)
AWS_FIXED_SOURCES = ("risk-cloudtrail",)
STATUSES = ("New", "Suppressed")
ENTITY_MATCHES = ("exact", "prefix")
MAX_PAGE_SIZE = 500
AWS_MAX_FILES = 500
AWS_MAX_BYTES = 512 * 1024 * 1024  # aws: most bytes (listed object sizes) one call downloads
MAX_OBJECT_BYTES = 256 * 1024 * 1024
MAX_REPORTED = 20
_SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_ACCOUNT_RE = re.compile(r"\d{12}")
_DAY_RE = re.compile(r"\d{8}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CURSOR_VERSION = 1
#: a finding file's key under the findings location (what a listing row's ``key`` holds)
_KEY_RE = re.compile(r"ext/(?P<source>[a-z0-9][a-z0-9-]{0,63})/region=(?P<region>[a-z0-9-]{1,32})/"
                     r"accountId=(?P<account>\d{12}|external)/eventDay=(?P<day>\d{8})/"
                     r"(?P<name>[A-Za-z0-9][A-Za-z0-9._=-]{0,199}\.parquet)")


class FindingsUnavailable(RuntimeError):
    """The findings could not be read at all (S3 refused the listing); the message is safe to show."""


def _s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``AccessDenied`` ...), else ``None``."""
    code = error_code(exc)
    if code is None or re.fullmatch(r"[A-Za-z0-9.]{1,64}", code):
        return code
    return "error"  # a code not fit to show


# =============================================================================== filter
@dataclass
class FindingsFilter:
    """Which findings :func:`list_findings` returns; every field is optional (``None``: no condition).

    :param since: findings whose ``time`` is at or after this instant (a datetime or ISO text).
    :param until: findings whose ``time`` is before this instant (exclusive).
    :param min_severity_id: OCSF severity at least this (1 Informational ... 5 Critical, 6 Fatal).
    :param detector: ``ipinsights`` or ``risk`` (the custom source's prefix decides).
    :param source: a custom source name, such as ``ipinsights-vpc-flow`` or ``risk-cloudtrail``.
    :param entity: the finding's entity (``unmapped.entity``: the IP Insights entity, the risk
        principal); compared exactly, or as a prefix when ``entity_match`` is ``prefix`` (plain
        ``starts_with``: no wildcards, ``%`` and ``_`` are ordinary characters).
    :param entity_match: ``exact`` (default) or ``prefix``.
    :param account: the finding's account (``cloud.account.uid``), exactly.
    :param status: ``New`` or ``Suppressed``.

    Invalid values raise ``ValueError`` whose message starts with the field's name.
    """

    since: datetime | str | None = None
    until: datetime | str | None = None
    min_severity_id: int | None = None
    detector: str | None = None
    source: str | None = None
    entity: str | None = None
    entity_match: str = "exact"
    account: str | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, parse_utc(value, name))
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError(f"until: {self.until.isoformat()} is not after since ({self.since.isoformat()})")
        sev = self.min_severity_id
        if sev is not None:
            if isinstance(sev, str) and sev.strip().isdigit():
                sev = int(sev.strip())
            if isinstance(sev, bool) or not isinstance(sev, int) or not 1 <= sev <= 6:
                raise ValueError(f"min_severity_id: got {str(self.min_severity_id)[:40]!r}; expected an integer 1-6")
            self.min_severity_id = sev
        if self.detector is not None and self.detector not in DETECTORS:
            raise ValueError(f"detector: got {str(self.detector)[:60]!r}; allowed: {' | '.join(DETECTORS)}")
        if self.source is not None and (not isinstance(self.source, str) or not _SOURCE_RE.fullmatch(self.source)):
            raise ValueError(f"source: got {str(self.source)[:80]!r}; expected a custom source name such as "
                             "ipinsights-vpc-flow (lower-case letters, digits and '-', at most 64)")
        if self.source is not None and self.detector is not None and not self.source.startswith(DETECTORS[self.detector]):
            raise ValueError(f"source: {self.source!r} is not a source of detector {self.detector!r}")
        if self.entity is not None and (not isinstance(self.entity, str) or not self.entity
                                        or len(self.entity) > 65535):
            raise ValueError("entity: expected a non-empty string of at most 65535 characters")
        if self.entity_match not in ENTITY_MATCHES:
            raise ValueError(f"entity_match: got {str(self.entity_match)[:40]!r}; allowed: {' | '.join(ENTITY_MATCHES)}")
        if self.account is not None and (not isinstance(self.account, str) or not 1 <= len(self.account) <= 128
                                         or _CONTROL_RE.search(self.account)):
            raise ValueError("account: expected an account id (1-128 characters, no control characters)")
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status: got {str(self.status)[:40]!r}; allowed: {' | '.join(STATUSES)}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> FindingsFilter:
        """A filter from query parameters (text values; empty ones mean "no condition").

        Unknown names raise ``ValueError`` naming them.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in names)
        if unknown:
            raise ValueError(f"{unknown[0][:60]}: not a findings filter (allowed: {', '.join(sorted(names))})")
        kwargs = {k: v for k, v in raw.items() if v is not None and not (isinstance(v, str) and not v.strip())}
        if "entity_match" in kwargs and isinstance(kwargs["entity_match"], str):
            kwargs["entity_match"] = kwargs["entity_match"].strip()
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The filter as JSON (times as ``...Z`` text)."""
        out = asdict(self)
        for name in ("since", "until"):
            if out[name] is not None:
                out[name] = out[name].isoformat().replace("+00:00", "Z")
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def day_range(self) -> tuple[str | None, str | None]:
        """``(first, last)`` eventDay (YYYYMMDD) that can hold matches."""
        first = self.since.strftime("%Y%m%d") if self.since else None
        last = (self.until - timedelta(milliseconds=1)).strftime("%Y%m%d") if self.until else None
        return first, last


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


# =============================================================================== cursor
def _encode_cursor(flt: FindingsFilter, time_ms: int, uid: str, key: str) -> str:
    doc = [_CURSOR_VERSION, flt.digest(), int(time_ms), uid, key]
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, flt: FindingsFilter) -> tuple[int, str, str]:
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200_000:
        raise ValueError("cursor: not a cursor of this listing")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, digest, time_ms, uid, key = json.loads(raw.decode("utf-8", "surrogatepass"))
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise ValueError("cursor: not a cursor of this listing") from None
    if version != _CURSOR_VERSION or isinstance(time_ms, bool) or not isinstance(time_ms, int) \
            or not isinstance(uid, str) or not isinstance(key, str):
        raise ValueError("cursor: not a cursor of this listing")
    if digest != flt.digest():
        raise ValueError("cursor: made for another filter; start again from the first page")
    return time_ms, uid, key


# =============================================================================== files
@dataclass(frozen=True)
class _File:
    path: str  # what DuckDB reads (a local file)
    key: str  # the object's key under the findings location (ext/...)
    source: str
    detector: str
    region: str
    account: str
    day: str
    size: int
    stamp: str  # mtime_ns or ETag


@dataclass
class _Listing:
    files: list[_File]
    skipped: list[dict[str, str]]  # found while listing: empty, too large, not downloaded
    truncated: bool = False
    bad: list[dict[str, str]] = field(default_factory=list)  # refused by DuckDB (known or probed)
    root: str | None = None  # the local findings root (None on S3)
    error: str | None = None  # the findings could not be listed (a short reason, safe to show)

    def path_of(self, key: str) -> str:
        """The path a key of this listing is read from (for an S3 object no longer listed, the key itself:
        the cursor then compares against it, so rows are not repeated)."""
        return os.path.join(self.root, key) if self.root is not None else key


def findings_location(cfg: SeclakeConfig) -> str:
    """The root of the findings tree (:func:`seclake_ml.scoring.sites.findings_location`); no site and no
    AWS clients are built for it."""
    from seclake_ml.scoring.sites import findings_location as site_findings_location

    return site_findings_location(cfg)


def _detector_of(source: str) -> str | None:
    for name, prefix in DETECTORS.items():
        if source.startswith(prefix):
            return name
    return None


def _part_value(name: str, prefix: str) -> str | None:
    return name[len(prefix):] if name.startswith(prefix) else None


def _keep_source(source: str, flt: FindingsFilter) -> bool:
    if not _SOURCE_RE.fullmatch(source):
        return False
    if flt.source is not None and source != flt.source:
        return False
    return flt.detector is None or _detector_of(source) == flt.detector


def _keep_account(account: str, flt: FindingsFilter) -> bool:
    if flt.account is None:
        return True
    return account == (flt.account if _ACCOUNT_RE.fullmatch(flt.account) else "external")


def _keep_day(day: str, first: str | None, last: str | None) -> bool:
    if not _DAY_RE.fullmatch(day):
        return False
    return (first is None or day >= first) and (last is None or day <= last)


def _scandirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _list_local(root: str, flt: FindingsFilter, last_day: str | None) -> _Listing:
    first, last = flt.day_range()
    if last_day is not None and (last is None or last_day < last):
        last = last_day
    files: list[_File] = []
    skipped: list[dict[str, str]] = []
    ext = os.path.join(root, "ext")
    for src in _scandirs(ext):
        if not src.is_dir(follow_symlinks=False) or not _keep_source(src.name, flt):
            continue
        detector = _detector_of(src.name) or "other"
        for reg in _scandirs(src.path):
            region = _part_value(reg.name, "region=")
            if region is None or not reg.is_dir(follow_symlinks=False):
                continue
            for acc in _scandirs(reg.path):
                account = _part_value(acc.name, "accountId=")
                if account is None or not acc.is_dir(follow_symlinks=False) or not _keep_account(account, flt):
                    continue
                for dd in _scandirs(acc.path):
                    day = _part_value(dd.name, "eventDay=")
                    if day is None or not dd.is_dir(follow_symlinks=False) or not _keep_day(day, first, last):
                        continue
                    for f in _scandirs(dd.path):
                        if not f.name.endswith(".parquet") or not f.is_file(follow_symlinks=False):
                            continue
                        key = f"ext/{src.name}/{reg.name}/{acc.name}/{dd.name}/{f.name}"
                        st = f.stat(follow_symlinks=False)
                        if st.st_size == 0:
                            skipped.append({"key": key, "reason": "empty file"})
                            continue
                        files.append(_File(f.path, key, src.name, detector, region, account, day, st.st_size,
                                           str(st.st_mtime_ns)))
    return _Listing(files, skipped, root=root)




CACHE_MAX_AGE_SECONDS = 6 * 3600  # downloaded findings files not used for this long are removed
_CACHE_SWEPT: list[float] = [0.0]


_PRIVATE_CACHE: list[Path] = []
_CACHE_LOCK = threading.Lock()


def _is_private_dir(path: Path) -> bool:
    """``path`` is a real directory (not a link) owned by this user, with mode 0700."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o700:
        return False
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def _cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"seclake_ml-workspace-{os.getuid() if hasattr(os, 'getuid') else 0}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        pass
    if not _is_private_dir(path):
        with _CACHE_LOCK:
            if not _PRIVATE_CACHE or not _is_private_dir(_PRIVATE_CACHE[0]):
                log.warning("%s is not a private folder of this user; downloads go to a private temporary folder",
                            path)
                _PRIVATE_CACHE[:] = [Path(tempfile.mkdtemp(prefix="seclake_ml-workspace-"))]
            path = _PRIVATE_CACHE[0]
    now = time.time()
    if now - _CACHE_SWEPT[0] > 600:  # at most every 10 minutes: files unused for hours go
        _CACHE_SWEPT[0] = now
        for entry in _scandirs(str(path)):
            try:
                st = entry.stat(follow_symlinks=False)
                if entry.is_file(follow_symlinks=False) and now - max(st.st_atime, st.st_mtime) > CACHE_MAX_AGE_SECONDS:
                    os.unlink(entry.path)
            except OSError:
                pass
    return path


def _fetch(client: Any, bucket: str, key: str, etag: str, size: int | None = None) -> str:
    """A local copy of ``s3://bucket/key`` at ``etag`` (streamed to disk once per process-wide cache).

    A cached file is used only when it is a regular file (links are not followed) of the expected size.
    """
    name = hashlib.sha256(json.dumps([bucket, key, etag]).encode("utf-8", "surrogatepass")).hexdigest()
    path = _cache_dir() / f"{name}.parquet"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size):
            return str(path)
        try:
            os.unlink(path)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            client.download_fileobj(bucket, key, fh)
            fh.flush()
            written = os.fstat(fh.fileno()).st_size
        if written > MAX_OBJECT_BYTES or (size is not None and written != size):
            raise ValueError(f"s3://{bucket}/{key}: got {written} bytes, expected {size}")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return str(path)


def _list_s3(location: str, client: Any, flt: FindingsFilter, last_day: str | None, max_files: int) -> _Listing:
    if client is None:
        raise ValueError(f"{location}: reading findings on S3 needs the site's S3 client (s3_client=...)")
    bucket, base = split_s3_uri(location.rstrip("/") + "/")
    base = base.rstrip("/") + "/" if base.strip("/") else ""
    first, last = flt.day_range()
    if last_day is not None and (last is None or last_day < last):
        last = last_day
    paginator = client.get_paginator("list_objects_v2")
    try:
        return _list_s3_objects(client, paginator, bucket, base, flt, first, last, max_files)
    except Exception as exc:  # noqa: BLE001 - a botocore ClientError (access denied, no such bucket ...)
        code = _s3_error_code(exc)
        if code is None:
            raise
        log.warning("listing findings under s3://%s/%sext/ failed: %s", bucket, base, exc)
        return _Listing([], [], error=f"S3 refused listing the findings ({code}); check the role's "
                                      "s3:ListBucket permission on the findings location")


def _aws_sources(children: Any, base: str, flt: FindingsFilter) -> list[str]:
    """The custom sources to read on S3, listing only the prefixes the MWAA role may list."""
    if flt.source is not None:
        allowed = flt.source in AWS_FIXED_SOURCES or flt.source.startswith(AWS_SOURCE_PREFIXES)
        return [flt.source] if allowed and _keep_source(flt.source, flt) else []
    found = set(AWS_FIXED_SOURCES)
    for prefix in AWS_SOURCE_PREFIXES:
        if flt.detector is not None and not prefix.startswith(DETECTORS[flt.detector]):
            continue
        found.update(prefix + rest for rest in children(f"{base}ext/{prefix}"))
    return sorted(s for s in found if _keep_source(s, flt))


def _list_s3_objects(client: Any, paginator: Any, bucket: str, base: str, flt: FindingsFilter, first: str | None,
                     last: str | None, max_files: int) -> _Listing:
    def children(prefix: str) -> list[str]:
        """The names of the sub-folders directly under ``prefix``, sorted."""
        return sorted(p[len(prefix):].rstrip("/") for p in s3_subfolders(paginator, bucket, prefix))

    parts = []  # (day, source, region part, account part)
    for source in _aws_sources(children, base, flt):
        for reg in children(f"{base}ext/{source}/"):
            if _part_value(reg, "region=") is None:
                continue
            for acc in children(f"{base}ext/{source}/{reg}/"):
                account = _part_value(acc, "accountId=")
                if account is None or not _keep_account(account, flt):
                    continue
                for dd in children(f"{base}ext/{source}/{reg}/{acc}/"):
                    day = _part_value(dd, "eventDay=")
                    if day is not None and _keep_day(day, first, last):
                        parts.append((day, source, reg, acc))
    parts.sort(reverse=True)  # newest day first: the bound drops the oldest partitions
    wanted: list[tuple[dict, tuple]] = []
    skipped: list[dict[str, str]] = []
    truncated = False
    budget = 0
    for day, source, reg, acc in parts:
        prefix = f"{base}ext/{source}/{reg}/{acc}/eventDay={day}/"
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]
                if "/" in name or name.startswith(".") or not name.endswith(".parquet"):
                    continue
                key = item["Key"][len(base):]
                size = int(item.get("Size") or 0)
                if size == 0 or size > MAX_OBJECT_BYTES:
                    skipped.append({"key": key, "reason": "empty file" if size == 0 else f"larger than {MAX_OBJECT_BYTES} bytes"})
                    continue
                if len(wanted) >= max_files or budget + size > AWS_MAX_BYTES:
                    truncated = True
                    break
                budget += size
                wanted.append((item, (day, source, reg, acc, key, size)))
            if truncated:
                break
        if truncated:
            break

    def one(entry: tuple[dict, tuple]) -> _File | dict:
        item, (day, source, reg, acc, key, size) = entry
        etag = str(item.get("ETag", "")).strip('"')
        try:
            path = _fetch(client, bucket, item["Key"], etag, size)
        except Exception as exc:  # noqa: BLE001 - reported as a skipped file
            log.warning("downloading s3://%s/%s failed: %s", bucket, item["Key"], exc)
            return {"key": key, "reason": "download failed"}
        return _File(path, key, source, _detector_of(source) or "other", reg[len("region="):], acc[len("accountId="):],
                     day, size, etag)

    files: list[_File] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for got in pool.map(one, wanted):
            (files if isinstance(got, _File) else skipped).append(got)
    return _Listing(files, skipped, truncated)


def _list_files(cfg: SeclakeConfig, flt: FindingsFilter, s3_client: Any, last_day: str | None = None,
                max_files: int = AWS_MAX_FILES) -> _Listing:
    location = findings_location(cfg)
    if is_s3(location):
        return _list_s3(location, s3_client, flt, last_day, max_files)
    return _list_local(location, flt, last_day)


# =============================================================================== DuckDB
# Files found bad, per (path, size, stamp): not read again while the process lives.
_BAD: dict[tuple[str, int, str], str] = {}
_BAD_MAX = 10_000
_READ = "read_parquet($files, filename = true)"
_READ_ROWS = "read_parquet($files, filename = true, file_row_number = true)"
_ROW_COLUMNS = """
    f.time AS time_ms, f.finding_info.uid AS uid, f.severity_id AS severity_id, f.severity AS severity,
    f.status AS status, f.unmapped['entity'] AS entity, f.unmapped['ip'] AS ip,
    f.unmapped['operation'] AS operation, TRY_CAST(f.unmapped['score'] AS DOUBLE) AS score,
    f.cloud.account.uid AS account, f.cloud.region AS region, f.message AS message,
    f.finding_info.title AS title, f.unmapped['source'] AS our_source, f.unmapped['view'] AS view
"""


_DB: Any = None
_DB_LOCK = threading.Lock()


def _connect() -> Any:
    """A connection to the process-wide in-memory DuckDB database (its Parquet footer cache, keyed by
    file and modification time, spares re-reading the footers of unchanged files on every call)."""
    global _DB
    with _DB_LOCK:
        if _DB is None:
            import duckdb

            db = duckdb.connect(":memory:")
            db.execute("SET enable_progress_bar = false")
            db.execute("SET parquet_metadata_cache = true")
            _DB = db
        return _DB.cursor()


def _where(flt: FindingsFilter) -> tuple[list[str], dict[str, Any]]:
    conds, params = [], {}
    if flt.since is not None:
        conds.append("f.time >= $since_ms")
        params["since_ms"] = _ms(flt.since)
    if flt.until is not None:
        conds.append("f.time < $until_ms")
        params["until_ms"] = _ms(flt.until)
    if flt.min_severity_id is not None:
        conds.append("f.severity_id >= $min_sev")
        params["min_sev"] = flt.min_severity_id
    if flt.entity is not None:
        conds.append("starts_with(f.unmapped['entity'], $entity)" if flt.entity_match == "prefix"
                     else "f.unmapped['entity'] = $entity")
        params["entity"] = flt.entity
    if flt.account is not None:
        conds.append("f.cloud.account.uid = $account")
        params["account"] = flt.account
    if flt.status is not None:
        conds.append("f.status = $status")
        params["status"] = flt.status
    return conds, params


_TRANSIENT_MARKERS = ("no such file", "no files found", "cannot open", "could not open", "permission denied",
                      "i/o error", "io error", "input/output error", "interrupted")


def _check_file(con: Any, path: str) -> tuple[str, bool] | None:
    """``None`` when DuckDB reads ``path`` as a findings file (every column a listing reads), else
    ``(reason, lasting)``: a short reason for the caller, and whether the refusal is about the file's
    content (so worth remembering) rather than the file missing or not readable now. The DuckDB message
    goes to the log."""
    try:
        con.execute(f"SELECT {_ROW_COLUMNS} FROM {_READ} f", {"files": [path]}).fetchall()
    except Exception as exc:  # noqa: BLE001 - any refusal makes the file unusable here
        text = " ".join(str(exc).split())[:500]
        log.warning("findings file %s refused: %s: %s", path, type(exc).__name__, text)
        kind = type(exc).__name__.lower()
        transient = "ioexception" in kind or "interrupt" in kind or any(m in text.lower() for m in _TRANSIENT_MARKERS)
        if transient:
            return "could not be read now", False
        return "not a readable findings file", True
    return None


def _unchanged(f: _File) -> bool:
    """``f`` still exists as the listing saw it (a regular file of its size; locally, its mtime)."""
    try:
        st = os.lstat(f.path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
        return False
    return not f.stamp.isdigit() or str(st.st_mtime_ns) == f.stamp


def _good_files(con: Any, listing: _Listing, probe: bool) -> list[_File]:
    """The files of ``listing`` not known bad (their reasons go to ``listing.bad``); with ``probe``, each
    file not known bad is checked alone first."""
    good = []
    listing.bad = []
    for f in listing.files:
        mark = (f.path, f.size, f.stamp)
        reason = _BAD.get(mark)
        if reason is None and probe:
            checked = _check_file(con, f.path)
            if checked is not None:
                reason, lasting = checked
                if lasting and _unchanged(f):  # a file that vanished or changed is not remembered
                    if len(_BAD) >= _BAD_MAX:
                        _BAD.clear()
                    _BAD[mark] = reason
        if reason is None:
            good.append(f)
        else:
            listing.bad.append({"key": f.key, "reason": reason})
    return good


def _run(con: Any, listing: _Listing, work: Any) -> Any:
    """``work(files)`` over the good files; on a DuckDB error every file is probed alone and it runs again."""
    files = _good_files(con, listing, probe=False)
    try:
        return work(files)
    except Exception:  # noqa: BLE001 - find the file(s) at fault, then answer without them
        if not files:
            raise
        return work(_good_files(con, listing, probe=True))


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _row(r: tuple, by_path: Mapping[str, _File]) -> dict[str, Any]:
    (time_ms, uid, sev_id, sev, status, entity, ip, operation, score, account, region, message, title,
     our_source, view, path) = r
    f = by_path[path]
    key, source, detector = f.key, f.source, f.detector
    risk = detector == "risk"
    return {
        "uid": uid, "time": ms_to_rfc3339(time_ms), "time_ms": int(time_ms), "severity_id": sev_id,
        "severity": sev or SEVERITY_NAMES.get(sev_id, "Unknown"), "status": status, "detector": detector,
        "source": source, "entity": entity, "ip": ip,
        "principal": entity if risk else None, "operation": operation if risk else None,
        "view": view, "account": account, "region": region, "score": _finite(score), "message": message,
        "title": title, "key": key,
    }


def list_findings(cfg: SeclakeConfig, flt: FindingsFilter | None = None, *, page_size: int = 50,
                  cursor: str | None = None, s3_client: Any = None, max_files: int = AWS_MAX_FILES) -> dict[str, Any]:
    """One page of findings, newest first (``time`` desc, then ``uid`` asc, then the file; see the module).

    :param cfg: the configuration (its findings location).
    :param flt: the filter (``None``: all findings).
    :param page_size: rows per page, 1 to :data:`MAX_PAGE_SIZE`.
    :param cursor: ``next_cursor`` of the previous page of the same filter (``None``: the first page).
    :param s3_client: the site's boto3 S3 client (an ``s3://`` findings location).
    :param max_files: aws: most objects read (newest eventDay first); see the module's docstring.
    :returns: ``{"total", "rows", "next_cursor", "files", "skipped_files", "skipped", "truncated", "filter",
        "error"}`` (``error``: ``None``, or why the findings could not be listed at all);
        ``total`` counts every match of the filter (not only those after the cursor); each row holds
        ``uid, time (RFC 3339), time_ms, severity_id, severity, status, detector, source, entity, ip,
        principal, operation, view, account, region, score, message, title, key`` (``principal`` and
        ``operation`` for risk findings only, ``None`` otherwise; ``key`` is the file under the
        findings location).
    :raises ValueError: a page size out of range, or a cursor of another filter or not a cursor.
    """
    flt = flt or FindingsFilter()
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size: got {page_size!r}; expected an integer 1-{MAX_PAGE_SIZE}")
    after = _decode_cursor(cursor, flt) if cursor is not None else None
    listing = _list_files(cfg, flt, s3_client, None, max_files)
    by_key = {f.key: f for f in listing.files}
    conds, params = _where(flt)
    where = " AND ".join(conds) or "TRUE"
    qualify, q_params = "TRUE", {}
    if after is not None:
        # the last tie-break is the path DuckDB reads: locally the findings root + the key (key order),
        # on aws the cache file of the object's ETag
        qualify = ("(time_ms < $c_time OR (time_ms = $c_time AND (uid > $c_uid "
                   "OR (uid = $c_uid AND filename > $c_path))))")
        q_params = {"c_time": after[0], "c_uid": after[1],
                    "c_path": by_key[after[2]].path if after[2] in by_key else listing.path_of(after[2])}
    con = _connect()
    try:
        def page(files: list[_File]) -> tuple[int, list[tuple]]:
            if not files:
                return 0, []
            # 1. the page's keys and the total in one pass over the filter's columns only
            keys = con.execute(
                f"SELECT f.time AS time_ms, f.finding_info.uid AS uid, f.filename AS filename, "
                f"f.file_row_number AS rn, count(*) OVER () AS total FROM {_READ_ROWS} f WHERE {where} "
                f"QUALIFY {qualify} ORDER BY time_ms DESC, uid ASC, filename ASC LIMIT {page_size + 1}",
                {"files": [f.path for f in files], **params, **q_params}).fetchall()
            if keys:
                total = int(keys[0][4])
            else:  # past the last row (the tree changed since the cursor was made): count alone
                total = int(con.execute(f"SELECT count(*) FROM {_READ} f WHERE {where}",
                                        {"files": [f.path for f in files], **params}).fetchone()[0])
            if not keys:
                return total, []
            # 2. the page's columns, read from the files that hold its rows only
            wanted = {(k[2], int(k[3])) for k in keys}
            got = con.execute(
                f"SELECT {_ROW_COLUMNS}, f.filename, f.file_row_number FROM {_READ_ROWS} f "
                f"WHERE f.file_row_number IN (SELECT unnest($rns))",
                {"files": sorted({k[2] for k in keys}), "rns": sorted({int(k[3]) for k in keys})}).fetchall()
            full = {(r[-2], int(r[-1])): r[:-1] for r in got if (r[-2], int(r[-1])) in wanted}
            if len(full) != len(wanted):
                raise RuntimeError("findings files changed while the page was read")
            return total, [full[(k[2], int(k[3]))] for k in keys]

        total, raw = _run(con, listing, page)
    finally:
        con.close()
    by_path = {f.path: f for f in listing.files}
    rows = [_row(r, by_path) for r in raw[:page_size]]
    next_cursor = None
    if len(raw) > page_size and rows:
        last = rows[-1]
        next_cursor = _encode_cursor(flt, last["time_ms"], last["uid"], last["key"])
    skipped = {s["key"]: s for s in listing.skipped + listing.bad}
    return {
        "total": total, "rows": rows, "next_cursor": next_cursor,
        "files": len(listing.files) - len(listing.bad),
        "skipped_files": len(skipped), "skipped": list(skipped.values())[:MAX_REPORTED],
        "truncated": listing.truncated, "filter": flt.to_dict(), "error": listing.error,
    }


def parse_finding_key(key: str) -> dict[str, str]:
    """The parts of a finding file's key (``source, region, account, day, name``), checked strictly:
    ``ext/<source>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/<name>.parquet``, no ``..``.

    :raises ValueError: (message starting ``key:``) anything else.
    """
    if not isinstance(key, str) or len(key) > 512 or ".." in key or not _KEY_RE.fullmatch(key):
        raise ValueError("key: expected a findings file key, "
                         "ext/<source>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/<name>.parquet")
    return _KEY_RE.fullmatch(key).groupdict()


def _file_of_key(cfg: SeclakeConfig, key: str, s3_client: Any) -> _File | None:
    """The one findings file ``key`` names (downloaded on aws), or ``None`` when there is no such file."""
    parts = parse_finding_key(key)
    source, detector = parts["source"], _detector_of(parts["source"]) or "other"
    location = findings_location(cfg)
    if not is_s3(location):
        path = os.path.join(location, key)
        # no link is followed: every folder below the findings root and the file itself must be real
        check = location
        for part in key.split("/"):
            check = os.path.join(check, part)
            try:
                st = os.lstat(check)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                return None
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None
        return _File(path, key, source, detector, parts["region"], parts["account"], parts["day"], st.st_size,
                     str(st.st_mtime_ns))
    if s3_client is None:
        raise ValueError(f"{location}: reading findings on S3 needs the site's S3 client (s3_client=...)")
    bucket, base = split_s3_uri(location.rstrip("/") + "/")
    base = base.rstrip("/") + "/" if base.strip("/") else ""
    try:
        head = s3_client.head_object(Bucket=bucket, Key=base + key)
    except Exception as exc:  # noqa: BLE001 - a botocore ClientError: 404, or refused
        code = _s3_error_code(exc)
        if code is None:
            raise
        if code in ("404", "NoSuchKey", "NotFound"):
            return None
        log.warning("reading s3://%s/%s%s failed: %s", bucket, base, key, exc)
        raise FindingsUnavailable(f"S3 refused reading the finding's file ({code})") from None
    size = int(head.get("ContentLength") or 0)
    if size == 0 or size > MAX_OBJECT_BYTES:
        return None
    etag = str(head.get("ETag", "")).strip('"')
    try:
        path = _fetch(s3_client, bucket, base + key, etag, size)
    except Exception as exc:  # noqa: BLE001 - logged; the caller gets a short reason
        log.warning("downloading s3://%s/%s%s failed: %s", bucket, base, key, exc)
        raise FindingsUnavailable("the finding's file could not be downloaded") from None
    return _File(path, key, source, detector, parts["region"], parts["account"], parts["day"], size, etag)


def finding_detail(cfg: SeclakeConfig, uid: str, *, s3_client: Any = None,
                   max_files: int = AWS_MAX_FILES, key: str | None = None) -> dict[str, Any] | None:
    """The whole record of the finding ``uid`` as stored, or ``None`` when no file holds it.

    The record is what :func:`seclake_ml.scoring.findings_parquet.read_findings` gives back (equal to the
    record that was written): ``message``, ``finding_info`` (title, desc, analytic ...), ``evidences[0].data``
    (the explanation of an IP Insights finding; the probable cause, contributions and raw event fields of
    a risk finding), ``observables`` and ``unmapped``. Two keys are added: ``_key`` (the file under the
    findings location) and ``_detector``. When several files hold the uid, the newest file (by key) wins.

    :param key: the file that holds the finding (a listing row's ``key``): only that file is read (on
        aws, only that object downloaded), so an old finding beyond the listing's bounds is found too.
        Without it, every file of the findings tree (on aws, within ``max_files``) is searched.
    :raises ValueError: ``uid`` is not a non-empty string of at most 256 characters, or ``key`` is not a
        findings file key (:func:`parse_finding_key`).
    :raises FindingsUnavailable: S3 refused the listing (or the keyed object's reading).
    """
    if not isinstance(uid, str) or not uid or len(uid) > 256:
        raise ValueError("uid: expected a finding uid (a non-empty string of at most 256 characters)")
    from seclake_ml.scoring.findings_parquet import read_findings

    if key is not None:
        one = _file_of_key(cfg, key, s3_client)
        if one is None:
            return None
        try:
            records = read_findings(one.path)
        except Exception as exc:  # noqa: BLE001 - a damaged file holds no finding we can show
            log.warning("findings file %s unreadable: %s", one.path, exc)
            return None
        for rec in records:
            if (rec.get("finding_info") or {}).get("uid") == uid:
                return dict(rec, _key=one.key, _detector=one.detector)
        return None
    listing = _list_files(cfg, FindingsFilter(), s3_client, None, max_files)
    if listing.error:
        raise FindingsUnavailable(listing.error)
    con = _connect()
    try:
        def find(files: list[_File]) -> list[tuple]:
            if not files:
                return []
            return con.execute(f"SELECT DISTINCT f.filename FROM {_READ} f WHERE f.finding_info.uid = $uid",
                               {"files": [f.path for f in files], "uid": uid}).fetchall()

        hits = _run(con, listing, find)
    finally:
        con.close()
    if not hits:
        return None
    by_path = {f.path: f for f in listing.files}
    best = max((by_path[h[0]] for h in hits), key=lambda f: f.key)
    path, key, detector = best.path, best.key, best.detector
    for rec in read_findings(path):
        if (rec.get("finding_info") or {}).get("uid") == uid:
            return dict(rec, _key=key, _detector=detector)
    return None


# =============================================================================== work-location documents
def _store(location: str, s3_client: Any) -> Any:
    from seclake_ml.scoring.stores import store_for

    if is_s3(location) and s3_client is None:
        raise ValueError(f"{location}: reading the work location on S3 needs the site's S3 client (s3_client=...)")
    return store_for(location, s3_client)


def _get_json(store: Any, key: str) -> tuple[Any, str | None]:
    """``(document, error)``: ``(None, None)`` when absent, ``(None, why)`` when unreadable."""
    try:
        data = store.get_bytes(key)
    except Exception as exc:  # noqa: BLE001 - shown to the analyst (shortly), not raised
        log.warning("reading %s from the work location failed: %s", key, exc)
        return None, f"{key}: could not be read"
    if data is None:
        return None, None
    try:
        return json.loads(data.decode("utf-8")), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{key}: not valid JSON ({str(exc)[:120]})"


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as ``None`` (json.loads reads them; strict JSON cannot hold them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _calibrations(store: Any) -> dict[str, dict[str, Any]]:
    """Calibration summaries by the model version trained on their interval."""
    out: dict[str, dict[str, Any]] = {}
    keys = store.list("training/calibration")
    for key in keys:
        parts = key.split("/")
        if len(parts) != 4 or parts[3] != "metrics.json":
            continue
        try:
            window = DataInterval.from_key(parts[2])
        except ValueError:
            continue
        doc, error = _get_json(store, key)
        report_key = f"training/calibration/{parts[2]}/report.html"
        entry: dict[str, Any] = {"interval": {"start": window.start_iso, "end": window.end_iso, "key": window.key},
                                 "metrics_path": store.uri(key),
                                 "report": store.uri(report_key) if report_key in keys else None}
        if error or not isinstance(doc, dict):
            entry["error"] = error or f"{key}: not a JSON object"
        else:
            threshold = doc.get("threshold")
            entry.update(auc=doc.get("roc_auc"), auc_by_kind=doc.get("roc_auc_by_kind"),
                         components=doc.get("components"), threshold=threshold,
                         threshold_value=threshold.get("value") if isinstance(threshold, dict) else threshold,
                         counts=doc.get("counts"), combiner_declined=doc.get("combiner_declined"))
        out[window.model_version()] = _json_safe(entry)
    return out


def _active_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    interval = record.get("interval")
    rule = record.get("threshold_rule")
    return _json_safe({
        "version": record.get("version"), "threshold": record.get("threshold"),
        "threshold_method": rule.get("method") if isinstance(rule, Mapping) else None,
        "interval": ({"start": interval[0], "end": interval[1]} if isinstance(interval, (list, tuple))
                     and len(interval) == 2 else interval),
        "metrics": record.get("metrics") or {}, "combiner": record.get("combiner") is not None,
        "activated_at": record.get("activated_at"), "previous_version": record.get("previous_version"),
        "report": record.get("report"), "endpoint_name": record.get("endpoint_name"),
    })


def _ipinsights_overview(cfg: SeclakeConfig, work: str, s3_client: Any, ssm_client: Any) -> dict[str, Any]:
    store = _store(work, s3_client)
    calibrations = _calibrations(store)
    active, active_error, versions = None, None, []
    if cfg.work_is_s3:
        # aws: model artifacts live with SageMaker; the versions shown are those with a calibration,
        # and the active record is the SSM registry's (read only when an SSM client is given).
        versions = sorted(calibrations)
        if ssm_client is not None:
            try:
                from seclake_ml.aws.registry import active_parameter, read_active_record

                active = read_active_record(ssm_client, active_parameter(cfg))
            except Exception as exc:  # noqa: BLE001 - NoActiveRecord, unreadable record, access denied
                log.warning("reading the active IP Insights record failed: %s", exc)
                active_error = f"the active model record could not be read ({type(exc).__name__})"
        else:
            active_error = "the active record is in the SSM registry; pass ssm_client to read it"
        location = "SageMaker (versions from the calibrations under " + store.uri("training/calibration") + ")"
    else:
        from seclake_ml.model_store import ModelStoreError, ipinsights_store

        local = ipinsights_store(cfg)
        location = str(local.root)
        versions = local.versions()
        try:
            active = local.active()
        except ModelStoreError as exc:
            log.warning("reading the active IP Insights model failed: %s", exc)
            # the store's folder is shown as "store" already; the message is kept relative to it
            active_error = " ".join(str(exc).replace(str(local.root) + os.sep, "").split())[:300]
    active_version = active.get("version") if active else None
    if active_version and active_version not in versions:
        versions.append(active_version)
    return {
        "store": location,
        "active": _active_summary(active) if active else None,
        "active_error": active_error,
        "versions": [{"version": v, "active": v == active_version, "calibration": calibrations.get(v)}
                     for v in sorted(versions, reverse=True)],
    }


def _model_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, Mapping):
        return {}
    return {name: {k: m.get(k) for k in ("r2", "rmse", "mae", "rows")}
            for name, m in metrics.items() if isinstance(m, Mapping) and {"r2", "rmse", "mae"} & set(m)}


def _risk_overview(cfg: SeclakeConfig, work: str, s3_client: Any) -> dict[str, Any]:
    root = join_location(work, "risk", "models")
    store = _store(root, s3_client)
    keys = store.list("versions")
    names = sorted({k.split("/")[1] for k in keys if k.count("/") >= 2}, reverse=True)
    active, active_error = _get_json(store, "active.json")
    if active is not None and not isinstance(active, dict):
        active, active_error = None, "active.json: not a JSON object"
    active_version = active.get("version") if active else None
    versions = []
    for name in names:
        manifest, error = _get_json(store, f"versions/{name}/model.json")
        report_key = f"versions/{name}/report/report.html"
        entry: dict[str, Any] = {"version": name, "active": name == active_version,
                                 "report": store.uri(report_key) if report_key in keys else None}
        if error or not isinstance(manifest, dict):
            entry["error"] = error or f"versions/{name}/model.json: missing or not a JSON object"
        else:
            metrics = manifest.get("metrics") or {}
            interval = manifest.get("interval")
            entry.update(
                interval=interval, supervised=manifest.get("supervised"), kind=manifest.get("kind"),
                events=manifest.get("events"), labels_used=manifest.get("labels_used"),
                labels_available=manifest.get("labels_available"), models=_model_metrics(metrics),
                train_rows=metrics.get("train_rows") if isinstance(metrics, Mapping) else None,
                test_rows=metrics.get("test_rows") if isinstance(metrics, Mapping) else None,
                gate=manifest.get("gate"),
            )
        versions.append(_json_safe(entry))
    return {
        "store": store.base_uri().rstrip("/"),
        "active": _json_safe({"version": active_version, "activated_at": active.get("activated_at"),
                              "reason": active.get("reason"), "supervised": active.get("supervised"),
                              "models": _model_metrics(active.get("metrics"))}) if active else None,
        "active_error": active_error,
        "versions": versions,
    }


def models_overview(cfg: SeclakeConfig, *, s3_client: Any = None, ssm_client: Any = None) -> dict[str, Any]:
    """Both detectors' model versions, the active ones and their quality figures.

    :returns: ``{"ipinsights": {...}, "risk": {...}}``. ``ipinsights``: ``store``, ``active`` (``version,
        threshold, threshold_method, interval {start, end}, metrics, combiner`` (bool), ``activated_at,
        previous_version, report, endpoint_name``) or ``None``, ``active_error``, ``versions`` (newest
        first: ``version, active, calibration``; ``calibration`` is ``None`` or ``interval {start, end,
        key}, metrics_path, report, auc, auc_by_kind, components, threshold`` (the rule),
        ``threshold_value, counts, combiner_declined``, or ``error``). ``risk``: ``store``, ``active``
        (``version, activated_at, reason, supervised, models``) or ``None``, ``active_error``, ``versions``
        (``version, active, report, interval, supervised, kind, events, labels_used, labels_available,
        models`` (per model ``r2, rmse, mae, rows``), ``train_rows, test_rows, gate``, or ``error``).

    Locally everything comes from the work folder. On aws (an ``s3://`` work location, read with
    ``s3_client``) the IP Insights versions are those with a calibration (the artifacts live with
    SageMaker) and the active record is read from the SSM registry only when ``ssm_client`` is given.
    """
    work = work_root(cfg)
    return {"ipinsights": _ipinsights_overview(cfg, work, s3_client, ssm_client),
            "risk": _risk_overview(cfg, work, s3_client)}


# =============================================================================== batches
def _batch_results(cfg: SeclakeConfig, work: str, s3_client: Any) -> list[tuple[float, str]]:
    """``(modified time, batch id)`` of every batch with a ``result.json``."""
    out = []
    if is_s3(work):
        if s3_client is None:
            raise ValueError(f"{work}: reading the work location on S3 needs the site's S3 client (s3_client=...)")
        bucket, prefix = split_s3_uri(join_location(work, "scoring", "batches") + "/")
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rest = item["Key"][len(prefix):]
                if rest.count("/") == 1 and rest.endswith("/result.json"):
                    modified = item.get("LastModified")
                    out.append((modified.timestamp() if hasattr(modified, "timestamp") else 0.0, rest.split("/")[0]))
        return out
    for entry in _scandirs(os.path.join(work, "scoring", "batches")):
        if entry.is_dir(follow_symlinks=False):
            try:
                out.append((os.stat(os.path.join(entry.path, "result.json")).st_mtime, entry.name))
            except OSError:
                continue
    return out


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return round((parse_utc(end) - parse_utc(start)).total_seconds(), 3)
    except (ValueError, TypeError):
        return None


def batches_overview(cfg: SeclakeConfig, *, limit: int = 50, s3_client: Any = None) -> list[dict[str, Any]]:
    """The scored batches (those with a ``result.json``), newest finish first, at most ``limit``.

    Each: ``batch_id, origin, created_at, finished_at, model_version, objects, rows, pairs, distinct_pairs,
    unknown_entity, unknown_rate`` (of pairs), ``findings, findings_per_1k_pairs, severity, suppressed``
    (``None`` when the result has none), ``failed, quarantined, risk_findings`` (from ``risk.json`` when
    present), ``newest_event_day, drift`` (the result's ``drift`` as stored, when it has one) and
    ``scoring_lag_seconds``: **finish time minus manifest creation time** (hand-off to done: the time the
    batch waited and was scored; unlike "now minus newest event day" it does not grow while the page is
    open, and it is defined for re-scored old days). ``error`` is set for a batch whose result is unreadable.

    Only the ``limit`` most recently written results (file modification time) are read.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit: got {limit!r}; expected an integer 1-10000")
    work = work_root(cfg)
    store = _store(work, s3_client)
    newest = sorted(_batch_results(cfg, work, s3_client), reverse=True)[:limit]
    out = []
    for _, bid in newest:
        base = f"scoring/batches/{bid}"
        result, error = _get_json(store, f"{base}/result.json")
        manifest, m_error = _get_json(store, f"{base}/manifest.json")
        result = result if isinstance(result, dict) else {}
        manifest = manifest if isinstance(manifest, dict) else {}
        totals = result.get("totals") if isinstance(result.get("totals"), dict) else {}
        pairs, findings, unknown = _int(totals.get("pairs")), _int(totals.get("findings")), _int(totals.get("unknown_entity"))
        days = [o.get("event_day") for o in manifest.get("objects") or [] if isinstance(o, dict)
                and isinstance(o.get("event_day"), str)]
        risk, _ = _get_json(store, f"{base}/risk.json")
        risk_done = risk.get("done") if isinstance(risk, dict) else None
        suppressed = totals.get("suppressed", result.get("suppressed"))
        item = {
            "batch_id": result.get("batch_id") or bid, "origin": result.get("origin") or manifest.get("origin"),
            "created_at": manifest.get("created_at"), "finished_at": result.get("finished_at"),
            "model_version": result.get("model_version"),
            "objects": _int(result.get("objects_in_batch")) if "objects_in_batch" in result else _int(totals.get("objects")),
            "rows": _int(totals.get("rows")), "pairs": pairs, "distinct_pairs": _int(totals.get("distinct_pairs")),
            "unknown_entity": unknown,
            "unknown_rate": round(unknown / pairs, 6) if pairs and unknown is not None else None,
            "findings": findings,
            "findings_per_1k_pairs": round(findings * 1000.0 / pairs, 3) if pairs and findings is not None else None,
            "severity": totals.get("severity") if isinstance(totals.get("severity"), dict) else {},
            "suppressed": _int(suppressed) if suppressed is not None else None,
            "failed": _int(totals.get("failed")), "quarantined": _int(totals.get("quarantined")),
            "risk_findings": sum(v for v in risk_done.values() if isinstance(v, int) and not isinstance(v, bool))
            if isinstance(risk_done, dict) else None,
            "newest_event_day": max(days) if days else None,
            "scoring_lag_seconds": _seconds_between(manifest.get("created_at"), result.get("finished_at")),
        }
        if "drift" in result:
            item["drift"] = result["drift"]
        if error or m_error:
            item["error"] = error or m_error
        out.append(_json_safe(item))
    out.sort(key=lambda b: (str(b.get("finished_at") or ""), b["batch_id"]), reverse=True)
    return out
