"""Training: separation of normal from injected pairs, determinism, inputs, validation AUC."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from seclake_ml.ipinsights.ipv4 import format_ipv4
from seclake_ml.ipinsights.metrics import roc_auc


def test_small_model_separates_normal_from_injected_pairs(trained, world):
    scorer = trained.scorer()
    rng = np.random.default_rng(9)
    n = len(world.test_ips)
    # Abnormal: the same test entities with random addresses, and with other users' home networks.
    random_ips = format_ipv4(rng.integers(1 << 24, 223 << 24, n, dtype=np.uint64).astype(np.uint32))
    others = format_ipv4(world.home[rng.integers(0, world.home.size, n)] + np.uint32(7))
    normal = scorer.decision_function(world.test_entities, world.test_ips)
    for abnormal_ips in (random_ips, others):
        abnormal = scorer.decision_function(world.test_entities, abnormal_ips)
        auc = roc_auc(np.r_[np.zeros(n), np.ones(n)], np.r_[normal, abnormal])
        assert auc > 0.95, auc


def test_history_has_loss_speed_and_validation_auc(trained):
    h = trained.history_
    assert len(h) == 3 and h[-1].loss < h[0].loss
    assert all(x.samples == 12_000 * 3 for x in h)  # positives x (1 + R + S), R = S = 1
    assert all(x.samples_per_second > 0 for x in h)
    assert h[-1].validation_discriminator_auc > 0.95


def test_the_epoch_with_the_best_validation_auc_is_kept(world, small_settings, tmp_path):
    import json

    from seclake_ml.ipinsights.trainer import IPInsights, discriminator_auc

    hp, enc = small_settings
    data = (world.train_entities[:4000], world.train_ips[:4000])
    val = (world.test_entities, world.test_ips)
    # a learning rate high enough that the validation AUC does not rise every epoch
    settings = {**hp, "epochs": 6, "learning_rate": 0.2}
    last = IPInsights(settings, seed=5, num_threads=1, best_epoch=False, **enc).fit(data, validation=val)
    assert last.best_epoch_ is None and len(last.history_) == 6
    est = IPInsights(settings, seed=5, num_threads=1, best_epoch=True, patience=2, **enc).fit(data, validation=val)
    aucs = [h.validation_discriminator_auc for h in est.history_]
    assert aucs == [h.validation_discriminator_auc for h in last.history_][:len(aucs)]  # same run up to the stop
    best = int(np.argmax(aucs))
    assert est.best_epoch_ == best
    assert len(aucs) == min(6, best + 3)  # stopped two epochs after the best one, or ran them all
    # the weights are the best epoch's: recomputing the validation AUC on the kept model gives its figure
    from seclake_ml.ipinsights.data import encode_pairs

    v = encode_pairs(val, est.spec_.hash_seed)
    vrng = np.random.default_rng([5, 3])
    negatives = vrng.integers(0, 1 << 32, len(v), dtype=np.uint64).astype(np.uint32)
    again = discriminator_auc(est.model_, est.spec_, est.spec_.entity_rows(v.entity_hash), v.ip, negatives,
                              device=est.model_.entity.device)
    assert again == pytest.approx(aucs[best], abs=1e-9)
    metrics = json.loads((est.save(tmp_path / "m") / "model.json").read_text())["metrics"]
    assert metrics["epoch_kept"] == best + 1 and metrics["epochs_run"] == len(aucs)


def _fit(world, settings, **kw):
    from seclake_ml.ipinsights.trainer import IPInsights

    hp, enc = settings
    return IPInsights({**hp, "epochs": 1, **kw}, seed=21, num_threads=1, **enc).fit((world.train_entities[:4000], world.train_ips[:4000]))


def test_training_is_deterministic_for_a_seed(world, small_settings):
    a, b = _fit(world, small_settings), _fit(world, small_settings)
    for name, arr in a.model_.numpy_arrays().items():
        np.testing.assert_array_equal(arr, b.model_.numpy_arrays()[name], err_msg=name)
    assert a.history_[0].loss == b.history_[0].loss
    c = _fit(world, small_settings, learning_rate=0.05)
    assert not np.array_equal(a.model_.numpy_arrays()["entity_table"], c.model_.numpy_arrays()["entity_table"])


def test_more_layers_and_shuffled_only_negatives_train(world, small_settings):
    est = _fit(world, small_settings, num_ip_encoder_layers=2, random_negative_sampling_rate=0, shuffled_negative_sampling_rate=2)
    assert est.history_[0].samples == 4000 * 3 and np.isfinite(est.history_[0].loss)
    s = est.scorer()
    np.testing.assert_allclose(
        s.dot_product(world.test_entities[:50], world.test_ips[:50]),
        np.einsum("ij,ij->i", s.entity_embeddings(world.test_entities[:50]), s.ip_embeddings(world.test_ips[:50])),
        rtol=1e-4, atol=1e-4,
    )


def test_files_and_frames_are_read_and_bad_rows_dropped(world, tmp_path, caplog):
    from seclake_ml.ipinsights.data import encode_pairs

    csv = tmp_path / "train.csv"
    lines = [f"{e},{i}" for e, i in zip(world.train_entities[:300], world.train_ips[:300])]
    lines += ["alice,2001:db8::1", "bob,-", ",1.2.3.4", "too,many,fields", '"quoted, entity",10.0.0.1']
    csv.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO):
        pairs = encode_pairs(csv, hash_seed=3)
    assert len(pairs) == 301 and pairs.dropped == {"null": 0, "empty_entity": 1, "invalid_ip": 2, "malformed": 1}
    assert "dropped" in caplog.text

    pq = tmp_path / "pairs.parquet"
    frame = pd.DataFrame({
        "entity": world.train_entities[:300], "ip": world.train_ips[:300],
        "event_time": pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC"), "source": "vpc_flow",
        "account": "111122223333", "region": "us-east-1",
    })
    frame.to_parquet(pq, index=False)
    from_pq = encode_pairs(pq, hash_seed=3)
    assert len(from_pq) == 300 and from_pq.event_time_min.startswith("2024-01-01")
    np.testing.assert_array_equal(from_pq.entity_hash, pairs.entity_hash[:300])
    np.testing.assert_array_equal(from_pq.ip, encode_pairs(frame, hash_seed=3).ip)
    frame.drop(columns=["ip"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ip'\]"):
        encode_pairs(tmp_path / "bad.parquet")


def test_no_valid_pairs_is_a_clear_error(small_settings):
    from seclake_ml.ipinsights.trainer import IPInsights

    hp, enc = small_settings
    with pytest.raises(ValueError, match="no valid"):
        IPInsights(hp, **enc).fit((["a", "b"], ["x", "::1"]))
