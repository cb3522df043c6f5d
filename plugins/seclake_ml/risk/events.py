"""Read CloudTrail sign-ins and API calls from the lake into the risk engine's event table.

One row per event with the columns of :mod:`seclake_ml.risk.columns`, both Security Lake source
versions. The local lake is read with DuckDB through the same file discovery, link policy and
quarantine as pair extraction: empty, corrupt or time-less objects are quarantined with a reason;
columns absent from every object (schema drift) are read as null and named. Events that miss fields
are kept and counted (they are scored with what exists); strings longer than :data:`MAX_FIELD_LEN`
are cut to it and counted.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from seclake_ml import sqlsafe
from seclake_ml.config import SeclakeConfig
from seclake_ml.risk.columns import EVENT_COLUMNS, MAX_FIELD_LEN, render_expressions
from seclake_ml.sources import CLOUDTRAIL_API
from seclake_ml.uris import split_s3_uri

log = logging.getLogger(__name__)

# Fields whose absence is counted: the event is still scored on the others.
COUNTED_FIELDS = ("uid", "principal", "source_ip", "user_agent", "operation")

@dataclass
class EventsResult:
    """The events of one window and what reading them found."""

    start: str
    end: str
    source_version: int
    files_scanned: int = 0
    rows: int = 0
    missing_fields: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    absent_columns: list[str] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    table: Any = None  # pyarrow.Table with EVENT_COLUMNS

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("table")
        return out

    def summary_line(self) -> str:
        missing = ", ".join(f"{k} {v}" for k, v in self.missing_fields.items() if v) or "none"
        return (f"cloudtrail events [{self.start} .. {self.end}): {self.rows} rows from {self.files_scanned} files, "
                f"{len(self.quarantined)} quarantined; missing fields: {missing}; {self.truncated} values cut "
                f"to {MAX_FIELD_LEN} characters ({self.seconds:.2f}s)")


def lake_sources(cfg: SeclakeConfig) -> tuple[str, ...]:
    """The lake folders (``aws/<SOURCE>/``) whose API activity the risk engine reads: CloudTrail
    management events, and on the local backend the data-event sources of
    ``extra.risk.data_event_sources`` (``S3_DATA``, ``LAMBDA_EXECUTION``) where the lake has them."""
    return (CLOUDTRAIL_API.lake_source, *cfg.risk.data_event_sources)


def empty_table() -> Any:
    import pyarrow as pa

    return pa.table({c: pa.array([], type=t) for c, t in event_schema_types().items()})


def event_schema_types() -> dict[str, Any]:
    import pyarrow as pa

    types = {c: pa.string() for c in EVENT_COLUMNS}
    types["time"] = pa.timestamp("ms", tz="UTC")
    types["mfa"] = pa.bool_()
    return types


def read_events_aws(cfg: SeclakeConfig, start: datetime, end: datetime, keys: list[str] | None,
                    aws_conn_id: str | None) -> EventsResult:
    """The events from the Security Lake Glue table through Athena (``UNLOAD`` under
    ``<work>/risk/events/``, read back here); with ``keys``, the named objects of the lake bucket,
    downloaded and read like local ones. Callers go through :func:`seclake_ml.backends.read_events`."""
    import dataclasses
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    from seclake_ml.aws.clients import s3_hook

    from seclake_ml.lake.athena import AthenaLake
    from seclake_ml.interval import DataInterval

    window = DataInterval.parse(start, end)
    start, end = window.start, window.end
    s3 = s3_hook(cfg, aws_conn_id)
    with tempfile.TemporaryDirectory(prefix="seclake-risk-events-") as tmp:
        if keys is not None:
            # the batch's own objects: downloaded under the same keys, read as a local lake
            from botocore.exceptions import ClientError

            from seclake_ml.scoring.stores import s3_key_missing

            if not cfg.lake_bucket:
                raise ValueError("aws risk scoring of lake objects needs lake_bucket in the configuration")
            for key in keys:
                if key.startswith("/") or ".." in key.split("/"):
                    raise ValueError(f"lake object key {key[:200]!r} is not a relative key")
            conn, gone = s3.get_conn(), []
            for key in keys:
                path = Path(tmp) / key
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    conn.download_file(cfg.lake_bucket, key, str(path))
                except ClientError as exc:
                    # an object deleted since it was announced is quarantined (as a missing local file is),
                    # not an error that would fail every retry of the batch
                    if not s3_key_missing(conn, exc, cfg.lake_bucket, key):
                        raise
                    gone.append(key)
            local = dataclasses.replace(cfg, backend="local", lake_root=tmp, work_location=tmp)
            res = read_events_local(local, start, end, [k for k in keys if k not in gone])
            # quarantined objects are named by their lake URI, not by the temporary download (removed on return)
            roots = sorted({str(Path(tmp)) + "/", str(Path(tmp).resolve()) + "/"}, key=len, reverse=True)
            for q in res.quarantined:
                at = next((r for r in roots if str(q["path"]).startswith(r)), None)
                if at is not None:
                    q["path"] = f"s3://{cfg.lake_bucket}/{str(q['path'])[len(at):]}"
            res.quarantined[:0] = [{"path": f"s3://{cfg.lake_bucket}/{k}", "reason": "object not found in the lake "
                                    "bucket (deleted since it was announced)"} for k in gone]
            return res
        t0 = time.perf_counter()
        res = EventsResult(start=start.isoformat(), end=end.isoformat(), source_version=cfg.source_version)
        if cfg.risk.data_event_sources:
            log.info("aws: risk events come from the CloudTrail management table only; the data-event sources "
                     "%s are read on the local backend", ", ".join(cfg.risk.data_event_sources))
        stamp = f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"
        # one prefix per call: tasks scoring the same day at once (the batch DAG runs four at a time,
        # beside the continuous DAG) never empty or read each other's output; removed once read
        lake = AthenaLake(cfg, aws_conn_id=aws_conn_id)
        destination = f"{cfg.work_location.rstrip('/')}/risk/events/interval={stamp}/run={uuid.uuid4().hex}/"
        uris = lake.unload_events(start, end, destination)
        tables = []
        try:
            for i, uri in enumerate(uris):
                bucket, key = split_s3_uri(uri, "unloaded events object", require_key=True)
                path = Path(tmp) / f"part-{i:05d}.parquet"
                s3.get_conn().download_file(bucket, key, str(path))
                try:
                    tables.append(pq.read_table(path))
                except Exception as exc:  # pyarrow raises several types for damaged files
                    res.quarantined.append({"path": uri, "reason": f"corrupt Parquet: {str(exc)[:200]}"})
        finally:
            try:
                lake.empty_prefix(destination)
            except Exception as exc:  # noqa: BLE001 - a leftover prefix costs storage, not correctness
                log.warning("could not remove the events unload under %s: %s", destination, str(exc)[:200])
        res.files_scanned = len(tables)
        table = pa.concat_tables(tables, promote_options="default") if tables else empty_table()
        res.table = _normalise(table, res)
        res.rows = res.table.num_rows
        res.seconds = round(time.perf_counter() - t0, 3)
        log.info("%s", res.summary_line())
        return res


def read_events_local(cfg: SeclakeConfig, start: datetime, end: datetime, keys: list[str] | None) -> EventsResult:
    """The events of the local lake folder ``cfg.lake_root`` (DuckDB); with ``keys``, only those
    objects (keys relative to the root). Callers go through :func:`seclake_ml.backends.read_events`."""
    import duckdb
    import pyarrow as pa

    from seclake_ml.lake.duck import column_resolver, find_files, probe_files, window_filter, window_params
    from seclake_ml.lake.paths import LinkPolicy, literal_path
    from seclake_ml.interval import DataInterval

    t0 = time.perf_counter()
    window = DataInterval.parse(start, end)
    start, end = window.start, window.end
    version = cfg.source_version
    res = EventsResult(start=start.isoformat(), end=end.isoformat(), source_version=version)
    root = Path(cfg.lake_root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise ValueError(f"lake_root {cfg.lake_root}: {what}; point --root (or lake_root) at the local lake")
    spec = CLOUDTRAIL_API
    links = LinkPolicy(root)
    if keys is None:
        files = []
        for lake_source in lake_sources(cfg):
            found, _ = find_files(root, lake_source, version, start, end, cfg.accounts, cfg.regions, links)
            files.extend(found)
    else:
        files = []
        for key in keys:
            path = links.resolve(root / key)
            if path is not None and path.is_file():  # a missing or outside key is recorded as refused
                files.append(path)
    probed = probe_files(files, spec.time_column(version))
    res.quarantined = list(links.refused) + list(probed.quarantined)
    res.files_scanned = len(probed.good)
    if not probed.good:
        res.table = empty_table()
        res.seconds = round(time.perf_counter() - t0, 3)
        return res
    def sql_for(columns: set[str], absent: list[str]) -> str:
        """The query over objects whose columns are ``columns`` (the others read as NULL, named in ``absent``)."""
        r = render_expressions(version, column_resolver(columns, None, absent))
        tf = window_filter(r["time"], version)
        event_time = (f"CAST(epoch_ms(CAST({r['time']} AS BIGINT)) AS TIMESTAMP) AT TIME ZONE 'UTC'" if version == 1
                      else f"CAST({r['time']} AS TIMESTAMPTZ)")
        return sqlsafe.render(
            "duckdb/risk_events.sql",
            event_time=sqlsafe.trusted(event_time),
            time_filter=sqlsafe.trusted(tf),
            api_class=sqlsafe.int_literal(spec.class_uid[version]),
            **{k: sqlsafe.trusted(v) for k, v in r.items() if k != "time"},
        )

    absent: list[str] = []
    sql = sql_for(probed.paths, absent)
    res.absent_columns = sorted(set(absent))
    params = window_params(cfg, spec.name, version, start, end)
    params.pop("source", None)
    params["max_len"] = MAX_FIELD_LEN + 1  # one more than kept: a value this long was cut
    con = duckdb.connect(config={"memory_limit": cfg.duckdb_memory})
    tables = []
    try:
        con.execute("SET TimeZone = 'UTC'")
        pending = [(probed.good, sql)]
        while pending:
            batch, batch_sql = pending.pop()
            try:
                tables.append(con.sql(batch_sql, params={**params, "files": [literal_path(f) for f in batch]}).to_arrow_table())
            except duckdb.Error as exc:
                if len(batch) == 1:
                    res.quarantined.append({"path": batch[0], "reason": f"unreadable rows: {str(exc).splitlines()[0][:300]}"})
                    res.files_scanned -= 1
                    continue
                mid = len(batch) // 2
                # each half is queried over its own columns: one the other half alone had (e.g. the
                # sign-ins' top-level mfa) would fail every object of this half and quarantine good data
                pending.extend((half, sql_for(probe_files([Path(f) for f in half], spec.time_column(version)).paths, []))
                               for half in (batch[mid:], batch[:mid]))
    finally:
        con.close()
    table = _normalise(pa.concat_tables([_as_reader_table(t) for t in tables]) if tables else empty_table(), res)
    res.table = table
    res.rows = table.num_rows
    for q in res.quarantined:
        log.error("quarantined %r: %s", q["path"][:300], q["reason"][:300])
    res.seconds = round(time.perf_counter() - t0, 3)
    log.info("%s", res.summary_line())
    return res


def _as_reader_table(t: Any) -> Any:
    """DuckDB returns a RecordBatchReader in newer versions and a Table in older ones."""
    return t.read_all() if hasattr(t, "read_all") else t


def _normalise(table: Any, res: EventsResult) -> Any:
    """Cast to the event schema, cut over-long strings (counted), count missing fields, order by time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    types = event_schema_types()
    cols = {}
    truncated = 0
    for name in EVENT_COLUMNS:
        # safe=False: a time with microseconds (a version-2 time_dt written finer than ms) is cut to ms
        col = table.column(name).cast(types[name], safe=False) if table.num_rows else pa.array([], type=types[name])
        if types[name] == pa.string() and table.num_rows:
            long = pc.greater(pc.utf8_length(col), MAX_FIELD_LEN)
            n_long = pc.sum(long).as_py() or 0
            if n_long:
                truncated += n_long
                col = pc.utf8_slice_codeunits(col, 0, MAX_FIELD_LEN)
        cols[name] = col
    out = pa.table(cols)
    res.truncated = int(truncated)
    res.missing_fields = {
        f: int(pc.sum(pc.or_kleene(pc.is_null(out[f]), pc.equal(out[f], ""))).as_py() or 0) if out.num_rows else 0
        for f in COUNTED_FIELDS
    }
    if out.num_rows:
        out = out.sort_by([("time", "ascending"), ("uid", "ascending")])
    return out
