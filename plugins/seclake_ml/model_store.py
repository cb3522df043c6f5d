"""Local model store: versioned IP Insights models and an atomically switched active version.

Layout under ``root`` (``<work_location>/models/ipinsights`` by default)::

    versions/<version>/model.npz, model.json, calibration/…   one folder per candidate
    active.json                                               the active version and its threshold
    history.jsonl                                             every activation, appended

A version id is derived from the training data interval, so re-running or backfilling an interval
replaces that interval's candidate instead of adding another one. Activation writes ``active.json``
through a temporary file and ``os.replace``: a reader sees the old or the new active model with its
threshold, never a mix. No pickle: the store only copies files and writes JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: no '/', no trailing newline


class ModelStoreError(RuntimeError):
    """The store is missing a version or holds a damaged record."""


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version) or ".." in version:
        shown = repr(version)[:200]
        raise ValueError(f"invalid model version {shown}: expected [A-Za-z0-9._-], at most 128 characters, no '..'")
    return version


def check_version(version: Any, where: str) -> str:
    """``version`` when it is a valid version name (it names a folder of the store); else ``ValueError``
    naming ``where`` (the record it came from)."""
    try:
        return _check_version(version)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def check_threshold(value: Any, where: str) -> float:
    """``value`` as a float when it is a finite JSON number; else ``ValueError`` naming ``where``.

    Strings, booleans, ``null``, NaN and infinities are refused: a NaN threshold flags nothing and
    an infinite one flags nothing or everything, silently.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = repr(value)[:100]
        raise ValueError(f"{where}: threshold {shown} is not a finite number")
    return float(value)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalModelStore:
    """Versioned model folders plus one atomically replaced ``active.json``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def active_path(self) -> Path:
        return self.root / "active.json"

    def version_dir(self, version: str) -> Path:
        return self.versions_dir / _check_version(version)

    def versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def put(self, version: str, model_dir: str | os.PathLike[str]) -> Path:
        """Copy a trained model folder in as ``version``, replacing an earlier candidate of that id."""
        src = Path(model_dir)
        if not (src / "model.json").is_file() or not (src / "model.npz").is_file():
            raise ModelStoreError(f"{src} is not a model folder (model.json and model.npz expected)")
        dst = self.version_dir(version)
        if src.resolve() == dst.resolve():
            return dst
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.versions_dir))
        shutil.copytree(src, staging, dirs_exist_ok=True)
        if dst.exists():
            old = dst.with_name(f".{version}.old-{os.getpid()}")
            os.replace(dst, old)
            os.replace(staging, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dst)
        return dst

    def active(self) -> dict[str, Any] | None:
        """The active record (version, threshold, metrics, paths) or ``None`` when nothing is active.

        The record is validated: a version name that names a folder of this store, a finite numeric
        threshold. ``model_dir`` is derived from the store and the version, never taken from the
        file. A record that fails raises :class:`ModelStoreError` naming the file and the field.
        """
        if not os.path.lexists(self.active_path):
            return None
        if not self.active_path.is_file():
            raise ModelStoreError(f"{self.active_path} is not a regular file; fix or remove it")
        try:
            # Python's json reads NaN and Infinity; a threshold check below refuses them.
            record = json.loads(self.active_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelStoreError(f"{self.active_path} is not valid JSON ({str(exc)[:100]}); fix or remove it") from None
        if not isinstance(record, dict) or "version" not in record or "threshold" not in record:
            raise ModelStoreError(f"{self.active_path} lacks 'version'/'threshold'")
        try:
            version = check_version(record["version"], str(self.active_path))
            threshold = check_threshold(record["threshold"], str(self.active_path))
        except ValueError as exc:
            raise ModelStoreError(str(exc)) from None
        return dict(record, version=version, threshold=threshold, model_dir=str(self.version_dir(version)))

    def activate(self, version: str, *, threshold: float, metrics: dict[str, Any] | None = None,
                 interval: tuple[str, str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``version`` active together with its ``threshold``, atomically."""
        vdir = self.version_dir(version)
        if not (vdir / "model.json").is_file():
            raise ModelStoreError(f"cannot activate {version}: {vdir} holds no model")
        threshold = check_threshold(threshold, f"activating {version}")
        try:
            previous = self.active()
        except ModelStoreError as exc:  # a damaged record is replaced by a valid one
            log.warning("replacing an unusable active record: %s", exc)
            previous = None
        record = {
            "version": version,
            "threshold": threshold,
            "model_dir": str(vdir),
            "activated_at": datetime.now(timezone.utc).isoformat(),
            "previous_version": previous["version"] if previous else None,
            "metrics": metrics or {},
            "interval": list(interval) if interval else None,
            **(extra or {}),
        }
        _write_json_atomic(self.active_path, record)
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        return record


def ipinsights_store(cfg: Any) -> LocalModelStore:
    """The IP Insights model store of the configured work location (``<work>/models/ipinsights``)."""
    from seclake_ml.locations import ipinsights_store_dir

    return LocalModelStore(Path(ipinsights_store_dir(cfg)))
