"""The vendored IP Insights image table: known values, domain rule, and (when installed) the SDK.

The SageMaker Python SDK is not a dependency (it cannot be installed next to Airflow 3.3 on Python
3.12); where a development environment has it, the comparison test checks every region of the table
against ``image_uris.retrieve``.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from seclake_ml.aws.image_uris import (
    IPINSIGHTS_REGISTRIES,
    UnknownRegionError,
    ecr_dns_suffix,
    ipinsights_image_uri,
    resolve_image_uri,
)
from seclake_ml.config import SeclakeConfig

KNOWN = {
    "us-east-1": "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1",
    "us-east-2": "404615174143.dkr.ecr.us-east-2.amazonaws.com/ipinsights:1",
    "us-west-2": "174872318107.dkr.ecr.us-west-2.amazonaws.com/ipinsights:1",
    "eu-west-1": "438346466558.dkr.ecr.eu-west-1.amazonaws.com/ipinsights:1",
    "ap-southeast-2": "712309505854.dkr.ecr.ap-southeast-2.amazonaws.com/ipinsights:1",
    "cn-north-1": "390948362332.dkr.ecr.cn-north-1.amazonaws.com.cn/ipinsights:1",
    "us-gov-west-1": "226302683700.dkr.ecr.us-gov-west-1.amazonaws.com/ipinsights:1",
}


@pytest.mark.parametrize(("region", "uri"), sorted(KNOWN.items()))
def test_known_values(region: str, uri: str) -> None:
    assert ipinsights_image_uri(region) == uri
    assert ipinsights_image_uri(region, image_scope="inference") == uri


def test_table_shape() -> None:
    assert len(IPINSIGHTS_REGISTRIES) >= 30
    for region, account in IPINSIGHTS_REGISTRIES.items():
        assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region), region
        assert re.fullmatch(r"\d{12}", account), (region, account)


def test_domain_rule_matches_botocore_partitions() -> None:
    """Every table region gets the DNS suffix of the partition botocore puts it in."""
    import botocore

    with open(os.path.join(os.path.dirname(botocore.__file__), "data", "endpoints.json")) as f:
        partitions = json.load(f)["partitions"]
    for region in IPINSIGHTS_REGISTRIES:
        matching = [p for p in partitions if region in p.get("regions", {})]
        if not matching:
            matching = [p for p in partitions if re.match(p["regionRegex"], region)]
        assert matching, region
        assert ecr_dns_suffix(region) == matching[0]["dnsSuffix"], region


def test_unknown_region_and_bad_arguments() -> None:
    with pytest.raises(UnknownRegionError, match=r"mx-central-1.*extra\.sagemaker\.image_uri"):
        ipinsights_image_uri("mx-central-1")
    with pytest.raises(UnknownRegionError):
        ipinsights_image_uri("moon-base-1")
    with pytest.raises(ValueError, match="version"):
        ipinsights_image_uri("us-east-1", version="2")
    with pytest.raises(ValueError, match="scope"):
        ipinsights_image_uri("us-east-1", image_scope="serving")


def test_resolve_prefers_explicit_then_config_then_table() -> None:
    mirror = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/mirror/ipinsights:1"
    cfg = SeclakeConfig(region="eu-west-1")
    assert resolve_image_uri(cfg) == "438346466558.dkr.ecr.eu-west-1.amazonaws.com/ipinsights:1"
    assert resolve_image_uri(SeclakeConfig(region="eu-west-1", extra={"sagemaker": {"image_uri": mirror}})) == mirror
    assert resolve_image_uri(cfg, "registry.example:5000/ipinsights@sha256:" + "a" * 64).startswith("registry.")
    with pytest.raises(ValueError, match="image_uri"):
        resolve_image_uri(cfg, "not an image")


def test_table_matches_the_sagemaker_sdk() -> None:
    pytest.importorskip("sagemaker")
    try:
        from sagemaker.core import image_uris  # SDK v3
    except ImportError:
        from sagemaker import image_uris  # SDK v2
    for region in IPINSIGHTS_REGISTRIES:
        for scope in ("training", "inference"):
            sdk = image_uris.retrieve(framework="ipinsights", region=region, version="1", image_scope=scope)
            assert ipinsights_image_uri(region, image_scope=scope) == sdk, region
