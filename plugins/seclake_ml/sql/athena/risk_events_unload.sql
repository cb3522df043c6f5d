-- CloudTrail sign-ins and API calls of one source version as the risk engine's event table
-- (seclake_ml.risk.columns), unloaded to Parquet (zstd) under an empty S3 prefix of the work location.
-- ${...} placeholders are validated identifiers, typed literals or expressions written in the package
-- (seclake_ml.sqlsafe); string values are cut to ${max_len} characters (one more than the engine keeps,
-- so that a cut value is counted when it is read back).
UNLOAD (
    SELECT
        CAST(${uid} AS varchar) AS uid,
        ${event_time} AS time,
        CASE WHEN ${class_uid} = 3002 THEN 'signin' ELSE 'api' END AS kind,
        substr(CAST(coalesce(CAST(t.accountid AS varchar), ${account}) AS varchar), 1, ${max_len}) AS account,
        substr(CAST(t.region AS varchar), 1, ${max_len}) AS region,
        substr(CAST(${principal} AS varchar), 1, ${max_len}) AS principal,
        substr(CAST(${principal_type} AS varchar), 1, ${max_len}) AS principal_type,
        substr(CAST(${source_ip} AS varchar), 1, ${max_len}) AS source_ip,
        substr(CAST(${user_agent} AS varchar), 1, ${max_len}) AS user_agent,
        substr(CAST(${service} AS varchar), 1, ${max_len}) AS service,
        substr(CAST(${operation} AS varchar), 1, ${max_len}) AS operation,
        substr(CAST(${error_code} AS varchar), 1, ${max_len}) AS error_code,
        substr(CAST(${status} AS varchar), 1, ${max_len}) AS status,
        CAST(${mfa} AS boolean) AS mfa
    FROM ${table} AS t
    WHERE ((${class_uid} = 3002 AND ${operation} = 'ConsoleLogin') OR ${class_uid} = ${api_class})
      AND (${time_filter})
      AND (${account_filter})
      AND (${region_filter})
)
TO ${destination}
WITH (format = 'PARQUET', compression = 'ZSTD')
