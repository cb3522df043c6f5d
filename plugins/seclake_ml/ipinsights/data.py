"""Reading ``(entity, ip)`` pairs and encoding them once into compact integer arrays.

Inputs (any of):

* Parquet pairs (a file or a folder of files) with at least ``entity`` and ``ip`` columns; the
  pairs contract also carries ``event_time``, ``source``, ``account`` and ``region``;
* headerless CSV ``entity,ip`` as SageMaker IP Insights takes it (``.csv``, ``.txt``, optionally
  ``.gz``); a first line that reads exactly ``entity,ip`` is taken as a header and skipped;
* a pandas DataFrame with ``entity`` and ``ip`` columns, or a pair of sequences ``(entities, ips)``.

Files are read in record batches, so memory holds the encoded arrays (12 bytes per pair: a
``uint64`` entity hash and a ``uint32`` address) and one batch of text at a time. Rows are dropped,
and counted per reason: ``null`` (entity or IP missing), ``empty_entity``, ``invalid_ip`` (not strict
dotted-decimal IPv4 after trimming whitespace) and ``malformed`` (CSV lines without two fields).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from seclake_ml.ipinsights.encoding import entity_key, hash_unique_strings
from seclake_ml.ipinsights.ipv4 import parse_ipv4

log = logging.getLogger(__name__)

__all__ = ["EncodedPairs", "DROP_REASONS", "encode_pairs", "iter_pair_batches", "read_pairs_frame", "is_csv_path"]

DROP_REASONS = ("null", "empty_entity", "invalid_ip", "malformed")
DEFAULT_BATCH_ROWS = 1 << 20
_CSV_SUFFIXES = {".csv", ".txt", ".tsv"}


@dataclass
class EncodedPairs:
    """Pairs as integers: keyed entity hashes and IPv4 addresses, plus what reading them dropped.

    :param entity_hash: ``uint64`` keyed BLAKE2b of each entity (see :mod:`.encoding`).
    :param ip: ``uint32`` addresses.
    :param hash_seed: seed of the entity hash key; it must match the model's.
    """

    entity_hash: np.ndarray
    ip: np.ndarray
    hash_seed: int
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    event_time_min: str | None = None
    event_time_max: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.entity_hash = np.ascontiguousarray(self.entity_hash, dtype=np.uint64)
        self.ip = np.ascontiguousarray(self.ip, dtype=np.uint32)
        if self.entity_hash.shape != self.ip.shape or self.ip.ndim != 1:
            raise ValueError(f"EncodedPairs: entity_hash {self.entity_hash.shape} and ip {self.ip.shape} must be equal 1-d shapes")

    def __len__(self) -> int:
        return int(self.ip.shape[0])

    def unique_entity_hashes(self) -> np.ndarray:
        return np.unique(self.entity_hash)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": int(self.rows_read),
            "pairs": len(self),
            "dropped": dict(self.dropped),
            "event_time_min": self.event_time_min,
            "event_time_max": self.event_time_max,
        }


def is_csv_path(path: str | Path) -> bool:
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in {".gz", ".bz2"}:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in _CSV_SUFFIXES


def iter_pair_batches(path: str | Path, columns: Sequence[str] = ("entity", "ip"), batch_rows: int = DEFAULT_BATCH_ROWS,
                      malformed: list[int] | None = None) -> Iterator[Any]:
    """Yield ``pyarrow.RecordBatch`` objects with the requested columns from a pairs file.

    For CSV only ``entity`` and ``ip`` exist; ``malformed`` (a one-element list) counts skipped lines.
    """
    import pyarrow as pa

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"pairs input {p} does not exist")
    if is_csv_path(p):
        from pyarrow import csv as pacsv

        counter = malformed if malformed is not None else [0]

        def on_invalid(row: Any) -> str:
            counter[0] += 1
            return "skip"

        reader = pacsv.open_csv(
            p,
            read_options=pacsv.ReadOptions(column_names=["entity", "ip"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={"entity": pa.string(), "ip": pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        wanted = [c for c in columns if c in ("entity", "ip")]
        first = True
        for batch in reader:
            if first and batch.num_rows:
                first = False
                if batch.column(0)[0].as_py() == "entity" and batch.column(1)[0].as_py().strip() == "ip":
                    batch = batch.slice(1)
            yield batch.select(wanted)
        return
    import pyarrow.dataset as ds

    dataset = ds.dataset(p, format="parquet")
    names = set(dataset.schema.names)
    missing = [c for c in ("entity", "ip") if c not in names]
    if missing:
        raise ValueError(f"pairs input {p}: missing column(s) {missing}; expected at least 'entity' and 'ip' (got {sorted(names)})")
    present = [c for c in columns if c in names]
    yield from dataset.to_batches(columns=present, batch_size=batch_rows)


def _encode_arrays(entities: Any, ips: Any, key: bytes, cache: dict[str, int], dropped: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Encode one batch of arrow string arrays; returns (entity hashes, addresses) of the kept rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(entities.type):
        entities = entities.cast(pa.string())
    if pa.types.is_dictionary(ips.type):
        ips = ips.cast(pa.string())
    if not pa.types.is_string(entities.type) and not pa.types.is_large_string(entities.type):
        entities = entities.cast(pa.string())
    if not pa.types.is_string(ips.type) and not pa.types.is_large_string(ips.type):
        ips = ips.cast(pa.string())
    n = len(entities)
    null = np.asarray(pc.or_(pc.is_null(entities), pc.is_null(ips)).fill_null(True).to_numpy(zero_copy_only=False), bool)
    dropped["null"] += int(null.sum())
    empty = ~null & np.asarray(pc.equal(pc.utf8_length(entities), 0).fill_null(False).to_numpy(zero_copy_only=False), bool)
    dropped["empty_entity"] += int(empty.sum())

    ip_dict = pc.dictionary_encode(pc.utf8_trim_whitespace(ips))
    uniq_ip = ip_dict.dictionary.to_numpy(zero_copy_only=False)
    addr_u, ok_u = parse_ipv4(uniq_ip)
    ip_idx = ip_dict.indices.fill_null(0).to_numpy(zero_copy_only=False)
    if len(uniq_ip) == 0:
        addr, ok = np.zeros(n, np.uint32), np.zeros(n, bool)
    else:
        addr, ok = addr_u[ip_idx], ok_u[ip_idx]
    bad_ip = ~null & ~empty & ~ok
    dropped["invalid_ip"] += int(bad_ip.sum())
    keep = ~(null | empty | bad_ip)

    ent_dict = pc.dictionary_encode(entities)
    uniq_ent = ent_dict.dictionary.to_pylist()
    new = [s for s in uniq_ent if s not in cache]
    if new:
        cache.update(zip(new, hash_unique_strings(new, key).tolist()))
    hashes_u = np.fromiter((cache[s] for s in uniq_ent), dtype=np.uint64, count=len(uniq_ent))
    ent_idx = ent_dict.indices.fill_null(0).to_numpy(zero_copy_only=False)
    hashes = hashes_u[ent_idx] if len(uniq_ent) else np.zeros(n, np.uint64)
    return hashes[keep], addr[keep]


def _string_array(values: Any) -> Any:
    """Arrow string array from a sequence; ``None``/NaN become null, other non-strings their ``str``."""
    import pyarrow as pa

    arr = np.asarray(values, dtype=object)
    try:
        return pa.array(arr, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in arr], type=pa.string())


def encode_pairs(source: Any, hash_seed: int = 0, batch_rows: int = DEFAULT_BATCH_ROWS) -> EncodedPairs:
    """Read pairs from a file, a DataFrame or ``(entities, ips)`` and encode them once.

    :param source: path (Parquet file/folder or headerless CSV), DataFrame, ``(entities, ips)``, or
        an :class:`EncodedPairs` (returned as is when the hash seed matches).
    :param hash_seed: the model's hash seed (entity hashes depend on it).
    :param batch_rows: rows per record batch when reading files.
    """
    import pyarrow as pa

    if isinstance(source, EncodedPairs):
        if source.hash_seed != hash_seed:
            raise ValueError(f"encoded pairs were hashed with seed {source.hash_seed}, the model uses {hash_seed}; re-encode from the source")
        return source
    key = entity_key(hash_seed)
    cache: dict[str, int] = {}
    dropped = {r: 0 for r in DROP_REASONS}
    parts_h: list[np.ndarray] = []
    parts_ip: list[np.ndarray] = []
    rows = 0
    tmin = tmax = None
    label = ""
    if isinstance(source, (str, Path)):
        label = str(source)
        malformed = [0]
        for batch in iter_pair_batches(source, ("entity", "ip", "event_time"), batch_rows, malformed):
            rows += batch.num_rows
            h, a = _encode_arrays(batch.column("entity"), batch.column("ip"), key, cache, dropped)
            parts_h.append(h)
            parts_ip.append(a)
            if "event_time" in batch.schema.names and batch.num_rows:
                import pyarrow.compute as pc

                mm = pc.min_max(batch.column("event_time")).as_py()
                if mm["min"] is not None:
                    tmin = mm["min"] if tmin is None else min(tmin, mm["min"])
                    tmax = mm["max"] if tmax is None else max(tmax, mm["max"])
        dropped["malformed"] += malformed[0]
        rows += malformed[0]
    else:
        if hasattr(source, "columns") and hasattr(source, "__getitem__"):
            missing = [c for c in ("entity", "ip") if c not in source.columns]
            if missing:
                raise ValueError(f"pairs frame: missing column(s) {missing}")
            ents, ips = source["entity"], source["ip"]
            label = "DataFrame"
        elif isinstance(source, (tuple, list)) and len(source) == 2:
            ents, ips = source
            label = "sequences"
        else:
            raise ValueError(f"pairs input: expected a path, a DataFrame or (entities, ips), got {type(source).__name__}")
        ent_arr, ip_arr = _string_array(ents), _string_array(ips)
        if len(ent_arr) != len(ip_arr):
            raise ValueError(f"pairs input: {len(ent_arr)} entities but {len(ip_arr)} IPs")
        rows = len(ent_arr)
        for start in range(0, rows, batch_rows):
            h, a = _encode_arrays(ent_arr.slice(start, batch_rows), ip_arr.slice(start, batch_rows), key, cache, dropped)
            parts_h.append(h)
            parts_ip.append(a)
    hashes = np.concatenate(parts_h) if parts_h else np.zeros(0, np.uint64)
    addrs = np.concatenate(parts_ip) if parts_ip else np.zeros(0, np.uint32)
    pairs = EncodedPairs(
        hashes, addrs, hash_seed, rows_read=rows, dropped=dropped,
        event_time_min=None if tmin is None else str(tmin), event_time_max=None if tmax is None else str(tmax), source=label,
    )
    log.info("read %d rows from %s: %d pairs kept, dropped %s", rows, label, len(pairs), {k: v for k, v in dropped.items() if v} or "none")
    return pairs


def read_pairs_frame(path: str | Path, columns: Sequence[str] = ("entity", "ip", "event_time")) -> Any:
    """Load a pairs file into a pandas DataFrame (for scoring and calibration; not for large training sets).

    CSV gives ``entity`` and ``ip`` only; Parquet gives whichever of ``columns`` it has.
    """
    import pandas as pd
    import pyarrow as pa

    batches = list(iter_pair_batches(path, columns))
    if not batches:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns if c in ("entity", "ip")})
    table = pa.Table.from_batches(batches)
    return table.to_pandas()
