"""OCSF Detection Findings: schema validity, identity, severity, Parquet layout and round trip, hostile values."""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.scoring.findings import (
    Candidate,
    build_findings,
    finding_uid,
    one_line,
    severity_for,
)
from seclake_ml.scoring.findings_parquet import (
    FINDINGS_SCHEMA,
    custom_source_name,
    findings_parquet_parts,
    findings_table,
    read_findings,
)
from seclake_ml.scoring.model_record import ActiveModel
from seclake_ml.scoring.ocsf_validate import load_ocsf_schema, validate_finding
from seclake_ml.scoring.profile import EntityProfile

UTC = timezone.utc
T0 = datetime(2024, 3, 5, 10, 0, 0, 123000, tzinfo=UTC)
CREATED = datetime(2024, 3, 6, 0, 0, tzinfo=UTC)
MODEL = ActiveModel(version="m-20240304-abc", threshold=1.5, backend="local", severity_scale=1.0)
SCOPE = "s3://lake/aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240305/a.gz.parquet"


@pytest.fixture(scope="module")
def ocsf(reference_dir: Path) -> dict:
    return load_ocsf_schema(reference_dir / "ocsf-1.1.0-schema.json")


def cand(
    entity: str = "i-0abc",
    ip: str = "203.0.113.9",
    *,
    score: float = 2.0,
    source: str = "vpc_flow",
    view: str = "instance_peer",
    account: str = "123456789012",
    region: str = "us-east-1",
    first: datetime = T0,
    minutes: int = 30,
    events: int = 7,
) -> Candidate:
    return Candidate(
        source=source, view=view, entity=entity, ip=ip, account=account, region=region,
        first_seen=first, last_seen=first + timedelta(minutes=minutes), events=events,
        dot_product=-score, score=score,
    )


def profile() -> EntityProfile:
    table = pa.table(
        {
            "entity": ["i-0abc", "i-0abc", "i-0abc"],
            "ip": ["10.0.2.17", "10.0.2.18", "10.0.3.5"],
            "events": pa.array([120, 30, 40], pa.int64()),
        }
    )
    return EntityProfile.from_table(table)


def build(cands: list[Candidate], **kw) -> list[dict]:
    prof = profile()
    expl = {(c.entity, c.ip): prof.explain(c.entity, c.ip) for c in cands}
    return build_findings(
        cands, model=kw.get("model", MODEL), scope=kw.get("scope", SCOPE), explanations=expl,
        created_time=CREATED, product_version="0.1.0",
    )


# ----------------------------------------------------------------------------- schema validity
def test_required_attributes_read_from_the_compiled_schema(ocsf: dict) -> None:
    attrs = ocsf["classes"]["detection_finding"]["attributes"]
    required = {
        k for k, a in attrs.items()
        if a["requirement"] == "required" and a.get("profile") in (None, "cloud", "datetime")
    }
    assert required == {
        "activity_id", "category_uid", "class_uid", "cloud", "finding_info", "metadata",
        "severity_id", "time", "type_uid",
    }
    rec = build([cand()])[0]
    assert required <= rec.keys()
    assert "action_id" not in rec  # security_control profile not declared


def test_generated_findings_validate_against_the_compiled_schema(ocsf: dict) -> None:
    cands = [
        cand(),
        cand("arn:aws:iam::123456789012:user/alice", "198.51.100.7", source="cloudtrail_signin", view="principal_ip",
             score=9.0),
        cand("10.0.0.5", "93.184.216.34", source="route53", view="instance_resolved_ip", score=1.6),
    ]
    records = build(cands)
    for rec in records:
        assert validate_finding(rec, ocsf) == []
    rec = records[0]
    assert (rec["class_uid"], rec["category_uid"], rec["activity_id"], rec["type_uid"]) == (2004, 2, 1, 200401)
    assert (rec["status_id"], rec["status"]) == (1, "New")
    assert rec["metadata"]["version"] == "1.1.0"
    assert rec["metadata"]["profiles"] == ["cloud", "datetime"]
    assert rec["cloud"] == {"provider": "AWS", "region": "us-east-1", "account": {"uid": "123456789012"}}
    assert rec["time"] == rec["start_time"] == 1709632800123
    assert rec["time_dt"] == "2024-03-05T10:00:00.123Z"
    assert rec["end_time"] == 1709632800123 + 30 * 60_000
    assert rec["count"] == 7
    info = rec["finding_info"]
    assert info["uid"] == finding_uid(MODEL.version, SCOPE, "vpc_flow", "instance_peer", "i-0abc", "203.0.113.9")
    assert info["analytic"]["type_id"] == 4 and info["analytic"]["type"] == "Learning (ML/DL)"
    assert info["analytic"]["uid"] == "m-20240304-abc"
    assert info["created_time"] == 1709683200000
    assert info["data_sources"] == ["vpc_flow/instance_peer"]
    assert info["types"] == ["Unusual Behaviors/Network Flow"]
    assert records[1]["finding_info"]["types"] == ["Unusual Behaviors/User"]
    data = rec["evidences"][0]["data"]
    assert data["entity"] == "i-0abc" and data["ip"] == "203.0.113.9"
    assert (data["score"], data["dot_product"], data["threshold"]) == (2.0, -2.0, 1.5)
    assert data["model_version"] == "m-20240304-abc" and data["backend"] == "local"
    assert data["explanation"]["known_networks"][0] == {"cidr": "10.0.2.0/24", "events": 150, "ips": 2}
    assert rec["unmapped"]["score"] == "2.0" and rec["unmapped"]["threshold"] == "1.5"
    assert {k: rec["unmapped"][k] for k in ("source", "view", "scope", "model_version")} == {
        "source": "vpc_flow", "view": "instance_peer", "scope": SCOPE, "model_version": "m-20240304-abc"}
    assert rec["observables"] == [
        {"name": "unmapped.ip", "type": "IP Address", "type_id": 2, "value": "203.0.113.9"},
        {"name": "unmapped.entity", "type": "Resource UID", "type_id": 10, "value": "i-0abc"},
    ]
    assert records[2]["observables"][1]["type_id"] == 2  # an IP used as the entity
    assert "i-0abc with 203.0.113.9: score 2.0000 > threshold 1.5000" in rec["message"]
    assert "10.0.2.0/24 (150 events)" in rec["message"]
    json.dumps(rec, allow_nan=False)  # JSON-able as is


def test_validator_accepts_the_aws_sample_except_its_known_deviations(ocsf: dict, reference_dir: Path) -> None:
    sample = json.loads(
        (reference_dir / "ocsf-examples/1.1.0/sechub_guardduty_detection_finding_2004.json").read_text()
    )
    # The AWS mapping sample lists the extension name as a profile, and its src_endpoint has only an ip,
    # while 1.1.0's network_endpoint asks for a name or uid.
    assert validate_finding(sample, ocsf) == [
        "metadata.profiles: unknown profile 'linux'",
        "evidences[0].src_endpoint: needs at least one of name, uid",
    ]


def test_validator_reports_broken_records(ocsf: dict) -> None:
    good = build([cand()])[0]

    def errors_after(mutate) -> list[str]:
        rec = copy.deepcopy(good)
        mutate(rec)
        return validate_finding(rec, ocsf)

    assert errors_after(lambda r: r["finding_info"].pop("uid")) == ["finding_info.uid: required attribute missing"]
    errs = errors_after(lambda r: r.update(severity_id="4"))
    assert any(e.startswith("severity_id: expected integer_t") for e in errs)
    assert errors_after(lambda r: r.update(status_id=7)) == [
        "status_id: 7 is not an allowed value (0, 1, 2, 3, 4, 99)"
    ]
    assert errors_after(lambda r: r["finding_info"]["analytic"].update(type_id=42)) == [
        "finding_info.analytic.type_id: 42 is not an allowed value (0, 1, 2, 3, 4, 99)"
    ]
    assert errors_after(lambda r: r.update(severity_id=4)) == [
        "severity: 'Medium' does not match severity_id=4 ('High')"
    ]
    assert errors_after(lambda r: r["cloud"].update(colour="blue")) == ["cloud.colour: unknown attribute of 'cloud'"]
    assert errors_after(lambda r: r.update(time=1.5e12)) == ["time: expected timestamp_t (integer), got float"]
    assert errors_after(lambda r: r.update(count=2**31)) == ["count: 2147483648 is out of range for integer_t"]
    assert errors_after(lambda r: r.update(observables={"name": "x"})) == [
        "observables: expected an array of observable, got dict"
    ]
    assert errors_after(lambda r: r.update(time_dt="yesterday")) == ["time_dt: 'yesterday' is not a valid datetime_t"]
    assert errors_after(lambda r: r["cloud"].update(account={})) == ["cloud.account: needs at least one of name, uid"]
    assert errors_after(lambda r: r.update(type_uid=200402)) == [
        "type_name: 'Detection Finding: Create' does not match type_uid=200402 ('Detection Finding: Update')",
        "type_uid: 200402 != class_uid * 100 + activity_id (200401)",
    ]
    errs = errors_after(lambda r: r["metadata"].update(profiles=["datetime"]))
    assert errs == ["cloud: attribute of profile 'cloud', which metadata.profiles does not declare"]
    errs = errors_after(lambda r: r.pop("metadata"))
    assert "metadata: required attribute missing" in errs
    assert validate_finding(["not", "a", "record"], ocsf) == ["record: expected a JSON object, got list"]


# ----------------------------------------------------------------------------- identity and severity
def test_finding_uid_is_deterministic_and_sensitive_to_every_input() -> None:
    args = ("m1", "scope", "vpc_flow", "instance_peer", "i-0abc", "203.0.113.9")
    uid = finding_uid(*args)
    assert re.fullmatch(r"[0-9a-f]{32}", uid)
    assert finding_uid(*args) == uid
    variants = {finding_uid(*(args[:i] + (args[i] + "x",) + args[i + 1:])) for i in range(len(args))}
    assert len(variants) == 6 and uid not in variants
    # No separator ambiguity: moving text between fields changes the id.
    assert finding_uid("m", "s", "a", "b", "e|1", "2") != finding_uid("m", "s", "a", "b", "e", "1|2")
    # Same pair in two records of a rebuilt batch keeps its id.
    assert build([cand()])[0]["finding_info"]["uid"] == build([cand(score=5.0)])[0]["finding_info"]["uid"]


@pytest.mark.parametrize(
    ("score", "threshold", "scale", "expected"),
    [
        (1.49, 1.0, 1.0, (2, "Low")),
        (1.5, 1.0, 1.0, (3, "Medium")),
        (1.99, 1.0, 1.0, (3, "Medium")),
        (2.0, 1.0, 1.0, (4, "High")),
        (2.99, 1.0, 1.0, (4, "High")),
        (3.0, 1.0, 1.0, (5, "Critical")),
        (2.0, 1.0, 2.0, (3, "Medium")),
        (2.0, 1.0, 0.0, (4, "High")),
        (2.0, 1.0, -3.0, (4, "High")),
        (0.5, 1.0, 1.0, (2, "Low")),
        (float("nan"), 1.0, 1.0, (0, "Unknown")),
    ],
)
def test_severity_bands(score: float, threshold: float, scale: float, expected: tuple[int, str]) -> None:
    assert severity_for(score, threshold, scale) == expected


def test_severity_in_records_follows_the_model_scale() -> None:
    model = ActiveModel(version="m", threshold=1.0, backend="aws", severity_scale=4.0, endpoint_name="ep-1")
    rec = build([cand(score=5.0)], model=model)[0]  # margin 4 / scale 4 = 1.0 -> High
    assert (rec["severity_id"], rec["severity"]) == (4, "High")
    assert rec["unmapped"]["endpoint_name"] == "ep-1"


def test_custom_source_names() -> None:
    assert custom_source_name("vpc_flow") == "ipinsights-vpc-flow"
    assert custom_source_name("cloudtrail_signin") == "ipinsights-cloudtrail-signin"
    with pytest.raises(ValueError, match="custom source name"):
        custom_source_name("__")


def test_bad_inputs_are_named() -> None:
    naive = cand(first=datetime(2024, 3, 5, 10, 0))
    with pytest.raises(ValueError, match="first_seen must be timezone-aware"):
        build([naive])
    with pytest.raises(ValueError, match="backend must be one of"):
        ActiveModel(version="m", threshold=1.0, backend="gpu")
    with pytest.raises(ValueError, match="file_stem"):
        findings_parquet_parts(build([cand()]), file_stem="../x")
    rec = build([cand()])[0]
    with pytest.raises(ValueError, match=r"finding record 0: finding_info.uid: required attribute missing"):
        findings_table([{**rec, "finding_info": {k: v for k, v in rec["finding_info"].items() if k != "uid"}}])
    with pytest.raises(ValueError, match="not in FINDINGS_SCHEMA: extra"):
        findings_table([{**rec, "extra": 1}])


# ----------------------------------------------------------------------------- Parquet
def test_partition_layout_codec_and_schema() -> None:
    next_day = T0 + timedelta(days=1)
    records = build(
        [
            cand("i-1"),
            cand("i-2", account="210987654321"),
            cand("i-3", region="eu-west-1", first=next_day),
            cand("arn:aws:iam::123456789012:user/bob", source="cloudtrail_api", view="principal_ip"),
            cand("i-4"),
        ]
    )
    parts = findings_parquet_parts(records, file_stem="obj-0123abcd")
    assert [k for k, _ in parts] == [
        "ext/ipinsights-cloudtrail-api/region=us-east-1/accountId=123456789012/eventDay=20240305/obj-0123abcd.parquet",
        "ext/ipinsights-vpc-flow/region=eu-west-1/accountId=123456789012/eventDay=20240306/obj-0123abcd.parquet",
        "ext/ipinsights-vpc-flow/region=us-east-1/accountId=123456789012/eventDay=20240305/obj-0123abcd.parquet",
        "ext/ipinsights-vpc-flow/region=us-east-1/accountId=210987654321/eventDay=20240305/obj-0123abcd.parquet",
    ]
    assert findings_parquet_parts([], file_stem="obj-0123abcd") == []
    rows = {k: pq.ParquetFile(io.BytesIO(b)).metadata.num_rows for k, b in parts}
    assert sorted(rows.values()) == [1, 1, 1, 2]
    pf = pq.ParquetFile(io.BytesIO(parts[2][1]))
    md = pf.metadata
    codecs = {md.row_group(g).column(c).compression for g in range(md.num_row_groups) for c in range(md.num_columns)}
    assert codecs == {"ZSTD"}
    schema = pf.schema_arrow
    assert schema.field("time").type == pa.int64() and not schema.field("time").nullable
    assert schema.field("time_dt").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("type_uid").type == pa.int64()
    assert schema.field("severity_id").type == pa.int32()
    assert pa.types.is_map(schema.field("unmapped").type)
    assert schema.field("finding_info").type.field("created_time").type == pa.int64()
    assert schema.field("evidences").type.value_type.field("data").type == pa.string()
    assert schema.metadata[b"ocsf_class_uid"] == b"2004"
    assert schema.remove_metadata().equals(FINDINGS_SCHEMA.remove_metadata(), check_metadata=False)


def test_rows_are_sorted_by_time_then_uid() -> None:
    later = T0 + timedelta(minutes=5)
    cands = [cand(f"i-{n}", first=later if n % 2 else T0) for n in range(8)][::-1]
    records = build(cands)
    [(key, data)] = findings_parquet_parts(records, file_stem="s")
    table = pq.read_table(io.BytesIO(data))
    times = table["time"].to_pylist()
    uids = [r["uid"] for r in table["finding_info"].to_pylist()]
    assert times == sorted(times) and times[0] == 1709632800123 and times[-1] == 1709633100123
    expected = sorted(zip(times, uids))
    assert list(zip(times, uids)) == expected
    assert len(set(uids)) == 8


def test_round_trip_records_parts_read(tmp_path: Path) -> None:
    records = build([cand(f"i-{n}", ip=f"198.51.100.{n}", score=1.5 + n / 3, events=n + 1) for n in range(6)])
    records.append(build([cand("i-x", region="eu-west-1")])[0])
    parts = findings_parquet_parts(records, file_stem="rt")
    for key, data in parts:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    back = read_findings(tmp_path)
    by_uid = {r["finding_info"]["uid"]: r for r in records}
    assert len(back) == len(records)
    for rec in back:
        assert rec == by_uid[rec["finding_info"]["uid"]]
    assert read_findings([data for _, data in parts]) == back


def test_hostile_values_are_stored_safely(ocsf: dict) -> None:
    huge = "i-" + "A" * 70_000 + "\n\x00\x1b[31m'\"; DROP TABLE x;--ü\u2028\ud800"
    ip = "1.2.3.4\r\n' OR '1'='1"
    account = "../../etc/passwd"
    records = build([cand(huge, ip, account=account, region="us-east-1/../x")])
    rec = records[0]
    assert validate_finding(rec, ocsf) == []
    stored_entity = huge[:-1] + "\\ud800"  # a lone surrogate cannot be UTF-8; its escape is kept instead
    assert rec["evidences"][0]["data"]["entity"] == stored_entity
    assert rec["unmapped"]["entity"] == stored_entity and rec["unmapped"]["ip"] == ip
    assert rec["cloud"]["account"]["uid"] == account
    for text in (rec["message"], rec["finding_info"]["title"], rec["finding_info"]["desc"]):
        assert "\n" not in text and "\r" not in text and "\x00" not in text and "\u2028" not in text
    assert len(rec["message"]) <= 1000 and len(rec["finding_info"]["title"]) <= 256
    assert "…(+" in rec["message"]
    # The entity is too long for an OCSF string_t observable; the IP is not an IP address.
    assert rec["observables"] == [{"name": "unmapped.ip", "type": "Other", "type_id": 99, "value": ip}]

    [(key, data)] = findings_parquet_parts(records, file_stem="hostile")
    assert key == "ext/ipinsights-vpc-flow/region=unknown/accountId=external/eventDay=20240305/hostile.parquet"
    assert read_findings(data) == records
    assert finding_uid("m", "s", "a", "b", "\ud800", "x") != finding_uid("m", "s", "a", "b", "\\ud800", "x")


def test_one_line_escapes_and_truncates() -> None:
    assert one_line("a\nb\tc\x1bd ü") == "a\\nb\\tc\\x1bd ü"
    cut = one_line("x" * 500, 100)
    assert len(cut) <= 100 and cut.endswith("…(+424 chars)")


def test_explanations_and_raw_data_are_copied_as_a_json_round_trip_would() -> None:
    """The copy kept in a finding equals ``json.loads(json.dumps(...))`` of the value (non-finite
    floats null, keys strings, strings storable, other types as their text), for odd values too."""
    import random
    from collections import OrderedDict
    from enum import IntEnum
    from types import MappingProxyType

    import numpy as np

    from seclake_ml.scoring.findings import _json_canonical, _round_trip_ready

    def round_trip(value):
        return json.loads(json.dumps(_round_trip_ready(value), ensure_ascii=False, allow_nan=False, default=str))

    class Text(str):
        pass

    class Level(IntEnum):
        HIGH = 3

    rnd = random.Random(11)
    leaves = [None, True, False, 0, -7, 2**70, 1.5, -0.0, float("nan"), float("inf"), "x", "a\ud800b", Text("t"),
              np.int64(4), np.float64(2.5), np.float32(1.25), np.float64("nan"), np.bool_(True), Level.HIGH,
              datetime(2024, 1, 1, tzinfo=timezone.utc), {1, 2}, b"bytes", "\x00ctl", "é"]

    def tree(depth: int = 0):
        r = rnd.random()
        if depth > 3 or r < 0.4:
            return rnd.choice(leaves)
        if r < 0.6:
            return {rnd.choice(["k", 1, None, True, 1.5, Text("s"), "a\udc00"]): tree(depth + 1)
                    for _ in range(rnd.randint(0, 4))}
        if r < 0.7:
            return OrderedDict((str(i), tree(depth + 1)) for i in range(rnd.randint(0, 3)))
        if r < 0.75:
            return MappingProxyType({"m": tree(depth + 1)})
        items = [tree(depth + 1) for _ in range(rnd.randint(0, 4))]
        return items if r < 0.9 else tuple(items)

    for _ in range(3000):
        value = tree()
        got, want = _json_canonical(value), round_trip(value)
        # the same JSON text (numbers keep their type: 1 and 1.0, true and 1 differ)
        assert json.dumps(got, ensure_ascii=True) == json.dumps(want, ensure_ascii=True), repr(value)[:300]
