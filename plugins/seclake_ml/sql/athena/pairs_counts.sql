-- Rows read and rows kept or dropped, by reason, plus the number of distinct (entity, ip) pairs
-- among the kept rows (what a deduplicated UNLOAD writes). A few rows at most, whatever the volume.
SELECT
    reason,
    sum(n) AS row_count,
    count(*) AS distinct_pairs
FROM (
    SELECT reason, pair_entity, pair_ip, count(*) AS n
    FROM (
        SELECT
            reason,
            CASE WHEN reason = 'ok' THEN entity END AS pair_entity,
            CASE WHEN reason = 'ok' THEN ip END AS pair_ip
        FROM (
${classified}
        ) AS classified
    ) AS keyed
    GROUP BY reason, pair_entity, pair_ip
) AS per_pair
GROUP BY reason
ORDER BY reason
