"""Operators of the CloudTrail risk training DAG: fit → gate → roll out.

Constructors are cheap and offline; the engine (:mod:`seclake_ml.risk`) is imported in ``execute``.
Each task hands the next one a small JSON dict. The fit is keyed by the data interval (model version
``risk-<start>-<end>``), so re-running or backfilling a week replaces that week's candidate.

The events are read from the local lake (DuckDB); the aws backend's Athena query for these events is
not built yet, so on ``backend: aws`` the fit task fails at once with a message saying so, instead of
reading nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from seclake_ml.links import REPORT_URL_KEY, CalibrationReportLink, report_url

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        import json

        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected the upstream task's summary (a JSON object), got {type(value).__name__}")
    return value


class _RiskOperator(BaseOperator):
    def __init__(self, *, config_overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_overrides = config_overrides

    def runtime_config(self) -> Any:
        from seclake_ml.airflow_support import load_runtime_config

        cfg = load_runtime_config(dict(self.config_overrides) if self.config_overrides else None)
        if cfg.backend != "local":
            raise ValueError(f"risk scoring reads CloudTrail events from a local lake; backend {cfg.backend!r} "
                             "is not supported by the risk DAG yet (its Athena query is not built)")
        return cfg


class RiskFitOperator(_RiskOperator):
    """Read the window's CloudTrail events and their history, fit both risk models, write the report.

    :param start: inclusive window start (templated, e.g. the run's look-back start).
    :param end: exclusive window end (templated).
    :param lookback_days: days of history per event (``None``: ``extra.risk.lookback_days``).
    """

    template_fields: Sequence[str] = ("start", "end", "lookback_days", "config_overrides")
    operator_extra_links = (CalibrationReportLink(),)

    def __init__(self, *, start: Any, end: Any, lookback_days: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.lookback_days = lookback_days

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        from seclake_ml.airflow_support import iso, to_utc
        from seclake_ml.risk import engine, service
        from seclake_ml.risk.report import write_report
        from seclake_ml.risk.store import save_version, store_root, version_for_interval

        cfg = self.runtime_config()
        start, end = to_utc(self.start, "start"), to_utc(self.end, "end")
        settings = service.settings_of(cfg)
        if self.lookback_days not in (None, "", "None"):
            settings = engine.RiskSettings(int(self.lookback_days), settings.min_labels, settings.catalog_path)
        labels = service.latest_labels(cfg)
        version = version_for_interval(start, end)
        log.info("fitting %s on [%s, %s) with %d labels in the store", version, iso(start), iso(end), len(labels))
        result = engine.fit(cfg, start, end, labels, version, settings, geo=service.geo_of(cfg))
        root = store_root(service.work_root(cfg))
        files = {}
        if result.supervised:
            files = {"linear.json": json.dumps(result.linear.to_json()), "boosted.txt": result.boosted.to_text()}
        decision = service.gate(root, result)
        folder = save_version(root, version, result.manifest(settings) | {"gate": decision.to_dict()}, files)
        report = write_report(result, folder / "report")
        context["ti"].xcom_push(key=REPORT_URL_KEY, value=report_url(report["html"], cfg.region))
        out = {"version": version, "start": iso(start), "end": iso(end), "supervised": result.supervised,
               "events": result.events, "labels_used": result.labels_matched,
               "labels_available": result.labels_available, "metrics": result.metrics,
               "gate": decision.to_dict(), "report": report["html"], "chart": report.get("chart")}
        for name in ("linear", "boosted"):
            if name in result.metrics:
                m = result.metrics[name]
                log.info("%s: R² %.3f RMSE %.2f MAE %.2f on %d test events", name, m["r2"], m["rmse"], m["mae"], m["rows"])
        log.info("report: %s", report["html"])
        return out


class RiskGateOperator(_RiskOperator):
    """Pass the candidate when it is no worse than the active model on the same test split.

    A held candidate returns ``passed: false``; the rollout is then skipped and the active model stays.
    """

    template_fields: Sequence[str] = ("fit", "config_overrides")

    def __init__(self, *, fit: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit = fit

    def execute(self, context: Context) -> dict[str, Any]:
        fit = _mapping(self.fit, "fit")
        gate = dict(fit["gate"])
        if gate["passed"]:
            log.info("gate passed for %s: %s", fit["version"], gate["reason"])
        else:
            log.warning("gate held %s: %s -- rollout will be skipped; the active model stays", fit["version"], gate["reason"])
        return {"version": fit["version"], **gate}


class RiskRolloutOperator(_RiskOperator):
    """Activate the candidate the gate passed (skipped when it was held)."""

    template_fields: Sequence[str] = ("decision", "config_overrides")

    def __init__(self, *, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from seclake_ml.risk import service
        from seclake_ml.risk.store import activate, store_root

        decision = _mapping(self.decision, "decision")
        if not decision.get("passed"):
            raise AirflowSkipException(f"gate held {decision.get('version')}: {decision.get('reason')}")
        cfg = self.runtime_config()
        record = activate(store_root(service.work_root(cfg)), decision["version"], decision["reason"])
        log.info("active risk model is now %s", record["version"])
        return record


class RiskScoreBatchOperator(BaseOperator):
    """Risk-score the CloudTrail objects of a scoring batch with the active risk model; write findings.

    Runs after the IP Insights scoring of the same batch (same manifest, same findings writer). Objects
    already risk-scored by an earlier attempt (``<work>/scoring/batches/<id>/risk.json``) are skipped.
    Without an active risk model the unsupervised score is used. On the aws backend this task is
    skipped with a warning: the risk engine reads the lake locally only for now.

    :param batch: the upstream scoring task's summary (``batch_id``). Templated.
    """

    template_fields: Sequence[str] = ("batch", "config_overrides")

    def __init__(self, *, batch: Any, config_overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.config_overrides = config_overrides

    def execute(self, context: Context) -> dict[str, Any]:
        import json
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from seclake_ml import __version__
        from seclake_ml.airflow_support import load_runtime_config
        from seclake_ml.risk import service
        from seclake_ml.risk.batch import done_record, score_objects
        from seclake_ml.scoring.ledger import Ledger
        from seclake_ml.scoring.service import findings_location, work_store
        from seclake_ml.scoring.stores import LogPublisher, store_for

        batch = _mapping(self.batch, "batch")
        batch_id = batch.get("batch_id")
        if not batch_id:
            raise ValueError(f"batch: expected the scoring task's summary with a batch_id, got {str(batch)[:200]}")
        cfg = load_runtime_config(dict(self.config_overrides) if self.config_overrides else None)
        if cfg.backend != "local":
            raise AirflowSkipException("CloudTrail risk scoring reads the lake locally only; on the aws backend "
                                       "this batch's CloudTrail objects are not risk-scored (IP Insights findings are)")
        store = work_store(cfg)
        manifest = Ledger(store).manifest(batch_id)
        keys = [o["key"] for o in manifest.get("objects", []) if isinstance(o, Mapping) and o.get("key")]
        progress = done_record(store, batch_id)
        model = service.active_model(cfg)

        def mark(key: str, findings: int) -> None:
            progress["done"][key] = findings
            store.put_bytes(f"scoring/batches/{batch_id}/risk.json", json.dumps(progress, indent=1).encode())

        res = score_objects(
            cfg, keys, model, sink=store_for(findings_location(cfg)),
            publisher=LogPublisher(Path(service.work_root(cfg)) / "scoring" / "alerts" / "severe.jsonl"),
            done=set(progress["done"]), product_version=__version__, top=cfg.risk.top_findings,
            geo=service.geo_of(cfg), on_object_done=mark,
        )
        self.log.info("batch %s: risk model %s (%s): %d CloudTrail objects (%d already done), %d events, "
                      "%d findings %s, %d published, %.2fs", batch_id, res.model_version,
                      "supervised" if res.supervised else "unsupervised", res.objects, res.skipped_done,
                      res.events, res.findings, res.severity, res.published, res.seconds)
        for q in res.quarantined:
            self.log.warning("quarantined %s: %s", q["path"][-200:], q["reason"][:200])
        for t in res.top:
            self.log.info("risk %5.1f %s %s %s from %s [%s]: %s", t["risk"], t["time"][:19], t["principal"][:120],
                          t["operation"][:80], t["source_ip"][:64], t["result"][:60], str(t["why"])[:300])
        out = res.to_dict()
        out["batch_id"] = batch_id
        out["files"] = out["files"][:200]
        return out
