"""Pairs of one Security Lake object, read in row-group chunks with the training views' SQL.

A new object is scored on its own: it is opened with pyarrow, its footer tells which of the view's
columns exist (absent ones read as ``NULL``, as in extraction), and it is read ``chunk_rows`` rows
at a time, only the columns the view needs. Each chunk gets the object's partition values
(``region``, ``accountid``, ``eventday``) as constant columns, is registered in DuckDB and read with
the same candidate expressions and drop reasons as :mod:`seclake_ml.lake.duck`, grouped by
``(entity, ip, account, region)`` before the reasons are evaluated (once per group, not per row).
What comes back per chunk is small: drop counts and the distinct ok pairs with their event count and
first/last time. Memory is bounded by the chunk, not by the object.

An object that cannot be read (bad footer, no rows, no time column, undecodable pages) raises
:class:`UnreadableObject`; the caller quarantines it and goes on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seclake_ml import sqlsafe
from seclake_ml.lake.duck import candidates_sql, column_resolver, render_context_sql, schema_spellings
from seclake_ml.pairs import DROP_REASONS, reason_sql, render_view_sql
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.sources import get_source

log = logging.getLogger(__name__)

CHUNK_RELATION = "object_chunk"
GROUPED = "object_pairs"
DEFAULT_CHUNK_ROWS = 250_000
#: Most distinct context values (e.g. S3 buckets) kept per pair and chunk.
MAX_CONTEXT_VALUES = 5


class UnreadableObject(RuntimeError):
    """The object cannot be scored; ``str(exc)`` is the quarantine reason."""


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


def open_parquet(path: str) -> Any:
    """``pyarrow.parquet.ParquetFile`` of ``path`` or :class:`UnreadableObject` with the reason."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any footer error means the same: quarantine
        raise UnreadableObject(f"unreadable Parquet footer: {str(exc).splitlines()[0][:200]}") from None
    return pf


def iter_view_chunks(
    con: Any, pf: Any, obj: LakeObject, source: str, view: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
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
    sql = sqlsafe.render(
        "duckdb/pairs_grouped.sql", grouped=sqlsafe.ident(GROUPED), reason_expr=sqlsafe.trusted(reason_sql("duckdb")),
        max_context=sqlsafe.int_literal(MAX_CONTEXT_VALUES),
        candidates=sqlsafe.trusted(candidates_sql(pv.unnest, version, rendered, relation=CHUNK_RELATION,
                                                  time_filter="TRUE", context=context)),
    )
    params = {"accounts": list(accounts), "regions": list(regions)}
    consts = {"region": obj.region, "accountid": obj.account, "eventday": obj.event_day}
    try:
        batches = pf.iter_batches(batch_size=max(1, int(chunk_rows)), columns=wanted, use_threads=True)
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for name, value in consts.items():
                if name in table.column_names:
                    table = table.drop_columns([name])
                table = table.append_column(name, _constant(value, table.num_rows))
            con.register(CHUNK_RELATION, table)
            try:
                con.execute(sql, params)
            finally:
                con.unregister(CHUNK_RELATION)
            yield _collect(con, table.num_rows, context_name)
            del table
    except (duckdb.Error, OSError, pa.ArrowException) as exc:
        raise UnreadableObject(f"unreadable rows: {str(exc).splitlines()[0][:200]}") from None


def _read_columns(spelled: dict[str, str], paths: list[str], unnest: tuple[str, str] | None) -> list[str]:
    """The object's columns to read for the view's ``paths`` (``spelled``: :func:`schema_spellings`):
    struct fields as dotted leaf paths in the file's own spelling (only those fields are decoded, not
    the whole struct), an unnested list whole, absent paths left out (they read as ``NULL``)."""
    wanted: list[str] = []
    for path in paths:
        head = path.split(".", 1)[0]
        if unnest and head == unnest[1]:
            path = unnest[0]
        column = spelled.get(path)
        if column is not None and column not in wanted:
            wanted.append(column)
    return wanted


def _filter_columns(spec: Any, version: int) -> list[str]:
    from seclake_ml.sources import placeholders

    return placeholders(spec.class_filter[version])


def _times(column: Any) -> Any:
    """Arrow timestamps as NumPy ``datetime64[us]`` (UTC; NaT for nulls)."""
    import pyarrow as pa

    return column.cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False).astype("datetime64[us]")


def _constant(value: str, rows: int) -> Any:
    """A string column holding ``value`` ``rows`` times, as a one-entry dictionary (no per-row copies)."""
    import numpy as np
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value], pa.string()))


def _collect(con: Any, rows: int, context_name: str = "") -> ChunkPairs:
    counts = dict(con.execute(f"SELECT reason, sum(events) FROM {GROUPED} GROUP BY reason").fetchall())
    agg = con.sql(
        f"SELECT entity, ip, account, region, events, first_seen, last_seen, contexts FROM {GROUPED} WHERE reason = 'ok' "
        "ORDER BY entity, ip, account, region"  # same pairs, same order: reproducible requests
    ).to_arrow_table()
    col = agg.column
    return ChunkPairs(
        entity=col("entity").to_pylist(),
        ip=col("ip").to_pylist(),
        account=col("account").to_pylist(),
        region=col("region").to_pylist(),
        events=col("events").to_numpy(),
        first_seen=_times(col("first_seen")),
        last_seen=_times(col("last_seen")),
        rows=int(rows),
        ok_rows=int(counts.get("ok", 0)),
        dropped={r: int(counts.get(r, 0)) for r in DROP_REASONS},
        context_name=context_name,
        contexts=[v or [] for v in col("contexts").to_pylist()] if context_name else None,
    )
