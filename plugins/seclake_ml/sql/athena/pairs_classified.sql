-- Candidate (entity, ip) pairs of one source/view read from a Security Lake Glue table, each row
-- classified as 'ok' or with the reason it will be dropped. Used inside pairs_unload.sql and
-- pairs_counts.sql, so the pairs written and the counts reported come from the same classification.
-- Every ${...} placeholder is a validated identifier or literal, or SQL written in the package
-- (seclake_ml.sqlsafe). The checks mirror duckdb/pairs_stage.sql, in Trino SQL.
SELECT
    entity,
    ip,
    event_time,
    source,
    account,
    region,
    CASE
        WHEN entity IS NULL OR ip IS NULL OR entity = '' OR ip = '' THEN 'null'
        WHEN entity = '-' OR ip = '-' THEN 'dash'
        WHEN length(entity) > ${max_entity_len} OR length(ip) > ${max_ip_len}
             OR regexp_like(entity, ${control_chars_re}) OR regexp_like(ip, ${control_chars_re}) THEN 'hostile'
        WHEN strpos(ip, ':') > 0 THEN 'ipv6'
        WHEN NOT regexp_like(ip, ${ipv4_re}) THEN 'not_ip'
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
        ${source} AS source,
        CAST(t.accountid AS VARCHAR) AS account,
        CAST(t.region AS VARCHAR) AS region
    FROM ${table} AS t
    ${unnest_clause}
    WHERE (${class_filter})
      AND (${view_filter})
      AND (${time_filter})
      AND (${account_filter})
      AND (${region_filter})
) AS candidates
