"""Both scoring DAGs under real ``airflow dags test`` (migrated metadata DB) on the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from seclake_ml.scoring.findings_parquet import read_findings
from tests.airflow_env import airflow_env

from .conftest import SOURCES, drop_day

REPO = Path(__file__).resolve().parents[2]


def _env(home: Path, site: dict) -> dict[str, str]:
    config = {"backend": "local", "sources": SOURCES, "source_version": 1, "extra": {"scoring": {"chunk_rows": 2000}}}
    return airflow_env(home, site["lake"], site["work"], config)


def _run(cmd: list[str], env: dict[str, str], what: str, timeout: int = 400) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} failed (rc={proc.returncode}):\n{out[-6000:]}"
    print(f"{what}: {time.perf_counter() - t0:.1f}s")
    return out


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("airflow_scoring")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"))
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env, "airflow db migrate")
    return home


def _files(site: dict) -> dict[str, bytes]:
    ext = Path(site["lake"]) / "ext"
    return {p.relative_to(ext).as_posix(): p.read_bytes() for p in sorted(ext.rglob("*.parquet"))}


@pytest.mark.e2e
def test_scoring_dag_scores_a_dropped_day_and_backfill_dag_is_repeatable(airflow_home: Path, site: dict) -> None:
    env = _env(airflow_home, site)
    out = _run([sys.executable, "-m", "seclake_ml", "scoring", "adopt"], env, "scoring adopt")
    assert "as history" in out
    dropped = drop_day(site, date(2024, 3, 8))

    log = _run([sys.executable, "-m", "airflow", "dags", "test", "seclake_ipinsights_scoring"], env,
               "airflow dags test seclake_ipinsights_scoring")
    results = sorted((Path(site["work"]) / "scoring" / "batches").glob("*/result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    t = result["totals"]
    assert t["scored"] == len(dropped["objects"]) and t["failed"] == 0 and t["findings"] > 0
    # the operational log lines an on-call engineer reads
    for needle in ("handed off", "dropped by reason", "findings:", "seconds per stage", "findings under"):
        assert needle in log, needle
    streamed = _files(site)
    assert streamed and all(k.split("/")[3] == "eventDay=20240308" for k in streamed)
    uids = sorted(r["finding_info"]["uid"] for r in read_findings([str(Path(site["lake"]) / "ext")]))
    assert len(uids) == t["findings"] == len(set(uids))

    show = _run([sys.executable, "-m", "seclake_ml", "scoring", "show", "--truth", dropped["ground_truth"]], env,
                "scoring show")
    assert result["batch_id"] in show and "ground truth" in show

    # the daily batch DAG over the same day: same files (findings are keyed by object), twice
    cmd = [sys.executable, "-m", "airflow", "dags", "test", "seclake_ipinsights_batch_scoring", "2024-03-09"]  # interval [03-08, 03-09)
    _run(cmd, env, "airflow dags test seclake_ipinsights_batch_scoring (first)")
    interval = json.loads((Path(site["work"]) / "scoring" / "batches" / "interval-20240308T000000Z_20240309T000000Z"
                           / "result.json").read_text())
    assert interval["totals"]["scored"] == len(dropped["objects"])
    assert interval["totals"]["findings"] == t["findings"]
    first = _files(site)
    assert sorted(first) == sorted(streamed)
    _run(cmd, env, "airflow dags test seclake_ipinsights_batch_scoring (again)")
    again = _files(site)
    assert sorted(again) == sorted(first)
    uids_again = sorted(r["finding_info"]["uid"] for r in read_findings([str(Path(site["lake"]) / "ext")]))
    assert uids_again == uids
