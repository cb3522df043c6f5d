"""The one reader of the active IP Insights record (:func:`seclake_ml.aws.registry.read_active_record`)
and what its callers make of its two errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from seclake_ml.aws import registry
from seclake_ml.aws.registry import NoActiveRecord, UnreadableRecord, read_active_record
from seclake_ml.config import SeclakeConfig
from seclake_ml.aws.clients import AwsClients
from seclake_ml.scoring import service, sites

NAME = "/seclake-ml/ipinsights/seclake-ml-ipinsights/active"
GOOD = {"version": "ipinsights-20240101T000000Z", "threshold": 1, "endpoint_name": "seclake-ml-ipinsights",
        "endpoint_config_name": "c", "model_name": "m"}


class FakeSsm:
    """``get_parameter`` answering one value, or raising one error."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.calls = value, error, []

    def get_parameter(self, *, Name: str) -> dict[str, Any]:
        self.calls.append(Name)
        if self.error is not None:
            raise self.error
        return {"Parameter": {"Name": Name, "Value": self.value}}


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetParameter")


def test_a_good_record_is_parsed_and_checked() -> None:
    ssm = FakeSsm(json.dumps(GOOD))
    record = read_active_record(ssm, NAME)
    assert record == {**GOOD, "threshold": 1.0} and isinstance(record["threshold"], float)
    assert ssm.calls == [NAME]


def test_a_missing_parameter_means_no_active_record() -> None:
    with pytest.raises(NoActiveRecord, match=f"SSM parameter {NAME} does not exist"):
        read_active_record(FakeSsm(error=_client_error("ParameterNotFound")), NAME)


@pytest.mark.parametrize("error, shown", [(_client_error("AccessDeniedException"), "AccessDeniedException"),
                                          (EndpointConnectionError(endpoint_url="https://ssm"), "EndpointConnectionError")])
def test_a_failed_call_is_a_retryable_unreadable_record(error: BaseException, shown: str) -> None:
    with pytest.raises(UnreadableRecord, match=f"SSM parameter {NAME}: {shown}") as err:
        read_active_record(FakeSsm(error=error), NAME)
    assert err.value.retryable


def test_other_exceptions_are_not_hidden() -> None:
    with pytest.raises(KeyError):
        read_active_record(FakeSsm(error=KeyError("x")), NAME)


@pytest.mark.parametrize("value, message", [
    ("not json", "is not JSON"),
    ("[1, 2]", "is a JSON list, not an object"),
    (json.dumps({**GOOD, "version": "../etc"}), "no usable 'version'"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "threshold"}), "no numeric 'threshold'"),
    (json.dumps({**GOOD, "threshold": "0.5"}), "'threshold' is not finite"),
    ('{"version": "ipinsights-a", "threshold": NaN}', "'threshold' is not finite"),
    (json.dumps({**GOOD, "endpoint_name": "bad name"}), "no valid 'endpoint_name'"),
    (None, "expected JSON text"),
])
def test_an_unusable_value_is_an_unreadable_record(value: Any, message: str) -> None:
    with pytest.raises(UnreadableRecord, match=message) as err:
        read_active_record(FakeSsm(value), NAME)
    assert NAME in str(err.value) and not err.value.retryable


def test_both_errors_are_registry_errors() -> None:
    assert issubclass(NoActiveRecord, registry.RegistryError) and issubclass(UnreadableRecord, registry.RegistryError)


# ------------------------------------------------------------------------------ the scoring service
def _aws_cfg() -> SeclakeConfig:
    return SeclakeConfig(backend="aws", lake_bucket="seclake-lake", work_location="s3://seclake-work/w",
                         region="us-east-1")


def test_scoring_service_reads_through_the_one_reader() -> None:
    ssm = FakeSsm(json.dumps({k: v for k, v in GOOD.items() if k != "endpoint_name"}))
    model = service.active_model(_aws_cfg(), AwsClients(ssm=ssm))
    assert model.version == GOOD["version"] and model.threshold == 1.0 and model.backend == "aws"
    assert model.endpoint_name == "seclake-ml-ipinsights"  # the rollout's default endpoint
    assert ssm.calls == [NAME]


def test_scoring_service_maps_the_errors() -> None:
    with pytest.raises(sites.NoActiveModel, match="does not exist; roll a model out first"):
        service.active_model(_aws_cfg(), AwsClients(ssm=FakeSsm(error=_client_error("ParameterNotFound"))))
    with pytest.raises(sites.NoActiveModel, match="unusable active model record: .*not JSON"):
        service.active_model(_aws_cfg(), AwsClients(ssm=FakeSsm("{")))
    with pytest.raises(UnreadableRecord) as err:  # not NoActiveModel: the task fails and is retried
        service.active_model(_aws_cfg(), AwsClients(ssm=FakeSsm(error=_client_error("ThrottlingException"))))
    assert err.value.retryable


def test_model_from_record_takes_text_or_a_parsed_record() -> None:
    from_text = sites.model_from_record(json.dumps(GOOD), severity_scale=2.0)
    from_dict = sites.model_from_record(GOOD, severity_scale=2.0)
    assert from_text == from_dict and from_dict.threshold == 1.0 and from_dict.severity_scale == 2.0
    with pytest.raises(sites.NoActiveModel, match="threshold"):
        sites.model_from_record({**GOOD, "threshold": None}, severity_scale=1.0)
