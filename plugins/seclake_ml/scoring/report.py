"""Human-readable views of scoring results (for the CLI and ``make run``), and ledger adoption.

* :func:`latest_batch` finds the most recently finished batch in a local work location.
* :func:`format_batch` prints what a batch did and its top findings with their explanations; with a
  ground-truth file of the sample lake it also says which injected anomalies were found.
* :func:`adopt_existing` records the objects already in a local lake as history, so that the
  continuous scoring DAG only scores what lands afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seclake_ml.config import SeclakeConfig


def latest_batch(work_location: str) -> dict[str, Any] | None:
    base = Path(work_location) / "scoring" / "batches"
    results = [p for p in base.glob("*/result.json")] if base.is_dir() else []
    if not results:
        return None
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in results]
    return max(docs, key=lambda d: str(d.get("finished_at", "")))


def _batch_files(batch: dict[str, Any]) -> list[str]:
    return sorted({f for o in batch.get("objects", []) for f in o.get("files", [])})


def format_batch(batch: dict[str, Any], *, top: int = 10, truth: str | None = None) -> list[str]:
    """Lines describing one finished batch and its strongest findings.

    Text from the lake (entities, addresses, explanations) is shown with control, bidi and zero-width
    characters escaped (:mod:`seclake_ml.display`); a last line counts them when there were any.
    """
    from seclake_ml.display import Escaper
    from seclake_ml.scoring.findings_parquet import read_findings

    shown = Escaper()
    t = batch["totals"]
    lines = [
        f"batch         {shown(batch['batch_id'])} ({shown(batch.get('origin'))}), model {shown(batch['model_version'])}",
        f"objects       {t['objects']} (scored {t['scored']}, quarantined {t['quarantined']}, failed {t['failed']})",
        f"rows / pairs  {t['rows']:,} rows, {t['pairs']:,} pairs ({t['distinct_pairs']:,} distinct per chunk)",
        f"unknown       {t.get('unknown_entity', 0):,} pairs of entities the model never saw; flagged by the "
        f"unknown-entity policy {t.get('unknown_flagged', 0):,}, peer group without history {t.get('unknown_no_history', 0):,}",
        f"dropped       {', '.join(f'{k} {v:,}' for k, v in t['dropped'].items() if v) or 'none'}",
        f"findings      {t['findings']} by severity {json.dumps(t['severity'], sort_keys=True)}; published {t['published']}; "
        f"suppressed by the allow-list {t.get('suppressed', 0)}",
        *_drift_lines(batch.get("drift")),
        f"seconds       {json.dumps(batch.get('seconds', {}), sort_keys=True)}",
        f"findings at   {shown(batch.get('findings_location'))}/ext/…",
    ]
    files = [f for f in _batch_files(batch) if Path(f).is_file()]
    records = read_findings(files) if files else []
    records.sort(key=lambda r: (-int(r.get("severity_id") or 0), -float((r.get("unmapped") or {}).get("score", 0) or 0)))
    for r in records[:top]:
        un = r.get("unmapped") or {}
        lines.append(f"  [{shown(r.get('severity')):<8}] {shown(un.get('source'))}/{shown(un.get('view'))} "
                     f"{shown(un.get('entity'), 300)} -> {shown(un.get('ip'), 64)} "
                     f"score {float(un.get('score', 'nan')):.3f} > {float(un.get('threshold', 'nan')):.3f}")
        text = ((r.get("evidences") or [{}])[0].get("data") or {}).get("explanation", {}).get("text")
        if text:
            lines.append(f"               {shown(text[:220])}")
    if truth and Path(truth).is_file() and records:
        import pyarrow.parquet as pq

        gt = pq.read_table(truth).to_pylist()
        found = {((r.get("unmapped") or {}).get("entity"), (r.get("unmapped") or {}).get("ip")) for r in records}
        kinds: dict[str, list[int]] = {}
        seen_pairs: set[tuple[str, str, str]] = set()
        for row in gt:
            key = (row["kind"], row["entity"], row["ip"])
            if key in seen_pairs:
                continue
            seen_pairs.add(key)
            hit = (row["entity"], row["ip"]) in found
            kinds.setdefault(row["kind"], [0, 0])
            kinds[row["kind"]][0] += hit
            kinds[row["kind"]][1] += 1
        lines.append("ground truth  injected pairs found: " + ", ".join(f"{k} {h}/{n}" for k, (h, n) in sorted(kinds.items())))
    if shown.escaped:
        lines.append(f"escaped       {shown.escaped} control, bidi or zero-width characters in the lines above")
    return lines


def adopt_existing(cfg: SeclakeConfig) -> int:
    """Mark every object now in the local lake as history (not scored); returns how many were new."""
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.service import work_store
    from seclake_ml.scoring.sites import iter_local_objects

    ledger = Ledger(work_store(cfg))
    done = ledger.done_keys()
    objects, _ = iter_local_objects(cfg)
    n = 0
    for obj in objects:
        if Ledger.entry_key(obj.uri) not in done:
            ledger.mark(obj, status="adopted", batch_id="adopted", model_version=None)
            n += 1
    ledger.mark_adopted(n)
    return n


def _drift_lines(drift: Any) -> list[str]:
    """The batch's drift figures against their bounds (nothing for results written before drift was kept)."""
    if not isinstance(drift, dict):
        return []
    psi = drift.get("psi")
    head = (f"drift         score PSI {psi:.3f} (bound {drift.get('bounds', {}).get('psi')})" if isinstance(psi, (int, float))
            else "drift         score PSI not measured (the active record has no score reference)")
    head += (f", unknown-entity rate {drift.get('unknown_rate', 0) or 0:.1%}, "
             f"{drift.get('findings_per_1k', 0) or 0:.2f} findings per 1,000 pairs")
    if not drift.get("judged"):
        return [head + " (too few pairs to judge)"]
    breaches = drift.get("breaches") or []
    return [head + ("; within bounds" if not breaches else "; BREACHED: " + "; ".join(map(str, breaches)))]
