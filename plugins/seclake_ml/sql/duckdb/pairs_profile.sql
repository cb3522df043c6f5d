-- The distinct (entity, ip) candidates of one extraction with their row count and drop reason: one
-- pass over the lake that gives the drop counts and the values to keep out, with the per-row regular
-- expressions evaluated once per distinct pair instead of once per row.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
CREATE OR REPLACE TEMP TABLE ${profile} AS
SELECT entity, ip, count(*) AS n, ${reason_expr} AS reason
FROM (
${candidates}
) AS candidates
GROUP BY entity, ip
