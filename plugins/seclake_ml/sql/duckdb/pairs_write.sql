-- Write the staged pairs that passed every check to one Parquet file, ordered by time.
-- ${qualify} is empty, or keeps each (entity, ip)'s first occurrence when dedupe is on.
COPY (
    SELECT entity, ip, event_time, source, account, region
    FROM ${stage}
    WHERE reason = 'ok'
    ${qualify}
    ORDER BY event_time, entity, ip
) TO ${out_path} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)
