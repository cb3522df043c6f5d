"""History features, the score combiner and calibration on the combined score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seclake_ml.ipinsights.calibration import build_calibration_sets, calibrate, calibrate_combined
from seclake_ml.ipinsights.combiner import ScoreCombiner, fit_combiner
from seclake_ml.ipinsights.history import HistoryIndex
from seclake_ml.ipinsights.ipv4 import format_ipv4, parse_ipv4
from seclake_ml.ipinsights.metrics import roc_auc


# ---------------------------------------------------------------------------------------------- history
def test_history_features_on_a_hand_made_case():
    hist = HistoryIndex.from_pairs(["a", "a", "a", "a", "b"], ["10.0.0.5", "10.0.0.5", "10.0.1.9", "10.0.0.5", "192.0.2.1"])
    f = hist.features(["a", "a", "a", "zz", "a"], ["10.0.0.5", "10.0.0.77", "10.9.0.1", "10.0.0.5", "not-an-ip"])
    # exact known IP
    assert f["prefix_bits"][0] == 32 and f["known_ip"][0] == 1.0 and f["distance_bits"][0] == 0.0
    assert f["share_24"][0] == pytest.approx(np.log1p(3) / np.log1p(4))
    # same /24 (5 ^ 77 = 0b1001000: 7 differing low bits), distance 72
    assert f["prefix_bits"][1] == 25 and f["known_ip"][1] == 0.0
    assert f["distance_bits"][1] == pytest.approx(np.log2(73))
    assert f["share_16"][1] == pytest.approx(1.0)
    # another /16 of the same /8: no share, 12 leading bits (10.0 vs 10.9)
    assert f["prefix_bits"][2] == 12 and f["share_24"][2] == 0.0 and f["share_16"][2] == 0.0
    # unknown entity and invalid IP: the no-history values
    assert not f["known_entity"][3] and f["prefix_bits"][3] == 0 and f["distance_bits"][3] == 32.0
    assert f["known_entity"][4] and f["prefix_bits"][4] == 0 and f["distance_bits"][4] == 32.0


def test_estate_features_count_other_entities_per_network():
    hist = HistoryIndex.from_pairs(["a", "b", "b", "c", "d"], ["10.0.0.5", "10.0.0.9", "10.0.0.10", "10.0.7.1", "192.0.2.1"])
    f = hist.features(["a", "a", "zz", "d", "a"], ["10.0.0.99", "10.0.9.9", "10.0.0.1", "10.0.0.1", "bad"])
    scale = np.log1p(3)  # four entities: at most three others
    # a's own /24 also holds b (one other; a itself is not counted), the /16 also holds c
    assert f["estate_24"][0] == pytest.approx(np.log1p(1) / scale)
    assert f["estate_16"][0] == pytest.approx(np.log1p(2) / scale)
    # a /24 nobody used, in a /16 that b and c used
    assert f["estate_24"][1] == 0.0 and f["estate_16"][1] == pytest.approx(np.log1p(2) / scale)
    # an unknown entity counts everyone; d has no history in 10.0/16 and counts a, b, c
    assert f["estate_24"][2] == pytest.approx(np.log1p(2) / scale)
    assert f["estate_16"][3] == pytest.approx(1.0)
    # invalid IP: nothing
    assert f["estate_24"][4] == 0.0 and f["estate_16"][4] == 0.0
    assert HistoryIndex.empty().features(["a"], ["10.0.0.1"])["estate_16"][0] == 0.0


def test_estate_leaves_the_entity_out_even_where_its_pairs_have_no_events():
    # a profile row with 0 events (a null count read as 0) is still the entity's own pair
    hist = HistoryIndex.from_pairs(["a", "b"], ["10.0.0.5", "10.0.0.9"], [0, 3])
    assert hist.estate_entities(["a"], ["10.0.0.7"])[24].tolist() == [1]
    assert hist.features(["a"], ["10.0.0.7"])["estate_24"][0] == pytest.approx(1.0)
    # an unknown entity counts both: clipped to 1, the documented range
    assert hist.features(["zz"], ["10.0.0.7"])["estate_24"][0] == 1.0


def test_history_nearest_prefix_matches_brute_force():
    rng = np.random.default_rng(4)
    ents = rng.integers(0, 30, 3000)
    addr = (rng.integers(0, 60, 3000) << 20 | rng.integers(0, 1 << 20, 3000)).astype(np.uint32)
    names = np.array([f"e{i}" for i in ents], dtype=object)
    hist = HistoryIndex.from_pairs(names, addr)
    q_ent = rng.integers(0, 30, 500)
    q_addr = (rng.integers(0, 64, 500) << 20 | rng.integers(0, 1 << 20, 500)).astype(np.uint32)
    f = hist.features(np.array([f"e{i}" for i in q_ent], dtype=object), format_ipv4(q_addr))
    for k in range(500):
        known = addr[ents == q_ent[k]].astype(np.int64)
        xor = known ^ int(q_addr[k])
        bits = max(32 - int(x).bit_length() for x in xor)
        assert f["prefix_bits"][k] == bits
        assert f["distance_bits"][k] == pytest.approx(np.log2(1 + np.abs(known - int(q_addr[k])).min()))


def test_history_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        HistoryIndex.from_pairs(["a", "b"], ["10.0.0.1"])
    with pytest.raises(ValueError, match="equal lengths"):
        HistoryIndex.empty().features(["a"], ["10.0.0.1", "10.0.0.2"])


# ---------------------------------------------------------------------------------------------- combiner
def _synthetic(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """A model score and a history score, each informative and partly independent of the other."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    dots = np.where(y, -1.0, 1.0) + rng.normal(0, 1.2, n)
    dist = np.clip(np.where(y, 20.0, 8.0) + rng.normal(0, 6.0, n), 0, 32)
    hist = {"prefix_bits": 32 - dist, "distance_bits": dist, "share_24": np.zeros(n), "share_16": np.zeros(n),
            "known_ip": (dist < 1).astype(float), "estate_24": np.zeros(n), "estate_16": np.zeros(n)}
    return dots, hist, y


def test_combination_beats_each_component_on_held_out_pairs():
    dots, hist, y = _synthetic(20_000, 1)
    comb = fit_combiner(dots, hist, y)
    d2, h2, y2 = _synthetic(20_000, 2)
    combined = roc_auc(y2, comb.decision_function(d2, h2))
    model, baseline = roc_auc(y2, -d2), roc_auc(y2, h2["distance_bits"])
    assert combined > max(model, baseline) + 0.01, (combined, model, baseline)
    coef = dict(zip(comb.features, comb.coef))
    assert coef["dot_product"] < 0 and coef["distance_bits"] > 0 or coef.get("prefix_bits", 0) < 0
    assert "share_24" in comb.fit["dropped"]  # no spread


def test_a_feature_with_the_wrong_sign_is_dropped():
    dots, hist, y = _synthetic(10_000, 3)
    hist = dict(hist, share_24=np.where(y, 0.9, 0.1))  # abnormal pairs look "more shared": against expectation
    comb = fit_combiner(dots, hist, y)
    assert "share_24" not in comb.features and comb.fit["dropped"]["share_24"] == "sign against expectation"
    assert all(np.sign(c) == {"dot_product": -1, "prefix_bits": -1, "distance_bits": 1, "share_16": -1,
                              "known_ip": -1}[f] for f, c in zip(comb.features, comb.coef))


def test_estate_features_may_only_lower_the_score():
    dots, hist, y = _synthetic(10_000, 5)
    rng = np.random.default_rng(6)
    # injected pairs from networks everyone uses (like other_entity): "common = abnormal" must be refused
    hist = dict(hist, estate_16=np.where(y, 0.8, 0.3) + rng.normal(0, 0.05, y.size))
    comb = fit_combiner(dots, hist, y)
    assert "estate_16" not in comb.features and comb.fit["dropped"]["estate_16"] == "sign against expectation"
    # and a network nobody used is evidence the other way: kept, with a negative coefficient
    hist = dict(hist, estate_16=np.where(y, 0.1, 0.6) + rng.normal(0, 0.2, y.size))
    comb = fit_combiner(dots, hist, y)
    assert dict(zip(comb.features, comb.coef))["estate_16"] < 0


def test_combiner_round_trips_through_json_without_pickle():
    dots, hist, y = _synthetic(5_000, 4)
    comb = fit_combiner(dots, hist, y)
    text = json.dumps(comb.to_dict())
    back = ScoreCombiner.from_dict(json.loads(text))
    np.testing.assert_array_equal(back.decision_function(dots, hist), comb.decision_function(dots, hist))
    nan_dot = back.decision_function(np.array([np.nan]), {k: v[:1] for k, v in hist.items()})
    assert np.isnan(nan_dot).all()


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "format"),
    ({"version": 99}, "version"),
    ({"features": ["dot_product", "favourite_colour"]}, "unknown feature"),
    ({"coef": [float("nan")]}, "finite"),
    ({"scale": [0.0]}, "positive"),
    ({"mean": []}, "values in 'mean'"),
    ({"intercept": "x"}, "intercept"),
])
def test_combiner_refuses_malformed_json(change, message):
    good = {"format": "seclake-ipinsights-combiner", "version": 1, "features": ["dot_product"], "mean": [0.0],
            "scale": [1.0], "coef": [-1.0], "intercept": 0.0}
    with pytest.raises(ValueError, match=message):
        ScoreCombiner.from_dict({**good, **change})
    assert ScoreCombiner.from_dict(good).decision_function(np.array([2.0]))[0] == pytest.approx(-2.0)


# ---------------------------------------------------------------------------------------------- calibration
@pytest.fixture()
def frames(world):
    train = pd.DataFrame({"entity": world.train_entities, "ip": world.train_ips,
                          "event_time": pd.date_range("2024-01-01", periods=len(world.train_ips), freq="min", tz="UTC")})
    later = pd.DataFrame({"entity": world.test_entities, "ip": world.test_ips,
                          "event_time": pd.date_range("2024-02-01", periods=len(world.test_ips), freq="min", tz="UTC")})
    return train, later


def test_calibration_on_the_combined_score(model_dir, frames):
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    train, later = frames
    normal, abnormal = build_calibration_sets(train, later, n_normal=2000, seed=1)
    scorer = IPInsightsScorer.load(model_dir)
    history = HistoryIndex.from_pairs(train["entity"].to_numpy(object), train["ip"].to_numpy(object))
    res = calibrate_combined(scorer, normal, abnormal, history, target_fpr=0.01, seed=1)
    comp = {k: v["roc_auc"] for k, v in res.components.items()}
    assert set(comp) == {"model", "nearest_known_ip", "combined"}
    assert res.auc == comp["combined"]
    # On held-out pairs (the half the combiner was not fitted on) it is at least as good as either part.
    assert comp["combined"] >= max(comp["model"], comp["nearest_known_ip"]) - 0.002, comp
    assert res.counts["evaluated_normal"] + res.counts["combiner_fit_normal"] == res.counts["normal_scored"]
    # The threshold is on the combined score and keeps the target false-positive rate on held-out normals.
    assert res.threshold.fpr <= 0.01
    comb = ScoreCombiner.from_dict(res.combiner)
    ev_scores = res.normal_scores
    assert (ev_scores > res.threshold.value).mean() == pytest.approx(res.threshold.fpr)
    metrics = res.metrics()
    assert metrics["components"] == res.components and metrics["combiner"]["features"] == list(comb.features)
    assert "combined log-odds" in metrics["score"]
    # The plain calibration is unchanged: -dot_product, no components.
    plain = calibrate(scorer, normal, abnormal)
    assert plain.combiner is None and not plain.components and "-dot_product" in plain.metrics()["score"]


def test_anomaly_scorer_keeps_old_models_on_minus_dot_product():
    from seclake_ml.scoring.scorers import AnomalyScorer, ScoringError

    dots = np.array([1.5, -2.0, np.nan])
    np.testing.assert_array_equal(AnomalyScorer(None).score(["a", "b", "c"], ["10.0.0.1"] * 3, dots), -dots)
    good = {"format": "seclake-ipinsights-combiner", "version": 1, "features": ["dot_product", "distance_bits"],
            "mean": [0.0, 0.0], "scale": [1.0, 1.0], "coef": [-1.0, 0.5], "intercept": 0.0}
    with pytest.raises(ScoringError, match="entity profile"):
        AnomalyScorer(good).score(["a"], ["10.0.0.1"], dots[:1])
    hist = HistoryIndex.from_pairs(["a"], ["10.0.0.1"])
    got = AnomalyScorer(good, lambda: hist).score(["a", "a"], ["10.0.0.1", "10.0.0.2"], np.array([1.0, 1.0]))
    assert got[0] == pytest.approx(-1.0) and got[1] == pytest.approx(-1.0 + 0.5 * np.log2(2))
    with pytest.raises(ValueError, match="combiner"):
        AnomalyScorer({"format": "x"})


def test_profile_file_gives_the_same_history_as_the_pairs(tmp_path, frames):
    from seclake_ml.scoring.profile import build_profile, load_history

    train, _ = frames
    path = tmp_path / "pairs.parquet"
    train.to_parquet(path, index=False)
    from_file = load_history(build_profile([str(path)], str(tmp_path / "profile.parquet"))["path"])
    direct = HistoryIndex.from_pairs(train["entity"].to_numpy(object), train["ip"].to_numpy(object))
    q_ent = np.r_[train["entity"].to_numpy(object)[:50], ["nobody"]]
    addr, _ = parse_ipv4(train["ip"].to_numpy(object)[:51])
    q_ip = format_ipv4(addr ^ np.uint32(0x3F))
    a, b = from_file.features(q_ent, q_ip), direct.features(q_ent, q_ip)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert from_file.pairs == direct.pairs


def test_a_combination_without_the_model_is_not_deployed(model_dir, frames):
    """When the fitted combination leaves dot_product out, the model's own score is calibrated instead."""
    from seclake_ml.ipinsights.scorer import IPInsightsScorer, ScoredPairs

    class Inverted:
        """The real scorer with its dot_product negated: the model now points the wrong way."""

        def __init__(self, inner):
            self.inner = inner

        def score(self, entities, ips):
            s = self.inner.score(entities, ips)
            return ScoredPairs(dot_product=-s.dot_product, known_entity=s.known_entity, valid_ip=s.valid_ip)

    train, later = frames
    normal, abnormal = build_calibration_sets(train, later, n_normal=2000, seed=1)
    history = HistoryIndex.from_pairs(train["entity"].to_numpy(object), train["ip"].to_numpy(object))
    res = calibrate_combined(Inverted(IPInsightsScorer.load(model_dir)), normal, abnormal, history, target_fpr=0.01, seed=1)
    assert res.combiner is None
    assert "left dot_product out" in res.combiner_declined
    assert res.metrics()["combiner_declined"] == res.combiner_declined
    assert "-dot_product" in res.metrics()["score"]
    # The deployed AUC is the (inverted, poor) model's own on the held-out half, not the combination's.
    assert res.auc == res.components["model"]["roc_auc"] < res.components["combined"]["roc_auc"]


def test_estate_counts_are_built_only_when_asked_for():
    hist = HistoryIndex.from_pairs(["a", "b"], ["10.0.0.5", "10.0.0.9"])
    f = hist.features(["a"], ["10.0.0.7"], ["dot_product", "distance_bits"])
    assert "estate_16" not in f and not hist._estate_cache
    f = hist.features(["a"], ["10.0.0.7"], ["estate_16"])
    assert f["estate_16"][0] == pytest.approx(1.0) and set(hist._estate_cache) == {16}
    counts = hist.estate_entities(["a", "zz", "a"], ["10.0.0.7", "10.0.0.7", "nope"])
    assert counts[24].tolist() == [1, 2, 0] and counts[16].tolist() == [1, 2, 0]
