"""Local backend of the query layer: DuckDB over a Security Lake-shaped Parquet tree.

Steps for one extraction:

1. list the Parquet objects of the source's partitions that can hold the interval (``region=``,
   ``accountId=`` and ``eventDay=`` folders are pruned in Python before DuckDB sees them); links are
   followed only inside the lake root (:mod:`seclake_ml.lake.paths`; refusals are quarantined), and
   file names reach DuckDB escaped, never as glob patterns;
2. probe each object's footer: empty, corrupt or time-less files are quarantined with a reason,
   and the union of the good files' schemas tells which referenced columns exist (absent ones become
   ``NULL``, so schema drift never fails a query);
3. stage classified candidate rows with one ``read_parquet`` over all good files
   (``hive_partitioning``, no type autocast, ``union_by_name``); if DuckDB rejects the batch (say, a
   file with invalid UTF-8 inside a page), the batch is split in halves until the offending files are
   isolated and quarantined, and every other file is still staged;
4. count rows by reason and write the good pairs with ``COPY … TO`` (zstd Parquet), atomically.

Steps 3 and 4 are done without staging when they can (no deduplication, every file readable): one
pass profiles the distinct ``(entity, ip)`` candidates (their row counts and drop reasons, the regular
expressions evaluated once per distinct pair), and a second pass writes the kept rows straight from
the lake with a filter that is cheap per row (null checks, ``:``, and the few bad values the profile
listed). The filter is checked against every profiled pair's reason before it is used, and the rows
written against the profile's ``ok`` count; either disagreement falls back to the staged path. Both
paths write the rows in the lake's order (files by path, rows as stored); a deduplicated file is
ordered by event time, entity and IP. The direct path writes the source, account and region columns
from ENUM types of their few values (:func:`label_types`), which DuckDB's Parquet writer stores
without hashing each row.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from seclake_ml import sqlsafe
from seclake_ml.config import SeclakeConfig
from seclake_ml.display import escape
from seclake_ml.lake.paths import LinkPolicy, literal_path
from seclake_ml.pairs import (
    DROP_REASONS,
    ExtractionResult,
    reason_sql,
    render_view_sql,
)
from seclake_ml.sources import get_source, placeholders, substitute

log = logging.getLogger(__name__)

_PART_RE = re.compile(r"(?P<key>[A-Za-z_]+)=(?P<value>.*)", re.DOTALL)
_SAFE_PATH_RE = re.compile(r"[A-Za-z0-9_./+-]{1,4096}")
HIVE_COLUMNS = {"region", "accountid", "eventday"}
READ_FILES = "read_parquet($files, hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"


@dataclass
class LakeFiles:
    """Parquet objects found for one source and interval, after pruning and probing."""

    good: list[str] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)  # column paths present in at least one good file
    skipped_dirs: int = 0
    empty_files: int = 0


def _days(start: datetime, end: datetime) -> set[str]:
    day = start.date()
    last = (end - timedelta(microseconds=1)).date()
    out = set()
    while day <= last:
        out.add(day.strftime("%Y%m%d"))
        day += timedelta(days=1)
    return out


def schema_spellings(schema: Any) -> dict[str, str]:
    """Every field's dotted path in lower case (``answers[].rdata`` for list elements) -> the path as the
    file spells it (``src_endpoint.IP``), for reading just those fields."""
    import pyarrow as pa

    out: dict[str, str] = {}

    def walk(lower: str, spelled: str, typ: Any) -> None:
        if pa.types.is_struct(typ):
            for i in range(typ.num_fields):
                f = typ.field(i)
                low, name = f"{lower}.{f.name.lower()}", f"{spelled}.{f.name}"
                out.setdefault(low, name)
                walk(low, name, f.type)
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
            out.setdefault(f"{lower}[]", f"{spelled}[]")
            walk(f"{lower}[]", f"{spelled}[]", typ.value_type)

    for f in schema:
        out.setdefault(f.name.lower(), f.name)
        walk(f.name.lower(), f.name, f.type)
    return out


def column_resolver(available: set[str], unnest: tuple[str, str] | None, missing: list[str]) -> Any:
    """``resolve(path)`` for :func:`~seclake_ml.pairs.render_view_sql` over files whose columns are ``available``.

    Paths present become quoted column references (``t.…``, or the unnested alias' field); absent
    ones become ``NULL`` and are appended to ``missing``, so schema drift never fails a query.
    """

    def resolve(path: str) -> str:
        if path in HIVE_COLUMNS:
            return sqlsafe.column_path(path)
        head = path.split(".", 1)[0]
        if unnest and head == unnest[1]:
            # a field of the unnested list element, e.g. ans.rdata -> answers[].rdata
            if f"{unnest[0]}[]{path[len(head):]}" in available:
                return sqlsafe.column_path(path)
        elif path in available:
            return sqlsafe.column_path(f"t.{path}")
        missing.append(path)
        return "NULL"

    return resolve


def find_files(
    root: Path,
    lake_source: str,
    version: int,
    start: datetime,
    end: datetime,
    accounts: tuple[str, ...] = (),
    regions: tuple[str, ...] = (),
    links: LinkPolicy | None = None,
) -> tuple[list[Path], int]:
    """Parquet files under ``root/aws/<SOURCE>/<version>.0`` whose partitions can hold ``[start, end)``.

    Returns the files and the number of folders skipped because they are not ``key=value`` partitions.
    Links are followed by ``links`` (default: a fresh :class:`~seclake_ml.lake.paths.LinkPolicy` over
    ``root``): what resolves outside the root is refused and recorded in ``links.refused``.
    """
    links = links or LinkPolicy(root)
    base = root / "aws" / lake_source / f"{version}.0"
    if not base.is_dir():
        return [], 0
    days = _days(start, end)
    files: list[Path] = []
    skipped = 0
    wanted = {1: ("region", regions), 2: ("accountid", accounts), 3: ("eventday", tuple(days))}
    for here, dirs, names in links.walk(base):
        depth = len(here.relative_to(base).parts)
        if depth == 3:
            files.extend(here / n for n in names if n.endswith(".parquet"))
            dirs[:] = []
            continue
        keep = []
        for d in dirs:
            m = _PART_RE.fullmatch(d)
            key, allowed = wanted[depth + 1]
            if not m or m["key"].lower() != key:
                skipped += 1
            elif not allowed and key != "eventday" or m["value"] in allowed:
                keep.append(d)
        dirs[:] = keep
    return sorted(files), skipped  # sorted: the pairs file keeps the lake's order, the same on every run


def probe_files(files: list[Path], time_column: str) -> LakeFiles:
    """Read each file's footer; quarantine empty, corrupt or time-less files; collect column paths."""
    import pyarrow.parquet as pq

    result = LakeFiles()
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as exc:
            result.quarantined.append({"path": str(path), "reason": f"unreadable: {exc.strerror}"})
            continue
        if size == 0:
            result.quarantined.append({"path": str(path), "reason": "empty file (0 bytes), not Parquet"})
            continue
        try:
            meta = pq.read_metadata(path)
            schema = meta.schema.to_arrow_schema()
        except Exception as exc:  # pyarrow raises several types for damaged footers
            result.quarantined.append({"path": str(path), "reason": f"corrupt Parquet: {str(exc)[:200]}"})
            continue
        if meta.num_rows == 0:
            result.empty_files += 1
            continue
        paths = set(schema_spellings(schema))
        if time_column not in paths:
            result.quarantined.append(
                {"path": str(path), "reason": f"schema: required column '{time_column}' is missing"}
            )
            continue
        result.paths |= paths
        result.good.append(str(path))
    return result


@contextmanager
def spilling_connection(memory_limit: str, *, threads: int | None = None,
                        prefix: str = "seclake-duck-") -> Iterator[tuple[Any, Path]]:
    """A DuckDB connection held to ``memory_limit`` that spills beyond it to a private temporary
    folder, and that folder (for the caller's own staged files); both go when the block ends.

    The folder is made with ``mkdtemp`` (mode 0700) under the system's temporary directory, never in
    the working directory, which may be read-only (Lambda) or shared (an MWAA worker).

    :param threads: DuckDB's thread count (default: DuckDB's, one per core).
    """
    import duckdb

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": tmp}
        if threads:
            config["threads"] = int(threads)
        con = duckdb.connect(config=config)
        try:
            yield con, Path(tmp)
        finally:
            con.close()


class DuckDBLake:
    """Query layer over a local Security Lake tree with DuckDB."""

    STAGE = "pairs_stage"
    PROFILE = "pairs_profile"
    #: Most distinct bad entity/IP values the direct path's row filter lists (beyond: staged path).
    MAX_LISTED_VALUES = 256

    def __init__(self, cfg: SeclakeConfig, *, threads: int | None = None, memory_limit: str | None = None):
        self.cfg = cfg
        self.root = Path(cfg.lake_root)
        self.threads = threads
        self.memory_limit = memory_limit or cfg.duckdb_memory

    def extract(self, source: str, view: str, start: datetime, end: datetime, out: str) -> ExtractionResult:
        t0 = time.perf_counter()
        spec = get_source(source)
        pv = spec.view(view)
        version = self.cfg.source_version
        res = ExtractionResult(
            source=source, view=view, source_version=version, backend="local",
            start=start.isoformat(), end=end.isoformat(), output=str(out),
        )
        links = LinkPolicy(self.root)
        files, skipped = find_files(
            self.root, spec.lake_source, version, start, end, self.cfg.accounts, self.cfg.regions, links
        )
        if skipped:
            log.warning("%s: skipped %d folders that are not key=value partitions", source, skipped)
        probed = probe_files(files, spec.time_column(version))
        res.quarantined.extend(links.refused)
        res.quarantined.extend(probed.quarantined)
        res.files_scanned = len(probed.good)

        missing: list[str] = []
        if pv.unnest and f"{pv.unnest[0]}[]" not in probed.paths and probed.good:
            log.warning("%s/%s: list column '%s' absent from every file; view yields nothing", source, view, pv.unnest[0])
        rendered = render_view_sql(source, view, version, column_resolver(probed.paths, pv.unnest, missing))
        res.missing_columns = sorted(set(missing))
        if res.missing_columns and probed.good:
            log.warning("%s/%s: columns absent from all files, read as NULL: %s", source, view, ", ".join(res.missing_columns))

        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with spilling_connection(self.memory_limit, threads=self.threads) as (con, tmp):
            tmp_out = tmp / "pairs.parquet"
            params = self._params(source, version, start, end)
            done = False
            if probed.good and not self.cfg.dedupe:
                done = self._extract_direct(con, pv.unnest, version, rendered, params, probed.good, res, tmp_out)
            if not done:
                self._extract_staged(con, pv.unnest, version, rendered, params, probed.good, res, tmp_out)
            _atomic_move(tmp_out, out_path)
        side = out_path.with_name(out_path.name + ".quarantine.json")
        if res.quarantined:
            side.write_text(json.dumps(res.quarantined, indent=1), encoding="utf-8")
            for q in res.quarantined:
                log.error("quarantined %s: %s", escape(q["path"])[0], escape(q["reason"])[0])
        else:
            side.unlink(missing_ok=True)  # an earlier run's list no longer describes this output
        res.seconds = round(time.perf_counter() - t0, 3)
        log.info("%s", res.summary_line())
        return res

    # ------------------------------------------------------------------ helpers
    def _extract_direct(self, con: Any, unnest: tuple[str, str] | None, version: int, rendered: dict[str, str],
                        params: dict[str, Any], files: list[str], res: ExtractionResult, tmp_out: Path) -> bool:
        """Two passes over the lake and no staged copy of it: profile the distinct pairs (drop counts,
        the values to keep out), then write the kept rows straight from the lake with a filter that is
        cheap per row. Returns ``False``, having written nothing that counts, when the staged path must
        do it: a file DuckDB cannot read (the staged path isolates it), more bad values than
        :attr:`MAX_LISTED_VALUES`, or a filter that does not agree with the classification.
        """
        import duckdb

        candidates = candidates_sql(unnest, version, rendered)
        bound = {**params, "files": [literal_path(f) for f in files]}
        source_params = {k: v for k, v in bound.items() if k != "source"}
        try:
            con.execute(sqlsafe.render("duckdb/pairs_profile.sql", profile=sqlsafe.ident(self.PROFILE),
                                       reason_expr=sqlsafe.trusted(reason_sql("duckdb")),
                                       candidates=sqlsafe.trusted(candidates)), source_params)
        except duckdb.Error as exc:
            log.info("direct extraction declined (%s); staging file by file", str(exc).splitlines()[0][:200])
            return False
        bad = con.execute(sqlsafe.render("duckdb/pairs_bad_values.sql", profile=sqlsafe.ident(self.PROFILE),
                                         reason_expr=sqlsafe.trusted(reason_sql("duckdb")),
                                         limit=sqlsafe.int_literal(self.MAX_LISTED_VALUES + 1))).fetchall()
        if len(bad) > self.MAX_LISTED_VALUES:
            log.info("direct extraction declined: more than %d distinct bad entity/IP values; staging instead",
                     self.MAX_LISTED_VALUES)
            return False
        lists = {"bad_entities": sorted(v for side, v in bad if side == "entity"),
                 "bad_ips": sorted(v for side, v in bad if side == "ip")}
        ok_filter = ok_filter_sql(**{k: bool(v) for k, v in lists.items()})
        list_params = {k: v for k, v in lists.items() if v}
        # the drop counts, and a check that the filter keeps exactly the 'ok' pairs (it should by
        # construction; a disagreement means the staged path, never a wrong file)
        by_reason = con.execute(
            f"SELECT reason, sum(n), count(*) FILTER (WHERE (reason = 'ok') IS DISTINCT FROM coalesce({ok_filter}, FALSE)) "
            f"FROM {sqlsafe.ident(self.PROFILE)} GROUP BY reason",
            list_params,
        ).fetchall()
        counts = {reason: n for reason, n, _ in by_reason}
        ok_rows = counts.get("ok", 0)
        disagree = sum(d for _, _, d in by_reason)
        if disagree:
            log.warning("direct extraction declined: its row filter disagrees with the drop reasons on %d pairs", disagree)
            return False
        try:
            con.execute(
                sqlsafe.render("duckdb/pairs_copy.sql", candidates=sqlsafe.trusted(candidates),
                               ok_filter=sqlsafe.trusted(ok_filter),
                               out_path=sqlsafe.string_literal(str(tmp_out), _SAFE_PATH_RE),
                               **label_types(con, bound["source"], bound["files"])),
                {**bound, **list_params},
            )
        except duckdb.Error as exc:
            log.info("direct extraction declined (%s); staging file by file", str(exc).splitlines()[0][:200])
            return False
        written = _parquet_rows(con, tmp_out)
        if written != ok_rows:
            log.warning("direct extraction wrote %d rows where %d pass; staging instead", written, ok_rows)
            return False
        res.rows_read = int(sum(counts.values()))
        res.dropped = {r: int(counts.get(r, 0)) for r in DROP_REASONS}
        res.pairs_written = int(written)
        res.duplicates_removed = 0
        return True

    def _extract_staged(self, con: Any, unnest: tuple[str, str] | None, version: int, rendered: dict[str, str],
                        params: dict[str, Any], files: list[str], res: ExtractionResult, tmp_out: Path) -> None:
        """Stage every classified row (file batches halved until failing files are isolated), count
        the reasons, write the kept rows: the path for deduplication and for lakes with damaged files."""
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {self.STAGE} (entity VARCHAR, ip VARCHAR, event_time TIMESTAMPTZ, "
            "source VARCHAR, account VARCHAR, region VARCHAR, reason VARCHAR)"
        )
        if files:
            self._stage(con, self._stage_sql(unnest, version, rendered), params, files, res)
        counts = dict(con.execute(sqlsafe.render("duckdb/pairs_counts.sql", stage=sqlsafe.ident(self.STAGE))).fetchall())
        res.rows_read = int(sum(counts.values()))
        res.dropped = {r: int(counts.get(r, 0)) for r in DROP_REASONS}
        dedupe = self.cfg.dedupe
        con.execute(
            sqlsafe.render(
                "duckdb/pairs_write.sql",
                stage=sqlsafe.ident(self.STAGE),
                qualify=sqlsafe.trusted(
                    "QUALIFY row_number() OVER (PARTITION BY entity, ip ORDER BY event_time) = 1" if dedupe else ""
                ),
                # a window loses the stage's order: a deduplicated file is ordered by time instead
                order_by=sqlsafe.trusted("ORDER BY event_time, entity, ip" if dedupe else ""),
                out_path=sqlsafe.string_literal(str(tmp_out), _SAFE_PATH_RE),
            )
        )
        res.pairs_written = _parquet_rows(con, tmp_out)
        res.duplicates_removed = int(counts.get("ok", 0)) - res.pairs_written

    def _stage_sql(self, unnest: tuple[str, str] | None, version: int, r: dict[str, str], *,
                   relation: str = READ_FILES, time_filter: str | None = None) -> str:
        return stage_sql(self.STAGE, unnest, version, r, relation=relation, time_filter=time_filter)

    def _params(self, source: str, version: int, start: datetime, end: datetime) -> dict[str, Any]:
        return window_params(self.cfg, source, version, start, end)

    def _stage(self, con: Any, sql: str, params: dict[str, Any], files: list[str], res: ExtractionResult) -> None:
        """Stage ``files``; on a DuckDB error split the batch until the failing files are isolated."""
        import duckdb

        pending = [files]
        while pending:
            batch = pending.pop()
            try:
                # File names are data, never patterns: '*.parquet' must not read the whole partition.
                con.execute(sql, {**params, "files": [literal_path(f) for f in batch]})
            except duckdb.Error as exc:
                if len(batch) == 1:
                    msg = str(exc).splitlines()[0][:300]
                    res.quarantined.append({"path": batch[0], "reason": f"unreadable rows: {msg}"})
                    res.files_scanned -= 1
                    continue
                mid = len(batch) // 2
                pending.extend([batch[mid:], batch[:mid]])



def candidates_sql(unnest: tuple[str, str] | None, version: int, r: dict[str, str], *,
                   relation: str = READ_FILES, time_filter: str | None = None, context: str = "NULL") -> str:
    """The unclassified candidate rows of one view (``r`` from :func:`render_view_sql`).

    ``context`` is the view's rendered context expression (:func:`render_context_sql`); extraction
    leaves it ``NULL``.

    ``relation`` is what rows are read from: ``read_parquet($files, …)`` for an extraction, or the
    range of one object when scoring it (:mod:`seclake_ml.scoring.objects`). ``time_filter`` replaces the interval filter
    (``"TRUE"`` scores every row of an object).
    """
    tf = window_filter(r["time"], version)
    event_time = f"to_timestamp({r['time']} / 1000.0)" if version == 1 else f"CAST({r['time']} AS TIMESTAMPTZ)"
    unnest_clause = ""
    if unnest:
        unnest_clause = f"CROSS JOIN unnest(t.{sqlsafe.ident(unnest[0])}) AS u({sqlsafe.ident(unnest[1])})"
    return sqlsafe.render(
        "duckdb/pairs_candidates.sql",
        entity_expr=sqlsafe.trusted(r["entity"]),
        ip_expr=sqlsafe.trusted(r["ip"]),
        context_expr=sqlsafe.trusted(context),
        event_time_expr=sqlsafe.trusted(event_time),
        unnest_clause=sqlsafe.trusted(unnest_clause),
        class_filter=sqlsafe.trusted(r["class_filter"]),
        view_filter=sqlsafe.trusted(r["view_filter"]),
        time_filter=sqlsafe.trusted(tf if time_filter is None else time_filter),
        relation=sqlsafe.trusted(relation),
    )


def render_context_sql(source: str, view: str, version: int, resolve: Any) -> str:
    """The view's context expression with its columns resolved by ``resolve`` (see :func:`column_resolver`),
    or ``NULL`` when the view has none or a column it needs is absent from the object."""
    pv = get_source(source).view(view)
    if pv.context is None:
        return "NULL"
    expr = pv.context[1][version]
    paths = {p: resolve(p) for p in placeholders(expr)}
    if any(v == "NULL" for v in paths.values()):
        return "NULL"
    return substitute(expr, paths)


def stage_sql(stage: str, unnest: tuple[str, str] | None, version: int, r: dict[str, str], *,
              relation: str = READ_FILES, time_filter: str | None = None) -> str:
    """The classified-pairs staging statement of one view (``r`` from :func:`render_view_sql`);
    ``relation`` and ``time_filter`` as in :func:`candidates_sql`."""
    return sqlsafe.render(
        "duckdb/pairs_stage.sql",
        stage=sqlsafe.ident(stage),
        reason_expr=sqlsafe.trusted(reason_sql("duckdb")),
        candidates=sqlsafe.trusted(candidates_sql(unnest, version, r, relation=relation, time_filter=time_filter)),
    )


def ok_filter_sql(*, bad_entities: bool, bad_ips: bool) -> str:
    """The per-row filter of the direct path: true exactly for 'ok' pairs once the values of
    ``pairs_bad_values.sql`` are bound as ``$bad_entities``/``$bad_ips`` (each clause only when listed)."""
    parts = ["entity IS NOT NULL", "ip IS NOT NULL", "strpos(ip, ':') = 0"]
    # list_position, not list_contains: DuckDB may rewrite a long list_contains into a hash join,
    # which gives up the lake's row order
    if bad_entities:
        parts.append("list_position($bad_entities, entity) IS NULL")
    if bad_ips:
        parts.append("list_position($bad_ips, ip) IS NULL")
    return " AND ".join(parts)


#: The ENUM types :func:`label_types` creates, by ``pairs_copy.sql`` placeholder.
LABEL_TYPES = {"source_type": "pairs_source", "account_type": "pairs_account", "region_type": "pairs_region"}


def label_types(con: Any, source: str, files: list[str]) -> dict[str, sqlsafe.Sql]:
    """Types for the output's ``source``, ``account`` and ``region`` columns: an ENUM of the values
    present (the source name; the files' ``accountId=`` and ``region=`` partitions, which DuckDB
    answers from the paths and the files' footers), or ``VARCHAR`` if one cannot be made.

    DuckDB's Parquet writer stores an ENUM column as a dictionary without hashing each row; for
    these three columns, constant per file, that halves the cost of the write. The file's columns
    read back as strings either way.
    """
    import duckdb

    try:
        accounts, regions = con.execute(
            "SELECT list(DISTINCT a) FILTER (WHERE a IS NOT NULL), list(DISTINCT r) FILTER (WHERE r IS NOT NULL) "
            f"FROM (SELECT CAST(accountid AS VARCHAR) AS a, CAST(region AS VARCHAR) AS r FROM {READ_FILES})",
            {"files": files},
        ).fetchone()
        for placeholder, values in (("source_type", [source]), ("account_type", accounts or []),
                                    ("region_type", regions or [])):
            con.execute(f"CREATE OR REPLACE TYPE {LABEL_TYPES[placeholder]} AS ENUM (SELECT unnest($v))", {"v": values})
    except duckdb.Error as exc:
        log.info("label columns written as VARCHAR (%s)", str(exc).splitlines()[0][:200])
        return {k: sqlsafe.trusted("VARCHAR") for k in LABEL_TYPES}
    return {k: sqlsafe.ident(v) for k, v in LABEL_TYPES.items()}


def _parquet_rows(con: Any, path: Path) -> int:
    return int(con.execute("SELECT count(*) FROM read_parquet($p)", {"p": literal_path(str(path))}).fetchone()[0])


def window_filter(time_expr: str, version: int) -> str:
    """The ``[start, end)`` filter on a source version's time column, with :func:`window_params`' bound
    parameters (partition pruning plus epoch milliseconds in version 1, ``time_dt`` in version 2)."""
    if version == 1:
        return f"eventday BETWEEN $start_day AND $end_day AND {time_expr} >= $start_ms AND {time_expr} < $end_ms"
    return f"{time_expr} >= $start_ts AND {time_expr} < $end_ts"


def window_params(cfg: SeclakeConfig, source: str, version: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Bound parameters of :func:`stage_sql`: source name, account/region filters, the time window."""
    params: dict[str, Any] = {
        "source": source,
        "accounts": list(cfg.accounts),
        "regions": list(cfg.regions),
    }
    if version == 1:
        params.update(
            start_day=start.strftime("%Y%m%d"),
            end_day=(end - timedelta(microseconds=1)).strftime("%Y%m%d"),
            start_ms=int(start.timestamp() * 1000),
            end_ms=int(end.timestamp() * 1000),
        )
    else:
        params.update(start_ts=start, end_ts=end)
    return params


def _atomic_move(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst`` so readers see either the old or the new file, never a partial one."""
    tmp_dst = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp_dst)
    os.replace(tmp_dst, dst)
