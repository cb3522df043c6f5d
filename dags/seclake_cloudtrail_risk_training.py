"""
### CloudTrail risk training

Weekly (Mondays 04:00 UTC, after the IP Insights training) on the week that just ended: read the
CloudTrail console sign-ins and API calls of the window from Security Lake with `lookback_days` of
history before each day, build each event's features against its principal's and account's history
(new operation, service, network, ASN, country, client type; failures and novelty bursts in the
trailing hour; the sensitive-operation catalogue), join the analysts' latest labels from the label
store (`python -m seclake_ml risk labels import|add`), and fit the linear baseline and the boosted
model on a 70/30 split in time. Below `min_labels` labelled events the unsupervised combination stays
the risk score.

**Outputs**: `<work_location>/risk/models/versions/risk-<start>-<end>/` (`model.json` with metrics and
gate decision, `linear.json`, `boosted.txt` in LightGBM's text format, `report/report.html` with the
actual-vs-predicted chart; the task's "Calibration report" link opens it) and `active.json`.

**When a task fails**

* `fit_risk_models`: the log names the window, the events read, quarantined objects and the labels
  matched. A configuration error names the field. The aws backend is not supported by this DAG yet:
  the task fails at once saying so.
* `risk_quality_gate`: never fails. A held candidate (test RMSE worse than the active model's on the
  same split by more than 2 %, or too few labels while a supervised model is active) skips the rollout.
* `risk_rollout`: activation is one atomic file write; re-run it after fixing disk or permission errors.

Backfill a past week by triggering a run with a logical date in the week after it: the same window
gives the same model version and replaces it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from seclake_ml.airflow_support import default_task_args
from seclake_ml.operators.risk import RiskFitOperator, RiskGateOperator, RiskRolloutOperator

DAG_ID = "seclake_cloudtrail_risk_training"

with DAG(
    dag_id=DAG_ID,
    description="Weekly CloudTrail risk models: features, analyst labels, linear baseline and boosted trees",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 4 * * 1", timezone="UTC"),
    start_date=datetime(2022, 1, 3, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=default_task_args(retries=2),
    tags=["seclake_ml", "security-lake", "cloudtrail", "risk", "training"],
    params={
        "window_days": Param(7, type="integer", minimum=1, maximum=90, title="Window (days)",
                             description="Days of labelled events to fit on, ending at data_interval_end."),
        "lookback_days": Param(None, type=["null", "integer"], minimum=1, maximum=366, title="History (days)",
                               description="Days of history per event (default: extra.risk.lookback_days)."),
    },
) as dag:
    fit = RiskFitOperator(
        task_id="fit_risk_models",
        window_days="{{ params.window_days }}",
        lookback_days="{{ params.lookback_days }}",
    )
    gate = RiskGateOperator(task_id="risk_quality_gate", fit=fit.output)
    RiskRolloutOperator(task_id="risk_rollout", decision=gate.output)
