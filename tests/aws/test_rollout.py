"""Endpoint rollout and model registry against the moto server on loopback.

The create path runs entirely against moto: Model, EndpointConfig and Endpoint are read back with
the Describe calls and the registry with ``GetParameter``. moto has no ``UpdateEndpoint`` (its
SageMaker backend implements only ``UpdateEndpointWeightsAndCapacities``), so the update tests
replace that one call at the hook boundary, ``SageMakerHook.update_endpoint``: the stand-in records
the exact request and then moves the endpoint object inside the server (which runs in this process)
the way SageMaker would: ``Updating``, then ``InService`` on the new config, or back on the old one
after an alarm-driven rollback. Everything else, including the status polling, goes to moto.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from seclake_ml.aws import registry, rollout
from seclake_ml.aws.rollout import EndpointRolloutError, deployment_config, rollout_endpoint
from seclake_ml.config import SeclakeConfig

from .moto_server import DEFAULT_ACCOUNT, DEFAULT_REGION, MotoServer

WORK = "s3://seclake-work/ml"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/seclake-ml-sagemaker"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
V1 = f"{WORK}/sagemaker/training/seclake-ml-train-v1/output/model.tar.gz"
V2 = f"{WORK}/sagemaker/training/seclake-ml-train-v2/output/model.tar.gz"
ENDPOINT = "seclake-ml-ipinsights"
ALARMS = ["seclake-ml-endpoint-5xx", "seclake-ml-endpoint-latency"]
ACTIVE = f"/seclake-ml/ipinsights/{ENDPOINT}/active"
PREVIOUS = f"/seclake-ml/ipinsights/{ENDPOINT}/previous"
NOW = datetime(2026, 1, 8, 6, 0, tzinfo=timezone.utc)


def make_cfg(**sagemaker: Any) -> SeclakeConfig:
    return SeclakeConfig(backend="aws", region=DEFAULT_REGION, work_location=WORK,
                         extra={"sagemaker": {"role_arn": ROLE, "alarms": ALARMS, **sagemaker}})


def client(service: str):
    return boto3.client(service, region_name=DEFAULT_REGION)


def backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT][DEFAULT_REGION]


def parameter(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except client("ssm").exceptions.ParameterNotFound:
        return None


@pytest.fixture
def alarms(aws_env: MotoServer) -> MotoServer:
    for name in ALARMS:
        client("cloudwatch").put_metric_alarm(
            AlarmName=name, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    return aws_env


def deploy(data_url: str = V1, version: str = "v1", threshold: float = -0.5, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"check_interval": 0, "now": NOW, **kw}
    return rollout_endpoint(make_cfg(), model_data_url=data_url, version=version, threshold=threshold, **args)


# ------------------------------------------------------------------------------------ create path
def test_create_path_deploys_and_records(alarms: MotoServer) -> None:
    result = deploy(metadata={"auc": 0.93}, tags={"project": "seclake-ml"})
    model, epc = result["model_name"], result["endpoint_config_name"]
    assert (result["action"], result["endpoint_name"], result["previous_endpoint_config_name"]) == (
        "created", ENDPOINT, None)
    assert model.startswith("seclake-ml-model-") and epc.startswith("seclake-ml-epc-")

    described = client("sagemaker").describe_model(ModelName=model)
    assert described["PrimaryContainer"]["Image"] == IMAGE
    assert described["PrimaryContainer"]["ModelDataUrl"] == V1
    assert described["ExecutionRoleArn"] == ROLE
    config = client("sagemaker").describe_endpoint_config(EndpointConfigName=epc)
    assert config["ProductionVariants"] == [{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0,
    }]
    endpoint = client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", epc)

    record = {
        "auc": 0.93, "version": "v1", "threshold": -0.5, "endpoint_name": ENDPOINT, "endpoint_config_name": epc,
        "model_name": model, "model_data_url": V1, "image_uri": IMAGE, "activated_at": NOW.isoformat(),
        "previous_endpoint_config_name": None,
    }
    assert parameter(ACTIVE) == record == result["record"]
    assert parameter(PREVIOUS) is None
    assert registry.read_active(make_cfg(), endpoint_name=ENDPOINT) == record
    assert registry.read_active(make_cfg()) == record  # the default endpoint is the rollout's
    assert result["parameters"] == {"active": ACTIVE, "previous": None, "previous_version": None}


def test_rerun_changes_nothing_and_keeps_previous(alarms: MotoServer) -> None:
    first = deploy()
    again = deploy(now=datetime(2026, 1, 9, tzinfo=timezone.utc))
    assert again["action"] == "unchanged" and again["endpoint_config_name"] == first["endpoint_config_name"]
    assert parameter(PREVIOUS) is None
    assert parameter(ACTIVE) == first["record"] == again["record"]  # activation time of the first run kept
    assert len(client("sagemaker").list_endpoint_configs()["EndpointConfigs"]) == 1


def test_missing_alarm_fails_before_any_change(alarms: MotoServer) -> None:
    with pytest.raises(ValueError, match=r"no metric alarm named \['seclake-ml-missing'\]"):
        deploy(alarms=["seclake-ml-missing"])
    assert client("sagemaker").list_models()["Models"] == []
    assert client("sagemaker").list_endpoints()["Endpoints"] == []
    assert parameter(ACTIVE) is None


@pytest.mark.parametrize("status", ["Failed", "OutOfService"])
def test_create_that_does_not_reach_in_service_records_nothing(
    alarms: MotoServer, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    from moto.sagemaker.models import FakeEndpoint

    original = FakeEndpoint.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.endpoint_status, self.failure_reason = status, "capacity error"

    monkeypatch.setattr(FakeEndpoint, "__init__", init)
    with pytest.raises(EndpointRolloutError, match=f"found {status} .*capacity error.*Nothing was recorded"):
        deploy()
    assert parameter(ACTIVE) is None and parameter(PREVIOUS) is None


def test_create_that_stays_creating_times_out_and_records_nothing(
    alarms: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sagemaker.models import FakeEndpoint

    original = FakeEndpoint.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.endpoint_status = "Creating"

    monkeypatch.setattr(FakeEndpoint, "__init__", init)
    sleeps: list[float] = []
    monkeypatch.setattr(rollout, "_sleep", sleeps.append)
    with pytest.raises(EndpointRolloutError, match="still Creating .*Nothing was recorded"):
        deploy(check_interval=10, max_wait_seconds=30)
    assert sleeps == [10, 10, 10]
    assert parameter(ACTIVE) is None


# ------------------------------------------------------------------------------------ update path
class UpdateStandIn:
    """Replaces ``SageMakerHook.update_endpoint`` (moto lacks ``UpdateEndpoint``) and drives the endpoint.

    ``outcome`` ``"success"``: ``Updating`` then ``InService`` on the requested config;
    ``"rollback"``: ``Updating`` then ``InService`` on the config it had before, with a failure reason.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, outcome: str) -> None:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        self.calls: list[tuple[dict[str, Any], bool]] = []
        self.outcome = outcome
        stand_in = self

        def update_endpoint(hook: Any, config: dict[str, Any], wait_for_completion: bool = True, **_: Any) -> dict:
            stand_in.calls.append((json.loads(json.dumps(config)), wait_for_completion))
            backend().endpoints[config["EndpointName"]].endpoint_status = "Updating"
            stand_in.target = config["EndpointConfigName"]
            return {"EndpointArn": "arn"}

        monkeypatch.setattr(SageMakerHook, "update_endpoint", update_endpoint)
        monkeypatch.setattr(rollout, "_sleep", self.tick)

    def tick(self, seconds: float) -> None:
        """One polling interval passes: the deployment finishes."""
        endpoint = backend().endpoints[ENDPOINT]
        if endpoint.endpoint_status != "Updating":
            return
        endpoint.endpoint_status = "InService"
        if self.outcome == "success":
            endpoint.endpoint_config_name = self.target
        else:
            endpoint.failure_reason = "Alarm seclake-ml-endpoint-5xx went into ALARM; deployment rolled back"


def test_update_path_sends_blue_green_with_auto_rollback_and_records_after_in_service(
    alarms: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = deploy()
    stand_in = UpdateStandIn(monkeypatch, "success")
    result = deploy(V2, "v2", -0.25, traffic_routing="CANARY", step_percent=25, wait_interval_seconds=600,
                    termination_wait_seconds=120, max_execution_timeout_seconds=1800)

    assert result["action"] == "updated" and result["previous_endpoint_config_name"] == first["endpoint_config_name"]
    assert result["endpoint_config_name"] != first["endpoint_config_name"]
    assert stand_in.calls == [({
        "EndpointName": ENDPOINT,
        "EndpointConfigName": result["endpoint_config_name"],
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY", "WaitIntervalInSeconds": 600,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                },
                "TerminationWaitInSeconds": 120,
                "MaximumExecutionTimeoutInSeconds": 1800,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in ALARMS]},
        },
    }, False)]
    new_config = client("sagemaker").describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    assert new_config["ProductionVariants"][0]["ModelName"] == result["model_name"]
    assert client("sagemaker").describe_model(ModelName=result["model_name"])["PrimaryContainer"]["ModelDataUrl"] == V2

    active, previous = parameter(ACTIVE), parameter(PREVIOUS)
    assert active is not None and previous is not None
    assert (active["version"], active["threshold"], active["endpoint_config_name"]) == (
        "v2", -0.25, result["endpoint_config_name"])
    assert active["previous_endpoint_config_name"] == first["endpoint_config_name"]
    assert previous == first["record"]
    assert result["parameters"] == {"active": ACTIVE, "previous": PREVIOUS, "previous_version": "v1"}
    assert result["previous_version"] == "v1"


def test_rolled_back_update_raises_and_records_nothing(alarms: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy()
    stand_in = UpdateStandIn(monkeypatch, "rollback")
    with pytest.raises(EndpointRolloutError) as info:
        deploy(V2, "v2", -0.25)
    message = str(info.value)
    assert "was rolled back" in message and first["endpoint_config_name"] in message
    assert "went into ALARM" in message and "Nothing was recorded" in message
    assert len(stand_in.calls) == 1
    assert parameter(ACTIVE) == first["record"]  # still the old version
    assert parameter(PREVIOUS) is None


def test_busy_endpoint_is_not_touched(alarms: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy()
    stand_in = UpdateStandIn(monkeypatch, "success")
    backend().endpoints[ENDPOINT].endpoint_status = "Updating"
    with pytest.raises(EndpointRolloutError, match="another deployment is in progress"):
        deploy(V2, "v2", -0.25)
    assert stand_in.calls == []


# -------------------------------------------------------------------------- deployment config
def test_deployment_config_all_at_once_and_without_alarms() -> None:
    assert deployment_config(alarms=[]) == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }
    linear = deployment_config(alarms=["a"], traffic_routing="LINEAR", step_percent=20)
    assert linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"] == {
        "Type": "CAPACITY_PERCENT", "Value": 20}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"traffic_routing": "ROLLING"}, "traffic_routing"),
        ({"traffic_routing": "CANARY", "step_percent": 60}, "step_percent"),
        ({"termination_wait_seconds": 4000}, "termination_wait_seconds"),
        ({"max_execution_timeout_seconds": 300}, "max_execution_timeout_seconds"),
        ({"alarms": "one-alarm"}, "alarms"),
        ({"alarms": [f"a{i}" for i in range(11)]}, "at most 10"),
    ],
)
def test_deployment_config_rejects_bad_values(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"alarms": ["a"], **kw}
    with pytest.raises(ValueError, match=message):
        deployment_config(**args)


# ------------------------------------------------------------------------------------ registry
def test_registry_rejects_incomplete_records_and_bad_paths(aws_env: MotoServer) -> None:
    with pytest.raises(registry.RegistryError, match="misses"):
        registry.record_active(make_cfg(), {"version": "v1", "threshold": 0.1, "endpoint_name": ENDPOINT})
    with pytest.raises(registry.RegistryError, match="finite"):
        registry.record_active(make_cfg(), {"version": "v1", "threshold": float("nan"), "endpoint_name": ENDPOINT,
                                            "endpoint_config_name": "c", "model_name": "m"})
    with pytest.raises(ValueError, match="ssm_path"):
        registry.parameter_names("seclake-ml/ipinsights", ENDPOINT)
    with pytest.raises(ValueError, match="ssm_path"):
        registry.parameter_names("/aws/reserved", ENDPOINT)
    assert registry.read_active(make_cfg(), endpoint_name=ENDPOINT) is None
    client("ssm").put_parameter(Name=ACTIVE, Value="not json", Type="String")
    with pytest.raises(registry.RegistryError, match="not JSON"):
        registry.read_active(make_cfg(), endpoint_name=ENDPOINT)


def test_registry_path_from_config(aws_env: MotoServer) -> None:
    cfg = make_cfg(ssm_path="/team/models")
    rec = {"version": "v1", "threshold": 1.5, "endpoint_name": ENDPOINT, "endpoint_config_name": "c",
           "model_name": "m"}
    written = registry.record_active(cfg, rec)
    assert written["active"] == f"/team/models/{ENDPOINT}/active"
    assert parameter(f"/team/models/{ENDPOINT}/active") == rec
    assert registry.read_previous(cfg, endpoint_name=ENDPOINT) is None
