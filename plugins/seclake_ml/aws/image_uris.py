"""ECR URI of SageMaker's built-in IP Insights image, without the SageMaker Python SDK.

The SDK cannot be installed next to Airflow 3.3 on Python 3.12, so the registry account of the
``ipinsights`` repository is kept here, one per region, as published in the SDK's
``image_uri_config/ipinsights.json`` (Apache-2.0). One image, version ``1``, serves both training
and inference. The host name is ``<account>.dkr.ecr.<region>.<dns suffix>`` where the DNS suffix is
that of the region's partition (``amazonaws.com``, ``amazonaws.com.cn`` for ``cn-*``, and the
isolated partitions' own suffixes).

Regions missing from the table raise :class:`UnknownRegionError`; set ``extra.sagemaker.image_uri``
in the configuration to use an image this table does not know (see :func:`resolve_image_uri`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "IPINSIGHTS_REGISTRIES",
    "IPINSIGHTS_REPOSITORY",
    "IPINSIGHTS_VERSION",
    "UnknownRegionError",
    "ecr_dns_suffix",
    "ipinsights_image_uri",
    "resolve_image_uri",
]

IPINSIGHTS_REPOSITORY = "ipinsights"
IPINSIGHTS_VERSION = "1"
IMAGE_SCOPES = ("training", "inference")
_IMAGE_RE = re.compile(r"[\w.-]+(:\d+)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})")

IPINSIGHTS_REGISTRIES: dict[str, str] = {
    "af-south-1": "455444449433",
    "ap-east-1": "286214385809",
    "ap-northeast-1": "351501993468",
    "ap-northeast-2": "835164637446",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "991648021394",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "475088953585",
    "ap-southeast-2": "712309505854",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "469771592824",
    "ca-west-1": "190319476487",
    "cn-north-1": "390948362332",
    "cn-northwest-1": "387376663083",
    "eu-central-1": "664544806723",
    "eu-central-2": "680994064768",
    "eu-north-1": "669576153137",
    "eu-south-1": "257386234256",
    "eu-south-2": "104374241257",
    "eu-west-1": "438346466558",
    "eu-west-2": "644912444149",
    "eu-west-3": "749696950732",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "249704162688",
    "sa-east-1": "855470959533",
    "us-east-1": "382416733822",
    "us-east-2": "404615174143",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "226302683700",
    "us-iso-east-1": "490574956308",
    "us-isob-east-1": "765400339828",
    "us-isof-east-1": "108575199400",
    "us-isof-south-1": "124985052026",
    "us-west-1": "632365934929",
    "us-west-2": "174872318107",
}

# (region pattern, DNS suffix) per partition, most specific first; the patterns follow botocore's
# partition data (``regionRegex``/``dnsSuffix`` in ``botocore/data/endpoints.json``).
_PARTITION_DNS_SUFFIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"cn-\w+-\d+"), "amazonaws.com.cn"),
    (re.compile(r"us-gov-\w+-\d+"), "amazonaws.com"),
    (re.compile(r"us-isob-\w+-\d+"), "sc2s.sgov.gov"),
    (re.compile(r"us-isof-\w+-\d+"), "csp.hci.ic.gov"),
    (re.compile(r"us-iso-\w+-\d+"), "c2s.ic.gov"),
    (re.compile(r"eu-isoe-\w+-\d+"), "cloud.adc-e.uk"),
    (re.compile(r"eusc-de-\w+-\d+"), "amazonaws.eu"),
    (re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+"), "amazonaws.com"),
)


class UnknownRegionError(ValueError):
    """The IP Insights image registry of a region is not known."""


def ecr_dns_suffix(region: str) -> str:
    """DNS suffix of the partition ``region`` belongs to, e.g. ``amazonaws.com.cn`` for ``cn-north-1``.

    :param region: an AWS region name.
    """
    if isinstance(region, str):
        for pattern, suffix in _PARTITION_DNS_SUFFIXES:
            if pattern.fullmatch(region):
                return suffix
    raise UnknownRegionError(f"region {region!r} is not an AWS region name of any known partition")


def ipinsights_image_uri(region: str, *, version: str = IPINSIGHTS_VERSION, image_scope: str = "training") -> str:
    """ECR URI of the built-in IP Insights image in ``region``.

    :param region: AWS region of the training job, transform job or endpoint.
    :param version: image version; only ``"1"`` exists.
    :param image_scope: ``training`` or ``inference`` (the same image serves both).
    :raises UnknownRegionError: the region is not in :data:`IPINSIGHTS_REGISTRIES`.
    :raises ValueError: unknown version or scope.
    """
    if str(version) != IPINSIGHTS_VERSION:
        raise ValueError(f"ipinsights image version: got {version!r}; allowed: {IPINSIGHTS_VERSION!r}")
    if image_scope not in IMAGE_SCOPES:
        raise ValueError(f"ipinsights image scope: got {image_scope!r}; allowed: {' | '.join(IMAGE_SCOPES)}")
    account = IPINSIGHTS_REGISTRIES.get(region) if isinstance(region, str) else None
    if account is None:
        raise UnknownRegionError(
            f"no IP Insights image registry known for region {region!r}; known regions: "
            f"{', '.join(sorted(IPINSIGHTS_REGISTRIES))}. Set extra.sagemaker.image_uri in the "
            "configuration to give the image URI explicitly."
        )
    return f"{account}.dkr.ecr.{region}.{ecr_dns_suffix(region)}/{IPINSIGHTS_REPOSITORY}:{IPINSIGHTS_VERSION}"


def resolve_image_uri(cfg: Any, image_uri: str | None = None) -> str:
    """The image to use: ``image_uri`` if given, else ``extra.sagemaker.image_uri``, else the table's.

    :param cfg: the package configuration (its ``region`` picks the registry).
    :param image_uri: an explicit image URI, used as is.
    """
    from seclake_ml.aws import aws_setting

    explicit = aws_setting(cfg, "image_uri", image_uri)
    if explicit:
        if not isinstance(explicit, str) or not _IMAGE_RE.fullmatch(explicit):
            raise ValueError(f"image_uri: got {explicit!r}; expected registry/repository:tag")
        return explicit
    return ipinsights_image_uri(cfg.region)
