-- The drop reason of one (entity, ip) candidate, or 'ok' (seclake_ml.pairs lists the reasons, checked
-- in this order). Written over the columns entity and ip, for DuckDB and Athena (Trino) alike:
-- ${regexp_search} and ${regexp_full} are the dialect's regular-expression functions (the IPv4 pattern
-- is anchored, so Trino's regexp_like serves as a full match).
CASE
    WHEN entity IS NULL OR ip IS NULL OR entity = '' OR ip = '' THEN 'null'
    WHEN entity = '-' OR ip = '-' THEN 'dash'
    WHEN length(entity) > ${max_entity_len} OR length(ip) > ${max_ip_len}
         OR ${regexp_search}(entity, ${control_chars_re}) OR ${regexp_search}(ip, ${control_chars_re}) THEN 'hostile'
    WHEN strpos(ip, ':') > 0 THEN 'ipv6'
    WHEN NOT ${regexp_full}(ip, ${ipv4_re}) THEN 'not_ip'
    WHEN starts_with(ip, '0.') THEN 'unspecified'
    WHEN ip = '255.255.255.255' THEN 'broadcast'
    WHEN starts_with(ip, '127.') THEN 'loopback'
    WHEN starts_with(ip, '169.254.') THEN 'link_local'
    WHEN CAST(split_part(ip, '.', 1) AS INTEGER) BETWEEN 224 AND 239 THEN 'multicast'
    ELSE 'ok'
END
