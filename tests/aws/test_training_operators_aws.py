"""The training operators' aws branches, each run with ``execute(context)`` against the moto server.

The configuration comes from ``SECLAKE_ML_CONFIG`` (backend aws, an S3 work location and the
``extra.sagemaker`` settings), as on a worker. What each operator sent is read back from the server:
the training job with ``DescribeTrainingJob``, the transform jobs with ``DescribeTransformJob``,
Model, EndpointConfig and Endpoint with their Describe calls, the registry with ``GetParameter``.

What moto does not do, and what stands in for it:

* moto records a Batch Transform job as ``Completed`` at once but never runs the container, so no
  output would ever appear. :func:`batch_transform` wraps the server's ``CreateTransformJob`` (the
  server runs in this process) and writes the ``<input object>.out`` files itself, one
  ``{"dot_product": x}`` line per input line, as the IP Insights container does for ``Accept:
  application/jsonlines``. ``x`` comes from a scoring function chosen per model artifact.
* moto creates an endpoint ``InService`` immediately; the rollout test makes it ``Creating`` first and
  lets it reach ``InService`` on a later ``DescribeEndpoint``, and records the endpoint's status at
  the moment the registry's ``PutParameter`` arrives.
* The provider's ``SageMakerHook.check_status`` sleeps ``check_interval`` (30 s) before each poll;
  :func:`no_poll_delay` passes 0 instead, nothing else about the wait changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer

BUCKET = "seclake-work"
WORK = f"s3://{BUCKET}/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
ALARMS = ["seclake-ml-endpoint-5xx"]
ENDPOINT = "seclake-ml-ipinsights"
SSM_ACTIVE = f"/seclake-ml/ipinsights/{ENDPOINT}/active"
START = datetime(2026, 1, 5, 3, tzinfo=timezone.utc)
END = datetime(2026, 1, 12, 3, tzinfo=timezone.utc)
INTERVAL = "interval=20260105T030000Z_20260112T030000Z"
VERSION = "ipinsights-20260105T0300Z-20260112T0300Z"
VIEWS = {"vpc_flow:instance_peer": "vpc_flow/instance_peer", "cloudtrail_signin:principal_ip":
         "cloudtrail_signin/principal_ip"}
# the calibration's XCom form (seclake_ml.handoff.Calibration): main fields, backend details, threshold rule
SUMMARY_KEYS = {"version", "auc", "threshold", "threshold_mode", "target_fpr", "normal_set", "abnormal_set",
                "report_uri", "components", "combiner", "start", "end", "details"}
DETAIL_KEYS = {"auc_by_kind", "precision", "recall", "fpr", "counts", "report_dir", "combiner_declined",
               "transform_job", "model_name", "scores_uri"}
THRESHOLD_KEYS = {"value", "method", "target_fpr", "precision", "recall", "fpr", "f1", "n_normal", "n_abnormal",
                  "extra"}


def config(**sagemaker: Any) -> dict[str, Any]:
    return {
        "backend": "aws",
        "region": DEFAULT_REGION,
        "work_location": WORK,
        "athena_workgroup": "seclake",
        "sources": list(VIEWS),
        "extra": {"sagemaker": {"role_arn": ROLE, "alarms": ALARMS, "resource_prefix": "seclake-ml", **sagemaker}},
    }


def client(service: str):
    return boto3.client(service, region_name=DEFAULT_REGION)


def sagemaker_backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]


def keys(prefix: str) -> list[str]:
    pages = client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read_text(key: str) -> str:
    return client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def parameter(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except client("ssm").exceptions.ParameterNotFound:
        return None


# -------------------------------------------------------------------------------------- data
def synthetic_pairs(start: datetime = START, end: datetime = END, seed: int = 7) -> dict[str, Any]:
    """Pairs per source view, shaped as the Athena ``UNLOAD`` writes them.

    Instances talk to a few private peers of their own /24; principals sign in from two public
    addresses of their own. Every pair recurs across the whole window, so the later (held-out)
    pairs are known-normal ones.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    span = (end - start).total_seconds()
    frames = {}
    for view, (entities, ips_of, source) in {
        "vpc_flow:instance_peer": (
            [f"i-{k:017x}" for k in range(24)], lambda k: [f"10.{k}.0.{h}" for h in (5, 6, 7)], "vpc_flow"),
        "cloudtrail_signin:principal_ip": (
            [f"arn:aws:iam::111122223333:user/u{k}" for k in range(12)],
            lambda k: [f"198.51.{k}.10", f"203.0.{k}.20"], "cloudtrail_signin"),
    }.items():
        rows = []
        for k, entity in enumerate(entities):
            for ip in ips_of(k):
                for t in np.sort(rng.uniform(0, span, 12)):
                    rows.append((entity, ip, start + timedelta(seconds=float(t))))
        df = pd.DataFrame(rows, columns=["entity", "ip", "event_time"])
        df["event_time"] = df["event_time"].dt.tz_convert(None).astype("datetime64[ms]")
        df["source"], df["account"], df["region"] = source, "111122223333", DEFAULT_REGION
        frames[view] = df
    return frames


def parquet_bytes(df: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return buf.getvalue()


def pairs_prefix(view: str, interval: str = INTERVAL) -> str:
    return f"{WORK}/pairs/{VIEWS[view]}/{interval}/"


def known_pairs(frames: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e, i) for df in frames.values() for e, i in zip(df["entity"], df["ip"])}


def _jitter(entity: str, ip: str) -> float:
    return zlib.crc32(f"{entity},{ip}".encode()) / 2**32


def known_pair_scores(known: set[tuple[str, str]]) -> Callable[[str, str], float]:
    """A stand-in model that learned the pairs: seen pairs score high, everything else low."""
    return lambda e, i: (2.0 if (e, i) in known else -2.0) + _jitter(e, i)


def noise_scores(e: str, i: str) -> float:
    """A stand-in model that learned nothing."""
    return _jitter(e, i) * 4.0 - 2.0


# ------------------------------------------------------------------------------- moto stand-ins
@dataclass
class BatchTransformStandIn:
    """Scoring functions per model artifact (``default`` for any other), and the jobs seen."""

    default: Callable[[str, str], float] = noise_scores
    by_artifact: dict[str, Callable[[str, str], float]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def batch_transform(monkeypatch: pytest.MonkeyPatch) -> BatchTransformStandIn:
    """Write each transform job's ``.out`` objects when the server receives ``CreateTransformJob``."""
    from moto.s3.models import s3_backends
    from moto.sagemaker.models import SageMakerModelBackend

    stand_in = BatchTransformStandIn()
    original = SageMakerModelBackend.create_transform_job

    def create_transform_job(self: Any, **kwargs: Any) -> Any:
        job = original(self, **kwargs)
        artifact = self._models[kwargs["model_name"]].primary_container["ModelDataUrl"]
        score = stand_in.by_artifact.get(artifact, stand_in.default)
        in_bucket, _, in_key = kwargs["transform_input"]["DataSource"]["S3DataSource"]["S3Uri"][5:].partition("/")
        out_bucket, _, out_key = kwargs["transform_output"]["S3OutputPath"][5:].partition("/")
        out_key = out_key if out_key.endswith("/") else out_key + "/"
        s3 = s3_backends[DEFAULT_ACCOUNT]["global"]
        names = sorted(k for k in s3.get_bucket(in_bucket).keys.keys() if k.startswith(in_key))
        for name in names:
            lines = [ln for ln in s3.get_object(in_bucket, name).value.decode().splitlines() if ln.strip()]
            dots = [score(*ln.split(",", 1)) for ln in lines]
            body = "".join(json.dumps({"dot_product": d}) + "\n" for d in dots)
            relative = name[len(in_key):] if in_key.endswith("/") else name.rsplit("/", 1)[-1]
            s3.put_object(out_bucket, f"{out_key}{relative.lstrip('/')}.out", body.encode())
        stand_in.jobs.append({"name": kwargs["transform_job_name"], "artifact": artifact, "inputs": names})
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_transform_job", create_transform_job)
    return stand_in


@pytest.fixture
def no_poll_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    original = SageMakerHook.check_status

    def check_status(self: Any, job_name: str, key: str, describe: Any, check_interval: int, *a: Any, **kw: Any):
        return original(self, job_name, key, describe, 0, *a, **kw)

    monkeypatch.setattr(SageMakerHook, "check_status", check_status)


@dataclass
class Site:
    server: MotoServer
    frames: dict[str, Any]
    transform: BatchTransformStandIn


@pytest.fixture
def site(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch, batch_transform: BatchTransformStandIn,
         no_poll_delay: None) -> Iterator[Site]:
    """Work bucket with the window's pairs, CloudWatch alarms, config in ``SECLAKE_ML_CONFIG``."""
    from seclake_ml import airflow_support

    for name in [k for k in os.environ if k.startswith("SECLAKE_ML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps(config()))
    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": None)
    client("s3").create_bucket(Bucket=BUCKET)
    frames = synthetic_pairs()
    for view, df in frames.items():
        key = pairs_prefix(view)[len(f"s3://{BUCKET}/"):] + "20260112_000000_part-0.parquet"
        client("s3").put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(df))
    for name in ALARMS:
        client("cloudwatch").put_metric_alarm(
            AlarmName=name, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    batch_transform.default = known_pair_scores(known_pairs(frames))
    yield Site(aws_env, frames, batch_transform)


class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context() -> dict[str, Any]:
    return {"ti": FakeTI(), "data_interval_start": START, "data_interval_end": END}


def extraction() -> dict[str, Any]:
    return {"start": "2026-01-05T03:00:00Z", "end": "2026-01-12T03:00:00Z",
            "pairs": {view: pairs_prefix(view) for view in VIEWS}}


def prepare() -> dict[str, Any]:
    from seclake_ml.operators.training import PrepareTrainingDataOperator

    return PrepareTrainingDataOperator(task_id="prepare_training_data", extraction=extraction()).execute(context())


def train(data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    from seclake_ml.operators.training import IPInsightsTrainingOperator

    return IPInsightsTrainingOperator(task_id="train_ipinsights", data=data, **kw).execute(context())


def calibrate(model: dict[str, Any], data: dict[str, Any], ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    from seclake_ml.operators.training import ThresholdCalibrationOperator

    op = ThresholdCalibrationOperator(task_id="calibrate_threshold", model=model, data=data)
    return op.execute(ctx or context())


def gate(calibration: dict[str, Any], **kw: Any) -> dict[str, Any]:
    from seclake_ml.operators.training import QualityGateOperator

    return QualityGateOperator(task_id="quality_gate", calibration=calibration, **kw).execute(context())


def rollout(gate_result: dict[str, Any], model: dict[str, Any], calibration: dict[str, Any],
            **kw: Any) -> dict[str, Any]:
    from seclake_ml.operators.training import ModelRolloutOperator

    op = ModelRolloutOperator(task_id="rollout_model", gate=gate_result, model=model, calibration=calibration, **kw)
    return op.execute(context())



@contextlib.contextmanager
def captured_log(name: str) -> Iterator[list[str]]:
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


# ------------------------------------------------------------------------------------- prepare
def test_prepare_writes_csv_channels_split_in_time(site: Site) -> None:
    result = prepare()
    base = f"{WORK}/training/data/{INTERVAL}/"
    split = START + (END - START) * 0.7
    assert result["train_uri"] == f"{base}train/" and result["holdout_uri"] == f"{base}validation/"
    assert result["split_time"] == "2026-01-10T00:36:00Z" == split.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (result["start"], result["end"], result["backend"]) == ("2026-01-05T03:00:00Z", "2026-01-12T03:00:00Z",
                                                                   "aws")
    every = [df for df in site.frames.values()]
    expected_train = sum(int((df["event_time"] < split.replace(tzinfo=None)).sum()) for df in every)
    total = sum(len(df) for df in every)
    assert result["train_rows"] == expected_train and result["holdout_rows"] == total - expected_train
    assert result["holdout_rows"] > 0
    json.dumps(result)

    train_keys = keys(f"ml/training/data/{INTERVAL}/train/")
    assert len(train_keys) == 2 and all(k.endswith(".csv") for k in train_keys)  # one per source view
    lines = [ln for k in train_keys for ln in read_text(k).splitlines()]
    assert len(lines) == expected_train
    assert all(len(ln.split(",")) == 2 for ln in lines)  # entity,ip without a header
    assert not any(ln.startswith("entity,") for ln in lines)
    assert set(tuple(ln.split(",")) for ln in lines) <= known_pairs(site.frames)


def test_prepare_without_training_rows_fails_without_retry(site: Site) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from seclake_ml.operators.training import PrepareTrainingDataOperator

    late = {"start": "2026-01-05T03:00:00Z", "end": "2026-01-12T03:00:00Z",
            "pairs": {"vpc_flow:instance_peer": f"{WORK}/pairs/empty/"}}
    with pytest.raises(AirflowFailException, match="no training rows"):
        PrepareTrainingDataOperator(task_id="p", extraction=late).execute(context())


# --------------------------------------------------------------------------------------- train
def test_train_sends_the_training_job_and_returns_the_model(site: Site) -> None:
    data = prepare()
    model = train(data, hyperparameters={"epochs": 3, "vector_dim": 64})

    name = model["details"]["job_name"]
    assert name.startswith("seclake-ml-train-20260105t0300-20260112t0300-")
    sent = client("sagemaker").describe_training_job(TrainingJobName=name)
    assert sent["HyperParameters"] == {
        "num_entity_vectors": "20000", "vector_dim": "64", "random_negative_sampling_rate": "5",
        "mini_batch_size": "1000", "epochs": "3", "learning_rate": "0.01",
    }
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"], c["ContentType"])
            for c in sent["InputDataConfig"]] == [("train", data["train_uri"], "text/csv"),
                                                  ("validation", data["holdout_uri"], "text/csv")]
    algorithm = sent["AlgorithmSpecification"]
    assert (algorithm["TrainingImage"], algorithm["TrainingInputMode"]) == (IMAGE, "File")
    assert sent["RoleArn"] == ROLE
    assert sent["OutputDataConfig"]["S3OutputPath"] == f"{WORK}/sagemaker/training/"
    assert sent["ResourceConfig"]["InstanceType"] == "ml.m5.large"

    assert model["version"] == VERSION and model["backend"] == "aws"
    assert (model["start"], model["end"]) == ("2026-01-05T03:00:00Z", "2026-01-12T03:00:00Z")
    assert model["model_uri"] == f"{WORK}/sagemaker/training/{name}/output/model.tar.gz"
    assert model["details"]["image_uri"] == IMAGE and model["train_rows"] == data["train_rows"]
    assert model["profile_uri"] == data["profile_uri"] and model["details"]["status"] == "Completed"
    json.dumps(model)
    retry = train(data, hyperparameters={"epochs": 3, "vector_dim": 64})
    assert retry["details"]["reused"] is True and retry["details"]["job_name"] == name  # a retry reuses it


def test_train_deferred_finishes_in_execute_complete(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import TaskDeferred
    from moto.sagemaker.models import FakeTrainingJob

    from seclake_ml.aws.triggers import SageMakerJobTrigger
    from seclake_ml.operators.training import IPInsightsTrainingOperator

    original = FakeTrainingJob.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.training_job_status = "InProgress"

    monkeypatch.setattr(FakeTrainingJob, "__init__", init)
    data = prepare()
    op = IPInsightsTrainingOperator(task_id="train_ipinsights", data=data, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    assert deferred.value.method_name == "execute_complete"
    assert isinstance(deferred.value.trigger, SageMakerJobTrigger)
    assert deferred.value.trigger.job_type == "training"
    assert deferred.value.timeout == timedelta(seconds=24 * 3600 + 600)
    name = deferred.value.trigger.job_name
    sagemaker_backend().training_jobs[name].training_job_status = "Completed"

    # the hyperparameters the job was started with travel with the deferral (JSON-safe, as XCom needs)
    sent = deferred.value.kwargs["hyperparameters"]
    assert json.loads(json.dumps(sent)) == sent and sent["epochs"] == 5
    model = op.execute_complete(context(), {"status": "success", "job_name": name}, **deferred.value.kwargs)
    assert model["details"]["job_name"] == name and model["details"]["status"] == "Completed"
    assert model["version"] == VERSION and model["start"] == "2026-01-05T03:00:00Z"
    assert model["model_uri"].endswith(f"/{name}/output/model.tar.gz")
    assert model["hyperparameters"] == sent


# ----------------------------------------------------------------------------------- calibrate
@pytest.fixture(params=["declined", "accepted"])
def combination(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Whether calibration deploys the fitted score combination. These sets are separated perfectly by
    the model alone, so the combination is declined as it comes; ``accepted`` lifts that rule to follow
    a deployed combiner through the transform, the report and the active record."""
    if request.param == "accepted":
        from seclake_ml.ipinsights import calibration as calibration_mod

        monkeypatch.setattr(calibration_mod, "_decline_reason", lambda combiner, components: None)
    return request.param


def test_calibrate_scores_the_sets_with_batch_transform(site: Site, combination: str) -> None:
    data = prepare()
    model = train(data)
    ctx = context()
    cal = calibrate(model, data, ctx)

    base = f"ml/training/calibration/{INTERVAL}/"
    assert SUMMARY_KEYS <= set(cal) and DETAIL_KEYS <= set(cal["details"])
    assert THRESHOLD_KEYS <= set(cal["threshold"])
    details = cal["details"]
    assert cal["version"] == VERSION
    assert (cal["start"], cal["end"]) == ("2026-01-05T03:00:00Z", "2026-01-12T03:00:00Z")
    assert cal["normal_set"] == f"s3://{BUCKET}/{base}normal.parquet"
    assert cal["abnormal_set"] == f"s3://{BUCKET}/{base}abnormal.parquet"
    assert details["report_dir"] == f"s3://{BUCKET}/{base}report/"
    assert cal["report_uri"] == f"s3://{BUCKET}/{base}report/report.html"
    # The UI link opens the report object in the S3 console.
    assert ctx["ti"].xcom["report_url"] == (
        f"https://us-east-1.console.aws.amazon.com/s3/object/{BUCKET}?region=us-east-1&prefix={base}report/report.html")
    reports = {k.rsplit("/", 1)[1] for k in keys(f"{base}report/")}
    assert {"report.html", "metrics.json", "threshold.json", "roc_curve.png", "score_histogram.png"} <= reports
    assert ("combiner.json" in reports) == (combination == "accepted")
    json.dumps(cal)
    # the endpoint's dot products are combined with the profile's history; each part's AUC is reported
    assert set(cal["components"]) == {"model", "nearest_known_ip", "combined"}
    if combination == "accepted":
        assert cal["components"]["combined"] == cal["auc"] and not details["combiner_declined"]
        assert json.loads(read_text(f"{base}report/combiner.json")) == cal["combiner"]
    else:
        # the model alone is deployed: its AUC on the held-out half, a threshold on -dot_product, and why
        assert cal["combiner"] is None and cal["components"]["model"] == cal["auc"]
        assert "is not above the model's" in details["combiner_declined"]
        metrics = json.loads(read_text(f"{base}report/metrics.json"))
        assert metrics["combiner_declined"] == details["combiner_declined"] and "-dot_product" in metrics["score"]

    # the transform input: two headerless entity,ip files, exactly the stored sets
    assert keys(f"{base}input/") == [f"{base}input/abnormal.csv", f"{base}input/normal.csv"]
    normal = pq.read_table(io.BytesIO(client("s3").get_object(Bucket=BUCKET, Key=f"{base}normal.parquet")["Body"]
                                      .read())).to_pandas()
    abnormal = pq.read_table(io.BytesIO(client("s3").get_object(Bucket=BUCKET, Key=f"{base}abnormal.parquet")[
        "Body"].read())).to_pandas()
    assert read_text(f"{base}input/normal.csv").splitlines() == [f"{e},{i}" for e, i in zip(normal.entity, normal.ip)]
    assert read_text(f"{base}input/abnormal.csv").splitlines() == [
        f"{e},{i}" for e, i in zip(abnormal.entity, abnormal.ip)]
    assert set(abnormal["kind"]) == {"random_public", "unused_private", "other_entity"}
    assert details["counts"]["normal_scored"] == len(normal) and details["counts"]["abnormal_scored"] == len(abnormal)

    # what SageMaker received: one Model named as the rollout names it, one transform job
    job = client("sagemaker").describe_transform_job(TransformJobName=details["transform_job"])
    assert job["TransformJobName"].startswith("seclake-ml-xform-20260105t0300-20260112t0300-")
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{base}input/"
    assert (job["TransformInput"]["ContentType"], job["TransformInput"]["SplitType"]) == ("text/csv", "Line")
    assert job["TransformOutput"]["S3OutputPath"] == details["scores_uri"]
    assert details["scores_uri"].startswith(f"s3://{BUCKET}/{base}scores/")
    assert job["TransformOutput"]["Accept"] == "application/jsonlines"
    described = client("sagemaker").describe_model(ModelName=job["ModelName"])
    assert described["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": model["model_uri"]} | {
        k: v for k, v in described["PrimaryContainer"].items() if k not in ("Image", "ModelDataUrl")}
    from seclake_ml.aws.names import model_name

    assert job["ModelName"] == model_name("seclake-ml", model_data_url=model["model_uri"], image_uri=IMAGE)
    assert job["ModelName"] == details["model_name"]
    assert [j["name"] for j in site.transform.jobs] == [details["transform_job"]]

    # the stand-in model separates seen pairs from injected ones completely
    assert cal["auc"] == 1.0 and cal["threshold"]["recall"] == 1.0 == details["recall"]
    assert np.isfinite(cal["threshold"]["value"]) and cal["threshold_mode"] == "target_fpr"
    assert (cal["threshold"]["method"], cal["threshold"]["target_fpr"]) == ("target_fpr", cal["target_fpr"])


def test_calibrate_deferred_waits_for_the_transform_in_the_triggerer(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``deferrable`` the Batch Transform job is waited for by a trigger; the task resumes from the
    sets stored in S3 and gives the same calibration as a run that waited in the worker."""
    from airflow.sdk.exceptions import TaskDeferred
    from moto.sagemaker.models import FakeTransformJob

    from seclake_ml.aws.triggers import SageMakerJobTrigger
    from seclake_ml.operators.training import ThresholdCalibrationOperator

    data = prepare()
    model = train(data)
    waited_here = calibrate(model, data)

    original = FakeTransformJob.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.transform_job_status = "InProgress"

    monkeypatch.setattr(FakeTransformJob, "__init__", init)
    # another artifact: a new transform job (a finished one of the same request would be reused)
    other = dict(model, model_uri=model["model_uri"].replace("model.tar.gz", "again/model.tar.gz"))
    op = ThresholdCalibrationOperator(task_id="calibrate_threshold", model=other, data=data, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerJobTrigger) and trigger.job_type == "transform"
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert SageMakerJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert parameter("/seclake-ml/ipinsights/seclake-ml-ipinsights/active") is None

    sagemaker_backend().transform_jobs[trigger.job_name].transform_job_status = "Completed"
    ctx = context()
    cal = op.execute_complete(ctx, {"status": "success", "job_name": trigger.job_name, "job_type": "transform"})
    assert cal["details"]["transform_job"] == trigger.job_name != waited_here["details"]["transform_job"]
    assert ctx["ti"].xcom["report_url"].endswith("report/report.html")
    # the same sets, scored by the same stand-in model: the same figures as the run that waited here
    for key in ("auc", "threshold", "normal_set", "abnormal_set", "components", "report_uri"):
        assert cal[key] == waited_here[key], key

    sagemaker_backend().transform_jobs[trigger.job_name].transform_job_status = "Failed"
    from seclake_ml.aws.transform import TransformJobError

    with pytest.raises(TransformJobError):
        op.execute_complete(context(), {"status": "failed", "job_name": trigger.job_name, "message": "boom"})


# ---------------------------------------------------------------------------------------- gate
def _earlier_active(artifact: str) -> dict[str, Any]:
    """An endpoint and registry record from an earlier rollout of ``artifact``."""
    from seclake_ml.aws.rollout import rollout_endpoint
    from seclake_ml.config import SeclakeConfig

    cfg = SeclakeConfig.from_mapping(config())
    return rollout_endpoint(cfg, model_data_url=artifact, version="ipinsights-20251229T0300Z-20260105T0300Z",
                            threshold=-0.25, check_interval=0)["record"]


def test_gate_scores_the_active_model_on_the_same_sets(site: Site) -> None:
    from seclake_ml.ipinsights.metrics import roc_auc

    old = f"{WORK}/sagemaker/training/seclake-ml-train-old/output/model.tar.gz"
    site.transform.by_artifact[old] = noise_scores
    active = _earlier_active(old)
    data = prepare()
    cal = calibrate(train(data), data)

    with captured_log("seclake_ml.calibration_runner") as messages:
        decision = gate(cal, auc_floor=0.9, tolerance=0.01)

    assert decision["passed"] is True and decision["reasons"] == []
    assert (decision["candidate"], decision["candidate_auc"]) == (VERSION, 1.0)
    assert decision["active"] == active["version"]
    # the active model's AUC is that of its dot products on exactly the candidate's stored sets
    sets = {name: pq.read_table(io.BytesIO(client("s3").get_object(
        Bucket=BUCKET, Key=cal[f"{name}_set"][len(f"s3://{BUCKET}/"):])["Body"].read())).to_pandas()
        for name in ("normal", "abnormal")}
    n = [-noise_scores(e, i) for e, i in zip(sets["normal"].entity, sets["normal"].ip)]
    a = [-noise_scores(e, i) for e, i in zip(sets["abnormal"].entity, sets["abnormal"].ip)]
    expected = roc_auc(np.r_[np.zeros(len(n), bool), np.ones(len(a), bool)], np.r_[n, a])
    assert decision["active_auc"] == pytest.approx(expected)
    assert any(f"active model {active['version']}: AUC" in m for m in messages)

    # a Batch Transform job of the active record's Model, on the gate's copy of the sets
    gate_job = site.transform.jobs[-1]
    assert gate_job["artifact"] == old
    job = client("sagemaker").describe_transform_job(TransformJobName=gate_job["name"])
    assert job["ModelName"] == active["model_name"]
    gate_input = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert gate_input.startswith(f"{WORK}/training/calibration/{INTERVAL}/gate/") and gate_input.endswith("/input/")
    prefix = gate_input[len(f"s3://{BUCKET}/"):]
    assert [k[len(prefix):] for k in keys(prefix)] == ["abnormal.csv", "normal.csv"]
    assert read_text(prefix + "normal.csv") == read_text(f"ml/training/calibration/{INTERVAL}/input/normal.csv")


def test_gate_rejects_a_candidate_worse_than_the_active_model(site: Site) -> None:
    old = f"{WORK}/sagemaker/training/seclake-ml-train-old/output/model.tar.gz"
    site.transform.by_artifact[old] = known_pair_scores(known_pairs(site.frames))
    _earlier_active(old)
    data = prepare()
    cal = calibrate(train(data), data)
    decision = gate(cal | {"auc": 0.93}, auc_floor=0.9, tolerance=0.01)
    assert decision["passed"] is False and decision["active_auc"] == 1.0
    assert decision["reasons"] == [
        "candidate AUC 0.9300 is worse than active ipinsights-20251229T0300Z-20260105T0300Z (1.0000) by more than "
        "0.0100 on the same calibration sets"]


def test_gate_without_a_usable_active_model_compares_with_the_floor_only(site: Site) -> None:
    from seclake_ml.aws import registry
    from seclake_ml.config import SeclakeConfig

    data = prepare()
    cal = calibrate(train(data), data)
    assert gate(cal)["active"] is None  # nothing ever activated: no SSM parameter
    assert len(site.transform.jobs) == 1

    cfg = SeclakeConfig.from_mapping(config())
    registry.record_active(cfg, {"version": "ipinsights-old", "threshold": 0.1, "endpoint_name": ENDPOINT,
                                 "endpoint_config_name": "seclake-ml-epc-x", "model_name": "seclake-ml-model-x"})
    with captured_log("seclake_ml.calibration_runner") as messages:
        decision = gate(cal)
    assert (decision["active"], decision["active_auc"], decision["passed"]) == ("ipinsights-old", None, True)
    assert any("has no model_data_url" in m for m in messages)
    assert len(site.transform.jobs) == 1  # nothing was scored


# ------------------------------------------------------------------------------------- rollout
def test_rollout_deploys_and_records_only_once_in_service(site: Site, monkeypatch: pytest.MonkeyPatch,
                                                          combination: str) -> None:
    from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
    from moto.ssm.models import SimpleSystemManagerBackend

    from seclake_ml.aws import rollout as rollout_mod

    data = prepare()
    model = train(data)
    cal = calibrate(model, data)
    decision = gate(cal)

    # the endpoint is Creating when made and InService from the second DescribeEndpoint on
    init, describe = FakeEndpoint.__init__, SageMakerModelBackend.describe_endpoint
    seen: list[str] = []
    puts: list[tuple[str, str | None]] = []

    def endpoint_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.endpoint_status = "Creating"

    def describe_endpoint(self: Any, endpoint_name: str) -> Any:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:  # (before the create, the rollout looks for an existing endpoint)
            seen.append(endpoint.endpoint_status)
            if len(seen) >= 2:
                endpoint.endpoint_status = "InService"
        return describe(self, endpoint_name)

    put = SimpleSystemManagerBackend.put_parameter

    def put_parameter(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        endpoint = sagemaker_backend().endpoints.get(ENDPOINT)
        puts.append((name, endpoint.endpoint_status if endpoint else None))
        return put(self, name, *args, **kwargs)

    monkeypatch.setattr(FakeEndpoint, "__init__", endpoint_init)
    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", describe_endpoint)
    monkeypatch.setattr(SimpleSystemManagerBackend, "put_parameter", put_parameter)
    monkeypatch.setattr(rollout_mod, "_sleep", lambda seconds: None)

    result = rollout(decision, model, cal)
    endpoint = client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert result == {"activated": True, "version": VERSION, "threshold": cal["threshold"]["value"],
                      "previous_version": None, "backend": "aws",
                      "details": {"endpoint_name": ENDPOINT, "endpoint_config_name": endpoint["EndpointConfigName"],
                                  "model_name": cal["details"]["model_name"], "action": "created"}}

    epc = client("sagemaker").describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = epc["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    described = client("sagemaker").describe_model(ModelName=variant["ModelName"])
    assert described["PrimaryContainer"]["ModelDataUrl"] == model["model_uri"]
    assert described["PrimaryContainer"]["Image"] == IMAGE and described["ExecutionRoleArn"] == ROLE
    # the calibration's Model is the one behind the endpoint
    assert variant["ModelName"] == cal["details"]["model_name"]
    assert len(client("sagemaker").list_models()["Models"]) == 1

    assert seen[0] == "Creating" and puts == [(SSM_ACTIVE, "InService")]
    record = parameter(SSM_ACTIVE)
    assert record is not None
    assert (record["version"], record["threshold"], record["model_data_url"]) == (
        VERSION, cal["threshold"]["value"], model["model_uri"])
    assert record["threshold_rule"] == cal["threshold"]
    if combination == "accepted":
        # the threshold is on the combined score: the combiner travels with it in the same record
        assert record["combiner"]["coef"] == cal["combiner"]["coef"] and "fit" not in record["combiner"]
    else:
        assert "combiner" not in record
    assert (record["endpoint_name"], record["endpoint_config_name"], record["model_name"], record["image_uri"]) == (
        ENDPOINT, endpoint["EndpointConfigName"], variant["ModelName"], IMAGE)
    assert (record["auc"], record["report"], record["training_job"]) == (cal["auc"], cal["report_uri"],
                                                                         model["details"]["job_name"])


def test_rollout_after_a_rejected_gate_changes_nothing(site: Site) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    rejected = {"passed": False, "reasons": ["candidate AUC 0.5000 is below the floor 0.9000"], "candidate": VERSION,
                "candidate_auc": 0.5, "auc_floor": 0.9, "tolerance": 0.01, "active": None, "active_auc": None}
    with pytest.raises(AirflowSkipException, match="candidate AUC 0.5000 is below the floor"):
        rollout(rejected, {}, {})
    assert client("sagemaker").list_endpoints()["Endpoints"] == [] and parameter(SSM_ACTIVE) is None


def test_rollout_deferrable_waits_in_the_triggerer_and_records_on_success(site: Site) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from seclake_ml.aws.rollout import EndpointRolloutError
    from seclake_ml.aws.triggers import EndpointRolloutTrigger
    from seclake_ml.operators.training import ModelRolloutOperator

    data = prepare()
    model = train(data)
    cal = calibrate(model, data)
    decision = gate(cal)

    op = ModelRolloutOperator(task_id="rollout_model", gate=decision, model=model, calibration=cal, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, EndpointRolloutTrigger) and deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=4 * 3600 + 600)
    started = deferred.value.kwargs["started"]
    json.dumps(started)  # it travels through the deferral
    # the endpoint is created on the calibration's Model; nothing is recorded while it rolls out
    endpoint = client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    expected = endpoint["EndpointConfigName"]
    assert (started["endpoint_name"], started["endpoint_config_name"], started["model_name"], started["action"]) == (
        ENDPOINT, expected, cal["details"]["model_name"], "created")
    assert (trigger.endpoint_name, trigger.expected_config, trigger.previous_config) == (ENDPOINT, expected, None)
    assert (trigger.aws_conn_id, trigger.region_name) == ("aws_default", DEFAULT_REGION)
    classpath, kwargs = trigger.serialize()
    assert classpath == "seclake_ml.aws.triggers.EndpointRolloutTrigger"
    assert EndpointRolloutTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert parameter(SSM_ACTIVE) is None

    # SageMaker rolled the endpoint back: the task fails and the registry is untouched
    rolled_back = {"status": "rolled_back", "endpoint_name": ENDPOINT, "endpoint_status": "InService",
                   "endpoint_config": "seclake-ml-epc-old",
                   "message": f"SageMaker endpoint {ENDPOINT}: the update to {expected} was rolled back"}
    with pytest.raises(EndpointRolloutError, match="rolled back"):
        op.execute_complete(context(), rolled_back, started=started)
    assert parameter(SSM_ACTIVE) is None

    # the trigger saw the endpoint InService on the new config: the active record is written
    success = {"status": "success", "endpoint_name": ENDPOINT, "endpoint_status": "InService",
               "endpoint_config": expected,
               "message": f"SageMaker endpoint {ENDPOINT}: endpoint {ENDPOINT} is InService on {expected}"}
    result = op.execute_complete(context(), success, started=started)
    assert result == {"activated": True, "version": VERSION, "threshold": cal["threshold"]["value"],
                      "previous_version": None, "backend": "aws",
                      "details": {"endpoint_name": ENDPOINT, "endpoint_config_name": expected,
                                  "model_name": cal["details"]["model_name"], "action": "created"}}
    record = parameter(SSM_ACTIVE)
    assert record is not None
    assert (record["version"], record["threshold"], record["model_data_url"], record["endpoint_config_name"]) == (
        VERSION, cal["threshold"]["value"], model["model_uri"], expected)
    assert (record["model_name"], record["training_job"]) == (cal["details"]["model_name"],
                                                              model["details"]["job_name"])


# ------------------------------------------------------------------------------------ feedback
def test_findings_are_left_out_of_the_channels_and_labels_join_the_sets(site: Site,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On aws too: the detector's findings in the window (read from the lake bucket) are not learnt as
    normal unless labelled benign, and labelled findings join the calibration sets."""
    from seclake_ml.risk.labels import label_store_for, new_label
    from seclake_ml.scoring.findings import Candidate, build_findings
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts
    from seclake_ml.scoring.model_record import ActiveModel

    lake = "seclake-lake-bucket"
    client("s3").create_bucket(Bucket=lake)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps(config() | {"lake_bucket": lake}))
    when = START + timedelta(days=1)
    flagged = [("i-00000000000000000", "10.0.0.5"), ("i-00000000000000001", "10.1.0.6"),
               ("i-00000000000000002", "10.2.0.7")]
    records = build_findings(
        [Candidate(source="vpc_flow", view="instance_peer", entity=e, ip=i, account="111122223333",
                   region=DEFAULT_REGION, first_seen=when, last_seen=when, events=2, dot_product=-3.0, score=3.0)
         for e, i in flagged],
        model=ActiveModel(version="ipinsights-old", threshold=1.0, backend="aws"), scope="s3://lake/x.parquet",
        explanations={}, created_time=when, product_version="t")
    for key, data in findings_parquet_parts(records, file_stem="obj-1"):
        client("s3").put_object(Bucket=lake, Key=key, Body=data)
    uid = {r["unmapped"]["entity"]: r["finding_info"]["uid"] for r in records}
    label_store_for(WORK, client("s3")).add([
        new_label(uid[flagged[0][0]], 5, verdict="benign", analyst="ana", source="workspace", kind="finding"),
        new_label(uid[flagged[1][0]], 95, verdict="malicious", analyst="ana", source="workspace", kind="finding"),
    ])

    data = prepare()
    assert data["details"]["feedback"] == {"findings": 3, "excluded_pairs": 2, "labelled_benign": 1,
                                           "labelled_malicious": 1, "unreadable_files": 0}
    assert data["details"]["feedback_excluded"] == 24  # 12 events of each of the two pairs
    channel = "".join(read_text(k) for k in keys(f"ml/training/data/{INTERVAL}/train/")
                      + keys(f"ml/training/data/{INTERVAL}/validation/"))
    assert "i-00000000000000001,10.1.0.6" not in channel and "i-00000000000000002,10.2.0.7" not in channel
    assert "i-00000000000000000,10.0.0.5" in channel  # labelled benign: still normal training data

    cal = calibrate(train(data), data)
    base = f"ml/training/calibration/{INTERVAL}/"
    abnormal = pq.read_table(io.BytesIO(client("s3").get_object(Bucket=BUCKET, Key=f"{base}abnormal.parquet")[
        "Body"].read())).to_pandas()
    mal = abnormal[abnormal["kind"] == "labelled_malicious"]
    assert list(zip(mal["entity"], mal["ip"])) == [flagged[1]]
    assert cal["auc"] > 0.9
