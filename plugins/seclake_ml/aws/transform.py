"""Score calibration files with a SageMaker Batch Transform job (no endpoint involved).

:func:`run_transform` creates the SageMaker Model of a trained artifact when it does not exist,
then a transform job with a deterministic name over every object under ``input_uri``:
``ContentType text/csv``, ``SplitType Line`` (each line is one ``entity,ip`` record),
``BatchStrategy MultiRecord``, ``Accept application/jsonlines`` and ``AssembleWith Line``, so the
output holds one ``{"dot_product": x}`` line per input line. As with training, a job found under
the name is reused when ``Completed``, waited for (or deferred to ``SageMakerTrigger(job_type=
"transform")``) when running, and reported with its failure reason when ``Failed``/``Stopped``.

SageMaker writes one ``<input key relative to the input prefix>.out`` object per input object
under ``output_uri``. :func:`read_transform_output` reads them back in the order of the input keys
(sorted) and returns the dot products as one float array aligned with the input lines; a missing
output object or a line count that differs from its input raises :class:`TransformOutputError`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting, require_setting
from seclake_ml.aws import names as naming
from seclake_ml.aws.image_uris import resolve_image_uri
from seclake_ml.aws.clients import sagemaker_hook
from seclake_ml.aws.training import describe_or_none, ensure_model, job_wait
from seclake_ml.handoff import Wait
from seclake_ml.uris import split_s3_uri

if TYPE_CHECKING:
    import numpy as np
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/csv"
ACCEPT = "application/jsonlines"
RUNNING_STATES = frozenset({"InProgress", "Stopping"})
FAILED_STATES = frozenset({"Failed", "Stopped"})
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_MAX_WAIT_SECONDS = 6 * 3600


class TransformJobError(RuntimeError):
    """A transform job failed, was stopped, or does not match the request made under its name."""

    def __init__(self, job_name: str, status: str | None, reason: str):
        self.job_name = job_name
        self.status = status
        self.reason = reason
        super().__init__(f"SageMaker transform job {job_name} ({status or 'status unknown'}): {reason}")


class TransformOutputError(ValueError):
    """The transform output does not line up with its input."""


def build_transform_config(
    *,
    job_name: str,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB,
    max_concurrent_transforms: int | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``CreateTransformJob`` request scoring ``entity,ip`` lines under ``input_uri``.

    :param job_name: transform job name (see :func:`seclake_ml.aws.names.transform_job_name`).
    :param model_name: SageMaker model to run.
    :param input_uri: ``s3://`` prefix (or one object) of headerless ``entity,ip`` CSV.
    :param output_uri: ``s3://`` prefix receiving ``<input name>.out`` objects.
    :param instance_type: transform instance type.
    :param instance_count: transform instances.
    :param max_payload_mb: largest mini-batch sent to the container, 1-100 MB.
    :param max_concurrent_transforms: parallel requests per instance (``None``: SageMaker's choice).
    :param tags: resource tags.
    """
    split_s3_uri(input_uri, "input_uri", require_key=True)
    split_s3_uri(output_uri, "output_uri", require_key=True)
    if isinstance(instance_count, bool) or not isinstance(instance_count, int) or instance_count < 1:
        raise ValueError(f"instance_count: got {instance_count!r}; expected an int >= 1")
    if isinstance(max_payload_mb, bool) or not isinstance(max_payload_mb, int) or not 1 <= max_payload_mb <= 100:
        raise ValueError(f"max_payload_mb: got {max_payload_mb!r}; expected an int in [1, 100]")
    config: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "MaxPayloadInMB": max_payload_mb,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": CONTENT_TYPE,
            "CompressionType": "None",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": ACCEPT, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }
    if max_concurrent_transforms is not None:
        if isinstance(max_concurrent_transforms, bool) or not isinstance(max_concurrent_transforms, int) \
                or max_concurrent_transforms < 1:
            raise ValueError(f"max_concurrent_transforms: got {max_concurrent_transforms!r}; expected an int >= 1")
        config["MaxConcurrentTransforms"] = max_concurrent_transforms
    if tags:
        config["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
    return config


def _same_request(config: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    diffs = []
    if found.get("ModelName") != config["ModelName"]:
        diffs.append("ModelName")
    got_in = found.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
    if got_in != config["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]:
        diffs.append("TransformInput")
    if found.get("TransformOutput", {}).get("S3OutputPath") != config["TransformOutput"]["S3OutputPath"]:
        diffs.append("TransformOutput")
    return diffs


def transform_summary(description: Mapping[str, Any], *, reused: bool = False) -> dict[str, Any]:
    """Small XCom-safe summary of a ``DescribeTransformJob`` response."""
    start, end = description.get("TransformStartTime"), description.get("TransformEndTime")
    seconds = int((end - start).total_seconds()) if isinstance(start, datetime) and isinstance(end, datetime) else None
    return {
        "job_name": description["TransformJobName"],
        "status": description.get("TransformJobStatus"),
        "model_name": description.get("ModelName"),
        "input_uri": description.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {}).get("S3Uri"),
        "output_uri": description.get("TransformOutput", {}).get("S3OutputPath"),
        "transform_seconds": seconds,
        "reused": reused,
    }


def _finish(hook: SageMakerHook, job_name: str, *, reused: bool) -> dict[str, Any]:
    description = hook.describe_transform_job(job_name)
    status = description.get("TransformJobStatus")
    if status != "Completed":
        raise TransformJobError(job_name, status, description.get("FailureReason") or "the job did not complete")
    summary = transform_summary(description, reused=reused)
    log.info("transform job %s completed: %s -> %s%s", job_name, summary["input_uri"], summary["output_uri"],
             " (reused an earlier job)" if reused else "")
    return summary


def run_transform(
    cfg: Any,
    *,
    model_data_url: str,
    input_uri: str,
    output_uri: str,
    model_name: str | None = None,
    image_uri: str | None = None,
    role_arn: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    instance_type: str | None = None,
    instance_count: int = 1,
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB,
    max_concurrent_transforms: int | None = None,
    tags: Mapping[str, str] | None = None,
    job_name: str | None = None,
    attempt: int = 0,
    deferrable: bool = False,
    check_interval: int = 30,
    max_wait_seconds: int = DEFAULT_MAX_WAIT_SECONDS,
    aws_conn_id: str | None = "aws_default",
) -> dict[str, Any] | Wait:
    """Score every ``entity,ip`` line under ``input_uri`` with a Batch Transform job.

    :param cfg: package configuration (region, ``extra.sagemaker`` settings).
    :param model_data_url: the trained ``model.tar.gz`` (``model_data_url`` of the training summary).
    :param input_uri: ``s3://`` prefix of headerless ``entity,ip`` CSV objects.
    :param output_uri: ``s3://`` prefix for the ``.out`` objects.
    :param model_name: SageMaker model name; derived from the artifact and image when ``None``.
    :param image_uri: inference image; default from the region.
    :param role_arn: execution role of the model; default ``extra.sagemaker.role_arn``.
    :param start: data interval start (names the model and job), optional.
    :param end: data interval end, optional (with ``start``).
    :param instance_type: default ``extra.sagemaker.transform_instance_type``.
    :param instance_count: transform instances.
    :param max_payload_mb: mini-batch size limit, 1-100 MB.
    :param max_concurrent_transforms: parallel requests per instance.
    :param tags: resource tags.
    :param job_name: explicit job name instead of the derived one.
    :param attempt: bump to get a new name after a failed job.
    :param deferrable: while the job runs, return a :class:`~seclake_ml.handoff.Wait` (the caller
        defers) instead of polling here.
    :param check_interval: seconds between status checks.
    :param max_wait_seconds: give up waiting after this long.
    :param aws_conn_id: Airflow AWS connection.
    :return: :func:`transform_summary` plus ``model_name`` and ``model_created``, or the wait.
    """
    prefix = naming.validate_prefix(aws_setting(cfg, "resource_prefix"))
    instance_type = aws_setting(cfg, "transform_instance_type", instance_type)
    image = resolve_image_uri(cfg, image_uri)
    if isinstance(check_interval, bool) or not isinstance(check_interval, int) or check_interval < 0:
        raise ValueError(f"check_interval: got {check_interval!r}; expected an int >= 0")
    model = model_name or naming.model_name(
        prefix, model_data_url=model_data_url, image_uri=image, start=start, end=end
    )
    name = job_name or naming.transform_job_name(
        prefix, model_name=model, input_uri=input_uri, output_uri=output_uri, instance_type=instance_type,
        instance_count=instance_count, model_data_url=model_data_url, start=start, end=end, attempt=attempt,
    )
    config = build_transform_config(
        job_name=name, model_name=model, input_uri=input_uri, output_uri=output_uri, instance_type=instance_type,
        instance_count=instance_count, max_payload_mb=max_payload_mb,
        max_concurrent_transforms=max_concurrent_transforms, tags=tags,
    )
    hook = sagemaker_hook(cfg, aws_conn_id)

    found = describe_or_none(hook.describe_transform_job, name)
    reused = found is not None
    created_model = False
    if found is None:
        created_model = ensure_model(
            hook, model_name=model, model_data_url=model_data_url, image_uri=image,
            role_arn=require_setting(cfg, "role_arn", role_arn), tags=tags,
        )
        log.info("creating SageMaker transform job %s: model %s, %s -> %s", name, model, input_uri, output_uri)
        hook.create_transform_job(config, wait_for_completion=False)
        status = "InProgress"
    else:
        status = found.get("TransformJobStatus")
        diffs = _same_request(config, found)
        if diffs:
            raise TransformJobError(name, status, f"an existing job of this name differs from the request in {diffs}")
        if status in FAILED_STATES:
            raise TransformJobError(
                name, status,
                f"{found.get('FailureReason') or 'no failure reason given'}. SageMaker never reuses a job name: "
                f"fix the cause and re-run with attempt={attempt + 1} to start a new job",
            )
        log.info("SageMaker transform job %s already exists (%s); not creating it again", name, status)

    if status in RUNNING_STATES:
        if deferrable:
            status = hook.describe_transform_job(name)["TransformJobStatus"]
        if deferrable and status in RUNNING_STATES:
            return job_wait(name, "transform", cfg, aws_conn_id, check_interval, max_wait_seconds)
        if status in RUNNING_STATES:
            from airflow.providers.common.compat.sdk import AirflowException

            try:
                hook.check_status(name, "TransformJobStatus", hook.describe_transform_job, check_interval,
                                  max_wait_seconds)
            except AirflowException as exc:
                raise TransformJobError(name, None, str(exc)) from exc
    summary = _finish(hook, name, reused=reused)
    summary["model_created"] = created_model
    return summary


def transform_complete(
    event: Mapping[str, Any] | None, *, cfg: Any = None, aws_conn_id: str | None = "aws_default"
) -> dict[str, Any]:
    """Finish a deferred :func:`run_transform` from the trigger's event.

    :param event: the trigger's event, ``{"status": "success", "job_name": ...}``.
    :param cfg: package configuration (region); ``None`` uses the connection's region.
    :param aws_conn_id: Airflow AWS connection.
    """
    if not isinstance(event, Mapping) or not event.get("job_name"):
        raise TransformJobError("<unknown>", None, f"trigger event without a job name: {event!r}")
    name = str(event["job_name"])
    if event.get("status") != "success":
        reason = f"the trigger reported {event.get('status')!r}: {event.get('message') or event}"
        raise TransformJobError(name, None, reason)
    return _finish(sagemaker_hook(cfg, aws_conn_id), name, reused=False)


# ------------------------------------------------------------------------------------ output
def parse_transform_lines(text: str, *, source: str = "<output>") -> list[float]:
    """Dot products from jsonlines output (``{"dot_product": x}`` per line; a
    ``{"predictions": [...]}`` line, as the JSON response format gives, contributes each of its
    predictions). Blank lines are skipped.
    """
    values: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TransformOutputError(f"{source} line {number}: not JSON ({exc.msg}): {line[:200]!r}") from None
        items = item.get("predictions") if isinstance(item, dict) and "predictions" in item else [item]
        if not isinstance(items, list):
            raise TransformOutputError(f"{source} line {number}: 'predictions' is not a list: {line[:200]!r}")
        for pred in items:
            value = pred.get("dot_product") if isinstance(pred, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TransformOutputError(f"{source} line {number}: no finite 'dot_product' in {line[:200]!r}")
            values.append(float(value))
    return values


def _output_candidates(out_base: str, in_key: str, key: str) -> list[str]:
    """Where SageMaker may have put the output of input object ``key`` (first match wins).

    SageMaker keeps the input object's path below the input prefix and appends ``.out``; with a flat
    input folder (as the calibration files are written) this is simply ``<output>/<name>.out``. The
    bare object name is tried as well, for jobs whose input was a single object.
    """
    folder = in_key if in_key.endswith("/") else (in_key.rsplit("/", 1)[0] + "/" if "/" in in_key else "")
    relative = key[len(folder):] if key.startswith(folder) else key.rsplit("/", 1)[-1]
    name = key.rsplit("/", 1)[-1]
    return list(dict.fromkeys([f"{out_base}{relative}.out", f"{out_base}{name}.out"]))


def _find_output(s3: Any, bucket: str, out_base: str, in_key: str, key: str) -> str | None:
    for candidate in _output_candidates(out_base, in_key, key):
        if s3.check_for_key(candidate, bucket_name=bucket):
            return candidate
    return None


def read_transform_output(
    cfg: Any,
    *,
    input_uri: str,
    output_uri: str,
    aws_conn_id: str | None = "aws_default",
) -> np.ndarray:
    """Dot products of a finished transform job, aligned with its input lines.

    The input objects under ``input_uri`` are taken in key order; for each, the lines of
    ``<output_uri>/<key relative to the input folder>.out`` are parsed and must match the number
    of non-blank input lines.

    :param cfg: package configuration (region).
    :param input_uri: the job's input prefix (or single object).
    :param output_uri: the job's output prefix.
    :param aws_conn_id: Airflow AWS connection.
    :return: ``float64`` array, one value per input line (higher = more expected pair).
    :raises TransformOutputError: an output object is missing, malformed or has the wrong length.
    """
    import numpy as np
    from seclake_ml.aws.clients import s3_hook

    in_bucket, in_key = split_s3_uri(input_uri, "input_uri", require_key=True)
    out_bucket, out_key = split_s3_uri(output_uri, "output_uri", require_key=True)
    s3 = s3_hook(cfg, aws_conn_id)
    keys = sorted(k for k in s3.list_keys(bucket_name=in_bucket, prefix=in_key) if not k.endswith("/"))
    if not keys:
        raise TransformOutputError(f"no input objects under {input_uri}")
    out_base = out_key if out_key.endswith("/") else out_key + "/"
    parts: list[np.ndarray] = []
    for key in keys:
        out = _find_output(s3, out_bucket, out_base, in_key, key)
        if out is None:
            raise TransformOutputError(
                f"no transform output for input s3://{in_bucket}/{key} under s3://{out_bucket}/{out_base} "
                f"(looked for {', '.join(_output_candidates(out_base, in_key, key))})"
            )
        expected = sum(1 for line in s3.read_key(key, bucket_name=in_bucket).splitlines() if line.strip())
        values = parse_transform_lines(s3.read_key(out, bucket_name=out_bucket), source=f"s3://{out_bucket}/{out}")
        if len(values) != expected:
            raise TransformOutputError(
                f"s3://{out_bucket}/{out} holds {len(values)} dot product(s) for {expected} input line(s) "
                f"in s3://{in_bucket}/{key}"
            )
        parts.append(np.asarray(values, dtype=np.float64))
    scores = np.concatenate(parts)
    log.info("read %d dot product(s) from %d transform output object(s) under %s", len(scores), len(keys), output_uri)
    return scores
