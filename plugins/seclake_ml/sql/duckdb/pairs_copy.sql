-- Write the candidates that pass ${ok_filter} (null entity or IP, ':' in the IP, and the values listed
-- by pairs_bad_values.sql) straight from the lake to one Parquet file, in the lake's order (files
-- by path, rows as stored), without staging them first.
-- The source, account and region columns are cast to ENUM types of the values present (or to
-- VARCHAR), which the Parquet writer stores as a dictionary without hashing every row; the file's
-- columns are strings either way.
-- Bound parameters: those of the candidates, $source, $bad_entities and $bad_ips when listed.
COPY (
    SELECT entity, ip, event_time, CAST($source AS ${source_type}) AS source,
           CAST(accountid AS ${account_type}) AS account, CAST(region AS ${region_type}) AS region
    FROM (
${candidates}
    ) AS candidates
    WHERE ${ok_filter}
) TO ${out_path} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)
