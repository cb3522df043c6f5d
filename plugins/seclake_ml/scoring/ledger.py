"""Batches and the processed-objects ledger, kept in the work location (local folder or S3).

Layout under ``<work>/scoring/``::

    batches/<batch id>/manifest.json   the batch: its objects, rejected/ignored inputs, pinned model
    batches/<batch id>/result.json     what scoring did (per object), written when the batch is done
    pending/<batch id>.json            present while the batch is not done
    ledger/<hh>/<sha256 of object uri>.json   one entry per object scored or quarantined

Exactly-once findings rest on three rules:

* a batch is **handed off** when its manifest and pending marker are written; only then may the
  signal that announced it be dropped (SQS messages deleted). A crash before that redelivers the
  messages; a crash after it leaves a pending batch that the next run resumes first;
* the model is **pinned** into the manifest before the first object is scored, so a batch is
  scored by exactly one model version, even across retries and model roll-outs;
* an object is marked in the ledger only after its findings are written, and findings files and
  uids derive from the object (and the pinned model), so scoring an object again after a crash
  replaces the same files with the same findings.

Batch ids derive from the batch's object URIs, so the same announcement delivered twice names the
same batch.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any

from seclake_ml.scoring.notifications import LakeObject

log = logging.getLogger(__name__)

PREFIX = "scoring"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def batch_id_for(uris: list[str], origin: str = "lake") -> str:
    """Deterministic id of a batch of object URIs (order-independent)."""
    digest = _sha("\n".join(sorted(set(uris))))[:20]
    return f"{origin}-{digest}"


class Ledger:
    """Processed objects and batch manifests in a :class:`~.stores.LocalStore` / :class:`~.stores.S3Store`."""

    def __init__(self, store: Any) -> None:
        self.store = store

    # ---------------------------------------------------------------- objects
    @staticmethod
    def entry_key(uri: str) -> str:
        h = _sha(uri)
        return f"{PREFIX}/ledger/{h[:2]}/{h}.json"

    def is_done(self, uri: str) -> bool:
        return self.store.exists(self.entry_key(uri))

    def entry(self, uri: str) -> dict[str, Any] | None:
        return self.store.get_json(self.entry_key(uri))

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

    def pending(self) -> list[str]:
        """Ids of batches handed off but not done, oldest first."""
        items = []
        for key in self.store.list(f"{PREFIX}/pending"):
            doc = self.store.get_json(key) or {}
            items.append((str(doc.get("created_at", "")), key.rsplit("/", 1)[-1].removesuffix(".json")))
        return [b for _, b in sorted(items)]

    def create_batch(self, objects: list[LakeObject], *, origin: str, rejected: list[dict] | None = None,
                     ignored: list[dict] | None = None, extra: dict[str, Any] | None = None,
                     batch_id: str | None = None) -> dict[str, Any]:
        """Write the manifest and the pending marker (the hand-off). Idempotent for the same objects."""
        bid = batch_id or batch_id_for([o.uri for o in objects], origin)
        existing = self.store.get_json(self.manifest_key(bid))
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

    def manifest(self, batch_id: str) -> dict[str, Any]:
        doc = self.store.get_json(self.manifest_key(batch_id))
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
        return self.store.get_json(self.result_key(batch_id))
