"""Scoring on the aws backend, end to end against the moto server.

Security Lake objects sit in a moto S3 "lake" bucket; the subscriber queue is a moto SQS queue fed
with EventBridge- and S3-shaped messages; the active model is an SSM registry record; severe
findings go to an SNS topic that an SQS queue subscribes to (the test reads that queue); the
endpoint is moto's ``sagemaker-runtime``. The first test runs the whole
``seclake_ipinsights_scoring`` DAG with ``dag.test()`` in a child process (the deferrable sensor's
``SqsSensorTrigger`` runs inline there, through aiobotocore); the others drive the operators'
``execute``/``execute_complete`` in this process and run the trigger with ``asyncio`` against the
same server, to step through redeliveries, crashes and retries.

What moto cannot do, and what stands in for it (the first two inside the server; nothing in the
package is patched):

* **The endpoint computes nothing.** moto answers ``InvokeEndpoint`` with results queued through its
  control API (``POST /moto-api/static/sagemaker/endpoint-results``): a request whose body (and
  ``Accept``) it has not seen takes the next queued result, a repeated request gets its earlier
  result again. Where the test builds the request bodies itself (the scorer's retry and payload
  tests) the answers are queued over that API in order. Where the engine builds them (everything
  that reads a lake object), the order of the distinct pairs in a request is DuckDB's
  ``GROUP BY`` order, which is not stable from run to run, so no answer can be queued ahead: the
  server's ``InvokeEndpoint`` handler is wrapped to compute the answer from the request it got, with
  the package's NumPy scorer (``IPInsightsScorer.handle_request``, the SageMaker container's CSV/JSON
  contract) of a model trained here on the generated lake's first day, put it on moto's result queue
  (what the control API does) and let moto answer. Expected findings come from the same model
  over the pairs the engine's own reader extracts (:func:`predict`), and every test checks that the
  requests the server got carried exactly those pairs.
* **Endpoint errors** (throttling, model errors) cannot be configured in moto: a wrapper around the
  server's ``InvokeEndpoint`` handler answers with the AWS error shape when a test asks for it.
* **A worker crash** between the hand-off and ``DeleteMessageBatch`` is a botocore ``before-call``
  hook, registered on the SQS client that the provider's ``SqsHook`` gives the sensor, that raises
  when the delete is about to be sent (the boundary between the package and AWS).

In the ``dag.test()`` child the sensor's ``wait_time_seconds`` (10 s long polls) and
``num_batches`` (5 polls per wake-up) are lowered to 1 s and 1 poll: moto long-polls an empty
queue for the full wait, as SQS does.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from tests.airflow_env import AirflowRuntime

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer
from .test_training_operators_aws import no_poll_delay  # noqa: F401  (fixture)

LAKE_BUCKET = "aws-security-data-lake-us-east-1-seclaketest"
WORK_BUCKET = "seclake-work"
WORK = f"s3://{WORK_BUCKET}/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
ENDPOINT = "seclake-ml-ipinsights"
SSM_ACTIVE = f"/seclake-ml/ipinsights/{ENDPOINT}/active"
VERSION = "ipinsights-20240304T0000Z-20240305T0000Z"
TRAIN_DAY, SCORE_DAY, NEXT_DAY = "20240304", "20240305", "20240306"
SOURCES = ["vpc_flow:instance_peer"]
FINDINGS_PREFIX = "ext/ipinsights-vpc-flow/"
MAX_PAYLOAD = 5_000_000
# A real Security Lake VPC flow object (one record), filed under a valid key of the scored day.
REFERENCE_KEY = (f"aws/VPC_FLOW/1.0/region=us-east-1/accountId={DEFAULT_ACCOUNT}/eventDay={SCORE_DAY}/"
                 "vpc_flow_example0.gz.parquet")
# Announced, well-formed, but never written (or gone): must be quarantined, not retried forever.
MISSING_KEY = (f"aws/VPC_FLOW/1.0/region=us-east-1/accountId={DEFAULT_ACCOUNT}/eventDay={SCORE_DAY}/"
               "gone-0000.gz.parquet")


def client(service: str) -> Any:
    """A test-side client of the moto server (cached: making one loads its service model)."""
    return _client(service, os.environ["AWS_ENDPOINT_URL"])


@functools.lru_cache(maxsize=None)
def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, region_name=DEFAULT_REGION, endpoint_url=endpoint)


# ----------------------------------------------------------------------------- the trained site
@dataclass
class Site:
    """A generated lake (3 days, 2 accounts, VPC flow), a model trained on day 1 and its profile."""

    lake: Path
    model_dir: Path
    scorer: Any
    threshold: float
    profile: Path
    train_pairs: Path
    entities: set[str]
    keys: dict[str, list[str]]  # eventDay -> lake keys, sorted
    reference: Path

    def path(self, key: str) -> Path:
        return self.reference if key == REFERENCE_KEY else self.lake / key


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Site:
    import duckdb

    from seclake_ml.config import SeclakeConfig
    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.ipinsights.trainer import IPInsights
    from seclake_lakegen.generate import generate_lake
    from seclake_ml.extraction import extract_pairs
    from seclake_ml.scoring.profile import build_profile

    root = tmp_path_factory.mktemp("scoring_aws")
    lake = root / "lake"
    generate_lake(lake, date(2024, 3, 4), 3, 11, sources=("vpc_flow",), flows_per_day=2500, instances_per_vpc=4,
                  accounts=2, regions=("us-east-1",), workers=1)
    cfg = SeclakeConfig(lake_root=str(lake), work_location=str(root / "work"), sources=tuple(SOURCES))
    train = root / "train_pairs.parquet"
    extract_pairs(cfg, "vpc_flow", "instance_peer", datetime(2024, 3, 4, tzinfo=timezone.utc),
                  datetime(2024, 3, 5, tzinfo=timezone.utc), str(train))
    model_dir = root / "model"
    hp = dict(num_entity_vectors=200, vector_dim=16, epochs=4, mini_batch_size=200, learning_rate=0.01,
              random_negative_sampling_rate=5)
    IPInsights(hp, seed=1, num_threads=1).fit(str(train)).save(
        model_dir, training_interval={"start": "2024-03-04T00:00:00Z", "end": "2024-03-05T00:00:00Z"})
    build_profile([str(train)], str(root / "profile.parquet"))
    scorer = IPInsightsScorer.load(model_dir)
    pairs = duckdb.execute(f"SELECT DISTINCT entity, ip FROM read_parquet('{train}')").fetchall()
    dots = scorer.dot_product([e for e, _ in pairs], [i for _, i in pairs])
    threshold = round(float(np.nanquantile(-dots, 0.99)), 4)  # 1 % of the training pairs are above it
    keys: dict[str, list[str]] = {}
    for p in sorted((lake / "aws").rglob("*.parquet")):
        key = p.relative_to(lake).as_posix()
        keys.setdefault(key.split("eventDay=")[1][:8], []).append(key)
    assert [len(keys[d]) for d in (TRAIN_DAY, SCORE_DAY, NEXT_DAY)] == [2, 2, 2]
    return Site(lake=lake, model_dir=model_dir, scorer=scorer, threshold=threshold, profile=root / "profile.parquet",
                train_pairs=train, entities={e for e, _ in pairs}, keys=keys,
                reference=reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet")


# ----------------------------------------------------------------------------- predicted endpoint traffic
@dataclass
class Request:
    """One ``InvokeEndpoint`` of the scorer: its body, the model's answer, and the pairs with their scores."""

    key: str
    body: bytes
    answer: bytes
    entities: list[str]
    ips: list[str]
    dots: np.ndarray


def predict(site: Site, keys: list[str], *, bucket: str = LAKE_BUCKET) -> dict[str, list[Request]]:
    """Per lake key, the requests the aws scorer sends for it: the engine's own reader and CSV batching.

    The pairs of each request are exact; their order within a request is DuckDB's ``GROUP BY`` order
    and may differ from the engine's (compare with :func:`lines`).
    """
    import duckdb

    from seclake_ml.scoring.engine import views_for
    from seclake_ml.scoring.lake_object import parse_lake_key
    from seclake_ml.scoring.objects import iter_view_chunks, open_parquet
    from seclake_ml.scoring.scorers import csv_batches

    out: dict[str, list[Request]] = {}
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    try:
        for key in keys:
            obj = parse_lake_key(key, bucket=bucket)
            reqs = out.setdefault(key, [])
            pf = open_parquet(str(site.path(key)))
            for source, view in views_for(obj, [tuple(s.split(":")) for s in SOURCES]):
                for chunk in iter_view_chunks(con, pf, obj, source, view):
                    for start, stop, body in csv_batches(chunk.entity, chunk.ip, MAX_PAYLOAD, 50_000):
                        answer, _ = site.scorer.handle_request(body, "text/csv", "application/json")
                        ents, ips = chunk.entity[start:stop], chunk.ip[start:stop]
                        # what the scorer reads back: the JSON numbers (float32 printed shortest)
                        dots = np.array([p["dot_product"] for p in json.loads(answer)["predictions"]], np.float64)
                        assert np.allclose(dots, site.scorer.dot_product(ents, ips), rtol=1e-6)
                        reqs.append(Request(key, body, answer, ents, ips, dots))
    finally:
        con.close()
    return out


def flagged(site: Site, requests_: list[Request]) -> set[tuple[str, str]]:
    """The pairs an endpoint answering like the NumPy model flags (anomaly score above the threshold)."""
    return {(e, i) for r in requests_ for e, i, d in zip(r.entities, r.ips, r.dots) if -d > site.threshold}


# ----------------------------------------------------------------------------- the aws environment
def endpoint_error(code: str, status: int, message: str, **fields: Any) -> Exception:
    """An AWS error response of ``InvokeEndpoint`` (raised inside the moto server's handler)."""
    from moto.core.exceptions import JsonRESTError

    err = JsonRESTError(code, message)
    err.code = status
    err.description = json.dumps({"__type": code, "message": message, **fields})
    return err


@dataclass
class Env:
    server: MotoServer
    queue_url: str
    alerts_url: str
    topic_arn: str
    calls: list[dict[str, Any]] = field(default_factory=list)  # InvokeEndpoint requests the server got
    deletes: list[dict[str, Any]] = field(default_factory=list)  # DeleteMessageBatch calls the server got
    fault: Callable[[dict[str, Any]], Exception | None] | None = None  # error to answer a request with
    model: Any = None  # the stand-in endpoint's model (IPInsightsScorer); None: answers come from the queue

    # -- setup helpers
    def upload(self, site: Site, keys: list[str]) -> None:
        for key in keys:
            client("s3").upload_file(str(site.path(key)), LAKE_BUCKET, key)

    def queue_answers(self, reqs: list[Request]) -> None:
        """Queue the endpoint's answers in the order the requests will arrive (moto's control API)."""
        body = {"account_id": DEFAULT_ACCOUNT, "region": DEFAULT_REGION,
                "results": [{"Body": r.answer.decode(), "ContentType": "application/json"} for r in reqs]}
        resp = requests.post(f"{self.server.endpoint}/moto-api/static/sagemaker/endpoint-results",
                             data=json.dumps(body), timeout=10)
        resp.raise_for_status()

    def send(self, *bodies: str) -> None:
        for body in bodies:
            client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=body)

    # -- reading back
    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = client("sqs").get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def alerts(self) -> list[dict[str, Any]]:
        """The severe-finding notifications SNS delivered to the subscribed queue (removed from it)."""
        out = []
        while True:
            msgs = client("sqs").receive_message(QueueUrl=self.alerts_url, MaxNumberOfMessages=10,
                                                 WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                envelope = json.loads(m["Body"])
                out.append({"alert": json.loads(envelope["Message"]), "subject": envelope.get("Subject"),
                            "attributes": {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}})
                client("sqs").delete_message(QueueUrl=self.alerts_url, ReceiptHandle=m["ReceiptHandle"])

    def requests_for(self, reqs: list[Request]) -> int:
        """How many requests the server got that carried the pairs of one of ``reqs``."""
        wanted = {lines(r.body) for r in reqs}
        return sum(lines(c["body"]) in wanted for c in self.calls)


def lines(body: bytes) -> frozenset[bytes]:
    """The ``entity,ip`` lines of a request (their order is the engine's GROUP BY order)."""
    return frozenset(body.splitlines())


def keys_under(bucket: str, prefix: str) -> list[str]:
    pages = client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def objects_under(bucket: str, prefix: str) -> dict[str, tuple[str, datetime]]:
    pages = client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


def read_json(bucket: str, key: str) -> Any:
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def findings() -> list[dict[str, Any]]:
    from seclake_ml.scoring.findings_parquet import read_findings

    data = [client("s3").get_object(Bucket=LAKE_BUCKET, Key=k)["Body"].read()
            for k in keys_under(LAKE_BUCKET, FINDINGS_PREFIX)]
    return read_findings(data) if data else []


def uids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["finding_info"]["uid"] for r in records)


def pair_of(record: dict[str, Any]) -> tuple[str, str]:
    return record["unmapped"]["entity"], record["unmapped"]["ip"]


def md5_etag(key: str) -> str:
    """The ETag that :func:`eventbridge` announces for ``key``."""
    return hashlib.md5(key.encode()).hexdigest()


def eventbridge(key: str, *, bucket: str = LAKE_BUCKET, size: int = 1, event_id: str | None = None) -> str:
    """A Security Lake subscriber notification (EventBridge shape, as the reference sample)."""
    return json.dumps({
        "version": "0", "id": event_id or hashlib.md5(key.encode()).hexdigest(), "detail-type": "Object Created",
        "source": "aws.s3", "account": DEFAULT_ACCOUNT, "time": "2024-03-05T10:00:00Z", "region": DEFAULT_REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": size, "etag": md5_etag(key)},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "securitylake.amazonaws.com"},
    })


def s3_event(key: str, *, bucket: str = LAKE_BUCKET, size: int = 1) -> str:
    """An S3 event notification; S3 URL-encodes the key (``=`` as ``%3D``)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": DEFAULT_REGION,
        "eventTime": "2024-03-05T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote(key, safe="/"), "size": size, "eTag": "0" * 32}},
    }]})


def config(env: Env, **scoring: Any) -> dict[str, Any]:
    return {
        "backend": "aws", "region": DEFAULT_REGION, "lake_bucket": LAKE_BUCKET, "work_location": WORK,
        "sources": SOURCES,
        "extra": {
            "scoring": {"queue_url": env.queue_url, "sns_topic_arn": env.topic_arn, **scoring},
            "sagemaker": {"role_arn": ROLE, "resource_prefix": "seclake-ml"},
        },
    }


def activate(site: Site, *, profile_uri: str | None = f"{WORK}/models/{VERSION}/profile.parquet") -> dict[str, Any]:
    """The registry record a rollout writes (and the profile it points at)."""
    from seclake_ml.aws import registry
    from seclake_ml.config import SeclakeConfig

    if profile_uri:
        bucket, _, key = profile_uri[len("s3://"):].partition("/")
        client("s3").upload_file(str(site.profile), bucket, key)
    record = {"version": VERSION, "threshold": site.threshold, "endpoint_name": ENDPOINT,
              "endpoint_config_name": "seclake-ml-epc-0001", "model_name": "seclake-ml-model-0001",
              "model_data_url": f"{WORK}/sagemaker/training/job/output/model.tar.gz"}
    if profile_uri:
        record["profile_uri"] = profile_uri
    cfg = SeclakeConfig.from_mapping(json.loads(os.environ["SECLAKE_ML_CONFIG"]))
    return registry.record_active(cfg, record)["record"]


@pytest.fixture
def env(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Lake and work buckets, subscriber queue, SNS topic with a subscribed queue, server-side recorders."""
    from moto.s3.models import s3_backends
    from moto.sagemakerruntime.models import sagemakerruntime_backends
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.sqs.models import SQSBackend

    from seclake_ml import airflow_support

    s3, sqs, sns = client("s3"), client("sqs"), client("sns")
    s3.create_bucket(Bucket=LAKE_BUCKET)
    s3.create_bucket(Bucket=WORK_BUCKET)
    queue_url = sqs.create_queue(QueueName="seclake-subscriber")["QueueUrl"]
    alerts_url = sqs.create_queue(QueueName="seclake-severe-findings")["QueueUrl"]
    topic_arn = sns.create_topic(Name="seclake-ml-severe-findings")["TopicArn"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=alerts_arn)
    e = Env(aws_env, queue_url, alerts_url, topic_arn)

    invoke = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        body = self.body if isinstance(self.body, bytes) else str(self.body).encode()
        call = {"endpoint": self.path.split("/")[2], "content_type": self.headers.get("Content-Type"),
                "accept": self.headers.get("Accept"), "body": body}
        e.calls.append(call)
        fault = e.fault(call) if e.fault else None
        if fault is not None:
            call["answered"] = "error"
            raise fault
        if e.model is None:
            return invoke(self)
        answer, content_type = e.model.handle_request(body, call["content_type"], call["accept"])
        backend = sagemakerruntime_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]
        queued = len(backend.results_queue)
        backend.results_queue.append((answer.decode(), content_type, "AllTraffic", None))
        try:
            return invoke(self)
        finally:
            if len(backend.results_queue) > queued:  # a repeated request: moto answered from its cache
                backend.results_queue.pop()

    delete_batch = SQSBackend.delete_message_batch

    def delete_message_batch(self: Any, queue_name: str, receipts: list[dict[str, Any]]) -> Any:
        work = s3_backends[DEFAULT_ACCOUNT]["global"].get_bucket(WORK_BUCKET)
        e.deletes.append({"queue": queue_name, "entries": len(receipts),
                          "work_keys": sorted(k for k in work.keys.keys() if k.startswith("ml/scoring/"))})
        return delete_batch(self, queue_name, receipts)

    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    monkeypatch.setattr(SQSBackend, "delete_message_batch", delete_message_batch)
    for name in [k for k in os.environ if k.startswith("SECLAKE_ML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps(config(e)))
    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": None)
    yield e


def ledger() -> Any:
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.stores import S3Store

    return Ledger(S3Store(client("s3"), WORK))


def lake_uri(key: str) -> str:
    return f"s3://{LAKE_BUCKET}/{key}"


# ----------------------------------------------------------------------------- driving the sensor
def sensor(**kwargs: Any) -> Any:
    from seclake_ml.operators.scoring import NewLogBatchSensor

    kwargs = {"max_messages": 10, "num_batches": 1, "wait_time_seconds": 0, "visibility_timeout": 30,
              "poke_interval": 1, **kwargs}
    return NewLogBatchSensor(task_id="wait_for_new_batch", **kwargs)


def first_event(trigger: Any, timeout: float = 30) -> dict[str, Any]:
    """Run a trigger as the triggerer does, until its first event."""

    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout))


def sensor_run(op: Any) -> dict[str, Any] | None:
    """One sensor task run: ``execute``; when it defers, the trigger, then ``execute_complete``.

    Returns the hand-off summary, or ``None`` when the task deferred again (nothing new).
    """
    from airflow.sdk.exceptions import TaskDeferred

    try:
        return op.execute({})
    except TaskDeferred as deferred:
        assert deferred.method_name == "execute_complete"
        trigger = deferred.trigger
    assert type(trigger).__name__ == "SqsSensorTrigger" and trigger.delete_message_on_reception is False
    event = first_event(trigger)
    try:
        return op.execute_complete({}, event)
    except TaskDeferred as again:
        assert again.method_name == "execute_complete"
        return None


def score(batch: dict[str, Any]) -> dict[str, Any]:
    from seclake_ml.operators.scoring import ScoreBatchOperator

    return ScoreBatchOperator(task_id="score_batch", batch=batch).execute({})


# ============================================================================= 1. the whole DAG
DRIVER = textwrap.dedent(
    """
    import json
    import sys
    from datetime import datetime

    import importlib.util

    from airflow import settings
    from airflow.models.xcom import XComModel

    spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    sensor = dag.task_dict["wait_for_new_batch"]
    sensor.wait_time_seconds, sensor.num_batches = 1, 1  # moto long-polls an empty queue, as SQS does
    run = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]))
    with settings.Session() as session:
        tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        tries = {ti.task_id: ti.try_number for ti in run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)
        xcom = {f"{r.task_id}:{r.key}": XComModel.deserialize_value(r) for r in rows}
    print("DAG_TEST_RESULT " + json.dumps({"state": str(run.state), "tis": tis, "tries": tries, "xcom": xcom},
                                          default=str))
    """
)


def _child_env(runtime: AirflowRuntime, home: Path) -> dict[str, str]:
    return runtime.env(home, None, None, json.loads(os.environ["SECLAKE_ML_CONFIG"]), aws_connection=True)


@pytest.mark.e2e
def test_scoring_dag_turns_queue_messages_into_findings_and_alerts(
    env: Env, site: Site, tmp_path: Path, reference_dir: Path, record_property: Any, dag_runtime: AirflowRuntime,
) -> None:
    from seclake_ml.scoring.findings_parquet import custom_source_name
    from seclake_ml.scoring.ledger import Ledger, batch_id_for
    from seclake_ml.scoring.ocsf_validate import validate_finding
    from seclake_ml.scoring.profile import EntityProfile

    home = tmp_path / "airflow"
    t0 = time.perf_counter()
    proc = subprocess.run([dag_runtime.python, "-m", "airflow", "db", "migrate"], env=_child_env(dag_runtime, home),
                          cwd=dag_runtime.cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    migrate_s = time.perf_counter() - t0

    key_a, key_b = site.keys[SCORE_DAY]
    env.upload(site, [*site.keys[TRAIN_DAY], key_a, key_b, REFERENCE_KEY])  # day 1 is never announced
    activate(site)
    predicted = predict(site, [key_a, key_b, REFERENCE_KEY])
    reqs = [r for k in (key_a, key_b, REFERENCE_KEY) for r in predicted[k]]
    assert [len(predicted[k]) for k in (key_a, key_b, REFERENCE_KEY)] == [1, 1, 1]
    env.model = site.scorer
    expected = flagged(site, reqs)
    assert 6 <= len(expected) <= 20  # a handful of findings, from both generated objects

    env.send(
        eventbridge(key_a, size=site.path(key_a).stat().st_size),
        s3_event(key_b, size=site.path(key_b).stat().st_size),
        eventbridge(REFERENCE_KEY),
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": LAKE_BUCKET}),
        "{this is not JSON",
        eventbridge(MISSING_KEY),
    )

    driver = tmp_path / "run_dag.py"
    driver.write_text(DRIVER, encoding="utf-8")
    child_env = _child_env(dag_runtime, home)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [dag_runtime.python, str(driver), str(dag_runtime.dag_file(home, "seclake_ipinsights_scoring.py")),
         "2024-03-05T12:00:00+00:00"],
        env=child_env, cwd=dag_runtime.cwd, capture_output=True, text=True, timeout=300, check=False,
    )
    dag_s = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("DAG_TEST_RESULT ")]
    assert proc.returncode == 0 and found, f"dag.test() failed (rc={proc.returncode}):\n{output[-8000:]}"
    result = json.loads(found[-1][len("DAG_TEST_RESULT "):])
    assert result["state"] == "success", output[-8000:]
    # drift_check: too few pairs in this batch to judge drift, so no retraining is scheduled
    assert result["tis"] == {"wait_for_new_batch": "success", "score_batch": "success",
                             "risk_score_batch": "success", "drift_check": "skipped"}, output[-8000:]
    assert result["tries"] == {"wait_for_new_batch": 1, "score_batch": 1, "risk_score_batch": 1, "drift_check": 1}
    assert "[DAG TEST] running trigger in line" in output  # the SqsSensorTrigger ran (aiobotocore -> moto)

    uris = [lake_uri(k) for k in (key_a, key_b, REFERENCE_KEY, MISSING_KEY)]
    etags = [md5_etag(key_a), "0" * 32, md5_etag(REFERENCE_KEY), md5_etag(MISSING_KEY)]  # as announced
    bid = batch_id_for(uris, "sqs", etags)
    handed = result["xcom"]["wait_for_new_batch:return_value"]
    assert handed == {"batch_id": bid, "origin": "sqs", "objects": 4, "rejected": 1, "ignored": 1}

    # ---- the hand-off: manifest and pending marker were in S3 when the messages were deleted
    manifest_key = f"ml/{Ledger.manifest_key(bid)}"
    assert len(env.deletes) == 1
    assert env.deletes[0]["queue"] == "seclake-subscriber" and env.deletes[0]["entries"] == 6
    assert manifest_key in env.deletes[0]["work_keys"]
    assert f"ml/{Ledger.pending_key(bid)}" in env.deletes[0]["work_keys"]
    assert env.queue_counts() == (0, 0)
    manifest = read_json(WORK_BUCKET, manifest_key)
    assert [o["key"] for o in manifest["objects"]] == [key_a, key_b, REFERENCE_KEY, MISSING_KEY]
    assert {o["bucket"] for o in manifest["objects"]} == {LAKE_BUCKET}
    assert [r["reason"] for r in manifest["rejected"]] == ["malformed JSON body"]
    assert [r["reason"] for r in manifest["ignored"]] == ["s3:TestEvent"]
    assert manifest["model"]["version"] == VERSION and manifest["model"]["endpoint_name"] == ENDPOINT
    assert manifest["model"]["threshold"] == site.threshold and manifest["model"]["backend"] == "aws"

    # ---- the endpoint saw exactly the predicted text/csv requests, each under 5 MB
    assert [lines(c["body"]) for c in env.calls] == [lines(r.body) for r in reqs]
    assert sum(len(lines(c["body"])) for c in env.calls) == sum(c["body"].count(b"\n") for c in env.calls)
    assert {(c["endpoint"], c["content_type"], c["accept"]) for c in env.calls} == {
        (ENDPOINT, "text/csv", "application/json")}
    assert all(0 < len(c["body"]) < MAX_PAYLOAD for c in env.calls)

    # ---- the batch result and the ledger: three objects scored, the missing one quarantined
    scored = result["xcom"]["score_batch:return_value"]
    totals = scored["totals"]
    assert (totals["objects"], totals["scored"], totals["quarantined"], totals["failed"]) == (4, 3, 1, 0)
    assert totals["findings"] == len(expected)
    assert totals["distinct_pairs"] == sum(len(r.entities) for r in reqs)
    assert scored["model_version"] == VERSION and scored["findings_location"] == f"s3://{LAKE_BUCKET}"
    assert scored["result"] == f"{WORK}/{Ledger.result_key(bid)}"
    assert keys_under(WORK_BUCKET, "ml/scoring/pending/") == []
    entries = [read_json(WORK_BUCKET, k) for k in keys_under(WORK_BUCKET, "ml/scoring/ledger/")]
    status = {e["uri"]: (e["status"], e["batch_id"], e["model_version"]) for e in entries}
    assert status == {lake_uri(key_a): ("scored", bid, VERSION), lake_uri(key_b): ("scored", bid, VERSION),
                      lake_uri(REFERENCE_KEY): ("scored", bid, VERSION),
                      lake_uri(MISSING_KEY): ("quarantined", bid, VERSION)}
    missing = next(e for e in entries if e["uri"] == lake_uri(MISSING_KEY))
    assert missing["reason"] == f"object {lake_uri(MISSING_KEY)} does not exist"

    # ---- findings: Security Lake custom-source layout in the lake bucket, valid OCSF 1.1, explained
    files = keys_under(LAKE_BUCKET, "ext/")
    accounts = sorted(k.split("accountId=")[1][:12] for k in (key_a, key_b))
    assert custom_source_name("vpc_flow") == "ipinsights-vpc-flow"
    assert [f.rsplit("/", 1)[0] for f in files] == [
        f"ext/ipinsights-vpc-flow/region=us-east-1/accountId={a}/eventDay={SCORE_DAY}" for a in accounts]
    assert all(f.rsplit("/", 1)[1].startswith("obj-") and f.endswith(".parquet") for f in files)
    assert keys_under(LAKE_BUCKET, "aws/") == sorted([*site.keys[TRAIN_DAY], key_a, key_b, REFERENCE_KEY])
    records = findings()
    assert {pair_of(r) for r in records} == expected and len(records) == len(expected)
    assert len(set(uids(records))) == len(records)
    schema = json.loads((reference_dir / "ocsf-1.1.0-schema.json").read_text())
    errors = {r["finding_info"]["uid"]: validate_finding(r, schema) for r in records}
    assert not any(errors.values()), {k: v for k, v in errors.items() if v}
    profile = EntityProfile.load(site.profile)
    for r in records:
        evidence = r["evidences"][0]["data"]
        assert (evidence["model_version"], evidence["backend"], evidence["threshold"]) == (
            VERSION, "aws", site.threshold)
        assert evidence["explanation"] == profile.explain(*pair_of(r))  # the registry's profile_uri
        assert pair_of(r)[0] in site.entities  # every flagged instance was seen in training ...
        assert evidence["explanation"]["entity_known"] is True and evidence["explanation"]["known_networks"]
        assert r["finding_info"]["analytic"]["uid"] == VERSION
        assert r["cloud"]["account"]["uid"] in accounts

    # ---- severe findings on SNS, once each, with their uids
    severe = sorted(r["finding_info"]["uid"] for r in records if r["severity_id"] >= 4)
    alerts = env.alerts()
    assert severe and sorted(a["alert"]["uid"] for a in alerts) == severe
    assert totals["published"] == len(severe)
    for a in alerts:
        assert a["attributes"]["finding_uid"] == a["alert"]["uid"]
        assert int(a["attributes"]["severity_id"]) == a["alert"]["severity_id"] >= 4
        assert a["subject"] == f"[{a['alert']['severity']}] IP Insights finding"
        assert a["alert"]["model_version"] == VERSION

    record_property("airflow_db_migrate_s", round(migrate_s, 1))
    record_property("dag_test_s", round(dag_s, 1))
    print(f"\nairflow db migrate {migrate_s:.1f}s; scoring dag.test() on the aws backend {dag_s:.1f}s")


# ============================================================================= 2. duplicate delivery
def test_duplicate_message_hands_off_nothing_new(env: Env, site: Site) -> None:
    key = site.keys[SCORE_DAY][0]
    env.upload(site, [key])
    activate(site)
    reqs = predict(site, [key])[key]
    env.model = site.scorer
    message = eventbridge(key, event_id="11111111-2222-3333-4444-555555555555")

    env.send(message)
    first = sensor_run(sensor())
    assert first is not None and first["objects"] == 1
    summary = score(first)
    assert summary["totals"]["scored"] == 1 and summary["totals"]["findings"] == len(flagged(site, reqs)) > 0
    files = objects_under(LAKE_BUCKET, "ext/")
    before = uids(findings())
    alerts = env.alerts()
    assert env.queue_counts() == (0, 0) and len(env.calls) == 1

    env.send(message, message)  # EventBridge delivered the same event again, twice
    assert sensor_run(sensor()) is None  # nothing new: the sensor deferred again
    assert env.queue_counts() == (0, 0)  # ... after deleting both copies
    assert [d["entries"] for d in env.deletes] == [1, 2]
    assert keys_under(WORK_BUCKET, "ml/scoring/batches/") == [
        f"ml/scoring/batches/{first['batch_id']}/manifest.json", f"ml/scoring/batches/{first['batch_id']}/result.json"]
    assert keys_under(WORK_BUCKET, "ml/scoring/pending/") == []
    assert objects_under(LAKE_BUCKET, "ext/") == files  # same files, not even rewritten
    assert uids(findings()) == before and len(set(before)) == len(before)
    assert len(env.calls) == 1 and env.alerts() == [] and alerts  # no second scoring, no second alert


# ============================================================================= 3. crash before the delete
class WorkerCrash(Exception):
    """Stands for the worker dying between the hand-off and the delete."""


def test_crash_between_hand_off_and_delete_loses_nothing_and_duplicates_nothing(
    env: Env, site: Site, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seclake_ml.aws import clients as scoring_ops  # where the scoring path's clients are built
    from seclake_ml.scoring.ledger import Ledger, batch_id_for

    keys = site.keys[SCORE_DAY]
    env.upload(site, keys)
    activate(site)
    predicted = predict(site, keys)
    reqs = [r for k in keys for r in predicted[k]]
    env.model = site.scorer
    env.send(*(eventbridge(k) for k in keys))

    armed = {"crash": True}
    real_clients = scoring_ops.aws_clients

    def aws_clients(cfg: Any, aws_conn_id: str | None) -> Any:
        clients = real_clients(cfg, aws_conn_id)

        def crash(**kwargs: Any) -> None:
            if armed["crash"]:
                raise WorkerCrash("worker lost before DeleteMessageBatch")

        clients.sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", crash)
        return clients

    monkeypatch.setattr(scoring_ops, "aws_clients", aws_clients)
    bid = batch_id_for([lake_uri(k) for k in keys], "sqs", [md5_etag(k) for k in keys])

    with pytest.raises(WorkerCrash):
        sensor_run(sensor(visibility_timeout=4))
    assert ledger().pending() == [bid]  # handed off: manifest + pending marker are in S3
    assert [o["key"] for o in ledger().manifest(bid)["objects"]] == keys
    assert env.deletes == [] and env.queue_counts() == (0, 2)  # not deleted, in flight
    armed["crash"] = False
    deadline = time.monotonic() + 10
    while env.queue_counts() != (2, 0) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert env.queue_counts() == (2, 0)  # visibility timeout over: redelivered

    # the retry of the sensor resumes the pending batch; it drains the queue too: the redelivered
    # messages name the same objects (same ETags), so they hand off that same batch and are deleted
    resumed = sensor_run(sensor(visibility_timeout=4))
    assert resumed == {"batch_id": bid, "origin": "sqs", "objects": 2, "rejected": 0, "ignored": 0}
    assert env.queue_counts() == (0, 0) and [d["entries"] for d in env.deletes] == [2]
    assert ledger().pending() == [bid]
    summary = score(resumed)
    assert [lines(c["body"]) for c in env.calls] == [lines(r.body) for r in reqs]  # each object scored once
    assert summary["totals"]["scored"] == 2 and summary["totals"]["findings"] == len(flagged(site, reqs))

    # the same messages once more (a late duplicate): their objects are done; deleted, nothing handed off
    env.send(*(eventbridge(k) for k in keys))
    assert sensor_run(sensor(visibility_timeout=4)) is None
    assert env.queue_counts() == (0, 0) and [d["entries"] for d in env.deletes] == [2, 2]
    assert keys_under(WORK_BUCKET, "ml/scoring/batches/") == [f"ml/scoring/batches/{bid}/manifest.json",
                                                             f"ml/scoring/batches/{bid}/result.json"]
    for k in keys:  # no lost object
        entry = ledger().entry(lake_uri(k))
        assert (entry["status"], entry["batch_id"]) == ("scored", bid)
    records = findings()  # no duplicate finding, no duplicate alert
    assert {pair_of(r) for r in records} == flagged(site, reqs) and len(set(uids(records))) == len(records)
    severe = sorted(r["finding_info"]["uid"] for r in records if r["severity_id"] >= 4)
    assert sorted(a["alert"]["uid"] for a in env.alerts()) == severe
    assert len(env.calls) == len(reqs)
    assert Ledger.pending_key(bid) not in keys_under(WORK_BUCKET, "ml/scoring/pending/")


# ============================================================================= 4. endpoint retries and batching
def test_endpoint_throttling_is_retried_then_scores(env: Env, site: Site) -> None:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.aws.clients import aws_clients
    from seclake_ml.scoring.scorers import EndpointScorer, ScoringError

    runtime = aws_clients(SeclakeConfig.from_mapping(config(env)), "aws_default").runtime
    key = site.keys[SCORE_DAY][0]
    (req,) = predict(site, [key])[key]
    env.queue_answers([req])
    throttled = {"left": 2}

    def fault(call: dict[str, Any]) -> Exception | None:
        if throttled["left"] > 0:
            throttled["left"] -= 1
            return endpoint_error("ThrottlingException", 400, "Rate exceeded")
        return None

    env.fault = fault
    delays: list[float] = []
    scorer = EndpointScorer(runtime, ENDPOINT, sleep=delays.append)
    scores = scorer.score(req.entities, req.ips)
    assert np.array_equal(scores.dot_product, req.dots) and scores.known_entity is None
    assert (scorer.requests, scorer.retries) == (3, 2)
    # the server saw the three attempts: botocore itself did not retry on top of the scorer
    assert [c.get("answered") for c in env.calls] == ["error", "error", None]
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4

    # throttled on every attempt: ScoringError after max_attempts, each attempt one request
    env.fault = lambda call: endpoint_error("ThrottlingException", 400, "Rate exceeded")
    delays.clear()
    stubborn = EndpointScorer(runtime, ENDPOINT, max_attempts=3, sleep=delays.append)
    with pytest.raises(ScoringError, match=f"invoke_endpoint {ENDPOINT}: ThrottlingException: Rate exceeded"):
        stubborn.score(req.entities, req.ips)
    assert (stubborn.requests, stubborn.retries, len(delays), len(env.calls)) == (3, 2, 2, 6)


def test_endpoint_requests_are_split_under_the_payload_limit(env: Env, site: Site) -> None:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.aws.clients import aws_clients
    from seclake_ml.scoring.scorers import EndpointScorer, csv_batches

    rng = np.random.default_rng(5)
    n = 130_000  # ~13 MB of entity,ip lines: three requests under 5 MB (fewer than 50,000 lines each)
    entities = [f"arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/seclake-analytics-role-with-a-long-name/"
                f"session-{k:08d}" for k in rng.integers(0, 5_000, n)]
    ips = [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 256, (n, 3))]
    batches = csv_batches(entities, ips, MAX_PAYLOAD, 50_000)
    assert len(batches) == 3
    answers = [site.scorer.handle_request(body, "text/csv", "application/json")[0] for _, _, body in batches]
    env.queue_answers([Request("", body, a, [], [], np.empty(0)) for (_, _, body), a in zip(batches, answers)])

    runtime = aws_clients(SeclakeConfig.from_mapping(config(env)), "aws_default").runtime
    scorer = EndpointScorer(runtime, ENDPOINT)
    scores = scorer.score(entities, ips)
    answered = [p["dot_product"] for a in answers for p in json.loads(a)["predictions"]]
    assert np.array_equal(scores.dot_product, np.array(answered, np.float64)) and len(answered) == n
    assert np.allclose(scores.dot_product, site.scorer.dot_product(entities, ips), rtol=1e-6)
    assert scorer.requests == 3 and len(env.calls) == 3
    sizes = [len(c["body"]) for c in env.calls]
    assert all(4_000_000 < s < MAX_PAYLOAD for s in sizes[:-1]) and sum(sizes) > 12_000_000
    assert sum(c["body"].count(b"\n") for c in env.calls) == n
    assert {(c["content_type"], c["accept"]) for c in env.calls} == {("text/csv", "application/json")}


def _hand_off_two(env: Env, site: Site, **scoring: Any) -> tuple[str, str, Any, Any, dict[str, Any]]:
    """Both objects of the scoring day uploaded and announced, the model active: keys, their
    (single) endpoint requests and the handed-off manifest."""
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.scoring.service import hand_off_messages

    key_a, key_b = site.keys[SCORE_DAY]
    env.upload(site, [key_a, key_b])
    activate(site)
    predicted = predict(site, [key_a, key_b])
    (req_a,), (req_b,) = predicted[key_a], predicted[key_b]
    manifest, _ = hand_off_messages(SeclakeConfig.from_mapping(config(env, **scoring)), ledger(), [
        {"MessageId": "m-a", "ReceiptHandle": "r-a", "Body": eventbridge(key_a)},
        {"MessageId": "m-b", "ReceiptHandle": "r-b", "Body": eventbridge(key_b)},
    ])
    env.model = site.scorer
    return key_a, key_b, req_a, req_b, manifest


def _model_error_for(req: Any) -> Callable[[dict[str, Any]], Any]:
    """An endpoint fault: the model rejects ``req`` every time (a ModelError is not retried)."""
    return lambda call: (endpoint_error("ModelError", 424, "Received client error (400) from model",
                                        OriginalStatusCode=400, OriginalMessage="bad input")
                         if lines(call["body"]) == lines(req.body) else None)


def test_persistent_endpoint_error_keeps_the_object_pending_until_a_rerun(
    env: Env, site: Site, monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_a, key_b, req_a, req_b, manifest = _hand_off_two(env, site)
    bid = manifest["batch_id"]
    batch = {"batch_id": bid}
    env.fault = _model_error_for(req_a)  # B's request is answered

    with pytest.raises(RuntimeError, match=r"1 objects failed and stay pending for a retry: .*ScoringError: "
                       rf"invoke_endpoint {ENDPOINT}: ModelError: Received client error \(400\) from model"):
        score(batch)
    assert ledger().pending() == [bid] and ledger().result(bid) is None
    assert ledger().entry(lake_uri(key_a)) is None  # not marked: scored again on the retry
    assert ledger().entry(lake_uri(key_b))["status"] == "scored"
    assert {pair_of(r) for r in findings()} == flagged(site, [req_b])
    assert [c.get("answered") for c in env.calls] == ["error", None]  # A: one attempt (not retryable)
    assert ledger().manifest(bid)["model"]["version"] == VERSION  # pinned for the retry

    env.fault = None
    summary = score(batch)  # the retry resumes the pending batch: only A is scored
    assert summary["totals"]["objects"] == 1 and summary["totals"]["scored"] == 1
    result = ledger().result(bid)
    assert (result["already_done"], result["objects_in_batch"]) == (1, 2)
    assert ledger().pending() == [] and ledger().entry(lake_uri(key_a))["status"] == "scored"
    assert env.requests_for([req_b]) == 1 and env.requests_for([req_a]) == 2
    records = findings()
    assert {pair_of(r) for r in records} == flagged(site, [req_a, req_b]) and len(set(uids(records))) == len(records)


def test_a_model_error_that_persists_quarantines_the_object_after_the_attempt_limit(env: Env, site: Site) -> None:
    key_a, key_b, req_a, req_b, manifest = _hand_off_two(env, site, max_object_attempts=2)
    env.fault = _model_error_for(req_a)
    conf = config(env, max_object_attempts=2)
    from seclake_ml.operators.scoring import ScoreBatchOperator

    def run() -> dict[str, Any]:
        return ScoreBatchOperator(task_id="score_batch", batch={"batch_id": manifest["batch_id"]},
                                  config_overrides=conf).execute({})

    with pytest.raises(RuntimeError, match="1 objects failed"):
        run()  # attempt 1: A stays pending, B is scored
    summary = run()  # attempt 2: A reaches the limit and is quarantined; the batch is done
    assert summary["totals"]["quarantined"] == 1 and ledger().pending() == []
    entry = ledger().entry(lake_uri(key_a))
    assert entry["status"] == "quarantined" and entry["reason"].startswith("failed 2 times, last: ScoringError")
    assert env.requests_for([req_a]) == 2 and env.requests_for([req_b]) == 1


def test_messages_of_another_source_version_are_deleted_on_record(env: Env, site: Site,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.scoring.service import hand_off_messages

    cfg = SeclakeConfig.from_mapping(config(env))
    v2 = [f"aws/VPC_FLOW/2.0/region=us-east-1/accountId=123456789012/eventDay={SCORE_DAY}/v2-{i}.gz.parquet"
          for i in range(3)]
    manifest, plan = hand_off_messages(cfg, ledger(), [
        {"MessageId": f"m-{i}", "ReceiptHandle": f"r-{i}", "Body": eventbridge(k)} for i, k in enumerate(v2)])
    assert manifest is None and len(plan.ignored) == 3
    (record_key,) = keys_under(WORK_BUCKET, "ml/scoring/rejected/")
    record = read_json(WORK_BUCKET, record_key)
    assert sorted(r["key"] for r in record["ignored"]) == sorted(v2)
    assert all(r["reason"] == "source version 2 is not the configured version 1" for r in record["ignored"])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("source version 2" in w for w in warned) == 3 and any("recorded at s3://" in w for w in warned)

    # test events alone leave no record
    hand_off_messages(cfg, ledger(), [{"MessageId": "t", "ReceiptHandle": "r",
                                       "Body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})}])
    assert keys_under(WORK_BUCKET, "ml/scoring/rejected/") == [record_key]


def _serve(config_name: str, status: str = "InService") -> None:
    """The endpoint serves ``config_name`` (moto has no UpdateEndpoint: its backend is set, as the
    update would leave it)."""
    from moto.sagemaker.models import sagemaker_backends

    sm = client("sagemaker")
    backend = sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]
    if ENDPOINT not in backend.endpoints:
        sm.create_model(ModelName="m-1", ExecutionRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/sm",
                        PrimaryContainer={"Image": "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"})
        sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "m-1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config_name)
    backend.endpoints[ENDPOINT].endpoint_config_name = config_name
    backend.endpoints[ENDPOINT].endpoint_status = status


def _roll_out(site: Site, version: str, config_name: str) -> None:
    from seclake_ml.aws import registry
    from seclake_ml.config import SeclakeConfig

    cfg = SeclakeConfig.from_mapping(json.loads(os.environ["SECLAKE_ML_CONFIG"]))
    record = dict(activate(site), version=version, endpoint_config_name=config_name)
    registry.record_active(cfg, record)
    _serve(config_name)


def test_a_rollout_between_retries_never_mixes_models_in_a_batch(env: Env, site: Site) -> None:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.scoring.service import hand_off_messages

    cfg = SeclakeConfig.from_mapping(config(env))
    _serve("seclake-ml-epc-0001")
    key_a, key_b, req_a, req_b, manifest = _hand_off_two(env, site)
    bid = manifest["batch_id"]
    env.fault = _model_error_for(req_b)
    with pytest.raises(RuntimeError, match="1 objects failed"):
        score({"batch_id": bid})  # A is scored with the pinned model, B stays pending
    env.fault = None

    # a canary rollout in progress: nothing is scored, no attempt is counted
    _serve("seclake-ml-epc-0001", status="Updating")
    with pytest.raises(RuntimeError, match=f"endpoint {ENDPOINT} is Updating"):
        score({"batch_id": bid})
    assert ledger().store.get_json(f"scoring/batches/{bid}/attempts.json")[lake_uri(key_b)]["attempts"] == 1

    # the rollout is done: the endpoint serves the new model, so B cannot be scored by the pinned one
    _roll_out(site, "ipinsights-v2", "seclake-ml-epc-0002")
    done = score({"batch_id": bid})
    assert done["totals"]["objects"] == 0 and ledger().pending() != [bid] and ledger().result(bid)
    split_to = ledger().manifest(bid)["split_to"]
    assert ledger().pending() == [split_to] and ledger().manifest(split_to)["model"]["version"] == "ipinsights-v2"
    assert [o["key"] for o in ledger().manifest(split_to)["objects"]] == [key_b]
    rest = score({"batch_id": split_to})
    assert rest["model_version"] == "ipinsights-v2" and rest["totals"]["scored"] == 1
    versions = {lake_uri(k): ledger().entry(lake_uri(k))["model_version"] for k in (key_a, key_b)}
    assert versions == {lake_uri(key_a): VERSION, lake_uri(key_b): "ipinsights-v2"}
    by_object = {}
    for r in findings():
        by_object.setdefault(r["evidences"][0]["data"]["model_version"], set()).add(pair_of(r))
    assert by_object == {VERSION: flagged(site, [req_a]), "ipinsights-v2": flagged(site, [req_b])}

    # a batch with nothing scored yet is simply re-pinned to the model the endpoint serves
    key_c = REFERENCE_KEY
    env.upload(site, [key_c])
    fresh, _ = hand_off_messages(cfg, ledger(), [{"MessageId": "m-c", "ReceiptHandle": "r-c", "Body": eventbridge(key_c)}])
    ledger().pin_model(fresh, dict(ledger().manifest(bid)["model"]))  # pinned to the old model before the rollout
    summary = score({"batch_id": fresh["batch_id"]})
    assert summary["model_version"] == "ipinsights-v2" and summary["totals"]["scored"] == 1
    assert ledger().manifest(fresh["batch_id"])["repinned_from"]["version"] == VERSION


# ============================================================================= 5. no active model
def test_without_an_active_model_the_batch_waits(env: Env, site: Site) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from seclake_ml.config import SeclakeConfig
    from seclake_ml.scoring.service import hand_off_messages

    key = site.keys[SCORE_DAY][0]
    env.upload(site, [key])
    cfg = SeclakeConfig.from_mapping(config(env))
    manifest, _ = hand_off_messages(cfg, ledger(), [{"MessageId": "m", "ReceiptHandle": "r", "Body": eventbridge(key)}])
    bid = manifest["batch_id"]

    with pytest.raises(AirflowFailException) as failed:
        score({"batch_id": bid})
    assert str(failed.value) == (
        f"no active model: SSM parameter {SSM_ACTIVE} does not exist; roll a model out first "
        "(the batch stays pending and is scored once a model is active)")
    assert ledger().pending() == [bid] and ledger().manifest(bid)["model"] is None
    assert env.calls == [] and keys_under(LAKE_BUCKET, "ext/") == []

    activate(site)  # once a model is rolled out, the pending batch is scored
    reqs = predict(site, [key])[key]
    env.model = site.scorer
    assert sensor_run(sensor())["batch_id"] == bid  # the next run resumes it
    summary = score({"batch_id": bid})
    assert summary["model_version"] == VERSION and summary["totals"]["findings"] == len(flagged(site, reqs))
    assert ledger().pending() == []


# ============================================================================= 6. interval scoring
def test_interval_scores_the_day_partitions_and_a_rerun_overwrites(
    env: Env, site: Site, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seclake_ml.aws import clients as scoring_ops  # where the scoring path's clients are built
    from seclake_ml.operators.scoring import IntervalBatchOperator

    every = [k for day in (TRAIN_DAY, SCORE_DAY, NEXT_DAY) for k in site.keys[day]]
    env.upload(site, every)
    day_prefix = site.keys[SCORE_DAY][0].rsplit("/", 1)[0]
    client("s3").put_object(Bucket=LAKE_BUCKET, Key=f"{day_prefix}/_notes.txt", Body=b"not a lake object")
    activate(site)
    predicted = predict(site, site.keys[SCORE_DAY])
    reqs = [r for k in site.keys[SCORE_DAY] for r in predicted[k]]
    env.model = site.scorer

    listings: list[dict[str, Any]] = []
    real_clients = scoring_ops.aws_clients

    def aws_clients(cfg: Any, aws_conn_id: str | None) -> Any:
        clients = real_clients(cfg, aws_conn_id)
        clients.s3.meta.events.register(
            "provide-client-params.s3.ListObjectsV2",
            lambda params, **kw: listings.append({"Bucket": params.get("Bucket"), "Prefix": params.get("Prefix"),
                                                  "Delimiter": params.get("Delimiter")}),
        )
        return clients

    monkeypatch.setattr(scoring_ops, "aws_clients", aws_clients)

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        planned = IntervalBatchOperator(task_id="hand_off_interval", start="2024-03-05T00:00:00+00:00",
                                        end="2024-03-06T00:00:00+00:00").execute({})
        return planned, score(planned)

    planned, summary = run()
    bid = "interval-20240305T000000Z_20240306T000000Z"
    assert planned == {"batch_id": bid, "origin": "interval", "objects": 2, "rejected": 0, "ignored": 0}
    assert [o["key"] for o in ledger().manifest(bid)["objects"]] == site.keys[SCORE_DAY]
    # delimiter listings down to the accounts, then only the day's partition of each account
    accounts = sorted({k.split("accountId=")[1][:12] for k in every})
    region_prefix = "aws/VPC_FLOW/1.0/region=us-east-1/"
    plan_listings = [d for d in listings if d["Bucket"] == LAKE_BUCKET]
    assert plan_listings == [
        {"Bucket": LAKE_BUCKET, "Prefix": "aws/VPC_FLOW/1.0/", "Delimiter": "/"},
        {"Bucket": LAKE_BUCKET, "Prefix": region_prefix, "Delimiter": "/"},
        *({"Bucket": LAKE_BUCKET, "Prefix": f"{region_prefix}accountId={a}/eventDay={SCORE_DAY}/", "Delimiter": None}
          for a in accounts),
    ], listings
    expected = flagged(site, reqs)
    assert summary["totals"]["scored"] == 2 and summary["totals"]["findings"] == len(expected)
    files = objects_under(LAKE_BUCKET, "ext/")
    assert [f"s3://{LAKE_BUCKET}/{k}" for k in sorted(files)] == summary["files"]
    assert len(files) == 2 and all(f"/eventDay={SCORE_DAY}/" in f for f in files)
    first = uids(findings())
    assert {pair_of(r) for r in findings()} == expected

    time.sleep(1.1)  # S3 LastModified has one-second resolution
    planned2, summary2 = run()
    assert planned2 == planned and summary2["totals"] == summary["totals"]
    again = objects_under(LAKE_BUCKET, "ext/")
    assert sorted(again) == sorted(files)  # the same files ...
    assert all(again[k][1] > files[k][1] for k in files)  # ... written again
    assert uids(findings()) == first  # with the same uids
    assert env.requests_for(reqs) == 2 * len(reqs)  # every object scored again
    assert {e["status"] for e in map(ledger().entry, map(lake_uri, site.keys[SCORE_DAY]))} == {"scored"}
    # a retry of the scoring task within that run keeps its progress: nothing is scored a third time
    retry = score(planned2)
    assert (retry["totals"]["objects"], ledger().result(bid)["already_done"]) == (0, 2)
    assert env.requests_for(reqs) == 2 * len(reqs)
    assert all(ledger().entry(lake_uri(k)) is None for k in site.keys[TRAIN_DAY] + site.keys[NEXT_DAY])


# ============================================================================= 7. the entity profile on aws
def test_training_profile_reaches_the_registry_and_explains_findings(
    env: Env, site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_poll_delay: None,  # noqa: F811
) -> None:
    import pandas as pd

    from seclake_ml.aws import rollout as rollout_mod
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.operators.training import (
        IPInsightsTrainingOperator,
        ModelRolloutOperator,
        PrepareTrainingDataOperator,
    )
    from seclake_ml.scoring.profile import EntityProfile, build_profile
    from seclake_ml.scoring.service import hand_off_messages

    monkeypatch.setattr(rollout_mod, "_sleep", lambda seconds: None)
    interval = "interval=20240304T000000Z_20240305T000000Z"
    pairs_prefix = f"{WORK}/pairs/vpc_flow/instance_peer/{interval}/"
    client("s3").upload_file(str(site.train_pairs), WORK_BUCKET,
                             pairs_prefix[len(f"s3://{WORK_BUCKET}/"):] + "20240305_000000_part-0.parquet")
    ctx = {"ti": type("TI", (), {"xcom_push": lambda self, key, value: None})()}
    extraction = {"start": "2024-03-04T00:00:00Z", "end": "2024-03-05T00:00:00Z",
                  "pairs": {"vpc_flow:instance_peer": pairs_prefix}}

    data = PrepareTrainingDataOperator(task_id="prepare_training_data", extraction=extraction).execute(ctx)
    profile_uri = f"{WORK}/training/data/{interval}/profile/profile.parquet"
    assert data["profile_uri"] == profile_uri
    # the profile is that of the training channel's rows (before the split), as DuckDB aggregates them
    train_rows = pd.read_parquet(site.train_pairs)
    train_rows = train_rows[train_rows["event_time"] < pd.Timestamp(data["split_time"])]
    assert len(train_rows) == data["train_rows"] > 0
    train_rows.to_parquet(tmp_path / "train.parquet")
    build_profile([str(tmp_path / "train.parquet")], str(tmp_path / "profile.parquet"))
    expected = pq.read_table(tmp_path / "profile.parquet")

    def s3_profile(uri: str) -> tuple[bytes, pa.Table]:
        data = client("s3").get_object(Bucket=WORK_BUCKET, Key=uri[len(f"s3://{WORK_BUCKET}/"):])["Body"].read()
        return data, pq.read_table(pa.BufferReader(data))

    got_bytes, got = s3_profile(profile_uri)
    assert got.schema.names == expected.schema.names and got.to_pylist() == expected.to_pylist()
    assert data["details"]["profile"] == {"entities": len(set(train_rows["entity"])), "pairs": expected.num_rows,
                               "events": len(train_rows)}
    # read in many small chunks (what bounds the worker's memory) the profile is the same
    from seclake_ml.aws.channels import build_channels

    chunked = build_channels(SeclakeConfig.from_mapping(config(env)), pairs_uris=[pairs_prefix],
                             output_uri=f"{WORK}/chunked/", split_time=data["split_time"], chunk_rows=400)
    assert chunked["train_files"] >= 4 and chunked["profile_uri"] == f"{WORK}/chunked/profile/profile.parquet"
    assert s3_profile(chunked["profile_uri"])[1].to_pylist() == expected.to_pylist()

    model = IPInsightsTrainingOperator(task_id="train_ipinsights", data=data).execute(ctx)
    assert model["profile_uri"] == profile_uri and model["version"] == VERSION
    from seclake_ml.handoff import Calibration, GateDecision, TrainedModel

    candidate = TrainedModel.from_xcom(model)
    calibration = Calibration(window=candidate.window, version=candidate.version, auc=0.97,
                              threshold={"value": site.threshold}, threshold_mode="target_fpr",
                              normal_set=f"{WORK}/n.parquet", abnormal_set=f"{WORK}/a.parquet")
    gate = GateDecision(passed=True, candidate=candidate.version, candidate_auc=0.97, auc_floor=0.9, tolerance=0.01)
    activated = ModelRolloutOperator(task_id="rollout_model", gate=gate.to_xcom(), model=model,
                                     calibration=calibration.to_xcom()).execute(ctx)
    assert activated["version"] == VERSION
    record = json.loads(client("ssm").get_parameter(Name=SSM_ACTIVE)["Parameter"]["Value"])
    assert (record["profile_uri"], record["version"], record["threshold"]) == (profile_uri, VERSION, site.threshold)

    # scoring reads the profile through the registry record: explanations from the training rows
    key = site.keys[SCORE_DAY][1]
    env.upload(site, [key])
    reqs = predict(site, [key])[key]
    env.model = site.scorer
    cfg = SeclakeConfig.from_mapping(config(env))
    manifest, _ = hand_off_messages(cfg, ledger(), [{"MessageId": "m", "ReceiptHandle": "r", "Body": eventbridge(key)}])
    summary = score({"batch_id": manifest["batch_id"]})
    assert summary["totals"]["findings"] == len(flagged(site, reqs)) > 0
    assert ledger().manifest(manifest["batch_id"])["model"]["profile_uri"] == profile_uri
    profile = EntityProfile.load(got_bytes)
    records = findings()
    known = [r for r in records if r["unmapped"]["entity"] in profile]
    assert known, "no finding of an entity seen in training"
    for r in records:
        explanation = r["evidences"][0]["data"]["explanation"]
        assert explanation == profile.explain(*pair_of(r))
        assert explanation["entity_known"] is (r["unmapped"]["entity"] in profile)
    for r in known:
        explanation = r["evidences"][0]["data"]["explanation"]
        assert explanation["known_networks"] and "was usually seen with" in explanation["text"]
        assert explanation["text"] in r["message"]


# ============================================================================= combined score
def test_endpoint_dot_products_are_combined_with_the_profile_history(env: Env, site: Site) -> None:
    """A record with a combiner: the endpoint's dot_product and the profile's history give the score."""
    from seclake_ml.aws import registry
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.ipinsights.combiner import ScoreCombiner
    from seclake_ml.scoring.profile import load_history
    from seclake_ml.scoring.service import hand_off_messages

    combiner = {"format": "seclake-ipinsights-combiner", "version": 1, "features": ["dot_product", "distance_bits"],
                "mean": [0.0, 8.0], "scale": [1.0, 4.0], "coef": [-1.0, 1.5], "intercept": -1.0}
    key_a, key_b = site.keys[SCORE_DAY]
    env.upload(site, [key_a, key_b])
    record = activate(site)  # uploads the profile the record points at
    history, comb = load_history(site.profile), ScoreCombiner.from_dict(combiner)
    predicted = predict(site, [key_a, key_b])
    scores = {}
    for req in predicted[key_a] + predicted[key_b]:
        combined = comb.decision_function(req.dots, history.features(req.entities, req.ips))
        scores.update({(e, i): float(s) for e, i, s in zip(req.entities, req.ips, combined)})
    threshold = round(float(np.quantile(list(scores.values()), 0.97)), 4)
    cfg = SeclakeConfig.from_mapping(json.loads(os.environ["SECLAKE_ML_CONFIG"]))
    registry.record_active(cfg, dict(record, threshold=threshold, combiner=combiner))
    manifest, _ = hand_off_messages(SeclakeConfig.from_mapping(config(env)), ledger(), [
        {"MessageId": "m-a", "ReceiptHandle": "r-a", "Body": eventbridge(key_a)},
        {"MessageId": "m-b", "ReceiptHandle": "r-b", "Body": eventbridge(key_b)},
    ])
    env.model = site.scorer
    summary = score({"batch_id": manifest["batch_id"]})
    assert summary["totals"]["scored"] == 2 and summary["totals"]["failed"] == 0
    assert ledger().manifest(manifest["batch_id"])["model"]["combiner"]["coef"] == combiner["coef"]
    expected = {pair for pair, s in scores.items() if s > threshold}
    records = findings()
    assert expected and {pair_of(r) for r in records} == expected
    for r in records:
        assert float(r["unmapped"]["score"]) == pytest.approx(scores[pair_of(r)], rel=1e-6, abs=1e-6)
