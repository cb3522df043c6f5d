"""The whole training DAG on the local backend under ``airflow dags test``.

query → prepare → train → calibrate → gate → roll out, on a generated lake whose injected anomalies
are known (the generator's ground truth). Checks: a model is activated with its threshold; its AUC on
the lake's own injected anomalies against held-out normal traffic is at least 0.95; the calibration
report exists; a deliberately broken candidate is stopped by the gate and the active version does not
change; consecutive weekly intervals give one version each, and re-running one interval rewrites only
that interval's outputs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests.airflow_env import airflow_env

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "seclake_ipinsights_training"
UTC = timezone.utc
LAKE_START, LAKE_DAYS, LAKE_SEED = "2023-12-25", 29, 21  # through 2024-01-22; anomalies from ~01-13
SOURCES = ["vpc_flow:instance_peer", "cloudtrail_signin:principal_ip", "cloudtrail_api:principal_ip"]
FAST_HP = {"epochs": 4, "vector_dim": 64, "num_entity_vectors": 4000}
BROKEN_HP = {"epochs": 1, "vector_dim": 4, "learning_rate": 0.000001, "num_entity_vectors": 100}

pytestmark = pytest.mark.e2e


def _env(home: Path, lake: Path, work: Path) -> dict[str, str]:
    return airflow_env(home, lake, work, {"backend": "local", "sources": SOURCES, "source_version": 1})


def _run(cmd: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd[:5]} failed (rc={proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc


def _dags_test(site: dict, logical_date: str, conf: dict) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, logical_date, "-c", json.dumps(conf)], site["env"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("training_e2e")
    env = _env(root / "airflow", root / "lake", root / "work")
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env)
    _run([sys.executable, "-m", "seclake_ml", "lake", "generate", "--root", str(root / "lake"), "--start", LAKE_START,
          "--days", str(LAKE_DAYS), "--seed", str(LAKE_SEED), "--flows-per-day", "4000", "--api-calls-per-day", "600",
          "--dns-per-day", "200", "--anomalies-per-kind", "12"], env)
    return {"env": env, "root": root, "work": root / "work", "lake": root / "lake"}


def _store(site: dict) -> Path:
    return site["work"] / "models" / "ipinsights"


def _active(site: dict) -> dict:
    return json.loads((_store(site) / "active.json").read_text())


def _ground_truth_auc(site: dict, active: dict, window: tuple[datetime, datetime]) -> tuple[float, int, int]:
    """AUC of the active model: injected anomalies vs normal held-out pairs, same window, known entities."""
    import pandas as pd

    from seclake_ml.ipinsights.metrics import roc_auc
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    scorer = IPInsightsScorer.load(active["model_dir"])
    key = f"interval={window[0]:%Y%m%dT%H%M%SZ}_{window[1]:%Y%m%dT%H%M%SZ}"
    holdout = pd.read_parquet(site["work"] / "training" / "data" / key / "holdout.parquet")
    truth = pd.read_parquet(site["lake"] / "ground_truth" / "anomalies.parquet")
    split = holdout["event_time"].min()
    truth = truth[(truth["event_time"] >= split) & (truth["event_time"] < window[1])]
    bad = set(zip(truth["entity"], truth["ip"]))
    normal = holdout[[pair not in bad for pair in zip(holdout["entity"], holdout["ip"])]]
    n = scorer.score(normal["entity"].to_numpy(object), normal["ip"].to_numpy(object))
    a = scorer.score(truth["entity"].to_numpy(object), truth["ip"].to_numpy(object))
    n_s = -n.dot_product[n.known_entity & n.valid_ip]
    a_s = -a.dot_product[a.known_entity & a.valid_ip]
    labels = np.r_[np.zeros(n_s.size, bool), np.ones(a_s.size, bool)]
    return roc_auc(labels, np.r_[n_s, a_s]), int(a_s.size), int(n_s.size)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_model_is_trained_calibrated_and_activated(site: dict) -> None:
    t0 = time.perf_counter()
    _dags_test(site, "2024-01-22T03:00:00+00:00", {"lookback_days": 14, "hyperparameters": FAST_HP})
    took = time.perf_counter() - t0
    active = _active(site)
    assert active["version"] == "ipinsights-20240108T0300Z-20240122T0300Z"
    assert np.isfinite(active["threshold"]) and active["metrics"]["auc"] >= 0.9
    report_dir = site["work"] / "training" / "calibration" / "interval=20240108T030000Z_20240122T030000Z"
    html = report_dir / "report.html"
    assert html.is_file() and "<img" in html.read_text() and "data:image/png;base64," in html.read_text()
    assert len(list(report_dir.glob("*.png"))) >= 2 and (report_dir / "metrics.json").is_file()
    auc, n_anom, n_norm = _ground_truth_auc(site, active, (datetime(2024, 1, 8, 3, tzinfo=UTC), datetime(2024, 1, 22, 3, tzinfo=UTC)))
    print(f"\nfirst training run: {took:.1f}s; ground-truth AUC {auc:.4f} on {n_anom} anomalies vs {n_norm} normal pairs")
    assert n_anom >= 10 and n_norm >= 1000
    assert auc >= 0.95


def test_broken_candidate_is_stopped_by_the_gate(site: dict) -> None:
    before = (_store(site) / "active.json").read_bytes()
    proc = _dags_test(site, "2024-01-22T03:00:00+00:00",
                      {"lookback_days": 13, "hyperparameters": BROKEN_HP})
    assert (_store(site) / "active.json").read_bytes() == before, "a rejected candidate must not change the active model"
    candidate = _store(site) / "versions" / "ipinsights-20240109T0300Z-20240122T0300Z"
    assert (candidate / "model.json").is_file()
    out = proc.stdout + proc.stderr
    assert "quality gate rejected ipinsights-20240109T0300Z-20240122T0300Z" in out
    assert "rollout skipped" in out


def test_consecutive_intervals_give_one_version_each_and_rerun_touches_only_its_own(site: dict) -> None:
    dates = ["2024-01-08T03:00:00+00:00", "2024-01-15T03:00:00+00:00", "2024-01-22T03:00:00+00:00"]
    for d in dates:
        _dags_test(site, d, {"lookback_days": 7, "hyperparameters": FAST_HP})
    versions = {p.name for p in (_store(site) / "versions").iterdir() if p.is_dir() and not p.name.startswith(".")}
    weekly = {"ipinsights-20240101T0300Z-20240108T0300Z", "ipinsights-20240108T0300Z-20240115T0300Z",
              "ipinsights-20240115T0300Z-20240122T0300Z"}
    assert weekly <= versions
    others = {v: _tree_digest(_store(site) / "versions" / v) for v in versions if v != "ipinsights-20240108T0300Z-20240115T0300Z"}
    pairs_before = {str(p): p.stat().st_mtime_ns for p in (site["work"] / "pairs").rglob("pairs.parquet")
                    if "20240108T030000Z_20240115T030000Z" not in str(p)}
    _dags_test(site, dates[1], {"lookback_days": 7, "hyperparameters": FAST_HP})
    assert {v: _tree_digest(_store(site) / "versions" / v) for v in others} == others
    assert {str(p): p.stat().st_mtime_ns for p in (site["work"] / "pairs").rglob("pairs.parquet")
            if "20240108T030000Z_20240115T030000Z" not in str(p)} == pairs_before
    after = {p.name for p in (_store(site) / "versions").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert after == versions, "re-running an interval must not add versions"
