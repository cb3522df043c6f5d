"""Training runs: the plan of pair extractions, their summary, and its human-readable form.

No Airflow at import time: the training DAG's tasks and ``make run`` (through
:func:`print_latest_summary`) call these. Writing a summary to S3 goes through the provider's S3 hook,
imported when used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from seclake_ml.interval import KEY_PREFIX
from seclake_ml.locations import SUMMARY_FILE
from seclake_ml.pairs import DROP_REASONS  # the one drop-reason vocabulary
from seclake_ml.uris import is_s3, split_s3_uri

if TYPE_CHECKING:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.interval import DataInterval


# ------------------------------------------------------------------------------------- planning
def plan_pair_extractions(
    cfg: SeclakeConfig,
    window: DataInterval,
    sources: Iterable[str] | None = None,
) -> list[dict[str, str]]:
    """One keyword-argument dict per ``(source, view)`` to extract, for dynamic task mapping.

    :param cfg: the run's configuration; its enabled ``sources`` are used unless ``sources`` is given.
    :param window: the data interval to extract.
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
        {"source": source, "view": view, **window.to_xcom()}
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
    found = sorted(runs.glob(f"{KEY_PREFIX}*/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime)
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
    key = interval_dir.removeprefix(KEY_PREFIX)
    if active and active.get("report", "").find(key) >= 0:
        lines.append(f"model {active['version']} ACTIVATED (previous: {active.get('previous_version')}); {active_path}")
    else:
        lines.append(
            "model for this interval NOT activated (quality gate rejected it; see the quality_gate log); active: "
            + (active["version"] if active else "none")
        )
    lines.append(f"calibration report: {cal_dir / 'report.html'}")
    return lines


# -------------------------------------------------------------------------------------- writing
def write_text(location: str, text: str, *, aws_conn_id: str | None = "aws_default") -> None:
    """Write ``text`` to a local path (atomically, creating folders) or to an ``s3://`` URI (replacing)."""
    if is_s3(location):
        from seclake_ml.aws.clients import s3_hook

        bucket, key = split_s3_uri(location, "summary location", require_key=True)
        s3_hook(None, aws_conn_id).load_string(text, key=key, bucket_name=bucket, replace=True)
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


