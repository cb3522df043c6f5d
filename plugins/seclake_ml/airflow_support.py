"""Glue between Airflow and the engine: run-time config, data windows, output locations, callbacks.

Everything here is cheap to import (standard library plus ``seclake_ml.config``): DAG files import this
module while the scheduler parses them. Airflow itself and any heavy library are imported inside the
functions that need them, at task run time.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from seclake_ml.config import RETRY_DELAY_ENV, VARIABLE_KEY, SeclakeConfig, load_config  # noqa: F401
from seclake_ml.pairs import DROP_REASONS  # the one drop-reason vocabulary

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.parquet"
SUMMARY_FILE = "extract_summary.json"

# A retry only helps with transient faults (throttling, a worker lost mid-query); keep the delay short
# in local runs through this environment variable, long enough in production to ride out throttling.
DEFAULT_RETRY_DELAY = timedelta(minutes=5)


# --------------------------------------------------------------------------------------- config
def read_config_variable(key: str = VARIABLE_KEY) -> str | None:
    """The JSON text of the Airflow Variable ``key``, or ``None`` when it is not set.

    Call this at task run time only (never while a DAG file is parsed). Airflow's own lookup order
    applies: secrets backend, ``AIRFLOW_VAR_<KEY>`` environment variable, then the metadata database.
    """
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    if value is None:
        return None
    if not isinstance(value, str):  # a secrets backend may already hand back parsed JSON
        value = json.dumps(value)
    return value if value.strip() else None


def load_runtime_config(overrides: Mapping[str, Any] | None = None) -> SeclakeConfig:
    """The validated configuration for a running task.

    Precedence (highest first): ``overrides``; ``SECLAKE_ML_<FIELD>`` environment variables; the
    Airflow Variable ``seclake_ml_config``, or when that is unset the ``SECLAKE_ML_CONFIG`` environment
    variable; the built-in defaults.

    :param overrides: fields that win over every other source (e.g. an operator's ``config_overrides``).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"config_overrides must be a mapping of config fields, got {type(overrides).__name__}")
    return load_config(overrides, variable_json=read_config_variable())


def retry_delay_from_env(environ: Mapping[str, str] | None = None) -> timedelta:
    """Retry delay for the DAGs' ``default_args``: ``SECLAKE_ML_RETRY_DELAY_SECONDS`` or 5 minutes
    (read by the configuration loader, :func:`seclake_ml.config.retry_delay_seconds`)."""
    from seclake_ml.config import retry_delay_seconds

    seconds = retry_delay_seconds(environ)
    return DEFAULT_RETRY_DELAY if seconds is None else timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------- data window
def to_utc(value: Any, name: str) -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO-8601 string (naive values are taken as UTC).

    :param value: the value to convert.
    :param name: the argument's name, used in error messages.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name}: got {value!r}; expected an ISO-8601 timestamp such as 2024-01-01T00:00:00Z") from None
    else:
        raise ValueError(f"{name}: got {value!r}; expected a datetime or an ISO-8601 timestamp string")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Plain datetime (not pendulum) so values stay JSON-friendly and compare the same everywhere.
    dt = dt.astimezone(timezone.utc)
    return datetime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, tzinfo=timezone.utc)


def resolve_window(
    context: Mapping[str, Any] | None,
    start: Any = None,
    end: Any = None,
) -> tuple[datetime, datetime]:
    """The half-open data window ``[start, end)`` a task works on, in UTC.

    Explicit ``start``/``end`` win; each missing one comes from the run's ``data_interval_start`` /
    ``data_interval_end``. A run without a data interval (manual run of an unscheduled DAG) must pass
    both explicitly.

    :param context: the task context (may be ``None`` when both bounds are given).
    :param start: explicit window start (datetime or ISO-8601 string), optional.
    :param end: explicit window end, optional.
    """
    ctx = context or {}
    if start in (None, ""):
        start = ctx.get("data_interval_start")
    if end in (None, ""):
        end = ctx.get("data_interval_end")
    if start is None or end is None:
        raise ValueError(
            "no data window: this run has no data interval (e.g. a manual run of an unscheduled DAG); "
            "pass start and end explicitly as ISO-8601 timestamps"
        )
    start_dt, end_dt = to_utc(start, "start"), to_utc(end, "end")
    if end_dt <= start_dt:
        raise ValueError(f"empty data window: start {iso(start_dt)} is not before end {iso(end_dt)}")
    return start_dt, end_dt


def lookback_window(end: Any, lookback_days: Any) -> tuple[datetime, datetime]:
    """The window of ``lookback_days`` whole days that ends at ``end``.

    :param end: window end (the run's ``data_interval_end``).
    :param lookback_days: number of days, 1-366.
    """
    try:
        days = int(lookback_days)
    except (TypeError, ValueError):
        raise ValueError(f"lookback_days: got {lookback_days!r}; expected a whole number of days (1-366)") from None
    if isinstance(lookback_days, bool) or not 1 <= days <= 366:
        raise ValueError(f"lookback_days: got {lookback_days!r}; expected a whole number of days (1-366)")
    end_dt = to_utc(end, "end")
    return end_dt - timedelta(days=days), end_dt


def iso(dt: datetime) -> str:
    """``2024-01-01T03:00:00Z`` style text for a UTC datetime."""
    return to_utc(dt, "timestamp").strftime("%Y-%m-%dT%H:%M:%SZ")


def interval_key(start: Any, end: Any) -> str:
    """Path segment naming a data window: ``interval=20240101T030000Z_20240108T030000Z``."""
    s, e = to_utc(start, "start"), to_utc(end, "end")
    return f"interval={s:%Y%m%dT%H%M%SZ}_{e:%Y%m%dT%H%M%SZ}"


# ------------------------------------------------------------------------------------- locations
def _join(base: str, *parts: str) -> str:
    if base.startswith("s3://"):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base).joinpath(*parts))


def work_root(cfg: SeclakeConfig) -> str:
    """The work location as an S3 URI or an absolute local path (relative paths: against the cwd)."""
    if cfg.work_is_s3:
        return cfg.work_location.rstrip("/")
    return str(Path(cfg.work_location).expanduser().resolve())


def pairs_output_location(cfg: SeclakeConfig, source: str, view: str, start: Any, end: Any) -> str:
    """Where one extraction's pairs go, keyed by the data window so a re-run overwrites them.

    Local: ``<work>/pairs/<source>/<view>/interval=<start>_<end>/pairs.parquet`` (one file).
    S3: ``<work>/pairs/<source>/<view>/interval=<start>_<end>/`` (a prefix; the query engine may write
    several objects under it).
    """
    folder = _join(work_root(cfg), "pairs", source, view, interval_key(start, end))
    if cfg.work_is_s3:
        return folder + "/"
    return str(Path(folder) / PAIRS_FILE)


def run_summary_location(cfg: SeclakeConfig, dag_id: str, start: Any, end: Any) -> str:
    """Where a DAG run's extraction summary (JSON) goes, keyed by the data window."""
    return _join(work_root(cfg), "runs", dag_id, interval_key(start, end), SUMMARY_FILE)


def write_text(location: str, text: str, *, aws_conn_id: str | None = "aws_default") -> None:
    """Write ``text`` to a local path (atomically, creating folders) or to an ``s3://`` URI (replacing)."""
    if location.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, _, key = location[len("s3://") :].partition("/")
        S3Hook(aws_conn_id=aws_conn_id).load_string(text, key=key, bucket_name=bucket, replace=True)
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- planning
def plan_pair_extractions(
    cfg: SeclakeConfig,
    start: datetime,
    end: datetime,
    sources: Iterable[str] | None = None,
) -> list[dict[str, str]]:
    """One keyword-argument dict per ``(source, view)`` to extract, for dynamic task mapping.

    :param cfg: the run's configuration; its enabled ``sources`` are used unless ``sources`` is given.
    :param start: window start.
    :param end: window end.
    :param sources: optional ``source[:view]`` list that replaces the configured one for this run.
    """
    from seclake_ml.sources import resolve_source_view

    if sources:
        if isinstance(sources, str):
            sources = [s for s in sources.split(",") if s.strip()]
        pairs = []
        for item in sources:
            try:
                pairs.append(resolve_source_view(item))
            except ValueError as exc:
                raise ValueError(f"param 'sources': {exc}") from None
    else:
        pairs = cfg.source_views()
    seen: dict[tuple[str, str], None] = {}
    for pair in pairs:
        seen.setdefault(pair, None)
    return [
        {"source": source, "view": view, "start": iso(start), "end": iso(end)}
        for source, view in seen
    ]


# -------------------------------------------------------------------------------------- summary
def summarize_extractions(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over the per-``(source, view)`` results returned by :class:`SecurityLakePairsOperator`."""
    items: list[dict[str, Any]] = []
    totals: dict[str, Any] = {"rows_read": 0, "pairs_written": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)}
    seconds = 0.0
    for res in results:
        if not res:
            continue
        dropped = {k: int(v) for k, v in dict(res.get("dropped") or {}).items()}
        for reason, n in dropped.items():
            totals["dropped"][reason] = totals["dropped"].get(reason, 0) + n
        totals["rows_read"] += int(res.get("rows_read") or 0)
        totals["pairs_written"] += int(res.get("pairs_written") or 0)
        seconds += float(res.get("seconds") or 0.0)
        items.append(
            {
                "source": res.get("source"),
                "view": res.get("view"),
                "rows_read": int(res.get("rows_read") or 0),
                "pairs_written": int(res.get("pairs_written") or 0),
                "dropped": dropped,
                "duplicates_removed": int(res.get("duplicates_removed") or 0),
                "files_scanned": int(res.get("files_scanned") or 0),
                "missing_columns": list(res.get("missing_columns") or []),
                "quarantined": list(res.get("quarantined") or []),
                "output": res.get("output"),
                "seconds": round(float(res.get("seconds") or 0.0), 3),
            }
        )
    items.sort(key=lambda r: (str(r["source"]), str(r["view"])))
    totals["dropped_total"] = sum(totals["dropped"].values())
    totals["seconds"] = round(seconds, 3)
    return {"extractions": items, "totals": totals}


def describe_quarantined(item: Any) -> str:
    """``path (reason)`` for one quarantined lake object as reported by the extraction engine."""
    if isinstance(item, Mapping):
        return f"{item.get('path', '?')} ({item.get('reason', 'no reason given')})"
    return str(item)


def format_summary(summary: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for a run summary (as written by the training DAG's summary task)."""
    lines = []
    head = f"data window [{summary.get('start')}, {summary.get('end')})"
    if summary.get("dag_id"):
        head = f"{summary['dag_id']} run {summary.get('run_id', '?')}: {head}"
    lines.append(head)
    if summary.get("backend"):
        lines.append(f"backend={summary['backend']} source_version={summary.get('source_version')}")
    for r in summary.get("extractions", []):
        drops = ", ".join(f"{k}={v}" for k, v in sorted(r["dropped"].items()) if v) or "none"
        lines.append(
            f"  {r['source']}/{r['view']}: {r['rows_read']} rows read -> {r['pairs_written']} pairs "
            f"(dropped: {drops}) in {r['seconds']:.2f}s"
        )
        if r.get("quarantined"):
            shown = ", ".join(describe_quarantined(q) for q in r["quarantined"][:5])
            lines.append(f"    quarantined ({len(r['quarantined'])}): {shown}")
        if r.get("missing_columns"):
            lines.append(f"    columns absent from the lake, read as NULL: {', '.join(r['missing_columns'])}")
        lines.append(f"    -> {r['output']}")
    t = summary.get("totals", {})
    lines.append(
        f"total: {t.get('rows_read', 0)} rows read, {t.get('pairs_written', 0)} pairs written, "
        f"{t.get('dropped_total', 0)} dropped, {t.get('seconds', 0.0):.2f}s extracting"
    )
    return lines


def print_latest_summary(work_location: str, dag_id: str = "seclake_ipinsights_training") -> int:
    """Print the most recently written local run summary under ``work_location``; 1 if there is none."""
    runs = Path(work_location) / "runs" / dag_id
    found = sorted(runs.glob(f"interval=*/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        print(f"no run summary under {runs}")
        return 1
    summary = json.loads(found[-1].read_text(encoding="utf-8"))
    for line in format_summary(summary):
        print(line)
    print(f"summary file: {found[-1]}")
    for line in format_training_outcome(work_location, found[-1].parent.name):
        print(line)
    return 0


def format_training_outcome(work_location: str, interval_dir: str) -> list[str]:
    """Lines on the model trained for ``interval_dir``: AUC, threshold, activation, report location."""
    work = Path(work_location)
    cal_dir = work / "training" / "calibration" / interval_dir
    metrics_path = cal_dir / "metrics.json"
    if not metrics_path.is_file():
        return ["model: no calibration for this interval (training did not run or did not finish)"]
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    thr = metrics.get("threshold") or {}
    lines = [
        f"calibration AUC {metrics.get('roc_auc', float('nan')):.4f} "
        + " ".join(f"[{k} {v:.4f}]" for k, v in sorted((metrics.get("roc_auc_by_kind") or {}).items())),
        *([("calibration AUC by component (held-out half of the sets): "
            + ", ".join(f"{k} {v.get('roc_auc', float('nan')):.4f}" for k, v in metrics["components"].items()))]
          if metrics.get("components") else []),
        *([f"score combination not deployed: {metrics['combiner_declined']}"] if metrics.get("combiner_declined") else []),
        f"threshold {thr.get('value', float('nan')):.4f} ("
        + ("combined log-odds of dot_product and entity history" if metrics.get("combiner") else "anomaly score = -dot_product")
        + f"; {thr.get('method')}"
        + (f", target FPR {thr.get('target_fpr')}" if thr.get("target_fpr") is not None else "")
        + f"): precision {thr.get('precision', 0):.3f}, recall {thr.get('recall', 0):.3f}, FPR {thr.get('fpr', 0):.4f}",
    ]
    active_path = work / "models" / "ipinsights" / "active.json"
    active = json.loads(active_path.read_text(encoding="utf-8")) if active_path.is_file() else None
    key = interval_dir.removeprefix("interval=")
    if active and active.get("report", "").find(key) >= 0:
        lines.append(f"model {active['version']} ACTIVATED (previous: {active.get('previous_version')}); {active_path}")
    else:
        lines.append(
            "model for this interval NOT activated (quality gate rejected it; see the quality_gate log); active: "
            + (active["version"] if active else "none")
        )
    lines.append(f"calibration report: {cal_dir / 'report.html'}")
    return lines


# ------------------------------------------------------------------------------------- callbacks
def default_task_args(retries: int = 2) -> dict[str, Any]:
    """``default_args`` of the package's DAGs: owner, retries with exponential backoff, failure log."""
    return {
        "owner": "security-analytics",
        "retries": retries,
        "retry_delay": retry_delay_from_env(),
        "retry_exponential_backoff": 2.0,
        "on_failure_callback": on_task_failure,
    }


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Failure callback: one log line naming the task, the run, its data interval and the error."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    window = f"[{iso(start)}, {iso(end)})" if start is not None and end is not None else "none"
    map_index = getattr(ti, "map_index", -1)
    log.error(
        "seclake_ml task failed: dag=%s task=%s%s try=%s run=%s data_interval=%s error=%r "
        "(fix the cause, then clear this task for the same run: outputs are keyed by the data interval "
        "and are overwritten)",
        getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        f"[{map_index}]" if map_index not in (None, -1) else "",
        getattr(ti, "try_number", "?"),
        getattr(dag_run, "run_id", None) or context.get("run_id", "?"),
        window,
        context.get("exception"),
    )
