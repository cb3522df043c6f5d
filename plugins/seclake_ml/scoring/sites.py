"""Where a scoring run reads and writes: a local lake folder, or the Security Lake bucket and AWS services.

A :class:`LocalSite` or an :class:`AwsSite` answers the questions whose answers depend on the
backend: which model is active (the local model store, or the SSM registry record), which lake
objects a set of ``eventDay`` partitions holds, how to open an object, which scorer serves a model,
where severe findings are published and where findings are written. The operators get theirs from
the backend factory (:meth:`seclake_ml.backends.local.Backend.scoring_site`); the Lambda, an aws-only
entry point, builds an :class:`AwsSite` from its own clients. No Airflow imports here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Callable

from seclake_ml.aws.clients import AwsClients
from seclake_ml.config import SeclakeConfig
from seclake_ml.locations import work_root
from seclake_ml.scoring.model_record import ActiveModel
from seclake_ml.scoring.lake_object import InvalidLakeKey, LakeObject, parse_lake_key
from seclake_ml.sources import get_source
from seclake_ml.uris import is_s3, s3_subfolders, split_s3_uri

log = logging.getLogger(__name__)


class NoActiveModel(RuntimeError):
    """No model is active yet: train and roll one out first (``seclake_ipinsights_training``)."""


def enabled_lake_sources(cfg: SeclakeConfig) -> set[str]:
    return {get_source(s).lake_source for s, _ in cfg.source_views()}


def _rule_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The calibrated threshold rule of an active record (``threshold_rule``), when it is usable and
    agrees with the record's ``threshold``; ``None`` (the bare threshold is used) otherwise."""
    rule = record.get("threshold_rule")
    if rule is None:
        return None
    from seclake_ml.ipinsights.calibration import Threshold

    try:
        parsed = Threshold.from_dict(dict(rule))
    except (TypeError, ValueError) as exc:
        log.warning("active record's threshold_rule is unusable (%s); flagging with its threshold alone", exc)
        return None
    if not math.isclose(parsed.value, float(record["threshold"]), rel_tol=0.0, abs_tol=1e-12):
        log.warning("active record's threshold_rule (%s) disagrees with its threshold (%s); using the threshold",
                    parsed.value, record["threshold"])
        return None
    return parsed.to_dict()


def _combiner_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's score combiner (validated), or ``None`` for a record without one."""
    data = record.get("combiner")
    if data is None:
        return None
    from seclake_ml.ipinsights.combiner import ScoreCombiner

    try:
        return ScoreCombiner.from_dict(data).to_dict()
    except ValueError as exc:
        raise NoActiveModel(f"active record's 'combiner' is unusable: {exc}") from None


def _model_files(store: Any, version: str) -> tuple[str, str | None]:
    """``(model folder, its entity profile or None)`` of ``version`` in the local model store."""
    from seclake_ml.scoring.profile import PROFILE_FILE

    model_dir = store.version_dir(version)
    profile = model_dir / PROFILE_FILE
    return str(model_dir), str(profile) if profile.is_file() else None


def model_from_record(record: str | Mapping[str, Any], *, severity_scale: float) -> ActiveModel:
    """The :class:`ActiveModel` of a registry ``active`` record, as the rollout writes it.

    The record is checked by :func:`seclake_ml.aws.registry.check_active_record` (the one check of
    active records, also behind :func:`~seclake_ml.aws.registry.read_active_record`); what it refuses
    (not a JSON object, no version, a threshold that is missing or not finite, an invalid endpoint
    name) raises :class:`NoActiveModel` naming it. ``endpoint_name`` is ``None`` when the record names
    none; a ``profile_uri`` that is not ``s3://`` is dropped (findings are still written, without the
    usual-network text); a valid positive ``severity_scale`` in the record wins over ``severity_scale``.

    :param record: the record, as JSON text or already parsed.
    :param severity_scale: the configured severity scale, used when the record carries no valid one.
    """
    from seclake_ml.aws.registry import UnreadableRecord, check_active_record, parse_active_record

    try:
        record = parse_active_record(record) if isinstance(record, str) else check_active_record(record)
    except UnreadableRecord as exc:
        raise NoActiveModel(str(exc)) from None
    version, threshold, endpoint = record["version"], record["threshold"], record.get("endpoint_name")
    profile_uri = record.get("profile_uri")
    if profile_uri is not None and not is_s3(profile_uri):
        log.warning("active record's profile_uri is not an s3:// URI; findings carry no usual-network explanation")
        profile_uri = None
    scale = record.get("severity_scale")
    try:
        scale = float(scale) if scale is not None else severity_scale
    except (TypeError, ValueError):
        scale = severity_scale
    if not math.isfinite(scale) or scale <= 0:
        scale = severity_scale
    config_name = record.get("endpoint_config_name")
    return ActiveModel(version=version, threshold=threshold, backend="aws", endpoint_name=endpoint,
                       profile_uri=profile_uri, severity_scale=scale,
                       endpoint_config_name=config_name if isinstance(config_name, str) else None,
                       combiner=_combiner_of(record), threshold_rule=_rule_of(record),
                       score_reference=record.get("score_reference"))


def iter_local_objects(cfg: SeclakeConfig, *, days: set[str] | None = None) -> tuple[list[LakeObject], list[dict]]:
    """Parquet objects of the enabled lake sources under the local lake root (``days``: eventDay filter).

    Returns the objects and the files that are not valid lake keys (with the reason), links that
    resolve outside the lake root included (:class:`~seclake_ml.lake.paths.LinkPolicy`, the same
    policy as extraction).
    """
    from seclake_ml.lake.paths import LinkPolicy

    root = Path(cfg.lake_root).expanduser().resolve()
    objects: list[LakeObject] = []
    rejected: list[dict] = []
    links = LinkPolicy(root)
    for lake_source in sorted(enabled_lake_sources(cfg)):
        base = root / "aws" / lake_source / f"{cfg.source_version}.0"
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in links.walk(base):
            if days is not None:
                here = Path(dirpath).name
                if here.lower().startswith("eventday=") and here.split("=", 1)[1] not in days:
                    dirnames[:] = []
                    continue
            for name in sorted(filenames):
                if name.startswith(".") or not name.endswith(".parquet"):
                    continue
                path = Path(dirpath) / name
                rel = path.relative_to(root).as_posix()
                try:
                    st = path.stat()
                    obj = parse_lake_key(rel, size=st.st_size, etag=f"{st.st_mtime_ns}-{st.st_size}")
                except (InvalidLakeKey, OSError) as exc:
                    rejected.append({"key": rel[:300], "reason": str(exc)[:300]})
                    continue
                if days is not None and obj.event_day not in days:
                    continue
                if cfg.accounts and obj.account not in cfg.accounts or cfg.regions and obj.region not in cfg.regions:
                    continue
                objects.append(obj)
    for r in links.refused:
        path = Path(r["path"])
        rel = path.relative_to(root).as_posix() if root in path.parents else str(path)
        rejected.append({"key": rel[:300], "reason": r["reason"]})
    return objects, rejected


def list_s3_objects(cfg: SeclakeConfig, s3: Any, days: set[str]) -> list[LakeObject]:
    """Lake objects of ``days`` in the lake bucket, listed partition by partition (delimiter listing)."""
    out: list[LakeObject] = []
    paginator = s3.get_paginator("list_objects_v2")
    for lake_source in sorted(enabled_lake_sources(cfg)):
        for region_p in s3_subfolders(paginator, cfg.lake_bucket, f"aws/{lake_source}/{cfg.source_version}.0/"):
            for acct_p in s3_subfolders(paginator, cfg.lake_bucket, region_p):
                for day in sorted(days):
                    for page in paginator.paginate(Bucket=cfg.lake_bucket, Prefix=f"{acct_p}eventDay={day}/"):
                        for item in page.get("Contents", []):
                            try:
                                obj = parse_lake_key(item["Key"], bucket=cfg.lake_bucket, size=item.get("Size"),
                                                     etag=str(item.get("ETag", "")).strip('"') or None)
                            except InvalidLakeKey as exc:
                                log.error("not a lake object, skipped: %s (%s)", item["Key"][:300], exc)
                                continue
                            if cfg.accounts and obj.account not in cfg.accounts:
                                continue
                            if cfg.regions and obj.region not in cfg.regions:
                                continue
                            out.append(obj)
    return out


def findings_location(cfg: SeclakeConfig, backend: str | None = None) -> str:
    """The root of the findings tree: ``extra.scoring.findings_location``, else the local lake root
    (``local``) or ``s3://<lake_bucket>`` (``aws``).

    :param backend: whose default applies (default: ``cfg.backend``); a site passes its own name.
    :raises ValueError: aws without ``lake_bucket`` or ``findings_location``.
    """
    loc = cfg.scoring.findings_location
    if loc:
        return str(loc).rstrip("/")
    if (backend or cfg.backend) != "aws":
        return str(Path(cfg.lake_root).expanduser().resolve())
    if not cfg.lake_bucket:
        raise ValueError("aws scoring needs lake_bucket (or extra.scoring.findings_location) for findings")
    return f"s3://{cfg.lake_bucket}"


# ------------------------------------------------------------------------------------ sites
class LocalSite:
    """The embedded default: the lake folder, the local model store, findings under the lake root."""

    name = "local"

    def __init__(self, cfg: SeclakeConfig) -> None:
        self.cfg = cfg
        self.clients: AwsClients | None = None

    def findings_location(self) -> str:
        """The root of the findings tree (``extra.scoring.findings_location``, else the lake root)."""
        return findings_location(self.cfg, self.name)

    def active_model(self) -> ActiveModel:
        """The active model and threshold of the local model store."""
        from seclake_ml.model_store import ModelStoreError, ipinsights_store

        cfg = self.cfg
        scale = float(cfg.scoring.severity_scale)
        store = ipinsights_store(cfg)
        try:
            record = store.active()  # validated: version name, finite threshold; model_dir from the store
        except ModelStoreError as exc:
            raise NoActiveModel(f"unusable active model record: {exc}") from None
        if record is None:
            raise NoActiveModel(f"no active model in {store.root}; run seclake_ipinsights_training first")
        model_dir, profile_uri = _model_files(store, record["version"])
        return ActiveModel(version=record["version"], threshold=record["threshold"], backend="local",
                           model_dir=model_dir, profile_uri=profile_uri,
                           severity_scale=scale, combiner=_combiner_of(record), threshold_rule=_rule_of(record),
                           score_reference=record.get("score_reference"))

    def lake_objects(self, days: set[str]) -> list[LakeObject]:
        """Objects of the enabled sources in the ``eventDay`` partitions ``days`` (YYYYMMDD)."""
        from seclake_ml.display import escape

        objects, rejected = iter_local_objects(self.cfg, days=days)
        for r in rejected:
            log.error("not a lake object, skipped: %s (%s)", escape(r["key"])[0], escape(r["reason"])[0])
        return objects

    def serving(self, endpoint: str) -> tuple[str, str | None] | None:
        return None  # no endpoint: the model is served from its folder

    def load(self, model: ActiveModel) -> tuple[ActiveModel, Any]:
        """``(model, its scorer)``: the store's folder of the model's version (never a path from the
        record), with its entity profile when present (:func:`~.service.pinned_model` has checked
        that the model is this site's)."""
        from seclake_ml.model_store import ipinsights_store
        from seclake_ml.scoring.scorers import LocalScorer

        model.model_dir, model.profile_uri = _model_files(ipinsights_store(self.cfg), model.version)
        return model, LocalScorer(model.model_dir)

    def notification_queue(self) -> str | None:
        """``None``: new objects are found by listing the lake folder, not announced on a queue."""
        return None

    def scoring_io(self, model: ActiveModel, local_scorer: Any, publisher: Any) -> tuple[Any, Callable, Any]:
        """``(scorer, open_object, publisher)`` of a batch: the model's local scorer, lake files opened
        under the lake root, severe findings to the log and ``<work>/scoring/alerts/severe.jsonl``."""
        from seclake_ml.scoring.stores import open_local_object

        lake_root = Path(self.cfg.lake_root).expanduser().resolve()

        def open_object(obj: LakeObject) -> Any:
            return open_local_object(lake_root, obj.key)

        return local_scorer, open_object, publisher or self.severe_publisher()

    def severe_publisher(self) -> Any:
        """Severe findings go to the log and ``<work>/scoring/alerts/severe.jsonl``."""
        from seclake_ml.scoring.stores import LogPublisher

        return LogPublisher(Path(work_root(self.cfg)) / "scoring" / "alerts" / "severe.jsonl")

    def findings_store(self) -> Any:
        """The store findings are written to (a folder)."""
        from seclake_ml.scoring.stores import store_for

        return store_for(self.findings_location())

    def read_bytes(self, uri: str) -> bytes:
        raise ValueError(f"{uri[:200]}: an s3:// location, and this site reads local files only")


class AwsSite:
    """The Security Lake bucket, the SSM registry, the endpoint and SNS, through ``clients``."""

    name = "aws"

    def __init__(self, cfg: SeclakeConfig, clients: Any) -> None:
        self.cfg = cfg
        self.clients = clients

    def findings_location(self) -> str:
        """The root of the findings tree (``extra.scoring.findings_location``, else ``s3://<lake_bucket>``)."""
        return findings_location(self.cfg, self.name)

    def active_model(self) -> ActiveModel:
        """The active model and threshold of the SSM registry record of the scoring endpoint."""
        from seclake_ml.aws.registry import (
            NoActiveRecord,
            UnreadableRecord,
            active_parameter,
            configured_endpoint,
            read_active_record,
        )

        cfg, clients = self.cfg, self.clients
        scale = float(cfg.scoring.severity_scale)

        name = active_parameter(cfg)
        try:
            record = read_active_record(clients.ssm, name)
        except NoActiveRecord:
            raise NoActiveModel(f"no active model: SSM parameter {name} does not exist; roll a model out first") from None
        except UnreadableRecord as exc:
            if exc.retryable:  # SSM refused or did not answer: the task fails and is retried
                raise
            raise NoActiveModel(f"unusable active model record: {exc}") from None
        model = model_from_record(record, severity_scale=scale)
        return model if model.endpoint_name else dc_replace(model, endpoint_name=configured_endpoint(cfg))

    def load(self, model: ActiveModel) -> tuple[ActiveModel, Any]:
        """``(model, None)``: its endpoint scores it (:func:`~.service.pinned_model` has checked that the
        model is this site's)."""
        return model, None

    def lake_objects(self, days: set[str]) -> list[LakeObject]:
        """Objects of the enabled sources in the ``eventDay`` partitions ``days`` of the lake bucket."""
        return list_s3_objects(self.cfg, self.clients.s3, days)

    def notification_queue(self) -> str:
        """The Security Lake subscriber queue that announces new objects (``extra.scoring.queue_url``)."""
        url = self.cfg.scoring.queue_url
        if not url:
            raise ValueError("aws scoring needs extra.scoring.queue_url (the Security Lake subscriber queue URL)")
        return str(url)

    def serving(self, endpoint: str) -> tuple[str, str | None] | None:
        """``(status, endpoint config)`` of the endpoint, or ``None`` when it cannot be described."""
        if getattr(self.clients, "sagemaker", None) is None:
            return None
        try:
            desc = self.clients.sagemaker.describe_endpoint(EndpointName=endpoint)
        except Exception as exc:  # noqa: BLE001 - invoke_endpoint will say what is wrong with the endpoint
            log.warning("cannot describe endpoint %s (%s); scoring with the pinned model as recorded", endpoint,
                        str(exc)[:200])
            return None
        return str(desc.get("EndpointStatus")), desc.get("EndpointConfigName")

    def scoring_io(self, model: ActiveModel, local_scorer: Any, publisher: Any) -> tuple[Any, Callable, Any]:
        """``(scorer, open_object, publisher)`` of a batch: the model's endpoint, lake objects read from
        S3, severe findings to the SNS topic (or the log when none is configured)."""
        from seclake_ml.scoring.scorers import EndpointScorer
        from seclake_ml.scoring.stores import S3Objects

        s3objs = S3Objects(self.clients.s3)
        bucket = self.cfg.lake_bucket

        def open_object(obj: LakeObject) -> Any:
            return s3objs.open(obj.bucket or bucket, obj.key)

        return EndpointScorer(self.clients.runtime, model.endpoint_name), open_object, publisher or self.severe_publisher()

    def severe_publisher(self) -> Any:
        """Severe findings go to the SNS topic ``extra.scoring.sns_topic_arn`` (to the log when unset)."""
        from seclake_ml.scoring.stores import LogPublisher, SnsPublisher

        topic = self.cfg.scoring.sns_topic_arn
        return SnsPublisher(self.clients.sns, topic) if topic else LogPublisher(None)

    def findings_store(self) -> Any:
        """The store findings are written to (the lake bucket, or ``findings_location``)."""
        from seclake_ml.scoring.stores import store_for

        return store_for(self.findings_location(), self.clients.s3)

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri, "profile_uri", require_key=True)
        return self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
