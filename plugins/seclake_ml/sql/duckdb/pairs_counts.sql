-- Rows read and rows kept or dropped, by reason.
SELECT reason, count(*) AS n FROM ${stage} GROUP BY reason ORDER BY reason
