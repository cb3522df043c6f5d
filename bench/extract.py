"""Extraction benchmark: DuckDB query layer vs the notebook way (pandas/pyarrow), side by side.

Generates (or reuses) a sample lake with at least ``--rows`` VPC flow rows, then extracts the
direction-aware ``vpc_flow:instance_peer`` pairs for the whole period three ways:

1. ``extract_pairs`` on the local backend (DuckDB over the Parquet tree),
2. the limit: one DuckDB query projecting the same columns to Parquet with no checks at all,
3. a pandas/pyarrow version that reads the files into a DataFrame and filters in pandas, the way a
   notebook does it (struct columns arrive as Python dicts).

The two DuckDB paths run ``--repeat`` times, alternating, with their libraries imported beforehand,
and the best run of each is reported (the pandas path runs once: it takes tens of seconds). Both
extractions must produce the same number of pairs; the script prints rows/s for each and the
ratios. It also
prints each DAG file's import time, measured in a fresh interpreter after Airflow itself is imported
(the scheduler's DAG processor has Airflow loaded already).

Usage: ``python bench/extract.py [--rows 5000000] [--root var/bench-lake] [--repeat 3] [--skip-pandas]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))


def ensure_lake(root: Path, rows: int, days: int, seed: int) -> dict:
    manifest = root / "ground_truth" / "manifest.json"
    if manifest.exists():
        info = json.loads(manifest.read_text())
        if info.get("bench_rows") == rows and info.get("bench_days") == days:
            return info
    from seclake_lakegen.generate import generate_lake

    t0 = time.perf_counter()
    summary = generate_lake(root, start=date(2026, 1, 5), days=days, seed=seed, source_version=1,
                            flows_per_day=-(-rows // days), api_calls_per_day=2000,
                            dns_per_day=2000, instances_per_vpc=40, overwrite=True)
    took = time.perf_counter() - t0
    info = json.loads(manifest.read_text())
    info.update(bench_rows=rows, bench_days=days)
    manifest.write_text(json.dumps(info, default=str))
    print(f"generated lake in {took:.1f}s: {json.dumps(summary.get('rows', summary), default=str)[:300]}")
    return info


def bench_duckdb(root: Path, start: datetime, end: datetime, out: Path) -> tuple[float, int, int]:
    from seclake_ml.config import load_config
    from seclake_ml.extraction import extract_pairs

    cfg = load_config({"lake_root": str(root), "work_location": str(out.parent)}, environ={})
    t0 = time.perf_counter()
    res = extract_pairs(cfg, "vpc_flow", "instance_peer", start, end, str(out))
    return time.perf_counter() - t0, res.rows_read, res.pairs_written


def bench_plain_projection(root: Path, start: datetime, end: datetime, out: Path) -> tuple[float, int]:
    """The limit: one DuckDB query that projects the same direction-aware entity/IP columns of the
    same files to Parquet, with no validation, drop counting or quarantine."""
    import duckdb

    from seclake_ml.lake.duck import READ_FILES, column_resolver, find_files, probe_files
    from seclake_ml.pairs import render_view_sql

    t0 = time.perf_counter()
    files, _ = find_files(root, "VPC_FLOW", 1, start, end)
    probed = probe_files(files, "time")
    r = render_view_sql("vpc_flow", "instance_peer", 1, column_resolver(probed.paths, None, []))
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT CAST({r['entity']} AS VARCHAR) AS entity, CAST({r['ip']} AS VARCHAR) AS ip, "
        f"to_timestamp({r['time']} / 1000.0) AS event_time, 'vpc_flow' AS source, CAST(accountid AS VARCHAR) AS account, "
        f"CAST(region AS VARCHAR) AS region FROM {READ_FILES} AS t WHERE t.time >= $s AND t.time < $e) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)",
        {"files": probed.good, "s": int(start.timestamp() * 1000), "e": int(end.timestamp() * 1000)},
    )
    rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
    con.close()
    return time.perf_counter() - t0, int(rows)


def bench_pandas(root: Path, start: datetime, end: datetime, out: Path) -> tuple[float, int, int]:
    """Read every flow file into pandas, then select and clean the pairs with pandas operations."""
    import numpy as np
    import pandas as pd

    from seclake_ml.pairs import IPV4_RE

    t0 = time.perf_counter()
    files = sorted((root / "aws" / "VPC_FLOW" / "1.0").rglob("*.parquet"))
    frames = []
    for f in files:
        df = pd.read_parquet(f, columns=["time", "src_endpoint", "dst_endpoint", "connection_info", "class_uid"])
        parts = f.parts
        df["account"] = next(p.split("=", 1)[1] for p in parts if p.startswith("accountId="))
        df["region"] = next(p.split("=", 1)[1] for p in parts if p.startswith("region="))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    rows_total = len(df)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    df = df[(df["time"] >= start_ms) & (df["time"] < end_ms) & (df["class_uid"] == 4001)]
    src_inst = df["src_endpoint"].map(lambda d: d.get("instance_uid"))
    dst_inst = df["dst_endpoint"].map(lambda d: d.get("instance_uid"))
    src_ip = df["src_endpoint"].map(lambda d: d.get("ip"))
    dst_ip = df["dst_endpoint"].map(lambda d: d.get("ip"))
    direction = df["connection_info"].map(lambda d: d.get("direction_id"))
    inbound, outbound = direction == 1, direction == 2
    entity = np.where(inbound, dst_inst, np.where(outbound, src_inst, src_inst.fillna(dst_inst)))
    ip = np.where(inbound, src_ip, np.where(outbound, dst_ip, np.where(src_inst.notna(), dst_ip, src_ip)))
    pairs = pd.DataFrame({"entity": entity, "ip": ip, "time": df["time"].to_numpy(),
                          "account": df["account"].to_numpy(), "region": df["region"].to_numpy()})
    rows_read = len(pairs)
    ok = (
        pairs["entity"].notna() & pairs["ip"].notna() & (pairs["entity"] != "") & (pairs["ip"] != "")
        & (pairs["entity"] != "-") & (pairs["ip"] != "-")
        & (pairs["entity"].str.len() <= 512) & (pairs["ip"].str.len() <= 64)
        & ~pairs["entity"].str.contains(r"[\x00-\x1f\x7f]", regex=True, na=False)
        & ~pairs["ip"].str.contains(":", regex=False, na=False)
        & pairs["ip"].str.fullmatch(IPV4_RE, na=False)
    )
    good = pairs[ok].copy()
    good["event_time"] = pd.to_datetime(good["time"], unit="ms", utc=True)
    good["source"] = "vpc_flow"
    good = good.sort_values(["event_time", "entity", "ip"])[["entity", "ip", "event_time", "source", "account", "region"]]
    good.to_parquet(out, compression="zstd", index=False)
    del rows_total
    return time.perf_counter() - t0, rows_read, len(good)


def dag_import_times() -> list[tuple[str, float, float]]:
    out = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    code = (
        "import sys, time, runpy\n"
        "t0 = time.perf_counter(); import airflow.sdk; t1 = time.perf_counter()\n"
        "runpy.run_path(sys.argv[1]); t2 = time.perf_counter()\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'duckdb', 'pyarrow', 'sklearn', 'matplotlib') if m in sys.modules)\n"
        "print(f'{t1 - t0:.4f} {t2 - t1:.4f} {\",\".join(heavy) or \"-\"}')\n"
    )
    for dag in sorted((REPO / "dags").glob("*.py")):
        proc = subprocess.run([sys.executable, "-c", code, str(dag)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"  {dag.name}: import failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        airflow_s, dag_s, heavy = proc.stdout.split()
        out.append((dag.name, float(airflow_s), float(dag_s)))
        print(f"  {dag.name:40s} {float(dag_s) * 1000:8.1f} ms  (airflow.sdk itself {float(airflow_s):.2f} s; heavy modules loaded: {heavy})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000, help="VPC flow rows in the lake (at least)")
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--root", default=str(REPO / "var" / "bench-lake"))
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the DuckDB paths, alternating; the best is reported")
    args = ap.parse_args()

    root = Path(args.root)
    ensure_lake(root, args.rows, args.days, args.seed)
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    end = start + timedelta(days=args.days)
    work = root.parent / "bench-work"
    work.mkdir(parents=True, exist_ok=True)

    print(f"\nextraction of vpc_flow:instance_peer over [{start.date()} .. {end.date()}), {os.cpu_count()} CPUs, "
          f"best of {args.repeat} alternating runs")
    import duckdb  # noqa: F401 - imported before timing: neither path pays for it
    import pyarrow.parquet  # noqa: F401

    d_runs, l_runs = [], []
    for _ in range(max(1, args.repeat)):
        d_runs.append(bench_duckdb(root, start, end, work / "duck.parquet"))
        l_runs.append(bench_plain_projection(root, start, end, work / "plain.parquet"))
    d_s, d_rows, d_pairs = min(d_runs)
    l_s, l_rows = min(l_runs)
    print(f"  duckdb        {d_s:8.2f} s  rows {d_rows:>11,}  pairs {d_pairs:>11,}  {d_rows / d_s:>12,.0f} rows/s"
          f"   (runs: {', '.join(f'{r[0]:.2f}' for r in d_runs)} s)")
    print(f"  plain proj.   {l_s:8.2f} s  rows {l_rows:>11,}  (no checks)       {l_rows / l_s:>12,.0f} rows/s"
          f"   (runs: {', '.join(f'{r[0]:.2f}' for r in l_runs)} s)")
    print(f"  extraction takes {d_s / l_s:.2f}x the plain projection's time "
          f"(per run: {', '.join(f'{d[0] / l[0]:.2f}x' for d, l in zip(d_runs, l_runs))})")
    if not args.skip_pandas:
        p_s, p_rows, p_pairs = bench_pandas(root, start, end, work / "pandas.parquet")
        print(f"  pandas        {p_s:8.2f} s  rows {p_rows:>11,}  pairs {p_pairs:>11,}  {p_rows / p_s:>12,.0f} rows/s")
        same = (p_rows, p_pairs) == (d_rows, d_pairs)
        print(f"  ratio duckdb/pandas: {p_s / d_s:.1f}x faster   (same rows and pairs: {same})")
        if not same:
            print("  WARNING: the two extractions disagree; the ratio compares different work")
    print("\nDAG file import times (fresh interpreter, after airflow.sdk is imported):")
    dag_import_times()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
