"""Risk-score the CloudTrail objects of a scoring batch and write their findings.

The scoring DAGs hand every new log batch (its lake objects) to the IP Insights scorer and then to
:func:`score_objects`: the batch's CloudTrail objects are grouped by ``eventDay``; for each day the
events of the whole lake over ``[day - lookback, day + 1)`` are read as history and context, the
batch objects' own events are scored (:class:`seclake_ml.risk.engine.RiskModel`), and those at or
above ``extra.risk.finding_min_risk`` are written as OCSF Detection Findings, one Parquet file per
object under ``ext/risk-cloudtrail/region=…/accountId=…/eventDay=…/`` (re-scoring an object replaces
its file). Which objects are done is recorded in ``<work>/scoring/batches/<batch id>/risk.json``, so a
retried task skips them and publishes each severe finding once.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from seclake_ml.risk.engine import RiskModel, history_start
from seclake_ml.risk.findings import build_record

log = logging.getLogger(__name__)

CLOUDTRAIL_PREFIX = "aws/CLOUD_TRAIL_MGMT/"
DATA_EVENT_PREFIXES = ("aws/S3_DATA/", "aws/LAMBDA_EXECUTION/")
_DAY_RE = re.compile(r"/eventDay=(\d{8})/")


@dataclass
class RiskBatchResult:
    model_version: str
    supervised: bool
    objects: int = 0
    skipped_done: int = 0
    events: int = 0
    findings: int = 0
    severity: dict[str, int] = field(default_factory=dict)
    published: int = 0
    quarantined: list[dict[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cloudtrail_keys(keys: list[str]) -> dict[str, list[str]]:
    """The CloudTrail keys of a batch by ``eventDay`` (``YYYYMMDD``); other keys are left out."""
    out: dict[str, list[str]] = {}
    for key in keys:
        m = _DAY_RE.search(key)
        if key.startswith((CLOUDTRAIL_PREFIX, *DATA_EVENT_PREFIXES)) and m:
            out.setdefault(m.group(1), []).append(key)
    return out


def _stem(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", key.removeprefix("aws/")).strip("._-")[:180]
    return "risk-" + (stem or "object")


def score_objects(cfg: Any, keys: list[str], model: RiskModel, *, sink: Any, publisher: Any = None,
                  done: set[str] | None = None, product_version: str = "0", top: int = 10,
                  geo: Any | None = None, ip_scorer: Any | None = None, on_object_done: Any = None,
                  aws_conn_id: str | None = "aws_default") -> RiskBatchResult:
    """Score the CloudTrail objects among ``keys`` (lake keys) and write their findings to ``sink``.

    :param done: keys already scored by an earlier attempt (skipped).
    :param on_object_done: ``f(key, findings)`` after an object's findings are written and published.
    """
    from seclake_ml.backends import read_events
    from seclake_ml.risk.features import build_features
    from seclake_ml.risk.catalog import load_catalog
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts

    t0 = time.perf_counter()
    min_risk = float(cfg.risk.finding_min_risk)
    min_publish = int(cfg.scoring.publish_min_severity)
    version = model.version or "unsupervised"
    res = RiskBatchResult(model_version=version, supervised=model.supervised)
    created = datetime.now(timezone.utc)
    done = done or set()
    tops = []
    for day_text, day_keys in sorted(cloudtrail_keys(keys).items()):
        todo = [k for k in day_keys if k not in done]
        res.skipped_done += len(day_keys) - len(todo)
        if not todo:
            continue
        day = datetime.strptime(day_text, "%Y%m%d").replace(tzinfo=timezone.utc)
        uids_of: dict[str, set[str]] = {}
        for key in todo:
            target = read_events(cfg, day, day + timedelta(days=1), keys=[key], aws_conn_id=aws_conn_id)
            res.quarantined.extend(target.quarantined)
            uids_of[key] = set(target.table.column("uid").to_pylist())
        all_uids = set().union(*uids_of.values())
        context = read_events(cfg, history_start(day, model.settings.lookback_days), day + timedelta(days=1),
                              aws_conn_id=aws_conn_id)
        ff = build_features(context.table, int(day.timestamp() * 1000), lookback_days=model.settings.lookback_days,
                            catalog=load_catalog(model.settings.catalog_path), geo=geo, ip_scorer=ip_scorer,
                            target_uids=all_uids)
        table = model.apply(ff.frame)
        res.events += len(table)
        res.objects += len(todo)
        risky = table[table["risk_score"] >= min_risk]
        n_day = 0
        for key in todo:
            mine = risky[risky["uid"].isin(uids_of[key])]
            records = [build_record(row, model_version=version, scope=key, min_risk=min_risk, created=created,
                                    product_version=product_version) for _, row in mine.iterrows()]
            for rel_key, data in findings_parquet_parts(records, file_stem=_stem(key)):
                res.files.append(sink.put_bytes(rel_key, data))
            res.findings += len(records)
            n_day += len(records)
            for rec in records:
                res.severity[rec["severity"]] = res.severity.get(rec["severity"], 0) + 1
            if publisher is not None:
                # published before the object is recorded done: a crash in between re-publishes, never drops
                res.published += publisher.publish([r for r in records if int(r["severity_id"]) >= min_publish])
            if on_object_done is not None:
                on_object_done(key, len(records))
        tops.append(table.head(top))
        log.info("risk-scored %d CloudTrail objects of %s: %d events, %d findings (risk >= %g)", len(todo), day_text,
                 len(table), n_day, min_risk)
    if tops:
        import pandas as pd

        best = pd.concat(tops).sort_values("risk_score", ascending=False).head(top)
        res.top = [{"risk": float(r.risk_score), "time": str(r.time), "principal": str(r.principal),
                    "operation": str(r.operation), "source_ip": str(r.source_ip), "result": str(r.result),
                    "why": str(r.probable_cause) or contributions_text(r.contributions)} for r in best.itertuples()]
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def contributions_text(contributions: str) -> str:
    """``feature +effect, ...`` of a contributions JSON cell."""
    try:
        items = json.loads(contributions) if contributions else []
    except ValueError:
        return ""
    return ", ".join(f"{c['feature']} {float(c['effect']):+.2f}" for c in items if isinstance(c, dict))


def done_record(store: Any, batch_id: str) -> dict[str, Any]:
    """The batch's risk progress record (``{"done": {key: findings}}``), empty when none."""
    data = store.get_bytes(f"scoring/batches/{batch_id}/risk.json")
    if not data:
        return {"done": {}}
    try:
        doc = json.loads(data)
    except ValueError:
        log.warning("scoring/batches/%s/risk.json is not JSON; every CloudTrail object is scored again", batch_id)
        return {"done": {}}
    return doc if isinstance(doc, dict) and isinstance(doc.get("done"), dict) else {"done": {}}
