"""Athena backend of ``extract_pairs`` against a moto server on loopback.

moto does not execute SQL, so these tests check what was *sent*: every query is read back from the
server (``ListQueryExecutions`` + ``GetQueryExecution``) and its text, workgroup, database and result
location are asserted. The counts come from canned results queued on the server. moto binds queued
results to executions in the order they are started; the backend starts the UNLOAD first, so each
test queues an empty result for it, then the counts.

moto never fails a query by itself (its executions only go QUEUED -> RUNNING -> SUCCEEDED, and
StopQueryExecution makes them CANCELLED). The FAILED path is covered by setting the state of the
server's execution object directly (the server runs in this process); CANCELLED goes through the real
StopQueryExecution call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from datetime import datetime, timezone

import boto3
import pytest

from seclake_ml.config import SeclakeConfig
from seclake_ml.lake.athena import AthenaLake, AthenaQueryError
from seclake_ml.extraction import extract_pairs
from seclake_ml.pairs import SPECIAL_ADDRESS_REASONS
from seclake_ml.sqlsafe import UnsafeSqlError

from .moto_server import DEFAULT_REGION, MotoServer, athena_result

BUCKET = "seclake-work"
WORK = f"s3://{BUCKET}/ml"
WORKGROUP = "seclake"
GLUE_DB = "amazon_security_lake_glue_db_us_east_1"
VPC_V1_TABLE = f'"{GLUE_DB}"."amazon_security_lake_table_us_east_1_vpc_flow_1_0"'
VPC_V2_TABLE = f'"{GLUE_DB}"."amazon_security_lake_table_us_east_1_vpc_flow_2_0"'
R53_V1_TABLE = f'"{GLUE_DB}"."amazon_security_lake_table_us_east_1_route53_1_0"'
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
END = datetime(2026, 1, 7, tzinfo=timezone.utc)
OUT_V1 = f"{WORK}/pairs/vpc_flow/instance_peer/interval=20260105T000000Z_20260107T000000Z/"
COUNT_COLUMNS = ("reason", "row_count", "distinct_pairs")
# ok 10 rows holding 7 distinct pairs; 11 rows dropped
COUNTS = [("dash", 1, 1), ("hostile", 1, 1), ("ipv6", 3, 1), ("not_ip", 4, 1), ("null", 2, 1), ("ok", 10, 7)]
HOSTILE_SOURCE = "vpc_flow; DROP TABLE x"


def make_cfg(**overrides) -> SeclakeConfig:
    base = dict(
        backend="aws",
        region="us-east-1",
        athena_workgroup=WORKGROUP,
        source_version=1,
        sources=("vpc_flow:instance_peer",),
        accounts=("111122223333",),
        regions=("us-east-1",),
        work_location=WORK,
    )
    base.update(overrides)
    return SeclakeConfig(**base)


def client(service: str):
    return boto3.client(service, region_name=DEFAULT_REGION)


@pytest.fixture
def lake(aws_env: MotoServer) -> MotoServer:
    """Work bucket, workgroup, immediate Athena executions; an earlier output under the destination."""
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=OUT_V1[len(f"s3://{BUCKET}/"):] + "20260101_old_part-0.parquet", Body=b"old")
    # a sibling window whose name starts like the destination: must survive the clean-up
    s3.put_object(Bucket=BUCKET, Key="ml/pairs/vpc_flow/instance_peer/interval=20260105T000000Z_20260107T000000Z_x/keep", Body=b"k")
    client("athena").create_work_group(Name=WORKGROUP, Configuration={})
    aws_env.athena_immediate()
    return aws_env


def queue_counts(server: MotoServer, counts=COUNTS) -> None:
    server.queue_athena_results([{"rows": [], "column_info": []}, athena_result(COUNT_COLUMNS, counts)])


def sent_queries() -> list[dict]:
    """Every query execution the server received, oldest first."""
    athena = client("athena")
    ids = athena.list_query_executions()["QueryExecutionIds"]
    return [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]


def keys(prefix: str = "") -> list[str]:
    resp = client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


@contextlib.contextmanager
def captured_log(name: str):
    """Messages logged to ``name`` (Airflow's logging setup bypasses pytest's caplog)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger(name), Collect(level=logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def one(seq):
    assert len(seq) == 1, seq
    return seq[0]


# --------------------------------------------------------------------------------------------- v1
def test_v1_unload_and_counts_are_sent_as_rendered(lake: MotoServer) -> None:
    queue_counts(lake)
    with captured_log("seclake_ml.lake.athena") as messages:
        res = extract_pairs(make_cfg(), "vpc_flow", "instance_peer", START, END, OUT_V1)

    queries = sent_queries()
    assert len(queries) == 2
    unload = one([q for q in queries if q["Query"].startswith("UNLOAD (")])
    counts = one([q for q in queries if q["Query"].startswith("SELECT")])
    for q in (unload, counts):
        sql = q["Query"]
        assert q["WorkGroup"] == WORKGROUP
        assert q["QueryExecutionContext"] == {"Database": GLUE_DB, "Catalog": "AwsDataCatalog"}
        assert q["ResultConfiguration"]["OutputLocation"].startswith(f"{WORK}/athena_results/")
        assert f"FROM {VPC_V1_TABLE} AS t" in sql
        # partition pruning on eventday (last day = the day before the exclusive end), then exact ms
        assert "t.eventday BETWEEN '20260105' AND '20260106'" in sql
        assert "t.time >= 1767571200000 AND t.time < 1767744000000" in sql
        assert "time_dt" not in sql
        assert "t.accountid IN ('111122223333')" in sql
        assert "t.region IN ('us-east-1')" in sql
        # the view's direction-aware expressions, columns qualified with the table alias
        assert "WHEN t.connection_info.direction_id = 1 THEN t.dst_endpoint.instance_uid" in sql
        assert "date_add('millisecond', t.time, TIMESTAMP '1970-01-01 00:00:00.000') AS event_time" in sql
        assert "'vpc_flow' AS source" in sql
        assert "WHEN strpos(ip, ':') > 0 THEN 'ipv6'" in sql
        assert "UNNEST" not in sql
        assert not sql.lstrip().startswith("--")

    u = unload["Query"]
    assert f"TO '{OUT_V1}'" in u
    assert "WITH (format = 'PARQUET', compression = 'ZSTD')" in u
    assert "SELECT entity, ip, event_time, source, account, region\n" in u
    assert "WHERE reason = 'ok'" in u
    assert "1 AS pair_rank" in u  # dedupe off
    assert "row_number()" not in u
    assert "GROUP BY reason" in counts["Query"]

    # counts parsed from the canned result
    assert res.backend == "aws"
    assert res.rows_read == 21
    assert res.dropped == {"null": 2, "dash": 1, "hostile": 1, "ipv6": 3, "not_ip": 4,
                           **dict.fromkeys(SPECIAL_ADDRESS_REASONS, 0)}
    assert res.pairs_written == 10
    assert res.duplicates_removed == 0
    assert res.output == OUT_V1
    assert (res.source, res.view, res.source_version) == ("vpc_flow", "instance_peer", 1)
    assert res.start == "2026-01-05T00:00:00+00:00" and res.end == "2026-01-07T00:00:00+00:00"

    # the earlier output under the destination was deleted before the UNLOAD; the sibling was not
    assert keys("ml/pairs/") == ["ml/pairs/vpc_flow/instance_peer/interval=20260105T000000Z_20260107T000000Z_x/keep"]
    assert res.summary_line() in messages


def test_out_without_trailing_slash_is_normalised(lake: MotoServer) -> None:
    queue_counts(lake)
    res = AthenaLake(make_cfg(), poll_seconds=0).extract("vpc_flow", "instance_peer", START, END, OUT_V1.rstrip("/"))
    assert res.output == OUT_V1
    unload = one([q for q in sent_queries() if q["Query"].startswith("UNLOAD")])
    assert f"TO '{OUT_V1}'" in unload["Query"]
    assert keys(OUT_V1[len(f"s3://{BUCKET}/"):]) == []


# --------------------------------------------------------------------------------------------- v2
def test_v2_filters_on_time_dt_and_dedupes(lake: MotoServer) -> None:
    queue_counts(lake)
    cfg = make_cfg(source_version=2, accounts=(), regions=(), dedupe=True)
    out = f"{WORK}/pairs/vpc_flow/instance_peer/v2/"
    start, end = datetime(2026, 1, 5, tzinfo=timezone.utc), datetime(2026, 1, 5, 6, tzinfo=timezone.utc)

    res = extract_pairs(cfg, "vpc_flow", "instance_peer", start, end, out)

    unload = one([q for q in sent_queries() if q["Query"].startswith("UNLOAD")])["Query"]
    assert f"FROM {VPC_V2_TABLE} AS t" in unload
    assert "t.time_dt >= TIMESTAMP '2026-01-05 00:00:00.000' AND t.time_dt < TIMESTAMP '2026-01-05 06:00:00.000'" in unload
    assert "eventday" not in unload
    assert "CAST(t.time_dt AS timestamp(3)) AS event_time" in unload
    assert "accountid IN" not in unload and "region IN" not in unload
    assert "row_number() OVER (PARTITION BY entity, ip ORDER BY event_time, account, region) AS pair_rank" in unload
    assert f"TO '{out}'" in unload
    # dedupe: the distinct pairs of the ok rows are what the UNLOAD writes
    assert res.rows_read == 21
    assert res.pairs_written == 7
    assert res.duplicates_removed == 3
    assert res.output == out


# ---------------------------------------------------------------------------------------- unnest
def test_route53_unnest_view(lake: MotoServer) -> None:
    queue_counts(lake, [("not_ip", 2, 1), ("ok", 5, 5)])
    cfg = make_cfg(sources=("route53:instance_resolved_ip",))
    out = f"{WORK}/pairs/route53/instance_resolved_ip/w/"

    res = extract_pairs(cfg, "route53", "instance_resolved_ip", START, END, out)

    for q in sent_queries():
        sql = q["Query"]
        assert f"FROM {R53_V1_TABLE} AS t" in sql
        assert f"FROM {R53_V1_TABLE} AS t\n    CROSS JOIN UNNEST(t.answers) AS u(ans)" in sql
        assert "(ans.type = 'A')" in sql
        assert "CAST(ans.rdata AS VARCHAR) AS ip" in sql
        assert "CAST(coalesce(t.src_endpoint.instance_uid, t.src_endpoint.ip) AS VARCHAR) AS entity" in sql
    assert res.rows_read == 7
    assert res.pairs_written == 5
    assert res.dropped["not_ip"] == 2


def test_cloudtrail_class_filter_is_rendered() -> None:
    """Rendering alone (no AWS): the shared CloudTrail table is filtered to console sign-ins."""
    cfg = make_cfg(sources=("cloudtrail_signin:principal_ip",), source_version=2)
    sql = AthenaLake(cfg).build_queries("cloudtrail_signin", "principal_ip", START, END, f"{WORK}/p/")["unload"]
    assert "amazon_security_lake_table_us_east_1_cloud_trail_mgmt_2_0" in sql
    assert "(t.class_uid = 3002 AND t.api.operation = 'ConsoleLogin')" in sql
    assert "coalesce(t.actor.user.uid, CASE WHEN t.actor.user.type = 'IAMUser'" in sql


@pytest.mark.parametrize("source,table", [("s3_data", "s3_data"), ("lambda_execution", "lambda_execution")])
@pytest.mark.parametrize("version", [1, 2])
def test_data_event_sources_query_their_own_tables(lake: MotoServer, source: str, table: str, version: int) -> None:
    """S3 and Lambda data events: their own Security Lake tables, the API Activity class of the version,
    the principal with fallbacks; sent to the moto server and counted like every other source."""
    queue_counts(lake, [("null", 1, 1), ("ok", 6, 4)])
    cfg = make_cfg(sources=(f"{source}:principal_ip",), source_version=version)
    out = f"{WORK}/pairs/{source}/principal_ip/w/"

    res = extract_pairs(cfg, source, "principal_ip", START, END, out)

    sent = sent_queries()
    assert sent
    for q in sent:
        sql = q["Query"]
        assert f'FROM "{GLUE_DB}"."amazon_security_lake_table_us_east_1_{table}_{version}_0" AS t' in sql
        assert f"(t.class_uid = {3005 if version == 1 else 6003})" in sql
        assert "CAST(t.src_endpoint.ip AS VARCHAR) AS ip" in sql
        assert ("t.actor.user.uuid" if version == 1 else "t.actor.user.uid") in sql
        assert "list_filter" not in sql  # the bucket context is a scoring-side (DuckDB) expression only
    assert res.rows_read == 7 and res.pairs_written == 6 and res.dropped["null"] == 1


# -------------------------------------------------------------------------------------- failures
def test_failed_unload_raises_with_query_id_and_cancels_counts(lake: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.athena.models import AthenaBackend

    original = AthenaBackend.start_query_execution

    def start_and_fail_unload(self, query, *args, **kwargs):
        exec_id = original(self, query, *args, **kwargs)
        if query.startswith("UNLOAD"):
            self.executions[exec_id].status = "FAILED"
        return exec_id

    monkeypatch.setattr(AthenaBackend, "start_query_execution", start_and_fail_unload)
    queue_counts(lake)

    with pytest.raises(AthenaQueryError) as info:
        AthenaLake(make_cfg(), poll_seconds=0).extract("vpc_flow", "instance_peer", START, END, OUT_V1)

    unload = one([q for q in sent_queries() if q["Query"].startswith("UNLOAD")])
    counts = one([q for q in sent_queries() if q["Query"].startswith("SELECT")])
    err = info.value
    assert (err.query_id, err.state, err.purpose) == (unload["QueryExecutionId"], "FAILED", "unload")
    assert f"Athena unload query {unload['QueryExecutionId']} ended in state FAILED" in str(err)
    assert "no state-change reason given" in str(err)  # moto reports no StateChangeReason
    assert counts["Status"]["State"] == "CANCELLED"  # the sibling query does not run on


def test_error_message_carries_state_change_reason() -> None:
    err = AthenaQueryError("q-1", "FAILED", "TABLE_NOT_FOUND: line 3:10: Table 'x' does not exist", "unload")
    assert str(err) == (
        "Athena unload query q-1 ended in state FAILED: TABLE_NOT_FOUND: line 3:10: Table 'x' does not exist"
    )


def test_cancelled_query_raises(lake: MotoServer) -> None:
    """A query cancelled from outside (here: StopQueryExecution while the backend polls) fails the run."""
    lake.athena_hold()
    queue_counts(lake)
    athena = client("athena")
    stopped: list[str] = []

    def cancel_unload() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for qid in athena.list_query_executions()["QueryExecutionIds"]:
                q = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
                if q["Query"].startswith("UNLOAD"):
                    athena.stop_query_execution(QueryExecutionId=qid)
                    stopped.append(qid)
                    return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_unload, daemon=True)
    canceller.start()
    with pytest.raises(AthenaQueryError) as info:
        AthenaLake(make_cfg(), poll_seconds=0.05, max_polls=400).extract(
            "vpc_flow", "instance_peer", START, END, OUT_V1
        )
    canceller.join(5)
    assert stopped and info.value.query_id == stopped[0]
    assert info.value.state == "CANCELLED"


def test_overdue_query_is_cancelled_and_raises(lake: MotoServer) -> None:
    lake.athena_hold()
    queue_counts(lake)

    with pytest.raises(AthenaQueryError, match="not finished after 3 status checks") as info:
        AthenaLake(make_cfg(), poll_seconds=0, max_polls=3).extract("vpc_flow", "instance_peer", START, END, OUT_V1)

    assert info.value.state == "QUEUED"
    states = {q["Query"].split(None, 1)[0]: q["Status"]["State"] for q in sent_queries()}
    assert states == {"UNLOAD": "CANCELLED", "SELECT": "CANCELLED"}


# ------------------------------------------------------------------------------ hostile input
def _hostile_cfg(**fields) -> SeclakeConfig:
    """A configuration whose fields were set after validation, to test the SQL layer's own checks."""
    cfg = make_cfg()
    for name, value in fields.items():
        object.__setattr__(cfg, name, value)
    return cfg


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: extract_pairs(make_cfg(), HOSTILE_SOURCE, "instance_peer", START, END, OUT_V1), ValueError),
        (lambda: AthenaLake(make_cfg()).extract(HOSTILE_SOURCE, "instance_peer", START, END, OUT_V1), ValueError),
        (lambda: AthenaLake(make_cfg()).extract("vpc_flow", "instance_peer' OR '1'='1", START, END, OUT_V1), ValueError),
        (lambda: AthenaLake(make_cfg()).extract(
            "vpc_flow", "instance_peer", START, END, f"{WORK}/pairs/x'); DROP TABLE t; --/"), ValueError),
        (lambda: AthenaLake(make_cfg()).extract("vpc_flow", "instance_peer", START, END, "s3://other-bucket/p/"), ValueError),
        (lambda: AthenaLake(make_cfg()).extract("vpc_flow", "instance_peer", START, END, WORK), ValueError),
        (lambda: AthenaLake(make_cfg()).extract("vpc_flow", "instance_peer", START, END, f"{WORK}/athena_results/x/"), ValueError),
        (lambda: AthenaLake(make_cfg()).extract("vpc_flow", "instance_peer", END, START, OUT_V1), ValueError),
        (lambda: AthenaLake(_hostile_cfg(accounts=("1' OR '1'='1",))).extract(
            "vpc_flow", "instance_peer", START, END, OUT_V1), UnsafeSqlError),
        (lambda: AthenaLake(_hostile_cfg(regions=("us-east-1') OR TRUE --",))).extract(
            "vpc_flow", "instance_peer", START, END, OUT_V1), UnsafeSqlError),
        (lambda: AthenaLake(_hostile_cfg(glue_database='db"; DROP TABLE x; --')).extract(
            "vpc_flow", "instance_peer", START, END, OUT_V1), UnsafeSqlError),
    ],
    ids=["extract_pairs-source", "source", "view", "out-quote", "out-foreign-bucket", "out-work-root",
         "out-results-folder", "reversed-window", "account", "region", "glue-db"],
)
def test_hostile_input_never_reaches_aws(lake: MotoServer, call, error) -> None:
    before = keys()
    with pytest.raises(error):
        call()
    assert client("athena").list_query_executions()["QueryExecutionIds"] == []
    assert keys() == before  # nothing was deleted either


def test_hostile_config_is_rejected_by_config_validation() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(make_cfg(), accounts=("1' OR '1'='1",))


def test_constructor_validates_and_stays_offline() -> None:
    with pytest.raises(ValueError, match="poll_seconds"):
        AthenaLake(make_cfg(), poll_seconds=-1)
    with pytest.raises(ValueError, match="max_polls"):
        AthenaLake(make_cfg(), max_polls=0)
    lake = AthenaLake(make_cfg())
    assert "athena" not in vars(lake) and "s3" not in vars(lake)  # hooks are built on first use


def test_counts_with_an_unknown_reason_fail_clearly(lake: MotoServer) -> None:
    queue_counts(lake, [("ok", 3, 3), ("surprise", 1, 1)])
    with pytest.raises(AthenaQueryError, match="unexpected reason 'surprise'"):
        AthenaLake(make_cfg(), poll_seconds=0).extract("vpc_flow", "instance_peer", START, END, OUT_V1)



def test_classification_mirrors_the_duckdb_backend() -> None:
    """The reason CASE of both backends is the same, once DuckDB's regex functions are renamed.

    ``regexp_full_match`` becomes ``regexp_like``: the IPv4 pattern is anchored (``^…$``) already.
    Both are rendered from one template; the Athena one is what the UNLOAD and the counts embed.
    """
    from seclake_ml.pairs import reason_sql

    def case_block(sql: str) -> str:
        block = sql[sql.index("CASE"):sql.rindex("END")]
        return " ".join(block.split())

    duck = case_block(reason_sql("duckdb"))
    duck = duck.replace("regexp_full_match(", "regexp_like(").replace("regexp_matches(", "regexp_like(")
    assert case_block(reason_sql("athena")) == duck
    athena = AthenaLake(make_cfg()).build_queries("vpc_flow", "instance_peer", START, END, f"{WORK}/p/")
    assert all(case_block(reason_sql("athena")) in " ".join(q.split()) for q in athena.values())
