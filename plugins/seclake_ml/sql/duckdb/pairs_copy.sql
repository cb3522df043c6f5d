-- Write the candidates that pass ${ok_filter} (null entity or IP, ':' in the IP, and the values listed
-- by pairs_bad_values.sql) straight from the lake to one Parquet file, in the lake's order (files
-- by path, rows as stored), without staging them first.
-- Bound parameters: those of the candidates, $source, $bad_entities and $bad_ips when listed.
COPY (
    SELECT entity, ip, event_time, $source AS source, accountid AS account, region
    FROM (
${candidates}
    ) AS candidates
    WHERE ${ok_filter}
) TO ${out_path} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)
