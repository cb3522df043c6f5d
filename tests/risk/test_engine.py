"""Tests of the CloudTrail risk engine: events, features, outliers, scores, models, store, service, CLI.

Real DuckDB over real Parquet (a small generated lake, both source versions, plus hand-written
hostile objects), real LightGBM, no mocks. Hand-built event tables (the columns of
:mod:`seclake_ml.risk.columns`) pin the feature and outlier logic.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from seclake_ml.config import SeclakeConfig
from seclake_ml.risk import engine, features, models, service, store
from seclake_ml.risk.columns import EVENT_COLUMNS
from seclake_ml.risk.combine import unsupervised_score
from seclake_ml.backends import read_events
from seclake_ml.risk.events import MAX_FIELD_LEN, event_schema_types
from seclake_ml.risk.features import NOT_IP, build_features

SEED = 23
LAKE_START = date(2024, 3, 4)  # a Monday
LAKE_DAYS = 6
SCALE = dict(sources="cloudtrail", accounts=1, regions="us-east-1", flows_per_day=300, api_calls_per_day=300,
             workers=1)
RISK = {"min_labels": 20, "lookback_days": 2, "geoip_provider": "none"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


WINDOW = (utc(2024, 3, 4), utc(2024, 3, 10))


# ----------------------------------------------------------------------------- lakes
@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """A generated CloudTrail-only lake per source version (read-only: copy before changing it)."""
    from seclake_lakegen.generate import generate_lake

    root = tmp_path_factory.mktemp("risk_lakes")
    out = {}
    for version in (1, 2):
        lake = root / f"lake{version}"
        generate_lake(lake, LAKE_START, LAKE_DAYS, SEED, source_version=version, **SCALE)
        out[version] = lake
    return out


def config(lake: Path, work: Path, version: int = 1, **risk) -> SeclakeConfig:
    return SeclakeConfig(lake_root=str(lake), work_location=str(work), source_version=version,
                         extra={"risk": {**RISK, **risk}})


def api_files(lake: Path, version: int = 1) -> list[Path]:
    return sorted((lake / "aws" / "CLOUD_TRAIL_MGMT" / f"{version}.0").rglob("api-*.parquet"))


def copy_lake(lakes: dict[int, Path], tmp_path: Path, version: int = 1) -> Path:
    dst = tmp_path / "lake"
    shutil.copytree(lakes[version], dst)
    return dst


def sample_rows(lake: Path, n: int, version: int = 1) -> tuple[list[dict], pa.Schema]:
    """``n`` API rows of the lake's first object (as Python dicts) and that object's schema."""
    f = api_files(lake, version)[0]
    t = pq.read_table(f)
    rows = [r for r in t.to_pylist() if r["actor"]["user"]["type"] == "IAMUser" and r["src_endpoint"]["ip"]
            and r["http_request"]["user_agent"]]
    assert len(rows) >= n
    return rows[:n], t.schema


def write_rows(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def drop_drift_columns(t: pa.Table) -> pa.Table:
    """The table without ``http_request`` (top level) and ``api.response.error`` (nested)."""
    t = t.drop_columns(["http_request"])
    api = t.column("api").combine_chunks()
    resp = api.field("response")
    keep = [f.name for f in resp.type if f.name != "error"]
    new_resp = pa.StructArray.from_arrays([resp.field(k) for k in keep], names=keep, mask=resp.is_null())
    children = {f.name: api.field(f.name) for f in api.type}
    children["response"] = new_resp
    new_api = pa.StructArray.from_arrays(list(children.values()), names=list(children), mask=api.is_null())
    return t.set_column(t.schema.get_field_index("api"), "api", new_api)


# ----------------------------------------------------------------------------- 1. read_events
@pytest.mark.parametrize("version", [1, 2])
def test_read_events_generated_lake(lakes: dict[int, Path], tmp_path: Path, version: int) -> None:
    start, end = utc(2024, 3, 5), utc(2024, 3, 8)
    res = read_events(config(lakes[version], tmp_path / "work", version), start, end)
    t = res.table
    assert tuple(t.column_names) == EVENT_COLUMNS
    assert t.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    assert res.rows == t.num_rows > 100
    assert res.source_version == version
    assert res.files_scanned > 0 and res.quarantined == []
    df = t.to_pandas()
    assert {"signin", "api"} <= set(df["kind"])
    assert df["time"].min() >= pd.Timestamp(start) and df["time"].max() < pd.Timestamp(end)
    assert df["time"].is_monotonic_increasing
    assert df["uid"].is_unique and df["uid"].notna().all()
    assert (df.loc[df["kind"] == "signin", "operation"] == "ConsoleLogin").all()
    assert df["principal"].str.startswith("arn:aws:").mean() > 0.9
    # the same window of the other version holds the same world (same seed): same event count
    other = read_events(config(lakes[3 - version], tmp_path / "work", 3 - version), start, end)
    assert other.rows == res.rows
    # a narrower window is a subset
    narrow = read_events(config(lakes[version], tmp_path / "work", version), utc(2024, 3, 6, 6), utc(2024, 3, 6, 18))
    nd = narrow.table.to_pandas()
    assert 0 < narrow.rows < res.rows
    assert set(nd["uid"]) <= set(df["uid"])
    assert nd["time"].min() >= pd.Timestamp(utc(2024, 3, 6, 6)) and nd["time"].max() < pd.Timestamp(utc(2024, 3, 6, 18))


def test_read_events_v2_microsecond_times(lakes: dict[int, Path], tmp_path: Path) -> None:
    """A version-2 object whose time_dt carries microseconds is read, its times cut to milliseconds."""
    lake = copy_lake(lakes, tmp_path, version=2)
    base = read_events(config(lake, tmp_path / "work", 2), *WINDOW)
    src = api_files(lake, 2)[0]
    t = pq.read_table(src)
    fine = pa.compute.add(t.column("time_dt").cast(pa.timestamp("us", tz="UTC")), pa.scalar(123, type=pa.duration("us")))
    pq.write_table(t.set_column(t.schema.get_field_index("time_dt"), "time_dt", fine), src)
    res = read_events(config(lake, tmp_path / "work", 2), *WINDOW)
    assert res.quarantined == [] and res.rows == base.rows
    assert res.table.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    got = dict(zip(res.table.column("uid").to_pylist(), res.table.column("time").to_pylist()))
    want = dict(zip(base.table.column("uid").to_pylist(), base.table.column("time").to_pylist()))
    assert got == want


def test_read_events_schema_drift_alone(lakes: dict[int, Path], tmp_path: Path) -> None:
    """An object without http_request and api.response.error: read with nulls, the columns named."""
    lake = tmp_path / "lake"
    src = api_files(lakes[1])[0]
    rel = src.relative_to(lakes[1])
    dst = lake / rel.parent / "drifted.parquet"
    dst.parent.mkdir(parents=True)
    t = pq.read_table(src)
    pq.write_table(drop_drift_columns(t), dst)
    res = read_events(config(lake, tmp_path / "work"), *WINDOW)
    assert res.quarantined == []
    assert res.rows == t.num_rows
    assert {"http_request.user_agent", "api.response.error"} <= set(res.absent_columns)
    df = res.table.to_pandas()
    assert df["user_agent"].isna().all() and df["error_code"].isna().all()
    assert df["operation"].notna().all()
    assert res.missing_fields["user_agent"] == t.num_rows


def test_read_events_schema_drift_mixed(lakes: dict[int, Path], tmp_path: Path) -> None:
    """A drifted object next to complete ones: every row read, nulls only for the drifted rows."""
    lake = copy_lake(lakes, tmp_path)
    base = read_events(config(lake, tmp_path / "work"), *WINDOW)
    src = api_files(lake)[0]
    t = pq.read_table(src)
    drifted = drop_drift_columns(t)
    # new uids so the rows are distinguishable
    meta = drifted.column("metadata").combine_chunks()
    uids = pa.array([f"drift-{i}" for i in range(len(meta))])
    children = {f.name: meta.field(f.name) for f in meta.type}
    children["uid"] = uids
    drifted = drifted.set_column(drifted.schema.get_field_index("metadata"), "metadata",
                                 pa.StructArray.from_arrays(list(children.values()), names=list(children)))
    pq.write_table(drifted, src.parent / "drifted.parquet")
    res = read_events(config(lake, tmp_path / "work"), *WINDOW)
    assert res.quarantined == []
    assert res.rows == base.rows + t.num_rows
    assert "http_request.user_agent" not in res.absent_columns
    df = res.table.to_pandas()
    mine = df["uid"].str.startswith("drift-")
    assert mine.sum() == t.num_rows
    assert df.loc[mine, "user_agent"].isna().all() and df.loc[mine, "error_code"].isna().all()
    assert df.loc[~mine, "user_agent"].notna().all()
    assert res.missing_fields["user_agent"] == t.num_rows


def test_read_events_quarantines_empty_and_corrupt(lakes: dict[int, Path], tmp_path: Path) -> None:
    lake = copy_lake(lakes, tmp_path)
    base = read_events(config(lake, tmp_path / "work"), *WINDOW)
    part = api_files(lake)[0].parent
    (part / "empty.parquet").write_bytes(b"")
    good = api_files(lake)[0].read_bytes()
    (part / "corrupt.parquet").write_bytes(good[: len(good) // 2] + b"\x00garbage" + good[-4:])
    (part / "notparquet.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    res = read_events(config(lake, tmp_path / "work"), *WINDOW)
    reasons = {Path(q["path"]).name: q["reason"] for q in res.quarantined}
    assert set(reasons) == {"empty.parquet", "corrupt.parquet", "notparquet.parquet"}
    assert "empty" in reasons["empty.parquet"] and "0 bytes" in reasons["empty.parquet"]
    assert "corrupt" in reasons["corrupt.parquet"].lower() or "unreadable" in reasons["corrupt.parquet"]
    assert res.rows == base.rows
    assert res.files_scanned == base.files_scanned
    assert set(res.table.column("uid").to_pylist()) == set(base.table.column("uid").to_pylist())
    assert "3 quarantined" in res.summary_line()


def test_read_events_quarantines_only_the_mistyped_objects(lakes: dict[int, Path], tmp_path: Path) -> None:
    """Objects whose rows DuckDB cannot read (a text time, a text class_uid) are found by splitting the
    batch: they alone are quarantined, and every good object (sign-ins and API calls) is still read."""
    lake = copy_lake(lakes, tmp_path)
    day = (utc(2024, 3, 4), utc(2024, 3, 5))
    base_day = read_events(config(lake, tmp_path / "work"), *day)
    base = read_events(config(lake, tmp_path / "work"), *WINDOW)
    src = api_files(lake)[0]
    assert "eventDay=20240304" in str(src)
    t = pq.read_table(src)
    # sorts after the day's api- and auth- objects: splitting [api, auth, bad] leaves the API object
    # alone, without the sign-ins' top-level mfa column, which must not fail it
    bad_time = t.set_column(t.schema.get_field_index("time"), "time", pa.array(["2024-03-04"] * t.num_rows))
    pq.write_table(bad_time, src.parent / "zz-bad-time.parquet")
    res = read_events(config(lake, tmp_path / "work"), *day)
    assert [Path(q["path"]).name for q in res.quarantined] == ["zz-bad-time.parquet"]
    assert res.quarantined[0]["reason"].startswith("unreadable rows:") and "mfa" not in res.quarantined[0]["reason"]
    assert res.rows == base_day.rows and res.files_scanned == base_day.files_scanned
    bad_class = t.set_column(t.schema.get_field_index("class_uid"), "class_uid", pa.array(["x"] * t.num_rows))
    pq.write_table(bad_class, api_files(lake)[-1].parent / "bad-class.parquet")
    res = read_events(config(lake, tmp_path / "work"), *WINDOW)
    reasons = {Path(q["path"]).name: q["reason"] for q in res.quarantined}
    assert set(reasons) == {"zz-bad-time.parquet", "bad-class.parquet"}
    assert all(r.startswith("unreadable rows:") and "mfa" not in r for r in reasons.values())
    assert res.rows == base.rows and res.files_scanned == base.files_scanned
    assert set(res.table.column("uid").to_pylist()) == set(base.table.column("uid").to_pylist())


def test_read_events_hostile_strings_and_missing_fields(lakes: dict[int, Path], tmp_path: Path) -> None:
    lake = copy_lake(lakes, tmp_path)
    base = read_events(config(lake, tmp_path / "work"), *WINDOW)
    rows, schema = sample_rows(lake, 6)
    day_ms = rows[0]["time"]
    long_ua = "Mozilla/5.0 " + "A" * 5000
    hostile = []
    for i, r in enumerate(rows):
        r = copy.deepcopy(r)
        r["metadata"]["uid"] = f"hostile-{i}"
        r["time"] = day_ms + i
        hostile.append(r)
    hostile[0]["http_request"]["user_agent"] = long_ua
    hostile[1]["http_request"]["user_agent"] = "curl/8\x1b[31m\r\nX-Injected: 1\x00\x07"
    hostile[1]["api"]["operation"] = "<script>alert(1)</script>" + "B" * 2000
    hostile[2]["http_request"]["user_agent"] = '<img src=x onerror="alert(1)">'
    # no principal at all (every field the principal is built from is null) and no source IP
    for k in ("uuid", "uid", "name", "account_uid"):
        hostile[3]["actor"]["user"][k] = None
    hostile[3]["src_endpoint"]["ip"] = None
    hostile[4]["src_endpoint"]["ip"] = ""
    hostile[5]["metadata"]["uid"] = "hostile-5-" + "u" * 3000
    write_rows(api_files(lake)[0].parent / "hostile.parquet", hostile, schema)
    res = read_events(config(lake, tmp_path / "work"), *WINDOW)
    assert res.quarantined == []
    assert res.rows == base.rows + 6
    df = res.table.to_pandas().set_index("uid", drop=False)
    assert res.truncated == base.truncated + 3  # long UA, long operation, long uid
    assert len(df.loc["hostile-0", "user_agent"]) == MAX_FIELD_LEN
    assert df.loc["hostile-0", "user_agent"] == long_ua[:MAX_FIELD_LEN]
    assert len(df.loc["hostile-1", "operation"]) == MAX_FIELD_LEN
    assert df.loc["hostile-1", "user_agent"] == "curl/8\x1b[31m\r\nX-Injected: 1\x00\x07"  # kept as data
    assert df.loc["hostile-2", "user_agent"] == '<img src=x onerror="alert(1)">'
    assert all(len(u) <= MAX_FIELD_LEN for u in df["uid"])
    assert pd.isna(df.loc["hostile-3", "principal"]) and pd.isna(df.loc["hostile-3", "source_ip"])
    assert res.missing_fields["principal"] == base.missing_fields["principal"] + 1
    assert res.missing_fields["source_ip"] == base.missing_fields["source_ip"] + 2  # null and ""
    assert f"principal {res.missing_fields['principal']}" in res.summary_line()
    # still scored: every event gets a risk score, the principal-less one included
    ff = build_features(res.table, int(WINDOW[0].timestamp() * 1000), lookback_days=2)
    out = engine.RiskModel.unsupervised(engine.RiskSettings(lookback_days=2)).apply(ff.frame)
    assert len(out) == res.rows
    scored = out.set_index("uid")
    assert 0.0 <= scored.loc["hostile-3", "risk_score"] <= 100.0
    assert out["risk_score"].between(0, 100).all()
    assert json.dumps(res.to_dict())  # the summary is JSON-able


def test_read_events_rejects_bad_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_events(config(tmp_path / "nowhere", tmp_path / "work"), *WINDOW)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = read_events(config(empty, tmp_path / "work"), *WINDOW)
    assert res.rows == 0 and tuple(res.table.column_names) == EVENT_COLUMNS


# ----------------------------------------------------------------------------- 2. features
DAY = datetime(2024, 4, 1, tzinfo=timezone.utc)
ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
CLI_UA = "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64"


def ev(uid: str, t: datetime, principal: str | None, service: str, op: str, *, ip: str | None = "198.51.100.7",
       ua: str | None = CLI_UA, error: str | None = None, kind: str = "api", status: str | None = None,
       mfa: bool | None = None, ptype: str = "IAMUser") -> dict:
    return {"uid": uid, "time": t, "kind": kind, "account": ACCOUNT, "region": "us-east-1", "principal": principal,
            "principal_type": ptype, "source_ip": ip, "user_agent": ua, "service": service, "operation": op,
            "error_code": error, "status": status or ("Failure" if error else "Success"), "mfa": mfa}


def table(rows: list[dict]) -> pa.Table:
    types = event_schema_types()
    return pa.table({c: pa.array([r[c] for r in rows], type=types[c]) for c in EVENT_COLUMNS})


def history_rows(days: int = 30) -> list[dict]:
    rows = []
    for d in range(days, 0, -1):
        day = DAY - timedelta(days=d)
        for k in range(6):  # alice reads objects, office hours
            rows.append(ev(f"h-a-{d}-{k}", day + timedelta(hours=9 + k, minutes=7), ALICE, "s3.amazonaws.com", "GetObject"))
        for k in range(2):
            rows.append(ev(f"h-b-{d}-{k}", day + timedelta(hours=10 + k), BOB, "ec2.amazonaws.com", "DescribeInstances",
                           ip="203.0.113.9"))
    return rows


def scored_rows() -> list[dict]:
    at = lambda h, m=0: DAY + timedelta(hours=h, minutes=m)  # noqa: E731
    return [
        ev("early", at(8, 50), ALICE, "s3.amazonaws.com", "GetObject"),
        ev("known", at(10), ALICE, "s3.amazonaws.com", "GetObject"),
        ev("fail-1", at(10, 5), ALICE, "s3.amazonaws.com", "GetObject", error="AccessDenied"),
        ev("fail-2", at(10, 10), ALICE, "s3.amazonaws.com", "GetObject", error="AccessDenied"),
        ev("fail-3", at(10, 15), ALICE, "s3.amazonaws.com", "GetObject", error="AccessDenied"),
        ev("createkey", at(10, 30), ALICE, "iam.amazonaws.com", "CreateAccessKey"),
        ev("later", at(11, 40), ALICE, "s3.amazonaws.com", "GetObject"),
        ev("bob-routine", at(10, 20), BOB, "ec2.amazonaws.com", "DescribeInstances", ip="203.0.113.9"),
        ev("v6", at(11), BOB, "ec2.amazonaws.com", "DescribeInstances", ip="2001:db8:abcd:12::1"),
        ev("dash", at(11, 1), BOB, "ec2.amazonaws.com", "DescribeInstances", ip="-"),
        ev("svc", at(11, 2), BOB, "ec2.amazonaws.com", "DescribeInstances", ip="s3.amazonaws.com", ua="s3.amazonaws.com"),
        ev("noip", at(11, 3), BOB, "ec2.amazonaws.com", "DescribeInstances", ip=None, ua=None),
        ev("carol", at(12), CAROL, "s3.amazonaws.com", "GetObject", ip="192.0.2.44"),
    ]


@pytest.fixture(scope="module")
def feature_frame():
    rows = history_rows() + scored_rows()
    rng = np.random.default_rng(3)
    rng.shuffle(rows)  # input order must not matter
    ff = build_features(table(rows), int(DAY.timestamp() * 1000), lookback_days=30)
    engine.add_unsupervised(ff.frame, 30)
    return ff


def test_build_features_new_and_known_operations(feature_frame) -> None:
    ff = feature_frame
    f = ff.frame.set_index("uid", drop=False)
    assert ff.rows == len(scored_rows())
    assert ff.history_events == len(history_rows()) and ff.history_principals == 2
    key = f.loc["createkey"]
    assert key["op"] == "iam:CreateAccessKey"
    assert key["new_op"] == 1 and key["sensitive"] == 3 and key["new_principal"] == 0
    assert key["principal_history"] == 180 and key["n_op"] == 0
    assert key["sensitive_category"] == "persistence"
    assert key["is_outlier"]
    assert "iam:CreateAccessKey" in key["probable_cause"]
    assert "new for this principal (0 of 180 events in 30 days)" in key["probable_cause"]
    known = f.loc["known"]
    assert known["new_op"] == 0 and known["n_op"] == 180 and known["sensitive"] == 0
    assert not known["is_outlier"] and known["probable_cause"] == ""
    assert f.loc["bob-routine", "new_op"] == 0 and not f.loc["bob-routine", "is_outlier"]


def test_build_features_first_seen_principal(feature_frame) -> None:
    f = feature_frame.frame.set_index("uid")
    carol = f.loc["carol"]
    assert carol["new_principal"] == 1 and carol["principal_history"] == 0
    assert carol["new_op"] == 0  # nothing is "new for the principal" without history
    assert carol["acct_n_op"] == 180  # the account knows s3:GetObject
    assert carol["acct_n_net"] == 0
    # its network is new to the account: an outlier, explained as a first-seen principal
    assert carol["is_outlier"] and "first-seen principal" in carol["probable_cause"]
    assert (f.drop(index="carol")["new_principal"] == 0).all()


def test_build_features_hour_window_failures(feature_frame) -> None:
    """Per-principal counts within one hour either side of the event (the batch is scored after the fact)."""
    f = feature_frame.frame.set_index("uid")
    assert f.loc["early", "fails_1h"] == 0 and f.loc["early", "events_1h"] == 1  # 07:50 .. 09:50
    assert f.loc["known", "fails_1h"] == 3  # 09:00 .. 11:00: the failures just after it count
    assert f.loc["fail-1", "fails_1h"] == 3 and f.loc["fail-3", "fails_1h"] == 3
    assert f.loc["createkey", "fails_1h"] == 3 and f.loc["createkey", "denied_1h"] == 3
    assert f.loc["createkey", "events_1h"] == 5  # known, three failures and itself
    assert f.loc["createkey", "new_ops_1h"] == 1 and f.loc["known", "new_ops_1h"] == 1
    assert f.loc["later", "fails_1h"] == 0 and f.loc["later", "events_1h"] == 1  # 10:40 .. 12:40
    assert f.loc["bob-routine", "fails_1h"] == 0  # other principals' failures do not count
    assert f.loc["bob-routine", "events_1h"] == 5  # bob's own events 10:20 .. 11:03
    assert f.loc["fail-1", "failed"] == 1 and f.loc["fail-1", "denied"] == 1 and f.loc["known", "failed"] == 0


def test_build_features_odd_source_addresses(feature_frame) -> None:
    f = feature_frame.frame.set_index("uid")
    assert f.loc["v6", "net"] == "2001:db8:abcd::/48"
    assert f.loc["dash", "net"] == "none" and f.loc["noip", "net"] == "none"
    assert f.loc["svc", "net"] == NOT_IP
    assert f.loc["bob-routine", "net"] == "203.0.113.0/24"
    assert f.loc["svc", "ua_family"] == "aws-service" and f.loc["noip", "ua_family"] == "none"
    assert f.loc["v6", "new_net"] == 1 and f.loc["dash", "new_net"] == 1
    # an empty address is never a cause on its own
    for uid in ("dash", "noip"):
        assert "network none" not in f.loc[uid, "probable_cause"]


@pytest.mark.parametrize("ip, net", [
    ("10.0.0.1", "10.0.0.0/24"), (" 10.0.0.1 ", "10.0.0.0/24"), ("010.0.0.1", NOT_IP), ("10.0.0.256", NOT_IP),
    ("10.0.0.1\x00", NOT_IP), ("1.2.3.4/24", NOT_IP), ("\u0661\u0662.0.0.1", NOT_IP), ("", "none"), ("-", "none"),
    (None, "none"), ("::ffff:10.0.0.1", "::/48"), ("2001:db8:1:2::9", "2001:db8:1::/48"),
    ("ec2.amazonaws.com", NOT_IP), ("AWS Internal", NOT_IP),
])  # fmt: skip
def test_network_of_odd_addresses(ip, net) -> None:
    """The bulk IPv4 path and the per-value path agree."""
    from seclake_ml.risk.features import _net, _nets

    assert _net(ip) == net
    assert list(_nets(pd.Series([ip, "192.0.2.9", ip], dtype=object))) == [net, "192.0.2.0/24", net]


def test_format_scores_shows_missing_values_and_escapes(feature_frame) -> None:
    from seclake_ml.risk.cli import format_scores

    frame = feature_frame.frame.copy()
    i = int(np.nonzero(frame["uid"].to_numpy() == "createkey")[0][0])
    frame.loc[i, "principal"] = "arn:aws:iam::1:user/\x1b[2Jevil\u202e"
    out = engine.RiskModel.unsupervised(engine.RiskSettings(lookback_days=30)).apply(frame)
    summary = {"model": "unsupervised (no active model)", "events": len(out), "history_events": 1, "outliers": 3,
               "missing_fields": {"source_ip": 1, "principal": 0}, "quarantined": [{"path": "x", "reason": "y"}]}
    text = "\n".join(format_scores(out, summary, top=len(out)))
    assert "missing fields: source_ip 1" in text and "quarantined   1 objects" in text
    assert "from nan" not in text and " nan " not in text
    assert "DescribeInstances from - [ok]" in text  # the event without a source address
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[2Jevil\\u202e" in text
    assert text.count("why:") == len(out)


def test_build_features_history_window_and_errors() -> None:
    rows = history_rows(days=30) + scored_rows()
    ff = build_features(table(rows), int(DAY.timestamp() * 1000), lookback_days=7)
    f = ff.frame.set_index("uid")
    assert f.loc["known", "principal_history"] == 42  # 6 a day, the last 7 days only
    assert f.loc["known", "n_op"] == 42
    assert ff.rows == len(scored_rows())
    with pytest.raises(ValueError, match="lookback_days"):
        build_features(table(rows), int(DAY.timestamp() * 1000), lookback_days=0)
    # only history: no rows to score, still a valid frame
    empty = build_features(table(history_rows(3)), int(DAY.timestamp() * 1000), lookback_days=7)
    assert empty.rows == 0 and empty.history_events == 24
    out = engine.RiskModel.unsupervised().apply(empty.frame)
    assert len(out) == 0 and set(engine.OUTPUT_COLUMNS) <= set(out.columns)


# ----------------------------------------------------------------------------- 3. unsupervised score
def test_unsupervised_score_ranks_the_new_sensitive_operation(feature_frame) -> None:
    f = feature_frame.frame
    score, parts = unsupervised_score(f)
    assert np.all((score >= 0) & (score <= 100)) and np.isfinite(score).all()
    s = pd.Series(score, index=f["uid"])
    routine = ["known", "bob-routine", "later"]
    assert s["createkey"] > s[routine].max() + 20
    assert s["createkey"] == s.max()
    assert s["later"] < 10 and s["bob-routine"] < 10  # nothing new, no failures near them
    idx = int(np.nonzero(f["uid"].to_numpy() == "createkey")[0][0])
    assert parts["sensitive_operation"][idx] == 6.0  # weight 3, doubled: new for the principal
    assert parts["failures"][idx] == 2.0  # log2(1 + 3)
    # the scored output carries the same score and valid contributions
    out = engine.RiskModel.unsupervised(engine.RiskSettings(lookback_days=30)).apply(f.copy())
    assert out.iloc[0]["uid"] == "createkey"
    assert out["risk_score"].between(0, 100).all()
    top = json.loads(out.iloc[0]["contributions"])
    assert top and top[0]["feature"] == "sensitive_operation"


# ----------------------------------------------------------------------------- 4. models and store
def synthetic_frame(n_principals: int = 30, days: int = 12, per_day: int = 8, seed: int = 5):
    """Feature frame of a synthetic estate whose label depends on history features, plus that label."""
    rng = np.random.default_rng(seed)
    ops = [("s3.amazonaws.com", "GetObject"), ("s3.amazonaws.com", "PutObject"), ("ec2.amazonaws.com", "DescribeInstances"),
           ("lambda.amazonaws.com", "Invoke"), ("dynamodb.amazonaws.com", "Query"), ("sqs.amazonaws.com", "SendMessage"),
           ("iam.amazonaws.com", "CreateAccessKey"), ("iam.amazonaws.com", "AttachUserPolicy"),
           ("sts.amazonaws.com", "GetCallerIdentity"), ("kms.amazonaws.com", "Decrypt")]
    start = DAY - timedelta(days=days)
    rows = []
    habits = {p: rng.choice(6, size=2, replace=False) for p in range(n_principals)}
    for d in range(days):
        for p in range(n_principals):
            for k in range(per_day):
                novel = d >= 7 and rng.random() < 0.2
                o = int(rng.integers(0, len(ops))) if novel else int(rng.choice(habits[p]))
                ip = f"10.{p}.0.{rng.integers(1, 9)}" if rng.random() > 0.1 else f"198.51.{rng.integers(0, 255)}.1"
                t = start + timedelta(days=d, hours=int(rng.integers(0, 24)), minutes=int(rng.integers(0, 60)))
                err = "AccessDenied" if rng.random() < 0.05 else None
                rows.append(ev(f"e-{d}-{p}-{k}", t, f"arn:aws:iam::{ACCOUNT}:user/u{p}", *ops[o], ip=ip, error=err))
    ff = build_features(table(rows), int((start + timedelta(days=7)).timestamp() * 1000), lookback_days=5)
    frame = ff.frame
    engine.add_unsupervised(frame, 5)
    y = (10 + 45 * frame["new_op"] + 15 * frame["new_net"] + 8 * frame["sensitive"] + 10 * np.minimum(frame["fails_1h"], 2)
         + rng.normal(0, 3, len(frame)))
    return frame, np.clip(y.to_numpy(dtype=float), 0, 100)


@pytest.fixture(scope="module")
def fitted():
    frame, y = synthetic_frame()
    tr, te = models.time_split(frame)
    train, test = frame.iloc[tr].reset_index(drop=True), frame.iloc[te].reset_index(drop=True)
    lin = models.LinearBaseline().fit(train, y[tr])
    gbm = models.BoostedModel().fit(train, y[tr])
    return {"train": train, "test": test, "y_test": y[te], "linear": lin, "boosted": gbm}


def test_models_boosted_beats_linear(fitted) -> None:
    test, y = fitted["test"], fitted["y_test"]
    assert len(test) > 200
    p_lin, p_gbm = fitted["linear"].predict(test), fitted["boosted"].predict(test)
    m_lin, m_gbm = models.regression_metrics(y, p_lin), models.regression_metrics(y, p_gbm)
    assert m_gbm["r2"] > 0.5
    assert m_gbm["r2"] > m_lin["r2"]
    assert m_gbm["rmse"] < m_lin["rmse"]
    assert np.all((p_gbm >= 0) & (p_gbm <= 100)) and np.all((p_lin >= 0) & (p_lin <= 100))
    contrib = fitted["boosted"].contributions(test)
    assert contrib.shape == (len(test), len(models.BOOSTED_FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), fitted["boosted"].booster.predict(models.boosted_inputs(test)), atol=1e-6)
    # the time split: every train event precedes every test event
    assert fitted["train"]["_ms"].max() <= test["_ms"].min()
    groups = models.residuals_by_group(test, y, {"linear": p_lin, "boosted": p_gbm})
    assert {g["group"] for g in groups} == set(models.RESIDUAL_GROUPS)
    assert sum(g["rows"] for g in groups if g["group"] == "kind") == len(test)


def test_regression_metrics_edge_cases() -> None:
    m = models.regression_metrics(np.array([5.0, 5.0]), np.array([4.0, 6.0]))
    assert m == {"r2": 0.0, "rmse": 1.0, "mae": 1.0, "rows": 2}
    assert models.regression_metrics(np.array([]), np.array([]))["rows"] == 0


def _save(root: Path, version: str, fitted) -> Path:
    files = {"linear.json": json.dumps(fitted["linear"].to_json()), "boosted.txt": fitted["boosted"].to_text()}
    manifest = {"kind": "cloudtrail_risk", "supervised": True, "boosted_params": fitted["boosted"].params,
                "lookback_days": 5, "min_labels": 20, "metrics": {}}
    return Path(store.save_version(root, version, manifest, files))


def test_store_round_trip_identical_predictions(fitted, tmp_path: Path) -> None:
    root = tmp_path / "risk" / "models"
    folder = _save(root, "risk-a", fitted)
    manifest, texts = store.load_version(root, "risk-a")
    assert manifest["format"] == store.FORMAT and set(manifest["files"]) == {"linear.json", "boosted.txt"}
    lin = models.LinearBaseline.from_json(json.loads(texts["linear.json"]))
    gbm = models.BoostedModel.from_text(texts["boosted.txt"], manifest["boosted_params"])
    test = fitted["test"]
    assert np.array_equal(lin.predict(test), fitted["linear"].predict(test))
    assert np.array_equal(gbm.predict(test), fitted["boosted"].predict(test))
    model = engine.RiskModel.load(root, "risk-a")
    assert model.supervised and model.settings.lookback_days == 5
    out = model.apply(test.copy())
    by_uid = out.set_index("uid")["supervised_score"]
    expected = pd.Series(np.round(fitted["boosted"].predict(test), 2), index=test["uid"])
    assert np.array_equal(by_uid.loc[expected.index].to_numpy(), expected.to_numpy())
    assert all(isinstance(json.loads(c), list) for c in out["contributions"])
    # activation is recorded and read back
    rec = store.activate(root, "risk-a", "test")
    assert store.read_active(root)["version"] == "risk-a" and rec["supervised"]
    assert len((root / "history.jsonl").read_text().splitlines()) == 1
    assert (folder / "model.json").is_file()


@pytest.mark.parametrize("name", ["boosted.txt", "linear.json"])
def test_store_refuses_tampered_file(fitted, tmp_path: Path, name: str) -> None:
    root = tmp_path / "models"
    folder = _save(root, "risk-b", fitted)
    path = folder / name
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i] = ord("7") if data[i] != ord("7") else ord("8")  # one byte, still valid text
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="digest") as exc:
        store.load_version(root, "risk-b")
    assert name in str(exc.value)
    with pytest.raises(ValueError, match="digest"):
        engine.RiskModel.load(root, "risk-b")
    with pytest.raises(ValueError, match="digest"):
        store.activate(root, "risk-b", "should not activate")
    assert store.read_active(root) is None


def test_store_refuses_bad_manifest(fitted, tmp_path: Path) -> None:
    root = tmp_path / "models"
    folder = _save(root, "risk-c", fitted)
    doc = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(dict(doc, format=2)))
    with pytest.raises(ValueError, match="format 2, expected 1"):
        store.load_version(root, "risk-c")
    (folder / "model.json").write_text(json.dumps(dict(doc, format="1")))
    with pytest.raises(ValueError, match="format"):
        store.load_version(root, "risk-c")
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.load_version(root, "risk-c")
    (folder / "model.json").write_text(json.dumps(dict(doc, files=dict(doc["files"], **{"extra.bin": "00"}))))
    with pytest.raises(ValueError, match="unknown file"):
        store.load_version(root, "risk-c")
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "boosted.txt").unlink()
    with pytest.raises(ValueError, match="missing"):
        store.load_version(root, "risk-c")
    with pytest.raises(ValueError, match="no such version"):
        store.load_version(root, "risk-nothere")
    with pytest.raises(ValueError):
        store.load_version(root, "../escape")
    with pytest.raises(ValueError, match="expected one of"):
        store.save_version(root, "risk-d", {}, {"model.pkl": "x"})


def test_boosted_from_text_refuses_other_models(fitted) -> None:
    with pytest.raises(ValueError, match="not a LightGBM text model"):
        models.BoostedModel.from_text("tree\nversion=v4\nnonsense", {})
    with pytest.raises(ValueError, match="unknown kind"):
        models.LinearBaseline.from_json({"kind": "pickle"})
    doc = fitted["linear"].to_json()
    with pytest.raises(ValueError, match="coefficients"):
        models.LinearBaseline.from_json(dict(doc, coef=doc["coef"][:-1]))


# ----------------------------------------------------------------------------- 5. service and CLI
def label_window(cfg: SeclakeConfig, start: datetime, end: datetime, *, random_train: bool = False,
                 seed: int = 0) -> dict[str, int]:
    """An analyst-like score for every event of the window (optionally random for the train part)."""
    settings = service.settings_of(cfg)
    _, ff = service.load_window(cfg, start, end, settings)
    frame = ff.frame
    engine.add_unsupervised(frame, settings.lookback_days)
    y = np.clip(np.round(0.8 * frame["unsupervised"] + 6 * frame["sensitive"] + 5), 0, 100).astype(int)
    if random_train:
        tr, _ = models.time_split(frame)
        y[tr] = np.random.default_rng(seed).integers(0, 101, size=len(tr))
    return dict(zip(frame["uid"].astype(str), y.tolist()))


def store_labels(work: Path, scores: dict[str, int]) -> None:
    from seclake_ml.risk.labels import label_store_for, new_label

    recs = [new_label(uid, s, analyst="test-analyst", source="cli") for uid, s in scores.items()]
    res = label_store_for(str(work)).add(recs)
    assert res.stored == len(scores)


@pytest.fixture(scope="module")
def trained(lakes: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two fits on a copy of the v1 lake: a good one (activated) and one trained on random labels."""
    root = tmp_path_factory.mktemp("risk_trained")
    lake, work = root / "lake", root / "work"
    shutil.copytree(lakes[1], lake)
    cfg = config(lake, work)
    w1, w2 = (utc(2024, 3, 6), utc(2024, 3, 8)), (utc(2024, 3, 8), utc(2024, 3, 10))
    labels1 = label_window(cfg, *w1)
    store_labels(work, labels1)
    first = service.train(cfg, *w1)
    active_after_first = store.read_active(store.store_root(str(work)))
    labels2 = label_window(cfg, *w2, random_train=True, seed=4)
    store_labels(work, labels2)
    second = service.train(cfg, *w2)
    return {"lake": lake, "work": work, "cfg": cfg, "first": first, "second": second, "labels1": labels1,
            "labels2": labels2, "active_after_first": active_after_first, "w1": w1, "w2": w2}


def test_train_first_supervised_model_activates(trained) -> None:
    first = trained["first"]
    assert first["supervised"] and first["activated"]
    assert first["gate"]["passed"] and first["gate"]["reason"] == "first supervised model"
    assert first["labels_used"] == len(trained["labels1"]) == first["events"]
    assert first["metrics"]["boosted"]["r2"] > 0.5
    assert first["metrics"]["train_rows"] + first["metrics"]["test_rows"] == first["labels_used"]
    assert trained["active_after_first"]["version"] == first["version"] == "risk-20240306T0000Z-20240308T0000Z"
    folder = Path(first["model_dir"])
    manifest, texts = store.load_version(folder.parent.parent, first["version"])
    assert set(texts) == {"linear.json", "boosted.txt"} and manifest["supervised"]
    assert Path(first["report"]["html"]).is_file() and Path(first["report"]["chart"]).is_file()
    assert json.loads(Path(first["report"]["metrics"]).read_text())["supervised"] is True


def test_train_worse_model_is_held(trained) -> None:
    second = trained["second"]
    assert second["supervised"]
    g = second["gate"]
    assert not g["passed"] and not second["activated"]
    assert "worse" in g["reason"]
    assert g["active_version"] == trained["first"]["version"]
    assert g["candidate_rmse"] > 1.5 * g["active_rmse"]
    active = store.read_active(store.store_root(str(trained["work"])))
    assert active["version"] == trained["first"]["version"]
    # the held version is saved with its decision, for the record
    manifest, _ = store.load_version(Path(second["model_dir"]).parent.parent, second["version"])
    assert manifest["gate"]["passed"] is False


def test_train_too_few_labels_keeps_supervised_model(trained, tmp_path: Path) -> None:
    """A fit under min_labels is unsupervised; with a supervised model active it is held."""
    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)
    cfg = config(trained["lake"], work, min_labels=10_000)
    out = service.train(cfg, utc(2024, 3, 9), utc(2024, 3, 10))
    assert not out["supervised"] and not out["activated"] and not out["gate"]["passed"]
    assert store.read_active(store.store_root(str(work)))["version"] == trained["first"]["version"]


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch):
    """Run the real CLI in-process with the risk settings of these tests."""
    import os

    for key in list(os.environ):
        if key.startswith("SECLAKE_ML_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps({"extra": {"risk": RISK}}))

    def run(*argv: str) -> int:
        from seclake_ml.cli import main

        return main(["risk", *argv])

    return run


def _score_args(trained, out: Path, *extra: str) -> list[str]:
    return ["score", "--root", str(trained["lake"]), "--work", str(trained["work"]), "--start", "2024-03-09",
            "--end", "2024-03-10", "--out", str(out), *extra]


def test_cli_score_parquet(trained, cli_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scores.parquet"
    assert cli_env(*_score_args(trained, out)) == 0
    printed = capsys.readouterr().out
    assert trained["first"]["version"] in printed and "riskiest" in printed
    t = pq.read_table(out).to_pandas()
    events = read_events(trained["cfg"], utc(2024, 3, 9), utc(2024, 3, 10))
    assert len(t) == events.rows > 0
    assert set(t["uid"]) == set(events.table.column("uid").to_pylist()) and t["uid"].is_unique
    for col in ("uid", "time", "principal", "source_ip", "operation", "risk_score", "is_outlier", "probable_cause",
                "contributions"):
        assert col in t.columns
    assert t["risk_score"].between(0, 100).all()
    assert t["is_outlier"].dtype == bool
    assert t["supervised_score"].notna().all()  # the active supervised model scored
    for c in t["contributions"]:
        doc = json.loads(c)
        assert isinstance(doc, list) and all(set(x) == {"feature", "effect"} for x in doc)
    assert (t.loc[t["is_outlier"], "probable_cause"] != "").all()
    assert (t.loc[~t["is_outlier"], "probable_cause"] == "").all()
    assert t["risk_score"].is_monotonic_decreasing


def test_cli_score_refuses_existing_out(trained, cli_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"keep me")
    assert cli_env(*_score_args(trained, out)) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert out.read_bytes() == b"keep me"
    assert cli_env(*_score_args(trained, out, "--force", "--unsupervised")) == 0
    t = pq.read_table(out).to_pandas()
    assert len(t) > 0 and t["supervised_score"].isna().all()
    assert (t["risk_score"] == t["unsupervised_score"]).all()


def test_cli_score_csv_neutralises_formulas(trained, cli_env, tmp_path: Path) -> None:
    lake = trained["lake"]
    rows, schema = sample_rows(lake, 2)
    part = lake / "aws" / "CLOUD_TRAIL_MGMT" / "1.0" / "region=us-east-1" / f"accountId={rows[0]['actor']['user']['account_uid']}" / "eventDay=20240309"
    hostile = []
    for i, r in enumerate(rows):
        r = copy.deepcopy(r)
        r["metadata"]["uid"] = f"formula-{i}"
        r["time"] = int(utc(2024, 3, 9, 12, i).timestamp() * 1000)
        hostile.append(r)
    hostile[0]["http_request"]["user_agent"] = '=HYPERLINK("http://evil.example","x")'
    hostile[1]["src_endpoint"]["ip"] = "=1+1"
    hostile[1]["actor"]["user"]["uuid"] = "@SUM(A1:A9)"
    path = write_rows(part / "zz-formula.parquet", hostile, schema)
    try:
        out = tmp_path / "scores.csv"
        assert cli_env(*_score_args(trained, out)) == 0
        with open(out, newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
    finally:
        path.unlink()  # the lake is shared by this module's tests
    by_uid = {r["uid"]: r for r in table}
    assert by_uid["formula-0"]["user_agent"] == "'" + '=HYPERLINK("http://evil.example","x")'
    assert by_uid["formula-1"]["source_ip"] == "'=1+1"
    assert by_uid["formula-1"]["principal"] == "'@SUM(A1:A9)"
    assert not any(v[:1] in ("=", "+", "@") for r in table for v in r.values() if v)
    assert all(json.loads(r["contributions"]) is not None for r in table)


def test_cli_report(trained, cli_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty-work"
    assert cli_env("report", "--work", str(empty)) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no active risk model under ")
    assert "unsupervised" in out[0]
    assert cli_env("report", "--work", str(trained["work"])) == 0
    out = capsys.readouterr().out
    assert trained["first"]["version"] in out and "boosted" in out and "report.html" in out


def test_service_score_unsupervised_without_active_model(lakes: dict[int, Path], tmp_path: Path) -> None:
    cfg = config(lakes[2], tmp_path / "work", version=2)
    table, summary = service.score(cfg, utc(2024, 3, 8), utc(2024, 3, 9))
    assert summary["model"].startswith("unsupervised") and not summary["supervised"]
    assert summary["events"] == len(table) > 0 and summary["history_events"] > 0
    assert table["supervised_score"].isna().all()
    assert summary["outliers"] == int(table["is_outlier"].sum())
    with pytest.raises(ValueError, match="expected a .parquet"):
        service.write_table(table, str(tmp_path / "x.txt"))
    service.write_table(table, str(tmp_path / "x.jsonl"))
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert len(lines) == len(table) and json.loads(lines[0])["uid"]


def test_held_refit_of_the_active_interval_leaves_the_active_model(trained, tmp_path: Path) -> None:
    """A held (or not activated) fit of the active model's own interval must not replace its files."""
    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)
    root = store.store_root(str(work))
    before = {p.name: p.read_bytes() for p in (root / "versions" / trained["first"]["version"]).iterdir() if p.is_file()}
    out = service.train(config(trained["lake"], work, min_labels=10_000), *trained["w1"])
    assert not out["activated"] and not out["gate"]["passed"]
    assert out["version"].startswith(trained["first"]["version"] + "-held-") and Path(out["model_dir"]).is_dir()
    model = service.active_model(config(trained["lake"], work))
    assert model.version == trained["first"]["version"] and model.supervised
    after = {p.name: p.read_bytes() for p in (root / "versions" / trained["first"]["version"]).iterdir() if p.is_file()}
    assert after == before
    # --no-activate of the active interval: fitted and reported, the active model untouched
    out = service.train(config(trained["lake"], work), *trained["w1"], activate_if_passed=False)
    assert out["supervised"] and not out["activated"]
    after = {p.name: p.read_bytes() for p in (root / "versions" / trained["first"]["version"]).iterdir() if p.is_file()}
    assert after == before
    assert store.read_active(root)["version"] == trained["first"]["version"]


def test_cli_train_json_and_text(trained, cli_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)
    args = ["train", "--root", str(trained["lake"]), "--work", str(work), "--start", "2024-03-08", "--end", "2024-03-10",
            "--no-activate"]
    assert cli_env(*args, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["supervised"] and not out["activated"] and out["labels_used"] == len(trained["labels2"])
    assert out["gate"]["passed"] is False  # the same random-label fit as the module's second one
    assert store.read_active(store.store_root(str(work)))["version"] == trained["first"]["version"]
    assert cli_env(*args) == 0
    text = capsys.readouterr().out
    assert "gate          held:" in text and "active        unchanged" in text and "R²" in text


def test_cli_score_refuses_out_inside_lake_and_bad_suffix(trained, cli_env, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    inside = trained["lake"] / "scores.parquet"
    assert cli_env(*_score_args(trained, inside)) == 2
    assert "inside the lake root" in capsys.readouterr().err and not inside.exists()
    assert cli_env(*_score_args(trained, tmp_path / "scores.txt")) == 2
    assert "expected a .parquet, .jsonl or .csv" in capsys.readouterr().err
    assert not (tmp_path / "scores.txt").exists()


def test_a_first_seen_account_counts_as_rare_not_as_ordinary() -> None:
    """Events of an account with no history at all (e.g. attack logs from another account) are not
    judged against an empty account: every value counts as rare, and the cause says so."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")

    def event(uid, when, account, principal, service, operation, ip):
        return dict(uid=uid, time=when, kind="api", account=account, region="us-east-1", principal=principal,
                    principal_type="IAMUser", source_ip=ip, user_agent="aws-cli/2", service=service,
                    operation=operation, error_code=None, status="Success", mfa=None)

    rows = [event(f"h{d}-{h}", t0 + pd.Timedelta(days=d, hours=h), "111111111111",
                  "arn:aws:iam::111111111111:user/alice", "s3.amazonaws.com", "GetObject", "1.2.3.4")
            for d in range(10) for h in range(20)]
    day = t0 + pd.Timedelta(days=10)
    rows += [event("x0", day + pd.Timedelta(hours=1), "999999999999", "arn:aws:iam::999999999999:user/eve",
                   "iam.amazonaws.com", "CreateAccessKey", "5.6.7.8"),
             event("n0", day + pd.Timedelta(hours=2), "111111111111", "arn:aws:iam::111111111111:user/alice",
                   "s3.amazonaws.com", "GetObject", "1.2.3.4")]
    ff = features.build_features(pd.DataFrame(rows), int(day.timestamp() * 1000), lookback_days=14)
    frame = ff.frame.set_index("uid")
    assert frame.loc["x0", "new_account"] == 1 and frame.loc["n0", "new_account"] == 0
    assert frame.loc["x0", "acct_rarity_op"] == features.NEW_ACCOUNT_RARITY
    out = engine.RiskModel.unsupervised(engine.RiskSettings()).apply(ff.frame).set_index("uid")
    assert out.loc["x0", "risk_score"] > 50 and out.loc["n0", "risk_score"] < 5
    assert "first-seen account" in out.loc["x0", "probable_cause"]


def test_risk_findings_are_valid_ocsf_detection_findings(tmp_path: Path) -> None:
    """Risk findings pass the OCSF 1.1.0 validator, fit the findings Parquet schema, and land under
    ext/risk-cloudtrail/ with deterministic uids; hostile strings stay data."""
    from seclake_ml.risk.findings import build_record, severity_for_risk
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts, read_findings
    from seclake_ml.scoring.ocsf_validate import load_ocsf_schema, validate_finding

    schema = load_ocsf_schema(Path(__file__).resolve().parents[1] / "data" / "reference" / "ocsf-1.1.0-schema.json")
    row = pd.Series({
        "uid": "e-1", "time": pd.Timestamp("2024-03-05T10:00:00Z"), "principal": "arn:aws:iam::111122223333:user/<b>x\u202e",
        "source_ip": "203.0.113.9", "operation": "iam:CreateAccessKey", "kind": "api", "result": "ok",
        "risk_score": 81.5, "unsupervised_score": 81.5, "supervised_score": float("nan"), "is_outlier": True,
        "probable_cause": "operation iam:CreateAccessKey new for this principal", "contributions":
        '[{"feature": "sensitive_operation", "effect": 6.0}]', "account": "111122223333", "region": "us-east-1",
        "user_agent": "=cmd|' /C calc'!A0", "sensitive_category": "persistence",
    })
    created = datetime(2024, 3, 6, tzinfo=timezone.utc)
    rec = build_record(row, model_version="risk-a", scope="aws/CLOUD_TRAIL_MGMT/1.0/k.parquet", min_risk=60,
                       created=created, product_version="1")
    assert validate_finding(rec, schema) == []
    assert (rec["severity_id"], rec["severity"]) == severity_for_risk(81.5) == (4, "High")
    again = build_record(row, model_version="risk-a", scope="aws/CLOUD_TRAIL_MGMT/1.0/k.parquet", min_risk=60,
                         created=created, product_version="1")
    assert again["finding_info"]["uid"] == rec["finding_info"]["uid"]
    parts = findings_parquet_parts([rec], file_stem="risk-k")
    assert [k for k, _ in parts] == ["ext/risk-cloudtrail/region=us-east-1/accountId=111122223333/eventDay=20240305/risk-k.parquet"]
    path = tmp_path / "f.parquet"
    path.write_bytes(parts[0][1])
    back = read_findings([path])
    assert back[0]["unmapped"]["entity"] == rec["unmapped"]["entity"] and back[0]["class_uid"] == 2004


def test_read_events_includes_data_event_sources(lakes: dict[int, Path], tmp_path: Path) -> None:
    """S3 and Lambda data events (API activity in aws/S3_DATA, aws/LAMBDA_EXECUTION) are read beside the
    management events where the lake has them, and left out when the setting names none."""
    lake = copy_lake(lakes, tmp_path)
    src = api_files(lake)[0]
    rows, schema = sample_rows(lake, 5)
    for i, r in enumerate(rows):
        r["metadata"] = dict(r["metadata"], uid=f"s3-data-{i}")
        r["api"] = dict(r["api"], operation="GetObject", service=dict(r["api"]["service"], name="s3.amazonaws.com"))
    part = src.parent.relative_to(lake / "aws" / "CLOUD_TRAIL_MGMT")
    dest = lake / "aws" / "S3_DATA" / part / "s3-data-0.parquet"
    dest.parent.mkdir(parents=True)
    write_rows(dest, rows, schema)
    work = tmp_path / "work"
    with_data = read_events(config(lake, work), *WINDOW).table
    uids = set(with_data.column("uid").to_pylist())
    assert {f"s3-data-{i}" for i in range(5)} <= uids
    without = read_events(config(lake, work, data_event_sources=[]), *WINDOW).table
    assert not {f"s3-data-{i}" for i in range(5)} & set(without.column("uid").to_pylist())
    assert with_data.num_rows == without.num_rows + 5
