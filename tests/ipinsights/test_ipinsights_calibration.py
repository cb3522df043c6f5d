"""Calibration: ROC metrics, thresholds on known answers, injected sets, report files."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from seclake_ml.ipinsights.calibration import (
    AnomalyDetector,
    Threshold,
    build_calibration_sets,
    calibrate,
    inject_other_entity_ips,
    inject_unused_private,
    known_normal_pairs,
    metrics_at,
    threshold_best_f1,
    threshold_for_fpr,
)
from seclake_ml.ipinsights.ipv4 import in_networks, parse_ipv4
from seclake_ml.ipinsights.metrics import roc_auc, roc_curve


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + y + np.round(rng.normal(size=2000), 1)
    from sklearn.metrics import roc_auc_score

    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0 and np.all(np.diff(thr[1:]) < 0)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])


def test_threshold_for_target_fpr_on_a_known_case():
    normal = np.arange(100, dtype=float)  # 0..99
    abnormal = np.array([50.5, 95.5, 98.5, 200.0])
    t = threshold_for_fpr(normal, abnormal, 0.05)
    # At most 5 of 100 normals may exceed the threshold: 95..99 do, so the threshold is 94.
    assert t.value == 94.0 and t.fpr == 0.05 and t.method == "target_fpr"
    assert t.recall == 0.75 and t.precision == pytest.approx(3 / 8)
    assert threshold_for_fpr(normal, abnormal, 0.0).fpr == 0.0
    assert t.flag(np.array([94.0, 94.1, np.nan])).tolist() == [False, True, False]
    assert t.dot_product_cutoff == -94.0
    with pytest.raises(ValueError, match="target_fpr"):
        threshold_for_fpr(normal, abnormal, 1.5)


def test_best_f1_separates_a_separable_case():
    normal = np.array([-3.0, -2.0, -1.0, 0.0])
    abnormal = np.array([2.0, 3.0, 4.0])
    t = threshold_best_f1(normal, abnormal)
    assert 0.0 < t.value < 2.0 and t.f1 == 1.0 and t.recall == 1.0 and t.fpr == 0.0
    m = metrics_at(-1.5, normal, abnormal)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 2, 2, 0) and m["fpr"] == 0.5


def test_threshold_round_trips_through_json(tmp_path):
    t = threshold_for_fpr(np.arange(10.0), np.arange(5.0, 15.0), 0.1)
    again = Threshold.load(t.save(tmp_path / "t.json"))
    assert again == t
    with pytest.raises(ValueError, match="finite"):
        Threshold.from_dict({"value": float("nan")})


@pytest.fixture(scope="module")
def frames(world):
    train = pd.DataFrame({"entity": world.train_entities, "ip": world.train_ips,
                          "event_time": pd.date_range("2024-01-01", periods=len(world.train_ips), freq="min", tz="UTC")})
    later = pd.DataFrame({"entity": np.r_[world.test_entities, ["stranger"]], "ip": np.r_[world.test_ips, ["1.1.1.1"]],
                          "event_time": pd.date_range("2024-02-01", periods=len(world.test_ips) + 1, freq="min", tz="UTC")})
    return train, later


def test_known_normal_pairs_are_later_and_of_known_entities(frames):
    train, later = frames
    normal = known_normal_pairs(train, later)
    assert len(normal) == len(later) - 1 and "stranger" not in set(normal["entity"])
    assert (normal["event_time"] > train["event_time"].max()).all()
    assert len(known_normal_pairs(train, later, n=100)) == 100


def test_injected_sets_have_the_promised_properties(frames):
    train, later = frames
    priv = inject_unused_private(train, 500, seed=1)
    addr, ok = parse_ipv4(priv["ip"].to_numpy(dtype=object))
    used24 = set((parse_ipv4(train["ip"].to_numpy(dtype=object))[0] >> 8).tolist())
    assert ok.all() and in_networks(addr).all() and not (set((addr >> 8).tolist()) & used24)
    other = inject_other_entity_ips(train, 500, seed=1)
    own = {(e, int(a) >> 8) for e, a in zip(train["entity"], parse_ipv4(train["ip"].to_numpy(dtype=object))[0])}
    oa = parse_ipv4(other["ip"].to_numpy(dtype=object))[0]
    assert not any((e, int(a) >> 8) in own for e, a in zip(other["entity"], oa))
    assert set((oa >> 8).tolist()) <= used24
    normal, abnormal = build_calibration_sets(train, later, n_normal=600, seed=2)
    assert len(normal) == 600 and abnormal["kind"].value_counts().to_dict() == {"random_public": 200, "unused_private": 200, "other_entity": 200}
    with pytest.raises(ValueError, match="abnormal kinds"):
        build_calibration_sets(train, later, kinds=["martian"])


def test_calibration_and_report_on_the_tiny_model(scorer, frames, tmp_path):
    from seclake_ml.ipinsights.report import write_report

    train, later = frames
    normal, abnormal = build_calibration_sets(train, later, n_normal=1500, seed=4)
    normal = pd.concat([normal, pd.DataFrame({"entity": ["stranger", normal["entity"][0]], "ip": ["1.1.1.1", "bad-ip"]})], ignore_index=True)
    result = calibrate(scorer, normal, abnormal, target_fpr=0.02)
    assert result.counts["normal_unknown_entity_dropped"] == 1 and result.counts["normal_invalid_ip_dropped"] == 1
    assert result.auc > 0.95 and set(result.auc_by_kind) == {"random_public", "unused_private", "other_entity"}
    assert result.threshold.fpr <= 0.02 and result.threshold.method == "target_fpr"
    assert 0 <= result.best_f1.f1 <= 1
    detector = AnomalyDetector(scorer, result.threshold)
    flags = detector.predict(abnormal["entity"].to_numpy(dtype=object), abnormal["ip"].to_numpy(dtype=object))
    assert flags.dtype == np.int8 and flags.mean() == pytest.approx(result.threshold.recall, abs=0.01)

    paths = write_report(result, tmp_path / "report", context={"model": "tiny"})
    for key in ("histogram", "roc"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["roc_auc"] == pytest.approx(result.auc) and metrics["threshold"]["value"] == result.threshold.value
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "<img" in page and "src=\"http" not in page
    embedded = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(embedded)[:4] == b"\x89PNG"
