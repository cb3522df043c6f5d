"""Run threshold calibration for the training DAG (local and aws), and re-score sets for the gate.

The engine (:mod:`seclake_ml.ipinsights.calibration`) builds the sets and picks the threshold; this
module reads the interval's training and held-out pairs, keeps the sets it scored on disk (so the
quality gate can score the active model on exactly the same pairs), renders the report and returns a
small JSON summary. It does not import Airflow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_NORMAL = 100_000


def _read_pairs(path: str) -> Any:
    import pandas as pd

    return pd.read_parquet(path, columns=["entity", "ip", "event_time"])


def _summary(res: Any, out: Path, report_html: str | None, mode: str, target_fpr: float) -> dict[str, Any]:
    thr = res.threshold
    return {
        "auc": float(res.auc),
        "auc_by_kind": {k: float(v) for k, v in res.auc_by_kind.items()},
        "threshold": float(thr.value),
        "threshold_mode": mode,
        "target_fpr": target_fpr if mode == "target_fpr" else None,
        "precision": float(thr.precision or 0.0),
        "recall": float(thr.recall or 0.0),
        "fpr": float(thr.fpr or 0.0),
        "counts": res.counts,
        "normal_set": str(out / "normal.parquet"),
        "abnormal_set": str(out / "abnormal.parquet"),
        "report_dir": str(out),
        "report_html": report_html or "",
    }


def _render(res: Any, out: Path, title: str) -> str | None:
    """Write metrics JSON, PNGs and the HTML page; returns the HTML path."""
    (out / "metrics.json").write_text(json.dumps(res.metrics(), indent=2, default=float) + "\n", encoding="utf-8")
    from seclake_ml.ipinsights import report

    html = report.write_report(res, out, title=title)
    return str(html)


def calibrate_local(*, model_dir: str, train: str, holdout: str, out_dir: str, mode: str = "target_fpr",
                    target_fpr: float = 0.01, seed: int = 0) -> dict[str, Any]:
    """Calibrate the model in ``model_dir`` on sets built from ``train``/``holdout`` pairs files."""
    from seclake_ml.ipinsights.calibration import build_calibration_sets, calibrate
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_df, hold_df = _read_pairs(train), _read_pairs(holdout)
    normal, abnormal = build_calibration_sets(train_df, hold_df, n_normal=MAX_NORMAL, seed=seed)
    normal.to_parquet(out / "normal.parquet", index=False)
    abnormal.to_parquet(out / "abnormal.parquet", index=False)
    scorer = IPInsightsScorer.load(model_dir)
    res = calibrate(scorer, normal, abnormal, target_fpr=target_fpr if mode == "target_fpr" else None)
    res.threshold.save(out / "threshold.json")
    html = _render(res, out, title=f"IP Insights calibration: {Path(model_dir).name}")
    log.info("calibration sets: %d normal, %d abnormal; counts %s", len(normal), len(abnormal), res.counts)
    return _summary(res, out, html, mode, target_fpr)


def auc_on_sets(scorer: Any, normal_path: str, abnormal_path: str) -> float:
    """ROC AUC of ``scorer`` on stored calibration sets (anomaly score = ``-dot_product``)."""
    import pandas as pd

    from seclake_ml.ipinsights.calibration import calibrate

    res = calibrate(scorer, pd.read_parquet(normal_path), pd.read_parquet(abnormal_path), target_fpr=None)
    return float(res.auc)


def score_sets_auc(cfg: Any, active: dict[str, Any], calibration: dict[str, Any], *, aws_conn_id: str | None = None) -> float | None:
    """AUC of the active model on the candidate's calibration sets (``None`` if it cannot be scored)."""
    if cfg.backend == "aws":
        from seclake_ml.aws.transform import active_model_auc

        return active_model_auc(cfg, active, calibration, aws_conn_id=aws_conn_id)
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    model_dir = active.get("model_dir")
    if not model_dir or not Path(model_dir).is_dir():
        log.warning("active model folder %s is missing; comparing against the floor only", model_dir)
        return None
    try:
        return auc_on_sets(IPInsightsScorer.load(model_dir), calibration["normal_set"], calibration["abnormal_set"])
    except ValueError as exc:  # e.g. the active model knows none of the candidate's entities
        log.warning("active model %s could not be scored on the candidate's sets: %s", active.get("version"), exc)
        return None


def calibrate_aws(op: Any, context: Any, cfg: Any, *, model: dict[str, Any], data: dict[str, Any], out_dir: str,
                  mode: str, target_fpr: float, seed: int) -> dict[str, Any]:
    """aws backend: build the sets from the S3 channels, score them with Batch Transform, calibrate."""
    from seclake_ml.aws.transform import calibrate_with_batch_transform

    return calibrate_with_batch_transform(op, context, cfg, model=model, data=data, out_prefix=out_dir + "/",
                                          mode=mode, target_fpr=target_fpr, seed=seed)
