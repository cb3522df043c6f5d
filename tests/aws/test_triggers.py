"""Deferrable waits (``seclake_ml.aws.triggers``) and the phased rollout, against the moto server on loopback.

Each trigger's ``run()`` is driven with ``asyncio.run`` and talks to moto through the provider's
aiobotocore client (``AWS_ENDPOINT_URL``). moto finishes training and transform jobs at once and puts
endpoints ``InService`` at once; the other states are produced by changing the objects inside the
server (which runs in this process), optionally from a wrapper around the server's ``Describe*``
so the state steps on as the trigger polls. Throttling and access errors are injected by wrapping
the client's describe call, the AWS boundary. moto has no ``UpdateEndpoint``: the rollout tests
replace ``SageMakerHook.update_endpoint`` with a stand-in that moves the endpoint to ``Updating``,
as ``tests/aws/test_rollout.py`` does.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from seclake_ml.aws.rollout import (
    EndpointRolloutError,
    rollout_complete,
    rollout_trigger,
    start_rollout,
)
from seclake_ml.aws.training import build_training_config
from seclake_ml.aws.transform import build_transform_config
from seclake_ml.aws.triggers import SETTLE_POLLS, EndpointRolloutTrigger, SageMakerJobTrigger
from seclake_ml.config import SeclakeConfig

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer

WORK = "s3://seclake-work/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
ARTIFACT = f"{WORK}/sagemaker/training/seclake-ml-train-x/output/model.tar.gz"
V1 = f"{WORK}/sagemaker/training/seclake-ml-train-v1/output/model.tar.gz"
V2 = f"{WORK}/sagemaker/training/seclake-ml-train-v2/output/model.tar.gz"
ENDPOINT = "seclake-ml-ipinsights"
ALARMS = ["seclake-ml-endpoint-5xx"]
ACTIVE = f"/seclake-ml/ipinsights/{ENDPOINT}/active"
NOW = datetime(2026, 1, 8, 6, 0, tzinfo=timezone.utc)


def fast(**kw: Any) -> dict[str, Any]:
    """Trigger arguments for tests: moto's connection, 10 ms between polls, at most 20 polls unless given."""
    return {"aws_conn_id": "aws_default", "region_name": DEFAULT_REGION, "poll_interval": 0.01, "max_attempts": 20,
            **kw}


def make_cfg() -> SeclakeConfig:
    return SeclakeConfig(backend="aws", region=DEFAULT_REGION, work_location=WORK,
                         extra={"sagemaker": {"role_arn": ROLE, "alarms": ALARMS}})


def sm():
    return boto3.client("sagemaker", region_name=DEFAULT_REGION)


def backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]


def events(trigger: Any) -> list[dict[str, Any]]:
    """Drive ``trigger.run()`` to its end; the payloads it yielded."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def only_event(trigger: Any) -> dict[str, Any]:
    found = events(trigger)
    assert len(found) == 1, found
    json.dumps(found[0])  # the triggerer stores it as JSON
    return found[0]


def create_training_job(name: str = "seclake-ml-train-t1") -> str:
    config = build_training_config(
        make_cfg(), job_name=name, train_uri=f"{WORK}/channels/train/", validation_uri=None,
        output_uri=f"{WORK}/sagemaker/training/", role_arn=ROLE,
    )
    sm().create_training_job(**config)
    return name


def create_transform_job(name: str = "seclake-ml-xform-t1") -> str:
    sm().create_model(ModelName="seclake-ml-model-t1", ExecutionRoleArn=ROLE,
                      PrimaryContainer={"Image": IMAGE, "ModelDataUrl": ARTIFACT})
    sm().create_transform_job(**build_transform_config(
        job_name=name, model_name="seclake-ml-model-t1", input_uri=f"{WORK}/calibration/input/",
        output_uri=f"{WORK}/calibration/scores/",
    ))
    return name


def create_endpoint(config: str = "seclake-ml-epc-a") -> str:
    sm().create_model(ModelName="seclake-ml-model-a", ExecutionRoleArn=ROLE,
                      PrimaryContainer={"Image": IMAGE, "ModelDataUrl": ARTIFACT})
    sm().create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "seclake-ml-model-a", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }])
    sm().create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)
    return config


class ServerDescribes:
    """Wraps one ``Describe*`` of moto's SageMaker backend: counts the calls, steps the object on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str, step: Any = None) -> None:
        from moto.sagemaker.models import SageMakerModelBackend

        self.calls: list[str] = []
        original = getattr(SageMakerModelBackend, method)

        def describe(backend_self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            name = args[0] if args else next(iter(kwargs.values()))
            self.calls.append(name)
            if step is not None:
                step(backend_self, name, len(self.calls))
            return original(backend_self, *args, **kwargs)

        monkeypatch.setattr(SageMakerModelBackend, method, describe)


class FlakyClient:
    """The real aiobotocore client, but its ``describe_*`` calls first raise the queued errors."""

    def __init__(self, client: Any, errors: list[Exception], calls: list[str]) -> None:
        self._client, self._errors, self._calls = client, errors, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not name.startswith("describe_"):
            return attr

        async def call(**kwargs: Any) -> Any:
            self._calls.append(name)
            if self._errors:
                raise self._errors.pop(0)
            return await attr(**kwargs)

        return call


@pytest.fixture
def client_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[Exception], list[str]]]:
    """Queue errors for the trigger's async SageMaker client; the list of describe calls it made."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    errors: list[Exception] = []
    calls: list[str] = []
    original = SageMakerHook.get_async_conn

    class Context:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __aenter__(self) -> FlakyClient:
            return FlakyClient(await self.inner.__aenter__(), errors, calls)

        async def __aexit__(self, *exc: Any) -> Any:
            return await self.inner.__aexit__(*exc)

    async def get_async_conn(hook: Any) -> Context:
        return Context(await original(hook))

    monkeypatch.setattr(SageMakerHook, "get_async_conn", get_async_conn)
    yield errors, calls


def client_error(code: str, message: str, http_status: int = 400) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": http_status}}, "DescribeTrainingJob")


# --------------------------------------------------------------------------------- serialization
@pytest.mark.parametrize("job_type", ["training", "transform"])
def test_job_trigger_serializes_every_argument_and_round_trips(job_type: str) -> None:
    trigger = SageMakerJobTrigger(job_name="seclake-ml-job", job_type=job_type, aws_conn_id="aws_seclake",
                                  region_name="eu-west-1", poll_interval=45, max_attempts=100)
    classpath, kwargs = trigger.serialize()
    assert classpath == "seclake_ml.aws.triggers.SageMakerJobTrigger"
    assert kwargs == {"job_name": "seclake-ml-job", "job_type": job_type, "aws_conn_id": "aws_seclake",
                      "region_name": "eu-west-1", "poll_interval": 45.0, "max_attempts": 100}
    module, _, name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module), name) is SageMakerJobTrigger  # as the triggerer resolves it
    assert SageMakerJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert SageMakerJobTrigger("j", "training", None).serialize()[1] == {
        "job_name": "j", "job_type": "training", "aws_conn_id": None, "region_name": None,
        "poll_interval": 30.0, "max_attempts": 2880}


def test_endpoint_trigger_serializes_every_argument_and_round_trips() -> None:
    trigger = EndpointRolloutTrigger(endpoint_name=ENDPOINT, expected_config="seclake-ml-epc-b",
                                     aws_conn_id="aws_default", region_name=DEFAULT_REGION, poll_interval=10,
                                     max_attempts=7, previous_config="seclake-ml-epc-a")
    classpath, kwargs = trigger.serialize()
    assert classpath == "seclake_ml.aws.triggers.EndpointRolloutTrigger"
    assert kwargs == {"endpoint_name": ENDPOINT, "expected_config": "seclake-ml-epc-b", "aws_conn_id": "aws_default",
                      "region_name": DEFAULT_REGION, "poll_interval": 10.0, "max_attempts": 7,
                      "previous_config": "seclake-ml-epc-a"}
    assert EndpointRolloutTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SageMakerJobTrigger("j", "processing", None), "job_type"),  # type: ignore[arg-type]
        (lambda: SageMakerJobTrigger("", "training", None), "job_name"),
        (lambda: SageMakerJobTrigger("j", "training", None, max_attempts=0), "max_attempts"),
        (lambda: SageMakerJobTrigger("j", "training", None, poll_interval=-1), "poll_interval"),
        (lambda: EndpointRolloutTrigger(ENDPOINT, "", None), "expected_config"),
    ],
)
def test_bad_arguments_are_refused_by_name(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# -------------------------------------------------------------------------------------- job trigger
def test_completed_training_job_is_success(aws_env: MotoServer) -> None:
    name = create_training_job()
    event = only_event(SageMakerJobTrigger(name, "training", **fast()))
    assert event == {"status": "success", "job_name": name, "job_type": "training", "job_status": "Completed",
                     "message": f"SageMaker training job {name} Completed"}


def test_completed_transform_job_is_success(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = create_transform_job()
    polls = ServerDescribes(monkeypatch, "describe_transform_job")
    event = only_event(SageMakerJobTrigger(name, "transform", **fast()))
    assert (event["status"], event["job_type"], event["job_status"]) == ("success", "transform", "Completed")
    assert polls.calls == [name]  # polled DescribeTransformJob on the server, once


@pytest.mark.parametrize("job_type", ["training", "transform"])
def test_missing_job_is_failed_naming_it(aws_env: MotoServer, job_type: str) -> None:
    event = only_event(SageMakerJobTrigger("seclake-ml-no-such-job", job_type, **fast()))
    assert (event["status"], event["job_status"]) == ("failed", None)
    assert event["message"].startswith(f"SageMaker {job_type} job seclake-ml-no-such-job does not exist")


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_failed_or_stopped_job_is_failed_with_reason(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    name = create_training_job()
    job = backend().training_jobs[name]
    job.training_job_status, job.failure_reason = status, "AlgorithmError: out of memory\non line 2"
    event = only_event(SageMakerJobTrigger(name, "training", **fast()))
    assert (event["status"], event["job_status"]) == ("failed", status)
    assert event["message"] == f"SageMaker training job {name} {status}: AlgorithmError: out of memory on line 2"


def test_running_job_is_polled_until_it_completes(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = create_training_job()
    backend().training_jobs[name].training_job_status = "InProgress"

    def step(server: Any, job: str, call: int) -> None:
        if call == 3:  # SageMaker finishes the job between the second and third poll
            server.training_jobs[job].training_job_status = "Completed"

    polls = ServerDescribes(monkeypatch, "describe_training_job", step)
    event = only_event(SageMakerJobTrigger(name, "training", **fast(max_attempts=10)))
    assert (event["status"], event["job_status"]) == ("success", "Completed")
    assert polls.calls == [name] * 3


def test_job_still_running_after_max_attempts_is_timeout(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = create_transform_job()
    backend().transform_jobs[name].transform_job_status = "InProgress"
    polls = ServerDescribes(monkeypatch, "describe_transform_job")
    event = only_event(SageMakerJobTrigger(name, "transform", **fast(max_attempts=1)))
    assert (event["status"], event["job_status"]) == ("timeout", "InProgress")
    assert event["message"] == f"SageMaker transform job {name} still InProgress after 1 poll(s) over 0 s"
    assert len(polls.calls) == 1

    polls.calls.clear()
    event = only_event(SageMakerJobTrigger(name, "transform", **fast(max_attempts=3)))
    assert event["status"] == "timeout" and len(polls.calls) == 3


def test_throttled_poll_is_retried(aws_env: MotoServer, client_errors: tuple[list[Exception], list[str]]) -> None:
    errors, calls = client_errors
    name = create_training_job()
    errors.extend([client_error("ThrottlingException", "Rate exceeded"),
                   client_error("InternalFailure", "try again", http_status=500)])
    event = only_event(SageMakerJobTrigger(name, "training", **fast(max_attempts=5)))
    assert (event["status"], event["job_status"]) == ("success", "Completed")
    assert calls == ["describe_training_job"] * 3


def test_throttled_until_max_attempts_is_timeout_with_the_error(
    aws_env: MotoServer, client_errors: tuple[list[Exception], list[str]]
) -> None:
    errors, calls = client_errors
    name = create_training_job()
    errors.extend([client_error("ThrottlingException", "Rate exceeded")] * 2)
    event = only_event(SageMakerJobTrigger(name, "training", **fast(max_attempts=2)))
    assert (event["status"], event["job_status"]) == ("timeout", None)
    assert event["message"].endswith("the last poll failed: ThrottlingException: Rate exceeded")
    assert len(calls) == 2


def test_other_aws_error_is_reported_not_raised(
    aws_env: MotoServer, client_errors: tuple[list[Exception], list[str]]
) -> None:
    errors, calls = client_errors
    name = create_training_job()
    errors.append(client_error("AccessDeniedException", "not authorized to perform sagemaker:DescribeTrainingJob"))
    event = only_event(SageMakerJobTrigger(name, "training", **fast(max_attempts=5)))
    assert event["status"] == "failed" and event["job_status"] is None
    assert event["message"] == (f"describing SageMaker training job {name} failed: AccessDeniedException: "
                                "not authorized to perform sagemaker:DescribeTrainingJob")
    assert len(calls) == 1  # not retried


def test_client_that_cannot_be_made_is_reported_not_raised(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    async def get_async_conn(hook: Any) -> Any:
        raise RuntimeError("credential_process exited with 1")

    monkeypatch.setattr(SageMakerHook, "get_async_conn", get_async_conn)
    event = only_event(SageMakerJobTrigger("seclake-ml-train-x", "training", **fast()))
    assert event == {"status": "failed", "job_name": "seclake-ml-train-x", "job_type": "training", "job_status": None,
                     "message": "waiting for SageMaker training job seclake-ml-train-x failed: "
                                "RuntimeError: credential_process exited with 1"}


# --------------------------------------------------------------------------------- endpoint trigger
def test_endpoint_in_service_on_expected_config_is_success(aws_env: MotoServer) -> None:
    config = create_endpoint()
    event = only_event(EndpointRolloutTrigger(ENDPOINT, config, **fast()))
    assert event == {"status": "success", "endpoint_name": ENDPOINT, "endpoint_status": "InService",
                     "endpoint_config": config,
                     "message": f"SageMaker endpoint {ENDPOINT}: endpoint {ENDPOINT} is InService on {config}"}


def test_endpoint_in_service_on_another_config_is_rolled_back(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = create_endpoint()
    backend().endpoints[ENDPOINT].failure_reason = "Alarm seclake-ml-endpoint-5xx went into ALARM"
    polls = ServerDescribes(monkeypatch, "describe_endpoint")
    event = only_event(EndpointRolloutTrigger(ENDPOINT, "seclake-ml-epc-b", **fast(max_attempts=20)))
    assert (event["status"], event["endpoint_status"], event["endpoint_config"]) == (
        "rolled_back", "InService", config)
    assert "the update to seclake-ml-epc-b was rolled back; the endpoint serves seclake-ml-epc-a again" in event[
        "message"]
    assert "went into ALARM" in event["message"]
    # never saw the update in progress: the old config is only believed after SETTLE_POLLS more looks
    assert len(polls.calls) == SETTLE_POLLS + 1


def test_endpoint_update_then_rollback_is_rolled_back_at_once(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = create_endpoint()
    backend().endpoints[ENDPOINT].endpoint_status = "Updating"

    def step(server: Any, name: str, call: int) -> None:
        if call == 2:  # RollingBack, then back InService on the old config
            server.endpoints[name].endpoint_status = "RollingBack"
        if call == 3:
            server.endpoints[name].endpoint_status = "InService"

    polls = ServerDescribes(monkeypatch, "describe_endpoint", step)
    event = only_event(EndpointRolloutTrigger(ENDPOINT, "seclake-ml-epc-b", previous_config=config,
                                              **fast()))
    assert (event["status"], event["endpoint_config"]) == ("rolled_back", config)
    assert len(polls.calls) == 3


def test_endpoint_updating_then_in_service_is_success(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    create_endpoint()
    sm().create_endpoint_config(EndpointConfigName="seclake-ml-epc-b", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "seclake-ml-model-a", "InitialInstanceCount": 2,
        "InstanceType": "ml.m5.large"}])
    backend().endpoints[ENDPOINT].endpoint_status = "Updating"

    def step(server: Any, name: str, call: int) -> None:
        if call == 4:
            endpoint = server.endpoints[name]
            endpoint.endpoint_status, endpoint.endpoint_config_name = "InService", "seclake-ml-epc-b"

    polls = ServerDescribes(monkeypatch, "describe_endpoint", step)
    event = only_event(EndpointRolloutTrigger(ENDPOINT, "seclake-ml-epc-b", **fast(max_attempts=20)))
    assert (event["status"], event["endpoint_config"]) == ("success", "seclake-ml-epc-b")
    assert len(polls.calls) == 4


@pytest.mark.parametrize("status", ["Failed", "UpdateRollbackFailed"])
def test_broken_endpoint_is_failed_with_reason(aws_env: MotoServer, status: str) -> None:
    config = create_endpoint()
    endpoint = backend().endpoints[ENDPOINT]
    endpoint.endpoint_status, endpoint.failure_reason = status, "capacity error"
    event = only_event(EndpointRolloutTrigger(ENDPOINT, "seclake-ml-epc-b", **fast()))
    assert (event["status"], event["endpoint_status"], event["endpoint_config"]) == ("failed", status, config)
    assert f"found {status} on {config} (capacity error)" in event["message"]


def test_missing_endpoint_is_failed_naming_it(aws_env: MotoServer) -> None:
    event = only_event(EndpointRolloutTrigger("seclake-ml-nothing", "seclake-ml-epc-b", **fast()))
    assert (event["status"], event["endpoint_status"], event["endpoint_config"]) == ("failed", None, None)
    assert event["message"].startswith("SageMaker endpoint seclake-ml-nothing does not exist")


def test_endpoint_still_creating_is_timeout(aws_env: MotoServer) -> None:
    config = create_endpoint()
    backend().endpoints[ENDPOINT].endpoint_status = "Creating"
    event = only_event(EndpointRolloutTrigger(ENDPOINT, config, **fast(max_attempts=1)))
    assert (event["status"], event["endpoint_status"]) == ("timeout", "Creating")
    assert event["message"] == (f"SageMaker endpoint {ENDPOINT}: still Creating on {config} after 0 s "
                                f"waiting for {config}")


# ------------------------------------------------------------------------------- phased rollout
@pytest.fixture
def alarms(aws_env: MotoServer) -> MotoServer:
    for name in ALARMS:
        boto3.client("cloudwatch", region_name=DEFAULT_REGION).put_metric_alarm(
            AlarmName=name, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    return aws_env


def parameter(name: str) -> dict[str, Any] | None:
    ssm = boto3.client("ssm", region_name=DEFAULT_REGION)
    try:
        return json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def start(data_url: str = V1, version: str = "v1") -> dict[str, Any]:
    started = start_rollout(make_cfg(), model_data_url=data_url, version=version, threshold=-0.5)
    json.dumps(started)  # travels through defer(kwargs=...)
    return started


def deferred_rollout(started: dict[str, Any]) -> dict[str, Any]:
    """What the deferrable operator does: build the trigger, let it run, complete with its event."""
    trigger = rollout_trigger(make_cfg(), started, check_interval=0, max_wait_seconds=5)
    classpath, kwargs = trigger.serialize()
    rebuilt = EndpointRolloutTrigger(**{**kwargs, "poll_interval": 0.01})  # as the triggerer would, but fast
    return only_event(rebuilt)


def test_rollout_complete_records_on_success(alarms: MotoServer) -> None:
    started = start()
    assert (started["action"], started["done"], started["endpoint_name"]) == ("created", False, ENDPOINT)
    assert parameter(ACTIVE) is None  # nothing recorded before the wait
    event = deferred_rollout(started)
    assert event["status"] == "success" and event["endpoint_config"] == started["endpoint_config_name"]

    result = rollout_complete(make_cfg(), started, event, now=NOW)
    assert result["record"] == parameter(ACTIVE)
    assert parameter(ACTIVE) == {
        "version": "v1", "threshold": -0.5, "endpoint_name": ENDPOINT,
        "endpoint_config_name": started["endpoint_config_name"], "model_name": started["model_name"],
        "model_data_url": V1, "image_uri": IMAGE, "activated_at": NOW.isoformat(),
        "previous_endpoint_config_name": None,
    }
    assert (result["action"], result["parameters"]["active"]) == ("created", ACTIVE)

    again = start()  # a re-run: already InService on the config, nothing to wait for
    assert (again["action"], again["done"]) == ("unchanged", True)
    assert rollout_complete(make_cfg(), again, None)["record"] == parameter(ACTIVE)


def test_rollout_complete_records_nothing_on_rollback(alarms: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    first = start()
    rollout_complete(make_cfg(), first, deferred_rollout(first), now=NOW)
    before = parameter(ACTIVE)
    assert before is not None and before["version"] == "v1"

    def update_endpoint(hook: Any, config: dict[str, Any], wait_for_completion: bool = True, **_: Any) -> dict:
        endpoint = backend().endpoints[config["EndpointName"]]
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = "Alarm seclake-ml-endpoint-5xx went into ALARM; deployment rolled back"
        return {"EndpointArn": "arn"}

    def step(server: Any, name: str, call: int) -> None:
        if call == 2:  # the alarm fires: SageMaker rolls back to the old config
            server.endpoints[name].endpoint_status = "InService"

    monkeypatch.setattr(SageMakerHook, "update_endpoint", update_endpoint)
    second = start(V2, "v2")
    assert (second["action"], second["previous_endpoint_config_name"]) == (
        "updated", first["endpoint_config_name"])
    ServerDescribes(monkeypatch, "describe_endpoint", step)
    event = deferred_rollout(second)
    assert (event["status"], event["endpoint_config"]) == ("rolled_back", first["endpoint_config_name"])

    with pytest.raises(EndpointRolloutError) as info:
        rollout_complete(make_cfg(), second, event)
    message = str(info.value)
    assert message.startswith(f"SageMaker endpoint {ENDPOINT} (InService): the update to "
                              f"{second['endpoint_config_name']} was rolled back")
    assert "went into ALARM" in message and message.endswith("Nothing was recorded")
    assert info.value.endpoint_name == ENDPOINT
    assert parameter(ACTIVE) == before  # still v1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"status": "failed", "endpoint_name": ENDPOINT, "endpoint_status": "Failed", "endpoint_config": "c",
          "message": f"SageMaker endpoint {ENDPOINT}: expected InService on x, found Failed on c (capacity error)"},
         r"\(Failed\): expected InService on x, found Failed on c \(capacity error\). Nothing was recorded"),
        ({"status": "timeout", "endpoint_name": ENDPOINT, "endpoint_status": "Creating", "endpoint_config": "c",
          "message": f"SageMaker endpoint {ENDPOINT}: still Creating on c after 14400 s waiting for x"},
         r"still Creating on c after 14400 s.*Nothing was recorded"),
        ({"status": "success", "endpoint_name": "seclake-ml-other", "endpoint_status": "InService",
          "endpoint_config": "c", "message": "ok"}, "for endpoint 'seclake-ml-other'"),
        ({"status": "success", "endpoint_name": ENDPOINT, "endpoint_status": "InService",
          "endpoint_config": "seclake-ml-epc-other", "message": "ok"}, "success on 'seclake-ml-epc-other', not on"),
        (None, "no trigger event"),
    ],
)
def test_rollout_complete_raises_on_other_events_and_records_nothing(
    alarms: MotoServer, event: dict[str, Any] | None, message: str
) -> None:
    started = start()
    with pytest.raises(EndpointRolloutError, match=message) as info:
        rollout_complete(make_cfg(), started, event)
    assert info.value.endpoint_name == ENDPOINT and ENDPOINT in str(info.value)
    assert parameter(ACTIVE) is None
