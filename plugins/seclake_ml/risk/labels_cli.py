"""``risk labels add|import|export|list``: the analysts' label store from the command line.

::

    python -m seclake_ml risk labels add --uid U --risk N [--verdict V] --analyst A [--note T] [--kind event|finding]
    python -m seclake_ml risk labels import --csv FILE [--root LAKE --start ISO --end ISO] [--analyst A]
                                            [--source import|synthetic]
    python -m seclake_ml risk labels export --out FILE [--force] [--history]
    python -m seclake_ml risk labels list [--top N] [--verdict V] [--kind event|finding]

The store lives under ``<work_location>/risk/labels/`` (:mod:`seclake_ml.risk.labels`); the work
location and lake come from the configuration (``SECLAKE_ML_WORK_LOCATION``, ``--root`` for the
lake). Input errors raise ValueError (the main CLI prints ``error: ...`` and exits 2). Every string
from data printed here is escaped (:mod:`seclake_ml.display`).
"""

from __future__ import annotations

import argparse
import csv
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seclake_ml.risk.columns import VERDICTS

__all__ = ["register", "run"]

#: Line numbers printed per skip reason in the import summary.
MAX_LINES_SHOWN = 20


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``labels`` (sub-commands in ``args.labels_command``) to the ``risk`` group's sub-parsers."""
    labels = sub.add_parser("labels", help="analyst labels: add, import, export, list")
    lsub = labels.add_subparsers(dest="labels_command", required=True)

    add = lsub.add_parser("add", help="label one event (or finding)")
    add.add_argument("--uid", required=True, help="the event's metadata.uid (CloudTrail eventID) or a finding uid")
    add.add_argument("--risk", required=True, help="risk score, a whole number 0-100")
    add.add_argument("--verdict", choices=VERDICTS, help="default: derived from the score (>=70 malicious, <=30 benign)")
    add.add_argument("--analyst", required=True, help="who labels")
    add.add_argument("--note", default="", help="free text, at most 2000 characters")
    add.add_argument("--kind", choices=("event", "finding"), default="event", help="what the uid names (default event)")

    imp = lsub.add_parser("import", help="import a SIEM export CSV with a riskScore column")
    imp.add_argument("--csv", required=True, help="the CSV file (UTF-8, CloudTrail field names)")
    imp.add_argument("--root", help="local Security Lake root (default from configuration)")
    imp.add_argument("--start", help="inclusive start of the events to match, ISO date/time (UTC)")
    imp.add_argument("--end", help="exclusive end of the events to match, ISO date/time (UTC)")
    imp.add_argument("--analyst", help="analyst for rows without one")
    imp.add_argument("--source", choices=("import", "synthetic"), default="import", help="label source (default import)")

    exp = lsub.add_parser("export", help="write the labels in force as CSV (formula cells neutralised)")
    exp.add_argument("--out", required=True, help="the CSV file to write")
    exp.add_argument("--force", action="store_true", help="replace an existing file")
    exp.add_argument("--history", action="store_true", help="every label ever stored, not only those in force")

    ls = lsub.add_parser("list", help="print the labels in force, riskiest first")
    ls.add_argument("--top", type=int, default=20, help="labels to print (default 20)")
    ls.add_argument("--verdict", choices=VERDICTS, help="only this verdict")
    ls.add_argument("--kind", choices=("event", "finding"), help="only events or only findings")
    return labels


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``risk labels`` command."""
    handlers = {"add": _add, "import": _import, "export": _export, "list": _list}
    handler = handlers.get(getattr(args, "labels_command", None))
    if handler is None:
        raise ValueError(f"unknown labels command {getattr(args, 'labels_command', None)!r}")
    return handler(args)


# ----------------------------------------------------------------------------- helpers
def _config(root: str | None = None) -> Any:
    from seclake_ml.config import load_config

    return load_config({"lake_root": root})


def _store(cfg: Any) -> Any:
    """The label store of the configured work location (S3 through the provider's hook when ``s3://``;
    from the command line boto3's default credential chain)."""
    from seclake_ml.risk.service import label_store

    return label_store(cfg, aws_conn_id=None)


def _when(text: str, what: str) -> datetime:
    from seclake_ml.risk.labels import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


# ----------------------------------------------------------------------------- commands
def _add(args: argparse.Namespace) -> int:
    from seclake_ml.display import Escaper
    from seclake_ml.risk.labels import new_label

    rec = new_label(args.uid, args.risk, verdict=args.verdict, analyst=args.analyst, note=args.note,
                    source="cli", kind=args.kind)
    res = _store(_config()).add([rec])
    shown = Escaper()
    what = f"{rec.target_kind} {shown(rec.target_uid, 120)}: risk {rec.risk_score}, {rec.verdict}" + (
        " (derived from the score)" if rec.verdict_derived else "")
    if res.stored:
        print(f"labelled {what}")
        print(f"stored   {shown(res.uri)}")
    else:
        print(f"unchanged {what}: the same label is already in force")
    return 0


def _import(args: argparse.Namespace) -> int:
    from seclake_ml.display import Escaper
    from seclake_ml.risk.labels import import_labels

    if bool(args.start) != bool(args.end):
        raise ValueError("--start and --end go together: give both to match rows against the lake, or neither")
    from seclake_ml.risk.labels import MAX_CSV_BYTES

    path = Path(args.csv).expanduser()
    if path.is_dir():
        raise ValueError(f"--csv {args.csv}: is a folder; name the CSV file")
    if path.exists() and not path.is_file():
        raise ValueError(f"--csv {args.csv}: is not a regular file (a device, pipe or socket)")
    if path.exists() and path.stat().st_size > MAX_CSV_BYTES:
        raise ValueError(f"--csv {args.csv}: {path.stat().st_size} bytes; label CSVs of at most {MAX_CSV_BYTES} bytes are read")
    data = path.read_bytes()
    cfg = _config(args.root)
    events = None
    window = events_line = ""
    if args.start:
        start, end = _when(args.start, "--start"), _when(args.end, "--end")
        if end <= start:
            raise ValueError(f"--end {args.end} is not after --start {args.start}")
        try:
            from seclake_ml.backends import read_events
        except ImportError as exc:
            raise ValueError(f"the event reader (seclake_ml.risk.events) is not available here: {exc}") from None
        got = read_events(cfg, start, end)
        events = getattr(got, "table", got)
        window = f"[{start.isoformat()} .. {end.isoformat()})"
        events_line = got.summary_line() if hasattr(got, "summary_line") else ""
    res = import_labels(_store(cfg), data, name=str(args.csv), events=events, analyst=args.analyst,
                        source=args.source, now=datetime.now(timezone.utc))
    shown = Escaper()
    print(f"file      {shown(args.csv)}")
    print(f"read      {res.rows_read} rows")
    if events_line:
        print(f"events    {shown(events_line, 400)}")
    if res.verified:
        print(f"matched   {res.matched} ({res.matched_by_uid} by uid, {res.matched_by_fields} by time/principal/"
              f"operation/source IP) against {len(events)} events in {window}")
    else:
        print(f"matched   {res.matched} by uid, NOT verified against the lake (no --start/--end); "
              "rows without eventID need a window")
    print(f"stored    {res.stored} new labels" + (f", {res.unchanged} already in force" if res.unchanged else "")
          + (f" in {shown(res.uri)}" if res.uri else ""))
    print(f"skipped   {len(res.rejects)}")
    for reason, items in res.rejects_by_reason().items():
        lines = ", ".join(str(r.line) for r in items[:MAX_LINES_SHOWN])
        more = f" and {len(items) - MAX_LINES_SHOWN} more" if len(items) > MAX_LINES_SHOWN else ""
        print(f"  {reason} ({len(items)}): lines {lines}{more}")
        print(f"    e.g. line {items[0].line}: {shown(items[0].detail, 200)}")
    if shown.escaped:
        print(f"escaped   {shown.escaped} control or bidi characters in the lines above")
    return 0


def _export(args: argparse.Namespace) -> int:
    from seclake_ml.display import Escaper
    from seclake_ml.outputs import check_output_file, write_atomically
    from seclake_ml.risk.labels import export_rows

    if args.out.startswith("s3://"):
        raise ValueError(f"--out {args.out}: export writes a local CSV file; name a path on this machine")
    cfg = _config()
    from seclake_ml.backends import backend_of

    out = check_output_file(args.out, force=args.force, lake_root=backend_of(cfg).local_lake_root, what="--out")
    store = _store(cfg)
    records = store.records() if args.history else sorted(store.latest().values(), key=lambda r: r.labelled_at)
    rows = export_rows(records)
    with write_atomically(out) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, quoting=csv.QUOTE_MINIMAL).writerows(rows)
        os.chmod(tmp, 0o644)
    print(f"exported {len(rows) - 1} labels{' (history)' if args.history else ''} to {Escaper()(out)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from seclake_ml.display import Escaper

    if args.top < 1:
        raise ValueError(f"--top {args.top}: give a positive number")
    store = _store(_config())
    latest = list(store.latest(args.kind).values())
    counts = {v: sum(1 for r in latest if r.verdict == v) for v in VERDICTS}
    chosen = [r for r in latest if args.verdict is None or r.verdict == args.verdict]
    chosen.sort(key=lambda r: (-r.risk_score, r.labelled_at), reverse=False)
    shown = Escaper()
    print(f"labels in force: {len(latest)} (" + ", ".join(f"{v} {n}" for v, n in counts.items()) + ")"
          + (f"; {store.unreadable} unreadable stored lines skipped" if store.unreadable else ""))
    if not chosen:
        return 0
    print(f"{'risk':>4}  {'verdict':<10} {'kind':<7} {'uid':<38} {'analyst':<16} {'labelled at':<20} {'source':<9} note")
    for r in chosen[: args.top]:
        verdict = r.verdict + ("*" if r.verdict_derived else "")
        print(f"{r.risk_score:>4}  {verdict:<10} {r.target_kind:<7} {shown(r.target_uid, 36):<38} "
              f"{shown(r.analyst, 16):<16} {r.labelled_at[:19] + 'Z':<20} {r.source:<9} {shown(r.note, 60)}")
    if len(chosen) > args.top:
        print(f"... {len(chosen) - args.top} more (--top)")
    if any(r.verdict_derived for r in chosen[: args.top]):
        print("* verdict derived from the score (>=70 malicious, <=30 benign, else unsure)")
    if shown.escaped:
        print(f"escaped {shown.escaped} control or bidi characters in the lines above")
    return 0
