"""Batch Transform scoring against the moto server on loopback.

What SageMaker received is read back with ``DescribeModel`` and ``DescribeTransformJob``. moto
records a transform job as ``Completed`` at once but never runs the container, so it writes no
output: the tests that cover :func:`read_transform_output` write the ``.out`` objects themselves,
in the jsonlines shape the IP Insights container returns for ``Accept: application/jsonlines``.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pytest

from seclake_ml.aws.transform import (
    TransformJobError,
    TransformOutputError,
    parse_transform_lines,
    read_transform_output,
    run_transform,
    transform_complete,
)
from seclake_ml.config import SeclakeConfig
from seclake_ml.handoff import Wait

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer

BUCKET = "seclake-work"
WORK = f"s3://{BUCKET}/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
ARTIFACT = f"{WORK}/sagemaker/training/seclake-ml-train-x/output/model.tar.gz"
INPUT = f"{WORK}/calibration/input/"
OUTPUT = f"{WORK}/calibration/scores/"
FILES = {
    "ml/calibration/input/part-0.csv": ["i-1,10.0.0.1", "i-1,10.0.0.2", "i-2,192.0.2.7"],
    "ml/calibration/input/part-1.csv": ["i-2,10.0.1.1", "arn:aws:iam::111122223333:user/alice,198.51.100.7"],
}


def make_cfg() -> SeclakeConfig:
    return SeclakeConfig(backend="aws", region=DEFAULT_REGION, work_location=WORK,
                         extra={"sagemaker": {"role_arn": ROLE}})


def client(service: str):
    return boto3.client(service, region_name=DEFAULT_REGION)


@pytest.fixture
def calibration(aws_env: MotoServer) -> MotoServer:
    client("s3").create_bucket(Bucket=BUCKET)
    for key, lines in FILES.items():
        client("s3").put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
    return aws_env


def run(**kw: Any) -> dict[str, Any] | Wait:
    args: dict[str, Any] = dict(model_data_url=ARTIFACT, input_uri=INPUT, output_uri=OUTPUT, check_interval=0,
                                start="2026-01-07T00:00:00Z", end="2026-01-08T00:00:00Z")
    args.update(kw)
    return run_transform(make_cfg(), **args)


def waited(**kw: Any) -> Wait:
    """The wait :func:`run_transform` hands back for a running job (``deferrable=True``)."""
    out = run(deferrable=True, **kw)
    assert isinstance(out, Wait), f"expected a Wait, got {out!r}"
    return out


def test_creates_model_and_transform_job(calibration: MotoServer) -> None:
    summary = run(max_concurrent_transforms=4)
    assert summary is not None
    name, model = summary["job_name"], summary["model_name"]
    assert name.startswith("seclake-ml-xform-20260107-20260108-")
    assert model.startswith("seclake-ml-model-20260107-20260108-")

    described_model = client("sagemaker").describe_model(ModelName=model)
    assert described_model["PrimaryContainer"]["Image"] == IMAGE
    assert described_model["PrimaryContainer"]["ModelDataUrl"] == ARTIFACT
    assert described_model["ExecutionRoleArn"] == ROLE

    job = client("sagemaker").describe_transform_job(TransformJobName=name)
    assert job["ModelName"] == model
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
        "ContentType": "text/csv",
        "CompressionType": "None",
        "SplitType": "Line",
    }
    assert job["TransformOutput"] == {"S3OutputPath": OUTPUT, "Accept": "application/jsonlines", "AssembleWith": "Line"}
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["MaxConcurrentTransforms"]) == ("MultiRecord", 6, 4)

    assert summary == {
        "job_name": name, "status": "Completed", "model_name": model, "input_uri": INPUT, "output_uri": OUTPUT,
        "transform_seconds": summary["transform_seconds"], "reused": False, "model_created": True,
    }
    json.dumps(summary)


def test_rerun_reuses_job_and_model(calibration: MotoServer) -> None:
    first, second = run(), run()
    assert first is not None and second is not None
    assert second["job_name"] == first["job_name"] and second["reused"] is True
    assert len(client("sagemaker").list_transform_jobs()["TransformJobSummaries"]) == 1
    assert len(client("sagemaker").list_models()["Models"]) == 1


def test_existing_model_with_other_artifact_is_refused(calibration: MotoServer) -> None:
    run(model_name="seclake-ml-model-fixed")
    with pytest.raises(ValueError, match="exists with artifact"):
        run(model_name="seclake-ml-model-fixed", model_data_url=f"{WORK}/other/model.tar.gz")


@pytest.fixture
def jobs_start_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sagemaker.models import FakeTransformJob

    original = FakeTransformJob.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.transform_job_status = "InProgress"

    monkeypatch.setattr(FakeTransformJob, "__init__", init)


def _job(name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION].transform_jobs[name]


def test_deferrable_path_defers_and_completes(calibration: MotoServer, jobs_start_in_progress: None) -> None:
    from seclake_ml.aws.triggers import SageMakerJobTrigger

    wait = waited(check_interval=30, max_wait_seconds=3600)
    assert isinstance(wait.trigger, SageMakerJobTrigger)
    assert wait.method_name == "execute_complete" and wait.kwargs == {}
    classpath, kwargs = wait.trigger.serialize()
    assert classpath == "seclake_ml.aws.triggers.SageMakerJobTrigger"
    assert kwargs["job_type"] == "transform" and kwargs["job_name"].startswith("seclake-ml-xform-")
    assert (kwargs["poll_interval"], kwargs["max_attempts"], kwargs["region_name"]) == (30, 121, DEFAULT_REGION)
    assert kwargs["aws_conn_id"] == "aws_default"
    assert SageMakerJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert wait.timeout_seconds == 3600

    _job(kwargs["job_name"]).transform_job_status = "Completed"
    summary = transform_complete({"status": "success", "job_name": kwargs["job_name"]}, cfg=make_cfg())
    assert summary["status"] == "Completed" and summary["output_uri"] == OUTPUT


def test_failed_job_raises_with_reason(calibration: MotoServer, jobs_start_in_progress: None) -> None:
    name = waited().trigger.job_name
    job = _job(name)
    job.transform_job_status, job.failure_reason = "Failed", "ClientError: bad line 3"
    with pytest.raises(TransformJobError, match="bad line 3.*attempt=1"):
        run()
    with pytest.raises(TransformJobError, match="the trigger reported 'error'"):
        transform_complete({"status": "error", "job_name": name}, cfg=make_cfg())


# -------------------------------------------------------------------------------------- output
def _write_outputs(values: dict[str, list[Any]], *, shape: str = "jsonlines") -> None:
    """Stand in for the container: write ``<input name>.out`` objects as SageMaker would."""
    for key, dots in values.items():
        name = key.rsplit("/", 1)[1]
        if shape == "jsonlines":
            body = "".join(json.dumps({"dot_product": d}) + "\n" for d in dots)
        else:
            body = json.dumps({"predictions": [{"dot_product": d} for d in dots]}) + "\n"
        client("s3").put_object(Bucket=BUCKET, Key=f"ml/calibration/scores/{name}.out", Body=body.encode())


def test_read_transform_output_aligns_with_input_order(calibration: MotoServer) -> None:
    run()  # moto completes the job but writes nothing; the outputs below stand in for the container
    _write_outputs({"ml/calibration/input/part-1.csv": [0.5, -1.25]})
    _write_outputs({"ml/calibration/input/part-0.csv": [2.0, 1.5, -3.0]}, shape="json")
    scores = read_transform_output(make_cfg(), input_uri=INPUT, output_uri=OUTPUT)
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, [2.0, 1.5, -3.0, 0.5, -1.25])


def test_read_transform_output_missing_or_short_output_raises(calibration: MotoServer) -> None:
    _write_outputs({"ml/calibration/input/part-0.csv": [2.0, 1.5, -3.0]})
    with pytest.raises(TransformOutputError, match="no transform output for input .*part-1.csv"):
        read_transform_output(make_cfg(), input_uri=INPUT, output_uri=OUTPUT)
    _write_outputs({"ml/calibration/input/part-1.csv": [0.5]})
    with pytest.raises(TransformOutputError, match=r"holds 1 dot product\(s\) for 2 input line\(s\)"):
        read_transform_output(make_cfg(), input_uri=INPUT, output_uri=OUTPUT)


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json\n", "not JSON"), ('{"score": 1}\n', "no finite 'dot_product'"),
     ('{"dot_product": NaN}\n', "no finite"), ('{"predictions": 3}\n', "not a list")],
)
def test_parse_transform_lines_rejects_malformed_output(text: str, message: str) -> None:
    with pytest.raises(TransformOutputError, match=message):
        parse_transform_lines(text, source="s3://b/x.out")


def test_parse_transform_lines_accepts_both_shapes() -> None:
    text = '{"dot_product": 1}\n\n{"predictions": [{"dot_product": -2.5}, {"dot_product": 0.25}]}\n'
    assert parse_transform_lines(text) == [1.0, -2.5, 0.25]
