"""Tests of the sample lake's synthetic analyst risk labels (seclake_lakegen.gen_labels)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_lakegen import gen_labels
from seclake_lakegen.gen_labels import (
    ANALYST,
    CLASS_BASE,
    LABEL_FILE,
    op_class,
    score_events,
    verdict_of,
)
from seclake_lakegen.generate import drop_batch, generate_lake
from seclake_ml.risk.columns import LABEL_CSV_COLUMNS, VERDICTS

START = dt.date(2024, 5, 1)  # a Wednesday
DAYS = 3
SEED = 7
# CloudTrail only (the labels' source), a small estate-wide volume
SMALL = dict(sources="cloudtrail", api_calls_per_day=3000, anomalies_per_kind=4)


# ----------------------------------------------------------------------------- helpers
def _labels(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def _lake_rows(root: Path, version: int) -> dict[str, dict]:
    """Every CloudTrail row of the lake (both classes) by ``metadata.uid``."""
    files = sorted((root / "aws" / "CLOUD_TRAIL_MGMT" / f"{version}.0").rglob("*.gz.parquet"))
    out: dict[str, dict] = {}
    for p in files:
        for r in pq.read_table(p).to_pylist():
            out[r["metadata"]["uid"]] = r
    return out


def _principal(row: dict, version: int) -> str | None:
    """The principal as the pair extraction defines it (ARN, else rebuilt, else principal id)."""
    user = row["actor"]["user"]
    if version == 1:
        arn, acct, pid = user["uuid"], user["account_uid"], user["uid"]
    else:
        arn, acct, pid = user["uid"], (user["account"] or {}).get("uid"), user["uid_alt"]
    if arn:
        return arn
    if user["type"] == "IAMUser" and acct and user["name"]:
        return f"arn:aws:iam::{acct}:user/{user['name']}"
    if user["type"] == "Root" and acct:
        return f"arn:aws:iam::{acct}:root"
    return pid


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _anomaly_uids(root: Path, rows: dict[str, dict], version: int, truth: Path | None = None) -> set[str]:
    """uids of the lake rows that are injected CloudTrail anomalies (ground truth principal + address)."""
    gt = pq.read_table(truth or root / "ground_truth" / "anomalies.parquet").to_pylist()
    pairs = {(t["entity"], t["ip"]) for t in gt if t["source"].startswith("cloudtrail")}
    return {u for u, r in rows.items() if (_principal(r, version), r["src_endpoint"]["ip"]) in pairs}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def lake(request, tmp_path_factory) -> tuple[Path, dict, int]:
    version = request.param
    root = tmp_path_factory.mktemp(f"labels_v{version}")
    summary = generate_lake(root, START, DAYS, SEED, source_version=version, **SMALL)
    return root, summary, version


# ----------------------------------------------------------------------------- tests
def test_label_file_shape_and_manifest(lake) -> None:
    root, summary, _ = lake
    path = root / "ground_truth" / LABEL_FILE
    assert path.is_file() and summary["labels_file"] == str(path)
    assert tuple(_header(path)) == LABEL_CSV_COLUMNS
    labels = _labels(path)
    assert labels and {r["analyst"] for r in labels} == {ANALYST}
    assert all("SYNTHETIC" in r["note"] for r in labels)
    assert {r["verdict"] for r in labels} <= set(VERDICTS)
    manifest = json.loads((root / "ground_truth" / "manifest.json").read_text())
    entry = manifest["labels"]
    assert entry == summary["labels"] and entry["file"] == LABEL_FILE and entry["synthetic"] is True
    assert entry["rows"] == len(labels) == sum(entry["verdicts"].values()) == sum(entry["rows_by_kind"].values())
    assert entry["cloudtrail_rows"] == summary["rows"]["cloudtrail_auth"] + summary["rows"]["cloudtrail_api"]
    assert entry["verdicts"] == {v: sum(r["verdict"] == v for r in labels) for v in VERDICTS}
    # analysts label a sample: roughly 10-20 % of the CloudTrail events
    assert 0.08 <= len(labels) / entry["cloudtrail_rows"] <= 0.22
    assert entry["rows_by_kind"]["signin"] > 0 and entry["rows_by_kind"]["api"] > 0


def test_labels_match_lake_rows_by_event_id(lake) -> None:
    root, summary, version = lake
    rows = _lake_rows(root, version)
    labels = _labels(root / "ground_truth" / LABEL_FILE)
    assert len({r["eventID"] for r in labels}) == len(labels)
    for lab in labels:
        row = rows[lab["eventID"]]  # KeyError: a label with no lake row
        assert lab["eventTime"] == _iso(row["time"])
        assert lab["userIdentityArn"] == (_principal(row, version) or "")
        assert lab["eventSource"] == row["api"]["service"]["name"]
        assert lab["eventName"] == row["api"]["operation"]
        assert lab["sourceIPAddress"] == (row["src_endpoint"]["ip"] or "")
        assert lab["userAgent"] == row["http_request"]["user_agent"]
        assert lab["errorCode"] == (row["api"]["response"]["error"] or "")
        assert lab["recipientAccountId"] == dict(row["unmapped"])["recipientAccountId"]
        assert lab["awsRegion"] == row["cloud"]["region"]
    times = [(r["eventTime"], r["eventID"]) for r in labels]
    assert times == sorted(times)
    # failed console sign-ins (null ARN in the lake) carry the rebuilt ARN
    failed = [lab for lab in labels if lab["eventName"] == "ConsoleLogin" and rows[lab["eventID"]]["status"] == "Failure"]
    assert failed and all(lab["userIdentityArn"].startswith("arn:aws:iam::") for lab in failed)
    # the join also works with pyarrow on the Parquet files
    lake_uids = pa.chunked_array(
        [pq.read_table(p, columns=["metadata"])["metadata"].combine_chunks().field("uid")
         for p in (root / "aws" / "CLOUD_TRAIL_MGMT" / f"{version}.0").rglob("*.gz.parquet")]
    ).to_pylist()  # fmt: skip
    assert {lab["eventID"] for lab in labels} <= set(lake_uids)


def test_scores_and_verdicts(lake) -> None:
    root, _, _ = lake
    labels = _labels(root / "ground_truth" / LABEL_FILE)
    scores = [int(r["riskScore"]) for r in labels]
    assert all(0 <= s <= 100 for s in scores) and len(set(scores)) > 30
    for r, s in zip(labels, scores):
        assert r["verdict"] == ("malicious" if s >= 70 else "benign" if s <= 30 else "unsure")
    assert {r["verdict"] for r in labels} == set(VERDICTS)


def test_every_anomaly_is_labelled_and_scored_higher(lake) -> None:
    root, summary, version = lake
    rows = _lake_rows(root, version)
    labels = {r["eventID"]: int(r["riskScore"]) for r in _labels(root / "ground_truth" / LABEL_FILE)}
    anomalies = _anomaly_uids(root, rows, version)
    assert anomalies and anomalies <= set(labels)
    assert summary["labels"]["anomaly_rows"] == len(anomalies)
    a = np.mean([labels[u] for u in anomalies])
    other = np.mean([s for u, s in labels.items() if u not in anomalies])
    assert a > other + 20, (a, other)


def test_sample_over_represents_failures_and_writes(lake) -> None:
    root, _, version = lake
    rows = _lake_rows(root, version)
    labelled = {r["eventID"] for r in _labels(root / "ground_truth" / LABEL_FILE)}
    api = [(u, r) for u, r in rows.items() if r["api"]["operation"] != "ConsoleLogin"]

    def share(pred) -> float:
        sel = [u for u, r in api if pred(r)]
        return sum(u in labelled for u in sel) / max(1, len(sel))

    overall = share(lambda r: True)
    assert share(lambda r: r["status"] == "Failure") > 2 * overall
    assert share(lambda r: r["activity_id"] in (1, 3, 4) and r["api"]["service"]["name"].startswith("iam.")) > 2 * overall


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    args = dict(SMALL, api_calls_per_day=800, anomalies_per_kind=2)
    generate_lake(tmp_path / "a", START, 2, 11, **args)
    generate_lake(tmp_path / "b", START, 2, 11, workers=1, **args)
    generate_lake(tmp_path / "c", START, 2, 12, **args)
    a, b, c = ((tmp_path / x / "ground_truth" / LABEL_FILE).read_bytes() for x in "abc")
    assert a == b and a != c


def test_drop_batch_writes_the_days_labels_and_keeps_the_lakes_own(tmp_path: Path) -> None:
    args = dict(SMALL, api_calls_per_day=800, anomalies_per_kind=2)
    generate_lake(tmp_path, START, 2, 5, **args)
    gt = tmp_path / "ground_truth"
    before = {p.name: p.read_bytes() for p in gt.iterdir() if p.is_file()}
    assert LABEL_FILE in before
    day = START + dt.timedelta(days=2)
    out = drop_batch(tmp_path, day, 5, **args)
    assert {p.name: p.read_bytes() for p in gt.iterdir() if p.is_file()} == before
    batch = gt / "batches" / day.strftime("%Y%m%d")
    assert out["labels"] == str(batch / LABEL_FILE)
    labels = _labels(batch / LABEL_FILE)
    manifest = json.loads((batch / "manifest.json").read_text())
    assert manifest["labels"]["rows"] == len(labels) > 0
    assert all(r["eventTime"].startswith(day.isoformat()) for r in labels)
    day_ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    rows = {u: r for u, r in _lake_rows(tmp_path, 1).items() if day_ms <= r["time"] < day_ms + 86_400_000}
    assert {r["eventID"] for r in labels} <= set(rows)
    anomalies = _anomaly_uids(tmp_path, rows, 1, truth=batch / "anomalies.parquet")
    assert anomalies and anomalies <= {r["eventID"] for r in labels}


def test_header_only_without_cloudtrail(tmp_path: Path) -> None:
    s = generate_lake(tmp_path, START, 1, 3, sources="vpc_flow", flows_per_day=500, anomalies_per_kind=1)
    path = tmp_path / "ground_truth" / LABEL_FILE
    assert tuple(_header(path)) == LABEL_CSV_COLUMNS and _labels(path) == []
    assert s["labels"]["rows"] == 0


def test_policy_table() -> None:
    assert op_class("ec2.amazonaws.com", "DescribeInstances", 2) == "discovery"
    assert op_class("iam.amazonaws.com", "CreateAccessKey", 1) == "security_write"
    assert op_class("iam.amazonaws.com", "AttachRolePolicy", 1) == "security_write"
    assert op_class("organizations.amazonaws.com", "LeaveOrganization", 99) == "security_write"
    assert op_class("s3.amazonaws.com", "PutBucketPolicy", 1) == "security_write"
    assert op_class("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", 1) == "security_write"
    assert op_class("ec2.amazonaws.com", "RunInstances", 1) == "write"
    assert op_class("kms.amazonaws.com", "Decrypt", 2) == "routine"
    assert op_class("sts.amazonaws.com", "AssumeRole", 99) == "credential_access"
    assert op_class("secretsmanager.amazonaws.com", "GetSecretValue", 2) == "credential_access"
    assert CLASS_BASE["discovery"] < CLASS_BASE["write"] < CLASS_BASE["security_write"]
    rng = np.random.default_rng(0)
    n = 4000
    z = np.zeros(n, bool)
    base = {"base": np.full(n, CLASS_BASE["discovery"]), "anomaly": z, "root": z, "denied": z, "other_error": z,
            "signin_failed": z, "no_mfa": z, "off_hours": z, "rare": z}  # fmt: skip
    calm = score_events(rng, base)
    hot = score_events(rng, {**base, "anomaly": ~z, "denied": ~z})
    assert calm.min() >= 0 and hot.max() <= 100
    assert 2 < np.std(calm[(calm > 0)]) < 14 and hot.mean() - calm.mean() > 50
    assert list(verdict_of(np.array([70, 69, 31, 30]))) == ["malicious", "unsure", "unsure", "benign"]


def test_docstring_states_the_policy_in_force() -> None:
    doc = gen_labels.__doc__
    assert "SYNTHETIC" in doc
    for cls, base in CLASS_BASE.items():
        assert re.search(rf"^    {cls} +{int(base)} ", doc, re.M), cls
    for name, points in (("injected anomaly", gen_labels.MOD_ANOMALY), ("root user", gen_labels.MOD_ROOT),
                         ("access denied", gen_labels.MOD_DENIED), ("failed console sign-in", gen_labels.MOD_SIGNIN_FAILED),
                         ("without MFA (IAM user or root)  ", gen_labels.MOD_NO_MFA)):  # fmt: skip
        assert re.search(rf"{re.escape(name)}.*\+{int(points)}$", doc, re.M), name
    assert f"N(0, {int(gen_labels.NOISE_SD)})" in doc and "5 % of labels" in doc
