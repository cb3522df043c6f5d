"""Security Lake subscriber queue -> IP Insights findings, as an SQS-triggered Lambda function.

Security Lake announces every new Parquet object on a subscriber SQS queue. An event source mapping
(``BatchSize`` 10, ``FunctionResponseTypes: [ReportBatchItemFailures]``) hands those messages to
:func:`lambda_handler`, which scores the announced objects with the active IP Insights model and
writes the flagged pairs as OCSF Detection Findings. It is the event-driven twin of the Airflow
scoring DAG and uses the same engine (:mod:`seclake_ml.scoring`), the same processed-objects ledger,
the same findings files and the same finding uids, so the two can run side by side.

One invocation:

1. parses the SQS records with :func:`seclake_ml.scoring.notifications.parse_messages` (EventBridge
   and S3-notification shapes, SNS-wrapped or not; the body is the JSON *string* SQS delivers, a
   decoded dict is accepted too). Malformed messages (poison) and messages that announce nothing
   for us (``s3:TestEvent``, other sources or versions, deletions) are logged and dropped: they are
   never reported as failures, so SQS does not redeliver them forever;
2. leaves out objects the ledger already holds (scored by the DAG, by an earlier invocation, or
   announced twice);
3. reads the active model record (version, threshold, endpoint, profile) from SSM, cached per
   container for ``ACTIVE_TTL_SECONDS`` so a newly activated model is picked up within that time.
   When it cannot be read, every message that announced an object still to score is reported as
   failed (SQS retries them later); messages that need no model are not;
4. scores each object with :func:`seclake_ml.scoring.engine.score_objects`: chunked Parquet reads,
   the SageMaker endpoint (``text/csv`` in, IP Insights JSON out), the threshold, explanations from
   the training profile, findings Parquet under ``ext/ipinsights-<source>/…`` of
   ``FINDINGS_LOCATION``, severe findings to SNS, then a ledger entry for the object. Findings of
   pairs on the analysts' allow-list (:mod:`seclake_ml.feedback.allowlist`, read from
   ``WORK_LOCATION/feedback/allowlist/`` and cached per container for ``ACTIVE_TTL_SECONDS``, like
   the active record) are written as Suppressed and not published; an entry stops matching when it
   expires. An allow-list that cannot be read suppresses nothing (the last copy read is used while
   there is one) and is reported in the summary (``allowlist``);
5. returns ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`` naming only the
   messages whose objects failed with a transient error (S3 or endpoint errors after retries, or no
   time left), so only those come back. An object that cannot be read as Parquet is quarantined in
   the ledger instead (not retried).

Every invocation prints exactly one JSON summary line (``"log": "ipcheck.summary"``) with counts
(messages, objects, rows, pairs, drops by reason, findings by severity) and seconds per stage. No
message body, credential or environment dump is logged. Nothing is pickled.

Environment variables
---------------------
``LAKE_BUCKET``             Security Lake bucket; notifications for other buckets are rejected (required)
``SOURCES``                 comma list of ``source:view`` to score (default: the package defaults,
                            ``vpc_flow:instance_peer,cloudtrail_signin:principal_ip``)
``SOURCE_VERSION``          Security Lake source version, ``1`` or ``2`` (default ``1``)
``REGION``                  region of the lake (default: ``AWS_REGION``, which Lambda sets)
``SSM_ACTIVE_PARAMETER``    the model registry's ``<ssm_path>/<endpoint>/active`` parameter (required)
``ENDPOINT_NAME``           optional guard: the only endpoint this function may invoke; an active
                            record naming another endpoint counts as "model unavailable"
``FINDINGS_LOCATION``       ``s3://bucket[/prefix]`` root of the findings tree (default ``s3://<LAKE_BUCKET>``)
``WORK_LOCATION``           ``s3://bucket/prefix``: the configuration's ``work_location`` (ledger) (required)
``SNS_TOPIC_ARN``           topic for severe findings (default: none, severe findings are only logged)
``PUBLISH_MIN_SEVERITY``    OCSF ``severity_id`` from which findings are published (default ``4``, High)
``SEVERITY_SCALE``          score distance past the threshold per severity band (default ``1.0``;
                            an active record's ``severity_scale`` wins)
``CHUNK_ROWS``              rows per Parquet chunk (default ``100000``; memory follows this, not the object)
``READ_AHEAD``              objects downloaded and read at the same time, in threads, while the current
                            one is scored (default ``2``; ``0``: one after the other)
``ACTIVE_TTL_SECONDS``      how long the active record is cached per container (default ``60``)
``DEADLINE_MARGIN_SECONDS`` no object is downloaded or scored with less time left than this (default ``30``);
                            objects not started are reported like failures and come back
``LOG_LEVEL``               level of the other log lines (default ``INFO``)
``UNKNOWN_ENTITIES``        per source, what happens to pairs of entities the model never saw, as
                            ``source=policy`` items separated by commas, e.g.
                            ``cloudtrail_api=peers,vpc_flow=ignore`` (policies ``peers``, the default,
                            and ``ignore``; see :mod:`seclake_ml.scoring.peers`)
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from seclake_ml import __version__ as PACKAGE_VERSION
from seclake_ml.aws.registry import RegistryError, read_active_record
from seclake_ml.config import ConfigError, SeclakeConfig
from seclake_ml.feedback.allowlist import Matcher, read_matcher
from seclake_ml.pairs import DROP_REASONS
from seclake_ml.scoring.engine import ObjectOutcome, score_objects
from seclake_ml.scoring.model_record import ActiveModel
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.scoring.ledger import Ledger, batch_id_for
from seclake_ml.scoring.notifications import is_notable_ignore, parse_messages
from seclake_ml.scoring.sites import NoActiveModel, enabled_lake_sources
from seclake_ml.scoring.sites import model_from_record as service_model_from_record
from seclake_ml.scoring.stores import LogPublisher, S3Objects, S3Store, SnsPublisher
from seclake_ml.uris import split_s3_uri

log = logging.getLogger("ipcheck")

SUMMARY_TAG = "ipcheck.summary"
DEFAULT_CHUNK_ROWS = 100_000
DEFAULT_READ_AHEAD = 2
DEFAULT_TTL_SECONDS = 60.0
DEFAULT_DEADLINE_MARGIN = 30.0
MAX_LISTED = 20  # failures / rejections itemised in the summary line
_PARAM_RE = re.compile(r"[A-Za-z0-9_.\-/]{1,2048}")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}")

if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # inside Lambda only: /var/task is read-only
    logging.getLogger().setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    os.chdir(tempfile.gettempdir())  # DuckDB's spill folder defaults to ./.tmp


class SettingsError(ValueError):
    """An environment variable is missing or invalid; the message names it."""


class ModelUnavailable(RuntimeError):
    """The active model record cannot be read or is not usable."""


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    cfg: SeclakeConfig
    active_parameter: str
    endpoint_name: str | None
    findings_location: str
    topic_arn: str | None
    publish_min_severity: int
    severity_scale: float
    chunk_rows: int
    read_ahead: int
    active_ttl: float
    deadline_margin: float

    @property
    def lake_bucket(self) -> str:
        return self.cfg.lake_bucket

    @property
    def work_location(self) -> str:
        return self.cfg.work_location


def _env(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def _number(environ: Mapping[str, str], name: str, default: float, *, lo: float, hi: float,
            integer: bool = False) -> Any:
    text = _env(environ, name)
    if text is None:
        return int(default) if integer else float(default)
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise SettingsError(f"{name}: got {text[:40]!r}; allowed: {'an integer' if integer else 'a number'} "
                            f"in {lo:g} .. {hi:g}") from None
    if not (lo <= value <= hi) or (not integer and not math.isfinite(value)):
        raise SettingsError(f"{name}: got {value}; allowed: {lo:g} .. {hi:g}")
    return value


def _s3_location(name: str, value: str) -> str:
    """``value`` without a trailing ``/`` when it is an ``s3://bucket[/prefix]`` URI (the package's
    :func:`~seclake_ml.uris.split_s3_uri` rules); else :class:`SettingsError` naming ``name``."""
    try:
        split_s3_uri(value, name)
    except ValueError:
        raise SettingsError(f"{name}: got {value[:200]!r}; allowed: s3://bucket[/prefix] with a valid bucket name, "
                            "no empty or '..' segments") from None
    return value.rstrip("/")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (see the module docstring); :class:`SettingsError` names a bad variable."""
    env = os.environ if environ is None else environ
    lake_bucket = _env(env, "LAKE_BUCKET")
    if not lake_bucket:
        raise SettingsError("LAKE_BUCKET is not set (the Security Lake bucket)")
    work = _env(env, "WORK_LOCATION")
    if not work:
        raise SettingsError("WORK_LOCATION is not set (s3://bucket/prefix of the ledger, as the DAG's work_location)")
    work = _s3_location("WORK_LOCATION", work)
    parameter = _env(env, "SSM_ACTIVE_PARAMETER")
    if not parameter or not _PARAM_RE.fullmatch(parameter):
        raise SettingsError(f"SSM_ACTIVE_PARAMETER: got {parameter!r}; allowed: an SSM parameter name such as "
                            "/seclake-ml/ipinsights/seclake-ml-ipinsights/active")
    endpoint = _env(env, "ENDPOINT_NAME")
    if endpoint is not None and not _ENDPOINT_RE.fullmatch(endpoint):
        raise SettingsError(f"ENDPOINT_NAME: got {endpoint[:80]!r}; allowed: a SageMaker endpoint name")
    raw: dict[str, Any] = {
        "backend": "aws",
        "lake_bucket": lake_bucket,
        "region": _env(env, "REGION") or _env(env, "AWS_REGION") or _env(env, "AWS_DEFAULT_REGION") or "",
        "source_version": _env(env, "SOURCE_VERSION", "1"),
        "work_location": work,
    }
    sources = _env(env, "SOURCES")
    if sources:
        raw["sources"] = sources
    unknown = _env(env, "UNKNOWN_ENTITIES")
    if unknown:
        items = [item.partition("=") for item in unknown.split(",") if item.strip()]
        if any(not sep for _, sep, _ in items):
            raise SettingsError(f"UNKNOWN_ENTITIES: got {unknown[:200]!r}; allowed: source=policy items separated "
                                "by commas, e.g. cloudtrail_api=peers,vpc_flow=ignore")
        raw["extra"] = {"scoring": {"unknown_entities": {k.strip(): v.strip() for k, _, v in items}}}
    try:
        cfg = SeclakeConfig.from_text_mapping(raw)  # environment text: SOURCE_VERSION="1"
    except ConfigError as exc:
        names = {"lake_bucket": "LAKE_BUCKET", "region": "REGION", "source_version": "SOURCE_VERSION",
                 "sources": "SOURCES", "work_location": "WORK_LOCATION"}
        text = str(exc)
        for field_name, var in names.items():
            text = text.replace(f"'{field_name}'", f"'{field_name}' ({var})")
        if "extra.scoring.unknown_entities" in text:
            text = f"UNKNOWN_ENTITIES: {text}"
        raise SettingsError(text) from None
    findings = _s3_location("FINDINGS_LOCATION", _env(env, "FINDINGS_LOCATION") or f"s3://{lake_bucket}")
    topic = _env(env, "SNS_TOPIC_ARN")
    if topic is not None and not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_\-.]{1,256}", topic):
        raise SettingsError(f"SNS_TOPIC_ARN: got {topic[:200]!r}; allowed: an SNS topic ARN")
    return Settings(
        cfg=cfg,
        active_parameter=parameter,
        endpoint_name=endpoint,
        findings_location=findings,
        topic_arn=topic,
        publish_min_severity=_number(env, "PUBLISH_MIN_SEVERITY", 4, lo=1, hi=6, integer=True),
        severity_scale=_number(env, "SEVERITY_SCALE", 1.0, lo=1e-6, hi=1e6),
        chunk_rows=_number(env, "CHUNK_ROWS", DEFAULT_CHUNK_ROWS, lo=1_000, hi=5_000_000, integer=True),
        read_ahead=_number(env, "READ_AHEAD", DEFAULT_READ_AHEAD, lo=0, hi=16, integer=True),
        active_ttl=_number(env, "ACTIVE_TTL_SECONDS", DEFAULT_TTL_SECONDS, lo=0, hi=3600),
        deadline_margin=_number(env, "DEADLINE_MARGIN_SECONDS", DEFAULT_DEADLINE_MARGIN, lo=0, hi=900),
    )


# ------------------------------------------------------------------------------ per-container caches
_CLIENTS: dict[tuple[str, str], Any] = {}
_ACTIVE: dict[str, tuple[float, ActiveModel]] = {}
_PROFILE: dict[str, tuple[float, bytes]] = {}
_HISTORY: dict[str, tuple[float, Any]] = {}
_ALLOW: dict[str, tuple[float, Matcher, dict[str, Any]]] = {}  # work location -> (read at, matcher, summary)


def reset_caches() -> None:
    """Forget cached clients, the active record and the profile (tests; a new container starts empty)."""
    _CLIENTS.clear()
    _ACTIVE.clear()
    _PROFILE.clear()
    _HISTORY.clear()
    _ALLOW.clear()


def client(service: str, region: str) -> Any:
    """A boto3 client per service and region, kept for the container's life.

    The ``sagemaker-runtime`` client does not retry by itself: :class:`EndpointScorer` retries with
    backoff, and stacking both would multiply the attempts.
    """
    key = (service, region)
    found = _CLIENTS.get(key)
    if found is None:
        import boto3
        from botocore.config import Config

        if service == "sagemaker-runtime":
            # total_max_attempts counts the first call (max_attempts would count retries only)
            conf = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=70)
        else:
            conf = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
        found = _CLIENTS[key] = boto3.client(service, region_name=region, config=conf)
    return found


# ------------------------------------------------------------------------------ active model
def model_from_record(record: str | Mapping[str, Any], *, endpoint_guard: str | None,
                      severity_scale: float) -> ActiveModel:
    """The :class:`ActiveModel` of a registry ``active`` record; :class:`ModelUnavailable` if unusable.

    The record is checked by :func:`seclake_ml.scoring.sites.model_from_record`, as on the DAG path;
    here the endpoint must be named and must be ``ENDPOINT_NAME`` when that is set.

    :param record: the record, as JSON text or as :func:`~seclake_ml.aws.registry.read_active_record` returns it.
    :param endpoint_guard: the only endpoint this function may invoke (``ENDPOINT_NAME``), or ``None``.
    :param severity_scale: the configured severity scale (``SEVERITY_SCALE``).
    """
    try:
        model = service_model_from_record(record, severity_scale=severity_scale)
    except NoActiveModel as exc:
        raise ModelUnavailable(str(exc)) from None
    if not model.endpoint_name:
        raise ModelUnavailable("active record has no valid 'endpoint_name'")
    if endpoint_guard and model.endpoint_name != endpoint_guard:
        raise ModelUnavailable(f"active record names endpoint {model.endpoint_name!r}; this function may invoke "
                               f"{endpoint_guard!r} only (ENDPOINT_NAME)")
    return model


def active_model(settings: Settings, ssm: Any) -> ActiveModel:
    """The active model, from the container cache when younger than ``ACTIVE_TTL_SECONDS``."""
    name = settings.active_parameter
    now = time.monotonic()
    hit = _ACTIVE.get(name)
    if hit is not None and now - hit[0] < settings.active_ttl:
        return hit[1]
    try:
        record = read_active_record(ssm, name)  # the package's one reader, as on the DAG path
    except RegistryError as exc:  # missing, unreadable or unusable: the messages come back for a retry
        raise ModelUnavailable(str(exc)) from None
    model = model_from_record(record, endpoint_guard=settings.endpoint_name, severity_scale=settings.severity_scale)
    previous = hit[1].version if hit else None
    if previous is not None and previous != model.version:
        log.info("active model changed: %s -> %s", previous, model.version)
    _ACTIVE[name] = (now, model)
    return model


def profile_loader(model: ActiveModel, s3: Any, ttl: float) -> Any:
    """``entities -> EntityProfile`` reading ``model.profile_uri`` once per container and TTL.

    A profile that cannot be read costs the explanations, never the findings: the engine logs the
    error and writes the findings without the usual-network text.
    """
    from seclake_ml.scoring.profile import EntityProfile

    def load(entities: set[str]) -> Any:
        uri = model.profile_uri
        if not uri:
            return None
        now = time.monotonic()
        hit = _PROFILE.get(uri)
        if hit is None or now - hit[0] >= ttl:
            bucket, key = split_s3_uri(uri, "profile_uri", require_key=True)
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            _PROFILE.clear()  # one profile at a time: memory is the Lambda's scarcest resource
            _PROFILE[uri] = hit = (now, data)
        return EntityProfile.load(hit[1], entities=entities)

    return load


def history_loader(model: ActiveModel, s3: Any, ttl: float) -> Any:
    """``() -> HistoryIndex`` of ``model.profile_uri``, built once per container and TTL.

    Needed only for a model whose threshold was calibrated on the combined score (a combiner in the
    active record); a profile that cannot be read then fails the object, which is retried, as on the
    DAG path: the threshold means nothing without the history it was calibrated with.
    """
    from seclake_ml.scoring.profile import load_history

    def load() -> Any:
        uri = model.profile_uri
        if not uri:
            return None
        now = time.monotonic()
        hit = _HISTORY.get(uri)
        if hit is None or now - hit[0] >= ttl:
            cached = _PROFILE.get(uri)
            if cached is not None and now - cached[0] < ttl:
                data = cached[1]
            else:
                bucket, key = split_s3_uri(uri, "profile_uri", require_key=True)
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            _HISTORY.clear()  # one profile at a time, as for the explanations
            _HISTORY[uri] = hit = (now, load_history(data))
        return hit[1]

    return load


def allowlist_matcher(settings: Settings, s3: Any) -> tuple[Matcher | None, dict[str, Any]]:
    """``(Matcher or None, summary)`` of the analysts' allow-list in ``WORK_LOCATION``
    (:func:`~seclake_ml.feedback.allowlist.read_matcher`), read once per container and
    ``ACTIVE_TTL_SECONDS`` (entries that expire meanwhile stop matching at once).

    A read that fails keeps the last copy read (reported with the ``error`` and ``stale``); with none,
    nothing is suppressed: a broken allow-list never hides a detection and never stops scoring.
    """
    location = settings.work_location
    now = time.monotonic()
    hit = _ALLOW.get(location)
    if hit is None or now - hit[0] >= settings.active_ttl:
        matcher, summary = read_matcher(S3Store(s3, location))
        if matcher is None:
            if hit is None:
                log.error("analyst allow-list unavailable and never read here: nothing is suppressed")
                return None, summary
            log.error("analyst allow-list: the copy read %.0fs ago is used instead (stale)", now - hit[0])
            return hit[1], {**hit[2], "error": summary["error"], "stale": True}
        _ALLOW[location] = hit = (now, matcher, summary)
    return hit[1], dict(hit[2])


# ------------------------------------------------------------------------------ ledger
def already_done(store: S3Store, uri: str) -> bool:
    """Whether the ledger holds ``uri``.

    Asked with ``ListObjectsV2`` on the entry's exact key rather than ``HeadObject``. S3 answers a
    ``HeadObject`` on a missing key with 404 only for callers allowed ``s3:ListBucket``, and this role
    may list the work prefix only (an ``s3:prefix`` condition that a ``HeadObject`` does not carry).
    A listing whose prefix is the entry key is exactly what that grant allows.
    """
    key = store.prefix + Ledger.entry_key(uri)
    resp = store.client.list_objects_v2(Bucket=store.bucket, Prefix=key, MaxKeys=1)
    return any(item.get("Key") == key for item in resp.get("Contents", []))


# ------------------------------------------------------------------------------ handler
def _remaining_seconds(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if getter is None:
        return math.inf
    try:
        return float(getter()) / 1000.0
    except Exception:  # noqa: BLE001 - a broken context must not stop scoring
        return math.inf


def _record_ids(records: list[Any]) -> list[str]:
    ids = []
    for rec in records:
        mid = rec.get("messageId") if isinstance(rec, Mapping) else None
        if isinstance(mid, str) and mid and mid not in ids:
            ids.append(mid)
    return ids


def _top(counter: Counter, n: int = 10) -> dict[str, int]:
    return dict(counter.most_common(n))


def _new_summary(context: Any, records: list[Any]) -> dict[str, Any]:
    return {
        "log": SUMMARY_TAG,
        "request_id": getattr(context, "aws_request_id", None),
        "messages": len(records),
        "messages_failed": 0,
        "objects_announced": 0,
        "objects_already_done": 0,
        "objects": {"scored": 0, "quarantined": 0, "failed": 0, "not_started": 0},
        "rejected": 0,
        "ignored": 0,
        "rows": 0,
        "pairs": 0,
        "distinct_pairs": 0,
        "unknown_entity": 0,
        "unknown_flagged": 0,
        "unknown_no_history": 0,
        "dropped": {r: 0 for r in DROP_REASONS},
        "findings": 0,
        "suppressed": 0,
        "severity": {},
        "published": 0,
        "model_version": None,
        "endpoint_requests": 0,
        "endpoint_retries": 0,
        "seconds": {},
    }


def lambda_handler(event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
    """SQS event -> findings; returns the messages to retry (see the module docstring)."""
    t0 = time.perf_counter()
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        records = []
    summary = _new_summary(context, records)
    try:
        failed_ids = _handle(records, context, summary)
    except Exception as exc:  # noqa: BLE001 - last resort: retry everything rather than lose a message
        summary["error"] = f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
        log.exception("ipcheck failed unexpectedly; every message is reported for a retry")
        failed_ids = _record_ids(records)
    summary["messages_failed"] = len(failed_ids)
    summary["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed_ids]}


def _handle(records: list[Any], context: Any, summary: dict[str, Any]) -> list[str]:
    secs = summary["seconds"]
    record_ids = _record_ids(records)
    try:
        settings = load_settings()
    except SettingsError as exc:
        summary["error"] = f"configuration: {exc}"
        log.error("ipcheck is misconfigured: %s", exc)
        return record_ids

    # 1. parse
    t = time.perf_counter()
    cfg = settings.cfg
    plan = parse_messages(records, lake_bucket=cfg.lake_bucket, lake_sources=enabled_lake_sources(cfg),
                          source_version=cfg.source_version)
    secs["parse"] = round(time.perf_counter() - t, 3)
    summary["objects_announced"] = len(plan.objects)
    summary["rejected"] = len(plan.rejected)
    summary["ignored"] = len(plan.ignored)
    if plan.rejected:
        summary["rejected_reasons"] = _top(Counter(r["reason"][:120] for r in plan.rejected))
    if plan.ignored:
        summary["ignored_reasons"] = _top(Counter(r["reason"][:120] for r in plan.ignored))
    lost = [mid for mid, objs in plan.by_message.items() if objs and mid not in record_ids]
    if lost:  # cannot be named in batchItemFailures; cannot happen with records from the SQS poller
        log.error("%d messages without a usable messageId announced objects", len(lost))
    notable = [r for r in plan.ignored if is_notable_ignore(r.get("reason", ""))]
    if plan.rejected or notable:
        # These messages are acknowledged (deleted): what they announced stays on record in the work
        # location, so a day dropped here (e.g. a source version the settings do not name) can be
        # re-scored with the batch-scoring DAG once the settings are right.
        try:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            summary["rejected_record"] = S3Store(client("s3", cfg.region), settings.work_location).put_json(
                f"scoring/rejected/{stamp}-lambda.json", {"rejected": plan.rejected, "ignored": plan.ignored})
        except Exception as exc:  # noqa: BLE001 - the log line still names them
            log.error("could not record %d rejected / %d ignored messages: %s", len(plan.rejected), len(notable), exc)
    if not plan.objects:
        return []

    # 2. ledger: leave out what is done already
    t = time.perf_counter()
    s3 = client("s3", cfg.region)
    ledger = Ledger(S3Store(s3, settings.work_location))
    todo = [obj for obj in plan.objects if not already_done(ledger.store, obj.uri)]
    summary["objects_already_done"] = len(plan.objects) - len(todo)
    secs["ledger_check"] = round(time.perf_counter() - t, 3)
    if summary["objects_already_done"]:
        log.info("%d announced objects are already in the ledger (scored by the DAG, an earlier invocation "
                 "or a duplicate delivery); skipped", summary["objects_already_done"])
    if not todo:
        return []

    def failing(uris: set[str]) -> list[str]:
        return [mid for mid in record_ids if any(o.uri in uris for o in plan.by_message.get(mid, []))]

    # 3. the active model
    t = time.perf_counter()
    try:
        model = active_model(settings, client("ssm", cfg.region))
    except ModelUnavailable as exc:
        secs["model"] = round(time.perf_counter() - t, 3)
        summary["error"] = f"model unavailable: {exc}"
        log.error("no usable active model (%s); the messages come back for a retry", exc)
        return failing({o.uri for o in todo})
    secs["model"] = round(time.perf_counter() - t, 3)
    summary["model_version"] = model.version
    summary["threshold"] = model.threshold
    summary["endpoint"] = model.endpoint_name

    # 4. score
    from seclake_ml.scoring.scorers import EndpointScorer

    scorer = EndpointScorer(client("sagemaker-runtime", cfg.region), model.endpoint_name, max_attempts=4,
                            max_delay=5.0)
    objects = S3Objects(s3)
    sink = S3Store(s3, settings.findings_location)
    publisher = (SnsPublisher(client("sns", cfg.region), settings.topic_arn) if settings.topic_arn
                 else LogPublisher(None))
    load_profile = profile_loader(model, s3, settings.active_ttl)
    load_history = history_loader(model, s3, settings.active_ttl)
    t = time.perf_counter()
    allowlist, summary["allowlist"] = allowlist_matcher(settings, s3)
    secs["allowlist"] = round(time.perf_counter() - t, 3)
    batch_id = batch_id_for([o.uri for o in todo], origin="lambda")

    def open_object(obj: LakeObject) -> Any:
        return objects.open(obj.bucket or cfg.lake_bucket, obj.key)

    def mark(obj: LakeObject, out: ObjectOutcome) -> None:
        t_mark = time.perf_counter()
        ledger.mark(obj, status=out.status, batch_id=batch_id, model_version=model.version,
                    findings=out.findings, files=out.files)
        secs["ledger_mark"] = round(secs.get("ledger_mark", 0.0) + time.perf_counter() - t_mark, 3)

    retry: set[str] = set()
    failures: list[dict[str, str]] = []
    severity = Counter()

    def time_left() -> bool:
        return _remaining_seconds(context) >= settings.deadline_margin

    def quarantine(obj: LakeObject, out: ObjectOutcome) -> None:
        ledger.mark(obj, status="quarantined", batch_id=batch_id, model_version=model.version, reason=out.reason)

    # one engine call: the next objects are downloaded and read while the current one is scored; the
    # deadline is asked before each object is downloaded and before it is scored, and the objects it
    # stops are left for a retry. Scored and quarantined objects are recorded as they are handled.
    result = score_objects(
        todo, source_views=cfg.source_views(), open_object=open_object, scorer=scorer, model=model,
        sink=sink, publisher=publisher, profile_loader=load_profile, history_loader=load_history,
        min_severity_to_publish=settings.publish_min_severity, chunk_rows=settings.chunk_rows,
        accounts=cfg.accounts, regions=cfg.regions, product_version=PACKAGE_VERSION, on_object_done=mark,
        unknown_entities=cfg.scoring.unknown_entities, allowlist=allowlist, read_ahead=settings.read_ahead,
        keep_going=time_left, on_quarantined=quarantine,
    )
    summary["published"] += result.published
    for obj, out in zip(todo, result.objects):
        summary["objects"][out.status] = summary["objects"].get(out.status, 0) + 1
        for name in ("rows", "pairs", "distinct_pairs", "unknown_entity", "unknown_flagged", "unknown_no_history",
                     "findings", "suppressed"):
            summary[name] += getattr(out, name)
        for reason, n in out.dropped.items():
            summary["dropped"][reason] = summary["dropped"].get(reason, 0) + n
        severity.update(out.severity)
        if out.status == "failed":
            retry.add(obj.uri)
            if len(failures) < MAX_LISTED:
                failures.append({"uri": obj.uri[-300:], "reason": str(out.reason)[:300]})
    left = todo[len(result.objects):]
    if left:
        summary["objects"]["not_started"] += len(left)
        retry.update(o.uri for o in left)
        log.warning("%d objects not started: less than %.0fs left", len(left), settings.deadline_margin)
    summary["severity"] = dict(severity)
    summary["endpoint_requests"] = scorer.requests
    summary["endpoint_retries"] = scorer.retries
    for name, value in result.seconds.items():
        secs[name] = round(value, 3)
    if failures:
        summary["failures"] = failures
    return failing(retry)
