"""CloudTrail data events (Security Lake's S3_DATA and LAMBDA_EXECUTION): pairs and findings with context.

Objects are built from the AWS-written API Activity sample (version 1 schema, ``tests/data/reference``)
with S3 object-level calls; version 2 objects carry only the columns the view needs (the rest reads
as NULL, as schema drift does).
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.config import SeclakeConfig
from seclake_ml.extraction import extract_pairs
from seclake_ml.model_store import LocalModelStore
from seclake_ml.scoring import service
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.ledger import Ledger

from .conftest import SOURCES, make_config

DAY = date(2024, 3, 8)
ACCOUNT = "123456789012"


def _day_ms(day: date, second: int) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000) + second * 1000


def _part(lake: Path, folder: str, version: int, day: date) -> Path:
    p = lake / "aws" / folder / f"{version}.0" / "region=us-east-1" / f"accountId={ACCOUNT}" / f"eventDay={day:%Y%m%d}"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _s3_rows_v1(reference_dir: Path, calls: list[tuple[str, str | None, str, int]], class_uid: int = 3005) -> pa.Table:
    """(principal ARN, source IP, bucket, second of DAY) -> version 1 API Activity rows of S3 GetObject."""
    sample = pq.read_table(reference_dir / "securitylake-parquet" / "cloudtrail_api_GetVpcLinks.gz.parquet")
    base = sample.to_pylist()[0]
    rows = []
    for principal, ip, bucket, second in calls:
        r = copy.deepcopy(base)
        r["time"] = _day_ms(DAY, second)
        r["class_uid"] = class_uid
        r["api"]["operation"] = "GetObject"
        r["api"]["service"] = {"name": "s3.amazonaws.com"}
        r["actor"]["user"]["uuid"] = principal
        r["actor"]["user"]["type"] = "AssumedRole"
        r["src_endpoint"]["ip"] = ip
        r["resources"] = [
            {"uid": f"arn:aws:s3:::{bucket}/data/{second}.csv", "account_uid": ACCOUNT, "type": "AWS::S3::Object"},
            {"uid": f"arn:aws:s3:::{bucket}", "account_uid": ACCOUNT, "type": "AWS::S3::Bucket"},
        ]
        rows.append(r)
    return pa.Table.from_pylist(rows, schema=sample.schema)


def _rows_v2(calls: list[tuple[str, str | None, str, int]], resource_type: str, uid_of) -> pa.Table:
    """Version 2 rows with only the columns the view reads (others absent: NULL)."""
    resource = pa.struct([("uid", pa.string()), ("type", pa.string())])
    return pa.table({
        "time_dt": pa.array([datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc) + timedelta(seconds=s)
                             for *_, s in calls], pa.timestamp("ms", tz="UTC")),
        "class_uid": pa.array([6003] * len(calls), pa.int32()),
        "actor": pa.array([{"user": {"uid": p, "type": "AssumedRole"}} for p, *_ in calls]),
        "src_endpoint": pa.array([{"ip": ip} for _, ip, *_ in calls]),
        "resources": pa.array([[{"uid": uid_of(b), "type": resource_type}] for _, _, b, _ in calls], pa.list_(resource)),
    })


ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/etl/job"


@pytest.mark.parametrize("version", [1, 2])
def test_s3_and_lambda_data_events_become_principal_ip_pairs(tmp_path: Path, reference_dir: Path, version: int) -> None:
    lake = tmp_path / "lake"
    calls = [(ROLE, "198.51.100.7", "raw-bucket", 10), (ROLE, "198.51.100.7", "curated", 20),
             (ROLE, None, "raw-bucket", 30), (ROLE, "2001:db8::5", "raw-bucket", 40)]
    if version == 1:
        s3 = _s3_rows_v1(reference_dir, calls)
        # a management-event row in the same object is not a data event of this class: left out
        s3 = pa.concat_tables([s3, _s3_rows_v1(reference_dir, [(ROLE, "203.0.113.1", "x", 50)], class_uid=3002)])
        lam = _s3_rows_v1(reference_dir, [(ROLE, "192.0.2.44", "fn", 60)])
    else:
        s3 = _rows_v2(calls, "AWS::S3::Bucket", lambda b: f"arn:aws:s3:::{b}")
        lam = _rows_v2([(ROLE, "192.0.2.44", "fn", 60)], "AWS::Lambda::Function",
                       lambda f: f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{f}")
    pq.write_table(s3, _part(lake, "S3_DATA", version, DAY) / "s3.gz.parquet", compression="gzip")
    pq.write_table(lam, _part(lake, "LAMBDA_EXECUTION", version, DAY) / "lambda.gz.parquet", compression="gzip")
    cfg = SeclakeConfig(lake_root=str(lake), work_location=str(tmp_path / "work"), source_version=version,
                        sources=("s3_data:principal_ip", "lambda_execution:principal_ip"))
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc)
    res = extract_pairs(cfg, "s3_data", "principal_ip", start, start + timedelta(days=1), str(tmp_path / "s3.parquet"))
    assert res.rows_read == 4 and res.pairs_written == 2 and res.dropped["null"] == 1 and res.dropped["ipv6"] == 1
    pairs = pq.read_table(tmp_path / "s3.parquet").to_pylist()
    assert {(p["entity"], p["ip"], p["source"]) for p in pairs} == {(ROLE, "198.51.100.7", "s3_data")}
    res = extract_pairs(cfg, "lambda_execution", "principal_ip", start, start + timedelta(days=1),
                        str(tmp_path / "lambda.parquet"))
    assert res.pairs_written == 1
    assert pq.read_table(tmp_path / "lambda.parquet").column("ip").to_pylist() == ["192.0.2.44"]


def test_flagged_s3_data_events_name_their_buckets(site: dict, reference_dir: Path) -> None:
    train = pq.read_table(site["train"]).to_pylist()
    principal = next(r["entity"] for r in train if r["source"] == "cloudtrail_api")
    cfg = dataclasses.replace(make_config(site), sources=(*SOURCES, "s3_data:principal_ip"))
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # adopt what is there
    # a known principal reads three buckets (one of them hostile-named) from a network it never used
    calls = [(principal, "203.0.113.77", bucket, i) for i, bucket in
             enumerate(["finance-exports", "hr-archive", "finance-exports", "logs\u202eexe"])]
    pq.write_table(_s3_rows_v1(reference_dir, calls), _part(Path(site["lake"]), "S3_DATA", 1, DAY) / "s3-0001.gz.parquet")
    # everything the model knows is flagged, so the test is about the context, not the model's taste
    LocalModelStore(Path(site["work"]) / "models" / "ipinsights").activate("ipinsights-a", threshold=-1e9)
    manifest = service.find_new_local_batch(cfg, ledger)
    assert manifest is not None and [o["key"].split("/")[1] for o in manifest["objects"]] == ["S3_DATA"]
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    assert summary["totals"]["scored"] == 1 and summary["totals"]["findings"] == 1
    records = read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))
    (rec,) = [r for r in records if r["unmapped"]["source"] == "s3_data"]
    assert rec["unmapped"]["entity"] == principal and rec["unmapped"]["ip"] == "203.0.113.77"
    buckets = rec["evidences"][0]["data"]["context"]["bucket"]
    assert buckets[:2] == ["arn:aws:s3:::finance-exports", "arn:aws:s3:::hr-archive"] and len(buckets) == 3
    assert rec["unmapped"]["context_bucket"].startswith("arn:aws:s3:::finance-exports, arn:aws:s3:::hr-archive")
    assert "bucket: arn:aws:s3:::finance-exports" in rec["message"] and "\u202e" not in rec["message"]
