"""Where scoring reads objects from and writes its state, findings and alerts: a local folder or S3.

Every class has a local and an S3 flavour with the same methods, so the scoring engine, the Airflow
operators and the Lambda handler share one code path. The S3 flavours take a boto3 client (the
operators get theirs from the Amazon provider's hooks; the Lambda from boto3).

* :class:`ObjectStore`: the byte-level interface the append-only stores (the analysts' label store,
  the allow-list) need; :class:`LocalStore` and :class:`S3Store` have it.
* :class:`LocalStore` / :class:`S3Store`: small JSON documents (batch manifests, ledger entries) and
  blobs under one root. Local writes are atomic (temporary file + ``os.replace``); S3 ``PutObject``
  is atomic by nature.
* :func:`open_local_object` / :class:`S3Objects`: a lake object as a local file path. S3 objects are
  streamed to a temporary file (never held in memory whole) and removed afterwards.
* :class:`LogPublisher` / :class:`SnsPublisher`: severe findings as one log line each plus a JSON
  Lines file, or as SNS messages (one per finding, under SNS's 256 KB limit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from seclake_ml.aws_errors import error_code
from seclake_ml.display import escape
from seclake_ml.uris import is_s3, s3_prefix

log = logging.getLogger(__name__)


def s3_key_missing(client: Any, exc: Exception, bucket: str, key: str) -> bool:
    """Whether a failed GET/HEAD of ``key`` means the key does not exist.

    S3 answers a missing key with 404 only to a caller that may list it; a role whose s3:ListBucket
    carries an s3:prefix condition (include/iam) can get 403 instead. A 403 is therefore settled with
    a listing of that exact key (which such a role may do): absent -> missing; present, or the listing
    refused too -> a real access problem (``False``: the caller raises).
    """
    code = error_code(exc) or ""
    if code in ("404", "NoSuchKey", "NotFound"):
        return True
    if code not in ("403", "AccessDenied", "Forbidden"):
        return False
    from botocore.exceptions import ClientError

    try:
        page = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except ClientError:
        return False
    return not any(item.get("Key") == key for item in page.get("Contents", []))


# ------------------------------------------------------------------------------ state stores
class ObjectStore(Protocol):
    """What an append-only store of small objects needs of a storage backend: the label store
    (:mod:`seclake_ml.risk.labels`) and the allow-list (:mod:`seclake_ml.feedback.allowlist`).
    :class:`LocalStore` and :class:`S3Store` have it."""

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[str]: ...


class LocalStore:
    """JSON documents and blobs under a local folder; keys are ``/``-separated relative paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return self.root / key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def base_uri(self) -> str:
        """What every :meth:`uri` of this store starts with."""
        return str(self.root).rstrip("/") + "/"

    def key_of(self, uri: str) -> str | None:
        """The key of ``uri`` when it lies in this store (the inverse of :meth:`uri`), else ``None``."""
        base = self.base_uri()
        key = str(uri)[len(base):] if str(uri).startswith(base) else None
        if not key or key.startswith("/") or ".." in key.split("/"):
            return None
        return key

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return str(path)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                out.append(p.relative_to(self.root).as_posix())
        return sorted(out)

    def put_json(self, key: str, doc: Any) -> str:
        return self.put_bytes(key, (json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n").encode())

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        return None if data is None else json.loads(data)

    def sweep_temporary(self, prefix: str, max_age_seconds: float) -> int:
        """Remove temporary files of interrupted writes (``.<name>.<random>.tmp``, left by a killed
        process) under ``prefix`` that are older than ``max_age_seconds``; returns how many.

        Younger ones may belong to a write in progress and are left alone. Links are never followed.
        """
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return 0
        cutoff = time.time() - max_age_seconds
        removed = 0
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    st = path.lstat()
                    if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        if removed:
            log.warning("removed %d stale temporary files of interrupted writes under %s", removed, base)
        return removed


class S3Store(LocalStore):
    """The same interface over ``s3://bucket/prefix`` with a boto3 S3 client."""

    def __init__(self, client: Any, uri: str) -> None:
        self.client = client
        self.bucket, self.prefix = s3_prefix(uri, "uri", allow_root=True)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return self.prefix + key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def base_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return self.uri(key)

    def sweep_temporary(self, prefix: str, max_age_seconds: float) -> int:
        """S3 writes are single PUTs: there are no temporary files to sweep."""
        return 0

    def _missing(self, exc: Exception, full_key: str) -> bool:
        return s3_key_missing(self.client, exc, self.bucket, full_key)

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        full = self._key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except ClientError as exc:
            if self._missing(exc, full):
                return None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True
        except ClientError as exc:
            if self._missing(exc, full):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/")):
            for item in page.get("Contents", []):
                out.append(item["Key"][len(self.prefix):])
        return sorted(out)


def store_for(location: str, client: Any = None) -> LocalStore:
    """:class:`S3Store` for ``s3://`` locations (needs ``client``), else :class:`LocalStore`."""
    if is_s3(location):
        if client is None:
            raise ValueError(f"{location} needs an S3 client")
        return S3Store(client, location)
    return LocalStore(location)


# ------------------------------------------------------------------------------ lake objects
@contextlib.contextmanager
def open_local_object(root: str | os.PathLike[str], key: str) -> Iterator[str]:
    """The path of lake key ``key`` under ``root``, refusing anything that resolves outside the root.

    Both refusals raise :class:`~.objects.UnreadableObject`, so the object is quarantined.
    """
    from seclake_ml.scoring.objects import UnreadableObject

    base = Path(root).resolve()
    path = (base / key).resolve()
    if base not in path.parents:
        raise UnreadableObject(f"key {key[:200]!r} resolves outside the lake root")
    if not path.is_file():
        # Gone since it was listed (or never there): quarantined like an S3 404, never retried forever.
        raise UnreadableObject(f"object {key[:200]!r} does not exist under the lake root")
    yield str(path)


class S3Objects:
    """Lake objects on S3, streamed to a temporary file per object (``download_fileobj``).

    An object that does not exist (any more) raises :class:`~.objects.UnreadableObject`, so it is
    quarantined instead of failing the batch on every retry; other S3 errors propagate (retried).
    """

    def __init__(self, client: Any, tmp_dir: str | None = None) -> None:
        self.client = client
        self.tmp_dir = tmp_dir

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[str]:
        from botocore.exceptions import ClientError

        fd, tmp = tempfile.mkstemp(prefix="seclake-object-", suffix=".parquet", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    self.client.download_fileobj(bucket, key, fh)
                except ClientError as exc:
                    if not s3_key_missing(self.client, exc, bucket, key):
                        raise
                    from seclake_ml.scoring.objects import UnreadableObject

                    raise UnreadableObject(f"object s3://{bucket}/{key[:300]} does not exist") from None
            yield tmp
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ------------------------------------------------------------------------------ publishers
def _alert(record: dict[str, Any]) -> dict[str, Any]:
    info = record.get("finding_info") or {}
    un = record.get("unmapped") or {}
    return {
        "uid": info.get("uid"),
        "severity": record.get("severity"),
        "severity_id": record.get("severity_id"),
        "time": record.get("time"),
        "title": info.get("title"),
        "message": record.get("message"),
        "entity": un.get("entity"),
        "ip": un.get("ip"),
        "score": un.get("score"),
        "threshold": un.get("threshold"),
        "model_version": un.get("model_version"),
        "source": un.get("source"),
    }


class LogPublisher:
    """Severe findings as one warning log line each and appended to a JSON Lines file."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None

    def publish(self, records: list[dict[str, Any]]) -> int:
        if not records:
            return 0
        lines = []
        for rec in records:
            alert = _alert(rec)
            # The message names the entity and address from the lake: escaped, never printed raw.
            log.warning("SEVERE finding %s [%s] %s", alert["uid"], alert["severity"], escape(alert["message"], 400)[0])
            lines.append(json.dumps(alert, sort_keys=True, default=str))
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return len(records)


class SnsPublisher:
    """Severe findings to an SNS topic, one message each (deduplicated downstream by ``uid``).

    Messages go out with ``PublishBatch``: up to 10 per request and under SNS's 256 KiB per request.
    Entries SNS reports as failed are sent again (up to ``attempts`` rounds, with backoff); what still
    fails raises, so the object is not marked done and is retried (alerts are at-least-once).
    """

    MAX_ENTRIES = 10
    MAX_REQUEST_BYTES = 250_000  # SNS allows 262,144 for the whole request; room for attributes

    def __init__(self, client: Any, topic_arn: str, *, attempts: int = 4, base_delay: float = 0.2) -> None:
        self.client = client
        self.topic_arn = topic_arn
        self.attempts = max(1, int(attempts))
        self.base_delay = float(base_delay)
        self.requests = 0

    @staticmethod
    def _entry(i: int, rec: dict[str, Any]) -> tuple[dict[str, Any], int]:
        alert = _alert(rec)
        body = json.dumps(alert, sort_keys=True, default=str)
        if len(body.encode()) > 200_000:
            alert["message"] = str(alert["message"])[:1000]
            body = json.dumps(alert, sort_keys=True, default=str)
        subject = f"[{alert['severity']}] IP Insights finding"[:100]
        attrs = {
            "severity_id": {"DataType": "Number", "StringValue": str(alert["severity_id"])},
            "finding_uid": {"DataType": "String", "StringValue": str(alert["uid"])},
        }
        size = len(body.encode()) + len(subject.encode()) + sum(
            len(k) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in attrs.items())
        return {"Id": f"f{i}", "Message": body, "Subject": subject, "MessageAttributes": attrs}, size

    def _batches(self, entries: list[tuple[dict[str, Any], int]]) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        used = 0
        for entry, size in entries:
            if batch and (len(batch) == self.MAX_ENTRIES or used + size > self.MAX_REQUEST_BYTES):
                yield batch
                batch, used = [], 0
            batch.append(entry)
            used += size
        if batch:
            yield batch

    def publish(self, records: list[dict[str, Any]]) -> int:
        todo = [self._entry(i, rec) for i, rec in enumerate(records)]
        for attempt in range(self.attempts):
            failed: list[tuple[dict[str, Any], int]] = []
            reasons: list[str] = []
            by_id = {e["Id"]: (e, size) for e, size in todo}
            for batch in self._batches(todo):
                self.requests += 1
                resp = self.client.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=batch)
                for f in resp.get("Failed", []):
                    failed.append(by_id[f["Id"]])
                    reasons.append(f"{f.get('Code')}: {str(f.get('Message'))[:200]}")
            if not failed:
                return len(records)
            todo = failed
            if attempt + 1 < self.attempts:
                time.sleep(self.base_delay * (2 ** attempt))
        raise RuntimeError(f"SNS refused {len(todo)} of {len(records)} alerts after {self.attempts} rounds: "
                           + "; ".join(sorted(set(reasons))[:3]))


def object_stem(uri: str) -> str:
    """File stem of an object's findings: stable for the object, whatever the run or model."""
    return "obj-" + hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()[:32]
