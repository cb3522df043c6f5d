"""The aws backend: Athena over the Security Lake Glue tables, SageMaker's built-in IP Insights
(training job, Batch Transform, endpoint) and the SSM registry; outputs in an ``s3://`` work location.

Training and the endpoint rollout run for minutes to hours: with ``deferrable`` they return a
:class:`~seclake_ml.handoff.Wait` on a trigger of :mod:`seclake_ml.aws.triggers`, so the wait happens
in Airflow's triggerer and no worker slot is held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from seclake_ml.backends.local import calibration_record, compact_combiner, record_metrics
from seclake_ml.config import SeclakeConfig
from seclake_ml.handoff import Activation, Calibration, PreparedData, TrainedModel, Wait
from seclake_ml.interval import DataInterval, iso
from seclake_ml.locations import training_dir

log = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Backend:
    """AWS services through the Amazon provider's hooks."""

    cfg: SeclakeConfig
    aws_conn_id: str | None = "aws_default"
    name: str = "aws"
    #: the model is served by an endpoint, which is not called per event outside the scoring path
    scores_in_process: bool = False

    # --------------------------------------------------------------------------------- the lake
    @property
    def local_lake_root(self) -> str | None:
        return None  # the lake is in S3: no local folder to protect

    def lake_label(self) -> str:
        return f"glue:{self.cfg.glue_db} workgroup:{self.cfg.athena_workgroup}"

    def extract_pairs(self, source: str, view: str, start: datetime, end: datetime, out: str) -> Any:
        """``UNLOAD`` the window's pairs under the prefix ``out`` (emptied first)."""
        from seclake_ml.lake.athena import AthenaLake

        return AthenaLake(self.cfg, aws_conn_id=self.aws_conn_id).extract(source, view, start, end, out)

    def scoring_site(self) -> Any:
        """The scoring site on AWS, with boto3 clients from the provider's hooks (:mod:`seclake_ml.aws.clients`)."""
        from seclake_ml.aws.clients import aws_clients
        from seclake_ml.scoring.sites import AwsSite

        return AwsSite(self.cfg, aws_clients(self.cfg, self.aws_conn_id))

    def read_events(self, start: datetime, end: datetime, keys: list[str] | None) -> Any:
        from seclake_ml.risk.events import read_events_aws

        return read_events_aws(self.cfg, start, end, keys, self.aws_conn_id)

    # ------------------------------------------------------------------------------- training
    def prepare(self, window: DataInterval, inputs: Sequence[str], train_fraction: float) -> PreparedData:
        """Write the training job's channels (headerless ``entity,ip`` CSV) and the entity profile."""
        import awswrangler as wr

        from seclake_ml.aws.channels import build_channels
        from seclake_ml.aws.clients import s3_hook
        from seclake_ml.feedback.training import training_feedback

        cut = window.split_at(float(train_fraction))
        out = training_dir(self.cfg, "data", window)
        hook = s3_hook(self.cfg, self.aws_conn_id)
        feedback = training_feedback(self.cfg, window, s3_client=hook.get_conn())
        res = build_channels(self.cfg, pairs_uris=list(inputs), output_uri=out + "/", split_time=cut,
                             aws_conn_id=self.aws_conn_id, exclude=feedback.exclude)
        # The labelled pairs join the calibration sets (calibrate reads them from here).
        session = hook.get_session(region_name=self.cfg.region)
        labelled = {}
        for name in ("benign", "malicious"):
            uri = f"{out}/labelled_{name}.parquet"
            wr.s3.to_parquet(getattr(feedback, name), path=uri, index=False, boto3_session=session)
            labelled[name] = uri
        main = {"train_uri", "validation_uri", "train_rows", "validation_rows", "split_time", "profile_uri"}
        return PreparedData(
            window=window, backend=self.name, train_uri=res["train_uri"], holdout_uri=res.get("validation_uri"),
            train_rows=int(res["train_rows"]), holdout_rows=int(res.get("validation_rows") or 0),
            split_time=iso(cut), profile_uri=res.get("profile_uri"),
            details={k: v for k, v in res.items() if k not in main}
            | {"feedback": dict(feedback.counts), "labelled": labelled},
        )

    def _trained(self, window: DataInterval, data: PreparedData, hp: Mapping[str, Any],
                 summary: Mapping[str, Any]) -> TrainedModel:
        return TrainedModel(
            window=window, backend=self.name, version=window.model_version(), model_uri=summary["model_data_url"],
            hyperparameters=dict(hp), train_rows=data.train_rows, profile_uri=data.profile_uri,
            details={k: v for k, v in summary.items() if k != "model_data_url"},
        )

    def train(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
              seed: int, deferrable: bool) -> TrainedModel | Wait:
        """Start (or find) the interval's SageMaker training job; wait for it here or hand back the wait."""
        from seclake_ml.aws.training import run_training

        out = run_training(self.cfg, start=window.start, end=window.end, train_uri=data.train_uri,
                           validation_uri=data.holdout_uri, hyperparameters=hyperparameters,
                           deferrable=deferrable, aws_conn_id=self.aws_conn_id)
        if isinstance(out, Wait):
            return out
        return self._trained(window, data, hyperparameters, out)

    def train_complete(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
                       event: Any) -> TrainedModel:
        from seclake_ml.aws.training import training_complete

        summary = training_complete(event, cfg=self.cfg, aws_conn_id=self.aws_conn_id)
        return self._trained(window, data, hyperparameters, summary)

    def calibrate(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                  seed: int, deferrable: bool = False) -> Calibration | Wait:
        """Build the sets from the channels, score them with a Batch Transform job, choose the threshold."""
        from seclake_ml.calibration_runner import calibrate_aws

        out = calibrate_aws(self.cfg, model=model, data=data, out_dir=training_dir(self.cfg, "calibration", model.window),
                            mode=mode, target_fpr=float(target_fpr), seed=int(seed), aws_conn_id=self.aws_conn_id,
                            deferrable=deferrable)
        if isinstance(out, Wait):
            return out
        return calibration_record(model.window, model.version, out)

    def calibrate_complete(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                           seed: int, event: Any) -> Calibration:
        from seclake_ml.calibration_runner import calibrate_aws_complete

        summary = calibrate_aws_complete(self.cfg, model=model, data=data,
                                         out_dir=training_dir(self.cfg, "calibration", model.window), mode=mode,
                                         target_fpr=float(target_fpr), seed=int(seed), event=event,
                                         aws_conn_id=self.aws_conn_id)
        return calibration_record(model.window, model.version, summary)

    # ---------------------------------------------------------------------------- the registry
    def active(self) -> dict[str, Any] | None:
        from seclake_ml.aws.registry import read_active

        return read_active(self.cfg, aws_conn_id=self.aws_conn_id)

    def active_auc(self, active: Mapping[str, Any], calibration: Calibration) -> float | None:
        from seclake_ml.calibration_runner import active_auc_aws

        return active_auc_aws(self.cfg, active, calibration.normal_set, calibration.abnormal_set,
                              aws_conn_id=self.aws_conn_id)

    def _metadata(self, model: TrainedModel, calibration: Calibration) -> dict[str, Any]:
        # The record keeps the artifact and image (the next run's gate scores its sets with this model
        # by Batch Transform), the entity profile the scoring DAGs explain findings with, and the
        # threshold rule and score combiner, which travel together.
        metadata: dict[str, Any] = {
            **record_metrics(calibration),
            "training_job": model.details.get("job_name"),
            "interval": model.window.to_xcom(),
            "report": calibration.report_uri,
            "threshold_rule": calibration.threshold,
        }
        if calibration.score_reference:
            metadata["score_reference"] = calibration.score_reference
        if model.profile_uri:
            metadata["profile_uri"] = model.profile_uri
        if calibration.combiner:
            metadata["combiner"] = compact_combiner(calibration.combiner)
        return metadata

    def _activation(self, model: TrainedModel, calibration: Calibration, done: Mapping[str, Any]) -> Activation:
        return Activation(backend=self.name, version=model.version, threshold=calibration.threshold_value,
                          previous_version=done.get("previous_version"),
                          details={k: done.get(k) for k in ("endpoint_name", "endpoint_config_name",
                                                            "model_name", "action")})

    def activate(self, model: TrainedModel, calibration: Calibration, deferrable: bool) -> Activation | Wait:
        """Create or blue/green-update the endpoint; the SSM record is written only once it is
        ``InService`` on the new config (a rollback by the CloudWatch alarms is an error)."""
        from seclake_ml.aws.rollout import rollout_complete, rollout_endpoint, rollout_trigger, start_rollout

        args = {"model_data_url": model.model_uri, "version": model.version,
                "threshold": calibration.threshold_value, "metadata": self._metadata(model, calibration),
                "aws_conn_id": self.aws_conn_id}
        if not deferrable:
            return self._activation(model, calibration, rollout_endpoint(self.cfg, **args))
        started = start_rollout(self.cfg, **args)
        if started.get("done"):
            return self._activation(model, calibration,
                                    rollout_complete(self.cfg, started, None, aws_conn_id=self.aws_conn_id))
        trigger = rollout_trigger(self.cfg, started, aws_conn_id=self.aws_conn_id)
        return Wait(trigger=trigger, timeout_seconds=4 * 3600 + 600, kwargs={"started": _json_safe(started)})

    def activate_complete(self, model: TrainedModel, calibration: Calibration, event: Any,
                          started: Mapping[str, Any] | None = None) -> Activation:
        from seclake_ml.aws.rollout import rollout_complete

        if started is None:
            raise ValueError("activate_complete: the rollout's start record is missing from the deferral")
        return self._activation(model, calibration,
                                rollout_complete(self.cfg, started, event, aws_conn_id=self.aws_conn_id))
