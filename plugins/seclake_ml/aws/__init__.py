"""AWS backend of the training DAG: SageMaker IP Insights training, Batch Transform, endpoint rollout.

Modules (each imports the Amazon provider, awswrangler or pandas only inside its functions, so
importing this package stays cheap for the DAG processor):

``image_uris``  registry accounts of the built-in ``ipinsights`` image, per region (no SageMaker SDK)
``names``       deterministic SageMaker resource names from a prefix, the data interval and a content hash
``channels``    pairs Parquet (Athena ``UNLOAD`` output) to headerless ``entity,ip`` CSV channels
``training``    ``CreateTrainingJob`` request, idempotent start, wait or defer, XCom-safe summary
``transform``   Batch Transform scoring of calibration files and parsing of its ``.out`` objects
``rollout``     Model + EndpointConfig + Endpoint create or blue/green update with auto-rollback
``registry``    the active model version and threshold as JSON SSM parameters

Settings that are not fields of :class:`~seclake_ml.config.SeclakeConfig` live in its ``extra``
mapping under the key ``"sagemaker"``; explicit function arguments always win over them:

``resource_prefix``   prefix of every SageMaker resource name (default ``seclake-ml``); the IAM
                      policies in ``include/iam/`` grant SageMaker actions on ``<prefix>-*`` only
``role_arn``          SageMaker execution role ARN
``image_uri``         IP Insights image, overriding the built-in table (e.g. a private mirror)
``ssm_path``          SSM parameter path of the model registry (default ``/seclake-ml/ipinsights``)
``training_instance_type``, ``transform_instance_type``, ``endpoint_instance_type``
``alarms``            CloudWatch alarm names that roll an endpoint update back
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from seclake_ml.config import SageMakerSettings

SETTINGS_KEY = "sagemaker"
#: The declared settings and their defaults (:class:`seclake_ml.config.SageMakerSettings`).
DEFAULT_SETTINGS: dict[str, Any] = {f.name: f.default for f in fields(SageMakerSettings)}


def aws_setting(cfg: Any, name: str, value: Any = None) -> Any:
    """``value`` when given, else ``cfg.extra["sagemaker"][name]``, else the package default.

    :param cfg: a :class:`~seclake_ml.config.SeclakeConfig`.
    :param name: one of :data:`DEFAULT_SETTINGS`.
    :param value: an explicit value from the caller; wins when not ``None``.
    """
    if name not in DEFAULT_SETTINGS:
        raise KeyError(f"unknown SageMaker setting {name!r}; known: {sorted(DEFAULT_SETTINGS)}")
    if value is not None:
        return value
    found = getattr(cfg.sagemaker, name)  # validated when the configuration loaded
    return DEFAULT_SETTINGS[name] if found is None else found


def require_setting(cfg: Any, name: str, value: Any = None) -> Any:
    """Like :func:`aws_setting`, but a missing value raises ``ValueError`` naming where to set it."""
    found = aws_setting(cfg, name, value)
    if not found:
        raise ValueError(
            f"SageMaker setting {name!r} is not set: pass it explicitly or set "
            f"extra.{SETTINGS_KEY}.{name} in the configuration"
        )
    return found
