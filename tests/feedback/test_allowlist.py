"""The analysts' allow-list: entry validation, the append-only store, and matching (no Airflow, no AWS)."""

from __future__ import annotations

import ipaddress
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.feedback.allowlist import (
    MAX_ENTITY_CHARS,
    MAX_REASON_CHARS,
    AllowEntry,
    AllowList,
    Matcher,
    new_entry,
    normalise_cidr,
)
from seclake_ml.scoring.stores import LocalStore

NOW = datetime(2024, 3, 8, 12, 0, tzinfo=timezone.utc)
LATER = "2024-04-01T00:00:00Z"


def entry(kind: str = "cidr", **kw) -> AllowEntry:
    defaults = {"entity": {"entity": "i-0abc"}, "cidr": {"cidr": "10.1.0.0/16"},
                "pair": {"entity": "i-0abc", "cidr": "203.0.113.7"}}[kind]
    return new_entry(kind, **{"reason": "known scanner", "created_by": "ana", "now": NOW, **defaults, **kw})


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kind, kw, field", [
    ("cidr", {"cidr": "10.0.0.0/33"}, "cidr"),
    ("cidr", {"cidr": "abc"}, "cidr"),
    ("cidr", {"cidr": "10.0.0.1/24"}, "cidr"),  # host bits: refused, both readings offered
    ("cidr", {"cidr": "256.1.1.1/32"}, "cidr"),
    ("cidr", {"cidr": "010.1.1.0/24"}, "cidr"),
    ("cidr", {"cidr": "2001:db8::/129"}, "cidr"),
    ("cidr", {"cidr": "fe80::1%eth0"}, "cidr"),
    ("cidr", {"cidr": "0.0.0.0/0"}, "cidr"),  # would silence the detector
    ("cidr", {"cidr": "::/8"}, "cidr"),
    ("cidr", {"cidr": None}, "cidr"),
    ("pair", {"cidr": None}, "cidr"),
    ("pair", {"entity": None}, "entity"),
    ("entity", {"entity": None}, "entity"),
    ("entity", {"cidr": "10.0.0.0/8"}, "cidr"),
    ("cidr", {"entity": "i-1"}, "entity"),
    ("entity", {"entity": "x" * (MAX_ENTITY_CHARS + 1)}, "entity"),
    ("entity", {"entity": "i-1\x1b[31m"}, "entity"),
    ("entity", {"entity": "   "}, "entity"),
    ("cidr", {"reason": "x" * (MAX_REASON_CHARS + 1)}, "reason"),
    ("cidr", {"reason": ""}, "reason"),
    ("cidr", {"reason": "line one\nline two"}, "reason"),
    ("cidr", {"reason": "bidi \u202e trick"}, "reason"),
    ("cidr", {"reason": "nul \x00"}, "reason"),
    ("cidr", {"expires_at": "2024-03-08T11:59:59Z"}, "expires_at"),  # past
    ("cidr", {"expires_at": NOW}, "expires_at"),  # not after now
    ("cidr", {"expires_at": "next tuesday"}, "expires_at"),
    ("cidr", {"created_by": ""}, "created_by"),
    ("cidr", {"created_by": "a\tb"}, "created_by"),
    ("nope", {}, "kind"),
])
def test_invalid_entries_are_refused_with_one_line_naming_the_field(kind: str, kw: dict, field: str) -> None:
    base = {"reason": "known", "created_by": "ana", "now": NOW}
    if kind in ("entity", "pair"):
        base["entity"] = "i-0abc"
    if kind in ("cidr", "pair"):
        base["cidr"] = "10.1.0.0/16"
    with pytest.raises(ValueError) as err:
        new_entry(kind, **{**base, **kw})
    message = str(err.value)
    assert message.startswith(field) and "\n" not in message, message


def test_host_bits_message_offers_the_network_and_the_address() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/24 or the single address 10\.0\.0\.1/32"):
        normalise_cidr("10.0.0.1/24")


@pytest.mark.parametrize("text, normal", [
    ("10.0.0.0/8", "10.0.0.0/8"),
    (" 192.0.2.7 ", "192.0.2.7/32"),
    ("10.0.0.0/255.255.0.0", "10.0.0.0/16"),
    ("2001:DB8:0:0::/32", "2001:db8::/32"),
    ("2001:db8::1", "2001:db8::1/128"),
    ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
])
def test_cidrs_are_normalised(text: str, normal: str) -> None:
    assert normalise_cidr(text) == normal


def test_html_and_script_are_stored_verbatim(tmp_path: Path) -> None:
    reason = '<script>alert("x")</script> & <b>ok</b>'
    e = entry(reason=reason, entity="<img src=x onerror=alert(1)>", kind="entity")
    allow = AllowList(LocalStore(tmp_path))
    allow.add(e, now=NOW)
    [back] = allow.entries(now=NOW)
    assert back.reason == reason and back.entity == "<img src=x onerror=alert(1)>"
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*.json"))
    assert json.loads(raw)["entry"]["reason"] == reason


def test_entry_round_trip_and_tampering() -> None:
    e = entry("pair", expires_at=LATER)
    assert AllowEntry.from_dict(e.to_dict()) == e
    assert e.cidr == "203.0.113.7/32" and e.expires_at == "2024-04-01T00:00:00.000000Z"
    assert e.entry_id == entry("pair", expires_at=LATER, now=NOW + timedelta(hours=1)).entry_id  # created_at not in id
    with pytest.raises(ValueError, match="^entry_id"):
        AllowEntry.from_dict({**e.to_dict(), "reason": "edited"})
    with pytest.raises(ValueError, match="^entry: unknown field"):
        AllowEntry.from_dict({**e.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="^cidr"):
        AllowEntry.from_dict({**e.to_dict(), "cidr": "10.0.0.1/24"})
    # a stored entry may have expired since; it must only expire after it was made
    assert AllowEntry.from_dict(e.to_dict()).expired(datetime(2025, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="^expires_at"):
        AllowEntry.from_dict({**e.to_dict(), "created_at": "2024-05-01T00:00:00.000000Z"})


# ------------------------------------------------------------------------------ the store
def test_duplicate_add_is_idempotent(tmp_path: Path) -> None:
    allow = AllowList(LocalStore(tmp_path))
    first = allow.add(entry(), now=NOW)
    again = allow.add(entry(now=NOW + timedelta(minutes=5)), now=NOW + timedelta(minutes=5))  # same content
    assert first.stored and first.uri and not again.stored and again.uri is None
    assert again.entry_id == first.entry_id
    assert len(list(tmp_path.rglob("*.json"))) == 1 and len(allow.entries(now=NOW)) == 1


def test_two_concurrent_writers_both_survive(tmp_path: Path) -> None:
    a, b = AllowList(LocalStore(tmp_path)), AllowList(LocalStore(tmp_path))
    ea, eb = entry(cidr="10.1.0.0/16"), entry(cidr="10.2.0.0/16", created_by="bob")
    # both read the (empty) list before either writes, and write at the same microsecond
    assert a.entries(now=NOW) == b.entries(now=NOW) == []
    a.add(ea, now=NOW)
    b.add(eb, now=NOW)
    for reader in (a, b, AllowList(LocalStore(tmp_path))):
        assert {e.entry_id for e in reader.entries(now=NOW)} == {ea.entry_id, eb.entry_id}
    assert len(list(tmp_path.rglob("*.json"))) == 2


def test_removal_is_an_audited_event_and_unknown_ids_are_refused(tmp_path: Path) -> None:
    allow = AllowList(LocalStore(tmp_path))
    e = entry()
    allow.add(e, now=NOW)
    with pytest.raises(ValueError, match="^entry_id"):
        allow.remove("0" * 32, by="bob", reason="typo")
    with pytest.raises(ValueError, match="^reason"):
        allow.remove(e.entry_id, by="bob", reason="")
    done = allow.remove(e.entry_id, by="bob", reason="scanner retired", now=NOW + timedelta(hours=1))
    assert done.removed and done.uri
    assert allow.entries(now=NOW + timedelta(hours=2)) == []
    assert not allow.remove(e.entry_id, by="bob", reason="again", now=NOW + timedelta(hours=2)).removed
    history = allow.history()
    assert [(h.action, h.by, h.entry_id) for h in history] == [("add", "ana", e.entry_id),
                                                                ("remove", "bob", e.entry_id)]
    assert history[1].reason == "scanner retired" and history[1].at.startswith("2024-03-08T13:00:00")
    # re-adding the same entry later puts it back (the add is dated when it is made, not when the entry was)
    assert allow.add(e, now=NOW + timedelta(hours=3)).stored
    assert [x.entry_id for x in allow.entries(now=NOW + timedelta(hours=4))] == [e.entry_id]


def test_expired_entries_drop_out_and_cannot_be_added(tmp_path: Path) -> None:
    allow = AllowList(LocalStore(tmp_path))
    e = entry(expires_at="2024-03-09T00:00:00Z")
    allow.add(e, now=NOW)
    assert allow.entries(now=NOW) == [e]
    after = datetime(2024, 3, 9, tzinfo=timezone.utc)
    assert allow.entries(now=after) == [] and allow.entries(now=after, include_expired=True) == [e]
    with pytest.raises(ValueError, match="^expires_at"):
        AllowList(LocalStore(tmp_path / "other")).add(e, now=after)


def test_corrupt_objects_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    allow = AllowList(store)
    good = entry()
    allow.add(good, now=NOW)
    folder = tmp_path / "feedback" / "allowlist"
    [stored] = list(folder.glob("*.json"))
    (folder / "20240308T000000000000Z-add-0000000000000000.json").write_bytes(b"{not json")
    (folder / "20240308T000000000001Z-add-0000000000000001.json").write_bytes(b"\xff\xfe binary")
    tampered = json.loads(stored.read_text())
    tampered["entry"]["cidr"] = "10.9.0.0/16"  # id no longer matches: refused
    (folder / "20240308T000000000002Z-add-0000000000000002.json").write_text(json.dumps(tampered))
    (folder / "20240308T000000000003Z-remove-0000000000000003.json").write_text(json.dumps({"action": "drop"}))
    (folder / "notes.txt").write_text("not an event")  # not a .json object: not read
    assert allow.entries(now=NOW) == [good]
    assert allow.unreadable == 4
    assert "unreadable" in caplog.text


# ------------------------------------------------------------------------------ matching
def test_matcher_kinds_order_and_unparseable_addresses() -> None:
    ent = entry("entity", entity="i-trusted")
    net = entry("cidr", cidr="10.1.0.0/16")
    pair = entry("pair", entity="i-0abc", cidr="203.0.113.0/24")
    v6 = entry("cidr", cidr="2001:db8::/32")
    v6pair = entry("pair", entity="i-6", cidr="2001:db8:1::/48")
    m = Matcher([ent, net, pair, v6, v6pair], now=NOW)
    rows = [
        ("i-trusted", "8.8.8.8", ent),
        ("i-trusted", "10.1.2.3", ent),  # first matching entry in order wins
        ("i-other", "10.1.255.255", net),
        ("i-other", "10.2.0.0", None),
        ("i-0abc", "203.0.113.200", pair),
        ("i-other", "203.0.113.200", None),  # a pair entry needs its entity
        ("i-0abc", "203.0.114.1", None),
        ("i-x", "2001:db8:ffff::1", v6),
        ("i-x", "2001:DB8::1", v6),
        ("i-6", "2001:db9:1::1", None),
        ("i-6", "2001:db8:1::5", v6),  # the cidr entry comes before the pair entry
        ("i-x", "::ffff:10.1.0.9", net),  # IPv4-mapped IPv6 is its IPv4 address
        ("i-x", "not-an-ip", None),
        ("i-trusted", "not-an-ip", ent),  # unparseable: entity entries only
        ("i-x", "", None),
        ("i-x", "010.1.0.1", None),
    ]
    got = m.match([r[0] for r in rows], [r[1] for r in rows])
    assert [g.entry_id if g else None for g in got] == [r[2].entry_id if r[2] else None for r in rows]
    only_pair = Matcher([v6pair], now=NOW)
    assert only_pair.match(["i-6", "i-6"], ["2001:db8:1::5", "2001:db8:2::5"]) == [v6pair, None]
    assert m.match([], []) == []
    with pytest.raises(ValueError, match="^ips"):
        m.match(["a"], [])


def test_expired_entries_never_match() -> None:
    soon = entry("cidr", cidr="10.1.0.0/16", expires_at="2024-03-08T13:00:00Z")
    later = entry("cidr", cidr="10.0.0.0/8", expires_at=LATER)
    assert Matcher([soon, later], now=NOW).match(["x"], ["10.1.0.1"]) == [soon]
    assert Matcher([soon, later], now=NOW + timedelta(hours=2)).match(["x"], ["10.1.0.1"]) == [later]
    assert Matcher([soon, later], now=datetime(2024, 5, 1, tzinfo=timezone.utc)).match(["x"], ["10.1.0.1"]) == [None]
    # without a fixed time the clock decides at each call: these expired long ago
    assert Matcher([soon, later]).match(["x"], ["10.1.0.1"]) == [None]


def test_matcher_agrees_with_ipaddress_and_is_fast_on_a_chunk() -> None:
    rng = np.random.default_rng(7)
    entries = []
    for i in range(300):
        plen = int(rng.integers(8, 33))
        net = ipaddress.ip_network((int(rng.integers(0, 2**32)), plen), strict=False)
        entries.append(entry("cidr", cidr=str(net)))
    entries += [entry("entity", entity=f"e{i}") for i in range(50)]
    entries += [entry("pair", entity=f"p{i}", cidr="198.51.100.0/24") for i in range(50)]
    m = Matcher(entries, now=NOW)
    n = 250_000
    ips = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 2**32, n)]
    ips[::1000] = ["198.51.100.9"] * len(ips[::1000])
    entities = [f"e{i % 400}" if i % 7 == 0 else f"p{i % 60}" for i in range(n)]
    t0 = time.perf_counter()
    got = m.match_indices(entities, ips)
    seconds = time.perf_counter() - t0
    assert seconds < 5.0, seconds  # ~0.2-0.3 s on one core; generous for shared CI machines
    nets = [ipaddress.ip_network(e.cidr) if e.cidr else None for e in entries]
    for row in range(0, n, 97):  # a brute-force check of a sample
        addr = ipaddress.ip_address(ips[row])
        want = next((i for i, e in enumerate(entries)
                     if (e.kind == "entity" and e.entity == entities[row])
                     or (e.kind == "cidr" and addr in nets[i])
                     or (e.kind == "pair" and e.entity == entities[row] and addr in nets[i])), -1)
        assert got[row] == want, (entities[row], ips[row])
    assert (got >= 0).sum() > 1000


def test_a_read_fetches_only_the_event_objects_it_has_not_seen(tmp_path: Path) -> None:
    """Event objects are immutable: later reads (a scoring batch, a workspace request, another
    AllowList on the same store) list the folder and fetch only new objects."""

    class Counting(LocalStore):
        gets = 0

        def get_bytes(self, key: str) -> bytes | None:
            Counting.gets += 1
            return super().get_bytes(key)

    writer = AllowList(LocalStore(tmp_path / "w"))
    writer.add(new_entry("entity", entity="i-1", reason="r", created_by="ana"))
    writer.add(new_entry("cidr", cidr="198.51.100.0/24", reason="r", created_by="ana"))
    reader = AllowList(Counting(tmp_path / "w"))
    assert len(reader.entries()) == 2 and Counting.gets <= 2  # (the writer's own reads may have cached some)
    seen = Counting.gets
    assert len(AllowList(Counting(tmp_path / "w")).entries()) == 2 and Counting.gets == seen  # nothing new
    writer.remove(reader.entries()[0].entry_id, by="bo", reason="gone")
    assert len(reader.entries()) == 1
    assert Counting.gets <= seen + 1  # at most the removal event is fetched (none if the writer cached it)
