"""The ``ipcheck`` Lambda (include/lambda/ipcheck) against a moto server, plus its SAM template and image.

A tiny sample lake is generated and a small IP Insights model is trained on its first day; objects of
the second day are put in a moto bucket and announced with SQS-shaped Lambda events (JSON string
bodies, as SQS delivers them). The endpoint's answers are the trained model's own answers to the
exact request bodies the function sends: a botocore hook on the function's ``sagemaker-runtime``
client computes them with :class:`IPInsightsScorer` and queues them through moto's control API
(``/moto-api/static/sagemaker/endpoint-results``) just before each request, so the findings are real
and do not depend on the order in which pairs come out of DuckDB.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
LAMBDA_DIR = REPO / "include" / "lambda" / "ipcheck"

_spec = importlib.util.spec_from_file_location("ipcheck_app", LAMBDA_DIR / "app.py")
app = importlib.util.module_from_spec(_spec)
sys.modules["ipcheck_app"] = app
_spec.loader.exec_module(app)

REGION = "us-east-1"
ACCOUNT = "123456789012"
LAKE_BUCKET = "aws-security-data-lake-us-east-1-abc"
WORK_BUCKET = "example-work"
WORK = f"s3://{WORK_BUCKET}/ipinsights"
ENDPOINT = "seclake-ml-ipinsights"
PARAMETER = f"/seclake-ml/ipinsights/{ENDPOINT}/active"
TOPIC = "seclake-ml-findings"
SEED = 5
TRAIN_DAY = date(2024, 3, 4)
SCORE_DAY = "20240305"
SCALE = dict(sources=("vpc_flow",), flows_per_day=3000, instances_per_vpc=4, anomalies_per_kind=3, workers=1)
HP = dict(num_entity_vectors=200, vector_dim=16, epochs=2, mini_batch_size=500, learning_rate=0.01,
          random_negative_sampling_rate=3)
N_FLAGGED = 12  # distinct pairs above the threshold over the three scored objects
# Modules the function must not need at run time (the image ships without them).
NOT_IN_IMAGE = ("pandas", "torch", "airflow", "awswrangler", "sagemaker")


# ------------------------------------------------------------------------------ site (once per module)
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Lake, model trained on day 1, profile, and the expected flags of three day-2 objects."""
    import duckdb
    import numpy as np

    from seclake_ml.config import SeclakeConfig
    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.ipinsights.trainer import IPInsights
    from seclake_lakegen.generate import generate_lake
    from seclake_ml.extraction import extract_pairs
    from seclake_ml.scoring.profile import build_profile

    root = tmp_path_factory.mktemp("ipcheck")
    lake = root / "lake"
    generate_lake(lake, TRAIN_DAY, 2, SEED, **SCALE)
    cfg = SeclakeConfig(lake_root=str(lake), work_location=str(root / "work"), sources=("vpc_flow:instance_peer",))
    day1 = datetime(2024, 3, 4, tzinfo=timezone.utc)
    day2 = datetime(2024, 3, 5, tzinfo=timezone.utc)
    train = root / "train.parquet"
    extract_pairs(cfg, "vpc_flow", "instance_peer", day1, day2, str(train))
    model_dir = root / "model"
    IPInsights(HP, seed=1, num_threads=1).fit(str(train)).save(model_dir)
    build_profile([str(train)], str(model_dir / "profile.parquet"))
    scorer = IPInsightsScorer.load(model_dir)

    keys = sorted(p.relative_to(lake).as_posix() for p in lake.rglob(f"eventDay={SCORE_DAY}/*.parquet"))
    keys = [keys[0], keys[len(keys) // 2], keys[-1]]  # three objects, different accounts and regions
    assert len(set(keys)) == 3
    # Expected pairs per object, through the extraction layer (not the engine's chunk reader).
    per_object: dict[str, list[tuple[str, str]]] = {}
    for i, key in enumerate(keys):
        one = root / f"one-{i}"
        (one / key).parent.mkdir(parents=True)
        (one / key).write_bytes((lake / key).read_bytes())
        out = root / f"pairs-{i}.parquet"
        extract_pairs(SeclakeConfig(lake_root=str(one), work_location=str(root / "work"),
                                    sources=("vpc_flow:instance_peer",)), "vpc_flow", "instance_peer", day2,
                      datetime(2024, 3, 6, tzinfo=timezone.utc), str(out))
        per_object[key] = duckdb.execute("SELECT DISTINCT entity, ip FROM read_parquet($p)", {"p": str(out)}).fetchall()
        assert per_object[key]
    scores = {key: -scorer.dot_product([e for e, _ in pairs], [ip for _, ip in pairs])
              for key, pairs in per_object.items()}
    ranked = np.sort(np.concatenate(list(scores.values())))[::-1]
    assert ranked[N_FLAGGED - 1] > ranked[N_FLAGGED]
    threshold = float((ranked[N_FLAGGED - 1] + ranked[N_FLAGGED]) / 2)
    # one severity band per (top margin / 1.5): the strongest finding is High (margin/scale 1.5)
    scale = float((ranked[0] - threshold) / 1.5)
    expected = {key: {pair for pair, s in zip(per_object[key], scores[key]) if s > threshold} for key in keys}
    assert sum(map(len, expected.values())) == N_FLAGGED
    entities = {key: {e for e, _ in pairs} for key, pairs in per_object.items()}
    assert not entities[keys[0]] & entities[keys[1]]
    return {"lake": lake, "keys": keys, "model_dir": model_dir, "scorer": scorer, "threshold": threshold,
            "scale": scale, "expected": expected, "entities": entities}


# ------------------------------------------------------------------------------ AWS state (per test)
class Ctx:
    """The Lambda context object: only what the handler reads."""

    def __init__(self, remaining_ms: int = 300_000) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = "seclake-ml-ipcheck"
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


class Env:
    """Clients and helpers over the moto state of one test."""

    def __init__(self, moto: Any, site: dict[str, Any]) -> None:
        import boto3

        self.moto = moto
        self.site = site
        self.s3 = boto3.client("s3", region_name=REGION)
        self.ssm = boto3.client("ssm", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.endpoint_calls: list[bytes] = []
        self.refuse: set[str] = set()  # requests with pairs of these entities fail with a ModelError
        self._queued: set[bytes] = set()

    # -- setup
    def put_object(self, key: str, data: bytes | None = None) -> None:
        body = (self.site["lake"] / key).read_bytes() if data is None else data
        self.s3.put_object(Bucket=LAKE_BUCKET, Key=key, Body=body)

    def put_active(self, version: str = "ipinsights-20240304-a", **extra: Any) -> None:
        record = {"version": version, "threshold": self.site["threshold"], "endpoint_name": ENDPOINT,
                  "endpoint_config_name": f"{ENDPOINT}-{version}", "model_name": f"seclake-ml-{version}",
                  "profile_uri": f"{WORK}/models/{version}/profile.parquet", **extra}
        self.ssm.put_parameter(Name=PARAMETER, Value=json.dumps(record), Type="String", Overwrite=True)

    def answer_endpoint(self) -> None:
        """Queue the model's answer to each new request body just before it is sent."""
        runtime = app.client("sagemaker-runtime", REGION)

        def hook(params: dict[str, Any], **_: Any) -> None:
            body = params["Body"] if isinstance(params["Body"], bytes) else params["Body"].encode()
            self.endpoint_calls.append(body)
            if {line.split(",", 1)[0] for line in body.decode().splitlines()} & self.refuse:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "ModelError", "Message": "container failed"},
                                   "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
            if body in self._queued:
                return
            self._queued.add(body)
            payload, ctype = self.site["scorer"].handle_request(body, "text/csv", "application/json")
            requests.post(f"{self.moto.endpoint}/moto-api/static/sagemaker/endpoint-results", timeout=10,
                          json={"account_id": ACCOUNT, "region": REGION,
                                "results": [{"Body": payload.decode(), "ContentType": ctype}]}).raise_for_status()

        runtime.meta.events.register("before-parameter-build.sagemaker-runtime.InvokeEndpoint", hook)

    # -- reading back
    def findings_objects(self) -> dict[str, tuple[str, str]]:
        """findings key -> (ETag, LastModified)."""
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE_BUCKET, Prefix="ext/"):
            for item in page.get("Contents", []):
                out[item["Key"]] = (item["ETag"], str(item["LastModified"]))
        return out

    def findings(self) -> list[dict[str, Any]]:
        from seclake_ml.scoring.findings_parquet import read_findings

        blobs = [self.s3.get_object(Bucket=LAKE_BUCKET, Key=k)["Body"].read() for k in sorted(self.findings_objects())]
        return read_findings(blobs) if blobs else []

    def ledger(self) -> dict[str, dict[str, Any]]:
        """object key -> ledger entry."""
        out = {}
        resp = self.s3.list_objects_v2(Bucket=WORK_BUCKET, Prefix="ipinsights/scoring/ledger/")
        for item in resp.get("Contents", []):
            doc = json.loads(self.s3.get_object(Bucket=WORK_BUCKET, Key=item["Key"])["Body"].read())
            out[doc["key"]] = doc
        return out

    def alerts(self) -> list[dict[str, Any]]:
        """Messages that reached the SNS topic (through its SQS subscription), drained."""
        out = []
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.alerts_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(json.loads(m["Body"])["Message"]))
                self.sqs.delete_message(QueueUrl=self.alerts_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def env(aws_env: Any, site: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(aws_env, site)
    e.s3.create_bucket(Bucket=LAKE_BUCKET)
    e.s3.create_bucket(Bucket=WORK_BUCKET)
    profile = (site["model_dir"] / "profile.parquet").read_bytes()
    for version in ("ipinsights-20240304-a", "ipinsights-20240304-b"):
        e.s3.put_object(Bucket=WORK_BUCKET, Key=f"ipinsights/models/{version}/profile.parquet", Body=profile)
    topic_arn = e.sns.create_topic(Name=TOPIC)["TopicArn"]
    e.alerts_url = e.sqs.create_queue(QueueName="finding-alerts")["QueueUrl"]
    queue_arn = e.sqs.get_queue_attributes(QueueUrl=e.alerts_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    e.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    for name, value in {
        "LAKE_BUCKET": LAKE_BUCKET, "SOURCES": "vpc_flow:instance_peer,cloudtrail_signin:principal_ip",
        "SOURCE_VERSION": "1", "REGION": REGION, "SSM_ACTIVE_PARAMETER": PARAMETER, "ENDPOINT_NAME": ENDPOINT,
        "WORK_LOCATION": WORK, "SNS_TOPIC_ARN": topic_arn, "PUBLISH_MIN_SEVERITY": "4",
        "SEVERITY_SCALE": repr(site["scale"]), "CHUNK_ROWS": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FINDINGS_LOCATION", raising=False)
    app.reset_caches()
    e.answer_endpoint()
    yield e
    app.reset_caches()


# ------------------------------------------------------------------------------ events
def eventbridge_body(key: str, bucket: str = LAKE_BUCKET, size: int = 1) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": ACCOUNT, "time": "2024-03-05T01:00:00Z", "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": size, "etag": "b57f9512698f4b09e608f4f2a65852e5"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "securitylake.amazonaws.com"},
    }


def s3_notification_body(key: str, bucket: str = LAKE_BUCKET) -> dict[str, Any]:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventTime": "2024-03-05T01:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "0123456789abcdef0123456789abcdef"}},
    }]}


def record(message_id: str, body: Any) -> dict[str, Any]:
    """A Lambda SQS event record; ``body`` is serialised to the JSON string SQS delivers unless told otherwise."""
    return {
        "messageId": message_id, "receiptHandle": f"AQEB{message_id}", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1709600400000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1709600400001"},
        "messageAttributes": {}, "md5OfBody": "0" * 32, "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:SecurityLake_{REGION}_MAIN_QUEUE_1_0", "awsRegion": REGION,
    }


def as_string(body: dict[str, Any]) -> str:
    return json.dumps(body)


def invoke(event: dict[str, Any], capsys: pytest.CaptureFixture[str], block_heavy: pytest.MonkeyPatch | None = None,
           ctx: Ctx | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the handler; returns its response and its one summary line."""
    capsys.readouterr()
    if block_heavy is not None:
        for name in NOT_IN_IMAGE:
            block_heavy.setitem(sys.modules, name, None)
    try:
        response = app.lambda_handler(event, ctx or Ctx())
    finally:
        if block_heavy is not None:
            block_heavy.undo()
    lines = [line for line in capsys.readouterr().out.splitlines() if app.SUMMARY_TAG in line]
    assert len(lines) == 1, lines
    return response, json.loads(lines[0])


def failures(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


# ------------------------------------------------------------------------------ behaviour
def test_string_and_dict_bodies_become_valid_findings_alerts_and_ledger_entries(
    env: Env, site: dict[str, Any], reference_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from seclake_ml.scoring.findings_parquet import custom_source_name
    from seclake_ml.scoring.ocsf_validate import load_ocsf_schema, validate_finding
    from seclake_ml.scoring.stores import object_stem

    a, b, c = site["keys"]
    for key in site["keys"]:
        env.put_object(key)
    env.put_active()
    event = {"Records": [
        record("m-eventbridge", as_string(eventbridge_body(a))),        # JSON string body (what SQS delivers)
        record("m-s3", as_string(s3_notification_body(b))),               # S3 notification, URL-encoded key
        record("m-dict", eventbridge_body(c)),                            # decoded dict body (the seed's test events)
        record("m-poison", "{not json"),                                  # poison: dropped, never retried
        record("m-test", as_string({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": LAKE_BUCKET})),
    ]}
    response, summary = invoke(event, capsys, block_heavy=pytest.MonkeyPatch())

    assert response == {"batchItemFailures": []}
    assert summary["messages"] == 5 and summary["messages_failed"] == 0
    assert summary["objects"] == {"scored": 3, "quarantined": 0, "failed": 0, "not_started": 0}
    assert summary["rejected"] == 1 and summary["ignored"] == 1
    assert summary["findings"] == N_FLAGGED and summary["model_version"] == "ipinsights-20240304-a"
    assert summary["rows"] > summary["distinct_pairs"] > 0 and set(summary["dropped"]) >= {"null", "ipv6"}
    assert {"parse", "ledger_check", "model", "read_extract", "score", "write", "publish", "total"} <= set(summary["seconds"])
    assert summary["endpoint_requests"] == len(env.endpoint_calls) > 0
    text = json.dumps(summary)
    assert "testing" not in text and "AQEB" not in text  # no credentials, no receipt handles

    # findings: real, valid OCSF 2004, in the custom-source layout, one file per object
    schema = load_ocsf_schema(reference_dir / "ocsf-1.1.0-schema.json")
    keys = env.findings_objects()
    layout = re.compile(rf"ext/{custom_source_name('vpc_flow')}/region=[a-z0-9-]+/accountId=\d{{12}}/eventDay=\d{{8}}/"
                        r"obj-[0-9a-f]{32}\.parquet")
    assert keys and all(layout.fullmatch(k) for k in keys), sorted(keys)
    assert {k.rsplit("/", 1)[1] for k in keys} <= {f"{object_stem(f's3://{LAKE_BUCKET}/{k}')}.parquet" for k in site["keys"]}
    records = env.findings()
    assert len(records) == N_FLAGGED
    for rec in records:
        assert validate_finding(rec, schema) == [], rec["finding_info"]["uid"]
        assert rec["unmapped"]["backend"] == "aws" and rec["unmapped"]["endpoint_name"] == ENDPOINT
        assert float(rec["unmapped"]["score"]) > site["threshold"]
    found = {(r["unmapped"]["scope"], r["unmapped"]["entity"], r["unmapped"]["ip"]) for r in records}
    assert found == {(f"s3://{LAKE_BUCKET}/{k}", e, ip) for k, pairs in site["expected"].items() for e, ip in pairs}
    uids = [r["finding_info"]["uid"] for r in records]
    assert len(set(uids)) == len(uids)
    evidence = [r["evidences"][0]["data"] for r in records]
    evidence = [json.loads(d) if isinstance(d, str) else d for d in evidence]
    assert all(d["model_version"] == "ipinsights-20240304-a" and d["explanation"].get("text") for d in evidence)
    explained = [d for d in evidence if d["explanation"].get("entity_known")]
    assert explained, "the training profile explains findings of known entities"

    # severe findings reached the topic, the others did not
    severe = {r["finding_info"]["uid"] for r in records if r["severity_id"] >= 4}
    assert severe and len(severe) < len(records)
    alerts = env.alerts()
    assert {a["uid"] for a in alerts} == severe and len(alerts) == len(severe) == summary["published"]

    # the ledger holds the three objects, with their findings files
    ledger = env.ledger()
    assert set(ledger) == set(site["keys"])
    for key, entry in ledger.items():
        assert entry["status"] == "scored" and entry["model_version"] == "ipinsights-20240304-a"
        assert entry["batch_id"].startswith("lambda-")
        assert {f.split(f"s3://{LAKE_BUCKET}/", 1)[1] for f in entry["files"]} <= set(keys)
    assert sum(e["findings"] for e in ledger.values()) == N_FLAGGED

    # the same event again (a duplicate delivery): nothing new anywhere
    calls = len(env.endpoint_calls)
    response2, summary2 = invoke(event, capsys)
    assert response2 == {"batchItemFailures": []}
    assert summary2["objects_already_done"] == 3 and summary2["findings"] == 0
    assert env.findings_objects() == keys
    assert sorted(r["finding_info"]["uid"] for r in env.findings()) == sorted(uids)
    assert env.alerts() == [] and len(env.endpoint_calls) == calls
    assert {k: v["marked_at"] for k, v in env.ledger().items()} == {k: v["marked_at"] for k, v in ledger.items()}


def test_transient_failure_fails_only_its_message(env: Env, site: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b, _ = site["keys"]
    env.put_object(a)
    env.put_object(b)
    env.put_active()
    env.refuse = set(site["entities"][b])  # the endpoint fails b's requests
    event = {"Records": [record("m-a", as_string(eventbridge_body(a))), record("m-b", as_string(eventbridge_body(b)))]}
    response, summary = invoke(event, capsys)
    assert failures(response) == ["m-b"]
    assert summary["objects"]["scored"] == 1 and summary["objects"]["failed"] == 1
    assert summary["messages_failed"] == 1
    assert summary["failures"][0]["uri"].endswith(b) and "ModelError" in summary["failures"][0]["reason"]
    assert set(env.ledger()) == {a}
    scopes = {r["unmapped"]["scope"] for r in env.findings()}
    assert scopes == {f"s3://{LAKE_BUCKET}/{a}"} and len(env.findings()) == len(site["expected"][a])

    # SQS redelivers m-b alone; the endpoint has recovered: b is scored, a is not scored again
    env.refuse = set()
    calls = len(env.endpoint_calls)
    response, summary = invoke({"Records": [record("m-b", as_string(eventbridge_body(b)))]}, capsys)
    assert failures(response) == [] and summary["objects"]["scored"] == 1
    assert all(not ({ln.split(",", 1)[0] for ln in body.decode().splitlines()} & site["entities"][a])
               for body in env.endpoint_calls[calls:])
    assert set(env.ledger()) == {a, b}
    assert len(env.findings()) == len(site["expected"][a]) + len(site["expected"][b])


def test_missing_or_unreadable_objects_are_quarantined_not_retried(env: Env, site: dict[str, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = site["keys"]
    env.put_object(a, b"PAR1 this is not parquet")
    env.put_object(b)  # c is announced but does not exist (deleted by the lake's retention, say)
    env.put_active()
    event = {"Records": [record("m-a", as_string(eventbridge_body(a))), record("m-b", as_string(s3_notification_body(b))),
                         record("m-c", as_string(eventbridge_body(c)))]}
    response, summary = invoke(event, capsys)
    assert failures(response) == []
    assert summary["objects"] == {"scored": 1, "quarantined": 2, "failed": 0, "not_started": 0}
    ledger = env.ledger()
    assert ledger[a]["status"] == "quarantined" and "Parquet" in ledger[a]["reason"]
    assert ledger[c]["status"] == "quarantined" and "does not exist" in ledger[c]["reason"]
    assert ledger[b]["status"] == "scored"
    assert {r["unmapped"]["scope"] for r in env.findings()} == {f"s3://{LAKE_BUCKET}/{b}"}


def test_missing_active_parameter_fails_every_message_until_a_model_is_active(
    env: Env, site: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, c = site["keys"]
    for key in site["keys"]:
        env.put_object(key)
    event = {"Records": [record("m-a", as_string(eventbridge_body(a))), record("m-b", as_string(s3_notification_body(b))),
                         record("m-c", eventbridge_body(c))]}
    response, summary = invoke(event, capsys)
    assert failures(response) == ["m-a", "m-b", "m-c"]
    assert "does not exist" in summary["error"] and summary["messages_failed"] == 3
    assert env.ledger() == {} and env.findings_objects() == {} and env.endpoint_calls == []

    env.put_active()  # failures are not cached: the retry finds the model at once
    response, summary = invoke(event, capsys)
    assert failures(response) == [] and summary["objects"]["scored"] == 3


def test_active_record_for_another_endpoint_is_refused(env: Env, site: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    a = site["keys"][0]
    env.put_object(a)
    env.put_active(endpoint_name="someone-elses-endpoint")
    response, summary = invoke({"Records": [record("m-a", as_string(eventbridge_body(a)))]}, capsys)
    assert failures(response) == ["m-a"] and "ENDPOINT_NAME" in summary["error"]
    assert env.endpoint_calls == []


def test_poison_and_test_events_need_no_model_and_are_not_retried(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    event = {"Records": [
        record("m-poison", "{not json"),
        record("m-array", "[1, 2]"),
        record("m-other-bucket", as_string(eventbridge_body(
            "aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240305/x.gz.parquet", bucket="other-bucket"))),
        record("m-bad-key", as_string(eventbridge_body("aws/VPC_FLOW/1.0/../../etc/passwd.parquet"))),
        record("m-test", as_string({"Event": "s3:TestEvent"})),
        record("m-other-source", as_string(eventbridge_body(
            "aws/ROUTE53/1.0/region=us-east-1/accountId=123456789012/eventDay=20240305/x.gz.parquet"))),
        record("m-v2", as_string(eventbridge_body(
            "aws/VPC_FLOW/2.0/region=us-east-1/accountId=123456789012/eventDay=20240305/v2.gz.parquet"))),
    ]}
    response, summary = invoke(event, capsys)  # no SSM parameter exists: not needed
    assert failures(response) == []
    assert summary["rejected"] == 4 and summary["ignored"] == 3 and "error" not in summary
    assert env.ledger() == {} and env.findings_objects() == {}
    # acknowledged, but on record: the rejected ones and the object of another source version
    listed = env.s3.list_objects_v2(Bucket=WORK_BUCKET, Prefix="ipinsights/scoring/rejected/")["Contents"]
    assert [f"s3://{WORK_BUCKET}/{o['Key']}" for o in listed] == [summary["rejected_record"]]
    doc = json.loads(env.s3.get_object(Bucket=WORK_BUCKET, Key=listed[0]["Key"])["Body"].read())
    assert len(doc["rejected"]) == 4 and [r["message_id"] for r in doc["ignored"]] == ["m-test", "m-other-source", "m-v2"]


def test_objects_scored_by_the_dag_are_skipped(env: Env, site: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from seclake_ml.scoring.lake_object import parse_lake_key
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.stores import S3Store

    a, b, _ = site["keys"]
    env.put_object(a)
    env.put_object(b)
    env.put_active()
    dag_ledger = Ledger(S3Store(env.s3, WORK))  # what the scoring DAG's ScoreBatchOperator writes
    dag_ledger.mark(parse_lake_key(a, bucket=LAKE_BUCKET), status="scored", batch_id="sqs-0123", model_version="v0")
    event = {"Records": [record("m-a", as_string(eventbridge_body(a))), record("m-b", as_string(eventbridge_body(b)))]}
    response, summary = invoke(event, capsys)
    assert failures(response) == []
    assert summary["objects_already_done"] == 1 and summary["objects"]["scored"] == 1
    ledger = env.ledger()
    assert ledger[a]["batch_id"] == "sqs-0123" and ledger[b]["batch_id"].startswith("lambda-")
    assert {r["unmapped"]["scope"] for r in env.findings()} == {f"s3://{LAKE_BUCKET}/{b}"}


def test_new_active_model_is_picked_up_after_the_cache_ttl(env: Env, site: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = site["keys"]
    for key in site["keys"]:
        env.put_object(key)
    env.put_active("ipinsights-20240304-a")
    assert failures(invoke({"Records": [record("m-a", as_string(eventbridge_body(a)))]}, capsys)[0]) == []
    env.put_active("ipinsights-20240304-b")
    invoke({"Records": [record("m-b", as_string(eventbridge_body(b)))]}, capsys)  # within the TTL: cached record
    monkeypatch.setenv("ACTIVE_TTL_SECONDS", "0")
    invoke({"Records": [record("m-c", as_string(eventbridge_body(c)))]}, capsys)
    versions = {k: v["model_version"] for k, v in env.ledger().items()}
    assert versions == {a: "ipinsights-20240304-a", b: "ipinsights-20240304-a", c: "ipinsights-20240304-b"}


def test_no_time_left_leaves_objects_for_a_retry(env: Env, site: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    a = site["keys"][0]
    env.put_object(a)
    env.put_active()
    response, summary = invoke({"Records": [record("m-a", as_string(eventbridge_body(a)))]}, capsys,
                               ctx=Ctx(remaining_ms=10_000))
    assert failures(response) == ["m-a"] and summary["objects"]["not_started"] == 1
    assert env.ledger() == {}


class _DeadlineAfterFirstObject(Ctx):
    """Plenty of time until the first object is marked in the ledger, then less than the margin."""

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env

    def get_remaining_time_in_millis(self) -> int:
        return 10_000 if self.env.ledger() else 300_000


def test_the_deadline_stops_a_batch_between_objects_while_the_next_are_read_ahead(
        env: Env, site: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = site["keys"]
    for key in site["keys"]:
        env.put_object(key)
    env.put_active()
    event = {"Records": [record(f"m-{k}", as_string(eventbridge_body(key))) for k, key in zip("abc", (a, b, c))]}
    started = time.time()
    response, summary = invoke(event, capsys, ctx=_DeadlineAfterFirstObject(env))
    assert summary["objects"] == {"scored": 1, "quarantined": 0, "failed": 0, "not_started": 2}
    assert failures(response) == ["m-b", "m-c"]  # redelivered; the scored one is not
    assert list(env.ledger()) == [a]
    assert {r["unmapped"]["scope"] for r in env.findings()} <= {f"s3://{LAKE_BUCKET}/{a}"}
    leftovers = [p.name for p in Path(tempfile.gettempdir()).glob("seclake-*")
                 if p.name.startswith(("seclake-score-", "seclake-object-")) and p.stat().st_mtime >= started]
    assert leftovers == []  # the engine's spill folder and the downloads read ahead are gone


def test_misconfiguration_fails_every_message(env: Env, site: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORK_LOCATION", "/tmp/not-s3")
    event = {"Records": [record("m-a", as_string(eventbridge_body(site["keys"][0]))), record("m-p", "{")]}
    response, summary = invoke(event, capsys)
    assert failures(response) == ["m-a", "m-p"] and "WORK_LOCATION" in summary["error"]


def test_settings_defaults_and_errors() -> None:
    base = {"LAKE_BUCKET": LAKE_BUCKET, "WORK_LOCATION": WORK, "SSM_ACTIVE_PARAMETER": PARAMETER, "AWS_REGION": "eu-west-1"}
    s = app.load_settings(base)
    assert s.cfg.sources == ("vpc_flow:instance_peer", "cloudtrail_signin:principal_ip")
    assert s.cfg.region == "eu-west-1" and s.cfg.source_version == 1
    assert s.findings_location == f"s3://{LAKE_BUCKET}" and s.topic_arn is None
    assert (s.publish_min_severity, s.chunk_rows, s.active_ttl) == (4, app.DEFAULT_CHUNK_ROWS, app.DEFAULT_TTL_SECONDS)
    for name, value in [("SOURCES", "vpc_flow:nope"), ("SOURCE_VERSION", "3"), ("CHUNK_ROWS", "ten"),
                        ("PUBLISH_MIN_SEVERITY", "9"), ("FINDINGS_LOCATION", "s3://Bad_Bucket"),
                        ("SNS_TOPIC_ARN", "topic"), ("ENDPOINT_NAME", "bad name")]:
        with pytest.raises(app.SettingsError, match=name):
            app.load_settings({**base, name: value})
    for missing in ("LAKE_BUCKET", "WORK_LOCATION", "SSM_ACTIVE_PARAMETER"):
        with pytest.raises(app.SettingsError, match=missing):
            app.load_settings({k: v for k, v in base.items() if k != missing})


# ------------------------------------------------------------------------------ the image's file layout
_IMAGE_SMOKE = r"""
import importlib.abc, json, os, sys, urllib.request, uuid
task, model_dir, key, blocked = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4].split(","))

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, NotInImage())
sys.path.insert(0, task)
import app
from seclake_ml.ipinsights.scorer import IPInsightsScorer
assert app.__file__.startswith(task), app.__file__
scorer = IPInsightsScorer.load(model_dir)

def hook(params, **_):
    payload, ctype = scorer.handle_request(params["Body"], "text/csv", "application/json")
    body = json.dumps({"results": [{"Body": payload.decode(), "ContentType": ctype}]}).encode()
    urllib.request.urlopen(urllib.request.Request(os.environ["AWS_ENDPOINT_URL"]
                           + "/moto-api/static/sagemaker/endpoint-results", data=body, method="POST")).read()

app.client("sagemaker-runtime", os.environ["REGION"]).meta.events.register(
    "before-parameter-build.sagemaker-runtime.InvokeEndpoint", hook)
detail = {"bucket": {"name": os.environ["LAKE_BUCKET"]}, "object": {"key": key, "size": 1}}
event = {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": json.dumps({"detail": detail})}]}

class Ctx:
    aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self):
        return 300000

print("RESULT " + json.dumps(app.lambda_handler(event, Ctx())))
print("SEclake " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "seclake_ml" and
                                     not (sys.modules[m].__file__ or "").startswith(task))))
"""


def _image_layout(root: Path) -> Path:
    """``/opt/src`` of the Dockerfile's build stage, rebuilt from its ``COPY`` lines under ``root``."""
    import shutil

    task = root / "task"
    copies = re.findall(r"^COPY (\S+) /opt/src(/\S*)?$", (LAMBDA_DIR / "Dockerfile").read_text(), flags=re.M)
    assert copies
    for src, dst in copies:
        target = task / dst.lstrip("/") if dst else task
        source = REPO / src
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return task


def test_image_layout_scores_with_only_the_image_packages(env: Env, site: dict[str, Any], tmp_path: Path) -> None:
    """The files the Dockerfile copies are all the handler needs (no repository paths, no pandas/torch/Airflow)."""
    import subprocess

    a = site["keys"][0]
    env.put_object(a)
    env.put_active()
    task = _image_layout(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _IMAGE_SMOKE, str(task), str(site["model_dir"]), a, ",".join(NOT_IN_IMAGE)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"},
    )
    out = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
           if line.startswith(("RESULT ", "SEclake "))}
    assert proc.returncode == 0 and "RESULT" in out, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert out["RESULT"] == {"batchItemFailures": []}, proc.stdout[-3000:]
    assert out["SEclake"] == []  # every package module came from the image layout
    assert env.ledger()[a]["status"] == "scored"
    assert len(env.findings()) == len(site["expected"][a])


# ------------------------------------------------------------------------------ SAM template and image
class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...) as plain data."""


def _cfn_tag(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template() -> dict[str, Any]:
    return yaml.load((LAMBDA_DIR / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for res in template["Resources"].values():
        if res["Type"] == "AWS::IAM::Role":
            for pol in res["Properties"].get("Policies", []):
                out += pol["PolicyDocument"]["Statement"]
        if res["Type"] == "AWS::Serverless::Function":
            for pol in res["Properties"].get("Policies", []) or []:
                out += pol.get("Statement", []) if isinstance(pol, dict) else []
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def env_default(props: dict[str, Any], name: str) -> Any:
    return props["Environment"]["Variables"].get(name)


def test_template_function_settings() -> None:
    t = load_template()
    assert t["Transform"] == "AWS::Serverless-2016-10-31"
    fns = {k: v for k, v in t["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert len(fns) == 1
    (fn,) = fns.values()
    props, meta = fn["Properties"], fn["Metadata"]
    assert props["PackageType"] == "Image" and "Handler" not in props and "Runtime" not in props
    assert meta["Dockerfile"] == "include/lambda/ipcheck/Dockerfile" and meta["DockerContext"] == "../../.."
    assert (LAMBDA_DIR / meta["DockerContext"] / meta["Dockerfile"]).resolve() == (LAMBDA_DIR / "Dockerfile").resolve()
    assert meta["DockerTag"]
    assert props["MemorySize"] >= 1024
    assert props["Timeout"] == {"Ref": "FunctionTimeout"} and 60 <= t["Parameters"]["FunctionTimeout"]["Default"] <= 900
    assert props["EphemeralStorage"]["Size"] >= 1024
    # reserved concurrency, when asked for, equals the SQS poller's maximum (never below it)
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "MaximumConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert t["Parameters"]["ChunkRows"]["MaxValue"] == 5_000_000  # what app.py accepts
    assert t["Parameters"]["ReadAhead"]["MaxValue"] == 16 and env_default(props, "READ_AHEAD") == {"Ref": "ReadAhead"}
    assert "Policies" not in props and "Role" in props  # own role: SAM adds no broad managed policies
    (sqs,) = [e["Properties"] for e in props["Events"].values() if e["Type"] == "SQS"]
    assert sqs["BatchSize"] == 10 and sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["Queue"] == {"Ref": "SubscriberQueueArn"}
    env = props["Environment"]["Variables"]
    documented = set(re.findall(r"^``([A-Z_]+)``", app.__doc__, flags=re.M))
    assert set(env) <= documented, set(env) - documented
    assert {"LAKE_BUCKET", "SOURCES", "SOURCE_VERSION", "REGION", "SSM_ACTIVE_PARAMETER", "FINDINGS_LOCATION",
            "WORK_LOCATION", "SNS_TOPIC_ARN", "PUBLISH_MIN_SEVERITY", "CHUNK_ROWS", "ENDPOINT_NAME"} <= set(env)
    params = set(t["Parameters"])
    assert {"SubscriberQueueArn", "LakeBucket", "FindingsBucket", "WorkBucket", "WorkPrefix", "ActiveParameterName",
            "FindingsTopicArn", "EndpointName", "ReserveConcurrency"} <= params
    readme = (LAMBDA_DIR / "README.md").read_text()
    assert "sam build" in readme and "sam deploy" in readme and "maxReceiveCount" in readme


def test_template_policy_is_least_privilege_and_matches_the_iam_document() -> None:
    t = load_template()
    statements = _statements(t)
    assert statements
    actions: set[str] = set()
    for s in statements:
        assert s["Effect"] == "Allow"
        for action in _as_list(s["Action"]):
            assert action != "*" and "*" not in action and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action
            actions.add(action)
        for resource in _as_list(s["Resource"]):
            assert resource != "*", s
            assert not (isinstance(resource, str) and resource.startswith("arn:aws:")), "use ${AWS::Partition}"
    assert not any(a.startswith(("s3:Delete", "iam:", "sagemaker:Create", "ssm:Put")) for a in actions)
    doc = json.loads((REPO / "include" / "iam" / "lambda-ipcheck-policy.json").read_text())
    doc_actions = {a for s in doc["Statement"] for a in _as_list(s["Action"])}
    assert actions == doc_actions

    def grant(action: str) -> list[Any]:
        return [r for s in statements if action in _as_list(s["Action"]) for r in _as_list(s["Resource"])]

    text = json.dumps
    assert len(grant("sagemaker:InvokeEndpoint")) == 1 and "endpoint/${EndpointName}" in text(grant("sagemaker:InvokeEndpoint"))
    assert len(grant("ssm:GetParameter")) == 1 and "parameter${ActiveParameterName}" in text(grant("ssm:GetParameter"))
    lake_reads = text(grant("s3:GetObject"))
    for prefix in ("aws/VPC_FLOW/*", "aws/ROUTE53/*", "aws/CLOUD_TRAIL_MGMT/*", "aws/S3_DATA/*", "aws/LAMBDA_EXECUTION/*"):
        assert f"${{LakeBucket}}/{prefix}" in lake_reads
    assert "ext/ipinsights-*" in text(grant("s3:PutObject"))
    listing = [s for s in statements if "s3:ListBucket" in _as_list(s["Action"])]
    assert len(listing) == 2 and all("s3:prefix" in text(s["Condition"]) for s in listing)
    assert {text(s["Resource"]) for s in listing} == {
        text({"Fn::Sub": "arn:${AWS::Partition}:s3:::${LakeBucket}"}),
        text({"Fn::Sub": "arn:${AWS::Partition}:s3:::${WorkBucket}"})}
    assert grant("sqs:ReceiveMessage") == [{"Ref": "SubscriberQueueArn"}]
    assert grant("sns:Publish") == [{"Ref": "FindingsTopicArn"}]


def test_dockerfile_pins_the_lock_and_ships_no_pandas() -> None:
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (REPO / "requirements-dev.lock").read_text(), flags=re.M))
    lock = {k.lower(): v for k, v in lock.items()}
    docker = "\n".join(line for line in (LAMBDA_DIR / "Dockerfile").read_text().splitlines()
                       if not line.lstrip().startswith("#"))
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12\b", docker, flags=re.M) or \
        "ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.12" in docker
    pins = {k.lower(): v for k, v in re.findall(r"\b([a-z][a-z0-9_-]*)==([0-9][^\s\\]*)", docker)}
    assert pins == {"duckdb": lock["duckdb"], "pyarrow": lock["pyarrow"], "numpy": lock["numpy"]}
    assert "pandas" not in pins and "awswrangler" not in docker
    assert "COPY plugins/seclake_ml" in docker and "include/lambda/ipcheck/app.py" in docker
    # the views' SQL templates travel inside the package (package data), no separate copy
    assert "include/sql" not in docker and (REPO / "plugins" / "seclake_ml" / "sql" / "duckdb").is_dir()
    assert re.search(r"^COPY --from=build /opt/src \$\{LAMBDA_TASK_ROOT\}$", docker, flags=re.M)
    assert re.search(r'^CMD \["app\.lambda_handler"\]', docker, flags=re.M)


def test_template_passes_cfn_lint() -> None:
    """cfn-lint (installed with moto) checks the SAM template against the CloudFormation specs."""
    import subprocess

    exe = Path(sys.executable).with_name("cfn-lint")
    assert exe.exists(), "cfn-lint comes with moto's dependencies in requirements-dev.lock"
    proc = subprocess.run([str(exe), "--format", "parseable", str(LAMBDA_DIR / "template.yaml")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_endpoint_client_sends_each_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore must not retry invoke_endpoint under EndpointScorer's own retries (their product
    would outlast the function timeout): one HTTP request per call, even on throttling."""
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    monkeypatch.setattr(app, "_CLIENTS", {})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    runtime = app.client("sagemaker-runtime", "us-east-1")
    sent: list[str] = []

    def throttled(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        return AWSResponse(request.url, 429, {"x-amzn-ErrorType": "ThrottlingException:"},
                           _Raw(b'{"message": "slow down"}'))

    runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", throttled)
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="ep", Body=b"i-1,10.0.0.1\n", ContentType="text/csv")
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(sent) == 1


def test_allow_listed_pair_is_suppressed_not_published(env: Env, site: dict[str, Any], reference_dir: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An allow-list entry in WORK_LOCATION suppresses its finding (written, not published); cached per TTL."""
    from seclake_ml.feedback.allowlist import AllowList, new_entry
    from seclake_ml.scoring.ocsf_validate import load_ocsf_schema, validate_finding
    from seclake_ml.scoring.stores import S3Store

    a, b, c = site["keys"]
    for key in site["keys"]:
        env.put_object(key)
    env.put_active()
    # the strongest pair over the three objects: its finding is High, so it would be published
    scored = [(float(-site["scorer"].dot_product([e], [ip])[0]), key, e, ip)
              for key, pairs in site["expected"].items() for e, ip in sorted(pairs)]
    _, top_key, entity, ip = max(scored)
    allow = AllowList(S3Store(env.s3, WORK))
    entry = new_entry("pair", entity=entity, cidr=ip, reason="<i>red team</i> box", created_by="ana")
    assert allow.add(entry).stored
    event = {"Records": [record(f"m-{i}", as_string(eventbridge_body(k))) for i, k in enumerate(site["keys"])]}
    response, summary = invoke(event, capsys)
    assert failures(response) == [] and summary["objects"]["scored"] == 3
    assert summary["allowlist"] == {"entries": 1, "unreadable": 0}
    assert summary["findings"] == N_FLAGGED and summary["suppressed"] == 1
    records = env.findings()
    [muted] = [r for r in records if r["status_id"] == 3]
    assert (muted["unmapped"]["entity"], muted["unmapped"]["ip"]) == (entity, ip)
    assert muted["status"] == "Suppressed" and muted["unmapped"]["allowlist_entry_id"] == entry.entry_id
    assert muted["unmapped"]["allowlist_reason"] == "<i>red team</i> box" and muted["severity_id"] >= 4
    assert validate_finding(muted, load_ocsf_schema(reference_dir / "ocsf-1.1.0-schema.json")) == []
    alerts = env.alerts()
    severe = {r["finding_info"]["uid"] for r in records if r["severity_id"] >= 4 and r["status_id"] == 1}
    assert {x["uid"] for x in alerts} == severe and muted["finding_info"]["uid"] not in severe
    assert summary["published"] == len(severe)
    # the list is cached per container: a removal shows after ACTIVE_TTL_SECONDS
    allow.remove(entry.entry_id, by="bob", reason="exercise over")
    matcher, info = app.allowlist_matcher(app.load_settings(), env.s3)
    assert info["entries"] == 1 and matcher.match([entity], [ip]) == [entry]
    monkeypatch.setenv("ACTIVE_TTL_SECONDS", "0")
    matcher, info = app.allowlist_matcher(app.load_settings(), env.s3)
    assert info["entries"] == 0 and matcher.match([entity], [ip]) == [None]
