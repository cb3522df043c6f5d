"""Input encoding shared by training and scoring: entity hashing and IPv4 prefix indices.

NumPy only, so the scorer can use it without torch.

Entities
    An entity string is hashed with keyed BLAKE2b (8-byte digest, key derived from the model's hash
    seed) to a ``uint64``; its embedding row is ``hash % num_entity_vectors``. The full 64-bit hashes
    of the training entities are kept (sorted) so that scoring can tell known from unknown entities
    even when two entities share a row.

IPv4 addresses
    Every address is represented by several prefixes (by default /8, /12, /16, /20, /24, /32).
    Each prefix length has its own block of rows in one concatenated table: short prefixes index
    their block directly (``2**p`` rows), longer ones are hashed with a seeded 64-bit mixer into
    ``ip_hash_buckets`` rows. The IP vector is the sum of the prefix rows, followed by the encoder's
    fully connected layers. Nearby addresses share their short prefixes, so an address never seen
    in training still inherits what was learned about its /16 or /20.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["DEFAULT_PREFIX_LENGTHS", "EncoderSpec", "hash_entities", "entity_key"]

DEFAULT_PREFIX_LENGTHS: tuple[int, ...] = (8, 12, 16, 20, 24, 32)
DEFAULT_IP_HASH_BUCKETS = 1 << 16
_MASK64 = (1 << 64) - 1


def entity_key(seed: int) -> bytes:
    """The 16-byte BLAKE2b key for entity hashing, derived from a model's hash seed."""
    return hashlib.blake2b(f"seclake-ipinsights-entity:{int(seed)}".encode(), digest_size=16).digest()


def _salt(seed: int, prefix_length: int) -> tuple[int, int]:
    """Multiplier (odd) and increment of the multiply-shift hash for one prefix length."""
    digest = hashlib.blake2b(f"seclake-ipinsights-ip:{int(seed)}:{int(prefix_length)}".encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") | 1, int.from_bytes(digest[8:], "little")


def hash_entities(entities: Iterable[object], key: bytes) -> np.ndarray:
    """Keyed BLAKE2b-64 of each entity's UTF-8 text, as ``uint64``; each distinct string is hashed once.

    Non-string values are hashed as ``str(value)``.
    """
    seq = entities if isinstance(entities, (list, tuple, np.ndarray)) else list(entities)
    index: dict[object, int] = {}
    codes = np.fromiter((index.setdefault(e, len(index)) for e in seq), dtype=np.int64, count=len(seq))
    return hash_unique_strings(list(index), key)[codes]


def hash_unique_strings(strings: Sequence[object], key: bytes) -> np.ndarray:
    """Keyed BLAKE2b-64 of each string (no de-duplication), as ``uint64``."""
    blake = hashlib.blake2b

    def one(s: object) -> int:
        text = s if isinstance(s, str) else str(s)
        return int.from_bytes(blake(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest(), "little")

    return np.fromiter((one(s) for s in strings), dtype=np.uint64, count=len(strings))


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to turn entities and IPv4 addresses into table rows, reproducibly.

    :param num_entity_vectors: rows of the entity table.
    :param vector_dim: width of both tables.
    :param prefix_lengths: IPv4 prefix lengths, strictly increasing, 1-32.
    :param ip_hash_buckets: rows for each prefix length with more than this many possible values.
    :param hash_seed: seed of the entity key and the per-prefix salts.
    """

    num_entity_vectors: int
    vector_dim: int
    prefix_lengths: tuple[int, ...] = DEFAULT_PREFIX_LENGTHS
    ip_hash_buckets: int = DEFAULT_IP_HASH_BUCKETS
    hash_seed: int = 0
    # Derived (filled in __post_init__).
    table_rows: tuple[int, ...] = field(init=False)
    offsets: tuple[int, ...] = field(init=False)
    hashed: tuple[bool, ...] = field(init=False)
    salts: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        plens = tuple(int(p) for p in self.prefix_lengths)
        if not plens:
            raise ValueError("ip_prefix_lengths: expected at least one prefix length in 1-32, got none")
        if any(not 1 <= p <= 32 for p in plens) or any(b <= a for a, b in zip(plens, plens[1:])):
            raise ValueError(f"ip_prefix_lengths: expected strictly increasing integers in 1-32, got {list(plens)}")
        buckets = int(self.ip_hash_buckets)
        if not 16 <= buckets <= 1 << 24 or buckets & (buckets - 1):
            raise ValueError(f"ip_hash_buckets: expected a power of two in [16, 16777216], got {self.ip_hash_buckets}")
        if int(self.num_entity_vectors) < 1 or int(self.vector_dim) < 1:
            raise ValueError("EncoderSpec: num_entity_vectors and vector_dim must be positive")
        object.__setattr__(self, "prefix_lengths", plens)
        object.__setattr__(self, "ip_hash_buckets", int(self.ip_hash_buckets))
        rows, hashed = [], []
        for p in plens:
            direct = (1 << p) <= self.ip_hash_buckets
            rows.append(1 << p if direct else self.ip_hash_buckets)
            hashed.append(not direct)
        offsets = np.concatenate([[0], np.cumsum(rows)]).astype(int).tolist()
        object.__setattr__(self, "table_rows", tuple(rows))
        object.__setattr__(self, "offsets", tuple(offsets))
        object.__setattr__(self, "hashed", tuple(hashed))
        object.__setattr__(self, "salts", tuple(_salt(self.hash_seed, p) for p in plens))

    # ------------------------------------------------------------------ sizes
    @property
    def num_prefixes(self) -> int:
        return len(self.prefix_lengths)

    @property
    def ip_table_rows(self) -> int:
        """Rows of the concatenated IP prefix table."""
        return self.offsets[-1]

    @property
    def entity_hash_key(self) -> bytes:
        return entity_key(self.hash_seed)

    # ------------------------------------------------------------------ encoding
    def entity_hashes(self, entities: Iterable[object]) -> np.ndarray:
        return hash_entities(entities, self.entity_hash_key)

    def entity_rows(self, hashes: np.ndarray) -> np.ndarray:
        """Embedding rows (``int64``) for ``uint64`` entity hashes."""
        return (np.asarray(hashes, dtype=np.uint64) % np.uint64(self.num_entity_vectors)).astype(np.int64)

    def prefix_rows(self, addresses: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of the concatenated IP table, ``(n, num_prefixes)`` ``int64``, for ``uint32`` addresses."""
        a = np.asarray(addresses, dtype=np.uint32).astype(np.uint64)
        res = np.empty((a.shape[0], self.num_prefixes), np.int64) if out is None else out
        for j in range(self.num_prefixes):
            res[:, j] = self.prefix_column(a, j)
        return res

    def prefix_column(self, addresses: np.ndarray, j: int) -> np.ndarray:
        """Rows (``int64``) of prefix number ``j`` for ``uint32``/``uint64`` addresses."""
        a = np.asarray(addresses)
        if a.dtype != np.uint64:
            a = a.astype(np.uint64)
        v = a >> np.uint64(32 - self.prefix_lengths[j])
        if self.hashed[j]:
            mult, inc = self.salts[j]
            v *= np.uint64(mult)
            v += np.uint64(inc)
            v >>= np.uint64(64 - self._bucket_bits)
        v += np.uint64(self.offsets[j])
        return v.view(np.int64)

    @property
    def _bucket_bits(self) -> int:
        return self.ip_hash_buckets.bit_length() - 1

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "num_entity_vectors": int(self.num_entity_vectors),
            "vector_dim": int(self.vector_dim),
            "prefix_lengths": list(self.prefix_lengths),
            "ip_hash_buckets": self.ip_hash_buckets,
            "hash_seed": int(self.hash_seed),
            "hash": {
                "entity": "blake2b-64, keyed; key = blake2b-128('seclake-ipinsights-entity:<seed>'); row = hash % num_entity_vectors",
                "ip": "row = offset + ((a * prefix + b) mod 2**64) >> (64 - log2(ip_hash_buckets)); a|1, b = blake2b-128('seclake-ipinsights-ip:<seed>:<prefix>') halves",
            },
            "entity_hash_key": self.entity_hash_key.hex(),
            "ip_prefix_salts": [[str(a), str(b)] for a, b in self.salts],
            "ip_table_rows": list(self.table_rows),
            "ip_table_offsets": list(self.offsets),
            "ip_prefix_hashed": list(self.hashed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderSpec":
        spec = cls(
            num_entity_vectors=int(data["num_entity_vectors"]),
            vector_dim=int(data["vector_dim"]),
            prefix_lengths=tuple(int(p) for p in data["prefix_lengths"]),
            ip_hash_buckets=int(data["ip_hash_buckets"]),
            hash_seed=int(data["hash_seed"]),
        )
        # The stored derived values must agree with what this code derives, or scores would differ.
        stored = {
            "entity_hash_key": data.get("entity_hash_key"),
            "ip_prefix_salts": data.get("ip_prefix_salts"),
            "ip_table_offsets": data.get("ip_table_offsets"),
        }
        derived = spec.to_dict()
        for k, v in stored.items():
            if v is not None and v != derived[k]:
                raise ValueError(f"encoder.{k}: stored value does not match the one derived from the hash seed")
        return spec
