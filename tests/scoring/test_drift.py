"""Drift figures per scored batch, and the operator that schedules retraining on a breach."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from seclake_ml.scoring.drift import ScoreHistogram, check_reference, judge, score_reference

BOUNDS = SimpleNamespace(scoring=SimpleNamespace(drift_psi_max=0.25, drift_unknown_rate_max=0.2,
                                                drift_findings_per_thousand_max=25.0, drift_min_pairs=1000))


def test_the_same_distribution_does_not_drift_and_a_shifted_one_does() -> None:
    rng = np.random.default_rng(7)
    ref = score_reference(rng.normal(0, 1, 20_000))
    assert ref is not None and len(ref["edges"]) == 9 and abs(sum(ref["shares"]) - 1) < 1e-9
    same, shifted = ScoreHistogram(ref), ScoreHistogram(ref)
    same.add(rng.normal(0, 1, 5000))
    shifted.add(rng.normal(1.0, 1, 5000))
    assert same.psi() < 0.02
    assert shifted.psi() > 0.25
    nan_only = ScoreHistogram(ref)
    nan_only.add([np.nan, np.inf])  # invalid IPs score NaN: never counted
    assert nan_only.total == 0 and nan_only.psi() is None


def test_reference_needs_enough_finite_scores_and_checks_what_it_reads() -> None:
    assert score_reference([1.0, 2.0, np.nan]) is None
    ref = score_reference(np.arange(100.0))
    assert check_reference(json.loads(json.dumps(ref))) == ref
    for bad in ({"edges": [2.0, 1.0], "shares": [0.3, 0.3, 0.4]}, {"edges": [1.0], "shares": [0.5]},
                {"edges": [1.0], "shares": [0.6, 0.6]}, {"shares": [1.0]}, "x", {"edges": [float("nan")],
                                                                                  "shares": [0.5, 0.5]}):
        assert check_reference(bad) is None
    assert check_reference(None) is None
    # ties at the edges: the shares are those of the reference's own binning, not 1/10 each
    tied = score_reference([0.0] * 50 + list(np.arange(1.0, 51.0)))
    assert tied["shares"][0] == 0.0 and tied["shares"][1] == pytest.approx(0.5, abs=0.02)  # bins are [e_i, e_i+1)


def test_judge_names_each_broken_bound_and_ignores_small_batches() -> None:
    # rates are over distinct pairs (rows repeat pairs), suppressed findings are not counted
    quiet = judge({"pairs": 90_000, "distinct_pairs": 10_000, "unknown_entity": 100, "findings": 20}, 0.05, BOUNDS)
    assert quiet["judged"] and quiet["breaches"] == [] and quiet["findings_per_1k"] == 2.0
    loud = judge({"distinct_pairs": 10_000, "unknown_entity": 3_000, "findings": 400}, 0.6, BOUNDS)
    assert len(loud["breaches"]) == 3
    assert any("PSI 0.600" in b for b in loud["breaches"]) and any("30.0%" in b for b in loud["breaches"])
    allowed = judge({"distinct_pairs": 10_000, "findings": 400, "suppressed": 390}, None, BOUNDS)
    assert allowed["findings_per_1k"] == 1.0 and allowed["breaches"] == []
    small = judge({"pairs": 50_000, "distinct_pairs": 10, "unknown_entity": 10, "findings": 10}, 5.0, BOUNDS)
    assert not small["judged"] and small["breaches"] == [] and small["unknown_rate"] == 1.0
    empty = judge({"distinct_pairs": 0}, None, BOUNDS)
    assert empty["unknown_rate"] is None and empty["psi"] is None


# ----------------------------------------------------------------------------- the operator
class _Outlet:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}


class _Outlets(dict):
    def __missing__(self, key: Any) -> _Outlet:
        self[key] = _Outlet()
        return self[key]


@pytest.fixture()
def work(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from seclake_ml import airflow_support

    lake = tmp_path / "lake"
    lake.mkdir()
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps({"lake_root": str(lake), "work_location": str(tmp_path / "w"),
                                                        "extra": {"scoring": {"retrain_min_hours": 12}}}))
    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": None)
    return tmp_path / "w"


def _run(batch: dict[str, Any], now: datetime) -> tuple[Any, dict[str, Any]]:
    from seclake_ml.operators.drift import DriftRetrainOperator

    ctx = {"outlet_events": _Outlets()}
    out = DriftRetrainOperator(task_id="drift_check", batch=batch, now=now).execute(ctx)
    return out, ctx


def _batch(bid: str, breaches: list[str], judged: bool = True) -> dict[str, Any]:
    return {"batch_id": bid, "model_version": "ipinsights-v1",
            "drift": {"psi": 0.5, "unknown_rate": 0.01, "findings_per_1k": 3.0, "pairs": 5000, "judged": judged,
                      "breaches": breaches}}


def test_a_breach_updates_the_asset_once_per_rate_limit(work) -> None:
    from airflow.sdk import Asset
    from airflow.sdk.exceptions import AirflowSkipException

    from seclake_ml.operators.drift import DRIFT_ASSET, STATE_KEY

    t0 = datetime(2024, 3, 5, 12, tzinfo=timezone.utc)
    with pytest.raises(AirflowSkipException, match="within the drift bounds"):
        _run(_batch("lake-a", []), t0)
    with pytest.raises(AirflowSkipException, match="too few pairs"):
        _run(_batch("lake-a", ["x"], judged=False), t0)
    with pytest.raises(AirflowSkipException, match="no drift figures"):
        _run({"batch_id": "lake-a"}, t0)

    out, ctx = _run(_batch("lake-b", ["score PSI 0.500 against the calibration set is above 0.25"]), t0)
    assert out["triggered"] is True
    extra = ctx["outlet_events"][Asset(DRIFT_ASSET)].extra
    assert extra["batch_id"] == "lake-b" and "PSI 0.500" in extra["reason"]
    state = json.loads((work / STATE_KEY).read_text())
    assert state["triggered_at"] == "2024-03-05T12:00:00Z" and state["batch_id"] == "lake-b"

    # a second breach within retrain_min_hours (12) is logged and skipped: no asset event
    with pytest.raises(AirflowSkipException, match="rate-limited"):
        _run(_batch("lake-c", ["unknown-entity rate 40.0% is above 20.0%"]), t0 + timedelta(hours=11))
    out, _ = _run(_batch("lake-d", ["unknown-entity rate 40.0% is above 20.0%"]), t0 + timedelta(hours=13))
    assert out["batch_id"] == "lake-d"
    history = json.loads((work / STATE_KEY).read_text())["history"]
    assert [h["batch_id"] for h in history] == ["lake-d", "lake-b"]


def test_an_unreadable_state_does_not_block_retraining(work) -> None:
    from seclake_ml.operators.drift import STATE_KEY

    (work / STATE_KEY).parent.mkdir(parents=True)
    (work / STATE_KEY).write_text('{"triggered_at": "not a time"}')
    out, _ = _run(_batch("lake-e", ["x"]), datetime(2024, 3, 5, tzinfo=timezone.utc))
    assert out["triggered"]
    (work / STATE_KEY).write_text('{"triggered_at": "2024-03-05T00:00:00Z", "batch_')  # truncated JSON
    out, _ = _run(_batch("lake-f", ["x"]), datetime(2024, 3, 5, 1, tzinfo=timezone.utc))
    assert out["triggered"]


def test_a_retry_of_the_triggering_batch_emits_again(work) -> None:
    """The state is written before the task succeeds; a retry of the same batch must not be rate-limited."""
    from airflow.sdk import Asset

    from seclake_ml.operators.drift import DRIFT_ASSET, STATE_KEY

    t0 = datetime(2024, 3, 5, 12, tzinfo=timezone.utc)
    _run(_batch("lake-g", ["x"]), t0)
    out, ctx = _run(_batch("lake-g", ["x"]), t0 + timedelta(minutes=5))  # the retry
    assert out["triggered"] and ctx["outlet_events"][Asset(DRIFT_ASSET)].extra["batch_id"] == "lake-g"
    assert [h["batch_id"] for h in json.loads((work / STATE_KEY).read_text())["history"]] == ["lake-g"]
