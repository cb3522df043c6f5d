"""Training-time entity profile: which IPs and /24 networks each entity used, to explain findings.

IP Insights says *that* a pair is unusual, not *why*. The profile keeps, for every ``(entity, ip)``
pair of the training data, its event count and first/last time, so a finding can say what was usual
for the entity ("i-0abc was usually seen with 10.0.2.0/24 (120 events) ...") and how close the flagged IP
comes to anything known (the known IP sharing the most leading bits with it).

Design
------
* **Build** (:func:`build_profile`): one DuckDB ``GROUP BY entity, ip`` over the pairs Parquet files,
  keeping only dotted IPv4 addresses (IPv6, ``-``, empty and other values are counted as dropped).
  DuckDB writes the result straight to Parquet (zstd, sorted by entity then ip, 100k-row row groups,
  so row-group statistics prune well when a few entities are loaded), to a temporary file in the
  target folder that is then moved into place with ``os.replace``: readers never see a partial file.
  :func:`profile_from_frames` does the same aggregation incrementally over pandas chunks (chunked S3
  reads in AWS) and :func:`write_profile_table` writes its result atomically.
* **Load** (:meth:`EntityProfile.load`): reads only the rows of the entities asked for, with a pyarrow
  ``entity IN (...)`` filter pushed into the Parquet scan, so scoring a handful of flagged entities
  stays cheap however big the profile is. Duplicate ``(entity, ip)`` rows are merged.
* **Explain** (:meth:`EntityProfile.explain`): never raises on odd input; an unknown entity or a
  malformed IP gives an explanation that says so.

Profile columns (:data:`PROFILE_SCHEMA`): ``entity`` string, ``ip`` string, ``ip_int`` uint32,
``events`` int64, ``first_seen``/``last_seen`` ``timestamp[us, tz=UTC]``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seclake_ml.scoring.findings import one_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas

PROFILE_FILE = "profile.parquet"

PROFILE_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("ip_int", pa.uint32()),
        pa.field("events", pa.int64()),
        pa.field("first_seen", pa.timestamp("us", tz="UTC")),
        pa.field("last_seen", pa.timestamp("us", tz="UTC")),
    ]
)

# Dotted IPv4, octets 0-255 without leading zeros (what ``ipaddress.IPv4Address`` accepts).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
_IPV4_RE = re.compile(IPV4_PATTERN)
_ROW_GROUP_ROWS = 100_000
_SHOWN = 120


def ipv4_int(ip: object) -> int | None:
    """``ip`` as a 32-bit integer when it is a dotted IPv4 string, else ``None``."""
    if not isinstance(ip, str) or len(ip) > 15 or not _IPV4_RE.fullmatch(ip):
        return None
    return int(ipaddress.IPv4Address(ip))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


# ----------------------------------------------------------------------------- building
def _event_time_expr(columns: dict[str, str]) -> str:
    """SQL for the event time as TIMESTAMPTZ, from whatever type the pairs files carry."""
    kind = columns.get("event_time")
    if kind is None:
        return "CAST(NULL AS TIMESTAMPTZ)"
    k = kind.upper()
    if k.startswith("TIMESTAMP") or k == "DATE":
        return "CAST(event_time AS TIMESTAMPTZ)"
    if k in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "CAST(epoch_ms(CAST(event_time AS BIGINT)) AS TIMESTAMPTZ)"  # epoch milliseconds
    raise ValueError(f"pairs column event_time has type {kind}; expected a timestamp or epoch milliseconds")


def _write_atomically(out_path: str | Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file onto ``out_path``."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        os.unlink(tmp)  # the writer creates it
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def write_profile_table(table: pa.Table, out_path: str | Path) -> Path:
    """Write a profile table (cast to :data:`PROFILE_SCHEMA`) to ``out_path`` atomically (zstd)."""
    table = table.select(PROFILE_SCHEMA.names).cast(PROFILE_SCHEMA)
    return _write_atomically(
        out_path,
        lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=_ROW_GROUP_ROWS),
    )


def build_profile(pairs_paths: list[str], out_path: str) -> dict:
    """Aggregate pairs Parquet files into the entity profile at ``out_path`` (atomic write).

    Rows whose ``ip`` is not a dotted IPv4 address, or whose ``entity`` is null/empty, are dropped and
    counted. Returns ``{"files", "rows_in", "rows_used", "rows_dropped", "entities", "pairs",
    "events", "path"}``.

    :param pairs_paths: Parquet files with columns ``entity``, ``ip`` and (optionally) ``event_time``
        (timestamp, or epoch ms); other columns are ignored.
    :param out_path: where to write the profile (normally ``<model dir>/profile.parquet``).
    """
    import duckdb

    paths = [str(p) for p in pairs_paths]
    missing = [p for p in paths if "://" not in p and not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"pairs file(s) not found: {', '.join(one_line(m, 200) for m in missing[:5])}")
    if not paths:
        write_profile_table(PROFILE_SCHEMA.empty_table(), out_path)
        return {"files": 0, "rows_in": 0, "rows_used": 0, "rows_dropped": 0, "entities": 0, "pairs": 0,
                "events": 0, "path": str(out_path)}

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        src = "read_parquet($paths, union_by_name = true)"
        from seclake_ml.lake.paths import literal_path

        params = {"paths": [p if "://" in p else literal_path(p) for p in paths]}  # names, never patterns
        columns = {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {src}", params).fetchall()}
        lacking = [c for c in ("entity", "ip") if c not in columns]
        if lacking:
            raise ValueError(
                f"pairs files lack column(s) {', '.join(lacking)}; expected entity, ip, event_time "
                f"(found {', '.join(sorted(columns))})"
            )
        valid = (
            "entity IS NOT NULL AND CAST(entity AS VARCHAR) <> '' "
            "AND regexp_full_match(CAST(ip AS VARCHAR), $ipv4)"
        )
        params_v = {**params, "ipv4": IPV4_PATTERN}
        rows_in, rows_used = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {valid}) FROM {src}", params_v
        ).fetchone()
        ts = _event_time_expr(columns)
        ip_int = (
            "CAST((CAST(split_part(ip, '.', 1) AS UBIGINT) << 24) + (CAST(split_part(ip, '.', 2) AS UBIGINT) << 16)"
            " + (CAST(split_part(ip, '.', 3) AS UBIGINT) << 8) + CAST(split_part(ip, '.', 4) AS UBIGINT) AS UINTEGER)"
        )
        query = (
            f"SELECT entity, ip, {ip_int} AS ip_int, events, first_seen, last_seen FROM ("
            f" SELECT CAST(entity AS VARCHAR) AS entity, CAST(ip AS VARCHAR) AS ip, count(*)::BIGINT AS events,"
            f" min({ts}) AS first_seen, max({ts}) AS last_seen"
            f" FROM {src} WHERE {valid} GROUP BY 1, 2) ORDER BY entity, ip"
        )

        def write(tmp: str) -> None:
            con.execute(
                f"COPY ({query}) TO $out (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {_ROW_GROUP_ROWS})",
                {**params_v, "out": tmp},
            )

        _write_atomically(out_path, write)
    finally:
        con.close()

    meta = pq.ParquetFile(out_path)
    entities_col = pq.read_table(out_path, columns=["entity", "events"])
    return {
        "files": len(paths),
        "rows_in": int(rows_in),
        "rows_used": int(rows_used),
        "rows_dropped": int(rows_in - rows_used),
        "entities": int(pc.count_distinct(entities_col["entity"]).as_py()) if entities_col.num_rows else 0,
        "pairs": int(meta.metadata.num_rows),
        "events": int(pc.sum(entities_col["events"]).as_py() or 0),
        "path": str(out_path),
    }


def profile_from_frames(frames: Iterable[pandas.DataFrame]) -> pa.Table:
    """Profile table (:data:`PROFILE_SCHEMA`, sorted by entity, ip) aggregated chunk by chunk.

    Each chunk is reduced to one row per ``(entity, ip)`` and merged into the running aggregate, so
    memory follows the number of distinct pairs, not the number of rows.

    :param frames: pandas DataFrames with ``entity``, ``ip`` and optionally ``event_time``.
    """
    import pandas as pd

    running: pd.DataFrame | None = None
    for i, frame in enumerate(frames):
        lacking = [c for c in ("entity", "ip") if c not in frame.columns]
        if lacking:
            raise ValueError(f"pairs chunk {i} lacks column(s) {', '.join(lacking)}")
        ip = frame["ip"]
        ok = ip.map(lambda v: ipv4_int(v) is not None).astype(bool)
        ent = frame["entity"]
        ok &= ent.notna() & (ent.astype(str) != "")
        part = pd.DataFrame({"entity": ent[ok].astype(str), "ip": ip[ok].astype(str)})
        if "event_time" in frame.columns:
            part["t"] = pd.to_datetime(frame.loc[ok, "event_time"], utc=True)
        else:
            part["t"] = pd.Series(pd.NaT, index=part.index, dtype="datetime64[ns, UTC]")
        agg = part.groupby(["entity", "ip"], sort=False).agg(
            events=("t", "size"), first_seen=("t", "min"), last_seen=("t", "max")
        )
        if running is None:
            running = agg
        else:
            both = pd.concat([running, agg])
            running = both.groupby(level=[0, 1], sort=False).agg(
                events=("events", "sum"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max")
            )
    if running is None or running.empty:
        return PROFILE_SCHEMA.empty_table()
    out = running.reset_index().sort_values(["entity", "ip"], kind="stable")
    ip_int = np.fromiter((ipv4_int(v) for v in out["ip"]), dtype=np.uint32, count=len(out))
    table = pa.table(
        {
            "entity": pa.array(out["entity"].tolist(), pa.string()),
            "ip": pa.array(out["ip"].tolist(), pa.string()),
            "ip_int": pa.array(ip_int, pa.uint32()),
            "events": pa.array(out["events"].to_numpy(dtype=np.int64), pa.int64()),
            "first_seen": pa.array(out["first_seen"], pa.timestamp("us", tz="UTC")),
            "last_seen": pa.array(out["last_seen"], pa.timestamp("us", tz="UTC")),
        }
    )
    return table.cast(PROFILE_SCHEMA)


# ----------------------------------------------------------------------------- lookup
@dataclass(frozen=True)
class _Known:
    """The known IPs of one entity (unique, ascending)."""

    ip_int: np.ndarray  # uint32
    events: np.ndarray  # int64


class EntityProfile:
    """Known IPs per entity, for explanations. Build with :meth:`load` or :meth:`empty`."""

    def __init__(self, known: dict[str, _Known]) -> None:
        self._known = known

    @classmethod
    def empty(cls) -> EntityProfile:
        """A profile that knows no entity (every explanation says so)."""
        return cls({})

    @classmethod
    def from_table(cls, table: pa.Table) -> EntityProfile:
        """Profile from a table with at least ``entity``, ``ip`` (or ``ip_int``) and ``events``."""
        names = set(table.column_names)
        lacking = [c for c in ("entity", "events") if c not in names]
        if lacking or not ({"ip", "ip_int"} & names):
            raise ValueError(f"profile lacks column(s) {', '.join(lacking or ['ip'])}; expected {PROFILE_SCHEMA.names}")
        if table.num_rows == 0:
            return cls.empty()
        entities = table["entity"].to_pylist()
        if "ip_int" in names:
            ints = table["ip_int"].to_numpy(zero_copy_only=False)
            valid = ~np.asarray(table["ip_int"].is_null().to_numpy(zero_copy_only=False), dtype=bool)
            ints = np.where(valid, ints, 0).astype(np.uint32)
        else:
            parsed = [ipv4_int(v) for v in table["ip"].to_pylist()]
            valid = np.array([p is not None for p in parsed], dtype=bool)
            ints = np.array([p or 0 for p in parsed], dtype=np.uint32)
        events = np.asarray(table["events"].fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        order: dict[str, list[int]] = {}
        for i, e in enumerate(entities):
            if e is not None and valid[i]:
                order.setdefault(e, []).append(i)
        known: dict[str, _Known] = {}
        for e, idx in order.items():
            ix = np.asarray(idx)
            uniq, inv = np.unique(ints[ix], return_inverse=True)
            summed = np.bincount(inv, weights=events[ix]).astype(np.int64)
            known[e] = _Known(ip_int=uniq.astype(np.uint32), events=summed)
        return cls(known)

    @classmethod
    def load(cls, source: str | bytes | Path, entities: Iterable[str] | None = None) -> EntityProfile:
        """Profile rows of ``entities`` only (all rows when ``None``) from a Parquet file or its bytes.

        :param source: path of ``profile.parquet``, or its content as bytes.
        :param entities: the entities to explain; an empty iterable reads nothing.
        """
        wanted: list[str] | None = None
        if entities is not None:
            wanted = sorted({e for e in entities if isinstance(e, str)})
            if not wanted:
                return cls.empty()
        src, available = _open_profile(source)
        columns = [c for c in ("entity", "ip", "ip_int", "events") if c in available]
        filters = pc.field("entity").isin(wanted) if wanted is not None else None
        table = pq.read_table(src, columns=columns, filters=filters)
        return cls.from_table(table)

    # -- queries
    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, entity: object) -> bool:
        return isinstance(entity, str) and entity in self._known

    @property
    def entities(self) -> list[str]:
        """Known entities, sorted."""
        return sorted(self._known)

    def explain(self, entity: str, ip: str, top: int = 3) -> dict:
        """What was usual for ``entity`` in training, compared with ``ip``.

        Returns ``{"entity_known", "known_ips", "known_events", "known_networks" (top /24 networks by
        events: ``{"cidr", "events", "ips"}``), "nearest_known_ip", "common_prefix_bits", "ip_valid",
        "text"}``. The nearest known IP shares the most leading bits with ``ip`` (ties: more events,
        then the lower address). Never raises for an unknown entity or a malformed ``ip``.

        :param entity: the entity of the flagged pair.
        :param ip: the flagged IP (dotted IPv4 expected).
        :param top: how many networks to list.
        """
        top = top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0
        asked = ipv4_int(ip)
        ent_s = one_line(entity if isinstance(entity, str) else repr(entity), _SHOWN)
        ip_s = one_line(ip if isinstance(ip, str) else repr(ip), 64)
        known = self._known.get(entity) if isinstance(entity, str) else None
        result: dict[str, Any] = {
            "entity_known": known is not None,
            "known_ips": 0,
            "known_events": 0,
            "known_networks": [],
            "nearest_known_ip": None,
            "common_prefix_bits": None,
            "ip_valid": asked is not None,
        }
        bad_ip = f"{ip_s!s} is not a dotted IPv4 address, so it cannot be compared with known IPs"
        if known is None:
            result["text"] = (
                f"{ent_s} was not seen in training, so there is no usual network to compare "
                + (f"{ip_s} with" if asked is not None else f"with; {bad_ip}")
            )
            return result

        result["known_ips"] = int(known.ip_int.size)
        result["known_events"] = int(known.events.sum())
        nets, inv = np.unique(known.ip_int >> np.uint32(8), return_inverse=True)
        net_events = np.bincount(inv, weights=known.events).astype(np.int64)
        net_ips = np.bincount(inv).astype(np.int64)
        rank = np.lexsort((nets, -net_events))
        networks = [
            {"cidr": f"{_int_to_ip(int(nets[j]) << 8)}/24", "events": int(net_events[j]), "ips": int(net_ips[j])}
            for j in rank[:top]
        ]
        result["known_networks"] = networks
        listed = ", ".join(f"{n['cidr']} ({_count(n['events'], 'event')})" for n in networks)
        more = len(nets) - len(networks)
        usual = f"{ent_s} was usually seen with {listed}" if networks else f"{ent_s} was seen in training"
        if more > 0:
            usual += f" and {_count(more, 'more /24 network')}"
        usual += (
            f"; {_count(result['known_ips'], 'known IP')} and {_count(result['known_events'], 'event')} in training"
        )

        if asked is None:
            result["text"] = f"{usual}; {bad_ip}"
            return result
        xor = known.ip_int ^ np.uint32(asked)
        bit_length = np.frexp(xor.astype(np.float64))[1]  # exact for 32-bit integers; 0 -> 0
        bits = 32 - bit_length.astype(np.int64)
        best = int(np.lexsort((known.ip_int, -known.events, -bits))[0])
        nearest = _int_to_ip(int(known.ip_int[best]))
        result["nearest_known_ip"] = nearest
        result["common_prefix_bits"] = int(bits[best])
        if bits[best] == 32:
            tail = f"{ip_s} itself was seen in training ({int(known.events[best])} events)"
        else:
            tail = f"nearest known IP {nearest} shares {int(bits[best])} leading bits with {ip_s}"
        result["text"] = f"{usual}; {tail}"
        return result


# ----------------------------------------------------------------------------- history features
def _open_profile(source: Any) -> tuple[Any, list[str]]:
    """A readable profile source (path or buffer) and its column names; errors name the source."""
    if isinstance(source, (bytes, bytearray)):
        src: Any = pa.BufferReader(bytes(source))
    elif isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise FileNotFoundError(f"profile not found at {one_line(str(source), 300)}")
        src = str(source)
    else:
        raise TypeError(f"profile source must be a path or bytes, got {type(source).__name__}")
    available = pq.read_schema(src).names
    if isinstance(src, pa.BufferReader):
        src.seek(0)
    return src, available


def load_history(source: str | bytes | Path) -> Any:
    """The whole profile as a :class:`~seclake_ml.ipinsights.history.HistoryIndex` (features for the
    score combiner), from a ``profile.parquet`` path or its bytes.

    Rows without a usable address or entity are skipped (as in :meth:`EntityProfile.from_table`).

    :param source: path of ``profile.parquet``, or its content as bytes.
    """
    from seclake_ml.ipinsights.history import HistoryIndex

    src, available = _open_profile(source)
    if "entity" not in available or "events" not in available or not ({"ip", "ip_int"} & set(available)):
        raise ValueError(f"profile lacks columns; expected {PROFILE_SCHEMA.names}, found {available}")
    column = "ip_int" if "ip_int" in available else "ip"
    table = pq.read_table(src, columns=["entity", column, "events"])
    ips = table[column].to_numpy(zero_copy_only=False)
    if column == "ip_int":
        valid = ~np.asarray(table[column].is_null().to_numpy(zero_copy_only=False), dtype=bool)
        ips = np.where(valid, np.nan_to_num(ips.astype(np.float64)), -1).astype(np.int64)
    events = np.asarray(table["events"].fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    entities = np.asarray(table["entity"].to_pylist(), dtype=object)
    return HistoryIndex.from_pairs(entities, ips, events)


class ProfileCache:
    """``entities -> EntityProfile`` over a loader, reading each entity's rows at most once.

    A batch explains the flagged entities of each object; the same entities come back object after
    object, and each load reads the profile file again. The cache asks ``loader`` only for entities
    it has not asked for yet (an entity the profile does not know is remembered as unknown; a loader
    that answers ``None``, a model without a profile, knows no entity). A load that fails raises, and
    nothing of it is remembered.
    """

    def __init__(self, loader: Callable[[set[str]], EntityProfile | None]) -> None:
        self._loader = loader
        self._asked: set[str] = set()
        self._known: dict[str, _Known] = {}

    def __call__(self, entities: set[str]) -> EntityProfile:
        missing = {e for e in entities if e not in self._asked}
        if missing:
            loaded = self._loader(missing)
            if loaded is not None:  # None: the model has no profile, nothing to explain with
                self._known.update((e, loaded._known[e]) for e in missing if e in loaded._known)
            self._asked |= missing
        return EntityProfile({e: self._known[e] for e in entities if e in self._known})
