"""Hostile configuration: every setting typed and range-checked when the configuration loads."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from seclake_ml.config import ConfigError, ScoringSettings, SageMakerSettings, config_fields, load_config

from .conftest import assert_one_line_error, cli_env, run_cli


def _load(doc: dict, **env: str):
    return load_config(variable_json=json.dumps(doc), environ=env)


# (JSON document, the field path the error must name, a fragment of the allowed values)
BAD_DOCUMENTS = [
    ({"extra": {"scoring": {"adopt_existing": "false"}}}, "extra.scoring.adopt_existing", "true | false"),
    ({"extra": {"scoring": {"adopt_existing": 0}}}, "extra.scoring.adopt_existing", "true | false"),
    ({"extra": {"scoring": {"max_objects": -1}}}, "extra.scoring.max_objects", "1..100000"),
    ({"extra": {"scoring": {"max_objects": 0}}}, "extra.scoring.max_objects", "1..100000"),
    ({"extra": {"scoring": {"max_objects": "200"}}}, "extra.scoring.max_objects", "not a string"),
    ({"extra": {"scoring": {"max_objects": 2.5}}}, "extra.scoring.max_objects", "an integer"),
    ({"extra": {"scoring": {"max_objects": True}}}, "extra.scoring.max_objects", "an integer"),
    ({"extra": {"scoring": {"chunk_rows": "many"}}}, "extra.scoring.chunk_rows", "an integer"),
    ({"extra": {"scoring": {"chunk_rows": 10**12}}}, "extra.scoring.chunk_rows", "1..10000000"),
    ({"extra": {"scoring": {"severity_scale": 0}}}, "extra.scoring.severity_scale", "a number"),
    ({"extra": {"scoring": {"severity_scale": "1.0"}}}, "extra.scoring.severity_scale", "not a string"),
    ({"extra": {"scoring": {"publish_min_severity": 9}}}, "extra.scoring.publish_min_severity", "1..6"),
    ({"extra": {"scoring": {"settle_seconds": -5}}}, "extra.scoring.settle_seconds", "0..86400"),
    ({"extra": {"scoring": {"max_object_attempts": 0}}}, "extra.scoring.max_object_attempts", "1..100"),
    ({"extra": {"scoring": {"max_model_attempts": "3"}}}, "extra.scoring.max_model_attempts", "1..100"),
    ({"extra": {"scoring": {"queue_url": "http://evil.example/q"}}}, "extra.scoring.queue_url", "SQS queue URL"),
    ({"extra": {"scoring": {"sns_topic_arn": 5}}}, "extra.scoring.sns_topic_arn", "SNS topic ARN"),
    ({"extra": {"scoring": {"endpoint_name": "bad name\n"}}}, "extra.scoring.endpoint_name", "endpoint name"),
    ({"extra": {"scoring": {"duckdb_memory": "lots"}}}, "extra.scoring.duckdb_memory", "512MB"),
    ({"extra": {"scoring": {"findings_location": "/tmp/x\x1b[2J"}}}, "extra.scoring.findings_location",
     "no control characters"),
    ({"extra": {"scoring": []}}, "extra.scoring", "a JSON object"),
    ({"extra": {"sagemaker": {"role_arn": "admin"}}}, "extra.sagemaker.role_arn", "IAM role ARN"),
    ({"extra": {"sagemaker": {"alarms": "one-alarm"}}}, "extra.sagemaker.alarms", "a list of at most 10"),
    ({"extra": {"sagemaker": {"alarms": [f"a{i}" for i in range(11)]}}}, "extra.sagemaker.alarms", "at most 10"),
    ({"extra": {"sagemaker": {"resource_prefix": "Seclake_ML"}}}, "extra.sagemaker.resource_prefix", "lower-case"),
    ({"extra": {"sagemaker": {"ssm_path": "no-leading-slash"}}}, "extra.sagemaker.ssm_path", "/segment"),
    ({"extra": {"sagemaker": {"training_instance_type": "m5.large"}}}, "extra.sagemaker.training_instance_type",
     "ml.<family>.<size>"),
    ({"extra": {"sagemaker": {"image_uri": "repo with spaces"}}}, "extra.sagemaker.image_uri", "image URI"),
    ({"extra": {"hyperparameters": {"epochs": "5"}}}, "extra.hyperparameters.epochs", "not a string"),
    ({"extra": {"hyperparameters": {"vector_dim": 2}}}, "extra.hyperparameters.vector_dim", "4..4096"),
    ({"dedupe": "false"}, "dedupe", "true | false"),
    ({"source_version": "2"}, "source_version", "1 | 2"),
    ({"duckdb_memory": "4 gigs"}, "duckdb_memory", "4GB"),
    ({"accounts": ["111111111111\n"]}, "accounts", "12-digit"),
    ({"regions": ["us-east-1\n"]}, "regions", "region"),
    ({"lake_bucket": "bucket-name\n"}, "lake_bucket", "S3 bucket"),
    ({"region": "us-east-1\n"}, "region", "AWS region"),
    ({"athena_workgroup": "primary\n"}, "athena_workgroup", "workgroup"),
]


@pytest.mark.parametrize("doc,path,allowed", BAD_DOCUMENTS, ids=[p for _, p, _ in BAD_DOCUMENTS])
def test_bad_setting_is_an_error_naming_field_value_and_allowed(doc: dict, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(doc)
    msg = str(err.value)
    assert f"'{path}'" in msg and allowed in msg, msg
    assert "\n" not in msg  # one line, even for values holding newlines


@pytest.mark.parametrize("doc,key,allowed", [
    ({"extra": {"scoring": {"max_object": 5}}}, "extra.scoring.max_object", "max_objects"),
    ({"extra": {"scoring": {"adopt-existing": False}}}, "extra.scoring.adopt-existing", "adopt_existing"),
    ({"extra": {"sagemaker": {"rolearn": "x"}}}, "extra.sagemaker.rolearn", "role_arn"),
    ({"extra": {"scorng": {}}}, "extra.scorng", "scoring"),
    ({"extra": {"hyperparameters": {"epoch": 3}}}, "extra.hyperparameters.epoch", "epochs"),
    ({"bakend": "aws"}, "bakend", "backend"),
])
def test_misspelt_key_is_an_error_listing_the_allowed_keys(doc: dict, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(doc)
    assert key in str(err.value) and allowed in str(err.value)


def test_nan_and_infinite_numbers_are_refused() -> None:
    # Python's json reads NaN/Infinity; the schema refuses them.
    for value in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ConfigError, match="extra.scoring.severity_scale"):
            load_config(variable_json='{"extra": {"scoring": {"severity_scale": %s}}}' % value, environ={})


def test_valid_sections_load_typed_and_the_old_extra_shape_still_works() -> None:
    cfg = _load({"extra": {"scoring": {"adopt_existing": False, "max_objects": 3, "settle_seconds": 1.5},
                           "sagemaker": {"alarms": ["a", "b"], "role_arn": "arn:aws:iam::111122223333:role/x"},
                           "hyperparameters": {"epochs": 2, "learning_rate": 0.05}}})
    assert cfg.scoring.adopt_existing is False and cfg.scoring.max_objects == 3 and cfg.scoring.settle_seconds == 1.5
    assert cfg.scoring.chunk_rows == 250_000  # default filled in
    assert cfg.sagemaker.alarms == ("a", "b") and cfg.sagemaker.ssm_path == "/seclake-ml/ipinsights"
    assert cfg.hyperparameters == {"epochs": 2, "learning_rate": 0.05}
    assert cfg.to_dict()["extra"]["scoring"]["max_objects"] == 3


def test_environment_text_is_parsed_strictly() -> None:
    cfg = load_config(environ={"SECLAKE_ML_SOURCE_VERSION": "2", "SECLAKE_ML_DEDUPE": "true",
                               "SECLAKE_ML_DUCKDB_MEMORY": "2GB"})
    assert cfg.source_version == 2 and cfg.dedupe is True and cfg.duckdb_memory == "2GB"
    for name, value in (("SECLAKE_ML_DEDUPE", "yes"), ("SECLAKE_ML_SOURCE_VERSION", "two")):
        with pytest.raises(ConfigError):
            load_config(environ={name: value})


def test_config_fields_lists_every_declared_setting_once() -> None:
    rows = list(config_fields())
    names = [r[0] for r in rows]
    assert len(names) == len(set(names))
    for cls, section in ((ScoringSettings, "scoring"), (SageMakerSettings, "sagemaker")):
        for f in fields(cls):
            assert f"extra.{section}.{f.name}" in names
    by_name = {r[0]: r for r in rows}
    assert by_name["extra.scoring.max_objects"][1:3] == ("int", 200)
    assert "1..100000" in by_name["extra.scoring.max_objects"][3]
    assert all(isinstance(r[4], str) and r[4] for r in rows)  # every setting is described
    assert "duckdb_memory" in names and "extra.hyperparameters.epochs" in names


@pytest.mark.parametrize("doc,path", [
    ({"extra": {"scoring": {"adopt_existing": "false"}}}, "extra.scoring.adopt_existing"),
    ({"extra": {"scoring": {"max_objects": -1}}}, "extra.scoring.max_objects"),
    ({"extra": {"scoring": {"max_objets": 5}}}, "extra.scoring.max_objets"),
])
def test_cli_reports_a_bad_setting_on_one_line(tmp_path, doc: dict, path: str) -> None:
    env = cli_env(SECLAKE_ML_CONFIG=json.dumps({"work_location": str(tmp_path / "work"), **doc}))
    proc = run_cli("scoring", "show", env=env)
    assert_one_line_error(proc, path)
