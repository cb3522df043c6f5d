-- Stage candidate (entity, ip) pairs (pairs_candidates.sql), each row classified as 'ok' or with the
-- reason it will be dropped (pairs_reason.sql). Bound parameters: those of the candidates and $source.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
INSERT INTO ${stage}
SELECT
    entity,
    ip,
    event_time,
    $source AS source,
    accountid AS account,
    region,
    ${reason_expr} AS reason
FROM (
${candidates}
) AS candidates
