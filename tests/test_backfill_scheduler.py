"""A real Airflow 3 backfill of the training DAG, executed by a running scheduler.

In Airflow 3 ``airflow backfill create`` only records the backfill and its queued ``backfill__…`` runs;
the scheduler runs them, and the LocalExecutor's task runners report through the API server's
Execution API. This test starts scheduler, dag-processor and api-server as subprocesses on a temporary
``AIRFLOW_HOME`` (SQLite, LocalExecutor) with a generated lake, backfills three weekly intervals and
checks the outputs: one model version and one pairs folder per interval. It then reprocesses only the
middle interval and checks that nothing keyed by the other two intervals changed and that no version
was added.

Scheduled (non-backfill) runs are switched off with ``[scheduler] use_job_schedule = False``: the DAG
has to be unpaused for the scheduler to queue backfill tasks, and without the switch the scheduler
would also start the latest regular interval, for which the lake holds no data.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "seclake_ipinsights_training"
LAKE_START, LAKE_DAYS, LAKE_SEED = "2023-12-25", 29, 21  # 2023-12-25 .. 2024-01-22
SOURCES = ["vpc_flow:instance_peer", "cloudtrail_signin:principal_ip", "cloudtrail_api:principal_ip"]
RUN_CONF = {"lookback_days": 7, "hyperparameters": {"epochs": 2, "vector_dim": 32, "num_entity_vectors": 2000}}

# The backfill window is inclusive and holds logical dates (= data_interval_start for this timetable).
FROM_DATE, TO_DATE = "2024-01-01T03:00:00+00:00", "2024-01-15T03:00:00+00:00"
MIDDLE_DATE = "2024-01-08T03:00:00+00:00"
LOGICAL_DATES = ["2024-01-01T03:00:00+00:00", MIDDLE_DATE, "2024-01-15T03:00:00+00:00"]
VERSIONS = ["ipinsights-20240101T0300Z-20240108T0300Z", "ipinsights-20240108T0300Z-20240115T0300Z",
            "ipinsights-20240115T0300Z-20240122T0300Z"]
INTERVALS = ["20240101T030000Z_20240108T030000Z", "20240108T030000Z_20240115T030000Z",
             "20240115T030000Z_20240122T030000Z"]
MIDDLE = 1

RUNS_TIMEOUT_S = 15 * 60
TERMINAL = {"success", "failed"}

pytestmark = pytest.mark.e2e


# ----------------------------------------------------------------------------------------------
# environment and processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, lake: Path, work: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SECLAKE_ML_"))}
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join([venv_bin, env.get("PATH", "")]),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__PARALLELISM="2",  # the machine is small; the three mapped extracts still overlap
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        # One secret shared by the token issuer (scheduler) and the validator (api-server).
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        # Parse once at start-up; no need to re-parse an unchanged file every 30 s during the test.
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="600",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])),
        SECLAKE_ML_CONFIG=json.dumps({"backend": "local", "sources": SOURCES, "source_version": 1}),
        SECLAKE_ML_LAKE_ROOT=str(lake),
        SECLAKE_ML_WORK_LOCATION=str(work),
        SECLAKE_ML_RETRY_DELAY_SECONDS="1",
    )
    return env


def _airflow(site: dict, *args: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "airflow", *args]
    proc = subprocess.run(cmd, env=site["env"], cwd=site["root"], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"airflow {' '.join(args[:3])} failed (rc={proc.returncode}):\n"
                    f"{(proc.stdout + proc.stderr)[-4000:]}{_diagnostics(site)}")
    return proc


def _json_out(text: str):
    """The first JSON document in a CLI's stdout (log lines may precede it)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON in CLI output:\n{text[-2000:]}")


def _start(site: dict, name: str, *args: str) -> None:
    log = open(site["logs"] / f"{name}.log", "wb")  # noqa: SIM115 - closed in _stop_all
    proc = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=site["env"], cwd=site["root"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    site["procs"][name] = (proc, log)


def _stop_all(site: dict) -> None:
    procs = site["procs"]
    for proc, _ in procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for proc, _ in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc, log in procs.values():
        try:  # the group may hold task runners even after its leader exited
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        log.close()


# ----------------------------------------------------------------------------------------------
# state, read from the metadata database (cheap polling) and confirmed through the CLI


def _db(site: dict, sql: str, params: tuple = ()) -> list[tuple]:
    db = site["home"] / "airflow.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # table not there yet / busy
        return []
    finally:
        con.close()


def _runs_cli(site: dict) -> dict[str, dict]:
    """Runs of the DAG by logical date, from ``airflow dags list-runs``."""
    runs = _json_out(_airflow(site, "dags", "list-runs", DAG_ID, "-o", "json").stdout)
    return {r["logical_date"]: r for r in runs}


def _run_rows(site: dict) -> dict[str, tuple[str, str, str | None]]:
    """logical date -> (run_id, state, end_date) of backfill runs, from the metadata DB."""
    rows = _db(site, "SELECT run_id, state, end_date, logical_date FROM dag_run "
                     "WHERE dag_id = ? AND run_type = 'backfill'", (DAG_ID,))
    return {_iso(logical_date): (run_id, state, end_date) for run_id, state, end_date, logical_date in rows}


def _iso(value: str) -> str:
    """'2024-01-01 03:00:00[.000000][+00:00]' (as stored or printed) -> '2024-01-01T03:00:00+00:00'."""
    dt = datetime.fromisoformat(value.strip())
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def _tail(path: Path, n: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<{exc}>"
    return data[-n:].decode(errors="replace")


def _diagnostics(site: dict) -> str:
    parts = []
    for name, (proc, _) in site.get("procs", {}).items():
        parts.append(f"\n===== {name} (exit={proc.poll()}) log tail =====\n{_tail(site['logs'] / f'{name}.log')}")
    bad = _db(site, "SELECT run_id, task_id, map_index, try_number, state FROM task_instance "
                    "WHERE dag_id = ? AND state IN ('failed', 'upstream_failed', 'up_for_retry') "
                    "ORDER BY end_date DESC", (DAG_ID,))
    parts.append(f"\n===== task instances not ok: {bad[:10]}")
    task_logs = site["home"] / "logs"
    picked: list[Path] = []
    for run_id, task_id, map_index, _, state in bad[:3]:
        if state == "upstream_failed":
            continue
        folder = task_logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        picked += sorted(folder.glob("attempt=*.log"), key=lambda p: p.stat().st_mtime)[-1:]
    if not picked and task_logs.is_dir():
        picked = sorted(task_logs.rglob("attempt=*.log"), key=lambda p: p.stat().st_mtime)[-2:]
    for path in picked:
        parts.append(f"\n===== task log {path.relative_to(task_logs)} =====\n{_tail(path, 2500)}")
    return "".join(parts)


def _check_alive(site: dict) -> None:
    dead = {name: proc.returncode for name, (proc, _) in site["procs"].items() if proc.poll() is not None}
    if dead:
        pytest.fail(f"Airflow component(s) exited: {dead}{_diagnostics(site)}")


def _wait(site: dict, what: str, ready, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        _check_alive(site)
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{_diagnostics(site)}")
        time.sleep(every)


def _api_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # answering, whatever it says
    except OSError:
        return False


def _wait_for_runs(site: dict, dates: list[str], newer_than: dict[str, str | None] | None = None) -> dict:
    """Wait until the backfill runs for ``dates`` are finished (and, if given, finished anew)."""
    newer_than = newer_than or {}

    def finished():
        rows = _run_rows(site)
        if all(d in rows and rows[d][1] in TERMINAL and rows[d][2] is not None
               and rows[d][2] != newer_than.get(d) for d in dates):
            return rows
        return None

    _wait(site, f"backfill runs {dates} to finish", finished, RUNS_TIMEOUT_S, every=5)
    runs = _runs_cli(site)  # confirm through the CLI
    missing = [d for d in dates if d not in runs]
    assert not missing, f"runs missing from `airflow dags list-runs`: {missing}; got {sorted(runs)}"
    states = {d: runs[d]["state"] for d in dates}
    assert all(s == "success" for s in states.values()), f"backfill runs not all successful: {states}{_diagnostics(site)}"
    return runs


def _backfill(site: dict, from_date: str, to_date: str, *extra: str) -> tuple[list[str], list[str]]:
    """The logical dates a dry run plans, and the arguments for the real call."""
    args = ["backfill", "create", "--dag-id", DAG_ID, "--from-date", from_date, "--to-date", to_date,
            "--dag-run-conf", json.dumps(RUN_CONF), "--max-active-runs", "1", *extra]
    dry = _airflow(site, *args, "--dry-run").stdout
    planned = sorted(_iso(line.split("|")[1]) for line in dry.splitlines()
                     if line.startswith("|") and "+00:00" in line)
    return planned, args


def _create_backfill(site: dict, args: list[str], wait_s: int = 240) -> None:
    """Create the backfill; while the scheduler has not yet marked an earlier, finished backfill as
    completed, Airflow refuses a second one (AlreadyRunningBackfill), so try again for a while. The
    metadata DB is SQLite, shared with the running scheduler: a write that meets the scheduler's
    transaction fails with "database is locked" and is tried again too."""
    deadline = time.monotonic() + wait_s
    while True:
        proc = _airflow(site, *args, check=False)
        if proc.returncode == 0:
            return
        output = proc.stdout + proc.stderr
        transient = "AlreadyRunningBackfill" in output or "database is locked" in output
        if not transient or time.monotonic() > deadline:
            pytest.fail(f"airflow backfill create failed (rc={proc.returncode}):\n"
                        f"{(proc.stdout + proc.stderr)[-4000:]}{_diagnostics(site)}")
        time.sleep(5)


# ----------------------------------------------------------------------------------------------
# outputs


def _store(site: dict) -> Path:
    return site["work"] / "models" / "ipinsights" / "versions"


def _versions(site: dict) -> set[str]:
    store = _store(site)
    return {p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")} if store.is_dir() else set()


def _snapshot(site: dict) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every output file."""
    return {str(p.relative_to(site["work"])): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(site["work"].rglob("*")) if p.is_file()}


def _keyed(snapshot: dict, index: int) -> dict:
    """Files that belong to one interval: its model version and everything under its interval folders."""
    keys = (VERSIONS[index], f"interval={INTERVALS[index]}")
    return {k: v for k, v in snapshot.items() if any(key in k for key in keys)}


def _pairs_intervals(site: dict) -> dict[str, list[str]]:
    """source/view -> interval folders holding a pairs file."""
    out: dict[str, list[str]] = {}
    for f in sorted((site["work"] / "pairs").rglob("pairs.parquet")):
        view = str(f.parent.parent.relative_to(site["work"] / "pairs"))
        out.setdefault(view, []).append(f.parent.name)
    return out


# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("backfill_e2e")
    home, lake, work, logs = root / "airflow", root / "lake", root / "work", root / "component_logs"
    for d in (home, logs):
        d.mkdir()
    port = _free_port()
    s = {"root": root, "home": home, "lake": lake, "work": work, "logs": logs, "port": port,
         "env": _env(home, lake, work, port), "procs": {}, "done": set()}
    t0 = time.perf_counter()
    _airflow(s, "db", "migrate")
    gen = subprocess.run(
        [sys.executable, "-m", "seclake_ml", "lake", "generate", "--root", str(lake), "--start", LAKE_START,
         "--days", str(LAKE_DAYS), "--seed", str(LAKE_SEED), "--flows-per-day", "4000", "--api-calls-per-day",
         "600", "--dns-per-day", "200", "--anomalies-per-kind", "12"],
        env=s["env"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert gen.returncode == 0, f"lake generation failed:\n{(gen.stdout + gen.stderr)[-4000:]}"
    try:
        _start(s, "api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        _start(s, "dag-processor", "dag-processor")
        _start(s, "scheduler", "scheduler")
        _wait(s, "the DAG to be parsed and serialized",
              lambda: _db(s, "SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)), 300)
        _wait(s, f"the api-server on port {port}", lambda: _api_up(port), 180)
        _wait(s, "a running scheduler job",
              lambda: _db(s, "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'"), 120)
        listed = _json_out(_airflow(s, "dags", "list", "-o", "json").stdout)
        assert DAG_ID in {d["dag_id"] for d in listed}, f"{DAG_ID} not in `airflow dags list`: {listed}"
        _airflow(s, "dags", "unpause", DAG_ID)
        print(f"\nstack ready in {time.perf_counter() - t0:.1f}s (api-server on 127.0.0.1:{port})")
        yield s
    finally:
        _stop_all(s)


def test_backfill_runs_three_weekly_intervals_through_the_scheduler(site: dict) -> None:
    planned, args = _backfill(site, FROM_DATE, TO_DATE)
    assert planned == LOGICAL_DATES, f"dry run plans {planned}, expected {LOGICAL_DATES}"
    t0 = time.perf_counter()
    _create_backfill(site, args)
    rows = _run_rows(site)
    assert sorted(rows) == LOGICAL_DATES, f"backfill created runs {sorted(rows)}"
    assert all(r[0].startswith("backfill__") for r in rows.values())
    _wait_for_runs(site, LOGICAL_DATES)
    print(f"first backfill (3 runs) finished in {time.perf_counter() - t0:.1f}s")

    assert _versions(site) == set(VERSIONS), f"model versions: {sorted(_versions(site))}{_diagnostics(site)}"
    for v in VERSIONS:
        assert (_store(site) / v / "model.json").is_file(), f"{v} has no model.json"
    pairs = _pairs_intervals(site)
    assert len(pairs) == len(SOURCES), f"pairs source views: {sorted(pairs)}"
    for view, intervals in pairs.items():
        assert intervals == [f"interval={i}" for i in INTERVALS], f"{view}: {intervals}"
    site["done"].add("first")


def test_reprocessing_the_middle_interval_touches_only_its_outputs(site: dict) -> None:
    if "first" not in site["done"]:
        pytest.skip("needs the first backfill")
    before = _snapshot(site)
    versions_before = _versions(site)
    ended_before = {d: r[2] for d, r in _run_rows(site).items()}
    planned, args = _backfill(site, MIDDLE_DATE, MIDDLE_DATE, "--reprocess-behavior", "completed")
    assert planned == [MIDDLE_DATE], f"dry run plans {planned}"
    t0 = time.perf_counter()
    _create_backfill(site, args)
    _wait_for_runs(site, [MIDDLE_DATE], newer_than={MIDDLE_DATE: ended_before[MIDDLE_DATE]})
    print(f"second backfill (middle interval) finished in {time.perf_counter() - t0:.1f}s")

    after = _snapshot(site)
    assert _versions(site) == versions_before, f"versions changed: {sorted(versions_before)} -> {sorted(_versions(site))}"
    runs = _run_rows(site)
    assert sorted(runs) == LOGICAL_DATES, f"runs after reprocessing: {sorted(runs)}"
    for i in (0, 2):
        assert _keyed(after, i) == _keyed(before, i), f"outputs of interval {INTERVALS[i]} changed"
        assert _keyed(before, i), f"no outputs found for interval {INTERVALS[i]}"
        assert runs[LOGICAL_DATES[i]][2] == ended_before[LOGICAL_DATES[i]], f"run {LOGICAL_DATES[i]} was re-run"
    mid_before, mid_after = _keyed(before, MIDDLE), _keyed(after, MIDDLE)
    assert set(mid_after) == set(mid_before), "the middle interval's file set changed"
    rewritten = [k for k in mid_after if "pairs.parquet" in k or k.endswith("model.json")]
    assert rewritten and all(mid_after[k][1] > mid_before[k][1] for k in rewritten), \
        "the middle interval's pairs/model were not rewritten"
