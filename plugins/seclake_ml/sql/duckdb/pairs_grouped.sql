-- The distinct (entity, ip) candidates of one chunk of one object with their event count, first and
-- last time and drop reason (pairs_reason.sql, evaluated once per group, not per row), ordered by
-- entity and IP (the same pairs give the same requests). A chunk's account and region are the
-- object's partition values, constant over the chunk, so they are not grouped here. For a view with
-- a context, the contexts expression keeps the first few distinct context values (sorted) of the
-- pair, e.g. the buckets it touched; for the others it is NULL.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
SELECT entity, ip, count(*) AS events, min(event_time) AS first_seen, max(event_time) AS last_seen,
       ${reason_expr} AS reason, ${contexts_expr} AS contexts
FROM (
${candidates}
) AS candidates
GROUP BY entity, ip
ORDER BY entity, ip
