"""Hostile text on display paths: escaped, never printed raw, and counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from seclake_ml.display import Escaper, escape

from .conftest import cli_env, run_cli


@pytest.mark.parametrize("text,shown,count", [
    ("plain-entity", "plain-entity", 0),
    ("user\u202etxt.exe", "user\\u202etxt.exe", 1),
    ("zero\u200bwidth", "zero\\u200bwidth", 1),
    ("c1\x85\x9bcontrols", "c1\\x85\\x9bcontrols", 2),
    ("esc\x1b[2Jclear", "esc\\x1b[2Jclear", 1),
    ("line\u2028sep\nnl", "line\\u2028sep\\x0anl", 2),
    ("forged \\u202e", "forged \\\\u202e", 0),
    ("tag\U000e0041", "tag\\U000e0041", 1),
])
def test_escape_makes_text_printable_and_counts(text: str, shown: str, count: int) -> None:
    assert escape(text) == (shown, count)
    assert escape(text)[0].isprintable()


def test_escaper_keeps_a_running_count_and_cuts_long_text() -> None:
    e = Escaper()
    assert e("a\u202eb") == "a\\u202eb" and e("x" * 10, 4) == "xxxx..." and e("\x00\x00") == "\\x00\\x00"
    assert e.escaped == 3


def _batch(work: Path, **fields) -> None:
    bdir = work / "scoring" / "batches" / "b1"
    bdir.mkdir(parents=True)
    doc = {"batch_id": "lake-\u202eevil", "origin": "lake", "model_version": "ipinsights-\x1b[31mred",
           "finished_at": "2026-01-01T00:00:00+00:00", "findings_location": str(work / "f\u200b"),
           "totals": {"objects": 1, "scored": 1, "quarantined": 0, "failed": 0, "rows": 3, "pairs": 3,
                      "distinct_pairs": 3, "findings": 0, "severity": {}, "published": 0,
                      "dropped": {"hostile": 2}}, "seconds": {}, "objects": [], **fields}
    (bdir / "result.json").write_text(json.dumps(doc))


def test_scoring_show_escapes_and_counts(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _batch(work)
    proc = run_cli("scoring", "show", env=cli_env(SECLAKE_ML_WORK_LOCATION=str(work)))
    assert proc.returncode == 0, proc.stderr
    assert "\u202e" not in proc.stdout and "\x1b" not in proc.stdout and "\u200b" not in proc.stdout
    assert "lake-\\u202eevil" in proc.stdout and "ipinsights-\\x1b[31mred" in proc.stdout
    assert "escaped       3 control, bidi or zero-width characters" in proc.stdout


def test_scoring_show_with_a_damaged_result_is_a_one_line_error(tmp_path: Path) -> None:
    work = tmp_path / "work"
    bdir = work / "scoring" / "batches" / "b1"
    bdir.mkdir(parents=True)
    (bdir / "result.json").write_text("{not json")
    proc = run_cli("scoring", "show", env=cli_env(SECLAKE_ML_WORK_LOCATION=str(work)))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def test_severe_alert_log_line_escapes_entity_names(tmp_path: Path, caplog) -> None:
    from seclake_ml.scoring.stores import LogPublisher

    pub = LogPublisher(tmp_path / "severe.jsonl")
    record = {"finding_info": {"uid": "u1"}, "severity": "High", "severity_id": 4,
              "message": "unusual address for arn:aws:iam::1:user/\u202egnp.exe -> 203.0.113.9"}
    with caplog.at_level(logging.WARNING):
        pub.publish([record])
    lines = [r.getMessage() for r in caplog.records if "SEVERE" in r.getMessage()]
    assert lines and "\u202e" not in lines[0] and "\\u202egnp.exe" in lines[0]
