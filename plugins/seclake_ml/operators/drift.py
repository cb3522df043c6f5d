"""Drift that schedules retraining: an Asset event when a scored batch broke a drift bound.

The continuous scoring DAG runs :class:`DriftRetrainOperator` after ``score_batch``. When the batch's
drift figures (:mod:`seclake_ml.scoring.drift`: score PSI against the calibration set, unknown-entity
rate, findings rate) broke a configured bound, it updates the Asset :data:`DRIFT_ASSET` with the
reasons in the event's ``extra``; the training DAG is scheduled on that Asset as well as weekly
(``AssetOrTimeSchedule``), so a breach starts a retraining run whose plan task logs the reasons.
Retraining is rate-limited: at most one drift-triggered event per ``extra.scoring.retrain_min_hours``,
recorded in the work location (``scoring/drift/retrain.json``). Within bounds, too small to judge or
rate-limited, the task is skipped (a skipped task emits no Asset event) and says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from seclake_ml.operators.base import _ConfiguredOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

DRIFT_ASSET = "seclake_ml_ipinsights_drift"
STATE_KEY = "scoring/drift/retrain.json"
HISTORY = 50  # drift triggers kept in the state object


class DriftRetrainOperator(_ConfiguredOperator):
    """Update :data:`DRIFT_ASSET` (which schedules retraining) when ``batch`` drifted; else skip.

    :param batch: the ``score_batch`` task's result (its ``drift`` figures). Templated.
    :param now: the current time (tests); default the wall clock.
    """

    template_fields: Sequence[str] = ("batch", "config_overrides")

    def __init__(self, *, batch: Any, now: datetime | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [Asset(DRIFT_ASSET)])
        super().__init__(**kwargs)
        self.batch = batch
        self.now = now

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from seclake_ml.handoff import ScoringBatch, decode_mapping
        from seclake_ml.interval import iso, parse_utc

        batch = decode_mapping(self.batch, "batch")
        batch_id = ScoringBatch.from_xcom(batch, "batch").batch_id
        drift = batch.get("drift") if isinstance(batch.get("drift"), Mapping) else {}
        figures = (f"PSI {drift.get('psi')}, unknown-entity rate {drift.get('unknown_rate')}, "
                   f"{drift.get('findings_per_1k')} findings per 1,000 pairs over {drift.get('pairs')} pairs")
        breaches = [str(b) for b in drift.get("breaches") or []]
        if not drift:
            raise AirflowSkipException(f"batch {batch_id}: no drift figures (nothing was scored)")
        if not drift.get("judged"):
            raise AirflowSkipException(f"batch {batch_id}: too few pairs to judge drift ({figures})")
        if not breaches:
            raise AirflowSkipException(f"batch {batch_id}: within the drift bounds ({figures})")

        cfg = self.runtime_config()
        store = self.work_store(cfg, self.scoring_site(cfg))
        now = (self.now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        try:
            state = store.get_json(STATE_KEY) or {}
        except ValueError as exc:  # a damaged state object must not block retraining
            self.log.warning("drift state %s is unreadable (%s); treated as empty", STATE_KEY, exc)
            state = {}
        if not isinstance(state, Mapping):
            state = {}
        # A retry of the batch that set the state emits its event again (the first try may have died
        # after writing the state, before the Asset event, which is only emitted on success).
        last = state.get("triggered_at") if state.get("batch_id") != batch_id else None
        min_hours = float(cfg.scoring.retrain_min_hours)
        if last:
            try:
                waited = (now - parse_utc(last, "triggered_at")).total_seconds() / 3600.0
            except ValueError:
                waited = None  # an unreadable record does not block retraining
            if waited is not None and waited < min_hours:
                self.log.warning("batch %s drifted (%s) but retraining was triggered %.1f h ago (batch %s); at most "
                                 "once every %g h (extra.scoring.retrain_min_hours)", batch_id, "; ".join(breaches),
                                 waited, state.get("batch_id"), min_hours)
                raise AirflowSkipException(f"batch {batch_id} drifted; retraining is rate-limited "
                                           f"(last triggered {last})")
        reason = f"batch {batch_id} of model {batch.get('model_version')}: " + "; ".join(breaches)
        record = {"triggered_at": iso(now), "batch_id": batch_id, "model_version": batch.get("model_version"),
                  "reasons": breaches, "drift": dict(drift)}
        earlier = [h for h in state.get("history") or [] if isinstance(h, Mapping) and h.get("batch_id") != batch_id]
        history = [record] + earlier[: HISTORY - 1]
        store.put_json(STATE_KEY, {**record, "history": history})
        context["outlet_events"][Asset(DRIFT_ASSET)].extra = {"reason": reason[:1000], "batch_id": batch_id,
                                                             "model_version": batch.get("model_version")}
        self.log.warning("drift: %s -- the training DAG is scheduled (Asset %s)", reason, DRIFT_ASSET)
        return {"triggered": True, "reason": reason, "batch_id": batch_id}
