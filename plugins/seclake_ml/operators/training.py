"""Operators of the training DAG after extraction: prepare → train → calibrate → gate → roll out.

Each operator picks the backend once (:func:`seclake_ml.backends.backend_of`, from the package
configuration at run time, never from the DAG file) and hands its work to it; what one task gives
the next is a typed record of :mod:`seclake_ml.handoff` in its XCom form. Constructors are cheap and
offline; heavy imports (torch, DuckDB, pandas, provider hooks) happen inside ``execute``.

Outputs are keyed by the data interval and the model version is derived from it, so re-running or
backfilling an interval replaces that interval's outputs. On aws the training job and the endpoint
rollout wait in Airflow's triggerer when ``deferrable`` (default: ``[operators] default_deferrable``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from seclake_ml.links import REPORT_URL_KEY, CalibrationReportLink, report_url
from seclake_ml.operators.base import _ConfiguredOperator

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


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (``False`` when it is not set)."""
    from airflow.providers.common.compat.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


# ------------------------------------------------------------------------------------------ prepare
class PrepareTrainingDataOperator(_ConfiguredOperator):
    """Combine the extracted pairs of all source views and split them in time (train / held out).

    :param extraction: the extracted pairs (:class:`~seclake_ml.handoff.Extraction`). Templated.
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
        from seclake_ml.handoff import Extraction

        ext = Extraction.from_xcom(self.extraction, "extraction")
        window = ext.window
        fraction = float(self.train_fraction)
        if not 0.05 <= fraction <= 0.95:
            raise ValueError(f"train_fraction: got {self.train_fraction!r}; allowed: 0.05 .. 0.95")
        inputs = list(ext.pairs.values())
        try:
            data = self.backend().prepare(window, inputs, fraction)
        except ValueError as exc:
            if not str(exc).startswith("no training rows"):
                raise
            _fail(f"{exc}; nothing to train on")
        self.log.info("training data for %s: %s training rows, %s held out, split at %s", window.label,
                      data.train_rows, data.holdout_rows, data.split_time)
        if not data.train_rows:
            _fail(f"no training rows before {data.split_time}; nothing to train on")
        return data.to_xcom()


# ------------------------------------------------------------------------------------------ train
class IPInsightsTrainingOperator(_ConfiguredOperator):
    """Train an IP Insights model on the training part of the interval.

    ``local``: the package's engine (PyTorch, CPU or CUDA). ``aws``: a SageMaker training job with the
    built-in ``ipinsights`` image and a deterministic job name; with ``deferrable`` it is waited for
    in the triggerer.

    :param data: the prepared data (:class:`~seclake_ml.handoff.PreparedData`). Templated.
    :param hyperparameters: SageMaker-named hyperparameters over the seed's defaults. Templated.
    :param seed: seed of the local engine (initialisation, negatives, hashing).
    :param deferrable: aws: wait for the training job in the triggerer (default: Airflow's
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("data", "hyperparameters", "config_overrides")
    template_fields_renderers = {"hyperparameters": "json"}

    def __init__(self, *, data: Any, hyperparameters: Mapping[str, Any] | None = None, seed: int = 0,
                 deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data
        self.hyperparameters = hyperparameters
        self.seed = seed
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    def _hyperparameters(self, cfg: SeclakeConfig) -> dict[str, Any]:
        hp = dict(SEED_HYPERPARAMETERS)
        hp.update(cfg.hyperparameters)
        if self.hyperparameters:
            from seclake_ml.handoff import decode_mapping

            hp.update(decode_mapping(self.hyperparameters, "hyperparameters"))
        return hp

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.handoff import PreparedData, Wait
        from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters

        cfg = self.runtime_config()
        data = PreparedData.from_xcom(self.data, "data")
        hp = self._hyperparameters(cfg)
        IPInsightsHyperparameters.from_dict(hp)  # validate before spending anything
        self.log.info("training %s on %s backend=%s hyperparameters=%s", data.window.model_version(),
                      data.window.label, cfg.backend, json.dumps(hp, sort_keys=True))
        out = self.backend(cfg).train(data.window, data, hp, int(self.seed), self.deferrable)
        if isinstance(out, Wait):
            # the hyperparameters the job runs with travel with the deferral (the configuration may
            # change while the job runs)
            self.defer_on(Wait(out.trigger, out.timeout_seconds, out.method_name, {**out.kwargs, "hyperparameters": hp}))
        self.log.info("trained %s: %s", out.version, json.dumps(out.details, default=str)[:400])
        return out.to_xcom()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
        from seclake_ml.handoff import PreparedData

        cfg = self.runtime_config()
        data = PreparedData.from_xcom(self.data, "data")
        hp = dict(hyperparameters) if hyperparameters else self._hyperparameters(cfg)
        model = self.backend(cfg).train_complete(data.window, data, hp, event)
        self.log.info("trained %s: %s", model.version, json.dumps(model.details, default=str)[:400])
        return model.to_xcom()


# ------------------------------------------------------------------------------------------ calibrate
class ThresholdCalibrationOperator(_ConfiguredOperator):
    """Build known-normal and injected-abnormal sets, score them and choose the threshold.

    ``local`` scores with the NumPy scorer; ``aws`` with a SageMaker Batch Transform job (no endpoint).
    Writes the report (histograms, ROC, metrics JSON, HTML) under the interval's folder.

    :param model: the trained model (:class:`~seclake_ml.handoff.TrainedModel`). Templated.
    :param data: the prepared data. Templated.
    :param threshold_mode: ``target_fpr`` or ``best_f1``.
    :param target_fpr: false-positive rate the threshold is chosen for (``target_fpr`` mode).
    :param seed: seed for the injected sets.
    :param deferrable: aws: wait for the Batch Transform job in the triggerer (default: Airflow's
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("model", "data", "target_fpr", "config_overrides")
    operator_extra_links = (CalibrationReportLink(),)

    def __init__(self, *, model: Any, data: Any, threshold_mode: str = "target_fpr", target_fpr: float = 0.01,
                 seed: int = 0, deferrable: bool | None = None, **kwargs: Any) -> None:
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
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.handoff import PreparedData, TrainedModel, Wait

        cfg = self.runtime_config()
        model = TrainedModel.from_xcom(self.model, "model")
        data = PreparedData.from_xcom(self.data, "data")
        out = self.backend(cfg).calibrate(model, data, self.threshold_mode, float(self.target_fpr), int(self.seed),
                                          self.deferrable)
        if isinstance(out, Wait):
            self.defer_on(out)
        return self._report(context, cfg, out)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from seclake_ml.handoff import PreparedData, TrainedModel

        cfg = self.runtime_config()
        model = TrainedModel.from_xcom(self.model, "model")
        data = PreparedData.from_xcom(self.data, "data")
        cal = self.backend(cfg).calibrate_complete(model, data, self.threshold_mode, float(self.target_fpr),
                                                   int(self.seed), event)
        return self._report(context, cfg, cal)

    def _report(self, context: Context, cfg: SeclakeConfig, cal: Any) -> dict[str, Any]:
        url = report_url(cal.report_uri or "", cfg.region)
        context["ti"].xcom_push(key=REPORT_URL_KEY, value=url)
        rule = cal.threshold
        self.log.info("calibration report: %s (link: %s)", cal.report_uri, url)
        self.log.info(
            "calibrated %s: AUC %.4f, threshold %.4f (%s), precision %.3f recall %.3f FPR %.4f; report: %s",
            cal.version, cal.auc, cal.threshold_value, self.threshold_mode, float(rule.get("precision") or 0.0),
            float(rule.get("recall") or 0.0), float(rule.get("fpr") or 0.0), cal.report_uri,
        )
        return cal.to_xcom()


# ------------------------------------------------------------------------------------------ gate
class QualityGateOperator(_ConfiguredOperator):
    """Decide whether the candidate may become active.

    Passes when the candidate's AUC is at least ``auc_floor`` and not worse than the active model's
    AUC on the same calibration sets by more than ``tolerance``; for a score combined with the
    entities' history, the model's own AUC (``dot_product`` alone) must reach ``auc_floor`` too. A failed gate returns
    ``passed: false`` and the rollout is skipped with the reason in its log; with ``fail_on_reject``
    the gate fails the run instead (for teams that want to be paged).

    :param calibration: the calibration (:class:`~seclake_ml.handoff.Calibration`). Templated.
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
        from seclake_ml.handoff import Calibration, GateDecision

        cal = Calibration.from_xcom(self.calibration, "calibration")
        backend = self.backend()
        floor, tol = float(self.auc_floor), float(self.tolerance)
        cand_auc = cal.auc
        active = backend.active()
        active_auc = None
        if active and active.get("version") != cal.version:
            active_auc = backend.active_auc(active, cal)
        reasons = []
        if cand_auc < floor:
            reasons.append(f"candidate AUC {cand_auc:.4f} is below the floor {floor:.4f}")
        model_auc = cal.components.get("model")
        if model_auc is not None and float(model_auc) < floor:
            # The combined score can stay high on history alone; a model that adds nothing is broken.
            reasons.append(f"candidate model AUC {float(model_auc):.4f} (dot_product alone) is below the floor {floor:.4f}")
        if active_auc is not None and cand_auc < active_auc - tol:
            reasons.append(
                f"candidate AUC {cand_auc:.4f} is worse than active {active['version']} ({active_auc:.4f}) "
                f"by more than {tol:.4f} on the same calibration sets"
            )
        decision = GateDecision(passed=not reasons, reasons=reasons, candidate=cal.version, candidate_auc=cand_auc,
                                active=active.get("version") if active else None, active_auc=active_auc,
                                auc_floor=floor, tolerance=tol)
        if reasons:
            msg = f"quality gate rejected {cal.version}: " + "; ".join(reasons) + " -- rollout will be skipped"
            if self.fail_on_reject:
                _fail(msg)
            self.log.warning("%s", msg)
        else:
            self.log.info("quality gate passed for %s (AUC %.4f, floor %.4f, active %s AUC %s)", cal.version,
                          cand_auc, floor, decision.active, f"{active_auc:.4f}" if active_auc is not None else "n/a")
        return decision.to_xcom()


# ------------------------------------------------------------------------------------------ rollout
class ModelRolloutOperator(_ConfiguredOperator):
    """Make a gated candidate active together with its threshold.

    ``local``: atomic switch in the versioned model store. ``aws``: SageMaker Model + EndpointConfig +
    Endpoint (create, or blue/green update with automatic rollback on CloudWatch alarms); the active
    version and threshold are recorded in SSM only once the endpoint is ``InService`` on the new
    config. With ``deferrable`` the endpoint is waited for in the triggerer. Skips itself (state
    ``skipped``) with the gate's reasons when the gate rejected the candidate.

    :param gate: the gate decision. Templated.
    :param model: the trained model. Templated.
    :param calibration: the calibration. Templated.
    :param deferrable: aws: wait for the endpoint in the triggerer (default: Airflow's
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("gate", "model", "calibration", "config_overrides")

    def __init__(self, *, gate: Any, model: Any, calibration: Any, deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.model = model
        self.calibration = calibration
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from seclake_ml.handoff import Calibration, GateDecision, TrainedModel, Wait

        gate = GateDecision.from_xcom(self.gate, "gate")
        if not gate.passed:
            raise AirflowSkipException("rollout skipped: " + "; ".join(gate.reasons or ["gate did not pass"]))
        model = TrainedModel.from_xcom(self.model, "model")
        cal = Calibration.from_xcom(self.calibration, "calibration")
        out = self.backend().activate(model, cal, self.deferrable)
        if isinstance(out, Wait):
            self.defer_on(out)
        return self._done(out)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         started: dict[str, Any] | None = None) -> dict[str, Any]:
        from seclake_ml.handoff import Calibration, TrainedModel

        model = TrainedModel.from_xcom(self.model, "model")
        cal = Calibration.from_xcom(self.calibration, "calibration")
        return self._done(self.backend().activate_complete(model, cal, event, started=started))

    def _done(self, activation: Any) -> dict[str, Any]:
        self.log.info("activated %s with threshold %.4f (previous: %s)", activation.version, activation.threshold,
                      activation.previous_version)
        return activation.to_xcom()
