"""AWS backend of the query layer: Athena over the Security Lake Glue tables, ``UNLOAD`` to S3.

Steps for one extraction:

1. render two queries from the package's ``sql/athena/`` templates with validated fragments only (identifiers,
   literals and the registry's own expressions; see :mod:`seclake_ml.sqlsafe`): an ``UNLOAD`` that
   writes the kept pairs as zstd Parquet under the destination prefix, and a small query that counts
   rows by drop reason. Both read the same classified rows (``pairs_classified.sql``), which mirror
   the DuckDB backend's checks. Nothing is sent to AWS before every fragment has been validated;
2. empty the destination prefix with :class:`S3Hook` (``UNLOAD`` refuses a non-empty prefix, and
   emptying it makes a re-run replace its output instead of adding to it);
3. start both queries with :class:`AthenaHook` in the configured workgroup, results and ``UNLOAD``
   manifests going to ``<work_location>/athena_results/``; wait for both; a failed, cancelled or
   overdue query raises :class:`AthenaQueryError` naming the query id, state and reason;
4. read the counts (a handful of rows) and return an :class:`ExtractionResult` whose ``output`` is
   the destination prefix. The pairs themselves never pass through the worker.

Partition pruning: version 1 tables are filtered on the ``eventday`` partition (``'YYYYMMDD'``)
as well as on ``time`` (epoch ms); version 2 tables on ``time_dt``. Account and region filters are
``IN`` lists of validated literals.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING

from seclake_ml import sqlsafe
from seclake_ml.config import SeclakeConfig
from seclake_ml.interval import parse_utc
from seclake_ml.pairs import DROP_REASONS, ExtractionResult, reason_sql, render_view_sql
from seclake_ml.sources import get_source
from seclake_ml.uris import s3_prefix

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

RESULTS_FOLDER = "athena_results"
CATALOG = "AwsDataCatalog"
# Validation of the values rendered as SQL literals (the configuration checks them too; these
# patterns are the last gate before SQL, so a configuration built without validation still cannot
# inject anything).
ACCOUNT_LITERAL_RE = re.compile(r"\d{12}|external(_[A-Za-z0-9]{1,32})?")
REGION_LITERAL_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
SOURCE_LITERAL_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_S3_KEY_RE = re.compile(r"[A-Za-z0-9_.=/-]+/")  # the prefix characters that may appear in an UNLOAD literal
_COUNT_COLUMNS = ("reason", "row_count", "distinct_pairs")


class AthenaQueryError(RuntimeError):
    """An Athena query failed, was cancelled or did not finish in time.

    :param query_id: the query execution id.
    :param state: the last state seen (``FAILED``, ``CANCELLED``, ``RUNNING``, …).
    :param reason: Athena's state-change reason, when it gave one.
    :param purpose: what the query was for (``unload`` or ``counts``).
    """

    def __init__(self, query_id: str, state: str | None, reason: str | None, purpose: str):
        self.query_id = query_id
        self.state = state
        self.reason = reason
        self.purpose = purpose
        super().__init__(
            f"Athena {purpose} query {query_id} ended in state {state or 'UNKNOWN'}: "
            f"{reason or 'no state-change reason given'}"
        )


def _strip_comment_lines(sql: str) -> str:
    """Drop full-line ``--`` comments (template headers) so each query starts with its statement."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()


def split_s3_prefix(uri: str) -> tuple[str, str]:
    """``(bucket, key_prefix)`` of an ``s3://bucket/prefix/`` URI with a non-empty prefix.

    A missing trailing ``/`` is added, so ``…/pairs`` and ``…/pairs_old/`` never share objects.
    """
    bucket, key = s3_prefix(uri, "S3 prefix")
    if not _S3_KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid S3 prefix {uri[:120]!r}: expected s3://bucket/prefix/ with a non-empty prefix "
            "of letters, digits and _ . = / -"
        )
    return bucket, key


class AthenaLake:
    """Query layer over the Security Lake Glue tables with Athena.

    :param cfg: validated configuration (``region``, ``glue_db``, ``athena_workgroup``,
        ``source_version``, ``accounts``, ``regions``, ``work_location`` as ``s3://…``, ``dedupe``).
    :param aws_conn_id: Airflow connection for both hooks (``None``: boto3's default chain).
    :param poll_seconds: seconds between two status checks of a running query.
    :param max_polls: status checks before a query counts as overdue (it is then cancelled).
    """

    def __init__(
        self,
        cfg: SeclakeConfig,
        *,
        aws_conn_id: str | None = "aws_default",
        poll_seconds: float = 5,
        max_polls: int = 720,
    ):
        if not cfg.work_is_s3:
            raise ValueError(f"the Athena backend needs an s3:// work_location, got {cfg.work_location!r}")
        if isinstance(poll_seconds, bool) or not isinstance(poll_seconds, (int, float)) or poll_seconds < 0:
            raise ValueError(f"poll_seconds must be a number >= 0, got {poll_seconds!r}")
        if isinstance(max_polls, bool) or not isinstance(max_polls, int) or max_polls < 1:
            raise ValueError(f"max_polls must be an int >= 1, got {max_polls!r}")
        self.cfg = cfg
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.max_polls = max_polls

    # ------------------------------------------------------------------ hooks
    @cached_property
    def athena(self) -> AthenaHook:
        from seclake_ml.aws.clients import athena_hook

        return athena_hook(self.cfg, self.aws_conn_id)

    @cached_property
    def s3(self) -> S3Hook:
        from seclake_ml.aws.clients import s3_hook

        return s3_hook(self.cfg, self.aws_conn_id)

    # ------------------------------------------------------------- locations
    @property
    def work_prefix(self) -> str:
        return self.cfg.work_location.rstrip("/") + "/"

    @property
    def results_location(self) -> str:
        """Where Athena writes query results and ``UNLOAD`` manifests (never under a destination)."""
        return f"{self.work_prefix}{RESULTS_FOLDER}/"

    def destination(self, out: str) -> str:
        """Validate ``out`` as the ``UNLOAD`` prefix and return it normalised (trailing ``/``).

        It must lie inside the work location (the prefix is emptied before each run, so nothing else
        may be deleted by mistake) and must not overlap the Athena results folder.
        """
        bucket, key = split_s3_prefix(out)
        dest = f"s3://{bucket}/{key}"
        work = self.work_prefix
        if not dest.startswith(work) or dest == work:
            raise ValueError(f"output prefix {dest!r} must be a sub-prefix of the work location {work!r}")
        results = self.results_location
        if dest.startswith(results) or results.startswith(dest):
            raise ValueError(f"output prefix {dest!r} overlaps the Athena results folder {results!r}")
        return dest

    # ---------------------------------------------------------------- queries
    def build_queries(
        self, source: str, view: str, start: datetime, end: datetime, destination: str
    ) -> dict[str, str]:
        """Render the ``unload`` and ``counts`` queries; raises before anything is sent on bad input."""
        spec = get_source(source)
        pv = spec.view(view)
        version = self.cfg.source_version
        start, end = parse_utc(start, "start"), parse_utc(end, "end")
        if end <= start:
            raise ValueError(f"empty data interval: start {start.isoformat()} is not before end {end.isoformat()}")

        alias = pv.unnest[1] if pv.unnest else None

        def resolve(path: str) -> str:
            # Every referenced column exists in the Glue tables; fields of the unnested list element
            # are read through the UNNEST alias, everything else through the table alias.
            if alias and path.split(".", 1)[0] == alias:
                return sqlsafe.column_path(path)
            return sqlsafe.column_path(f"t.{path}")

        r = render_view_sql(spec.name, pv.name, version, resolve)
        time_filter, event_time = _time_sql(r["time"], version, start, end)
        unnest_clause = ""
        if pv.unnest:
            unnest_clause = (
                f"CROSS JOIN UNNEST(t.{sqlsafe.ident(pv.unnest[0])}) AS u({sqlsafe.ident(pv.unnest[1])})"
            )
        classified = sqlsafe.render(
            "athena/pairs_classified.sql",
            table=sqlsafe.qualified(self.cfg.glue_db, spec.table_name(version, self.cfg.region)),
            source=sqlsafe.string_literal(spec.name, SOURCE_LITERAL_RE),
            entity_expr=sqlsafe.trusted(r["entity"]),
            ip_expr=sqlsafe.trusted(r["ip"]),
            event_time_expr=sqlsafe.trusted(event_time),
            unnest_clause=sqlsafe.trusted(unnest_clause),
            class_filter=sqlsafe.trusted(r["class_filter"]),
            view_filter=sqlsafe.trusted(r["view_filter"]),
            time_filter=sqlsafe.trusted(time_filter),
            account_filter=_in_list("t.accountid", self.cfg.accounts, ACCOUNT_LITERAL_RE),
            region_filter=_in_list("t.region", self.cfg.regions, REGION_LITERAL_RE),
            reason_expr=sqlsafe.trusted(reason_sql("athena")),
        )
        classified = sqlsafe.trusted(_strip_comment_lines(classified))
        pair_rank = (
            "row_number() OVER (PARTITION BY entity, ip ORDER BY event_time, account, region)"
            if self.cfg.dedupe
            else "1"
        )
        unload = sqlsafe.render(
            "athena/pairs_unload.sql",
            classified=classified,
            pair_rank=sqlsafe.trusted(pair_rank),
            destination=sqlsafe.s3_uri_literal(destination),
        )
        counts = sqlsafe.render("athena/pairs_counts.sql", classified=classified)
        return {"unload": _strip_comment_lines(unload), "counts": _strip_comment_lines(counts)}

    # ------------------------------------------------------------- extraction
    def extract(self, source: str, view: str, start: datetime, end: datetime, out: str) -> ExtractionResult:
        """Unload the pairs of ``source``/``view`` with event time in ``[start, end)`` under ``out``.

        :param source: registered source name, e.g. ``vpc_flow``.
        :param view: the source's pair view, e.g. ``instance_peer``.
        :param start: inclusive start of the window (aware UTC datetime; naive is taken as UTC).
        :param end: exclusive end of the window.
        :param out: ``s3://bucket/prefix/`` inside the work location; emptied, then written.
        :return: counts by reason, pairs written, and ``output`` = the destination prefix.
        """
        t0 = time.perf_counter()
        destination = self.destination(out)
        queries = self.build_queries(source, view, start, end, destination)
        spec = get_source(source)
        res = ExtractionResult(
            source=spec.name,
            view=view,
            source_version=self.cfg.source_version,
            backend="aws",
            start=parse_utc(start, "start").isoformat(),
            end=parse_utc(end, "end").isoformat(),
            output=destination,
        )

        removed = self.empty_prefix(destination)
        if removed:
            log.info("removed %d object(s) of an earlier output under %s", removed, destination)

        unload_id = self._start(queries["unload"])
        try:
            counts_id = self._start(queries["counts"])
        except Exception:
            self._stop_quietly(unload_id)
            raise
        try:
            self._wait(unload_id, "unload")
        except Exception:
            self._stop_quietly(counts_id)
            raise
        self._wait(counts_id, "counts")

        counts = self._read_counts(counts_id)
        ok_rows, ok_distinct = counts.pop("ok", (0, 0))
        res.dropped = {reason: counts.get(reason, (0, 0))[0] for reason in DROP_REASONS}
        res.rows_read = ok_rows + sum(res.dropped.values())
        res.pairs_written = ok_distinct if self.cfg.dedupe else ok_rows
        res.duplicates_removed = ok_rows - res.pairs_written
        res.seconds = round(time.perf_counter() - t0, 3)
        log.info(
            "athena queries: unload %s (manifest under %s), counts %s (result %s)",
            unload_id, self.athena.get_output_location(unload_id),
            counts_id, self.athena.get_output_location(counts_id),
        )
        log.info("%s", res.summary_line())
        return res

    # ------------------------------------------------------------- risk events
    def build_events_query(self, start: datetime, end: datetime, destination: str) -> str:
        """The ``UNLOAD`` of the CloudTrail risk events (:mod:`seclake_ml.risk.columns`) of ``[start, end)``."""
        from seclake_ml.risk.columns import MAX_FIELD_LEN, render_expressions
        from seclake_ml.sources import CLOUDTRAIL_API

        version = self.cfg.source_version
        start, end = parse_utc(start, "start"), parse_utc(end, "end")
        if end <= start:
            raise ValueError(f"empty data interval: start {start.isoformat()} is not before end {end.isoformat()}")
        r = render_expressions(version, lambda path: sqlsafe.column_path(f"t.{path}"))
        time_filter, event_time = _time_sql(r["time"], version, start, end)
        query = sqlsafe.render(
            "athena/risk_events_unload.sql",
            table=sqlsafe.qualified(self.cfg.glue_db, CLOUDTRAIL_API.table_name(version, self.cfg.region)),
            event_time=sqlsafe.trusted(event_time),
            time_filter=sqlsafe.trusted(time_filter),
            api_class=sqlsafe.int_literal(CLOUDTRAIL_API.class_uid[version]),
            account_filter=_in_list("t.accountid", self.cfg.accounts, ACCOUNT_LITERAL_RE),
            region_filter=_in_list("t.region", self.cfg.regions, REGION_LITERAL_RE),
            max_len=sqlsafe.int_literal(MAX_FIELD_LEN + 1),
            destination=sqlsafe.s3_uri_literal(destination),
            **{k: sqlsafe.trusted(v) for k, v in r.items() if k != "time"},
        )
        return _strip_comment_lines(query)

    def unload_events(self, start: datetime, end: datetime, out: str) -> list[str]:
        """Run the risk events ``UNLOAD`` into ``out`` (emptied first); returns the written object keys."""
        destination = self.destination(out)
        query = self.build_events_query(start, end, destination)
        removed = self.empty_prefix(destination)
        if removed:
            log.info("removed %d object(s) of an earlier events unload under %s", removed, destination)
        query_id = self._start(query)
        self._wait(query_id, "risk events unload")
        bucket, key = split_s3_prefix(destination)
        keys = sorted(k for k in self.s3.list_keys(bucket_name=bucket, prefix=key) if not k.endswith("/"))
        log.info("athena query %s unloaded %d object(s) of CloudTrail events to %s", query_id, len(keys), destination)
        return [f"s3://{bucket}/{k}" for k in keys]

    # ------------------------------------------------------------------ steps
    def empty_prefix(self, destination: str) -> int:
        """Delete every object under ``destination`` (an ``s3://bucket/prefix/``); return how many."""
        bucket, key = split_s3_prefix(destination)
        keys = self.s3.list_keys(bucket_name=bucket, prefix=key)
        if keys:
            self.s3.delete_objects(bucket=bucket, keys=keys)
        return len(keys)

    def _start(self, query: str) -> str:
        return self.athena.run_query(
            query=query,
            query_context={"Database": self.cfg.glue_db, "Catalog": CATALOG},
            result_configuration={"OutputLocation": self.results_location},
            workgroup=self.cfg.athena_workgroup,
        )

    def _wait(self, query_id: str, purpose: str) -> None:
        state = self.athena.poll_query_status(
            query_id, max_polling_attempts=self.max_polls, sleep_time=self.poll_seconds
        )
        if state in self.athena.SUCCESS_STATES:
            return
        if state in self.athena.FAILURE_STATES:
            reason = self.athena.get_state_change_reason(query_id)
            raise AthenaQueryError(query_id, state, reason, purpose)
        # still queued/running after max_polls checks, or the state could not be read
        self._stop_quietly(query_id)
        raise AthenaQueryError(
            query_id,
            state,
            f"not finished after {self.max_polls} status checks {self.poll_seconds}s apart; cancel requested",
            purpose,
        )

    def _stop_quietly(self, query_id: str) -> None:
        try:
            self.athena.stop_query(query_id)
        except Exception as exc:  # best effort: the original error matters more
            log.warning("could not cancel Athena query %s: %s", query_id, exc)

    def _read_counts(self, query_id: str) -> dict[str, tuple[int, int]]:
        """``{reason: (rows, distinct pairs)}`` from the counts query's result."""
        response = self.athena.get_query_results(query_id)
        if response is None:
            raise AthenaQueryError(query_id, self.athena.check_query_status(query_id), "result not readable", "counts")
        result_set = response.get("ResultSet", {})
        names = [c.get("Name", "").lower() for c in result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
        rows = [[d.get("VarCharValue") for d in row.get("Data", [])] for row in result_set.get("Rows", [])]
        if rows and [str(v).lower() for v in rows[0]] == list(_COUNT_COLUMNS):
            rows = rows[1:]  # Athena repeats the column names as the first row of a SELECT result
        if names and names != list(_COUNT_COLUMNS):
            raise AthenaQueryError(query_id, "SUCCEEDED", f"unexpected counts columns {names}", "counts")
        out: dict[str, tuple[int, int]] = {}
        allowed = set(DROP_REASONS) | {"ok"}
        for row in rows:
            if len(row) != len(_COUNT_COLUMNS):
                raise AthenaQueryError(query_id, "SUCCEEDED", f"malformed counts row {row!r}", "counts")
            reason, n, distinct = row
            if reason not in allowed:
                raise AthenaQueryError(query_id, "SUCCEEDED", f"unexpected reason {reason!r} in counts", "counts")
            try:
                out[reason] = (int(n), int(distinct))
            except (TypeError, ValueError):
                raise AthenaQueryError(query_id, "SUCCEEDED", f"non-integer counts row {row!r}", "counts") from None
        return out


def _time_sql(time_expr: str, version: int, start: datetime, end: datetime) -> tuple[str, str]:
    """``(time filter of [start, end), event time as a timestamp)`` for a source version's time column:
    partition pruning plus epoch milliseconds in version 1, ``time_dt`` in version 2."""
    if version == 1:
        last_day = (end - timedelta(microseconds=1)).date()
        time_filter = (
            f"t.eventday BETWEEN {sqlsafe.day_literal(start.date())} AND {sqlsafe.day_literal(last_day)} "
            f"AND {time_expr} >= {sqlsafe.int_literal(_epoch_ms(start))} "
            f"AND {time_expr} < {sqlsafe.int_literal(_epoch_ms(end))}"
        )
        # exact millisecond arithmetic; a zone-less timestamp, as Athena's Parquet writer requires
        return time_filter, f"date_add('millisecond', {time_expr}, TIMESTAMP '1970-01-01 00:00:00.000')"
    time_filter = f"{time_expr} >= {sqlsafe.timestamp_literal(start)} AND {time_expr} < {sqlsafe.timestamp_literal(end)}"
    return time_filter, f"CAST({time_expr} AS timestamp(3))"


def _epoch_ms(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _in_list(column: str, values: tuple[str, ...], pattern: re.Pattern[str]) -> sqlsafe.Sql:
    """``column IN ('a', 'b')`` from validated literals, or ``TRUE`` when there is no filter."""
    if not values:
        return sqlsafe.trusted("TRUE")
    literals = ", ".join(sqlsafe.string_literal(v, pattern) for v in values)
    return sqlsafe.trusted(f"{sqlsafe.column_path(column)} IN ({literals})")
