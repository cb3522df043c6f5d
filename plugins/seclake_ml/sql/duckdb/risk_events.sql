-- CloudTrail sign-ins and API calls of one source version as the risk engine's event table
-- (seclake_ml.risk.columns). Bound parameters: $files, the time window ($start_ms/$end_ms and
-- $start_day/$end_day for version 1, $start_ts/$end_ts for version 2), $accounts, $regions,
-- $max_len. ${...} placeholders are expressions written in the package (seclake_ml.sqlsafe).
SELECT
    CAST(${uid} AS VARCHAR) AS uid,
    ${event_time} AS time,
    CASE WHEN ${class_uid} = 3002 THEN 'signin' ELSE 'api' END AS kind,
    left(CAST(coalesce(CAST(accountid AS VARCHAR), ${account}) AS VARCHAR), $max_len) AS account,
    left(CAST(region AS VARCHAR), $max_len) AS region,
    left(CAST(${principal} AS VARCHAR), $max_len) AS principal,
    left(CAST(${principal_type} AS VARCHAR), $max_len) AS principal_type,
    left(CAST(${source_ip} AS VARCHAR), $max_len) AS source_ip,
    left(CAST(${user_agent} AS VARCHAR), $max_len) AS user_agent,
    left(CAST(${service} AS VARCHAR), $max_len) AS service,
    left(CAST(${operation} AS VARCHAR), $max_len) AS operation,
    left(CAST(${error_code} AS VARCHAR), $max_len) AS error_code,
    left(CAST(${status} AS VARCHAR), $max_len) AS status,
    CAST(${mfa} AS BOOLEAN) AS mfa
FROM read_parquet($files, hive_partitioning = true, hive_types_autocast = false, union_by_name = true) AS t
WHERE ((${class_uid} = 3002 AND ${operation} = 'ConsoleLogin') OR ${class_uid} = ${api_class})
  AND (${time_filter})
  AND (len($accounts) = 0 OR list_contains($accounts, CAST(accountid AS VARCHAR)))
  AND (len($regions) = 0 OR list_contains($regions, CAST(region AS VARCHAR)))
