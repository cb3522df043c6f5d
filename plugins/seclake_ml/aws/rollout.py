"""Put a trained IP Insights model behind the SageMaker endpoint, then record it as active.

:func:`rollout_endpoint`:

1. checks that the CloudWatch alarms named for auto-rollback exist (before anything changes);
2. creates the SageMaker Model unless it exists (same artifact and image, else an error);
3. creates the EndpointConfig (deterministic name from model, instance type and count) unless it
   exists;
4. creates the endpoint when there is none; when it exists and already runs this config, changes
   nothing; otherwise calls ``UpdateEndpoint`` with a blue/green ``DeploymentConfig``: traffic
   routing ``ALL_AT_ONCE``, ``CANARY`` or ``LINEAR``, the termination wait, the maximum execution
   timeout and an ``AutoRollbackConfiguration`` with the alarms;
5. waits until the endpoint leaves ``Creating``/``Updating``/``RollingBack``. ``InService`` on the new
   config is success. ``InService`` on the previous config means SageMaker rolled the update back
   (an alarm fired or the new fleet failed): :class:`EndpointRolloutError`, nothing is recorded.
   ``Failed``, ``UpdateRollbackFailed``, ``OutOfService`` or a time-out raise as well;
6. only then writes the registry record (version, threshold, endpoint, config, model, artifact,
   image, time) with :func:`seclake_ml.aws.registry.record_active`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting, require_setting
from seclake_ml.aws import names as naming
from seclake_ml.aws.image_uris import resolve_image_uri
from seclake_ml.aws.registry import record_active, validate_record
from seclake_ml.aws.training import describe_or_none, ensure_model, sagemaker_hook

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

log = logging.getLogger(__name__)

VARIANT_NAME = "AllTraffic"
TRAFFIC_ROUTING = ("ALL_AT_ONCE", "CANARY", "LINEAR")
BUSY_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
BROKEN_STATES = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService"})
# InService on the old config before any in-progress state was seen may just be the update not
# showing yet; look this many more times before calling it a rollback.
SETTLE_POLLS = 3
_sleep = time.sleep  # tests replace this to step the endpoint through its states


class EndpointRolloutError(RuntimeError):
    """The endpoint did not end up ``InService`` on the new configuration; nothing was recorded."""

    def __init__(self, endpoint_name: str, status: str | None, reason: str):
        self.endpoint_name = endpoint_name
        self.status = status
        self.reason = reason
        super().__init__(f"SageMaker endpoint {endpoint_name} ({status or 'status unknown'}): {reason}")


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: got {value!r}; expected an int in [{low}, {high}]")
    return value


def deployment_config(
    *,
    alarms: Sequence[str],
    traffic_routing: str = "ALL_AT_ONCE",
    wait_interval_seconds: int = 300,
    step_percent: int = 10,
    termination_wait_seconds: int = 300,
    max_execution_timeout_seconds: int = 3600,
) -> dict[str, Any]:
    """The ``DeploymentConfig`` of a blue/green endpoint update with alarm-driven auto-rollback.

    :param alarms: CloudWatch alarm names (0-10); any of them in ALARM during the update rolls it back.
        Without alarms no ``AutoRollbackConfiguration`` is sent (a warning is logged).
    :param traffic_routing: ``ALL_AT_ONCE``, ``CANARY`` (``step_percent`` of capacity first, the rest
        after ``wait_interval_seconds``) or ``LINEAR`` (steps of ``step_percent``).
    :param wait_interval_seconds: baking time between traffic shifts, 0-3600.
    :param step_percent: canary size or linear step, as a percentage of the new fleet, 1-100
        (a canary may be at most 50).
    :param termination_wait_seconds: how long the old fleet is kept after the shift, 0-3600.
    :param max_execution_timeout_seconds: the whole deployment's limit, 600-28800.
    """
    if traffic_routing not in TRAFFIC_ROUTING:
        raise ValueError(f"traffic_routing: got {traffic_routing!r}; allowed: {' | '.join(TRAFFIC_ROUTING)}")
    routing: dict[str, Any] = {
        "Type": traffic_routing,
        "WaitIntervalInSeconds": _int_in(wait_interval_seconds, "wait_interval_seconds", 0, 3600),
    }
    if traffic_routing == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": _int_in(step_percent, "step_percent", 1, 50)}
    elif traffic_routing == "LINEAR":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": _int_in(step_percent, "step_percent", 1, 100)}
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": _int_in(termination_wait_seconds, "termination_wait_seconds", 0, 3600),
            "MaximumExecutionTimeoutInSeconds": _int_in(
                max_execution_timeout_seconds, "max_execution_timeout_seconds", 600, 28800
            ),
        }
    }
    names = _alarm_names(alarms)
    if names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in names]}
    else:
        log.warning("endpoint update without CloudWatch alarms: SageMaker cannot roll it back automatically")
    return config


def _alarm_names(alarms: Sequence[str] | None) -> list[str]:
    if alarms is None:
        return []
    if isinstance(alarms, str) or not all(isinstance(a, str) and a.strip() and len(a) <= 255 for a in alarms):
        raise ValueError(f"alarms: got {alarms!r}; expected a list of CloudWatch alarm names")
    names = list(dict.fromkeys(alarms))
    if len(names) > 10:
        raise ValueError(f"alarms: got {len(names)} names; SageMaker takes at most 10")
    return names


def check_alarms_exist(cfg: Any, alarms: Sequence[str], *, aws_conn_id: str | None = "aws_default") -> None:
    """Raise ``ValueError`` naming the alarms CloudWatch does not know as metric alarms.

    The provider has no CloudWatch hook, so the generic :class:`AwsBaseHook` client is used. Only
    metric alarms are looked up: ``cloudwatch:DescribeAlarms`` is granted on ``<prefix>-*`` alarms,
    and composite alarms can only be described with ``Resource: "*"``.
    """
    names = _alarm_names(alarms)
    if not names:
        return
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    cloudwatch = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="cloudwatch", region_name=cfg.region).conn
    response = cloudwatch.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm"])
    found = {a["AlarmName"] for a in response.get("MetricAlarms", [])}
    missing = [a for a in names if a not in found]
    if missing:
        raise ValueError(f"alarms: CloudWatch has no metric alarm named {missing} in {cfg.region}; create them first")


def ensure_endpoint_config(
    hook: SageMakerHook,
    *,
    name: str,
    model_name: str,
    instance_type: str,
    instance_count: int = 1,
    tags: Mapping[str, str] | None = None,
) -> bool:
    """Create the single-variant EndpointConfig ``name`` unless it exists; ``True`` when created."""
    found = describe_or_none(hook.describe_endpoint_config, name)
    if found is not None:
        models = [v.get("ModelName") for v in found.get("ProductionVariants", [])]
        if models != [model_name]:
            raise ValueError(f"endpoint config {name} exists for model(s) {models}, not {model_name}")
        log.info("endpoint config %s already exists; reusing it", name)
        return False
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [{
            "VariantName": VARIANT_NAME,
            "ModelName": model_name,
            "InitialInstanceCount": instance_count,
            "InstanceType": instance_type,
            "InitialVariantWeight": 1.0,
        }],
    }
    if tags:
        config["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
    hook.create_endpoint_config(config)
    log.info("created endpoint config %s: model %s on %d x %s", name, model_name, instance_count, instance_type)
    return True


def wait_for_endpoint(
    hook: SageMakerHook,
    endpoint_name: str,
    *,
    new_config: str,
    previous_config: str | None,
    check_interval: float = 30,
    max_wait_seconds: float = 4 * 3600,
) -> dict[str, Any]:
    """Poll until the endpoint serves ``new_config``; raise :class:`EndpointRolloutError` otherwise."""
    waited = 0.0
    seen_busy = False
    settle = 0
    while True:
        description = hook.describe_endpoint(endpoint_name)
        status = description.get("EndpointStatus")
        current = description.get("EndpointConfigName")
        if status in BUSY_STATES:
            seen_busy = True
        elif status == "InService" and current == new_config:
            return description
        elif status == "InService" and previous_config is not None and current == previous_config:
            if seen_busy or settle >= SETTLE_POLLS:
                raise EndpointRolloutError(
                    endpoint_name, status,
                    f"the update to {new_config} was rolled back; the endpoint serves {previous_config} again "
                    f"({description.get('FailureReason') or 'no failure reason given'}). Nothing was recorded",
                )
            settle += 1
        elif status in BROKEN_STATES or status == "InService":
            raise EndpointRolloutError(
                endpoint_name, status,
                f"expected InService on {new_config}, found {status} on {current} "
                f"({description.get('FailureReason') or 'no failure reason given'}). Nothing was recorded",
            )
        if waited >= max_wait_seconds:
            raise EndpointRolloutError(
                endpoint_name, status,
                f"still {status} on {current} after {waited:.0f} s waiting for {new_config}. Nothing was recorded",
            )
        _sleep(check_interval)
        waited += max(check_interval, 1e-3)


def rollout_endpoint(
    cfg: Any,
    *,
    model_data_url: str,
    version: str,
    threshold: float,
    model_name: str | None = None,
    image_uri: str | None = None,
    role_arn: str | None = None,
    endpoint_name: str | None = None,
    instance_type: str | None = None,
    instance_count: int = 1,
    alarms: Sequence[str] | None = None,
    traffic_routing: str = "ALL_AT_ONCE",
    wait_interval_seconds: int = 300,
    step_percent: int = 10,
    termination_wait_seconds: int = 300,
    max_execution_timeout_seconds: int = 3600,
    metadata: Mapping[str, Any] | None = None,
    ssm_path: str | None = None,
    tags: Mapping[str, str] | None = None,
    check_interval: float = 30,
    max_wait_seconds: float = 4 * 3600,
    aws_conn_id: str | None = "aws_default",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Deploy ``model_data_url`` to the endpoint (create or blue/green update) and record it as active.

    :param cfg: package configuration (region; ``extra.sagemaker`` settings).
    :param model_data_url: the trained ``model.tar.gz``.
    :param version: model version to record (e.g. the training job name).
    :param threshold: calibrated decision threshold recorded with the version.
    :param model_name: SageMaker model name; derived from artifact and image when ``None``.
    :param image_uri: inference image; default from the region.
    :param role_arn: model execution role; default ``extra.sagemaker.role_arn``.
    :param endpoint_name: default ``<resource_prefix>-ipinsights``.
    :param instance_type: default ``extra.sagemaker.endpoint_instance_type``.
    :param instance_count: endpoint instances.
    :param alarms: CloudWatch alarms for auto-rollback; default ``extra.sagemaker.alarms``.
    :param traffic_routing: ``ALL_AT_ONCE``, ``CANARY`` or ``LINEAR`` (see :func:`deployment_config`).
    :param wait_interval_seconds: baking time between traffic shifts.
    :param step_percent: canary size or linear step in percent.
    :param termination_wait_seconds: how long the old fleet stays after the shift.
    :param max_execution_timeout_seconds: the deployment's own limit.
    :param metadata: extra JSON fields stored in the record (e.g. AUC, calibration report URI).
    :param ssm_path: registry base path; default ``extra.sagemaker.ssm_path``.
    :param tags: resource tags of the model and endpoint config (and endpoint when created).
    :param check_interval: seconds between endpoint status checks.
    :param max_wait_seconds: give up waiting (and record nothing) after this long.
    :param aws_conn_id: Airflow AWS connection.
    :param now: activation time to record (default: the current UTC time).
    :return: endpoint, endpoint config and model names, ``action`` (``created``, ``updated`` or
        ``unchanged``), the previous endpoint config, the version it replaced (``previous_version``),
        the record written and its parameter names.
    """
    prefix = naming.validate_prefix(aws_setting(cfg, "resource_prefix"))
    image = resolve_image_uri(cfg, image_uri)
    endpoint = endpoint_name or naming.endpoint_name(prefix)
    if not endpoint.startswith(prefix + "-"):
        log.warning("endpoint %s does not start with %s-: the IAM policies in include/iam do not cover it",
                    endpoint, prefix)
    instance_type = aws_setting(cfg, "endpoint_instance_type", instance_type)
    alarm_names = _alarm_names(aws_setting(cfg, "alarms", alarms))
    update_config = deployment_config(
        alarms=alarm_names, traffic_routing=traffic_routing, wait_interval_seconds=wait_interval_seconds,
        step_percent=step_percent, termination_wait_seconds=termination_wait_seconds,
        max_execution_timeout_seconds=max_execution_timeout_seconds,
    )
    model = model_name or naming.model_name(prefix, model_data_url=model_data_url, image_uri=image)
    epc = naming.endpoint_config_name(prefix, model_name=model, instance_type=instance_type,
                                      instance_count=instance_count)
    record = validate_record({
        **dict(metadata or {}),
        "version": version,
        "threshold": threshold,
        "endpoint_name": endpoint,
        "endpoint_config_name": epc,
        "model_name": model,
        "model_data_url": model_data_url,
        "image_uri": image,
    })
    role = require_setting(cfg, "role_arn", role_arn)
    check_alarms_exist(cfg, alarm_names, aws_conn_id=aws_conn_id)

    hook = sagemaker_hook(cfg, aws_conn_id)
    ensure_model(hook, model_name=model, model_data_url=model_data_url, image_uri=image, role_arn=role, tags=tags)
    ensure_endpoint_config(hook, name=epc, model_name=model, instance_type=instance_type,
                           instance_count=instance_count, tags=tags)

    found = describe_or_none(hook.describe_endpoint, endpoint)
    previous = found.get("EndpointConfigName") if found else None
    if found is None:
        request: dict[str, Any] = {"EndpointName": endpoint, "EndpointConfigName": epc}
        if tags:
            request["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
        log.info("creating endpoint %s with config %s", endpoint, epc)
        hook.create_endpoint(request, wait_for_completion=False)
        action = "created"
    elif found.get("EndpointStatus") in BUSY_STATES:
        raise EndpointRolloutError(
            endpoint, found.get("EndpointStatus"),
            "another deployment is in progress; retry when it has finished. Nothing was changed",
        )
    elif previous == epc and found.get("EndpointStatus") == "InService":
        log.info("endpoint %s already serves %s; not updating it", endpoint, epc)
        action = "unchanged"
    else:
        request = {"EndpointName": endpoint, "EndpointConfigName": epc, "DeploymentConfig": update_config}
        log.info("updating endpoint %s from %s to %s (%s, rollback alarms %s)", endpoint, previous, epc,
                 traffic_routing, alarm_names)
        hook.update_endpoint(request, wait_for_completion=False)
        action = "updated"

    wait_for_endpoint(hook, endpoint, new_config=epc, previous_config=previous if action == "updated" else None,
                      check_interval=check_interval, max_wait_seconds=max_wait_seconds)
    activated = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
    record.update({"activated_at": activated, "previous_endpoint_config_name": previous})
    written = record_active(cfg, record, ssm_path=ssm_path, aws_conn_id=aws_conn_id)
    record = written.pop("record")
    log.info("endpoint %s InService on %s (%s); version %s recorded in %s", endpoint, epc, action, version,
             written["active"])
    return {
        "endpoint_name": endpoint,
        "endpoint_config_name": epc,
        "model_name": model,
        "action": action,
        "previous_endpoint_config_name": previous,
        "previous_version": written["previous_version"],
        "record": record,
        "parameters": written,
    }
