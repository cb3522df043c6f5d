"""The vendored IP Insights image table: known values, domain rule, and the SageMaker SDK's own answer.

The SageMaker Python SDK is not a dependency (it cannot be installed next to Airflow 3.3 on Python
3.12). The comparison test installs it (``tests/sagemaker_sdk/requirements.txt``) into its own virtual
environment, cached under ``var/sagemaker-sdk-venv/<hash>``, and asks ``image_uris.retrieve`` there for
every region the table or the SDK knows, for training and inference.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from seclake_ml.aws.image_uris import (
    IPINSIGHTS_REGISTRIES,
    UnknownRegionError,
    ecr_dns_suffix,
    ipinsights_image_uri,
    resolve_image_uri,
)
from seclake_ml.config import SeclakeConfig

REPO = Path(__file__).resolve().parents[1]

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


SDK_REQUIREMENTS = REPO / "tests" / "sagemaker_sdk" / "requirements.txt"
SDK_COMPARE = """
import importlib.util, json, os, sys
from sagemaker.core import image_uris  # SDK v3
import sagemaker.core

spec = importlib.util.spec_from_file_location("vendored_image_uris", sys.argv[1])
ours = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ours)
config = os.path.join(os.path.dirname(sagemaker.core.__file__), "image_uri_config", "ipinsights.json")
with open(config, encoding="utf-8") as fh:
    sdk_regions = sorted(json.load(fh)["versions"]["1"]["registries"])
compared, mismatches = 0, []
regions = sorted(set(sdk_regions) | set(ours.IPINSIGHTS_REGISTRIES))
for region in regions:
    for scope in ("training", "inference"):
        try:
            sdk = image_uris.retrieve(framework="ipinsights", region=region, version="1", image_scope=scope)
        except ValueError as exc:
            sdk = f"SDK error: {exc}"
        try:
            mine = ours.ipinsights_image_uri(region, image_scope=scope)
        except ours.UnknownRegionError as exc:
            mine = f"table error: {exc}"
        compared += 1
        if mine != sdk:
            mismatches.append([region, scope, mine, sdk])
print("RESULT " + json.dumps({"compared": compared, "regions": len(regions), "sdk_regions": len(sdk_regions),
                             "mismatches": mismatches}))
"""


def _sdk_python() -> str:
    """The Python of the cached SageMaker SDK environment (created from SDK_REQUIREMENTS when absent)."""
    import hashlib
    import subprocess
    import sys

    base = getattr(sys, "_base_executable", sys.executable)
    key = hashlib.sha256(SDK_REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = REPO / "var" / "sagemaker-sdk-venv" / key
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        import shutil

        shutil.rmtree(venv, ignore_errors=True)
        for cmd in ([base, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "--quiet", "-r", str(SDK_REQUIREMENTS)]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
        (venv / ".complete").write_text("ok\n", encoding="utf-8")
    return str(python)


def test_table_matches_the_sagemaker_sdk(tmp_path) -> None:
    import subprocess

    script = tmp_path / "compare.py"
    script.write_text(SDK_COMPARE, encoding="utf-8")
    module = REPO / "plugins" / "seclake_ml" / "aws" / "image_uris.py"
    proc = subprocess.run([_sdk_python(), "-I", str(script), str(module)], capture_output=True, text=True,
                          timeout=300, check=False)
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and found, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(found[-1][len("RESULT "):])
    assert result["mismatches"] == []
    # every region of both sides, training and inference
    assert result["regions"] >= max(len(IPINSIGHTS_REGISTRIES), result["sdk_regions"]) >= 30
    assert result["compared"] == 2 * result["regions"]
