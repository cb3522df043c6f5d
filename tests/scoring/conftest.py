"""A small generated lake, a model trained on its first days (with profile), and a scoring config.

The lake holds ``TRAIN_DAYS`` days generated with one seed; the model is trained on their pairs and
activated in a local model store. Tests then drop new days (same seed, same world) and score them.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

SEED = 11
TRAIN_START = date(2024, 3, 4)
TRAIN_DAYS = 4
# the lake folders these tests score (the data-event folders have tests of their own: test_data_events.py)
SCALE = dict(flows_per_day=4000, dns_per_day=500, api_calls_per_day=800, instances_per_vpc=6, workers=1,
             sources=("vpc_flow", "route53", "cloudtrail"))
SOURCES = ["vpc_flow:instance_peer", "route53:instance_resolved_ip", "cloudtrail_signin:principal_ip",
           "cloudtrail_api:principal_ip"]
HP = dict(num_entity_vectors=2000, vector_dim=32, epochs=3, mini_batch_size=500, learning_rate=0.01,
          random_negative_sampling_rate=5)


@pytest.fixture(scope="session")
def trained_site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Generated lake + trained, activated model; read-only for tests (copy with :func:`fresh_site`)."""
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.ipinsights.trainer import IPInsights
    from seclake_lakegen.generate import generate_lake
    from seclake_ml.model_store import LocalModelStore
    from seclake_ml.extraction import extract_pairs
    from seclake_ml.scoring.profile import build_profile

    root = tmp_path_factory.mktemp("scoring_site")
    lake, work = root / "lake", root / "work"
    generate_lake(lake, TRAIN_START, TRAIN_DAYS, SEED, **SCALE)
    cfg = SeclakeConfig(lake_root=str(lake), work_location=str(work), sources=tuple(SOURCES))
    start = datetime(2024, 3, 4, tzinfo=timezone.utc)
    end = datetime(2024, 3, 8, tzinfo=timezone.utc)
    files = []
    for source, view in cfg.source_views():
        out = root / "pairs" / f"{source}-{view}.parquet"
        extract_pairs(cfg, source, view, start, end, str(out))
        files.append(str(out))
    import duckdb

    train = root / "train.parquet"
    duckdb.execute(f"COPY (SELECT * FROM read_parquet({files!r}, union_by_name = true)) TO '{train}' (FORMAT parquet)")
    model = IPInsights(HP, seed=1, num_threads=1).fit(str(train))
    tmp = root / "model-a"
    model.save(tmp, training_interval={"start": start.isoformat(), "end": end.isoformat()})
    build_profile([str(train)], str(tmp / "profile.parquet"))
    store = LocalModelStore(work / "models" / "ipinsights")
    store.put("ipinsights-a", tmp)
    # threshold: the 99.5th percentile of the anomaly scores of the distinct training pairs
    import numpy as np

    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    pairs = duckdb.execute(f"SELECT DISTINCT entity, ip FROM read_parquet('{train}')").fetchall()
    dots = IPInsightsScorer.load(tmp).dot_product([e for e, _ in pairs], [i for _, i in pairs])
    threshold = round(float(np.nanquantile(-dots, 0.995)), 4)
    store.activate("ipinsights-a", threshold=threshold)
    return {"root": root, "lake": lake, "work": work, "train": train, "model_tmp": tmp, "threshold": threshold}


@pytest.fixture()
def site(trained_site: dict, tmp_path: Path) -> dict:
    """A private copy of the trained site (lake + work), so tests can add days and score freely."""
    lake, work = tmp_path / "lake", tmp_path / "work"
    shutil.copytree(trained_site["lake"], lake)
    shutil.copytree(trained_site["work"], work)
    # model dirs recorded in active.json point at the session copy: re-activate in this copy
    from seclake_ml.model_store import LocalModelStore

    LocalModelStore(work / "models" / "ipinsights").activate("ipinsights-a", threshold=trained_site["threshold"])
    return {"lake": lake, "work": work, "model_tmp": trained_site["model_tmp"], "train": trained_site["train"],
            "threshold": trained_site["threshold"]}


def make_config(site: dict, **scoring):
    from seclake_ml.config import SeclakeConfig

    return SeclakeConfig(lake_root=str(site["lake"]), work_location=str(site["work"]), sources=tuple(SOURCES),
                         extra={"scoring": {"adopt_existing": True, **scoring}})


def drop_day(site: dict, day: date, **scale) -> dict:
    from seclake_lakegen.generate import drop_batch

    return drop_batch(site["lake"], day, SEED, **{**SCALE, **scale})
