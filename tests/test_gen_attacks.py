"""Tests of the attack-sequence injector (seclake_lakegen.gen_attacks) and ``lake inject-attacks``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from seclake_lakegen.gen_attacks import SCENARIOS, TRUTH_SCHEMA, inject_attacks
from seclake_lakegen.generate import generate_lake

START = dt.date(2024, 5, 6)  # a Monday
DAYS = 4
DAY = START + dt.timedelta(days=DAYS - 1)
STAMP = DAY.strftime("%Y%m%d")
SMALL = dict(flows_per_day=500, api_calls_per_day=2500, sources="cloudtrail", accounts=2, users_per_account=5,
             anomalies_per_kind=1, workers=1)  # fmt: skip


@pytest.fixture(scope="module")
def base_lakes(tmp_path_factory) -> dict[int, Path]:
    out = {}
    for v in (1, 2):
        root = tmp_path_factory.mktemp(f"lake_v{v}")
        generate_lake(root, START, DAYS, 11, source_version=v, **SMALL)
        out[v] = root
    return out


@pytest.fixture
def lake(base_lakes, tmp_path, request) -> tuple[Path, int]:
    v = getattr(request, "param", 1)
    root = tmp_path / "lake"
    shutil.copytree(base_lakes[v], root)
    return root, v


both = pytest.mark.parametrize("lake", [1, 2], indirect=True, ids=["v1", "v2"])


def _ct_files(root: Path, v: int) -> list[Path]:
    return sorted((root / "aws" / "CLOUD_TRAIL_MGMT" / f"{v}.0").rglob("*.parquet"))


def _is_auth(p: Path) -> bool:
    return "user" in pq.read_schema(p).names


def _uids(files: list[Path]) -> list[str]:
    if not files:
        return []
    t = ds.dataset([str(f) for f in files], format="parquet").to_table(columns={"uid": pc.field("metadata", "uid")})
    return t["uid"].to_pylist()


def _truth(root: Path) -> pa.Table:
    return pq.read_table(root / "ground_truth" / "attacks" / f"{STAMP}.parquet")


# ----------------------------------------------------------------------------- layout and schema
@both
def test_injected_files_have_the_partition_schema(lake):
    root, v = lake
    before = set(_ct_files(root, v))
    s = inject_attacks(root, DAY, seed=3)
    assert s["source_version"] == v and s["events"] > 0
    written = [root / f for f in s["files"]]
    assert set(_ct_files(root, v)) - before == set(written)
    kinds = set()
    for f in written:
        assert f.parent.name == f"eventDay={STAMP}"
        auth = _is_auth(f)
        kinds.add("auth" if auth else "api")
        peers = [p for p in before if p.parent == f.parent and _is_auth(p) == auth]
        if not peers:  # a region the lake does not use (impact scenario): same kind anywhere in the version
            peers = [p for p in sorted(before) if _is_auth(p) == auth]
        assert pq.read_schema(f).equals(pq.read_schema(peers[0]), check_metadata=True), f
        t = pq.read_table(f)
        assert t.column("class_uid").unique().to_pylist() == ([3002] if auth else [3005 if v == 1 else 6003])
        assert pc.all(pc.is_valid(pc.struct_field(t["metadata"], "uid"))).as_py()
        assert t["time"].to_pylist() == sorted(t["time"].to_pylist())
    assert kinds == {"api", "auth"}


@both
def test_rows_readable_with_the_lake_by_duckdb_and_pyarrow(lake):
    root, v = lake
    baseline = _uids(_ct_files(root, v))
    s = inject_attacks(root, DAY, seed=5)
    files = _ct_files(root, v)
    con = duckdb.connect()
    n, distinct = con.execute("select count(*), count(distinct metadata.uid) from read_parquet(?, union_by_name=true)",
                              [[str(f) for f in files]]).fetchone()  # fmt: skip
    assert n == distinct == len(baseline) + s["events"]
    truth = _truth(root)
    assert truth.schema.equals(TRUTH_SCHEMA) and truth.num_rows == s["events"]
    gt = set(truth["uid"].to_pylist())
    assert len(gt) == truth.num_rows and not gt & set(baseline)
    got = con.execute(
        "select metadata.uid, time, src_endpoint.ip, api.operation, class_uid from read_parquet(?, union_by_name=true) "
        "where metadata.uid in (select uid from read_parquet(?))",
        [[str(f) for f in files], str(root / "ground_truth" / "attacks" / f"{STAMP}.parquet")],
    ).fetchall()
    assert len(got) == len(gt)
    by_uid = {r["uid"]: r for r in truth.to_pylist()}
    for uid, t_ms, ip, op, class_uid in got:
        r = by_uid[uid]
        assert int(r["time"].timestamp() * 1000) == t_ms and r["source_ip"] == ip and r["operation"] == op
        assert r["class_uid"] == class_uid
    # pyarrow dataset, hive partitions, per kind
    api = [str(f) for f in files if not _is_auth(f)]
    auth = [str(f) for f in files if _is_auth(f)]
    part = ds.partitioning(flavor="hive")
    seen = set()
    for group in (api, auth):
        t = ds.dataset(group, format="parquet", partitioning=part, partition_base_dir=str(root / "aws" / "CLOUD_TRAIL_MGMT" / f"{v}.0")).to_table(
            columns={"uid": pc.field("metadata", "uid"), "day": pc.field("eventDay"), "region": pc.field("region"),
                     "cloud_region": pc.field("cloud", "region")})  # fmt: skip
        mine = t.filter(pc.is_in(t["uid"], pa.array(sorted(gt))))
        assert set(pc.cast(mine["day"], pa.string()).to_pylist()) == {STAMP}
        assert mine["region"].to_pylist() == mine["cloud_region"].to_pylist()
        seen |= set(mine["uid"].to_pylist())
    assert seen == gt


# ----------------------------------------------------------------------------- scenarios and ground truth
@both
def test_scenarios_victims_and_ground_truth(lake):
    root, v = lake
    s = inject_attacks(root, DAY, seed=8, from_known_ip_share=0.5)
    truth = _truth(root).to_pylist()
    names = [x["scenario"] for x in s["scenarios"] if "skipped" not in x]
    assert names == list(SCENARIOS)  # every scenario found a victim in this lake
    day_ms = int(dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    # victims were active before the day (read from the lake's own files)
    hist_files = [f for f in _ct_files(root, v) if f.parent.name < f"eventDay={STAMP}"]
    arn = ("actor", "user", "uuid") if v == 1 else ("actor", "user", "uid")
    h = ds.dataset([str(f) for f in hist_files if not _is_auth(f)], format="parquet").to_table(
        columns={"arn": pc.field(*arn), "ip": pc.field("src_endpoint", "ip")})
    active = set(h["arn"].to_pylist())
    ips_of: dict[str, set] = {}
    for a, ip in zip(h["arn"].to_pylist(), h["ip"].to_pylist()):
        ips_of.setdefault(a, set()).add(ip)
    all_ips = set(h["ip"].to_pylist())
    for sc in s["scenarios"]:
        rows = [r for r in truth if r["scenario"] == sc["scenario"]]
        assert 3 <= len(rows) == sc["events"] <= 40
        times = [int(r["time"].timestamp() * 1000) for r in rows]
        assert day_ms <= min(times) and max(times) < day_ms + 86_400_000
        assert max(times) - min(times) <= 3_600_000
        assert sc["victim"] in active
        if sc["from_known_ip"]:
            assert sc["source_ip"] in ips_of[sc["victim"]]
        else:
            assert sc["source_ip"] not in all_ips
        victim_rows = [r for r in rows if r["principal"] == sc["victim"]]
        assert victim_rows and all(r["from_known_ip"] == sc["from_known_ip"] for r in victim_rows)
        assert len({r["technique"] for r in rows}) >= 1 and all(r["technique"] for r in rows)
    known = [x["from_known_ip"] for x in s["scenarios"]]
    assert sum(known) == round(0.5 * len(known))
    # a few facts of the attack behaviour
    ops = {(r["scenario"], r["operation"], r["status"]) for r in truth}
    assert ("logging_disruption", "StopLogging", "Success") in ops
    assert ("access_key_other_user", "CreateAccessKey", "Success") in ops
    assert ("console_no_mfa_iam", "ConsoleLogin", "Success") in ops
    denied = [r for r in truth if r["scenario"] == "denied_enumeration"]
    assert sum(r["status"] == "Failure" for r in denied) >= len(denied) // 3
    fed = [r for r in truth if r["scenario"] == "role_chain_federation" and ":federated-user/" in (r["principal"] or "")]
    assert fed and min(r["time"] for r in fed) > min(r["time"] for r in truth if r["operation"] == "GetFederationToken")


@both
def test_console_signin_without_mfa(lake):
    root, v = lake
    s = inject_attacks(root, DAY, seed=2, scenarios=["console_no_mfa_iam"], from_known_ip_share=0.0)
    auth = [root / f for f in s["files"] if _is_auth(root / f)]
    t = pq.read_table(auth[0]).to_pylist()
    assert len(t) == 1
    r = t[0]
    assert r["api"]["operation"] == "ConsoleLogin" and r["status"] == "Success"
    assert r[("mfa" if v == 1 else "is_mfa")] is False
    assert r["actor"]["user"]["type"] == "IAMUser"
    account = r["actor"]["user"]["account_uid"] if v == 1 else r["actor"]["user"]["account"]["uid"]
    assert dict(r["unmapped"])["recipientAccountId"] == account
    assert "additionalEventData.MFAIdentifier" not in dict(r["unmapped"])
    api = pq.read_table(next(root / f for f in s["files"] if not _is_auth(root / f))).to_pylist()
    after = [x for x in api if x["time"] > r["time"]]
    assert any(x["api"]["operation"] == "CreateUser" for x in after)
    mfa_key = "mfa" if v == 1 else "is_mfa"
    assert all(x["actor"]["session"][mfa_key] is False for x in after)


def test_known_ip_share_extremes(lake):
    root, v = lake
    s1 = inject_attacks(root, DAY, seed=4, from_known_ip_share=1.0)
    assert all(x["from_known_ip"] for x in s1["scenarios"])
    s0 = inject_attacks(root, DAY, seed=4, from_known_ip_share=0.0)
    assert not any(x["from_known_ip"] for x in s0["scenarios"])
    assert not any(_truth(root)["from_known_ip"].to_pylist())


# ----------------------------------------------------------------------------- reruns
@both
def test_rerun_replaces_and_is_deterministic(lake):
    root, v = lake
    baseline = len(_uids(_ct_files(root, v)))
    s1 = inject_attacks(root, DAY, seed=6)
    content1 = {f: pq.read_table(root / f) for f in s1["files"]}
    truth1 = _truth(root)
    s2 = inject_attacks(root, DAY, seed=6)
    assert s2["files"] == s1["files"] and sorted(s2["removed"]) == sorted(s1["files"])
    for f in s2["files"]:
        assert pq.read_table(root / f).equals(content1[f])
    assert _truth(root).equals(truth1)
    assert len(_uids(_ct_files(root, v))) == baseline + s1["events"]
    # another seed and fewer scenarios: the first run's rows are gone
    s3 = inject_attacks(root, DAY, seed=7, scenarios="kms_key_deletion,gpu_mining")
    uids = _uids(_ct_files(root, v))
    assert len(uids) == baseline + s3["events"]
    assert not set(truth1["uid"].to_pylist()) & set(uids)
    assert set(_truth(root)["uid"].to_pylist()) <= set(uids)
    assert {r["scenario"] for r in _truth(root).to_pylist()} == {"kms_key_deletion", "gpu_mining"}
    assert not list(root.rglob(".*.tmp"))


def test_later_day_history_ignores_injected_rows(lake, tmp_path):
    root, v = lake
    earlier = DAY - dt.timedelta(days=1)
    s_prev = inject_attacks(root, earlier, seed=1, from_known_ip_share=0.0)
    s = inject_attacks(root, DAY, seed=1, from_known_ip_share=1.0)
    attacker_ips = {x["source_ip"] for x in s_prev["scenarios"]}
    assert not attacker_ips & {x["source_ip"] for x in s["scenarios"]}
    assert (root / "ground_truth" / "attacks" / f"{earlier:%Y%m%d}.parquet").is_file()


def test_bad_arguments(lake):
    root, v = lake
    with pytest.raises(ValueError, match="scenarios"):
        inject_attacks(root, DAY, 1, scenarios=["nope"])
    with pytest.raises(ValueError, match="no CloudTrail partitions"):
        inject_attacks(root, DAY + dt.timedelta(days=5), 1)
    with pytest.raises(ValueError, match="from_known_ip_share"):
        inject_attacks(root, DAY, 1, from_known_ip_share=1.5)
    with pytest.raises(ValueError, match="no CloudTrail partitions"):
        inject_attacks(root, DAY, 1, source_version=2)  # the lake holds version 1 only
    with pytest.raises(ValueError, match="source_version"):
        inject_attacks(root, DAY, 1, source_version=3)
    with pytest.raises(ValueError, match="day"):
        inject_attacks(root, "2024-13-01", 1)


# ----------------------------------------------------------------------------- CLI
def test_cli_inject_attacks(lake, capsys):
    from seclake_ml.cli import main

    root, v = lake
    rc = main(["lake", "inject-attacks", "--root", str(root), "--day", DAY.isoformat(), "--seed", "9",
               "--scenarios", "secrets_harvest,snapshot_exfil", "--known-ip-share", "0.5"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads(out)
    assert [x["scenario"] for x in summary["scenarios"]] == ["secrets_harvest", "snapshot_exfil"]
    assert sum(x["from_known_ip"] for x in summary["scenarios"]) == 1
    assert _truth(root).num_rows == summary["events"]
    rc = main(["lake", "inject-attacks", "--root", str(root), "--day", DAY.isoformat(), "--scenarios", "bogus"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: scenarios") and err.count("\n") == 1
