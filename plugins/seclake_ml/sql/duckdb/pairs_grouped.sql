-- The distinct (entity, ip) candidates of one chunk of one object with their event count, first and
-- last time and drop reason (pairs_reason.sql, evaluated once per group, not per row). A chunk's
-- account and region are the object's partition values, constant over the chunk; ``contexts`` are
-- the first ${max_context} distinct context values (sorted) of the pair, e.g. the buckets it touched.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
CREATE OR REPLACE TEMP TABLE ${grouped} AS
SELECT entity, ip, any_value(account) AS account, any_value(region) AS region, count(*) AS events, min(event_time) AS first_seen,
       max(event_time) AS last_seen, ${reason_expr} AS reason,
       list_sort(list(DISTINCT context) FILTER (WHERE context IS NOT NULL))[1:${max_context}] AS contexts
FROM (
    SELECT entity, ip, event_time, context, coalesce(accountid, '') AS account, coalesce(region, '') AS region
    FROM (
${candidates}
    ) AS candidates
) AS rows
GROUP BY entity, ip
