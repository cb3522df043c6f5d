"""Operators of the scoring DAGs: wait for a new log batch, plan an interval, score a batch.

``NewLogBatchSensor`` (first task of ``seclake_ipinsights_scoring``):

* ``local``: pokes the lake root for Parquet objects that are not in the processed-objects ledger
  (a pending batch left by an earlier run is resumed first);
* ``aws``: defers to the Amazon provider's ``SqsSensorTrigger`` on the Security Lake subscriber
  queue with ``delete_message_on_reception=False``; when messages arrive, their new objects are
  handed off as a batch manifest in the work location, and only then are the messages deleted. A
  poll that brings only test events, duplicates or poison messages records them, deletes them and
  defers again.

``IntervalBatchOperator`` (``seclake_ipinsights_batch_scoring``) hands off the objects of a data
interval's ``eventDay`` partitions as a batch. ``ScoreBatchOperator`` scores any batch; both DAGs
use it. Every return value is a small JSON dict; heavy imports stay inside ``execute``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from seclake_ml.operators.base import _Configured, _ConfiguredOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from seclake_ml.config import SeclakeConfig

SCORING_DAG_ID = "seclake_ipinsights_scoring"


def _batch_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    from seclake_ml.handoff import ScoringBatch

    return ScoringBatch.of_manifest(manifest).to_xcom()


class NewLogBatchSensor(_Configured, BaseSensorOperator):
    """Wait for new Security Lake objects and hand them off as one batch (see the module docstring).

    :param max_messages: aws: messages per ``ReceiveMessage`` (1-10).
    :param num_batches: aws: ``ReceiveMessage`` calls per poll.
    :param visibility_timeout: aws: seconds received messages stay hidden while being handed off.
    :param wait_time_seconds: aws: long-poll seconds per ``ReceiveMessage``.
    :param deferrable: aws: wait in the triggerer (default) instead of holding a worker slot.
    :param config_overrides: per-task configuration overrides (JSON mapping). Templated.
    """

    template_fields: Sequence[str] = ("config_overrides",)

    def __init__(self, *, max_messages: int = 10, num_batches: int = 5, visibility_timeout: int = 600,
                 wait_time_seconds: int = 10, deferrable: bool = True, aws_conn_id: str | None = "aws_default",
                 config_overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", timedelta(hours=6).total_seconds())
        super().__init__(**kwargs)
        if not 1 <= int(max_messages) <= 10:
            raise ValueError(f"max_messages: got {max_messages!r}; allowed: 1 .. 10 (SQS limit)")
        self.max_messages = int(max_messages)
        self.num_batches = int(num_batches)
        self.visibility_timeout = int(visibility_timeout)
        self.wait_time_seconds = int(wait_time_seconds)
        self.deferrable = deferrable
        self.aws_conn_id = aws_conn_id
        self.config_overrides = config_overrides

    def execute(self, context: "Context") -> Any:
        cfg = self.runtime_config()
        site = self.scoring_site(cfg)
        if site.notification_queue() is not None:  # new objects are announced on a queue
            from seclake_ml.scoring.service import resume_pending

            resumed = resume_pending(self.ledger(cfg, site))
            if resumed is not None:
                # While an earlier batch is retried, the queue is still drained into handed-off
                # batches, so no notification outlives the queue's retention period.
                self._drain(cfg, site)
                return _batch_summary(resumed)
            if self.deferrable:
                self._defer(cfg, site)
        return super().execute(context)

    def _drain(self, cfg: "SeclakeConfig", site: Any) -> None:
        messages: list[dict] = []
        for _ in range(self.num_batches):
            resp = site.clients.sqs.receive_message(QueueUrl=site.notification_queue(),
                                                    MaxNumberOfMessages=self.max_messages, WaitTimeSeconds=0,
                                                    VisibilityTimeout=self.visibility_timeout)
            got = resp.get("Messages", [])
            messages += got
            if len(got) < self.max_messages:
                break
        if messages:
            summary = self._hand_off(cfg, site, messages)
            if summary is not None:
                self.log.info("queued batch %s handed off behind the resumed one", summary["batch_id"])

    def _defer(self, cfg: "SeclakeConfig", site: Any) -> None:
        from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

        self.defer(
            trigger=SqsSensorTrigger(
                sqs_queue=site.notification_queue(), aws_conn_id=self.aws_conn_id, max_messages=self.max_messages,
                num_batches=self.num_batches, wait_time_seconds=self.wait_time_seconds,
                visibility_timeout=self.visibility_timeout, delete_message_on_reception=False,
                waiter_delay=int(self.poke_interval), region_name=cfg.region,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: "Context") -> Any:
        from airflow.sdk import PokeReturnValue

        cfg = self.runtime_config()
        site = self.scoring_site(cfg)
        if site.notification_queue() is not None:
            messages = []
            for _ in range(self.num_batches):
                resp = site.clients.sqs.receive_message(
                    QueueUrl=site.notification_queue(), MaxNumberOfMessages=self.max_messages,
                    WaitTimeSeconds=self.wait_time_seconds, VisibilityTimeout=self.visibility_timeout,
                )
                messages += resp.get("Messages", [])
            if not messages:
                return False
            summary = self._hand_off(cfg, site, messages)
            return PokeReturnValue(is_done=summary is not None, xcom_value=summary)
        from seclake_ml.scoring.service import find_new_local_batch

        manifest = find_new_local_batch(cfg, self.ledger(cfg, site))
        if manifest is None:
            self.log.info("no new objects under %s", cfg.lake_root)
            return False
        summary = _batch_summary(manifest)
        self.log.info("new batch %s: %d objects", summary["batch_id"], summary["objects"])
        return PokeReturnValue(is_done=True, xcom_value=summary)

    def execute_complete(self, context: "Context", event: dict[str, Any] | None = None) -> Any:
        if not event or event.get("status") != "success":
            raise RuntimeError(f"SQS trigger error: {event!r}")
        cfg = self.runtime_config()
        site = self.scoring_site(cfg)
        summary = self._hand_off(cfg, site, list(event.get("message_batch") or []))
        if summary is None:
            self._defer(cfg, site)  # only test events, duplicates or poison messages: keep waiting
        return summary

    def _hand_off(self, cfg: "SeclakeConfig", site: Any, messages: list[dict]) -> dict[str, Any] | None:
        from seclake_ml.scoring.service import hand_off_messages

        manifest, plan = hand_off_messages(cfg, self.ledger(cfg, site), messages)
        counts = plan.counts()
        self.log.info("received %d messages: %s", len(messages), counts)
        # The batch (or the record of rejected messages) is durable now; only then drop the messages.
        queue = site.notification_queue()
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                   if m.get("ReceiptHandle")]
        for start in range(0, len(entries), 10):
            resp = site.clients.sqs.delete_message_batch(QueueUrl=queue, Entries=entries[start:start + 10])
            for failed in resp.get("Failed", []):
                self.log.warning("could not delete message %s: %s (it will be redelivered; the ledger "
                                 "skips its objects)", failed.get("Id"), failed.get("Message"))
        if manifest is None:
            return None
        summary = _batch_summary(manifest)
        self.log.info("batch %s handed off: %d objects; %d messages deleted", summary["batch_id"],
                      summary["objects"], len(entries))
        return summary


class IntervalBatchOperator(_ConfiguredOperator):
    """Hand off every object of the data interval's ``eventDay`` partitions as one batch.

    The batch id derives from the interval, so a re-run re-scores the same objects and overwrites
    their findings files (findings are keyed by object).

    :param start: interval start (ISO string or datetime). Templated.
    :param end: interval end. Templated.
    """

    template_fields: Sequence[str] = ("start", "end", "config_overrides")

    def __init__(self, *, start: Any = "{{ data_interval_start }}", end: Any = "{{ data_interval_end }}",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end

    def execute(self, context: "Context") -> dict[str, Any]:
        from seclake_ml.interval import DataInterval
        from seclake_ml.scoring.service import hand_off_interval, interval_objects

        cfg = self.runtime_config()
        window = DataInterval.parse(self.start, self.end)
        start, end = window.start, window.end
        site = self.scoring_site(cfg)
        ledger = self.ledger(cfg, site)
        objects = interval_objects(cfg, start, end, site=site)
        batch_id = window.batch_id
        manifest = hand_off_interval(ledger, objects, batch_id, start, end)
        summary = _batch_summary(manifest)
        self.log.info("interval [%s, %s): %d objects in eventDay partitions handed off as %s",
                      start.isoformat(), end.isoformat(), summary["objects"], batch_id)
        return summary


class ScoreBatchOperator(_ConfiguredOperator):
    """Score a handed-off batch with the active model (pinned into the batch) and write findings.

    Logs objects, rows, pairs, drops by reason, findings by severity, seconds per stage and output
    locations. Objects that failed for a transient reason stay unmarked and this task fails, so
    Airflow retries it; done objects are not scored again.

    :param batch: the sensor's or planner's summary (``batch_id``). Templated.
    """

    template_fields: Sequence[str] = ("batch", "config_overrides")

    def __init__(self, *, batch: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch

    def execute(self, context: "Context") -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from seclake_ml import __version__
        from seclake_ml.scoring.service import EndpointChanging, score_batch
        from seclake_ml.scoring.sites import NoActiveModel

        from seclake_ml.handoff import ScoringBatch

        try:
            batch = ScoringBatch.from_xcom(self.batch, "batch").to_xcom()
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        cfg = self.runtime_config()
        site = self.scoring_site(cfg)
        ledger = self.ledger(cfg, site)
        try:
            summary = score_batch(cfg, ledger, batch["batch_id"], site=site, product_version=__version__)
        except EndpointChanging as exc:
            raise RuntimeError(f"{exc}; the batch stays pending and is retried") from None
        except NoActiveModel as exc:
            raise AirflowFailException(f"{exc} (the batch stays pending and is scored once a model is active)") from None
        self._log_summary(summary)
        if summary.get("failed"):
            raise RuntimeError(f"{len(summary['failed'])} objects failed and stay pending for a retry: "
                               + "; ".join(f"{f['uri'][-120:]}: {f['reason']}" for f in summary["failed"][:5]))
        small = {k: summary[k] for k in ("batch_id", "model_version", "totals", "seconds", "findings_location", "result", "drift")
                 if k in summary}
        small["files"] = sorted({f for o in summary["objects"] for f in o["files"]})[:200]
        return small

    def _log_summary(self, s: Mapping[str, Any]) -> None:
        t = s["totals"]
        self.log.info("batch %s scored with model %s: objects %d (scored %d, quarantined %d, failed %d, already "
                      "done %d), rows %d, pairs %d (distinct %d, unknown entity %d: flagged by the unknown-entity "
                      "policy %d, no peer history %d)", s["batch_id"],
                      s["model_version"], t["objects"], t["scored"], t["quarantined"], t["failed"],
                      s.get("already_done", 0), t["rows"], t["pairs"], t["distinct_pairs"], t["unknown_entity"],
                      t.get("unknown_flagged", 0), t.get("unknown_no_history", 0))
        self.log.info("dropped by reason: %s", t["dropped"])
        self.log.info("findings: %d by severity %s; published %d; suppressed by the allow-list %d", t["findings"],
                      t["severity"], t["published"], t.get("suppressed", 0))
        self.log.info("seconds per stage: %s", s["seconds"])
        self.log.info("findings under %s; batch result %s", s.get("findings_location"), s.get("result"))
        for o in s["objects"]:
            if o["status"] != "scored":
                self.log.warning("%s %s: %s", o["status"], o["uri"][-200:], o["reason"])
        for r in s.get("rejected") or []:
            self.log.warning("rejected input %s", {k: str(v)[:200] for k, v in r.items()})
