"""SageMaker training backend (names, channels, training job) against the moto server on loopback.

The training job request is asserted as SageMaker received it, read back with
``DescribeTrainingJob``. moto finishes every training job at once (``Completed``, with one fake
``train:progress`` metric and an artifact path of ``<output>/<job>/output/model.tar.gz``); the
``InProgress``, ``Failed`` and ``Stopped`` paths are produced by changing the job object inside the
server, which runs in this process.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.aws import channels as channels_mod
from seclake_ml.aws import names
from seclake_ml.aws.training import (
    DEFAULT_HYPERPARAMETERS,
    TrainingJobError,
    build_training_config,
    run_training,
    sagemaker_hyperparameters,
    training_complete,
)
from seclake_ml.config import SeclakeConfig
from seclake_ml.handoff import Wait

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer

BUCKET = "seclake-work"
WORK = f"s3://{BUCKET}/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
TRAIN = f"{WORK}/channels/train/"
VALIDATION = f"{WORK}/channels/validation/"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
END = datetime(2026, 1, 7, tzinfo=timezone.utc)


def make_cfg(**sagemaker: Any) -> SeclakeConfig:
    return SeclakeConfig(
        backend="aws", region=DEFAULT_REGION, work_location=WORK,
        extra={"sagemaker": {"role_arn": ROLE, **sagemaker}},
    )


def sm():
    return boto3.client("sagemaker", region_name=DEFAULT_REGION)


def s3():
    return boto3.client("s3", region_name=DEFAULT_REGION)


def backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]


@pytest.fixture
def work(aws_env: MotoServer) -> MotoServer:
    """Work bucket with one object in each channel (the hook checks that channel prefixes exist)."""
    s3().create_bucket(Bucket=BUCKET)
    s3().put_object(Bucket=BUCKET, Key="ml/channels/train/part-000-00000.csv", Body=b"i-1,10.0.0.1\n")
    s3().put_object(Bucket=BUCKET, Key="ml/channels/validation/part-000-00000.csv", Body=b"i-1,10.0.0.2\n")
    return aws_env


# ----------------------------------------------------------------------------------------- names
def test_names_are_deterministic_bounded_and_content_sensitive() -> None:
    kw = dict(hyperparameters=DEFAULT_HYPERPARAMETERS, inputs=[TRAIN, VALIDATION], instance_type="ml.m5.large")
    a = names.training_job_name("seclake-ml", START, END, **kw)
    assert a == names.training_job_name("seclake-ml", "2026-01-05T00:00:00Z", "2026-01-07T00:00:00+00:00", **kw)
    assert a.startswith("seclake-ml-train-20260105-20260107-") and len(a.rsplit("-", 1)[1]) == 10
    changed = names.training_job_name("seclake-ml", START, END, **{**kw, "inputs": [TRAIN, None]})
    assert changed != a
    assert names.training_job_name("seclake-ml", START, END, attempt=1, **kw) != a
    # minutes appear when the interval is not whole days; the longest prefix still fits in 63
    longest = names.transform_job_name(
        "abcdefghijklmnop", model_name="m", input_uri="s3://a/b", output_uri="s3://a/c", instance_type="ml.m5.large",
        start="2026-01-05T06:30:00", end="2026-01-07T06:30:00",
    )
    assert longest.startswith("abcdefghijklmnop-xform-20260105t0630-20260107t0630-") and len(longest) == 61
    epc = names.endpoint_config_name("seclake-ml", model_name="seclake-ml-model-x", instance_type="ml.m5.large")
    assert epc == names.endpoint_config_name("seclake-ml", model_name="seclake-ml-model-x", instance_type="ml.m5.large")
    assert epc != names.endpoint_config_name("seclake-ml", model_name="seclake-ml-model-x",
                                             instance_type="ml.m5.xlarge")
    assert names.endpoint_name("seclake-ml") == "seclake-ml-ipinsights"


@pytest.mark.parametrize("prefix", ["Seclake", "seclake-", "a" * 17, "1abc", "sec_lake", ""])
def test_bad_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="resource_prefix"):
        names.model_name(prefix, model_data_url="s3://b/m.tar.gz", image_uri=IMAGE)


# ------------------------------------------------------------------------------------- request
def test_build_training_config_request() -> None:
    config = build_training_config(
        make_cfg(), job_name="seclake-ml-train-x", train_uri=TRAIN, validation_uri=VALIDATION,
        output_uri=f"{WORK}/sagemaker/training/", role_arn=ROLE, hyperparameters={"epochs": 7, "vector_dim": "64"},
        instance_type="ml.p3.2xlarge", max_runtime_seconds=7200, tags={"project": "seclake-ml"},
    )
    assert config == {
        "TrainingJobName": "seclake-ml-train-x",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {
            "epochs": "7", "learning_rate": "0.01", "mini_batch_size": "1000", "num_entity_vectors": "20000",
            "random_negative_sampling_rate": "5", "vector_dim": "64",
        },
        "InputDataConfig": [
            {"ChannelName": name, "ContentType": "text/csv", "CompressionType": "None", "InputMode": "File",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                             "S3DataDistributionType": "FullyReplicated"}}}
            for name, uri in (("train", TRAIN), ("validation", VALIDATION))
        ],
        "OutputDataConfig": {"S3OutputPath": f"{WORK}/sagemaker/training/"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
        "Tags": [{"Key": "project", "Value": "seclake-ml"}],
    }
    no_validation = build_training_config(
        make_cfg(), job_name="j", train_uri=TRAIN, validation_uri=None, output_uri=WORK, role_arn=ROLE,
    )
    assert [c["ChannelName"] for c in no_validation["InputDataConfig"]] == ["train"]
    assert no_validation["HyperParameters"] == DEFAULT_HYPERPARAMETERS


def test_image_override_from_config() -> None:
    mirror = "111122223333.dkr.ecr.us-east-1.amazonaws.com/mirror/ipinsights:1"
    config = build_training_config(make_cfg(image_uri=mirror), job_name="j", train_uri=TRAIN, validation_uri=None,
                                   output_uri=WORK, role_arn=ROLE)
    assert config["AlgorithmSpecification"]["TrainingImage"] == mirror


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vector_dim": 2}, "vector_dim"),
        ({"epochs": "many"}, "epochs"),
        ({"num_entity_vector": 10}, "unknown hyperparameter"),
        ({"random_negative_sampling_rate": 0, "shuffled_negative_sampling_rate": 0}, "sum in"),
    ],
)
def test_bad_hyperparameters_raise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sagemaker_hyperparameters(overrides)


def test_bad_role_and_uris_raise() -> None:
    with pytest.raises(ValueError, match="role_arn"):
        build_training_config(make_cfg(), job_name="j", train_uri=TRAIN, validation_uri=None, output_uri=WORK,
                              role_arn="seclake-ml-sagemaker")
    with pytest.raises(ValueError, match="train_uri"):
        build_training_config(make_cfg(), job_name="j", train_uri="/tmp/train", validation_uri=None, output_uri=WORK,
                              role_arn=ROLE)


def test_missing_role_names_the_setting() -> None:
    cfg = SeclakeConfig(backend="aws", work_location=WORK)
    with pytest.raises(ValueError, match=r"extra\.sagemaker\.role_arn"):
        run_training(cfg, start=START, end=END, train_uri=TRAIN, validation_uri=None)


# ------------------------------------------------------------------------------------- running
def run(cfg: SeclakeConfig | None = None, **kw: Any) -> dict[str, Any] | Wait:
    args: dict[str, Any] = dict(start=START, end=END, train_uri=TRAIN, validation_uri=VALIDATION, check_interval=0)
    args.update(kw)
    return run_training(cfg or make_cfg(), **args)


def waited(**kw: Any) -> Wait:
    """The wait :func:`run_training` hands back for a running job (``deferrable=True``)."""
    out = run(deferrable=True, **kw)
    assert isinstance(out, Wait), f"expected a Wait, got {out!r}"
    return out


def test_wait_path_creates_the_job_and_returns_summary(work: MotoServer) -> None:
    summary = run(hyperparameters={"epochs": 3}, tags={"project": "seclake-ml"})
    assert summary is not None
    name = summary["job_name"]
    assert name.startswith("seclake-ml-train-20260105-20260107-")
    sent = sm().describe_training_job(TrainingJobName=name)
    assert sent["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert sent["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert sent["RoleArn"] == ROLE
    assert sent["HyperParameters"] == {**DEFAULT_HYPERPARAMETERS, "epochs": "3"}
    assert [(c["ChannelName"], c["ContentType"], c["InputMode"], c["DataSource"]["S3DataSource"]["S3Uri"])
            for c in sent["InputDataConfig"]] == [
        ("train", "text/csv", "File", TRAIN), ("validation", "text/csv", "File", VALIDATION)]
    assert sent["OutputDataConfig"]["S3OutputPath"] == f"{WORK}/sagemaker/training/"
    assert sent["ResourceConfig"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert sent["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert sm().list_tags(ResourceArn=sent["TrainingJobArn"])["Tags"] == [{"Key": "project", "Value": "seclake-ml"}]

    assert summary == {
        "job_name": name,
        "status": "Completed",
        "model_data_url": f"{WORK}/sagemaker/training/{name}/output/model.tar.gz",
        "image_uri": IMAGE,
        "hyperparameters": {**DEFAULT_HYPERPARAMETERS, "epochs": "3"},
        "metrics": {"train:progress": 100.0},  # moto's only metric; real jobs add validation:discriminator_auc
        "billable_seconds": summary["billable_seconds"],
        "training_seconds": summary["training_seconds"],
        "reused": False,
    }
    assert isinstance(summary["billable_seconds"], int) and summary["billable_seconds"] >= 1
    json.dumps(summary)  # XCom-safe


def test_rerun_reuses_the_completed_job(work: MotoServer) -> None:
    first = run()
    second = run()
    assert first is not None and second is not None
    assert second["job_name"] == first["job_name"] and second["reused"] is True
    assert len(sm().list_training_jobs()["TrainingJobSummaries"]) == 1


def test_different_inputs_make_a_new_job(work: MotoServer) -> None:
    first = run()
    other = run(validation_uri=None)
    assert first is not None and other is not None and other["job_name"] != first["job_name"]
    assert len(sm().list_training_jobs()["TrainingJobSummaries"]) == 2


def test_missing_channel_prefix_fails_before_creating(aws_env: MotoServer) -> None:
    s3().create_bucket(Bucket=BUCKET)
    with pytest.raises(Exception, match="does not exist"):
        run()
    assert sm().list_training_jobs()["TrainingJobSummaries"] == []


def _set_status(name: str, status: str, reason: str | None = None) -> None:
    job = backend().training_jobs[name]
    job.training_job_status = status
    if reason is not None:
        job.failure_reason = reason


@pytest.fixture
def jobs_start_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """New training jobs stay InProgress until a test changes them."""
    from moto.sagemaker.models import FakeTrainingJob

    original = FakeTrainingJob.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.training_job_status = "InProgress"

    monkeypatch.setattr(FakeTrainingJob, "__init__", init)


def test_deferrable_path_defers_with_a_serializable_trigger(work: MotoServer, jobs_start_in_progress: None) -> None:
    from seclake_ml.aws.triggers import SageMakerJobTrigger

    wait = waited(check_interval=60, max_runtime_seconds=3600)
    trigger = wait.trigger
    assert isinstance(trigger, SageMakerJobTrigger)
    assert wait.method_name == "execute_complete" and wait.kwargs == {}
    assert wait.timeout_seconds == 3600 + 600
    classpath, kwargs = trigger.serialize()
    assert classpath == "seclake_ml.aws.triggers.SageMakerJobTrigger"
    name = sm().list_training_jobs()["TrainingJobSummaries"][0]["TrainingJobName"]
    assert kwargs["job_name"] == name and kwargs["job_type"] == "training"
    # polls every 60 s; 71 polls span 70 intervals = the 4200 s the wait may last
    assert (kwargs["poll_interval"], kwargs["max_attempts"]) == (60, 71)
    assert (kwargs["aws_conn_id"], kwargs["region_name"]) == ("aws_default", DEFAULT_REGION)
    assert SageMakerJobTrigger(**kwargs).serialize() == (classpath, kwargs)  # round-trips

    # the triggerer reports success: execute_complete finishes from the event
    _set_status(name, "Completed")
    # without cfg the connection's region is used, which is the one the trigger polled
    summary = training_complete({"status": "success", "job_name": name})
    assert summary["job_name"] == name and summary["status"] == "Completed"
    assert summary["model_data_url"].endswith(f"/{name}/output/model.tar.gz")


def test_deferrable_path_does_not_defer_a_finished_job(work: MotoServer) -> None:
    summary = run(deferrable=True)
    assert not isinstance(summary, Wait) and summary["status"] == "Completed"


def test_training_complete_raises_on_error_event(work: MotoServer) -> None:
    with pytest.raises(TrainingJobError, match="the trigger reported 'error'"):
        training_complete({"status": "error", "job_name": "x", "message": "waiter failed"}, cfg=make_cfg())
    with pytest.raises(TrainingJobError, match="without a job name"):
        training_complete(None, cfg=make_cfg())


def test_running_job_is_waited_for_without_creating_another(
    work: MotoServer, jobs_start_in_progress: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    name = waited().trigger.job_name
    polls = []
    original = SageMakerModelBackend.describe_training_job

    def describe(self: Any, training_job_name: str) -> dict[str, Any]:
        polls.append(training_job_name)
        if len(polls) == 3:  # completes while the backend polls
            self.training_jobs[training_job_name].training_job_status = "Completed"
        return original(self, training_job_name)

    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe)
    summary = run()  # wait mode, same inputs: finds the running job and polls it
    assert summary is not None and summary["job_name"] == name and summary["reused"] is True
    assert len(polls) >= 3
    assert len(sm().list_training_jobs()["TrainingJobSummaries"]) == 1


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_failed_job_raises_clearly_and_attempt_gives_a_new_name(
    work: MotoServer, jobs_start_in_progress: None, status: str
) -> None:
    name = waited().trigger.job_name
    _set_status(name, status, "ClientError: no data in channel train")
    with pytest.raises(TrainingJobError) as info:
        run()
    assert info.value.job_name == name and info.value.status == status
    assert "no data in channel train" in str(info.value) and "attempt=1" in str(info.value)

    retry = waited(attempt=1).trigger.job_name
    assert retry != name and retry.startswith("seclake-ml-train-20260105-20260107-")


def test_job_failing_while_waited_for_raises(
    work: MotoServer, jobs_start_in_progress: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.describe_training_job

    def describe(self: Any, training_job_name: str) -> dict[str, Any]:
        job = self.training_jobs[training_job_name]
        job.training_job_status, job.failure_reason = "Failed", "AlgorithmError: out of memory"
        return original(self, training_job_name)

    waited()
    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe)
    with pytest.raises(TrainingJobError, match="out of memory"):
        run(deferrable=False)


def test_existing_job_with_another_request_is_not_reused(work: MotoServer) -> None:
    first = run(job_name="seclake-ml-train-fixed")
    assert first is not None
    with pytest.raises(TrainingJobError, match=r"differs from the request in \['HyperParameters'\]"):
        run(job_name="seclake-ml-train-fixed", hyperparameters={"epochs": 9})


# ------------------------------------------------------------------------------------ channels
def _parquet(rows: list[tuple[Any, Any, Any]]) -> bytes:
    table = pa.table({
        "entity": pa.array([r[0] for r in rows], pa.string()),
        "ip": pa.array([r[1] for r in rows], pa.string()),
        "event_time": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
        "source": pa.array(["vpc_flow"] * len(rows), pa.string()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _t(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=timezone.utc)


@pytest.fixture
def pairs(aws_env: MotoServer) -> dict[str, Any]:
    """Two pairs prefixes (one with two files) holding good rows and one row per drop reason."""
    s3().create_bucket(Bucket=BUCKET)
    vpc = [("i-1", "10.0.0.1", _t(5, 1)), ("i-1", "10.0.0.2", _t(5, 2)), ("i-2", "10.0.1.1", _t(6, 3)),
           (None, "10.0.0.9", _t(5, 4)), ("i-3", "", _t(5, 5))]
    vpc2 = [("i-2", "10.0.1.2", _t(6, 20)), ("i-1", "10.0.0.3", _t(7, 1)), ("i-2", "10.0.1.3", _t(7, 2))]
    trail = [("arn:aws:iam::111122223333:user/alice", "198.51.100.7", _t(5, 9)),
             ("arn:aws:iam::111122223333:user/a,b", "198.51.100.8", _t(5, 9)),
             ("arn:aws:iam::111122223333:user/bob", "198.51.100.9", None),
             ("arn:aws:iam::111122223333:user/bob", "203.0.113.5", _t(8, 0))]
    s3().put_object(Bucket=BUCKET, Key="ml/pairs/vpc_flow/p0", Body=_parquet(vpc))
    s3().put_object(Bucket=BUCKET, Key="ml/pairs/vpc_flow/p1", Body=_parquet(vpc2))
    s3().put_object(Bucket=BUCKET, Key="ml/pairs/cloudtrail/p0", Body=_parquet(trail))
    # a stale object of an earlier run, to be replaced
    s3().put_object(Bucket=BUCKET, Key="ml/run/train/part-009-00000.csv", Body=b"stale,1.1.1.1\n")
    train = {"i-1,10.0.0.1", "i-1,10.0.0.2", "i-2,10.0.1.1", "i-2,10.0.1.2",
             "arn:aws:iam::111122223333:user/alice,198.51.100.7"}
    validation = {"i-1,10.0.0.3", "i-2,10.0.1.3", "arn:aws:iam::111122223333:user/bob,203.0.113.5"}
    return {"uris": [f"{WORK}/pairs/vpc_flow/", f"{WORK}/pairs/cloudtrail/"], "train": train,
            "validation": validation}


def _channel_objects(prefix: str) -> dict[str, bytes]:
    listed = s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3().get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _lines(objects: dict[str, bytes]) -> list[str]:
    return [line for body in objects.values() for line in body.decode().splitlines()]


def test_build_channels_splits_filters_and_streams(pairs: dict[str, Any]) -> None:
    result = channels_mod.build_channels(
        make_cfg(), pairs_uris=pairs["uris"], output_uri=f"{WORK}/run/", split_time=_t(7), seed=7, chunk_rows=2,
    )
    train, validation = _channel_objects("ml/run/train/"), _channel_objects("ml/run/validation/")
    assert sorted(_lines(train)) == sorted(pairs["train"])  # no header, no stale object
    assert sorted(_lines(validation)) == sorted(pairs["validation"])
    assert "ml/run/train/part-009-00000.csv" not in train
    assert all(k.rsplit("/", 1)[1].startswith(("part-000-", "part-001-")) for k in [*train, *validation])
    assert result == {
        "train_uri": f"{WORK}/run/train/",
        "validation_uri": f"{WORK}/run/validation/",
        "train_rows": 5,
        "validation_rows": 3,
        "rows_read": 12,
        "dropped": {"null": 2, "delimiter": 1, "no_event_time": 1},
        "feedback_excluded": 0,
        "train_files": len(train),
        "validation_files": len(validation),
        "train_entities": 3,
        "split_time": "2026-01-07T00:00:00+00:00",
        "seed": 7,
        "profile_uri": f"{WORK}/run/profile/profile.parquet",  # the entity profile of the five training rows
        "profile": {"entities": 3, "pairs": 5, "events": 5},
        "seconds": result["seconds"],
    }
    assert len(train) >= 3  # chunks of 2 rows: several files per prefix

    again = channels_mod.build_channels(
        make_cfg(), pairs_uris=pairs["uris"], output_uri=f"{WORK}/run/", split_time=_t(7), seed=7, chunk_rows=2,
    )
    assert _channel_objects("ml/run/train/") == train and again["train_rows"] == 5  # same seed: same bytes


def test_build_channels_shuffles_within_chunks_by_seed(pairs: dict[str, Any]) -> None:
    kw = dict(pairs_uris=pairs["uris"][:1], split_time=_t(9), chunk_rows=100)
    orders = set()
    for seed in range(6):
        channels_mod.build_channels(make_cfg(), output_uri=f"{WORK}/s{seed}/", seed=seed, **kw)
        orders.add(tuple(_lines(_channel_objects(f"ml/s{seed}/train/"))))
    assert len(orders) > 1 and all(sorted(o) == sorted(next(iter(orders))) for o in orders)


def test_build_channels_without_later_rows_has_no_validation(pairs: dict[str, Any]) -> None:
    result = channels_mod.build_channels(make_cfg(), pairs_uris=pairs["uris"], output_uri=f"{WORK}/run/",
                                         split_time=_t(20))
    assert result["validation_uri"] is None and result["train_rows"] == 8 and result["validation_rows"] == 0


def test_build_channels_without_training_rows_raises(pairs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no training rows"):
        channels_mod.build_channels(make_cfg(), pairs_uris=pairs["uris"], output_uri=f"{WORK}/run/",
                                    split_time=_t(1))
    with pytest.raises(ValueError, match="overlaps"):
        channels_mod.build_channels(make_cfg(), pairs_uris=pairs["uris"], output_uri=f"{WORK}/pairs/",
                                    split_time=_t(7))
