"""The benchmark's login generators (bench/logins.py) produce what their docstrings promise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from logins import generate_tutorial_logins, range_abnormal_logins  # noqa: E402

from seclake_ml.ipinsights.ipv4 import in_networks  # noqa: E402


def test_tutorial_process_ranges_and_locality():
    w = generate_tutorial_logins(300, n_ranges=20_000, seed=3)
    starts, sizes = w.range_start, w.range_size
    assert np.all(starts[1:] >= starts[:-1] + sizes[:-1])  # disjoint, ascending
    assert not in_networks(starts.astype(np.uint32)).any() and not in_networks((starts + sizes - 1).astype(np.uint32)).any()
    idx = np.searchsorted(starts, w.ip.astype(np.int64), side="right") - 1
    assert np.all(w.ip.astype(np.int64) < starts[idx] + sizes[idx])  # every login inside a range
    n = starts.size

    def table_distance(a, b):
        d = np.abs(a - b) % n
        return np.minimum(d, n - d)

    near = np.minimum(table_distance(idx, w.home[w.user]), table_distance(idx, w.work[w.user])) <= 50
    # travel is Beta(1, 30) per user (mean 1/31); everything else stays near home or work
    assert 0.9 < near.mean() < 0.995
    assert np.all(np.diff(w.t) >= 0) and w.t.max() < 10 * 86_400


def test_tutorial_intrusions_come_from_other_users_or_random_ranges():
    w = generate_tutorial_logins(200, n_ranges=20_000, seed=4)
    u, ip, kind = range_abnormal_logins(w, np.arange(200), 2_000, seed=5)
    assert set(kind.tolist()) == {"other_user_network", "random_network"} and u.size == ip.size == 2_000
    idx = np.searchsorted(w.range_start, ip.astype(np.int64), side="right") - 1
    assert np.all(ip.astype(np.int64) < w.range_start[idx] + w.range_size[idx])
