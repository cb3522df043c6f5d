"""Risky CloudTrail events as OCSF 1.1 Detection Findings (class 2004), in the IP Insights findings schema.

One finding per event whose risk reaches the configured ``finding_min_risk``. The records use the
same Arrow schema, writer and partitioning as the IP Insights findings
(:mod:`seclake_ml.scoring.findings_parquet`), under the custom source ``risk-cloudtrail``
(``unmapped.detector`` is ``cloudtrail_risk``). Severity bands by risk: 90+ Critical, 75+ High, 60+ Medium, 40+ Low, below
that Informational. The finding uid hashes the model version, the scope (the lake object) and the
event uid, so re-scoring an object overwrites its findings instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from seclake_ml.scoring import findings as F

SOURCE = "cloudtrail"
DETECTOR = "cloudtrail_risk"
SEVERITY_BANDS = ((90.0, 5, "Critical"), (75.0, 4, "High"), (60.0, 3, "Medium"), (40.0, 2, "Low"))
PRODUCT_NAME = "seclake_ml CloudTrail risk"


def severity_for_risk(risk: float) -> tuple[int, str]:
    for low, sev_id, name in SEVERITY_BANDS:
        if risk >= low:
            return sev_id, name
    return 1, "Informational"


def finding_uid(model_version: str, scope: str, event_uid: str) -> str:
    payload = json.dumps(["seclake_ml/risk-finding/v1", model_version, scope, event_uid], ensure_ascii=False,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _s(value: Any, limit: int = F.SHOWN_VALUE_MAX_CHARS) -> str:
    return F.one_line("" if value is None or value != value else str(value), limit)


def build_record(row: Any, *, model_version: str, scope: str, min_risk: float, created: datetime,
                 product_version: str) -> dict[str, Any]:
    """One finding record from one scored event (a row of :meth:`RiskModel.apply`'s table)."""
    risk = float(row["risk_score"])
    sev_id, sev = severity_for_risk(risk)
    t_ms = F.epoch_ms(row["time"].to_pydatetime() if hasattr(row["time"], "to_pydatetime") else row["time"])
    principal = F._storable(str(row["principal"] or "unknown"))
    ip = F._storable(str(row["source_ip"] or "-"))
    operation = F._storable(str(row["operation"] or "-"))
    account = F._storable(str(row["account"] or ""))
    region = F._storable(str(row["region"] or ""))
    uid = finding_uid(model_version, scope, str(row["uid"]))
    cause = str(row["probable_cause"] or "")
    contributions = json.loads(row["contributions"]) if row["contributions"] else []
    why = cause or ", ".join(f"{c['feature']} {c['effect']:+.2f}" for c in contributions)
    title = F.one_line(f"Risky CloudTrail activity: {_s(operation, 80)} by {_s(principal, 120)}", F.TITLE_MAX_CHARS)
    message = F.one_line(f"{_s(principal)} called {_s(operation, 80)} from {_s(ip, 64)} [{_s(row['result'], 60)}]: "
                         f"risk {risk:.1f} ({sev}); {why}", F.MESSAGE_MAX_CHARS)
    desc = F.one_line(
        f"Risk {risk:.1f} of 100 (model {model_version}; unsupervised {float(row['unsupervised_score']):.1f}"
        + (f", supervised {float(row['supervised_score']):.1f}" if row["supervised_score"] == row["supervised_score"] else "")
        + f") for event {_s(row['uid'], 80)} in {_s(scope, 300)}. Probable cause: {why or 'none'}.",
        F.DESC_MAX_CHARS,
    )
    data = F._json_canonical({
        "event_uid": str(row["uid"]), "principal": principal, "ip": ip, "operation": operation,
        "result": str(row["result"]), "user_agent": str(row["user_agent"] or ""), "risk": risk,
        "unsupervised_risk": float(row["unsupervised_score"]),
        "supervised_risk": float(row["supervised_score"]) if row["supervised_score"] == row["supervised_score"] else None,
        "is_outlier": bool(row["is_outlier"]), "probable_cause": cause, "contributions": contributions,
        "sensitive_category": str(row["sensitive_category"] or ""), "min_risk": min_risk,
        "model_version": model_version, "scope": F._storable(scope), "account": account, "region": region,
    })
    unmapped = {
        "detector": DETECTOR, "source": SOURCE, "entity": principal, "ip": ip, "operation": operation,
        "score": repr(risk), "threshold": repr(float(min_risk)), "model_version": F._storable(model_version),
        "event_uid": F._storable(str(row["uid"])), "probable_cause": F._storable(cause),
        "scope": F._storable(scope), "events": "1",
    }
    observables = [o for o in (F._observable_for("unmapped.ip", ip, is_ip=True),
                               F._observable_for("unmapped.entity", principal, is_ip=False)) if o is not None]
    return {
        "activity_id": F.ACTIVITY_ID, "activity_name": F.ACTIVITY_NAME, "category_uid": F.CATEGORY_UID,
        "category_name": F.CATEGORY_NAME, "class_uid": F.CLASS_UID, "class_name": F.CLASS_NAME,
        "type_uid": F.TYPE_UID, "type_name": F.TYPE_NAME, "severity_id": sev_id, "severity": sev,
        "status_id": F.STATUS_ID_NEW, "status": "New", "time": t_ms, "time_dt": F.ms_to_rfc3339(t_ms),
        "start_time": t_ms, "start_time_dt": F.ms_to_rfc3339(t_ms), "end_time": t_ms,
        "end_time_dt": F.ms_to_rfc3339(t_ms), "timezone_offset": 0, "count": 1, "message": message,
        "metadata": {"version": F.OCSF_VERSION, "uid": uid, "profiles": list(F.PROFILES),
                     "product": {"name": PRODUCT_NAME, "vendor_name": F.VENDOR_NAME,
                                 "version": F._storable(product_version)}},
        "cloud": {"provider": "AWS", "region": region, "account": {"uid": account}},
        "finding_info": {
            "uid": uid, "title": title, "desc": desc,
            "types": ["Unusual Behaviors/CloudTrail activity"],
            "analytic": {"name": "CloudTrail risk", "type": "Learning (ML/DL)", "type_id": F.ANALYTIC_TYPE_ID_ML,
                         "uid": F._storable(model_version), "version": F._storable(model_version),
                         "desc": F.one_line("Risk 0-100 of CloudTrail sign-ins and API calls from history features, "
                                            "categorical outliers and, with enough analyst labels, a supervised "
                                            f"regressor; events at or above {min_risk:g} become findings",
                                            F.DESC_MAX_CHARS)},
            "created_time": F.epoch_ms(created), "first_seen_time": t_ms, "last_seen_time": t_ms,
            "data_sources": ["cloudtrail_signin", "cloudtrail_api"],
        },
        "evidences": [{"data": data}],
        "observables": observables,
        "unmapped": unmapped,
    }
