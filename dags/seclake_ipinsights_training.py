"""
### Security Lake IP Insights training

Weekly: extract `(entity, ip)` pairs from Amazon Security Lake for the week that just ended (Monday
03:00 UTC to Monday 03:00 UTC; a longer look-back with the `lookback_days` param), one mapped task per
enabled `source:view`; combine them and split in time (`train_fraction`, 0.7 by default: the later
part is held out); train IP Insights; calibrate a threshold on known-normal held-out pairs against
injected abnormal ones; let the quality gate compare the candidate with the active model; roll out.

**Drift**: a scored batch whose drift figures broke their bounds (the scoring DAG's `drift_check`)
updates the Asset `seclake_ml_ipinsights_drift`, which also schedules this DAG; such a run's window
ends at the hour it was triggered and `plan_extractions` logs the reasons.

**Configuration** is read when tasks run, never while this file is parsed: the Airflow Variable
`seclake_ml_config` (JSON), else the `SECLAKE_ML_CONFIG` environment variable, with single fields
overridable as `SECLAKE_ML_<FIELD>` (e.g. `SECLAKE_ML_BACKEND=aws`). `backend` is `local` (DuckDB over a
lake folder) or `aws` (Athena over the Security Lake Glue tables).

**Outputs**, keyed by the data window and overwritten on every re-run:

* pairs: `<work_location>/pairs/<source>/<view>/interval=<start>_<end>/pairs.parquet`
  (an S3 prefix of that name on the aws backend)
* run summary: `<work_location>/runs/seclake_ipinsights_training/interval=<start>_<end>/extract_summary.json`
* training data: `<work_location>/training/data/interval=<start>_<end>/{train,holdout}.parquet`
* calibration report: `<work_location>/training/calibration/interval=<start>_<end>/report.html` (also the
  "Calibration report" link on `calibrate_threshold`)
* model: local store `<work_location>/models/ipinsights/versions/ipinsights-<start>-<end>/` with
  `active.json` naming the active version and its threshold; on aws a SageMaker endpoint and the SSM
  parameter holding the active version and threshold

**When a task fails**

* `plan_extractions`: the configuration is invalid; the error names the field and the allowed values.
  Fix the Variable (or environment) and clear the task.
* `extract_pairs[<source>:<view>]`: read the last log lines; they name the window, the lake location
  and the counts. Throttling or a lost worker is retried twice; a query or schema error is not fixed by
  retrying: correct the cause, then clear the mapped task. Re-running is safe: output is replaced, not
  appended.
* `summarize_extraction`: fails without retrying when no source produced a single pair (nothing to
  train on). Check that the lake holds data for the window and that the `accounts`/`regions`
  filters and `source_version` match it.

* `train_ipinsights`: a hyperparameter error names the parameter and its range (fix the
  `hyperparameters` param). On aws, the SageMaker job name is logged; a failed job's reason is in the
  error.
* `quality_gate`: never fails by default. When it rejects a candidate its log says why (AUC below the
  floor, or worse than the active model on the same sets) and `rollout_model` is **skipped**: the
  active model and threshold stay as they were. Nothing to do at night; look at the calibration
  report in working hours.
* `rollout_model`: on aws, an endpoint update that rolls back (a CloudWatch alarm fired) fails this task
  and records nothing: the previous model keeps serving.

To re-run a past week, clear the run (or trigger with a logical date inside the week after it): the
same data window produces the same output paths.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param, TaskGroup, task

from seclake_ml.airflow_support import default_task_args
from seclake_ml.operators.drift import DRIFT_ASSET
from seclake_ml.operators.extract import SecurityLakePairsOperator
from seclake_ml.operators.training import (
    ACTIVE_MODEL_ASSET,
    IPInsightsTrainingOperator,
    ModelRolloutOperator,
    PrepareTrainingDataOperator,
    QualityGateOperator,
    ThresholdCalibrationOperator,
)

DAG_ID = "seclake_ipinsights_training"
log = logging.getLogger("seclake_ml.dags.training")

default_args = default_task_args(retries=2)

with DAG(
    dag_id=DAG_ID,
    description="Weekly Security Lake pair extraction for IP Insights training",
    doc_md=__doc__,
    # Weekly, and whenever a scored batch drifted past its bounds (rate-limited by the scoring DAG).
    schedule=AssetOrTimeSchedule(timetable=CronDataIntervalTimetable("0 3 * * 1", timezone="UTC"),
                                 assets=[Asset(DRIFT_ASSET)]),
    start_date=datetime(2022, 1, 3, tzinfo=timezone.utc),  # a Monday, before any Security Lake data
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["seclake_ml", "security-lake", "ip-insights", "training"],
    params={
        "lookback_days": Param(
            7,
            type="integer",
            minimum=1,
            maximum=90,
            title="Look-back (days)",
            description="Days of history to extract, ending at the run's data_interval_end.",
        ),
        "sources": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^[a-z][a-z0-9_]*(:[a-z][a-z0-9_]*)?$"},
            uniqueItems=True,
            title="Sources (optional)",
            description="source[:view] entries that replace the configured ones for this run only.",
        ),
        "hyperparameters": Param(
            {},
            type="object",
            title="IP Insights hyperparameters",
            description="SageMaker-named overrides of the defaults, e.g. {\"epochs\": 3, \"vector_dim\": 64}.",
        ),
        "train_fraction": Param(0.7, type="number", minimum=0.05, maximum=0.95,
                                description="Share of the window, from its start, used for training."),
        "target_fpr": Param(0.01, type="number", exclusiveMinimum=0, exclusiveMaximum=1,
                            description="False-positive rate the threshold is calibrated for."),
        "auc_floor": Param(0.9, type="number", minimum=0, maximum=1,
                           description="The quality gate's minimum calibration AUC."),
        "gate_tolerance": Param(0.01, type="number", minimum=0, maximum=1,
                                description="Allowed AUC drop against the active model on the same sets."),
    },
) as dag:
    with TaskGroup(group_id="extract", tooltip="Security Lake -> (entity, ip) pairs") as extract:

        @task(task_id="plan_extractions")
        def plan_extractions(**context) -> list[dict[str, str]]:
            """Resolve the run's configuration and data window into one entry per (source, view)."""
            from seclake_ml.airflow_support import load_runtime_config
            from seclake_ml.interval import DataInterval
            from seclake_ml.runs import plan_pair_extractions

            params = context["params"]
            events = context.get("triggering_asset_events") or {}
            reasons = [str((e.extra or {}).get("reason")) for evs in events.values() for e in evs
                       if (e.extra or {}).get("reason")]
            if reasons:
                log.warning("retraining triggered by drift: %s", " | ".join(reasons))
            window = DataInterval.lookback_of_run(context, params["lookback_days"])
            cfg = load_runtime_config()
            plan = plan_pair_extractions(cfg, window, params.get("sources"))
            log.info(
                "planned %d extraction(s) for %s on backend=%s: %s",
                len(plan),
                window.label,
                cfg.backend,
                ", ".join(f"{p['source']}:{p['view']}" for p in plan),
            )
            return plan

        pairs = SecurityLakePairsOperator.partial(
            task_id="extract_pairs",
            map_index_template="{{ task.source }}:{{ task.view }}",
        ).expand_kwargs(plan_extractions())

        @task(task_id="summarize_extraction")
        def summarize_extraction(results, **context) -> dict:
            """Log totals per source view, store them as JSON beside the outputs, fail on zero pairs."""
            import json

            from airflow.sdk.exceptions import AirflowFailException

            from seclake_ml.airflow_support import load_runtime_config
            from seclake_ml.interval import DataInterval
            from seclake_ml.locations import run_summary_location
            from seclake_ml.runs import format_summary, summarize_extractions, write_text

            results = [r for r in results[:] if r]  # one slice read of the mapped results
            summary = summarize_extractions(results)
            cfg = load_runtime_config()
            first = summary["extractions"][0] if summary["extractions"] else {}
            start = next((r.get("start") for r in results if r), None)
            end = next((r.get("end") for r in results if r), None)
            summary.update(
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                start=start,
                end=end,
                backend=cfg.backend,
                source_version=cfg.source_version,
            )
            window = DataInterval.parse(start, end) if start and end else None
            location = run_summary_location(cfg, summary["dag_id"], window) if window else None
            if location:
                write_text(location, json.dumps(summary, indent=2, sort_keys=True) + "\n")
                summary["summary_location"] = location
            for line in format_summary(summary):
                log.info("%s", line)
            if summary["totals"]["pairs_written"] == 0:
                raise AirflowFailException(
                    f"no pairs extracted for [{start}, {end}) from {len(summary['extractions'])} source view(s) "
                    f"(first: {first.get('source')}/{first.get('view')}); nothing to train on. Check the lake "
                    "for data in this window and the accounts/regions/source_version settings."
                )
            # Small, XCom-safe: what later training steps need to find their input.
            from seclake_ml.handoff import Extraction

            return Extraction(
                window=window,
                pairs={f"{r['source']}:{r['view']}": r["output"] for r in summary["extractions"]},
                pairs_written=summary["totals"]["pairs_written"],
                summary_location=location,
            ).to_xcom()

        extraction = summarize_extraction(pairs.output)

    prepared = PrepareTrainingDataOperator(
        task_id="prepare_training_data",
        extraction=extraction,
        train_fraction="{{ params.train_fraction }}",
    )
    trained = IPInsightsTrainingOperator(
        task_id="train_ipinsights",
        data=prepared.output,
        hyperparameters="{{ params.hyperparameters | tojson }}",
        execution_timeout=timedelta(hours=6),
    )
    calibrated = ThresholdCalibrationOperator(
        task_id="calibrate_threshold",
        model=trained.output,
        data=prepared.output,
        target_fpr="{{ params.target_fpr }}",
    )
    gate = QualityGateOperator(
        task_id="quality_gate",
        calibration=calibrated.output,
        auc_floor="{{ params.auc_floor }}",
        tolerance="{{ params.gate_tolerance }}",
    )
    ModelRolloutOperator(
        task_id="rollout_model",
        gate=gate.output,
        model=trained.output,
        calibration=calibrated.output,
        outlets=[Asset(ACTIVE_MODEL_ASSET)],
    )
