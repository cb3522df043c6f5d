"""Analysts' feedback reaches the next IP Insights model: the detector's own findings are not learnt as
normal unless labelled benign; labelled findings join the calibration sets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from seclake_ml.config import load_config
from seclake_ml.feedback.training import training_feedback
from seclake_ml.interval import DataInterval
from seclake_ml.scoring.findings import Candidate, build_findings
from seclake_ml.scoring.findings_parquet import findings_parquet_parts
from seclake_ml.scoring.model_record import ActiveModel

UTC = timezone.utc
WINDOW = DataInterval(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC))
MODEL = ActiveModel(version="ipinsights-x", threshold=1.0, backend="local")
SCOPE = "aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240305/a.parquet"


def _write_findings(root: Path, pairs: list[tuple[str, str]], day: datetime, scope: str = SCOPE) -> list[dict]:
    cands = [Candidate(source="vpc_flow", view="instance_peer", entity=e, ip=ip, account="123456789012",
                       region="us-east-1", first_seen=day, last_seen=day + timedelta(minutes=5), events=3,
                       dot_product=-2.0, score=2.0) for e, ip in pairs]
    records = build_findings(cands, model=MODEL, scope=scope, explanations={}, created_time=day, product_version="t")
    for key, data in findings_parquet_parts(records, file_stem=f"obj-{day:%Y%m%d}"):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return records


@pytest.fixture()
def site(tmp_path: Path):
    lake, work = tmp_path / "lake", tmp_path / "work"
    lake.mkdir()
    cfg = load_config({"lake_root": str(lake), "work_location": str(work)}, environ={})
    records = _write_findings(lake, [("i-1", "198.51.100.1"), ("i-2", "198.51.100.2"), ("i-3", "198.51.100.3")],
                              datetime(2024, 3, 5, 10, tzinfo=UTC))
    _write_findings(lake, [("i-9", "198.51.100.9")], datetime(2024, 2, 1, 10, tzinfo=UTC))  # outside the window
    uid = {r["unmapped"]["entity"]: r["finding_info"]["uid"] for r in records}
    return cfg, lake, uid


def test_unlabelled_findings_are_left_out_and_labelled_ones_join_the_sets(site) -> None:
    cfg, lake, uid = site
    labels = {uid["i-1"]: "benign", uid["i-2"]: "malicious"}
    fb = training_feedback(cfg, WINDOW, labels=labels)
    pairs = lambda df: set(map(tuple, df[["entity", "ip"]].values.tolist()))  # noqa: E731
    assert pairs(fb.exclude) == {("i-2", "198.51.100.2"), ("i-3", "198.51.100.3")}  # not benign: left out
    assert pairs(fb.benign) == {("i-1", "198.51.100.1")}
    assert pairs(fb.malicious) == {("i-2", "198.51.100.2")}
    assert fb.counts["findings"] == 3 and fb.counts["unreadable_files"] == 0  # February's finding: other window


def test_verdicts_fold_per_pair_over_its_findings(site) -> None:
    """The same pair flagged in another object is another finding: one benign label covers the pair,
    and a malicious label on any of its findings wins."""
    cfg, lake, uid = site
    again = _write_findings(lake, [("i-1", "198.51.100.1"), ("i-2", "198.51.100.2")], datetime(2024, 3, 6, 9, tzinfo=UTC),
                            scope=SCOPE.replace("a.parquet", "b.parquet"))
    uid2 = {r["unmapped"]["entity"]: r["finding_info"]["uid"] for r in again}
    assert uid2["i-1"] != uid["i-1"]
    fb = training_feedback(cfg, WINDOW, labels={uid["i-1"]: "benign", uid["i-2"]: "benign", uid2["i-2"]: "malicious"})
    pairs = lambda df: set(map(tuple, df[["entity", "ip"]].values.tolist()))  # noqa: E731
    assert pairs(fb.benign) == {("i-1", "198.51.100.1")}  # its unlabelled second finding does not undo it
    assert pairs(fb.malicious) == {("i-2", "198.51.100.2")}
    assert pairs(fb.exclude) == {("i-2", "198.51.100.2"), ("i-3", "198.51.100.3")}


def test_an_allow_listed_finding_counts_as_benign(site, tmp_path: Path) -> None:
    from seclake_ml.scoring.findings import suppress_finding

    cfg, lake, uid = site
    cands = [Candidate(source="vpc_flow", view="instance_peer", entity="i-7", ip="198.51.100.7", account="123456789012",
                       region="us-east-1", first_seen=datetime(2024, 3, 5, tzinfo=UTC),
                       last_seen=datetime(2024, 3, 5, 0, 5, tzinfo=UTC), events=1, dot_product=-2.0, score=2.0)]
    rec = build_findings(cands, model=MODEL, scope=SCOPE.replace("a.parquet", "c.parquet"), explanations={},
                         created_time=datetime(2024, 3, 5, tzinfo=UTC), product_version="t")[0]
    suppress_finding(rec, entry_id="e" * 32, kind="pair", reason="partner network")
    for key, data in findings_parquet_parts([rec], file_stem="obj-suppressed"):
        (lake / key).parent.mkdir(parents=True, exist_ok=True)
        (lake / key).write_bytes(data)
    fb = training_feedback(cfg, WINDOW, labels={})
    assert ("i-7", "198.51.100.7") in set(map(tuple, fb.benign[["entity", "ip"]].values.tolist()))
    assert ("i-7", "198.51.100.7") not in set(map(tuple, fb.exclude[["entity", "ip"]].values.tolist()))


def test_labels_come_from_the_label_store_and_a_damaged_file_is_counted(site) -> None:
    from seclake_ml.risk.labels import label_store_for, new_label

    cfg, lake, uid = site
    label_store_for(cfg.work_location).add([new_label(uid["i-3"], 5, verdict="benign", analyst="ana",
                                                      source="workspace", kind="finding")])
    bad = lake / "ext" / "ipinsights-vpc-flow" / "region=us-east-1" / "accountId=1" / "eventDay=20240306" / "x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    fb = training_feedback(cfg, WINDOW)
    assert ("i-3", "198.51.100.3") not in set(map(tuple, fb.exclude[["entity", "ip"]].values.tolist()))
    assert fb.counts["labelled_benign"] == 1 and fb.counts["unreadable_files"] == 1


def test_training_split_leaves_the_excluded_pairs_out(site, tmp_path: Path) -> None:
    from seclake_ml.calibration_runner import with_labelled
    from seclake_ml.training_data import combine_and_split

    cfg, lake, uid = site
    rows = [("i-1", "198.51.100.1"), ("i-2", "198.51.100.2"), ("i-3", "198.51.100.3"), ("i-1", "10.0.0.1")]
    frame = pd.DataFrame({"entity": [e for e, _ in rows] * 10, "ip": [i for _, i in rows] * 10,
                          "event_time": pd.date_range("2024-03-01T01:00", periods=40, freq="4h", tz="UTC"),
                          "source": "vpc_flow", "account": "123456789012", "region": "us-east-1"})
    pairs_file = tmp_path / "pairs.parquet"
    frame.to_parquet(pairs_file)
    fb = training_feedback(cfg, WINDOW, labels={uid["i-1"]: "benign", uid["i-2"]: "malicious"})
    res = combine_and_split([str(pairs_file)], tmp_path / "split", start=WINDOW.start, end=WINDOW.end,
                            exclude=fb.exclude)
    kept = pd.concat([pd.read_parquet(res.train), pd.read_parquet(res.holdout)])
    assert set(kept["entity"] + "," + kept["ip"]) == {"i-1,198.51.100.1", "i-1,10.0.0.1"}
    assert res.feedback_excluded == 20

    train = pd.read_parquet(res.train)
    normal = pd.DataFrame({"entity": ["i-1"], "ip": ["10.0.0.1"]})
    abnormal = pd.DataFrame({"entity": ["i-1"], "ip": ["203.0.113.1"], "kind": ["random_public"]})
    malicious = pd.DataFrame({"entity": ["i-1", "i-unknown"], "ip": ["198.51.100.66", "1.2.3.4"]})
    n2, a2, used = with_labelled(normal, abnormal, train, fb.benign, malicious)
    assert used == {"labelled_benign_used": 1, "labelled_malicious_used": 1}  # an unseen entity cannot be scored
    assert list(a2["kind"]) == ["random_public", "labelled_malicious"] and len(n2) == 2
