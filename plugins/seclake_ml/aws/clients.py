"""The Amazon provider's hooks and the boto3 clients made from them, built in one place.

Every AWS call of the package goes through a hook made here (the triggers make theirs from the same
provider hook, with the region they were serialized with): the connection ``aws_conn_id`` gives the
credentials and the endpoint URL, the configuration the region. :func:`aws_clients` bundles the
scoring path's clients, each created when first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seclake_ml.config import SeclakeConfig


@dataclass
class AwsClients:
    """boto3 clients the aws backend needs (any may be ``None`` when not used)."""

    s3: Any = None
    ssm: Any = None
    sns: Any = None
    runtime: Any = None
    sqs: Any = None
    sagemaker: Any = None


class _LazyClients:
    """:class:`~AwsClients`'s attributes, each client made on first use.

    Every client costs a boto3 session and its service model (a good part of a second); a sensor run
    that only looks for a pending batch needs S3 alone.
    """

    def __init__(self, makers: Mapping[str, Any]) -> None:
        self._makers = dict(makers)

    def __getattr__(self, name: str) -> Any:
        makers = self.__dict__.get("_makers") or {}
        if name not in makers:
            raise AttributeError(name)
        made = makers[name]()
        setattr(self, name, made)
        return made


def aws_clients(cfg: SeclakeConfig, aws_conn_id: str | None) -> AwsClients:
    """boto3 clients from the Amazon provider's hooks (connection, region, endpoint URL from Airflow).

    The result has the attributes of :class:`~AwsClients` (``s3``, ``ssm``,
    ``sns``, ``runtime``, ``sqs``); each client is created when first used.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sns import SnsHook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

    region = cfg.region

    def runtime() -> Any:
        # EndpointScorer retries invoke_endpoint itself (backoff with jitter, then ScoringError);
        # botocore's own retries would multiply its attempts and delays, so this client makes one
        # attempt per call. The connection's other botocore settings (timeouts, proxies) are kept.
        from botocore.config import Config

        base = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sagemaker-runtime", region_name=region)
        single = base.config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sagemaker-runtime", region_name=region,
                           config=single).get_conn()

    return _LazyClients({  # type: ignore[return-value]
        "s3": lambda: S3Hook(aws_conn_id=aws_conn_id, region_name=region).get_conn(),
        "ssm": lambda: SsmHook(aws_conn_id=aws_conn_id, region_name=region).get_conn(),
        "sns": lambda: SnsHook(aws_conn_id=aws_conn_id, region_name=region).get_conn(),
        "runtime": runtime,
        "sqs": lambda: SqsHook(aws_conn_id=aws_conn_id, region_name=region).get_conn(),
        "sagemaker": lambda: AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sagemaker",
                                         region_name=region).get_conn(),
    })


# ------------------------------------------------------------------------------- provider hooks
# Every AWS call of the package goes through one of these (or through aws_clients above): the
# connection ``aws_conn_id`` (``None``: boto3's default credential chain) and the configured region.
def _region(cfg: Any) -> str | None:
    return getattr(cfg, "region", None) if cfg is not None else None


def s3_hook(cfg: Any, aws_conn_id: str | None) -> Any:
    """The provider's ``S3Hook`` (``cfg`` may be ``None``: the connection's region is used)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id, region_name=_region(cfg))


def sagemaker_hook(cfg: Any, aws_conn_id: str | None) -> Any:
    """The provider's ``SageMakerHook``."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id, region_name=_region(cfg))


def ssm_hook(cfg: Any, aws_conn_id: str | None) -> Any:
    """The provider's ``SsmHook``."""
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

    return SsmHook(aws_conn_id=aws_conn_id, region_name=_region(cfg))


def athena_hook(cfg: Any, aws_conn_id: str | None) -> Any:
    """The provider's ``AthenaHook``."""
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    return AthenaHook(aws_conn_id=aws_conn_id, region_name=_region(cfg))


def cloudwatch_client(cfg: Any, aws_conn_id: str | None) -> Any:
    """A CloudWatch client from the provider's base hook."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="cloudwatch", region_name=_region(cfg)).conn
