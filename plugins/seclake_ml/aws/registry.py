"""Registry of the active IP Insights model: JSON SSM parameters, one pair per endpoint.

``<ssm_path>/<endpoint_name>/active``    the model that serves now: version, threshold, endpoint,
                                         endpoint config, model, artifact, image, activation time
``<ssm_path>/<endpoint_name>/previous``  the record that was active before it (for rollback and audit)

The version and its threshold are one JSON value, so a reader never sees a threshold with the wrong
model. :func:`record_active` is called by the rollout only once the endpoint is ``InService`` on the
new configuration. It first copies the current ``active`` value to ``previous`` and then writes the
new ``active``; recording the same version and endpoint config again (a re-run) rewrites ``active``
only (its ``activated_at`` and ``previous_endpoint_config_name`` kept) and leaves ``previous`` as it is.

:func:`read_active_record` is the one reader of an ``active`` record: the DAG's registry helpers
(through the provider's SSM hook), the scoring service and the ipcheck Lambda (raw boto3 clients) all
use it, so a record is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from seclake_ml.aws import aws_setting
from seclake_ml.aws.clients import ssm_hook
from seclake_ml.aws_errors import error_code
from seclake_ml.model_store import check_threshold, check_version

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

log = logging.getLogger(__name__)

ACTIVE = "active"
PREVIOUS = "previous"
MAX_VALUE_BYTES = 4096  # standard-tier parameter limit
REQUIRED_FIELDS = ("version", "threshold", "endpoint_name", "endpoint_config_name", "model_name")
RERUN_KEPT_FIELDS = ("activated_at", "previous_endpoint_config_name")
_PATH_RE = re.compile(r"(/[A-Za-z0-9_.-]+)+")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}")
NOT_FOUND = "ParameterNotFound"


class RegistryError(RuntimeError):
    """A registry parameter is unreadable or a record is invalid."""


class NoActiveRecord(RegistryError):
    """The ``active`` parameter does not exist: no model was ever activated on the endpoint."""


class UnreadableRecord(RegistryError):
    """A record cannot be used: its parameter cannot be read, or its value is not a JSON object with a
    valid ``version`` and a finite ``threshold``.

    :param message: what is wrong, naming the parameter or record.
    :param retryable: ``True`` when the SSM call failed (access, throttling, network), so the same read
        may succeed later; ``False`` when the stored value itself is unusable.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


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
    if not isinstance(endpoint_name, str) or not _ENDPOINT_RE.fullmatch(endpoint_name):
        raise ValueError(f"endpoint_name: got {endpoint_name!r}; expected a SageMaker endpoint name")
    base = f"{ssm_path}/{endpoint_name}"
    if base.count("/") + 1 > 15:
        raise ValueError(f"ssm_path {ssm_path!r} is too deep: SSM allows 15 levels")
    return {ACTIVE: f"{base}/{ACTIVE}", PREVIOUS: f"{base}/{PREVIOUS}"}


def _is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a botocore error raised before any answer (credentials, network, timeouts)."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # no botocore, so no boto3 client either: a fake client's own exception
        return False
    return isinstance(exc, BotoCoreError)


def _parameter_text(ssm: Any, name: str) -> str | None:
    """The value of SSM parameter ``name``, or ``None`` when it does not exist.

    :param ssm: an SSM client (boto3, or anything with ``get_parameter(Name=...)`` raising botocore errors).
    :param name: the parameter name.
    :raises UnreadableRecord: (``retryable``) the call failed for another reason than a missing parameter.
    """
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:
        code = error_code(exc)
        if code == NOT_FOUND:
            return None
        if code is None and not _is_transport_error(exc):
            raise
        raise UnreadableRecord(f"SSM parameter {name}: {code or type(exc).__name__}", retryable=True) from None
    if not isinstance(value, str):
        raise UnreadableRecord(f"SSM parameter {name}: got a {type(value).__name__} value; expected JSON text")
    return value


def _json_object(text: str, where: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; :class:`UnreadableRecord` naming ``where`` otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UnreadableRecord(f"{where} is not JSON ({reason}): {text[:100]!r}") from None
    if not isinstance(value, dict):
        raise UnreadableRecord(f"{where} is a JSON {type(value).__name__}, not an object")
    return value


def check_active_record(record: Any, where: str = "active record") -> dict[str, Any]:
    """``record`` as a plain dict when it can serve as the active record; else :class:`UnreadableRecord`.

    It must carry a valid ``version`` name and a finite numeric ``threshold`` (returned as a float); an
    ``endpoint_name``, when present, must be a SageMaker endpoint name. Other fields are kept as they are.

    :param record: the parsed record.
    :param where: what the record is (its parameter), named in errors.
    """
    if not isinstance(record, Mapping):
        raise UnreadableRecord(f"{where} is a JSON {type(record).__name__}, not an object")
    try:
        version = check_version(record.get("version"), where)
    except ValueError as exc:
        raise UnreadableRecord(f"{where} has no usable 'version': {exc}") from None
    if record.get("threshold") is None:
        raise UnreadableRecord(f"{where} has no numeric 'threshold'")
    try:
        threshold = check_threshold(record.get("threshold"), where)
    except ValueError as exc:
        raise UnreadableRecord(f"{where}'s 'threshold' is not finite: {exc}") from None
    endpoint = record.get("endpoint_name")
    if endpoint is not None and not (isinstance(endpoint, str) and _ENDPOINT_RE.fullmatch(endpoint)):
        raise UnreadableRecord(f"{where} has no valid 'endpoint_name': got {str(endpoint)[:80]!r}")
    return dict(record, version=version, threshold=threshold)


def parse_active_record(text: str, where: str = "active record") -> dict[str, Any]:
    """The active record in JSON ``text``, checked by :func:`check_active_record`.

    :param text: the parameter's value.
    :param where: what the record is (its parameter), named in errors.
    """
    return check_active_record(_json_object(text, where), where)


def read_active_record(ssm: Any, name: str) -> dict[str, Any]:
    """The active record held by SSM parameter ``name``, parsed and checked (:func:`check_active_record`).

    :param ssm: an SSM client: boto3's, a provider hook's ``conn``, or anything with
        ``get_parameter(Name=...)`` answering ``{"Parameter": {"Value": <JSON text>}}``.
    :param name: the ``active`` parameter (:func:`parameter_names`).
    :raises NoActiveRecord: the parameter does not exist (no model was ever activated).
    :raises UnreadableRecord: the parameter cannot be read (``retryable``) or holds no usable record.
    """
    text = _parameter_text(ssm, name)
    if text is None:
        raise NoActiveRecord(f"SSM parameter {name} does not exist: no model is active yet")
    return parse_active_record(text, f"active record {name}")


def _read(hook: SsmHook, name: str) -> dict[str, Any] | None:
    """Any JSON-object record in parameter ``name`` (``previous``, or the ``active`` one being replaced),
    or ``None`` when the parameter does not exist."""
    text = _parameter_text(hook.conn, name)
    return None if text is None else _json_object(text, f"SSM parameter {name}")


def _endpoint(cfg: Any, endpoint_name: str | None) -> str:
    from seclake_ml.aws.names import endpoint_name as default_endpoint_name

    return endpoint_name or default_endpoint_name(aws_setting(cfg, "resource_prefix"))


def configured_endpoint(cfg: Any) -> str:
    """The endpoint scoring follows: ``extra.scoring.endpoint_name``, else the resource prefix's default."""
    return _endpoint(cfg, cfg.scoring.endpoint_name)


def active_parameter(cfg: Any) -> str:
    """The SSM parameter of the configured endpoint's active record, under ``ssm_path``."""
    return parameter_names(aws_setting(cfg, "ssm_path"), configured_endpoint(cfg))[ACTIVE]


def read_active(
    cfg: Any, *, endpoint_name: str | None = None, ssm_path: str | None = None, aws_conn_id: str | None = "aws_default"
) -> dict[str, Any] | None:
    """The active record of ``endpoint_name`` (:func:`read_active_record` through the provider's SSM
    hook), or ``None`` when nothing was ever activated.

    :param cfg: package configuration (region; ``extra.sagemaker`` settings).
    :param endpoint_name: SageMaker endpoint; default ``<resource_prefix>-ipinsights`` (as the rollout's).
    :param ssm_path: base path; default ``extra.sagemaker.ssm_path`` (``/seclake-ml/ipinsights``).
    :param aws_conn_id: Airflow AWS connection.
    :raises UnreadableRecord: the parameter cannot be read or holds no usable record.
    """
    names = parameter_names(aws_setting(cfg, "ssm_path", ssm_path), _endpoint(cfg, endpoint_name))
    try:
        return read_active_record(ssm_hook(cfg, aws_conn_id).conn, names[ACTIVE])
    except NoActiveRecord:
        return None


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
