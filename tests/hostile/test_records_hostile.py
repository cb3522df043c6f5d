"""Hostile model records, stuck batches, stale temporary files and flooding queue messages."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import date
from pathlib import Path

import pytest

from seclake_ml.model_store import LocalModelStore
from seclake_ml.scoring import service, sites
from seclake_ml.scoring.ledger import Ledger
from seclake_ml.scoring.stores import LocalStore

from .conftest import SOURCES, drop_day, make_config

DAY1, DAY2 = date(2024, 3, 8), date(2024, 3, 9)

BAD_THRESHOLDS = ["NaN", "Infinity", "-Infinity", '"0.5"', "null", "true", "[1]"]
BAD_VERSIONS = ['"../../../../etc/passwd"', '"a/b"', '"v1\\n"', '""', "5", '"x/../../y"']


def _work_cfg(tmp_path: Path):
    from seclake_ml.config import SeclakeConfig

    (tmp_path / "lake").mkdir(exist_ok=True)
    return SeclakeConfig(lake_root=str(tmp_path / "lake"), work_location=str(tmp_path / "work"),
                         sources=("vpc_flow:instance_peer",))


def _write_active(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "work" / "models" / "ipinsights" / "active.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ local records
@pytest.mark.parametrize("threshold", BAD_THRESHOLDS)
def test_local_record_with_a_bad_threshold_is_a_clear_error(tmp_path: Path, threshold: str) -> None:
    path = _write_active(tmp_path, '{"version": "ipinsights-a", "threshold": %s, "model_dir": "/x"}' % threshold)
    with pytest.raises(sites.NoActiveModel) as err:
        service.active_model(_work_cfg(tmp_path))
    assert str(path) in str(err.value) and "threshold" in str(err.value)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_local_record_with_a_bad_version_name_is_a_clear_error(tmp_path: Path, version: str) -> None:
    path = _write_active(tmp_path, '{"version": %s, "threshold": 1.5}' % version)
    with pytest.raises(sites.NoActiveModel) as err:
        service.active_model(_work_cfg(tmp_path))
    assert str(path) in str(err.value) and "invalid model version" in str(err.value)


def test_local_record_model_dir_is_never_trusted(tmp_path: Path) -> None:
    _write_active(tmp_path, json.dumps({"version": "ipinsights-a", "threshold": 1.5, "model_dir": "/etc"}))
    model = service.active_model(_work_cfg(tmp_path))
    assert model.model_dir == str(tmp_path / "work" / "models" / "ipinsights" / "versions" / "ipinsights-a")
    _write_active(tmp_path, json.dumps({"version": "ipinsights-a", "threshold": 1.5}))  # no model_dir at all
    assert service.active_model(_work_cfg(tmp_path)).model_dir == model.model_dir


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf, "0.5", None, True])
def test_activating_with_a_bad_threshold_changes_nothing(trained_site: dict, tmp_path: Path, threshold) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.put("ipinsights-a", trained_site["model_tmp"])
    store.activate("ipinsights-a", threshold=1.25)
    before = store.active_path.read_bytes()
    with pytest.raises(ValueError, match="threshold"):
        store.activate("ipinsights-a", threshold=threshold)
    assert store.active_path.read_bytes() == before


# -------------------------------------------------------------------------------------- aws records
@pytest.mark.parametrize("threshold", BAD_THRESHOLDS)
def test_aws_record_with_a_bad_threshold_is_refused(threshold: str) -> None:
    text = '{"version": "ipinsights-a", "threshold": %s, "endpoint_name": "seclake-ml-ep"}' % threshold
    with pytest.raises(sites.NoActiveModel, match="threshold"):
        sites.model_from_record(text, severity_scale=1.0)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_aws_record_with_a_bad_version_is_refused(version: str) -> None:
    with pytest.raises(sites.NoActiveModel, match="version"):
        sites.model_from_record('{"version": %s, "threshold": 1.0}' % version, severity_scale=1.0)


# ------------------------------------------------------------------------------- scoring, end to end
def _adopt_then_drop(site: dict, day: date = DAY1, **scoring):
    cfg = make_config(site, **scoring)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # the first look adopts the history
    drop_day(site, day)
    return cfg, ledger


def _findings_files(site: dict) -> list[Path]:
    return sorted((Path(site["lake"]) / "ext").rglob("*.parquet"))


def test_nan_threshold_scores_nothing_and_marks_nothing(site: dict) -> None:
    cfg, ledger = _adopt_then_drop(site)
    active = Path(site["work"]) / "models" / "ipinsights" / "active.json"
    good = active.read_text()
    active.write_text(good.replace(json.dumps(site["threshold"]), "NaN", 1))
    batch = service.find_new_local_batch(cfg, ledger)
    done_before = ledger.done_keys()
    with pytest.raises(sites.NoActiveModel, match="threshold"):
        service.score_batch(cfg, ledger, batch["batch_id"])
    assert ledger.done_keys() == done_before and ledger.pending() == [batch["batch_id"]]
    assert _findings_files(site) == []
    active.write_text(good)
    summary = service.score_batch(cfg, ledger, batch["batch_id"])
    assert summary["totals"]["scored"] == len(batch["objects"]) and summary["totals"]["findings"] > 0


@pytest.mark.parametrize("damage", ["missing_model", "nan_threshold", "path_version", "foreign_model_dir", "aws_backend"])
def test_a_pinned_model_that_cannot_load_is_repinned_after_the_limit(site: dict, damage: str) -> None:
    cfg, ledger = _adopt_then_drop(site, max_model_attempts=2)
    batch = service.find_new_local_batch(cfg, ledger)
    pinned = service.active_model(cfg).to_dict()
    if damage == "missing_model":
        pinned["version"] = "ipinsights-gone"
    elif damage == "nan_threshold":
        pinned["threshold"] = math.nan
    elif damage == "path_version":
        pinned["version"] = "../../../../etc/passwd"
    elif damage == "aws_backend":  # a model of the other backend: this site cannot serve it
        pinned["backend"] = "aws"
        with pytest.raises(service.PinnedModelUnavailable, match="served on 'aws'; this site scores 'local'"):
            service.pinned_model(cfg, pinned)
    else:  # a path in the manifest is never used: the store's folder of the version is
        pinned["model_dir"] = "/nonexistent/elsewhere"
    ledger.pin_model(batch, pinned)
    if damage == "foreign_model_dir":
        summary = service.score_batch(cfg, ledger, batch["batch_id"])
        assert summary["totals"]["scored"] == len(batch["objects"]) and "repinned_from" not in summary
        return
    with pytest.raises(service.PinnedModelUnavailable, match="attempt 1 of 2"):
        service.score_batch(cfg, ledger, batch["batch_id"])
    assert ledger.pending() == [batch["batch_id"]] and _findings_files(site) == []
    summary = service.score_batch(cfg, ledger, batch["batch_id"])  # second failure: re-pinned, scored
    assert summary["model_version"] == "ipinsights-a"
    assert summary["repinned_from"]["attempts"] == 2
    assert summary["totals"]["scored"] == len(batch["objects"]) and ledger.pending() == []
    result = ledger.result(batch["batch_id"])
    assert result["repinned_from"]["model"]["version"] == pinned["version"]
    # later batches are not held back
    drop_day(site, DAY2)
    later = service.find_new_local_batch(cfg, ledger)
    assert later["batch_id"] != batch["batch_id"]
    assert service.score_batch(cfg, ledger, later["batch_id"])["totals"]["failed"] == 0


def test_stale_temporary_files_of_killed_writes_are_swept(site: dict) -> None:
    cfg, ledger = _adopt_then_drop(site)
    ext = Path(site["lake"]) / "ext" / "ipinsights-vpc_flow"
    ext.mkdir(parents=True)
    stale, fresh = ext / ".obj-1.parquet.k2j3.tmp", ext / ".obj-2.parquet.z9y8.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    state = Path(site["work"]) / "scoring" / "ledger" / ".entry.json.a1b2.tmp"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"{")
    os.utime(state, (old, old))
    batch = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, batch["batch_id"])
    assert summary["stale_tmp_removed"] == 2
    assert not stale.exists() and not state.exists() and fresh.read_bytes() == b"being written"


def test_sweep_never_follows_links_or_touches_other_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "ext").mkdir(parents=True)
    victim = tmp_path / "victim.tmp"
    victim.write_text("keep")
    link = tmp_path / "store" / "ext" / ".link.tmp"
    link.symlink_to(victim)
    normal = tmp_path / "store" / "ext" / "obj.parquet"
    normal.write_text("x")
    old = time.time() - 10 * 3600
    for p in (victim, normal):
        os.utime(p, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    assert store.sweep_temporary("ext", 3600) == 0
    assert victim.read_text() == "keep" and normal.exists() and link.is_symlink()


# ---------------------------------------------------------------------------------------- messages
def _record(key: str) -> dict:
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "aws-security-data-lake-x"},
                                                      "object": {"key": key, "size": 10, "eTag": "e"}}}


def _messages(n_messages: int, per_message: int, offset: int = 0) -> list[dict]:
    msgs = []
    for m in range(n_messages):
        keys = [f"aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240308/"
                f"m{m + offset}-{i}.parquet" for i in range(per_message)]
        msgs.append({"MessageId": f"m{m + offset}", "ReceiptHandle": f"r{m}",
                     "Body": json.dumps({"Records": [_record(k) for k in keys]})})
    return msgs


def test_queue_batches_respect_max_objects_and_lose_nothing(tmp_path: Path) -> None:
    from seclake_ml.config import SeclakeConfig

    cfg = SeclakeConfig(lake_root=str(tmp_path), work_location=str(tmp_path / "work"), sources=tuple(SOURCES),
                        extra={"scoring": {"max_objects": 40}})
    ledger = Ledger(LocalStore(tmp_path / "work"))
    first, plan = service.hand_off_messages(cfg, ledger, _messages(5, 30))
    assert len(plan.objects) == 150 and len(first["objects"]) == 40
    pending = ledger.pending()
    sizes = sorted(len(ledger.manifest(b)["objects"]) for b in pending)
    assert sizes == [30, 40, 40, 40]
    keys = {o["key"] for b in pending for o in ledger.manifest(b)["objects"]}
    assert len(keys) == 150  # every announced object is in exactly one batch


def test_message_parsing_grows_linearly_with_records() -> None:
    from seclake_ml.scoring.notifications import parse_messages

    def per_record(n: int, tries: int) -> float:
        messages = _messages(1, n)
        best = math.inf
        for _ in range(tries):
            t0 = time.perf_counter()
            plan = parse_messages(messages, lake_bucket=None, lake_sources={"VPC_FLOW"}, source_version=1,
                                  max_body_bytes=10**8)
            best = min(best, time.perf_counter() - t0)
            assert len(plan.objects) == n
        return best / n

    small, large = per_record(1000, 3), per_record(12000, 1)
    # Linear: the same time per record at 12x the records. The earlier quadratic membership test
    # took about 6x longer per record at 12,000 records than at 1,000.
    assert large / small < 3, (small, large)
