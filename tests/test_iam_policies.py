"""The IAM documents under ``include/iam``: valid, least-privilege, fully parameterised."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from seclake_ml.sources import SOURCES

IAM = Path(__file__).resolve().parents[1] / "include" / "iam"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")
ACTION = re.compile(r"[a-z0-9-]+:[A-Za-z0-9]+")

# Actions that accept no resource ARN, so AWS requires "Resource": "*" (Service Authorization
# Reference: the action lists no resource type). Nothing else may use "*".
NO_RESOURCE_LEVEL = {
    "lakeformation:GetDataAccess",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "logs:DescribeLogGroups",
    "s3:GetAccountPublicAccessBlock",
}
SAMPLE = {
    "Partition": "aws", "Region": "us-east-1", "AccountId": "111122223333",
    "LakeBucket": "aws-security-data-lake-us-east-1-abc", "CustomSourcePrefix": "ipinsights",
    "GlueDatabase": "amazon_security_lake_glue_db_us_east_1", "AthenaWorkgroup": "seclake-ml",
    "WorkBucket": "example-work", "WorkPrefix": "ipinsights", "ResourcePrefix": "seclake-ml",
    "SageMakerExecutionRoleName": "seclake-ml-sagemaker", "ParameterPath": "seclake-ml/ipinsights",
    "SubscriberQueueName": "SecurityLake_us-east-1_MAIN_QUEUE_1_0", "FindingsTopicName": "seclake-ml-findings",
    "MwaaEnvironmentName": "seclake-ml", "MwaaBucket": "example-mwaa", "IpInsightsRegistryAccount": "382416733822",
}
FILES = sorted(IAM.glob("*.json"))

# every source of the registry, in registry order (the folders the scoring DAG and the Lambda read)
LAKE_SOURCE_PREFIXES = tuple(dict.fromkeys(f"aws/{spec.lake_source}/*" for spec in SOURCES.values()))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, s) for p in FILES for s in load(p)["Statement"]]


def test_expected_documents_exist() -> None:
    assert {p.name for p in FILES} == {
        "mwaa-execution-role-policy.json", "mwaa-execution-role-base-policy.json",
        "mwaa-execution-role-trust-policy.json", "sagemaker-execution-role-policy.json",
        "sagemaker-execution-role-trust-policy.json", "lambda-ipcheck-policy.json",
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_valid_policy_document(path: Path) -> None:
    doc = load(path)
    assert doc["Version"] == "2012-10-17" and doc["Statement"]
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids)), "Sids must be unique"
    for s in doc["Statement"]:
        assert s["Effect"] == "Allow" and set(s) <= {"Sid", "Effect", "Action", "Resource", "NotResource",
                                                      "Condition", "Principal"}
    # managed policies hold 6,144 characters without whitespace
    assert len(json.dumps(doc, separators=(",", ":"))) <= 6144
    # every placeholder is documented and known
    used = set(PLACEHOLDER.findall(path.read_text()))
    assert used <= set(SAMPLE), used - set(SAMPLE)
    readme = (IAM / "README.md").read_text()
    assert all(f"${{{name}}}" in readme for name in used)


@pytest.mark.parametrize(("name", "statement"), statements(), ids=lambda v: v if isinstance(v, str) else v.get("Sid"))
def test_statement_is_least_privilege(name: str, statement: dict[str, Any]) -> None:
    actions = as_list(statement["Action"])
    for action in actions:
        assert "*" not in action and ACTION.fullmatch(action), f"{name}: wildcard or malformed action {action}"
    if "Principal" in statement:  # trust policy
        assert actions == ["sts:AssumeRole"]
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "${AccountId}"
        assert "${AccountId}" in statement["Condition"]["ArnLike"]["aws:SourceArn"]
        return
    if "NotResource" in statement:  # only AWS's documented form for MWAA's AWS-owned-key queues
        assert statement["Condition"]["StringLike"]["kms:ViaService"] == ["sqs.${Region}.amazonaws.com"]
        assert set(actions) <= {"kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"}
        return
    resources = as_list(statement["Resource"])
    if resources == ["*"]:
        assert set(actions) <= NO_RESOURCE_LEVEL, f"{name}: Resource * for {set(actions) - NO_RESOURCE_LEVEL}"
        return
    for resource in resources:
        assert resource.startswith("arn:${Partition}:"), resource
        assert PLACEHOLDER.search(resource.split(":", 2)[2]), f"{name}: {resource} not scoped by a placeholder"
        rendered = PLACEHOLDER.sub(lambda m: SAMPLE[m.group(1)], resource)
        assert re.fullmatch(r"arn:aws:[a-z0-9-]+:([a-z0-9-]*):(\d{12}|\*)?:.+", rendered), rendered
        assert rendered.split(":")[3] in ("", "us-east-1"), rendered  # region pinned where there is one


def test_trust_principals() -> None:
    mwaa = load(IAM / "mwaa-execution-role-trust-policy.json")["Statement"][0]
    assert sorted(mwaa["Principal"]["Service"]) == ["airflow-env.amazonaws.com", "airflow.amazonaws.com"]
    sm = load(IAM / "sagemaker-execution-role-trust-policy.json")["Statement"][0]
    assert sm["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def _grants(doc: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in load(IAM / doc)["Statement"]:
        for action in as_list(s["Action"]):
            out.setdefault(action, []).extend(as_list(s.get("Resource", [])))
    return out


def test_mwaa_role_scopes() -> None:
    grants = _grants("mwaa-execution-role-policy.json")
    passrole = [s for s in load(IAM / "mwaa-execution-role-policy.json")["Statement"] if "iam:PassRole" in s["Action"]]
    assert len(passrole) == 1
    assert passrole[0]["Resource"] == "arn:${Partition}:iam::${AccountId}:role/${SageMakerExecutionRoleName}"
    assert passrole[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    for action in ("sagemaker:CreateTrainingJob", "sagemaker:CreateModel", "sagemaker:UpdateEndpoint",
                   "sagemaker:CreateTransformJob", "sagemaker:CreateEndpointConfig"):
        assert grants[action] and all(r.endswith("/${ResourcePrefix}-*") for r in grants[action]), action
    lake_reads = [r for r in grants["s3:GetObject"] if "${LakeBucket}" in r]
    assert sorted(lake_reads) == sorted(
        f"arn:${{Partition}}:s3:::${{LakeBucket}}/{p}" for p in
        (*LAKE_SOURCE_PREFIXES, "ext/${CustomSourcePrefix}-*", "ext/risk-cloudtrail/*"))
    assert grants["s3:PutObject"] and all(
        r.endswith(("${WorkBucket}/${WorkPrefix}/*", "${LakeBucket}/ext/${CustomSourcePrefix}-*",
                    "${LakeBucket}/ext/risk-cloudtrail/*"))
        for r in grants["s3:PutObject"])
    assert grants["ssm:PutParameter"] == [
        "arn:${Partition}:ssm:${Region}:${AccountId}:parameter/${ParameterPath}",
        "arn:${Partition}:ssm:${Region}:${AccountId}:parameter/${ParameterPath}/*"]
    assert set(grants) >= {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sns:Publish", "cloudwatch:DescribeAlarms",
                           "athena:StartQueryExecution", "glue:GetTable", "lakeformation:GetDataAccess"}


def test_sagemaker_role_scopes() -> None:
    grants = _grants("sagemaker-execution-role-policy.json")
    assert grants["ecr:BatchGetImage"] == [
        "arn:${Partition}:ecr:${Region}:${IpInsightsRegistryAccount}:repository/ipinsights"]
    assert grants["s3:PutObject"] == ["arn:${Partition}:s3:::${WorkBucket}/${WorkPrefix}/*"]
    assert not any(a.startswith(("iam:", "sagemaker:")) for a in grants)


def test_lambda_ipcheck_role_scopes() -> None:
    doc = load(IAM / "lambda-ipcheck-policy.json")
    grants = _grants("lambda-ipcheck-policy.json")
    assert all(s["Resource"] != "*" for s in doc["Statement"])
    assert grants["sagemaker:InvokeEndpoint"] == [
        "arn:${Partition}:sagemaker:${Region}:${AccountId}:endpoint/${ResourcePrefix}-ipinsights"]
    assert grants["ssm:GetParameter"] == [
        "arn:${Partition}:ssm:${Region}:${AccountId}:parameter/${ParameterPath}/${ResourcePrefix}-ipinsights/active"]
    lake_reads = [r for r in grants["s3:GetObject"] if "${LakeBucket}" in r]
    assert sorted(lake_reads) == sorted(
        f"arn:${{Partition}}:s3:::${{LakeBucket}}/{p}" for p in LAKE_SOURCE_PREFIXES)
    assert sorted(grants["s3:PutObject"]) == sorted([
        "arn:${Partition}:s3:::${LakeBucket}/ext/${CustomSourcePrefix}-*",
        "arn:${Partition}:s3:::${WorkBucket}/${WorkPrefix}/*"])
    listing = [s for s in doc["Statement"] if "s3:ListBucket" in as_list(s["Action"])]
    assert {s["Resource"]: s["Condition"]["StringLike"]["s3:prefix"] for s in listing} == {
        "arn:${Partition}:s3:::${WorkBucket}": ["${WorkPrefix}", "${WorkPrefix}/*"],
        "arn:${Partition}:s3:::${LakeBucket}": list(LAKE_SOURCE_PREFIXES)}
    assert all(set(s["Condition"]) == {"StringLike"} for s in listing)
    assert grants["sqs:ReceiveMessage"] == grants["sqs:DeleteMessage"] == [
        "arn:${Partition}:sqs:${Region}:${AccountId}:${SubscriberQueueName}"]
    assert grants["sns:Publish"] == ["arn:${Partition}:sns:${Region}:${AccountId}:${FindingsTopicName}"]
    assert set(grants) == {
        "sagemaker:InvokeEndpoint", "ssm:GetParameter", "s3:GetObject", "s3:PutObject", "s3:ListBucket", "sns:Publish",
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert all(r.endswith("log-group:/aws/lambda/${ResourcePrefix}-ipcheck:*") for r in grants["logs:PutLogEvents"])


def _iam_like(pattern: str, value: str) -> bool:
    """IAM ``StringLike``: ``*`` any run of characters, ``?`` one character."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, flags=re.S) is not None


class _RecordingLake:
    """A stand-in S3 client over a few keys that records every listing prefix (``list_objects_v2`` semantics)."""

    KEYS = (
        "ext/ipinsights-vpc-flow/region=us-east-1/accountId=111111111111/eventDay=20240105/a.parquet",
        "ext/ipinsights-cloudtrail-api/region=us-east-1/accountId=external/eventDay=20240104/b.parquet",
        "ext/risk-cloudtrail/region=eu-west-1/accountId=111111111111/eventDay=20240105/c.parquet",
        "ext/other-source/region=eu-west-1/accountId=111111111111/eventDay=20240105/d.parquet",
    )

    def __init__(self) -> None:
        self.prefixes: list[str] = []

    def get_paginator(self, name: str) -> "_RecordingLake":
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str = "", Delimiter: str | None = None):  # noqa: N803 - boto3's names
        self.prefixes.append(Prefix)
        contents, common = [], set()
        for key in self.KEYS:
            if not key.startswith(Prefix):
                continue
            rest = key[len(Prefix):]
            if Delimiter and Delimiter in rest:
                common.add(Prefix + rest[: rest.index(Delimiter) + 1])
            else:
                contents.append({"Key": key, "Size": 0, "ETag": '"x"'})  # empty: skipped, never downloaded
        yield {"Contents": contents, "CommonPrefixes": [{"Prefix": p} for p in sorted(common)]}


@pytest.mark.parametrize("flt", [{}, {"detector": "risk"}, {"detector": "ipinsights"},
                                 {"source": "ipinsights-vpc-flow"}, {"source": "risk-cloudtrail"},
                                 {"source": "other-source"}], ids=str)
def test_workspace_lists_only_prefixes_the_mwaa_role_may_list(flt: dict) -> None:
    """The analyst workspace (in the api-server, as the MWAA execution role) lists the findings tree
    with only the ``s3:prefix`` values ``ListSecurityLakeSources`` allows."""
    pytest.importorskip("duckdb")
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.workspace import data

    (listing,) = [s for s in load(IAM / "mwaa-execution-role-policy.json")["Statement"]
                  if s["Resource"] == "arn:${Partition}:s3:::${LakeBucket}" and "s3:ListBucket" in as_list(s["Action"])]
    allowed = [PLACEHOLDER.sub(lambda m: SAMPLE[m.group(1)], p) for p in listing["Condition"]["StringLike"]["s3:prefix"]]
    assert SAMPLE["CustomSourcePrefix"] + "-" in data.AWS_SOURCE_PREFIXES
    lake = _RecordingLake()
    cfg = SeclakeConfig(backend="aws", lake_bucket="lake-bucket", work_location="s3://lake-bucket/w")
    res = data.list_findings(cfg, data.FindingsFilter(**flt), s3_client=lake)
    assert res["error"] is None and (lake.prefixes or flt == {"source": "other-source"})
    denied = [p for p in lake.prefixes if not any(_iam_like(a, p) for a in allowed)]
    assert not denied, f"listed outside the role's s3:prefix condition: {denied}"
    wanted = {k for k in _RecordingLake.KEYS if "/other-source/" not in k
              and (not flt.get("source") or f"/{flt['source']}/" in k)
              and (flt.get("detector") != "risk" or "/risk-" in k)
              and (flt.get("detector") != "ipinsights" or "/ipinsights-" in k)}
    assert {s["key"] for s in res["skipped"]} == wanted  # every allowed source was found (empty files here)
