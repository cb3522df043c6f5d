"""Scoring use cases on top of the engine: find new objects, hand off batches, score a batch.

Used by the Airflow operators (:mod:`seclake_ml.operators.scoring`) and the Lambda handler
(``include/lambda/ipcheck``); no Airflow imports here. AWS calls go through boto3 clients passed in
:class:`AwsClients` (the operators take them from the Amazon provider's hooks).

Scoring settings live in the configuration's ``extra["scoring"]`` section, declared, typed and
range-checked by :class:`seclake_ml.config.ScoringSettings` when the configuration loads:

``findings_location``     root of the findings tree (default: the local lake root, or
                          ``s3://<lake_bucket>`` on aws); findings go under ``ext/<custom source>/…``
``queue_url``             aws: the Security Lake subscriber SQS queue
``sns_topic_arn``         aws: topic for severe findings (locally they go to the log and
                          ``<work>/scoring/alerts/severe.jsonl``)
``publish_min_severity``  OCSF severity_id from which a finding is published (default 4, High)
``severity_scale``        anomaly-score distance past the threshold that counts as one band (default 1.0)
``chunk_rows``            rows per chunk when reading an object (default 250,000)
``read_ahead``            objects read at the same time, each in a background thread, while earlier
                          ones are scored and written (default 2; 0 reads in the scoring thread)
``max_objects``           objects per batch (default 200)
``settle_seconds``        local: ignore objects modified less than this long ago (default 0)
``adopt_existing``        local: when the ledger is empty, record the objects already in the lake
                          as history instead of scoring them (default true; the batch-scoring DAG
                          scores history)
``endpoint_name``         aws: the endpoint to read the active record of (default: the rollout's)
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields as dc_fields
from datetime import datetime, timezone
from typing import Any

from seclake_ml.config import ScoringSettings, SeclakeConfig
from seclake_ml.display import escape
from seclake_ml.interval import DataInterval
from seclake_ml.locations import work_root
from seclake_ml.scoring.drift import judge
from seclake_ml.scoring.engine import BatchResult, score_objects
from seclake_ml.scoring.model_record import ActiveModel
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.scoring.ledger import Ledger
from seclake_ml.scoring.notifications import is_notable_ignore, parse_messages
from seclake_ml.aws.clients import AwsClients
from seclake_ml.scoring.sites import (
    AwsSite,
    LocalSite,
    enabled_lake_sources,
    iter_local_objects,
)
from seclake_ml.uris import is_s3

log = logging.getLogger(__name__)

SETTINGS_KEY = "scoring"
CONTINUOUS_ORIGINS = ("lake", "sqs")  # batches of the continuous scoring DAG (not of an interval)
Site = LocalSite | AwsSite
#: The declared scoring settings and their defaults (:class:`~seclake_ml.config.ScoringSettings`).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dc_fields(ScoringSettings)}


class PinnedModelUnavailable(RuntimeError):
    """The batch's pinned model cannot be loaded (yet): the batch stays pending and is retried; past
    ``max_model_attempts`` it is re-pinned to the active model."""


class EndpointChanging(RuntimeError):
    """The endpoint is being updated (a rollout in progress): no object is scored until it settles."""


def setting(cfg: SeclakeConfig, name: str) -> Any:
    """The validated ``extra.scoring`` setting ``name`` (typed and range-checked when the config loaded)."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown scoring setting {name!r}; known: {sorted(DEFAULTS)}")
    return getattr(cfg.scoring, name)


def site_of(cfg: SeclakeConfig, clients: AwsClients | None = None) -> Site:
    """The scoring site of direct callers (the Lambda, commands, tests): AWS clients mean the aws site.

    Without clients, the configured backend's site (``backend_of(cfg).scoring_site()``, as operators
    get theirs), so an aws configuration never falls back to the local site.
    """
    if clients is not None:
        return AwsSite(cfg, clients)
    from seclake_ml.backends import backend_of

    return backend_of(cfg).scoring_site()


def findings_location(cfg: SeclakeConfig, clients: AwsClients | None = None, *, site: Site | None = None) -> str:
    """The root of the findings tree of the site (see :meth:`LocalSite.findings_location`)."""
    return (site or site_of(cfg, clients)).findings_location()


def active_model(cfg: SeclakeConfig, clients: AwsClients | None = None, *, site: Site | None = None) -> ActiveModel:
    """The active model and threshold: the local model store, or the SSM registry record on aws."""
    return (site or site_of(cfg, clients)).active_model()


def work_store(cfg: SeclakeConfig, clients: AwsClients | None = None) -> Any:
    from seclake_ml.scoring.stores import store_for

    return store_for(work_root(cfg), clients.s3 if clients else None)


# ------------------------------------------------------------------------------ active model
def pinned_model(cfg: SeclakeConfig, pinned: Any, site: Site | None = None) -> tuple[ActiveModel, Any]:
    """The model pinned in a manifest, validated, and its in-process scorer (``None`` when an endpoint
    serves it), as the scoring site loads it (:meth:`LocalSite.load`, :meth:`AwsSite.load`).

    Nothing is trusted from the manifest but the version name and the threshold: the version must be
    a valid name, the threshold a finite number, the model one of this site's backend, and locally the
    model folder is the store's folder of that version (never a path from the record). Raises
    :class:`PinnedModelUnavailable` with the reason.
    """
    from seclake_ml.model_store import check_threshold, check_version

    try:
        if not isinstance(pinned, dict):
            raise ValueError(f"pinned model is a JSON {type(pinned).__name__}, not an object")
        model = ActiveModel.from_dict(pinned)
        check_version(model.version, "pinned model")
        model.threshold = check_threshold(model.threshold, f"pinned model {model.version}")
        site = site or site_of(cfg)
        if model.backend != site.name:
            raise ValueError(f"pinned model {model.version} is served on {model.backend!r}; this site scores "
                             f"{site.name!r} models")
        return site.load(model)
    except Exception as exc:  # noqa: BLE001 - any failure to load means the same: this model cannot score
        raise PinnedModelUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _repin_unloadable(cfg: SeclakeConfig, ledger: Ledger, manifest: dict[str, Any], reason: str,
                      site: Site) -> tuple[dict[str, Any], ActiveModel, Any]:
    """Count one more failed load of the batch's pinned model; past ``max_model_attempts`` re-pin the
    batch to the active model (recorded in the manifest as ``repinned_from``, logged as an error).

    Raises :class:`PinnedModelUnavailable` while the limit is not reached, or when the active model
    cannot be loaded either (a damaged pinned copy of the active model is re-pinned from its record).
    """
    bid = manifest["batch_id"]
    pinned = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    version = str(pinned.get("version"))[:128]
    limit = int(setting(cfg, "max_model_attempts"))
    attempts = ledger.record_failures(bid, {f"model:{version}": reason})[f"model:{version}"]
    if attempts < limit:
        raise PinnedModelUnavailable(f"batch {bid}: pinned model {version} cannot be loaded "
                                     f"(attempt {attempts} of {limit}): {reason}")
    active = site.active_model()
    try:
        model, scorer = pinned_model(cfg, active.to_dict(), site)
    except PinnedModelUnavailable as exc:
        raise PinnedModelUnavailable(f"batch {bid}: pinned model {version} cannot be loaded ({reason}) and "
                                     f"neither can the active model {active.version} ({exc}); fix or roll out "
                                     "another model") from None
    record = {"model": {k: pinned.get(k) for k in ("version", "threshold", "backend")}, "reason": reason,
              "attempts": attempts, "at": _stamp()}
    manifest = dict(manifest, model=model.to_dict(), repinned_from=record)
    ledger.store.put_json(Ledger.manifest_key(bid), manifest)
    log.error("ALERT batch %s: pinned model %s could not be loaded %d times (%s); re-pinned to the active "
              "model %s", bid, version, attempts, reason, model.version)
    return manifest, model, scorer


# ------------------------------------------------------------------------------ local signal
def resume_pending(ledger: Ledger) -> dict[str, Any] | None:
    """The manifest of the oldest pending batch of the continuous DAG, if any (interval batches belong
    to the batch-scoring DAG). A batch whose manifest is missing or unreadable is set aside."""
    for bid in ledger.pending(CONTINUOUS_ORIGINS):
        try:
            manifest = ledger.manifest(bid)
        except FileNotFoundError as exc:
            ledger.set_aside(bid, f"{exc}; its objects are not marked, so the lake listing finds them "
                                  "again (local); re-score their day with seclake_ipinsights_batch_scoring (aws)")
            continue
        log.info("resuming pending batch %s", bid)
        return manifest
    return None


def find_new_local_batch(cfg: SeclakeConfig, ledger: Ledger) -> dict[str, Any] | None:
    """Resume the oldest pending batch, else hand off the lake's objects not yet in the ledger."""
    resumed = resume_pending(ledger)
    if resumed is not None:
        return resumed
    done = ledger.done_keys()
    adopt = bool(setting(cfg, "adopt_existing")) and not ledger.adopted() and not done \
        and not ledger.store.list("scoring/batches")
    objects, rejected = iter_local_objects(cfg)
    settle = float(setting(cfg, "settle_seconds"))
    now = time.time()
    new, known = [], []
    for obj in objects:
        if Ledger.entry_key(obj.uri) in done:
            known.append(obj)
            continue
        if settle > 0:
            mtime_ns = int(str(obj.etag).split("-", 1)[0])
            if now - mtime_ns / 1e9 < settle:
                continue
        new.append(obj)
    changed = ledger.changed_quarantined(known)
    for obj in changed:
        log.warning("quarantined object changed since (size/mtime %s): handed off again: %s", obj.etag, obj.key[:300])
    new += changed
    fresh_rejected = [r for r in rejected if Ledger.entry_key("rejected:" + r["key"]) not in done]
    for r in fresh_rejected:  # recorded (and logged) once
        ledger.store.put_json(Ledger.entry_key("rejected:" + r["key"]), {**r, "status": "rejected"})
        log.error("not a lake object, skipped: %s (%s)", escape(r["key"])[0], escape(r["reason"])[0])
    if adopt:
        # The first look at the lake (even an empty one) settles what is history: later objects are new.
        log.warning("empty ledger: recording %d existing objects as history (not scored); "
                    "score history with seclake_ipinsights_batch_scoring", len(new))
        for obj in new:
            ledger.mark(obj, status="adopted", batch_id="adopted", model_version=None)
        ledger.mark_adopted(len(new))
        return None
    if not new:
        return None
    new.sort(key=lambda o: (o.event_day, o.key))
    batch = new[: int(setting(cfg, "max_objects"))]
    return ledger.create_batch(batch, origin="lake", rejected=fresh_rejected)


# ------------------------------------------------------------------------------ aws signal
def hand_off_messages(cfg: SeclakeConfig, ledger: Ledger, messages: list[dict]) -> tuple[dict[str, Any] | None, Any]:
    """Parse subscriber messages and hand their new objects off as batches of at most ``max_objects``.

    Returns the first batch's manifest (``None`` when no message announced a new object) and the
    parse plan; further batches are pending and are resumed first by the next runs. Objects already
    in the ledger (a duplicate message) are left out. The caller deletes the messages after this
    returns, and only then.
    """
    plan = parse_messages(messages, lake_bucket=cfg.lake_bucket or None, lake_sources=enabled_lake_sources(cfg),
                          source_version=cfg.source_version)
    new = [o for o in plan.objects if not ledger.done_for(o)]
    duplicates = len(plan.objects) - len(new)
    if duplicates:
        log.info("%d announced objects are already scored (duplicate delivery); skipped", duplicates)
    if not new:
        notable = [r for r in plan.ignored if is_notable_ignore(r.get("reason", ""))]
        if plan.rejected or notable:
            # The messages are deleted next: what they announced stays on record (keys and reasons),
            # so a day whose objects were dropped here can be re-scored with the batch DAG.
            uri = ledger.store.put_json(f"scoring/rejected/{_stamp()}.json",
                                        {"rejected": plan.rejected, "ignored": plan.ignored})
            log.warning("%d rejected and %d notable ignored messages recorded at %s", len(plan.rejected),
                        len(notable), uri)
        return None, plan
    size = int(setting(cfg, "max_objects"))
    parts = [new[i:i + size] for i in range(0, len(new), size)]
    if len(parts) > 1:
        log.warning("%d announced objects exceed max_objects %d: handed off as %d batches", len(new), size,
                    len(parts))
    manifests = [ledger.create_batch(part, origin="sqs", rejected=plan.rejected if i == 0 else [],
                                     ignored=plan.ignored if i == 0 else [],
                                     extra={"message_ids": sorted(plan.by_message),
                                            **({"part": [i + 1, len(parts)]} if len(parts) > 1 else {})})
                 for i, part in enumerate(parts)]
    return manifests[0], plan


def _earlier_files(ledger: Ledger, uris: list[str], replace: dict[str, set[str]], *,
                   forget: str | None = None) -> None:
    """Add to ``replace`` the findings files the ledger lists for ``uris``; drop the entries of batch
    ``forget`` (``"*"``: every entry), so that those objects count as not scored."""
    for uri in uris:
        entry = ledger.entry(uri)
        if not entry:
            continue
        replace.setdefault(uri, set()).update(entry.get("files") or [])
        if forget == "*" or entry.get("batch_id") == forget:
            ledger.forget(uri)


def hand_off_interval(ledger: Ledger, objects: list[LakeObject], batch_id: str, start: datetime,
                      end: datetime) -> dict[str, Any]:
    """Hand off every object of an interval as batch ``batch_id`` (re-scored whole on every run).

    The previous manifest of the interval is replaced (its model pinned afresh). The findings files
    that earlier scorings of these objects wrote go into the manifest (``replace_files``): scoring
    removes those it does not write again. Objects of the previous run that are no longer in the lake
    lose their findings (``orphan_files``). Ledger entries of earlier scorings are dropped here, so
    that scoring takes only this run's entries for progress; entries of other batches stay until
    scoring replaces them (the continuous DAG keeps taking those objects for done meanwhile).
    """
    from seclake_ml.scoring.stores import object_stem

    previous = ledger.read_manifest(batch_id) or {}
    replace: dict[str, set[str]] = {u: set(f) for u, f in (previous.get("replace_files") or {}).items()}
    orphans: set[str] = set(previous.get("orphan_files") or [])
    current = [obj.uri for obj in objects]
    _earlier_files(ledger, current, replace, forget=batch_id)
    gone = [u for u in (LakeObject.from_dict(d).uri for d in previous.get("objects") or []) if u not in set(current)]
    _earlier_files(ledger, gone, replace, forget="*")
    for uri in gone:
        orphans.update(replace.pop(uri, set()))
        log.warning("object of the previous run is no longer in the lake; its findings go: %s", uri[-200:])
    # never an object's own files: an object can be gone from one run and back in the next
    stems = {object_stem(uri) for uri in current}
    orphans = {f for f in orphans if f.rsplit("/", 1)[-1].split(".", 1)[0] not in stems}
    for key in (Ledger.manifest_key(batch_id), Ledger.result_key(batch_id), Ledger.attempts_key(batch_id)):
        ledger.store.delete(key)
    return ledger.create_batch(objects, origin="interval", batch_id=batch_id,
                               extra={"interval": {"start": start.isoformat(), "end": end.isoformat()},
                                      "rescore": True,
                                      "replace_files": {u: sorted(f) for u, f in replace.items() if f},
                                      "orphan_files": sorted(orphans)})


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


# ------------------------------------------------------------------------------ interval
def interval_objects(cfg: SeclakeConfig, start: Any, end: Any, clients: AwsClients | None = None, *,
                     site: Site | None = None) -> list[LakeObject]:
    """Objects of the enabled sources in the ``eventDay`` partitions of ``[start, end)``."""
    window = DataInterval.parse(start, end)
    return (site or site_of(cfg, clients)).lake_objects({d.strftime("%Y%m%d") for d in window.days()})


# ------------------------------------------------------------------------------ scoring
def _follow_endpoint(cfg: SeclakeConfig, ledger: Ledger, manifest: dict[str, Any], model: ActiveModel,
                     objects: list[LakeObject], todo: list[LakeObject], site: Site) -> tuple[Any, Any, Any]:
    """Keep "one batch, one model" true when a rollout replaced the endpoint's model in place.

    The endpoint answers with whatever model it serves now, so the pinned version must be the one in
    the endpoint config it serves. While the endpoint is updating (canary or linear traffic shifting
    serves two models), nothing is scored. When it serves another config than the pinned one:
    a batch with nothing scored yet is re-pinned to the active model; a continuous batch with some
    objects scored is split (the rest becomes a new batch pinned to the active model); an interval
    batch is re-pinned and scored again whole (its earlier findings files are replaced).
    """
    serving = site.serving(model.endpoint_name)
    if serving is None:
        return manifest, model, todo
    status, config = serving
    if status != "InService":
        raise EndpointChanging(f"endpoint {model.endpoint_name} is {status}: it may answer with two models")
    if config == model.endpoint_config_name:
        return manifest, model, todo
    active = site.active_model()
    if active.endpoint_config_name != config:
        raise EndpointChanging(f"endpoint {model.endpoint_name} serves {config}, the registry names "
                               f"{active.endpoint_config_name}: a rollout is finishing")
    bid = manifest["batch_id"]
    log.warning("batch %s was pinned to %s (%s) but endpoint %s now serves %s (%s)", bid, model.version,
                model.endpoint_config_name, model.endpoint_name, config, active.version)
    if len(todo) == len(objects) or manifest.get("origin") == "interval":
        if len(todo) < len(objects):  # interval: score the whole day again with one model
            replace = {k: set(v) for k, v in (manifest.get("replace_files") or {}).items()}
            _earlier_files(ledger, [o.uri for o in objects], replace, forget=bid)
            manifest = dict(manifest, replace_files={k: sorted(v) for k, v in replace.items() if v})
            todo = list(objects)
        manifest = dict(manifest, model=active.to_dict(), repinned_from=model.to_dict())
        ledger.store.put_json(Ledger.manifest_key(bid), manifest)
        return manifest, active, todo
    rest = ledger.create_batch(todo, origin=str(manifest.get("origin") or "lake"),
                               extra={"split_from": bid})
    rest = ledger.pin_model(rest, active.to_dict())
    log.warning("batch %s split: %d objects scored with %s stay; %d move to batch %s (model %s)", bid,
                len(objects) - len(todo), model.version, len(todo), rest["batch_id"], active.version)
    manifest = dict(manifest, split_to=rest["batch_id"])
    ledger.store.put_json(Ledger.manifest_key(bid), manifest)
    return manifest, model, []


def score_batch(
    cfg: SeclakeConfig, ledger: Ledger, batch_id: str, *, clients: AwsClients | None = None,
    site: Site | None = None, product_version: str = "0", publisher: Any = None,
) -> dict[str, Any]:
    """Score one handed-off batch: pin the model, score the objects not yet done, mark them, finish.

    Objects that fail (not quarantined) stay unmarked and the batch stays pending; the returned
    summary lists them and the caller raises so the task is retried.
    """
    from seclake_ml.scoring.profile import EntityProfile

    t0 = time.perf_counter()
    site = site or site_of(cfg, clients)
    manifest = ledger.manifest(batch_id)
    if not manifest.get("model"):
        manifest = ledger.pin_model(manifest, site.active_model().to_dict())
    try:
        model, local_scorer = pinned_model(cfg, manifest["model"], site)
    except PinnedModelUnavailable as exc:
        # A model that never loads must not hold this batch (and every later one) pending for ever.
        manifest, model, local_scorer = _repin_unloadable(cfg, ledger, manifest, str(exc), site)
    objects = [LakeObject.from_dict(d) for d in manifest["objects"]]
    if manifest.get("rescore"):  # every object is scored again; done = scored by this batch
        todo = [o for o in objects if (ledger.entry(o.uri) or {}).get("batch_id") != batch_id]
    else:
        todo = [o for o in objects if not ledger.done_for(o)]
    if model.endpoint_config_name and todo:  # served by an endpoint a rollout may have changed
        manifest, model, todo = _follow_endpoint(cfg, ledger, manifest, model, objects, todo, site)
    log.info("batch %s: %d objects (%d already done), model %s, threshold %.4f", batch_id, len(objects),
             len(objects) - len(todo), model.version, model.threshold)

    scorer, open_object, publisher = site.scoring_io(model, local_scorer, publisher)
    # the allow-list lives in the work store, which is the ledger's (work_store(cfg, clients)); one
    # that cannot be read suppresses nothing, and the error is logged and reported
    from seclake_ml.feedback.allowlist import read_matcher

    allowlist, allowlist_summary = read_matcher(ledger.store)
    if allowlist is None:
        log.error("analyst allow-list unavailable: nothing is suppressed in this batch")

    s3_profile: dict[str, Any] = {}  # the S3 profile's bytes (or why they are missing), fetched once per batch

    def load_profile(entities: set[str]) -> Any:
        uri = model.profile_uri
        if not uri:
            return None
        if is_s3(uri):
            if uri not in s3_profile:
                try:
                    s3_profile[uri] = site.read_bytes(uri)
                except Exception as exc:  # noqa: BLE001 - reported by the engine per object, not retried
                    s3_profile[uri] = RuntimeError(f"cannot read profile {uri}: {type(exc).__name__}: {exc}")
            data = s3_profile[uri]
            if isinstance(data, Exception):
                raise data
            return EntityProfile.load(data, entities=entities)
        return EntityProfile.load(uri, entities=entities)

    def load_history() -> Any:
        from seclake_ml.scoring.profile import load_history as read_history

        uri = model.profile_uri
        if not uri:
            return None
        if is_s3(uri):
            load_profile(set())  # fetches the bytes once per batch (or records why they are missing)
            data = s3_profile[uri]
            if isinstance(data, Exception):
                raise data
            return read_history(data)
        return read_history(uri)

    findings_root = site.findings_location()
    sink = site.findings_store()
    # Temporary files of writes killed mid-way (findings, ledger) are never renamed into place: sweep them.
    max_age = float(setting(cfg, "tmp_max_age_seconds"))
    swept = sink.sweep_temporary("ext", max_age) + ledger.store.sweep_temporary("scoring", max_age)

    # Re-scoring (the interval DAG): findings files of an earlier scoring of an object that this
    # scoring did not write again (fewer findings, other days, no findings at all) are removed once
    # the object's new findings are written, so a re-run leaves exactly its own findings.
    replace = {str(k): list(v) for k, v in (manifest.get("replace_files") or {}).items()}

    def remove_files(uris: list[str], keep: set[str]) -> int:
        removed = 0
        for uri in (u for u in uris if u not in keep):
            key = sink.key_of(uri)
            if key is None:
                log.warning("not removing %s: outside the findings location %s", uri[:300], sink.base_uri())
                continue
            sink.delete(key)
            removed += 1
        return removed

    def mark(obj: LakeObject, out: Any) -> None:
        stale = remove_files(replace.get(obj.uri, []), set(out.files))
        if stale:
            log.info("removed %d findings files of an earlier scoring of %s", stale, obj.uri[-200:])
        ledger.mark(obj, status=out.status, batch_id=batch_id, model_version=model.version,
                    findings=out.findings, files=out.files)

    result: BatchResult = score_objects(
        todo, source_views=cfg.source_views(), open_object=open_object, scorer=scorer, model=model,
        sink=sink, publisher=publisher, profile_loader=load_profile, history_loader=load_history,
        min_severity_to_publish=int(setting(cfg, "publish_min_severity")),
        chunk_rows=int(setting(cfg, "chunk_rows")), read_ahead=int(setting(cfg, "read_ahead")),
        accounts=cfg.accounts, regions=cfg.regions,
        product_version=product_version, on_object_done=mark, duckdb_memory=setting(cfg, "duckdb_memory"),
        unknown_entities=setting(cfg, "unknown_entities"), allowlist=allowlist,
    )
    by_uri = {o.uri: o for o in todo}
    failed_now = {out.uri: out.reason or "failed" for out in result.objects if out.status == "failed"}
    if failed_now:
        # A failure that repeats is not transient: past max_object_attempts the object is quarantined,
        # so one bad object cannot hold the batch (and every batch after it) pending for ever.
        limit = max(1, int(setting(cfg, "max_object_attempts")))
        attempts = ledger.record_failures(batch_id, failed_now)
        for out in result.objects:
            if out.status == "failed" and attempts.get(out.uri, 0) >= limit:
                out.status = "quarantined"
                out.reason = f"failed {attempts[out.uri]} times, last: {out.reason}"
                log.error("quarantined %s after %d failed attempts", out.uri[:300], attempts[out.uri])
    for out in result.objects:
        if out.status == "quarantined":
            obj = by_uri[out.uri]
            remove_files(replace.get(obj.uri, []), set())
            ledger.mark(obj, status="quarantined", batch_id=batch_id, model_version=model.version, reason=out.reason)
    failed = [o for o in result.objects if o.status == "failed"]
    summary = result.to_dict()
    summary["allowlist"] = allowlist_summary
    if manifest.get("repinned_from"):
        summary["repinned_from"] = manifest["repinned_from"]
    summary["stale_tmp_removed"] = swept
    summary["drift"] = judge(summary["totals"], result.psi, cfg)
    if summary["drift"]["breaches"]:
        log.warning("batch %s drifted from model %s: %s", batch_id, model.version, "; ".join(summary["drift"]["breaches"]))
    summary.update(batch_id=batch_id, origin=manifest.get("origin"), objects_in_batch=len(objects),
                   already_done=len(objects) - len(todo), rejected=manifest.get("rejected", []),
                   ignored=len(manifest.get("ignored", [])), findings_location=findings_root,
                   requests=getattr(scorer, "requests", None), retries=getattr(scorer, "retries", None))
    summary["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    if failed:
        summary["failed"] = [{"uri": o.uri, "reason": o.reason} for o in failed]
        return summary
    orphans = list(manifest.get("orphan_files") or [])
    if orphans:
        log.info("removed %d findings files of objects no longer in the lake", remove_files(orphans, set()))
    summary["result"] = ledger.finish(batch_id, summary)
    return summary
