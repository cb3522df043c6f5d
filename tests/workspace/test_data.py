"""The workspace data layer (:mod:`seclake_ml.workspace.data`) on small trees written by the package's own writers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

UTC = timezone.utc
T0 = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)
ACCOUNTS = ("111111111111", "222222222222", "not-an-aws-account")
HOSTILE = "<script>alert('x')</script>&amp;\"<b>"


def _cfg(root: Path, **scoring):
    from seclake_ml.config import SeclakeConfig

    (root / "lake").mkdir(parents=True, exist_ok=True)
    extra = {"scoring": scoring} if scoring else {}
    return SeclakeConfig(lake_root=str(root / "lake"), work_location=str(root / "work"), extra=extra)


def _write(cfg, records: list[dict], stem: str) -> None:
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts
    from seclake_ml.workspace.data import findings_location

    root = Path(findings_location(cfg))
    for key, data in findings_parquet_parts(records, file_stem=stem):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


def _ipinsights_records() -> list[dict]:
    from seclake_ml.scoring.findings import Candidate, build_findings
    from seclake_ml.scoring.model_record import ActiveModel

    model = ActiveModel(version="ipinsights-a", threshold=1.0, backend="local", severity_scale=1.0)
    out = []
    n = 0
    for day in range(3):
        for source, view in (("vpc_flow", "instance_peer"), ("cloudtrail_api", "principal_ip")):
            for account in ACCOUNTS:
                cands = []
                for k in range(3):
                    n += 1
                    # several findings share a time (ties are broken by uid, then file)
                    first = T0 + timedelta(days=day, minutes=10 * (k % 2))
                    entity = HOSTILE if n == 5 else (f"i-{n:04d}" if source == "vpc_flow" else f"arn:aws:iam::{account}:user/u{n}")
                    score = 1.0 + 0.4 * n % 3.5
                    cands.append(Candidate(source=source, view=view, entity=entity, ip=f"203.0.113.{n}", account=account,
                                           region="us-east-1", first_seen=first, last_seen=first + timedelta(minutes=1),
                                           events=n, dot_product=-score, score=score))
                out += build_findings(cands, model=model, scope=f"obj-{day}-{source}-{account}", explanations={},
                                      created_time=T0 + timedelta(days=5), product_version="test")
    out[1] = dict(out[1], status="Suppressed", status_id=3)
    return out


def _risk_records() -> list[dict]:
    from seclake_ml.risk.findings import build_record

    recs = []
    for i, risk in enumerate((95.0, 62.0)):
        row = {"risk_score": risk, "time": T0 + timedelta(days=1, hours=i), "principal": f"arn:aws:iam::111111111111:user/r{i}",
               "source_ip": "198.51.100.4", "operation": "iam:CreateAccessKey", "account": "111111111111",
               "region": "eu-west-1", "uid": f"event-{i}", "probable_cause": "new country for principal",
               "contributions": json.dumps([{"feature": "geo_new", "effect": 21.5}]), "result": "ok",
               "unsupervised_score": risk - 5, "supervised_score": float("nan"), "user_agent": "aws-cli/2",
               "is_outlier": True, "sensitive_category": "credentials"}
        recs.append(build_record(row, model_version="risk-a", scope=f"risk-obj-{i}", min_risk=60.0,
                                 created=T0 + timedelta(days=3), product_version="test"))
    return recs


@pytest.fixture()
def tree(tmp_path: Path) -> dict:
    cfg = _cfg(tmp_path)
    ip = _ipinsights_records()
    risk = _risk_records()
    _write(cfg, ip[: len(ip) // 2], "part-a")
    _write(cfg, ip[len(ip) // 2:], "part-b")
    _write(cfg, risk, "risk-a")
    return {"cfg": cfg, "records": ip + risk, "root": tmp_path}


def _uid(rec: dict) -> str:
    return rec["finding_info"]["uid"]


def _all_pages(cfg, flt=None, size=4) -> tuple[list[dict], int]:
    from seclake_ml.workspace.data import list_findings

    rows, cursor, pages = [], None, 0
    while True:
        page = list_findings(cfg, flt, page_size=size, cursor=cursor)
        rows += page["rows"]
        pages += 1
        cursor = page["next_cursor"]
        assert len(page["rows"]) <= size
        if cursor is None:
            return rows, pages
        assert pages < 1000


# ------------------------------------------------------------------------------- listing and paging
def test_first_page_newest_first_with_row_fields(tree) -> None:
    from seclake_ml.workspace.data import list_findings

    res = list_findings(tree["cfg"], page_size=5)
    assert res["total"] == len(tree["records"]) and len(res["rows"]) == 5 and res["next_cursor"]
    assert res["skipped_files"] == 0 and res["truncated"] is False
    json.dumps(res, allow_nan=False)  # JSON-safe
    row = res["rows"][0]
    for key in ("uid", "time", "severity_id", "severity", "status", "detector", "source", "entity", "ip",
                "principal", "operation", "account", "region", "score", "message"):
        assert key in row
    newest = max(r["time"] for r in tree["records"])
    assert row["time_ms"] == newest and row["time"].endswith("Z")


def test_cursor_paging_covers_every_finding_exactly_once_in_order(tree) -> None:
    rows, pages = _all_pages(tree["cfg"], size=4)
    uids = [r["uid"] for r in rows]
    assert len(uids) == len(set(uids)) == len(tree["records"])
    assert set(uids) == {_uid(r) for r in tree["records"]}
    keys = [(-r["time_ms"], r["uid"], r["key"]) for r in rows]
    assert keys == sorted(keys)
    assert pages == -(-len(rows) // 4)


def test_paging_with_a_filter_and_page_size_one(tree) -> None:
    from seclake_ml.workspace.data import FindingsFilter

    flt = FindingsFilter(detector="ipinsights", min_severity_id=3)
    rows, _ = _all_pages(tree["cfg"], flt, size=1)
    want = {_uid(r) for r in tree["records"] if "detector" not in r["unmapped"] and r["severity_id"] >= 3}
    assert [r["uid"] for r in rows] and sorted(r["uid"] for r in rows) == sorted(want)


def _expect(records, pred) -> set[str]:
    return {_uid(r) for r in records if pred(r)}


@pytest.mark.parametrize("kwargs, pred", [
    ({"since": "2024-01-06T00:00:00Z"}, lambda r: r["time"] >= int(datetime(2024, 1, 6, tzinfo=UTC).timestamp() * 1000)),
    ({"until": datetime(2024, 1, 6, 10, 0, tzinfo=UTC)},
     lambda r: r["time"] < int(datetime(2024, 1, 6, 10, 0, tzinfo=UTC).timestamp() * 1000)),
    ({"since": "2024-01-06", "until": "2024-01-07"},
     lambda r: 1704499200000 <= r["time"] < 1704585600000),
    ({"min_severity_id": 4}, lambda r: r["severity_id"] >= 4),
    ({"detector": "risk"}, lambda r: r["unmapped"].get("detector") == "cloudtrail_risk"),
    ({"detector": "ipinsights"}, lambda r: "detector" not in r["unmapped"]),
    ({"source": "ipinsights-vpc-flow"}, lambda r: r["unmapped"]["source"] == "vpc_flow"),
    ({"entity": "i-0001"}, lambda r: r["unmapped"]["entity"] == "i-0001"),
    ({"entity": "arn:aws:iam::222222222222:", "entity_match": "prefix"},
     lambda r: r["unmapped"]["entity"].startswith("arn:aws:iam::222222222222:")),
    ({"entity": "i-000", "entity_match": "exact"}, lambda r: False),
    ({"account": "222222222222"}, lambda r: r["cloud"]["account"]["uid"] == "222222222222"),
    ({"account": "not-an-aws-account"}, lambda r: r["cloud"]["account"]["uid"] == "not-an-aws-account"),
    ({"status": "Suppressed"}, lambda r: r["status"] == "Suppressed"),
    ({"status": "New", "account": "111111111111", "min_severity_id": 2},
     lambda r: r["status"] == "New" and r["cloud"]["account"]["uid"] == "111111111111" and r["severity_id"] >= 2),
])
def test_filters(tree, kwargs, pred) -> None:
    from seclake_ml.workspace.data import FindingsFilter, list_findings

    want = _expect(tree["records"], pred)
    res = list_findings(tree["cfg"], FindingsFilter(**kwargs), page_size=500)
    assert res["total"] == len(want)
    assert {r["uid"] for r in res["rows"]} == want
    assert res["next_cursor"] is None


def test_filter_prunes_partitions_before_reading(tree) -> None:
    from seclake_ml.workspace.data import FindingsFilter, list_findings

    everything = list_findings(tree["cfg"])["files"]
    assert list_findings(tree["cfg"], FindingsFilter(account="222222222222"))["files"] < everything
    assert list_findings(tree["cfg"], FindingsFilter(detector="risk"))["files"] == 1  # one risk partition
    assert list_findings(tree["cfg"], FindingsFilter(since="2024-01-07"))["files"] < everything


def test_risk_rows_carry_principal_and_operation(tree) -> None:
    from seclake_ml.workspace.data import FindingsFilter, list_findings

    rows = list_findings(tree["cfg"], FindingsFilter(detector="risk"))["rows"]
    assert {r["operation"] for r in rows} == {"iam:CreateAccessKey"}
    assert all(r["principal"] == r["entity"] and r["source"] == "risk-cloudtrail" and r["detector"] == "risk"
               for r in rows)
    assert sorted(r["score"] for r in rows) == [62.0, 95.0]
    ip_rows = list_findings(tree["cfg"], FindingsFilter(detector="ipinsights"), page_size=3)["rows"]
    assert all(r["principal"] is None and r["operation"] is None for r in ip_rows)


@pytest.mark.parametrize("kwargs, field", [
    ({"since": "yesterday"}, "since"),
    ({"until": "2024-13-01"}, "until"),
    ({"since": "2024-01-06", "until": "2024-01-05"}, "until"),
    ({"min_severity_id": 0}, "min_severity_id"),
    ({"min_severity_id": 7}, "min_severity_id"),
    ({"min_severity_id": True}, "min_severity_id"),
    ({"min_severity_id": "high"}, "min_severity_id"),
    ({"detector": "guardduty"}, "detector"),
    ({"source": "../etc"}, "source"),
    ({"source": "Ipinsights-VPC"}, "source"),
    ({"detector": "risk", "source": "ipinsights-vpc-flow"}, "source"),
    ({"entity": ""}, "entity"),
    ({"entity": 5}, "entity"),
    ({"entity": "x", "entity_match": "regex"}, "entity_match"),
    ({"account": "1\n2"}, "account"),
    ({"status": "Resolved"}, "status"),
])
def test_filter_validation_names_the_field(kwargs, field) -> None:
    from seclake_ml.workspace.data import FindingsFilter

    with pytest.raises(ValueError, match=rf"^{field}\b"):
        FindingsFilter(**kwargs)


def test_filter_from_query_parameters() -> None:
    from seclake_ml.workspace.data import FindingsFilter

    flt = FindingsFilter.from_mapping({"since": "2024-01-05", "min_severity_id": "3", "entity": "", "status": None,
                                       "detector": "risk"})
    assert flt.since == datetime(2024, 1, 5, tzinfo=UTC) and flt.min_severity_id == 3 and flt.entity is None
    assert flt.to_dict()["since"] == "2024-01-05T00:00:00Z"
    with pytest.raises(ValueError, match="^colour"):
        FindingsFilter.from_mapping({"colour": "red"})


def test_cursor_and_page_size_are_checked(tree) -> None:
    from seclake_ml.workspace.data import FindingsFilter, list_findings

    cursor = list_findings(tree["cfg"], page_size=2)["next_cursor"]
    with pytest.raises(ValueError, match="^cursor: made for another filter"):
        list_findings(tree["cfg"], FindingsFilter(detector="risk"), cursor=cursor)
    for bad in ("not-a-cursor", "", "W10", "eyJhIjoxfQ"):
        with pytest.raises(ValueError, match="^cursor"):
            list_findings(tree["cfg"], cursor=bad)
    for size in (0, 501, True, "5"):
        with pytest.raises(ValueError, match="^page_size"):
            list_findings(tree["cfg"], page_size=size)


def test_markup_in_entities_comes_back_verbatim(tree) -> None:
    from seclake_ml.workspace.data import FindingsFilter, finding_detail, list_findings

    res = list_findings(tree["cfg"], FindingsFilter(entity=HOSTILE))
    assert res["total"] == 1
    row = res["rows"][0]
    assert row["entity"] == HOSTILE  # escaping is the page's job
    detail = finding_detail(tree["cfg"], row["uid"])
    assert detail["unmapped"]["entity"] == HOSTILE and detail["evidences"][0]["data"]["entity"] == HOSTILE
    prefix = list_findings(tree["cfg"], FindingsFilter(entity="<script>", entity_match="prefix"))
    assert [r["uid"] for r in prefix["rows"]] == [row["uid"]]


# ------------------------------------------------------------------------------- damaged and empty trees
def test_corrupt_and_empty_files_are_skipped_and_counted(tree) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seclake_ml.workspace.data import finding_detail, list_findings

    cfg = tree["cfg"]
    good = sorted((tree["root"] / "lake" / "ext").rglob("*.parquet"))[0]
    part = good.parent
    (part / "empty.parquet").write_bytes(b"")
    (part / "garbage.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    (part / "truncated.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pq.write_table(pa.table({"a": [1, 2]}), part / "other-schema.parquet")
    (part / "notes.txt").write_text("ignored: not a .parquet name")
    for _ in range(2):  # the second call finds them in the process-wide list of bad files
        res = list_findings(cfg, page_size=500)
        assert res["total"] == len(tree["records"])
        assert res["skipped_files"] == 4
        assert {Path(s["key"]).name for s in res["skipped"]} == {
            "empty.parquet", "garbage.parquet", "truncated.parquet", "other-schema.parquet"}
        assert all(s["reason"] for s in res["skipped"])
    some = tree["records"][0]
    assert finding_detail(cfg, _uid(some))["finding_info"]["uid"] == _uid(some)


def test_empty_findings_tree(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import FindingsFilter, finding_detail, list_findings

    cfg = _cfg(tmp_path)
    for _ in range(2):
        res = list_findings(cfg, FindingsFilter(entity="x"))
        assert res == dict(res, total=0, rows=[], next_cursor=None, files=0, skipped_files=0)
        (tmp_path / "lake" / "ext" / "ipinsights-vpc-flow" / "region=us-east-1").mkdir(parents=True, exist_ok=True)
    assert finding_detail(cfg, "0" * 32) is None


def test_findings_location_setting_is_used(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import list_findings

    cfg = _cfg(tmp_path, findings_location=str(tmp_path / "elsewhere"))
    _write(cfg, _risk_records(), "r")
    assert list_findings(cfg)["total"] == 2
    assert list_findings(_cfg(tmp_path))["total"] == 0


# ------------------------------------------------------------------------------- detail
def test_finding_detail_returns_the_stored_record(tree) -> None:
    from seclake_ml.workspace.data import finding_detail

    risk = [r for r in tree["records"] if r["unmapped"].get("detector") == "cloudtrail_risk"][0]
    got = finding_detail(tree["cfg"], _uid(risk))
    assert got["_detector"] == "risk" and got["_key"].startswith("ext/risk-cloudtrail/region=eu-west-1/")
    stored = {k: v for k, v in got.items() if not k.startswith("_")}
    assert stored == risk
    data = got["evidences"][0]["data"]
    assert data["probable_cause"] == "new country for principal" and data["contributions"][0]["feature"] == "geo_new"
    assert got["unmapped"]["operation"] == "iam:CreateAccessKey"
    json.dumps(got, allow_nan=False)
    assert finding_detail(tree["cfg"], "f" * 32) is None
    with pytest.raises(ValueError, match="^uid"):
        finding_detail(tree["cfg"], "")


# ------------------------------------------------------------------------------- models
def _seed_models(work: Path) -> None:
    from seclake_ml.interval import DataInterval
    from seclake_ml.model_store import LocalModelStore
    from seclake_ml.risk import store as risk_store

    store = LocalModelStore(work / "models" / "ipinsights")
    windows = [DataInterval.parse("2024-01-01T03:00:00Z", "2024-01-15T03:00:00Z"),
               DataInterval.parse("2024-01-08T03:00:00Z", "2024-01-22T03:00:00Z")]
    for i, w in enumerate(windows):
        src = work.parent / f"model-{i}"
        src.mkdir()
        (src / "model.json").write_text("{}")
        (src / "model.npz").write_bytes(b"x")
        store.put(w.model_version(), src)
        cal = work / "training" / "calibration" / w.key
        cal.mkdir(parents=True)
        (cal / "metrics.json").write_text(json.dumps({
            "roc_auc": 0.9 + i / 100, "threshold": {"value": 0.5 + i, "method": "target_fpr", "target_fpr": 0.01},
            "components": {"model": {"roc_auc": 0.9}, "combined": {"roc_auc": 0.95}}, "counts": {"normal_pairs": 10}}))
        (cal / "report.html").write_text("<html></html>")
    newest = windows[1]
    store.activate(newest.model_version(), threshold=1.5, metrics={"auc": 0.91}, interval=(newest.start_iso, newest.end_iso),
                   extra={"report": str(work / "training" / "calibration" / newest.key / "report.html"),
                          "combiner": {"kind": "logistic"}, "threshold_rule": {"method": "target_fpr", "value": 1.5}})
    root = risk_store.store_root(str(work))
    metrics = {"linear": {"r2": 0.3, "rmse": 13.0, "mae": 9.0, "rows": 10},
               "boosted": {"r2": 0.5, "rmse": 11.0, "mae": 8.0, "rows": 10}, "train_rows": 40, "test_rows": 10}
    for v in ("risk-20240101T0000Z-20240110T0000Z", "risk-20240105T0000Z-20240115T0000Z"):
        risk_store.save_version(root, v, {"kind": "cloudtrail_risk", "supervised": True, "metrics": metrics,
                                          "gate": {"passed": True, "reason": "better rmse"},
                                          "interval": {"start": "2024-01-01", "end": "2024-01-10"}},
                                {"linear.json": "{}"})
    rep = work.parent / "risk-report"
    rep.mkdir()
    (rep / "report.html").write_text("<html></html>")
    risk_store.save_report(root, "risk-20240105T0000Z-20240115T0000Z", rep)
    risk_store.activate(root, "risk-20240105T0000Z-20240115T0000Z", "first supervised model")


def test_models_overview(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import models_overview

    cfg = _cfg(tmp_path)
    _seed_models(tmp_path / "work")
    got = models_overview(cfg)
    json.dumps(got, allow_nan=False)
    ip = got["ipinsights"]
    assert ip["active"]["version"] == "ipinsights-20240108T0300Z-20240122T0300Z"
    assert ip["active"]["threshold"] == 1.5 and ip["active"]["combiner"] is True
    assert ip["active"]["interval"] == {"start": "2024-01-08T03:00:00Z", "end": "2024-01-22T03:00:00Z"}
    assert ip["active"]["metrics"] == {"auc": 0.91} and ip["active"]["threshold_method"] == "target_fpr"
    assert [v["version"] for v in ip["versions"]] == ["ipinsights-20240108T0300Z-20240122T0300Z",
                                                       "ipinsights-20240101T0300Z-20240115T0300Z"]
    assert [v["active"] for v in ip["versions"]] == [True, False]
    cal = ip["versions"][1]["calibration"]
    assert cal["auc"] == 0.9 and cal["threshold_value"] == 0.5 and cal["components"]["combined"]["roc_auc"] == 0.95
    assert cal["report"].endswith("interval=20240101T030000Z_20240115T030000Z/report.html")
    risk = got["risk"]
    assert risk["active"]["version"] == "risk-20240105T0000Z-20240115T0000Z"
    assert risk["active"]["models"]["boosted"] == {"r2": 0.5, "rmse": 11.0, "mae": 8.0, "rows": 10}
    first = risk["versions"][0]
    assert first["active"] and first["gate"]["passed"] and first["report"].endswith("report/report.html")
    assert first["models"]["linear"]["r2"] == 0.3 and first["train_rows"] == 40
    assert risk["versions"][1]["report"] is None and not risk["versions"][1]["active"]


def test_models_overview_of_an_empty_or_damaged_work_folder(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import models_overview

    cfg = _cfg(tmp_path)
    got = models_overview(cfg)
    assert got["ipinsights"]["active"] is None and got["ipinsights"]["versions"] == []
    assert got["risk"]["active"] is None and got["risk"]["versions"] == []
    (tmp_path / "work" / "models" / "ipinsights").mkdir(parents=True)
    (tmp_path / "work" / "models" / "ipinsights" / "active.json").write_text("{not json")
    (tmp_path / "work" / "risk" / "models" / "versions" / "risk-x").mkdir(parents=True)
    (tmp_path / "work" / "risk" / "models" / "versions" / "risk-x" / "model.json").write_text("[")
    got = models_overview(cfg)
    assert got["ipinsights"]["active"] is None and "not valid JSON" in got["ipinsights"]["active_error"]
    assert got["risk"]["versions"][0]["version"] == "risk-x" and "not valid JSON" in got["risk"]["versions"][0]["error"]


# ------------------------------------------------------------------------------- batches
def _seed_batches(work: Path) -> list[str]:
    from seclake_ml.scoring.lake_object import parse_lake_key
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.stores import LocalStore

    ledger = Ledger(LocalStore(work))
    ids = []
    for i in range(3):
        objs = [parse_lake_key(f"aws/VPC_FLOW/1.0/region=us-east-1/accountId=111111111111/eventDay=2024010{d}/o{i}.parquet",
                               size=10, etag=f"e{i}") for d in (i + 1, i + 2)]
        manifest = ledger.create_batch(objs, origin="lake")
        bid = manifest["batch_id"]
        totals = {"objects": 2, "rows": 1000 * (i + 1), "pairs": 2000, "distinct_pairs": 300, "unknown_entity": 50,
                  "findings": 4, "failed": 0, "quarantined": 0, "severity": {"High": 4}}
        result = {"batch_id": bid, "origin": "lake", "objects_in_batch": 2, "model_version": "m", "totals": totals}
        if i == 2:
            totals["suppressed"] = 1
            result["drift"] = {"psi": 0.31, "status": "drifting", "note": "<b>raw</b>"}
        ledger.finish(bid, result)
        doc = json.loads((work / "scoring" / "batches" / bid / "result.json").read_text())
        doc["finished_at"] = f"2024-01-1{i}T00:00:05+00:00"
        (work / "scoring" / "batches" / bid / "result.json").write_text(json.dumps(doc))
        man = json.loads((work / "scoring" / "batches" / bid / "manifest.json").read_text())
        man["created_at"] = f"2024-01-1{i}T00:00:00+00:00"
        (work / "scoring" / "batches" / bid / "manifest.json").write_text(json.dumps(man))
        ids.append(bid)
    # a batch handed off but not scored yet: not listed
    ledger.create_batch([parse_lake_key("aws/VPC_FLOW/1.0/region=us-east-1/accountId=111111111111/eventDay=20240109/p.parquet",
                                        size=1, etag="p")], origin="lake")
    return ids


def test_batches_overview(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import batches_overview

    cfg = _cfg(tmp_path)
    assert batches_overview(cfg) == []
    ids = _seed_batches(tmp_path / "work")
    got = batches_overview(cfg)
    json.dumps(got, allow_nan=False)
    assert [b["batch_id"] for b in got] == ids[::-1]
    newest = got[0]
    assert newest["origin"] == "lake" and newest["objects"] == 2 and newest["rows"] == 3000 and newest["pairs"] == 2000
    assert newest["unknown_entity"] == 50 and newest["unknown_rate"] == 0.025
    assert newest["findings"] == 4 and newest["findings_per_1k_pairs"] == 2.0
    assert newest["suppressed"] == 1 and newest["drift"] == {"psi": 0.31, "status": "drifting", "note": "<b>raw</b>"}
    assert newest["scoring_lag_seconds"] == 5.0 and newest["newest_event_day"] == "20240104"
    assert newest["finished_at"] == "2024-01-12T00:00:05+00:00"
    assert got[1]["suppressed"] is None and "drift" not in got[1]
    assert len(batches_overview(cfg, limit=1)) == 1
    with pytest.raises(ValueError, match="^limit"):
        batches_overview(cfg, limit=0)


def test_batches_overview_reports_an_unreadable_result(tmp_path: Path) -> None:
    from seclake_ml.workspace.data import batches_overview

    cfg = _cfg(tmp_path)
    ids = _seed_batches(tmp_path / "work")
    (tmp_path / "work" / "scoring" / "batches" / ids[0] / "result.json").write_text("{broken")
    got = {b["batch_id"]: b for b in batches_overview(cfg)}
    assert "not valid JSON" in got[ids[0]]["error"] and got[ids[0]]["findings"] is None
    assert "error" not in got[ids[1]]


# ------------------------------------------------------------------------------- aws (S3 through the site's client)
def test_s3_findings_models_and_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.workspace import data

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(data.tempfile, "gettempdir", lambda: str(tmp_path))  # a private download cache
    local = tmp_path / "local"
    _write(_cfg(local), _ipinsights_records() + _risk_records(), "s3-a")
    _seed_models(local / "work")
    _seed_batches(local / "work")
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake-bucket")
        s3.create_bucket(Bucket="work-bucket")
        for path in (local / "lake").rglob("*.parquet"):
            s3.put_object(Bucket="lake-bucket", Key=f"findings/{path.relative_to(local / 'lake').as_posix()}",
                          Body=path.read_bytes())
        s3.put_object(Bucket="lake-bucket", Key="findings/ext/ipinsights-vpc-flow/region=us-east-1/accountId=111111111111/"
                      "eventDay=20240105/zero.parquet", Body=b"")
        for path in (local / "work").rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="work-bucket", Key=f"w/{path.relative_to(local / 'work').as_posix()}",
                              Body=path.read_bytes())
        cfg = SeclakeConfig(backend="aws", lake_bucket="lake-bucket", work_location="s3://work-bucket/w",
                            extra={"scoring": {"findings_location": "s3://lake-bucket/findings"}})
        with pytest.raises(ValueError, match="S3 client"):
            data.list_findings(cfg)
        records = _ipinsights_records() + _risk_records()
        rows, cursor = [], None
        while True:
            page = data.list_findings(cfg, page_size=7, cursor=cursor, s3_client=s3)
            rows += page["rows"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert page["total"] == len(records) and page["skipped_files"] == 1 and not page["truncated"]
        assert sorted(r["uid"] for r in rows) == sorted(_uid(r) for r in records)
        assert [(-r["time_ms"], r["uid"]) for r in rows] == sorted((-r["time_ms"], r["uid"]) for r in rows)
        bounded = data.list_findings(cfg, s3_client=s3, max_files=2)
        assert bounded["truncated"] and bounded["files"] == 2 and bounded["total"] < len(records)
        assert data.finding_detail(cfg, rows[3]["uid"], s3_client=s3)["finding_info"]["uid"] == rows[3]["uid"]
        models = data.models_overview(cfg, s3_client=s3)
        assert "ssm_client" in models["ipinsights"]["active_error"]
        assert len(models["ipinsights"]["versions"]) == 2 and models["ipinsights"]["versions"][0]["calibration"]["auc"]
        assert models["risk"]["active"]["version"] == "risk-20240105T0000Z-20240115T0000Z"
        assert models["risk"]["versions"][0]["report"].startswith("s3://work-bucket/w/risk/models/versions/")
        batches = data.batches_overview(cfg, s3_client=s3)
        assert len(batches) == 3 and batches[0]["drift"]["status"] == "drifting"


# ------------------------------------------------------------------------------- review fixes
def test_finding_detail_by_key_reads_only_that_file(tree, monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml.workspace import data

    rows = data.list_findings(tree["cfg"], page_size=500)["rows"]
    row = rows[-1]

    def no_scan(*args, **kwargs):
        raise AssertionError("the whole tree was listed")

    monkeypatch.setattr(data, "_list_files", no_scan)
    got = data.finding_detail(tree["cfg"], row["uid"], key=row["key"])
    assert got["finding_info"]["uid"] == row["uid"] and got["_key"] == row["key"]
    other = next(r for r in rows if r["key"] != row["key"])
    assert data.finding_detail(tree["cfg"], row["uid"], key=other["key"]) is None  # not in that file
    for bad in ("../x.parquet", "ext/ipinsights-a/region=us-east-1/accountId=111111111111/eventDay=2024010/x.parquet",
                "ext/ipinsights-a/region=us-east-1/accountId=1/eventDay=20240105/x.parquet",
                "ext/ipinsights-a/region=us-east-1/accountId=111111111111/eventDay=20240105/..parquet",
                "ext/ipinsights-a/region=us-east-1/accountId=111111111111/eventDay=20240105/a/b.parquet",
                "/ext/ipinsights-a/region=us-east-1/accountId=111111111111/eventDay=20240105/x.parquet"):
        with pytest.raises(ValueError, match="^key"):
            data.finding_detail(tree["cfg"], row["uid"], key=bad)
    # a link is not followed
    real = Path(tree["cfg"].lake_root) / row["key"]
    linked = real.with_name("linked.parquet")
    linked.symlink_to(real)
    assert data.finding_detail(tree["cfg"], row["uid"], key=str(Path(row["key"]).with_name("linked.parquet"))) is None


def test_deeply_nested_cursor_is_a_bad_cursor(tree) -> None:
    import base64

    from seclake_ml.workspace.data import list_findings

    cursor = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    with pytest.raises(ValueError, match="^cursor"):
        list_findings(tree["cfg"], cursor=cursor)


def test_missing_files_are_not_remembered_as_bad(tmp_path: Path) -> None:
    from seclake_ml.workspace import data

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not parquet PAR1")
    st = garbage.stat()
    bad = data._File(str(garbage), "ext/g", "ipinsights-x", "ipinsights", "r", "a", "20240101", st.st_size,
                     str(st.st_mtime_ns))
    gone = data._File(str(tmp_path / "gone.parquet"), "ext/gone", "ipinsights-x", "ipinsights", "r", "a", "20240101",
                      10, "1")
    listing = data._Listing([bad, gone], [])
    con = data._connect()
    try:
        assert data._good_files(con, listing, probe=True) == []
    finally:
        con.close()
    reasons = {b["key"]: b["reason"] for b in listing.bad}
    assert reasons == {"ext/g": "not a readable findings file", "ext/gone": "could not be read now"}
    assert (bad.path, bad.size, bad.stamp) in data._BAD and (gone.path, gone.size, gone.stamp) not in data._BAD
    assert str(tmp_path) not in json.dumps(listing.bad)  # no paths or DuckDB messages for the client


def _moto_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str = ""):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.workspace import data

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(data.tempfile, "gettempdir", lambda: str(tmp_path))
    local = tmp_path / "local"
    _write(_cfg(local), _ipinsights_records() + _risk_records(), "s3-a")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake-bucket")
    for path in (local / "lake").rglob("*.parquet"):
        s3.put_object(Bucket="lake-bucket", Key=f"{base}{path.relative_to(local / 'lake').as_posix()}",
                      Body=path.read_bytes())
    location = "s3://lake-bucket/" + base.rstrip("/")
    cfg = SeclakeConfig(backend="aws", lake_bucket="lake-bucket", work_location="s3://lake-bucket/w",
                        extra={"scoring": {"findings_location": location.rstrip("/")}})
    return s3, cfg


def test_s3_byte_budget_cache_folder_and_keyed_detail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    from seclake_ml.workspace import data

    assert data.AWS_MAX_FILES == 500
    with moto.mock_aws():
        s3, cfg = _moto_lake(tmp_path, monkeypatch)
        everything = data.list_findings(cfg, page_size=500, s3_client=s3)
        assert not everything["truncated"] and everything["error"] is None
        sizes = sorted(o["Size"] for o in s3.list_objects_v2(Bucket="lake-bucket")["Contents"])
        monkeypatch.setattr(data, "AWS_MAX_BYTES", sizes[0] + sizes[1])
        bounded = data.list_findings(cfg, page_size=500, s3_client=s3)
        assert bounded["truncated"] and 1 <= bounded["files"] <= 2 and bounded["total"] < everything["total"]
        # an old finding beyond the bounds is found by its key, reading that object only
        old = everything["rows"][-1]
        assert data.finding_detail(cfg, old["uid"], s3_client=s3, key=old["key"])["finding_info"]["uid"] == old["uid"]
        missing = old["key"].rsplit("/", 1)[0] + "/none.parquet"
        assert data.finding_detail(cfg, old["uid"], s3_client=s3, key=missing) is None
        # downloads are streamed to disk (download_fileobj into the cache file)
        monkeypatch.setattr(data, "AWS_MAX_BYTES", 1 << 40)
        for f in data._cache_dir().iterdir():
            f.unlink()
        calls = []
        real = s3.download_fileobj
        monkeypatch.setattr(s3, "download_fileobj", lambda *a, **kw: (calls.append(a[1]), real(*a, **kw))[1])
        assert data.list_findings(cfg, page_size=500, s3_client=s3)["total"] == everything["total"]
        assert calls
        # a cached file that is a link is not followed (replaced by a fresh download)
        cached = next(data._cache_dir().glob("*.parquet"))
        cached.unlink()
        (tmp_path / "elsewhere.parquet").write_bytes(b"junk")
        cached.symlink_to(tmp_path / "elsewhere.parquet")
        assert data.list_findings(cfg, page_size=500, s3_client=s3)["total"] == everything["total"]
        assert not cached.is_symlink()


def test_s3_cache_folder_must_be_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from seclake_ml.workspace import data

    monkeypatch.setattr(data.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(data, "_PRIVATE_CACHE", [])
    shared = tmp_path / f"seclake_ml-workspace-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    got = data._cache_dir()
    assert got != shared and (got.stat().st_mode & 0o777) == 0o700
    assert data._cache_dir() == got  # one private folder per process
    shared.rmdir()
    shared.symlink_to(tmp_path / "target", target_is_directory=True)
    (tmp_path / "target").mkdir(mode=0o700)
    monkeypatch.setattr(data, "_PRIVATE_CACHE", [])
    assert data._cache_dir() not in (shared, tmp_path / "target")


def test_s3_listing_refused_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.workspace import data

    class Refusing:
        def get_paginator(self, name):
            return self

        def paginate(self, **kwargs):
            raise botocore.ClientError({"Error": {"Code": "AccessDenied", "Message": "secret internals arn:..."}},
                                       "ListObjectsV2")

    cfg = SeclakeConfig(backend="aws", lake_bucket="lake-bucket", work_location="s3://lake-bucket/w")
    res = data.list_findings(cfg, s3_client=Refusing())
    assert res["total"] == 0 and res["rows"] == [] and "AccessDenied" in res["error"]
    assert "secret internals" not in res["error"]
    with pytest.raises(data.FindingsUnavailable, match="AccessDenied"):
        data.finding_detail(cfg, "u" * 32, s3_client=Refusing())
