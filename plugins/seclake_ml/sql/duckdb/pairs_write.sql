-- Write the staged pairs that passed every check to one Parquet file.
-- ${qualify} is empty, or keeps each (entity, ip)'s first occurrence when dedupe is on;
-- ${order_by} is empty (the stage's own order, which is the lake's) or the order of a deduplicated file.
COPY (
    SELECT entity, ip, event_time, source, account, region
    FROM ${stage}
    WHERE reason = 'ok'
    ${qualify}
    ${order_by}
) TO ${out_path} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)
