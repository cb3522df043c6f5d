"""Batches and the processed-objects ledger, kept in the work location (local folder or S3).

Layout under ``<work>/scoring/``::

    batches/<batch id>/manifest.json   the batch: its objects, rejected/ignored inputs, pinned model
    batches/<batch id>/result.json     what scoring did (per object), written when the batch is done
    pending/<batch id>.json            present while the batch is not done
    ledger/<hh>/<sha256 of object uri>.json   one entry per object scored or quarantined
    quarantine/<sha256 of object uri>.json     present while an object's entry says "quarantined"
    batches/<batch id>/attempts.json           failed attempts per object (quarantined past a limit)
    adopted.json                               the existing objects were recorded as history
    corrupt/<time>-<name>                      unreadable ledger files, set aside

Exactly-once findings rest on three rules:

* a batch is **handed off** when its manifest and pending marker are written; only then may the
  signal that announced it be dropped (SQS messages deleted). A crash before that redelivers the
  messages; a crash after it leaves a pending batch that the next run resumes first;
* the model is **pinned** into the manifest before the first object is scored, so a batch is
  scored by exactly one model version, even across retries and model roll-outs;
* an object is marked in the ledger only after its findings are written, and findings files and
  uids derive from the object (and the pinned model), so scoring an object again after a crash
  replaces the same files with the same findings.

Batch ids derive from the batch's object URIs and ETags, so the same announcement delivered twice
names the same batch, while an object that changed since it was quarantined (a file that was still
being written) is handed off again in a new batch.

Ledger files are written whole (a temporary file renamed into place, or one S3 PUT). A file that
cannot be parsed anyway (damaged by hand or by the disk) is set aside under ``corrupt/`` with an
error log, and read as absent: a damaged entry makes its object new again (scored again, which
replaces the same findings), a damaged manifest drops its batch (local objects are found again by
the next listing; announced objects are named in the log so that their day can be re-scored).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any

from seclake_ml.scoring.lake_object import LakeObject

log = logging.getLogger(__name__)

PREFIX = "scoring"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def batch_id_for(uris: list[str], origin: str = "lake", etags: list[Any] | None = None) -> str:
    """Deterministic id of a batch of object URIs, with their ETags when known (order-independent)."""
    tokens = list(uris) if etags is None else [u if not e else f"{u}\x00{e}" for u, e in zip(uris, etags)]
    digest = _sha("\n".join(sorted(set(tokens))))[:20]
    return f"{origin}-{digest}"


class Ledger:
    """Processed objects and batch manifests in a :class:`~.stores.LocalStore` / :class:`~.stores.S3Store`."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _read(self, key: str) -> Any:
        """``store.get_json(key)``; a file that does not parse is set aside and read as absent."""
        try:
            return self.store.get_json(key)
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            aside = f"{PREFIX}/corrupt/{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{key.rsplit('/', 1)[-1]}"
            try:
                data = self.store.get_bytes(key)
                if data is not None:
                    self.store.put_bytes(aside, data)
                self.store.delete(key)
            except Exception as move_exc:  # noqa: BLE001 - still read as absent; the error says why
                log.error("could not set aside %s: %s", key, move_exc)
            log.error("ledger file %s is not valid JSON (%s); set aside as %s and read as absent",
                      self.store.uri(key), str(exc)[:200], aside)
            return None

    # ---------------------------------------------------------------- objects
    @staticmethod
    def entry_key(uri: str) -> str:
        h = _sha(uri)
        return f"{PREFIX}/ledger/{h[:2]}/{h}.json"

    @staticmethod
    def quarantine_key(uri: str) -> str:
        return f"{PREFIX}/quarantine/{_sha(uri)}.json"

    def is_done(self, uri: str) -> bool:
        return self.store.exists(self.entry_key(uri))

    def done_for(self, obj: LakeObject) -> bool:
        """Whether ``obj`` needs no scoring: it has an entry, unless it was quarantined and has changed
        since (another ETag / size and mtime), e.g. a file that was listed while still being written."""
        entry = self.entry(obj.uri)
        if entry is None:
            return False
        return not self._changed_since_quarantine(entry, obj)

    @staticmethod
    def _changed_since_quarantine(entry: dict[str, Any], obj: LakeObject) -> bool:
        return (entry.get("status") == "quarantined" and bool(obj.etag) and bool(entry.get("etag"))
                and str(entry["etag"]) != str(obj.etag))

    def changed_quarantined(self, objects: list[LakeObject]) -> list[LakeObject]:
        """Those of ``objects`` that are quarantined and have changed since (one listing, then one
        read per quarantined object among them)."""
        marked = set(self.store.list(f"{PREFIX}/quarantine"))
        out = []
        for obj in objects:
            if self.quarantine_key(obj.uri) in marked:
                entry = self.entry(obj.uri)
                if entry is not None and self._changed_since_quarantine(entry, obj):
                    out.append(obj)
        return out

    def entry(self, uri: str) -> dict[str, Any] | None:
        return self._read(self.entry_key(uri))

    def done_keys(self) -> set[str]:
        """Ledger entry keys (for scanning many objects without one lookup each)."""
        return set(self.store.list(f"{PREFIX}/ledger"))

    def mark(self, obj: LakeObject, *, status: str, batch_id: str, model_version: str | None,
             findings: int = 0, reason: str | None = None, files: list[str] | None = None) -> None:
        self.store.put_json(self.entry_key(obj.uri), {
            "uri": obj.uri, "key": obj.key, "status": status, "batch_id": batch_id,
            "model_version": model_version, "findings": int(findings), "reason": reason,
            "files": files or [], "size": obj.size, "etag": obj.etag, "marked_at": _now(),
        })
        if status == "quarantined":
            self.store.put_json(self.quarantine_key(obj.uri), {"uri": obj.uri, "reason": reason})
        else:
            self.store.delete(self.quarantine_key(obj.uri))

    def forget(self, uri: str) -> None:
        """Remove ``uri``'s entry (and quarantine marker): the object counts as new again."""
        self.store.delete(self.entry_key(uri))
        self.store.delete(self.quarantine_key(uri))

    # ---------------------------------------------------------------- adoption
    ADOPTED_KEY = f"{PREFIX}/adopted.json"

    def adopted(self) -> bool:
        return self.store.exists(self.ADOPTED_KEY)

    def mark_adopted(self, count: int) -> None:
        self.store.put_json(self.ADOPTED_KEY, {"objects": int(count), "adopted_at": _now()})

    # ---------------------------------------------------------------- failed attempts
    @staticmethod
    def attempts_key(batch_id: str) -> str:
        return f"{PREFIX}/batches/{batch_id}/attempts.json"

    def record_failures(self, batch_id: str, failures: dict[str, str]) -> dict[str, int]:
        """Count one more failed attempt for each URI of ``failures`` (uri -> reason); returns the counts."""
        doc = self._read(self.attempts_key(batch_id)) or {}
        counts = {k: int(v.get("attempts", 0)) for k, v in doc.items() if isinstance(v, dict)}
        for uri, reason in failures.items():
            counts[uri] = counts.get(uri, 0) + 1
            doc[uri] = {"attempts": counts[uri], "last_reason": str(reason)[:500], "at": _now()}
        self.store.put_json(self.attempts_key(batch_id), doc)
        return {uri: counts[uri] for uri in failures}

    # ---------------------------------------------------------------- batches
    @staticmethod
    def manifest_key(batch_id: str) -> str:
        return f"{PREFIX}/batches/{batch_id}/manifest.json"

    @staticmethod
    def result_key(batch_id: str) -> str:
        return f"{PREFIX}/batches/{batch_id}/result.json"

    @staticmethod
    def pending_key(batch_id: str) -> str:
        return f"{PREFIX}/pending/{batch_id}.json"

    def pending(self, origins: tuple[str, ...] | None = None) -> list[str]:
        """Ids of batches handed off but not done, oldest first; only those of ``origins`` if given
        (the continuous DAG resumes ``lake``/``sqs`` batches, never the interval DAG's)."""
        items = []
        for key in self.store.list(f"{PREFIX}/pending"):
            bid = key.rsplit("/", 1)[-1].removesuffix(".json")
            if origins is not None and not bid.startswith(tuple(f"{o}-" for o in origins)):
                continue
            doc = self._read(key) or {}
            items.append((str(doc.get("created_at", "")), bid))
        return [b for _, b in sorted(items)]

    def set_aside(self, batch_id: str, reason: str) -> None:
        """Drop a batch that cannot be scored from the pending list (its files stay for inspection)."""
        self.store.delete(self.pending_key(batch_id))
        log.error("batch %s set aside: %s", batch_id, reason)

    def create_batch(self, objects: list[LakeObject], *, origin: str, rejected: list[dict] | None = None,
                     ignored: list[dict] | None = None, extra: dict[str, Any] | None = None,
                     batch_id: str | None = None) -> dict[str, Any]:
        """Write the manifest and the pending marker (the hand-off). Idempotent for the same objects."""
        if not objects and batch_id is None:
            raise ValueError("a batch needs at least one object")
        bid = batch_id or batch_id_for([o.uri for o in objects], origin, [o.etag for o in objects])
        existing = self._read(self.manifest_key(bid))
        if existing is not None:
            if not self.store.exists(self.pending_key(bid)) and not self.store.exists(self.result_key(bid)):
                self.store.put_json(self.pending_key(bid), {"batch_id": bid, "created_at": existing.get("created_at")})
            return existing
        manifest = {
            "batch_id": bid, "origin": origin, "created_at": _now(),
            "objects": [o.to_dict() for o in objects],
            "rejected": rejected or [], "ignored": ignored or [], "model": None, **(extra or {}),
        }
        self.store.put_json(self.manifest_key(bid), manifest)
        self.store.put_json(self.pending_key(bid), {"batch_id": bid, "created_at": manifest["created_at"]})
        log.info("batch %s handed off: %d objects, %d rejected, %d ignored", bid, len(objects),
                 len(manifest["rejected"]), len(manifest["ignored"]))
        return manifest

    def read_manifest(self, batch_id: str) -> dict[str, Any] | None:
        """The batch's manifest, ``None`` when it has none (or an unreadable one, set aside)."""
        return self._read(self.manifest_key(batch_id))

    def manifest(self, batch_id: str) -> dict[str, Any]:
        doc = self.read_manifest(batch_id)
        if doc is None:
            raise FileNotFoundError(f"batch {batch_id!r} has no manifest at {self.store.uri(self.manifest_key(batch_id))}")
        return doc

    def pin_model(self, manifest: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
        """Pin ``model`` into the manifest unless a model is pinned already (then that one wins)."""
        if manifest.get("model"):
            return manifest
        manifest = dict(manifest, model=model, model_pinned_at=_now())
        self.store.put_json(self.manifest_key(manifest["batch_id"]), manifest)
        return manifest

    def finish(self, batch_id: str, result: dict[str, Any]) -> str:
        uri = self.store.put_json(self.result_key(batch_id), dict(result, finished_at=_now()))
        self.store.delete(self.pending_key(batch_id))
        return uri

    def result(self, batch_id: str) -> dict[str, Any] | None:
        return self._read(self.result_key(batch_id))
