-- Export page of raw telemetry by time: ts_ms up to ?1 (inclusive) after the cursor
-- (ts_ms, id) > (?4, ?5), at most ?3 rows (?2 unused).
SELECT r.id, r.ts_ms, p.name, r.method, r.block_number, r.latency_us, r.outcome, r.http_status,
       r.rpc_code, r.bytes, r.head_reported, r.attempt, r.hedged, r.batch_size, r.credits, r.error,
       r.ts_ms, r.id
FROM provider_requests r
JOIN providers p ON p.id = r.provider_id
WHERE r.ts_ms >= ?4 AND (r.ts_ms, r.id) > (?4, ?5) AND r.ts_ms <= ?1 AND ?2 IN (0, 1)
ORDER BY r.ts_ms, r.id
LIMIT ?3
