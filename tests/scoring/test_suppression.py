"""Analyst allow-list at scoring (local backend): a flagged pair on the list is written Suppressed, not published."""

from __future__ import annotations

import json
from pathlib import Path

from seclake_ml.feedback.allowlist import AllowList, new_entry
from seclake_ml.scoring import service
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.ledger import Ledger
from seclake_ml.scoring.ocsf_validate import validate_finding

from .conftest import drop_day, make_config
from .test_scoring_local import DAY1, _expected_flags


def test_allow_listed_pair_is_written_suppressed_and_not_published(site: dict, reference_dir: Path) -> None:
    cfg = make_config(site, publish_min_severity=1)  # every finding is published unless suppressed
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # adopts the history
    drop_day(site, DAY1)
    flags = sorted(_expected_flags(cfg, site))
    assert len(flags) >= 2
    _, entity, ip = flags[0]
    allow = AllowList(service.work_store(cfg))
    pair = new_entry("pair", entity=entity, cidr=ip, reason='<b>known</b> admin VPN "jump" host',
                     expires_at="2999-01-01T00:00:00Z", created_by="ana")
    assert allow.add(pair).stored
    # an entry removed again, and one for an address nobody uses, change nothing
    gone = new_entry("entity", entity=flags[1][1], reason="wrong entity", created_by="ana")
    allow.add(gone)
    allow.remove(gone.entry_id, by="bob", reason="added by mistake")
    allow.add(new_entry("cidr", cidr="192.0.2.0/24", reason="documentation range", created_by="ana"))

    manifest = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    t = summary["totals"]
    records = read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))
    muted = [r for r in records if r.get("status_id") == 3]
    expected_muted = [r for r in records if (r["unmapped"]["entity"], r["unmapped"]["ip"]) == (entity, ip)]
    assert expected_muted and muted == expected_muted  # one per (source, view, account, region) of the pair
    assert t["suppressed"] == len(muted) and t["findings"] == len(records) == len(flags) + len(muted) - 1
    assert summary["allowlist"] == {"entries": 2, "unreadable": 0}
    schema = json.loads((reference_dir / "ocsf-1.1.0-schema.json").read_text())
    for rec in muted:
        assert rec["status"] == "Suppressed" and pair.entry_id in rec["status_detail"]
        assert rec["unmapped"]["allowlist_entry_id"] == pair.entry_id
        assert rec["unmapped"]["allowlist_kind"] == "pair"
        assert rec["unmapped"]["allowlist_reason"] == '<b>known</b> admin VPN "jump" host'  # verbatim text
        assert rec["unmapped"]["allowlist_expires_at"] == "2999-01-01T00:00:00.000000Z"
        assert validate_finding(rec, schema) == []
    for rec in records:
        if rec not in muted:
            assert rec["status_id"] == 1 and rec["status"] == "New" and "status_detail" not in rec
            assert not any(k.startswith("allowlist_") for k in rec["unmapped"])
            assert validate_finding(rec, schema) == []
    # published: every finding but the suppressed ones
    alerts = Path(site["work"]) / "scoring" / "alerts" / "severe.jsonl"
    uids = [json.loads(x)["uid"] for x in alerts.read_text().splitlines()]
    assert t["published"] == len(uids) == len(records) - len(muted)
    assert not {r["finding_info"]["uid"] for r in muted} & set(uids)
