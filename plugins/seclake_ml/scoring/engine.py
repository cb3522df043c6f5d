"""Score lake objects into findings: the engine behind both scoring DAGs and the Lambda handler.

For each object of a batch and each enabled ``(source, view)`` whose lake source it belongs to:

1. read the object chunk by chunk (:mod:`.objects`) into distinct ``(entity, ip)`` pairs; the next
   objects are read ahead, in threads with their own DuckDB connections (``read_ahead``,
   :mod:`.readahead`), while this thread does the rest, object by object in the batch's order;
2. score each chunk's pairs with the active model (:mod:`.scorers`); the anomaly score is
   ``-dot_product``, or, for a model calibrated with a score combiner, the combined log-odds of
   ``dot_product`` and the entity's training history; a pair is flagged when it is above the
   model's threshold. Pairs of entities the model never saw are counted (``unknown_entity``):
   their model scores are not comparable (see :mod:`seclake_ml.ipinsights.scorer`). Per source
   (``extra.scoring.unknown_entities``) they are judged against the known networks of their peer
   group instead (:mod:`.peers`; counted in ``unknown_flagged`` when flagged, in
   ``unknown_no_history`` when the group has no history), or, under ``ignore``, handled as before;
3. merge the flagged pairs over chunks (events summed, first/last time kept), explain them with the
   model's training profile (:mod:`.profile`), turn them into OCSF Detection Findings
   (:mod:`.findings`) and write them, one file per object and partition, named after the object
   (:func:`~.stores.object_stem`): scoring the same object again, in a retry, a duplicate message or
   a backfill, replaces that file and reuses the same deterministic ``finding_info.uid`` values;
4. publish the severe ones. A flagged pair that an analyst allow-list entry matches
   (``allowlist``, a :class:`~seclake_ml.feedback.allowlist.Matcher`) is still written, as a finding
   with OCSF status Suppressed and the entry (:func:`~.findings.suppress_finding`), counted in
   ``suppressed`` and never published.

An object that cannot be read is **quarantined** (its reason kept in the result; it is not retried);
an object that fails for another reason (S3 or endpoint errors after retries) is **failed**: the
caller leaves it unmarked so it is scored again. Nothing here touches the ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from seclake_ml.lake.duck import spilling_connection
from seclake_ml.pairs import DROP_REASONS
from seclake_ml.scoring.drift import ScoreHistogram, check_reference
from seclake_ml.scoring.model_record import ActiveModel
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.scoring.objects import (
    DEFAULT_CHUNK_ROWS,
    MAX_CONTEXT_VALUES,
    UnreadableObject,
    iter_view_chunks,
    open_parquet,
)
from seclake_ml.scoring.readahead import ReadAhead
from seclake_ml.scoring.stores import object_stem
from seclake_ml.sources import get_source

if TYPE_CHECKING:
    from seclake_ml.feedback.allowlist import Matcher
    from seclake_ml.scoring.scorers import AnomalyScorer

log = logging.getLogger(__name__)

SEVERE = 4  # OCSF severity_id High
#: Objects read at the same time, in background threads, ahead of their scoring.
DEFAULT_READ_AHEAD = 2
#: Chunks of an object queued ahead of their scoring (per object being read).
READ_DEPTH = 1


@dataclass
class ObjectOutcome:
    uri: str
    key: str
    status: str = "scored"  # scored | quarantined | failed
    reason: str | None = None
    rows: int = 0
    pairs: int = 0
    distinct_pairs: int = 0
    unknown_entity: int = 0
    unknown_flagged: int = 0  # pairs of unknown entities flagged by the unknown-entity policy
    unknown_no_history: int = 0  # pairs of unknown entities whose peer group has no history
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    findings: int = 0
    suppressed: int = 0  # findings written with status Suppressed (an analyst allow-list entry matched)
    severity: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatchResult:
    model_version: str
    objects: list[ObjectOutcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    published: int = 0
    score_counts: list[int] | None = None  # anomaly scores per bin of the model's score reference
    psi: float | None = None  # their population stability index against the reference (drift)

    def totals(self) -> dict[str, Any]:
        t: dict[str, Any] = {"objects": len(self.objects)}
        for status in ("scored", "quarantined", "failed"):
            t[status] = sum(o.status == status for o in self.objects)
        for name in ("rows", "pairs", "distinct_pairs", "unknown_entity", "unknown_flagged", "unknown_no_history",
                     "findings", "suppressed"):
            t[name] = sum(getattr(o, name) for o in self.objects)
        t["dropped"] = {r: sum(o.dropped.get(r, 0) for o in self.objects) for r in DROP_REASONS}
        sev: dict[str, int] = {}
        for o in self.objects:
            for k, v in o.severity.items():
                sev[k] = sev.get(k, 0) + v
        t["severity"] = sev
        t["published"] = self.published
        return t

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "totals": self.totals(), "seconds": self.seconds,
                "objects": [asdict(o) for o in self.objects], "score_counts": self.score_counts, "psi": self.psi}


def views_for(obj: LakeObject, source_views: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The enabled ``(source, view)`` pairs that read ``obj``'s lake source."""
    return [(s, v) for s, v in source_views if get_source(s).lake_source == obj.lake_source]


class _Flagged:
    """Flagged pairs of one object, merged over chunks."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str, str, str, str], list[Any]] = {}
        self.why: dict[tuple[str, str], dict[str, Any]] = {}  # (entity, ip) -> unknown-entity explanation
        self.context: dict[tuple[str, str, str, str, str, str], tuple[str, set[str]]] = {}  # key -> (name, values)

    def add(self, source: str, view: str, chunk: Any, idx: np.ndarray, dots: np.ndarray, scores: np.ndarray) -> None:
        for i in idx:
            key = (source, view, chunk.entity[i], chunk.ip[i], chunk.account[i], chunk.region[i])
            first, last = chunk.first_seen[i], chunk.last_seen[i]
            cur = self.items.get(key)
            if cur is None:
                self.items[key] = [int(chunk.events[i]), first, last, float(dots[i]), float(scores[i])]
            else:
                cur[0] += int(chunk.events[i])
                cur[1] = _skip_nat(min, cur[1], first)
                cur[2] = _skip_nat(max, cur[2], last)
            if chunk.contexts is not None and chunk.contexts[i]:
                name, values = self.context.setdefault(key, (chunk.context_name, set()))
                values.update(chunk.contexts[i])

    def context_of(self, key: tuple[str, str, str, str, str, str]) -> tuple[str, tuple[str, ...]]:
        """The pair's context name and its first distinct values (sorted), ``("", ())`` when none."""
        name, values = self.context.get(key, ("", set()))
        return name, tuple(sorted(values)[:MAX_CONTEXT_VALUES])


def _once(loader: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """``loader`` whose first successful answer is kept (the profile is read once per batch)."""
    if loader is None:
        return None
    box: list[Any] = []

    def load() -> Any:
        if not box:
            box.append(loader())
        return box[0]

    return load


def _judge_unknown(policy: Any, source: str, view: str, chunk: Any, idx: np.ndarray, dots: np.ndarray,
                   flagged: _Flagged, out: ObjectOutcome) -> None:
    """Judge the unknown-entity pairs ``idx`` of a chunk against their peers; add the flagged ones."""
    hits, scores = [], np.full(dots.shape, np.nan)
    for i in idx:
        verdict = policy.judge(source, chunk.entity[i], chunk.ip[i])
        out.unknown_no_history += int(verdict.no_history)
        if verdict.flagged:
            hits.append(i)
            scores[i] = verdict.score
            flagged.why.setdefault((chunk.entity[i], chunk.ip[i]), verdict.explanation)
    out.unknown_flagged += len(hits)
    if hits:
        flagged.add(source, view, chunk, np.asarray(hits), dots, scores)


def _skip_nat(pick: Any, a: Any, b: Any) -> Any:
    """``pick(a, b)`` (min or max) that ignores a NaT side (NumPy's comparison with NaT gives NaT)."""
    if np.isnat(a):
        return b
    return a if np.isnat(b) else pick(a, b)


_MIN_US = int(np.datetime64("1970-01-01T00:00:00", "us").astype(np.int64))
_MAX_US = int(np.datetime64("9999-12-31T23:59:59", "us").astype(np.int64))


def _utc(value: Any, fallback: datetime) -> datetime:
    """An event time as an aware datetime; missing or unrepresentable times (before 1970, past year
    9999, e.g. microseconds written where milliseconds belong) fall back to the object's day."""
    if value is None or (isinstance(value, np.datetime64) and np.isnat(value)):
        return fallback
    micros = int(np.datetime64(value, "us").astype(np.int64))
    if not _MIN_US <= micros <= _MAX_US:
        return fallback
    return datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)


def _add_estate(explanations: dict[tuple[str, str], dict], scorer: AnomalyScorer) -> None:
    """Add how common each flagged IP's network is across the estate to the known entities'
    explanations, where the combined score weighed it (``estate_entities_24`` / ``_16``, one line of
    text). An unavailable profile leaves the explanations as they are."""
    keys = [k for k, e in explanations.items() if isinstance(e, dict) and e.get("entity_known") and e.get("ip_valid")]
    if not keys:
        return
    try:
        counts = scorer.estate_counts([k[0] for k in keys], [k[1] for k in keys])
    except Exception as exc:  # noqa: BLE001 - an explanation must never lose a finding
        log.warning("estate counts unavailable (%s); explanations leave them out", exc)
        return
    if counts is None:
        return
    for i, key in enumerate(keys):
        n24, n16 = int(counts[24][i]), int(counts[16][i])
        said = ("no other entity of the estate was seen in its /16" if n16 == 0 else
                f"{n16} other {'entity' if n16 == 1 else 'entities'} of the estate {'was' if n16 == 1 else 'were'} "
                f"seen in its /16 ({n24} in its /24)")
        explanations[key] = dict(explanations[key], estate_entities_24=n24, estate_entities_16=n16,
                                 text=f"{explanations[key].get('text', '')}; {said}")


def _day_start(obj: LakeObject) -> datetime:
    try:
        return datetime.strptime(obj.event_day, "%Y%m%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class _Read:
    """One step of reading a batch, in the batch's order: a chunk of one of an object's views, the
    end of the object (``end``), why it could not be read (``quarantined``, ``failed``; ``unread``:
    no enabled view reads it), that its reading was stopped (``abandoned``), or that it was not
    started (``not_started``: the deadline had passed).
    ``first`` marks an object's first step; ``seconds`` is the reading time that led to the step
    (download, footer, DuckDB)."""

    obj: LakeObject
    kind: str
    first: bool = False
    index: int = 0  # the object's position in the batch
    source: str = ""
    view: str = ""
    chunk: Any = None  # objects.ChunkPairs
    counts_rows: bool = False  # the chunk's rows count as the object's (its first view only)
    reason: str | None = None
    seconds: float = 0.0


def _read_object(
    index: int, obj: LakeObject, source_views: list[tuple[str, str]],
    open_object: Callable[[LakeObject], AbstractContextManager[str]], con: Any, stop: Callable[[int], bool],
    may_start: Callable[[], bool], *, chunk_rows: int, accounts: tuple[str, ...], regions: tuple[str, ...],
) -> Generator[_Read, None, None]:
    """The reading steps of ``obj``, the ``index``-th object of the batch: its chunks, then exactly one
    ``end``, ``quarantined`` or ``failed`` step. When ``may_start()`` is false (the deadline) the object
    is not downloaded: its one step is ``not_started``. Once ``stop(index)`` is true (the object failed
    while scored, or the batch stopped) nothing more is read, and the last step is ``abandoned``."""
    if not may_start():
        yield _Read(obj, "not_started", first=True, index=index)
        return
    views = views_for(obj, source_views)
    if not views:
        yield _Read(obj, "unread", first=True, index=index, reason=f"no enabled source view reads {obj.lake_source}")
        return
    first, t0 = True, time.perf_counter()
    try:
        with open_object(obj) as path:
            if stop(index):
                yield _Read(obj, "abandoned", first=first, index=index)
                return
            pf = open_parquet(path)
            if pf.metadata.num_rows == 0:
                raise UnreadableObject("no rows")
            for source, view in views:
                for chunk in iter_view_chunks(con, pf, obj, source, view, chunk_rows=chunk_rows,
                                              accounts=accounts, regions=regions):
                    if stop(index):
                        yield _Read(obj, "abandoned", first=first, index=index)
                        return
                    yield _Read(obj, "chunk", first=first, index=index, source=source, view=view, chunk=chunk,
                                counts_rows=(source, view) == views[0], seconds=time.perf_counter() - t0)
                    first, t0 = False, time.perf_counter()
    except UnreadableObject as exc:
        yield _Read(obj, "quarantined", first=first, index=index, reason=str(exc), seconds=time.perf_counter() - t0)
        return
    except Exception as exc:  # noqa: BLE001 - S3 failures: leave the object for a retry
        yield _Read(obj, "failed", first=first, index=index, reason=f"{type(exc).__name__}: {str(exc)[:300]}",
                    seconds=time.perf_counter() - t0)
        return
    yield _Read(obj, "end", first=first, index=index, seconds=time.perf_counter() - t0)


def _score_chunk(step: _Read, out: ObjectOutcome, flagged: _Flagged, scorer: Any, anomaly_scorer: Any,
                 decision: Any, unknown_policy: Any, histogram: ScoreHistogram | None) -> None:
    """Count one chunk's rows, pairs and drops in ``out``; score its pairs and add the flagged ones."""
    chunk, source, view = step.chunk, step.source, step.view
    out.rows += chunk.rows if step.counts_rows else 0
    out.pairs += chunk.ok_rows
    out.distinct_pairs += len(chunk.entity)
    for r, n in chunk.dropped.items():
        out.dropped[r] = out.dropped.get(r, 0) + n
    if not chunk.entity:
        return
    scores = scorer.score(chunk.entity, chunk.ip)
    dots = scores.dot_product
    anomaly = anomaly_scorer.score(chunk.entity, chunk.ip, dots)
    if histogram is not None:
        histogram.add(anomaly)
    mask = decision.flag(anomaly)
    unknown = unknown_policy.unknown(source, scores.known_entity, chunk.entity)
    if unknown is not None:
        out.unknown_entity += int(unknown.sum())
        mask &= ~unknown
    flagged.add(source, view, chunk, np.flatnonzero(mask), dots, anomaly)
    if unknown is not None and unknown.any() and unknown_policy.policy(source) == "peers":
        _judge_unknown(unknown_policy, source, view, chunk, np.flatnonzero(unknown), dots, flagged, out)


def score_objects(
    objects: list[LakeObject],
    *,
    source_views: list[tuple[str, str]],
    open_object: Callable[[LakeObject], AbstractContextManager[str]],
    scorer: Any,
    model: ActiveModel,
    sink: Any,
    publisher: Any = None,
    profile_loader: Callable[[set[str]], Any] | None = None,
    history_loader: Callable[[], Any] | None = None,
    min_severity_to_publish: int = SEVERE,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    accounts: tuple[str, ...] = (),
    regions: tuple[str, ...] = (),
    product_version: str = "0",
    on_object_done: Callable[[LakeObject, ObjectOutcome], None] | None = None,
    duckdb_memory: str = "1GB",
    unknown_entities: Mapping[str, str] | None = None,
    allowlist: Matcher | None = None,
    read_ahead: int = DEFAULT_READ_AHEAD,
    keep_going: Callable[[], bool] | None = None,
    on_quarantined: Callable[[LakeObject, ObjectOutcome], None] | None = None,
) -> BatchResult:
    """Score ``objects`` into findings (see the module docstring).

    :param open_object: context manager giving a local path for an object (local file or S3 download).
    :param scorer: :class:`~.scorers.LocalScorer` or :class:`~.scorers.EndpointScorer`.
    :param sink: a store with ``put_bytes(key, data)``; findings keys are ``ext/<custom source>/...``.
    :param publisher: optional; receives findings with ``severity_id >= min_severity_to_publish``.
    :param profile_loader: ``entities -> EntityProfile`` (or ``None``: the model has no profile) for
        explanations (``None`` itself: no profile);
        asked at most once per entity over the batch (:class:`~.profile.ProfileCache`).
    :param history_loader: ``() -> HistoryIndex`` of the model's profile, needed when ``model.combiner``
        is set (the anomaly score then combines ``dot_product`` with the entity's history; see
        :class:`~.scorers.AnomalyScorer`); called at most once.
    :param on_object_done: called after an object's findings are written and published (the caller's
        ledger hook: the object is marked done only then).
    :param duckdb_memory: DuckDB memory limit (``extra.scoring.duckdb_memory``).
    :param unknown_entities: source -> ``peers`` | ``ignore`` (``extra.scoring.unknown_entities``;
        absent sources: ``peers``), see :mod:`.peers`. The peer groups come from ``history_loader``.
    :param allowlist: the analysts' allow-list (:class:`~seclake_ml.feedback.allowlist.Matcher`, built
        at batch start); findings of flagged pairs it matches are written as Suppressed and not published.
    :param read_ahead: objects read at the same time, each in a background thread with its own DuckDB
        connection, while the calling thread scores, explains and writes the earlier ones in order
        (``extra.scoring.read_ahead``); 0 reads in the calling thread. At most ``(read_ahead + 1) *
        (READ_DEPTH + 1)`` chunks (of at most ``chunk_rows`` pairs each) are held at a time (3 for a
        batch of one object: one scored, one queued, one being read), against 1 when reading in turn. ``seconds["read_extract"]`` sums the
        reading times (download, footer, DuckDB), which then overlap each other and the other parts.
    :param keep_going: asked before each object is downloaded (from the reading threads too) and
        before it is scored (the Lambda's deadline); once it answers ``False`` the batch ends there:
        that object and the ones after it are left out of ``result.objects`` (``len(result.objects)``
        objects were handled) and no other object is started.
    :param on_quarantined: called when an object is quarantined (unreadable, or no enabled view reads
        it), as it happens (the Lambda records it in the ledger at once).
    """
    from seclake_ml.scoring.findings import Candidate, build_findings, suppress_finding
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts
    from seclake_ml.scoring.profile import EntityProfile, ProfileCache

    result = BatchResult(model_version=model.version)
    info = replace(model, threshold=float(model.threshold), severity_scale=float(model.severity_scale or 1.0))
    secs = {"read_extract": 0.0, "score": 0.0, "explain": 0.0, "write": 0.0, "publish": 0.0}
    from seclake_ml.scoring.scorers import AnomalyScorer

    from seclake_ml.scoring.peers import UnknownPolicy

    decision = model.decision
    # checked here, where every model record arrives (active, pinned in a manifest, the Lambda's):
    # a damaged reference means no drift figures, never a failed batch
    reference = check_reference(model.score_reference)
    histogram = ScoreHistogram(reference) if reference else None
    history_once = _once(history_loader)
    profile_cache = ProfileCache(profile_loader) if profile_loader else None
    anomaly_scorer = AnomalyScorer(model.combiner, history_once)
    unknown_policy = UnknownPolicy(unknown_entities, history_once, float(model.threshold),
                                   float(model.severity_scale or 1.0))
    # a grouping past the memory limit spills to a private temporary folder (the working directory
    # may be read-only, as on Lambda)
    with spilling_connection(duckdb_memory, threads=2, prefix="seclake-score-") as (con, _):
        created = datetime.now(timezone.utc).replace(microsecond=0)
        abandoned: set[int] = set()  # positions of objects that failed while scored: not read further
        stopping = threading.Event()  # the batch stops: no reading thread starts anything new
        workers = min(max(0, int(read_ahead)), len(objects))
        # each reading thread has its own DuckDB connection (a cursor of the same database)
        cursors = [con.cursor() for _ in range(workers)] if workers else [con]

        def stop(index: int) -> bool:
            return stopping.is_set() or index in abandoned

        def may_start() -> bool:
            return not stopping.is_set() and (keep_going is None or bool(keep_going()))

        def read(job: tuple[int, LakeObject], worker: int) -> Generator[_Read, None, None]:
            return _read_object(*job, source_views, open_object, cursors[worker], stop, may_start,
                                chunk_rows=chunk_rows, accounts=accounts, regions=regions)

        def interrupt() -> None:
            for cursor in cursors:
                cursor.interrupt()

        reads: Any = None
        out, flagged, t_obj = ObjectOutcome(uri="", key=""), _Flagged(), 0.0
        try:
            if workers:
                # the next objects are read in threads while this one is scored and written, in order
                reads = ReadAhead(list(enumerate(objects)), read, workers=workers, depth=READ_DEPTH,
                                  name="seclake-score-read", interrupt=interrupt)
            else:
                reads = (step for job in enumerate(objects) for step in read(job, 0))
            for step in reads:
                obj = step.obj
                if step.first and (step.kind == "not_started" or (keep_going is not None and not keep_going())):
                    log.info("batch stopped before %s: %d of %d objects handled", obj.uri[-200:],
                             len(result.objects), len(objects))
                    break
                if step.first:
                    t_obj = time.perf_counter() - step.seconds
                    out = ObjectOutcome(uri=obj.uri, key=obj.key)
                    result.objects.append(out)
                    flagged = _Flagged()
                secs["read_extract"] += step.seconds
                if out.status != "scored":
                    continue  # failed while scored: the rest of its reading is skipped
                if step.kind in ("unread", "quarantined", "failed"):
                    out.status, out.reason = "quarantined" if step.kind == "unread" else step.kind, step.reason
                    if step.kind != "unread":
                        log.error("%s %s: %s", step.kind, obj.uri[:300], out.reason)
                    if out.status == "quarantined" and on_quarantined is not None:
                        on_quarantined(obj, out)
                    continue
                if step.kind == "abandoned":  # only after the object failed or the batch stopped
                    continue
                if step.kind == "chunk":
                    t1 = time.perf_counter()
                    try:
                        _score_chunk(step, out, flagged, scorer, anomaly_scorer, decision, unknown_policy, histogram)
                    except Exception as exc:  # noqa: BLE001 - endpoint failures: leave the object for a retry
                        out.status, out.reason = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
                        log.error("failed %s: %s", obj.uri[:300], out.reason)
                        abandoned.add(step.index)
                    secs["score"] += time.perf_counter() - t1
                    continue
                try:
                    t2 = time.perf_counter()
                    entities = {k[2] for k in flagged.items}
                    profile = None
                    if entities:
                        try:
                            profile = profile_cache(entities) if profile_cache else None
                        except Exception as exc:  # noqa: BLE001 - an explanation must never lose a finding
                            log.warning("entity profile unavailable (%s); findings carry no usual-network explanation", exc)
                            profile = None
                    profile = profile or EntityProfile.empty()
                    day0 = _day_start(obj)
                    candidates, explanations = [], {}
                    for key, (events, first, last, dot, score) in flagged.items.items():
                        source, view, entity, ip, account, region = key
                        context_name, context = flagged.context_of(key)
                        candidates.append(Candidate(
                            source=source, view=view, entity=entity, ip=ip, account=account or obj.account,
                            region=region or obj.region, first_seen=_utc(first, day0), last_seen=_utc(last, day0),
                            events=int(events), dot_product=float(dot), score=float(score),
                            context_name=context_name, context=context,
                        ))
                        explanations[(entity, ip)] = flagged.why.get((entity, ip)) or profile.explain(entity, ip)
                    _add_estate(explanations, anomaly_scorer)
                    secs["explain"] += time.perf_counter() - t2
                    t3 = time.perf_counter()
                    records = build_findings(candidates, model=info, scope=obj.uri, explanations=explanations,
                                             created_time=created, product_version=product_version)
                    muted: set[int] = set()  # positions of records an allow-list entry suppresses
                    if allowlist is not None and candidates:
                        hits = allowlist.match([c.entity for c in candidates], [c.ip for c in candidates])
                        for i, (rec, hit) in enumerate(zip(records, hits)):
                            if hit is not None:
                                suppress_finding(rec, entry_id=hit.entry_id, kind=hit.kind, reason=hit.reason,
                                                 expires_at=hit.expires_at)
                                muted.add(i)
                    out.suppressed = len(muted)
                    for rel_key, data in findings_parquet_parts(records, file_stem=object_stem(obj.uri)):
                        out.files.append(sink.put_bytes(rel_key, data))
                    out.findings = len(records)
                    for rec in records:
                        name = str(rec.get("severity"))
                        out.severity[name] = out.severity.get(name, 0) + 1
                    secs["write"] += time.perf_counter() - t3
                    if publisher is not None:
                        # Published before the object is marked done: a crash in between re-publishes on the
                        # retry (at-least-once alerts, deduplicated downstream by finding uid), never drops one.
                        t4 = time.perf_counter()
                        severe = [r for i, r in enumerate(records)
                                  if i not in muted and int(r.get("severity_id", 0)) >= min_severity_to_publish]
                        result.published += publisher.publish(severe)
                        secs["publish"] += time.perf_counter() - t4
                    if on_object_done is not None:
                        on_object_done(obj, out)
                except Exception as exc:  # noqa: BLE001 - one object's failure never stops the batch
                    out.status, out.reason = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
                    log.exception("failed %s after scoring", obj.uri[:300])
                    continue
                out.seconds = round(time.perf_counter() - t_obj, 3)
                log.info(
                    "scored %s: %d rows, %d pairs (%d distinct), dropped %s, unknown entity %d (flagged %d, no peer "
                    "history %d), %d findings %s in %.2fs", obj.uri[-200:], out.rows, out.pairs, out.distinct_pairs,
                    {k: v for k, v in out.dropped.items() if v}, out.unknown_entity, out.unknown_flagged,
                    out.unknown_no_history, out.findings, out.severity, out.seconds,
                )
        finally:
            stopping.set()
            if reads is not None:
                reads.close()  # before the connections close: a reading thread may still use one
            for cursor in cursors:
                cursor.close()
    result.seconds = {k: round(v, 3) for k, v in secs.items()}
    if histogram is not None:
        result.score_counts, result.psi = [int(c) for c in histogram.counts], histogram.psi()
    return result
