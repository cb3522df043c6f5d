"""Fit and apply CloudTrail risk models: the package's risk engine, no Airflow.

* :func:`fit_frame` takes the feature frame of a training window
  (:func:`seclake_ml.risk.service.load_window` reads it), joins the analysts' latest labels, splits
  the labelled events in time (70 % / 30 %), fits the linear baseline and the boosted model, and
  returns a :class:`FitResult` with their test metrics.
* :class:`RiskModel` applies a stored model (or none: the unsupervised score) to a window's events;
  every event gets ``risk_score`` 0-100, ``is_outlier``, ``probable_cause`` and its top contributions.

Which score is the risk: below ``min_labels`` labelled events (or without a model) the unsupervised
combination (:mod:`seclake_ml.risk.combine`); at or above it the boosted model, which takes the
unsupervised score as one of its (monotone) inputs, floored by the unsupervised score
(``combination: floor``, the default): labels teach the model what analysts have seen, and behaviour
that no label covered is never ranked below its novelty. Novelty fades by itself (an operation
repeated by a principal is no longer new in the next batch), so the floor's false positives do not
recur. ``combination: supervised`` makes the boosted model's score the risk alone.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

import numpy as np

from seclake_ml.risk import combine, outliers
from seclake_ml.risk.models import (
    BOOSTED_FEATURES, BoostedModel, LinearBaseline, regression_metrics, residuals_by_group, time_split,
)  # fmt: skip

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_DAYS = 14
DEFAULT_MIN_LABELS = 200
GATE_TOLERANCE = 0.02
# How a supervised model's score and the unsupervised score make the risk: "floor" = the larger of the
# two (labels rank what analysts have seen; behaviour no label covered is never scored below its
# novelty), "supervised" = the supervised model alone.
COMBINATIONS = ("floor", "supervised")
EXPLAIN_MIN_RISK = 30.0  # events at or above this risk get the boosted model's SHAP values as contributions  # a candidate's test RMSE may exceed the active model's by at most 2 %
OUTPUT_COLUMNS = ("uid", "time", "principal", "source_ip", "operation", "kind", "result", "risk_score",
                  "unsupervised_score", "supervised_score", "is_outlier", "probable_cause", "contributions",
                  "account", "region", "user_agent", "sensitive_category")  # fmt: skip


@dataclass
class RiskSettings:
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    min_labels: int = DEFAULT_MIN_LABELS
    catalog_path: str | None = None
    combination: str = "floor"

    def __post_init__(self) -> None:
        if self.combination not in COMBINATIONS:
            raise ValueError(f"risk combination must be one of {', '.join(COMBINATIONS)}, got {self.combination!r}")
        if type(self.lookback_days) is not int or not 1 <= self.lookback_days <= 366:
            raise ValueError(f"risk lookback_days must be an integer 1..366, got {self.lookback_days!r}")
        if type(self.min_labels) is not int or not 20 <= self.min_labels <= 10_000_000:
            raise ValueError(f"risk min_labels must be an integer 20..10000000, got {self.min_labels!r}")


@dataclass
class FitResult:
    version: str
    start: str
    end: str
    events: int
    labels_available: int
    labels_matched: int
    supervised: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    residuals: list[dict[str, Any]] = field(default_factory=list)
    boosted_params: dict[str, Any] = field(default_factory=dict)
    linear: LinearBaseline | None = None
    boosted: BoostedModel | None = None
    test_frame: Any = None  # labelled test events with y and both predictions (for the report)
    seconds: float = 0.0

    def manifest(self, settings: RiskSettings) -> dict[str, Any]:
        return {
            "kind": "cloudtrail_risk", "interval": {"start": self.start, "end": self.end},
            "events": self.events, "labels_available": self.labels_available, "labels_used": self.labels_matched,
            "supervised": self.supervised, "metrics": self.metrics, "boosted_params": self.boosted_params,
            "features": list(BOOSTED_FEATURES), "lookback_days": settings.lookback_days,
            "min_labels": settings.min_labels, "catalog": settings.catalog_path or "packaged",
            "combination": settings.combination,
            "test_uids_sha256": _uids_digest(self.test_frame),
        }


def _uids_digest(frame: Any) -> str:
    import hashlib

    if frame is None or not len(frame):
        return ""
    return hashlib.sha256("\n".join(sorted(frame["uid"].astype(str))).encode()).hexdigest()


def history_start(start: datetime, lookback_days: int) -> datetime:
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=lookback_days)


def add_unsupervised(frame: Any, lookback_days: int) -> dict[str, np.ndarray]:
    """Adds ``unsupervised``, ``is_outlier`` and ``probable_cause`` to a feature frame; returns the components."""
    score, parts = combine.unsupervised_score(frame)
    frame["unsupervised"] = score
    is_out, causes = outliers.detect(frame, lookback_days)
    frame["is_outlier"] = is_out
    frame["probable_cause"] = causes
    return parts


def fit_frame(frame: Any, start: datetime, end: datetime, labels: Mapping[str, Mapping[str, Any]], version: str,
              settings: RiskSettings | None = None) -> FitResult:
    """Fit both models on the labelled events of a feature frame (the events of ``[start, end)``).

    :param frame: :func:`~seclake_ml.risk.features.build_features`' frame of the window.
    :param labels: latest label per event uid (``risk_score`` 0-100), e.g. ``LabelStore.latest()``;
        labels of other events are ignored (counted as not matched).
    """
    t0 = time.perf_counter()
    settings = settings or RiskSettings()
    add_unsupervised(frame, settings.lookback_days)
    uids = frame["uid"].astype(str).to_numpy()
    y_all = np.array([_score_of(labels.get(u)) for u in uids], dtype=float)
    labelled = ~np.isnan(y_all)
    res = FitResult(version=version, start=start.isoformat(), end=end.isoformat(), events=len(frame),
                    labels_available=len(labels), labels_matched=int(labelled.sum()), supervised=False)
    if res.labels_matched < settings.min_labels:
        log.warning("risk fit: %d labelled events in the window, fewer than min_labels %d: the unsupervised "
                    "score stays the risk", res.labels_matched, settings.min_labels)
        res.seconds = round(time.perf_counter() - t0, 3)
        return res
    lab = frame.loc[labelled].reset_index(drop=True)
    y = y_all[labelled]
    tr, te = time_split(lab)
    train, test = lab.iloc[tr].reset_index(drop=True), lab.iloc[te].reset_index(drop=True)
    res.linear = LinearBaseline().fit(train, y[tr])
    res.boosted = BoostedModel().fit(train, y[tr])
    p_lin, p_gbm = res.linear.predict(test), res.boosted.predict(test)
    res.metrics = {
        "linear": regression_metrics(y[te], p_lin),
        "boosted": regression_metrics(y[te], p_gbm),
        "unsupervised": regression_metrics(y[te], test["unsupervised"].to_numpy()),
        "train_rows": int(len(tr)), "test_rows": int(len(te)),
        "test_start": str(test["time"].min()), "test_end": str(test["time"].max()),
    }
    res.residuals = residuals_by_group(test, y[te], {"linear": p_lin, "boosted": p_gbm})
    res.boosted_params = res.boosted.params
    test = test.assign(y=y[te], pred_linear=p_lin, pred_boosted=p_gbm)
    res.test_frame = test
    res.supervised = True
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _score_of(label: Mapping[str, Any] | None) -> float:
    if not label:
        return float("nan")
    v = label.get("risk_score")
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if 0.0 <= f <= 100.0 else float("nan")


@dataclass
class RiskModel:
    """A stored model (or none) ready to score events."""

    version: str | None
    settings: RiskSettings
    linear: LinearBaseline | None = None
    boosted: BoostedModel | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def supervised(self) -> bool:
        return self.boosted is not None and bool(self.manifest.get("supervised"))

    @classmethod
    def unsupervised(cls, settings: RiskSettings | None = None) -> "RiskModel":
        return cls(version=None, settings=settings or RiskSettings())

    @classmethod
    def load(cls, root: Any, version: str) -> "RiskModel":
        from seclake_ml.risk.store import load_version

        manifest, texts = load_version(root, version)
        settings = RiskSettings(lookback_days=int(manifest.get("lookback_days", DEFAULT_LOOKBACK_DAYS)),
                                combination=str(manifest.get("combination", "floor")),
                                min_labels=int(manifest.get("min_labels", DEFAULT_MIN_LABELS)),
                                catalog_path=None if manifest.get("catalog") in (None, "packaged") else manifest["catalog"])
        linear = LinearBaseline.from_json(json.loads(texts["linear.json"])) if "linear.json" in texts else None
        boosted = BoostedModel.from_text(texts["boosted.txt"], manifest.get("boosted_params", {})) if "boosted.txt" in texts else None
        return cls(version=version, settings=settings, linear=linear, boosted=boosted, manifest=manifest)

    def apply(self, frame: Any) -> Any:
        """Score a feature frame: returns the output table (pandas) with :data:`OUTPUT_COLUMNS`."""
        import pandas as pd

        parts = add_unsupervised(frame, self.settings.lookback_days)
        unsup = frame["unsupervised"].to_numpy()
        if self.supervised and len(frame):
            sup = self.boosted.predict(frame)
            risk = np.maximum(sup, unsup) if self.settings.combination == "floor" else sup
            top = combine.contributions_json(parts)
            # The boosted model's SHAP values cost ~25 µs an event: computed where an analyst will look
            # (risk at or above EXPLAIN_MIN_RISK, and the supervised score is the risk); the routine
            # rest keeps the unsupervised components as its contributions.
            explain = (risk >= EXPLAIN_MIN_RISK) & ~((self.settings.combination == "floor") & (unsup > sup))
            if explain.any():
                rows = np.nonzero(explain)[0]
                contrib = self.boosted.contributions(frame.iloc[rows])[:, :-1]
                names = list(BOOSTED_FEATURES)
                top = top.copy()
                top[rows] = combine.contributions_json({n: contrib[:, i] for i, n in enumerate(names)})
        else:
            sup = np.full(len(frame), np.nan)
            top = combine.contributions_json(parts)
            risk = unsup
        kind = frame["kind"].fillna("").to_numpy()
        result = np.where(kind == "signin", frame["status"].fillna("unknown").to_numpy(), frame["error"].to_numpy())
        out = pd.DataFrame({
            "uid": frame["uid"], "time": frame["time"], "principal": frame["principal"],
            "source_ip": frame["source_ip"], "operation": frame["op"], "kind": frame["kind"],
            "result": np.where(result == "none", "ok", result),
            "risk_score": np.round(risk, 2), "unsupervised_score": np.round(unsup, 2),
            "supervised_score": np.round(sup, 2), "is_outlier": frame["is_outlier"].to_numpy(),
            "probable_cause": frame["probable_cause"],
            "contributions": top,
            "account": frame["account"], "region": frame["region"], "user_agent": frame["user_agent"],
            "sensitive_category": frame["sensitive_category"],
        })
        return out.sort_values(["risk_score", "time"], ascending=[False, True], kind="stable").reset_index(drop=True)
