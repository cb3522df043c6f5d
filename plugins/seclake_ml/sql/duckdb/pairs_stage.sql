-- Stage candidate (entity, ip) pairs of one source/view from local Security Lake Parquet files (or from
-- one chunk of one object, registered as a relation, when scoring new objects),
-- each row classified as 'ok' or with the reason it will be dropped.
-- Bound parameters: $files (list of Parquet paths), $source, time window ($start_ms/$end_ms and
-- $start_day/$end_day for source version 1, $start_ts/$end_ts for version 2), $accounts, $regions.
-- ${...} placeholders are validated identifiers or SQL written in the package (seclake_ml.sqlsafe).
INSERT INTO ${stage}
SELECT
    entity,
    ip,
    event_time,
    $source AS source,
    accountid AS account,
    region,
    CASE
        WHEN entity IS NULL OR ip IS NULL OR entity = '' OR ip = '' THEN 'null'
        WHEN entity = '-' OR ip = '-' THEN 'dash'
        WHEN length(entity) > ${max_entity_len} OR length(ip) > ${max_ip_len}
             OR regexp_matches(entity, ${control_chars_re}) OR regexp_matches(ip, ${control_chars_re}) THEN 'hostile'
        WHEN strpos(ip, ':') > 0 THEN 'ipv6'
        WHEN NOT regexp_full_match(ip, ${ipv4_re}) THEN 'not_ip'
        WHEN starts_with(ip, '0.') THEN 'unspecified'
        WHEN ip = '255.255.255.255' THEN 'broadcast'
        WHEN starts_with(ip, '127.') THEN 'loopback'
        WHEN starts_with(ip, '169.254.') THEN 'link_local'
        WHEN CAST(split_part(ip, '.', 1) AS INTEGER) BETWEEN 224 AND 239 THEN 'multicast'
        ELSE 'ok'
    END AS reason
FROM (
    SELECT
        CAST(${entity_expr} AS VARCHAR) AS entity,
        CAST(${ip_expr} AS VARCHAR) AS ip,
        ${event_time_expr} AS event_time,
        CAST(accountid AS VARCHAR) AS accountid,
        CAST(region AS VARCHAR) AS region
    FROM ${relation} AS t
    ${unnest_clause}
    WHERE (${class_filter})
      AND (${view_filter})
      AND (${time_filter})
      AND (len($accounts) = 0 OR list_contains($accounts, CAST(accountid AS VARCHAR)))
      AND (len($regions) = 0 OR list_contains($regions, CAST(region AS VARCHAR)))
) AS candidates
