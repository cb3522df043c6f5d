"""Operators of the CloudTrail risk training DAG: fit → gate → roll out.

Constructors are cheap and offline; the engine (:mod:`seclake_ml.risk`) is imported in ``execute``.
Each task hands the next one a small JSON dict. The fit is keyed by the data interval (model version
``risk-<start>-<end>``), so re-running or backfilling a week replaces that week's candidate.

Events come from the local lake (DuckDB) or, on ``backend: aws``, from the Security Lake Glue table
through Athena (``UNLOAD`` to the work location, read back on the worker); models, reports and labels
live in the work location (a folder, or S3).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from seclake_ml.handoff import decode_mapping
from seclake_ml.links import REPORT_URL_KEY, CalibrationReportLink, report_url
from seclake_ml.operators.base import _ConfiguredOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class RiskFitOperator(_ConfiguredOperator):
    """Read the window's CloudTrail events and their history, fit both risk models, write the report.

    The window is the run's data interval (:meth:`~seclake_ml.interval.DataInterval.from_context`);
    explicit ``start``/``end`` replace its bounds, and ``window_days`` widens it to that many days
    ending at its end.

    :param start: inclusive window start, optional (templated).
    :param end: exclusive window end, optional (templated).
    :param window_days: days of labelled events to fit on, ending at the window's end (templated).
    :param lookback_days: days of history per event (``None``: ``extra.risk.lookback_days``).
    """

    template_fields: Sequence[str] = ("start", "end", "window_days", "lookback_days", "config_overrides")
    operator_extra_links = (CalibrationReportLink(),)

    def __init__(self, *, start: Any = None, end: Any = None, window_days: Any = None, lookback_days: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.window_days = window_days
        self.lookback_days = lookback_days

    def execute(self, context: Context) -> dict[str, Any]:
        import dataclasses

        from seclake_ml.interval import DataInterval
        from seclake_ml.risk import service

        cfg = self.runtime_config()
        window = DataInterval.from_context(context, self.start, self.end)
        if self.start in (None, "") and self.window_days not in (None, "", "None"):
            window = window.lookback(int(self.window_days))
        start, end = window.start, window.end
        settings = service.settings_of(cfg)
        if self.lookback_days not in (None, "", "None"):
            settings = dataclasses.replace(settings, lookback_days=int(self.lookback_days))
        log.info("fitting the risk models on %s (%s backend, %d days of history per event)", window.label,
                 cfg.backend, settings.lookback_days)
        out = service.fit_candidate(cfg, start, end, settings=settings, aws_conn_id=self.aws_conn_id)
        context["ti"].xcom_push(key=REPORT_URL_KEY, value=report_url(out["report"]["html"], cfg.region))
        log.info("%s: %d events, %d of %d labels matched; %s", out["version"], out["events"], out["labels_used"],
                 out["labels_available"], "supervised" if out["supervised"] else "unsupervised (too few labels)")
        for name in ("linear", "boosted"):
            if name in out["metrics"]:
                m = out["metrics"][name]
                log.info("%s: R² %.3f RMSE %.2f MAE %.2f on %d test events", name, m["r2"], m["rmse"], m["mae"], m["rows"])
        log.info("gate: %s (%s); report: %s", "passed" if out["gate"]["passed"] else "held", out["gate"]["reason"],
                 out["report"]["html"])
        return {k: out[k] for k in ("version", "start", "end", "supervised", "events", "labels_used",
                                    "labels_available", "metrics", "gate", "report", "model_dir")}


class RiskGateOperator(_ConfiguredOperator):
    """Pass the candidate when it is no worse than the active model on the same test split.

    A held candidate returns ``passed: false``; the rollout is then skipped and the active model stays.
    """

    template_fields: Sequence[str] = ("fit", "config_overrides")

    def __init__(self, *, fit: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit = fit

    def execute(self, context: Context) -> dict[str, Any]:
        fit = decode_mapping(self.fit, "fit")
        gate = dict(fit["gate"])
        if gate["passed"]:
            log.info("gate passed for %s: %s", fit["version"], gate["reason"])
        else:
            log.warning("gate held %s: %s -- rollout will be skipped; the active model stays", fit["version"], gate["reason"])
        return {"version": fit["version"], **gate}


class RiskRolloutOperator(_ConfiguredOperator):
    """Activate the candidate the gate passed (skipped when it was held)."""

    template_fields: Sequence[str] = ("decision", "config_overrides")

    def __init__(self, *, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from seclake_ml.risk import service
        from seclake_ml.risk.store import activate

        decision = decode_mapping(self.decision, "decision")
        if not decision.get("passed"):
            raise AirflowSkipException(f"gate held {decision.get('version')}: {decision.get('reason')}")
        cfg = self.runtime_config()
        record = activate(service.model_store(cfg, aws_conn_id=self.aws_conn_id), decision["version"], decision["reason"])
        log.info("active risk model is now %s", record["version"])
        return record


class RiskScoreBatchOperator(_ConfiguredOperator):
    """Risk-score the CloudTrail objects of a scoring batch with the active risk model; write findings.

    Runs after the IP Insights scoring of the same batch (same manifest, same findings writer, same
    publisher: SNS on aws when ``extra.scoring.sns_topic_arn`` is set). Objects already risk-scored by
    an earlier attempt (``<work>/scoring/batches/<id>/risk.json``) are skipped. Without an active risk
    model the unsupervised score is used. On aws the objects are downloaded from the lake bucket and
    their principals' history comes from Athena.

    :param batch: the upstream scoring task's summary (``batch_id``). Templated.
    """

    template_fields: Sequence[str] = ("batch", "config_overrides")

    def __init__(self, *, batch: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        from seclake_ml import __version__
        from seclake_ml.risk import service
        from seclake_ml.risk.batch import done_record, score_objects
        from seclake_ml.scoring.ledger import Ledger

        from seclake_ml.handoff import ScoringBatch

        batch_id = ScoringBatch.from_xcom(self.batch, "batch").batch_id
        cfg = self.runtime_config()
        site = self.scoring_site(cfg)
        clients = site.clients
        store = self.work_store(cfg, site)
        manifest = Ledger(store).manifest(batch_id)
        keys = [o["key"] for o in manifest.get("objects", []) if isinstance(o, Mapping) and o.get("key")]
        progress = done_record(store, batch_id)
        model = service.active_model(cfg, clients.s3 if clients else None, self.aws_conn_id)
        publisher, sink = site.severe_publisher(), site.findings_store()

        def mark(key: str, findings: int) -> None:
            progress["done"][key] = findings
            store.put_bytes(f"scoring/batches/{batch_id}/risk.json", json.dumps(progress, indent=1).encode())

        res = score_objects(
            cfg, keys, model, sink=sink, publisher=publisher, done=set(progress["done"]),
            product_version=__version__, top=cfg.risk.top_findings, geo=service.geo_of(cfg),
            ip_scorer=service.ip_scorer_of(cfg), on_object_done=mark,
            aws_conn_id=self.aws_conn_id,
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
