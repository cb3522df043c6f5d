"""Tests of the sample Security Lake generator (seclake_lakegen.generate and its gen_* modules)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seclake_lakegen import ocsf_schemas as O
from seclake_lakegen.gen_anomalies import GROUND_TRUTH_SCHEMA, KINDS
from seclake_lakegen.gen_env import ANOMALY_OCTETS, BENIGN_OCTETS
from seclake_lakegen.generate import add_generate_arguments, generate_lake, run_generate

START = dt.date(2024, 5, 1)  # a Wednesday
DAYS = 3
SEED = 7
TINY = dict(flows_per_day=3000, dns_per_day=400, api_calls_per_day=1500, anomalies_per_kind=4)

SAMPLES = {
    "vpc_flow": ("vpc_flow_example0.gz.parquet", O.VPC_FLOW_V1),
    "route53": ("route53_example0.gz.parquet", O.ROUTE53_V1),
    "cloudtrail_auth": ("cloudtrail_auth_ConsoleLogin.gz.parquet", O.CLOUDTRAIL_AUTH_V1),
    "cloudtrail_auth_mfa_failure": ("cloudtrail_auth_ConsoleLogin-mfa-failure.gz.parquet", O.CLOUDTRAIL_AUTH_V1),
    "cloudtrail_api": ("cloudtrail_api_GetVpcLinks.gz.parquet", O.CLOUDTRAIL_API_V1),
}
FOLDER = {"vpc_flow": "VPC_FLOW", "route53": "ROUTE53", "cloudtrail_auth": "CLOUD_TRAIL_MGMT", "cloudtrail_api": "CLOUD_TRAIL_MGMT",
          "s3_data": "S3_DATA", "lambda_execution": "LAMBDA_EXECUTION"}  # fmt: skip
PREFIX = {"vpc_flow": "flow-", "route53": "dns-", "cloudtrail_auth": "auth-", "cloudtrail_api": "api-", "s3_data": "s3-",
          "lambda_execution": "lambda-"}  # fmt: skip
PATH_RE = re.compile(
    r"^aws/(VPC_FLOW|ROUTE53|CLOUD_TRAIL_MGMT|S3_DATA|LAMBDA_EXECUTION)/([12])\.0/region=([a-z]{2}(?:-[a-z]+)+-\d)/"
    r"accountId=(\d{12})/eventDay=(\d{8})/((?:flow|dns|auth|api|s3|lambda)-\d{8}-[0-9a-f]{12}-\d{4}\.gz\.parquet)$"
)
#: data-event sources: API Activity rows, like the management calls
DATA_KINDS = ("s3_data", "lambda_execution")


# ----------------------------------------------------------------------------- helpers
def _files(root: Path, kind: str, version: int = 1) -> list[Path]:
    base = root / "aws" / FOLDER[kind] / f"{version}.0"
    return sorted(p for p in base.rglob(f"{PREFIX[kind]}*.gz.parquet"))


def _read(root: Path, kind: str, version: int = 1) -> pa.Table:
    tables = [pq.read_table(p) for p in _files(root, kind, version)]
    return pa.concat_tables(tables)


def _content_hash(root: Path) -> str:
    """Hash of every lake table's contents (independent of Parquet encoding details)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.parquet")):
        h.update(str(p.relative_to(root)).encode())
        t = pq.read_table(p)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def _get(row: dict, path: str):
    for part in path.split("."):
        if row is None:
            return None
        row = row.get(part)
    return row


def _principal(row: dict, version: int) -> str | None:
    """The CloudTrail entity as the pair extraction defines it (ARN, else rebuilt, else principal id)."""
    if version == 1:
        arn, acct, pid = _get(row, "actor.user.uuid"), _get(row, "actor.user.account_uid"), _get(row, "actor.user.uid")
    else:
        arn, acct, pid = _get(row, "actor.user.uid"), _get(row, "actor.user.account.uid"), _get(row, "actor.user.uid_alt")
    if arn:
        return arn
    utype, name = _get(row, "actor.user.type"), _get(row, "actor.user.name")
    if utype == "IAMUser" and acct and name:
        return f"arn:aws:iam::{acct}:user/{name}"
    if utype == "Root" and acct:
        return f"arn:aws:iam::{acct}:root"
    return pid


def _pairs(root: Path, version: int = 1) -> dict[str, list[tuple[str, str, int]]]:
    """(entity, ip, time ms) per source, extracted the way the instance_peer / principal_ip views do."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    flows = _read(root, "vpc_flow", version)
    d = flows["connection_info"].combine_chunks().field("direction_id")
    src = flows["src_endpoint"].combine_chunks()
    dst = flows["dst_endpoint"].combine_chunks()
    inbound = pc.equal(d, 1)
    entity = pc.if_else(inbound, dst.field("instance_uid"), src.field("instance_uid"))
    ip = pc.if_else(inbound, src.field("ip"), dst.field("ip"))
    out["vpc_flow"] = [
        (e, i, t) for e, i, t in zip(entity.to_pylist(), ip.to_pylist(), flows["time"].to_pylist()) if e and i
    ]
    kinds = [("cloudtrail_auth", "cloudtrail_signin"), ("cloudtrail_api", "cloudtrail_api")]
    kinds += [(k, k) for k in DATA_KINDS if _files(root, k, version)]
    for kind, source in kinds:
        rows = _read(root, kind, version).to_pylist()
        out[source] = [
            (_principal(r, version), r["src_endpoint"]["ip"], r["time"]) for r in rows if r["src_endpoint"]["ip"]
        ]
    return out


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lake_v1(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lake_v1")
    t0 = time.perf_counter()
    summary = generate_lake(root, START, DAYS, SEED, **TINY)
    summary["_wall"] = time.perf_counter() - t0
    return root, summary


@pytest.fixture(scope="module")
def lake_v2(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lake_v2")
    return root, generate_lake(root, START, DAYS, SEED, source_version=2, **TINY)


# ----------------------------------------------------------------------------- schemas (v1 = AWS samples)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_v1_schema_equals_aws_sample(reference_dir: Path, name: str) -> None:
    fname, schema = SAMPLES[name]
    aws = pq.read_schema(reference_dir / "securitylake-parquet" / fname)
    assert schema.equals(aws, check_metadata=False), f"{name}: schema differs from the AWS sample"
    assert schema.names == aws.names
    # nullability of every top-level column and of nested leaves
    for ours, theirs in zip(schema, aws):
        assert ours.nullable == theirs.nullable, ours.name
        assert str(ours.type).replace("element", "array") == str(theirs.type).replace(" ('unmapped')", "")


@pytest.mark.parametrize("kind", ["vpc_flow", "route53", "cloudtrail_auth", "cloudtrail_api"])
def test_v1_generated_files_have_the_aws_schema(reference_dir: Path, lake_v1, kind: str) -> None:
    root, _ = lake_v1
    fname, _schema = SAMPLES[kind]
    aws = pq.read_schema(reference_dir / "securitylake-parquet" / fname)
    files = _files(root, kind)
    assert files, kind
    for p in files:
        assert pq.read_schema(p).equals(aws, check_metadata=False), p
        meta = pq.ParquetFile(p).metadata
        assert meta.row_group(0).column(0).compression == "GZIP"


def test_v1_class_per_file(lake_v1) -> None:
    root, _ = lake_v1
    expected = {"vpc_flow": {4001}, "route53": {4003}, "cloudtrail_auth": {3002}, "cloudtrail_api": {3005}}
    for kind, classes in expected.items():
        t = _read(root, kind)
        assert set(t["class_uid"].to_pylist()) == classes
    auth = _read(root, "cloudtrail_auth")
    assert set(pc.struct_field(auth["api"], "operation").to_pylist()) == {"ConsoleLogin"}
    assert set(auth["type_uid"].to_pylist()) == {300201}
    api = _read(root, "cloudtrail_api")
    assert set(api["type_uid"].to_pylist()) <= {300501, 300502, 300503, 300504, 300599}
    assert set(api["category_uid"].to_pylist()) == {3}


def test_v2_schemas_carry_ocsf_1_1_fields(reference_dir: Path) -> None:
    eks = pq.read_schema(reference_dir / "securitylake-parquet" / "eks_audit_api_activity_6003.parquet")
    ts = pa.timestamp("ms", tz="UTC")
    for kind in ("vpc_flow", "route53", "cloudtrail_auth", "cloudtrail_api"):
        s = O.schema_for(kind, 2)
        assert s.field("time").type == pa.int64() and not s.field("time").nullable
        assert s.field("time_dt").type == ts == eks.field("time_dt").type
        assert s.field("type_uid").type == pa.int64() == eks.field("type_uid").type
        assert s.field("observables").type.equals(eks.field("observables").type)
        assert s.field("unmapped").type.equals(eks.field("unmapped").type)
        assert "datetime" not in s.names
    vpc = O.VPC_FLOW_V2
    assert vpc.field("start_time_dt").type == ts and vpc.field("end_time_dt").type == ts
    assert "start_time" not in vpc.names and "end_time" not in vpc.names
    assert vpc.field("action").type == pa.string() and vpc.field("action_id").type == pa.int32()
    assert vpc.field("cloud").type.field("account").type.field("uid").type == pa.string()
    assert "account_uid" not in [f.name for f in vpc.field("cloud").type]
    r53 = O.ROUTE53_V2
    assert r53.field("cloud").type.field("account").type.field("uid").type == pa.string()
    assert r53.field("firewall_rule").type.field("uid").type == pa.string()
    for kind in ("cloudtrail_auth", "cloudtrail_api"):
        user = O.schema_for(kind, 2).field("actor").type.field("user").type
        assert [f.name for f in user] == ["type", "name", "uid", "uid_alt", "account", "credential_uid"]
        assert user.field("account").type.field("uid").type == pa.string()
        session = O.schema_for(kind, 2).field("actor").type.field("session").type
        assert session.field("is_mfa").type == pa.bool_()
        assert session.field("created_time_dt").type == ts
    assert O.CLOUDTRAIL_AUTH_V2.field("is_mfa").type == pa.bool_()
    assert "mfa" not in O.CLOUDTRAIL_AUTH_V2.names
    res = O.CLOUDTRAIL_API_V2.field("resources").type.value_type
    assert res.field("owner").type.field("account").type.field("uid").type == pa.string()
    assert O.CLASS_INFO[("cloudtrail_api", 2)] == (6003, "API Activity", 6, "Application Activity")


def test_v2_lake(lake_v2) -> None:
    root, summary = lake_v2
    assert summary["source_version"] == 2 and summary["ocsf_version"] == "1.1.0"
    assert not (root / "aws" / "VPC_FLOW" / "1.0").exists()
    for kind in ("vpc_flow", "route53", "cloudtrail_auth", "cloudtrail_api"):
        files = _files(root, kind, 2)
        assert files, kind
        for p in files:
            assert "/2.0/" in p.as_posix()
            assert pq.read_schema(p).equals(O.schema_for(kind, 2), check_metadata=False)
        t = _read(root, kind, 2)
        assert pc.all(pc.equal(t["time_dt"].cast(pa.int64()), t["time"])).as_py()
        meta = t["metadata"].combine_chunks()
        assert set(meta.field("version").to_pylist()) == {"1.1.0"}
        assert all("datetime" in p for p in meta.field("profiles").to_pylist())
    api = _read(root, "cloudtrail_api", 2)
    assert set(api["class_uid"].to_pylist()) == {6003}
    assert set(api["category_uid"].to_pylist()) == {6}
    assert set(api["type_uid"].to_pylist()) <= {600301, 600302, 600303, 600304, 600399}
    assert 600302 in set(api["type_uid"].to_pylist())
    user = api["actor"].combine_chunks().field("user")
    arns = [a for a in user.field("uid").to_pylist() if a]
    assert arns and all(a.startswith("arn:aws:") for a in arns)
    assert all(u is None or not u.startswith("arn:") for u in user.field("uid_alt").to_pylist())
    assert set(pc.struct_field(user, "account").field("uid").to_pylist()) <= set(summary["accounts"]) | {None}
    flows = _read(root, "vpc_flow", 2)
    accts = pc.struct_field(flows["cloud"], "account").combine_chunks().field("uid")
    assert set(accts.to_pylist()) == set(summary["accounts"])
    assert set(flows["action"].to_pylist()) <= {"Allowed", "Denied", "Unknown"}
    assert "Denied" in set(flows["action"].to_pylist())
    obs = flows["observables"].to_pylist()[:50]
    assert all(o is None or {x["name"] for x in o} >= {"src_endpoint.ip", "dst_endpoint.ip"} for o in obs)
    auth = _read(root, "cloudtrail_auth", 2)
    assert set(auth["is_mfa"].to_pylist()) == {True, False}
    assert set(auth["category_name"].to_pylist()) == {"Identity & Access Management"}


def test_v1_and_v2_carry_the_same_events(lake_v1, lake_v2) -> None:
    p1, p2 = _pairs(lake_v1[0], 1), _pairs(lake_v2[0], 2)
    for source in p1:
        assert sorted(p1[source]) == sorted(p2[source]), source


# ----------------------------------------------------------------------------- layout
def test_layout_and_partitions_match_row_times(lake_v1) -> None:
    root, summary = lake_v1
    days_seen = set()
    rows_seen = Counter()
    for p in sorted((root / "aws").rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(root).as_posix()
        m = PATH_RE.match(rel)
        assert m, rel
        folder, version, region, account, day, name = m.groups()
        assert version == "1" and region in summary["regions"] and account in summary["accounts"]
        kind = {"flow": "vpc_flow", "dns": "route53", "auth": "cloudtrail_auth", "api": "cloudtrail_api", "s3": "s3_data",
                "lambda": "lambda_execution"}[name.split("-")[0]]  # fmt: skip
        assert FOLDER[kind] == folder
        assert name.split("-")[1] == day
        t = pq.read_table(p)
        times = t["time"].to_pylist()
        assert times == sorted(times), f"{rel}: rows not sorted by time"
        utc_days = {dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y%m%d") for ms in times}
        assert utc_days == {day}, rel
        assert all(ms % 1000 == 0 for ms in times)
        regions = set(pc.struct_field(t["cloud"], "region").to_pylist())
        assert regions == {region}, rel
        if kind in ("vpc_flow", "route53"):
            assert set(pc.struct_field(t["cloud"], "account_uid").to_pylist()) == {account}
        else:
            recipients = {dict(m)["recipientAccountId"] for m in t["unmapped"].to_pylist()}
            assert recipients == {account}
        days_seen.add(day)
        rows_seen[kind] += t.num_rows
    assert days_seen == {(START + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(DAYS)}
    assert dict(rows_seen) == summary["rows"]
    # the same partition folder holds both CloudTrail classes, in separate files
    both = defaultdict(set)
    for p in (root / "aws" / "CLOUD_TRAIL_MGMT" / "1.0").rglob("*.gz.parquet"):
        both[p.parent].add(p.name.split("-")[0])
    assert any(v == {"auth", "api"} for v in both.values())


def test_summary_and_manifest(lake_v1) -> None:
    root, summary = lake_v1
    manifest = json.loads((root / "ground_truth" / "manifest.json").read_text())
    for key in ("seed", "start", "days", "source_version", "rows", "anomalies", "args", "accounts", "regions"):
        assert manifest[key] == summary[key], key
    assert manifest["seed"] == SEED and manifest["start"] == "2024-05-01" and manifest["days"] == DAYS
    assert manifest["args"]["flows_per_day"] == TINY["flows_per_day"]
    assert len(summary["accounts"]) == 3 and all(re.fullmatch(r"\d{12}", a) for a in summary["accounts"])
    assert summary["regions"] == ["us-east-1", "eu-west-1"]
    gt = pq.read_table(root / "ground_truth" / "anomalies.parquet")
    assert summary["anomalies"] == dict(Counter(gt["kind"].to_pylist()))
    assert summary["anomaly_events"] == {k: TINY["anomalies_per_kind"] for k in KINDS}
    # baseline VPC rows are exactly flows_per_day per day; injected rows come on top
    assert summary["rows"]["vpc_flow"] == DAYS * TINY["flows_per_day"] + summary["anomaly_rows"]["vpc_flow"]
    assert summary["rows"]["route53"] == DAYS * TINY["dns_per_day"]
    assert summary["files"]["vpc_flow"] == 3 * 2 * DAYS
    assert summary["seconds"] > 0


def test_tiny_lake_is_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    s = generate_lake(tmp_path, START, 2, 1, flows_per_day=1500, dns_per_day=200, api_calls_per_day=600, anomalies_per_kind=2)
    elapsed = time.perf_counter() - t0
    assert 3000 <= s["total_rows"] <= 8000
    assert elapsed < 2.0, f"tiny lake took {elapsed:.2f}s"


def test_rows_per_file_and_row_groups(tmp_path: Path) -> None:
    s = generate_lake(
        tmp_path, START, 1, 3, sources="vpc_flow", accounts=1, regions="us-east-1", flows_per_day=5000,
        anomalies_per_kind=0, row_group_rows=1000, rows_per_file=2000,
    )  # fmt: skip
    files = _files(tmp_path, "vpc_flow")
    assert s["rows"]["vpc_flow"] == 5000 and s["files"]["vpc_flow"] == len(files) >= 3
    for p in files:
        md = pq.ParquetFile(p).metadata
        assert md.num_rows <= 2000 + 1000
        assert all(md.row_group(i).num_rows <= 1100 for i in range(md.num_row_groups))
    times = pa.concat_tables([pq.read_table(p) for p in files])["time"].to_pylist()
    assert times == sorted(times)
    assert s["rows"]["route53"] == 0 and not (tmp_path / "aws" / "ROUTE53").exists()


# ----------------------------------------------------------------------------- determinism
def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    args = dict(flows_per_day=1200, dns_per_day=150, api_calls_per_day=500, anomalies_per_kind=2)
    a = generate_lake(tmp_path / "a", START, 3, 11, **args)
    b = generate_lake(tmp_path / "b", START, 3, 11, workers=1, **args)
    c = generate_lake(tmp_path / "c", START, 3, 12, **args)
    ha, hb, hc = (_content_hash(tmp_path / x) for x in "abc")
    assert ha == hb
    assert ha != hc
    assert a["rows"] == b["rows"] and a["accounts"] == b["accounts"] and a["accounts"] != c["accounts"]
    rel = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert rel == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    for r in rel:  # byte-identical files
        assert (tmp_path / "a" / r).read_bytes() == (tmp_path / "b" / r).read_bytes(), r
    assert (tmp_path / "a/ground_truth/manifest.json").read_text() == (tmp_path / "b/ground_truth/manifest.json").read_text()


# ----------------------------------------------------------------------------- anomalies
def test_ground_truth_format_and_warmup(lake_v1) -> None:
    root, summary = lake_v1
    gt = pq.read_table(root / "ground_truth" / "anomalies.parquet")
    assert gt.schema.equals(GROUND_TRUTH_SCHEMA)
    assert gt.column_names == ["source", "view", "entity", "ip", "event_time", "kind", "account", "region"]
    rows = gt.to_pylist()
    assert {r["kind"] for r in rows} == set(KINDS)
    warm_end = dt.datetime.combine(START, dt.time(), dt.timezone.utc) + dt.timedelta(days=DAYS * 2 / 3)
    end = dt.datetime.combine(START, dt.time(), dt.timezone.utc) + dt.timedelta(days=DAYS)
    for r in rows:
        assert warm_end <= r["event_time"] < end, r
        assert {"new_external_peer": "vpc_flow", "scan": "vpc_flow", "signin_unseen_network": "cloudtrail_signin",
                "api_unseen_network": "cloudtrail_api", "data_access_new_network": "s3_data"}[r["kind"]] == r["source"]  # fmt: skip
        assert r["view"] == ("instance_peer" if r["source"] == "vpc_flow" else "principal_ip")
        assert r["account"] in summary["accounts"] and r["region"] in summary["regions"]
        assert int(r["ip"].split(".")[0]) in ANOMALY_OCTETS
        if r["source"] == "vpc_flow":
            assert re.fullmatch(r"i-[0-9a-f]{17}", r["entity"])
        else:
            assert r["entity"].startswith(("arn:aws:iam::", "arn:aws:sts::"))
    scans = [r for r in rows if r["kind"] == "scan"]
    per_ip = Counter(r["ip"] for r in scans)
    assert len(per_ip) == TINY["anomalies_per_kind"] and min(per_ip.values()) >= 3


def test_anomalies_are_new_pairs_found_by_extraction(lake_v1) -> None:
    _check_ground_truth(lake_v1[0], 1)


@pytest.mark.parametrize("version", [1, 2])
def test_small_estate_shapes(tmp_path: Path, version: int) -> None:
    """Odd estates (one account, several small VPCs, a single person) still give a consistent lake."""
    s = generate_lake(
        tmp_path, dt.date(2024, 2, 27), 3, 5, source_version=version, accounts=1, regions="ap-southeast-2",
        vpcs_per_region=3, instances_per_vpc=2, users_per_account=1, flows_per_day=900, anomalies_per_kind=2,
    )  # fmt: skip
    assert s["regions"] == ["ap-southeast-2"] and s["instances"] == 6
    assert s["anomaly_events"] == {k: 2 for k in KINDS}
    for kind in ("vpc_flow", "route53", "cloudtrail_api"):
        assert _files(tmp_path, kind, version)
    zones = set(pc.struct_field(_read(tmp_path, "vpc_flow", version)["cloud"], "zone").to_pylist())
    assert zones and all(re.fullmatch(r"apse2-az[1-3]", z) for z in zones)
    _check_ground_truth(tmp_path, version)


def _check_ground_truth(root: Path, version: int) -> None:
    pairs = _pairs(root, version)
    gt = pq.read_table(root / "ground_truth" / "anomalies.parquet").to_pylist()
    first: dict[str, dict[tuple[str, str], int]] = {}
    for source, lst in pairs.items():
        f: dict[tuple[str, str], int] = {}
        for e, ip, t in lst:
            f[(e, ip)] = min(t, f.get((e, ip), t))
        first[source] = f
    event_start: dict[str, int] = {}
    for r in gt:
        ms = int(r["event_time"].timestamp() * 1000)
        event_start[r["ip"]] = min(ms, event_start.get(r["ip"], ms))
    for r in gt:
        t_ms = int(r["event_time"].timestamp() * 1000)
        key = (r["entity"], r["ip"])
        assert first[r["source"]].get(key) == t_ms, r  # the anomaly's first row is its event_time
        # the entity never used that /16 before (a learnable anomaly), and nobody used the address
        # before the event began (a scan reaches its targets one after another)
        net = ipaddress.ip_network(f"{r['ip']}/16", strict=False)
        for e, ip, t in pairs[r["source"]]:
            if ip == r["ip"]:
                assert t >= event_start[r["ip"]]
            if t < t_ms and ":" not in ip and ip != "-":
                if e == r["entity"]:
                    assert ipaddress.ip_address(ip) not in net, (r, ip)
    # benign traffic never uses the addresses reserved for anomalies
    gt_ips = {r["ip"] for r in gt}
    for source, lst in pairs.items():
        for e, ip, _ in lst:
            if ":" in ip or ip == "-" or ip in gt_ips:
                continue
            if not ipaddress.ip_address(ip).is_private:
                assert int(ip.split(".")[0]) not in ANOMALY_OCTETS, (source, e, ip)


def _string_leaves(arr: pa.Array, path: str):
    """(path, string array) for every string leaf inside ``arr`` (structs, lists, maps)."""
    t = arr.type
    if pa.types.is_struct(t):
        for i, f in enumerate(t):
            yield from _string_leaves(arr.field(i), f"{path}.{f.name}")
    elif pa.types.is_map(t):
        yield from _string_leaves(arr.keys, f"{path}.key")
        yield from _string_leaves(arr.items, f"{path}.value")
    elif pa.types.is_list(t):
        yield from _string_leaves(arr.flatten(), f"{path}[]")
    elif pa.types.is_string(t):
        yield path, arr


def test_lake_has_no_anomaly_markers(lake_v1) -> None:
    root, _ = lake_v1
    markers = re.compile(r"anomal|inject|attack|malicious|ground.?truth|synthetic|scanner|exfil|label", re.I)
    checked = 0
    for kind in ("vpc_flow", "route53", "cloudtrail_auth", "cloudtrail_api", *DATA_KINDS):
        t = _read(root, kind)
        schema_kind = "cloudtrail_api" if kind in DATA_KINDS else kind
        assert t.schema.equals(O.schema_for(schema_kind, 1), check_metadata=False)  # no extra column
        for name in t.column_names:
            for path, leaf in _string_leaves(t[name].combine_chunks(), name):
                assert not markers.search(path), path
                for v in pc.unique(leaf).to_pylist():
                    assert v is None or not markers.search(v), (kind, path, v)
                checked += 1
    assert checked > 60
    for p in (root / "aws").rglob("*"):
        assert not markers.search(p.name)


def test_no_anomalies_before_warmup_when_configured(tmp_path: Path) -> None:
    s = generate_lake(tmp_path, START, 4, 5, flows_per_day=800, dns_per_day=50, api_calls_per_day=300,
                      anomalies_per_kind=3, warmup_fraction=0.5)  # fmt: skip
    gt = pq.read_table(tmp_path / "ground_truth" / "anomalies.parquet").to_pylist()
    boundary = dt.datetime.combine(START, dt.time(), dt.timezone.utc) + dt.timedelta(days=2)
    assert gt and all(r["event_time"] >= boundary for r in gt)
    assert s["anomaly_window"][0] == "2024-05-03T00:00:00Z"
    s0 = generate_lake(tmp_path / "none", START, 2, 5, flows_per_day=500, anomalies_per_kind=0)
    assert pq.read_table(tmp_path / "none" / "ground_truth" / "anomalies.parquet").num_rows == 0
    assert s0["anomalies"] == {k: 0 for k in KINDS} and s0["rows"]["vpc_flow"] == 1000


def test_address_pools_are_disjoint() -> None:
    assert not set(ANOMALY_OCTETS) & BENIGN_OCTETS
    assert all(o not in (0, 10, 100, 127, 169, 172, 192, 198, 203) and o < 224 for o in ANOMALY_OCTETS)


# ----------------------------------------------------------------------------- realism
def test_vpc_flow_behaviour(lake_v1) -> None:
    root, summary = lake_v1
    t = _read(root, "vpc_flow")
    rows = t.to_pylist()
    n = len(rows)
    status = Counter(r["status_code"] for r in rows)
    nodata = [r for r in rows if r["status_code"] == "NODATA"]
    assert 0 < status["NODATA"] / n < 0.01
    assert all(r["src_endpoint"]["ip"] == "-" and r["dst_endpoint"]["ip"] == "-" for r in nodata)
    assert all(r["traffic"]["bytes"] is None and r["activity_id"] == 0 for r in nodata)
    ok = [r for r in rows if r["status_code"] == "OK"]
    v6 = [r for r in ok if r["connection_info"]["protocol_ver"] == "IPv6"]
    assert 0.003 < len(v6) / n < 0.06
    assert all(":" in r["src_endpoint"]["ip"] and ":" in r["dst_endpoint"]["ip"] for r in v6)
    inbound = [r for r in ok if r["connection_info"]["direction_id"] == 1]
    outbound = [r for r in ok if r["connection_info"]["direction_id"] == 2]
    assert 0.3 < len(inbound) / len(ok) < 0.7
    assert all(r["dst_endpoint"]["instance_uid"] and r["src_endpoint"]["instance_uid"] is None for r in inbound)
    assert all(r["src_endpoint"]["instance_uid"] and r["dst_endpoint"]["instance_uid"] is None for r in outbound)
    assert {r["connection_info"]["direction"] for r in inbound} == {"Inbound"}
    ids = {r["src_endpoint"]["instance_uid"] for r in outbound}
    assert all(re.fullmatch(r"i-[0-9a-f]{17}", i) for i in ids) and len(ids) >= 40
    assert all(re.fullmatch(r"eni-[0-9a-f]{17}", r["src_endpoint"]["interface_uid"]) for r in outbound)
    rejected = [r for r in ok if r["activity_id"] == 5]
    assert 0.002 < len(rejected) / n < 0.2
    assert {(r["activity_name"], r["disposition"], r["disposition_id"], r["type_uid"]) for r in rejected} == {
        ("Refuse", "Blocked", 2, 400105)
    }
    accepted = {(r["activity_name"], r["disposition"], r["type_uid"]) for r in ok if r["activity_id"] == 6}
    assert accepted == {("Traffic", "Allowed", 400106)}
    protos = Counter(r["connection_info"]["protocol_num"] for r in ok)
    assert protos[6] / len(ok) > 0.8 and protos[17] > 0 and protos[1] > 0
    own = [r["src_endpoint"]["ip"] for r in outbound if ":" not in r["src_endpoint"]["ip"]]
    assert all(ipaddress.ip_address(ip).is_private for ip in own)
    peers = {r["dst_endpoint"]["ip"] for r in outbound if ":" not in r["dst_endpoint"]["ip"]}
    assert any(ipaddress.ip_address(p).is_private for p in peers)
    assert any(ipaddress.ip_address(p).is_global for p in peers)
    # each instance has a stable, small set of peers (apart from injected ones)
    per_inst = defaultdict(set)
    for r in outbound:
        per_inst[r["src_endpoint"]["instance_uid"]].add(r["dst_endpoint"]["ip"])
    assert max(len(v) for v in per_inst.values()) < 60
    assert all(r["end_time"] >= r["start_time"] == r["time"] for r in ok)
    assert all(r["traffic"]["bytes"] >= 40 * r["traffic"]["packets"] for r in ok)
    assert {r["cloud"]["zone"][:4] for r in rows} == {"use1", "euw1"}
    svc = Counter(r["dst_endpoint"]["svc_name"] for r in outbound)
    assert svc["S3"] > 0 and svc["AMAZON"] > 0 and svc["-"] > 0
    # diurnal shape: busiest hour clearly above the quietest
    hours = Counter(dt.datetime.fromtimestamp(r["time"] / 1000, dt.timezone.utc).hour for r in rows)
    assert max(hours.values()) > 1.3 * min(hours.values())


def test_route53_behaviour(lake_v1) -> None:
    root, _ = lake_v1
    rows = _read(root, "route53").to_pylist()
    qtypes = Counter(r["query"]["type"] for r in rows)
    assert qtypes["A"] > qtypes["AAAA"] > 0
    rcodes = Counter(r["rcode"] for r in rows)
    assert rcodes["NoError"] / len(rows) > 0.85 and rcodes["NXDomain"] > 0
    assert all(r["answers"] is None for r in rows if r["rcode"] == "NXDomain")
    answer_types = Counter(a["type"] for r in rows for a in (r["answers"] or []))
    assert answer_types["A"] > 0 and answer_types["CNAME"] > 0 and answer_types["AAAA"] > 0
    assert all(r["query"]["hostname"].endswith(".") for r in rows)
    assert all(re.fullmatch(r"i-[0-9a-f]{17}", r["src_endpoint"]["instance_uid"]) for r in rows)
    assert {r["activity_id"] for r in rows} == {2} and {r["type_uid"] for r in rows} == {400302}


def test_cloudtrail_behaviour(lake_v1) -> None:
    root, _ = lake_v1
    api = _read(root, "cloudtrail_api").to_pylist()
    n = len(api)
    services = Counter(r["api"]["service"]["name"] for r in api)
    for svc in ("ec2", "s3", "iam", "sts", "lambda", "cloudtrail", "kms", "ssm"):
        assert services[f"{svc}.amazonaws.com"] > 0, svc
    errors = Counter(r["api"]["response"]["error"] for r in api)
    failed = n - errors[None]
    assert 0.005 < failed / n < 0.1
    assert errors["AccessDenied"] > 0 and errors["ThrottlingException"] + errors["Throttling"] + errors["Client.RequestLimitExceeded"] > 0
    assert all(r["status"] == ("Failure" if r["api"]["response"]["error"] else "Success") for r in api)
    denied = [r for r in api if r["api"]["response"]["error"] == "AccessDenied"]
    assert all("is not authorized to perform" in r["api"]["response"]["message"] for r in denied)
    agents = " ".join({r["http_request"]["user_agent"] for r in api})
    for token in ("aws-cli/", "Boto3/", "Terraform/", "console.", "aws-sdk-java/", "aws-sdk-go"):
        assert token in agents, token
    service_calls = [r for r in api if r["src_endpoint"]["domain"]]
    assert service_calls and all(r["src_endpoint"]["ip"] is None for r in service_calls)
    assert {r["src_endpoint"]["domain"] for r in service_calls} >= {"ec2.amazonaws.com"}
    assert all(r["actor"]["invoked_by"] for r in service_calls)
    types = Counter(r["actor"]["user"]["type"] for r in api)
    assert types["IAMUser"] > 0 and types["AssumedRole"] > 0 and types["AWSService"] > 0
    arns = {r["actor"]["user"]["uuid"] for r in api if r["actor"]["user"]["uuid"]}
    assert any(re.fullmatch(r"arn:aws:iam::\d{12}:user/[a-z.]+", a) for a in arns)
    assert any(re.fullmatch(r"arn:aws:sts::\d{12}:assumed-role/[\w+=,.@-]+/i-[0-9a-f]{17}", a) for a in arns)
    vpce = [r for r in api if r["src_endpoint"]["uid"]]
    assert vpce and all(ipaddress.ip_address(r["src_endpoint"]["ip"]).is_private for r in vpce)
    # human activity follows working hours
    human = [r for r in api if r["actor"]["user"]["type"] == "IAMUser"]
    assert len(human) > 50
    auth = _read(root, "cloudtrail_auth").to_pylist()
    status = Counter(r["status"] for r in auth)
    assert status["Success"] > status["Failure"] > 0
    fails = [r for r in auth if r["status"] == "Failure"]
    assert all(r["actor"]["user"]["uuid"] is None and r["api"]["response"]["message"] == "Failed authentication" for r in fails)
    assert {r["mfa"] for r in auth} == {True, False}
    assert all(r["src_endpoint"]["ip"] and ipaddress.ip_address(r["src_endpoint"]["ip"]).is_global for r in auth)
    assert {r["actor"]["user"]["type"] for r in auth} >= {"IAMUser", "AssumedRole"}


def test_humans_use_few_stable_networks(tmp_path: Path) -> None:
    generate_lake(tmp_path, dt.date(2024, 5, 6), 5, 21, sources="cloudtrail", api_calls_per_day=3000, anomalies_per_kind=0)
    api = _read(tmp_path, "cloudtrail_api").to_pylist()
    nets = defaultdict(set)
    hours = Counter()
    for r in api:
        if r["actor"]["user"]["type"] == "IAMUser" and r["src_endpoint"]["ip"]:
            ip = ipaddress.ip_address(r["src_endpoint"]["ip"])
            nets[r["actor"]["user"]["uuid"]].add(ipaddress.ip_network(f"{ip}/24", strict=False))
            hours[dt.datetime.fromtimestamp(r["time"] / 1000, dt.timezone.utc).hour] += 1
    assert len(nets) >= 5
    counts = sorted(len(v) for v in nets.values())
    assert counts[len(counts) // 2] <= 4, counts  # home, office, VPN (+ rare travel)
    assert max(hours.values()) > 5 * (min(hours.values()) + 1)


# ----------------------------------------------------------------------------- arguments and CLI glue
def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source_version"):
        generate_lake(tmp_path / "x", START, 1, 1, source_version=3)
    with pytest.raises(ValueError, match="warmup_fraction"):
        generate_lake(tmp_path / "x", START, 1, 1, warmup_fraction=1.5)
    with pytest.raises(ValueError, match="unknown generator option"):
        generate_lake(tmp_path / "x", START, 1, 1, flows=10)
    with pytest.raises(ValueError, match="sources"):
        generate_lake(tmp_path / "x", START, 1, 1, sources="vpc_flow,s3")
    with pytest.raises(ValueError, match="days"):
        generate_lake(tmp_path / "x", START, 0, 1)
    with pytest.raises(ValueError, match="no room for anomalies"):
        generate_lake(tmp_path / "x", START, 1, 1, warmup_fraction=0.95, flows_per_day=100)
    generate_lake(tmp_path / "y", START, 1, 1, flows_per_day=200, anomalies_per_kind=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_lake(tmp_path / "y", START, 1, 1, flows_per_day=200, anomalies_per_kind=0)
    s = generate_lake(tmp_path / "y", START, 1, 2, flows_per_day=300, anomalies_per_kind=0, overwrite=True)
    assert s["rows"]["vpc_flow"] == 300 == pa.concat_tables([pq.read_table(p) for p in _files(tmp_path / "y", "vpc_flow")]).num_rows


def test_cli_arguments_round_trip(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    args = parser.parse_args(
        ["--root", str(tmp_path), "--start", "2024-05-01", "--days", "2", "--seed", "9", "--source-version", "2",
         "--flows-per-day", "600", "--dns-per-day", "60", "--api-calls-per-day", "300", "--accounts", "2",
         "--regions", "us-west-2", "--anomalies-per-kind", "1", "--warmup-fraction", "0.5"]
    )  # fmt: skip
    assert args.start == dt.date(2024, 5, 1) and args.regions == ("us-west-2",)
    summary = run_generate(args)
    assert summary["source_version"] == 2 and summary["seed"] == 9 and summary["days"] == 2
    assert summary["regions"] == ["us-west-2"] and len(summary["accounts"]) == 2
    assert summary["rows"]["vpc_flow"] >= 1200 and summary["anomaly_events"]["scan"] == 1
    assert (tmp_path / "aws" / "VPC_FLOW" / "2.0" / "region=us-west-2").is_dir()
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", str(tmp_path), "--start", "01/05/2024"])


# ----------------------------------------------------------------------------- CloudTrail data events
S3_OPS = {"GetObject", "PutObject", "HeadObject", "ListObjects", "ListObjectsV2", "DeleteObject", "GetObjectTagging"}
S3_OBJECT_OPS = {"GetObject", "PutObject", "HeadObject", "DeleteObject", "GetObjectTagging"}
SWEEP_OPS = {"ListBuckets", "ListObjectsV2", "GetObject"}


def _entity_col(version: int) -> str:
    """The principal ARN column the principal_ip pair view reads."""
    return "uuid" if version == 1 else "uid"


@pytest.mark.parametrize("version", [1, 2])
def test_data_event_partitions_are_api_activity(lake_v1, lake_v2, version: int) -> None:
    root, summary = lake_v1 if version == 1 else lake_v2
    class_uid = 3005 if version == 1 else 6003
    for kind in DATA_KINDS:
        files = _files(root, kind, version)
        assert files, kind
        for p in files:
            rel = p.relative_to(root).as_posix()
            m = PATH_RE.match(rel)
            assert m and m.group(1) == FOLDER[kind] and m.group(2) == str(version), rel
            assert pq.read_schema(p).equals(O.schema_for("cloudtrail_api", version), check_metadata=False), rel
        t = _read(root, kind, version)
        assert t.num_rows == summary["rows"][kind] > 0
        assert set(t["class_uid"].to_pylist()) == {class_uid}
        assert set(t["type_uid"].to_pylist()) <= {class_uid * 100 + a for a in (1, 2, 3, 4, 99)}
        meta = t["metadata"].combine_chunks()
        assert set(meta.field("product").field("feature").field("name").to_pylist()) == {"Data"}
        if version == 2:
            assert pc.all(pc.equal(t["time_dt"].cast(pa.int64()), t["time"])).as_py()
    s3 = _read(root, "s3_data", version).to_pylist()
    ops = Counter(r["api"]["operation"] for r in s3)
    assert set(ops) - {"ListBuckets"} <= S3_OPS and {r["api"]["service"]["name"] for r in s3} == {"s3.amazonaws.com"}
    assert ops["GetObject"] + ops["PutObject"] + ops["HeadObject"] > 0.6 * len(s3)
    for r in s3:
        res, op = r["resources"], r["api"]["operation"]
        if op == "ListBuckets":
            assert not res
            continue
        assert res[0]["type"] == "AWS::S3::Bucket" and re.fullmatch(r"arn:aws:s3:::[a-z0-9.-]+", res[0]["uid"]), r
        if op in S3_OBJECT_OPS:
            assert len(res) == 2 and res[1]["type"] == "AWS::S3::Object", r
            assert res[1]["uid"].startswith(res[0]["uid"] + "/") and len(res[1]["uid"]) > len(res[0]["uid"]) + 1
        else:
            assert len(res) == 1, r
    # a handful of buckets per account and region, with stable names
    buckets = defaultdict(set)
    for r in s3:
        if r["resources"]:
            buckets[(r["cloud"]["region"], _get(r, "actor.user.account_uid" if version == 1 else "actor.user.account.uid"))].add(
                r["resources"][0]["uid"])
    assert buckets and all(2 <= len(b) <= 8 for b in buckets.values())
    lam = _read(root, "lambda_execution", version).to_pylist()
    assert {r["api"]["operation"] for r in lam} == {"Invoke"}
    assert {r["api"]["service"]["name"] for r in lam} == {"lambda.amazonaws.com"}
    for r in lam:
        (res,) = r["resources"]
        assert res["type"] == "AWS::Lambda::Function"
        m = re.fullmatch(r"arn:aws:lambda:([a-z0-9-]+):(\d{12}):function:[A-Za-z0-9_-]+", res["uid"])
        assert m and m.group(1) == r["cloud"]["region"], res
    # service invokes carry the service's domain, not an address
    no_ip = [r for r in lam if r["src_endpoint"]["ip"] is None]
    assert 0 < len(no_ip) < len(lam)
    assert {r["src_endpoint"]["domain"] for r in no_ip} == {"lambda.amazonaws.com"}
    assert all(r["actor"]["user"]["type"] == "AWSService" for r in no_ip)


@pytest.mark.parametrize("version", [1, 2])
def test_data_access_anomaly_in_manifest_and_s3_data(lake_v1, lake_v2, version: int) -> None:
    root, summary = lake_v1 if version == 1 else lake_v2
    manifest = json.loads((root / "ground_truth" / "manifest.json").read_text())
    kind = "data_access_new_network"
    assert kind in KINDS
    assert manifest["anomalies"][kind] == manifest["anomaly_events"][kind] == TINY["anomalies_per_kind"]
    assert manifest["anomaly_rows"]["s3_data"] > 0
    truth = [r for r in pq.read_table(root / "ground_truth" / "anomalies.parquet").to_pylist() if r["kind"] == kind]
    assert len(truth) == TINY["anomalies_per_kind"]
    rows = _read(root, "s3_data", version).to_pylist()
    col = _entity_col(version)
    for gt in truth:
        assert gt["source"] == "s3_data" and gt["view"] == "principal_ip"
        t_ms = int(gt["event_time"].timestamp() * 1000)
        mine = [r for r in rows if r["actor"]["user"][col] == gt["entity"]]
        burst = [r for r in mine if r["src_endpoint"]["ip"] == gt["ip"]]
        assert len(burst) >= 4, gt
        assert min(r["time"] for r in burst) == t_ms
        assert {r["api"]["operation"] for r in burst} <= SWEEP_OPS and "ListBuckets" in {r["api"]["operation"] for r in burst}
        assert {r["cloud"]["region"] for r in burst} == {gt["region"]}
        swept = {r["resources"][0]["uid"] for r in burst if r["resources"]}
        before = {r["resources"][0]["uid"] for r in mine if r["time"] < t_ms and r["resources"]}
        assert len(swept) >= 3, gt
        assert swept - before, gt  # at least one bucket it never touched
        # the principal never used this /16 before, for data events or management calls
        net = ipaddress.ip_network(f"{gt['ip']}/16", strict=False)
        assert not any(r["src_endpoint"]["ip"] and ":" not in r["src_endpoint"]["ip"]
                       and ipaddress.ip_address(r["src_endpoint"]["ip"]) in net for r in mine if r["time"] < t_ms)


def test_data_events_come_from_the_principals_usual_networks(lake_v1) -> None:
    root, _ = lake_v1
    gt_ips = {r["ip"] for r in pq.read_table(root / "ground_truth" / "anomalies.parquet").to_pylist()}
    mgmt: dict[str, set[str]] = defaultdict(set)
    for e, ip, _ in _pairs(root)["cloudtrail_api"]:
        mgmt[e].add(ip)
    rows = _read(root, "s3_data").to_pylist()
    usual = total = 0
    buckets: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        e, ip = _principal(r, 1), r["src_endpoint"]["ip"]
        if not e or not ip or ip in gt_ips:
            continue
        total += 1
        usual += ip in mgmt[e]
        buckets[(e, r["cloud"]["region"])].add(r["resources"][0]["uid"])
    assert total > 500
    assert usual / total >= 0.9, (usual, total)
    # principals keep to a few buckets
    assert max(len(b) for b in buckets.values()) <= 3
    roles = sum(1 for r in rows if r["actor"]["user"]["type"] == "AssumedRole")
    humans = sum(1 for r in rows if r["actor"]["user"]["type"] == "IAMUser")
    assert roles > humans > 0


def test_data_event_volume_options(tmp_path: Path) -> None:
    s = generate_lake(tmp_path, START, 2, 4, sources="s3_data,lambda_execution", accounts=1, regions="us-east-1",
                      s3_data_per_day=400, lambda_per_day=100, anomalies_per_kind=1, warmup_fraction=0.5)  # fmt: skip
    assert s["args"]["s3_data_per_day"] == 400 and s["args"]["lambda_per_day"] == 100
    assert s["rows"]["vpc_flow"] == s["rows"]["cloudtrail_api"] == 0 and not (tmp_path / "aws" / "VPC_FLOW").exists()
    assert 2 * 400 * 0.8 <= s["rows"]["s3_data"] - s["anomaly_rows"]["s3_data"] <= 2 * 400
    assert 2 * 100 * 0.8 <= s["rows"]["lambda_execution"] <= 2 * 100
    assert s["anomalies"] == {k: (1 if k == "data_access_new_network" else 0) for k in KINDS}
    assert generate_lake(tmp_path / "d", START, 1, 4, flows_per_day=1000, api_calls_per_day=800,
                         anomalies_per_kind=0)["args"]["s3_data_per_day"] == 200  # fmt: skip
    with pytest.raises(ValueError, match="s3_data_per_day"):
        generate_lake(tmp_path / "x", START, 1, 1, s3_data_per_day=-1)
    with pytest.raises(ValueError, match="lambda_per_day"):
        generate_lake(tmp_path / "x", START, 1, 1, lambda_per_day=1.5)
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    args = parser.parse_args(["--root", str(tmp_path / "cli"), "--start", "2024-05-01", "--days", "1",
                              "--flows-per-day", "300", "--s3-data-per-day", "120", "--lambda-per-day", "30",
                              "--sources", "s3_data,lambda_execution", "--anomalies-per-kind", "0"])  # fmt: skip
    cli = run_generate(args)
    assert cli["args"]["s3_data_per_day"] == 120 and cli["args"]["lambda_per_day"] == 30
    assert 0 < cli["rows"]["s3_data"] <= 120 and 0 < cli["rows"]["lambda_execution"] <= 30
