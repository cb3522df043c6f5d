"""A tiny synthetic login world and one small trained model, shared by the IP Insights tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.ipinsights.ipv4 import format_ipv4

SMALL_HP = dict(num_entity_vectors=1000, vector_dim=16, epochs=3, mini_batch_size=512, learning_rate=0.02)
SMALL_ENCODER = dict(ip_hash_buckets=1024)


@dataclass
class TinyWorld:
    train_entities: np.ndarray
    train_ips: np.ndarray
    test_entities: np.ndarray
    test_ips: np.ndarray
    home: np.ndarray  # /24 network of each user (uint32)


def make_world(n_users: int = 200, n_train: int = 12_000, n_test: int = 2_000, seed: int = 5) -> TinyWorld:
    """Each user logs in from two /24 networks of its own (home and work)."""
    rng = np.random.default_rng(seed)
    nets = rng.choice(np.arange(1 << 16, 200 << 16), size=(n_users, 2), replace=False).astype(np.uint64) << np.uint64(8)
    users = rng.integers(0, n_users, n_train + n_test)
    which = rng.integers(0, 2, users.size)
    ips = (nets[users, which] + rng.integers(1, 255, users.size).astype(np.uint64)).astype(np.uint32)
    names = np.array([f"user-{u:04d}" for u in users], dtype=object)
    text = format_ipv4(ips)
    return TinyWorld(names[:n_train], text[:n_train], names[n_train:], text[n_train:], nets[:, 0].astype(np.uint32))


@pytest.fixture(scope="session")
def small_settings() -> tuple[dict, dict]:
    """(hyperparameters, encoder options) of the small test models."""
    return dict(SMALL_HP), dict(SMALL_ENCODER)


@pytest.fixture(scope="session")
def world() -> TinyWorld:
    return make_world()


@pytest.fixture(scope="session")
def trained(world: TinyWorld):
    from seclake_ml.ipinsights.trainer import IPInsights

    est = IPInsights(SMALL_HP, seed=3, num_threads=1, **SMALL_ENCODER)
    return est.fit((world.train_entities, world.train_ips), validation=(world.test_entities, world.test_ips))


@pytest.fixture(scope="session")
def model_dir(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained.save(tmp_path_factory.mktemp("model"), training_interval={"start": "2024-01-01T00:00:00Z", "end": "2024-01-08T00:00:00Z"})


@pytest.fixture()
def scorer(model_dir: Path):
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    return IPInsightsScorer.load(model_dir)
