"""Pairs of one Security Lake object, read in row-group chunks with the training views' SQL.

A new object is scored on its own: its footer (read with pyarrow) tells which of the view's columns
exist (absent ones read as ``NULL``, as in extraction) and how its rows are split into row groups.
DuckDB then reads it in ranges of whole row groups of about ``chunk_rows`` rows (a
``file_row_number`` range, which DuckDB answers from the row groups it covers), decoding only the
columns the view needs. Each range gets the object's partition values (``region``, ``accountid``,
``eventday``) as constant columns and is read with the same candidate expressions and drop reasons
as :mod:`seclake_ml.lake.duck`, grouped by ``(entity, ip)`` before the reasons are evaluated (once
per group, not per row). The grouped rows (the distinct pairs with their event count, first/last
time and drop reason) come back as a stream of at most ``chunk_rows`` pairs per chunk, so Python
holds at most that many pairs at a time, even for a row group of millions of distinct pairs; DuckDB
holds the grouping within its memory limit and spills beyond it.

An object that cannot be read (bad footer, no rows, no time column, undecodable pages) raises
:class:`UnreadableObject`; the caller quarantines it and goes on with the others. An object that
changes on disk while it is read raises :class:`ObjectChanged`, which the caller treats as a failure
to retry, never as a result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seclake_ml import sqlsafe
from seclake_ml.lake.duck import HIVE_COLUMNS, candidates_sql, column_resolver, render_context_sql, schema_spellings
from seclake_ml.lake.paths import literal_path
from seclake_ml.pairs import DROP_REASONS, reason_sql, render_view_sql
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.sources import get_source

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 250_000
#: Most distinct context values (e.g. S3 buckets) kept per pair and chunk.
MAX_CONTEXT_VALUES = 5


class UnreadableObject(RuntimeError):
    """The object cannot be scored; ``str(exc)`` is the quarantine reason."""


class ObjectChanged(RuntimeError):
    """The object's file changed while it was read (replaced or rewritten): score it again later."""


@dataclass
class ChunkPairs:
    """The distinct ok pairs of one chunk (NumPy/Arrow columns) and its drop counts."""

    entity: list[str]
    ip: list[str]
    account: list[str]
    region: list[str]
    events: Any  # numpy int64
    first_seen: Any  # numpy datetime64[us] (UTC)
    last_seen: Any
    rows: int
    ok_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    context_name: str = ""  # the view's context (``bucket``), empty when it has none
    contexts: list[list[str]] | None = None  # per pair: its first distinct context values


#: DuckDB's row-number column; a file with a column of that name is read without it (one range).
ROW_NUMBER = "file_row_number"


@dataclass(frozen=True)
class ObjectFile:
    """One object on local disk, its Parquet footer (``pyarrow`` metadata and Arrow schema) and the
    file's identity when opened (device, inode, size, modification time)."""

    path: str
    metadata: Any
    schema_arrow: Any
    identity: tuple[int, int, int, int]

    def check_unchanged(self) -> None:
        """:class:`ObjectChanged` when the file at :attr:`path` is no longer the one opened."""
        try:
            now = _identity(self.path)
        except OSError as exc:
            raise ObjectChanged(f"object file vanished while being read: {exc.strerror}") from None
        if now != self.identity:
            raise ObjectChanged("object file was replaced or rewritten while being read")


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def open_parquet(path: str) -> ObjectFile:
    """The footer of the Parquet file at ``path``, or :class:`UnreadableObject` with the reason."""
    import pyarrow.parquet as pq

    try:
        identity = _identity(str(path))
        pf = pq.ParquetFile(path)
        return ObjectFile(path=str(path), metadata=pf.metadata, schema_arrow=pf.schema_arrow, identity=identity)
    except Exception as exc:  # noqa: BLE001 - any footer error means the same: quarantine
        raise UnreadableObject(f"unreadable Parquet footer: {str(exc).splitlines()[0][:200]}") from None


def row_ranges(metadata: Any, chunk_rows: int) -> list[tuple[int, int]]:
    """``[first, end)`` row ranges of whole row groups, each of at least ``chunk_rows`` rows (the
    last one may be shorter); one range per row group larger than ``chunk_rows``."""
    ranges: list[tuple[int, int]] = []
    lo = hi = 0
    for i in range(metadata.num_row_groups):
        hi += metadata.row_group(i).num_rows
        if hi - lo >= chunk_rows:
            ranges.append((lo, hi))
            lo = hi
    if hi > lo:
        ranges.append((lo, hi))
    return ranges


def iter_view_chunks(
    con: Any, pf: ObjectFile, obj: LakeObject, source: str, view: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
    accounts: tuple[str, ...] = (), regions: tuple[str, ...] = (),
) -> Iterator[ChunkPairs]:
    """Yield the pairs of ``source``/``view`` in ``pf`` (the object ``obj``) chunk by chunk."""
    import duckdb
    import pyarrow as pa

    spec = get_source(source)
    pv = spec.view(view)
    version = obj.version
    spellings = schema_spellings(pf.schema_arrow)
    paths = set(spellings)
    time_col = spec.time_column(version)
    if time_col not in paths:
        raise UnreadableObject(f"no '{time_col}' column")
    missing: list[str] = []
    rendered = render_view_sql(source, view, version, column_resolver(paths, pv.unnest, missing))
    if missing:
        log.warning("%s: %s/%s columns absent, read as NULL: %s", obj.key[-200:], source, view, ", ".join(sorted(set(missing))))
    context = render_context_sql(source, view, version, column_resolver(paths, pv.unnest, []))
    context_name = pv.context[0] if pv.context else ""
    wanted = _read_columns(spellings, pv.columns(version) + [time_col] + _filter_columns(spec, version), pv.unnest)
    by_row_number = not any(name.lower() == ROW_NUMBER for name in pf.schema_arrow.names)
    sql = sqlsafe.render(
        "duckdb/pairs_grouped.sql", reason_expr=sqlsafe.trusted(reason_sql("duckdb")),
        contexts_expr=sqlsafe.trusted(
            "list_sort(list(DISTINCT context) FILTER (WHERE context IS NOT NULL))"
            f"[1:{sqlsafe.int_literal(MAX_CONTEXT_VALUES)}]" if context_name else "NULL"),
        candidates=sqlsafe.trusted(candidates_sql(pv.unnest, version, rendered,
                                                  relation=_chunk_relation(wanted, by_row_number),
                                                  time_filter="TRUE", context=context)),
    )
    params = {"accounts": list(accounts), "regions": list(regions), "object_path": literal_path(pf.path),
              "object_region": obj.region, "object_account": obj.account, "object_day": obj.event_day}
    batch = max(1, int(chunk_rows))
    if by_row_number:
        ranges = row_ranges(pf.metadata, batch)
    else:
        log.warning("%s: has a column named %s; read in one range", obj.key[-200:], ROW_NUMBER)
        ranges = [(0, pf.metadata.num_rows)]
    try:
        for lo, hi in ranges:
            bound = {**params, "first_row": lo, "end_row": hi} if by_row_number else params
            reader = con.sql(sql, params=bound).to_arrow_reader(batch)
            rows = hi - lo  # counted with the range's first chunk
            for grouped in reader:
                chunk = _collect(pa.Table.from_batches([grouped]), rows, obj, context_name)
                rows = 0
                pf.check_unchanged()
                yield chunk
            if rows:  # a range with no candidate rows at all
                pf.check_unchanged()
                yield _collect(reader.schema.empty_table(), rows, obj, context_name)
    except duckdb.Error as exc:
        raise UnreadableObject(f"unreadable rows: {str(exc).splitlines()[0][:200]}") from None


def _chunk_relation(columns: list[str], by_row_number: bool = True) -> str:
    """One range of the object as a relation: its top-level ``columns`` (the file's spelling) read
    from ``$object_path`` for the rows ``[$first_row, $end_row)`` (the whole object when not
    ``by_row_number``), and the object's partition values as constant columns (hive partitioning
    off: the values come from the key, already validated)."""
    select = ", ".join([sqlsafe.ident(c) for c in columns]
                       + ["$object_region AS region", "$object_account AS accountid", "$object_day AS eventday"])
    if not by_row_number:
        return f"(SELECT {select} FROM read_parquet($object_path, hive_partitioning = false))"
    return (f"(SELECT {select} FROM read_parquet($object_path, hive_partitioning = false, {ROW_NUMBER} = true) "
            f"WHERE {ROW_NUMBER} >= $first_row AND {ROW_NUMBER} < $end_row)")


def _read_columns(spelled: dict[str, str], paths: list[str], unnest: tuple[str, str] | None) -> list[str]:
    """The object's top-level columns to read for the view's ``paths`` (``spelled``:
    :func:`schema_spellings`), in the file's own spelling; an unnested list is read through its list
    column, absent paths are left out (they read as ``NULL``), and so are columns named like a
    partition (their values come from the key). DuckDB decodes only the struct fields the query uses."""
    wanted: list[str] = []
    for path in paths:
        head = path.split(".", 1)[0]
        if unnest and head == unnest[1]:
            path = unnest[0]
        column = spelled.get(path)
        if column is None:
            continue
        top = column.split(".", 1)[0]
        if top not in wanted and top.lower() not in HIVE_COLUMNS:
            wanted.append(top)
    return wanted


def _filter_columns(spec: Any, version: int) -> list[str]:
    from seclake_ml.sources import placeholders

    return placeholders(spec.class_filter[version])


def _times(column: Any) -> Any:
    """Arrow timestamps as NumPy ``datetime64[us]`` (UTC; NaT for nulls)."""
    import pyarrow as pa

    return column.cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False).astype("datetime64[us]")


def _collect(grouped: Any, rows: int, obj: LakeObject, context_name: str = "") -> ChunkPairs:
    """The chunk's ok pairs and drop counts from its grouped rows (``pairs_grouped.sql``, as Arrow)."""
    import pyarrow.compute as pc

    by_reason = grouped.group_by("reason").aggregate([("events", "sum")]).to_pylist()
    counts = {r["reason"]: int(r["events_sum"]) for r in by_reason}
    agg = grouped.filter(pc.equal(grouped.column("reason"), "ok"))
    col = agg.column
    n = agg.num_rows
    return ChunkPairs(
        entity=col("entity").to_pylist(),
        ip=col("ip").to_pylist(),
        account=[obj.account] * n,
        region=[obj.region] * n,
        events=col("events").to_numpy(),
        first_seen=_times(col("first_seen")),
        last_seen=_times(col("last_seen")),
        rows=int(rows),
        ok_rows=counts.get("ok", 0),
        dropped={r: counts.get(r, 0) for r in DROP_REASONS},
        context_name=context_name,
        contexts=[v or [] for v in col("contexts").to_pylist()] if context_name else None,
    )
