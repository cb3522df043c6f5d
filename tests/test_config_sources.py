"""Configuration validation and the OCSF source registry."""

from __future__ import annotations

import json

import pytest

from seclake_ml.config import ConfigError, SeclakeConfig, load_config
from seclake_ml.sources import SOURCES, get_source, resolve_source_view


def test_defaults_are_local_and_valid() -> None:
    cfg = load_config(environ={})
    assert cfg.backend == "local" and cfg.source_version == 1
    assert cfg.source_views() == [("vpc_flow", "instance_peer"), ("cloudtrail_signin", "principal_ip")]
    assert cfg.glue_db == "amazon_security_lake_glue_db_us_east_1"


def test_precedence_variable_then_env_fields_then_overrides() -> None:
    env = {"SECLAKE_ML_CONFIG": json.dumps({"region": "eu-west-1", "source_version": 2}), "SECLAKE_ML_REGION": "eu-central-1"}
    cfg = load_config(environ=env)
    assert cfg.region == "eu-central-1" and cfg.source_version == 2
    cfg = load_config({"region": "ap-southeast-2"}, environ=env)
    assert cfg.region == "ap-southeast-2"
    cfg = load_config(variable_json=json.dumps({"sources": "route53, vpc_flow:instance_src_ip"}), environ={})
    assert cfg.source_views() == [("route53", "instance_resolved_ip"), ("vpc_flow", "instance_src_ip")]


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("backend", "gcp", "allowed: local | aws"),
        ("source_version", 3, "1 (OCSF 1.0.0-rc.2) | 2 (OCSF 1.1.0)"),
        ("source_version", "two", "1 | 2"),
        ("region", "us_east_1", "AWS region"),
        ("accounts", ["12345"], "12-digit"),
        ("regions", ["mars-1"], "region names"),
        ("sources", ["vpc_flow:nope"], "unknown view 'nope'"),
        ("sources", ["dns"], "unknown source 'dns'"),
        ("sources", [], "at least one"),
        ("glue_database", "Robert'); DROP", "lower-case"),
        ("lake_bucket", "UPPER", "S3 bucket"),
        ("athena_workgroup", "a b", "workgroup"),
        ("dedupe", "maybe", "true | false"),
    ],
)
def test_bad_fields_name_the_field_and_allowed_values(field: str, value, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({field: value}, environ={})
    msg = str(err.value)
    assert f"'{field}'" in msg and needle in msg


def test_unknown_fields_and_bad_json_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['bakend'\]"):
        load_config({"bakend": "aws"}, environ={})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(environ={"SECLAKE_ML_CONFIG": "{not json"})
    with pytest.raises(ConfigError, match="must be an object"):
        load_config(environ={"SECLAKE_ML_CONFIG": "[1, 2]"})


def test_aws_backend_needs_s3_work_location() -> None:
    with pytest.raises(ConfigError, match="work_location"):
        load_config({"backend": "aws", "work_location": "/tmp/x"}, environ={})
    cfg = load_config({"backend": "aws", "work_location": "s3://work-bucket/seclake"}, environ={})
    assert cfg.work_is_s3 and isinstance(cfg, SeclakeConfig)


def test_registry_tables_prefixes_and_classes() -> None:
    vpc, ct_api, ct_auth = get_source("vpc_flow"), get_source("cloudtrail_api"), get_source("cloudtrail_signin")
    assert vpc.table_name(1, "us-east-1") == "amazon_security_lake_table_us_east_1_vpc_flow_1_0"
    assert vpc.table_name(2, "eu-west-1") == "amazon_security_lake_table_eu_west_1_vpc_flow_2_0"
    assert ct_api.table_name(2, "us-east-1").endswith("_cloud_trail_mgmt_2_0")
    assert vpc.s3_prefix(1) == "aws/VPC_FLOW/1.0" and get_source("route53").s3_prefix(2) == "aws/ROUTE53/2.0"
    assert ct_api.class_uid == {1: 3005, 2: 6003} and ct_auth.class_uid == {1: 3002, 2: 3002}
    assert vpc.time_column(1) == "time" and vpc.time_column(2) == "time_dt"
    assert set(SOURCES) == {"vpc_flow", "route53", "cloudtrail_signin", "cloudtrail_api", "s3_data", "lambda_execution"}
    s3, lam = get_source("s3_data"), get_source("lambda_execution")
    # Security Lake's data-event tables and folders (SECURITY_LAKE_FACTS: s3_data_{1,2}_0, lambda_execution_{1,2}_0)
    assert s3.table_name(1, "us-east-1") == "amazon_security_lake_table_us_east_1_s3_data_1_0"
    assert lam.table_name(2, "eu-west-1") == "amazon_security_lake_table_eu_west_1_lambda_execution_2_0"
    assert s3.s3_prefix(2) == "aws/S3_DATA/2.0" and lam.s3_prefix(1) == "aws/LAMBDA_EXECUTION/1.0"
    assert s3.class_uid == lam.class_uid == {1: 3005, 2: 6003}
    assert s3.default_view.context is not None and s3.default_view.context[0] == "bucket"
    assert "resources" in s3.default_view.columns(1) and "resources" in s3.default_view.columns(2)


def test_views_reference_the_right_columns_per_version() -> None:
    ct = get_source("cloudtrail_api").view("principal_ip")
    assert "actor.user.uuid" in ct.columns(1) and "actor.user.uuid" not in ct.columns(2)
    assert "actor.user.uid" in ct.columns(2) and "actor.user.account.uid" in ct.columns(2)
    peer = get_source("vpc_flow").view("instance_peer")
    assert {"connection_info.direction_id", "dst_endpoint.instance_uid", "src_endpoint.ip"} <= set(peer.columns(1))
    assert resolve_source_view("vpc_flow") == ("vpc_flow", "instance_peer")
    with pytest.raises(ValueError, match="allowed: instance_peer, instance_src_ip, instance_own_ip"):
        resolve_source_view("vpc_flow:bogus")
