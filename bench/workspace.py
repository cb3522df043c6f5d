"""Workspace findings benchmark: ``list_findings`` over a 100k-finding tree (not a timed test).

Writes ``--findings`` realistic IP Insights findings with the package's own builder and writer
(``build_findings`` on generated candidates, ``findings_parquet_parts``) into a temporary findings tree:
four sources (vpc_flow, route53, cloudtrail_signin, cloudtrail_api), ``--accounts`` accounts, two
regions and ``--days`` days, one scope (one scored lake object) per source, region, account and day,
so one Parquet file per partition, as scoring writes them. Then times :func:`list_findings` (median of
``--repeat`` runs, after one warm-up) for: no filter (first page), an entity filter, severity +
account, and a deep page reached through the cursor; and prints the file count.

    .venv/bin/python bench/workspace.py [--findings 100000] [--days 14] [--accounts 4] [--keep DIR]

Figures from one run on a shared 2-core machine (noisy), defaults: 100,000 findings in 448 files
(written in 36 s); first call of a process 297 ms (DuckDB import, no footer cache); then, median of 5:
no filter 159 ms, entity exact 275 ms (31 matches), entity prefix 210 ms, severity >= 4 + account 50 ms
(112 files after pruning), deep page 21 via cursor 127 ms, last 2 days 35 ms (64 files);
finding_detail 139 ms.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

SOURCES = {"vpc_flow": "instance_peer", "route53": "instance_resolved_ip", "cloudtrail_signin": "principal_ip",
           "cloudtrail_api": "principal_ip"}
REGIONS = ("us-east-1", "eu-west-1")


def _entity(rng: random.Random, source: str, account: str) -> str:
    if source in ("vpc_flow", "route53"):
        return f"i-{rng.randrange(16 ** 12):012x}"[:14] if rng.random() < 0.1 else f"i-0{rng.randrange(400):03d}{account[-4:]}"
    return f"arn:aws:iam::{account}:user/user{rng.randrange(300):03d}"


def write_tree(root: Path, n: int, days: int, accounts: int, seed: int = 7) -> tuple[int, int, str]:
    """Write ``n`` findings under ``root``; returns ``(records, files, an entity that has findings)``."""
    from seclake_ml.scoring.findings import Candidate, build_findings
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts
    from seclake_ml.scoring.model_record import ActiveModel

    rng = random.Random(seed)
    accts = [f"{100000000000 + 111111111 * (i + 1):012d}" for i in range(accounts)]
    model = ActiveModel(version="ipinsights-20240101T0000Z-20240115T0000Z", threshold=0.6, backend="local",
                        severity_scale=1.0)
    start = datetime(2024, 1, 15, tzinfo=timezone.utc)
    scopes = [(s, r, a, d) for s in SOURCES for r in REGIONS for a in accts for d in range(days)]
    per_scope = n // len(scopes)
    extra = n - per_scope * len(scopes)
    records = files = 0
    probe_entity = None
    for i, (source, region, account, day) in enumerate(scopes):
        k = per_scope + (1 if i < extra else 0)
        day0 = start + timedelta(days=day)
        cands = []
        for _ in range(k):
            first = day0 + timedelta(seconds=rng.randrange(86_000))
            score = 0.6 + rng.expovariate(0.8)
            cands.append(Candidate(source=source, view=SOURCES[source], entity=_entity(rng, source, account),
                                   ip=f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                                   account=account, region=region, first_seen=first,
                                   last_seen=first + timedelta(seconds=rng.randrange(300)),
                                   events=rng.randrange(1, 50), dot_product=-score, score=score))
        probe_entity = probe_entity or cands[0].entity
        scope = f"aws/{source}/region={region}/accountId={account}/eventDay={day0:%Y%m%d}/obj-{i:05d}.parquet"
        recs = build_findings(cands, model=model, scope=scope, explanations={}, created_time=day0 + timedelta(days=1),
                              product_version="bench")
        for key, data in findings_parquet_parts(recs, file_stem=f"obj-{i:05d}"):
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files += 1
        records += len(recs)
    return records, files, probe_entity


def _median_ms(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up: imports, file cache
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--findings", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--accounts", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--deep-pages", type=int, default=20, help="pages walked (page size 50) to reach the deep page")
    ap.add_argument("--keep", help="write the tree here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()

    from seclake_ml.config import SeclakeConfig
    from seclake_ml.workspace.data import FindingsFilter, finding_detail, list_findings

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="seclake-workspace-bench-"))
    try:
        t = time.perf_counter()
        if not (root / "ext").is_dir():
            records, files, entity = write_tree(root, args.findings, args.days, args.accounts)
        else:
            records, files, entity = -1, sum(1 for _ in (root / "ext").rglob("*.parquet")), None
        print(f"tree {root}: {records} findings in {files} files, written in {time.perf_counter() - t:.1f} s")
        cfg = SeclakeConfig(lake_root=str(root), work_location=str(root / "work"))
        t = time.perf_counter()
        first = list_findings(cfg, page_size=50)
        print(f"first call of the process (imports, no footer cache): {(time.perf_counter() - t) * 1000:.0f} ms")
        entity = entity or first["rows"][0]["entity"]
        account = first["rows"][0]["account"]
        cursor = None
        for _ in range(args.deep_pages):
            cursor = list_findings(cfg, page_size=50, cursor=cursor)["next_cursor"]
        cases = {
            "no filter, first page": lambda: list_findings(cfg, page_size=50),
            f"entity = {entity}": lambda: list_findings(cfg, FindingsFilter(entity=entity), page_size=50),
            "entity prefix arn:aws:iam::": lambda: list_findings(
                cfg, FindingsFilter(entity="arn:aws:iam::", entity_match="prefix"), page_size=50),
            f"severity >= 4 + account {account}": lambda: list_findings(
                cfg, FindingsFilter(min_severity_id=4, account=account), page_size=50),
            f"deep page (page {args.deep_pages + 1}) via cursor": lambda: list_findings(cfg, page_size=50, cursor=cursor),
            "last 2 days (since filter)": lambda: list_findings(
                cfg, FindingsFilter(since=datetime(2024, 1, 15, tzinfo=timezone.utc) + timedelta(days=args.days - 2)),
                page_size=50),
        }
        print(f"list_findings, median of {args.repeat} (ms), total = matches:")
        for name, fn in cases.items():
            ms, out = _median_ms(fn, args.repeat)
            print(f"  {ms:8.1f} ms  total {out['total']:>7}  files read {out['files']:>4}  {name}")
        uid = first["rows"][-1]["uid"]
        ms, out = _median_ms(lambda: finding_detail(cfg, uid), args.repeat)
        print(f"finding_detail (one uid among all files), median of {args.repeat}: {ms:.1f} ms")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
