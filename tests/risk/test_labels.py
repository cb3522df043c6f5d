"""The analysts' label store (seclake_ml.risk.labels) and ``risk labels add|import|export|list``.

Events for matching are small tables built here with the columns of seclake_ml.risk.columns; the
lake reader is replaced in the CLI test that passes a window. One S3 round trip runs against the
session's moto server (tests/aws/moto_server.py).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from seclake_ml.cli import main
from seclake_ml.risk.columns import EVENT_COLUMNS
from seclake_ml.risk.labels import (
    MAX_NOTE_CHARS,
    LabelRecord,
    LabelStore,
    derive_verdict,
    export_rows,
    import_labels,
    match_rows,
    neutralise_cell,
    new_label,
    parse_label_csv,
)
from seclake_ml.scoring.stores import LocalStore
from tests.aws.moto_server import aws_env, moto_server  # noqa: F401  (fixtures, found by name)

T0 = datetime(2024, 3, 4, 10, 0, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ALICE = "arn:aws:iam::111122223333:user/alice"
BOB = "arn:aws:iam::111122223333:user/bob"


def events_table(rows: list[dict]) -> pa.Table:
    """An event table with every EVENT_COLUMNS column (those not given are null)."""
    cols = {c: [r.get(c) for r in rows] for c in EVENT_COLUMNS}
    types_ = {c: pa.string() for c in EVENT_COLUMNS} | {"time": pa.timestamp("ms", tz="UTC"), "mfa": pa.bool_()}
    return pa.table({c: pa.array(cols[c], type=types_[c]) for c in EVENT_COLUMNS})


def ev(uid: str, t: datetime, principal: str = ALICE, op: str = "GetObject", ip: str | None = "198.51.100.7") -> dict:
    return {"uid": uid, "time": t, "principal": principal, "operation": op, "source_ip": ip, "kind": "api"}


@pytest.fixture
def events() -> pa.Table:
    return events_table([
        ev("e-1", T0 + timedelta(milliseconds=123)),
        ev("e-2", T0 + timedelta(seconds=5), op="DeleteBucket"),
        ev("e-3", T0 + timedelta(seconds=9, milliseconds=10), principal=BOB, ip=None),
        # two events in the same second with the same principal, operation and IP: ambiguous
        ev("e-4", T0 + timedelta(seconds=20, milliseconds=100), op="ListBuckets"),
        ev("e-5", T0 + timedelta(seconds=20, milliseconds=900), op="ListBuckets"),
    ])


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    return LabelStore(LocalStore(tmp_path / "work"))


def csv_bytes(text: str) -> bytes:
    return text.encode("utf-8")


# ----------------------------------------------------------------------------- records
def test_derived_verdict_rule():
    assert [derive_verdict(s) for s in (0, 30, 31, 69, 70, 100)] == [
        "benign", "benign", "unsure", "unsure", "malicious", "malicious"]
    rec = new_label("e-1", "85", analyst="ana", labelled_at=NOW)
    assert (rec.verdict, rec.verdict_derived, rec.risk_score) == ("malicious", True, 85)
    given = new_label("e-1", 85, verdict="Benign", analyst="ana", labelled_at=NOW)
    assert (given.verdict, given.verdict_derived) == ("benign", False)
    assert rec.labelled_at == "2026-01-02T03:04:05.000000Z"


@pytest.mark.parametrize("score, message", [
    ("101", "score out of range"), (-1, "score out of range"), ("nan", "non-numeric score"),
    ("inf", "non-numeric score"), ("abc", "non-numeric score"), ("55.5", "score not a whole number"),
    ("", "missing score"), (None, "missing score"), (True, "non-numeric score"),
])
def test_bad_scores_refused(score, message):
    with pytest.raises(ValueError, match=message):
        new_label("e-1", score, analyst="ana")


def test_whole_float_score_accepted():
    assert new_label("e-1", "55.0", analyst="ana").risk_score == 55


@pytest.mark.parametrize("kwargs, message", [
    ({"verdict": "evil"}, "verdict 'evil'"),
    ({"kind": "host"}, "kind 'host'"),
    ({"source": "email"}, "source 'email'"),
    ({"analyst": ""}, "analyst: empty"),
    ({"analyst": "a\x1bb"}, "analyst .* U\\+001B"),
    ({"note": "x" * (MAX_NOTE_CHARS + 1)}, "note: 2001 characters"),
    ({"note": "look \u202eright"}, "note: .*U\\+202E"),
    ({"note": "bell\x07"}, "note: .*U\\+0007"),
])
def test_bad_fields_refused_with_named_field(kwargs, message):
    args = {"analyst": "ana"} | kwargs
    with pytest.raises(ValueError, match=message):
        new_label("e-1", 50, **args)


def test_bad_uid_refused():
    with pytest.raises(ValueError, match="uid"):
        new_label("e 1", 50, analyst="ana")
    with pytest.raises(ValueError, match="uid: empty"):
        new_label("  ", 50, analyst="ana")


def test_note_whitespace_controls_become_spaces_and_html_is_kept_verbatim():
    rec = new_label("e-1", 50, analyst="ana", note="line one\r\nline\ttwo\n")
    assert rec.note == "line one line two"
    html = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    assert new_label("e-1", 50, analyst="ana", note=html).note == html
    assert len(new_label("e-1", 50, analyst="ana", note="y" * MAX_NOTE_CHARS).note) == MAX_NOTE_CHARS


def test_record_round_trips_through_dict():
    rec = new_label("e-1", 40, analyst="ana", note="n", source="workspace", principal=ALICE,
                    event_time="2024-03-04T10:00:00Z", labelled_at=NOW)
    back = LabelRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert rec.label_id and rec.label_id == rec.content_id()
    with pytest.raises(ValueError, match="unknown label field"):
        LabelRecord.from_dict(rec.to_dict() | {"extra": 1})


# ----------------------------------------------------------------------------- store
def test_store_latest_wins_history_kept_and_layout(store: LabelStore, tmp_path: Path):
    store.add([new_label("e-1", 20, analyst="ana", labelled_at=NOW)], now=NOW)
    store.add([new_label("e-1", 90, verdict="malicious", analyst="bob", labelled_at=NOW + timedelta(hours=1)),
               new_label("e-2", 50, analyst="bob", labelled_at=NOW + timedelta(hours=1))],
              now=NOW + timedelta(hours=1))
    assert [r.risk_score for r in store.history("e-1")] == [20, 90]
    latest = store.latest()
    assert latest["e-1"].risk_score == 90 and latest["e-1"].analyst == "bob"
    assert set(latest) == {"e-1", "e-2"}
    assert store.excluded_from_training() == {"e-1"}
    files = sorted(p.name for p in (tmp_path / "work" / "risk" / "labels").iterdir())
    assert len(files) == 2 and files[0].startswith("20260102T030405000000Z-") and files[0].endswith(".jsonl")
    frame = store.to_frame()
    assert len(frame) == 2 and frame["risk_score"].dtype == "int64"
    assert len(store.to_frame(history=True)) == 3


def test_same_label_twice_is_one_record(store: LabelStore, tmp_path: Path):
    first = store.add([new_label("e-1", 80, analyst="ana", note="n", labelled_at=NOW)], now=NOW)
    again = store.add([new_label("e-1", 80, analyst="ana", note="n", labelled_at=NOW + timedelta(minutes=5))],
                      now=NOW + timedelta(minutes=5))
    assert (first.stored, again.stored, again.unchanged, again.uri) == (1, 0, 1, None)
    assert len(list((tmp_path / "work" / "risk" / "labels").iterdir())) == 1
    # A change and a change back are history, not duplicates.
    store.add([new_label("e-1", 10, analyst="ana", labelled_at=NOW + timedelta(minutes=6))])
    store.add([new_label("e-1", 80, analyst="ana", note="n", labelled_at=NOW + timedelta(minutes=7))])
    assert [r.risk_score for r in store.history("e-1")] == [80, 10, 80]


def test_raced_duplicate_writes_read_as_one_record(store: LabelStore):
    rec = new_label("e-1", 80, analyst="ana", labelled_at=NOW)
    body = (json.dumps(rec.to_dict()) + "\n").encode()
    store.store.put_bytes("risk/labels/20260102T030405000000Z-aaaa.jsonl", body)
    store.store.put_bytes("risk/labels/20260102T030406000000Z-bbbb.jsonl", body)
    assert len(store.history("e-1")) == 1


def test_unreadable_stored_lines_are_skipped_not_fatal(store: LabelStore):
    good = new_label("e-1", 80, analyst="ana", labelled_at=NOW)
    store.store.put_bytes("risk/labels/x.jsonl", b"{not json\n" + json.dumps(good.to_dict()).encode()
                          + b"\n" + json.dumps(good.to_dict() | {"risk_score": 400}).encode() + b"\n")
    assert list(store.latest()) == ["e-1"]
    assert store.unreadable == 2


def test_same_timestamp_orders_by_object_then_line(store: LabelStore):
    a = new_label("e-1", 10, analyst="ana", labelled_at=NOW)
    b = new_label("e-1", 90, analyst="ana", labelled_at=NOW)
    store.store.put_bytes("risk/labels/1.jsonl", (json.dumps(a.to_dict()) + "\n" + json.dumps(b.to_dict()) + "\n").encode())
    assert store.latest()["e-1"].risk_score == 90


def test_findings_and_events_kept_apart(store: LabelStore):
    store.add([new_label("f-1", 95, analyst="ana", kind="finding"), new_label("e-1", 95, analyst="ana")])
    assert set(store.latest("finding")) == {"f-1"}
    assert store.excluded_from_training() == {"e-1"}


# ----------------------------------------------------------------------------- CSV parsing
def test_header_case_aliases_and_bom():
    data = "\ufeffMETADATA.UID,Risk_Score,VERDICT\ne-1,80,Malicious\n".encode("utf-8")
    parsed = parse_label_csv(data, "x.csv")
    assert parsed.has_uid and not parsed.rejects
    row = parsed.rows[0]
    assert (row.line, row.uid, row.score, row.verdict) == (2, "e-1", 80, "malicious")
    assert parse_label_csv(b"uid,riskscore\ne-1,5\n").rows[0].uid == "e-1"


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"  \n\n", "empty file"),
    (b"eventID,score\ne-1,5\n", "no riskScore .*column.*line 1"),
    (b"eventTime,riskScore\n2024-03-04T10:00:00Z,5\n", "no eventID .*userIdentityArn, eventName, sourceIPAddress"),
    (b"eventID,riskScore\ne-1,5\n\x00\x01\x02", "binary content .*line 3"),
    ("eventID,riskScore,note\ne-1,5,caf\u00e9\n".encode("latin-1"), "not UTF-8 text .*0xe9 on line 2"),
    (b"eventID,uid,riskScore\ne-1,e-1,5\n", "both name eventID"),
    (b"\xff\xd8\xff\xe0JFIF", "not UTF-8"),
])
def test_whole_file_problems_raise_one_line_naming_the_file(data, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_label_csv(data, "labels.csv")
    assert str(info.value).startswith("labels.csv") and "\n" not in str(info.value)


def test_bad_rows_reported_by_line_and_reason():
    text = (
        "eventID,riskScore,verdict,note\n"           # 1
        "e-1,80,,fine\n"                             # 2
        "e-2,abc,,\n"                                # 3 non-numeric
        "e-3,NaN,,\n"                                # 4 non-numeric
        "e-4,101,,\n"                                # 5 out of range
        "e-5,-3,,\n"                                 # 6 out of range
        "e-6,50,evil,\n"                             # 7 bad verdict
        "e-7,50\n"                                   # 8 too few fields
        "e-8,50,,a,b\n"                              # 9 too many fields
        "e-9,,,\n"                                   # 10 missing score
        f"e-10,50,,{'n' * (MAX_NOTE_CHARS + 1)}\n"   # 11 note too long
        "e-11,50,,\"ok\"x\n"                         # 12 stray quote
        "\n"                                         # 13 blank: ignored
        "e 12,50,,\n"                                # 14 bad uid
        "e-13,50,,\"multi\nline\"\n"                 # 15-16 one record on two lines
        "e-14,12,,\"<b>hi</b>\"\n"                   # 17
    )
    parsed = parse_label_csv(csv_bytes(text), "x.csv")
    reasons = {(r.line, r.reason) for r in parsed.rejects}
    assert reasons == {
        (3, "non-numeric score"), (4, "non-numeric score"), (5, "score out of range"), (6, "score out of range"),
        (7, "bad verdict"), (8, "malformed line"), (9, "malformed line"), (10, "missing score"),
        (11, "note too long"), (12, "malformed line"), (14, "bad uid"),
    }
    good = {r.uid: r for r in parsed.rows}
    assert set(good) == {"e-1", "e-13", "e-14"}
    assert good["e-13"].line == 15 and good["e-13"].note == "multi line"
    assert good["e-14"].note == "<b>hi</b>"
    assert parsed.rows_read == 14


def test_unterminated_quote_does_not_swallow_the_rest():
    text = 'eventID,riskScore\ne-1,10\n"e-2,20\ne-3,30\ne-4,40\n'
    parsed = parse_label_csv(csv_bytes(text))
    assert [(r.line, r.reason) for r in parsed.rejects] == [(3, "malformed line")]
    assert [r.uid for r in parsed.rows] == ["e-1", "e-3", "e-4"]


def test_oversize_field_is_a_malformed_line():
    text = f"eventID,riskScore,note\ne-1,10,\"{'x' * 300_000}\"\ne-2,20,\n"
    parsed = parse_label_csv(csv_bytes(text))
    assert [(r.line, r.reason) for r in parsed.rejects] == [(2, "malformed line")]
    assert [r.uid for r in parsed.rows] == ["e-2"]


def test_control_characters_in_note_rejected_per_row():
    parsed = parse_label_csv(csv_bytes("eventID,riskScore,note\ne-1,10,a\x1b[2Jb\ne-2,20,ok\n"))
    assert [(r.line, r.reason) for r in parsed.rejects] == [(2, "bad note")]


# ----------------------------------------------------------------------------- matching
MATCH_HEADER = "eventTime,userIdentityArn,eventName,sourceIPAddress,riskScore\n"


def test_match_by_fields_to_the_second(events):
    text = MATCH_HEADER + (
        f"2024-03-04T10:00:00Z,{ALICE},GetObject,198.51.100.7,80\n"          # e-1 (ms dropped)
        f"2024-03-04 10:00:05,{ALICE},DeleteBucket,198.51.100.7,90\n"        # e-2 (naive = UTC)
        f"2024-03-04T10:00:09.010+00:00,{BOB},GetObject,,10\n"               # e-3 (null IP)
        f"2024-03-04T10:00:20Z,{ALICE},ListBuckets,198.51.100.7,50\n"        # ambiguous e-4/e-5
        f"2024-03-04T10:00:01Z,{ALICE},GetObject,198.51.100.7,50\n"          # no event
        f"2024-03-04T10:00:00Z,,GetObject,198.51.100.7,50\n"                 # principal empty
        "yesterday,x,y,z,50\n"                                               # bad time
    )
    parsed = parse_label_csv(csv_bytes(text))
    assert [(r.line, r.reason) for r in parsed.rejects] == [(8, "bad time")]
    matched, rejects = match_rows(parsed.rows, events)
    assert {(m.row.line, m.uid, m.by) for m in matched} == {(2, "e-1", "fields"), (3, "e-2", "fields"), (4, "e-3", "fields")}
    assert [(r.line, r.reason) for r in rejects] == [
        (5, "ambiguous match"), (6, "no matching event"), (7, "missing match fields")]
    assert "2 events" in rejects[0].detail and "e-4" in rejects[0].detail


def test_match_by_uid_on_pandas_too(events):
    parsed = parse_label_csv(csv_bytes("eventID,riskScore\ne-2,80\ne-99,10\n"))
    for table in (events, events.to_pandas()):
        matched, rejects = match_rows(parsed.rows, table)
        assert [(m.uid, m.by) for m in matched] == [("e-2", "uid")]
        assert [(r.line, r.reason) for r in rejects] == [(3, "unknown uid")]


def test_match_refuses_a_table_without_the_event_columns():
    with pytest.raises(ValueError, match="events table: missing column"):
        match_rows([], pa.table({"uid": ["e-1"]}))


# ----------------------------------------------------------------------------- import
def test_import_matches_stores_context_and_is_idempotent(store: LabelStore, events):
    text = "EventID,eventTime,userIdentityArn,eventName,sourceIPAddress,riskScore,analyst,note\n" + (
        f"e-1,,,,,80,ana,first\n"
        f",2024-03-04T10:00:05Z,{ALICE},DeleteBucket,198.51.100.7,95,,\n"    # no analyst cell: --analyst
        f"e-1,,,,,80,ana,first\n"                                            # same row again
        f"e-1,,,,,10,bob,other\n"                                            # same uid, other label
        f"e-77,,,,,10,bob,\n"                                                # unknown uid
    )
    res = import_labels(store, csv_bytes(text), name="in.csv", events=events, analyst="lead", now=NOW)
    assert (res.rows_read, res.matched_by_uid, res.matched_by_fields, res.stored) == (5, 1, 1, 2)
    assert [(r.line, r.reason) for r in res.rejects] == [(4, "duplicate"), (5, "duplicate"), (6, "unknown uid")]
    assert "same row as line 2" in res.rejects[0].detail and "already labelled on line 2" in res.rejects[1].detail
    latest = store.latest()
    assert latest["e-2"].analyst == "lead" and latest["e-2"].verdict == "malicious" and latest["e-2"].verdict_derived
    assert (latest["e-1"].principal, latest["e-1"].operation, latest["e-1"].source_ip) == (ALICE, "GetObject", "198.51.100.7")
    assert latest["e-1"].event_time == "2024-03-04T10:00:00.123000Z" and latest["e-1"].source == "import"
    # A retried import writes nothing new.
    again = import_labels(store, csv_bytes(text), name="in.csv", events=events, analyst="lead",
                          now=NOW + timedelta(minutes=1))
    assert (again.stored, again.unchanged, again.uri) == (0, 2, None)
    assert len(store.records()) == 2


def test_import_without_window_takes_uids_unverified(store: LabelStore):
    text = MATCH_HEADER.strip() + ",eventID\n" + f"2024-03-04T10:00:00Z,{ALICE},GetObject,1.2.3.4,50,\n,,,,60,e-9\n"
    res = import_labels(store, csv_bytes(text), analyst="ana", source="synthetic")
    assert (res.verified, res.unverified, res.stored) == (False, 1, 1)
    assert [(r.line, r.reason) for r in res.rejects] == [(2, "no event window")]
    assert store.latest()["e-9"].source == "synthetic"


def test_import_needs_an_analyst(store: LabelStore):
    with pytest.raises(ValueError, match="no analyst column"):
        import_labels(store, b"eventID,riskScore\ne-1,5\n", name="in.csv")
    res = import_labels(store, b"eventID,riskScore,analyst\ne-1,5,\ne-2,5,bo\n", name="in.csv")
    assert [(r.line, r.reason) for r in res.rejects] == [(2, "missing analyst")]
    with pytest.raises(ValueError, match="source 'cli'"):
        import_labels(store, b"eventID,riskScore\ne-1,5\n", analyst="a", source="cli")


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("cell, out", [
    ("=SUM(A1)", "'=SUM(A1)"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("plain", "plain"), ("", ""), (None, ""), (42, "42"), ("a=b", "a=b"),
])
def test_neutralise_cell(cell, out):
    assert neutralise_cell(cell) == out


def test_export_neutralises_and_imports_back(store: LabelStore):
    notes = {"e-1": "=HYPERLINK(\"http://x\",\"y\")", "e-2": "+1", "e-3": "-cmd|' /C calc'!A0",
             "e-4": "@SUM(1)", "e-5": "<script>alert(1)</script>"}
    store.add([new_label(uid, 50, analyst="ana", note=n, labelled_at=NOW) for uid, n in notes.items()]
              + [new_label("-e-6", 60, analyst="=evil", labelled_at=NOW)])
    rows = export_rows(store.latest().values())
    cells = [c for row in rows[1:] for c in row]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    other = LabelStore(LocalStore(store.store.root.parent / "other"))
    res = import_labels(other, buf.getvalue().encode(), analyst="x")
    assert not res.rejects
    back = other.latest()
    assert {u: back[u].note for u in notes} == notes
    assert back["-e-6"].analyst == "=evil"


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SECLAKE_ML_CONFIG", raising=False)
    monkeypatch.setenv("SECLAKE_ML_WORK_LOCATION", str(tmp_path / "work"))
    monkeypatch.setenv("SECLAKE_ML_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_add_list_and_unchanged(work: Path, capsys):
    assert main(["risk", "labels", "add", "--uid", "e-1", "--risk", "85", "--analyst", "ana",
                 "--note", "<img src=x onerror=alert(1)>"]) == 0
    assert "malicious (derived from the score)" in capsys.readouterr().out
    assert main(["risk", "labels", "add", "--uid", "e-1", "--risk", "85", "--analyst", "ana",
                 "--note", "<img src=x onerror=alert(1)>"]) == 0
    assert "already in force" in capsys.readouterr().out
    assert main(["risk", "labels", "add", "--uid", "f-1", "--risk", "5", "--verdict", "benign",
                 "--analyst", "bo", "--kind", "finding"]) == 0
    capsys.readouterr()
    assert main(["risk", "labels", "list", "--verdict", "malicious"]) == 0
    out = capsys.readouterr().out
    assert "labels in force: 2 (malicious 1, benign 1, unsure 0)" in out
    assert "<img src=x onerror=alert(1)>" in out and "f-1" not in out and "malicious*" in out


@pytest.mark.parametrize("argv, message", [
    (["--uid", "e-1", "--risk", "101", "--analyst", "a"], "score out of range"),
    (["--uid", "e-1", "--risk", "nan", "--analyst", "a"], "non-numeric score"),
    (["--uid", "e-1", "--risk", "5", "--analyst", "a", "--note", "x" * 2001], "note: 2001 characters"),
    (["--uid", "e-1", "--risk", "5", "--analyst", "a", "--note", "a\x1b]0;pwned\x07"], r"U\+001B"),
])
def test_cli_add_errors_are_one_line_exit_2(work: Path, capsys, argv, message):
    assert main(["risk", "labels", "add", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.replace("\\", "") in err.replace("\\", "")
    assert "\x1b" not in err


def test_cli_import_summary_limits_line_numbers(work: Path, capsys):
    lines = ["eventID,riskScore,analyst"] + [f"e-{i},{'x' if i % 2 else 50},ana" for i in range(60)]
    (work / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["risk", "labels", "import", "--csv", "in.csv"]) == 0
    out = capsys.readouterr().out
    assert "read      60 rows" in out and "NOT verified" in out and "stored    30 new labels" in out
    reason = next(line for line in out.splitlines() if line.startswith("  non-numeric score"))
    assert reason.startswith("  non-numeric score (30): lines 3, 5, 7") and reason.endswith("and 10 more")
    assert main(["risk", "labels", "import", "--csv", "in.csv"]) == 0
    assert "stored    0 new labels, 30 already in force" in capsys.readouterr().out


def test_cli_import_file_errors(work: Path, capsys):
    (work / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (work / "empty.csv").write_bytes(b"")
    assert main(["risk", "labels", "import", "--csv", "bin.csv", "--analyst", "a"]) == 2
    assert "binary content" in capsys.readouterr().err
    assert main(["risk", "labels", "import", "--csv", "empty.csv", "--analyst", "a"]) == 2
    assert "empty file" in capsys.readouterr().err
    assert main(["risk", "labels", "import", "--csv", "missing.csv", "--analyst", "a"]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["risk", "labels", "import", "--csv", "/dev/zero", "--analyst", "a"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["risk", "labels", "import", "--csv", str(work), "--analyst", "a"]) == 2
    assert "is a folder" in capsys.readouterr().err
    (work / "ok.csv").write_text("eventID,riskScore\ne-1,5\n")
    assert main(["risk", "labels", "import", "--csv", "ok.csv", "--analyst", "a", "--start", "2024-03-04"]) == 2
    assert "--start and --end go together" in capsys.readouterr().err


def test_cli_import_with_window_reads_events_lazily(work: Path, capsys, monkeypatch, events):
    calls = []

    def read_events(cfg, start, end):
        calls.append((cfg.lake_root, start, end))
        return types.SimpleNamespace(table=events, summary_line=lambda: "cloudtrail events: 5 rows")

    fake = types.ModuleType("seclake_ml.backends")
    fake.read_events = read_events
    monkeypatch.setitem(sys.modules, "seclake_ml.backends", fake)
    (work / "in.csv").write_text(MATCH_HEADER + f"2024-03-04T10:00:05Z,{ALICE},DeleteBucket,198.51.100.7,88\n"
                                 + f"2024-03-04T10:00:20Z,{ALICE},ListBuckets,198.51.100.7,50\n")
    assert main(["risk", "labels", "import", "--csv", "in.csv", "--root", str(work / "mylake"), "--analyst", "ana",
                 "--start", "2024-03-04", "--end", "2024-03-05T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert calls == [(str(work / "mylake"), T0.replace(hour=0), T0.replace(day=5, hour=0))]
    assert "matched   1 (0 by uid, 1 by time/principal/operation/source IP) against 5 events" in out
    assert "ambiguous match (1): lines 3" in out


def test_cli_export_refuses_overwrite_and_neutralises(work: Path, capsys):
    assert main(["risk", "labels", "add", "--uid", "e-1", "--risk", "70", "--analyst", "ana", "--note", "=1+1"]) == 0
    assert main(["risk", "labels", "export", "--out", "out.csv"]) == 0
    rows = list(csv.reader((work / "out.csv").open(encoding="utf-8", newline="")))
    assert rows[0][:6] == ["eventID", "eventTime", "userIdentityArn", "eventName", "sourceIPAddress", "riskScore"]
    assert rows[1][0] == "e-1" and rows[1][8] == "'=1+1"
    capsys.readouterr()
    assert main(["risk", "labels", "export", "--out", "out.csv"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["risk", "labels", "export", "--out", "out.csv", "--force", "--history"]) == 0
    assert main(["risk", "labels", "export", "--out", str(work / "lake" / "x.csv")]) == 2
    assert "inside the lake root" in capsys.readouterr().err
    assert main(["risk", "labels", "export", "--out", "s3://bucket/x.csv"]) == 2
    assert "local CSV file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- S3 (moto server)
def test_s3_round_trip(aws_env, monkeypatch, tmp_path: Path, capsys):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env.endpoint)
    s3.create_bucket(Bucket="seclake-labels")
    from seclake_ml.risk.labels import label_store_for

    store = label_store_for("s3://seclake-labels/ml", s3)
    store.add([new_label("e-1", 90, analyst="ana", labelled_at=NOW)], now=NOW)
    assert store.add([new_label("e-1", 90, analyst="ana")]).stored == 0
    store.add([new_label("e-1", 20, analyst="bo", labelled_at=NOW + timedelta(hours=1))])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="seclake-labels")["Contents"]]
    assert len(keys) == 2 and all(k.startswith("ml/risk/labels/") and k.endswith(".jsonl") for k in keys)
    assert [r.risk_score for r in store.history("e-1")] == [90, 20]
    # the CLI on an s3:// work location
    monkeypatch.delenv("SECLAKE_ML_CONFIG", raising=False)
    monkeypatch.setenv("SECLAKE_ML_WORK_LOCATION", "s3://seclake-labels/ml")
    monkeypatch.setenv("SECLAKE_ML_LAKE_ROOT", str(tmp_path / "lake"))
    assert main(["risk", "labels", "list"]) == 0
    assert "labels in force: 1 (malicious 0, benign 1, unsure 0)" in capsys.readouterr().out
