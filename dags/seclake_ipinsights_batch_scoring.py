"""
### Security Lake IP Insights batch scoring (history and backfills)

Daily: scores every object in the day's `eventDay` partitions of the enabled sources with the
active model, through the same scoring operator as `seclake_ipinsights_scoring`. Findings files are
named after their source object, so re-running a day (or `airflow backfill create` over a month,
again) replaces that day's findings instead of adding to them, and objects the continuous DAG
already scored get the same files back. The objects are recorded in the processed-objects ledger.

Start it with a backfill, e.g. `airflow backfill create --dag-id seclake_ipinsights_batch_scoring
--from-date 2024-01-01 --to-date 2024-01-31`.

**When a task fails**: `hand_off_interval` fails on an invalid configuration (the error names the
field); `score_interval` fails when no model is active (train one first) or when objects failed
after retries (S3/endpoint errors; clear the task to retry: done objects are kept).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable

from seclake_ml.airflow_support import default_task_args
from seclake_ml.operators.scoring import IntervalBatchOperator, ScoreBatchOperator
from seclake_ml.operators.risk import RiskScoreBatchOperator
from seclake_ml.operators.training import ACTIVE_MODEL_ASSET

default_args = default_task_args(retries=2)

with DAG(
    dag_id="seclake_ipinsights_batch_scoring",
    description="Score one day of Security Lake history with the active IP Insights model",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2023, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=4,
    default_args=default_args,
    tags=["seclake_ml", "security-lake", "ip-insights", "scoring", "backfill"],
) as dag:
    planned = IntervalBatchOperator(task_id="hand_off_interval")
    scored = ScoreBatchOperator(
        task_id="score_interval",
        batch=planned.output,
        inlets=[Asset(ACTIVE_MODEL_ASSET)],
        execution_timeout=timedelta(hours=4),
    )
    RiskScoreBatchOperator(task_id="risk_score_interval", batch=scored.output, execution_timeout=timedelta(hours=2))
