"""
### Security Lake IP Insights scoring (new log batches)

Runs continuously, one run at a time. Each run waits for one new log batch, scores it with the
active model and writes explained findings:

1. `wait_for_new_batch`: **local**: Parquet objects under the lake root that the processed-objects
   ledger does not know yet (a batch left pending by an earlier run is resumed first). **aws**: the
   Security Lake subscriber SQS queue (`extra.scoring.queue_url`), deferred to the triggerer. The
   messages' new objects are written as a batch manifest in the work location, then the messages are
   deleted; test events, duplicates and poison messages are recorded and deleted.
2. `score_batch`: pins the active model into the manifest (a batch is scored by exactly one model
   version), reads each object in row-group chunks through the training views, scores the pairs
   (NumPy scorer locally, the SageMaker endpoint on aws), writes OCSF 1.1 Detection Findings
   (class 2004) as zstd Parquet under `ext/ipinsights-<source>/region=…/accountId=…/eventDay=…/`,
   publishes the severe ones (SNS on aws; the log and `<work>/scoring/alerts/severe.jsonl` locally),
   and only then marks each object done in the ledger.

3. `risk_score_batch`: the batch's CloudTrail objects are risk-scored by the active CloudTrail risk
   model (`seclake_cloudtrail_risk_training`; the unsupervised score when none is active) with
   their principals' history from the lake; events at or above `extra.risk.finding_min_risk` become
   Detection Findings under `ext/risk-cloudtrail/…`, severe ones are published like IP Insights'.
   Progress per object is kept in `<work>/scoring/batches/<batch id>/risk.json`.
4. `drift_check`: the batch's drift figures (score PSI against the calibration set's known-normal
   scores, unknown-entity rate, findings per 1,000 pairs; bounds `extra.scoring.drift_*`). A breach
   updates the Asset `seclake_ml_ipinsights_drift`, which schedules `seclake_ipinsights_training`
   with the reasons in the event, at most once per `extra.scoring.retrain_min_hours`; otherwise the
   task is skipped and its log says why.

A new model rolled out by `seclake_ipinsights_training` (Asset `seclake_ml_ipinsights_active_model`)
is used from the next batch on.

**When a task fails**

* `wait_for_new_batch` times out after 6 hours without data: nothing is lost; the next run waits again.
* `score_batch` with "no active model": train and roll out a model first; the batch stays pending
  and the next run scores it.
* `score_batch` with failed objects (S3 or endpoint errors after retries): the task is retried;
  objects already done are not scored twice. Quarantined objects (unreadable Parquet) are listed in
  the log and in `<work>/scoring/batches/<batch id>/result.json`; they are not retried.
* `risk_score_batch` fails: the IP Insights findings of the batch are already written; clear this
  task after fixing the cause (a damaged risk model refuses to load with the file it found changed:
  re-run `seclake_cloudtrail_risk_training`). Objects it already scored are skipped on the retry.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset

from seclake_ml.airflow_support import default_task_args
from seclake_ml.operators.scoring import SCORING_DAG_ID, NewLogBatchSensor, ScoreBatchOperator
from seclake_ml.operators.drift import DriftRetrainOperator
from seclake_ml.operators.risk import RiskScoreBatchOperator
from seclake_ml.operators.training import ACTIVE_MODEL_ASSET

default_args = default_task_args(retries=3)

with DAG(
    dag_id=SCORING_DAG_ID,
    description="Score each new Security Lake log batch with the active IP Insights model",
    doc_md=__doc__,
    schedule="@continuous",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["seclake_ml", "security-lake", "ip-insights", "scoring"],
) as dag:
    batch = NewLogBatchSensor(
        task_id="wait_for_new_batch",
        poke_interval=30,
        timeout=timedelta(hours=6).total_seconds(),
        mode="poke",
    )
    scored = ScoreBatchOperator(
        task_id="score_batch",
        batch=batch.output,
        inlets=[Asset(ACTIVE_MODEL_ASSET)],
        execution_timeout=timedelta(hours=2),
    )
    RiskScoreBatchOperator(task_id="risk_score_batch", batch=scored.output, execution_timeout=timedelta(hours=1))
    DriftRetrainOperator(task_id="drift_check", batch=scored.output)
