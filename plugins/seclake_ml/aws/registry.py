"""Registry of the active IP Insights model: JSON SSM parameters, one pair per endpoint.

``<ssm_path>/<endpoint_name>/active``    the model that serves now: version, threshold, endpoint,
                                         endpoint config, model, artifact, image, activation time
``<ssm_path>/<endpoint_name>/previous``  the record that was active before it (for rollback and audit)

The version and its threshold are one JSON value, so a reader never sees a threshold with the wrong
model. :func:`record_active` is called by the rollout only once the endpoint is ``InService`` on the
new configuration. It first copies the current ``active`` value to ``previous`` and then writes the
new ``active``; recording the same version and endpoint config again (a re-run) rewrites ``active``
only (its ``activated_at`` and ``previous_endpoint_config_name`` kept) and leaves ``previous`` as it is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

log = logging.getLogger(__name__)

ACTIVE = "active"
PREVIOUS = "previous"
MAX_VALUE_BYTES = 4096  # standard-tier parameter limit
REQUIRED_FIELDS = ("version", "threshold", "endpoint_name", "endpoint_config_name", "model_name")
RERUN_KEPT_FIELDS = ("activated_at", "previous_endpoint_config_name")
_PATH_RE = re.compile(r"(/[A-Za-z0-9_.-]+)+")


class RegistryError(RuntimeError):
    """A registry parameter is unreadable or a record is invalid."""


def parameter_names(ssm_path: str, endpoint_name: str) -> dict[str, str]:
    """``{"active": ..., "previous": ...}`` parameter names of ``endpoint_name`` under ``ssm_path``.

    :param ssm_path: base path such as ``/seclake-ml/ipinsights`` (leading ``/``, no trailing ``/``).
    :param endpoint_name: SageMaker endpoint the records describe.
    """
    reserved = isinstance(ssm_path, str) and ssm_path.lower().startswith(("/aws", "/ssm"))
    if not isinstance(ssm_path, str) or not _PATH_RE.fullmatch(ssm_path) or reserved:
        raise ValueError(
            f"ssm_path: got {ssm_path!r}; expected /segment[/segment...] of letters, digits, '_', '.', '-' "
            "not starting with /aws or /ssm"
        )
    if not isinstance(endpoint_name, str) or not re.fullmatch(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}", endpoint_name):
        raise ValueError(f"endpoint_name: got {endpoint_name!r}; expected a SageMaker endpoint name")
    base = f"{ssm_path}/{endpoint_name}"
    if base.count("/") + 1 > 15:
        raise ValueError(f"ssm_path {ssm_path!r} is too deep: SSM allows 15 levels")
    return {ACTIVE: f"{base}/{ACTIVE}", PREVIOUS: f"{base}/{PREVIOUS}"}


def ssm_hook(cfg: Any, aws_conn_id: str | None = "aws_default") -> SsmHook:
    """An :class:`SsmHook` in the configured region."""
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

    return SsmHook(aws_conn_id=aws_conn_id, region_name=cfg.region)


def _read(hook: SsmHook, name: str) -> dict[str, Any] | None:
    text = hook.get_parameter_value(name, default=None)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"SSM parameter {name} is not JSON ({exc.msg}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"SSM parameter {name} holds {type(value).__name__}, expected a JSON object")
    return value


def _endpoint(cfg: Any, endpoint_name: str | None) -> str:
    from seclake_ml.aws.names import endpoint_name as default_endpoint_name

    return endpoint_name or default_endpoint_name(aws_setting(cfg, "resource_prefix"))


def read_active(
    cfg: Any, *, endpoint_name: str | None = None, ssm_path: str | None = None, aws_conn_id: str | None = "aws_default"
) -> dict[str, Any] | None:
    """The active record of ``endpoint_name``, or ``None`` when nothing was ever activated.

    :param cfg: package configuration (region; ``extra.sagemaker`` settings).
    :param endpoint_name: SageMaker endpoint; default ``<resource_prefix>-ipinsights`` (as the rollout's).
    :param ssm_path: base path; default ``extra.sagemaker.ssm_path`` (``/seclake-ml/ipinsights``).
    :param aws_conn_id: Airflow AWS connection.
    """
    names = parameter_names(aws_setting(cfg, "ssm_path", ssm_path), _endpoint(cfg, endpoint_name))
    return _read(ssm_hook(cfg, aws_conn_id), names[ACTIVE])


def read_previous(
    cfg: Any, *, endpoint_name: str | None = None, ssm_path: str | None = None, aws_conn_id: str | None = "aws_default"
) -> dict[str, Any] | None:
    """The record that was active before the current one, or ``None``. Same parameters as :func:`read_active`."""
    names = parameter_names(aws_setting(cfg, "ssm_path", ssm_path), _endpoint(cfg, endpoint_name))
    return _read(ssm_hook(cfg, aws_conn_id), names[PREVIOUS])


def _dump(record: Mapping[str, Any]) -> str:
    text = json.dumps(dict(record), sort_keys=True, separators=(",", ":"), allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise RegistryError(f"registry record is {size} bytes; SSM standard parameters hold {MAX_VALUE_BYTES}")
    return text


def validate_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Check the fields every active record carries; return it as a plain dict."""
    missing = [f for f in REQUIRED_FIELDS if record.get(f) in (None, "")]
    if missing:
        raise RegistryError(f"registry record misses {missing}; required: {list(REQUIRED_FIELDS)}")
    threshold = record["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold != threshold \
            or threshold in (float("inf"), float("-inf")):
        raise RegistryError(f"registry record threshold: got {threshold!r}; expected a finite number")
    return dict(record)


def record_active(
    cfg: Any,
    record: Mapping[str, Any],
    *,
    ssm_path: str | None = None,
    aws_conn_id: str | None = "aws_default",
) -> dict[str, Any]:
    """Make ``record`` the active one of its endpoint, keeping the former active as ``previous``.

    :param cfg: package configuration (region; ``extra.sagemaker.ssm_path``).
    :param record: at least ``version``, ``threshold``, ``endpoint_name``, ``endpoint_config_name``,
        ``model_name``; JSON-serialisable, at most 4 KB.
    :param ssm_path: base path; default ``extra.sagemaker.ssm_path``.
    :param aws_conn_id: Airflow AWS connection.
    :return: ``{"active": <parameter>, "previous": <parameter or None>, "previous_version": ...,
        "record": <the value written>}``.
    """
    rec = validate_record(record)
    names = parameter_names(aws_setting(cfg, "ssm_path", ssm_path), str(rec["endpoint_name"]))
    hook = ssm_hook(cfg, aws_conn_id)
    current = _read(hook, names[ACTIVE])
    same = current is not None and (current.get("version"), current.get("endpoint_config_name")) == (
        rec["version"], rec["endpoint_config_name"])
    if same and current is not None:  # a re-run: when and from what it was activated stay as recorded
        for key in RERUN_KEPT_FIELDS:
            if key in current:
                rec[key] = current[key]
    value = _dump(rec)
    wrote_previous = None
    if current is not None and not same:
        hook.conn.put_parameter(
            Name=names[PREVIOUS], Value=_dump(current), Type="String", Overwrite=True,
            Description="IP Insights model that was active before the current one",
        )
        wrote_previous = names[PREVIOUS]
    hook.conn.put_parameter(
        Name=names[ACTIVE], Value=value, Type="String", Overwrite=True,
        Description="Active IP Insights model version, threshold and endpoint",
    )
    log.info(
        "registry: %s = version %s (threshold %s) on %s/%s%s", names[ACTIVE], rec["version"], rec["threshold"],
        rec["endpoint_name"], rec["endpoint_config_name"],
        f"; previous version {current.get('version')} kept in {names[PREVIOUS]}" if wrote_previous and current
        else "",
    )
    return {
        "active": names[ACTIVE],
        "previous": wrote_previous,
        "previous_version": current.get("version") if current is not None and not same else None,
        "record": rec,
    }
