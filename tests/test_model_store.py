"""Local model store (versioned folders, atomic activation) and report links."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from seclake_ml.links import report_url
from seclake_ml.interval import DataInterval
from seclake_ml.model_store import LocalModelStore, ModelStoreError


def _model(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"tag": tag}))
    (folder / "model.npz").write_bytes(tag.encode())
    return folder


def test_version_is_keyed_by_interval() -> None:
    start = datetime(2024, 1, 1, 3, tzinfo=timezone.utc)
    end = datetime(2024, 1, 8, 3, tzinfo=timezone.utc)
    assert DataInterval(start, end).model_version() == "ipinsights-20240101T0300Z-20240108T0300Z"


def test_put_replaces_same_version_and_activation_is_recorded(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    assert store.active() is None and store.versions() == []
    store.put("v1", _model(tmp_path / "a", "first"))
    store.put("v1", _model(tmp_path / "b", "second"))
    assert store.versions() == ["v1"]
    assert json.loads((store.version_dir("v1") / "model.json").read_text()) == {"tag": "second"}
    rec = store.activate("v1", threshold=1.5, metrics={"auc": 0.99}, interval=("a", "b"))
    assert store.active()["version"] == "v1" and store.active()["threshold"] == 1.5
    store.put("v2", _model(tmp_path / "c", "third"))
    rec2 = store.activate("v2", threshold=2.0)
    assert rec2["previous_version"] == "v1" and rec["previous_version"] is None
    history = [json.loads(line) for line in (tmp_path / "store" / "history.jsonl").read_text().splitlines()]
    assert [h["version"] for h in history] == ["v1", "v2"]
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".active")], "no temp files left"


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    with pytest.raises(ValueError, match="invalid model version"):
        store.version_dir("../../etc")
    with pytest.raises(ModelStoreError, match="not a model folder"):
        store.put("v1", tmp_path)
    with pytest.raises(ModelStoreError, match="holds no model"):
        store.activate("v9", threshold=1.0)
    (tmp_path / "store").mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "active.json").write_text("{broken")
    with pytest.raises(ModelStoreError, match="not valid JSON"):
        store.active()


def test_report_links() -> None:
    assert report_url("") == ""
    assert report_url("/tmp/r/report.html") == "file:///tmp/r/report.html"
    url = report_url("s3://work-bucket/training/calibration/interval=x/report/report.html", "eu-west-1")
    assert url.startswith("https://eu-west-1.console.aws.amazon.com/s3/object/work-bucket?")
    assert "prefix=training/calibration/interval=x/report/report.html" in url
