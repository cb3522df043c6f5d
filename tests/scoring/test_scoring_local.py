"""Scoring on the local backend: new objects -> batch -> findings -> ledger, under failures and swaps."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.model_store import LocalModelStore
from seclake_ml.scoring import service, sites
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.ledger import Ledger
from seclake_ml.scoring.ocsf_validate import validate_finding

from .conftest import drop_day, make_config

DAY1 = date(2024, 3, 8)
DAY2 = date(2024, 3, 9)


def _ledger(cfg) -> Ledger:
    return Ledger(service.work_store(cfg))


def _adopt_then_drop(site: dict, day: date = DAY1, **scoring):
    cfg = make_config(site, **scoring)
    ledger = _ledger(cfg)
    assert service.find_new_local_batch(cfg, ledger) is None  # first poke adopts the history
    adopted = len(ledger.done_keys())
    assert adopted > 0
    dropped = drop_day(site, day)
    return cfg, ledger, dropped


def _expected_flags(cfg, site: dict, day: str = "2024-03-08") -> set[tuple[str, str, str]]:
    from datetime import datetime, timedelta, timezone

    import duckdb

    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.extraction import extract_pairs

    start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    model = service.active_model(cfg)
    scorer = IPInsightsScorer.load(model.model_dir)
    out: set[tuple[str, str, str]] = set()
    for source, view in cfg.source_views():
        path = Path(site["work"]) / "expected" / f"{source}-{view}.parquet"
        extract_pairs(cfg, source, view, start, start + timedelta(days=1), str(path))
        pairs = duckdb.execute("SELECT DISTINCT entity, ip FROM read_parquet($p)", {"p": str(path)}).fetchall()
        if not pairs:
            continue
        res = scorer.score([e for e, _ in pairs], [i for _, i in pairs])
        flagged = (-res.dot_product > model.threshold) & res.known_entity
        out |= {(source, e, i) for (e, i), f in zip(pairs, flagged) if f}
    return out


def _findings(site: dict) -> list[dict]:
    return read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))


def _uids(records: list[dict]) -> list[str]:
    return [r["finding_info"]["uid"] for r in records]


# ------------------------------------------------------------------------------ happy path
def test_new_day_becomes_valid_explained_findings(site: dict, reference_dir: Path) -> None:
    cfg, ledger, dropped = _adopt_then_drop(site)
    manifest = service.find_new_local_batch(cfg, ledger)
    assert manifest is not None
    assert sorted(o["key"] for o in manifest["objects"]) == sorted(dropped["objects"])
    assert ledger.pending() == [manifest["batch_id"]]

    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    t = summary["totals"]
    assert t["objects"] == len(dropped["objects"]) == t["scored"] and t["failed"] == 0
    assert t["rows"] > 4000 and t["pairs"] > 0 and t["findings"] > 0
    assert sum(t["severity"].values()) == t["findings"]
    assert ledger.pending() == [] and ledger.result(manifest["batch_id"])["totals"] == t
    for obj in manifest["objects"]:
        entry = ledger.entry(obj["key"])
        assert entry["status"] == "scored" and entry["model_version"] == "ipinsights-a"

    records = _findings(site)
    assert len(records) == t["findings"] and len(set(_uids(records))) == len(records)
    schema = json.loads((reference_dir / "ocsf-1.1.0-schema.json").read_text())
    errors = {r["finding_info"]["uid"]: validate_finding(r, schema) for r in records}
    assert not any(errors.values()), {k: v for k, v in errors.items() if v}
    # layout: ext/ipinsights-<source>/region=/accountId=/eventDay=<the day>/obj-<hash>.parquet, zstd, by time
    files = sorted((Path(site["lake"]) / "ext").rglob("*.parquet"))
    for f in files:
        rel = f.relative_to(site["lake"]).parts
        assert rel[0] == "ext" and rel[1].startswith("ipinsights-") and rel[2].startswith("region=")
        assert rel[3].startswith("accountId=") and rel[4] == "eventDay=20240308" and rel[5].startswith("obj-")
        meta = pq.ParquetFile(f).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        times = pq.read_table(f, columns=["time"]).column("time").to_pylist()
        assert times == sorted(times)
    # the findings are exactly the pairs above the threshold, computed independently: the day's pairs
    # extracted with the training extraction (read_parquet over the partition), scored in one go
    assert {(r["unmapped"]["source"], r["unmapped"]["entity"], r["unmapped"]["ip"]) for r in records} == \
        _expected_flags(cfg, site)
    explained = [r for r in records if r["evidences"][0]["data"]["explanation"]["entity_known"]]
    assert explained and all(r["evidences"][0]["data"]["explanation"]["known_networks"] for r in explained)
    # severe findings were published to the local alert file, once each
    alerts = Path(site["work"]) / "scoring" / "alerts" / "severe.jsonl"
    lines = [json.loads(x) for x in alerts.read_text().splitlines()] if t["published"] else []
    assert len(lines) == t["published"] == sum(1 for r in records if r["severity_id"] >= 4)
    # nothing new afterwards
    assert service.find_new_local_batch(cfg, ledger) is None


# ------------------------------------------------------------------------------ exactly once
def _crashing_score(cfg, batch_id: str, crash_after: int) -> None:
    """Child process: score, but die (no cleanup) right before the ledger mark number ``crash_after``."""
    calls = {"n": 0}
    original = Ledger.mark

    def mark(self, obj, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_after:
            os._exit(9)  # findings of this object are written; the ledger never hears of it
        return original(self, obj, **kwargs)

    Ledger.mark = mark
    service.score_batch(cfg, _ledger(cfg), batch_id)
    os._exit(0)


def test_crash_between_findings_and_ledger_loses_nothing_and_duplicates_nothing(site: dict, tmp_path: Path) -> None:
    cfg, ledger, dropped = _adopt_then_drop(site)
    # a twin of the site scored cleanly gives the expected findings
    twin = {"lake": tmp_path / "twin-lake", "work": tmp_path / "twin-work"}
    shutil.copytree(site["lake"], twin["lake"])
    shutil.copytree(site["work"], twin["work"])
    LocalModelStore(twin["work"] / "models" / "ipinsights").activate("ipinsights-a", threshold=site["threshold"])
    tcfg = make_config(twin)
    tm = service.find_new_local_batch(tcfg, _ledger(tcfg))
    service.score_batch(tcfg, _ledger(tcfg), tm["batch_id"])
    expected = sorted(_uids(_findings(twin)))

    manifest = service.find_new_local_batch(cfg, ledger)
    assert manifest["batch_id"] == tm["batch_id"]  # same objects, same batch id
    proc = multiprocessing.get_context("fork").Process(target=_crashing_score, args=(cfg, manifest["batch_id"], 4))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 9
    marked = [o for o in manifest["objects"] if ledger.is_done(o["key"])]
    assert len(marked) == 3 and ledger.pending() == [manifest["batch_id"]]
    assert ledger.result(manifest["batch_id"]) is None

    resumed = service.find_new_local_batch(cfg, ledger)  # the next run resumes the pending batch
    assert resumed["batch_id"] == manifest["batch_id"] and resumed["model"]["version"] == "ipinsights-a"
    summary = service.score_batch(cfg, ledger, resumed["batch_id"])
    assert summary["already_done"] == 3 and summary["totals"]["scored"] == len(dropped["objects"]) - 3
    got = sorted(_uids(_findings(site)))
    assert got == expected and len(set(got)) == len(got)
    assert all(ledger.is_done(o["key"]) for o in manifest["objects"]) and ledger.pending() == []


def test_rescoring_an_object_replaces_its_findings(site: dict) -> None:
    cfg, ledger, _ = _adopt_then_drop(site)
    m = service.find_new_local_batch(cfg, ledger)
    service.score_batch(cfg, ledger, m["batch_id"])
    files = sorted(p.relative_to(site["lake"]) for p in (Path(site["lake"]) / "ext").rglob("*.parquet"))
    uids = sorted(_uids(_findings(site)))
    # score the same day again as an interval batch (what the backfill DAG does)
    from datetime import datetime, timezone

    objs = service.interval_objects(cfg, datetime(2024, 3, 8, tzinfo=timezone.utc), datetime(2024, 3, 9, tzinfo=timezone.utc))
    assert sorted(o.key for o in objs) == sorted(o["key"] for o in m["objects"])
    for o in objs:
        ledger.store.delete(Ledger.entry_key(o.uri))
    again = ledger.create_batch(objs, origin="interval", batch_id="interval-20240308")
    service.score_batch(cfg, ledger, again["batch_id"])
    assert sorted(p.relative_to(site["lake"]) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")) == files
    assert sorted(_uids(_findings(site))) == uids


# ------------------------------------------------------------------------------ model hot swap
def test_new_active_model_is_used_from_the_next_batch_and_pins_per_batch(site: dict) -> None:
    cfg, ledger, _ = _adopt_then_drop(site)
    first = service.find_new_local_batch(cfg, ledger)
    service.score_batch(cfg, ledger, first["batch_id"])

    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    store.put("ipinsights-b", site["model_tmp"])
    store.activate("ipinsights-b", threshold=site["threshold"] + 0.25)  # what the training DAG's rollout does
    drop_day(site, DAY2)
    second = service.find_new_local_batch(cfg, ledger)
    # a batch pinned before a swap keeps its model: pin B now, then swap to A and score
    ledger.pin_model(second, service.active_model(cfg).to_dict())
    store.activate("ipinsights-a", threshold=site["threshold"])
    summary = service.score_batch(cfg, ledger, second["batch_id"])
    assert summary["model_version"] == "ipinsights-b"

    by_day: dict[str, set] = {}
    for r in _findings(site):
        day = r["time_dt"][:10]
        by_day.setdefault(day, set()).add((r["unmapped"]["model_version"], float(r["unmapped"]["threshold"])))
    assert by_day["2024-03-08"] == {("ipinsights-a", site["threshold"])}
    assert by_day["2024-03-09"] == {("ipinsights-b", site["threshold"] + 0.25)}


def test_no_active_model_keeps_the_batch_pending(site: dict) -> None:
    cfg, ledger, _ = _adopt_then_drop(site)
    active = Path(site["work"]) / "models" / "ipinsights" / "active.json"
    saved = active.read_text()
    active.unlink()
    m = service.find_new_local_batch(cfg, ledger)
    with pytest.raises(sites.NoActiveModel, match="no active model"):
        service.score_batch(cfg, ledger, m["batch_id"])
    assert ledger.pending() == [m["batch_id"]] and _findings(site) == []
    active.write_text(saved)
    assert service.score_batch(cfg, ledger, m["batch_id"])["totals"]["failed"] == 0
    assert ledger.pending() == []


# ------------------------------------------------------------------------------ signal semantics
def test_batches_are_capped_and_recent_objects_settle(site: dict) -> None:
    cfg, ledger, dropped = _adopt_then_drop(site, max_objects=5)
    first = service.find_new_local_batch(cfg, ledger)
    assert len(first["objects"]) == 5
    assert service.find_new_local_batch(cfg, ledger)["batch_id"] == first["batch_id"]  # pending first
    service.score_batch(cfg, ledger, first["batch_id"])
    second = service.find_new_local_batch(cfg, ledger)
    assert len(second["objects"]) == min(5, len(dropped["objects"]) - 5)
    assert not {o["key"] for o in first["objects"]} & {o["key"] for o in second["objects"]}
    settling = make_config(site, settle_seconds=3600)
    service.score_batch(cfg, ledger, second["batch_id"])
    assert service.find_new_local_batch(settling, ledger) is None  # the rest is too fresh to take


# ------------------------------------------------------------------------------ hostile objects
def _vpc_dir(lake: Path) -> Path:
    return next((lake / "aws" / "VPC_FLOW" / "1.0").glob("region=*/accountId=*/eventDay=20240308"))


def _hostile_rows(template: pa.Table) -> pa.Table:
    """Rows of the real schema whose peer IPs / instance ids are hostile values."""
    rows = template.slice(0, 8).to_pylist()
    bad = [("::1", None), ("-", None), ("10.0.0.300", None), ("1.2.3", None), ("2001:db8::1", None),
           ("x" * 5000, None), ("10.0.0.1\x00", None), (None, None)]
    for row, (ip, _) in zip(rows, bad):
        row["dst_endpoint"] = dict(row["dst_endpoint"] or {}, ip=ip)
        row["src_endpoint"] = dict(row["src_endpoint"] or {}, ip=ip)
    return pa.Table.from_pylist(rows, schema=template.schema)


def test_hostile_objects_are_quarantined_while_good_objects_are_scored(site: dict) -> None:
    cfg, ledger, dropped = _adopt_then_drop(site)
    vdir = _vpc_dir(Path(site["lake"]))
    good = sorted(vdir.glob("*.parquet"))[0]
    template = pq.read_table(good)
    cases: dict[str, str] = {}

    def put(name: str, data: bytes | pa.Table, expect: str) -> None:
        path = vdir / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            pq.write_table(data, path)
        cases[path.relative_to(site["lake"]).as_posix()] = expect

    put("corrupt.parquet", b"PAR1 this is not parquet at all" * 10, "unreadable Parquet footer")
    put("empty.parquet", b"", "unreadable Parquet footer")
    put("truncated.parquet", good.read_bytes()[: len(good.read_bytes()) // 2], "unreadable Parquet footer")
    put("zero-rows.parquet", template.slice(0, 0), "no rows")
    put("no-time.parquet", template.drop_columns(["time"]), "no 'time' column")
    put("drift.parquet", template.drop_columns(["dst_endpoint", "connection_info"]), "scored")
    put("hostile-values.parquet", _hostile_rows(template), "scored")
    put("name with spaces '; DROP.parquet", template.slice(0, 50), "scored")
    put("vanishes.parquet", template.slice(0, 20), "does not exist under the lake root")
    (vdir / "notes.json").write_text("{}")  # not Parquet: never listed
    (vdir / ".partial.parquet").write_bytes(b"half")  # hidden in-flight upload: never listed
    bad_day = vdir.parent / "eventDay=notaday"
    bad_day.mkdir()
    pq.write_table(template.slice(0, 5), bad_day / "x.parquet")  # outside the layout: rejected

    manifest = service.find_new_local_batch(cfg, ledger)
    keys = {o["key"] for o in manifest["objects"]}
    assert set(cases) <= keys and not any(k.endswith(("notes.json", ".partial.parquet")) for k in keys)
    assert [r["key"] for r in manifest["rejected"]] == [(bad_day / "x.parquet").relative_to(site["lake"]).as_posix()]
    assert "eventDay" in manifest["rejected"][0]["reason"]
    (vdir / "vanishes.parquet").unlink()  # deleted between hand-off and scoring: quarantined, not retried

    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    outcome = {o["key"]: o for o in summary["objects"]}
    for key, expect in cases.items():
        o = outcome[key]
        if expect == "scored":
            assert o["status"] == "scored", (key, o["reason"])
        else:
            assert o["status"] == "quarantined" and expect in o["reason"], (key, o)
            assert ledger.entry(key)["status"] == "quarantined"
    hv = outcome[next(k for k in cases if k.endswith("hostile-values.parquet"))]
    assert hv["dropped"]["ipv6"] >= 2 and hv["dropped"]["dash"] >= 1 and hv["dropped"]["not_ip"] >= 2
    assert hv["dropped"]["hostile"] >= 2 and hv["dropped"]["null"] >= 1
    drift = outcome[next(k for k in cases if k.endswith("drift.parquet"))]
    assert drift["rows"] > 0
    # the day's real objects are all scored and produced their findings
    real = [outcome[k] for k in dropped["objects"]]
    assert all(o["status"] == "scored" for o in real) and sum(o["findings"] for o in real) > 0
    assert ledger.pending() == [] and service.find_new_local_batch(cfg, ledger) is None  # quarantine is final
