"""A tiny findings tree and work folder for the workspace tests, written with the package's own writers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UTC = timezone.utc
#: An entity whose name is HTML: the page must show it as text.
HOSTILE_ENTITY = "<img src=x onerror=alert(1)>"


def seed_config(root: Path) -> dict[str, Any]:
    """Configuration fields of a local lake and work folder under ``root`` (created)."""
    lake, work = root / "lake", root / "work"
    lake.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return {"lake_root": str(lake), "work_location": str(work)}


def seed_findings(cfg: Any, *, now: datetime | None = None) -> list[dict]:
    """Three IP Insights findings (one with an HTML entity) under the config's findings location."""
    from seclake_ml.scoring.findings import Candidate, build_findings
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts
    from seclake_ml.scoring.model_record import ActiveModel
    from seclake_ml.scoring.profile import EntityProfile
    from seclake_ml.scoring.service import findings_location
    from seclake_ml.scoring.stores import store_for

    now = now or datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(hours=3)
    model = ActiveModel(version="m-20240304-abc", threshold=1.5, backend="local", severity_scale=1.0)
    cands = [
        Candidate(source="vpc_flow", view="instance_peer", entity=e, ip=ip, account="123456789012",
                  region="us-east-1", first_seen=t0, last_seen=t0 + timedelta(minutes=30), events=7,
                  dot_product=-s, score=s)
        for e, ip, s in (("i-0abc", "203.0.113.9", 2.0), ("i-0def", "198.51.100.7", 4.5),
                         (HOSTILE_ENTITY, "192.0.2.1", 3.0))
    ]
    prof = EntityProfile.empty()
    records = build_findings(cands, model=model, scope="s3://lake/aws/VPC_FLOW/1.0/a.gz.parquet",
                             explanations={(c.entity, c.ip): prof.explain(c.entity, c.ip) for c in cands},
                             created_time=now, product_version="0.1.0")
    sink = store_for(findings_location(cfg), None)
    for key, data in findings_parquet_parts(records, file_stem="seed-a"):
        sink.put_bytes(key, data)
    return records
