"""IPv4 parsing, entity hashing and prefix rows."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from seclake_ml.ipinsights.encoding import EncoderSpec, entity_key, hash_entities
from seclake_ml.ipinsights.ipv4 import format_ipv4, in_networks, parse_ipv4, random_public_ipv4


@pytest.mark.parametrize(
    "text, value",
    [("1.2.3.4", 0x01020304), ("0.0.0.0", 0), ("255.255.255.255", 0xFFFFFFFF), ("10.0.0.1", 0x0A000001), ("192.168.100.200", 0xC0A864C8)],
)
def test_valid_addresses(text, value):
    addr, ok = parse_ipv4([text])
    assert ok[0] and int(addr[0]) == value


@pytest.mark.parametrize(
    "text",
    ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "010.1.1.1", "1.2.3.04", "1..2.3", ".1.2.3", "1.2.3.",
     " 1.2.3.4", "1.2.3.4 ", "a.b.c.d", "::1", "2001:db8::1", "-", "1.2.3.4/24", "99999999.1.1.1", "1.2.3.-4", "١.2.3.4", None, 7],
)
def test_invalid_addresses(text):
    addr, ok = parse_ipv4(np.array([text], dtype=object))
    assert not ok[0] and addr[0] == 0


def test_parse_matches_the_standard_library_and_round_trips():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32)
    values[:300] = rng.integers(0, 256, 300)
    text = format_ipv4(values)
    assert [int(ipaddress.IPv4Address(t)) for t in text[:500]] == values[:500].tolist()
    addr, ok = parse_ipv4(text)
    assert ok.all() and (addr == values).all()


def test_random_public_addresses_avoid_reserved_blocks():
    addr = random_public_ipv4(np.random.default_rng(1), 20_000)
    assert addr.size == 20_000 and not in_networks(addr).any()
    private = parse_ipv4(["10.1.2.3", "172.20.0.1", "192.168.1.1", "127.0.0.1", "8.8.8.8"])[0]
    assert in_networks(private).tolist() == [True, True, True, True, False]


def test_entity_hash_is_stable_keyed_and_vectorised():
    key = entity_key(0)
    h = hash_entities(["alice", "bob", "alice"], key)
    assert h.dtype == np.uint64 and h[0] == h[2] and h[0] != h[1]
    # Pinned values: saved models depend on them, so they must not change between versions.
    assert int(h[0]) == 9716336117888821406
    assert int(hash_entities(np.array(["alice"], dtype=object), key)[0]) == int(h[0])
    assert hash_entities(["alice"], entity_key(1))[0] != h[0]


def test_prefix_rows_share_short_prefixes_and_stay_in_their_blocks():
    spec = EncoderSpec(num_entity_vectors=100, vector_dim=8, ip_hash_buckets=1024, hash_seed=7)
    a = parse_ipv4(["10.1.2.3", "10.1.2.200", "10.1.9.9", "11.0.0.1"])[0]
    rows = spec.prefix_rows(a)
    assert rows.shape == (4, spec.num_prefixes)
    for j, (off, n) in enumerate(zip(spec.offsets, spec.table_rows)):
        assert ((rows[:, j] >= off) & (rows[:, j] < off + n)).all()
    plen = dict(zip(spec.prefix_lengths, range(spec.num_prefixes)))
    assert rows[0, plen[24]] == rows[1, plen[24]]  # same /24
    assert rows[0, plen[16]] == rows[2, plen[16]] and rows[0, plen[24]] != rows[2, plen[24]]
    assert rows[0, plen[8]] != rows[3, plen[8]]
    # Deterministic for the seed, different for another seed.
    assert rows[0].tolist() == [10, 446, 1621, 2901, 4240, 4624]
    assert not (EncoderSpec(100, 8, ip_hash_buckets=1024, hash_seed=8).prefix_rows(a)[:, plen[32]] == rows[:, plen[32]]).all()


def test_encoder_spec_rejects_bad_settings():
    with pytest.raises(ValueError, match="ip_prefix_lengths"):
        EncoderSpec(10, 8, prefix_lengths=(16, 8))
    with pytest.raises(ValueError, match="ip_hash_buckets"):
        EncoderSpec(10, 8, ip_hash_buckets=1000)
