"""Security Lake notification parsing: accepted shapes, hostile messages and the poison-message policy."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from seclake_ml.scoring.lake_object import InvalidLakeKey, LakeObject, parse_lake_key
from seclake_ml.scoring.notifications import MessagePlan, parse_messages
from seclake_ml.sources import SOURCES

BUCKET = "aws-security-data-lake-us-east-1-abcdef123456"
ACCOUNT = "123456789012"
GOOD_KEY = f"aws/VPC_FLOW/1.0/region=us-east-1/accountId={ACCOUNT}/eventDay=20240115/a1b2c3.gz.parquet"
R53_KEY = f"aws/ROUTE53/1.0/region=eu-west-1/accountId={ACCOUNT}/eventDay=20240229/dns-1.zstd.parquet"
CT_KEY = f"aws/CLOUD_TRAIL_MGMT/1.0/region=us-east-1/accountId={ACCOUNT}/eventDay=20231231/api-7.parquet"
ENABLED = {"VPC_FLOW", "ROUTE53", "CLOUD_TRAIL_MGMT", "S3_DATA", "LAMBDA_EXECUTION"}


def vkey(day: str = "20240115", name: str = "x.gz.parquet", *, source: str = "VPC_FLOW", version: str = "1.0",
         region: str = "us-east-1", account: str = ACCOUNT) -> str:
    return f"aws/{source}/{version}/region={region}/accountId={account}/eventDay={day}/{name}"


def eb_body(key: Any, bucket: Any = BUCKET, **extra: Any) -> dict:
    body = {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2024-01-15T00:05:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1234, "etag": "b57f9512698f4b09e608f4f2a65852e5"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "securitylake.amazonaws.com",
            "reason": "PutObject",
        },
    }
    body.update(extra)
    return body


def s3_record(key: Any, bucket: Any = BUCKET, event: str = "ObjectCreated:Put") -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-01-15T00:05:00.000Z",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 99, "eTag": "0123456789abcdef0123456789abcdef"},
        },
    }


def s3_body(*records: dict) -> dict:
    return {"Records": list(records)}


def sns_body(inner: Any) -> dict:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:lake-topic",
        "Message": inner if isinstance(inner, str) else json.dumps(inner),
        "Timestamp": "2024-01-15T00:05:01.000Z",
    }


def boto_msg(mid: str, body: Any) -> dict:
    """A boto3 ReceiveMessage message; dict bodies are serialised as SQS delivers them."""
    return {
        "MessageId": mid,
        "ReceiptHandle": f"rh-{mid}",
        "MD5OfBody": "ignored",
        "Body": json.dumps(body) if isinstance(body, (dict, list)) else body,
    }


def lambda_record(mid: str, body: Any) -> dict:
    return {
        "messageId": mid,
        "receiptHandle": f"rh-{mid}",
        "body": json.dumps(body) if isinstance(body, (dict, list)) else body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AmazonSecurityLake-abc-Main-Queue",
        "awsRegion": "us-east-1",
    }


def parse(messages: list, **kw: Any) -> MessagePlan:
    args: dict[str, Any] = {"lake_bucket": BUCKET, "lake_sources": set(ENABLED), "source_version": 1}
    args.update(kw)
    return parse_messages(messages, **args)


# ----------------------------------------------------------------------------- the lake sources in use
def test_enabled_sources_match_the_source_registry():
    assert {s.lake_source for s in SOURCES.values()} == ENABLED
    for spec in SOURCES.values():
        for version in (1, 2):
            key = f"{spec.s3_prefix(version)}/region=us-east-1/accountId={ACCOUNT}/eventDay=20240101/f.gz.parquet"
            obj = parse_lake_key(key)
            assert (obj.lake_source, obj.version) == (spec.lake_source, version)


# ----------------------------------------------------------------------------- parse_lake_key
def test_parse_lake_key_fields_and_uri():
    obj = parse_lake_key(GOOD_KEY, bucket=BUCKET, size=10, etag="abc")
    assert obj == LakeObject(BUCKET, GOOD_KEY, "VPC_FLOW", 1, "us-east-1", ACCOUNT, "20240115", 10, "abc")
    assert obj.uri == f"s3://{BUCKET}/{GOOD_KEY}"
    local = parse_lake_key(R53_KEY)
    assert local.bucket == "" and local.uri == R53_KEY and local.version == 1 and local.region == "eu-west-1"
    assert parse_lake_key(vkey(version="2.0")).version == 2


def test_parse_lake_key_drops_ill_typed_metadata():
    obj = parse_lake_key(GOOD_KEY, size="5", etag={"x": 1})
    assert obj.size is None and obj.etag is None
    assert parse_lake_key(GOOD_KEY, size=True).size is None
    assert parse_lake_key(GOOD_KEY, size=-1).size is None


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        (vkey().replace("eventDay=20240115/", "eventDay=20240115/../"), "'..' segment"),
        ("/" + GOOD_KEY, "absolute"),
        (GOOD_KEY.replace("/", "\\"), "backslash"),
        (GOOD_KEY[:-8] + "\x00.parquet", "control character U+0000"),
        (GOOD_KEY.replace("a1b2c3", "a\u202eb"), "invisible or invalid character U+202E"),
        (vkey(name="a" * 1100 + ".parquet"), "longer than 1024 bytes"),
        (vkey(name="data.json"), "not a Parquet object"),
        (vkey(name=".hidden.parquet"), "not a Parquet object"),
        (GOOD_KEY.replace("accountId=", "accountid="), "lake layout"),
        (GOOD_KEY.replace("eventDay=", "day="), "lake layout"),
        (vkey(account="12345678901"), "is not 12 digits"),
        (vkey(account="\u0661" * 12), "is not 12 digits"),
        (vkey(day="20241332"), "bad eventDay"),
        (vkey(day="2024-01-15"), "bad eventDay"),
        (vkey(version="3.0"), "unknown source version '3.0'"),
        (vkey(version="1.1"), "bad version folder"),
        (vkey(region="US_EAST_1"), "bad region"),
        (vkey(source="vpc_flow"), "bad source folder"),
        ("ext/my-source/region=us-east-1/accountId=123456789012/eventDay=20240101/x.parquet",
         "does not start with 'aws/'"),
        ("aws/VPC_FLOW/1.0/x.parquet", "path segments"),
        (GOOD_KEY + "/", "folder marker"),
        (GOOD_KEY.replace("/region", "//region"), "empty path segment"),
        ("", "empty"),
        (None, "not a string"),
        (12, "not a string"),
    ],
)
def test_parse_lake_key_rejects(key: Any, fragment: str):
    with pytest.raises(InvalidLakeKey) as info:
        parse_lake_key(key)
    msg = str(info.value)
    assert fragment in msg
    assert "\x00" not in msg and "\u202e" not in msg and len(msg) < 600


def test_lake_object_round_trip_and_tamper_check():
    obj = parse_lake_key(CT_KEY, bucket=BUCKET, size=7, etag="e")
    d = json.loads(json.dumps(obj.to_dict()))
    assert LakeObject.from_dict(d) == obj
    local = parse_lake_key(GOOD_KEY)
    assert LakeObject.from_dict(local.to_dict()) == local
    with pytest.raises(InvalidLakeKey, match="does not match"):
        LakeObject.from_dict({**d, "account": "999999999999"})
    with pytest.raises(InvalidLakeKey):
        LakeObject.from_dict({**d, "key": "aws/../etc/passwd"})


# ----------------------------------------------------------------------------- accepted shapes
def test_aws_documented_sample_parses(reference_dir):
    sample = json.loads((reference_dir / "securitylake-subscriber-notification.json").read_text())
    assert sample["detail"]["object"]["key"] == "example-key"
    bucket = sample["detail"]["bucket"]["name"]
    sample["detail"]["object"]["key"] = GOOD_KEY
    plan = parse([boto_msg("m1", sample)], lake_bucket=bucket)
    assert plan.rejected == [] and plan.ignored == []
    [obj] = plan.objects
    assert obj.bucket == bucket and obj.key == GOOD_KEY and obj.size == sample["detail"]["object"]["size"]
    assert obj.etag == sample["detail"]["object"]["etag"]
    assert plan.by_message == {"m1": [obj]}
    # The unmodified sample is rejected (its key is not a lake key), not skipped or raised on.
    raw = json.loads((reference_dir / "securitylake-subscriber-notification.json").read_text())
    plan = parse([boto_msg("m2", raw)], lake_bucket=bucket)
    assert plan.objects == [] and [r["message_id"] for r in plan.rejected] == ["m2"]
    assert plan.rejected[0]["reason"].startswith("key outside the lake layout")


@pytest.mark.parametrize("make", [boto_msg, lambda_record], ids=["boto3", "lambda"])
@pytest.mark.parametrize("shape", ["eventbridge", "s3", "sns-eventbridge", "sns-s3"])
def test_boto3_and_lambda_shapes(make, shape):
    inner = eb_body(GOOD_KEY) if "eventbridge" in shape else s3_body(s3_record(GOOD_KEY))
    body = sns_body(inner) if shape.startswith("sns") else inner
    plan = parse([make("m-1", body)])
    assert plan.rejected == [] and plan.ignored == []
    assert [o.key for o in plan.objects] == [GOOD_KEY]
    assert list(plan.by_message) == ["m-1"]


def test_string_body_is_the_normal_case_and_dict_or_bytes_body_also_work():
    # The regression behind the reference Lambda: a JSON *string* body must not be skipped.
    as_string = {"messageId": "s", "body": json.dumps(eb_body(GOOD_KEY))}
    as_dict = {"messageId": "d", "body": eb_body(R53_KEY)}
    as_bytes = {"MessageId": "b", "Body": json.dumps(eb_body(CT_KEY)).encode()}
    plan = parse([as_string, as_dict, as_bytes])
    assert [o.key for o in plan.objects] == [GOOD_KEY, R53_KEY, CT_KEY]
    assert plan.rejected == [] and plan.ignored == []


def test_eventbridge_sample_without_detail_type_source_or_version():
    body = {"detail": {"bucket": {"name": BUCKET}, "object": {"key": GOOD_KEY}}}
    plan = parse([boto_msg("m", body)])
    assert [o.key for o in plan.objects] == [GOOD_KEY] and plan.objects[0].size is None


def test_any_bucket_accepted_when_no_lake_bucket():
    for lake_bucket in (None, ""):
        plan = parse([boto_msg("m", eb_body(GOOD_KEY, bucket="other-bucket"))], lake_bucket=lake_bucket)
        assert [o.bucket for o in plan.objects] == ["other-bucket"]


def test_version_two_objects_when_configured():
    key = vkey(version="2.0")
    plan = parse([boto_msg("v2", eb_body(key)), boto_msg("v1", eb_body(GOOD_KEY))], source_version=2)
    assert [o.key for o in plan.objects] == [key]
    assert plan.ignored == [{"message_id": "v1", "reason": "source version 1 is not the configured version 2",
                             "key": GOOD_KEY}]


# ----------------------------------------------------------------------------- hostile and odd messages
DEEP = "[" * 120_000 + "]" * 120_000
SIZE_LIMIT = 262_144
BAD_SNS = sns_body("{not json")


def _raw(mid: str, body: Any) -> dict:
    return {"MessageId": mid, "ReceiptHandle": "rh", "Body": body}


# (case id, message, expected outcome, reason fragment); outcome is "rejected", "ignored" or "accepted".
HOSTILE: list[tuple[str, Any, str, str]] = [
    ("not-json", _raw("x", "this is not json"), "rejected", "malformed JSON body"),
    ("json-array", _raw("x", "[1, 2, 3]"), "rejected", "body is a JSON array, not an object"),
    ("json-number", _raw("x", "42"), "rejected", "body is a JSON number, not an object"),
    ("json-null", _raw("x", "null"), "rejected", "body is a JSON null, not an object"),
    ("json-string", _raw("x", '"aws/VPC_FLOW/1.0"'), "rejected", "body is a JSON string, not an object"),
    ("empty-body", _raw("x", ""), "rejected", "empty body"),
    ("blank-body", _raw("x", "  \n\t "), "rejected", "empty body"),
    ("missing-body", {"MessageId": "x", "ReceiptHandle": "rh"}, "rejected", "message has no body"),
    ("body-int", _raw("x", 7), "rejected", "body is not a JSON string or object (got number)"),
    ("body-none", _raw("x", None), "rejected", "body is not a JSON string or object (got null)"),
    ("body-list", {"MessageId": "x", "Body": [eb_body(GOOD_KEY)]}, "rejected", "not a JSON string or object"),
    ("body-bad-utf8", _raw("x", b"\xff\xfe{}"), "rejected", "body is not valid UTF-8"),
    ("oversized", _raw("x", json.dumps(eb_body(GOOD_KEY, padding="p" * SIZE_LIMIT))), "rejected",
     f"body over {SIZE_LIMIT} bytes"),
    ("deeply-nested", _raw("x", DEEP), "rejected", "JSON body nested too deeply"),
    ("unknown-shape", boto_msg("x", {"hello": "world"}), "rejected", "unrecognised notification shape"),
    ("eb-detail-null", boto_msg("x", {"detail": None}), "rejected", "EventBridge detail is not an object"),
    ("eb-detail-string", boto_msg("x", {"detail": "bucket"}), "rejected", "EventBridge detail is not an object"),
    ("eb-no-bucket", boto_msg("x", {"detail": {"object": {"key": GOOD_KEY}}}), "rejected",
     "EventBridge detail without bucket name"),
    ("eb-no-object", boto_msg("x", {"detail": {"bucket": {"name": BUCKET}}}), "rejected",
     "EventBridge detail without object key"),
    ("eb-no-key", boto_msg("x", {"detail": {"bucket": {"name": BUCKET}, "object": {"size": 3}}}), "rejected",
     "EventBridge detail without object key"),
    ("eb-key-int", boto_msg("x", eb_body(12345)), "rejected", "object key is not a string (got number)"),
    ("eb-key-list", boto_msg("x", eb_body([GOOD_KEY])), "rejected", "object key is not a string (got array)"),
    ("eb-bucket-int", boto_msg("x", eb_body(GOOD_KEY, bucket=5)), "rejected", "bucket name is not a string"),
    ("eb-other-source", boto_msg("x", eb_body(GOOD_KEY, source="aws.ec2")), "rejected",
     "EventBridge event from source 'aws.ec2', not aws.s3"),
    ("eb-object-deleted", boto_msg("x", eb_body(GOOD_KEY, **{"detail-type": "Object Deleted"})), "ignored",
     "EventBridge 'Object Deleted' event is not an object creation"),
    ("dotdot-key", boto_msg("x", eb_body(vkey(name="../../x.parquet"))), "rejected", "'..' segment"),
    ("encoded-dotdot-key", boto_msg("x", eb_body(vkey(name="%2E%2E/x.parquet"))), "rejected", "'..' segment"),
    ("absolute-key", boto_msg("x", eb_body("/" + GOOD_KEY)), "rejected", "absolute"),
    ("backslash-key", boto_msg("x", eb_body(vkey(name="a\\b.parquet"))), "rejected", "backslash"),
    ("nul-key", boto_msg("x", eb_body(vkey(name="a\x00.parquet"))), "rejected", "control character U+0000"),
    ("encoded-nul-key", boto_msg("x", eb_body(vkey(name="a%00.parquet"))), "rejected", "control character U+0000"),
    ("newline-key", boto_msg("x", eb_body(vkey(name="a\nFAKE LOG LINE.parquet"))), "rejected",
     "control character U+000A"),
    ("bidi-key", boto_msg("x", eb_body(vkey(name="a\u202egpj.parquet"))), "rejected",
     "invisible or invalid character U+202E"),
    ("lone-surrogate-key", _raw("x", '{"detail": {"bucket": {"name": "%s"}, "object": {"key": "%s"}}}'
                                % (BUCKET, vkey(name="a\\ud800.parquet"))), "rejected",
     "invisible or invalid character U+D800"),
    ("bad-percent-utf8", boto_msg("x", eb_body(vkey(name="a%FF.parquet"))), "rejected",
     "object key is not valid percent-encoded UTF-8"),
    ("long-key", boto_msg("x", eb_body(vkey(name="k" * 1100 + ".parquet"))), "rejected", "longer than 1024 bytes"),
    ("very-long-raw-key", boto_msg("x", eb_body("%41" * 5000)), "rejected", "longer than 1024 bytes"),
    ("empty-key", boto_msg("x", eb_body("")), "rejected", "object key is empty"),
    ("folder-marker", boto_msg("x", eb_body(vkey(name="")[:-1] + "/")), "rejected", "folder marker"),
    ("non-parquet", boto_msg("x", eb_body(vkey(name="data.json.gz"))), "rejected", "not a Parquet object"),
    ("iceberg-metadata-v1", boto_msg("x", eb_body("aws/VPC_FLOW/1.0/metadata/00001.metadata.json")), "rejected",
     "key outside the lake layout"),
    ("wrong-partition-names", boto_msg("x", eb_body(GOOD_KEY.replace("accountId=", "account="))), "rejected",
     "key outside the lake layout"),
    ("lowercase-partitions", boto_msg("x", eb_body(GOOD_KEY.replace("eventDay=", "eventday="))), "rejected",
     "key outside the lake layout"),
    ("account-11-digits", boto_msg("x", eb_body(vkey(account="12345678901"))), "rejected", "is not 12 digits"),
    ("account-letters", boto_msg("x", eb_body(vkey(account="12345678901a"))), "rejected", "is not 12 digits"),
    ("bad-event-day", boto_msg("x", eb_body(vkey(day="20241332"))), "rejected", "bad eventDay '20241332'"),
    ("feb-30", boto_msg("x", eb_body(vkey(day="20240230"))), "rejected", "bad eventDay '20240230'"),
    ("unknown-version", boto_msg("x", eb_body(vkey(version="3.0"))), "rejected", "unknown source version '3.0'"),
    ("region-traversal", boto_msg("x", eb_body(vkey(region="../etc"))), "rejected", "key outside the lake layout"),
    ("bad-region", boto_msg("x", eb_body(vkey(region="US-EAST-1"))), "rejected", "bad region 'US-EAST-1'"),
    ("unknown-bucket", boto_msg("x", eb_body(GOOD_KEY, bucket="attacker-bucket")), "rejected",
     f"bucket 'attacker-bucket' is not the lake bucket '{BUCKET}'"),
    ("disabled-source", boto_msg("x", eb_body(vkey(source="SH_FINDINGS"))), "ignored",
     "source 'SH_FINDINGS' is not enabled"),
    ("other-version", boto_msg("x", eb_body(vkey(version="2.0"))), "ignored",
     "source version 2 is not the configured version 1"),
    ("other-version-iceberg", boto_msg("x", eb_body("aws/VPC_FLOW/2.0/metadata/00001.metadata.json")), "ignored",
     "source version 2 is not the configured version 1"),
    ("custom-source", boto_msg("x", eb_body("ext/ipinsights-vpc-flow/region=us-east-1/accountId=123456789012/"
                                            "eventDay=20240115/f.parquet")), "ignored",
     "custom-source object under ext/"),
    ("s3-object-removed", boto_msg("x", s3_body(s3_record(GOOD_KEY, event="ObjectRemoved:Delete"))), "ignored",
     "event 'ObjectRemoved:Delete' is not an object creation"),
    ("s3-records-not-list", boto_msg("x", {"Records": {"s3": {}}}), "rejected", "Records is not a list (got object)"),
    ("s3-records-empty", boto_msg("x", {"Records": []}), "rejected", "Records is empty"),
    ("s3-record-not-object", boto_msg("x", {"Records": ["oops"]}), "rejected", "record 0 is not an object"),
    ("s3-record-no-event", boto_msg("x", {"Records": [{"s3": {}}]}), "rejected", "record 0 without eventName"),
    ("s3-record-no-s3", boto_msg("x", {"Records": [{"eventName": "ObjectCreated:Put"}]}), "rejected",
     "record 0 without an s3 section"),
    ("s3-record-no-key", boto_msg("x", {"Records": [{"eventName": "ObjectCreated:Put",
                                                     "s3": {"bucket": {"name": BUCKET}, "object": {}}}]}),
     "rejected", "record 0 without object key"),
    ("sns-bad-message", boto_msg("x", BAD_SNS), "rejected", "malformed JSON SNS Message"),
    ("sns-message-array", boto_msg("x", sns_body("[]")), "rejected", "SNS Message is a JSON array, not an object"),
    ("sns-message-number", boto_msg("x", {**sns_body("{}"), "Message": 3}), "rejected",
     "SNS envelope without a JSON Message (got number)"),
    ("sns-in-sns", boto_msg("x", sns_body(sns_body(eb_body(GOOD_KEY)))), "rejected", "SNS envelope inside an SNS"),
    ("sns-subscription-confirmation", boto_msg("x", {**sns_body("{}"), "Type": "SubscriptionConfirmation"}),
     "ignored", "SNS SubscriptionConfirmation message"),
    ("s3-test-event", boto_msg("x", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
     "ignored", "s3:TestEvent"),
    ("sns-s3-test-event", boto_msg("x", sns_body({"Event": "s3:TestEvent"})), "ignored", "s3:TestEvent"),
    ("message-not-object", "a bare string", "rejected", "message is not an object (got string)"),
    ("message-none", None, "rejected", "message is not an object (got null)"),
    ("percent-encoded-key", boto_msg("x", eb_body(GOOD_KEY.replace("=", "%3D"))), "accepted", GOOD_KEY),
    ("plus-in-key", boto_msg("x", eb_body(vkey(name="my+file.gz.parquet"))), "accepted",
     vkey(name="my file.gz.parquet")),
    ("encoded-plus-in-key", boto_msg("x", eb_body(vkey(name="a%2Bb.parquet"))), "accepted", vkey(name="a+b.parquet")),
    ("unicode-key", boto_msg("x", eb_body(vkey(name="donn%C3%A9es-\u00fc.parquet"))), "accepted",
     vkey(name="donn\u00e9es-\u00fc.parquet")),
    ("bad-size-and-etag", boto_msg("x", {"detail": {"bucket": {"name": BUCKET},
                                                     "object": {"key": GOOD_KEY, "size": "big", "etag": ["e"]}}}),
     "accepted", GOOD_KEY),
]


@pytest.mark.parametrize(("case", "message", "outcome", "detail"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_message_lands_in_the_right_bucket(case, message, outcome, detail, caplog):
    good_before = boto_msg("good-1", eb_body(R53_KEY))
    good_after = lambda_record("good-2", s3_body(s3_record(CT_KEY)))
    with caplog.at_level(logging.DEBUG, logger="seclake_ml.scoring.notifications"):
        plan = parse([good_before, message, good_after])

    # Good messages of the same call are always accepted.
    assert plan.by_message["good-1"] == [plan.objects[0]] and plan.objects[0].key == R53_KEY
    assert [o.key for o in plan.by_message["good-2"]] == [CT_KEY]
    mid = message["MessageId"] if isinstance(message, dict) and "MessageId" in message else "<message 1>"
    assert mid in plan.by_message
    others = [o for o in plan.objects if o.key not in (R53_KEY, CT_KEY)]

    if outcome == "accepted":
        assert plan.rejected == [] and plan.ignored == []
        assert [o.key for o in others] == [detail]
        assert plan.by_message[mid] == others
    else:
        assert others == [] and plan.by_message[mid] == []
        hit, miss = (plan.rejected, plan.ignored) if outcome == "rejected" else (plan.ignored, plan.rejected)
        assert miss == []
        assert len(hit) == 1, hit
        assert hit[0]["message_id"] == mid
        assert detail in hit[0]["reason"], hit[0]["reason"]
        # Reasons are short, printable one-liners.
        reason = hit[0]["reason"]
        assert len(reason) < 600 and reason.isprintable()
        assert all(v.isprintable() for v in hit[0].values())
    assert plan.counts() == {"messages": 3, "objects": len(plan.objects), "rejected": len(plan.rejected),
                             "ignored": len(plan.ignored)}

    # Logging: one summary line, one warning per rejected item and per object of another source
    # version (a configuration out of date), never a body, never a raw control char.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    notable = [r for r in plan.ignored if r["reason"].startswith("source version ")]
    assert len(warnings) == len(plan.rejected) + len(notable)
    summaries = [r for r in caplog.records if r.getMessage().startswith("notifications:")]
    assert len(summaries) == 1
    for record in caplog.records:
        text = record.getMessage()
        assert len(text) < 1200 and "\x00" not in text and "\n" not in text and "\u202e" not in text
        assert "N4N7GDK58NMKJ12R" not in text and "ppppp" not in text


def test_at_least_25_hostile_cases():
    assert len({c[0] for c in HOSTILE}) >= 25


# ----------------------------------------------------------------------------- batches
def test_duplicate_objects_are_deduplicated_but_listed_per_message():
    msgs = [
        boto_msg("a", eb_body(GOOD_KEY)),
        boto_msg("b", s3_body(s3_record(GOOD_KEY), s3_record(R53_KEY), s3_record(GOOD_KEY.replace("=", "%3D")))),
        boto_msg("a", eb_body(GOOD_KEY)),  # the same message delivered twice
    ]
    plan = parse(msgs)
    assert [o.key for o in plan.objects] == [GOOD_KEY, R53_KEY]
    assert plan.objects[0].etag == "b57f9512698f4b09e608f4f2a65852e5"  # the first announcement wins
    assert [o.key for o in plan.by_message["a"]] == [GOOD_KEY]
    assert [o.key for o in plan.by_message["b"]] == [GOOD_KEY, R53_KEY]
    assert plan.by_message["b"][0] is plan.objects[0]
    assert plan.counts() == {"messages": 2, "objects": 2, "rejected": 0, "ignored": 0}


def test_mixed_good_and_bad_records_keep_the_good_ones():
    body = s3_body(
        s3_record(GOOD_KEY),
        s3_record("aws/VPC_FLOW/1.0/../../secrets.parquet"),
        "not a record",
        s3_record(R53_KEY, event="ObjectRemoved:Delete"),
        s3_record(CT_KEY, bucket="someone-else"),
        s3_record(vkey(name="ok.parquet")),
    )
    plan = parse([lambda_record("mixed", body), boto_msg("fine", eb_body(R53_KEY))])
    assert [o.key for o in plan.by_message["mixed"]] == [GOOD_KEY, vkey(name="ok.parquet")]
    assert [o.key for o in plan.by_message["fine"]] == [R53_KEY]
    assert [r["message_id"] for r in plan.rejected] == ["mixed"] * 3
    assert [r["reason"] for r in plan.rejected] == [
        "key has a '..' segment: aws/VPC_FLOW/1.0/../../secrets.parquet",
        "record 2 is not an object (got string)",
        f"bucket 'someone-else' is not the lake bucket '{BUCKET}'",
    ]
    assert plan.rejected[0]["key"] == "aws/VPC_FLOW/1.0/../../secrets.parquet"
    assert "key" not in plan.rejected[1]
    assert plan.ignored == [{"message_id": "mixed", "reason": "event 'ObjectRemoved:Delete' is not an object creation",
                             "key": R53_KEY}]


def test_disabled_sources_are_ignored_not_rejected():
    plan = parse([boto_msg("r", eb_body(R53_KEY)), boto_msg("v", eb_body(GOOD_KEY))], lake_sources={"VPC_FLOW"})
    assert [o.key for o in plan.objects] == [GOOD_KEY]
    assert plan.ignored == [{"message_id": "r", "reason": "source 'ROUTE53' is not enabled", "key": R53_KEY}]
    assert plan.rejected == []


def test_messages_without_ids_get_positional_ids():
    plan = parse([{"body": json.dumps(eb_body(GOOD_KEY))}, {"MessageId": 5, "Body": "{"},
                  {"MessageId": "id\nwith-newline", "Body": "[]"}])
    assert [o.key for o in plan.by_message["<message 0>"]] == [GOOD_KEY]
    assert plan.rejected == [{"message_id": "<message 1>", "reason": "malformed JSON body"},
                             {"message_id": "<message 2>", "reason": "body is a JSON array, not an object"}]


def test_logged_keys_are_truncated_and_escaped(caplog):
    key = "aws/" + "\x1b[31m" + "z" * 900 + "\\x"
    with caplog.at_level(logging.WARNING, logger="seclake_ml.scoring.notifications"):
        plan = parse([boto_msg("m", eb_body(key))])
    [rej] = plan.rejected
    assert rej["reason"].startswith("key contains control character U+001B")
    assert "\x1b" not in rej["reason"] and "\\x1b" in rej["reason"] and rej["key"].endswith("...")
    assert len(rej["key"]) < 260
    [record] = caplog.records
    assert "\x1b" not in record.getMessage() and len(record.getMessage()) < 800


def test_max_body_bytes_counts_utf8_bytes():
    body = json.dumps(eb_body(GOOD_KEY, note="\u00e9" * 300), ensure_ascii=False)
    assert len(body) < 1200 < len(body.encode())
    plan = parse([_raw("m", body)], max_body_bytes=1200)
    assert plan.rejected == [{"message_id": "m", "reason": "body over 1200 bytes"}]
    assert parse([_raw("m", body)], max_body_bytes=2000).objects


def test_plan_round_trip_through_json():
    msgs = [
        boto_msg("a", eb_body(GOOD_KEY)),
        boto_msg("b", s3_body(s3_record(GOOD_KEY), s3_record(R53_KEY), s3_record("nope"))),
        boto_msg("c", {"Event": "s3:TestEvent"}),
    ]
    plan = parse(msgs)
    data = json.loads(json.dumps(plan.to_dict()))
    back = MessagePlan.from_dict(data)
    assert back == plan
    assert back.counts() == plan.counts() == {"messages": 3, "objects": 2, "rejected": 1, "ignored": 1}


def test_bad_arguments_raise_but_content_never_does():
    with pytest.raises(ValueError):
        parse([], source_version=3)
    with pytest.raises(ValueError):
        parse([], max_body_bytes=0)
    with pytest.raises(TypeError):
        parse({"Records": []})
    with pytest.raises(TypeError):
        parse([], lake_sources="VPC_FLOW")
    # Everything in HOSTILE at once, plus oddities: nothing raises, every message id is accounted for.
    weird = [copy.deepcopy(c[1]) for c in HOSTILE] + [object(), 3.5, [], {"MessageId": "z", "Body": {"detail": 1}}]
    plan = parse(weird + [boto_msg("last", eb_body(GOOD_KEY))])
    assert plan.by_message["last"] and plan.by_message["z"] == []
    assert plan.counts()["rejected"] >= 40


def test_generator_of_messages_and_empty_batch(caplog):
    with caplog.at_level(logging.INFO, logger="seclake_ml.scoring.notifications"):
        plan = parse(m for m in [])
    assert plan.counts() == {"messages": 0, "objects": 0, "rejected": 0, "ignored": 0}
    assert any("0 message(s)" in r.getMessage() for r in caplog.records)
