"""SageMaker IP Insights training job: request, idempotent start, wait or defer, summary.

:func:`run_training` is called from an operator's ``execute``. It names the job deterministically
(prefix, data interval, hash of hyperparameters, channels, instance and image; see
:mod:`seclake_ml.aws.names`) and then, depending on what SageMaker already knows under that name:

* nothing: creates the job with :class:`SageMakerHook` (which first checks that every channel
  prefix exists), then waits for it or defers to the provider's ``SageMakerTrigger``;
* ``Completed``: reuses it (a retry or re-run after success costs nothing);
* ``InProgress``/``Stopping``: waits for it or defers, without creating anything;
* ``Failed``/``Stopped``: raises :class:`TrainingJobError` with SageMaker's failure reason. Names can
  never be reused, so a new attempt needs ``attempt=1`` (2, ...), which gives a new name.

A job found under the name must have been made from the same request; if its hyperparameters,
channels or image differ, :class:`TrainingJobError` says so rather than reuse the wrong model.

:func:`training_complete` finishes a deferred run from the operator's ``execute_complete``. Both
return a small XCom-safe dict: job name, status, model artifact URI, image, hyperparameters,
final metrics (``validation:discriminator_auc`` when a validation channel was given), billable
and training seconds, and whether an existing job was reused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting, require_setting
from seclake_ml.aws import names as naming
from seclake_ml.aws.clients import sagemaker_hook
from seclake_ml.aws.image_uris import resolve_image_uri
from seclake_ml.handoff import Wait
from seclake_ml.uris import split_s3_uri

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

log = logging.getLogger(__name__)

# The hyperparameters of AWS's IP Insights tutorial and of the Security Lake sample notebook.
DEFAULT_HYPERPARAMETERS: dict[str, str] = {
    "num_entity_vectors": "20000",
    "vector_dim": "128",
    "random_negative_sampling_rate": "5",
    "mini_batch_size": "1000",
    "epochs": "5",
    "learning_rate": "0.01",
}
CONTENT_TYPE = "text/csv"
DEFAULT_MAX_RUNTIME_SECONDS = 24 * 3600
DEFAULT_VOLUME_SIZE_GB = 30
RUNNING_STATES = frozenset({"InProgress", "Stopping"})
FAILED_STATES = frozenset({"Failed", "Stopped"})
_ROLE_ARN_PREFIXES = ("arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::", "arn:aws-iso")


class TrainingJobError(RuntimeError):
    """A training job failed, was stopped, or does not match the request made under its name."""

    def __init__(self, job_name: str, status: str | None, reason: str):
        self.job_name = job_name
        self.status = status
        self.reason = reason
        super().__init__(f"SageMaker training job {job_name} ({status or 'status unknown'}): {reason}")


# ------------------------------------------------------------------------------------ request
def sagemaker_hyperparameters(hyperparameters: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The defaults of :data:`DEFAULT_HYPERPARAMETERS` overridden by ``hyperparameters``, validated.

    Names and ranges are SageMaker's (unknown names and out-of-range values raise ``ValueError``).
    Only the defaults and the names given are sent; SageMaker applies its own defaults to the rest.
    Values come back as strings, as ``CreateTrainingJob`` wants them.
    """
    from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters

    merged: dict[str, Any] = {**DEFAULT_HYPERPARAMETERS, **dict(hyperparameters or {})}
    checked = IPInsightsHyperparameters.from_dict(merged).to_sagemaker()
    return {name: checked[name] for name in sorted(merged)}


def _check_role(role_arn: Any) -> str:
    if not isinstance(role_arn, str) or not role_arn.startswith(_ROLE_ARN_PREFIXES) or ":role/" not in role_arn:
        raise ValueError(f"role_arn: got {role_arn!r}; expected an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return role_arn


def _check_s3(uri: Any, name: str) -> str:
    """``uri`` when it is a valid ``s3://bucket[/prefix]`` URI; else ``ValueError`` naming ``name``."""
    split_s3_uri(uri, name)
    return uri


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "ContentType": CONTENT_TYPE,
        "CompressionType": "None",
        "InputMode": "File",
    }


def build_training_config(
    cfg: Any,
    *,
    job_name: str,
    train_uri: str,
    validation_uri: str | None,
    output_uri: str,
    role_arn: str,
    hyperparameters: Mapping[str, Any] | None = None,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    volume_size_gb: int = DEFAULT_VOLUME_SIZE_GB,
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS,
    image_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request of an IP Insights job (no AWS call is made).

    :param cfg: package configuration (region for the image; ``extra.sagemaker.image_uri`` overrides it).
    :param job_name: training job name (see :func:`seclake_ml.aws.names.training_job_name`).
    :param train_uri: ``s3://`` prefix of the headerless ``entity,ip`` CSV training channel.
    :param validation_uri: prefix of the validation channel, or ``None`` for none (then SageMaker
        reports no ``validation:discriminator_auc``).
    :param output_uri: ``s3://`` prefix for the model artifact (``<output>/<job>/output/model.tar.gz``).
    :param role_arn: SageMaker execution role ARN.
    :param hyperparameters: overrides of :data:`DEFAULT_HYPERPARAMETERS` (SageMaker names).
    :param instance_type: training instance type.
    :param instance_count: number of instances.
    :param volume_size_gb: EBS volume per instance.
    :param max_runtime_seconds: SageMaker stops the job after this long.
    :param image_uri: explicit training image; default from the region (:mod:`seclake_ml.aws.image_uris`).
    :param tags: resource tags.
    """
    for value, name in ((instance_count, "instance_count"), (volume_size_gb, "volume_size_gb"),
                        (max_runtime_seconds, "max_runtime_seconds")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected an int >= 1")
    if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
        raise ValueError(f"instance_type: got {instance_type!r}; expected a SageMaker type such as ml.m5.large")
    channels = [_channel("train", _check_s3(train_uri, "train_uri"))]
    if validation_uri:
        channels.append(_channel("validation", _check_s3(validation_uri, "validation_uri")))
    config: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": resolve_image_uri(cfg, image_uri),
            "TrainingInputMode": "File",
        },
        "RoleArn": _check_role(role_arn),
        "HyperParameters": sagemaker_hyperparameters(hyperparameters),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": _check_s3(output_uri, "output_uri")},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
    }
    if tags:
        config["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
    return config


# ---------------------------------------------------------------------------------- execution
def job_wait(name: str, job_type: str, cfg: Any, aws_conn_id: str | None, check_interval: int,
             max_seconds: int) -> Wait:
    """The wait on a running SageMaker job: a :class:`~seclake_ml.aws.triggers.SageMakerJobTrigger`
    polling every ``check_interval`` seconds (at least 1) for at most ``max_seconds``."""
    from seclake_ml.aws.triggers import SageMakerJobTrigger

    delay = max(int(check_interval), 1)
    trigger = SageMakerJobTrigger(job_name=name, job_type=job_type, aws_conn_id=aws_conn_id,
                                  region_name=getattr(cfg, "region", None), poll_interval=delay,
                                  max_attempts=math.ceil(max_seconds / delay) + 1)
    return Wait(trigger=trigger, timeout_seconds=float(max_seconds))


def describe_or_none(describe: Any, name: str) -> dict[str, Any] | None:
    """``describe(name)``, or ``None`` when SageMaker says the resource does not exist."""
    from botocore.exceptions import ClientError

    from seclake_ml.aws.triggers import is_not_found

    try:
        return describe(name)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def _same_request(config: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """Fields where an existing job differs from the request made under its name."""
    diffs = []
    if dict(found.get("HyperParameters") or {}) != dict(config["HyperParameters"]):
        diffs.append("HyperParameters")
    sent = [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in config["InputDataConfig"]]
    have = [(c.get("ChannelName"), c.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri"))
            for c in found.get("InputDataConfig") or []]
    if sorted(sent) != sorted(have):
        diffs.append("InputDataConfig")
    image = found.get("AlgorithmSpecification", {}).get("TrainingImage")
    if image != config["AlgorithmSpecification"]["TrainingImage"]:
        diffs.append("TrainingImage")
    return diffs


def _seconds(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def training_summary(description: Mapping[str, Any], *, reused: bool = False) -> dict[str, Any]:
    """Small XCom-safe summary of a ``DescribeTrainingJob`` response."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    metrics = {
        str(m["MetricName"]): float(m["Value"])
        for m in description.get("FinalMetricDataList") or []
        if "MetricName" in m and isinstance(m.get("Value"), (int, float))
    }
    billable = _seconds(description.get("BillableTimeInSeconds"))
    training = _seconds(description.get("TrainingTimeInSeconds"))
    start, end = description.get("TrainingStartTime"), description.get("TrainingEndTime")
    if isinstance(start, datetime) and isinstance(end, datetime):
        instances = int(description.get("ResourceConfig", {}).get("InstanceCount", 1))
        if billable is None:
            billable = SageMakerHook.count_billable_seconds(start, end, instances)
        if training is None:
            training = int((end - start).total_seconds())
    return {
        "job_name": description["TrainingJobName"],
        "status": description.get("TrainingJobStatus"),
        "model_data_url": description.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "image_uri": description.get("AlgorithmSpecification", {}).get("TrainingImage"),
        "hyperparameters": dict(description.get("HyperParameters") or {}),
        "metrics": metrics,
        "billable_seconds": billable,
        "training_seconds": training,
        "reused": reused,
    }


def _finish(hook: SageMakerHook, job_name: str, *, reused: bool) -> dict[str, Any]:
    description = hook.describe_training_job(job_name)
    status = description.get("TrainingJobStatus")
    if status != "Completed":
        raise TrainingJobError(job_name, status, description.get("FailureReason") or "the job did not complete")
    summary = training_summary(description, reused=reused)
    log.info(
        "training job %s completed: model %s, metrics %s, %s billable second(s)%s",
        job_name, summary["model_data_url"], summary["metrics"], summary["billable_seconds"],
        " (reused an earlier job)" if reused else "",
    )
    return summary


def run_training(
    cfg: Any,
    *,
    start: datetime | str,
    end: datetime | str,
    train_uri: str,
    validation_uri: str | None,
    output_uri: str | None = None,
    role_arn: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    instance_type: str | None = None,
    instance_count: int = 1,
    volume_size_gb: int = DEFAULT_VOLUME_SIZE_GB,
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS,
    image_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    job_name: str | None = None,
    attempt: int = 0,
    deferrable: bool = False,
    check_interval: int = 30,
    aws_conn_id: str | None = "aws_default",
) -> dict[str, Any] | Wait:
    """Start (or find) the training job of one data interval, then wait for it or hand back a wait.

    :param cfg: package configuration (region, ``work_location``, ``extra.sagemaker`` settings).
    :param start: start of the data interval (names the job).
    :param end: end of the data interval.
    :param train_uri: training channel prefix (from :func:`seclake_ml.aws.channels.build_channels`).
    :param validation_uri: validation channel prefix, or ``None``.
    :param output_uri: artifact prefix; default ``<work_location>/sagemaker/training/``.
    :param role_arn: SageMaker execution role; default ``extra.sagemaker.role_arn``.
    :param hyperparameters: overrides of :data:`DEFAULT_HYPERPARAMETERS`.
    :param instance_type: default ``extra.sagemaker.training_instance_type`` (``ml.m5.large``).
    :param instance_count: training instances.
    :param volume_size_gb: EBS volume per instance.
    :param max_runtime_seconds: SageMaker's stopping condition; also bounds the wait.
    :param image_uri: explicit image; default from the region.
    :param tags: resource tags.
    :param job_name: explicit name instead of the derived one.
    :param attempt: bump to get a new name after a failed job.
    :param deferrable: while the job runs, return a :class:`~seclake_ml.handoff.Wait` on a
        :class:`~seclake_ml.aws.triggers.SageMakerJobTrigger` (the caller defers) instead of polling here.
    :param check_interval: seconds between status checks (poll or trigger).
    :param aws_conn_id: Airflow AWS connection.
    :return: the summary of :func:`training_summary`, or the wait (:func:`training_complete` finishes).
    """
    prefix = naming.validate_prefix(aws_setting(cfg, "resource_prefix"))
    instance_type = aws_setting(cfg, "training_instance_type", instance_type)
    role = require_setting(cfg, "role_arn", role_arn)
    output = output_uri or f"{cfg.work_location.rstrip('/')}/sagemaker/training/"
    if isinstance(check_interval, bool) or not isinstance(check_interval, int) or check_interval < 0:
        raise ValueError(f"check_interval: got {check_interval!r}; expected an int >= 0")
    image = resolve_image_uri(cfg, image_uri)
    hps = sagemaker_hyperparameters(hyperparameters)
    name = job_name or naming.training_job_name(
        prefix, start, end, hyperparameters=hps, inputs=[train_uri, validation_uri, output],
        instance_type=instance_type, instance_count=instance_count, image_uri=image, attempt=attempt,
    )
    config = build_training_config(
        cfg, job_name=name, train_uri=train_uri, validation_uri=validation_uri, output_uri=output,
        role_arn=role, hyperparameters=hps, instance_type=instance_type, instance_count=instance_count,
        volume_size_gb=volume_size_gb, max_runtime_seconds=max_runtime_seconds, image_uri=image, tags=tags,
    )
    hook = sagemaker_hook(cfg, aws_conn_id)

    found = describe_or_none(hook.describe_training_job, name)
    reused = found is not None
    if found is None:
        log.info("creating SageMaker training job %s (image %s, %s x %s, channels %s)", name, image,
                 instance_count, instance_type, [c["ChannelName"] for c in config["InputDataConfig"]])
        hook.create_training_job(config, wait_for_completion=False, print_log=False)
        status = "InProgress"
    else:
        status = found.get("TrainingJobStatus")
        diffs = _same_request(config, found)
        if diffs:
            raise TrainingJobError(name, status, f"an existing job of this name differs from the request in {diffs}; "
                                   "pass attempt=<n> or job_name=<new name> to train anew")
        if status in FAILED_STATES:
            raise TrainingJobError(
                name, status,
                f"{found.get('FailureReason') or 'no failure reason given'}. SageMaker never reuses a job name: "
                f"fix the cause and re-run with attempt={attempt + 1} to start a new job",
            )
        log.info("SageMaker training job %s already exists (%s); not creating it again", name, status)

    if status in RUNNING_STATES:
        if deferrable:
            status = hook.describe_training_job(name)["TrainingJobStatus"]
        if deferrable and status in RUNNING_STATES:
            return job_wait(name, "training", cfg, aws_conn_id, check_interval, max_runtime_seconds + 600)
        if status in RUNNING_STATES:
            _wait(hook, name, check_interval, max_runtime_seconds + 600)
    return _finish(hook, name, reused=reused)


def _wait(hook: SageMakerHook, name: str, check_interval: int, max_seconds: int) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    try:
        hook.check_status(name, "TrainingJobStatus", hook.describe_training_job, check_interval, max_seconds)
    except AirflowException as exc:
        description = describe_or_none(hook.describe_training_job, name) or {}
        raise TrainingJobError(name, description.get("TrainingJobStatus"), str(exc)) from exc


def training_complete(
    event: Mapping[str, Any] | None, *, cfg: Any = None, aws_conn_id: str | None = "aws_default"
) -> dict[str, Any]:
    """Finish a deferred :func:`run_training` from the trigger's event.

    :param event: the trigger's event, ``{"status": "success", "job_name": ...}``.
    :param cfg: package configuration (region); ``None`` uses the connection's region, which is
        the region the trigger polled.
    :param aws_conn_id: Airflow AWS connection.
    :raises TrainingJobError: the trigger reported an error or the job did not complete.
    """
    if not isinstance(event, Mapping) or not event.get("job_name"):
        raise TrainingJobError("<unknown>", None, f"trigger event without a job name: {event!r}")
    name = str(event["job_name"])
    if event.get("status") != "success":
        reason = f"the trigger reported {event.get('status')!r}: {event.get('message') or event}"
        raise TrainingJobError(name, None, reason)
    return _finish(sagemaker_hook(cfg, aws_conn_id), name, reused=False)


# ---------------------------------------------------------------------------------------- model
def ensure_model(
    hook: SageMakerHook,
    *,
    model_name: str,
    model_data_url: str,
    image_uri: str,
    role_arn: str,
    tags: Mapping[str, str] | None = None,
) -> bool:
    """Create the SageMaker Model ``model_name`` unless it exists; return ``True`` when created.

    An existing model must serve the same artifact with the same image, else ``ValueError``.
    """
    found = describe_or_none(hook.describe_model, model_name)
    if found is not None:
        container = found.get("PrimaryContainer") or {}
        if (container.get("ModelDataUrl"), container.get("Image")) != (model_data_url, image_uri):
            raise ValueError(
                f"SageMaker model {model_name} exists with artifact {container.get('ModelDataUrl')!r} and image "
                f"{container.get('Image')!r}, not {model_data_url!r} and {image_uri!r}"
            )
        log.info("SageMaker model %s already exists; reusing it", model_name)
        return False
    config: dict[str, Any] = {
        "ModelName": model_name,
        "PrimaryContainer": {"Image": image_uri, "ModelDataUrl": _check_s3(model_data_url, "model_data_url")},
        "ExecutionRoleArn": _check_role(role_arn),
    }
    if tags:
        config["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
    hook.create_model(config)
    log.info("created SageMaker model %s (artifact %s, image %s)", model_name, model_data_url, image_uri)
    return True
