"""Versioned risk models and the active one, without pickle.

Layout under ``<work_location>/risk/models``::

    versions/<version>/model.json   manifest: format, features, settings, metrics, file digests
    versions/<version>/linear.json  the linear baseline (vocabularies and coefficients)
    versions/<version>/boosted.txt  the boosted model in LightGBM's text format (when fitted)
    versions/<version>/report/      fit report: report.html, actual_vs_predicted.png, metrics.json
    active.json                     the active version (written atomically)
    history.jsonl                   every activation, appended

Loading checks the format version and each file's SHA-256 against the manifest: an edited, truncated
or swapped file refuses to load with an error naming it. ``root`` is a local folder, or any object
store with ``put_bytes``/``get_bytes`` (:class:`~seclake_ml.scoring.stores.S3Store` for an ``s3://``
work location), so the same code keeps the models of both backends.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seclake_ml.model_store import check_version
from seclake_ml.uris import is_s3, join_location

FORMAT = 1
FILES = ("linear.json", "boosted.txt")


def store_root(work_root: str, client: Any = None) -> Any:
    """The model store of a work location: a local folder (a ``Path``), or an S3 store (``client`` needed)."""
    if is_s3(str(work_root)):
        from seclake_ml.scoring.stores import S3Store

        if client is None:
            raise ValueError(f"{work_root}: the risk model store on S3 needs an S3 client")
        return S3Store(client, join_location(str(work_root), "risk", "models"))
    return Path(work_root) / "risk" / "models"


def _objects(root: Any) -> Any:
    if hasattr(root, "put_bytes"):
        return root
    from seclake_ml.scoring.stores import LocalStore

    return LocalStore(Path(root))


def describe(root: Any) -> str:
    """Where the store is, for messages."""
    return root.base_uri().rstrip("/") if hasattr(root, "base_uri") else str(root)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_version(root: Any, version: str, manifest: dict[str, Any], files: dict[str, str]) -> str:
    """Write a version's files and its manifest (with their digests); returns the version's location."""
    check_version(version, "risk model version")
    objs = _objects(root)
    folder = f"versions/{version}"
    digests = {}
    for name, text in files.items():
        if name not in FILES:
            raise ValueError(f"risk model file {name!r}: expected one of {', '.join(FILES)}")
        data = text.encode("utf-8")
        objs.put_bytes(f"{folder}/{name}", data)
        digests[name] = _sha(data)
    for stale in set(FILES) - set(files):
        objs.delete(f"{folder}/{stale}")
    doc = dict(manifest, format=FORMAT, version=version, files=digests)
    return objs.put_bytes(f"{folder}/model.json", json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode()
                          ).rsplit("/", 1)[0]


def save_report(root: Any, version: str, local_folder: Path) -> dict[str, str]:
    """Copy a report folder's files into the version (``report/<name>``); returns name -> location."""
    objs = _objects(root)
    out = {}
    for path in sorted(Path(local_folder).iterdir()):
        if path.is_file():
            out[path.name] = objs.put_bytes(f"versions/{check_version(version, 'risk model version')}/report/{path.name}",
                                            path.read_bytes())
    return out


def load_version(root: Any, version: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(manifest, {file: text})`` of a version, verified against the manifest's digests."""
    check_version(version, "risk model version")
    objs = _objects(root)
    folder = f"versions/{version}"
    path = objs.uri(f"{folder}/model.json")
    data = objs.get_bytes(f"{folder}/model.json")
    if data is None:
        raise ValueError(f"risk model {version}: no such version under {describe(root)}")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"risk model {version}: {path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"risk model {version}: {path} has format {manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {FORMAT}")
    texts = {}
    for name, digest in (manifest.get("files") or {}).items():
        if name not in FILES:
            raise ValueError(f"risk model {version}: manifest names an unknown file {name!r}")
        blob = objs.get_bytes(f"{folder}/{name}")
        if blob is None:
            raise ValueError(f"risk model {version}: {objs.uri(f'{folder}/{name}')} is missing")
        if _sha(blob) != digest:
            raise ValueError(f"risk model {version}: {objs.uri(f'{folder}/{name}')} does not match its digest in "
                             "model.json (edited, truncated or replaced); refit or restore it")
        texts[name] = blob.decode("utf-8")
    return manifest, texts


def read_active(root: Any) -> dict[str, Any] | None:
    objs = _objects(root)
    path = objs.uri("active.json")
    data = objs.get_bytes("active.json")
    if data is None:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "version" not in doc:
        raise ValueError(f"{path}: expected an object with a version")
    check_version(doc["version"], str(path))
    return doc


def activate(root: Any, version: str, reason: str) -> dict[str, Any]:
    """Make ``version`` the active one (one object write) and add the activation to ``history.jsonl``."""
    manifest, _ = load_version(root, version)
    objs = _objects(root)
    record = {"version": version, "activated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "reason": reason, "supervised": bool(manifest.get("supervised")),
              "metrics": manifest.get("metrics", {})}
    objs.put_bytes("active.json", json.dumps(record, indent=1, sort_keys=True).encode())
    history = objs.get_bytes("history.jsonl") or b""
    objs.put_bytes("history.jsonl", history + (json.dumps(record, sort_keys=True) + "\n").encode())
    return record
