"""Scoring (local backend) when things go wrong over time: re-runs, damaged ledgers, late files.

Each test drives the real operators or service functions over a private copy of the trained site.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.model_store import LocalModelStore
from seclake_ml.scoring import service
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.scoring.ledger import Ledger

from .conftest import SOURCES, drop_day, make_config

DAY1 = date(2024, 3, 8)
START, END = "2024-03-08T00:00:00+00:00", "2024-03-09T00:00:00+00:00"


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml import airflow_support

    for name in [k for k in os.environ if k.startswith("SECLAKE_ML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": None)


def _overrides(site: dict, **scoring: Any) -> dict[str, Any]:
    return {"backend": "local", "lake_root": str(site["lake"]), "work_location": str(site["work"]),
            "sources": list(SOURCES), "extra": {"scoring": {"adopt_existing": True, **scoring}}}


def _interval_run(site: dict) -> dict[str, Any]:
    """What one run of seclake_ipinsights_batch_scoring does for 2024-03-08: hand off, then score."""
    from seclake_ml.operators.scoring import IntervalBatchOperator, ScoreBatchOperator

    conf = _overrides(site)
    handed = IntervalBatchOperator(task_id="plan", start=START, end=END, config_overrides=conf).execute({})
    return ScoreBatchOperator(task_id="score", batch=handed, config_overrides=conf).execute({})


def _files(site: dict) -> dict[str, bytes]:
    ext = Path(site["lake"]) / "ext"
    return {p.relative_to(ext).as_posix(): p.read_bytes() for p in sorted(ext.rglob("*.parquet"))}


def _findings(site: dict) -> list[dict]:
    return read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))


def _uri(d: dict) -> str:
    return LakeObject.from_dict(d).uri


def _adopt_and_drop(site: dict, **scoring: Any) -> tuple[Any, Ledger, dict]:
    cfg = make_config(site, **scoring)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # the history is adopted
    return cfg, ledger, drop_day(site, DAY1)


# ------------------------------------------------------------------------------ interval re-runs
def test_interval_rerun_leaves_exactly_its_own_findings(site: dict, no_env: None) -> None:
    cfg, ledger, _ = _adopt_and_drop(site)
    first = _interval_run(site)
    before = _files(site)
    uids = sorted(r["finding_info"]["uid"] for r in _findings(site))
    assert first["totals"]["findings"] == len(uids) > 0 and len(before) > 1

    # the continuous DAG never takes the interval DAG's batches: a handed-off interval batch stays
    # with its own DAG, while the same day's objects are new to the continuous listing
    from seclake_ml.operators.scoring import IntervalBatchOperator

    IntervalBatchOperator(task_id="plan", start=START, end=END, config_overrides=_overrides(site)).execute({})
    assert [b for b in ledger.pending() if b.startswith("interval-")]
    taken = service.find_new_local_batch(cfg, ledger)
    assert taken is not None and taken["batch_id"].startswith("lake-")
    ledger.set_aside(taken["batch_id"], "not scored in this test")

    # a model that flags nothing: the re-run leaves no findings at all (no stale files)
    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    store.activate("ipinsights-a", threshold=1e9)
    assert _interval_run(site)["totals"]["findings"] == 0
    assert _files(site) == {}

    # the first model again: the same files, byte for byte except creation times, and the same uids
    store.activate("ipinsights-a", threshold=site["threshold"])
    _interval_run(site)
    assert set(_files(site)) == set(before)
    assert sorted(r["finding_info"]["uid"] for r in _findings(site)) == uids

    # an object deleted from the lake since: its findings go with it, the others stay
    ledger_entries = [ledger.entry(_uri(o)) for o in ledger.manifest(first["batch_id"])["objects"]]
    with_findings = [e for e in ledger_entries if e and e["files"]]
    assert len(with_findings) >= 2
    gone = with_findings[0]
    (Path(site["lake"]) / gone["key"]).unlink()
    _interval_run(site)
    after = set(_files(site))
    gone_files = {Path(f).relative_to(Path(site["lake"]) / "ext").as_posix() for f in gone["files"]}
    assert after == set(before) - gone_files and gone_files
    assert ledger.entry(gone["uri"]) is None


# ------------------------------------------------------------------------------ bad event times
def test_unrepresentable_event_times_fall_back_to_the_day(site: dict) -> None:
    cfg, ledger, _ = _adopt_and_drop(site)
    m = service.find_new_local_batch(cfg, ledger)
    service.score_batch(cfg, ledger, m["batch_id"])
    source = next(ledger.entry(_uri(o)) for o in m["objects"]
                  if "VPC_FLOW" in o["key"] and (ledger.entry(_uri(o)) or {}).get("findings"))
    table = pq.read_table(Path(site["lake"]) / source["key"])
    time_type = table.schema.field("time").type
    # 3e14 ms is the year 11476 (microseconds written where milliseconds belong), -1 is before 1970
    far = pa.array([300_000_000_000_000] * (table.num_rows - 1) + [-1], type=pa.int64()).cast(time_type)
    bad = table.set_column(table.schema.get_field_index("time"), "time", far)
    target = Path(site["lake"]) / source["key"].replace(".parquet", "-far-future.parquet")
    pq.write_table(bad, target)

    m2 = service.find_new_local_batch(cfg, ledger)
    assert [o["key"] for o in m2["objects"]] == [target.relative_to(site["lake"]).as_posix()]
    summary = service.score_batch(cfg, ledger, m2["batch_id"])
    (out,) = summary["objects"]
    assert out["status"] == "scored" and out["findings"] == source["findings"]
    day_ms = int(datetime(2024, 3, 8, tzinfo=timezone.utc).timestamp() * 1000)
    mine = [r for r in _findings(site) if r["finding_info"]["uid"] and target.name in json.dumps(r)]
    assert mine and {r["time"] for r in mine} == {day_ms}
    assert ledger.pending() == []


def test_nat_does_not_hide_later_times() -> None:
    from functools import partial

    from seclake_ml.scoring.engine import _skip_nat

    _earlier, _later = partial(_skip_nat, min), partial(_skip_nat, max)

    nat, t1, t2 = np.datetime64("NaT", "us"), np.datetime64("2024-03-08T01:00", "us"), np.datetime64("2024-03-08T02:00", "us")
    assert _earlier(nat, t2) == t2 and _later(nat, t1) == t1
    assert _earlier(t2, nat) == t2 and _earlier(t1, t2) == t1 and _later(t1, t2) == t2
    assert np.isnat(_earlier(nat, nat))


# ------------------------------------------------------------------------------ first start, empty lake
def test_first_data_after_starting_on_an_empty_lake_is_scored(site: dict, tmp_path: Path) -> None:
    empty = dict(site, lake=tmp_path / "empty-lake")
    cfg = make_config(empty)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # nothing yet: adopted as an empty history
    assert ledger.adopted()
    dropped = drop_day(empty, DAY1)
    m = service.find_new_local_batch(cfg, ledger)
    assert m is not None and len(m["objects"]) == len(dropped["objects"])
    summary = service.score_batch(cfg, ledger, m["batch_id"])
    assert summary["totals"]["scored"] == len(dropped["objects"]) and summary["totals"]["findings"] > 0


# ------------------------------------------------------------------------------ damaged ledger files
def test_damaged_ledger_files_are_set_aside_and_scoring_goes_on(site: dict, caplog: pytest.LogCaptureFixture) -> None:
    cfg, ledger, dropped = _adopt_and_drop(site)
    m = service.find_new_local_batch(cfg, ledger)
    work = Path(site["work"])
    marker = work / Ledger.pending_key(m["batch_id"])
    marker.write_text('{"batch_id": "lake-')  # truncated
    assert ledger.pending() == [m["batch_id"]]  # still pending (its id is its file name)

    manifest = work / Ledger.manifest_key(m["batch_id"])
    manifest.write_bytes(manifest.read_bytes()[:40])  # truncated
    again = service.find_new_local_batch(cfg, ledger)  # set aside; the objects are found again
    assert again is not None and sorted(o["key"] for o in again["objects"]) == sorted(o["key"] for o in m["objects"])
    summary = service.score_batch(cfg, ledger, again["batch_id"])
    assert summary["totals"]["scored"] == len(dropped["objects"]) and ledger.pending() == []

    entry_uri = _uri(again["objects"][0])
    entry = work / Ledger.entry_key(entry_uri)
    entry.write_bytes(b"\x00\xff not json")
    assert ledger.entry(entry_uri) is None  # read as absent ...
    aside = sorted(p.name for p in (work / "scoring" / "corrupt").iterdir())
    assert len(aside) == 3 and any(n.endswith("manifest.json") for n in aside)  # ... and kept for inspection
    assert sum("not valid JSON" in r.getMessage() for r in caplog.records) == 3


# ------------------------------------------------------------------------------ late and rejected files
def test_a_file_quarantined_while_still_being_written_is_scored_once_complete(site: dict) -> None:
    cfg, ledger, dropped = _adopt_and_drop(site)
    m = service.find_new_local_batch(cfg, ledger)
    service.score_batch(cfg, ledger, m["batch_id"])
    good = Path(site["lake"]) / dropped["objects"][0]
    late = good.with_name("late-copy.parquet")
    data = good.read_bytes()
    late.write_bytes(data[: len(data) // 3])  # a copy in progress, seen by the listing
    m1 = service.find_new_local_batch(cfg, ledger)
    (out,) = service.score_batch(cfg, ledger, m1["batch_id"])["objects"]
    assert out["status"] == "quarantined"
    assert service.find_new_local_batch(cfg, ledger) is None  # unchanged: stays quarantined

    late.write_bytes(data)  # the copy completes: another size and mtime
    m2 = service.find_new_local_batch(cfg, ledger)
    assert m2 is not None and m2["batch_id"] != m1["batch_id"] and [o["key"] for o in m2["objects"]] == [out["key"]]
    (out2,) = service.score_batch(cfg, ledger, m2["batch_id"])["objects"]
    assert out2["status"] == "scored" and ledger.entry(out2["uri"])["status"] == "scored"
    assert service.find_new_local_batch(cfg, ledger) is None


def test_files_outside_the_layout_make_no_batch_and_are_each_recorded(site: dict) -> None:
    cfg, ledger, _ = _adopt_and_drop(site)
    m = service.find_new_local_batch(cfg, ledger)
    service.score_batch(cfg, ledger, m["batch_id"])
    vdir = next((Path(site["lake"]) / "aws" / "VPC_FLOW" / "1.0").glob("region=*/accountId=*"))
    batches = set(ledger.store.list("scoring/batches"))
    for name in ("eventDay=bad1", "eventDay=bad2"):
        (vdir / name).mkdir()
        (vdir / name / "x.parquet").write_bytes(b"PAR1")
        assert service.find_new_local_batch(cfg, ledger) is None
        rel = (vdir / name / "x.parquet").relative_to(site["lake"]).as_posix()
        assert ledger.store.get_json(Ledger.entry_key("rejected:" + rel))["status"] == "rejected"
    assert set(ledger.store.list("scoring/batches")) == batches  # no empty batch


# ------------------------------------------------------------------------------ repeated failures
class _BrokenPublisher:
    def __init__(self) -> None:
        self.calls = 0

    def publish(self, records: list[dict]) -> int:
        self.calls += 1
        raise ConnectionError("alert channel down")


def test_an_object_that_keeps_failing_is_quarantined_and_the_batch_finishes(site: dict) -> None:
    cfg, ledger, dropped = _adopt_and_drop(site, max_object_attempts=2)
    m = service.find_new_local_batch(cfg, ledger)
    broken = _BrokenPublisher()
    first = service.score_batch(cfg, ledger, m["batch_id"], publisher=broken)
    failing = {f["uri"] for f in first["failed"]}
    assert failing and broken.calls == len(failing) and ledger.pending() == [m["batch_id"]]
    assert not any(ledger.is_done(u) for u in failing)

    second = service.score_batch(cfg, ledger, m["batch_id"], publisher=broken)
    assert "failed" not in second and ledger.pending() == []
    for uri in failing:
        entry = ledger.entry(uri)
        assert entry["status"] == "quarantined" and entry["reason"].startswith("failed 2 times, last: ConnectionError")
    attempts = ledger.store.get_json(Ledger.attempts_key(m["batch_id"]))
    assert {u: a["attempts"] for u, a in attempts.items()} == {u: 2 for u in failing}
    assert second["totals"]["scored"] + second["totals"]["quarantined"] == len(failing)
