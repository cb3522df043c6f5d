"""The analysts' label store: risk scores and verdicts given to CloudTrail events (or findings).

No Airflow here. The store keeps one record per label (:class:`LabelRecord`):

``label_id``         content hash of the label (every field but ``labelled_at``): the same label
                     submitted twice has the same id
``target_uid``       the event's ``metadata.uid`` (CloudTrail ``eventID``) or a finding's uid
``target_kind``      ``event`` | ``finding``
``risk_score``       whole number 0-100, higher = riskier
``verdict``          ``malicious`` | ``benign`` | ``unsure``
``verdict_derived``  ``True`` when no verdict was given and it was derived from the score
                     (:func:`derive_verdict`: >= 70 malicious, <= 30 benign, else unsure)
``analyst``          who labelled (1-128 printable characters)
``labelled_at``      UTC time of the label, ISO 8601 with microseconds and ``Z``
``note``             free text, at most 2000 characters (see below), may be empty
``source``           ``cli`` | ``import`` | ``workspace`` | ``synthetic``
``principal``, ``operation``, ``source_ip``, ``event_time``
                     optional event context (from the lake's event when matched, else from the CSV)

**Layout.** Under ``<work_location>/risk/labels/``, one JSON Lines object per write batch, named
``<UTC yyyymmddTHHMMSSffffffZ>-<hash of the batch's content>.jsonl``. Objects are only ever added
(append-only): the full history is kept and a new label of an event supersedes the older ones.
Reading takes every object; the label *in force* for a uid is the latest by ``labelled_at``, then by
object name, then by line (the sequence). Local folders are written atomically (temporary file and
rename, :class:`~seclake_ml.scoring.stores.LocalStore`); S3 through one ``PutObject``
(:class:`~seclake_ml.scoring.stores.S3Store`, a boto3 client passed in). Any object with
``put_bytes``/``get_bytes``/``list`` (:class:`ObjectStore`) will do.

**Idempotent.** A label whose ``label_id`` equals the one in force for its uid is not written again,
so a retried import, or the same label submitted twice from the workspace, adds nothing; when two
writers race, readers still fold a label repeated back-to-back in a uid's history into one record.

**Notes.** Tab, CR and LF become spaces (CSV exports carry multi-line notes); any other control,
format (bidi, zero-width) or line-separator character refuses the label, as does a note over
:data:`MAX_NOTE_CHARS` characters (refused, never cut). HTML and script text are kept verbatim: a note
is data, and whoever renders it (the workspace page) escapes it for its medium; terminal output goes
through :mod:`seclake_ml.display`, CSV export through :func:`neutralise_cell`.

**Training.** :meth:`LabelStore.excluded_from_training` gives the events whose label in force is
``malicious``: the trainers leave them out.

**CSV import** (:func:`parse_label_csv`, :func:`match_rows`, :func:`import_labels`): the analysts'
SIEM export, CloudTrail field names (:data:`~seclake_ml.risk.columns.LABEL_CSV_COLUMNS`), header
matched case-insensitively (``uid``/``metadata.uid`` for ``eventID``, ``risk_score`` for
``riskScore``). Rows are matched to events by uid, else by (``eventTime`` to the second,
``userIdentityArn``, ``eventName``, ``sourceIPAddress``). Bad rows are skipped and reported by line
number and reason (:data:`REJECT_REASONS`); whole-file problems (empty, binary, not UTF-8, no score
column) raise :class:`ValueError` naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from seclake_ml.display import is_unsafe_char
from seclake_ml.interval import utc_iso
from seclake_ml.risk.columns import LABEL_CSV_COLUMNS, VERDICTS
from seclake_ml.scoring.stores import ObjectStore

log = logging.getLogger(__name__)

__all__ = [
    "LABELS_PREFIX", "MAX_NOTE_CHARS", "TARGET_KINDS", "LABEL_SOURCES", "MALICIOUS_AT", "BENIGN_AT",
    "REJECT_REASONS", "EXPORT_COLUMNS", "LabelRecord", "LabelStore", "ObjectStore", "CsvRow", "Reject",
    "ParsedCsv", "ImportResult", "derive_verdict", "new_label", "parse_label_csv", "match_rows",
    "accept_unverified", "import_labels", "neutralise_cell", "export_rows", "label_store_for", "utc_iso",
]  # fmt: skip

LABELS_PREFIX = "risk/labels"
MAX_NOTE_CHARS = 2000
MAX_ANALYST_CHARS = 128
MAX_UID_CHARS = 256
MAX_CONTEXT_CHARS = 2048
MAX_CSV_BYTES = 64 * 1024 * 1024
TARGET_KINDS = ("event", "finding")
LABEL_SOURCES = ("cli", "import", "workspace", "synthetic")
#: Derived verdicts: a score >= MALICIOUS_AT is malicious, <= BENIGN_AT benign, anything between unsure.
MALICIOUS_AT = 70
BENIGN_AT = 30

#: Why a CSV row was skipped (the import summary groups line numbers by these).
REJECT_REASONS = (
    "malformed line", "missing score", "non-numeric score", "score out of range", "score not a whole number",
    "bad verdict", "bad note", "note too long", "missing analyst", "bad analyst", "bad uid", "bad time",
    "missing match fields", "no event window", "unknown uid", "no matching event", "ambiguous match",
    "duplicate",
)  # fmt: skip

_CONTEXT_FIELDS = ("principal", "operation", "source_ip", "event_time")
# Characters a spreadsheet reads as the start of a formula (CSV injection), and the prefix that defuses them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISER = "'"


# ----------------------------------------------------------------------------- validation helpers
def derive_verdict(score: int) -> str:
    """The verdict a score implies: >= :data:`MALICIOUS_AT` malicious, <= :data:`BENIGN_AT` benign, else unsure."""
    if score >= MALICIOUS_AT:
        return "malicious"
    if score <= BENIGN_AT:
        return "benign"
    return "unsure"


def _clean_note(note: Any) -> str:
    """``note`` with tab/CR/LF as spaces; ValueError for other unsafe characters or oversize text."""
    text = "" if note is None else str(note)
    text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()
    bad = next((ch for ch in text if is_unsafe_char(ch)), None)
    if bad is not None:
        raise ValueError(f"note: holds the control or format character U+{ord(bad):04X}; remove it")
    if len(text) > MAX_NOTE_CHARS:
        raise ValueError(f"note: {len(text)} characters; at most {MAX_NOTE_CHARS} are allowed")
    return text


def _clean_name(what: str, value: Any, limit: int) -> str:
    """A printable single-line identifier (uid, analyst): no control/format characters, 1..limit chars."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(f"{what}: empty")
    if len(text) > limit:
        raise ValueError(f"{what}: {len(text)} characters; at most {limit} are allowed")
    bad = next((ch for ch in text if is_unsafe_char(ch) or ch in "\t\r\n"), None)
    if bad is not None:
        raise ValueError(f"{what} {text[:60]!r}: holds the control or format character U+{ord(bad):04X}")
    return text


def _clean_context(what: str, value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    bad = next((ch for ch in text if is_unsafe_char(ch)), None)
    if bad is not None:
        raise ValueError(f"{what} {text[:60]!r}: holds the control or format character U+{ord(bad):04X}")
    return text[:MAX_CONTEXT_CHARS]


def parse_score(value: Any) -> int:
    """A risk score as an int 0-100; ValueError (message starting with a :data:`REJECT_REASONS` entry) otherwise.

    Accepts ints and whole-number text or floats (``"55"``, ``"55.0"``); refuses NaN, infinities,
    fractions and anything outside 0-100.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing score")
    if isinstance(value, bool):
        raise ValueError(f"non-numeric score: {value!r}")
    if isinstance(value, int):
        number: float = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"non-numeric score: {str(value)[:40]!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"non-numeric score: {str(value)[:40]!r}")
        if number != int(number):
            raise ValueError(f"score not a whole number: {str(value)[:40]!r}")
    if not 0 <= number <= 100:
        raise ValueError(f"score out of range: {str(value)[:40]} (allowed 0-100)")
    return int(number)


def parse_time(value: Any) -> datetime:
    """An event time as an aware UTC datetime: ISO 8601 text (``Z``, offset or naive = UTC) or a datetime."""
    if isinstance(value, datetime):
        ts = value
    else:
        text = str(value).strip()
        if not text:
            raise ValueError("empty time")
        try:
            ts = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {text[:40]!r}") from None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


# ----------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class LabelRecord:
    """One label as stored (see the module docstring for each field). Build new ones with :func:`new_label`."""

    target_uid: str
    risk_score: int
    verdict: str
    analyst: str
    labelled_at: str
    source: str
    target_kind: str = "event"
    verdict_derived: bool = False
    note: str = ""
    principal: str | None = None
    operation: str | None = None
    source_ip: str | None = None
    event_time: str | None = None
    label_id: str = ""

    def content_id(self) -> str:
        """Hash of every field but ``labelled_at`` and ``label_id``: equal for the same label."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("labelled_at", "label_id")}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LabelRecord:
        """A stored record, validated like a new one; ValueError naming the problem."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"a label record must be a JSON object, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown label field(s): {', '.join(unknown)[:200]}")
        rec = new_label(
            doc.get("target_uid"), doc.get("risk_score"), verdict=doc.get("verdict"), analyst=doc.get("analyst"),
            note=doc.get("note"), source=doc.get("source"), kind=doc.get("target_kind", "event"),
            principal=doc.get("principal"), operation=doc.get("operation"), source_ip=doc.get("source_ip"),
            event_time=doc.get("event_time"), labelled_at=doc.get("labelled_at"),
        )
        if bool(doc.get("verdict_derived")) != rec.verdict_derived:
            rec = replace(rec, verdict_derived=bool(doc.get("verdict_derived")))
            rec = replace(rec, label_id=rec.content_id())
        return rec


def new_label(
    uid: Any, score: Any, *, verdict: Any = None, analyst: Any, note: Any = None, source: Any = "cli",
    kind: Any = "event", principal: Any = None, operation: Any = None, source_ip: Any = None,
    event_time: Any = None, labelled_at: Any = None,
) -> LabelRecord:
    """A validated :class:`LabelRecord`; ValueError with a one-line message naming the bad field.

    :param verdict: one of :data:`~seclake_ml.risk.columns.VERDICTS` (any case); empty or ``None``
        derives it from the score (:func:`derive_verdict`) and marks it derived.
    :param labelled_at: ISO text or datetime; ``None`` = now.
    """
    target_uid = _clean_name("uid", uid, MAX_UID_CHARS)
    if any(ch.isspace() for ch in target_uid):
        raise ValueError(f"uid {target_uid[:60]!r}: may not contain spaces")
    risk = parse_score(score)
    text = "" if verdict is None else str(verdict).strip().lower()
    if text and text not in VERDICTS:
        raise ValueError(f"verdict {str(verdict)[:40]!r}: allowed {' | '.join(VERDICTS)}")
    derived = not text
    kind_text = str(kind or "event").strip().lower()
    if kind_text not in TARGET_KINDS:
        raise ValueError(f"kind {str(kind)[:40]!r}: allowed {' | '.join(TARGET_KINDS)}")
    source_text = str(source or "").strip().lower()
    if source_text not in LABEL_SOURCES:
        raise ValueError(f"source {str(source)[:40]!r}: allowed {' | '.join(LABEL_SOURCES)}")
    when = datetime.now(timezone.utc) if labelled_at is None else parse_time(labelled_at)
    ev_time = None
    if event_time not in (None, ""):
        ev_time = utc_iso(parse_time(event_time))
    rec = LabelRecord(
        target_uid=target_uid, risk_score=risk, verdict=text or derive_verdict(risk), verdict_derived=derived,
        analyst=_clean_name("analyst", analyst, MAX_ANALYST_CHARS), labelled_at=utc_iso(when),
        note=_clean_note(note), source=source_text, target_kind=kind_text,
        principal=_clean_context("principal", principal), operation=_clean_context("operation", operation),
        source_ip=_clean_context("source_ip", source_ip), event_time=ev_time,
    )
    return replace(rec, label_id=rec.content_id())


# ----------------------------------------------------------------------------- the store
def label_store_for(work_location: str, client: Any = None) -> LabelStore:
    """The label store of a work location: a local folder, or ``s3://bucket/prefix`` with a boto3 S3 client."""
    from seclake_ml.scoring.stores import store_for

    return LabelStore(store_for(work_location, client))


@dataclass
class _Loaded:
    records: list[LabelRecord]  # every stored record, in order (labelled_at, object, line), repeats folded
    unreadable: int


class LabelStore:
    """Append-only labels under ``<store>/risk/labels/`` (see the module docstring for the layout).

    :param store: an :class:`ObjectStore` rooted at the work location.
    :param prefix: the folder of label objects within it.
    """

    def __init__(self, store: ObjectStore, prefix: str = LABELS_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.unreadable = 0

    # -- reading
    def _load(self) -> _Loaded:
        keyed: list[tuple[str, str, int, LabelRecord]] = []
        unreadable = 0
        for key in self.store.list(self.prefix):
            if not key.endswith(".jsonl"):
                continue
            data = self.store.get_bytes(key)
            if data is None:  # removed since listed
                continue
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = LabelRecord.from_dict(json.loads(line))
                except (ValueError, TypeError) as exc:
                    unreadable += 1
                    log.warning("label object %s line %d unreadable, skipped: %s", key, n, str(exc)[:200])
                    continue
                keyed.append((rec.labelled_at, key, n, rec))
        keyed.sort(key=lambda t: t[:3])
        records: list[LabelRecord] = []
        last: dict[tuple[str, str], str] = {}
        for *_, rec in keyed:
            ident = (rec.target_kind, rec.target_uid)
            if last.get(ident) == rec.label_id:  # the same label twice in a row (a raced retry): one record
                continue
            last[ident] = rec.label_id
            records.append(rec)
        self.unreadable = unreadable
        return _Loaded(records, unreadable)

    def records(self) -> list[LabelRecord]:
        """Every label ever stored, oldest first (history)."""
        return self._load().records

    def history(self, uid: str, kind: str | None = None) -> list[LabelRecord]:
        """Labels of ``uid`` (of ``kind`` when given), oldest first; the last is the one in force."""
        return [r for r in self.records() if r.target_uid == uid and (kind is None or r.target_kind == kind)]

    @staticmethod
    def _latest_of(records: Iterable[LabelRecord]) -> dict[str, LabelRecord]:
        out: dict[str, LabelRecord] = {}
        for rec in records:  # ordered: later ones win
            out[rec.target_uid] = rec
        return out

    def latest(self, kind: str | None = None) -> dict[str, LabelRecord]:
        """The label in force per uid (of ``kind`` when given)."""
        return self._latest_of(r for r in self.records() if kind is None or r.target_kind == kind)

    def excluded_from_training(self) -> set[str]:
        """Event uids whose label in force is ``malicious``: training leaves these events out."""
        return {uid for uid, rec in self.latest("event").items() if rec.verdict == "malicious"}

    def to_frame(self, history: bool = False) -> Any:
        """A pandas DataFrame of the labels in force (or of every label with ``history=True``)."""
        import pandas as pd

        recs = self.records() if history else list(self.latest().values())
        cols = [f.name for f in fields(LabelRecord)]
        frame = pd.DataFrame([r.to_dict() for r in recs], columns=cols)
        return frame.astype({"risk_score": "int64", "verdict_derived": "bool"}) if len(frame) else frame

    # -- writing
    def add(self, records: Sequence[LabelRecord], *, now: datetime | None = None) -> AddResult:
        """Append ``records`` as one object; labels equal to the one in force (or repeated) are skipped.

        :returns: what was written (nothing at all when every label was already in force).
        """
        current = {(r.target_kind, r.target_uid): r.label_id for r in self.records()}
        todo: list[LabelRecord] = []
        unchanged = 0
        for rec in records:
            if not isinstance(rec, LabelRecord):
                raise TypeError(f"LabelStore.add takes LabelRecord objects, got {type(rec).__name__}")
            ident = (rec.target_kind, rec.target_uid)
            if current.get(ident) == rec.label_id:
                unchanged += 1
                continue
            current[ident] = rec.label_id
            todo.append(rec)
        if not todo:
            return AddResult(0, unchanged, None)
        body = "".join(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=True) + "\n" for r in todo).encode()
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{self.prefix}/{stamp}-{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
        uri = self.store.put_bytes(key, body)
        return AddResult(len(todo), unchanged, uri)


@dataclass(frozen=True)
class AddResult:
    """What :meth:`LabelStore.add` wrote: ``stored`` new labels, ``unchanged`` already in force, the object."""

    stored: int
    unchanged: int
    uri: str | None


# ----------------------------------------------------------------------------- CSV import
# Header aliases (lower case) -> canonical CloudTrail name.
_ALIASES = {c.lower(): c for c in LABEL_CSV_COLUMNS} | {
    "uid": "eventID", "metadata.uid": "eventID", "risk_score": "riskScore",
}
_MATCH_FIELDS = ("eventTime", "userIdentityArn", "eventName", "sourceIPAddress")


@dataclass
class CsvRow:
    """One parsed data row of a label CSV, validated but not yet matched to an event.

    :param line: the file line the row starts on (the header is line 1).
    :param uid: ``eventID`` when the file has one and the cell is filled.
    :param event_time: ``eventTime`` parsed to UTC (``None`` when absent).
    """

    line: int
    uid: str | None
    score: int
    verdict: str | None
    analyst: str | None
    note: str
    event_time: datetime | None
    principal: str | None
    operation: str | None
    source_ip: str | None
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A skipped row: its line, a reason from :data:`REJECT_REASONS` and a short detail."""

    line: int
    reason: str
    detail: str = ""


@dataclass
class ParsedCsv:
    """Rows of a label CSV: the valid ones, the rejected ones, the header as read and line counts."""

    rows: list[CsvRow]
    rejects: list[Reject]
    columns: list[str]
    has_uid: bool
    has_match_fields: bool
    has_analyst: bool
    rows_read: int


def _unneutralise(text: str) -> str:
    """Undo :func:`neutralise_cell` (an export read back): ``'=x`` -> ``=x``; anything else unchanged."""
    if len(text) > 1 and text[0] == _NEUTRALISER and text[1] in _FORMULA_STARTS:
        return text[1:]
    return text


def parse_label_csv(data: bytes, name: str = "CSV") -> ParsedCsv:
    """Parse a label CSV's bytes; bad rows become :class:`Reject` entries, bad files raise ValueError.

    :param data: the file's content (UTF-8, a BOM allowed).
    :param name: the file's name, for messages.
    :raises ValueError: empty, binary (NUL bytes), not UTF-8, too large, no header, no ``riskScore``
        column, neither ``eventID`` nor all of the matching columns, or a column named twice.
    """
    if len(data) > MAX_CSV_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes; label CSVs of at most {MAX_CSV_BYTES} bytes are read")
    if not data.strip():
        raise ValueError(f"{name}: empty file; expected a header line with riskScore and eventID "
                         f"or {', '.join(_MATCH_FIELDS)}")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ValueError(f"{name}: binary content (NUL byte on line {line}); expected a UTF-8 CSV file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                         "save the export as UTF-8") from None
    # Physical lines as csv counts them; after a malformed record (a stray or unterminated quote can
    # swallow the rest of the file) reading restarts on the line after the record's first line.
    lines = io.StringIO(text, newline="").readlines()
    header: list[str] | None = None
    header_line = 0
    rejects: list[Reject] = []
    raw_rows: list[tuple[int, list[str]]] = []
    data_lines = 0
    pos = 0  # lines before the current reader's first one
    while pos < len(lines):
        reader = csv.reader(iter(lines[pos:]), strict=True)
        prev_end = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                pos = len(lines)
                break
            except csv.Error as exc:
                start = pos + prev_end + 1
                if header is None:
                    raise ValueError(f"{name}: header line {start} unreadable: {exc}") from None
                rejects.append(Reject(start, "malformed line", str(exc)[:120]))
                data_lines += 1
                pos = start
                break
            start, prev_end = pos + prev_end + 1, reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if header is None:
                header, header_line = cells, start
                continue
            raw_rows.append((start, cells))
            data_lines += 1
    if header is None:
        raise ValueError(f"{name}: no header line")
    columns: list[str | None] = []
    seen: dict[str, str] = {}
    for cell in header:
        key = cell.strip().lower()
        canon = _ALIASES.get(key)
        if canon is not None:
            if canon in seen:
                raise ValueError(f"{name}: columns {seen[canon]!r} and {cell.strip()!r} both name {canon}")
            seen[canon] = cell.strip()
        columns.append(canon)
    if "riskScore" not in seen:
        shown = ", ".join(c.strip()[:40] for c in header[:20])
        raise ValueError(f"{name}: no riskScore (or risk_score) column in the header on line {header_line} ({shown})")
    has_uid = "eventID" in seen
    has_match = all(f in seen for f in _MATCH_FIELDS)
    if not has_uid and not has_match:
        missing = ", ".join(f for f in _MATCH_FIELDS if f not in seen)
        raise ValueError(f"{name}: no eventID (uid) column, and the matching columns {missing} are missing too")
    rows: list[CsvRow] = []
    for line, cells in raw_rows:
        if len(cells) != len(header):
            rejects.append(Reject(line, "malformed line", f"{len(cells)} fields, the header has {len(header)}"))
            continue
        values = {col: _unneutralise(cell.strip()) for col, cell in zip(columns, cells) if col is not None}
        try:
            rows.append(_row(line, values))
        except _RowError as exc:
            rejects.append(Reject(line, exc.reason, exc.detail[:160]))
    return ParsedCsv(rows, rejects, [c.strip() for c in header], has_uid, has_match, "analyst" in seen, data_lines)


class _RowError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _checked(reason: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, its ValueError turned into a :class:`_RowError` with ``reason``."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise _RowError(reason, str(exc)) from None


def _row(line: int, values: dict[str, str]) -> CsvRow:
    """A :class:`CsvRow` from canonical-named cells; :class:`_RowError` with the reason otherwise."""
    try:
        score = parse_score(values.get("riskScore"))
    except ValueError as exc:
        reason, _, detail = str(exc).partition(": ")
        raise _RowError(reason if reason in REJECT_REASONS else "non-numeric score", detail or str(exc)) from None
    verdict = values.get("verdict", "").lower() or None
    if verdict is not None and verdict not in VERDICTS:
        raise _RowError("bad verdict", f"{values['verdict'][:40]!r} (allowed {' | '.join(VERDICTS)})")
    uid = values.get("eventID") or None
    if uid is not None:
        uid = _checked("bad uid", _clean_name, "uid", uid, MAX_UID_CHARS)
        if any(ch.isspace() for ch in uid):
            raise _RowError("bad uid", f"{uid[:60]!r} contains spaces")
    when = _checked("bad time", parse_time, values["eventTime"]) if values.get("eventTime") else None
    analyst = values.get("analyst") or None
    if analyst is not None:
        analyst = _checked("bad analyst", _clean_name, "analyst", analyst, MAX_ANALYST_CHARS)
    note = values.get("note") or ""
    if len(note) > MAX_NOTE_CHARS:
        raise _RowError("note too long", f"{len(note)} characters; at most {MAX_NOTE_CHARS} are allowed")
    return CsvRow(
        line=line, uid=uid, score=score, verdict=verdict, analyst=analyst, note=_checked("bad note", _clean_note, note),
        event_time=when, principal=_checked("malformed line", _clean_context, "principal", values.get("userIdentityArn")),
        operation=_checked("malformed line", _clean_context, "operation", values.get("eventName")),
        source_ip=_checked("malformed line", _clean_context, "source_ip", values.get("sourceIPAddress")),
        values=values,
    )


# ----------------------------------------------------------------------------- matching
@dataclass(frozen=True)
class Match:
    """A row matched to one event: ``by`` is ``uid``, ``fields`` or ``unverified`` (uid taken as given)."""

    row: CsvRow
    uid: str
    by: str
    event: dict[str, Any] | None = None


def _events_frame(events: Any) -> Any:
    import pandas as pd

    frame = events.to_pandas() if hasattr(events, "to_pandas") and not isinstance(events, pd.DataFrame) else events
    need = ("uid", "time", "principal", "operation", "source_ip")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"events table: missing column(s) {', '.join(missing)} (see seclake_ml.risk.columns)")
    return frame


def _second(ts: Any) -> int | None:
    """Seconds since the epoch of a timestamp (floored), ``None`` for a missing one."""
    import pandas as pd

    if ts is None or ts is pd.NaT or (isinstance(ts, float) and math.isnan(ts)):
        return None
    t = pd.Timestamp(ts)
    if t is pd.NaT:
        return None
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value // 1_000_000_000)


def _key_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def match_rows(rows: Sequence[CsvRow], events: Any) -> tuple[list[Match], list[Reject]]:
    """Match label rows to events: by uid, else by (time to the second, principal, operation, source IP).

    :param rows: parsed rows (:func:`parse_label_csv`).
    :param events: a pyarrow Table or pandas DataFrame with the event columns of
        :mod:`seclake_ml.risk.columns` (at least ``uid``, ``time``, ``principal``, ``operation``,
        ``source_ip``).
    :returns: the matches and the rejects (``unknown uid``, ``no matching event``, ``ambiguous match``,
        ``missing match fields``). Several events with the same key are never guessed between.
    """
    frame = _events_frame(events)
    by_uid: dict[str, dict[str, Any]] = {}
    by_key: dict[tuple[int | None, str, str, str], set[str]] = {}
    import pandas as pd

    times = pd.to_datetime(frame["time"], utc=True)
    seconds = [None if pd.isna(t) else int(t.value // 1_000_000_000) for t in times]
    cols = [frame[c].tolist() for c in ("uid", "principal", "operation", "source_ip")]
    for uid, ts, sec, principal, operation, ip in zip(cols[0], times.tolist(), seconds, *cols[1:]):
        if uid is None or (isinstance(uid, float) and math.isnan(uid)):
            continue
        uid = str(uid)
        by_uid.setdefault(uid, {"time": ts, "principal": principal, "operation": operation, "source_ip": ip})
        key = (sec, _key_text(principal), _key_text(operation), _key_text(ip))
        by_key.setdefault(key, set()).add(uid)
    matched: list[Match] = []
    rejects: list[Reject] = []
    for row in rows:
        if row.uid is not None:
            ev = by_uid.get(row.uid)
            if ev is None:
                rejects.append(Reject(row.line, "unknown uid", f"{row.uid[:80]} is not among the window's events"))
            else:
                matched.append(Match(row, row.uid, "uid", ev))
            continue
        if row.event_time is None or not row.principal or not row.operation:
            rejects.append(Reject(row.line, "missing match fields",
                                  "no eventID, and eventTime, userIdentityArn or eventName is empty"))
            continue
        key = (int(row.event_time.timestamp() // 1), row.principal, row.operation, row.source_ip or "")
        found = by_key.get(key, set())
        if not found:
            rejects.append(Reject(row.line, "no matching event",
                                  f"{utc_iso(row.event_time)[:19]}Z {row.principal[:60]} {row.operation[:40]}"))
        elif len(found) > 1:
            rejects.append(Reject(row.line, "ambiguous match", f"{len(found)} events share its time, principal, "
                                  f"operation and source IP: {', '.join(sorted(found)[:3])[:120]}"))
        else:
            uid = next(iter(found))
            matched.append(Match(row, uid, "fields", by_uid[uid]))
    return matched, rejects


def accept_unverified(rows: Sequence[CsvRow]) -> tuple[list[Match], list[Reject]]:
    """Rows taken by their uid without checking the lake; rows without uid are rejected (``no event window``)."""
    matched, rejects = [], []
    for row in rows:
        if row.uid is not None:
            matched.append(Match(row, row.uid, "unverified"))
        else:
            rejects.append(Reject(row.line, "no event window",
                                  "no eventID: matching on time/principal/operation/IP needs --start and --end"))
    return matched, rejects


# ----------------------------------------------------------------------------- the import
@dataclass
class ImportResult:
    """What :func:`import_labels` did; ``rejects`` are in line order."""

    name: str
    rows_read: int
    matched_by_uid: int = 0
    matched_by_fields: int = 0
    unverified: int = 0
    stored: int = 0
    unchanged: int = 0
    uri: str | None = None
    rejects: list[Reject] = field(default_factory=list)
    verified: bool = True

    @property
    def matched(self) -> int:
        return self.matched_by_uid + self.matched_by_fields + self.unverified

    def rejects_by_reason(self) -> dict[str, list[Reject]]:
        out: dict[str, list[Reject]] = {}
        for r in sorted(self.rejects, key=lambda r: r.line):
            out.setdefault(r.reason, []).append(r)
        return out


def import_labels(
    store: LabelStore, data: bytes, *, name: str = "CSV", events: Any = None, analyst: str | None = None,
    source: str = "import", now: datetime | None = None,
) -> ImportResult:
    """Parse, match and store a label CSV; bad rows are skipped and reported, never raised.

    :param events: the window's event table (:func:`match_rows`); ``None`` takes uids unverified.
    :param analyst: for rows whose ``analyst`` cell is empty (or a file without that column).
    :param source: ``import`` or ``synthetic``.
    :raises ValueError: for whole-file problems (:func:`parse_label_csv`) or a bad ``analyst``/``source``.
    """
    if source not in ("import", "synthetic"):
        raise ValueError(f"source {source!r}: an import is 'import' or 'synthetic'")
    default_analyst = _clean_name("analyst", analyst, MAX_ANALYST_CHARS) if analyst else None
    parsed = parse_label_csv(data, name)
    if not parsed.has_analyst and default_analyst is None:
        raise ValueError(f"{name}: no analyst column; give the analyst (--analyst)")
    result = ImportResult(name=name, rows_read=parsed.rows_read, rejects=list(parsed.rejects), verified=events is not None)
    if events is not None:
        matches, rejects = match_rows(parsed.rows, events)
    else:
        matches, rejects = accept_unverified(parsed.rows)
    result.rejects += rejects
    first: dict[str, Match] = {}
    records: list[LabelRecord] = []
    when = now or datetime.now(timezone.utc)
    for m in sorted(matches, key=lambda m: m.row.line):
        row = m.row
        if m.uid in first:
            earlier = first[m.uid].row
            same = {k: v for k, v in row.values.items()} == earlier.values
            result.rejects.append(Reject(row.line, "duplicate", ("same row as" if same else "uid already labelled on")
                                         + f" line {earlier.line}"))
            continue
        who = row.analyst or default_analyst
        if who is None:
            result.rejects.append(Reject(row.line, "missing analyst", "empty analyst cell and no --analyst"))
            continue
        ev = m.event or {}
        ev_time = ev.get("time")
        try:
            rec = new_label(
                m.uid, row.score, verdict=row.verdict, analyst=who, note=row.note, source=source, kind="event",
                principal=ev.get("principal") or row.principal, operation=ev.get("operation") or row.operation,
                source_ip=ev.get("source_ip") or row.source_ip,
                event_time=_event_time_text(ev_time) or row.event_time, labelled_at=when,
            )
        except ValueError as exc:  # context from the lake that does not pass (control characters)
            result.rejects.append(Reject(row.line, "bad uid" if str(exc).startswith("uid") else "malformed line",
                                         str(exc)[:160]))
            continue
        first[m.uid] = m
        records.append(rec)
        if m.by == "uid":
            result.matched_by_uid += 1
        elif m.by == "fields":
            result.matched_by_fields += 1
        else:
            result.unverified += 1
    result.rejects.sort(key=lambda r: r.line)
    added = store.add(records, now=now)
    result.stored, result.unchanged, result.uri = added.stored, added.unchanged, added.uri
    return result


def _event_time_text(ts: Any) -> str | None:
    sec = _second(ts)
    if sec is None:
        return None
    import pandas as pd

    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return utc_iso(t.to_pydatetime())


# ----------------------------------------------------------------------------- export
#: Export columns: the import's CloudTrail names first (an export imports back), then the record's own.
EXPORT_COLUMNS = (
    "eventID", "eventTime", "userIdentityArn", "eventName", "sourceIPAddress", "riskScore", "verdict", "analyst",
    "note", "targetKind", "verdictDerived", "labelledAt", "source", "labelId",
)  # fmt: skip


def neutralise_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @``, TAB or CR gets a ``'`` prefix."""
    text = "" if value is None else str(value)
    return _NEUTRALISER + text if text.startswith(_FORMULA_STARTS) else text


def export_rows(records: Iterable[LabelRecord]) -> list[list[str]]:
    """Header and one row per record, every cell neutralised (:func:`neutralise_cell`)."""
    out = [list(EXPORT_COLUMNS)]
    for r in records:
        cells = [r.target_uid, r.event_time, r.principal, r.operation, r.source_ip, r.risk_score, r.verdict,
                 r.analyst, r.note, r.target_kind, "true" if r.verdict_derived else "false", r.labelled_at,
                 r.source, r.label_id]
        out.append([neutralise_cell(c) for c in cells])
    return out
