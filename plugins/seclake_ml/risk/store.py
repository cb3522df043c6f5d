"""Versioned risk models and the active one, without pickle.

Layout under ``<work_location>/risk/models``::

    versions/<version>/model.json   manifest: format, features, settings, metrics, file digests
    versions/<version>/linear.json  the linear baseline (vocabularies and coefficients)
    versions/<version>/boosted.txt  the boosted model in LightGBM's text format (when fitted)
    versions/<version>/report/      fit report: report.html, actual_vs_predicted.png, metrics.json
    active.json                     the active version (written atomically)
    history.jsonl                   every activation, appended

Loading checks the format version and each file's SHA-256 against the manifest: an edited, truncated
or swapped file refuses to load with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seclake_ml.model_store import check_version

FORMAT = 1
FILES = ("linear.json", "boosted.txt")


def store_root(work_root: str) -> Path:
    return Path(work_root) / "risk" / "models"


def version_for_interval(start: datetime, end: datetime) -> str:
    fmt = "%Y%m%dT%H%MZ"
    return f"risk-{start.astimezone(timezone.utc).strftime(fmt)}-{end.astimezone(timezone.utc).strftime(fmt)}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_version(root: Path, version: str, manifest: dict[str, Any], files: dict[str, str]) -> Path:
    """Write a version's files and its manifest (with their digests); returns the version folder."""
    check_version(version, "risk model version")
    folder = root / "versions" / version
    digests = {}
    for name, text in files.items():
        if name not in FILES:
            raise ValueError(f"risk model file {name!r}: expected one of {', '.join(FILES)}")
        data = text.encode("utf-8")
        _atomic_write(folder / name, data)
        digests[name] = _sha(data)
    for stale in set(FILES) - set(files):
        (folder / stale).unlink(missing_ok=True)
    doc = dict(manifest, format=FORMAT, version=version, files=digests)
    _atomic_write(folder / "model.json", json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode())
    return folder


def load_version(root: Path, version: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(manifest, {file: text})`` of a version, verified against the manifest's digests."""
    check_version(version, "risk model version")
    folder = root / "versions" / version
    path = folder / "model.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"risk model {version}: no such version under {root}") from None
    except ValueError as exc:
        raise ValueError(f"risk model {version}: {path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"risk model {version}: {path} has format {manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {FORMAT}")
    texts = {}
    for name, digest in (manifest.get("files") or {}).items():
        if name not in FILES:
            raise ValueError(f"risk model {version}: manifest names an unknown file {name!r}")
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"risk model {version}: {folder / name} is missing") from None
        if _sha(data) != digest:
            raise ValueError(f"risk model {version}: {folder / name} does not match its digest in model.json "
                             "(edited, truncated or replaced); refit or restore it")
        texts[name] = data.decode("utf-8")
    return manifest, texts


def read_active(root: Path) -> dict[str, Any] | None:
    path = root / "active.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "version" not in doc:
        raise ValueError(f"{path}: expected an object with a version")
    check_version(doc["version"], str(path))
    return doc


def activate(root: Path, version: str, reason: str) -> dict[str, Any]:
    """Make ``version`` the active one (atomic) and append the activation to ``history.jsonl``."""
    manifest, _ = load_version(root, version)
    record = {"version": version, "activated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "reason": reason, "supervised": bool(manifest.get("supervised")),
              "metrics": manifest.get("metrics", {})}
    _atomic_write(root / "active.json", json.dumps(record, indent=1, sort_keys=True).encode())
    with open(root / "history.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return record
