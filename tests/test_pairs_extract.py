"""Pair extraction on the local backend: AWS-written samples, views, filters and a hostile corpus."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.config import ConfigError, load_config
from seclake_ml.extraction import extract_pairs
from seclake_ml.pairs import SPECIAL_ADDRESS_REASONS
from seclake_ml.sqlsafe import UnsafeSqlError

SAMPLES = {
    "vpc_flow_example0.gz.parquet": ("VPC_FLOW", "us-east-1", "123456789012"),
    "route53_example0.gz.parquet": ("ROUTE53", "us-east-1", "123456789012"),
    "cloudtrail_auth_ConsoleLogin.gz.parquet": ("CLOUD_TRAIL_MGMT", "us-east-2", "111122223333"),
    "cloudtrail_auth_ConsoleLogin-mfa-failure.gz.parquet": ("CLOUD_TRAIL_MGMT", "us-east-1", "111122223333"),
    "cloudtrail_api_GetVpcLinks.gz.parquet": ("CLOUD_TRAIL_MGMT", "us-east-1", "811596193553"),
}


def _day_of(table: pa.Table) -> str:
    ms = table["time"][0].as_py()
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y%m%d")


def _partition(root: Path, source: str, region: str, account: str, day: str, version: int = 1) -> Path:
    d = root / "aws" / source / f"{version}.0" / f"region={region}" / f"accountId={account}" / f"eventDay={day}"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture()
def sample_lake(tmp_path: Path, reference_dir: Path) -> Path:
    """The AWS-written Security Lake samples placed in the Security Lake S3 layout."""
    root = tmp_path / "lake"
    for name, (source, region, account) in SAMPLES.items():
        src = reference_dir / "securitylake-parquet" / name
        day = _day_of(pq.read_table(src))
        shutil.copy(src, _partition(root, source, region, account, day) / name)
    return root


def _cfg(root: Path, **kw):
    return load_config({"lake_root": str(root), "work_location": str(root.parent / "work"), **kw}, environ={})


def _pairs(path: str) -> list[tuple[str, str]]:
    t = pq.read_table(path)
    return list(zip(t["entity"].to_pylist(), t["ip"].to_pylist()))


# ----------------------------------------------------------------------------- AWS samples
def test_vpc_flow_sample_peer_view(sample_lake: Path, tmp_path: Path) -> None:
    res = extract_pairs(_cfg(sample_lake), "vpc_flow", "instance_peer", "2022-04-12", "2022-04-13", str(tmp_path / "p.parquet"))
    assert _pairs(res.output) == [("i-000000000000000000", "1.2.3.4")]
    assert res.rows_read == 1 and res.pairs_written == 1
    t = pq.read_table(res.output)
    assert t.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert t["event_time"][0].as_py() == datetime(2022, 4, 12, 0, 2, 12, tzinfo=timezone.utc)
    assert t["source"].to_pylist() == ["vpc_flow"]
    assert t["account"].to_pylist() == ["123456789012"] and t["region"].to_pylist() == ["us-east-1"]


def test_vpc_flow_sample_seed_view_drops_inbound_row(sample_lake: Path, tmp_path: Path) -> None:
    # The workshop's view reads src_endpoint.instance_uid, which is null on an inbound flow.
    res = extract_pairs(_cfg(sample_lake), "vpc_flow", "instance_src_ip", "2022-04-12", "2022-04-13", str(tmp_path / "p.parquet"))
    assert res.pairs_written == 0 and res.dropped["null"] == 1
    own = extract_pairs(_cfg(sample_lake), "vpc_flow", "instance_own_ip", "2022-04-12", "2022-04-13", str(tmp_path / "o.parquet"))
    assert _pairs(own.output) == [("i-000000000000000000", "172.31.2.52")]


def test_console_signin_sample(sample_lake: Path, tmp_path: Path) -> None:
    res = extract_pairs(_cfg(sample_lake), "cloudtrail_signin", "principal_ip", "2022-11-10", "2022-11-11", str(tmp_path / "p.parquet"))
    pairs = _pairs(res.output)
    # The successful sign-in carries the ARN; the failed one has a null ARN and is rebuilt from
    # the IAM user name and account.
    assert pairs == [("arn:aws:iam::111122223333:user/anaya", "192.0.2.0")] * 2
    assert res.dropped == {"null": 0, "dash": 0, "hostile": 0, "ipv6": 0, "not_ip": 0,
                           **dict.fromkeys(SPECIAL_ADDRESS_REASONS, 0)}


def test_api_call_sample(sample_lake: Path, tmp_path: Path) -> None:
    res = extract_pairs(_cfg(sample_lake), "cloudtrail_api", "principal_ip", "2020-09-21", "2020-09-22", str(tmp_path / "p.parquet"))
    assert _pairs(res.output) == [("arn:aws:iam::811596193553:user/Level6", "205.8.181.128")]


def test_api_view_does_not_read_signins(sample_lake: Path, tmp_path: Path) -> None:
    res = extract_pairs(_cfg(sample_lake), "cloudtrail_api", "principal_ip", "2022-11-10", "2022-11-11", str(tmp_path / "p.parquet"))
    assert res.rows_read == 0 and res.pairs_written == 0


def test_route53_resolved_ip_view_unnests_answers(sample_lake: Path, tmp_path: Path) -> None:
    res = extract_pairs(_cfg(sample_lake), "route53", "instance_resolved_ip", "2022-10-13", "2022-10-14", str(tmp_path / "p.parquet"))
    # No instance id on resolver-endpoint traffic: the querying source IP stands in for it. The
    # documented sample's answer is a loopback address: no peer, so it is dropped with its own reason.
    assert res.rows_read == 1 and _pairs(res.output) == []
    assert res.dropped["loopback"] == 1 and sum(res.dropped.values()) == 1


def test_interval_is_half_open_and_filters_apply(sample_lake: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_lake)
    out = str(tmp_path / "p.parquet")
    assert extract_pairs(cfg, "vpc_flow", "instance_peer", "2022-04-12T00:02:13Z", "2022-04-13", out).rows_read == 0
    assert extract_pairs(cfg, "vpc_flow", "instance_peer", "2022-04-11", "2022-04-12T00:02:12Z", out).rows_read == 0
    assert extract_pairs(cfg, "vpc_flow", "instance_peer", "2022-04-12T00:02:12Z", "2022-04-12T00:02:13Z", out).rows_read == 1
    other_acct = _cfg(sample_lake, accounts=["999999999999"])
    assert extract_pairs(other_acct, "vpc_flow", "instance_peer", "2022-04-12", "2022-04-13", out).rows_read == 0
    region = _cfg(sample_lake, regions=["us-east-2"])
    res = extract_pairs(region, "cloudtrail_signin", "principal_ip", "2022-11-10", "2022-11-11", out)
    assert res.pairs_written == 1 and pq.read_table(out)["region"].to_pylist() == ["us-east-2"]


def test_rerun_overwrites_output(sample_lake: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_lake)
    out = str(tmp_path / "p.parquet")
    extract_pairs(cfg, "cloudtrail_signin", "principal_ip", "2022-11-10", "2022-11-11", out)
    extract_pairs(cfg, "cloudtrail_signin", "principal_ip", "2022-11-10", "2022-11-11", out)
    assert pq.read_table(out).num_rows == 2
    dedup = extract_pairs(_cfg(sample_lake, dedupe=True), "cloudtrail_signin", "principal_ip", "2022-11-10", "2022-11-11", out)
    assert dedup.pairs_written == 1 and dedup.duplicates_removed == 1 and pq.read_table(out).num_rows == 1


def test_cli_prints_counts(sample_lake: Path, tmp_path: Path, repo_dir: Path) -> None:
    out = tmp_path / "cli.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "seclake_ml", "pairs", "extract", "--root", str(sample_lake), "--source", "vpc_flow",
         "--view", "instance_peer", "--start", "2022-04-12", "--end", "2022-04-13", "--out", str(out)],
        capture_output=True, text=True, env={"PYTHONPATH": str(repo_dir / "plugins"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "rows read     1" in proc.stdout and "pairs written 1" in proc.stdout
    assert "dropped       null 0, dash 0, hostile 0, ipv6 0, not_ip 0" in proc.stdout
    assert _pairs(str(out)) == [("i-000000000000000000", "1.2.3.4")]
    bad = subprocess.run(
        [sys.executable, "-m", "seclake_ml", "pairs", "extract", "--root", str(sample_lake), "--source",
         "vpc_flow; DROP TABLE x", "--start", "2022-04-12", "--end", "2022-04-13", "--out", str(out)],
        capture_output=True, text=True, env={"PYTHONPATH": str(repo_dir / "plugins"), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "unknown source" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------- hostile corpus
DAY = "20220412"
BASE_MS = 1649721732000


def _vpc_rows(reference_dir: Path, n: int, **src_overrides) -> list[dict]:
    row = pq.read_table(reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet").to_pylist()[0]
    rows = []
    for i in range(n):
        r = copy.deepcopy(row)
        r["time"] = BASE_MS + i * 1000
        r["src_endpoint"]["ip"] = f"198.51.100.{i % 250 + 1}"
        for k, v in src_overrides.items():
            r["src_endpoint"][k] = v
        rows.append(r)
    return rows


def _write_rows(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


@pytest.fixture()
def hostile_lake(tmp_path: Path, reference_dir: Path) -> tuple[Path, dict]:
    """A lake with good files and one of each kind of damage; returns the root and expectations."""
    sample = reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet"
    schema = pq.read_schema(sample)
    root = tmp_path / "lake"
    part = _partition(root, "VPC_FLOW", "us-east-1", "123456789012", DAY)

    # good data: 20 rows in one file
    _write_rows(part / "good-1.parquet", _vpc_rows(reference_dir, 20), schema)
    # a file whose name needs quoting in SQL
    _write_rows(part / "it's a; file.parquet", _vpc_rows(reference_dir, 3), schema)
    # bad rows mixed with good ones in one file
    bad_ips = {
        "null": [None],
        "dash": ["-"],
        "ipv6": ["2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0"],
        "not_ip": ["999.1.1.1", "01.2.3.4", "1.2.3", "ec2.amazonaws.com", " 1.2.3.4", "1.2.3.4.5", "", "١.٢.٣.٤"],
        "hostile": ["1.2.3.4\x00", "1" * 5000, "1.2.3.4\n"],
    }
    rows = _vpc_rows(reference_dir, 4)
    for ips in bad_ips.values():
        for ip in ips:
            r = _vpc_rows(reference_dir, 1)[0]
            r["src_endpoint"]["ip"] = ip
            rows.append(r)
    huge_entity = _vpc_rows(reference_dir, 1)[0]
    huge_entity["dst_endpoint"]["instance_uid"] = "i-" + "a" * 100_000
    rows.append(huge_entity)
    ctrl_entity = _vpc_rows(reference_dir, 1)[0]
    ctrl_entity["dst_endpoint"]["instance_uid"] = "i-0abc\r\nINJECTED"
    rows.append(ctrl_entity)
    dash_entity = _vpc_rows(reference_dir, 1)[0]
    dash_entity["dst_endpoint"]["instance_uid"] = "-"
    rows.append(dash_entity)
    _write_rows(part / "mixed.parquet", rows, schema)

    # corrupt: random bytes; empty: zero bytes; truncated: a real file cut in half
    (part / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)
    (part / "empty.parquet").write_bytes(b"")
    whole = (part / "good-1.parquet").read_bytes()
    (part / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    # zero rows: valid file, nothing in it
    pq.write_table(schema.empty_table(), part / "zero-rows.parquet")
    # schema drift: an older writer without dst_endpoint.instance_uid and connection_info.direction_id
    drift = pa.table({
        "time": pa.array([BASE_MS + 5], pa.int64()),
        "src_endpoint": pa.array([{"ip": "203.0.113.9", "instance_uid": "i-0drift00000000000"}]),
        "dst_endpoint": pa.array([{"ip": "10.0.0.5"}]),
        "class_uid": pa.array([4001], pa.int32()),
    })
    pq.write_table(drift, part / "drift.parquet")
    # no time column at all
    pq.write_table(pa.table({"class_uid": pa.array([4001], pa.int32())}), part / "no-time.parquet")
    # non-UTF-8 bytes inside a string column
    good_tbl = pa.Table.from_pylist(_vpc_rows(reference_dir, 2), schema=schema)
    src = good_tbl.column("src_endpoint").combine_chunks()
    bad_ip = pa.array([b"\xff\xfe1.2.3.4", b"\xc3\x28"], pa.binary()).view(pa.string())
    fields = [src.field(i) if src.type.field(i).name != "ip" else bad_ip for i in range(src.type.num_fields)]
    bad_src = pa.StructArray.from_arrays(fields, fields=list(src.type))
    pq.write_table(good_tbl.set_column(good_tbl.schema.get_field_index("src_endpoint"), schema.field("src_endpoint"), bad_src),
                   part / "non-utf8.parquet")
    # files that are not Parquet objects and folders that are not partitions
    (part / "_SUCCESS").write_text("")
    (part / "notes.json").write_text("{}")
    (root / "aws" / "VPC_FLOW" / "1.0" / "junk").mkdir()
    hostile_part = root / "aws" / "VPC_FLOW" / "1.0" / "region=us-east-1'; DROP TABLE x; --" / "accountId=123456789012" / f"eventDay={DAY}"
    hostile_part.mkdir(parents=True)
    _write_rows(hostile_part / "p.parquet", _vpc_rows(reference_dir, 2), schema)

    expect = {
        # good-1 (20), quoted file name (3), mixed (4 good), hostile-named region folder (2), drift (1)
        "good_pairs": 20 + 3 + 4 + 2 + 1,
        # "" counts as null; the entity "-" as dash; the huge and CR/LF entities as hostile
        "dropped": {"null": 2, "dash": 2, "hostile": 5, "ipv6": 3, "not_ip": 7, **dict.fromkeys(SPECIAL_ADDRESS_REASONS, 0)},
        "quarantined": {"corrupt.parquet", "empty.parquet", "truncated.parquet", "no-time.parquet", "non-utf8.parquet"},
    }
    return root, expect


def test_hostile_corpus_counts_and_quarantine(hostile_lake, tmp_path: Path, caplog) -> None:
    root, expect = hostile_lake
    out = tmp_path / "out" / "pairs.parquet"
    with caplog.at_level("WARNING"):
        res = extract_pairs(_cfg(root), "vpc_flow", "instance_peer", "2022-04-12", "2022-04-13", str(out))
    assert res.pairs_written == expect["good_pairs"]
    assert res.dropped == expect["dropped"]
    assert res.rows_read == res.pairs_written + sum(res.dropped.values())
    quarantined = {Path(q["path"]).name: q["reason"] for q in res.quarantined}
    assert set(quarantined) == expect["quarantined"]
    assert "empty file" in quarantined["empty.parquet"]
    assert "corrupt Parquet" in quarantined["corrupt.parquet"] and "corrupt Parquet" in quarantined["truncated.parquet"]
    assert "required column 'time'" in quarantined["no-time.parquet"]
    assert "unreadable rows" in quarantined["non-utf8.parquet"]
    # every kept pair is a clean IPv4 with a sane entity
    pairs = _pairs(str(out))
    assert all(len(e) < 100 and "\n" not in e for e, _ in pairs)
    assert ("i-0drift00000000000", "10.0.0.5") in pairs  # drift file: no direction, instance on src
    sidecar = json.loads(out.with_name("pairs.parquet.quarantine.json").read_text())
    assert {Path(q["path"]).name for q in sidecar} == expect["quarantined"]
    assert any("quarantined" in r.message and "corrupt.parquet" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "source,view",
    [("vpc_flow; DROP TABLE x", None), ("vpc_flow", "instance_peer; DROP TABLE x"), ("../../etc", None),
     ("VPC_FLOW", None), ("x" * 10_000, None)],
)
def test_hostile_names_are_rejected_before_any_query(sample_lake: Path, tmp_path: Path, source, view) -> None:
    with pytest.raises(ValueError) as err:
        extract_pairs(_cfg(sample_lake), source, view or "instance_peer", "2022-04-12", "2022-04-13", str(tmp_path / "p.parquet"))
    assert "unknown" in str(err.value) and len(str(err.value)) < 300
    assert not (tmp_path / "p.parquet").exists()


def test_bad_interval_and_config_give_clear_errors(sample_lake: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty data interval"):
        extract_pairs(_cfg(sample_lake), "vpc_flow", "instance_peer", "2022-04-13", "2022-04-12", str(tmp_path / "p.parquet"))
    with pytest.raises(ValueError, match="invalid time"):
        extract_pairs(_cfg(sample_lake), "vpc_flow", "instance_peer", "yesterday", "2022-04-12", str(tmp_path / "p.parquet"))
    with pytest.raises(ConfigError, match="accounts"):
        _cfg(sample_lake, accounts=["12345' OR '1'='1"])


def test_missing_source_tree_yields_empty_output(tmp_path: Path) -> None:
    root = tmp_path / "nothing"
    root.mkdir()
    res = extract_pairs(_cfg(root), "route53", "instance_resolved_ip", "2022-04-12", "2022-04-13", str(tmp_path / "p.parquet"))
    assert res.rows_read == 0 and res.files_scanned == 0
    t = pq.read_table(res.output)
    assert t.num_rows == 0 and t.column_names == ["entity", "ip", "event_time", "source", "account", "region"]


def test_unsafe_sql_values_are_refused() -> None:
    from seclake_ml import sqlsafe

    with pytest.raises(UnsafeSqlError):
        sqlsafe.ident("a; DROP TABLE x")
    with pytest.raises(UnsafeSqlError):
        sqlsafe.s3_uri_literal("s3://bucket/x' UNION SELECT 1 --")
    with pytest.raises(UnsafeSqlError):
        sqlsafe.render("duckdb/pairs_counts.sql", stage="pairs_stage; DROP TABLE x")  # plain str refused
    assert sqlsafe.qualified("db", "tbl") == '"db"."tbl"'


def _every_reason_lake(root: Path, reference_dir: Path) -> None:
    """Good rows and every drop reason, in files DuckDB can read (so the direct path can run)."""
    schema = pq.read_schema(reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet")
    part = _partition(root, "VPC_FLOW", "us-east-1", "123456789012", DAY)
    _write_rows(part / "b-good.parquet", _vpc_rows(reference_dir, 300), schema)
    rows = _vpc_rows(reference_dir, 6)
    for ip in [None, "", "-", "2001:db8::1", "999.1.1.1", "01.2.3.4", "ec2.amazonaws.com", "1.2.3.4\x00", "1" * 5000,
               "0.1.2.3", "255.255.255.255", "127.0.0.1", "169.254.169.254", "224.0.0.5", "239.1.1.1", "\u202e1.2.3.4"]:
        r = _vpc_rows(reference_dir, 1)[0]
        r["src_endpoint"]["ip"] = ip
        rows.append(r)
    for entity in ["-", "", "i-0abc\r\nINJECTED", "i-" + "a" * 600]:
        r = _vpc_rows(reference_dir, 1)[0]
        r["dst_endpoint"]["instance_uid"] = entity
        rows.append(r)
    _write_rows(part / "a-mixed.parquet", rows, schema)


def test_direct_and_staged_extraction_write_the_same_rows_in_the_same_order(
    tmp_path: Path, reference_dir: Path, monkeypatch, caplog
) -> None:
    from seclake_ml.lake.duck import DuckDBLake

    root = tmp_path / "lake"
    _every_reason_lake(root, reference_dir)
    start, end = datetime(2022, 4, 12, tzinfo=timezone.utc), datetime(2022, 4, 13, tzinfo=timezone.utc)
    outs = {}
    for name, listed in (("direct", 256), ("staged", -1)):
        monkeypatch.setattr(DuckDBLake, "MAX_LISTED_VALUES", listed)
        caplog.clear()
        with caplog.at_level("INFO", logger="seclake_ml.lake.duck"):
            res = extract_pairs(_cfg(root), "vpc_flow", "instance_peer", start, end, str(tmp_path / f"{name}.parquet"))
        declined = any("direct extraction declined" in r.message for r in caplog.records)
        assert declined == (name == "staged"), name
        outs[name] = (res, pq.read_table(tmp_path / f"{name}.parquet"))
    (direct, d_tbl), (staged, s_tbl) = outs["direct"], outs["staged"]
    assert direct.dropped == staged.dropped
    assert direct.dropped == {"null": 3, "dash": 2, "hostile": 5, "ipv6": 1, "not_ip": 3, "unspecified": 1,
                              "broadcast": 1, "loopback": 1, "link_local": 1, "multicast": 2}
    assert direct.rows_read == staged.rows_read == 300 + 6 + 16 + 4
    assert direct.pairs_written == staged.pairs_written == 306
    # same columns and types, same rows in the same order (the lake's: files by path, rows as stored)
    assert [(f.name, f.type) for f in d_tbl.schema] == [(f.name, f.type) for f in s_tbl.schema]
    assert d_tbl.to_pylist() == s_tbl.to_pylist()
    times = d_tbl.column("event_time").to_pylist()
    assert times[:6] == sorted(times[:6]) and times[6] < times[5]  # a-mixed first, then b-good
    # the label columns are written from ENUM types on the direct path: they read back as plain strings
    for name, value in (("source", "vpc_flow"), ("account", "123456789012"), ("region", "us-east-1")):
        assert d_tbl.schema.field(name).type == pa.string()
        assert set(d_tbl.column(name).to_pylist()) == {value}


def test_label_types_fall_back_to_varchar(tmp_path: Path) -> None:
    import duckdb

    from seclake_ml.lake.duck import LABEL_TYPES, label_types

    con = duckdb.connect()
    try:
        made = label_types(con, "vpc_flow", [str(tmp_path / "missing.parquet")])  # unreadable: no ENUM types
        assert {k: str(v) for k, v in made.items()} == {k: "VARCHAR" for k in LABEL_TYPES}
        part = _partition(tmp_path / "lake", "VPC_FLOW", "eu-west-1", "012345678901", DAY)
        pq.write_table(pa.table({"time": pa.array([1], pa.int64())}), part / "f.parquet")
        made = label_types(con, "vpc_flow", [str(part / "f.parquet")])
        assert {k: str(v) for k, v in made.items()} == LABEL_TYPES
        # the account keeps its leading zero: no type autocast of the partition value
        assert con.execute("SELECT enum_range(NULL::pairs_account), enum_range(NULL::pairs_region)").fetchone() == (
            ["012345678901"], ["eu-west-1"])
    finally:
        con.close()


def test_direct_extraction_is_the_same_file_on_one_thread_and_two(tmp_path: Path, reference_dir: Path) -> None:
    from seclake_ml.lake.duck import DuckDBLake

    root = tmp_path / "lake"
    _every_reason_lake(root, reference_dir)
    for day in ("20220413", "20220414"):  # more files, so two threads interleave
        part = _partition(root, "VPC_FLOW", "eu-west-1", "210987654321", day)
        schema = pq.read_schema(reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet")
        _write_rows(part / "f.parquet", _vpc_rows(reference_dir, 5000), schema)
    start, end = datetime(2022, 4, 1, tzinfo=timezone.utc), datetime(2022, 4, 20, tzinfo=timezone.utc)
    tables = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.parquet"
        DuckDBLake(_cfg(root), threads=threads).extract("vpc_flow", "instance_peer", start, end, str(out))
        tables.append(pq.read_table(out))
    assert tables[0].num_rows > 300 and tables[0].equals(tables[1])
