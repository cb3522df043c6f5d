"""What each entity did in training, as vectorised features of new ``(entity, IPv4)`` pairs.

:class:`HistoryIndex` holds the distinct training pairs of every entity (with their event counts),
sorted by ``(entity, address)``, and answers, for any batch of pairs and with NumPy only:

``prefix_bits``   leading bits the IP shares with the entity's nearest known IP (0..32; 0 when the
                  entity has no history)
``distance_bits`` ``log2(1 + |ip - nearest known ip|)``, 0..32 (32 when the entity has no history);
                  the "nearest known IP" baseline
``share_24``      ``log1p(events in the IP's /24) / log1p(all events of the entity)``, 0..1
``share_16``      the same for the IP's /16
``known_ip``      1.0 when the exact IP was seen with the entity
``estate_24``     ``log1p(other entities with events in the IP's /24) / log1p(entities - 1)``, clipped to 0..1
``estate_16``     the same for the IP's /16
``known_entity``  whether the entity has any history

The first five are relative to the entity's own history; the ``estate_*`` pair says how common the
IP's network is across the estate (other entities only, so they do not repeat ``share_*``): an
address from a network nobody in the estate has used is more surprising than one from the
office, VPN or ISP that colleagues share. No feature says how active an entity is or how many
networks it has, so the features mean the same on any data set. The nearest known IP
(the most shared leading bits) is always one of the two known IPs adjacent to the queried address
in numeric order, so one ``searchsorted`` answers it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seclake_ml.ipinsights.ipv4 import parse_ipv4

__all__ = ["FEATURE_NAMES", "HistoryIndex"]

FEATURE_NAMES = ("prefix_bits", "distance_bits", "share_24", "share_16", "known_ip", "estate_24", "estate_16")

_LOW32 = np.uint64(0xFFFFFFFF)


def _as_addresses(ips: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(ips)
    if arr.dtype.kind in "iu":
        ok = (arr >= 0) & (arr <= 0xFFFFFFFF)
        return np.where(ok, arr, 0).astype(np.uint32), ok
    return parse_ipv4(np.asarray(ips, dtype=object))


class HistoryIndex:
    """Distinct training pairs per entity with event counts; :meth:`features` for new pairs.

    Build with :meth:`from_pairs` (raw rows or aggregated counts) or :meth:`empty`.

    :param names: entity names, index = entity code.
    :param keys: sorted ``code << 32 | address`` of the distinct pairs (uint64).
    :param events: events per key (int64, aligned with ``keys``).
    """

    def __init__(self, names: Sequence[str], keys: np.ndarray, events: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        events = np.asarray(events, dtype=np.int64)
        if keys.shape != events.shape or keys.ndim != 1:
            raise ValueError(f"history: {keys.shape} keys and {events.shape} event counts; expected equal 1-d arrays")
        if keys.size and np.any(keys[1:] <= keys[:-1]):
            raise ValueError("history: keys must be unique and ascending")
        self.names = list(names)
        self._code = {name: i for i, name in enumerate(self.names)}
        self._keys = keys
        self._cum = np.r_[0, np.cumsum(events)].astype(np.int64)
        self._estate_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _entities_per_network(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """``(networks, entity counts)``: the distinct /``bits`` networks of the held pairs (ascending)
        and how many entities have events in each."""
        net = (self._keys & _LOW32) >> np.uint64(32 - bits)
        per_entity = np.unique((net << np.uint64(32)) | (self._keys >> np.uint64(32)))
        return np.unique(per_entity >> np.uint64(32), return_counts=True)

    def _other_entities(self, bits: int, addr: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Entities with events in each address's /``bits`` network, less one where ``own`` is set."""
        if bits not in self._estate_cache:  # built on first use: scores that do not weigh the estate never pay for it
            self._estate_cache[bits] = self._entities_per_network(bits)
        nets, counts = self._estate_cache[bits]
        if nets.size == 0:
            return np.zeros(addr.size, np.int64)
        q = addr.astype(np.uint64) >> np.uint64(32 - bits)
        pos = np.clip(np.searchsorted(nets, q), 0, nets.size - 1)
        found = np.where(nets[pos] == q, counts[pos], 0) - own.astype(np.int64)
        return np.maximum(found, 0)

    def _query(self, entities: Any, ips: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(entity codes (-1 unknown), uint32 addresses, valid)`` of a batch of pairs."""
        ents = list(entities)
        addr, ok = _as_addresses(ips)
        if len(ents) != addr.size:
            raise ValueError(f"{what}: {len(ents)} entities and {addr.size} IPs; expected equal lengths")
        code = np.fromiter((self._code.get(e, -1) if isinstance(e, str) else -1 for e in ents), dtype=np.int64,
                           count=len(ents))
        return code, addr, ok

    def _estate_counts(self, code: np.ndarray, addr: np.ndarray, ok: np.ndarray, bits: int) -> np.ndarray:
        """Other entities with a pair in each valid address's /``bits`` network (the queried entity
        itself is left out wherever it holds a pair there); 0 for invalid addresses."""
        own = np.zeros(addr.size, bool)
        idx = np.flatnonzero((code >= 0) & ok)
        if idx.size:
            base = code[idx].astype(np.uint64) << np.uint64(32)
            host = np.uint64((1 << (32 - bits)) - 1)
            a = addr[idx].astype(np.uint64)
            lo = np.searchsorted(self._keys, base | (a & ~host & _LOW32), side="left")
            hi = np.searchsorted(self._keys, base | (a | host), side="right")
            own[idx] = hi > lo
        return np.where(ok, self._other_entities(bits, np.where(ok, addr, 0), own), 0)

    def estate_entities(self, entities: Any, ips: Any) -> dict[int, np.ndarray]:
        """How many *other* entities had events in each IP's /24 and /16 (``{24: counts, 16: counts}``;
        0 for an invalid IP), for explanations.

        :param entities: entity names.
        :param ips: dotted IPv4 strings or integer addresses, same length.
        """
        code, addr, ok = self._query(entities, ips, "estate counts")
        return {bits: self._estate_counts(code, addr, ok, bits) for bits in (24, 16)}

    @classmethod
    def empty(cls) -> "HistoryIndex":
        """An index that knows no entity (every pair gets the no-history features)."""
        return cls([], np.empty(0, np.uint64), np.empty(0, np.int64))

    @classmethod
    def from_pairs(cls, entities: Any, ips: Any, events: Any | None = None) -> "HistoryIndex":
        """Index of ``(entity, ip)`` rows; ``events`` counts per row (1 each when ``None``).

        Rows with an invalid IP or a null/empty entity are ignored; repeated pairs are summed.

        :param entities: entity names (strings).
        :param ips: dotted IPv4 strings or integer addresses.
        :param events: optional event counts per row.
        """
        ents = np.asarray(entities, dtype=object)
        addr, ok = _as_addresses(ips)
        if ents.shape != addr.shape:
            raise ValueError(f"history: {ents.size} entities and {addr.size} IPs; expected equal lengths")
        counts = np.ones(ents.size, np.int64) if events is None else np.asarray(events, dtype=np.int64)
        if counts.shape != ents.shape:
            raise ValueError(f"history: {counts.size} event counts for {ents.size} pairs")
        ok &= np.fromiter((isinstance(e, str) and e != "" for e in ents), dtype=bool, count=ents.size)
        if not ok.any():
            return cls.empty()
        ents, addr, counts = ents[ok], addr[ok], counts[ok]
        names, codes = np.unique(ents.astype(str), return_inverse=True)
        keys = (codes.astype(np.uint64) << np.uint64(32)) | addr.astype(np.uint64)
        uniq, inv = np.unique(keys, return_inverse=True)
        summed = np.bincount(inv.ravel(), weights=counts, minlength=uniq.size).astype(np.int64)
        return cls(names.tolist(), uniq, summed)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def pairs(self) -> int:
        """Distinct ``(entity, ip)`` pairs held."""
        return int(self._keys.size)

    def distinct_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The held pairs as ``(entity codes, uint32 addresses, events)``, sorted by code then address.

        A code indexes :attr:`names`.
        """
        codes = (self._keys >> np.uint64(32)).astype(np.int64)
        return codes, (self._keys & _LOW32).astype(np.uint32), np.diff(self._cum)

    def _events_between(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        a = np.searchsorted(self._keys, lo, side="left")
        b = np.searchsorted(self._keys, hi, side="right")
        return self._cum[b] - self._cum[a]

    def features(self, entities: Any, ips: Any, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """History features of each pair (see the module docstring), plus ``known_entity``.

        Invalid IPs get the no-history values; the scores they combine with are NaN anyway.

        :param entities: entity names.
        :param ips: dotted IPv4 strings or integer addresses, same length.
        :param names: the features wanted (default all); the estate counts are computed only when
            an ``estate_*`` feature is among them.
        """
        code, addr, ok = self._query(entities, ips, "history features")
        known = (code >= 0) & ok
        n = addr.size
        prefix = np.zeros(n, np.float64)
        dist = np.full(n, 32.0)
        share24 = np.zeros(n, np.float64)
        share16 = np.zeros(n, np.float64)
        exact = np.zeros(n, np.float64)
        idx = np.flatnonzero(known)
        if idx.size and self._keys.size:
            base = code[idx].astype(np.uint64) << np.uint64(32)
            a = addr[idx].astype(np.uint64)
            q = base | a
            pos = np.searchsorted(self._keys, q)
            best_bits = np.full(idx.size, -1, np.int64)
            best_dist = np.full(idx.size, np.inf)
            for cand in (pos - 1, pos):
                valid = (cand >= 0) & (cand < self._keys.size)
                c = self._keys[np.clip(cand, 0, self._keys.size - 1)]
                same = valid & ((c >> np.uint64(32)) == (base >> np.uint64(32)))
                other = (c & _LOW32).astype(np.int64)
                d = np.abs(other - a.astype(np.int64))
                xor = (other ^ a.astype(np.int64)).astype(np.float64)
                bits = 32 - np.frexp(xor)[1].astype(np.int64)
                best_bits = np.where(same, np.maximum(best_bits, bits), best_bits)
                best_dist = np.where(same, np.minimum(best_dist, d), best_dist)
            has = best_bits >= 0
            prefix[idx[has]] = best_bits[has]
            dist[idx[has]] = np.log2(1.0 + best_dist[has])
            exact[idx[has]] = (best_bits[has] == 32).astype(np.float64)
            total = self._events_between(base, base | _LOW32).astype(np.float64)
            denom = np.log1p(np.maximum(total, 1.0))
            for bits, out in ((24, share24), (16, share16)):
                host = np.uint64((1 << (32 - bits)) - 1)
                ev = self._events_between(base | (a & ~host & _LOW32), base | (a | host)).astype(np.float64)
                out[idx] = np.log1p(ev) / denom
        out = {"prefix_bits": prefix, "distance_bits": dist, "share_24": share24, "share_16": share16,
               "known_ip": exact, "known_entity": code >= 0}
        scale = np.log1p(max(len(self.names) - 1, 1))
        for bits in (24, 16):
            name = f"estate_{bits}"
            if names is None or name in names:  # an unknown entity counts everyone: clipped to 1
                out[name] = np.minimum(np.log1p(self._estate_counts(code, addr, ok, bits)) / scale, 1.0)
        return out

    def nearest_known_score(self, entities: Any, ips: Any) -> np.ndarray:
        """The non-ML baseline as an anomaly score: ``distance_bits`` (higher = farther from history)."""
        return self.features(entities, ips, ("distance_bits",))["distance_bits"]
