"""Analyst allow-lists: known-good entities, networks and (entity, network) pairs whose findings are suppressed.

No Airflow here; the standard library and NumPy only. An :class:`AllowEntry` says "a flagged pair that
matches this is known and accepted"; scoring (:func:`seclake_ml.scoring.engine.score_objects`) still
writes its finding, with OCSF ``status_id`` 3 (Suppressed) and the entry, and does not publish it.

Entries (:func:`new_entry` validates; every refusal is a ``ValueError`` of one line naming the field)
-------------------------------------------------------------------------------------------------------
``kind``        ``entity`` (the entity with any address), ``cidr`` (any entity from the network) or
                ``pair`` (the entity from the network; a single address is a ``/32`` or ``/128``)
``entity``      exactly as scored (compared verbatim, never stripped): 1 to :data:`MAX_ENTITY_CHARS`
                characters, no control, format or line-separator characters
``cidr``        IPv4 or IPv6 network text, normalised by :func:`normalise_cidr`: a bare address is its
                ``/32`` or ``/128``, IPv6 is written compressed in lower case, an IPv4-mapped IPv6
                network (``::ffff:10.0.0.0/104``) becomes its IPv4 network. **Host bits are refused**
                (``10.0.0.1/24``): the analyst meant either ``10.0.0.0/24`` or ``10.0.0.1/32``, and
                the message offers both. Prefixes shorter than :data:`MIN_PREFIX` (``/8`` IPv4,
                ``/16`` IPv6) are refused: such an entry would silence the detector, which is what
                an ``entity`` entry or a detector setting is for, never an allow-list line
``reason``      required, 1 to :data:`MAX_REASON_CHARS` characters, no control characters (tab and
                line breaks included). HTML and script text are kept verbatim: a reason is data, and
                whatever renders it escapes it for its medium
``expires_at``  optional ISO 8601 time (``Z``, an offset, or naive = UTC), stored as UTC
                ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; it must lie in the future when the entry is made and
                added. From that time on the entry never matches (:class:`Matcher` checks at match time)
``created_by``, ``created_at``
                who made the entry (1 to 128 printable characters) and when (UTC, as ``expires_at``)
``entry_id``    32 hex characters of SHA-256 over every field but ``created_at``: the same entry
                submitted twice has the same id

Store layout (:class:`AllowList`)
---------------------------------
Under ``<work_location>/feedback/allowlist/``, one JSON object per event, never rewritten:
``<UTC yyyymmddTHHMMSSffffffZ>-<add|remove>-<16 hex of the body's SHA-256>.json``. An ``add`` event
holds the entry, who added it (its ``created_by``) and when; a ``remove`` event holds the entry id,
who removed it, when and why. Keys are unique per content and microsecond, so two analysts
writing at the same time never overwrite each other's entries. Reading folds every event in
``(time, key)`` order: an entry is *in force* from its ``add`` until a later ``remove`` (and matches
until it expires). Adding an entry equal to one in force writes nothing; re-adding a removed entry
puts it back. An object that cannot be read or does not validate is skipped, logged and counted
(:attr:`AllowList.unreadable`); it never stops reading. Any store with ``put_bytes``/``get_bytes``/
``list`` will do (:class:`~seclake_ml.scoring.stores.LocalStore`, :class:`~seclake_ml.scoring.stores.S3Store`).
Event objects are never rewritten, so each process keeps the ones it has parsed: a read lists the
folder and fetches only objects it has not seen (an event file edited by hand in place is not re-read
until the process restarts).

Matching cost (:class:`Matcher`)
--------------------------------
For ``n`` rows, ``u`` of whose addresses are not plain dotted IPv4, and ``E`` entries in force:
entity entries are one dict lookup per row; IPv4 addresses are parsed vectorised
(:func:`~seclake_ml.ipinsights.ipv4.parse_ipv4`, ``O(n)``) and sorted once (``O(n log n)``); each
IPv4 ``cidr`` entry is then an inclusive ``[first, last]`` range found with two ``searchsorted`` calls
(``O(E log n)``) and applied to the slice of rows it covers (``O(rows covered)``), so the cost hardly
grows with the number of entries. The ``u`` other addresses (IPv6, IPv4-mapped IPv6) are parsed once
per distinct text with :mod:`ipaddress` and checked with one dict lookup per IPv6 prefix length in
use; ``pair`` entries cost a short Python loop over the rows whose entity has pair entries. A
250,000-row chunk against a few hundred IPv4 entries takes about 0.2 s on one core, most of it the
address parsing (``tests/feedback/test_allowlist.py`` holds a generous budget). Scoring matches only
the flagged pairs of an object, so its cost there is far smaller.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from seclake_ml.display import is_unsafe_char
from seclake_ml.interval import parse_utc
from seclake_ml.ipinsights.ipv4 import parse_ipv4
from seclake_ml.interval import utc_iso as _utc_iso
from seclake_ml.scoring.stores import ObjectStore

log = logging.getLogger(__name__)

__all__ = [
    "ALLOWLIST_PREFIX", "KINDS", "MAX_REASON_CHARS", "MAX_ENTITY_CHARS", "MAX_NAME_CHARS", "MIN_PREFIX",
    "AllowEntry", "AllowEvent", "AddResult", "RemoveResult", "AllowList", "Matcher", "ObjectStore",
    "new_entry", "normalise_cidr", "read_matcher",
]  # fmt: skip

ALLOWLIST_PREFIX = "feedback/allowlist"
KINDS = ("entity", "cidr", "pair")
MAX_REASON_CHARS = 500
MAX_ENTITY_CHARS = 2048
MAX_NAME_CHARS = 128
#: Shortest prefix length an entry may name, per IP version.
MIN_PREFIX = {4: 8, 6: 16}
MAX_EVENT_BYTES = 64 * 1024  # an event is well under 4 KiB; anything larger is not one of ours
_CIDR_MAX_CHARS = 100
_ID_RE = re.compile(r"[0-9a-f]{32}")
_NONE = np.iinfo(np.int64).max  # "no entry matched" while taking minima


# ----------------------------------------------------------------------------- validation helpers
# Times are read by :func:`seclake_ml.interval.parse_utc` (ISO 8601 with ``Z``, an offset, or naive =
# UTC; its errors start with the field name) and written by :func:`seclake_ml.interval.utc_iso`.
def _now(now: datetime | None) -> datetime:
    return datetime.now(timezone.utc) if now is None else parse_utc(now, "now")


def _checked(field: str, text: Any, limit: int, *, required: str | None = None) -> str:
    """``text`` when it is a non-blank string of at most ``limit`` characters without control, format or
    line-separator characters; else a one-line ValueError starting with ``field``.

    :param required: what the message says of a missing or blank value (default: the allowed length).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: {required or f'required (1-{limit} characters)'}")
    if len(text) > limit:
        raise ValueError(f"{field}: {len(text)} characters; at most {limit} are allowed")
    bad = next((ch for ch in text if is_unsafe_char(ch)), None)
    if bad is not None:
        raise ValueError(f"{field} {text[:60]!r}: holds the control or format character U+{ord(bad):04X}; remove it")
    return text


def _clean_reason(value: Any, field: str = "reason") -> str:
    return _checked(field, value.strip() if isinstance(value, str) else value, MAX_REASON_CHARS,
                    required=f"required; say why this is known and accepted (1-{MAX_REASON_CHARS} characters)")


def _clean_name(value: Any, field: str) -> str:
    return _checked(field, value.strip() if isinstance(value, str) else value, MAX_NAME_CHARS,
                    required=f"required (who, 1-{MAX_NAME_CHARS} printable characters)")


def _clean_entity(value: Any) -> str:
    # compared verbatim at match time: never stripped
    return _checked("entity", value, MAX_ENTITY_CHARS,
                    required=f"expected the entity exactly as scored (1-{MAX_ENTITY_CHARS} characters)")


def normalise_cidr(value: Any) -> str:
    """The normalised text of an IPv4 or IPv6 network (see the module docstring); ValueError naming ``cidr``.

    :param value: ``10.0.0.0/8``, ``2001:db8::/32``, or a bare address (its ``/32`` or ``/128``).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"cidr: expected network text such as 10.0.0.0/8 or 2001:db8::/32, "
                         f"got {type(value).__name__} {str(value)[:40]!r}")
    text = value.strip()
    if len(text) > _CIDR_MAX_CHARS or "%" in text or any(ch.isspace() or is_unsafe_char(ch) for ch in text):
        raise ValueError(f"cidr {text[:60]!r}: not an IPv4 or IPv6 network (address/prefix)")
    try:
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" not in str(exc):
            raise ValueError(f"cidr {text[:60]!r}: not an IPv4 or IPv6 network (address/prefix, prefix 0-32 "
                             f"for IPv4, 0-128 for IPv6): {exc}") from None
        loose = ipaddress.ip_network(text, strict=False)
        address = text.split("/", 1)[0]
        raise ValueError(f"cidr {text[:60]!r}: has host bits set; write the network {loose} or the single "
                         f"address {address}/{loose.max_prefixlen}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
            and net.prefixlen >= 96:
        net = ipaddress.IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))
    if net.prefixlen < MIN_PREFIX[net.version]:
        raise ValueError(f"cidr {text[:60]!r}: prefix /{net.prefixlen} is broader than /{MIN_PREFIX[net.version]} "
                         f"(IPv{net.version}); allow-list an entity, or narrower networks")
    return str(net)


# ----------------------------------------------------------------------------- the entry
@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry (fields in the module docstring). Make new ones with :func:`new_entry`."""

    entry_id: str
    kind: str
    entity: str | None
    cidr: str | None
    reason: str
    expires_at: str | None
    created_by: str
    created_at: str

    def content_id(self) -> str:
        """SHA-256 (32 hex) of every field but ``created_at`` and ``entry_id``: equal for the same entry."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("entry_id", "created_at")}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:32]

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the entry has expired at ``now`` (default: the current time)."""
        return self.expires_at is not None and parse_utc(self.expires_at, "expires_at") <= _now(now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AllowEntry:
        """A stored entry, validated like a new one (its expiry must follow its creation, and its
        ``entry_id`` must be its content's); ValueError naming the field."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"entry: expected a JSON object, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(doc) - known)
        if unknown:
            raise ValueError(f"entry: unknown field(s) {', '.join(unknown)[:200]}")
        missing = sorted(k for k in ("entry_id", "kind", "reason", "created_by", "created_at") if k not in doc)
        if missing:
            raise ValueError(f"{missing[0]}: missing")
        created = parse_utc(doc["created_at"], "created_at")
        entry = _build(doc["kind"], entity=doc.get("entity"), cidr=doc.get("cidr"), reason=doc["reason"],
                       expires_at=doc.get("expires_at"), created_by=doc["created_by"], created=created,
                       not_before=created)
        if doc["entry_id"] != entry.entry_id:
            raise ValueError(f"entry_id {str(doc['entry_id'])[:40]!r}: does not match the entry's content "
                             f"({entry.entry_id}); the object was altered")
        return entry


def _build(kind: Any, *, entity: Any, cidr: Any, reason: Any, expires_at: Any, created_by: Any,
           created: datetime, not_before: datetime) -> AllowEntry:
    kind_text = kind.strip().lower() if isinstance(kind, str) else ""
    if kind_text not in KINDS:
        raise ValueError(f"kind {str(kind)[:40]!r}: allowed {' | '.join(KINDS)}")
    needs_entity, needs_cidr = kind_text in ("entity", "pair"), kind_text in ("cidr", "pair")
    if needs_entity and entity is None:
        raise ValueError(f"entity: required for kind {kind_text!r}")
    if needs_cidr and cidr is None:
        raise ValueError(f"cidr: required for kind {kind_text!r}")
    if not needs_entity and entity is not None:
        raise ValueError(f"entity: not used by kind {kind_text!r} (use kind 'pair' for an entity from a network)")
    if not needs_cidr and cidr is not None:
        raise ValueError(f"cidr: not used by kind {kind_text!r} (use kind 'pair' for an entity from a network)")
    expiry = None
    if expires_at is not None and expires_at != "":
        when = parse_utc(expires_at, "expires_at")
        if when <= not_before:
            raise ValueError(f"expires_at {_utc_iso(when)}: not in the future (now {_utc_iso(not_before)}); "
                             "give a later time, or none for an entry that does not expire")
        expiry = _utc_iso(when)
    entry = AllowEntry(
        entry_id="", kind=kind_text, entity=_clean_entity(entity) if needs_entity else None,
        cidr=normalise_cidr(cidr) if needs_cidr else None, reason=_clean_reason(reason), expires_at=expiry,
        created_by=_clean_name(created_by, "created_by"), created_at=_utc_iso(created),
    )
    return replace(entry, entry_id=entry.content_id())


def new_entry(kind: str, *, entity: str | None = None, cidr: str | None = None, reason: str,
              expires_at: str | datetime | None = None, created_by: str,
              now: datetime | None = None) -> AllowEntry:
    """A validated :class:`AllowEntry`; ValueError with one line naming the bad field.

    :param kind: ``entity`` | ``cidr`` | ``pair`` (which of ``entity``/``cidr`` it needs and refuses).
    :param entity: the entity exactly as scored (``entity`` and ``pair`` kinds).
    :param cidr: the network (``cidr`` and ``pair`` kinds), see :func:`normalise_cidr`.
    :param reason: why the analyst accepts it (required, at most :data:`MAX_REASON_CHARS` characters).
    :param expires_at: ISO 8601 time or datetime after ``now``; ``None``: never expires.
    :param created_by: who makes the entry.
    :param now: the current time (tests); ``None``: the clock.
    """
    when = _now(now)
    return _build(kind, entity=entity, cidr=cidr, reason=reason, expires_at=expires_at, created_by=created_by,
                  created=when, not_before=when)


# ----------------------------------------------------------------------------- events and results
@dataclass(frozen=True)
class AllowEvent:
    """One stored event: an entry ``add`` (``entry`` set) or a ``remove`` (``reason`` set), by whom, when.

    :param key: the store key of the event's object.
    """

    action: str
    entry_id: str
    by: str
    at: str
    key: str
    entry: AllowEntry | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AddResult:
    """What :meth:`AllowList.add` did: ``stored`` (``False``: an equal entry was in force), the id, the object."""

    stored: bool
    entry_id: str
    uri: str | None


@dataclass(frozen=True)
class RemoveResult:
    """What :meth:`AllowList.remove` did: ``removed`` (``False``: the entry was no longer in force), the object."""

    removed: bool
    entry_id: str
    uri: str | None


def _event_from(doc: Any, key: str) -> AllowEvent:
    if not isinstance(doc, Mapping):
        raise ValueError(f"event: expected a JSON object, got {type(doc).__name__}")
    action = doc.get("action")
    if action == "add":
        entry = AllowEntry.from_dict(doc.get("entry"))
        by = _clean_name(doc.get("by"), "by")
        if by != entry.created_by:
            raise ValueError(f"by {by[:60]!r}: differs from the entry's created_by {entry.created_by[:60]!r}")
        at = parse_utc(doc.get("at"), "at")
        if at < parse_utc(entry.created_at, "created_at"):
            raise ValueError(f"at {_utc_iso(at)}: before the entry's created_at {entry.created_at}")
        return AllowEvent("add", entry.entry_id, by, _utc_iso(at), key, entry=entry)
    if action == "remove":
        entry_id = doc.get("entry_id")
        if not isinstance(entry_id, str) or not _ID_RE.fullmatch(entry_id):
            raise ValueError(f"entry_id {str(entry_id)[:40]!r}: expected 32 hex characters")
        at = _utc_iso(parse_utc(doc.get("at"), "at"))
        return AllowEvent("remove", entry_id, _clean_name(doc.get("by"), "by"), at, key,
                          reason=_clean_reason(doc.get("reason")))
    raise ValueError(f"action {str(action)[:40]!r}: allowed add | remove")


# ----------------------------------------------------------------------------- the store
# Event objects are written once under unique keys and never rewritten, so a parsed event can be kept
# for the life of the process: each read lists the folder and fetches only the keys it has not seen.
_EVENT_CACHE: dict[tuple[str, str], AllowEvent] = {}
_EVENT_CACHE_MAX = 200_000


def _store_id(store: Any) -> str:
    base = getattr(store, "base_uri", None)
    return str(base()) if callable(base) else f"{type(store).__name__}:{id(store)}"


class AllowList:
    """Append-only allow-list events under ``<store>/<prefix>/`` (layout in the module docstring).

    :param store: an :class:`ObjectStore` rooted at the work location.
    :param prefix: the folder of event objects within it.
    """

    def __init__(self, store: ObjectStore, prefix: str = ALLOWLIST_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.unreadable = 0  # event objects skipped by the last read

    # -- reading
    def history(self) -> list[AllowEvent]:
        """Every readable event, oldest first (``(at, key)`` order): the audit trail."""
        events: list[AllowEvent] = []
        unreadable = 0
        sid = _store_id(self.store)
        for key in self.store.list(self.prefix):
            if not key.endswith(".json"):
                continue
            cached = _EVENT_CACHE.get((sid, key))
            if cached is not None:
                events.append(cached)
                continue
            data = self.store.get_bytes(key)
            if data is None:  # removed since listed
                continue
            try:
                if len(data) > MAX_EVENT_BYTES:
                    raise ValueError(f"{len(data)} bytes; an event has at most {MAX_EVENT_BYTES}")
                event = _event_from(json.loads(data.decode("utf-8")), key)
                events.append(event)
                if len(_EVENT_CACHE) < _EVENT_CACHE_MAX:
                    _EVENT_CACHE[(sid, key)] = event
            except (ValueError, TypeError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
                unreadable += 1
                log.warning("allow-list object %s unreadable, skipped: %s", key[-200:], str(exc)[:200])
        events.sort(key=lambda e: (e.at, e.key))
        self.unreadable = unreadable
        if unreadable:
            log.error("%d allow-list objects under %s were unreadable and skipped", unreadable, self.prefix)
        return events

    @staticmethod
    def _fold(events: Iterable[AllowEvent]) -> tuple[dict[str, AllowEntry], set[str]]:
        """``(entries in force by id, in the order added; ids ever added)``."""
        state: dict[str, AllowEntry] = {}
        ever: set[str] = set()
        for ev in events:
            if ev.action == "add" and ev.entry is not None:
                state.pop(ev.entry_id, None)  # a re-added entry counts from its latest add
                state[ev.entry_id] = ev.entry
                ever.add(ev.entry_id)
            elif ev.action == "remove":
                state.pop(ev.entry_id, None)
        return state, ever

    def entries(self, now: datetime | None = None, include_expired: bool = False) -> list[AllowEntry]:
        """The entries in force (added, not removed), in the order added; expired ones only when asked.

        :param now: the time expiry is judged at (default: the clock).
        """
        state, _ = self._fold(self.history())
        if include_expired:
            return list(state.values())
        at = _now(now)
        return [e for e in state.values() if not e.expired(at)]

    def matcher(self, now: datetime | None = None) -> Matcher:
        """A :class:`Matcher` over the entries in force (``now`` fixes the time expiry is judged at)."""
        return Matcher(self.entries(now), now=now)

    # -- writing
    def _put(self, doc: dict[str, Any], at: str) -> str:
        body = (json.dumps(doc, sort_keys=True, ensure_ascii=True) + "\n").encode()
        stamp = parse_utc(at, "at").strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{self.prefix}/{stamp}-{doc['action']}-{hashlib.sha256(body).hexdigest()[:16]}.json"
        return self.store.put_bytes(key, body)

    def add(self, entry: AllowEntry, *, now: datetime | None = None) -> AddResult:
        """Append an ``add`` event for ``entry``; nothing is written when an equal entry is in force.

        :raises ValueError: the entry has expired (``expires_at`` not after ``now``).
        """
        if not isinstance(entry, AllowEntry):
            raise TypeError(f"AllowList.add takes an AllowEntry, got {type(entry).__name__}")
        entry = AllowEntry.from_dict(entry.to_dict())  # a hand-made entry is checked like a stored one
        at = _now(now)
        if entry.expired(at):
            raise ValueError(f"expires_at {entry.expires_at}: not in the future (now {_utc_iso(at)}); "
                             "make a new entry with a later expiry")
        state, _ = self._fold(self.history())
        if entry.entry_id in state:
            return AddResult(False, entry.entry_id, None)
        stamp = _utc_iso(at)  # the add's own time: a re-added entry must come after its removal
        uri = self._put({"v": 1, "action": "add", "by": entry.created_by, "at": stamp, "entry": entry.to_dict()},
                        stamp)
        log.info("allow-list entry %s (%s) added by %s", entry.entry_id, entry.kind, entry.created_by)
        return AddResult(True, entry.entry_id, uri)

    def remove(self, entry_id: str, *, by: str, reason: str, now: datetime | None = None) -> RemoveResult:
        """Append a ``remove`` event for ``entry_id`` (who and why are kept); nothing is written when the
        entry is no longer in force.

        :raises ValueError: no entry with that id was ever added, or ``by``/``reason`` are invalid.
        """
        who, why = _clean_name(by, "by"), _clean_reason(reason)
        state, ever = self._fold(self.history())
        if entry_id not in ever:
            raise ValueError(f"entry_id {str(entry_id)[:40]!r}: no such allow-list entry")
        if entry_id not in state:
            return RemoveResult(False, entry_id, None)
        at = _utc_iso(_now(now))
        uri = self._put({"v": 1, "action": "remove", "entry_id": entry_id, "by": who, "at": at, "reason": why}, at)
        log.info("allow-list entry %s removed by %s", entry_id, who)
        return RemoveResult(True, entry_id, uri)


# ----------------------------------------------------------------------------- matching
class Matcher:
    """The first entry (in the given order) that matches each ``(entity, ip)`` row; cost in the module docstring.

    :param entries: the entries in force (:meth:`AllowList.entries`).
    :param now: the time expiry is judged at; ``None``: the clock at each :meth:`match` (an entry
        stops matching the moment it expires, in a long batch too).
    """

    def __init__(self, entries: Iterable[AllowEntry], now: datetime | None = None) -> None:
        self.entries: tuple[AllowEntry, ...] = tuple(entries)
        for e in self.entries:
            if not isinstance(e, AllowEntry):
                raise TypeError(f"Matcher takes AllowEntry objects, got {type(e).__name__}")
        self.now = None if now is None else _now(now)
        self._expiry = [None if e.expires_at is None else parse_utc(e.expires_at, "expires_at")
                        for e in self.entries]
        self._live: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def live(self, now: datetime | None = None) -> list[AllowEntry]:
        """The entries not expired at ``now`` (default: the matcher's time, else the clock)."""
        return [self.entries[i] for i in self._live_ids(now)]

    def _live_ids(self, now: datetime | None = None) -> tuple[int, ...]:
        at = _now(now if now is not None else self.now)
        return tuple(i for i, x in enumerate(self._expiry) if x is None or x > at)

    def _build(self, live: tuple[int, ...]) -> None:
        self._live = live
        self._entity: dict[str, int] = {}
        v4: dict[int, dict[int, int]] = {}
        self._v6: dict[int, dict[int, int]] = {}
        self._pairs: dict[str, list[tuple[int, int, int, int]]] = {}  # entity -> (idx, version, network, mask)
        for i in live:
            e = self.entries[i]
            if e.kind == "entity":
                self._entity.setdefault(e.entity, i)  # type: ignore[arg-type]
                continue
            net = ipaddress.ip_network(e.cidr)  # type: ignore[arg-type]
            if e.kind == "cidr":
                table = v4 if net.version == 4 else self._v6
                table.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), i)
            else:
                self._pairs.setdefault(e.entity, []).append(  # type: ignore[arg-type]
                    (i, net.version, int(net.network_address), int(net.netmask)))
        # IPv4 networks as inclusive [first, last] ranges, one per distinct network (its first entry)
        ranges = [(first, first + (1 << (32 - plen)) - 1, i) for plen, nets in v4.items() for first, i in nets.items()]
        self._v4 = np.asarray(sorted(ranges, key=lambda r: r[2]), np.int64).reshape(-1, 3)
        self._v6_masks = [(plen, ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1), nets)
                          for plen, nets in sorted(self._v6.items())]

    def match_indices(self, entities: Sequence[str], ips: Sequence[str]) -> np.ndarray:
        """Per row, the index in :attr:`entries` of the first matching live entry, ``-1`` for none."""
        n = len(entities)
        if len(ips) != n:
            raise ValueError(f"ips: {len(ips)} values for {n} entities; one address per row is needed")
        live = self._live_ids()
        if live != self._live:
            self._build(live)
        if n == 0 or not live:
            return np.full(n, -1, np.int64)
        ent = self._entity
        best = np.fromiter((ent.get(e, _NONE) for e in entities), np.int64, n) if ent else np.full(n, _NONE, np.int64)
        if len(self._v4) or self._v6 or self._pairs:
            addr4, ok4, addr6 = self._addresses(ips)
            rows4 = np.flatnonzero(ok4)
            if len(self._v4) and rows4.size:
                # Addresses sorted once; each network is then the slice between its bounds.
                order = np.argsort(addr4[rows4], kind="stable")
                rows = rows4[order]
                ranked = addr4[rows].astype(np.int64)
                lo = np.searchsorted(ranked, self._v4[:, 0], "left")
                hi = np.searchsorted(ranked, self._v4[:, 1], "right")
                sbest = best[rows]
                for start, stop, i in zip(lo.tolist(), hi.tolist(), self._v4[:, 2].tolist()):
                    if stop > start:
                        seg = sbest[start:stop]
                        np.minimum(seg, i, out=seg)
                best[rows] = sbest
            for row, value in addr6.items():
                for _plen, mask, nets in self._v6_masks:
                    i = nets.get(value & mask)
                    if i is not None and i < best[row]:
                        best[row] = i
            if self._pairs:
                for row, e in enumerate(entities):
                    cands = self._pairs.get(e)
                    if not cands:
                        continue
                    v4 = int(addr4[row]) if ok4[row] else None
                    v6 = addr6.get(row)
                    for i, version, network, mask in cands:
                        value = v4 if version == 4 else v6
                        if value is not None and value & mask == network and i < best[row]:
                            best[row] = i
        return np.where(best == _NONE, -1, best)

    @staticmethod
    def _addresses(ips: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        """``(uint32 IPv4 values, IPv4 mask, row -> IPv6 int)``; IPv4-mapped IPv6 counts as IPv4 and
        anything unparseable is in neither (it can match entity entries only)."""
        arr = np.asarray(ips, dtype=object) if not isinstance(ips, np.ndarray) else ips
        addr4, ok4 = parse_ipv4(arr)
        addr6: dict[int, int] = {}
        parsed: dict[Any, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
        for row in np.flatnonzero(~ok4):
            text = arr[row]
            if not isinstance(text, str) or ":" not in text:
                continue
            if text not in parsed:
                try:
                    parsed[text] = ipaddress.ip_address(text)
                except ValueError:
                    parsed[text] = None
            ip = parsed[text]
            if ip is None:
                continue
            mapped = getattr(ip, "ipv4_mapped", None)
            if mapped is not None:
                addr4[row], ok4[row] = int(mapped), True
            else:
                addr6[int(row)] = int(ip)
        return addr4, ok4, addr6

    def match(self, entities: Sequence[str], ips: Sequence[str]) -> list[AllowEntry | None]:
        """Per ``(entity, ip)`` row, the first live entry that matches it, or ``None``.

        :param entities: entities exactly as scored.
        :param ips: their addresses (IPv4 dotted, IPv6; anything unparseable matches entity entries only).
        """
        return [self.entries[i] if i >= 0 else None for i in self.match_indices(entities, ips).tolist()]


# ----------------------------------------------------------------------------- reading for scoring
def read_matcher(store: ObjectStore) -> tuple[Matcher | None, dict[str, Any]]:
    """``(Matcher or None, summary)`` of the analysts' allow-list in the work store ``store``.

    An allow-list that cannot be read suppresses nothing: ``(None, {"entries": 0, "unreadable": …,
    "error": "<type>: <message>"})``, and the error is logged (a broken allow-list must never hide a
    detection nor stop scoring). Otherwise ``(Matcher, {"entries": n, "unreadable": k})``, where ``k``
    event objects were skipped as unreadable. Expired entries stop matching at match time, so the
    matcher may be kept for a while (the Lambda caches it; scoring builds one per batch).
    """
    allow = AllowList(store)
    try:
        entries = allow.entries()
    except Exception as exc:  # noqa: BLE001 - see above: scoring goes on without suppression
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.error("ALERT analyst allow-list under %s cannot be read (%s)", allow.prefix, reason)  # the caller says what it does instead
        return None, {"entries": 0, "unreadable": allow.unreadable, "error": reason}
    if entries:
        log.info("analyst allow-list: %d entries in force", len(entries))
    return Matcher(entries), {"entries": len(entries), "unreadable": allow.unreadable}
