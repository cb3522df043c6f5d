"""Building blocks for the sample lake generator: seeded random streams, ids, IP strings, diurnal
time sampling and fast, vectorised construction of Arrow columns.

Every per-row value is produced with NumPy and turned into Arrow by taking from small dictionaries of
distinct values (IP strings, ids, names), so no Python code runs per row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

DAY_MS = 86_400_000
MINUTES_PER_DAY = 1440
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UPPER32 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", dtype=np.uint8)


# ----------------------------------------------------------------------------- random streams
def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent, reproducible random stream for ``seed`` and a path of integer ``keys``.

    Each partition and chunk draws from its own stream, so the data of one partition does not depend on
    the order in which partitions are generated.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *map(int, keys)]))


def stable_token(*parts: object, length: int = 16) -> str:
    """Hex digest of ``parts`` (used for file names that are stable for a seed)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode())
    return h.hexdigest()[:length]


def day_start_ms(day: _dt.date) -> int:
    return int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)


# ----------------------------------------------------------------------------- ids and addresses
def hex_id(rng: np.random.Generator, prefix: str, length: int = 17) -> str:
    return prefix + "".join("0123456789abcdef"[i] for i in rng.integers(0, 16, size=length))


def upper_id(rng: np.random.Generator, prefix: str, length: int = 17) -> str:
    """IAM-style upper-case id such as ``AIDA…``, ``AROA…``, ``AKIA…``."""
    return prefix + bytes(_UPPER32[rng.integers(0, 32, size=length)]).decode()


def ip4(value: int) -> str:
    v = int(value)
    return f"{(v >> 24) & 255}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"


def ip4_int(a: int, b: int, c: int, d: int) -> int:
    return (a << 24) | (b << 16) | (c << 8) | d


# ----------------------------------------------------------------------------- time
def diurnal_weights(utc_offset_h: float, amplitude: float, peak_local_h: float = 14.0, width_h: float = 4.5) -> np.ndarray:
    """Per-minute weights (1440, sum 1) of a day: a flat base plus a bump around ``peak_local_h`` local time."""
    minutes = np.arange(MINUTES_PER_DAY, dtype=np.float64)
    local_h = (minutes / 60.0 + utc_offset_h) % 24.0
    d = np.minimum(np.abs(local_h - peak_local_h), 24.0 - np.abs(local_h - peak_local_h))
    w = 1.0 + amplitude * np.exp(-0.5 * (d / width_h) ** 2)
    return w / w.sum()


def minute_counts(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """How many of ``n`` events fall into each minute of the day."""
    if n <= 0:
        return np.zeros(MINUTES_PER_DAY, dtype=np.int64)
    return rng.multinomial(n, weights).astype(np.int64)


def chunk_minute_ranges(counts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Split the day's minutes into consecutive ranges holding about ``chunk_rows`` events each."""
    total = int(counts.sum())
    if total <= chunk_rows:
        return [(0, MINUTES_PER_DAY)]
    cum = np.cumsum(counts)
    ranges: list[tuple[int, int]] = []
    lo = 0
    target = chunk_rows
    while lo < MINUTES_PER_DAY:
        hi = int(np.searchsorted(cum, target, side="left")) + 1
        hi = max(hi, lo + 1)
        if hi >= MINUTES_PER_DAY or cum[-1] - (cum[hi - 1] if hi > 0 else 0) == 0:
            hi = MINUTES_PER_DAY
        ranges.append((lo, hi))
        target = int(cum[hi - 1]) + chunk_rows
        lo = hi
    return ranges


def times_in_minutes(rng: np.random.Generator, day_ms: int, counts: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sorted event times (epoch ms, whole seconds) for minutes ``[lo, hi)`` with ``counts`` events each."""
    c = counts[lo:hi]
    starts = day_ms + np.arange(lo, hi, dtype=np.int64) * 60_000
    t = np.repeat(starts, c) + rng.integers(0, 60, size=int(c.sum()), dtype=np.int64) * 1000
    t.sort(kind="stable")
    return t


def weighted_index(rng: np.random.Generator, cum_weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws of indices with probabilities given by the cumulative weights ``cum_weights``."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    u = rng.random(n) * cum_weights[-1]
    idx = np.searchsorted(cum_weights, u, side="right")
    return np.minimum(idx, len(cum_weights) - 1)


def split_total(total: int, weights: Sequence[float]) -> np.ndarray:
    """Split the integer ``total`` in proportion to ``weights`` (largest remainders; sums exactly)."""
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    raw = w / w.sum() * total
    base = np.floor(raw).astype(np.int64)
    rest = total - int(base.sum())
    if rest:
        order = np.argsort(-(raw - base), kind="stable")
        base[order[:rest]] += 1
    return base


# ----------------------------------------------------------------------------- Arrow columns
_CONST_CACHE: dict[tuple, pa.Array] = {}
_CONST_MIN = 4096
_CONST_MAX_ENTRIES = 96
_CONST_LOCK = threading.Lock()


def _cached(key: tuple, n: int, build) -> pa.Array:
    """A zero-copy slice of a cached constant array with at least ``n`` rows."""
    arr = _CONST_CACHE.get(key)
    if arr is None or len(arr) < n:
        arr = build(max(n, _CONST_MIN, 2 * len(arr) if arr is not None else 0))
        with _CONST_LOCK:
            while len(_CONST_CACHE) >= _CONST_MAX_ENTRIES:
                _CONST_CACHE.pop(next(iter(_CONST_CACHE)))
            _CONST_CACHE[key] = arr
    return arr.slice(0, n)


def _const_str_build(value: str, n: int) -> pa.Array:
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def const_str(value: str, n: int) -> pa.Array:
    """A string array of ``n`` copies of ``value``."""
    return _cached(("s", value), n, lambda m: _const_str_build(value, m))


def const_int(value: int, n: int, typ: pa.DataType = pa.int32()) -> pa.Array:
    return _cached(("i", value, str(typ)), n, lambda m: pa.array(np.full(m, value, dtype=typ.to_pandas_dtype()), type=typ))


def const_column(key: tuple, n: int, build) -> pa.Array:
    """A constant nested column: ``build(m)`` makes ``m`` rows of it; cached and sliced."""
    return _cached(("c", *key), n, build)


def ints(values: np.ndarray, typ: pa.DataType = pa.int32(), valid: np.ndarray | None = None) -> pa.Array:
    arr = np.ascontiguousarray(values, dtype=typ.to_pandas_dtype())
    out = pa.array(arr, type=typ)
    if valid is None:
        return out
    valid = np.asarray(valid, dtype=bool)
    return out if valid.all() else with_validity(out, valid)


def bools(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    if valid is None:
        return pa.array(np.asarray(values, dtype=bool), type=pa.bool_())
    return pa.array(np.asarray(values, dtype=bool), type=pa.bool_(), mask=~np.asarray(valid, dtype=bool))


def timestamps_ms(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``timestamp[ms, tz=UTC]`` from epoch milliseconds."""
    return ints(values, pa.int64(), valid).view(pa.timestamp("ms", tz="UTC"))


class StrDict:
    """A small dictionary of distinct strings; columns are built by taking from it."""

    def __init__(self, values: Sequence[str] = ()) -> None:
        self._values: list[str] = []
        self._index: dict[str, int] = {}
        self._arrow: pa.Array | None = None
        for v in values:
            self.add(v)

    def add(self, value: str) -> int:
        i = self._index.get(value)
        if i is None:
            i = len(self._values)
            self._values.append(value)
            self._index[value] = i
            self._arrow = None
        return i

    def index(self, value: str) -> int:
        return self._index[value]

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> str:
        return self._values[i]

    @property
    def arrow(self) -> pa.Array:
        if self._arrow is None:
            self._arrow = pa.array(self._values, type=pa.string())
        return self._arrow

    def take(self, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
        """Strings at ``idx``; rows where ``valid`` is False (or ``idx`` < 0 when ``valid`` is None) are null."""
        idx = np.asarray(idx)
        if valid is None:
            valid = idx >= 0
        valid = np.asarray(valid, dtype=bool)
        if not self._values:
            if valid.any():
                raise IndexError("take from an empty dictionary")
            return pa.nulls(len(idx), pa.string())
        all_valid = bool(valid.all())
        safe = idx if all_valid else np.where(valid, idx, 0)
        out = self.arrow.take(pa.array(safe.astype(np.int32, copy=False)))
        if all_valid:
            return out
        return with_validity(out, valid)


def with_validity(arr: pa.Array, valid: np.ndarray) -> pa.Array:
    """``arr`` (without nulls, offset 0) with the rows where ``valid`` is False set to null."""
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(arr.type, len(arr), [bitmap, *arr.buffers()[1:]])


def _hex_chars(raw: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k) ASCII hex digits."""
    out = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 ASCII matrix -> string array of n strings of width w."""
    n, w = chars.shape
    offsets = np.arange(n + 1, dtype=np.int32) * w
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes())]
    )


def uuid_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` random version-4 UUID strings."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    h = _hex_chars(raw)
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    chars = np.concatenate([h[:, 0:8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:32]], axis=1)
    return fixed_width_strings(chars)


def ragged(
    n: int,
    entries: Sequence[tuple[np.ndarray | None, Mapping[str, pa.Array]]],
    item_type: pa.StructType,
    null_if_empty: bool = True,
) -> tuple[np.ndarray, pa.StructArray, np.ndarray]:
    """Interleave up to ``len(entries)`` candidate items per row into flat list storage.

    ``entries[k] = (present, fields)``: ``present`` is a boolean mask of the rows that carry item ``k``
    (None = all rows), ``fields`` maps each field of ``item_type`` to a length-``n`` array. Items keep the
    order of ``entries`` within a row. Returns ``(offsets, flat struct values, row validity)``.
    """
    k = len(entries)
    present = np.ones((n, k), dtype=bool)
    for j, (mask, _) in enumerate(entries):
        if mask is not None:
            present[:, j] = mask
    counts = present.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    rows, cols = np.nonzero(present)  # row-major: items of a row stay together, in entry order
    flat_index = pa.array((cols.astype(np.int64) * n + rows).astype(np.int64))
    children = []
    for f in item_type:
        parts = [fields[f.name] for _, fields in entries]
        stacked = pa.concat_arrays([p.cast(f.type) if p.type != f.type else p for p in parts])
        children.append(stacked.take(flat_index))
    values = pa.StructArray.from_arrays(children, fields=list(item_type))
    valid = counts > 0 if null_if_empty else np.ones(n, dtype=bool)
    return offsets, values, valid


def list_of_structs(
    n: int,
    entries: Sequence[tuple[np.ndarray | None, Mapping[str, pa.Array]]],
    list_type: pa.ListType,
    null_if_empty: bool = True,
) -> pa.Array:
    offsets, values, valid = ragged(n, entries, list_type.value_type, null_if_empty)
    mask = None if valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=list_type, mask=mask)


def string_map(
    n: int,
    entries: Sequence[tuple[str, np.ndarray | None, pa.Array]],
    map_type: pa.MapType,
    null_if_empty: bool = True,
) -> pa.Array:
    """A ``map<string,string>`` column from ``(key, present mask, values)`` candidates."""
    item = pa.struct([pa.field("key", pa.string(), False), pa.field("value", pa.string(), False)])
    offsets, values, valid = ragged(
        n, [(mask, {"key": const_str(key, n), "value": vals}) for key, mask, vals in entries], item, null_if_empty
    )
    mask = None if valid.all() else pa.array(~valid)
    return pa.MapArray.from_arrays(
        pa.array(offsets), values.field("key"), values.field("value"), type=map_type, mask=mask
    )


def _build_nested(
    typ: pa.DataType, path: str, columns: Mapping[str, pa.Array], n: int, used: set[str]
) -> pa.Array | None:
    if path in columns:
        used.add(path)
        arr = columns[path]
        if len(arr) != n:
            raise ValueError(f"column {path}: {len(arr)} rows, expected {n}")
        if not arr.type.equals(typ):
            raise ValueError(f"column {path}: type {arr.type}, expected {typ}")
        return arr
    if not pa.types.is_struct(typ):
        return None
    children = [_build_nested(f.type, f"{path}.{f.name}", columns, n, used) for f in typ]
    if all(c is None for c in children):
        return None
    filled = []
    for f, c in zip(typ, children):
        if c is None:
            if not f.nullable:
                raise ValueError(f"required field {path}.{f.name} not provided")
            c = pa.nulls(n, type=f.type)
        filled.append(c)
    return pa.StructArray.from_arrays(filled, fields=list(typ))


def assemble(schema: pa.Schema, columns: Mapping[str, pa.Array], n: int) -> pa.Table:
    """Build a table of ``schema`` from flat ``{"a.b.c": array}`` leaves (or whole nested columns).

    Nested structs are assembled from their leaves; absent nullable fields become nulls; an absent
    required field, or an array of the wrong type, raises ``ValueError`` (a generator bug).
    """
    used: set[str] = set()
    arrays = []
    for f in schema:
        arr = _build_nested(f.type, f.name, columns, n, used)
        if arr is None:
            if not f.nullable:
                raise ValueError(f"required column {f.name} not provided")
            arr = pa.nulls(n, type=f.type)
        arrays.append(arr)
    unknown = sorted(set(columns) - used)
    if unknown:
        raise ValueError(f"columns not in schema: {unknown}")
    return pa.Table.from_arrays(arrays, schema=schema)
