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

The same rollout runs deferrably in three phases, without a worker polling for hours:
:func:`start_rollout` does steps 1-4 and returns a JSON-safe description of what it started
(``done`` when the endpoint already serves the config); :func:`rollout_trigger` builds the
:class:`~seclake_ml.aws.triggers.EndpointRolloutTrigger` that waits in the triggerer (step 5);
:func:`rollout_complete` takes its event and does step 6 on success, or raises
:class:`EndpointRolloutError` exactly as the synchronous wait does. Both paths decide the
outcome with :class:`~seclake_ml.aws.triggers.EndpointWatch` and record with the same function.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting, require_setting
from seclake_ml.aws import names as naming
from seclake_ml.aws.image_uris import resolve_image_uri
from seclake_ml.aws.registry import record_active, validate_record
from seclake_ml.aws.clients import sagemaker_hook
from seclake_ml.aws.training import describe_or_none, ensure_model
from seclake_ml.aws.triggers import (
    ENDPOINT_BROKEN_STATES,
    ENDPOINT_BUSY_STATES,
    EndpointRolloutTrigger,
    EndpointWatch,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

log = logging.getLogger(__name__)

VARIANT_NAME = "AllTraffic"
TRAFFIC_ROUTING = ("ALL_AT_ONCE", "CANARY", "LINEAR")
BUSY_STATES = ENDPOINT_BUSY_STATES
BROKEN_STATES = ENDPOINT_BROKEN_STATES
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
    from seclake_ml.aws.clients import cloudwatch_client

    cloudwatch = cloudwatch_client(cfg, aws_conn_id)
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


def _rollout_failed(endpoint_name: str, status: str | None, message: str) -> EndpointRolloutError:
    return EndpointRolloutError(endpoint_name, status, f"{message}. Nothing was recorded")


def wait_for_endpoint(
    hook: SageMakerHook,
    endpoint_name: str,
    *,
    new_config: str,
    previous_config: str | None,
    check_interval: float = 30,
    max_wait_seconds: float = 4 * 3600,
) -> dict[str, Any]:
    """Poll here until the endpoint serves ``new_config``; raise :class:`EndpointRolloutError` otherwise.

    The outcome is decided by :class:`~seclake_ml.aws.triggers.EndpointWatch`, as in the
    deferrable :class:`~seclake_ml.aws.triggers.EndpointRolloutTrigger`.

    :param hook: SageMaker hook of the endpoint's region.
    :param endpoint_name: the endpoint.
    :param new_config: the EndpointConfig the rollout puts in service.
    :param previous_config: the config an update replaces (``InService`` on it is a rollback).
    :param check_interval: seconds between ``DescribeEndpoint`` calls.
    :param max_wait_seconds: raise once the endpoint is still busy after this long.
    :return: the final ``DescribeEndpoint`` response.
    """
    watch = EndpointWatch(endpoint_name, new_config, previous_config)
    waited = 0.0
    while True:
        description = hook.describe_endpoint(endpoint_name)
        verdict = watch.observe(description)
        if verdict is not None:
            outcome, message = verdict
            if outcome == "success":
                return description
            raise _rollout_failed(endpoint_name, description.get("EndpointStatus"), message)
        if waited >= max_wait_seconds:
            raise _rollout_failed(endpoint_name, description.get("EndpointStatus"),
                                  watch.timeout_message(description, waited))
        _sleep(check_interval)
        waited += max(check_interval, 1e-3)


def start_rollout(
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
    tags: Mapping[str, str] | None = None,
    aws_conn_id: str | None = "aws_default",
) -> dict[str, Any]:
    """Steps 1-4 of the rollout: check alarms, create model and config, create or update the endpoint.

    Nothing is waited for and nothing is recorded. The parameters are those of
    :func:`rollout_endpoint`.

    :return: a JSON-safe dict for :func:`rollout_trigger` and :func:`rollout_complete` (pass it
        through ``defer(kwargs=...)``): ``endpoint_name``, ``endpoint_config_name`` (the expected
        config), ``model_name``, ``action`` (``created``, ``updated`` or ``unchanged``),
        ``previous_endpoint_config_name``, ``done`` (``True`` when the endpoint already serves the
        config: there is nothing to wait for) and ``record`` (the registry record to write once
        ``InService``, without its activation time).
    :raises EndpointRolloutError: another deployment of the endpoint is in progress.
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
    return {
        "endpoint_name": endpoint,
        "endpoint_config_name": epc,
        "model_name": model,
        "action": action,
        "previous_endpoint_config_name": previous,
        "done": action == "unchanged",
        "record": record,
    }


def _started(started: Any) -> Mapping[str, Any]:
    needed = ("endpoint_name", "endpoint_config_name", "model_name", "action", "record")
    if not isinstance(started, Mapping) or any(not started.get(k) for k in needed):
        raise ValueError(f"started: got {started!r}; expected the dict returned by start_rollout")
    return started


def rollout_trigger(
    cfg: Any,
    started: Mapping[str, Any],
    *,
    aws_conn_id: str | None = "aws_default",
    check_interval: float = 30,
    max_wait_seconds: float = 4 * 3600,
) -> EndpointRolloutTrigger:
    """The trigger that waits in the triggerer for the rollout :func:`start_rollout` began.

    :param cfg: package configuration (region).
    :param started: what :func:`start_rollout` returned.
    :param aws_conn_id: Airflow AWS connection.
    :param check_interval: seconds between endpoint status checks (at least 1 s is used to count
        the attempts).
    :param max_wait_seconds: the trigger reports ``timeout`` after about this long.
    """
    info = _started(started)
    interval = max(float(check_interval), 1.0)
    return EndpointRolloutTrigger(
        endpoint_name=str(info["endpoint_name"]),
        expected_config=str(info["endpoint_config_name"]),
        aws_conn_id=aws_conn_id,
        region_name=getattr(cfg, "region", None),
        poll_interval=float(check_interval),
        max_attempts=math.floor(max_wait_seconds / interval) + 1,
        previous_config=info.get("previous_endpoint_config_name") if info["action"] == "updated" else None,
    )


def _activate(
    cfg: Any,
    started: Mapping[str, Any],
    *,
    ssm_path: str | None,
    aws_conn_id: str | None,
    now: datetime | None,
) -> dict[str, Any]:
    """Step 6: write the registry record of an endpoint that is ``InService`` on the new config."""
    endpoint, epc = started["endpoint_name"], started["endpoint_config_name"]
    previous = started.get("previous_endpoint_config_name")
    activated = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
    record = dict(started["record"])
    record.update({"activated_at": activated, "previous_endpoint_config_name": previous})
    written = record_active(cfg, record, ssm_path=ssm_path, aws_conn_id=aws_conn_id)
    record = written.pop("record")
    log.info("endpoint %s InService on %s (%s); version %s recorded in %s", endpoint, epc, started["action"],
             record["version"], written["active"])
    return {
        "endpoint_name": endpoint,
        "endpoint_config_name": epc,
        "model_name": started["model_name"],
        "action": started["action"],
        "previous_endpoint_config_name": previous,
        "previous_version": written["previous_version"],
        "record": record,
        "parameters": written,
    }


def rollout_complete(
    cfg: Any,
    started: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    *,
    ssm_path: str | None = None,
    aws_conn_id: str | None = "aws_default",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Finish a deferred rollout from the :class:`EndpointRolloutTrigger` event: record it, or raise.

    :param cfg: package configuration (region; ``extra.sagemaker.ssm_path``).
    :param started: what :func:`start_rollout` returned.
    :param event: the trigger's event payload; ``None`` only when ``started["done"]`` (nothing was
        waited for).
    :param ssm_path: registry base path; default ``extra.sagemaker.ssm_path``.
    :param aws_conn_id: Airflow AWS connection.
    :param now: activation time to record (default: the current UTC time).
    :return: the same dict as :func:`rollout_endpoint`.
    :raises EndpointRolloutError: the event is not ``success`` (``rolled_back``, ``failed``,
        ``timeout``), is for another endpoint or config, or is missing; nothing is recorded.
    """
    info = _started(started)
    endpoint, epc = str(info["endpoint_name"]), str(info["endpoint_config_name"])
    if event is None:
        if not info.get("done"):
            raise _rollout_failed(endpoint, None, f"no trigger event for the rollout to {epc}")
    elif not isinstance(event, Mapping):
        raise _rollout_failed(endpoint, None, f"the trigger event is not a mapping: {event!r}")
    else:
        status = event.get("endpoint_status")
        if event.get("endpoint_name") != endpoint:
            other = event.get("endpoint_name")
            raise _rollout_failed(endpoint, status, f"the trigger event is for endpoint {other!r}")
        if event.get("status") != "success":
            message = str(event.get("message") or f"the trigger reported {event.get('status')!r}")
            raise _rollout_failed(endpoint, status, message.removeprefix(f"SageMaker endpoint {endpoint}: "))
        if event.get("endpoint_config") != epc:
            found = event.get("endpoint_config")
            raise _rollout_failed(endpoint, status, f"the trigger reported success on {found!r}, not on {epc}")
    return _activate(cfg, info, ssm_path=ssm_path, aws_conn_id=aws_conn_id, now=now)


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

    Synchronous: :func:`start_rollout`, then :func:`wait_for_endpoint` here, then the same
    recording as :func:`rollout_complete`.

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
    started = start_rollout(
        cfg, model_data_url=model_data_url, version=version, threshold=threshold, model_name=model_name,
        image_uri=image_uri, role_arn=role_arn, endpoint_name=endpoint_name, instance_type=instance_type,
        instance_count=instance_count, alarms=alarms, traffic_routing=traffic_routing,
        wait_interval_seconds=wait_interval_seconds, step_percent=step_percent,
        termination_wait_seconds=termination_wait_seconds, max_execution_timeout_seconds=max_execution_timeout_seconds,
        metadata=metadata, tags=tags, aws_conn_id=aws_conn_id,
    )
    if not started["done"]:
        wait_for_endpoint(
            sagemaker_hook(cfg, aws_conn_id), started["endpoint_name"], new_config=started["endpoint_config_name"],
            previous_config=started["previous_endpoint_config_name"] if started["action"] == "updated" else None,
            check_interval=check_interval, max_wait_seconds=max_wait_seconds,
        )
    return _activate(cfg, started, ssm_path=ssm_path, aws_conn_id=aws_conn_id, now=now)
