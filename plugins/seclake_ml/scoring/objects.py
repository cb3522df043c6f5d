"""Pairs of one Security Lake object, read in row-group chunks with the training views' SQL.

A new object is scored on its own: it is opened with pyarrow, its footer tells which of the view's
columns exist (absent ones read as ``NULL``, as in extraction), and it is read ``chunk_rows`` rows
at a time, only the columns the view needs. Each chunk gets the object's partition values
(``region``, ``accountid``, ``eventday``) as constant columns, is registered in DuckDB and goes
through the same staging statement as :mod:`seclake_ml.lake.duck` (same entity/IP expressions, same
drop reasons). What comes back per chunk is small: drop counts and the distinct ``(entity, ip,
account, region)`` pairs with their event count and first/last time. Memory is bounded by the chunk,
not by the object.

An object that cannot be read (bad footer, no rows, no time column, undecodable pages) raises
:class:`UnreadableObject`; the caller quarantines it and goes on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seclake_ml.lake.duck import _schema_paths, column_resolver, stage_sql
from seclake_ml.pairs import DROP_REASONS, render_view_sql
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.sources import get_source

log = logging.getLogger(__name__)

CHUNK_RELATION = "object_chunk"
STAGE = "object_pairs_stage"
DEFAULT_CHUNK_ROWS = 250_000


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
    paths = _schema_paths(pf.schema_arrow)
    time_col = spec.time_column(version)
    if time_col not in paths:
        raise UnreadableObject(f"no '{time_col}' column")
    missing: list[str] = []
    rendered = render_view_sql(source, view, version, column_resolver(paths, pv.unnest, missing))
    if missing:
        log.warning("%s: %s/%s columns absent, read as NULL: %s", obj.key[-200:], source, view, ", ".join(sorted(set(missing))))
    top = {f.name for f in pf.schema_arrow}
    wanted: list[str] = []
    for path in pv.columns(version) + [time_col] + _filter_columns(spec, version):
        head = path.split(".", 1)[0].split("[", 1)[0]
        if pv.unnest and head == pv.unnest[1]:
            head = pv.unnest[0]
        if head in top and head not in wanted:
            wanted.append(head)
    sql = stage_sql(STAGE, pv.unnest, version, rendered, relation=CHUNK_RELATION, time_filter="TRUE")
    params = {"source": source, "accounts": list(accounts), "regions": list(regions)}
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGE} (entity VARCHAR, ip VARCHAR, event_time TIMESTAMPTZ, "
        "source VARCHAR, account VARCHAR, region VARCHAR, reason VARCHAR)"
    )
    consts = {"region": obj.region, "accountid": obj.account, "eventday": obj.event_day}
    try:
        batches = pf.iter_batches(batch_size=max(1, int(chunk_rows)), columns=wanted, use_threads=True)
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for name, value in consts.items():
                if name in table.column_names:
                    table = table.drop_columns([name])
                table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
            con.register(CHUNK_RELATION, table)
            try:
                con.execute(f"DELETE FROM {STAGE}")
                con.execute(sql, params)
            finally:
                con.unregister(CHUNK_RELATION)
            yield _collect(con, table.num_rows)
            del table
    except (duckdb.Error, OSError, pa.ArrowException) as exc:
        raise UnreadableObject(f"unreadable rows: {str(exc).splitlines()[0][:200]}") from None


def _filter_columns(spec: Any, version: int) -> list[str]:
    from seclake_ml.sources import placeholders

    return placeholders(spec.class_filter[version])


def _times(column: Any) -> Any:
    """Arrow timestamps as NumPy ``datetime64[us]`` (UTC; NaT for nulls)."""
    import pyarrow as pa

    return column.cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False).astype("datetime64[us]")


def _collect(con: Any, rows: int) -> ChunkPairs:
    counts = dict(con.execute(f"SELECT reason, count(*) FROM {STAGE} GROUP BY reason").fetchall())
    agg = con.sql(
        f"SELECT entity, ip, coalesce(account, '') AS account, coalesce(region, '') AS region, count(*) AS events, "
        f"min(event_time) AS first_seen, max(event_time) AS last_seen FROM {STAGE} WHERE reason = 'ok' "
        "GROUP BY ALL ORDER BY entity, ip, account, region"  # same pairs, same order: reproducible requests
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
    )
