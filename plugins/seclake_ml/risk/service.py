"""Train, gate, activate and score: the steps the CLI and the risk DAG share (local work location).

Everything here reads the configuration (:class:`seclake_ml.config.SeclakeConfig`, section
``extra.risk``) and the work location's ``risk/`` folder: the label store (``risk/labels``), the model
store (``risk/models``) and scored windows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from seclake_ml.risk.engine import GATE_TOLERANCE, RiskModel, RiskSettings, history_start, fit_frame
from seclake_ml.risk.features import build_features
from seclake_ml.interval import DataInterval
from seclake_ml.locations import work_root
from seclake_ml.risk.store import activate, read_active, save_version, store_root

log = logging.getLogger(__name__)


def settings_of(cfg: Any) -> RiskSettings:
    return RiskSettings(lookback_days=cfg.risk.lookback_days, min_labels=cfg.risk.min_labels,
                        catalog_path=cfg.risk.sensitive_operations, combination=cfg.risk.combination)


def geo_of(cfg: Any) -> Any | None:
    """The configured GeoIP provider (``None`` when GeoIP is switched off or not installed)."""
    try:
        from seclake_ml.risk.geoip import open_provider
    except ModuleNotFoundError:
        return None
    provider = open_provider({"provider": cfg.risk.geoip_provider, "country_db": cfg.risk.geoip_country_db,
                              "asn_db": cfg.risk.geoip_asn_db})
    return None if getattr(provider, "name", "") == "none" else provider


def ip_scorer_of(cfg: Any) -> Any | None:
    """``(principals, ips) -> anomaly margin`` of the active IP Insights model (its score minus its
    threshold: positive past the threshold; NaN for principals the model never saw), or ``None``.

    Local backend only: the package's NumPy scorer and the model's score combiner, as the scoring DAG
    applies them. On aws the endpoint is not called per CloudTrail event (cost and quota); the
    ``ipinsights`` feature is then empty and the other features carry the score.
    """
    from seclake_ml.backends import backend_of

    if not backend_of(cfg).scores_in_process:
        return None
    from seclake_ml.scoring.profile import load_history
    from seclake_ml.scoring.scorers import AnomalyScorer
    from seclake_ml.scoring.service import active_model as active_ipinsights
    from seclake_ml.scoring.service import pinned_model
    from seclake_ml.scoring.sites import NoActiveModel

    try:
        model, scorer = pinned_model(cfg, active_ipinsights(cfg).to_dict())
    except (NoActiveModel, ValueError, OSError) as exc:
        log.info("risk features without the IP Insights score: %s", str(exc)[:300])
        return None
    except Exception as exc:  # noqa: BLE001 - a missing or damaged model must not stop risk scoring
        log.warning("risk features without the IP Insights score: %s: %s", type(exc).__name__, str(exc)[:300])
        return None
    profile = getattr(model, "profile_uri", None)
    anomaly = AnomalyScorer(model.combiner, (lambda: load_history(profile)) if profile else None)

    def score(principals: Any, ips: Any) -> np.ndarray:
        entities = ["" if p is None else str(p) for p in principals]
        addrs = ["" if i is None or i != i else str(i) for i in ips]
        scored = scorer.score(entities, addrs)
        try:
            margin = anomaly.score(entities, addrs, scored.dot_product) - float(model.threshold)
        except Exception as exc:  # noqa: BLE001 - the feature is optional
            log.warning("IP Insights score unavailable for risk features: %s", str(exc)[:300])
            return np.full(len(entities), np.nan)
        known = np.ones(len(entities), dtype=bool) if scored.known_entity is None else scored.known_entity
        # a principal the model never saw has no learned networks: no opinion rather than a guess
        return np.where(np.isfinite(margin) & known, margin, np.nan)

    return score


def s3_client(cfg: Any, aws_conn_id: str | None = "aws_default") -> Any:
    """An S3 client from the Amazon provider's hook (connection, region and endpoint from Airflow;
    ``aws_conn_id=None``: boto3's default credential chain)."""
    from seclake_ml.aws.clients import s3_hook

    return s3_hook(cfg, aws_conn_id).get_conn()


def model_store(cfg: Any, client: Any = None, aws_conn_id: str | None = "aws_default") -> Any:
    """The risk model store of the work location (a folder, or S3 through ``client``)."""
    root = work_root(cfg)
    if root.startswith("s3://") and client is None:
        client = s3_client(cfg, aws_conn_id)
    return store_root(root, client)


def label_store(cfg: Any, client: Any = None, aws_conn_id: str | None = "aws_default") -> Any:
    """The label store of the work location (a folder, or S3 through ``client``)."""
    from seclake_ml.risk.labels import label_store_for

    root = work_root(cfg)
    if root.startswith("s3://") and client is None:
        client = s3_client(cfg, aws_conn_id)
    return label_store_for(root, client)


def latest_labels(cfg: Any, client: Any = None, aws_conn_id: str | None = "aws_default") -> dict[str, dict[str, Any]]:
    """Latest label per uid from the label store, as ``{uid: {"risk_score": n, "verdict": v}}``."""
    latest = label_store(cfg, client, aws_conn_id).latest(kind="event")
    return {str(uid): {"risk_score": rec.risk_score, "verdict": rec.verdict} for uid, rec in latest.items()}


def load_window(cfg: Any, start: datetime, end: datetime, settings: RiskSettings, *,
                geo: Any | None = None, ip_scorer: Callable | None = None,
                aws_conn_id: str | None = "aws_default") -> tuple[Any, Any]:
    """``(EventsResult, FeatureFrame)`` of ``[start, end)`` with ``lookback_days`` of history before it."""
    from seclake_ml.risk.catalog import load_catalog
    from seclake_ml.backends import read_events

    events = read_events(cfg, history_start(start, settings.lookback_days), end, aws_conn_id=aws_conn_id)
    start_ms = int(start.timestamp() * 1000)
    frame = build_features(events.table, start_ms, lookback_days=settings.lookback_days,
                           catalog=load_catalog(settings.catalog_path), geo=geo, ip_scorer=ip_scorer)
    return events, frame


def fit(cfg: Any, start: datetime, end: datetime, labels: Mapping[str, Mapping[str, Any]], version: str,
        settings: RiskSettings | None = None, *, geo: Any | None = None, ip_scorer: Callable | None = None,
        aws_conn_id: str | None = "aws_default") -> Any:
    """Read the window (:func:`load_window`) and fit both models on its labelled events
    (:func:`seclake_ml.risk.engine.fit_frame`)."""
    settings = settings or RiskSettings()
    _, ff = load_window(cfg, start, end, settings, geo=geo, ip_scorer=ip_scorer, aws_conn_id=aws_conn_id)
    result = fit_frame(ff.frame, start, end, labels, version, settings)
    return result


@dataclass
class GateDecision:
    passed: bool
    reason: str
    candidate_rmse: float | None = None
    active_rmse: float | None = None
    active_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate(root: Any, result: Any) -> GateDecision:
    """No worse than the active model on the candidate's test split (RMSE within 2 %)."""
    active = read_active(root)
    if not result.supervised:
        if active and active.get("supervised"):
            return GateDecision(False, f"fewer labelled events ({result.labels_matched}) than min_labels: "
                                f"the active supervised model {active['version']} stays", active_version=active["version"])
        return GateDecision(True, "unsupervised: no supervised model to compare", active_version=active and active["version"])
    cand = result.metrics["boosted"]["rmse"]
    if not active or not active.get("supervised"):
        return GateDecision(True, "first supervised model", candidate_rmse=cand, active_version=active and active["version"])
    if active["version"] == result.version:
        return GateDecision(True, "refit of the active interval", candidate_rmse=cand, active_version=active["version"])
    try:
        current = RiskModel.load(root, active["version"])
        test = result.test_frame
        pred = current.boosted.predict(test) if current.boosted is not None else test["unsupervised"].to_numpy()
        act = float(np.sqrt(np.mean((test["y"].to_numpy() - pred) ** 2)))
    except ValueError as exc:
        return GateDecision(True, f"active model {active['version']} cannot be loaded ({exc}); replaced",
                            candidate_rmse=cand, active_version=active["version"])
    ok = cand <= act * (1.0 + GATE_TOLERANCE)
    why = (f"test RMSE {cand:.3f} vs active {act:.3f} on the same split: "
           + ("within tolerance" if ok else f"worse by more than {GATE_TOLERANCE:.0%}"))
    return GateDecision(ok, why, candidate_rmse=cand, active_rmse=round(act, 4), active_version=active["version"])


def fit_candidate(cfg: Any, start: datetime, end: datetime, *, settings: RiskSettings | None = None,
                  labels: dict[str, dict[str, Any]] | None = None, activate_if_passed: bool = True,
                  client: Any = None, aws_conn_id: str | None = "aws_default") -> dict[str, Any]:
    """Fit on ``[start, end)``, save the version with its report and gate decision (not activated)."""
    import tempfile

    from seclake_ml.risk.report import write_report
    from seclake_ml.risk.store import save_report

    settings = settings or settings_of(cfg)
    root = model_store(cfg, client, aws_conn_id)
    labels = latest_labels(cfg, client, aws_conn_id) if labels is None else labels
    version = DataInterval.parse(start, end).model_version("risk")
    result = fit(cfg, start, end, labels, version, settings, geo=geo_of(cfg), ip_scorer=ip_scorer_of(cfg),
                 aws_conn_id=aws_conn_id)
    files = {}
    if result.supervised:
        files = {"linear.json": json.dumps(result.linear.to_json()), "boosted.txt": result.boosted.to_text()}
    decision = gate(root, result)
    active = read_active(root)
    if active and active["version"] == version and not (decision.passed and activate_if_passed):
        # a fit of the active model's own interval that will not be activated (held, --no-activate) is
        # saved beside it: writing it under the same version would replace the active model's files
        from datetime import timezone

        version = result.version = f"{version}-held-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
    manifest = result.manifest(settings) | {"gate": decision.to_dict()}
    location = save_version(root, version, manifest, files)
    with tempfile.TemporaryDirectory(prefix="seclake-risk-report-") as tmp:
        written = write_report(result, tmp)
        stored = save_report(root, version, Path(tmp))
    report = {k: stored[Path(v).name] for k, v in written.items()}
    return {"version": version, "start": result.start, "end": result.end, "supervised": result.supervised,
            "events": result.events, "labels_available": result.labels_available,
            "labels_used": result.labels_matched, "metrics": result.metrics, "gate": decision.to_dict(),
            "report": report, "model_dir": location, "seconds": result.seconds}


def train(cfg: Any, start: datetime, end: datetime, *, labels: dict[str, dict[str, Any]] | None = None,
          activate_if_passed: bool = True, client: Any = None) -> dict[str, Any]:
    """Fit on ``[start, end)``, save the version with its report, gate it, activate it when it passes."""
    out = fit_candidate(cfg, start, end, labels=labels, activate_if_passed=activate_if_passed, client=client)
    activated = None
    if out["gate"]["passed"] and activate_if_passed:
        activated = activate(model_store(cfg, client), out["version"], out["gate"]["reason"])
    return out | {"activated": bool(activated)}


def active_model(cfg: Any, client: Any = None, aws_conn_id: str | None = "aws_default") -> RiskModel:
    """The active model, or the unsupervised score when none is active."""
    root = model_store(cfg, client, aws_conn_id)
    active = read_active(root)
    if not active:
        return RiskModel.unsupervised(settings_of(cfg))
    model = RiskModel.load(root, active["version"])
    # how the scores combine is a scoring choice: the configuration's applies without a refit
    model.settings = dataclasses.replace(model.settings, combination=cfg.risk.combination)
    return model


def score(cfg: Any, start: datetime, end: datetime, *, model: RiskModel | None = None,
          aws_conn_id: str | None = "aws_default") -> tuple[Any, dict[str, Any]]:
    """Risk of every CloudTrail event of ``[start, end)``: ``(table, summary)``."""
    model = model or active_model(cfg)
    events, ff = load_window(cfg, start, end, model.settings, geo=geo_of(cfg), ip_scorer=ip_scorer_of(cfg),
                             aws_conn_id=aws_conn_id)
    table = model.apply(ff.frame)
    summary = {
        "model": model.version or "unsupervised (no active model)", "supervised": model.supervised,
        "events": int(len(table)), "history_events": ff.history_events, "outliers": int(table["is_outlier"].sum()),
        "missing_fields": events.missing_fields, "quarantined": events.quarantined, "truncated": events.truncated,
        "absent_columns": events.absent_columns,
    }
    return table, summary


def write_table(table: Any, out: str) -> None:
    """``.parquet``, ``.jsonl`` or ``.csv`` (by suffix); CSV cells that a spreadsheet would run are neutralised."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if "metadata.uid" not in table.columns:
        # the event's OCSF name first (CloudTrail's eventID), for readers that join on it; uid as well
        table = table.copy()
        table.insert(0, "metadata.uid", table["uid"])
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    elif suffix == ".jsonl":
        table.to_json(path, orient="records", lines=True, date_format="iso")
    elif suffix == ".csv":
        safe = table.copy()
        for col in safe.columns:
            if safe[col].dtype == object or str(safe[col].dtype).startswith("str"):
                safe[col] = safe[col].map(_neutralise)
        safe.to_csv(path, index=False)
    else:
        raise ValueError(f"--out {out}: expected a .parquet, .jsonl or .csv file")


def _neutralise(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v
