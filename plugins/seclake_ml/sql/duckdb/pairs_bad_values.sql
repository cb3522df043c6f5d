-- Entity and IP values of the profile that make a pair fail a check which the per-row filter of
-- pairs_copy.sql does not make itself (it tests only null entity or IP and ':' in the IP).
-- A pair is 'ok' exactly when neither its entity nor its IP is listed here; the caller verifies that
-- against every profiled pair's reason before it trusts the filter.
SELECT DISTINCT 'entity' AS side, entity AS value FROM ${profile}
WHERE entity IS NOT NULL
  AND (entity = '' OR entity = '-' OR length(entity) > ${max_entity_len} OR regexp_matches(entity, ${control_chars_re}))
UNION
SELECT DISTINCT 'ip' AS side, ip AS value FROM ${profile}
WHERE ip IS NOT NULL AND strpos(ip, ':') = 0
  AND (ip = '' OR ip = '-' OR length(ip) > ${max_ip_len} OR regexp_matches(ip, ${control_chars_re})
       OR NOT regexp_full_match(ip, ${ipv4_re})
       OR starts_with(ip, '0.') OR ip = '255.255.255.255' OR starts_with(ip, '127.') OR starts_with(ip, '169.254.')
       OR coalesce(TRY_CAST(split_part(ip, '.', 1) AS INTEGER) BETWEEN 224 AND 239, TRUE))
