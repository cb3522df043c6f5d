"""Local scoring of a model deployed with a score combiner: flags on the combined score."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.model_store import LocalModelStore
from seclake_ml.scoring import service, sites
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.ledger import Ledger

from .conftest import drop_day, make_config

DAY = date(2024, 3, 8)
COMBINER = {"format": "seclake-ipinsights-combiner", "version": 1, "features": ["dot_product", "distance_bits"],
            "mean": [0.0, 8.0], "scale": [1.0, 4.0], "coef": [-1.0, 1.5], "intercept": -1.0}


def _combined(model_dir: str, entities: list[str], ips: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from seclake_ml.ipinsights.combiner import ScoreCombiner
    from seclake_ml.ipinsights.history import HistoryIndex
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    import pandas as pd

    prof = pd.read_parquet(Path(model_dir) / "profile.parquet")
    history = HistoryIndex.from_pairs(prof["entity"].to_numpy(object), prof["ip"].to_numpy(object), prof["events"].to_numpy())
    res = IPInsightsScorer.load(model_dir).score(entities, ips)
    comb = ScoreCombiner.from_dict(COMBINER).decision_function(res.dot_product, history.features(entities, ips))
    return comb, res.known_entity


def _activate(site: dict) -> float:
    """Activate the site's model with the combiner and a threshold at the training pairs' 99.5th percentile."""
    import duckdb

    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    model_dir = str(store.version_dir("ipinsights-a"))
    pairs = duckdb.execute("SELECT DISTINCT entity, ip FROM read_parquet($p)", {"p": str(site["train"])}).fetchall()
    scores, _ = _combined(model_dir, [e for e, _ in pairs], [i for _, i in pairs])
    threshold = round(float(np.nanquantile(scores, 0.995)), 4)
    store.activate("ipinsights-a", threshold=threshold, extra={"combiner": COMBINER})
    return threshold


def test_findings_are_the_pairs_above_the_threshold_on_the_combined_score(site: dict) -> None:
    from seclake_ml.extraction import extract_pairs

    threshold = _activate(site)
    cfg = make_config(site)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # adopts the history
    drop_day(site, DAY)
    model = service.active_model(cfg)
    assert model.combiner is not None and model.combiner["coef"] == COMBINER["coef"]
    manifest = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    assert summary["totals"]["failed"] == 0 and summary["totals"]["findings"] > 0

    # Independently: the day's pairs, dot products, the profile's history, the combiner, the threshold.
    start = datetime(2024, 3, 8, tzinfo=timezone.utc)
    expected: dict[tuple[str, str, str], float] = {}
    import duckdb

    for source, view in cfg.source_views():
        path = Path(site["work"]) / "expected" / f"{source}-{view}.parquet"
        extract_pairs(cfg, source, view, start, start + timedelta(days=1), str(path))
        pairs = duckdb.execute("SELECT DISTINCT entity, ip FROM read_parquet($p)", {"p": str(path)}).fetchall()
        if not pairs:
            continue
        scores, known = _combined(model.model_dir, [e for e, _ in pairs], [i for _, i in pairs])
        for (e, i), s, k in zip(pairs, scores, known):
            if k and s > threshold:
                expected[(source, e, i)] = float(s)
    records = read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))
    got = {(r["unmapped"]["source"], r["unmapped"]["entity"], r["unmapped"]["ip"]): float(r["unmapped"]["score"])
           for r in records}
    assert set(got) == set(expected)
    for key, score in got.items():
        assert score == pytest.approx(expected[key], rel=1e-6, abs=1e-6)


def test_a_combiner_without_its_profile_leaves_objects_for_a_retry(site: dict) -> None:
    _activate(site)
    cfg = make_config(site)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None
    drop_day(site, DAY)
    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    (store.version_dir("ipinsights-a") / "profile.parquet").unlink()
    manifest = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    assert summary["totals"]["scored"] == 0 and summary["totals"]["findings"] == 0
    reasons = {o["reason"] for o in summary["objects"] if o["status"] != "scored"}
    assert reasons and all("entity profile" in r for r in reasons), reasons


def test_an_unusable_combiner_in_the_active_record_is_refused_by_name(site: dict) -> None:
    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    assert service.active_model(make_config(site)).combiner is None  # a record from before: -dot_product
    store.activate("ipinsights-a", threshold=site["threshold"], extra={"combiner": {**COMBINER, "coef": [1.0]}})
    with pytest.raises(sites.NoActiveModel, match="'combiner' is unusable"):
        service.active_model(make_config(site))


def test_a_combiner_that_weighs_the_estate_says_so_in_the_findings(site: dict) -> None:
    from seclake_ml.ipinsights.history import HistoryIndex

    import pandas as pd

    store = LocalModelStore(Path(site["work"]) / "models" / "ipinsights")
    combiner = {**COMBINER, "features": ["dot_product", "distance_bits", "estate_16"], "mean": [0.0, 8.0, 0.5],
                "scale": [1.0, 4.0, 0.25], "coef": [-1.0, 1.5, -0.5]}
    store.activate("ipinsights-a", threshold=-3.0, extra={"combiner": combiner})  # low: many findings
    cfg = make_config(site)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None
    drop_day(site, DAY)
    manifest = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    assert summary["totals"]["failed"] == 0 and summary["totals"]["findings"] > 0
    records = read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))
    prof = pd.read_parquet(store.version_dir("ipinsights-a") / "profile.parquet")
    history = HistoryIndex.from_pairs(prof["entity"].to_numpy(object), prof["ip"].to_numpy(object), prof["events"].to_numpy())
    checked = 0
    for r in records:
        expl = r["evidences"][0]["data"]["explanation"]
        if not expl.get("entity_known"):
            continue
        entity, ip = r["unmapped"]["entity"], r["unmapped"]["ip"]
        want = history.estate_entities([entity], [ip])
        assert (expl["estate_entities_24"], expl["estate_entities_16"]) == (int(want[24][0]), int(want[16][0]))
        assert "of the estate" in expl["text"] and "of the estate" in r["message"]
        checked += 1
    assert checked > 0
