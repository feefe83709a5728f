-- Fold failed raw rows with ?1 < id <= ?2 into provider_error_hours (by class and code).
INSERT INTO provider_error_hours (provider_id, hour_ms, method, outcome, http_status, rpc_code, n)
SELECT provider_id, (ts_ms / 3600000) * 3600000, method, outcome,
       coalesce(http_status, 0), coalesce(rpc_code, 0), count(*)
FROM provider_requests
WHERE id > ?1 AND id <= ?2 AND outcome NOT IN ('ok', 'cancelled')
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (provider_id, hour_ms, method, outcome, http_status, rpc_code) DO UPDATE SET n = n + excluded.n
