-- Write the pairs that passed every check to Parquet (zstd) under an empty S3 prefix.
-- ${pair_rank} is the constant 1, or, when dedupe is on, the rank of the row within its
-- (entity, ip) group by event time, so that only each pair's first occurrence is kept.
-- UNLOAD writes several files in parallel; their order is not significant.
UNLOAD (
    SELECT entity, ip, event_time, source, account, region
    FROM (
        SELECT entity, ip, event_time, source, account, region, ${pair_rank} AS pair_rank
        FROM (
${classified}
        ) AS classified
        WHERE reason = 'ok'
    ) AS ok_pairs
    WHERE pair_rank = 1
)
TO ${destination}
WITH (format = 'PARQUET', compression = 'ZSTD')
