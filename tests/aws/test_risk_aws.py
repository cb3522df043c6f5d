"""The CloudTrail risk engine on the aws backend, against the moto server on loopback.

What runs for real: the package's Athena query layer (:class:`~seclake_ml.lake.athena.AthenaLake`) and
its hooks, which send every query to moto's Athena (read back here with ``ListQueryExecutions`` /
``GetQueryExecution``); every S3 read and write (work bucket, lake bucket, findings); the label store,
the model store, training (LightGBM), the risk scoring of a batch through
:class:`~seclake_ml.operators.risk.RiskScoreBatchOperator`.

What stands in for AWS: **Athena's execution of the UNLOAD.** moto accepts a query and lets it
SUCCEED without running any SQL, so nothing would be written under the ``TO 's3://…'`` prefix. The
fixture :func:`athena` wraps ``AthenaLake._start`` (the package's last step before AWS): the real
``_start`` sends the query to moto first, then the stand-in writes Parquet part files in the shape of
the UNLOAD's SELECT (the columns of :data:`seclake_ml.risk.columns.EVENT_COLUMNS`, ``time`` as a
zone-less ``timestamp(ms)`` as Athena writes it, zstd) under the prefix parsed from the query text,
into the moto bucket. The parts are either given by the test (hand-written rows, a corrupt part, no
part at all) or, where a test runs the engine over a generated lake, the events that the local DuckDB
reader (the same filters, the same expressions) reads from that lake for the window parsed from the
query's time filter. Everything after the query (listing, download, normalisation, quarantine) is
the package's own code against moto's S3.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.config import SeclakeConfig
from seclake_ml.lake.athena import AthenaLake, split_s3_prefix
from seclake_ml.risk import engine, service
from seclake_ml.risk.columns import EVENT_COLUMNS
from seclake_ml.backends import read_events
from seclake_ml.risk.events import MAX_FIELD_LEN, event_schema_types
from seclake_ml.sqlsafe import UnsafeSqlError

from .moto_server import DEFAULT_REGION, MotoServer

WORK_BUCKET = "seclake-work"
WORK = f"s3://{WORK_BUCKET}/ml"
LAKE_BUCKET = "aws-security-data-lake-us-east-1-risktest"
WORKGROUP = "seclake-risk"
GLUE_DB = "amazon_security_lake_glue_db_us_east_1"
CT_TABLE = {v: f'"{GLUE_DB}"."amazon_security_lake_table_us_east_1_cloud_trail_mgmt_{v}_0"' for v in (1, 2)}
ACCOUNT = "111122223333"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
END = datetime(2026, 1, 7, tzinfo=timezone.utc)
INTERVAL = "interval=20260105T000000Z_20260107T000000Z"
DEST = f"{WORK}/risk/events/{INTERVAL}/"
DEST_KEY = DEST[len(f"s3://{WORK_BUCKET}/"):]

LAKE_START = date(2024, 3, 4)  # a Monday; 5 days
SEED = 23
RISK = {"min_labels": 20, "lookback_days": 2, "geoip_provider": "none"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def client(service_name: str) -> Any:
    return boto3.client(service_name, region_name=DEFAULT_REGION)


def aws_cfg(version: int = 1, risk: dict[str, Any] | None = None, **overrides: Any) -> SeclakeConfig:
    base: dict[str, Any] = dict(backend="aws", region="us-east-1", athena_workgroup=WORKGROUP, source_version=version,
                                work_location=WORK, lake_bucket=LAKE_BUCKET, extra={"risk": {**RISK, **(risk or {})}})
    base.update(overrides)
    return SeclakeConfig(**base)


def local_cfg(lake: Path, work: Path, risk: dict[str, Any] | None = None) -> SeclakeConfig:
    return SeclakeConfig(lake_root=str(lake), work_location=str(work), source_version=1,
                         extra={"risk": {**RISK, **(risk or {})}})


def keys_under(bucket: str, prefix: str = "") -> list[str]:
    s3 = client("s3")
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def sent_queries() -> list[dict[str, Any]]:
    """Every query execution the moto server received, oldest first."""
    athena = client("athena")
    ids = athena.list_query_executions()["QueryExecutionIds"]
    got = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    return sorted(got, key=lambda q: q["Status"]["SubmissionDateTime"])


# ----------------------------------------------------------------------------- the Athena stand-in
def athena_part(table: pa.Table) -> pa.Table:
    """An event table as an UNLOAD part holds it: EVENT_COLUMNS, ``time`` a zone-less timestamp(ms) (UTC values)."""
    cols = {}
    for name in EVENT_COLUMNS:
        col = table.column(name)
        cols[name] = col.cast(pa.timestamp("ms")) if name == "time" else col
    return pa.table(cols)


def parquet_bytes(table: pa.Table, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", **kwargs)
    return buf.getvalue()


_DEST_RE = re.compile(r"\nTO '(s3://[^']+)'\nWITH \(format = 'PARQUET', compression = 'ZSTD'\)$")
_V1_WINDOW_RE = re.compile(r"AND t\.time >= (\d+) AND t\.time < (\d+)\)")


@dataclass
class AthenaStandIn:
    """Writes what Athena's execution of an UNLOAD would have written (see the module docstring).

    ``parts``: the part files to write (a table is written as Parquet, bytes as they are); ``None``:
    the events of ``lake_cfg``'s local lake in the query's window, in two parts (second half first).
    """

    parts: list[Any] | None = None
    lake_cfg: SeclakeConfig | None = None
    int96: bool = False
    queries: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def execute(self, query: str) -> None:
        self.queries.append(query)
        m = _DEST_RE.search(query)
        assert query.startswith("UNLOAD (") and m, query[:200]
        bucket, prefix = split_s3_prefix(m.group(1))
        parts = self.parts if self.parts is not None else self._lake_parts(query)
        s3 = client("s3")
        for i, part in enumerate(parts):
            body = part if isinstance(part, bytes) else parquet_bytes(
                part, use_deprecated_int96_timestamps=self.int96)
            # Athena's part names: <date>_<time>_<n>_<id>_<uuid>, no extension
            key = f"{prefix}20260107_000000_{i:05d}_sim_{uuid.uuid4()}"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            self.written.append(f"s3://{bucket}/{key}")

    def _lake_parts(self, query: str) -> list[pa.Table]:
        assert self.lake_cfg is not None, "no parts given and no lake to read them from"
        m = _V1_WINDOW_RE.search(query)
        assert m, "version-1 time filter not found in the UNLOAD"
        start, end = (datetime.fromtimestamp(int(ms) / 1000, timezone.utc) for ms in m.groups())
        table = athena_part(read_events(self.lake_cfg, start, end).table)
        half = table.num_rows // 2
        return [table.slice(half), table.slice(0, half)]


@pytest.fixture
def athena(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[AthenaStandIn]:
    """Work and lake buckets, the workgroup, immediate executions, and the UNLOAD stand-in on ``_start``."""
    s3 = client("s3")
    for bucket in (WORK_BUCKET, LAKE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    client("athena").create_work_group(Name=WORKGROUP, Configuration={})
    aws_env.athena_immediate()
    stand_in = AthenaStandIn()
    real_start = AthenaLake._start

    def _start(self: AthenaLake, query: str) -> str:
        query_id = real_start(self, query)  # the query reaches moto first
        stand_in.execute(query)  # then what Athena's execution would have written
        return query_id

    monkeypatch.setattr(AthenaLake, "_start", _start)
    yield stand_in


# ----------------------------------------------------------------------------- a generated lake
@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated CloudTrail lake (version 1, one account, 5 days); read-only."""
    from seclake_lakegen.generate import generate_lake

    root = tmp_path_factory.mktemp("risk_aws_lake") / "lake"
    generate_lake(root, LAKE_START, 5, SEED, source_version=1, sources="cloudtrail", accounts=1, regions="us-east-1",
                  flows_per_day=300, api_calls_per_day=300, workers=1)
    return root


def lake_keys(lake: Path, day: str) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for p in (lake / "aws" / "CLOUD_TRAIL_MGMT").rglob("*.parquet")
                  if f"/eventDay={day}/" in p.as_posix())


def upload(lake: Path, keys: list[str]) -> None:
    s3 = client("s3")
    for key in keys:
        s3.upload_file(str(lake / key), LAKE_BUCKET, key)


# ============================================================================ 1. the rendered UNLOAD
@pytest.mark.parametrize("version", [1, 2])
def test_events_unload_rendered_and_sent_as_built(athena: AthenaStandIn, version: int) -> None:
    cfg = aws_cfg(version, accounts=(ACCOUNT, "external"), regions=("us-east-1", "eu-west-1"))
    query = AthenaLake(cfg).build_events_query(START, END, DEST)

    assert query.startswith("UNLOAD (\n    SELECT\n")
    assert f"FROM {CT_TABLE[version]} AS t\n" in query
    assert CT_TABLE[3 - version] not in query
    api_class = {1: 3005, 2: 6003}[version]
    assert f"WHERE ((t.class_uid = 3002 AND t.api.operation = 'ConsoleLogin') OR t.class_uid = {api_class})" in query
    if version == 1:
        # partition pruning on eventday (last day = the day before the exclusive end), then exact epoch ms
        assert ("AND (t.eventday BETWEEN '20260105' AND '20260106' AND t.time >= 1767571200000 "
                "AND t.time < 1767744000000)") in query
        assert int(START.timestamp() * 1000) == 1767571200000 and int(END.timestamp() * 1000) == 1767744000000
        assert "date_add('millisecond', t.time, TIMESTAMP '1970-01-01 00:00:00.000') AS time," in query
        assert "time_dt" not in query
        assert "coalesce(t.mfa, t.actor.session.mfa)" in query
    else:
        assert ("AND (t.time_dt >= TIMESTAMP '2026-01-05 00:00:00.000' "
                "AND t.time_dt < TIMESTAMP '2026-01-07 00:00:00.000')") in query
        assert "CAST(t.time_dt AS timestamp(3)) AS time," in query
        assert "eventday" not in query and "t.time " not in query
        assert "coalesce(t.is_mfa, t.actor.session.is_mfa)" in query
    assert "AND (t.accountid IN ('111122223333', 'external'))" in query
    assert "AND (t.region IN ('us-east-1', 'eu-west-1'))" in query
    # strings are cut one past what the engine keeps, so a cut value is still counted on read-back
    assert f"substr(CAST(t.http_request.user_agent AS varchar), 1, {MAX_FIELD_LEN + 1}) AS user_agent" in query
    assert query.endswith(f"\nTO '{DEST}'\nWITH (format = 'PARQUET', compression = 'ZSTD')")
    assert "--" not in query  # template comments stripped: the statement comes first

    # without filters: TRUE, not an empty IN list
    bare = AthenaLake(aws_cfg(version)).build_events_query(START, END, DEST)
    assert "AND (TRUE)\n      AND (TRUE)\n)" in bare and "accountid IN" not in bare

    # read_events sends exactly that query, in the configured workgroup and database
    athena.parts = []
    res = read_events(cfg, START, END)
    assert res.rows == 0
    sent = sent_queries()
    assert len(sent) == 1
    q = sent[0]
    assert q["Query"] == athena.queries[0]
    # the same statement, sent to this call's own run= prefix under the window's destination
    run = q["Query"].split(f"TO '{DEST}", 1)[1].split("/'", 1)[0]
    assert run.startswith("run=") and len(run) == len("run=") + 32
    assert q["Query"] == query.replace(f"TO '{DEST}'", f"TO '{DEST}{run}/'")
    assert q["WorkGroup"] == WORKGROUP
    assert q["QueryExecutionContext"] == {"Database": GLUE_DB, "Catalog": "AwsDataCatalog"}
    assert q["ResultConfiguration"]["OutputLocation"].startswith(f"{WORK}/athena_results/")
    assert q["Status"]["State"] == "SUCCEEDED"


def _hostile(cfg: SeclakeConfig, **fields: Any) -> SeclakeConfig:
    """A configuration whose fields were changed after validation: the SQL layer's own checks must hold."""
    for name, value in fields.items():
        object.__setattr__(cfg, name, value)
    return cfg


@pytest.mark.parametrize("fields", [
    {"accounts": ("1' OR '1'='1",)},
    {"accounts": (ACCOUNT, "111122223333') OR TRUE --")},
    {"regions": ("us-east-1') OR TRUE --",)},
    {"regions": ("us-east-1'; DROP TABLE x; --",)},
    {"glue_database": 'db"; DROP TABLE x; --'},
])
def test_hostile_filters_are_refused_before_anything_is_sent(athena: AthenaStandIn, fields: dict[str, Any]) -> None:
    # the configuration refuses them when it is built ...
    with pytest.raises(ValueError):
        aws_cfg(**fields)
    # ... and the SQL layer refuses them when a configuration skipped validation
    cfg = _hostile(aws_cfg(), **fields)
    with pytest.raises(UnsafeSqlError):
        AthenaLake(cfg).build_events_query(START, END, DEST)
    client("s3").put_object(Bucket=WORK_BUCKET, Key=DEST_KEY + "earlier-part", Body=b"kept")
    with pytest.raises(UnsafeSqlError):
        read_events(cfg, START, END)
    assert sent_queries() == [] and athena.queries == []
    assert keys_under(WORK_BUCKET) == [DEST_KEY + "earlier-part"]  # nothing deleted before the refusal


def test_unload_destination_outside_the_work_location_is_refused(athena: AthenaStandIn) -> None:
    al = AthenaLake(aws_cfg())
    for out in ("s3://other-bucket/risk/", f"{WORK}/athena_results/x/", WORK, f"{WORK}/risk/x'); DROP TABLE t; --/"):
        with pytest.raises(ValueError):
            al.unload_events(START, END, out)
    assert sent_queries() == []


# ============================================================================ 2. read_events on aws
def _rows() -> list[dict[str, Any]]:
    """Rows as the UNLOAD writes them (strings already cut to MAX_FIELD_LEN + 1), naive UTC times."""
    base = dict(kind="api", account=ACCOUNT, region="us-east-1", principal_type="IAMUser",
                service="iam.amazonaws.com", error_code=None, status="Success")
    return [
        dict(base, uid="e-1", time=datetime(2026, 1, 5, 10, 0, 0, 123000), principal=f"arn:aws:iam::{ACCOUNT}:user/alice",
             source_ip="198.51.100.7", user_agent="x" * (MAX_FIELD_LEN + 1), operation="CreateAccessKey", mfa=False),
        dict(base, uid="e-2", time=datetime(2026, 1, 6, 23, 59, 59, 999000), kind="signin", principal=None,
             principal_type="Root", source_ip="2001:db8::1", user_agent="Mozilla/5.0", service="signin.amazonaws.com",
             operation="ConsoleLogin", error_code="Failed authentication", status="Failure", mfa=True),
        dict(base, uid="e-0", time=datetime(2026, 1, 5), principal=f"arn:aws:iam::{ACCOUNT}:user/zoë",
             source_ip="iam.amazonaws.com", user_agent="", operation="ListUsers", mfa=None),
    ]


def _athena_table(rows: list[dict[str, Any]]) -> pa.Table:
    types = dict(event_schema_types(), time=pa.timestamp("ms"))
    return pa.table({c: pa.array([r[c] for r in rows], type=types[c]) for c in EVENT_COLUMNS})


def _expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(rows, key=lambda r: (r["time"], r["uid"])):
        e = dict(r, time=r["time"].replace(tzinfo=timezone.utc))
        e = {k: (v[:MAX_FIELD_LEN] if isinstance(v, str) else v) for k, v in e.items()}
        out.append({c: e[c] for c in EVENT_COLUMNS})
    return out


@pytest.mark.parametrize("int96", [False, True], ids=["timestamp_ms", "int96"])
def test_read_events_reads_back_the_unload_parts(athena: AthenaStandIn, int96: bool) -> None:
    rows = _rows()
    athena.parts = [_athena_table(rows[:2]), _athena_table(rows[2:])]
    athena.int96 = int96  # older Hive-style writers store timestamps as INT96 (read as ns): same result
    s3 = client("s3")
    # another task's unload of the same window (its own run= prefix): never read, never removed
    other = DEST_KEY + "run=0123456789abcdef0123456789abcdef/20260101_000000_00000_part"
    s3.put_object(Bucket=WORK_BUCKET, Key=other, Body=b"another run's output")
    # a sibling window whose name starts like the destination: must survive the clean-up
    sibling = DEST_KEY.rstrip("/") + "_x/keep"
    s3.put_object(Bucket=WORK_BUCKET, Key=sibling, Body=b"k")

    res = read_events(aws_cfg(), START, END)

    assert athena.queries and f"TO '{DEST}run=" in athena.queries[0]
    run_prefix = athena.queries[0].split("TO '", 1)[1].split("'", 1)[0][len(f"s3://{WORK_BUCKET}/"):]
    assert run_prefix.startswith(DEST_KEY + "run=") and run_prefix != DEST_KEY
    assert res.quarantined == []
    assert res.files_scanned == 2 and res.rows == 3
    assert res.table.schema == pa.schema(list(event_schema_types().items()))
    assert str(res.table.schema.field("time").type) == "timestamp[ms, tz=UTC]"
    assert res.table.to_pylist() == _expected(rows)
    assert res.truncated == 1
    assert len(res.table.column("user_agent")[1].as_py()) == MAX_FIELD_LEN
    assert res.missing_fields == {"uid": 0, "principal": 1, "source_ip": 0, "user_agent": 1, "operation": 0}
    assert res.start == START.isoformat() and res.end == END.isoformat() and res.source_version == 1
    # this call's parts were read and then removed; the other run's output and the sibling are untouched
    written = sorted(u[len(f"s3://{WORK_BUCKET}/"):] for u in athena.written)
    assert written and all(k.startswith(run_prefix) for k in written)
    assert keys_under(WORK_BUCKET, run_prefix) == []
    assert keys_under(WORK_BUCKET, DEST_KEY) == [other]
    assert sibling in keys_under(WORK_BUCKET)


def test_read_events_quarantines_a_corrupt_part_and_keeps_the_good_one(athena: AthenaStandIn) -> None:
    rows = _rows()
    good = parquet_bytes(_athena_table(rows[:2]))
    athena.parts = [good, b"PAR1" + b"\x00" * 64 + b"PAR1", good[: len(good) // 2]]

    res = read_events(aws_cfg(), START, END)

    assert res.rows == 2 and res.files_scanned == 1
    assert res.table.to_pylist() == _expected(rows[:2])
    assert [q["path"] for q in res.quarantined] == athena.written[1:]
    for q in res.quarantined:
        assert q["reason"].startswith("corrupt Parquet: ") and len(q["reason"]) > len("corrupt Parquet: ")


@pytest.mark.parametrize("empty_part", [False, True], ids=["no_part", "zero_row_part"])
def test_read_events_empty_result(athena: AthenaStandIn, empty_part: bool) -> None:
    athena.parts = [_athena_table([])] if empty_part else []
    res = read_events(aws_cfg(), START, END)
    assert res.rows == 0 and res.table.num_rows == 0
    assert res.table.column_names == list(EVENT_COLUMNS)
    assert res.table.schema == pa.schema(list(event_schema_types().items()))
    assert res.files_scanned == (1 if empty_part else 0) and res.quarantined == []
    assert res.truncated == 0 and set(res.missing_fields.values()) == {0}
    assert len(sent_queries()) == 1


# ============================================================================ 3. read_events with keys
def test_read_events_of_lake_objects(athena: AthenaStandIn, lake: Path, tmp_path: Path) -> None:
    day = utc(2024, 3, 6)
    keys = lake_keys(lake, "20240306")
    assert len(keys) == 2
    upload(lake, keys)
    api_key = next(k for k in keys if "/api-" in k)

    res = read_events(aws_cfg(), day, day + timedelta(days=1), keys=[api_key])
    local = read_events(local_cfg(lake, tmp_path / "work"), day, day + timedelta(days=1), keys=[api_key])

    assert res.rows > 100 and res.files_scanned == 1 and res.quarantined == []
    assert res.table.equals(local.table)
    raw = pq.read_table(lake / api_key, columns=["metadata", "class_uid"]).to_pylist()
    assert sorted(res.table.column("uid").to_pylist()) == sorted(r["metadata"]["uid"] for r in raw
                                                                   if r["class_uid"] == 3005)
    assert set(res.table.column("kind").to_pylist()) == {"api"}
    # no Athena query for named objects
    assert sent_queries() == [] and athena.queries == []

    both = read_events(aws_cfg(), day, day + timedelta(days=1), keys=keys)
    assert set(both.table.column("kind").to_pylist()) == {"api", "signin"} and both.files_scanned == 2


def test_read_events_quarantines_a_lake_object_that_is_gone(athena: AthenaStandIn, lake: Path, tmp_path: Path) -> None:
    """An announced object that is no longer in the bucket is quarantined (as the local reader does with a
    missing file), not an error that fails every retry of the batch; the other objects are still read."""
    day = utc(2024, 3, 6)
    keys = lake_keys(lake, "20240306")
    upload(lake, keys[:1])
    gone = keys[1]
    corrupt = keys[1].replace("/auth-", "/auth-corrupt-")
    client("s3").put_object(Bucket=LAKE_BUCKET, Key=corrupt, Body=b"PAR1 not a Parquet file PAR1")
    res = read_events(aws_cfg(), day, day + timedelta(days=1), keys=[keys[0], gone, corrupt])
    local = read_events(local_cfg(lake, tmp_path / "work"), day, day + timedelta(days=1), keys=[keys[0]])
    assert res.table.equals(local.table) and res.rows > 0 and res.files_scanned == 1
    # each quarantined object is named by its place in the lake bucket, not by a temporary download path
    assert [q["path"] for q in res.quarantined] == [f"s3://{LAKE_BUCKET}/{gone}", f"s3://{LAKE_BUCKET}/{corrupt}"]
    assert "not found" in res.quarantined[0]["reason"]
    assert res.quarantined[1]["reason"]


@pytest.mark.parametrize("bad", [
    "../secret.parquet",
    "aws/CLOUD_TRAIL_MGMT/../../../etc/passwd",
    "/aws/CLOUD_TRAIL_MGMT/1.0/x.parquet",
])
def test_read_events_refuses_keys_outside_the_bucket_root(athena: AthenaStandIn, bad: str, tmp_path: Path) -> None:
    day = utc(2024, 3, 6)
    with pytest.raises(ValueError, match="is not a relative key"):
        read_events(aws_cfg(), day, day + timedelta(days=1), keys=[bad])
    with pytest.raises(ValueError, match="needs lake_bucket"):
        read_events(aws_cfg(lake_bucket=""), day, day + timedelta(days=1), keys=["aws/x.parquet"])
    assert sent_queries() == []


# ============================================================================ 4. the service on S3
def _labels_for(cfg: SeclakeConfig, start: datetime, end: datetime) -> dict[str, int]:
    """An analyst-like score for every event of the window (from the local lake: the same events)."""
    settings = service.settings_of(cfg)
    _, ff = service.load_window(cfg, start, end, settings)
    frame = ff.frame
    engine.add_unsupervised(frame, settings.lookback_days)
    y = np.clip(np.round(0.8 * frame["unsupervised"] + 6 * frame["sensitive"] + 5), 0, 100).astype(int)
    return dict(zip(frame["uid"].astype(str), y.tolist()))


def test_service_trains_stores_and_loads_on_s3(athena: AthenaStandIn, lake: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml.risk.labels import label_store_for, new_label

    cfg, loc = aws_cfg(), local_cfg(lake, tmp_path / "work")
    athena.lake_cfg = loc
    w0, w1 = utc(2024, 3, 6), utc(2024, 3, 8)
    version = "risk-20240306T0000Z-20240308T0000Z"
    scores = _labels_for(loc, w0, w1)
    assert len(scores) > 200

    # labels into the S3 label store of the work location
    s3 = client("s3")
    added = label_store_for(WORK, s3).add([new_label(u, s, analyst="test-analyst", source="cli")
                                           for u, s in scores.items()])
    assert added.stored == len(scores)
    label_objects = keys_under(WORK_BUCKET, "ml/risk/labels/")
    assert len(label_objects) == 1 and label_objects[0].endswith(".jsonl")
    assert added.uri == f"s3://{WORK_BUCKET}/{label_objects[0]}"
    assert {u: v["risk_score"] for u, v in service.latest_labels(cfg).items()} == scores

    fits: list[Any] = []  # a spy on the fit (not a stand-in): keeps the fitted models for the comparison below
    real_fit = service.fit

    def spy_fit(*args: Any, **kwargs: Any) -> Any:
        fits.append(real_fit(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(service, "fit", spy_fit)
    out = service.train(cfg, w0, w1)
    assert len(fits) == 1

    assert out["version"] == version and out["supervised"] and out["activated"]
    assert out["gate"]["passed"] and out["gate"]["reason"] == "first supervised model"
    assert out["labels_used"] == len(scores) == out["events"]
    assert out["model_dir"] == f"{WORK}/risk/models/versions/{version}"
    # one UNLOAD: the window with its lookback (2 days) before it
    assert len(athena.queries) == 1 and len(sent_queries()) == 1
    assert f"TO '{WORK}/risk/events/interval=20240304T000000Z_20240308T000000Z/run=" in athena.queries[0]
    # the version, its report and active.json are in S3
    folder = f"ml/risk/models/versions/{version}/"
    stored = keys_under(WORK_BUCKET, "ml/risk/models/")
    for name in ("model.json", "linear.json", "boosted.txt", "report/report.html"):
        assert folder + name in stored, stored
    assert {"ml/risk/models/active.json", "ml/risk/models/history.jsonl"} <= set(stored)
    assert out["report"]["html"] == f"s3://{WORK_BUCKET}/{folder}report/report.html"
    html = s3.get_object(Bucket=WORK_BUCKET, Key=folder + "report/report.html")["Body"].read().decode()
    assert "<html" in html.lower() and version in html
    active = json.loads(s3.get_object(Bucket=WORK_BUCKET, Key="ml/risk/models/active.json")["Body"].read())
    assert active["version"] == version and active["supervised"] is True

    # the model loaded back from S3 predicts exactly as the fitted one did on its test split
    ref = fits[0]
    model = service.active_model(cfg)
    assert model.version == version and model.supervised
    assert model.manifest["test_uids_sha256"] == ref.manifest(service.settings_of(cfg))["test_uids_sha256"]
    test = ref.test_frame
    assert len(test) > 20
    assert np.array_equal(model.boosted.predict(test), ref.boosted.predict(test))
    assert np.array_equal(model.boosted.predict(test), test["pred_boosted"].to_numpy())
    assert np.array_equal(model.linear.predict(test), ref.linear.predict(test))
    assert out["metrics"]["boosted"] == ref.metrics["boosted"]

    # a tampered boosted.txt refuses to load
    key = folder + "boosted.txt"
    text = s3.get_object(Bucket=WORK_BUCKET, Key=key)["Body"].read().decode()
    tampered = re.sub(r"leaf_value=(-?[0-9.]+)", lambda m: f"leaf_value={float(m.group(1)) + 50}", text, count=1)
    assert tampered != text
    s3.put_object(Bucket=WORK_BUCKET, Key=key, Body=tampered.encode())
    with pytest.raises(ValueError, match=rf"s3://{WORK_BUCKET}/{re.escape(key)} does not match its digest"):
        service.active_model(cfg)


# ============================================================================ 5. batch scoring on aws
def test_risk_score_batch_writes_findings_to_s3(athena: AthenaStandIn, lake: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml.operators.risk import RiskScoreBatchOperator
    from seclake_ml.risk.batch import score_objects
    from seclake_ml.risk.engine import RiskModel
    from seclake_ml.scoring.findings_parquet import read_findings
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.stores import LocalStore, S3Store

    risk = {"finding_min_risk": 35}
    cfg, loc = aws_cfg(risk=risk), local_cfg(lake, tmp_path / "work", risk)
    athena.lake_cfg = loc
    keys = lake_keys(lake, "20240307")
    upload(lake, keys)
    account = keys[0].split("accountId=")[1].split("/")[0]
    s3 = client("s3")
    work = S3Store(s3, WORK)
    batch_id = "b-risk-aws-1"
    work.put_json(Ledger.manifest_key(batch_id), {"batch_id": batch_id, "origin": "lake",
                                                  "objects": [{"key": k, "bucket": LAKE_BUCKET} for k in keys]})
    for name in [k for k in os.environ if k.startswith("SECLAKE_ML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps(cfg.to_dict()))

    # the expected findings: the same objects scored on the local lake
    ref = score_objects(loc, keys, RiskModel.unsupervised(service.settings_of(loc)),
                        sink=LocalStore(tmp_path / "ref_findings"))
    assert ref.findings > 0, "lower finding_min_risk: no event reaches it"

    out = RiskScoreBatchOperator(task_id="risk_score_batch", batch={"batch_id": batch_id}).execute({})

    assert out["objects"] == 2 and out["skipped_done"] == 0 and out["quarantined"] == []
    assert out["model_version"] == "unsupervised" and out["findings"] == ref.findings > 0
    assert out["events"] == ref.events
    prefix = f"ext/risk-cloudtrail/region=us-east-1/accountId={account}/eventDay=20240307/"
    found = keys_under(LAKE_BUCKET, "ext/")
    assert found and all(k.startswith(prefix) and k.endswith(".parquet") for k in found)
    assert sorted(out["files"]) == [f"s3://{LAKE_BUCKET}/{k}" for k in found]
    assert [k for k in found] == sorted(str(Path(f).relative_to(tmp_path / "ref_findings")) for f in ref.files)
    rows = 0
    uids: list[str] = []
    for k in found:
        t = pq.read_table(io.BytesIO(s3.get_object(Bucket=LAKE_BUCKET, Key=k)["Body"].read()))
        assert set(t.column("class_uid").to_pylist()) == {2004}
        rows += t.num_rows
        uids += [r["metadata"]["uid"] for r in read_findings(
            s3.get_object(Bucket=LAKE_BUCKET, Key=k)["Body"].read())]
    assert rows == out["findings"] == len(set(uids))
    ref_uids = [r["metadata"]["uid"] for r in read_findings([Path(f) for f in ref.files])]
    assert sorted(uids) == sorted(ref_uids)
    # the history came from one UNLOAD of [day - lookback, day + 1)
    assert len(athena.queries) == 1
    assert f"TO '{WORK}/risk/events/interval=20240305T000000Z_20240308T000000Z/run=" in athena.queries[0]
    progress = json.loads(work.get_bytes(f"scoring/batches/{batch_id}/risk.json"))
    assert set(progress["done"]) == set(keys) and sum(progress["done"].values()) == out["findings"]

    # a retried task skips the objects it has done: nothing new written, no query
    again = RiskScoreBatchOperator(task_id="risk_score_batch", batch={"batch_id": batch_id}).execute({})
    assert again["skipped_done"] == 2 and again["objects"] == 0 and again["findings"] == 0
    assert keys_under(LAKE_BUCKET, "ext/") == found and len(athena.queries) == 1

    # re-scoring the objects replaces their files: the same keys, the same findings, no duplicates
    res = score_objects(cfg, keys, RiskModel.unsupervised(service.settings_of(cfg)), sink=S3Store(s3, f"s3://{LAKE_BUCKET}"))
    assert sorted(res.files) == sorted(out["files"]) and res.findings == out["findings"]
    assert keys_under(LAKE_BUCKET, "ext/") == found
    again_uids = [r["metadata"]["uid"] for k in found for r in read_findings(
        s3.get_object(Bucket=LAKE_BUCKET, Key=k)["Body"].read())]
    assert sorted(again_uids) == sorted(uids)
