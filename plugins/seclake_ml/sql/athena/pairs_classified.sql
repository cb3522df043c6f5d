-- Candidate (entity, ip) pairs of one source/view read from a Security Lake Glue table, each row
-- classified as 'ok' or with the reason it will be dropped. Used inside pairs_unload.sql and
-- pairs_counts.sql, so the pairs written and the counts reported come from the same classification.
-- Every ${...} placeholder is a validated identifier or literal, or SQL written in the package
-- (seclake_ml.sqlsafe). The reason is common/pairs_reason.sql, as in the DuckDB backend.
SELECT
    entity,
    ip,
    event_time,
    source,
    account,
    region,
    ${reason_expr} AS reason
FROM (
    SELECT
        CAST(${entity_expr} AS VARCHAR) AS entity,
        CAST(${ip_expr} AS VARCHAR) AS ip,
        ${event_time_expr} AS event_time,
        ${source} AS source,
        CAST(t.accountid AS VARCHAR) AS account,
        CAST(t.region AS VARCHAR) AS region
    FROM ${table} AS t
    ${unnest_clause}
    WHERE (${class_filter})
      AND (${view_filter})
      AND (${time_filter})
      AND (${account_filter})
      AND (${region_filter})
) AS candidates
