"""Hand-off records between the training DAG's tasks, the backends behind one protocol, and the
calibrated threshold reaching scoring intact."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timezone

import numpy as np
import pytest

from seclake_ml.backends import Backend, backend_of
from seclake_ml.config import load_config
from seclake_ml.handoff import (
    Activation,
    Calibration,
    Extraction,
    GateDecision,
    PreparedData,
    ScoringBatch,
    TrainedModel,
    Wait,
)
from seclake_ml.interval import DataInterval
from seclake_ml.ipinsights.calibration import Threshold
from seclake_ml.scoring.model_record import ActiveModel

WINDOW = DataInterval(datetime(2024, 1, 1, 3, tzinfo=timezone.utc), datetime(2024, 1, 8, 3, tzinfo=timezone.utc))
RULE = Threshold(value=1.25, method="target_fpr", target_fpr=0.01, precision=0.9, recall=0.8, fpr=0.01, f1=0.85,
                 n_normal=1000, n_abnormal=1000)


def _records() -> list:
    data = PreparedData(window=WINDOW, backend="aws", train_uri="s3://b/w/train/", holdout_uri="s3://b/w/validation/",
                        train_rows=10, holdout_rows=4, split_time="2024-01-05T22:36:00Z",
                        profile_uri="s3://b/w/profile/profile.parquet", details={"files": {"train": 1}})
    model = TrainedModel(window=WINDOW, backend="local", version=WINDOW.model_version(), model_uri="/w/models/v",
                         hyperparameters={"epochs": 3}, train_rows=10, details={"epochs": 3})
    cal = Calibration(window=WINDOW, version=model.version, auc=0.99, threshold=RULE.to_dict(),
                      threshold_mode="target_fpr", normal_set="/w/normal.parquet", abnormal_set="/w/abnormal.parquet",
                      report_uri="/w/report.html", target_fpr=0.01, components={"model": 0.98})
    gate = GateDecision(passed=False, candidate=model.version, candidate_auc=0.99, auc_floor=0.9, tolerance=0.01,
                        reasons=["worse"], active="old", active_auc=0.995)
    act = Activation(backend="aws", version=model.version, threshold=1.25, previous_version=None,
                     details={"endpoint_name": "e"})
    ext = Extraction(window=WINDOW, pairs={"vpc_flow:instance_peer": "s3://b/w/pairs/vpc/"}, pairs_written=5,
                     summary_location="s3://b/w/runs/summary.json")
    batch = ScoringBatch(batch_id="lake-abc", origin="lake", objects=3, rejected=1, ignored=0)
    return [data, model, cal, gate, act, ext, batch]


@pytest.mark.parametrize("record", _records(), ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record) -> None:
    encoded = record.to_xcom()
    text = json.dumps(encoded)  # XCom-safe: plain JSON
    assert type(record).from_xcom(json.loads(text)) == record
    assert type(record).from_xcom(text) == record  # a templated field renders to JSON text


def test_same_keys_on_both_backends() -> None:
    local = PreparedData(window=WINDOW, backend="local", train_uri="/w/train.parquet", holdout_uri="/w/holdout.parquet",
                         train_rows=1, holdout_rows=1, split_time="2024-01-05T22:36:00Z")
    aws = _records()[0]
    assert set(local.to_xcom()) == set(aws.to_xcom())


def test_decoding_errors_name_the_record_and_field() -> None:
    good = _records()[1].to_xcom()
    with pytest.raises(ValueError, match=r"^model\.model_uri: got None"):
        TrainedModel.from_xcom({**good, "model_uri": None}, "model")
    with pytest.raises(ValueError, match=r"^model\.backend: got 'gcp'; allowed: local \| aws"):
        TrainedModel.from_xcom({**good, "backend": "gcp"}, "model")
    with pytest.raises(ValueError, match=r"train_rows: got -1"):
        TrainedModel.from_xcom({**good, "train_rows": -1})
    with pytest.raises(ValueError, match=r"^model: rendered text is not JSON"):
        TrainedModel.from_xcom("{oops", "model")
    with pytest.raises(ValueError, match="'start' and 'end'"):
        TrainedModel.from_xcom({k: v for k, v in good.items() if k != "start"}, "model")
    cal = _records()[2].to_xcom()
    with pytest.raises(ValueError, match=r"^calibration\.threshold: got 1\.25; expected the calibrated threshold"):
        Calibration.from_xcom({**cal, "threshold": 1.25}, "calibration")
    with pytest.raises(ValueError, match=r"calibration\.threshold: threshold: value must be finite"):
        Calibration.from_xcom({**cal, "threshold": {**cal["threshold"], "value": float("nan")}}, "calibration")
    with pytest.raises(ValueError, match=r"^gate\.passed: got 'yes'"):
        GateDecision.from_xcom({**_records()[3].to_xcom(), "passed": "yes"}, "gate")
    with pytest.raises(ValueError, match=r"auc: got True"):
        Calibration.from_xcom({**cal, "auc": True})


def test_a_batch_is_named_by_any_upstream_scoring_result() -> None:
    scored = {"batch_id": "lake-abc", "model_version": "v", "totals": {"findings": 3}}  # ScoreBatchOperator's result
    assert ScoringBatch.from_xcom(scored).batch_id == "lake-abc"
    with pytest.raises(ValueError, match=r"^batch\.batch_id: got None"):
        ScoringBatch.from_xcom({"model_version": "v"})
    with pytest.raises(ValueError, match=r"^extraction\.pairs: got"):
        Extraction.from_xcom({**WINDOW.to_xcom(), "pairs": {"vpc_flow:instance_peer": ""}, "pairs_written": 1})


def test_the_calibrated_threshold_reaches_scoring_intact() -> None:
    cal = Calibration.from_xcom(json.dumps(_records()[2].to_xcom()))
    assert cal.rule == RULE and cal.threshold_value == 1.25
    # the active record keeps the rule beside the number; scoring flags with the rule
    model = ActiveModel(version=cal.version, threshold=cal.threshold_value, backend="local", threshold_rule=cal.threshold)
    assert model.decision == RULE
    scores = np.array([1.0, 1.25, 1.26, np.nan])
    assert model.decision.flag(scores).tolist() == [False, False, True, False]  # > value; NaN never flagged
    # a record from before the rule existed, or one whose rule disagrees, flags with the number alone
    assert ActiveModel(version="v", threshold=2.0, backend="local").decision == Threshold(value=2.0)
    odd = ActiveModel(version="v", threshold=2.0, backend="local", threshold_rule={"method": "target_fpr", "value": 9})
    assert odd.decision.value == 2.0


def test_active_record_rule_is_checked_against_the_threshold(caplog: pytest.LogCaptureFixture) -> None:
    from seclake_ml.scoring.sites import model_from_record

    record = {"version": "v1", "threshold": 1.25, "endpoint_name": "seclake-ml-ipinsights", "threshold_rule": RULE.to_dict()}
    assert model_from_record(record, severity_scale=1.0).decision == RULE
    bad = dict(record, threshold_rule=dict(RULE.to_dict(), value=3.0))
    assert model_from_record(bad, severity_scale=1.0).threshold_rule is None
    assert "disagrees with its threshold" in caplog.text


def test_one_factory_and_one_protocol(tmp_path) -> None:
    local = backend_of(load_config({"lake_root": str(tmp_path)}, environ={}))
    aws = backend_of(load_config({"backend": "aws", "work_location": "s3://bucket/work", "lake_bucket": "lake-b"},
                                 environ={}), "conn")
    assert (local.name, aws.name, aws.aws_conn_id) == ("local", "aws", "conn")
    assert local.scores_in_process and not aws.scores_in_process
    wanted = {n for n, _ in inspect.getmembers(Backend) if not n.startswith("_")}
    for backend in (local, aws):
        missing = {n for n in wanted if not hasattr(backend, n)}
        assert not missing, f"{backend.name} backend lacks {sorted(missing)}"
        for name in wanted:
            member = getattr(Backend, name)
            if callable(member):
                want = list(inspect.signature(member).parameters)[1:]
                have = list(inspect.signature(getattr(backend, name)).parameters)
                assert have[:len(want)] == want, (backend.name, name, have, want)


def test_a_wait_carries_what_the_operator_defers_with() -> None:
    wait = Wait(trigger=object(), timeout_seconds=60.0, kwargs={"started": {"endpoint_name": "e"}})
    assert wait.method_name == "execute_complete" and wait.kwargs["started"]["endpoint_name"] == "e"
