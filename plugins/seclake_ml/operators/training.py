"""Operators of the training DAG after extraction: prepare → train → calibrate → gate → roll out.

Every operator has a ``local`` and an ``aws`` backend, chosen at run time by the package
configuration (never by the DAG file). Constructors are cheap and offline; heavy imports (torch,
DuckDB, pandas, provider hooks) happen inside ``execute``. Every return value is a small JSON dict.

Outputs are keyed by the data interval (``interval=<start>_<end>``) and the model version is derived
from it, so re-running or backfilling an interval replaces that interval's outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from seclake_ml.links import REPORT_URL_KEY, CalibrationReportLink, report_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from seclake_ml.config import SeclakeConfig

log = logging.getLogger(__name__)

# The seed's SageMaker hyperparameters; the rest take SageMaker's defaults.
SEED_HYPERPARAMETERS: dict[str, Any] = {
    "num_entity_vectors": 20000,
    "vector_dim": 128,
    "random_negative_sampling_rate": 5,
    "mini_batch_size": 1000,
    "epochs": 5,
    "learning_rate": 0.01,
}
THRESHOLD_MODES = ("target_fpr", "best_f1")
ACTIVE_MODEL_ASSET = "seclake_ml_ipinsights_active_model"


def _interval(upstream: Mapping[str, Any]) -> tuple[Any, Any]:
    from seclake_ml.airflow_support import to_utc

    return to_utc(upstream["start"], "start"), to_utc(upstream["end"], "end")


def _run_dir(cfg: SeclakeConfig, stage: str, start: Any, end: Any) -> str:
    from seclake_ml.airflow_support import interval_key, work_root

    base = work_root(cfg).rstrip("/")
    return f"{base}/training/{stage}/{interval_key(start, end)}"


def _model_store(cfg: SeclakeConfig):
    from seclake_ml.airflow_support import work_root
    from seclake_ml.model_store import LocalModelStore

    return LocalModelStore(Path(work_root(cfg)) / "models" / "ipinsights")


def _as_mapping(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: rendered text is not JSON ({exc.msg})") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
    return dict(value)


class _ConfiguredOperator(BaseOperator):
    """Shared plumbing: runtime configuration with per-task overrides."""

    def __init__(self, *, config_overrides: Mapping[str, Any] | None = None,
                 aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_overrides = config_overrides
        self.aws_conn_id = aws_conn_id

    def runtime_config(self) -> SeclakeConfig:
        from seclake_ml.airflow_support import load_runtime_config

        overrides = _as_mapping(self.config_overrides, "config_overrides") if self.config_overrides else None
        return load_runtime_config(overrides)


# ------------------------------------------------------------------------------------------ prepare
class PrepareTrainingDataOperator(_ConfiguredOperator):
    """Combine the extracted pairs of all source views and split them in time (train / held out).

    :param extraction: the extraction summary (``start``, ``end``, ``pairs``: view → output). Templated.
    :param train_fraction: share of the window, from its start, used for training (default 0.7).
    """

    template_fields: Sequence[str] = ("extraction", "train_fraction", "config_overrides")

    def __init__(self, *, extraction: Any, train_fraction: float = 0.7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(train_fraction, (int, float)) and not 0.05 <= train_fraction <= 0.95:
            raise ValueError(f"train_fraction: got {train_fraction!r}; allowed: 0.05 .. 0.95")
        self.extraction = extraction
        self.train_fraction = train_fraction

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.airflow_support import iso

        cfg = self.runtime_config()
        ext = _as_mapping(self.extraction, "extraction")
        start, end = _interval(ext)
        inputs = list(dict(ext.get("pairs") or {}).values())
        out_dir = _run_dir(cfg, "data", start, end)
        if cfg.backend == "aws":
            from seclake_ml.aws.channels import build_channels
            from seclake_ml.training_data import split_time

            cut = split_time(start, end, float(self.train_fraction))
            try:
                res = build_channels(cfg, pairs_uris=inputs, output_uri=out_dir + "/", split_time=cut,
                                     aws_conn_id=self.aws_conn_id)
            except ValueError as exc:
                if not str(exc).startswith("no training rows"):
                    raise
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(f"{exc}; nothing to train on") from None
            # The later steps read train/holdout like the local backend's files: here they are the
            # S3 prefixes of the training job's channels (headerless entity,ip CSV).
            result = dict(res) | {
                "train": res["train_uri"],
                "holdout": res["validation_uri"],
                "train_rows": res["train_rows"],
                "holdout_rows": res["validation_rows"],
                "split_time": iso(cut),
            }
        else:
            from seclake_ml.training_data import combine_and_split

            res = combine_and_split(inputs, out_dir, start=start, end=end,
                                    train_fraction=float(self.train_fraction), dedupe=cfg.dedupe,
                                    memory_limit=cfg.duckdb_memory)
            result = res.to_dict()
        result.update(start=iso(start), end=iso(end), backend=cfg.backend)
        self.log.info(
            "training data for [%s, %s): %s training rows, %s held out, split at %s",
            result["start"], result["end"], result.get("train_rows"), result.get("holdout_rows"), result["split_time"],
        )
        if not result.get("train_rows"):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"no training rows before {result['split_time']}; nothing to train on")
        return result


# ------------------------------------------------------------------------------------------ train
class IPInsightsTrainingOperator(_ConfiguredOperator):
    """Train an IP Insights model on the training part of the interval.

    ``local``: the package's engine (PyTorch, CPU or CUDA). ``aws``: a SageMaker training job with the
    built-in ``ipinsights`` image, deterministic job name, deferrable wait.

    :param data: the prepared-data summary from :class:`PrepareTrainingDataOperator`. Templated.
    :param hyperparameters: SageMaker-named hyperparameters over the seed's defaults. Templated.
    :param seed: seed of the local engine (initialisation, negatives, hashing).
    :param deferrable: aws backend: wait for the training job in the triggerer.
    """

    template_fields: Sequence[str] = ("data", "hyperparameters", "config_overrides")
    template_fields_renderers = {"hyperparameters": "json"}

    def __init__(self, *, data: Any, hyperparameters: Mapping[str, Any] | None = None, seed: int = 0,
                 deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data
        self.hyperparameters = hyperparameters
        self.seed = seed
        self.deferrable = deferrable

    def _hyperparameters(self, cfg: SeclakeConfig) -> dict[str, Any]:
        hp = dict(SEED_HYPERPARAMETERS)
        hp.update(cfg.hyperparameters)
        if self.hyperparameters:
            hp.update(_as_mapping(self.hyperparameters, "hyperparameters"))
        return hp

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.airflow_support import iso
        from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters
        from seclake_ml.model_store import version_for_interval

        cfg = self.runtime_config()
        data = _as_mapping(self.data, "data")
        start, end = _interval(data)
        hp = self._hyperparameters(cfg)
        IPInsightsHyperparameters.from_dict(hp)  # validate before spending anything
        version = version_for_interval(start, end)
        self.log.info("training %s on [%s, %s) backend=%s hyperparameters=%s", version, iso(start), iso(end),
                      cfg.backend, json.dumps(hp, sort_keys=True))
        if cfg.backend == "aws":
            from seclake_ml.aws.training import run_training

            summary = run_training(self, context, cfg, start=start, end=end, train_uri=data["train"],
                                   validation_uri=data.get("holdout"), hyperparameters=hp,
                                   deferrable=self.deferrable, aws_conn_id=self.aws_conn_id)
            # With deferrable=True run_training defers (raises) and execute_complete finishes.
            # profile_uri (the entity profile of the training rows) travels on to the registry record.
            return dict(summary) | {"version": version, "backend": "aws", "start": iso(start), "end": iso(end),
                                    "train_rows": data.get("train_rows"), "profile_uri": data.get("profile_uri")}
        return self._train_local(cfg, data, hp, version, start, end)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from seclake_ml.airflow_support import iso
        from seclake_ml.aws.training import training_complete
        from seclake_ml.model_store import version_for_interval

        cfg = self.runtime_config()
        data = _as_mapping(self.data, "data")
        start, end = _interval(data)
        summary = training_complete(self, context, event, cfg=cfg, aws_conn_id=self.aws_conn_id)
        return dict(summary) | {"version": version_for_interval(start, end), "backend": "aws", "start": iso(start),
                                "end": iso(end), "train_rows": data.get("train_rows"),
                                "profile_uri": data.get("profile_uri")}

    def _train_local(self, cfg: SeclakeConfig, data: Mapping[str, Any], hp: dict[str, Any], version: str,
                     start: Any, end: Any) -> dict[str, Any]:
        import tempfile
        import time

        from seclake_ml.airflow_support import iso
        from seclake_ml.ipinsights.trainer import IPInsights

        t0 = time.perf_counter()
        model = IPInsights(hp, seed=int(self.seed)).fit(data["train"])
        store = _model_store(cfg)
        interval = {"start": iso(start), "end": iso(end)}
        with tempfile.TemporaryDirectory(prefix="seclake-model-") as tmp:
            model.save(tmp, training_interval=interval)
            # The entity profile (distinct training pairs) explains the scoring DAG's findings.
            from seclake_ml.scoring.profile import PROFILE_FILE, build_profile

            profile = build_profile([str(data["train"])], str(Path(tmp) / PROFILE_FILE))
            model_dir = store.put(version, tmp)
        history = [e.to_dict() for e in getattr(model, "history_", [])]
        last = history[-1] if history else {}
        result = {
            "version": version,
            "model_dir": str(model_dir),
            "backend": "local",
            "start": iso(start),
            "end": iso(end),
            "hyperparameters": hp,
            "train_rows": data.get("train_rows"),
            "epochs": len(history),
            "final_loss": last.get("loss"),
            "samples_per_second": last.get("samples_per_second"),
            "seconds": round(time.perf_counter() - t0, 2),
            "profile": {k: profile.get(k) for k in ("entities", "pairs", "events")},
        }
        self.log.info("trained %s in %.1fs: %s", version, result["seconds"], json.dumps(history[-1:] or [{}])[:400])
        return result


# ------------------------------------------------------------------------------------------ calibrate
class ThresholdCalibrationOperator(_ConfiguredOperator):
    """Build known-normal and injected-abnormal sets, score them and choose the threshold.

    ``local`` scores with the NumPy scorer; ``aws`` with a SageMaker Batch Transform job (no endpoint).
    Writes the report (histograms, ROC, metrics JSON, HTML) under the interval's folder.

    :param model: the training summary. Templated.
    :param data: the prepared-data summary. Templated.
    :param threshold_mode: ``target_fpr`` or ``best_f1``.
    :param target_fpr: false-positive rate the threshold is chosen for (``target_fpr`` mode).
    :param seed: seed for the injected sets.
    """

    template_fields: Sequence[str] = ("model", "data", "target_fpr", "config_overrides")
    operator_extra_links = (CalibrationReportLink(),)

    def __init__(self, *, model: Any, data: Any, threshold_mode: str = "target_fpr", target_fpr: float = 0.01,
                 seed: int = 0, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode: got {threshold_mode!r}; allowed: {', '.join(THRESHOLD_MODES)}")
        if isinstance(target_fpr, (int, float)) and not 0.0 < target_fpr < 1.0:
            raise ValueError(f"target_fpr: got {target_fpr!r}; allowed: 0 < target_fpr < 1")
        self.model = model
        self.data = data
        self.threshold_mode = threshold_mode
        self.target_fpr = target_fpr
        self.seed = seed
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.calibration_runner import calibrate_local

        cfg = self.runtime_config()
        model = _as_mapping(self.model, "model")
        data = _as_mapping(self.data, "data")
        start, end = _interval(data)
        out_dir = _run_dir(cfg, "calibration", start, end)
        if cfg.backend == "aws":
            from seclake_ml.calibration_runner import calibrate_aws

            result = calibrate_aws(self, context, cfg, model=model, data=data, out_dir=out_dir,
                                   mode=self.threshold_mode, target_fpr=float(self.target_fpr), seed=int(self.seed))
        else:
            result = calibrate_local(model_dir=model["model_dir"], train=data["train"], holdout=data["holdout"],
                                     out_dir=out_dir, mode=self.threshold_mode, target_fpr=float(self.target_fpr),
                                     seed=int(self.seed))
        result["version"] = model["version"]
        report = result.get("report_html", "")
        url = report_url(report, cfg.region)
        context["ti"].xcom_push(key=REPORT_URL_KEY, value=url)
        self.log.info("calibration report: %s (link: %s)", report, url)
        self.log.info(
            "calibrated %s: AUC %.4f, threshold %.4f (%s), precision %.3f recall %.3f FPR %.4f; report: %s",
            model["version"], result["auc"], result["threshold"], self.threshold_mode,
            result.get("precision", float("nan")), result.get("recall", float("nan")), result.get("fpr", float("nan")),
            report,
        )
        return result


# ------------------------------------------------------------------------------------------ gate
class QualityGateOperator(_ConfiguredOperator):
    """Decide whether the candidate may become active.

    Passes when the candidate's AUC is at least ``auc_floor`` and not worse than the active model's
    AUC on the same calibration sets by more than ``tolerance``; for a score combined with the
    entities' history, the model's own AUC (``dot_product`` alone) must reach ``auc_floor`` too. A failed gate returns
    ``passed: false`` and the rollout is skipped with the reason in its log; with ``fail_on_reject``
    the gate fails the run instead (for teams that want to be paged).

    :param calibration: the calibration summary. Templated.
    :param auc_floor: minimum candidate AUC. Templated.
    :param tolerance: allowed AUC drop against the active model. Templated.
    :param fail_on_reject: raise instead of skipping the rollout.
    """

    template_fields: Sequence[str] = ("calibration", "auc_floor", "tolerance", "config_overrides")

    def __init__(self, *, calibration: Any, auc_floor: float = 0.9, tolerance: float = 0.01,
                 fail_on_reject: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calibration = calibration
        self.auc_floor = auc_floor
        self.tolerance = tolerance
        self.fail_on_reject = fail_on_reject

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.calibration_runner import score_sets_auc

        cfg = self.runtime_config()
        cal = _as_mapping(self.calibration, "calibration")
        floor, tol = float(self.auc_floor), float(self.tolerance)
        cand_auc = float(cal["auc"])
        active = self._active(cfg)
        active_auc = None
        if active and active.get("version") != cal["version"]:
            active_auc = score_sets_auc(cfg, active, cal, aws_conn_id=self.aws_conn_id)
        reasons = []
        if cand_auc < floor:
            reasons.append(f"candidate AUC {cand_auc:.4f} is below the floor {floor:.4f}")
        model_auc = (cal.get("components") or {}).get("model")
        if model_auc is not None and float(model_auc) < floor:
            # The combined score can stay high on history alone; a model that adds nothing is broken.
            reasons.append(f"candidate model AUC {float(model_auc):.4f} (dot_product alone) is below the floor {floor:.4f}")
        if active_auc is not None and cand_auc < active_auc - tol:
            reasons.append(
                f"candidate AUC {cand_auc:.4f} is worse than active {active['version']} ({active_auc:.4f}) "
                f"by more than {tol:.4f} on the same calibration sets"
            )
        decision = {
            "passed": not reasons,
            "reasons": reasons,
            "candidate": cal["version"],
            "candidate_auc": cand_auc,
            "active": active.get("version") if active else None,
            "active_auc": active_auc,
            "auc_floor": floor,
            "tolerance": tol,
        }
        if reasons:
            msg = f"quality gate rejected {cal['version']}: " + "; ".join(reasons) + " -- rollout will be skipped"
            if self.fail_on_reject:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(msg)
            self.log.warning("%s", msg)
        else:
            self.log.info("quality gate passed for %s (AUC %.4f, floor %.4f, active %s AUC %s)", cal["version"],
                          cand_auc, floor, decision["active"], f"{active_auc:.4f}" if active_auc is not None else "n/a")
        return decision

    def _active(self, cfg: SeclakeConfig) -> dict[str, Any] | None:
        if cfg.backend == "aws":
            from seclake_ml.aws.registry import read_active

            return read_active(cfg, aws_conn_id=self.aws_conn_id)
        return _model_store(cfg).active()


# ------------------------------------------------------------------------------------------ rollout
def _compact_combiner(combiner: Mapping[str, Any]) -> dict[str, Any]:
    """The score combiner as the active record keeps it (its fit details stay in the report)."""
    return {k: v for k, v in combiner.items() if k not in ("fit", "score")}


class ModelRolloutOperator(_ConfiguredOperator):
    """Make a gated candidate active together with its threshold.

    ``local``: atomic switch in the versioned model store. ``aws``: SageMaker Model + EndpointConfig +
    Endpoint (create, or blue/green update with automatic rollback on CloudWatch alarms), then the
    active version and threshold are recorded in SSM only once the endpoint is ``InService``.
    Skips itself (state ``skipped``) with the gate's reasons when the gate rejected the candidate.

    :param gate: the gate decision. Templated.
    :param model: the training summary. Templated.
    :param calibration: the calibration summary. Templated.
    """

    template_fields: Sequence[str] = ("gate", "model", "calibration", "config_overrides")

    def __init__(self, *, gate: Any, model: Any, calibration: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.model = model
        self.calibration = calibration

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        gate = _as_mapping(self.gate, "gate")
        if not gate.get("passed"):
            raise AirflowSkipException("rollout skipped: " + "; ".join(gate.get("reasons") or ["gate did not pass"]))
        cfg = self.runtime_config()
        model = _as_mapping(self.model, "model")
        cal = _as_mapping(self.calibration, "calibration")
        metrics = {k: cal.get(k) for k in ("auc", "precision", "recall", "fpr", "threshold_mode", "target_fpr")}
        if cfg.backend == "aws":
            from seclake_ml.aws.rollout import rollout_endpoint

            # The record keeps the artifact (model_data_url) and image, which the next run's quality
            # gate needs to score the candidate's sets with this model by Batch Transform, and the
            # entity profile (profile_uri) that the scoring DAGs explain findings with.
            metadata = {
                **metrics,
                "training_job": model.get("job_name"),
                "interval": {"start": model.get("start"), "end": model.get("end")},
                "report": cal.get("report_html"),
            }
            if model.get("profile_uri"):
                metadata["profile_uri"] = model["profile_uri"]
            if cal.get("combiner"):  # the threshold applies to the combined score: they travel together
                metadata["combiner"] = _compact_combiner(cal["combiner"])
            record = rollout_endpoint(cfg, model_data_url=model["model_data_url"], version=model["version"],
                                      threshold=float(cal["threshold"]), metadata=metadata,
                                      aws_conn_id=self.aws_conn_id)
        else:
            record = _model_store(cfg).activate(
                model["version"], threshold=float(cal["threshold"]), metrics=metrics,
                interval=(model.get("start"), model.get("end")),
                extra={"report": cal.get("report_html"),
                       **({"combiner": _compact_combiner(cal["combiner"])} if cal.get("combiner") else {})},
            )
        self.log.info("activated %s with threshold %.4f (previous: %s)", model["version"], float(cal["threshold"]),
                      record.get("previous_version"))
        return {"activated": True, "version": model["version"], "threshold": float(cal["threshold"]),
                "previous_version": record.get("previous_version"), "backend": cfg.backend}
