-- Candidate (entity, ip) rows of one source/view: the view's expressions over the relation (the lake's
-- Parquet files, or a range of one object when scoring), filtered to the source's class,
-- the view, the time window and the account/region filters; not yet classified. ``context`` is the
-- view's categorical context (an S3 bucket), NULL for views without one.
-- Bound parameters: $files (list of Parquet paths), time window ($start_ms/$end_ms and
-- $start_day/$end_day for source version 1, $start_ts/$end_ts for version 2), $accounts, $regions.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
-- list_position, not list_contains: a long list_contains can become a hash join, which loses row order.
SELECT
    CAST(${entity_expr} AS VARCHAR) AS entity,
    CAST(${ip_expr} AS VARCHAR) AS ip,
    CAST(${context_expr} AS VARCHAR) AS context,
    ${event_time_expr} AS event_time,
    CAST(accountid AS VARCHAR) AS accountid,
    CAST(region AS VARCHAR) AS region
FROM ${relation} AS t
${unnest_clause}
WHERE (${class_filter})
  AND (${view_filter})
  AND (${time_filter})
  AND (len($accounts) = 0 OR list_position($accounts, CAST(accountid AS VARCHAR)) IS NOT NULL)
  AND (len($regions) = 0 OR list_position($regions, CAST(region AS VARCHAR)) IS NOT NULL)
