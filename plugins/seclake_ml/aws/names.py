"""Deterministic SageMaker resource names: the same inputs always give the same name.

A name is ``<prefix>-<kind>-<interval>-<digest>``:

``prefix``    the resource prefix (lower case, 1-16 characters); the IAM policies grant SageMaker
              actions on ``<prefix>-*`` only. SageMaker writes resource names in lower case inside
              ARNs, so an upper-case prefix would never match a policy; it is rejected.
``kind``      ``train``, ``model``, ``epc`` (endpoint config) or ``xform`` (transform job)
``interval``  the data interval, ``YYYYMMDD-YYYYMMDD`` when both ends are at midnight UTC, else
              ``YYYYMMDDTHHMM-YYYYMMDDTHHMM``; omitted for resources not tied to one interval
``digest``    10 hex characters of a SHA-256 over the prefix, kind, exact interval and the content
              (hyperparameters, input URIs, instance types, ...), as canonical JSON

Names are at most 63 characters of ``[a-z0-9-]``, start and end with a letter or digit, as every
SageMaker name must. Because the content is hashed, a re-run with the same inputs finds the
resources of the first run (and can reuse them), while a change of any input gives a new name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from seclake_ml.interval import DataInterval, parse_utc

__all__ = [
    "MAX_NAME_LEN",
    "content_digest",
    "endpoint_config_name",
    "endpoint_name",
    "model_name",
    "sagemaker_name",
    "training_job_name",
    "transform_job_name",
    "validate_prefix",
]

MAX_NAME_LEN = 63
MAX_PREFIX_LEN = 16
DIGEST_LEN = 10
KINDS = ("train", "model", "epc", "xform")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid resource prefix, else raise ``ValueError`` saying why."""
    if not isinstance(prefix, str) or len(prefix) > MAX_PREFIX_LEN or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"resource_prefix: got {prefix!r}; allowed: 1-{MAX_PREFIX_LEN} lower-case letters, digits and "
            "single '-', starting with a letter and not ending with '-'"
        )
    return prefix


def _canonical(value: Any) -> Any:
    """JSON-ready form of ``value`` with a stable layout (sorted keys, UTC ISO datetimes)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, datetime):
        return parse_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot hash a value of type {type(value).__name__} into a resource name: {value!r}")


def content_digest(*parts: Any, length: int = DIGEST_LEN) -> str:
    """First ``length`` hex characters of SHA-256 over the canonical JSON of ``parts``."""
    text = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def sagemaker_name(
    prefix: str,
    kind: str,
    content: Any,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> str:
    """``<prefix>-<kind>[-<interval>]-<digest>``, at most 63 characters.

    :param prefix: resource prefix (see :func:`validate_prefix`).
    :param kind: one of ``train``, ``model``, ``epc``, ``xform``.
    :param content: what the resource is made of (JSON-like: dicts, lists, strings, numbers, datetimes).
    :param start: start of the data interval (inclusive), or ``None`` when not tied to an interval.
    :param end: end of the data interval (exclusive); given together with ``start``.
    """
    validate_prefix(prefix)
    if kind not in KINDS:
        raise ValueError(f"resource kind: got {kind!r}; allowed: {' | '.join(KINDS)}")
    if (start is None) != (end is None):
        raise ValueError("start and end of the data interval must be given together")
    parts = [prefix, kind]
    exact: list[str] = []
    if start is not None and end is not None:
        window = DataInterval.parse(start, end)
        parts.append(window.token)
        exact = [window.start.isoformat(), window.end.isoformat()]
    parts.append(content_digest(prefix, kind, exact, content))
    name = "-".join(parts)
    if len(name) > MAX_NAME_LEN or not _NAME_RE.fullmatch(name):  # pragma: no cover - guarded by the limits above
        raise ValueError(f"generated SageMaker name {name!r} is invalid (length {len(name)})")
    return name


def training_job_name(
    prefix: str,
    start: datetime | str,
    end: datetime | str,
    *,
    hyperparameters: Mapping[str, Any],
    inputs: Sequence[str | None],
    instance_type: str,
    instance_count: int = 1,
    image_uri: str = "",
    attempt: int = 0,
) -> str:
    """Name of the training job for one data interval and one set of inputs.

    :param attempt: 0 for the first job; a higher number gives a new name for the same content
        (SageMaker never lets a name be used twice, even after a failed job).
    """
    content: dict[str, Any] = {
        "hyperparameters": {str(k): str(v) for k, v in hyperparameters.items()},
        "inputs": list(inputs),
        "instance": [instance_type, int(instance_count)],
        "image": image_uri,
    }
    if attempt:
        content["attempt"] = int(attempt)
    return sagemaker_name(prefix, "train", content, start=start, end=end)


def model_name(
    prefix: str,
    *,
    model_data_url: str,
    image_uri: str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> str:
    """Name of the SageMaker Model serving ``model_data_url`` with ``image_uri``."""
    return sagemaker_name(prefix, "model", {"model_data_url": model_data_url, "image": image_uri}, start=start, end=end)


def endpoint_config_name(prefix: str, *, model_name: str, instance_type: str, instance_count: int = 1) -> str:
    """Name of the EndpointConfig putting ``model_name`` on ``instance_count`` × ``instance_type``."""
    return sagemaker_name(
        prefix, "epc", {"model": model_name, "instance": [instance_type, int(instance_count)]}
    )


def transform_job_name(
    prefix: str,
    *,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str,
    instance_count: int = 1,
    model_data_url: str = "",
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    attempt: int = 0,
) -> str:
    """Name of the Batch Transform job scoring ``input_uri`` with ``model_name`` into ``output_uri``."""
    content: dict[str, Any] = {
        "model": model_name,
        "model_data_url": model_data_url,
        "input": input_uri,
        "output": output_uri,
        "instance": [instance_type, int(instance_count)],
    }
    if attempt:
        content["attempt"] = int(attempt)
    return sagemaker_name(prefix, "xform", content, start=start, end=end)


def endpoint_name(prefix: str, purpose: str = "ipinsights") -> str:
    """The long-lived endpoint of one model family, ``<prefix>-<purpose>`` (updated in place)."""
    validate_prefix(prefix)
    name = f"{prefix}-{purpose}"
    if len(name) > MAX_NAME_LEN or not _PREFIX_RE.fullmatch(name):
        raise ValueError(f"endpoint name {name!r}: expected at most 63 lower-case letters, digits and single '-'")
    return name
