"""boto3 clients for the scoring path, built in one place from the Amazon provider's hooks.

The connection, region and endpoint URL come from the Airflow connection (``aws_conn_id``), as for
every other AWS call of the package. Each client is created when first used.
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
