"""The training DAG on the local backend: operator behaviour, then real ``airflow dags test`` runs.

The end-to-end part migrates a throwaway Airflow metadata DB once per session, generates a tiny
sample lake with the package CLI, runs the DAG for one weekly interval twice, and checks the pairs
files and the run summary: right paths, columns and counts, and a re-run that replaces instead of
appending.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.airflow_env import airflow_env

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "seclake_ipinsights_training"
PAIR_COLUMNS = {"entity", "ip", "event_time", "source"}
UTC = timezone.utc

# Tiny generated lake: 8 days hold the weekly interval [2024-01-01 03:00, 2024-01-08 03:00).
LAKE_START, LAKE_DAYS, LAKE_SEED = "2024-01-01", 8, 11
RUN_DATE = "2024-01-08T03:00:00+00:00"
INTERVAL = "interval=20240101T030000Z_20240108T030000Z"
SOURCES = ["vpc_flow:instance_peer", "route53:instance_resolved_ip", "cloudtrail_signin:principal_ip", "cloudtrail_api:principal_ip"]


# ------------------------------------------------------------------------------ operator (unit)
def test_operator_init_validates_source_and_view() -> None:
    from seclake_ml.operators import SecurityLakePairsOperator

    with pytest.raises(ValueError, match=r"source: got 'vpc'; allowed: vpc_flow, route53, cloudtrail_signin, cloudtrail_api"):
        SecurityLakePairsOperator(task_id="t", source="vpc")
    with pytest.raises(ValueError, match=r"view: got 'nope' for source 'vpc_flow'; allowed: instance_peer"):
        SecurityLakePairsOperator(task_id="t", source="vpc_flow", view="nope")
    with pytest.raises(ValueError, match="config_overrides"):
        SecurityLakePairsOperator(task_id="t", source="vpc_flow", config_overrides=["dedupe"])
    # Templates are checked after rendering, not at parse time.
    op = SecurityLakePairsOperator(task_id="t", source="{{ params.source }}", view="{{ params.view }}")
    assert op.source == "{{ params.source }}"
    assert set(SecurityLakePairsOperator.template_fields) == {"source", "view", "start", "end", "out", "config_overrides"}


def test_plan_uses_config_or_param_sources() -> None:
    from seclake_ml.config import load_config
    from seclake_ml.interval import DataInterval
    from seclake_ml.runs import plan_pair_extractions

    cfg = load_config({"sources": ["vpc_flow", "cloudtrail_api"]}, environ={})
    window = DataInterval(datetime(2024, 1, 1, 3, tzinfo=UTC), datetime(2024, 1, 8, 3, tzinfo=UTC))
    plan = plan_pair_extractions(cfg, window)
    assert plan == [
        {"source": "vpc_flow", "view": "instance_peer", "start": "2024-01-01T03:00:00Z", "end": "2024-01-08T03:00:00Z"},
        {"source": "cloudtrail_api", "view": "principal_ip", "start": "2024-01-01T03:00:00Z", "end": "2024-01-08T03:00:00Z"},
    ]
    assert [p["view"] for p in plan_pair_extractions(cfg, window, ["route53", "route53:instance_resolved_ip"])] == [
        "instance_resolved_ip"
    ]
    with pytest.raises(ValueError, match="param 'sources': unknown source 'dns'"):
        plan_pair_extractions(cfg, window, ["dns"])


@pytest.fixture()
def sample_lake(tmp_path: Path, reference_dir: Path) -> Path:
    """The AWS-written VPC flow sample (one inbound flow on 2022-04-12) in the Security Lake layout."""
    part = tmp_path / "lake/aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20220412"
    part.mkdir(parents=True)
    shutil.copy(reference_dir / "securitylake-parquet" / "vpc_flow_example0.gz.parquet", part)
    return tmp_path / "lake"


def test_operator_execute_writes_interval_keyed_output(sample_lake: Path, tmp_path: Path, monkeypatch, capfd) -> None:
    import pyarrow.parquet as pq

    from seclake_ml import airflow_support
    from seclake_ml.operators import SecurityLakePairsOperator

    for key in [k for k in os.environ if k.startswith("SECLAKE_ML_")]:
        monkeypatch.delenv(key)
    # The Airflow Variable wins over the environment JSON; overrides win over both.
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps({"lake_root": "/nonexistent", "work_location": "/nonexistent"}))
    variable = {"lake_root": str(sample_lake), "work_location": str(tmp_path / "work"), "dedupe": False}
    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": json.dumps(variable))
    ctx = {"data_interval_start": datetime(2022, 4, 11, 3, tzinfo=UTC), "data_interval_end": datetime(2022, 4, 18, 3, tzinfo=UTC)}
    op = SecurityLakePairsOperator(task_id="t", source="vpc_flow", config_overrides={"dedupe": True})
    first = op.execute(ctx)
    expected = tmp_path / "work/pairs/vpc_flow/instance_peer/interval=20220411T030000Z_20220418T030000Z/pairs.parquet"
    assert first["output"] == str(expected) and expected.is_file()
    assert (first["rows_read"], first["pairs_written"], sum(first["dropped"].values())) == (1, 1, 0)
    assert json.loads(json.dumps(first)) == first, "the XCom value must be plain JSON"
    logged = "".join(capfd.readouterr())
    assert "pairs vpc_flow/instance_peer [2022-04-11T03:00:00Z, 2022-04-18T03:00:00Z): 1 rows read, 1 pairs written, 0 dropped" in logged
    table = pq.read_table(expected)
    assert PAIR_COLUMNS <= set(table.column_names)
    assert table.num_rows == 1 and table["ip"].to_pylist() == ["1.2.3.4"]
    # Re-run: same file, replaced rather than appended.
    second = op.execute(ctx)
    assert second["output"] == first["output"] and pq.read_table(expected).num_rows == 1
    assert sorted(p.name for p in expected.parent.iterdir()) == ["pairs.parquet"]


# ---------------------------------------------------------------------------- end to end (DAG)
def _airflow_env(home: Path, lake: Path, work: Path) -> dict[str, str]:
    return airflow_env(home, lake, work, {"backend": "local", "sources": SOURCES, "source_version": 1})


def _run(cmd: list[str], env: dict[str, str], timeout: int, what: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, f"{what} failed (rc={proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc, took


@pytest.fixture(scope="session")
def airflow_site(tmp_path_factory) -> dict[str, object]:
    """A migrated Airflow home, a tiny generated lake and a work folder, shared by the session."""
    root = tmp_path_factory.mktemp("airflow_e2e")
    env = _airflow_env(root / "airflow", root / "lake", root / "work")
    _, migrate_s = _run([sys.executable, "-m", "airflow", "db", "migrate"], env, 300, "airflow db migrate")
    _, lake_s = _run(
        [sys.executable, "-m", "seclake_ml", "lake", "generate", "--root", str(root / "lake"), "--start", LAKE_START,
         "--days", str(LAKE_DAYS), "--seed", str(LAKE_SEED), "--source-version", "1", "--flows-per-day", "3000",
         "--api-calls-per-day", "300", "--workers", "2"],
        env, 300, "lake generate",
    )
    print(f"\nairflow db migrate: {migrate_s:.1f}s; lake generate ({LAKE_DAYS} days): {lake_s:.1f}s")
    return {"env": env, "work": root / "work", "migrate_s": migrate_s}


def _pairs_files(work: Path) -> dict[str, Path]:
    return {f"{p.parts[-4]}:{p.parts[-3]}": p for p in sorted((work / "pairs").glob("*/*/interval=*/pairs.parquet"))}


@pytest.mark.e2e
def test_dag_run_writes_pairs_and_rerun_overwrites(airflow_site, record_property) -> None:
    import pyarrow.parquet as pq

    env, work = airflow_site["env"], airflow_site["work"]
    cmd = [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, RUN_DATE]
    _, first_s = _run(cmd, env, 600, "airflow dags test (first run)")

    files = _pairs_files(work)
    assert set(files) == set(SOURCES), f"expected one pairs file per enabled source view, got {sorted(files)}"
    counts = {}
    for name, path in files.items():
        assert path.parent.name == INTERVAL, path
        table = pq.read_table(path)
        assert PAIR_COLUMNS <= set(table.column_names), f"{name}: columns {table.column_names}"
        assert set(table["source"].to_pylist()) <= {name.split(":")[0]}
        times = table["event_time"].to_pylist()
        assert all(datetime(2024, 1, 1, 3, tzinfo=UTC) <= t < datetime(2024, 1, 8, 3, tzinfo=UTC) for t in times), name
        counts[name] = table.num_rows
    assert counts["vpc_flow:instance_peer"] > 0 and counts["cloudtrail_signin:principal_ip"] > 0, counts
    assert sum(counts.values()) > 0

    summary_path = work / "runs" / DAG_ID / INTERVAL / "extract_summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["totals"]["pairs_written"] == sum(counts.values())
    assert {f"{r['source']}:{r['view']}": r["pairs_written"] for r in summary["extractions"]} == counts
    assert summary["backend"] == "local" and summary["start"].startswith("2024-01-01T03:00:00")

    mtimes = {name: p.stat().st_mtime_ns for name, p in files.items()}
    time.sleep(0.05)
    _, second_s = _run(cmd, env, 600, "airflow dags test (re-run)")
    again = _pairs_files(work)
    assert set(again) == set(files), "a re-run must not create new outputs"
    for name, path in again.items():
        assert pq.read_table(path).num_rows == counts[name], f"{name}: re-run changed the row count"
        assert path.stat().st_mtime_ns > mtimes[name], f"{name}: re-run did not rewrite the file"
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".quarantine.json")) == ["pairs.parquet"]
    record_property("dags_test_first_s", round(first_s, 1))
    record_property("dags_test_rerun_s", round(second_s, 1))
    print(f"\nairflow dags test: first run {first_s:.1f}s, re-run {second_s:.1f}s; pairs {counts}")
