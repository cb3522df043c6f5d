"""The local backend: DuckDB over a lake folder, the package's IP Insights engine, a folder model store.

Nothing here waits for anything: every step runs in the worker and returns its record.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from seclake_ml.config import SeclakeConfig
from seclake_ml.handoff import Activation, Calibration, PreparedData, TrainedModel
from seclake_ml.interval import DataInterval
from seclake_ml.locations import training_dir

log = logging.getLogger(__name__)


def calibration_record(window: DataInterval, version: str, summary: Mapping[str, Any]) -> Calibration:
    """The :class:`Calibration` of a calibration summary (:mod:`seclake_ml.calibration_runner`)."""
    main = {"auc", "threshold", "threshold_rule", "threshold_mode", "target_fpr", "normal_set", "abnormal_set",
            "report_html", "components", "combiner", "score_reference"}
    return Calibration(
        window=window, version=version, auc=float(summary["auc"]), threshold=dict(summary["threshold_rule"]),
        threshold_mode=str(summary["threshold_mode"]), normal_set=str(summary["normal_set"]),
        abnormal_set=str(summary["abnormal_set"]), report_uri=summary.get("report_html") or None,
        target_fpr=summary.get("target_fpr"), components=dict(summary.get("components") or {}),
        combiner=summary.get("combiner"), score_reference=summary.get("score_reference"),
        details={k: v for k, v in summary.items() if k not in main},
    )


def compact_combiner(combiner: Mapping[str, Any]) -> dict[str, Any]:
    """The score combiner as the active record keeps it (its fit details stay in the report)."""
    return {k: v for k, v in combiner.items() if k not in ("fit", "score")}


def record_metrics(calibration: Calibration) -> dict[str, Any]:
    """The calibration figures an active record keeps."""
    rule = calibration.threshold
    return {"auc": calibration.auc, "precision": rule.get("precision"), "recall": rule.get("recall"),
            "fpr": rule.get("fpr"), "threshold_mode": calibration.threshold_mode, "target_fpr": calibration.target_fpr}


@dataclass(frozen=True)
class Backend:
    """The embedded default."""

    cfg: SeclakeConfig
    aws_conn_id: str | None = None
    name: str = "local"
    #: the IP Insights model runs in this process (the package's engine), so any step may score with it
    scores_in_process: bool = True

    # --------------------------------------------------------------------------------- the lake
    @property
    def local_lake_root(self) -> str | None:
        return self.cfg.lake_root

    def lake_label(self) -> str:
        return self.cfg.lake_root

    def extract_pairs(self, source: str, view: str, start: datetime, end: datetime, out: str) -> Any:
        """Write the window's pairs to the Parquet file ``out`` (atomically; the extraction also
        replaces or removes the quarantine list of an earlier run beside it)."""
        from seclake_ml.lake.duck import DuckDBLake

        root = Path(self.cfg.lake_root).expanduser()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise ValueError(f"lake_root {self.cfg.lake_root}: {what}; point --root (or lake_root) at the local lake")
        path = Path(out)
        if path.suffix != ".parquet":
            raise ValueError(f"out: got {out!r}; a local output must be a .parquet file path")
        result = DuckDBLake(self.cfg).extract(source, view, start, end, str(path))
        if not path.is_file():
            raise RuntimeError(f"extraction reported success but wrote no file at {path}")
        return result

    def scoring_site(self) -> Any:
        """Where scoring reads the active model and the lake and writes findings (:mod:`seclake_ml.scoring.sites`)."""
        from seclake_ml.scoring.sites import LocalSite

        return LocalSite(self.cfg)

    def read_events(self, start: datetime, end: datetime, keys: list[str] | None) -> Any:
        from seclake_ml.risk.events import read_events_local

        return read_events_local(self.cfg, start, end, keys)

    # ------------------------------------------------------------------------------- training
    def _store(self) -> Any:
        from seclake_ml.model_store import ipinsights_store

        return ipinsights_store(self.cfg)

    def prepare(self, window: DataInterval, inputs: Sequence[str], train_fraction: float) -> PreparedData:
        from seclake_ml.feedback.training import training_feedback
        from seclake_ml.training_data import combine_and_split

        out_dir = Path(training_dir(self.cfg, "data", window))
        feedback = training_feedback(self.cfg, window)
        res = combine_and_split(list(inputs), out_dir, start=window.start, end=window.end,
                                train_fraction=float(train_fraction), dedupe=self.cfg.dedupe,
                                memory_limit=self.cfg.duckdb_memory, exclude=feedback.exclude)
        # The labelled pairs join the calibration sets (calibrate reads them from here).
        labelled = {}
        for name in ("benign", "malicious"):
            frame = getattr(feedback, name)
            path = out_dir / f"labelled_{name}.parquet"
            frame.to_parquet(path, index=False)
            labelled[name] = str(path)
        return PreparedData(
            window=window, backend=self.name, train_uri=res.train, holdout_uri=res.holdout or None,
            train_rows=int(res.train_rows), holdout_rows=int(res.holdout_rows), split_time=res.split_time,
            details={"train_entities": res.train_entities, "inputs": res.inputs,
                     "duplicates_removed": res.duplicates_removed, "feedback": dict(feedback.counts),
                     "feedback_excluded_rows": res.feedback_excluded, "labelled": labelled},
        )

    def train(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
              seed: int, deferrable: bool) -> TrainedModel:
        """Fit the engine (PyTorch, CUDA when available) and put the model and its entity profile in the store."""
        from seclake_ml.ipinsights.trainer import IPInsights
        from seclake_ml.scoring.profile import PROFILE_FILE, build_profile

        version = window.model_version()
        hp = dict(hyperparameters)
        t0 = time.perf_counter()
        model = IPInsights(hp, seed=int(seed)).fit(data.train_uri)
        with tempfile.TemporaryDirectory(prefix="seclake-model-") as tmp:
            model.save(tmp, training_interval=window.to_xcom())
            # The entity profile (distinct training pairs) explains the scoring DAG's findings.
            profile = build_profile([data.train_uri], str(Path(tmp) / PROFILE_FILE))
            model_dir = self._store().put(version, tmp)
        history = [e.to_dict() for e in getattr(model, "history_", [])]
        last = history[-1] if history else {}
        return TrainedModel(
            window=window, backend=self.name, version=version, model_uri=str(model_dir), hyperparameters=hp,
            train_rows=data.train_rows, profile_uri=str(Path(model_dir) / PROFILE_FILE),
            details={"epochs": len(history), "final_loss": last.get("loss"),
                     "samples_per_second": last.get("samples_per_second"),
                     "device": getattr(model, "device_", None) and str(model.device_),
                     "seconds": round(time.perf_counter() - t0, 2),
                     "profile": {k: profile.get(k) for k in ("entities", "pairs", "events")}},
        )

    def train_complete(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
                       event: Any) -> TrainedModel:
        raise RuntimeError("the local backend trains in the worker and never defers")

    def calibrate(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                  seed: int, deferrable: bool = False) -> Calibration:
        from seclake_ml.calibration_runner import calibrate_local

        if not data.holdout_uri:
            raise ValueError(f"no held-out pairs for {data.window.label}: nothing at or after the split time "
                             f"{data.split_time}, so there is nothing to calibrate on")
        labelled = data.details.get("labelled") or {}
        summary = calibrate_local(model_dir=model.model_uri, train=data.train_uri, holdout=data.holdout_uri,
                                  out_dir=training_dir(self.cfg, "calibration", model.window), mode=mode,
                                  target_fpr=float(target_fpr), seed=int(seed),
                                  labelled_benign=labelled.get("benign"), labelled_malicious=labelled.get("malicious"))
        return calibration_record(model.window, model.version, summary)

    def calibrate_complete(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                           seed: int, event: Any) -> Calibration:
        raise RuntimeError("the local backend calibrates in the worker and never defers")

    # ---------------------------------------------------------------------------- the registry
    def active(self) -> dict[str, Any] | None:
        return self._store().active()

    def active_auc(self, active: Mapping[str, Any], calibration: Calibration) -> float | None:
        from seclake_ml.calibration_runner import local_active_auc

        return local_active_auc(active, calibration.normal_set, calibration.abnormal_set)

    def activate(self, model: TrainedModel, calibration: Calibration, deferrable: bool) -> Activation:
        extra: dict[str, Any] = {"report": calibration.report_uri, "threshold_rule": calibration.threshold,
                                 "score_reference": calibration.score_reference}
        if calibration.combiner:
            extra["combiner"] = compact_combiner(calibration.combiner)
        record = self._store().activate(
            model.version, threshold=calibration.threshold_value, metrics=record_metrics(calibration),
            interval=(model.window.start_iso, model.window.end_iso), extra=extra,
        )
        return Activation(backend=self.name, version=model.version, threshold=calibration.threshold_value,
                          previous_version=record.get("previous_version"))

    def activate_complete(self, model: TrainedModel, calibration: Calibration, event: Any,
                          started: Mapping[str, Any] | None = None) -> Activation:
        raise RuntimeError("the local backend activates in the worker and never defers")
