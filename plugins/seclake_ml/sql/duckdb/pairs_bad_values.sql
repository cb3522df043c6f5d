-- Entity and IP values of the profile that make a pair fail a check which the per-row filter of
-- pairs_copy.sql does not make itself (it tests only null entity or IP and ':' in the IP). Each side
-- is classified by the one drop-reason CASE (common/pairs_reason.sql) with a known-good value on the other
-- side: every check of that CASE looks at one side only, so a pair is 'ok' exactly when neither its
-- entity nor its IP is listed here. The limit is one more than the caller can list.
SELECT side, value FROM (
    SELECT DISTINCT 'entity' AS side, entity AS value
    FROM (SELECT entity, '192.0.2.1' AS ip FROM ${profile} WHERE entity IS NOT NULL)
    WHERE ${reason_expr} <> 'ok'
    UNION
    SELECT DISTINCT 'ip' AS side, ip AS value
    FROM (SELECT 'entity' AS entity, ip FROM ${profile} WHERE ip IS NOT NULL AND strpos(ip, ':') = 0)
    WHERE ${reason_expr} <> 'ok'
)
LIMIT ${limit}
